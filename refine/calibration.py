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

import numpy as np

from .errors import ConfigError

__all__ = ["LevelCalibration", "assign_levels"]


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


def assign_levels(scores: np.ndarray, top_k: int,
                  calibration: LevelCalibration) -> list[list[tuple[int, float, str]]]:
    """For each row of `scores` (queries × pairs): [(pair index, score, level)], best first."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-D array (queries × pairs)")
    n_pairs = scores.shape[1]
    median = np.median(scores, axis=1, keepdims=True)
    mad = np.median(np.abs(scores - median), axis=1, keepdims=True) * 1.4826
    mad = np.where(mad > 1e-12, mad, 1e-12)
    z = (scores - median) / mad
    k = min(top_k, n_pairs)
    # argpartition then a stable sort of the k: O(pairs) per query, deterministic ties.
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_pairs else \
        np.tile(np.arange(n_pairs), (scores.shape[0], 1))
    out: list[list[tuple[int, float, str]]] = []
    for row in range(scores.shape[0]):
        candidates = sorted(top[row].tolist(), key=lambda j: (-scores[row, j], j))
        kept = []
        for j in candidates:
            s, zz = float(scores[row, j]), float(z[row, j])
            if zz < calibration.z_low or s < calibration.min_score:
                continue
            level = "high" if zz >= calibration.z_high else "medium" if zz >= calibration.z_medium \
                else "low"
            kept.append((j, s, level))
        out.append(kept)
    return out
