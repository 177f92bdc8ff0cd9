"""The training pairs' features on disk, and how an interrupted run resumes them.

Training features are cached as a float32 ``.npy`` under ``<cache>/gradients/<key>/``, the key
(:func:`cache_key`) hashing the model files, the pairs' content and every setting that changes
a feature. The file is a stored :class:`~refine.core.disk_matrix.DiskMatrix`: it is written a chunk
of pairs at a time, at the chunk's rows, in whatever order chunks finish, and each chunk is on
disk before ``done.json`` records it, so an interrupted run resumes with the chunks still
missing. It is read back a block at a time (policy ``stream``), so memory holds one block,
never the N×D matrix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...core._atomic import write_json
from ...core.disk_matrix import DiskMatrix
from ...errors import BackendError
from ...formats.training import TrainingPair
from .options import GradientOptions

__all__ = ["FEATURE_FORMAT", "TrainingFeatures", "cache_key"]

FEATURE_FORMAT = 1

# Settings that never change a feature: scoring, paths and how the work runs.
_NOT_IN_KEY = ("model", "adapter", "cache_dir", "damping", "preconditioner", "relative",
               "z_low", "z_medium", "z_high", "batch_size", "device", "eval_mix", "contrast",
               "contrast_neighbours")


def cache_key(options: GradientOptions, fingerprint: str, pairs: list[TrainingPair]) -> str:
    """The name of the cache directory of `pairs`' features under `options`, for the model
    files of `fingerprint`."""
    digest = hashlib.sha256()
    settings = asdict(options)
    # Scoring settings and paths do not change a feature: the files' content (in the
    # fingerprint) and the exact texts do.
    for key in _NOT_IN_KEY:
        settings.pop(key)
    if settings["whiten"] == "none":   # features made before whitening existed stay valid
        for key in ("whiten", "whiten_damping", "whiten_examples", "whiten_max_dim"):
            settings.pop(key)
    digest.update(json.dumps({"format": FEATURE_FORMAT, "model": fingerprint,
                              "options": settings}, sort_keys=True).encode())
    for pair in pairs:
        # Exact texts, not pair_id: a fix of case or spacing changes the gradient.
        digest.update(json.dumps([pair.question, pair.answer, pair.system_prompt],
                                 ensure_ascii=False).encode() + b"\x1e")
    return digest.hexdigest()[:24]


def _runs(chunks: set[int]) -> list[list[int]]:
    """Sorted chunk numbers as [start, stop) runs: a short resume record however many."""
    runs: list[list[int]] = []
    for c in sorted(chunks):
        if runs and runs[-1][1] == c:
            runs[-1][1] = c + 1
        else:
            runs.append([c, c + 1])
    return runs


def _finished_chunks(state: dict, n_chunks: int, chunk: int) -> set[int]:
    """The chunks a resume record says are written (none when it was written with other chunks)."""
    if state.get("chunk") != chunk:
        return set()
    return {c for lo, hi in state["finished"] for c in range(int(lo), min(int(hi), n_chunks))}


class TrainingFeatures:
    """The feature matrix ``features.npy`` in `directory`, `shape` = (pairs, D), written in
    chunks of `chunk` pairs, and ``done.json``, the record of the chunks it holds.

    Opening it resumes what the record vouches for; a matrix of another shape, or a torn file
    or record, is started again from zeros (and the curvature cached from it deleted).
    """

    def __init__(self, directory: Path, shape: tuple[int, int], chunk: int) -> None:
        self.chunk = chunk
        self.n_chunks = -(-shape[0] // chunk)
        path, self._state = directory / "features.npy", directory / "done.json"
        finished: set[int] = set()
        if path.is_file() and self._state.is_file():
            try:
                matrix = DiskMatrix.open(path, policy="stream")
                finished = _finished_chunks(json.loads(self._state.read_text()), self.n_chunks, chunk) \
                    if matrix.shape == shape else set()
            except (ValueError, OSError, KeyError, TypeError, json.JSONDecodeError):
                finished = set()   # a torn cache is recomputed, never trusted
        if not finished:
            self._state.unlink(missing_ok=True)
            # The curvature cached from the old features goes with them.
            for stale in directory.glob("gram-*.npz"):
                stale.unlink(missing_ok=True)
            matrix = DiskMatrix.create(path, *shape, policy="stream")
        self.matrix = matrix
        self.finished = finished

    def pairs_done(self) -> int:
        """How many training pairs the finished chunks hold."""
        return sum(min(self.chunk, self.matrix.shape[0] - c * self.chunk) for c in self.finished)

    def missing(self) -> list[int]:
        """The chunks still to compute, in order."""
        return [c for c in range(self.n_chunks) if c not in self.finished]

    def write(self, index: int, rows: np.ndarray) -> None:
        """Store chunk `index`'s rows where they belong, then record the chunk as finished
        (chunks finish in any order)."""
        start = index * self.chunk
        if not np.isfinite(rows).all():
            raise BackendError("the model's gradients are not finite (NaN or inf) for "
                               f"training pairs {start + 1}–{start + len(rows)}: check the weights")
        self.matrix.write_rows(np.arange(start, start + len(rows)), rows)
        self.finished.add(index)
        write_json(self._state, {"chunk": self.chunk, "finished": _runs(self.finished)})
