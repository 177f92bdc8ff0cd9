"""Reading the evaluation set: the questions, the fine-tuned model's answers, and how each was judged.

One JSON object per line::

    {"id": "ev-1", "question": "...", "answer": "...", "system_prompt": "...",
     "reference": "...", "verdict": "good" | "bad"}

``question`` is required. ``verdict`` may be left out when ``reference`` is given: the
grader (:mod:`refine.grading`) then judges the answer against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .training import SkippedLine, decode_json_line, iter_jsonl_lines

__all__ = ["EvalItem", "EvalSet", "load_eval"]

VERDICTS = ("good", "bad")


@dataclass(frozen=True)
class EvalItem:
    id: str
    line: int
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


def _optional_text(record: dict, key: str, *, file: str, line: int) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"must be a string, got {type(value).__name__}", file=file, line=line,
                         field=key)
    return value if value.strip() else None


def _parse_item(record: object, *, file: str, line: int) -> EvalItem:
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}", file=file, line=line)
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        state = "missing" if question is None else "empty or not a string"
        raise InputError(f"is {state}", file=file, line=line, field="question")
    raw_id = record.get("id", f"line-{line}")
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip():
        raise InputError("must be a non-empty string or integer", file=file, line=line, field="id")
    verdict = _optional_text(record, "verdict", file=file, line=line)
    if verdict is not None:
        verdict = verdict.strip().lower()
        if verdict not in VERDICTS:
            raise InputError(f"is {record['verdict']!r}; expected 'good' or 'bad'", file=file,
                             line=line, field="verdict")
    reference = _optional_text(record, "reference", file=file, line=line)
    if verdict is None and reference is None:
        raise InputError("no 'verdict' and no 'reference' to grade the answer against",
                         file=file, line=line, field="verdict")
    return EvalItem(
        id=str(raw_id),
        line=line,
        question=question,
        answer=_optional_text(record, "answer", file=file, line=line),
        system_prompt=_optional_text(record, "system_prompt", file=file, line=line),
        reference=reference,
        verdict=verdict,
    )


def load_eval(path: str, *, skip_invalid: bool = False) -> EvalSet:
    """Read and validate an eval set; raise InputError naming file, line and field."""
    name = str(path)
    if not Path(name).is_file():
        raise InputError("no such file", file=name)
    items: list[EvalItem] = []
    skipped: list[SkippedLine] = []
    first_line: dict[str, int] = {}
    for number, raw in iter_jsonl_lines(Path(name)):
        if not raw.strip():
            continue
        try:
            item = _parse_item(decode_json_line(raw, file=name, line=number), file=name, line=number)
            if item.id in first_line:
                raise InputError(f"duplicate id {item.id!r} (first on line {first_line[item.id]})",
                                 file=name, line=number, field="id")
        except InputError as exc:
            if not skip_invalid:
                raise
            skipped.append(SkippedLine(name, number, str(exc)))
            continue
        first_line[item.id] = number
        items.append(item)
    if not items:
        raise InputError("has no eval items", file=name)
    return EvalSet(name, items, skipped)
