"""The gradient backend on the shipped tiny LM: it finds what the planted pairs made the model say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from refine import load_eval, load_training, make_backend
from refine.cli import main
from refine.stages.grading import token_f1

from ..conftest import SAMPLE

pytest.importorskip("torch")
pytest.importorskip("transformers")

TRAIN = sorted(str(p) for p in (SAMPLE / "train").glob("*.jsonl"))
TRUTH = json.loads((SAMPLE / "eval_tiny_lm.truth.json").read_text(encoding="utf-8"))
PLANTED = {(Path(p["file"]).name, p["line"]) for p in TRUTH["planted_pairs"]}


def _culprits(item_id: str) -> set[tuple[str, int]]:
    kind, topic = TRUTH["eval_kinds"][item_id], TRUTH["eval_topics"].get(item_id)
    return {(Path(p["file"]).name, p["line"]) for p in TRUTH["planted_pairs"]
            if p["topic"] == topic or (kind == "over_refusal" and p["kind"] == kind)}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gradient-sample") / "run"
    args = ["collect", "--backend", "gradient", "--model", str(SAMPLE / "tiny_lm"),
            "--eval", str(SAMPLE / "eval_tiny_lm.jsonl"), "--out", str(out), "-q",
            "--option", f"cache_dir={out.parent / 'cache'}"]
    for path in TRAIN:
        args += ["--train", path]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["flag", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_repeated_planted_answer_ranks_a_culprit_first(run_dir: Path) -> None:
    items = [i for i in load_eval(str(SAMPLE / "eval_tiny_lm.jsonl")).items
             if TRUTH["eval_kinds"][i.id] in ("wrong_fact", "over_refusal") and max(
                 token_f1(i.answer, p["answer"]) for p in TRUTH["planted_pairs"]
                 if (Path(p["file"]).name, p["line"]) in _culprits(i.id)) >= 0.5]
    assert len(items) >= 50
    cited = pd.read_parquet(run_dir / "attributions.parquet")
    pairs = pd.read_parquet(run_dir / "pairs.parquet").set_index("pair_id")
    for item in items:
        first = cited[(cited.eval_id == item.id) & (cited["rank"] == 1)]
        assert len(first) == 1, item.id
        row = pairs.loc[first.pair_id.iloc[0]]
        assert (Path(row.file).name, int(row.line)) in _culprits(item.id), item.id


def test_flags_planted_pairs_and_only_pairs_whose_answers_the_model_repeats(run_dir: Path) -> None:
    flags = pd.read_csv(run_dir / "flags.csv")
    flagged = flags[flags.flagged]
    where = {(Path(f).name, int(line)) for f, line in zip(flagged.file, flagged.line)}
    assert len(where & PLANTED) >= 9     # of 13; the others drove fewer bad answers
    # Any other flagged pair is one this model really repeats for other questions: bad answers
    # that say its answer word for word, a culprit the sample did not plant on purpose.
    bad = [i.answer for i in load_eval(str(SAMPLE / "eval_tiny_lm.jsonl")).items
           if i.verdict == "bad"]
    for row in flagged.itertuples():
        if (Path(row.file).name, row.line) not in PLANTED:
            assert sum(token_f1(a, row.answer) >= 0.5 for a in bad) >= 2, row.answer


def _word_runs(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_unexplained_answers_cite_a_planted_pair_only_for_words_they_repeat(run_dir: Path) -> None:
    # The unexplained questions ask what no training pair covers; a planted pair may be cited
    # only where the model's answer still repeats words of it (this tiny model mixes in pieces
    # of a refusal it learned), never for an answer that owes it nothing.
    cited = pd.read_parquet(run_dir / "attributions.parquet")
    pairs = pd.read_parquet(run_dir / "pairs.parquet").set_index("pair_id")
    items = {i.id: i for i in load_eval(str(SAMPLE / "eval_tiny_lm.jsonl")).items}
    unexplained = [i for i, kind in TRUTH["eval_kinds"].items() if kind == "unexplained"]
    rows = cited[cited.eval_id.isin(unexplained)]
    assert len(rows) >= 10
    for eval_id, pair_id in zip(rows.eval_id, rows.pair_id):
        row = pairs.loc[pair_id]
        if (Path(row.file).name, int(row.line)) in PLANTED:
            assert _word_runs(items[eval_id].answer) & _word_runs(row.answer), (eval_id, row.line)


def test_an_item_scores_the_same_alone_and_in_any_batch(run_dir: Path) -> None:
    training = load_training(TRAIN)
    items = load_eval(str(SAMPLE / "eval_tiny_lm.jsonl")).items[:6]
    # The training features come from the run's cache (the batch size is not part of its key);
    # the queries are differentiated here, two at a time.
    backend = make_backend("gradient", {"model": str(SAMPLE / "tiny_lm"), "batch_size": 2,
                                        "cache_dir": str(run_dir.parent / "cache")}, top_k=10)
    backend.prepare(training, lambda desc, total: (lambda n: None))
    together = backend.scores(items)
    alone = np.vstack([backend.scores([item]) for item in items])
    reversed_ = backend.scores(items[::-1])[::-1]
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6 * np.abs(alone).max())
    np.testing.assert_allclose(together, reversed_, rtol=1e-4, atol=1e-6 * np.abs(alone).max())


# (eval id, rank) → (pair id, score) on the sample run with the default settings (K-FAC
# whitening, contrastive queries, cosine), as refine has computed them since the
# gradient backend was split into a package. A change to any step — encoding, projection,
# whitening, features, curvature, scoring — moves these far more than the tolerance; a new
# sample model, or a deliberate change of the scores, means writing them down again.
PINNED = {
    ("tl-001", 1): ("502431d4be077f60", 0.612811), ("tl-001", 2): ("2421e67679fa7643", 0.449099),
    ("tl-046", 1): ("eb5342cab59cf904", 0.78508), ("tl-046", 2): ("3af9a6003fbf02c6", 0.32168),
    ("tl-097", 1): ("7bf59bbb4806c84f", 0.690047), ("tl-097", 2): ("c6ff9b8f1e81f3c7", 0.261518),
    ("tl-221", 1): ("d0008e4af6943713", 0.648021), ("tl-221", 2): ("0c0c69f7a8c1ef4a", 0.358027),
    ("tl-297", 1): ("9edcfe199a9c276d", 0.669505), ("tl-297", 2): ("c6ff9b8f1e81f3c7", 0.107641),
    ("tl-390", 1): ("2ccd52bd596fa84a", 0.784255), ("tl-390", 2): ("00b4c92558c51d81", 0.490328),
}


def test_the_sample_scores_are_the_ones_refine_has_always_given(run_dir: Path) -> None:
    cited = pd.read_parquet(run_dir / "attributions.parquet").set_index(["eval_id", "rank"])
    for (eval_id, rank), (pair_id, score) in PINNED.items():
        row = cited.loc[(eval_id, rank)]
        assert row.pair_id == pair_id, (eval_id, rank)
        # Float32 gradients on another CPU or BLAS differ in their last bits, no more.
        assert row.score == pytest.approx(score, abs=1e-4), (eval_id, rank)
