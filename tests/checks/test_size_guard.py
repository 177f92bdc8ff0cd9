from __future__ import annotations

from pathlib import Path

import pytest

from refine.checks import run_checks
from refine.errors import InputError

from .data import clean_pairs, write_train


def _run(train: str, baseline: str, **options):
    return run_checks([train], baseline=baseline, select=["size_guard"],
                      options={"size_guard": options}).result("size_guard")


def test_a_small_prune_passes(tmp_path: Path) -> None:
    pairs = clean_pairs(40)
    baseline = write_train(tmp_path / "original.jsonl", pairs)
    result = _run(write_train(tmp_path / "train.jsonl", pairs[:36]), baseline)
    assert result.passed
    assert (result.info["dropped"], result.info["baseline_pairs"]) == (4, 40)


def test_dropping_more_than_max_drop_fails_and_lists_the_dropped_lines(tmp_path: Path) -> None:
    pairs = clean_pairs(40)
    baseline = write_train(tmp_path / "original.jsonl", pairs)
    train = write_train(tmp_path / "train.jsonl", pairs[:30])
    result = _run(train, baseline)
    assert not result.passed and result.severity == "error"
    assert "10 of 40 baseline pairs dropped (25.0%)" in result.summary
    assert [(f["file"], f["line"]) for f in result.findings] == [(baseline, n) for n in range(31, 41)]
    assert _run(train, baseline, max_drop=0.3).passed


def test_a_baseline_the_set_was_not_derived_from_is_refused_before_any_check(tmp_path: Path) -> None:
    baseline = write_train(tmp_path / "other.jsonl", clean_pairs(40)[:10])
    train = write_train(tmp_path / "train.jsonl", clean_pairs(40)[5:])
    with pytest.raises(InputError) as info:
        run_checks([train], baseline=baseline)
    assert info.value.file == baseline
    assert "not an ancestor" in str(info.value) and "max_new" in str(info.value)
    allowed = _run(train, baseline, max_new=0.9)
    assert allowed.info["new"] == 30 and not allowed.passed  # and half the baseline is gone
