from __future__ import annotations

from pathlib import Path

import pytest

from refine.checks import run_checks
from refine.errors import InputError

from .data import clean_pairs, write_train


def _run(*paths: str):
    return run_checks(list(paths), select=["format_validity"]).result("format_validity")


def test_a_clean_file_passes(tmp_path: Path) -> None:
    result = _run(write_train(tmp_path / "train.jsonl", clean_pairs()))
    assert result.passed and result.findings == []


def test_bad_lines_are_findings_naming_file_line_and_reason(tmp_path: Path) -> None:
    pairs: list = clean_pairs(5)
    pairs.insert(2, '{"messages": [')
    pairs.insert(4, '{"messages": [{"role": "bot", "content": "hi"}]}')
    pairs.append('{"prompt": "only a prompt"}')
    train = write_train(tmp_path / "train.jsonl", pairs)
    result = _run(train)
    assert not result.passed and result.severity == "error"
    assert [(f["file"], f["line"]) for f in result.findings] == [(train, 3), (train, 5), (train, 8)]
    assert result.findings[0]["message"].startswith("malformed JSON")
    assert "messages[0].role" in result.findings[1]["message"]
    assert "completion" in result.findings[2]["message"]
    assert result.info["records"] == 5


def test_a_file_with_no_valid_record_is_a_finding_not_an_exception(tmp_path: Path) -> None:
    good = write_train(tmp_path / "good.jsonl", clean_pairs(3))
    bad = write_train(tmp_path / "bad.jsonl", ["not json", '{"question": ""}'])
    result = _run(good, bad)
    assert not result.passed
    assert [(f["file"], f["line"]) for f in result.findings] == [(bad, None), (bad, 1), (bad, 2)]
    assert "no training records" in result.findings[0]["message"]


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        _run(str(tmp_path / "absent.jsonl"))
