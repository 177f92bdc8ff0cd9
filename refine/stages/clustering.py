"""`cluster`: group the bad answers into failure modes, and find the pairs that drive each.

How the number of clusters is chosen: the bad eval items ("Q: …\\nA: …") are embedded and
merged by average-linkage agglomerative clustering on cosine distance until the next merge
would join groups whose members are, on average, further apart than ``distance_threshold``
(0.6: cosine similarity 0.4). So the number of failure modes follows from how far apart the
answers are, not from a k given in advance; groups smaller than ``min_size`` are left
*unclustered* (cluster -1): one-off slips and hallucinations are not a failure mode. Above
``max_direct`` items the answers are first summarised by MiniBatchKMeans micro-clusters
(seeded) and the micro-cluster centroids are merged the same way, so memory stays linear.

Each failure mode is named by one of its own questions, the one nearest its centroid (or a
short one nearly as near, so the name reads as a name: :func:`name_modes`), and has a
representative item (the one nearest the centroid). Its
driving pairs are ranked by blame *within the cluster* (level-weighted citations by the
cluster's items, with the flag stage's level weights). Each cited pair learns which failure
modes it drives; a flagged pair's *theme* is the mode it drives most (so theme 2 is mode 2:
one numbering), and one that drives modes unrelated to each other (centroid similarity below
``unrelated_similarity``) is called out.

Outputs: RUN/clusters.parquet (one row per bad item), RUN/clusters.csv (one row per failure
mode), RUN/cluster_pairs.parquet (cluster × pair blame), RUN/themes.csv (flagged pairs per
theme) and RUN/flag_modes.parquet (``failure_modes``, ``theme``, ``multi_mode`` per cited
pair, joined to the flags by readers; flags.csv is the flag stage's and is not rewritten).
Needs current flags. Deterministic for the same run.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core._atomic import atomic_open, write_parquet, write_parquet_batches
from ..errors import RunDirError
from ..settings import ClusterSettings
from ..core.lineage import CLUSTER_PAIRS, CLUSTERS, CLUSTERS_CSV, FLAG_MODES, THEMES_CSV
from ..core.rundir import RunDir
from ..core.text import qa_text

__all__ = ["ClusterResult", "ClusterSettings", "agglomerate", "cluster", "name_modes"]



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


def _shorten(question: str, max_chars: int) -> str:
    """A question cut to `max_chars` at most: its last sentence that asks (ends in "?") when that
    fits, else its first words and "…"."""
    if len(question) <= max_chars:
        return question
    asks = [s for s in re.split(r"(?<=[.!?])\s+", question) if s.endswith("?") and len(s) <= max_chars]
    if asks:
        return asks[-1]
    cut = question[:max_chars - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:-—") + "…"


def name_modes(questions: list[str], vectors: np.ndarray, labels: np.ndarray, *,
               max_chars: int = 72, closeness: float = 0.1) -> dict[int, str]:
    """Each failure mode's name: one of its own questions, the one nearest the mode's centroid
    — or, when that is longer than `max_chars`, the nearest that fits and is nearly as near
    (cosine to the centroid within `closeness` of the nearest), else the nearest shortened
    (:func:`_shorten`). Whitespace is collapsed and "|" (the separator of the modes a pair
    drives) becomes "/". Ties go to the earlier question, so names are deterministic."""
    names = {}
    for c in sorted(c for c in set(labels.tolist()) if c >= 0):
        members = np.flatnonzero(labels == c)
        centroid = vectors[members].mean(axis=0)
        centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-12)
        near = vectors[members] @ centroid
        order = np.argsort(-near, kind="stable")
        texts = [" ".join(str(questions[members[i]]).split()).replace("|", "/") for i in order]
        best = near[order[0]]
        fits = [t for t, s in zip(texts, near[order]) if len(t) <= max_chars and s >= best - closeness]
        names[c] = (fits[0] if fits else _shorten(texts[0], max_chars)) or f"mode {c}"
    return names


def _model_for(run: RunDir):
    from ..core.embeddings import DEFAULT_MODEL, EmbeddingModel

    collect = run.settings().get("collect", {})
    model = collect.get("options", {}).get("model", DEFAULT_MODEL) if collect.get("backend") == "embedding" \
        else DEFAULT_MODEL
    return EmbeddingModel(model)


def cluster(run_dir: str | Path, settings: ClusterSettings | None = None, *, model: Any = None) -> ClusterResult:
    """Cluster a run's bad answers into failure modes; write the cluster files into RUN."""
    settings = settings or ClusterSettings()
    run = RunDir(run_dir)
    weights = run.flag_settings().level_weights
    items = run.items(["eval_id", "question", "answer", "verdict"], done=True)
    bad = items[items["verdict"] == "bad"].reset_index(drop=True)
    if bad.empty:
        raise RunDirError(f"{run.path}: no bad answers to cluster")
    model = model or _model_for(run)
    texts = [qa_text(q, a or "") for q, a in zip(bad["question"], bad["answer"])]
    vectors = model.encode(texts)
    labels = _relabel(agglomerate(vectors, settings.distance_threshold,
                                  max_direct=settings.max_direct, seed=settings.seed), settings.min_size)
    names = name_modes(list(bad["question"]), vectors, labels)
    bad = bad.assign(cluster=labels, label=[names.get(int(l), "unclustered") for l in labels])

    sizes = bad.groupby("cluster").size()
    flags = run.flags(["file", "line"], flagged_only=True)
    from ..core._duckdb import connect

    # The mode × pair table has a row per mode and pair the bad answers cite (millions at 10⁸
    # citations): it stays in DuckDB and is written from there a batch at a time; Python
    # sees each mode's top pairs only.
    with connect() as con:
        _blame_by_mode(con, run, bad[["eval_id", "cluster"]], weights, sizes)
        top = con.sql(f"""SELECT * FROM per_pair QUALIFY row_number() OVER (
                              PARTITION BY cluster ORDER BY blame DESC, n_items DESC, pair_id) <= {int(settings.top_pairs)}
                          ORDER BY cluster, blame DESC, n_items DESC, pair_id""").df()
        first = run.first_rows(sorted(set(top["pair_id"])), ["file", "line"])
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
            driving = top[top["cluster"] == c]
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
        themes = _modes_of_pairs_in(con, flags.set_index("pair_id"), names, centroids, settings)

        import pyarrow as pa
        with run.stage("cluster", dataclasses.asdict(settings)) as stage:
            write_parquet(stage.path(CLUSTERS), pa.Table.from_pandas(
                bad[["eval_id", "cluster", "label"]], preserve_index=False))
            write_parquet_batches(stage.path(CLUSTER_PAIRS), con.sql(
                "SELECT cluster, pair_id, n_items, blame, share FROM per_pair "
                "ORDER BY cluster, blame DESC, n_items DESC, pair_id").fetch_arrow_reader(_BATCH))
            write_parquet_batches(stage.path(FLAG_MODES), con.sql(_FLAG_MODES_SQL).fetch_arrow_reader(_BATCH))
            with atomic_open(stage.path(CLUSTERS_CSV), "w", encoding="utf-8") as fh:
                modes.to_csv(fh, index=False, lineterminator="\n")
                if unclustered:
                    fh.write(f"-1,unclustered,{unclustered},,,,,\n")
            with atomic_open(stage.path(THEMES_CSV), "w", encoding="utf-8") as fh:
                themes.to_csv(fh, index=False, lineterminator="\n")
    return ClusterResult(run.path, bad[["eval_id", "cluster", "label"]], modes, themes)


def _blame_by_mode(con: Any, run: RunDir, modes: pd.DataFrame, weights: dict[str, float],
                   sizes: pd.Series) -> None:
    """Per (failure mode, cited pair): the mode's answers citing the pair (one citation per
    answer and pair, at its largest weight), their summed weight and their share of the mode's
    answers — as the table ``per_pair`` in `con`.

    Read by DuckDB straight from attributions.parquet: the citations of good answers, most
    of a run's rows, are never loaded (:mod:`refine.core._duckdb`)."""
    from ..core._duckdb import quoted
    from .flagging.citations import weighted_sum_sql, weights_sql
    from ..core.lineage import ATTRIBUTIONS

    run.current("collect")
    con.register("modes", modes[modes["cluster"] >= 0])
    con.register("sizes", pd.DataFrame({"cluster": sizes.index.astype("int64"), "size": sizes.to_numpy()}))
    con.execute(f"""
        CREATE TEMP TABLE per_pair AS
        WITH weights AS ({weights_sql(weights)}),
        cited AS (SELECT a.eval_id, a.pair_id, max(w.weight) AS weight
                  FROM read_parquet({quoted(str(run.file(ATTRIBUTIONS)))}) a
                  SEMI JOIN modes m ON m.eval_id = a.eval_id
                  LEFT JOIN weights w ON w.level = a.influence_level
                  WHERE a.pair_id IS NOT NULL GROUP BY a.eval_id, a.pair_id),
        blamed AS (SELECT m.cluster, c.pair_id, count(*) AS n_items, {weighted_sum_sql(weights, "true")} AS blame
                   FROM cited c JOIN modes m USING (eval_id) GROUP BY m.cluster, c.pair_id)
        SELECT b.*, b.n_items / s.size AS share FROM blamed b JOIN sizes s USING (cluster)""").fetchall()
    con.unregister("modes")


_BATCH = 65_536   # rows a batch when the large tables are written from DuckDB
_FLAG_MODES_SQL = "SELECT pair_id, failure_modes, theme, multi_mode FROM modes_of_pairs ORDER BY pair_id"


def _modes_of_pairs(per_pair: pd.DataFrame, flags: pd.DataFrame, names: dict[int, str],
                    centroids: dict[int, np.ndarray],
                    settings: ClusterSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`_modes_of_pairs_in` over a per-pair table in memory: (the per-pair modes, the themes)."""
    from ..core._duckdb import connect

    with connect() as con:
        con.register("per_pair", per_pair[["pair_id", "cluster", "blame", "n_items"]])
        themes = _modes_of_pairs_in(con, flags, names, centroids, settings)
        table = con.sql(_FLAG_MODES_SQL).df()
    table["multi_mode"] = table["multi_mode"].astype(bool)
    return table, themes


def _modes_of_pairs_in(con: Any, flags: pd.DataFrame, names: dict[int, str],
                       centroids: dict[int, np.ndarray], settings: ClusterSettings) -> pd.DataFrame:
    """Per cited pair: the failure modes it drives, its theme (the mode it drives most: highest
    blame, then most answers, then the lowest mode number) and whether it drives modes
    unrelated to each other (flagged pairs only) — the table ``modes_of_pairs`` in `con`, from
    its ``per_pair``; and, returned, the flagged pairs of each theme.

    In DuckDB, not a Python loop over the pairs (bench/_oracles.py keeps the loop as the
    definition; docs/benchmarks.md, cluster_modes, what each costs at 10⁶ cited pairs)."""
    clusters = sorted(centroids)
    unrelated = [(a, b) for i, a in enumerate(clusters) for b in clusters[i + 1:]
                 if float(centroids[a] @ centroids[b]) < settings.unrelated_similarity]
    con.register("names", pd.DataFrame({"cluster": pd.Series(list(names), dtype="int64"),
                                        "name": pd.Series(list(names.values()), dtype=object)}))
    con.register("unrelated", pd.DataFrame({"a": pd.Series([a for a, _ in unrelated], dtype="int64"),
                                            "b": pd.Series([b for _, b in unrelated], dtype="int64")}))
    # One row per pair (flags.csv has one; the first, were there more).
    con.register("flagged", flags.reset_index()[["pair_id", "file", "line"]]
                 .drop_duplicates("pair_id"))
    con.execute("""
        CREATE TEMP TABLE modes_of_pairs AS
        WITH labelled AS (
            SELECT p.pair_id, p.cluster, p.blame, p.n_items, CAST(p.cluster AS VARCHAR) || ': ' || n.name AS mode
            FROM per_pair p JOIN names n USING (cluster)),
        mine AS (SELECT * FROM per_pair SEMI JOIN flagged USING (pair_id)),
        multi AS (SELECT DISTINCT x.pair_id FROM mine x
                  JOIN mine y ON x.pair_id = y.pair_id AND x.cluster < y.cluster
                  JOIN unrelated u ON u.a = x.cluster AND u.b = y.cluster)
        SELECT pair_id,
               string_agg(mode, ' | ' ORDER BY cluster) AS failure_modes,
               first(mode ORDER BY blame DESC, n_items DESC, cluster) AS theme,
               first(cluster ORDER BY blame DESC, n_items DESC, cluster) AS theme_cluster,
               pair_id IN (SELECT pair_id FROM multi) AS multi_mode
        FROM labelled GROUP BY pair_id""").fetchall()
    themes = con.sql("""
        SELECT m.theme_cluster AS theme, any_value(n.name) AS label, count(*) AS size,
               string_agg(coalesce(f.file, 'nan') || ':' || coalesce(CAST(f.line AS VARCHAR), '<NA>'),
                          '; ' ORDER BY m.pair_id) AS pairs
        FROM modes_of_pairs m JOIN flagged f USING (pair_id) JOIN names n ON n.cluster = m.theme_cluster
        GROUP BY m.theme_cluster ORDER BY m.theme_cluster""").df()
    return themes
