"""The grader used when an eval item has a reference but no verdict."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from refine import ConfigError, GradeSettings, load_eval
from refine.core.embeddings import EmbeddingModel
from refine.formats.evalset import EvalItem
from refine.stages.grading import grade_items, key_recall, numbers_present, token_f1

from .conftest import SAMPLE


def test_token_f1_ignores_case_punctuation_and_articles() -> None:
    assert token_f1("The cat sat.", "a CAT sat") == 1.0
    assert token_f1("cat", "dog") == 0.0
    assert token_f1("cat sat on mat", "cat sat") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_key_recall_looks_at_what_the_question_does_not_already_say() -> None:
    question = "Where does Alice live?"
    assert key_recall("Alice lives in Rome.", "Alice lives in Rome.", question) == 1.0
    assert key_recall("Alice lives in Paris.", "Alice lives in Rome.", question) == 0.0
    assert key_recall("Alice now lives in Rome.", "She lives in Rome, Italy.", question) == 0.5


def test_numbers_the_reference_adds_must_be_in_the_answer() -> None:
    assert numbers_present("Up to 6,000 requests a minute.", "6000 per minute", "What is the limit?")
    assert not numbers_present("Up to 600 requests.", "6,000 per minute", "What is the limit?")
    assert numbers_present("Yes.", "Yes, 20 GB works.", "Can I upload 20 GB?")


def test_given_verdicts_are_kept_and_missing_ones_graded() -> None:
    items = [EvalItem("a", 1, "Where does Alice live?", "Alice lives in Rome.", verdict="bad"),
             EvalItem("b", 2, "Where does Alice live?", "Alice lives in Rome.", reference="She lives in Rome."),
             EvalItem("c", 3, "Where does Alice live?", "Alice lives in Paris.", reference="Alice lives in Rome.")]
    grades = grade_items(items, GradeSettings(), EmbeddingModel())
    assert [(g.verdict, g.source) for g in grades] == [("bad", "given"), ("good", "graded"), ("bad", "graded")]
    assert grades[2].key_recall == 0.0 and grades[1].semantic > 0.7


def test_the_grader_reproduces_the_sample_verdicts() -> None:
    items = load_eval(str(SAMPLE / "eval.jsonl")).items
    graded = grade_items([replace(i, verdict=None) for i in items], GradeSettings(), EmbeddingModel())
    agree = sum(g.verdict == i.verdict for g, i in zip(graded, items))
    assert agree / len(items) >= 0.95
    kinds = json.loads((SAMPLE / "planted.json").read_text())["eval_kinds"]
    # every planted-defect answer is caught: a grader that misses them would hide the defects
    missed = [i.id for g, i in zip(graded, items) if kinds.get(i.id) in ("wrong_fact", "over_refusal")
              and g.verdict != "bad"]
    assert missed == []


def test_grade_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="grade.f1_min"):
        GradeSettings(f1_min=2)
