"""The CLI: each verb wraps the Python API; errors are one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from refine import read_flags
from refine.cli import main

from ..conftest import ROOT, chat, people_dataset, write_jsonl


@pytest.fixture
def data(tmp_path: Path) -> dict:
    return people_dataset(tmp_path / "data")


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_collect_flag_emit(data: dict, tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out.jsonl"
    result = invoke("collect", "--train", data["train"], "--eval", data["eval"], "--out", run, "-q")
    assert result.exit_code == 0, result.output
    assert "collected 43/43 eval items over 120 training pairs" in result.output
    result = invoke("flag", run)
    assert result.exit_code == 0 and "3 of" in result.output
    assert sorted(read_flags(run).query("flagged")["line"]) == data["poisoned_lines"]
    result = invoke("emit", run, "--out", out)
    assert result.exit_code == 0 and "kept 117 of 120 records" in result.output
    assert json.loads(out.with_name("out.manifest.json").read_text())["summary"]["removed"] == 3


def test_collect_resumes_and_reports_it(data: dict, tmp_path: Path) -> None:
    args = ["collect", "--train", data["train"], "--eval", data["eval"], "--out", tmp_path / "run", "-q"]
    invoke(*args)
    assert "(43 already done)" in invoke(*args).output


def test_backend_options_and_model_flags_reach_the_backend(data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke("collect", "--train", data["train"], "--eval", data["eval"], "--out", run, "-q",
                    "--top-k", "3", "--option", "min_score=0.6", "--model", "default")
    assert result.exit_code == 0, result.output
    settings = json.loads((run / "settings.json").read_text())["collect"]
    assert settings["top_k"] == 3 and settings["options"]["min_score"] == 0.6


BAD_TRAIN = [
    ('{"messages": [{"role": "user", "content": "hi"}]}', "t.jsonl:2: field 'messages': has no assistant turn"),
    ('{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}',
     "t.jsonl:2: field 'messages[0].content': is empty"),
    ("{not json", "t.jsonl:2: malformed JSON"),
]


@pytest.mark.parametrize("line,message", BAD_TRAIN)
def test_bad_training_input_is_one_line_exit_2_and_no_run_dir(data: dict, tmp_path: Path, line: str,
                                                              message: str) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", [chat("ok?", "ok."), line])
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["collect", "--train", str(train), "--eval", str(data["eval"]),
                                       "--out", str(run), "-q"])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not run.exists()


def test_skip_invalid_counts_what_it_skipped(data: dict, tmp_path: Path) -> None:
    lines = Path(data["train"]).read_text().splitlines()
    train = write_jsonl(tmp_path / "t.jsonl", lines[:50] + ["{oops"] + lines[50:])
    result = CliRunner().invoke(main, ["collect", "--train", str(train), "--eval", str(data["eval"]),
                                       "--out", str(tmp_path / "run"), "-q", "--skip-invalid"])
    assert result.exit_code == 0 and "skipped 1 invalid input records" in result.output


def test_emit_without_flags_is_a_clean_error(data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    invoke("collect", "--train", data["train"], "--eval", data["eval"], "--out", run, "-q")
    result = CliRunner().invoke(main, ["emit", str(run), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "flags.csv, flags.json missing" in result.output and "run `refine flag` first" in result.output
    assert not (tmp_path / "o.jsonl").exists()


def test_run_recipe_with_overrides(data: dict, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: data/train.jsonl\neval: data/eval.jsonl\nrun_dir: run\n")
    result = invoke("run", recipe, "--set", "flag.min_bad=7", "-q")
    assert result.exit_code == 0, result.output
    assert "0 of" in result.output and read_flags(tmp_path / "run")["flagged"].sum() == 0
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "flag.nope=1"])
    assert result.exit_code == 2 and "'flag.nope': unknown key" in result.output


def test_the_installed_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "e.jsonl", [{"question": "q?", "answer": "a.", "verdict": "good"},
                                             {"id": 1}])
    train = write_jsonl(tmp_path / "t.jsonl", [chat("q?", "a.")])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "refine.cli", "collect", "--train", str(train),
                           "--eval", str(bad), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}:2: field 'question': is missing"


def test_every_command_has_help_and_a_readme_entry() -> None:
    import click

    readme = (ROOT / "README.md").read_text()
    for name, command in main.commands.items():
        assert command.help, name
        assert f"refine {name}" in readme, f"README does not show `refine {name}`"
        if isinstance(command, click.Group):
            for sub, subcommand in command.commands.items():
                assert subcommand.help and f"refine {name} {sub}" in readme, f"{name} {sub}"


def test_cluster_report_and_modes_from_the_command_line(data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    invoke("collect", "--train", data["train"], "--eval", data["eval"], "--out", run, "-q")
    invoke("flag", run)
    result = invoke("cluster", run, "--min-size", "2")
    assert result.exit_code == 0 and "failure modes over 6 bad answers" in result.output
    result = invoke("report", run)
    assert result.exit_code == 0 and (run / "report.html").is_file() and (run / "report.md").is_file()
    result = invoke("emit", run, "--out", tmp_path / "q.jsonl", "--mode", "quarantine")
    assert result.exit_code == 0 and "quarantined 3" in result.output
    assert len((tmp_path / "q.quarantine.jsonl").read_text().splitlines()) == 3


def test_review_export_and_apply_from_the_command_line(data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    invoke("collect", "--train", data["train"], "--eval", data["eval"], "--out", run, "-q")
    invoke("flag", run)
    result = invoke("review", "export", run, "--out", tmp_path / "r.csv")
    assert result.exit_code == 0 and "3 flagged pairs to review" in result.output
    result = invoke("review", "apply", run, tmp_path / "r.csv", "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 0, result.output
    (tmp_path / "bad.csv").write_text("pair_id\n1\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["review", "apply", str(run), str(tmp_path / "bad.csv"),
                                       "--out", str(tmp_path / "o2.jsonl")])
    assert result.exit_code == 2 and "bad.csv:1: wrong columns" in result.output


# --- the rough edges of issue 12, one test each -------------------------------------------------


def test_a_recipe_over_a_run_with_other_settings_says_how_to_overwrite_in_a_recipe(data: dict,
                                                                                 tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: data/train.jsonl\neval: data/eval.jsonl\nrun_dir: run\n"
                      "cluster: {enabled: false}\nreport: {enabled: false}\n")
    assert invoke("run", recipe, "-q").exit_code == 0
    result = CliRunner().invoke(main, ["run", str(recipe), "-q", "--set", "collect.top_k=3"])
    assert result.exit_code == 2 and "changed: collect.top_k" in result.output
    assert "`overwrite: true` in the recipe (or --set overwrite=true)" in result.output
    assert "--overwrite" not in result.output.replace("--set overwrite", "")
    assert invoke("run", recipe, "-q", "--set", "collect.top_k=3", "--set", "overwrite=true").exit_code == 0


def test_a_typo_in_set_is_blamed_on_the_set_not_the_recipe(data: dict, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: data/train.jsonl\neval: data/eval.jsonl\nrun_dir: run\n")
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "flag.minbad=3"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --set flag.minbad=3: 'flag.minbad': unknown key; known under 'flag': ")
    assert "r.yaml" not in result.output
    result = CliRunner().invoke(main, ["run", str(recipe), "--set", "flag.min_bad=0"])
    assert "error: --set flag.min_bad=0: 'flag.min_bad': must be an integer ≥ 1" in result.output


def test_backend_lists_the_installed_backends(data: dict, tmp_path: Path) -> None:
    assert "[embedding|gradient|seekrflow]" in invoke("collect", "--help").output
    assert {"embedding", "gradient", "seekrflow"} <= set(invoke("backends").output.split())
    result = CliRunner().invoke(main, ["collect", "--train", str(data["train"]), "--eval", str(data["eval"]),
                                       "--out", str(tmp_path / "run"), "--backend", "embeding"])
    assert result.exit_code == 2 and "'embeding' is not one of 'embedding', 'gradient', 'seekrflow'" in result.output
    assert not (tmp_path / "run").exists()


def test_progress_written_to_a_pipe_is_plain_lines(data: dict, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "refine.cli", "collect", "--train", str(data["train"]),
                           "--eval", str(data["eval"]), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert "attribute (embedding): 43/43 items (100%)" in proc.stderr
    assert all(line.count(": ") >= 1 for line in proc.stderr.splitlines())


def test_emit_to_a_file_name_with_several_sources_is_refused(data: dict, tmp_path: Path) -> None:
    other = write_jsonl(tmp_path / "other.jsonl", [chat("Where does nobody live?", "Nowhere.")])
    run = tmp_path / "run"
    invoke("collect", "--train", data["train"], "--train", other, "--eval", data["eval"], "--out", run, "-q")
    invoke("flag", run)
    result = CliRunner().invoke(main, ["emit", str(run), "--out", str(tmp_path / "one.jsonl")])
    assert result.exit_code == 2
    assert "one.jsonl looks like a file name, but there are 2 training sources: give a directory" in result.output
    assert not (tmp_path / "one.jsonl").exists()


def test_run_help_names_every_step() -> None:
    text = invoke("run", "--help").output
    assert "collect → flag → cluster → emit → report" in text


def test_counter_examples_are_counted_apart_from_kept_records(sample_copy: dict, tmp_path: Path) -> None:
    result = invoke("emit", sample_copy["run"], "--out", tmp_path / "out", "--counterexamples")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    added = manifest["summary"]["added"]
    assert added > 0
    assert (f"kept 335 of 348 records (removed 13); added {added} counter-examples "
            f"({335 + added} records out)") in result.output
