"""Embedding-similarity attribution (the default backend).

Each eval item and each training pair is embedded twice with a sentence-transformers model:
as a whole ("Q: question\\nA: answer") and its answer alone. The score is

    (1 - answer_weight) · cos(item Q+A, pair Q+A) + answer_weight · cos(item A, pair A)

so a pair counts when its answer resembles what the model said, in a context that resembles
the question. Q+A similarity alone over-credits pairs that share the *topic* but not the
answer (a bad "5 GB" upload answer cites every pair about uploads); answer similarity alone
cannot tell one refusal from another. On sample_data the mix flags exactly the planted pairs
where Q+A alone missed two and added one. Levels come from :mod:`refine.attribution.calibration`.

It finds the pairs that *look like* the answer, which is what a model most often repeats; it
cannot tell which of them the model learned it from (that is the gradient backend's job).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np

from .calibration import LevelCalibration, levels_of_blocks, levels_of_top, stats_sample
from ..core.disk_matrix import DiskMatrix
from ..core.embeddings import DEFAULT_MODEL, EmbeddingModel
from ..fields import device_problem, setting, validate
from ..formats.evalset import EvalItem
from ..formats.records import Attribution, Influence
from ..core.text import qa_text
from ..formats.training import TrainingPair, TrainingSet
from .base import AttributionBackend

__all__ = ["EmbeddingBackend", "EmbeddingOptions"]

_SCORE_BLOCK = 65_536     # pairs scored at a time: 8 MB per 32 items
_RECALL_PROBE = 64        # eval items whose hnsw top k is checked against exact search
_EF_SEARCH_MAX = 65_536   # past this a search is no cheaper than scoring every pair of a block
SEARCHES = ("exact", "hnsw")


@dataclass(frozen=True)
class EmbeddingOptions:
    """What an embedding run computes: each field is a key of ``backend_options``."""

    model: str = setting("A local sentence-transformers model directory (default: the packaged "
                         "all-MiniLM-L6-v2).", DEFAULT_MODEL)
    batch_size: int = setting("Texts encoded per batch.", 64, low=1)
    answer_weight: float = setting("Weight of the answers' own similarity beside the question and "
                                   "answer's: the score is (1 − w)·cos(Q+A) + w·cos(A).", 0.5, low=0, high=1)
    z_low: float = setting("Robust z-score below which a pair is not cited.", LevelCalibration.z_low)
    z_medium: float = setting("Robust z-score from which a cited pair is of medium influence.",
                              LevelCalibration.z_medium)
    z_high: float = setting("Robust z-score from which a cited pair is of high influence.",
                            LevelCalibration.z_high)
    min_score: float = setting("Cosine below which a pair is not cited, however the rest score.",
                               LevelCalibration.min_score)
    search: str = setting("exact: score every pair; hnsw: find each item's top k in an approximate "
                          "index (pip install 'refine[ann]') and rescore them exactly, worth it past "
                          "~10⁶ pairs.", "exact", choices=SEARCHES)
    ef_search: int = setting("hnsw: candidates searched (and rescored) per item; more is slower and "
                             "finds more.", 128, low=1, high=_EF_SEARCH_MAX)
    cache_dir: str | None = setting("Where embeddings are kept between runs (default: $REFINE_CACHE_DIR, "
                                    "else ~/.cache/refine).", None, affects_results=False)
    device: str = setting("cpu, auto (a GPU when torch sees one), cuda (or cuda:N) or mps.", "cpu",
                          check=device_problem, affects_results=False)

    def __post_init__(self) -> None:
        validate(self, "backend_options")
        self.calibration()  # validates the thresholds

    def calibration(self) -> LevelCalibration:
        return LevelCalibration(self.z_low, self.z_medium, self.z_high, self.min_score)


class EmbeddingBackend(AttributionBackend):
    name = "embedding"
    Options = EmbeddingOptions

    def __init__(self, options: EmbeddingOptions, *, top_k: int,
                 model: EmbeddingModel | None = None) -> None:
        super().__init__(options, top_k=top_k)
        if options.search == "hnsw":
            from .pair_index import require_faiss

            require_faiss()       # missing: a ConfigError before anything is written
        if model is None:
            # The device is resolved where the model is loaded: here, or on each Ray worker.
            model = EmbeddingModel(options.model, cache_dir=options.cache_dir, batch_size=options.batch_size,
                                   device=options.device)
        self.model = model
        self.persist_queries = True    # off under `refine serve` (serve_mode)
        self._pairs: list[TrainingPair] = []
        # The pairs' vectors live in a file read through a memory map (3 KB per pair: 30 GB at
        # 10⁷ pairs); what scoring reads is handed back to the system as it goes (_release).
        self._vectors: DiskMatrix | None = None
        self._queries: DiskMatrix | None = None           # the eval items', from prepare_queries
        self._query_rows: dict[tuple[str, str], int] = {}
        self._n_queries = 0
        self._qa: np.ndarray | None = None
        self._answers: np.ndarray | None = None
        self._index = None
        self.notes: list[str] = []     # said to the user when collect ends (the measured recall)

    def embedding_model(self) -> EmbeddingModel:
        return self.model

    def serve_mode(self) -> None:
        # A server attributes one question at a time: saving each to the disk cache would cost
        # more than encoding it, and the questions rarely repeat.
        self.persist_queries = False

    def use_executor(self, executor) -> None:
        super().use_executor(executor)
        if executor.remote:
            executor.prepare(self.model.worker_spec())
        else:
            self.model.resolved_device()   # a device this machine lacks: an error now

    def settings(self) -> dict:
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)
                   if f.metadata.get("affects_results", True)}
        # Exact search, as every run before hnsw existed: recorded as those runs were, so that
        # they resume, and ef_search (which exact search never reads) cannot refuse a resume.
        if self.options.search == "exact":
            del options["search"], options["ef_search"]
        return {"backend": self.name, "options": options, "model_fingerprint": self.model.fingerprint}

    def _texts(self, question_answers: list[tuple[str, str]]) -> list[str]:
        texts = [qa_text(q, a) for q, a in question_answers]
        if self.options.answer_weight > 0:
            texts += [a for _, a in question_answers]
        return texts

    def prepare_queries(self, items: list[EvalItem], progress) -> None:
        """Encode every eval item up front, in the executor's chunks (on Ray: by every worker at
        once) rather than a batch of items at a time; attribute() then reads their rows."""
        if not self.persist_queries:
            return
        question_answers = [(i.question, i.answer or "") for i in items]
        texts = self._texts(question_answers)
        if self._queries is not None:
            self._queries.close()
        # Kept in a file of their own, in item order: a batch then reads its rows, not the
        # cache's shards (which hold them in length order, a thousand texts to a shard).
        self._queries = self.model.encode_to_disk(texts, progress=progress("encode eval items", len(texts)),
                                                  executor=self.executor)
        self._query_rows = {qa: row for row, qa in enumerate(question_answers)}
        self._n_queries = len(question_answers)    # answers' rows follow (items may repeat)
        if self._index is not None and items:
            self._probe_recall(items[:_RECALL_PROBE])

    def prepare(self, training: TrainingSet, progress) -> None:
        self._index = None
        self.notes.clear()
        if self._vectors is not None:
            self._vectors.close()
        self._pairs = training.unique_pairs()
        texts = self._texts([(p.question, p.answer) for p in self._pairs])
        self._vectors = self.model.encode_to_disk(texts, progress=progress("encode training pairs", len(texts)),
                                                  executor=self.executor)
        vectors = self._vectors.array
        self._qa, self._answers = vectors[:len(self._pairs)], vectors[len(self._pairs):]
        if self.options.search == "hnsw" and self._pairs:
            from .pair_index import PairIndex, index_key

            digest = hashlib.sha256()
            for text in texts:
                digest.update(hashlib.sha256(text.encode("utf-8")).digest())
            key = index_key(self.model.fingerprint, self.options.answer_weight, digest.digest())
            self._index = PairIndex.open_or_build(
                self.model.cache_path / "hnsw", key, len(self._pairs),
                self._joined_rows, progress("index training pairs", len(self._pairs)))

    def _release(self) -> None:
        if self._vectors is not None:
            self._vectors.release()

    def close(self) -> None:
        for matrix in (self._vectors, self._queries):
            if matrix is not None:
                matrix.close()
        self._vectors = self._queries = self._qa = self._answers = None
        self._query_rows = {}

    def _joined_rows(self, start: int, stop: int) -> np.ndarray:
        joined = self._joined(self._qa[start:stop], self._answers[start:stop])
        self._release()
        return joined

    def _joined(self, qa: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """[√(1-w)·qa, √w·a]: vectors whose inner product is the score."""
        weight = self.options.answer_weight
        if weight == 0:
            return qa
        return np.hstack([np.float32(np.sqrt(1 - weight)) * qa, np.float32(np.sqrt(weight)) * answers])

    def _item_vectors(self, items: list[EvalItem]) -> tuple[np.ndarray, np.ndarray | None]:
        question_answers = [(i.question, i.answer or "") for i in items]
        rows = [self._query_rows.get(qa) for qa in question_answers]
        if self._queries is not None and None not in rows:
            n, queries = self._n_queries, self._queries.array
            qa = queries[rows]
            answers = queries[[n + r for r in rows]] if self.options.answer_weight > 0 else None
            self._queries.release()
            return qa, answers
        texts = self._texts(question_answers)
        vectors = self.model.encode(texts, persist=self.persist_queries,
                                    executor=self.executor if self.persist_queries else None)
        return vectors[:len(items)], (vectors[len(items):] if self.options.answer_weight > 0 else None)

    def _scores_of(self, qa: np.ndarray, answers: np.ndarray | None, pairs: np.ndarray) -> np.ndarray:
        """Items × the given pairs, in the arithmetic of the exact blocks (float32)."""
        block = qa @ self._qa[pairs].T
        if answers is not None:
            weight = self.options.answer_weight
            block = (1 - weight) * block + weight * (answers @ self._answers[pairs].T)
        self._release()
        return block

    def _hnsw_top(self, qa: np.ndarray, answers: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Each item's top k among the candidates the index finds, rescored exactly; ties to
        the lower pair index, as in exact search."""
        weight = self.options.answer_weight
        joined = self._joined(qa, answers) if answers is not None else qa
        found = self._index.search(joined, max(self.top_k, self.options.ef_search), self.options.ef_search)
        valid = found >= 0
        pairs = np.where(valid, found, 0)
        score = np.einsum("qd,qcd->qc", qa, self._qa[pairs])
        if answers is not None:
            score = (1 - weight) * score + weight * np.einsum("qd,qcd->qc", answers, self._answers[pairs])
        score = np.where(valid, score.astype(np.float64), -np.inf)
        order = np.lexsort((pairs, -score), axis=1)[:, :self.top_k]
        return np.take_along_axis(pairs, order, axis=1), np.take_along_axis(score, order, axis=1)

    def _attribute_hnsw(self, items: list[EvalItem]) -> list[list[tuple[int, float, str]]]:
        qa, answers = self._item_vectors(items)
        best_index, best_score = self._hnsw_top(qa, answers)
        # The median and MAD that set the levels come from exact scores, as in exact search:
        # of every pair up to STATS_MAX, else of the same fixed sample.
        sample = stats_sample(len(self._pairs))
        if sample is None:
            stats = np.concatenate([block for _, block in self._blocks(qa, answers)], axis=1)
        else:
            stats = np.concatenate([self._scores_of(qa, answers, sample[i:i + _SCORE_BLOCK])
                                    for i in range(0, len(sample), _SCORE_BLOCK)], axis=1)
        # A slot the graph left empty (fewer pairs than k reachable) scores -inf: never cited.
        return levels_of_top(best_index, best_score, stats, self.options.calibration())

    def _probe_recall(self, items: list[EvalItem]) -> None:
        """Recall@k of the index against exact search on the first eval items: told to the user."""
        qa, answers = self._item_vectors(items)
        _, found_score = self._hnsw_top(qa, answers)
        everything = LevelCalibration(-np.inf, -np.inf, -np.inf, -np.inf)
        exact = levels_of_blocks(self._blocks(qa, answers), len(items), len(self._pairs), self.top_k, everything)
        hits = total = 0
        for row, ranked in enumerate(exact):
            # A pair found counts when it scores as high as the k-th exact one: of pairs with
            # equal scores, either may be the one cited.
            kth = ranked[-1][1] - 1e-6
            total += len(ranked)
            hits += int((found_score[row][:len(ranked)] >= kth).sum())
        recall = hits / total if total else 1.0
        self.notes.append(f"hnsw search: recall@{self.top_k} {recall:.4f} against exact search "
                          f"on the first {len(items)} eval items (ef_search={self.options.ef_search})")

    def _score_blocks(self, items: list[EvalItem]) -> Iterator[tuple[int, np.ndarray]]:
        """(first pair, items × block scores), `_SCORE_BLOCK` pairs at a time: memory stays at
        one block however many pairs there are."""
        if self._qa is None:
            raise RuntimeError("prepare() must run before attribute()")
        yield from self._blocks(*self._item_vectors(items))

    def _blocks(self, qa: np.ndarray, answers: np.ndarray | None) -> Iterator[tuple[int, np.ndarray]]:
        weight = self.options.answer_weight
        for start in range(0, len(self._pairs), _SCORE_BLOCK):
            stop = start + _SCORE_BLOCK
            block = qa @ self._qa[start:stop].T
            if answers is not None:
                block = (1 - weight) * block + weight * (answers @ self._answers[start:stop].T)
            self._release()
            yield start, block

    def scores(self, items: list[EvalItem]) -> np.ndarray:
        """Raw scores, items × unique training pairs."""
        blocks = [block for _, block in self._score_blocks(items)]
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(items), 0), np.float32)

    def attribute(self, items: list[EvalItem]) -> list[Attribution]:
        if self._index is not None:
            ranked = self._attribute_hnsw(items)
        else:
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
