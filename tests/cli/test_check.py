"""`refine check` as a CI gate: a readable table or JSON, and an exit code that stops the job."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from refine.cli import main

from ..conftest import ROOT, SAMPLE, chat, write_jsonl


def run(*args: object):
    return CliRunner().invoke(main, ["check", *map(str, args)])


def test_a_clean_dataset_passes_with_exit_0(tmp_path: Path) -> None:
    clean = write_jsonl(tmp_path / "clean.jsonl", [chat(f"Question {i} about topic {i}?", f"Answer {i}.")
                                                  for i in range(30)])
    result = run(clean, "--config", ROOT / "recipes" / "pre-retrain-gate.yaml")
    assert result.exit_code == 0, result.output
    assert "result: PASS" in result.output


def test_a_planted_duplicate_conflict_and_leak_fail_the_gate(tmp_path: Path) -> None:
    records = [chat(f"Question {i} about topic {i}?", f"Answer {i}.") for i in range(30)]
    records.append(chat("Question 3 about topic 3?", "Answer 3."))               # duplicate
    records.append(chat("How long is the refund window?", "It is 14 days."))
    records.append(chat("How long is the refund window?", "It is 90 days."))     # conflict
    records.append(chat("Where is the eval question?", "Right here."))           # leak
    train = write_jsonl(tmp_path / "train.jsonl", records)
    evalf = write_jsonl(tmp_path / "eval.jsonl", [{"question": "Where is the eval question?",
                                                   "verdict": "good"}])
    result = run(train, "--eval", evalf, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    failed = {r["name"] for r in report["checks"] if r["status"] == "fail"}
    assert report["passed"] is False
    assert {"exact_duplicates", "conflicting_answers", "eval_leakage"} <= failed


def test_an_unknown_check_is_a_clean_error(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "t.jsonl", [chat("q?", "a.")])
    result = run(train, "--select", "spelling")
    assert result.exit_code == 2 and "spelling" in result.output and "Traceback" not in result.output


def test_the_gate_on_the_quickstart_output(sample_run: dict) -> None:
    outputs = sorted((sample_run["root"] / "refined").glob("*.jsonl"))
    train = [SAMPLE / "train" / "support_faq.jsonl", SAMPLE / "train" / "product_docs.jsonl"]
    args = [*outputs, "--config", ROOT / "recipes" / "pre-retrain-gate.yaml", "--eval", SAMPLE / "eval.jsonl",
            "--flags", sample_run["run"]]
    for path in train:
        args += ["--baseline", path]
    result = run(*args)
    assert result.exit_code == 0, result.output
    # the unpruned originals still hold the flagged pairs: the gate stops them
    result = run(*train, "--flags", sample_run["run"], "--select", "flagged_present")
    assert result.exit_code == 1 and "FAIL" in result.output
