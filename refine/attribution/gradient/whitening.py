"""K-FAC whitening of the projections: each layer's inputs and output gradients on their own scale.

Per layer, the whitening is (A + λ_A I)^{-1/2} on the inputs and (S + λ_S I)^{-1/2} on the
output gradients, for A and S K-FAC's token second moments (``whiten: kfac``), or their
diagonals (``diag``: a factored, Adafactor-style second-moment normalisation of every
parameter, as TrackStar applies Adam's); λ = ``whiten_damping`` × the mean eigenvalue. The
moments are summed by the :class:`~.projector.Projector`'s hooks over the first
``whiten_examples`` training pairs, one chunk of pairs per task; the factors are folded into the
projections (:meth:`~.projector.Projector.whiten`) and cached beside the features.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...core._atomic import atomic_open

__all__ = ["factors_from_statistics", "load_factors", "save_factors"]

Factors = list[tuple[np.ndarray, np.ndarray]]
# One chunk's statistics: per layer (A, S, tokens), A and S matrices or their diagonals.
Statistics = list[tuple[np.ndarray, np.ndarray, int]]


def load_factors(path: Path, n_layers: int) -> Factors | None:
    """The cached factors of `n_layers` layers, or None when absent or torn."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = [saved[f"arr_{i}"] for i in range(2 * n_layers)]
        return [(arrays[2 * i].astype(np.float32), arrays[2 * i + 1].astype(np.float32))
                for i in range(n_layers)]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None   # torn: recomputed, never trusted


def save_factors(path: Path, factors: Factors) -> None:
    with atomic_open(path) as fh:
        np.savez(fh, *[t for pair in factors for t in pair])


def factors_from_statistics(arrivals: Iterable[tuple[int, Statistics]], n_chunks: int,
                            damping: float) -> Factors:
    """Per layer (input, output-gradient) whitening, float32, from (chunk index, statistics)
    of all `n_chunks` chunks, arriving in any order."""
    import torch

    # Summed in chunk order — the same float64 sums wherever and in whatever order the chunks
    # ran — into one running total; only chunks that arrive early wait for their turn.
    totals: list[list[Any]] | None = None
    early: dict[int, Statistics] = {}
    turn = 0
    for index, part in arrivals:
        early[index] = part
        while turn in early:
            part = early.pop(turn)
            if totals is None:
                totals = [[np.array(a, dtype=np.float64), np.array(b, dtype=np.float64), int(n)]
                          for a, b, n in part]
            else:
                for total, (a, b, n) in zip(totals, part):
                    np.add(total[0], a, out=total[0])
                    np.add(total[1], b, out=total[1])
                    total[2] += int(n)
            turn += 1
    assert totals is not None and turn == n_chunks
    statistics = [[torch.from_numpy(a), torch.from_numpy(b), n] for a, b, n in totals]

    def inverse_root(moment: Any, tokens: int) -> Any:
        moment = moment / max(tokens, 1)
        if moment.dim() == 1:
            return (moment + damping * moment.mean()).rsqrt()
        values, vectors = torch.linalg.eigh(moment)
        values = values.clamp(min=0) + damping * values.clamp(min=0).mean()
        return (vectors * values.rsqrt()) @ vectors.T

    return [(inverse_root(a, n).float().numpy(), inverse_root(s, n).float().numpy())
            for a, s, n in statistics]
