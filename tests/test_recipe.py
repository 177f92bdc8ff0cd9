"""Recipes: validated YAML, overrides, paths relative to the recipe, collect → flag → emit."""

from __future__ import annotations

from pathlib import Path

import pytest

from refine import ConfigError, load_recipe, run_recipe

from .conftest import people_dataset

RECIPE = """\
name: people
train: data/train.jsonl
eval: data/eval.jsonl
run_dir: runs/people
collect:
  top_k: 5
flag:
  min_bad: 2
"""


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    people_dataset(tmp_path / "data")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path


def test_paths_are_relative_to_the_recipe_and_defaults_fill_in(recipe_dir: Path) -> None:
    recipe = load_recipe(recipe_dir / "recipe.yaml")
    assert recipe.train == [str(recipe_dir / "data/train.jsonl")]
    assert recipe.run_dir == str(recipe_dir / "runs/people")
    assert recipe.emit_out == str(recipe_dir / "runs/people/refined.jsonl")
    assert recipe.collect.top_k == 5 and recipe.collect.backend == "embedding"
    assert recipe.flag.alpha == 0.1


def test_overrides_are_read_as_yaml(recipe_dir: Path) -> None:
    recipe = load_recipe(recipe_dir / "recipe.yaml", ["flag.min_bad=3", "collect.backend_options.batch_size=16",
                                                      "grade.f1_min=0.5"])
    assert recipe.flag.min_bad == 3 and recipe.collect.backend_options == {"batch_size": 16}
    assert recipe.collect.grade.f1_min == 0.5


def test_an_unknown_key_is_an_error_naming_key_and_line(recipe_dir: Path) -> None:
    (recipe_dir / "recipe.yaml").write_text(RECIPE.replace("  min_bad: 2", "  min_bad: 2\n  min_badd: 3"))
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe_dir / "recipe.yaml")
    assert (info.value.key, info.value.line) == ("flag.min_badd", 9)
    assert str(info.value).startswith(f"{recipe_dir / 'recipe.yaml'}:9: 'flag.min_badd': unknown key")


def test_unknown_top_level_keys_and_overrides_are_errors(recipe_dir: Path) -> None:
    with pytest.raises(ConfigError, match="'trian': unknown key"):
        load_recipe(recipe_dir / "recipe.yaml", ["trian=x.jsonl"])


def test_a_bad_value_names_its_line(recipe_dir: Path) -> None:
    (recipe_dir / "recipe.yaml").write_text(RECIPE.replace("min_bad: 2", "min_bad: zero"))
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe_dir / "recipe.yaml")
    assert (info.value.key, info.value.line) == ("flag.min_bad", 8)


def test_invalid_yaml_and_missing_keys(recipe_dir: Path) -> None:
    (recipe_dir / "recipe.yaml").write_text("train: [a\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_recipe(recipe_dir / "recipe.yaml")
    (recipe_dir / "recipe.yaml").write_text("train: a.jsonl\n")
    with pytest.raises(ConfigError, match="'eval': is required"):
        load_recipe(recipe_dir / "recipe.yaml")


def test_yaml_tags_that_build_objects_are_refused(recipe_dir: Path) -> None:
    (recipe_dir / "recipe.yaml").write_text(RECIPE + "description: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_recipe(recipe_dir / "recipe.yaml")


def test_run_recipe_collects_flags_and_emits(recipe_dir: Path) -> None:
    result = run_recipe(load_recipe(recipe_dir / "recipe.yaml"), progress=False)
    assert sorted(result.flag.flagged_pairs["line"]) == [6, 7, 8]
    assert result.emit.outputs == [Path(recipe_dir / "runs/people/refined.jsonl")]
    assert result.emit.records_out == 117


def test_a_train_entry_may_name_its_layout_and_the_output_keeps_the_format(tmp_path: Path) -> None:
    import csv
    import json

    from refine import TrainingInput

    data = people_dataset(tmp_path / "data")
    rows = [json.loads(line)["messages"] for line in Path(data["train"]).read_text().splitlines()]
    with open(tmp_path / "data" / "people.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["instruction", "output"])
        writer.writerows([m[0]["content"], m[1]["content"]] for m in rows)
    (tmp_path / "r.yaml").write_text("train: [{path: data/people.csv, format: alpaca}]\n"
                                     "eval: data/eval.jsonl\nrun_dir: run\ncluster: {enabled: false}\n"
                                     "report: {enabled: false}\n")
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.train == [TrainingInput(str(tmp_path / "data" / "people.csv"), "alpaca")]
    assert recipe.emit_out == str(tmp_path / "run" / "refined.csv")
    result = run_recipe(recipe, progress=False)
    assert sorted(result.flag.flagged_pairs["line"]) == data["poisoned_lines"]
    assert (tmp_path / "run" / "refined.csv").read_text().count("\n") == 1 + 120 - 3


@pytest.mark.parametrize("entry,words", [("[{path: a.csv, format: yaml}]", "unknown record layout 'yaml'"),
                                         ("[{file: a.csv}]", "a path, or {path: ..., format: ...}")])
def test_bad_train_entries_are_errors_naming_the_key(tmp_path: Path, entry: str, words: str) -> None:
    (tmp_path / "r.yaml").write_text(f"train: {entry}\neval: e.jsonl\nrun_dir: run\n")
    with pytest.raises(ConfigError, match="r.yaml:1: 'train") as info:
        load_recipe(tmp_path / "r.yaml")
    assert words in str(info.value)
