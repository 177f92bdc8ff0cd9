"""`cluster`: group the bad answers into failure modes, and find the pairs that drive each.

How the number of clusters is chosen: the bad eval items ("Q: …\\nA: …") are embedded and
merged by average-linkage agglomerative clustering on cosine distance until the next merge
would join groups whose members are, on average, further apart than ``distance_threshold``
(0.6: cosine similarity 0.4). So the number of failure modes follows from how far apart the
answers are, not from a k given in advance; groups smaller than ``min_size`` are left
*unclustered* (cluster -1): one-off slips and hallucinations are not a failure mode. Above
``max_direct`` items the answers are first summarised by MiniBatchKMeans micro-clusters
(seeded) and the micro-cluster centroids are merged the same way, so memory stays linear.

Each failure mode is named by its most distinctive terms (class-based TF-IDF: a term's
frequency in the cluster times log(1 + average words per cluster / the term's frequency
across clusters)) and by its representative item (the one nearest the centroid). Its
driving pairs are ranked by blame *within the cluster* (level-weighted citations by the
cluster's items). Flagged pairs are grouped into themes the same way, and each flagged pair
learns which failure modes it drives; one that drives modes unrelated to each other (centroid
similarity below ``unrelated_similarity``) is called out.

Outputs: RUN/clusters.parquet (one row per bad item), RUN/clusters.csv (one row per failure
mode), RUN/cluster_pairs.parquet (cluster × pair blame), RUN/themes.csv, and new columns in
RUN/flags.csv (``failure_modes``, ``theme``, ``multi_mode``). Deterministic for the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._atomic import atomic_open, write_parquet
from .errors import ConfigError, RunDirError
from .rundir import ATTRIBUTIONS, FLAGS_CSV, FLAGS_JSON, ITEMS, PAIRS, RunDir
from .text import qa_text

__all__ = ["ClusterResult", "ClusterSettings", "cluster", "name_clusters", "agglomerate"]

CLUSTERS = "clusters.parquet"
CLUSTERS_CSV = "clusters.csv"
CLUSTER_PAIRS = "cluster_pairs.parquet"
THEMES_CSV = "themes.csv"
DEFAULT_WEIGHTS = {"high": 1.0, "medium": 0.5, "low": 0.25}


@dataclass(frozen=True)
class ClusterSettings:
    distance_threshold: float = 0.6
    min_size: int = 3
    top_pairs: int = 5
    max_direct: int = 3000
    unrelated_similarity: float = 0.3
    theme_distance_threshold: float = 0.6
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.distance_threshold < 2:
            raise ConfigError("must be in (0, 2)", key="cluster.distance_threshold")
        if not isinstance(self.min_size, int) or self.min_size < 1:
            raise ConfigError("must be an integer ≥ 1", key="cluster.min_size")
        if not isinstance(self.max_direct, int) or self.max_direct < 10:
            raise ConfigError("must be an integer ≥ 10", key="cluster.max_direct")


@dataclass(frozen=True)
class ClusterResult:
    run_dir: Path
    items: pd.DataFrame       # eval_id, cluster, label
    modes: pd.DataFrame       # one row per failure mode
    themes: pd.DataFrame      # one row per theme of flagged pairs


def agglomerate(vectors: np.ndarray, threshold: float, *, max_direct: int = 3000,
                seed: int = 0) -> np.ndarray:
    """Cluster labels (0..k-1) for L2-normalised `vectors`, cut at cosine distance `threshold`."""
    from sklearn.cluster import AgglomerativeClustering, MiniBatchKMeans

    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    if n <= max_direct:
        distances = np.clip(1.0 - vectors @ vectors.T, 0.0, 2.0)
        return AgglomerativeClustering(n_clusters=None, distance_threshold=threshold,
                                       metric="precomputed", linkage="average").fit_predict(distances)
    micro = MiniBatchKMeans(n_clusters=max_direct // 2, random_state=seed, n_init=1,
                            batch_size=4096).fit(vectors)
    centroids = micro.cluster_centers_
    centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    top = agglomerate(centroids.astype(np.float32), threshold, max_direct=max_direct, seed=seed)
    return top[micro.labels_]


def _relabel(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop groups below min_size to -1; number the rest 0.. by size (largest first), ties by
    first appearance, so that ids are stable and meaningful."""
    counts = pd.Series(labels).value_counts()
    keep = [c for c in counts.index if counts[c] >= min_size]
    first = {c: int(np.argmax(labels == c)) for c in keep}
    order = sorted(keep, key=lambda c: (-counts[c], first[c]))
    mapping = {c: i for i, c in enumerate(order)}
    return np.array([mapping.get(c, -1) for c in labels], dtype=np.int64)


def name_clusters(texts: list[str], labels: np.ndarray, top_terms: int = 4) -> dict[int, str]:
    """Class-based TF-IDF: the terms most distinctive of each cluster."""
    from sklearn.feature_extraction.text import CountVectorizer

    clusters = sorted(c for c in set(labels.tolist()) if c >= 0)
    if not clusters:
        return {}
    docs = [" ".join(t for t, l in zip(texts, labels) if l == c) for c in clusters]
    try:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b")
        counts = vectorizer.fit_transform(docs).toarray().astype(float)
    except ValueError:  # nothing but stop words
        return {c: f"mode {c}" for c in clusters}
    terms = vectorizer.get_feature_names_out()
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    average_words = counts.sum() / len(clusters)
    idf = np.log(1 + average_words / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    names = {}
    for row, c in enumerate(clusters):
        best = np.argsort(-scores[row], kind="stable")[:top_terms]
        names[c] = " / ".join(terms[j] for j in best if scores[row, j] > 0) or f"mode {c}"
    return names


def _weights(run: RunDir) -> dict[str, float]:
    if run.file(FLAGS_JSON).is_file():
        return json.loads(run.file(FLAGS_JSON).read_text(encoding="utf-8"))["settings"]["level_weights"]
    return DEFAULT_WEIGHTS


def _model_for(run: RunDir):
    from .embeddings import DEFAULT_MODEL, EmbeddingModel

    collect = run.settings().get("collect", {})
    model = collect.get("options", {}).get("model", DEFAULT_MODEL) if collect.get("backend") == "embedding" \
        else DEFAULT_MODEL
    return EmbeddingModel(model)


def cluster(run_dir: str | Path, settings: ClusterSettings | None = None, *, model: Any = None) -> ClusterResult:
    """Cluster a run's bad answers into failure modes; write the cluster files into RUN."""
    settings = settings or ClusterSettings()
    run = RunDir(run_dir)
    run.settings()
    run.require(ITEMS, ATTRIBUTIONS, PAIRS)
    items = pd.read_parquet(run.file(ITEMS), columns=["eval_id", "question", "answer", "verdict", "status"])
    bad = items[(items["verdict"] == "bad") & (items["status"] == "done")].reset_index(drop=True)
    if bad.empty:
        raise RunDirError(f"{run.path}: no bad answers to cluster")
    model = model or _model_for(run)
    texts = [qa_text(q, a or "") for q, a in zip(bad["question"], bad["answer"])]
    vectors = model.encode(texts)
    labels = _relabel(agglomerate(vectors, settings.distance_threshold,
                                  max_direct=settings.max_direct, seed=settings.seed), settings.min_size)
    names = name_clusters(texts, labels)
    bad = bad.assign(cluster=labels, label=[names.get(int(l), "unclustered") for l in labels])

    weights = _weights(run)
    citations = pd.read_parquet(run.file(ATTRIBUTIONS), columns=["eval_id", "pair_id", "influence_level"])
    citations = citations[citations["pair_id"].notna() & citations["eval_id"].isin(bad["eval_id"])]
    citations = citations.assign(weight=citations["influence_level"].map(weights).astype(float))
    citations = citations.groupby(["eval_id", "pair_id"], as_index=False)["weight"].max()
    citations = citations.merge(bad[["eval_id", "cluster"]], on="eval_id")
    sizes = bad.groupby("cluster").size()
    per_pair = citations[citations["cluster"] >= 0].groupby(["cluster", "pair_id"], as_index=False).agg(
        n_items=("eval_id", "nunique"), blame=("weight", "sum"))
    per_pair["share"] = per_pair["n_items"] / per_pair["cluster"].map(sizes)
    per_pair = per_pair.sort_values(["cluster", "blame", "n_items", "pair_id"],
                                    ascending=[True, False, False, True], kind="mergesort")

    pairs = pd.read_parquet(run.file(PAIRS), columns=["pair_id", "file", "line", "question", "answer"])
    first = pairs.drop_duplicates("pair_id").set_index("pair_id")
    centroids = {}
    rows = []
    for c in sorted(sizes.index):
        if c < 0:
            continue
        members = np.flatnonzero(labels == c)
        centroid = vectors[members].mean(axis=0)
        centroid /= max(np.linalg.norm(centroid), 1e-12)
        centroids[c] = centroid
        representative = members[int(np.argmax(vectors[members] @ centroid))]
        driving = per_pair[per_pair["cluster"] == c].head(settings.top_pairs)
        rows.append({
            "cluster": int(c), "label": names[c], "size": int(len(members)),
            "representative_question": bad.at[representative, "question"],
            "representative_answer": bad.at[representative, "answer"],
            "example_questions": " | ".join(bad.loc[members[:3], "question"]),
            "top_pairs": "; ".join(f"{first.at[p, 'file']}:{first.at[p, 'line']} (blame {b:g}, "
                                   f"{n}/{len(members)} answers)"
                                   for p, b, n in zip(driving["pair_id"], driving["blame"], driving["n_items"])),
            "top_pair_ids": " ".join(driving["pair_id"]),
        })
    modes = pd.DataFrame(rows, columns=["cluster", "label", "size", "representative_question",
                                        "representative_answer", "example_questions", "top_pairs",
                                        "top_pair_ids"])
    unclustered = int((labels < 0).sum())

    import pyarrow as pa
    write_parquet(run.file(CLUSTERS), pa.Table.from_pandas(
        bad[["eval_id", "cluster", "label"]], preserve_index=False))
    write_parquet(run.file(CLUSTER_PAIRS), pa.Table.from_pandas(per_pair.reset_index(drop=True),
                                                                 preserve_index=False))
    with atomic_open(run.file(CLUSTERS_CSV), "w", encoding="utf-8") as fh:
        modes.to_csv(fh, index=False, lineterminator="\n")
        if unclustered:
            fh.write(f"-1,unclustered,{unclustered},,,,,\n")
    themes = _annotate_flags(run, per_pair, names, centroids, settings, model)
    return ClusterResult(run.path, bad[["eval_id", "cluster", "label"]], modes, themes)


def _annotate_flags(run: RunDir, per_pair: pd.DataFrame, names: dict[int, str],
                    centroids: dict[int, np.ndarray], settings: ClusterSettings, model: Any) -> pd.DataFrame:
    """Add failure modes, themes and a multi-mode call-out to flags.csv (when flags exist)."""
    if not run.file(FLAGS_CSV).is_file():
        return pd.DataFrame(columns=["theme", "label", "size", "pairs"])
    from .flagging import read_flags

    flags = read_flags(run.path).drop(columns=["failure_modes", "theme", "multi_mode"], errors="ignore")
    modes_of = per_pair[per_pair["n_items"] >= 1].groupby("pair_id")["cluster"].apply(sorted)
    flagged = flags[flags["flagged"]].reset_index(drop=True)

    def unrelated(modes: list[int]) -> bool:
        return any(float(centroids[a] @ centroids[b]) < settings.unrelated_similarity
                   for i, a in enumerate(modes) for b in modes[i + 1:])

    flags["failure_modes"] = [" | ".join(f"{m}: {names[m]}" for m in modes_of.get(p, []))
                              for p in flags["pair_id"]]
    flags["multi_mode"] = [bool(f) and unrelated(modes_of.get(p, [])) for p, f in
                           zip(flags["pair_id"], flags["flagged"])]
    theme_rows = []
    flags["theme"] = ""
    if len(flagged):
        texts = [qa_text(q, a) for q, a in zip(flagged["question"], flagged["answer"])]
        labels = _relabel(agglomerate(model.encode(texts), settings.theme_distance_threshold,
                                      max_direct=settings.max_direct, seed=settings.seed), 1)
        theme_names = name_clusters(texts, labels, top_terms=3)
        theme_of = dict(zip(flagged["pair_id"], (f"{l}: {theme_names[l]}" for l in labels)))
        flags["theme"] = [theme_of.get(p, "") for p in flags["pair_id"]]
        for t in sorted(set(labels.tolist())):
            members = flagged[labels == t]
            theme_rows.append({"theme": t, "label": theme_names[t], "size": len(members),
                               "pairs": "; ".join(f"{f}:{l}" for f, l in zip(members["file"], members["line"]))})
    with atomic_open(run.file(FLAGS_CSV), "w", encoding="utf-8") as fh:
        flags.to_csv(fh, index=False, float_format="%.6g", lineterminator="\n")
    themes = pd.DataFrame(theme_rows, columns=["theme", "label", "size", "pairs"])
    with atomic_open(run.file(THEMES_CSV), "w", encoding="utf-8") as fh:
        themes.to_csv(fh, index=False, lineterminator="\n")
    return themes
