"""An approximate nearest-neighbour index over the training pairs: the embedding backend's top k
past the size where scoring every pair stops paying (10⁷ pairs × 10⁵ eval items is ~10¹² dot
products).

The index is FAISS's HNSW graph over the vectors the backend scores with — each pair's
question+answer and answer vectors joined and weighted, ``[√(1-w)·qa, √w·a]``, so that the
inner product is the backend's score. FAISS was chosen over usearch (and over FAISS's own
IVF-Flat) by measurement, ``bench/ann.py``: the same recall at a given search breadth or
better, faster searches, and a graph that is the same bytes however many threads build it.

Building is resumable and deterministic: vectors are added a chunk at a time, the level
generator reseeded per chunk, and a checkpoint (the graph so far and how many chunks it holds)
is saved every few minutes; a killed build resumes from it and ends in the same bytes as an
uninterrupted one. The finished index lives in the embedding cache under a key made of
everything that decides it (model, weight, the pairs' texts in order, graph settings, FAISS
version), so a second run over the same pairs only reads it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..core._atomic import atomic_path, write_json
from ..errors import ConfigError

__all__ = ["PairIndex", "index_key", "require_faiss"]

_FORMAT = 1
_BUILD_CHUNK = 65_536          # vectors added at a time (the level generator is seeded per chunk)
_CHECKPOINT_SECONDS = 300.0    # a killed build loses at most this much work
_CONNECTIONS = 32              # HNSW M: links per vector
_EF_CONSTRUCTION = 128         # search breadth while linking


def require_faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError("search 'hnsw' needs FAISS: pip install 'refine[ann]'",
                          key="backend_options.search") from None
    return faiss


def index_key(model_fingerprint: str, answer_weight: float, pair_keys: bytes) -> str:
    """Everything that decides the graph, digested: a changed input is a new index."""
    faiss = require_faiss()
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": _FORMAT, "model": model_fingerprint, "answer_weight": answer_weight,
                              "m": _CONNECTIONS, "ef_construction": _EF_CONSTRUCTION,
                              "chunk": _BUILD_CHUNK, "faiss": faiss.__version__},
                             sort_keys=True).encode())
    digest.update(pair_keys)
    return digest.hexdigest()[:24]


class PairIndex:
    """An HNSW graph over `n` pair vectors, built once and kept in `directory`."""

    def __init__(self, index, path: Path) -> None:
        self._index = index
        self.path = path

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def open_or_build(cls, directory: Path, key: str, n: int, vectors: Callable[[int, int], np.ndarray],
                      progress: Callable[[int], None] | None = None) -> "PairIndex":
        """The index saved under `key`, or one built from ``vectors(start, stop)`` (float32 rows,
        in pair order), resuming a checkpoint a killed build left."""
        faiss = require_faiss()
        path = directory / f"{key}.faiss"
        if path.is_file():
            index = faiss.read_index(str(path))
            if index.ntotal != n:    # not ours: a digest collision is not worth a wrong answer
                raise ConfigError(f"the index {path} holds {index.ntotal} vectors, not {n}; remove it",
                                  key="backend_options.cache_dir")
            if progress is not None:
                progress(n)
            return cls(index, path)
        partial, state = directory / f"{key}.partial.faiss", directory / f"{key}.partial.json"
        done = 0
        if partial.is_file() and state.is_file():
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
                index = faiss.read_index(str(partial))
                if index.ntotal == saved["vectors"]:
                    done = int(saved["chunks"])
            except (OSError, ValueError, KeyError, TypeError, RuntimeError):
                done = 0    # a checkpoint that does not read back whole: built again, never trusted
        if done == 0:
            first = vectors(0, min(n, 1))
            index = faiss.IndexHNSWFlat(first.shape[1], _CONNECTIONS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _EF_CONSTRUCTION
        if progress is not None and done:
            progress(min(n, done * _BUILD_CHUNK))
        last_save = time.monotonic()
        chunks = -(-n // _BUILD_CHUNK)
        for chunk in range(done, chunks):
            start, stop = chunk * _BUILD_CHUNK, min(n, (chunk + 1) * _BUILD_CHUNK)
            # Levels drawn from a generator seeded by the chunk, not carried over from the last
            # one: a build resumed from a checkpoint draws what an uninterrupted build draws.
            index.hnsw.rng = faiss.RandomGenerator(1_000_003 * (chunk + 1))
            index.add(np.ascontiguousarray(vectors(start, stop), dtype=np.float32))
            if progress is not None:
                progress(stop - start)
            if chunk + 1 < chunks and time.monotonic() - last_save >= _CHECKPOINT_SECONDS:
                _save(faiss, index, partial)
                write_json(state, {"chunks": chunk + 1, "vectors": int(index.ntotal)})
                last_save = time.monotonic()
        _save(faiss, index, path)
        for leftover in (partial, state):
            leftover.unlink(missing_ok=True)
        return cls(index, path)

    def search(self, queries: np.ndarray, count: int, breadth: int) -> np.ndarray:
        """Per query, the `count` pairs of highest inner product the graph finds (pair
        indices, int64; -1 where it finds fewer), searching `breadth` candidates deep."""
        count = min(count, self.size)
        params = require_faiss().SearchParametersHNSW(efSearch=max(breadth, count))
        _, found = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), count, params=params)
        return found.astype(np.int64)


def _save(faiss, index, path: Path) -> None:
    # Written by FAISS straight to the file: serialising to memory first would hold the index
    # twice more (a C++ buffer and its copy) at the moment memory is fullest.
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
