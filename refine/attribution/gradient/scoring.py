"""Queries and scores: what an eval item's features are compared with, and the comparison.

Sign convention: the features are gradients of the *loss* (or of −margin), so a **positive**
score means the two gradients align: a training step on the pair lowers the loss of the
item's answer, i.e. training on the pair pushed the model toward saying this answer. Negative
scores (pairs that pushed away from it) are never cited: the sign is the only absolute floor
gradient scores have (their scale varies per query), so levels come from the per-query robust
z-score (:mod:`refine.attribution.calibration`) with ``min_score = 0``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ...core.disk_matrix import DiskMatrix
from .curvature import Preconditioner

__all__ = ["contrastive_queries", "score_blocks"]


def contrastive_queries(feats: np.ndarray, good: np.ndarray, contrast: float,
                        neighbours: int) -> np.ndarray | None:
    """Contrastive queries (as IF-Guide contrasts harmful with benign behaviour): each row of
    `feats` (the eval answers' gradients) less `contrast` × the mean gradient of the
    `neighbours` good answers (`good`) nearest to it (cosine of gradients), never itself. What
    a bad answer shares with good answers worded alike — the answer's template, the topic's
    vocabulary — cancels; what is left is what makes it differ. None without a good answer."""
    if not good.any():
        return None
    feats = feats.astype(np.float64)
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-30)
    pool = np.flatnonzero(good)
    k = min(neighbours, len(pool))
    rows = []
    for row in range(len(feats)):
        similar = unit[pool] @ unit[row]
        similar[pool == row] = -np.inf          # never an answer's own gradient
        nearest = pool[np.argsort(-similar, kind="stable")[:k]]
        rows.append((feats[row] - contrast * feats[nearest].mean(axis=0)).astype(np.float32))
    return np.stack(rows)


def score_blocks(queries: np.ndarray, train: DiskMatrix, curvature: Preconditioner,
                 block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first pair, queries × block scores), a block of `block_rows` training features at a time."""
    query = curvature.solve(queries.astype(np.float64))
    for start, block in train.blocks(block_rows):
        scores = query @ block.astype(np.float64).T
        if curvature.scale is not None:
            scores *= curvature.scale[start:start + len(block)]
        yield start, scores
