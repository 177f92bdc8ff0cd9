"""Embedding-similarity attribution (the default backend).

Each eval item ("Q: question\\nA: answer") and each training pair ("Q: …\\nA: …") is embedded
with a sentence-transformers model; the score is their cosine similarity and the levels
come from :mod:`refine.calibration`. It finds the pairs that *look like* the answer, which
is what a model most often repeats; it cannot tell which of them the model learned it from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..calibration import LevelCalibration, assign_levels
from ..embeddings import DEFAULT_MODEL, EmbeddingModel
from ..errors import ConfigError
from ..evalset import EvalItem
from ..records import Attribution, Influence
from ..text import qa_text
from ..training import TrainingPair, TrainingSet
from .base import AttributionBackend

__all__ = ["EmbeddingBackend", "EmbeddingOptions"]


@dataclass(frozen=True)
class EmbeddingOptions:
    model: str = DEFAULT_MODEL
    batch_size: int = 64
    z_low: float = LevelCalibration.z_low
    z_medium: float = LevelCalibration.z_medium
    z_high: float = LevelCalibration.z_high
    min_score: float = LevelCalibration.min_score
    cache_dir: str | None = field(default=None, metadata={"affects_results": False})

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"must be a positive integer, got {self.batch_size!r}",
                              key="backend_options.batch_size")
        self.calibration()  # validates the thresholds

    def calibration(self) -> LevelCalibration:
        return LevelCalibration(self.z_low, self.z_medium, self.z_high, self.min_score)


class EmbeddingBackend(AttributionBackend):
    name = "embedding"
    Options = EmbeddingOptions

    def __init__(self, options: EmbeddingOptions, *, top_k: int,
                 model: EmbeddingModel | None = None) -> None:
        super().__init__(options, top_k=top_k)
        self.model = model or EmbeddingModel(options.model, cache_dir=options.cache_dir,
                                             batch_size=options.batch_size)
        self._pairs: list[TrainingPair] = []
        self._matrix: np.ndarray | None = None

    def settings(self) -> dict:
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)
                   if f.metadata.get("affects_results", True)}
        return {"backend": self.name, "options": options, "model_fingerprint": self.model.fingerprint}

    def prepare(self, training: TrainingSet, progress) -> None:
        self._pairs = training.unique_pairs()
        texts = [qa_text(p.question, p.answer) for p in self._pairs]
        self._matrix = self.model.encode(texts, progress=progress("encode training pairs", len(texts)))

    def attribute(self, items: list[EvalItem]) -> list[Attribution]:
        if self._matrix is None:
            raise RuntimeError("prepare() must run before attribute()")
        queries = self.model.encode([qa_text(i.question, i.answer) for i in items])
        scores = queries @ self._matrix.T
        ranked = assign_levels(scores, self.top_k, self.options.calibration())
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
