"""Reading fine-tuning data into training pairs.

Sources (:mod:`refine.formats.sources`): JSONL, a JSON array, CSV/TSV, Parquet, or a saved Hugging
Face dataset (``DIR``, or ``DIR:split`` for a ``DatasetDict``). Record layouts
(:mod:`refine.formats.layouts`): OpenAI ``messages``, ShareGPT ``conversations``, Alpaca
``instruction``/``input``/``output``, ``prompt``/``completion`` and ``question``/``answer``,
detected per record (JSONL) or per file (tables), or named with ``format``.

Each pair is traced to its file and its line (JSONL) or 1-based row (tables), and to a
``file_id``: the record's own ``file_id`` when it has one, else ``file-<sha256 of the file>``.
Unknown fields are left alone: emission copies kept records unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError
from .layouts import Layout, Located, detect_layout, get_layout
from .sources import Source, open_source, read_rows, source_digest
from ..core.text import pair_key

__all__ = ["SkippedLine", "TrainingFile", "TrainingInput", "TrainingPair", "TrainingSet",
           "load_training", "parse_training_record"]


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
    format: str                  # see refine.formats.sources.FORMATS
    records: int
    skipped: int
    layout: str | None = None    # the layout named, or detected for a table; None: per line (JSONL)
    rows: int | None = None      # rows of a table source, valid or not


@dataclass(frozen=True)
class TrainingInput:
    """A training source and, optionally, the record layout to read it with."""

    path: str
    format: str | None = None    # a layout name (refine.formats.layouts.LAYOUTS); None: detect

    @classmethod
    def of(cls, value: "str | Path | TrainingInput") -> "TrainingInput":
        return value if isinstance(value, TrainingInput) else cls(str(value))


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


def parse_training_record(record: Any, *, file: str, line: int | None = None,
                          row: int | None = None,
                          layout: Layout | None = None) -> tuple[str, str, str | None, Layout]:
    """(question, answer, system prompt, layout) of one record, or an InputError naming the field."""
    where = Located(file, line, row)
    if not isinstance(record, dict):
        raise where.error(f"expected a JSON object, got {type(record).__name__}")
    layout = layout or detect_layout(set(record), where, record)
    question, answer, system = layout.parse(record, where)
    return question, answer, system, layout


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


def _load_jsonl(source: Source, sha: str, skip_invalid: bool, skipped: list[SkippedLine],
                layout: Layout | None) -> tuple[list[TrainingPair], int, str | None, None]:
    name = source.spec
    default_id = _derived_file_id(sha)
    pairs: list[TrainingPair] = []
    n_skipped = 0
    for number, raw in iter_jsonl_lines(source.path):
        if not raw.strip():
            continue
        try:
            record = decode_json_line(raw, file=name, line=number)
            question, answer, system, _ = parse_training_record(record, file=name, line=number,
                                                                layout=layout)
        except InputError as exc:
            if not skip_invalid:
                raise
            skipped.append(SkippedLine(name, number, str(exc)))
            n_skipped += 1
            continue
        pairs.append(TrainingPair(pair_key(question, answer), name, number,
                                  _record_file_id(record, default_id), question, answer, system))
    # Each line of a JSONL file has its own layout unless one was named.
    return pairs, n_skipped, layout.name if layout else None, None


def _load_table(source: Source, sha: str, skip_invalid: bool, skipped: list[SkippedLine],
                layout: Layout | None) -> tuple[list[TrainingPair], int, str | None, int]:
    name = source.spec
    rows = read_rows(source)
    if rows.count == 0:
        return [], 0, layout.name if layout else None, 0
    if layout is None:
        first = next(iter(rows))[1]
        layout = detect_layout(set(rows.columns), Located(name), first, columns=True)
    default_id = _derived_file_id(sha)
    pairs: list[TrainingPair] = []
    n_skipped = 0
    for row, record in rows:
        try:
            question, answer, system, _ = parse_training_record(record, file=name, row=row,
                                                                layout=layout)
        except InputError as exc:
            if not skip_invalid:
                raise
            skipped.append(SkippedLine(name, row, str(exc)))
            n_skipped += 1
            continue
        pairs.append(TrainingPair(pair_key(question, answer), name, row,
                                  _record_file_id(record, default_id), question, answer, system))
    return pairs, n_skipped, layout.name, rows.count


def load_training(paths: Sequence["str | Path | TrainingInput"], *, skip_invalid: bool = False,
                  layout: str | None = None) -> TrainingSet:
    """Read every training source; raise InputError on the first bad record unless `skip_invalid`.

    `layout` names the record layout of every source that does not name its own.
    """
    if not paths:
        raise InputError("no training file given")
    pairs: list[TrainingPair] = []
    files: list[TrainingFile] = []
    skipped: list[SkippedLine] = []
    seen: set[tuple[Path, str | None]] = set()
    for entry in map(TrainingInput.of, paths):
        source = open_source(entry.path)
        if source.identity() in seen:
            raise InputError("given twice", file=entry.path)
        seen.add(source.identity())
        named = entry.format or layout
        forced = get_layout(named) if named else None
        sha = source_digest(source)
        loader = _load_table if source.is_table else _load_jsonl
        file_pairs, n_skipped, used, n_rows = loader(source, sha, skip_invalid, skipped, forced)
        if not file_pairs:
            raise InputError("has no training records" + (" left after skipping invalid lines"
                                                           if n_skipped else ""), file=entry.path)
        pairs.extend(file_pairs)
        files.append(TrainingFile(entry.path, sha, source.format, len(file_pairs), n_skipped,
                                  used, n_rows))
    return TrainingSet(pairs, files, skipped)
