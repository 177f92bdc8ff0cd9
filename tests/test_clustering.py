"""cluster: failure modes of the bad answers, their driving pairs, themes of the flagged pairs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refine import ClusterSettings, ConfigError, RunDirError, cluster, collect, flag, read_flags
from refine.stages.clustering import agglomerate, name_modes

from .conftest import ROOT, SAMPLE, people_dataset, planted_pairs


def test_each_planted_defect_forms_its_own_mode_driven_by_the_planted_pairs(sample_run: dict) -> None:
    run = sample_run["run"]
    kinds = json.loads((SAMPLE / "planted.json").read_text())
    topic_of = {e: f"{kinds['eval_kinds'][e]}:{kinds['eval_topics'][e]}" for e in kinds["eval_kinds"]}
    items = pd.read_parquet(run / "clusters.parquet")
    items["truth"] = items["eval_id"].map(topic_of)
    modes = items[items["cluster"] >= 0].groupby("cluster")["truth"].agg(set)
    kinds_per_mode = [{t.split(":")[0] for t in truths} for truths in modes]
    assert all(len(k) == 1 for k in kinds_per_mode), "a mode mixes defect kinds"
    # every planted wrong-fact topic and the refusals each have a mode of their own
    wrong_topics = [t for truths in modes for t in truths if t.startswith("wrong_fact")]
    assert len(set(wrong_topics)) == 3 and len(wrong_topics) == 3
    assert sum(k == {"over_refusal"} for k in kinds_per_mode) == 1
    # unexplained answers and one-off slips are not a failure mode
    assert not items.loc[items["cluster"] >= 0, "truth"].str.startswith(("unexplained", "slip")).any()

    table = pd.read_csv(run / "clusters.csv", keep_default_na=False)
    pairs = pd.read_parquet(run / "pairs.parquet").drop_duplicates("pair_id").set_index("pair_id")
    planted = planted_pairs()
    for row in table[table["cluster"] >= 0].itertuples():
        top = row.top_pair_ids.split()
        flagged_top = [(Path(pairs.at[p, "file"]).name, int(pairs.at[p, "line"])) for p in top]
        assert flagged_top[0] in planted, row.label
        assert all(p in planted for p in flagged_top[:2]), row.label


def test_flags_learn_their_modes_and_themes_under_one_numbering(sample_run: dict) -> None:
    flags = read_flags(sample_run["run"], with_modes=True)
    flagged = flags[flags["flagged"]]
    assert (flagged["failure_modes"] != "").all() and (flagged["theme"] != "").all()
    assert not flagged["multi_mode"].any()
    modes = pd.read_csv(sample_run["run"] / "clusters.csv")
    label_of = dict(zip(modes["cluster"], modes["label"]))
    for theme, failure_modes in zip(flagged["theme"], flagged["failure_modes"]):
        number, _, label = theme.partition(": ")
        assert label_of[int(number)] == label and theme in failure_modes.split(" | ")
    themes = pd.read_csv(sample_run["run"] / "themes.csv")
    assert themes["size"].sum() == len(flagged) == 13
    assert set(themes["theme"]) <= set(modes["cluster"]) and len(themes) == 4
    assert "failure_modes" not in pd.read_csv(sample_run["run"] / "flags.csv").columns   # flag's own file


def test_clustering_is_deterministic(sample_copy: dict) -> None:
    run = sample_copy["run"]
    before = {name: (run / name).read_bytes() for name in ("clusters.parquet", "clusters.csv", "flag_modes.parquet",
                                                            "themes.csv", "flags.csv")}
    cluster(run)
    assert {name: (run / name).read_bytes() for name in before} == before


def test_the_number_of_modes_follows_the_distances() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(8, 32) * 10
    points = np.concatenate([c + rng.normal(0, 0.5, size=(20, 32)) for c in centres[:3]])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    labels = agglomerate(points.astype(np.float32), 0.6)
    assert len(set(labels)) == 3
    # the two-stage path (micro-clusters first) finds the same groups
    two_stage = agglomerate(points.astype(np.float32), 0.6, max_direct=20)
    assert pd.crosstab(labels, two_stage).gt(0).sum(axis=1).eq(1).all()


def test_a_mode_is_named_by_its_most_central_question_that_reads_as_a_name() -> None:
    long = ("I bought an annual plan three weeks ago and it did not work out for the team. "
            "Can we still get our money back?")
    questions = ["Refund window?", "How long is the refund window?", long, "What is the refund policy?",
                 "When can I call phone support?"]
    vectors = np.array([[1.0, 0.5], [1.0, 0.1], [1.0, 0.0], [1.0, -0.1], [0.0, 1.0]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # The question nearest the mode's centre; an unclustered one names nothing.
    names = name_modes(questions, vectors, np.array([0, 0, -1, 0, 1]))
    assert names == {0: "How long is the refund window?", 1: "When can I call phone support?"}
    # The nearest is too long to read as a name: the nearest short one, when nearly as near
    # (ties to the earlier question) ...
    assert name_modes(questions, vectors, np.array([0, 0, 0, 0, 1]))[0] == "How long is the refund window?"
    # ... else its asking sentence, or its first words.
    assert name_modes([long, long, "Refund window?"], vectors[[2, 2, 4]], np.array([0, 0, 0]))[0] == \
        "Can we still get our money back?"
    names = name_modes(["word " * 40, "x | y"], vectors[:2], np.array([0, 1]))
    assert names[0] == ("word " * 14).strip() + "…" and names[1] == "x / y"


def test_the_quickstart_modes_are_named_by_their_own_questions(sample_run: dict) -> None:
    modes = pd.read_csv(sample_run["run"] / "clusters.csv", keep_default_na=False)
    modes = modes[modes["cluster"] >= 0]
    items = pd.read_parquet(sample_run["run"] / "items.parquet").set_index("eval_id")
    members = pd.read_parquet(sample_run["run"] / "clusters.parquet")
    for row in modes.itertuples():
        questions = set(items.loc[members.loc[members["cluster"] == row.cluster, "eval_id"], "question"])
        assert row.label in questions and len(row.label) <= 72, row.label
    assert list(modes["label"]) == ["Can invoices be sent to our finance team's address instead of mine?",
                                    "Can I call support on a Sunday night?",
                                    "Is there a maximum file size for uploads?",
                                    "What is Northwind's refund policy?"]


def test_a_run_without_bad_answers_has_nothing_to_cluster(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data")
    lines = [l for l in Path(data["eval"]).read_text().splitlines() if '"good"' in l]
    Path(data["eval"]).write_text("\n".join(lines) + "\n")
    collect([str(data["train"])], str(data["eval"]), tmp_path / "run", progress=False)
    flag(tmp_path / "run")
    with pytest.raises(RunDirError, match="no bad answers"):
        cluster(tmp_path / "run")


def test_cluster_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="cluster.min_size"):
        ClusterSettings(min_size=0)


@pytest.mark.parametrize("seed", range(12))
def test_modes_of_pairs_are_what_the_loop_over_pairs_gives(seed: int) -> None:
    from refine.stages.clustering import _modes_of_pairs

    # The definition, a loop over the pairs, is kept beside the benchmark that times the two.
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from _oracles import modes_of_pairs_in_python
    finally:
        sys.path.remove(str(ROOT / "bench"))

    rng = np.random.default_rng(seed)
    n_modes, n_pairs = int(rng.integers(1, 9)), int(rng.integers(1, 400))
    names = {m: f"mode, {m} 'named' — ü" for m in range(n_modes)}
    centroids = {m: v / np.linalg.norm(v) for m, v in enumerate(rng.normal(size=(n_modes, 4)))}
    ids = [f"p{rng.integers(0, 10**6):06d}-{i}" for i in range(n_pairs)]
    rows = [(p, m, float(rng.integers(1, 5)) * 0.5, int(rng.integers(1, 4)))   # ties in blame and n
            for p in ids for m in range(n_modes) if rng.random() < 0.4]
    per_pair = pd.DataFrame(rows, columns=["pair_id", "cluster", "blame", "n_items"])
    flagged = [p for p in ids if rng.random() < 0.3]
    flags = pd.DataFrame({"pair_id": flagged, "file": [f"data/f{i % 3}.jsonl" for i in range(len(flagged))],
                          "line": pd.array(rng.integers(1, 10**6, len(flagged)), dtype="Int64")}).set_index("pair_id")
    settings = ClusterSettings(unrelated_similarity=float(rng.uniform(-0.5, 0.5)))
    table, themes = _modes_of_pairs(per_pair, flags, names, centroids, settings)
    want_table, want_themes = modes_of_pairs_in_python(per_pair, flags, names, centroids,
                                                       settings.unrelated_similarity)
    pd.testing.assert_frame_equal(table, want_table, check_dtype=False)
    assert table["multi_mode"].dtype == bool
    pd.testing.assert_frame_equal(themes, want_themes, check_dtype=False)
