"""Turning one query's raw scores over all training pairs into influence levels.

Raw scores (a cosine similarity, a gradient inner product) have no fixed scale across
queries, so levels are set per query, against that query's own score distribution over
the whole training set: ``z = (score - median) / (1.4826 * MAD)`` (a robust z-score, so the
few relevant pairs do not inflate the spread they are measured against).

* a pair is **irrelevant** (dropped) when ``z < z_low`` or ``score < min_score``;
* otherwise it is **high** when ``z ≥ z_high``, **medium** when ``z ≥ z_medium``, else **low**;
* at most ``top_k`` pairs are kept, highest score first.

``min_score`` is the backend's absolute floor (for cosine similarity: below it two texts
are not about the same thing, however the rest of the training set scores), so that an
answer no training pair explains cites nothing rather than its least-unrelated neighbours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from ..errors import ConfigError

__all__ = ["STATS_MAX", "LevelCalibration", "assign_levels", "levels_of_blocks", "levels_of_top",
           "stats_sample"]

#: Pairs past which a query's median and MAD come from a fixed sample (see levels_of_blocks).
STATS_MAX = 200_000


@dataclass(frozen=True)
class LevelCalibration:
    z_low: float = 3.5
    z_medium: float = 5.0
    z_high: float = 6.5
    min_score: float = 0.5

    def __post_init__(self) -> None:
        if not self.z_low <= self.z_medium <= self.z_high:
            raise ConfigError(f"needs z_low ≤ z_medium ≤ z_high, got {asdict(self)}",
                              key="calibration")


def stats_sample(n_pairs: int, stats_max: int = STATS_MAX) -> np.ndarray | None:
    """The pairs whose scores give a query's median and MAD: all of them (None) up to
    `stats_max`, else a fixed uniform sample of `stats_max` pairs (the same for every query and
    every run over `n_pairs` pairs, however the pairs are sharded)."""
    if n_pairs <= stats_max:
        return None
    return np.sort(np.random.default_rng(0).choice(n_pairs, size=stats_max, replace=False))


def assign_levels(scores: np.ndarray, top_k: int,
                  calibration: LevelCalibration) -> list[list[tuple[int, float, str]]]:
    """For each row of `scores` (queries × pairs): [(pair index, score, level)], best first."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-D array (queries × pairs)")
    return levels_of_blocks([(0, scores)], scores.shape[0], scores.shape[1], top_k, calibration)


def _top_k(block: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the k highest scores; of equal scores at the k-th, the lowest
    columns (as a stable sort would pick, but in linear time)."""
    top = np.argpartition(-block, k - 1, axis=1)[:, :k]
    chosen = np.take_along_axis(block, top, axis=1)
    kth = chosen.min(axis=1, keepdims=True)
    for row in np.nonzero((block == kth).sum(axis=1) > (chosen == kth).sum(axis=1))[0]:
        above = np.nonzero(block[row] > kth[row])[0]
        top[row] = np.concatenate([above, np.nonzero(block[row] == kth[row])[0][:k - len(above)]])
    return top


def levels_of_blocks(blocks: Iterable[tuple[int, np.ndarray]], n_queries: int, n_pairs: int,
                     top_k: int, calibration: LevelCalibration,
                     stats_max: int = STATS_MAX) -> list[list[tuple[int, float, str]]]:
    """:func:`assign_levels` over scores that arrive a block of pairs at a time.

    `blocks` yields ``(first pair index, queries × block scores)`` covering every pair once, in
    any order. Memory stays at one block plus, per query, `top_k` candidates and the scores of
    the pairs :func:`stats_sample` picks. The top k are exact (each block's own top k, merged;
    ties go to the lower pair index). Median and MAD are exact up to `stats_max` pairs; past it
    they are those of the fixed sample: the standard error of a sample median is about
    1.25·σ/√n, 0.003·σ at the default 200,000, which moves a robust z of 5 by about 0.02.
    """
    sample = stats_sample(n_pairs, stats_max)
    best_index = np.empty((n_queries, 0), dtype=np.int64)
    best_score = np.empty((n_queries, 0), dtype=np.float64)
    parts: list[tuple[int, np.ndarray]] = []
    seen = 0
    for start, block in blocks:
        block = np.asarray(block, dtype=np.float64)
        width = block.shape[1]
        seen += width
        k = min(top_k, width)
        top = _top_k(block, k) if k < width else np.tile(np.arange(width), (n_queries, 1))
        index = np.concatenate([best_index, top + start], axis=1)
        score = np.concatenate([best_score, np.take_along_axis(block, top, axis=1)], axis=1)
        order = np.lexsort((index, -score), axis=1)[:, :top_k]
        best_index = np.take_along_axis(index, order, axis=1)
        best_score = np.take_along_axis(score, order, axis=1)
        if sample is None:
            parts.append((start, block))
        else:
            chosen = sample[(sample >= start) & (sample < start + width)]
            parts.append((start, block[:, chosen - start]))
    if seen != n_pairs:
        raise ValueError(f"the blocks cover {seen} pairs, not {n_pairs}")
    # In pair order, so that the median is that of the same values however blocks arrived.
    parts.sort(key=lambda part: part[0])
    stats = np.concatenate([p for _, p in parts], axis=1) if parts else np.zeros((n_queries, 1))
    del parts
    return levels_of_top(best_index, best_score, stats, calibration)


def levels_of_top(best_index: np.ndarray, best_score: np.ndarray, stats: np.ndarray,
                  calibration: LevelCalibration) -> list[list[tuple[int, float, str]]]:
    """Levels of each query's top pairs (`best_index`/`best_score`, queries × k, best first),
    set against the median and MAD of that query's `stats` scores (all pairs, or the
    :func:`stats_sample`): the last step of :func:`levels_of_blocks`, for top pairs found
    another way (an approximate index)."""
    stats = np.asarray(stats, dtype=np.float64)
    best_score = np.asarray(best_score, dtype=np.float64)
    median = np.median(stats, axis=1, keepdims=True)
    mad = np.median(np.abs(stats - median), axis=1, keepdims=True) * 1.4826
    mad = np.where(mad > 1e-12, mad, 1e-12)
    z = (best_score - median) / mad
    out: list[list[tuple[int, float, str]]] = []
    for row in range(len(best_index)):
        kept = []
        for j, s, zz in zip(best_index[row].tolist(), best_score[row].tolist(), z[row].tolist()):
            # -inf marks a slot an approximate search left empty: never a citation.
            if s == float("-inf") or zz < calibration.z_low or s < calibration.min_score:
                continue
            level = "high" if zz >= calibration.z_high else "medium" if zz >= calibration.z_medium \
                else "low"
            kept.append((j, s, level))
        out.append(kept)
    return out
