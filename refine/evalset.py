"""Reading the evaluation set: the questions, the fine-tuned model's answers, and how each was judged.

One record per eval item, from any source training data can come from (:mod:`refine.sources`:
JSONL, a JSON array, CSV/TSV, Parquet, a saved Hugging Face dataset)::

    {"id": "ev-1", "question": "...", "answer": "...", "system_prompt": "...",
     "reference": "...", "verdict": "good" | "bad"}

The question and the model's answer may also sit in any training layout
(:mod:`refine.layouts`): a chat whose last turn is the model's answer (or a user turn, when
the answer is to be generated), Alpaca ``instruction``/``output``, ``prompt``/``completion``.
``id``, ``reference``, ``verdict`` and ``system_prompt`` are fields of the record whatever its
layout. A question is required; the answer is optional (a service may generate it).
``verdict`` may be left out when ``reference`` is given: the grader (:mod:`refine.grading`)
then judges the answer against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError
from .layouts import Layout, Located, detect_layout, get_layout
from .sources import open_source, read_rows
from .training import SkippedLine, decode_json_line, iter_jsonl_lines

__all__ = ["EvalItem", "EvalSet", "load_eval"]

VERDICTS = ("good", "bad")


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


def _parse_item(record: object, where: Located, layout: Layout | None, judged: bool) -> EvalItem:
    if not isinstance(record, dict):
        raise where.error(f"expected a JSON object, got {type(record).__name__}")
    layout = layout or detect_layout(set(record), where, record, answer_required=False)
    question, answer, turn_system = layout.parse(record, where, answer_required=False)
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


def _records(name: str):
    """(Located, record) of every non-blank record of the eval source."""
    source = open_source(name)
    if source.is_table:
        for row, record in read_rows(source):
            yield Located(name, row=row), record
        return
    for number, raw in iter_jsonl_lines(source.path):
        if raw.strip():
            where = Located(name, line=number)
            try:
                yield where, decode_json_line(raw, file=name, line=number)
            except InputError as exc:
                yield where, exc


def load_eval(path: str, *, skip_invalid: bool = False, format: str | None = None,
              questions_only: bool = False) -> EvalSet:
    """Read and validate an eval set; raise InputError naming file, line (or row) and field.

    `format` names the record layout (detected per record when not given). With
    `questions_only`, items need no verdict or reference (what the leakage check reads).
    """
    name = str(path)
    layout = get_layout(format, key="eval_format") if format else None
    items: list[EvalItem] = []
    skipped: list[SkippedLine] = []
    first: dict[str, int] = {}
    for where, record in _records(name):
        position = where.line if where.line is not None else where.row
        try:
            if isinstance(record, InputError):
                raise record
            item = _parse_item(record, where, layout, not questions_only)
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
