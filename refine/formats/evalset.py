"""Reading the evaluation set: the questions, the fine-tuned model's answers, and how each was judged.

One record per eval item, from any source training data can come from (:mod:`refine.formats.sources`:
JSONL, a JSON array, CSV/TSV, Parquet, a saved Hugging Face dataset)::

    {"id": "ev-1", "question": "...", "answer": "...", "system_prompt": "...",
     "reference": "...", "verdict": "good" | "bad"}

The question and the model's answer may also sit in any training layout
(:mod:`refine.formats.layouts`): a chat whose last turn is the model's answer (or a user turn, when
the answer is to be generated), Alpaca ``instruction``/``output``, ``prompt``/``completion``.
``id``, ``reference``, ``verdict`` and ``system_prompt`` are fields of the record whatever its
layout, and so is ``answer`` where the layout's own answer is not there (``prompt``/``answer``).
A question is required; the answer is optional (a service may generate it) unless the caller
needs it (``need_answers``). A table (CSV, Parquet, a dataset) is judged by its header first: one
without a question column, or without an answer column that is needed, is an error naming its
columns.
``verdict`` may be left out when ``reference`` is given: the grader (:mod:`refine.stages.grading`)
then judges the answer against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..errors import InputError
from .layouts import LAYOUTS, Layout, Located, detect_layout, get_layout
from .sources import Source, open_source, read_rows
from .training import SkippedLine, decode_json_line, iter_jsonl_lines

__all__ = ["EvalItem", "EvalSet", "load_eval"]

VERDICTS = ("good", "bad")
#: The fields (or columns) that hold an eval item's question, one per layout.
QUESTION_FIELDS = tuple(next((f for f in layout.fields if f != layout.answer_field), layout.answer_field)
                        for layout in LAYOUTS.values())


@dataclass(frozen=True)
class EvalItem:
    id: str
    line: int                      # the line (JSONL) or 1-based row (tables) of the eval set
    question: str
    answer: str | None = None
    system_prompt: str | None = None
    reference: str | None = None
    verdict: str | None = None


@dataclass
class EvalSet:
    path: str
    items: list[EvalItem]
    skipped: list[SkippedLine]


def _optional_text(record: dict, key: str, where: Located) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise where.error(f"must be a string, got {type(value).__name__}", key)
    return value if value.strip() else None


def _answer_place(layout: Layout) -> str:
    """Where an eval record of this layout keeps the model's answer."""
    if layout.fields == (layout.answer_field,):   # a conversation
        return f"the last assistant turn of {layout.answer_field!r}, or an 'answer' field"
    return "'answer'" if layout.answer_field == "answer" else f"{layout.answer_field!r} or 'answer'"


def _parse_item(record: object, where: Located, layout: Layout | None, judged: bool,
                need_answers: str | None) -> EvalItem:
    if not isinstance(record, dict):
        raise where.error(f"expected a JSON object, got {type(record).__name__}")
    layout = layout or detect_layout(set(record), where, record, answer_required=False)
    question, answer, turn_system = layout.parse(record, where, answer_required=False)
    if answer is None and layout.answer_field != "answer":
        answer = _optional_text(record, "answer", where)
    if need_answers is not None and not (isinstance(answer, str) and answer.strip()):
        raise where.error(f"is missing, and {need_answers} needs the model's answer: expected "
                          f"{_answer_place(layout)}", "answer")
    position = where.line if where.line is not None else where.row
    raw_id = record.get("id")
    if raw_id is None or raw_id == "":
        raw_id = f"{'line' if where.line is not None else 'row'}-{position}"
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip():
        raise where.error("must be a non-empty string or integer", "id")
    verdict = _optional_text(record, "verdict", where)
    if verdict is not None:
        verdict = verdict.strip().lower()
        if verdict not in VERDICTS:
            raise where.error(f"is {record['verdict']!r}; expected 'good' or 'bad'", "verdict")
    reference = _optional_text(record, "reference", where)
    if judged and verdict is None and reference is None:
        raise where.error("no 'verdict' and no 'reference' to grade the answer against", "verdict")
    return EvalItem(
        id=str(raw_id),
        line=position,
        question=question,
        answer=answer if isinstance(answer, str) and answer.strip() else None,
        system_prompt=_optional_text(record, "system_prompt", where) or turn_system,
        reference=reference,
        verdict=verdict,
    )


def _table_layout(columns: list[str], first: dict, name: str, need_answers: str | None) -> Layout:
    """The layout of every row of an eval table, judged by its header."""
    keys = set(columns)
    found = ", ".join(columns)
    if not any(layout.matches(keys, first, answer_required=False) for layout in LAYOUTS.values()):
        raise InputError(f"no question column: found columns {found}; expected one of "
                         f"{', '.join(QUESTION_FIELDS)}", file=name)
    layout = detect_layout(keys, Located(name), first, answer_required=False, columns=True)
    if need_answers is not None and layout.answer_field not in keys and "answer" not in keys:
        raise InputError(f"no answer column, and {need_answers} needs the model's answer: found "
                         f"columns {found}; expected {_answer_place(layout)}", file=name)
    return layout


def _records(name: str, layout: Layout | None,
             need_answers: str | None) -> tuple[Layout | None, Iterator[tuple[Located, object]]]:
    """The layout every record has (None: each its own), and (Located, record) of every
    non-blank record of the eval source."""
    source = open_source(name)
    if source.is_table:
        rows = read_rows(source)
        if layout is None and rows.count:
            layout = _table_layout(rows.columns, next(iter(rows))[1], name, need_answers)
        return layout, ((Located(name, row=row), record) for row, record in rows)
    return layout, _jsonl_records(source, name)


def _jsonl_records(source: Source, name: str) -> Iterator[tuple[Located, object]]:
    for number, raw in iter_jsonl_lines(source.path):
        if raw.strip():
            where = Located(name, line=number)
            try:
                yield where, decode_json_line(raw, file=name, line=number)
            except InputError as exc:
                yield where, exc


def load_eval(path: str, *, skip_invalid: bool = False, format: str | None = None,
              questions_only: bool = False, need_answers: str | None = None) -> EvalSet:
    """Read and validate an eval set; raise InputError naming file, line (or row) and field.

    `format` names the record layout (detected per record when not given; once from the header
    for a table). With `questions_only`, items need no verdict or reference (what the leakage
    check reads). `need_answers` names what needs every item's answer (``"the 'embedding'
    backend"``): an item without one is then invalid, and the error says who needs it.
    """
    name = str(path)
    layout = get_layout(format, key="eval_format") if format else None
    items: list[EvalItem] = []
    skipped: list[SkippedLine] = []
    first: dict[str, int] = {}
    layout, records = _records(name, layout, need_answers)
    for where, record in records:
        position = where.line if where.line is not None else where.row
        try:
            if isinstance(record, InputError):
                raise record
            item = _parse_item(record, where, layout, not questions_only, need_answers)
            if item.id in first:
                unit = "line" if where.line is not None else "row"
                raise where.error(f"duplicate id {item.id!r} (first on {unit} {first[item.id]})", "id")
        except InputError as exc:
            if not skip_invalid:
                raise
            skipped.append(SkippedLine(name, position, str(exc)))
            continue
        first[item.id] = position
        items.append(item)
    if not items:
        raise InputError("has no eval items", file=name)
    return EvalSet(name, items, skipped)
