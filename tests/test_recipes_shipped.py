"""Every recipe in recipes/ is valid, and the non-default modes run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import yaml

from refine import load_recipe, run_recipe
from refine.checks import run_checks
from refine.stages.recipe import load_check_config

from .conftest import ROOT, SAMPLE

ALL = sorted((ROOT / "recipes").glob("*.yaml"))
GATES = [p for p in ALL if "checks" in yaml.safe_load(p.read_text())]
RECIPES = [p for p in ALL if p not in GATES]


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_loads(path: Path) -> None:
    recipe = load_recipe(path)
    assert all(Path(t).is_file() for t in recipe.train) and Path(recipe.eval).is_file()


@pytest.mark.parametrize("path", GATES, ids=[p.stem for p in GATES])
def test_every_shipped_gate_stops_the_unpruned_data_and_passes_the_pruned(path: Path, sample_run: dict) -> None:
    settings = load_check_config(path)
    train = [str(SAMPLE / "train" / name) for name in ("support_faq.jsonl", "product_docs.jsonl")]
    refined = sorted(str(p) for p in (sample_run["root"] / "refined").glob("*.jsonl"))

    def gate(files: list[str]):
        return run_checks(files, eval_path=str(SAMPLE / "eval.jsonl"), baseline=train,
                          flags_run=str(sample_run["run"]), options=settings.options,
                          severity=settings.severity, select=settings.select)

    before, after = gate(train), gate(refined)
    failed = {r.name for r in before.results if r.status == "fail" and r.severity == "error"}
    assert not before.passed and failed == {"flagged_present"}
    assert after.passed, after.to_table()
    for name, severity in settings.severity.items():   # the gate's own severities are applied
        assert after.result(name).severity == severity


def test_the_shipped_recipes_cover_each_mode() -> None:
    modes = {load_recipe(p).emit.mode for p in RECIPES}
    assert modes == {"prune", "edit", "quarantine"}
    assert any(load_recipe(p).emit.counterexamples for p in RECIPES)


def test_the_edit_recipe_runs(tmp_path: Path) -> None:
    recipe = load_recipe(ROOT / "recipes" / "edit-with-references.yaml",
                         [f"run_dir={tmp_path / 'run'}", f"emit.out={tmp_path / 'out'}"])
    result = run_recipe(recipe, progress=False)
    manifest = json.loads(result.emit.manifest.read_text())
    assert manifest["mode"] == "edit" and result.emit.edited >= 2
    assert result.emit.edited + result.emit.quarantined == 13
    assert (tmp_path / "run" / "report.html").is_file()


def test_model_paths_in_backend_options_are_relative_to_the_recipe(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)                  # nowhere near the recipe
    recipe = load_recipe(ROOT / "recipes" / "gradient-tiny-lm.yaml")
    model = Path(recipe.collect.backend_options["model"])
    assert model.is_absolute() and (model / "config.json").is_file()
    assert model == (SAMPLE / "tiny_lm").resolve()
