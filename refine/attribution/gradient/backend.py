"""The gradient backend: the steps of a run, in order, and where each one runs.

``prepare`` whitens the projections (:mod:`.whitening`), fills the training features
(:mod:`.features`) and computes the curvature (:mod:`.curvature`); ``prepare_queries`` adds the
eval answers' features; ``attribute`` scores a block of training features at a time.

Features and whitening statistics are computed by workers (:mod:`refine.executors`): in this
process by default, or by Ray actors that each hold a model replica (:func:`gradient_worker`).
Each task is one chunk of ``_CHUNK`` examples; features are written at the chunk's rows as they
arrive (in any order) and statistics summed in chunk order, so where the work ran never changes
the bytes, beyond what a different BLAS thread count changes in the last float bits.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..calibration import levels_of_blocks
from ...core.disk_matrix import DiskMatrix
from ...core.embeddings import default_cache_dir
from ...errors import ConfigError
from ...formats.evalset import EvalItem
from ...formats.records import Attribution, Influence
from ...core.text import qa_text
from ...formats.training import TrainingPair, TrainingSet
from ..base import AttributionBackend
from . import whitening
from .curvature import Preconditioner, layer_spans, preconditioner
from .features import TrainingFeatures, cache_key
from .model import GradientModel
from .options import GradientOptions
from .projector import Projector
from .scoring import contrastive_queries, score_blocks

__all__ = ["GradientBackend", "gradient_worker"]

_CHUNK = 64              # training pairs per task and per resumable chunk
_SCORE_CHUNK = 1024      # training features read at a time: 16 MB of float32 at D ≈ 3,900

Example = tuple[str, str, str | None]     # (question, answer, system prompt)


def gradient_worker(options: GradientOptions, factors: list[tuple[np.ndarray, np.ndarray]] | None,
                    fingerprint: str | None = None) -> Callable[[tuple[str, Any]], Any]:
    """A worker (:mod:`refine.executors`): the model loaded once where the worker runs (its
    device resolved there), whitened with `factors`; then task → features or statistics.
    `fingerprint` is the driver's: a node that sees other model files refuses to work."""
    import torch

    backend = GradientBackend(options, top_k=1)
    if fingerprint is not None and backend.fingerprint != fingerprint:
        from ...core.embeddings import check_same_model

        check_same_model(options.model, fingerprint.split("+")[0], "backend_options.model")
        raise ConfigError(f"the adapter files at {options.adapter} differ from the ones the run was "
                          "started with; every node must see the same files", key="backend_options.adapter")
    _, _, projector = backend._load()
    if factors is not None:
        projector.whiten([(torch.from_numpy(a), torch.from_numpy(b)) for a, b in factors])
    return backend._run_task


class GradientBackend(AttributionBackend):
    name = "gradient"
    Options = GradientOptions

    def __init__(self, options: GradientOptions, *, top_k: int) -> None:
        super().__init__(options, top_k=top_k)
        self._model = GradientModel(options)
        self.fingerprint = self._model.fingerprint
        self._pairs: list[TrainingPair] = []
        self._train: DiskMatrix | None = None        # the training features, after prepare
        self._curvature: Preconditioner | None = None
        self._whitened = False
        self._directory: Path | None = None
        self._query_features: dict[Example, np.ndarray] = {}
        self._eval: np.ndarray | None = None
        self._factors: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._layout_info: tuple[int, list[tuple[int, int]], int] | None = None
        self._specs: dict[str, tuple[Any, Any]] = {}

    @property
    def device(self) -> str:
        """The torch device of this process's model (a ConfigError if it cannot be had here)."""
        return self._model.device

    @property
    def _batch(self) -> int:
        return self._model.batch

    def _load(self) -> tuple[Any, Any, Projector]:
        """(tokenizer, model, projector) in this process."""
        return self._model.load()

    def features(self, examples: Sequence[Example]) -> np.ndarray:
        """Projected loss gradients of (question, answer, system) examples: examples × D."""
        return self._model.features(examples)

    def use_executor(self, executor: Any) -> None:
        super().use_executor(executor)
        if executor.remote:
            executor.prepare(self._spec("statistics"))
        else:
            _ = self.device   # a device this machine lacks: an error before anything is written

    def settings(self) -> dict:
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)
                   if f.metadata.get("affects_results", True)}
        return {"backend": self.name, "options": options, "model_fingerprint": self.fingerprint}

    # -- workers ----------------------------------------------------------------------------

    def _spec(self, kind: str) -> Any:
        """The worker spec for `kind` of task: statistics run on an un-whitened model, features
        on one whitened with this run's factors (so the two are different pools of workers)."""
        from ...executors import WorkerSpec

        factors = None if kind == "statistics" else self._factors
        cached = self._specs.get(kind)
        if cached is not None and cached[0] is factors:
            return cached[1]
        digest = hashlib.sha256(json.dumps(asdict(self.options), sort_keys=True).encode())
        for a, b in factors or ():
            digest.update(a.tobytes() + b.tobytes())
        gpus = 1.0 if str(self.options.device).startswith("cuda") else 0.0
        # Absolute paths: a worker's working directory is not the driver's.
        adapter = self._model.adapter_path
        shipped = replace(self.options, model=str(self._model.path.resolve()),
                          adapter=str(adapter.resolve()) if adapter else None)
        spec = WorkerSpec(functools.partial(gradient_worker, shipped, factors, self.fingerprint),
                          key=f"gradient:{self.fingerprint}:{digest.hexdigest()[:16]}", gpus=gpus,
                          local=self._run_task)
        self._specs[kind] = (factors, spec)
        return spec

    def _run_task(self, task: tuple[str, Any]) -> Any:
        """What one worker does with one task: ("features" | "statistics", examples) or
        ("layout", None)."""
        kind, examples = task
        if kind == "layout":
            _, _, projector = self._load()
            return projector.dim, list(projector.shapes), len(projector.layers)
        if kind == "features":
            return self.features(examples)
        _, _, projector = self._load()
        projector.collect_statistics(diagonal=self.options.whiten == "diag",
                                     max_dim=self.options.whiten_max_dim)
        try:
            self.features(examples)
            return [(a.numpy(), b.numpy(), int(n)) for a, b, n in projector.statistics]
        finally:
            projector.statistics = None

    def _map(self, kind: str, chunks: Sequence[Any]) -> Any:
        """(index, result) of each chunk's task, as workers finish them."""
        return self._executor().map(self._spec(kind), [(kind, chunk) for chunk in chunks])

    def _layout(self) -> tuple[int, list[tuple[int, int]], int]:
        """(feature dimension, per-layer (k_out, k_in), layers): from a worker when the model is
        loaded elsewhere, so this process never needs it."""
        if self._layout_info is None:
            (_, layout), = list(self._map("layout", [None]))
            self._layout_info = (int(layout[0]), [tuple(shape) for shape in layout[1]], int(layout[2]))
        return self._layout_info

    def _features_of(self, examples: Sequence[Example],
                     advance: Callable[[int], None] | None = None) -> np.ndarray:
        """Features of examples in chunks of `_CHUNK`, computed by the executor's workers."""
        out = np.zeros((len(examples), self._layout()[0]), dtype=np.float32)
        chunks = [list(examples[start:start + _CHUNK]) for start in range(0, len(examples), _CHUNK)]
        for index, feats in self._map("features", chunks):
            out[index * _CHUNK:index * _CHUNK + len(feats)] = feats
            if advance is not None:
                advance(len(feats))
        return out

    # -- training features and curvature ----------------------------------------------------

    def cache_path(self, pairs: list[TrainingPair]) -> Path:
        root = Path(self.options.cache_dir) if self.options.cache_dir else default_cache_dir()
        return root / "gradients" / cache_key(self.options, self.fingerprint, pairs)

    def prepare(self, training: TrainingSet, progress) -> None:
        self._pairs = training.unique_pairs()
        directory = self.cache_path(self._pairs)
        directory.mkdir(parents=True, exist_ok=True)
        if self.options.whiten != "none" and not self._whitened:
            self._factors = self._whitening(directory, progress)
            if not self._executor().remote:
                import torch

                self._load()[2].whiten([(torch.from_numpy(a), torch.from_numpy(b)) for a, b in self._factors])
            self._whitened = True
        stored = TrainingFeatures(directory, (len(self._pairs), self._layout()[0]), _CHUNK)
        advance = progress("gradients of training pairs", len(self._pairs))
        advance(stored.pairs_done())
        todo = stored.missing()
        chunks = [[(p.question, p.answer, p.system_prompt) for p in self._pairs[c * _CHUNK:(c + 1) * _CHUNK]]
                  for c in todo]
        for index, rows in self._map("features", chunks):
            stored.write(todo[index], rows)
            advance(len(rows))
        self._train = stored.matrix
        self._directory = directory
        self._curvature = self._preconditioner()

    def _whitening(self, directory: Path, progress) -> list[tuple[np.ndarray, np.ndarray]]:
        """The whitening factors (:mod:`.whitening`) of the first ``whiten_examples`` training
        pairs, from the cache beside the features or computed by the workers."""
        path = directory / f"whiten-{self.options.whiten}.npz"
        cached = whitening.load_factors(path, self._layout()[2])
        if cached is not None:
            return cached
        sample = self._pairs[:self.options.whiten_examples]
        advance = progress("curvature factors for whitening", len(sample))
        chunks = [[(p.question, p.answer, p.system_prompt) for p in sample[start:start + _CHUNK]]
                  for start in range(0, len(sample), _CHUNK)]

        def arrivals():
            for index, part in self._map("statistics", chunks):
                advance(len(chunks[index]))
                yield index, part
        factors = whitening.factors_from_statistics(arrivals(), len(chunks), self.options.whiten_damping)
        whitening.save_factors(path, factors)
        return factors

    def _preconditioner(self) -> Preconditioner:
        return preconditioner(self.options, self._train, layer_spans(self._layout()[1]),
                              self._directory, self._eval, _SCORE_CHUNK)

    def prepare_queries(self, items: list[EvalItem], progress) -> None:
        """The eval answers' features, for ``eval_mix`` (the curvature is computed again with
        them mixed in) and for contrastive queries (``contrast``)."""
        if (self.options.eval_mix <= 0 and self.options.contrast <= 0) or self._train is None:
            return
        answered = [i for i in items if i.answer is not None]
        examples = [(i.question, i.answer, i.system_prompt) for i in answered]
        feats = self._features_of(examples, progress("gradients of eval answers", len(examples)))
        for example, row in zip(examples, feats):
            self._query_features[example] = row
        self._eval = feats if len(feats) else None
        if self.options.contrast > 0 and self._eval is not None:
            # Needs verdicts given in the eval set: the good answers are what is subtracted.
            good = np.array([i.verdict == "good" for i in answered])
            contrasted = contrastive_queries(self._eval, good, self.options.contrast,
                                             self.options.contrast_neighbours)
            if contrasted is not None:
                self._query_features.update(zip(examples, contrasted))
        if self.options.eval_mix > 0:
            self._curvature = self._preconditioner()

    # -- scoring ----------------------------------------------------------------------------

    def _score_blocks(self, items: list[EvalItem]) -> Any:
        """(first pair, items × block scores), a block of training features at a time."""
        if self._train is None:
            raise RuntimeError("prepare() must run before attribute()")
        examples = [(i.question, i.answer or "", i.system_prompt) for i in items]
        missing = list(dict.fromkeys(e for e in examples if e not in self._query_features))
        computed = dict(zip(missing, self._features_of(missing))) if missing else {}
        queries = np.stack([self._query_features.get(e, computed.get(e)) for e in examples])
        yield from score_blocks(queries, self._train, self._curvature, _SCORE_CHUNK)

    def scores(self, items: list[EvalItem]) -> np.ndarray:
        """Raw scores, items × unique training pairs."""
        out = np.empty((len(items), len(self._train) if self._train is not None else 0), dtype=np.float64)
        for start, block in self._score_blocks(items):
            out[:, start:start + block.shape[1]] = block
        return out

    def attribute(self, items: list[EvalItem]) -> list[Attribution]:
        records = []
        answered = [i for i in items if i.answer is not None]
        ranked = dict(zip((i.id for i in answered), levels_of_blocks(
            self._score_blocks(answered), len(answered), len(self._train), self.top_k,
            self.options.calibration()))) if answered else {}
        for item in items:
            if item.id not in ranked:
                records.append(Attribution(item.id, status="failed",
                                           error="the gradient backend needs the item's answer"))
                continue
            influences = [
                Influence(pair_id=self._pairs[j].pair_id, influence_level=level,
                          score=round(score, 6), file_id=self._pairs[j].file_id,
                          messages=qa_text(self._pairs[j].question, self._pairs[j].answer))
                for j, score, level in ranked[item.id]
            ]
            records.append(Attribution(item.id, influences, answer=item.answer,
                                       version=f"refine-gradient-{self.fingerprint[:8]}"))
        return records

    def close(self) -> None:
        self._model.close()
        if self._train is not None:
            self._train.close()
        self._train = None
