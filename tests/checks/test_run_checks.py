"""`run_checks` as a whole: selection, options, severities, skipping, and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from refine.checks import Check, CheckReport, available_checks, run_checks
from refine.errors import ConfigError
from refine.plugins import CHECKS

from ..conftest import ROOT
from .data import clean_eval_questions, clean_pairs, write_eval, write_flags, write_train

ALL = ["format_validity", "exact_duplicates", "near_duplicates", "conflicting_answers",
       "eval_leakage", "flagged_present", "size_guard", "length_outliers"]


@pytest.fixture
def clean(tmp_path: Path) -> dict:
    pairs = clean_pairs(44)
    return {"train": [write_train(tmp_path / "a.jsonl", pairs[:20]),
                      write_train(tmp_path / "b.jsonl", pairs[20:40])],
            "eval_path": write_eval(tmp_path / "eval.jsonl", clean_eval_questions()),
            "baseline": write_train(tmp_path / "original.jsonl", pairs),
            "flags_run": write_flags(tmp_path / "run", flagged=pairs[40:], not_flagged=pairs[:5])}


@pytest.fixture
def dirty(tmp_path: Path) -> dict:
    """One dataset with eval leakage, a conflict and a duplicate planted."""
    pairs = clean_pairs(30)
    train = write_train(tmp_path / "dirty.jsonl", pairs + [
        pairs[7],                                           # duplicate of line 8
        ("Where does person3 live?", "Person3 lives in Atlantis."),  # conflicts with line 4
    ])
    eval_path = write_eval(tmp_path / "eval.jsonl",
                           clean_eval_questions() + ["What does person12 do for a living?"])
    return {"train": [train], "eval_path": eval_path}


def test_the_clean_set_passes_every_check(clean: dict) -> None:
    report = run_checks(**clean)
    # outcome_regressions looks at a retrained run, not at a training set: skipped here.
    assert [r.name for r in report.results] == [*ALL, "outcome_regressions"] == available_checks()[:len(ALL) + 1]
    assert [r.status for r in report.results] == ["pass"] * len(ALL) + ["skip"], report.to_table()
    assert report.passed


def test_leakage_conflict_and_duplicate_are_caught_in_one_dataset(dirty: dict) -> None:
    report = run_checks(**dirty)
    status = {r.name: r.status for r in report.results}
    assert status == {"format_validity": "pass", "exact_duplicates": "fail",
                      "near_duplicates": "pass", "conflicting_answers": "fail",
                      "eval_leakage": "fail", "flagged_present": "skip", "size_guard": "skip",
                      "length_outliers": "pass", "outcome_regressions": "skip"}
    assert not report.passed
    assert [r.name for r in report.failed_errors] == ["conflicting_answers", "eval_leakage"]
    train = dirty["train"][0]
    assert report.result("exact_duplicates").findings[0]["lines"] == [
        {"file": train, "line": 8}, {"file": train, "line": 31}]
    assert report.result("conflicting_answers").findings[0]["line"] == 4
    assert report.result("eval_leakage").findings[0]["train_line"] == 13


def test_checks_without_their_inputs_are_skipped_with_the_reason(clean: dict) -> None:
    report = run_checks(clean["train"])
    skipped = {r.name: r.skipped for r in report.results if r.status == "skip"}
    assert skipped == {"eval_leakage": "needs an eval set (--eval)",
                       "flagged_present": "needs a flagged run directory (--flags)",
                       "size_guard": "needs a baseline training set (--baseline)",
                       "outcome_regressions": "needs a retrained run with `refine outcome` figures (--outcome)"}
    assert report.passed and all(r.passed for r in report.results)


@pytest.mark.parametrize("kwargs, key", [
    ({"select": ["exact_duplicates", "near_dupes"]}, "checks.select"),
    ({"options": {"leakage": {"threshold": 0.9}}}, "checks.options"),
    ({"severity": {"sizeguard": "warning"}}, "checks.severity"),
])
def test_an_unknown_check_name_is_a_config_error_listing_the_known_ones(
        clean: dict, kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        run_checks(clean["train"], **kwargs)
    assert info.value.key == key
    assert "unknown check" in str(info.value)
    assert all(name in str(info.value) for name in ALL)


def test_unknown_options_and_bad_severities_name_their_key(clean: dict) -> None:
    with pytest.raises(ConfigError) as info:
        run_checks(clean["train"], options={"near_duplicates": {"treshold": 0.9}})
    assert info.value.key == "checks.near_duplicates.treshold" and "threshold" in str(info.value)
    with pytest.raises(ConfigError) as info:
        run_checks(clean["train"], severity={"near_duplicates": "fatal"})
    assert info.value.key == "checks.near_duplicates.severity"


def test_select_and_severity_change_what_runs_and_what_fails(dirty: dict) -> None:
    report = run_checks(**dirty, select=["exact_duplicates"], severity={"exact_duplicates": "error"})
    assert [r.name for r in report.results] == ["exact_duplicates"]
    assert not report.passed and report.result("exact_duplicates").severity == "error"
    relaxed = run_checks(**dirty, severity={"conflicting_answers": "warning",
                                            "eval_leakage": "info"})
    assert relaxed.passed and relaxed.to_dict()["warnings"] == [
        "exact_duplicates", "conflicting_answers", "eval_leakage"]


def test_the_table_shows_every_check_and_the_first_findings(dirty: dict) -> None:
    table = run_checks(**dirty).to_table(max_findings=1)
    lines = table.splitlines()
    assert lines[0].split() == ["check", "severity", "status", "summary"]
    assert lines[1].split()[:3] == ["format_validity", "error", "PASS"]
    assert any(line.split()[:3] == ["flagged_present", "error", "SKIP"] for line in lines)
    assert "result: FAIL (2 error-level check(s) failed: conflicting_answers, eval_leakage)" in lines
    assert f"  {dirty['train'][0]}:4  2 different answers" in table


def test_findings_are_capped_in_the_report_but_counted_in_full(tmp_path: Path) -> None:
    train = write_train(tmp_path / "train.jsonl", clean_pairs(5) + ["x", "y", "z"])
    report = run_checks([train], select=["format_validity"], max_findings=2)
    data = json.loads(report.to_json())
    [check] = data["checks"]
    assert (check["n_findings"], len(check["findings"])) == (3, 2)
    assert "  ... and 1 more" in report.to_table()
    assert len(report.result("format_validity").findings) == 3


def test_json_is_stable_across_processes_and_hash_seeds(dirty: dict, tmp_path: Path) -> None:
    script = ("import sys, json; from refine.checks import run_checks; "
              "sys.stdout.write(run_checks(json.loads(sys.argv[1]), eval_path=sys.argv[2]).to_json())")
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script, json.dumps(dirty["train"]),
                               dirty["eval_path"]], capture_output=True, text=True, env=env,
                              cwd=ROOT, check=True)
        outputs.append(done.stdout)
    here = run_checks(**dirty).to_json()
    assert outputs[0] == outputs[1] == here
    data = json.loads(here)
    assert json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n" == here
    assert data["inputs"]["train"][0]["sha256"] and "seconds" not in here


def test_a_plug_in_check_registers_itself_and_runs_with_its_options(clean: dict) -> None:
    @dataclass(frozen=True)
    class AtLeastOptions:
        minimum: int = 1

    class AtLeast(Check):
        name = "at_least_n_lines"
        description = "Test double: the training set has at least `minimum` records."
        default_severity = "error"
        Options = AtLeastOptions

        def run(self, context):
            n = len(context.training.pairs)
            return self.result(summary=f"{n} records", passed=n >= self.options.minimum)

    try:
        assert available_checks()[-1] == "at_least_n_lines"
        report = run_checks(clean["train"], select=["at_least_n_lines"],
                            options={"at_least_n_lines": {"minimum": 1000}})
        assert not report.passed and report.results[0].summary == "40 records"
    finally:
        CHECKS.unregister("at_least_n_lines")


def test_selecting_no_check_runs_none_and_passes_with_its_inputs_described(clean: dict) -> None:
    report = run_checks(clean["train"], select=[])
    assert isinstance(report, CheckReport) and report.results == [] and report.passed
    data = report.to_dict()
    assert (data["checks"], data["failed"], data["skipped"]) == ([], [], [])
    assert [entry["path"] for entry in data["inputs"]["train"]] == clean["train"]
    assert all(entry["sha256"] for entry in data["inputs"]["train"])
    assert report.to_table().splitlines()[-1] == "result: PASS"


def test_a_check_without_run_is_not_registered() -> None:
    class Unfinished(Check):
        name = "unfinished_check"
        description = "Test double with no run method."

    assert "unfinished_check" not in available_checks()
