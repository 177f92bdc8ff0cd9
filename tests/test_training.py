"""Reading training files: shapes accepted, identity of pairs, and bad input named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refine import InputError, load_training
from refine.core.text import pair_key

from .conftest import chat, write_jsonl


def test_chat_records_become_pairs_with_file_line_and_derived_file_id(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [chat("Q1?", "A1.", system="sys"), chat("Q2?", "A2.")])
    training = load_training([str(path)])
    first, second = training.pairs
    assert (first.question, first.answer, first.system_prompt, first.line) == ("Q1?", "A1.", "sys", 1)
    assert second.line == 2 and second.system_prompt is None
    assert first.file_id == second.file_id and first.file_id.startswith("file-")
    assert training.files[0].records == 2


def test_record_file_id_wins_over_the_derived_one(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [chat("Q?", "A.", file_id="file-abc"), chat("Q2?", "A2.")])
    pairs = load_training([str(path)]).pairs
    assert pairs[0].file_id == "file-abc"
    assert pairs[1].file_id != "file-abc"


def test_multi_turn_records_attribute_on_the_last_assistant_turn(tmp_path: Path) -> None:
    record = {"messages": [{"role": "user", "content": "first?"}, {"role": "assistant", "content": "one"},
                           {"role": "user", "content": "second?"}, {"role": "assistant", "content": "two"}]}
    pair = load_training([str(write_jsonl(tmp_path / "t.jsonl", [record]))]).pairs[0]
    assert (pair.question, pair.answer) == ("second?", "two")


def test_prompt_completion_question_answer_and_parquet_are_accepted(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "P?", "completion": "C."},
                                                {"question": "Q?", "answer": "A.", "extra": [1]}])
    parquet = tmp_path / "qa.parquet"
    pq.write_table(pa.table({"question": ["PQ?"], "answer": ["PA."], "file_id": ["file-x"]}), parquet)
    training = load_training([str(jsonl), str(parquet)])
    assert [(p.question, p.answer) for p in training.pairs] == [("P?", "C."), ("Q?", "A."), ("PQ?", "PA.")]
    assert training.pairs[2].file_id == "file-x" and training.pairs[2].line == 1
    assert [f.format for f in training.files] == ["jsonl", "parquet"]


def test_pair_id_is_stable_under_case_and_spacing_and_differs_by_content() -> None:
    assert pair_key("Where is  it?", "Here.") == pair_key("where is it?", " here. ")
    assert pair_key("Where is it?", "Here.") != pair_key("Where is it?", "There.")
    assert len(pair_key("q", "a")) == 16


def test_blank_lines_are_not_records(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(chat("Q?", "A.")) + "\n\n" + json.dumps(chat("Q2?", "A2.")) + "\n")
    assert [p.line for p in load_training([str(path)]).pairs] == [1, 3]


BAD_LINES = [
    ('{"messages": [', 2, None, "malformed JSON"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', 2, "messages[0].role", "'robot'"),
    ('{"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]}', 2, "messages[0].role", "missing"),
    ('{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "y"}]}', 2,
     "messages[0].content", "empty"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', 2, "messages", "no assistant turn"),
    ('{"messages": [{"role": "assistant", "content": "hi"}]}', 2, "messages", "no user turn"),
    ('{"prompt": "p"}', 2, "completion", "missing"),
    ('{"text": "free text"}', 2, None, "no 'messages'"),
    ('[1, 2]', 2, None, "JSON object"),
]


@pytest.mark.parametrize("line,lineno,field,words", BAD_LINES)
def test_bad_records_are_errors_naming_file_line_and_field(tmp_path: Path, line: str, lineno: int,
                                                            field: str | None, words: str) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [chat("ok?", "ok."), line])
    with pytest.raises(InputError) as info:
        load_training([str(path)])
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), lineno, field)
    assert words in str(err) and f"{path}:{lineno}" in str(err)


def test_non_utf8_bytes_are_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(chat("ok?", "ok.")).encode() + b"\n" + b'{"question": "caf\xe9", "answer": "x"}\n')
    with pytest.raises(InputError, match="not valid UTF-8") as info:
        load_training([str(path)])
    assert info.value.line == 2


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(InputError, match="no training records"):
        load_training([str(path)])


def test_skip_invalid_skips_and_counts_bad_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [chat("ok?", "ok."), "{broken", chat("ok2?", "ok2.")])
    training = load_training([str(path)], skip_invalid=True)
    assert [p.line for p in training.pairs] == [1, 3]
    assert [(s.line, "malformed JSON" in s.reason) for s in training.skipped] == [(2, True)]
    assert training.files[0].skipped == 1


def test_parquet_without_question_answer_columns_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["x"]}), path)
    with pytest.raises(InputError, match="has no 'messages', .* or 'question'/'answer' column; its columns: text"):
        load_training([str(path)])


def test_parquet_empty_answer_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["a?", "b?"], "answer": ["fine", None]}), path)
    with pytest.raises(InputError) as info:
        load_training([str(path)])
    assert (info.value.row, info.value.field) == (2, "answer")
    assert "bad.parquet: row 2: field 'answer': is missing" in str(info.value)
