from __future__ import annotations

from pathlib import Path

import pytest

from refine.checks import run_checks
from refine.errors import InputError

from ..conftest import write_jsonl
from .data import clean_eval_questions, clean_pairs, write_eval, write_train


def _run(train: str, eval_path: str | None, **options):
    return run_checks([train], eval_path=eval_path, select=["eval_leakage"],
                      options={"eval_leakage": options}).result("eval_leakage")


def test_unrelated_eval_questions_pass(tmp_path: Path) -> None:
    train = write_train(tmp_path / "train.jsonl", clean_pairs())
    result = _run(train, write_eval(tmp_path / "eval.jsonl", clean_eval_questions()))
    assert result.passed and result.info["eval_items"] == 3


def test_exact_and_near_copies_of_training_questions_are_caught(tmp_path: Path) -> None:
    long_q = "What does the warranty cover if the screen cracks during the first year of use?"
    train = write_train(tmp_path / "train.jsonl",
                        clean_pairs(10) + [(long_q, "Repairs are free in the first year.")])
    questions = clean_eval_questions() + ["  WHERE does person3 live?", long_q + " Thanks"]
    eval_path = write_eval(tmp_path / "eval.jsonl", questions)
    result = _run(train, eval_path)
    assert not result.passed and result.severity == "error"
    found = [(f["file"], f["line"], f["train_file"], f["train_line"], f["match"])
             for f in result.findings]
    assert found == [(eval_path, 4, train, 4, "exact"), (eval_path, 5, train, 11, "near")]
    assert result.findings[1]["jaccard"] >= 0.8
    assert _run(train, eval_path, threshold=0.99).n_findings == 1


def test_a_question_is_all_the_eval_file_needs_and_without_one_it_is_refused(tmp_path: Path) -> None:
    train = write_train(tmp_path / "train.jsonl", clean_pairs())
    bare = write_jsonl(tmp_path / "bare.jsonl", [{"question": "Where does person3 live?"}])
    assert _run(train, str(bare)).n_findings == 1
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"question": "ok?"}, {"answer": "no question"}])
    with pytest.raises(InputError) as info:
        _run(train, str(broken))
    assert (info.value.line, info.value.field) == (2, "question")
