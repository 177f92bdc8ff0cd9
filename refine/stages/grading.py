"""Judging an answer against a reference when the eval set gives no verdict.

An answer is **good** when its normalised text equals the reference's, or when all of these hold:

* token F1 (SQuAD-style: lower case, punctuation and articles dropped) ≥ ``f1_min``;
* key-token recall ≥ ``key_recall_min``: the share of the reference's content words that are
  not already in the question (stop words dropped) and that the answer contains. This is what
  catches "lives in Paris" against "lives in Rome": one changed word barely moves F1 or
  embedding similarity, but it is the only word that answers the question;
* cosine similarity of the two texts under the embedding model ≥ ``semantic_min``;
* with ``require_numbers``: every number in the reference that the question does not already
  contain appears in the answer ("600 requests" is not "6,000 requests", whatever F1 says).

The defaults (F1 0.2, key recall 0.5, cosine 0.4, numbers on) reproduce 124 of the 127 given
verdicts of sample_data/eval.jsonl; the misses are good answers worded far from their
reference. A grader is a fallback: give verdicts when you have them.

Otherwise it is **bad**. Every component is kept in the run directory so a verdict can be audited.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, InputError
from ..settings import GradeSettings
from ..core.text import normalize, tokens

if TYPE_CHECKING:
    from ..core.embeddings import EmbeddingModel
    from ..formats.evalset import EvalItem

__all__ = ["Grade", "GradeSettings", "grade_items", "key_recall", "numbers_present", "token_f1"]


@dataclass(frozen=True)
class Grade:
    verdict: str
    source: str          # "given" or "graded"
    exact: bool | None = None
    f1: float | None = None
    key_recall: float | None = None
    semantic: float | None = None
    numbers_ok: bool | None = None


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def numbers_present(prediction: str, reference: str, question: str) -> bool:
    """Whether every number the reference adds to the question is in the prediction."""
    return _numbers(reference) - _numbers(question) <= _numbers(prediction)


def _stem(token: str) -> str:
    """A crude suffix strip, enough that "lives" matches "live" and "files" matches "file"."""
    for suffix in ("ing", "ed", "s"):
        if len(token) > len(suffix) + 2 and token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def _stems(text: str) -> set[str]:
    return {_stem(t) for t in tokens(text)}


def key_recall(prediction: str, reference: str, question: str) -> float:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    asked = _stems(question)
    keys = {_stem(t) for t in tokens(reference) if t not in ENGLISH_STOP_WORDS} - asked
    if not keys:
        return 1.0
    return len(keys & _stems(prediction)) / len(keys)


def grade_items(items: list["EvalItem"], settings: GradeSettings,
                model: "EmbeddingModel | None", *, file: str | None = None) -> list[Grade]:
    """A Grade for every item: its given verdict, or one graded from its reference."""
    to_grade = [i for i, item in enumerate(items) if item.verdict is None]
    grades: list[Grade | None] = [None if item.verdict is None else Grade(item.verdict, "given")
                                  for item in items]
    if to_grade:
        missing = [items[i] for i in to_grade if items[i].answer is None]
        if missing:
            raise InputError("is needed to grade against the reference (no 'verdict' given)",
                             file=file, line=missing[0].line, field="answer")
        if model is None:
            raise ConfigError("grading answers against references needs the embedding model",
                              key="grade")
        answers = model.encode([items[i].answer for i in to_grade])
        references = model.encode([items[i].reference for i in to_grade])
        similarity = np.einsum("ij,ij->i", answers, references)
        for row, i in enumerate(to_grade):
            item = items[i]
            exact = normalize(item.answer) == normalize(item.reference)
            f1 = token_f1(item.answer, item.reference)
            recall = key_recall(item.answer, item.reference, item.question)
            semantic = float(similarity[row])
            numbers_ok = numbers_present(item.answer, item.reference, item.question)
            good = exact or (f1 >= settings.f1_min and recall >= settings.key_recall_min
                             and semantic >= settings.semantic_min
                             and (numbers_ok or not settings.require_numbers))
            grades[i] = Grade("good" if good else "bad", "graded", exact, round(f1, 6),
                              round(recall, 6), round(semantic, 6), numbers_ok)
    return [g for g in grades if g is not None]


def missing_key_words(answer: str, reference: str, question: str) -> list[str]:
    """The reference's key words (as :func:`key_recall` counts them) that the answer lacks."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    asked, have = _stems(question), _stems(answer)
    missing: list[str] = []
    for token in tokens(reference):
        stem = _stem(token)
        if token not in ENGLISH_STOP_WORDS and stem not in asked and stem not in have and token not in missing:
            missing.append(token)
    return missing


def explain(verdict: str, source: str, settings: GradeSettings, *, f1: float | None = None,
            key_recall_value: float | None = None, semantic: float | None = None,
            numbers_ok: bool | None = None, answer: str | None = None, reference: str | None = None,
            question: str | None = None) -> str:
    """Why an answer got its verdict, in words a reader can check against the reference."""
    if source != "graded":
        return "verdict given in the eval set"
    if verdict == "good":
        return "graded good: close enough to the reference"
    reasons = []
    if key_recall_value is not None and key_recall_value < settings.key_recall_min:
        words = missing_key_words(answer or "", reference or "", question or "") if reference else []
        shown = f" (missing: {', '.join(words[:5])})" if words else ""
        reasons.append(f"{key_recall_value:.0%} of the reference's key words < {settings.key_recall_min:.0%}{shown}")
    if settings.require_numbers and numbers_ok is False:
        reasons.append("a number the reference gives is not in the answer")
    if f1 is not None and f1 < settings.f1_min:
        reasons.append(f"word overlap F1 {f1:.2f} < {settings.f1_min:g}")
    if semantic is not None and semantic < settings.semantic_min:
        reasons.append(f"meaning (embedding cosine) {semantic:.2f} < {settings.semantic_min:g}")
    return "graded bad: " + ("; ".join(reasons) or "not close enough to the reference")
