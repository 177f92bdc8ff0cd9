from __future__ import annotations

from pathlib import Path

import pytest

from refine.checks import run_checks
from refine.errors import ConfigError

from .data import clean_pairs, write_train


def _run(train: str, **options):
    return run_checks([train], select=["length_outliers"],
                      options={"length_outliers": options}).result("length_outliers")


def test_ordinary_lengths_pass(tmp_path: Path) -> None:
    result = _run(write_train(tmp_path / "train.jsonl", clean_pairs()))
    assert result.passed
    assert result.info["answer"]["median"] > 0


def test_a_runaway_answer_and_a_one_word_answer_are_reported(tmp_path: Path) -> None:
    pairs = clean_pairs() + [("Tell me about person99.", "blah " * 400), ("Anything?", "Nothing.")]
    train = write_train(tmp_path / "train.jsonl", pairs)
    result = _run(train)
    assert result.severity == "warning" and not result.passed
    assert [(f["line"], f["field"], f["tokens"]) for f in result.findings] == [
        (41, "answer", 400), (42, "answer", 1)]
    assert result.findings[0]["robust_z"] > 6 > -6 > result.findings[1]["robust_z"]


def test_a_hard_maximum_applies_even_to_small_sets(tmp_path: Path) -> None:
    train = write_train(tmp_path / "train.jsonl", clean_pairs(5))
    assert _run(train).passed  # fewer than min_pairs: no robust z
    result = _run(train, max_answer_tokens=7)
    assert {f["field"] for f in result.findings} == {"answer"} and result.n_findings == 5
    assert "over max_answer_tokens = 7" in result.findings[0]["message"]


def test_a_local_tokenizer_counts_its_own_tokens(tmp_path: Path) -> None:
    from refine.core.embeddings import resolve_model_path

    train = write_train(tmp_path / "train.jsonl", clean_pairs(5))
    result = _run(train, tokenizer=str(resolve_model_path("default")), max_question_tokens=5)
    assert result.n_findings == 5 and result.info["unit"] == "tokenizer tokens"
    assert all(f["tokens"] > 5 for f in result.findings)


def test_a_tokenizer_that_is_not_a_local_directory_is_a_config_error(tmp_path: Path) -> None:
    train = write_train(tmp_path / "train.jsonl", clean_pairs(5))
    with pytest.raises(ConfigError) as info:
        _run(train, tokenizer="bert-base-uncased")
    assert info.value.key == "checks.length_outliers.tokenizer"
