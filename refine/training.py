"""Reading fine-tuning files into training pairs.

Accepted record shapes, one JSON object per line:

* chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``;
  a multi-turn record is attributed on its last assistant turn and the user turn before it;
* ``{"prompt": "...", "completion": "..."}``;
* ``{"question": "...", "answer": "..."}``;

and Parquet QA files with ``question``/``answer`` columns. Unknown fields are left alone:
emission copies kept lines byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ._atomic import sha256_file
from .errors import InputError
from .text import pair_key

__all__ = ["SkippedLine", "TrainingFile", "TrainingPair", "TrainingSet", "load_training",
           "parse_training_record"]

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class TrainingPair:
    """One Q/A pair of the fine-tuning data, traced to its file and line."""

    pair_id: str
    file: str
    line: int
    file_id: str
    question: str
    answer: str
    system_prompt: str | None = None


@dataclass(frozen=True)
class TrainingFile:
    path: str
    sha256: str
    format: str
    records: int
    skipped: int


@dataclass(frozen=True)
class SkippedLine:
    file: str
    line: int
    reason: str


@dataclass
class TrainingSet:
    """All pairs of all training files, in file order then line order."""

    pairs: list[TrainingPair]
    files: list[TrainingFile]
    skipped: list[SkippedLine] = field(default_factory=list)

    def unique_pairs(self) -> list[TrainingPair]:
        """One pair per pair_id (the first occurrence): what attribution scores."""
        seen: set[str] = set()
        out = []
        for pair in self.pairs:
            if pair.pair_id not in seen:
                seen.add(pair.pair_id)
                out.append(pair)
        return out


def _derived_file_id(sha256: str) -> str:
    return f"file-{sha256[:24]}"


def _require_text(value: Any, *, file: str, line: int, field_name: str) -> str:
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise InputError(f"is {kind}", file=file, line=line, field=field_name)
    if not value.strip():
        raise InputError("is empty", file=file, line=line, field=field_name)
    return value


def parse_training_record(record: Any, *, file: str, line: int) -> tuple[str, str, str | None]:
    """Return (question, answer, system_prompt) of one record, or raise InputError naming the field."""
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}", file=file, line=line)
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise InputError("must be a non-empty list", file=file, line=line, field="messages")
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                raise InputError("must be an object with 'role' and 'content'", file=file,
                                 line=line, field=where)
            role = message.get("role")
            if role not in ROLES:
                got = "missing" if role is None else repr(role)
                raise InputError(f"is {got}; expected one of {', '.join(ROLES)}", file=file,
                                 line=line, field=f"{where}.role")
            _require_text(message.get("content"), file=file, line=line, field_name=f"{where}.content")
        last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"),
                             default=None)
        if last_assistant is None:
            raise InputError("has no assistant turn", file=file, line=line, field="messages")
        user_turns = [i for i in range(last_assistant) if messages[i]["role"] == "user"]
        if not user_turns:
            raise InputError("has no user turn before the last assistant turn", file=file,
                             line=line, field="messages")
        systems = [m["content"] for m in messages if m["role"] == "system"]
        return (messages[user_turns[-1]]["content"], messages[last_assistant]["content"],
                systems[0] if systems else None)
    for q_field, a_field in (("prompt", "completion"), ("question", "answer")):
        if q_field in record or a_field in record:
            question = _require_text(record.get(q_field), file=file, line=line, field_name=q_field)
            answer = _require_text(record.get(a_field), file=file, line=line, field_name=a_field)
            system = record.get("system_prompt")
            return question, answer, system if isinstance(system, str) and system.strip() else None
    raise InputError("no 'messages', 'prompt'/'completion' or 'question'/'answer' field",
                     file=file, line=line)


def _record_file_id(record: Any, default: str) -> str:
    value = record.get("file_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) and value.strip() else default


def iter_jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, raw line bytes without the newline)."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            yield number, raw.rstrip(b"\r\n")


def decode_json_line(raw: bytes, *, file: str, line: int) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"is not valid UTF-8 (byte {exc.start + 1})", file=file, line=line) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", file=file,
                         line=line) from None


def _load_jsonl(path: Path, name: str, sha: str, skip_invalid: bool,
                skipped: list[SkippedLine]) -> tuple[list[TrainingPair], int]:
    default_id = _derived_file_id(sha)
    pairs: list[TrainingPair] = []
    n_skipped = 0
    for number, raw in iter_jsonl_lines(path):
        if not raw.strip():
            continue
        try:
            record = decode_json_line(raw, file=name, line=number)
            question, answer, system = parse_training_record(record, file=name, line=number)
        except InputError as exc:
            if not skip_invalid:
                raise
            skipped.append(SkippedLine(name, number, str(exc)))
            n_skipped += 1
            continue
        pairs.append(TrainingPair(pair_key(question, answer), name, number,
                                  _record_file_id(record, default_id), question, answer, system))
    return pairs, n_skipped


def _load_parquet(path: Path, name: str, sha: str, skip_invalid: bool,
                  skipped: list[SkippedLine]) -> tuple[list[TrainingPair], int]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(f"cannot read Parquet: {exc}", file=name) from None
    columns = set(table.column_names)
    for q_field, a_field in (("question", "answer"), ("prompt", "completion")):
        if {q_field, a_field} <= columns:
            break
    else:
        raise InputError("Parquet file needs 'question' and 'answer' columns", file=name)
    default_id = _derived_file_id(sha)
    file_ids = table.column("file_id").to_pylist() if "file_id" in columns else None
    systems = table.column("system_prompt").to_pylist() if "system_prompt" in columns else None
    pairs: list[TrainingPair] = []
    n_skipped = 0
    for row, (question, answer) in enumerate(zip(table.column(q_field).to_pylist(),
                                                 table.column(a_field).to_pylist()), start=1):
        try:
            question = _require_text(question, file=name, line=row, field_name=q_field)
            answer = _require_text(answer, file=name, line=row, field_name=a_field)
        except InputError as exc:
            if not skip_invalid:
                raise
            skipped.append(SkippedLine(name, row, str(exc)))
            n_skipped += 1
            continue
        file_id = file_ids[row - 1] if file_ids is not None else None
        system = systems[row - 1] if systems is not None else None
        pairs.append(TrainingPair(
            pair_key(question, answer), name, row,
            file_id if isinstance(file_id, str) and file_id.strip() else default_id,
            question, answer, system if isinstance(system, str) and system.strip() else None))
    return pairs, n_skipped


def load_training(paths: list[str] | tuple[str, ...], *, skip_invalid: bool = False) -> TrainingSet:
    """Read every training file; raise InputError on the first bad record unless `skip_invalid`."""
    if not paths:
        raise InputError("no training file given")
    pairs: list[TrainingPair] = []
    files: list[TrainingFile] = []
    skipped: list[SkippedLine] = []
    seen_paths: set[Path] = set()
    for name in paths:
        name = str(name)
        path = Path(name)
        if not path.is_file():
            raise InputError("no such file", file=name)
        if path.resolve() in seen_paths:
            raise InputError("given twice", file=name)
        seen_paths.add(path.resolve())
        sha = sha256_file(path)
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "jsonl"
        loader = _load_parquet if fmt == "parquet" else _load_jsonl
        file_pairs, n_skipped = loader(path, name, sha, skip_invalid, skipped)
        if not file_pairs:
            raise InputError("has no training records" + (" left after skipping invalid lines"
                                                           if n_skipped else ""), file=name)
        pairs.extend(file_pairs)
        files.append(TrainingFile(name, sha, fmt, len(file_pairs), n_skipped))
    return TrainingSet(pairs, files, skipped)
