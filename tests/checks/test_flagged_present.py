from __future__ import annotations

from pathlib import Path

import pytest

from refine.checks import run_checks
from refine.errors import RunDirError

from .data import clean_pairs, write_flags, write_train


def _run(train: str, run: str):
    return run_checks([train], flags_run=run, select=["flagged_present"]).result("flagged_present")


def test_a_refined_set_without_the_flagged_pairs_passes(tmp_path: Path) -> None:
    pairs = clean_pairs()
    train = write_train(tmp_path / "train.jsonl", pairs[:-2])
    run = write_flags(tmp_path / "run", flagged=pairs[-2:], not_flagged=pairs[:3])
    result = _run(train, run)
    assert result.passed and result.info["flagged"] == 2


def test_flagged_pairs_still_present_are_reported_by_line(tmp_path: Path) -> None:
    pairs = clean_pairs()
    train = write_train(tmp_path / "train.jsonl", pairs + [pairs[5]])
    run = write_flags(tmp_path / "run", flagged=[pairs[5], pairs[9]], not_flagged=pairs[:3])
    result = _run(train, run)
    assert not result.passed and result.severity == "error"
    assert [(f["file"], f["line"]) for f in result.findings] == [(train, 6), (train, 10),
                                                                  (train, 41)]
    assert result.info == {"flagged": 2, "present": 2, "lines": 3}


def test_a_directory_that_is_no_run_is_refused_and_told_what_makes_one(tmp_path: Path) -> None:
    train = write_train(tmp_path / "train.jsonl", clean_pairs())
    (tmp_path / "run").mkdir()
    with pytest.raises(RunDirError, match="not a refine run directory.*refine collect"):
        _run(train, str(tmp_path / "run"))
