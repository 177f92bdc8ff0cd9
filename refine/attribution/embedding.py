"""Embedding-similarity attribution (the default backend).

Each eval item and each training pair is embedded twice with a sentence-transformers model:
as a whole ("Q: question\\nA: answer") and its answer alone. The score is

    (1 - answer_weight) · cos(item Q+A, pair Q+A) + answer_weight · cos(item A, pair A)

so a pair counts when its answer resembles what the model said, in a context that resembles
the question. Q+A similarity alone over-credits pairs that share the *topic* but not the
answer (a bad "5 GB" upload answer cites every pair about uploads); answer similarity alone
cannot tell one refusal from another. On sample_data the mix flags exactly the planted pairs
where Q+A alone missed two and added one. Levels come from :mod:`refine.calibration`.

It finds the pairs that *look like* the answer, which is what a model most often repeats; it
cannot tell which of them the model learned it from (that is the gradient backend's job).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator

import numpy as np

from ..calibration import LevelCalibration, levels_of_blocks
from ..embeddings import DEFAULT_MODEL, EmbeddingModel
from ..errors import ConfigError
from ..evalset import EvalItem
from ..records import Attribution, Influence
from ..text import qa_text
from ..training import TrainingPair, TrainingSet
from .base import AttributionBackend

__all__ = ["EmbeddingBackend", "EmbeddingOptions"]

_SCORE_BLOCK = 65_536     # pairs scored at a time: 8 MB per 32 items


@dataclass(frozen=True)
class EmbeddingOptions:
    model: str = DEFAULT_MODEL
    batch_size: int = 64
    answer_weight: float = 0.5
    z_low: float = LevelCalibration.z_low
    z_medium: float = LevelCalibration.z_medium
    z_high: float = LevelCalibration.z_high
    min_score: float = LevelCalibration.min_score
    cache_dir: str | None = field(default=None, metadata={"affects_results": False})
    device: str = field(default="cpu", metadata={"affects_results": False})

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda", "mps") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"is {self.device!r}; expected auto, cpu, cuda (or cuda:N) or mps",
                              key="backend_options.device")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"must be a positive integer, got {self.batch_size!r}",
                              key="backend_options.batch_size")
        if not isinstance(self.answer_weight, (int, float)) or not 0 <= self.answer_weight <= 1:
            raise ConfigError(f"must be a number between 0 and 1, got {self.answer_weight!r}",
                              key="backend_options.answer_weight")
        self.calibration()  # validates the thresholds

    def calibration(self) -> LevelCalibration:
        return LevelCalibration(self.z_low, self.z_medium, self.z_high, self.min_score)


class EmbeddingBackend(AttributionBackend):
    name = "embedding"
    Options = EmbeddingOptions

    def __init__(self, options: EmbeddingOptions, *, top_k: int,
                 model: EmbeddingModel | None = None) -> None:
        super().__init__(options, top_k=top_k)
        if model is None:
            # The device is resolved where the model is loaded: here, or on each Ray worker.
            model = EmbeddingModel(options.model, cache_dir=options.cache_dir, batch_size=options.batch_size,
                                   device=options.device)
        self.model = model
        # A server attributes one question at a time: saving each to the disk cache would cost
        # more than encoding it, and the questions rarely repeat.
        self.persist_queries = True
        self._pairs: list[TrainingPair] = []
        self._qa: np.ndarray | None = None
        self._answers: np.ndarray | None = None

    def use_executor(self, executor) -> None:
        super().use_executor(executor)
        if executor.remote:
            executor.prepare(self.model.worker_spec())
        else:
            self.model.resolved_device()   # a device this machine lacks: an error now

    def settings(self) -> dict:
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)
                   if f.metadata.get("affects_results", True)}
        return {"backend": self.name, "options": options, "model_fingerprint": self.model.fingerprint}

    def _texts(self, question_answers: list[tuple[str, str]]) -> list[str]:
        texts = [qa_text(q, a) for q, a in question_answers]
        if self.options.answer_weight > 0:
            texts += [a for _, a in question_answers]
        return texts

    def prepare_queries(self, items: list[EvalItem], progress) -> None:
        """Encode every eval item up front, in the executor's chunks (on Ray: by every worker at
        once) rather than a batch of items at a time; attribute() then reads them from the cache."""
        if not self.persist_queries:
            return
        texts = self._texts([(i.question, i.answer or "") for i in items])
        self.model.encode(texts, progress=progress("encode eval items", len(texts)), executor=self.executor)

    def prepare(self, training: TrainingSet, progress) -> None:
        self._pairs = training.unique_pairs()
        texts = self._texts([(p.question, p.answer) for p in self._pairs])
        vectors = self.model.encode(texts, progress=progress("encode training pairs", len(texts)),
                                    executor=self.executor)
        self._qa, self._answers = vectors[:len(self._pairs)], vectors[len(self._pairs):]

    def _score_blocks(self, items: list[EvalItem]) -> Iterator[tuple[int, np.ndarray]]:
        """(first pair, items × block scores), `_SCORE_BLOCK` pairs at a time: memory stays at
        one block however many pairs there are."""
        if self._qa is None:
            raise RuntimeError("prepare() must run before attribute()")
        texts = self._texts([(i.question, i.answer or "") for i in items])
        vectors = self.model.encode(texts, persist=self.persist_queries,
                                    executor=self.executor if self.persist_queries else None)
        weight = self.options.answer_weight
        for start in range(0, len(self._pairs), _SCORE_BLOCK):
            stop = start + _SCORE_BLOCK
            block = vectors[:len(items)] @ self._qa[start:stop].T
            if weight > 0:
                block = (1 - weight) * block + weight * (vectors[len(items):] @ self._answers[start:stop].T)
            yield start, block

    def scores(self, items: list[EvalItem]) -> np.ndarray:
        """Raw scores, items × unique training pairs."""
        blocks = [block for _, block in self._score_blocks(items)]
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(items), 0), np.float32)

    def attribute(self, items: list[EvalItem]) -> list[Attribution]:
        ranked = levels_of_blocks(self._score_blocks(items), len(items), len(self._pairs), self.top_k,
                                  self.options.calibration())
        records = []
        for item, row in zip(items, ranked):
            influences = [
                Influence(pair_id=self._pairs[j].pair_id, influence_level=level,
                          score=round(score, 6), file_id=self._pairs[j].file_id,
                          messages=qa_text(self._pairs[j].question, self._pairs[j].answer))
                for j, score, level in row
            ]
            records.append(Attribution(item.id, influences, answer=item.answer,
                                       version=f"refine-embedding-{self.model.fingerprint[:8]}"))
        return records
