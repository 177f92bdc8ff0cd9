"""compare: agreement between two runs over the same eval set."""

from __future__ import annotations

from pathlib import Path

import pytest

from refine import CollectSettings, RunDirError, collect, compare, flag

from .conftest import SAMPLE, people_dataset

TRAIN = [str(SAMPLE / "train" / "support_faq.jsonl"), str(SAMPLE / "train" / "product_docs.jsonl")]


def test_a_run_agrees_with_itself_completely(sample_run: dict) -> None:
    result = compare(sample_run["run"], sample_run["run"])
    assert (result.topk_overlap, result.topk_jaccard, result.blame_spearman) == (1.0, 1.0, 1.0)
    assert result.flagged_a == result.flagged_b == result.flagged_both == 13
    assert result.flagged_jaccard == 1.0 and result.items_compared == 146


def test_two_scorings_agree_partly_and_the_figures_say_how_much(sample_run: dict, tmp_path: Path) -> None:
    other = tmp_path / "qa-only"
    collect(TRAIN, str(SAMPLE / "eval.jsonl"), other,
            CollectSettings(backend_options={"answer_weight": 0.0}), progress=False)
    flag(other)
    result = compare(sample_run["run"], other)
    assert 0.5 < result.topk_overlap < 1.0 and 0.3 < result.blame_spearman < 1.0
    # The scorings cite differently, but the flags come from what the texts say, so they agree.
    assert result.flagged_both == 13 and result.to_json()["backend_b"] == "embedding"


def test_runs_over_different_eval_sets_cannot_be_compared(sample_run: dict, tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data")
    collect([str(data["train"])], str(data["eval"]), tmp_path / "people", progress=False)
    with pytest.raises(RunDirError, match="share no finished eval items"):
        compare(sample_run["run"], tmp_path / "people")
