from __future__ import annotations

from pathlib import Path

from refine.checks import run_checks

from .data import clean_pairs, write_train


def _run(*paths: str):
    return run_checks(list(paths), select=["exact_duplicates"]).result("exact_duplicates")


def test_a_clean_file_passes(tmp_path: Path) -> None:
    assert _run(write_train(tmp_path / "train.jsonl", clean_pairs())).passed


def test_copies_up_to_case_and_spacing_are_one_group_across_files(tmp_path: Path) -> None:
    pairs = clean_pairs(10)
    question, answer = pairs[3]
    a = write_train(tmp_path / "a.jsonl", pairs + [(question.upper(), "  " + answer)])
    b = write_train(tmp_path / "b.jsonl", [(question, answer)])
    result = _run(a, b)
    assert not result.passed and result.severity == "warning"
    assert len(result.findings) == 1
    group = result.findings[0]
    assert (group["file"], group["line"]) == (a, 4)
    assert group["lines"] == [{"file": a, "line": 4}, {"file": a, "line": 11},
                              {"file": b, "line": 1}]
    assert result.info == {"groups": 1, "extra_lines": 2}
