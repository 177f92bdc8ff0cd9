"""The curvature: what a query's features are multiplied by before they meet a training pair's.

The score of training pair i for eval item q is

* ``layerwise``: φ_q H⁻¹ φ_i with H block-diagonal, one block per layer,
  H_l = Φ_lᵀΦ_l + λ_l I, Φ_l the N×D_l training features of layer l and
  λ_l = damping · tr(Φ_lᵀΦ_l) / min(N, D_l): ``damping`` is relative to the block's mean
  non-zero eigenvalue, so it has no scale of its own. Per-layer curvature is what LoGra and
  Kronfluence's (E)K-FAC use; each layer is whitened on its own scale, so the few layers with
  the largest gradients do not decide every ranking, and its blocks hold Σ D_l² numbers
  instead of D²;
* ``trak``: the same with one block over all D columns, φ_q (ΦᵀΦ + λI)⁻¹ φ_i (TRAK);
* ``identity``: φ_q · φ_i (TracIn with one checkpoint);
* ``cosine`` (default): the cosine of φ_q and φ_i.

With ``relative`` (the default; it applies to ``layerwise`` and ``trak``), each training pair's
score is divided by its own size under the same metric, √(φ_i H⁻¹ φ_i) — the "relative
influence" of Barshan et al. (RelatIF, 2020); ``identity`` stays the raw inner product
(TracIn), and ``cosine`` is already scale-free. Raw inner products are dominated by the few
pairs with the largest gradients (answers the model never fitted, outliers): they rank near the
top for every query and would be cited by good and bad answers alike, which is exactly what
repeated-culprit statistics must not see. Dividing by the pair's norm asks instead which pairs
this answer is *most specifically* aligned with.

With ``eval_mix`` = μ > 0, the Gram blocks become (1 − μ)·ΦᵀΦ/N + μ·Φ_evalᵀΦ_eval/M over the
whole eval set, rescaled by N: the directions every eval answer shares (the answer template,
the formatting) are damped, as TrackStar mixes the eval autocorrelation in.

Everything here reads the training features from their :class:`~refine.core.disk_matrix.DiskMatrix`
a block of `block_rows` at a time; the Gram blocks are cached beside them.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...core._atomic import atomic_open
from ...core.disk_matrix import DiskMatrix
from .options import GradientOptions

__all__ = ["Preconditioner", "layer_spans", "preconditioner"]

Spans = list[tuple[int, int]]


@dataclass(frozen=True)
class Preconditioner:
    """`solve` maps query features (B×D) to what is dotted with training features; `scale` is
    what each training pair's score is multiplied by (None: nothing)."""

    solve: Callable[[np.ndarray], np.ndarray]
    scale: np.ndarray | None


def layer_spans(shapes: list[tuple[int, int]]) -> Spans:
    """The feature columns of each layer, in the order the projector concatenates them, from
    each layer's (k_out, k_in)."""
    edges = np.cumsum([0] + [k_out * k_in for k_out, k_in in shapes])
    return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def per_pair(train: DiskMatrix, of_block: Callable[[np.ndarray], np.ndarray],
             block_rows: int) -> np.ndarray:
    """`of_block` of every block of training features (as float64), one number per pair."""
    out = np.empty(len(train), dtype=np.float64)
    for start, block in train.blocks(block_rows):
        out[start:start + len(block)] = of_block(block.astype(np.float64))
    return out


def preconditioner(options: GradientOptions, train: DiskMatrix, spans_of_layers: Spans,
                   directory: Path, evals: np.ndarray | None, block_rows: int) -> Preconditioner:
    """The preconditioner of ``options.preconditioner`` for training features `train`, with the
    layers' columns `spans_of_layers` and the eval answers' features `evals` (for
    ``eval_mix``); Gram blocks are read from, or saved to, `directory`."""
    kind = options.preconditioner
    if kind == "identity":
        return Preconditioner(lambda q: q, None)
    if kind == "cosine":
        scale = per_pair(train, lambda block: 1.0 / np.maximum(np.linalg.norm(block, axis=1), 1e-30),
                         block_rows)
        return Preconditioner(lambda q: q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30),
                              scale)
    import scipy.linalg
    from scipy.linalg.blas import dsyrk

    # `trak` is one block over all D columns; `layerwise` one block per layer (block-diagonal,
    # as LoGra and Kronfluence precondition). Each block's Gram matrix is accumulated in
    # place (lower triangle, Fortran order) and factored in place: for `trak` that is one
    # D×D float64 matrix (121 MB at D ≈ 3,900), for `layerwise` Σ D_l², far less.
    spans = [(0, train.shape[1])] if kind == "trak" else spans_of_layers
    gram_path = directory / f"gram-{kind}.npz"
    grams = _load_grams(gram_path, spans)
    if grams is None:
        grams = [np.zeros((hi - lo,) * 2, dtype=np.float64, order="F") for lo, hi in spans]
        for _, block in train.blocks(block_rows):
            block = block.astype(np.float64)
            for index, (lo, hi) in enumerate(spans):
                grams[index] = dsyrk(1.0, block[:, lo:hi], beta=1.0, c=grams[index],
                                     trans=1, lower=1, overwrite_c=1)
        with atomic_open(gram_path) as fh:
            np.savez(fh, *grams)
    mix = options.eval_mix
    if mix > 0 and evals is not None and len(evals):
        # (1 − μ)·G_train/N + μ·G_eval/M, rescaled by N so that damping keeps its meaning.
        block = evals.astype(np.float64)
        for index, (lo, hi) in enumerate(spans):
            grams[index] *= (1 - mix)
            grams[index] = dsyrk(mix * len(train) / len(block), block[:, lo:hi], beta=1.0,
                                 c=grams[index], trans=1, lower=1, overwrite_c=1)
    factors = []
    while grams:
        gram = grams.pop(0)
        dim = gram.shape[0]
        # The mean of the block's non-zero eigenvalues: with fewer pairs than dimensions,
        # tr/D would make λ vanish as D grows and the inverse would whiten away everything
        # shared.
        damping = options.damping * max(np.trace(gram) / min(dim, len(train)), 1e-30)
        gram[np.diag_indices(dim)] += damping
        factors.append(scipy.linalg.cholesky(gram, lower=True, overwrite_a=True,
                                             check_finite=False))
        del gram
    scale = None
    if options.relative:
        # φ H⁻¹ φ = Σ_blocks ‖L⁻¹ φ‖², triangular solves per block of training features.
        def self_influence(block: np.ndarray) -> np.ndarray:
            total = np.zeros(len(block))
            for factor, (lo, hi) in zip(factors, spans):
                whitened = scipy.linalg.solve_triangular(
                    factor, block[:, lo:hi].T, lower=True, check_finite=False)
                total += np.einsum("ij,ij->j", whitened, whitened)
            return 1.0 / np.sqrt(np.maximum(total, 1e-30))
        scale = per_pair(train, self_influence, block_rows)

    def solve(q: np.ndarray) -> np.ndarray:
        q = q.astype(np.float64)
        out = np.empty_like(q)
        for factor, (lo, hi) in zip(factors, spans):
            out[:, lo:hi] = scipy.linalg.cho_solve((factor, True), q[:, lo:hi].T).T
        return out
    return Preconditioner(solve, scale)


def _load_grams(path: Path, spans: Spans) -> list[np.ndarray] | None:
    """The cached Gram blocks, or None when absent or not what `spans` needs."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if len(saved.files) != len(spans):
                return None
            grams = [np.asfortranarray(saved[f"arr_{i}"]) for i in range(len(spans))]
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile):
        # TypeError: a plain .npy at that path is no context manager
        return None   # torn or foreign: recomputed, never trusted
    if any(g.shape != (hi - lo,) * 2 or g.dtype != np.float64 or not np.isfinite(g).all()
           for g, (lo, hi) in zip(grams, spans)):
        return None
    return grams
