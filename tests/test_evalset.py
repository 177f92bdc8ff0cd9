"""Reading the eval set: what is required, and bad items named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from refine import InputError, load_eval

from .conftest import write_jsonl


def test_items_keep_their_fields_and_default_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [
        {"id": "a", "question": "Q?", "answer": "A", "verdict": "BAD", "system_prompt": "s"},
        {"question": "Q2?", "answer": "A2", "reference": "R2"},
    ])
    first, second = load_eval(str(path)).items
    assert (first.id, first.verdict, first.system_prompt) == ("a", "bad", "s")
    assert (second.id, second.verdict, second.reference) == ("line-2", None, "R2")


@pytest.mark.parametrize("record,field,words", [
    ({"answer": "A", "verdict": "bad"}, "question", "missing"),
    ({"question": "", "verdict": "bad"}, "question", "empty"),
    ({"question": "Q?", "answer": "A"}, "verdict", "no 'verdict' and no 'reference'"),
    ({"question": "Q?", "verdict": "meh"}, "verdict", "'meh'"),
    ({"question": "Q?", "verdict": "bad", "answer": 3}, "answer", "must be a string"),
])
def test_bad_items_are_errors_naming_line_and_field(tmp_path: Path, record: dict, field: str,
                                                     words: str) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [{"question": "fine?", "verdict": "good"}, record])
    with pytest.raises(InputError) as info:
        load_eval(str(path))
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 2, field)
    assert words in str(info.value)


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [{"id": "x", "question": "a?", "verdict": "good"},
                                              {"id": "y", "question": "b?", "verdict": "good"},
                                              {"id": "x", "question": "c?", "verdict": "bad"}])
    with pytest.raises(InputError, match=r"duplicate id 'x' \(first on line 1\)") as info:
        load_eval(str(path))
    assert (info.value.line, info.value.field) == (3, "id")


def test_an_empty_eval_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match="no eval items"):
        load_eval(str(path))
