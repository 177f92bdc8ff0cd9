"""Errors name the real problem: the file, the row or line, the column or field, and what was
expected, through the real command line (exit code 2, one line on stderr)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from refine import InputError, load_eval
from refine.cli import main

from ..conftest import chat, write_jsonl


def refuse(*args: object) -> str:
    """The one-line error of a command that must refuse with exit code 2."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.output
    return result.stderr.strip()


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def train(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", [chat("How long is the refund window?", "14 days."),
                                                  chat("Do you ship abroad?", "Yes, to the EU.")])


def collect(train: Path, eval_path: Path, tmp_path: Path) -> str:
    return refuse("collect", "--train", train, "--eval", eval_path, "--out", tmp_path / "run", "-q")


def test_an_eval_table_with_prompt_and_answer_columns_is_read_as_question_and_answer(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "eval.csv", [
        {"prompt": "How long is the refund window?", "answer": "30 days.", "reference": "14 days.",
         "verdict": "bad"}])
    (item,) = load_eval(str(path), need_answers="the 'embedding' backend").items
    assert (item.question, item.answer, item.reference, item.verdict) == \
        ("How long is the refund window?", "30 days.", "14 days.", "bad")


def test_an_eval_table_without_a_question_column_names_its_columns(train: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "eval.csv", [{"query": "Refund window?", "answer": "30 days.",
                                              "reference": "14 days.", "verdict": "bad"}])
    assert collect(train, path, tmp_path) == (
        f"error: {path}: no question column: found columns query, answer, reference, verdict; "
        "expected one of messages, conversations, instruction, prompt, question")


def test_an_eval_table_without_an_answer_column_says_who_needs_one(train: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "eval.csv", [{"prompt": "Refund window?", "reference": "14 days.",
                                              "verdict": "bad"}])
    assert collect(train, path, tmp_path) == (
        f"error: {path}: no answer column, and the 'embedding' backend needs the model's answer: "
        "found columns prompt, reference, verdict; expected 'completion' or 'answer'")


def test_an_eval_line_without_an_answer_names_line_field_and_where_it_was_looked_for(
        train: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "eval.jsonl", [
        {"question": "Refund window?", "answer": "30 days.", "verdict": "bad"},
        {"prompt": "Ship abroad?", "verdict": "good"}])
    assert collect(train, path, tmp_path) == (
        f"error: {path}:2: field 'answer': is missing, and the 'embedding' backend needs the "
        "model's answer: expected 'completion' or 'answer'")
    with pytest.raises(InputError) as info:
        load_eval(str(path), need_answers="the 'embedding' backend")
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, "answer")
    assert len(load_eval(str(path)).items) == 2   # a backend that generates answers needs none


RUN_DIR_COMMANDS = {
    "flag": lambda run, tmp: ["flag", run],
    "emit": lambda run, tmp: ["emit", run, "--out", tmp / "out.jsonl"],
    "cluster": lambda run, tmp: ["cluster", run],
    "report": lambda run, tmp: ["report", run],
    "review export": lambda run, tmp: ["review", "export", run, "--out", tmp / "review.csv"],
    # the run directory is judged before the sheet, which does not exist either
    "review apply": lambda run, tmp: ["review", "apply", run, tmp / "review.csv", "--out", tmp / "o.jsonl"],
    "compare": lambda run, tmp: ["compare", run, run],
}


@pytest.mark.parametrize("command", RUN_DIR_COMMANDS)
def test_a_run_directory_that_does_not_exist_is_called_so(command: str, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    assert refuse(*RUN_DIR_COMMANDS[command](run, tmp_path)) == (
        f"error: {run}: run directory does not exist (`refine collect --out {run}` makes one)")
    run.mkdir(parents=True)
    assert refuse(*RUN_DIR_COMMANDS[command](run, tmp_path)) == (
        f"error: {run}: not a refine run directory (no settings.json); run `refine collect` first")


def test_checking_against_a_run_directory_that_does_not_exist_says_so(train: Path, tmp_path: Path) -> None:
    run = tmp_path / "r1"
    assert refuse("check", train, "--flags", run) == (
        f"error: {run}: run directory does not exist (`refine collect --out {run}` makes one)")
