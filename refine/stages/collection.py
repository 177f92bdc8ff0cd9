"""`collect`: attribute every eval item to training pairs and store it in a run directory."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import pyarrow as pa

from ..core._atomic import write_parquet
from ..core._progress import Progress
from ..attribution.base import AttributionBackend, backend_class, make_backend
from ..core.embeddings import EmbeddingModel
from ..formats.evalset import EvalItem, load_eval
from ..executors import make_executor
from .grading import GradeSettings, grade_items
from ..settings import CollectSettings
from ..core.provenance import provenance
from ..formats.records import Attribution
from ..core.lineage import ATTRIBUTIONS, CLAIM_LINKS, CLAIMS, EVIDENCE, ITEMS, PAIRS, StageWriter
from ..core.rundir import RunDir
from ..formats.sources import open_source, source_digest
from ..formats.training import TrainingInput, TrainingSet, load_training

__all__ = ["CollectResult", "CollectSettings", "collect", "write_collection"]

SETTINGS_FORMAT = 1


@dataclass(frozen=True)
class CollectResult:
    run_dir: Path
    items: int
    done: int
    failed: list[str]
    resumed: int           # items found finished from an earlier, interrupted run
    training_pairs: int
    skipped_lines: int
    unmatched_results: int = 0          # remote results that match no local training line
    unmatched_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)    # what the backend measured on the way


def _train_entry(f: Any) -> dict[str, Any]:
    entry = {"path": f.path, "sha256": f.sha256, "format": f.format, "layout": f.layout}
    if f.rows is not None:
        entry["rows"] = f.rows
    return entry


def _settings_record(training: TrainingSet, eval_path: str, backend_settings: dict[str, Any],
                     settings: CollectSettings, evidence_fingerprint: str | None = None) -> dict[str, Any]:
    source = open_source(eval_path)
    return {
        "format": SETTINGS_FORMAT,
        "inputs": {
            "train": [_train_entry(f) for f in training.files],
            "eval": {"path": eval_path, "sha256": source_digest(source), "format": source.format,
                     "layout": settings.eval_format},
            "skip_invalid": settings.skip_invalid,
        },
        "collect": {"top_k": settings.top_k, **backend_settings},
        "grade": asdict(settings.grade),
        "evidence": {"on": settings.evidence, "lookup": settings.evidence_lookup,
                     "model_fingerprint": evidence_fingerprint if settings.evidence else None},
    }


def _pairs_table(training: TrainingSet) -> pa.Table:
    pairs = training.pairs
    return pa.table({
        "pair_id": [p.pair_id for p in pairs],
        "file": [p.file for p in pairs],
        "line": pa.array([p.line for p in pairs], pa.int64()),
        "file_id": [p.file_id for p in pairs],
        "question": [p.question for p in pairs],
        "answer": [p.answer for p in pairs],
        "system_prompt": pa.array([p.system_prompt for p in pairs], pa.string()),
    })


def collect(train: list[str | TrainingInput], eval_path: str, out: str | Path,
            settings: CollectSettings | None = None, *, overwrite: bool = False,
            progress: bool = True, backend: AttributionBackend | None = None) -> CollectResult:
    """Attribute every item of `eval_path` to pairs of the `train` sources; write the run to `out`.

    Sources are files or saved Hugging Face datasets (:mod:`refine.formats.sources`); a
    :class:`TrainingInput` names one source's record layout. Inputs are fully validated before
    anything is written. Re-running with the same inputs and settings resumes: finished items
    are not attributed again. `backend` overrides the one the settings name (for backends
    built in code). ``settings.executor`` says where the backend's heavy work runs (in this
    process, or on a Ray cluster: :mod:`refine.executors`); it never changes what is written.
    """
    settings = settings or CollectSettings()
    training = load_training(list(train), skip_invalid=settings.skip_invalid,
                             layout=settings.train_format)
    backend_kind = backend or backend_class(settings.backend)
    evalset = load_eval(eval_path, skip_invalid=settings.skip_invalid, format=settings.eval_format,
                        need_answers=f"the {backend_kind.name!r} backend" if backend_kind.needs_answer
                        else None)
    backend = backend or make_backend(settings.backend, settings.backend_options,
                                      top_k=settings.top_k)
    # Built (a cluster reached, its resources checked) before anything is written.
    executor = make_executor(settings.executor)
    with executor, backend:
        backend.use_executor(executor)

        # The text evidence is encoded by the backend's own embedding model when it has one,
        # else by the default one; which, is part of what decides the results.
        own_model = backend.embedding_model()
        evidence_model = (own_model if own_model is not None else EmbeddingModel()) if settings.evidence else None
        settings_record = _settings_record(training, str(eval_path), backend.settings(), settings,
                                           evidence_model.fingerprint if evidence_model else None)
        run = RunDir(out)
        run.prepare_for(settings_record, overwrite=overwrite)
        run.write_settings(settings_record, provenance())
        with run.stage("collect", settings_record) as stage:
            write_parquet(stage.path(PAIRS), _pairs_table(training))

            done = run.read_journal()
            finished = {eid for eid, rec in done.items() if rec.status == "done"}
            todo = [item for item in evalset.items if item.id not in finished]
            resumed = len(evalset.items) - len(todo)

            with Progress(progress).session() as bars, run.journal_writer() as journal:
                if todo:
                    backend.prepare(training, bars.callback)
                    backend.prepare_queries(evalset.items, bars.callback)
                    bar = bars.bar(f"attribute ({backend.name})", len(evalset.items), unit="item",
                                   initial=resumed)
                    failures = 0
                    for record in backend.iter_attributions(todo, settings.batch_size):
                        journal.append(record)
                        done[record.eval_id] = record
                        failures += record.status != "done"
                        bar.update(1)
                        bar.set_postfix(failed=failures, refresh=False)
            item_table, attributions = _finalize(stage, evalset.items, done, settings.grade, own_model, eval_path)
            if evidence_model is not None:
                # On the backend's workers when they hold this model.
                remote = evidence_model is own_model and getattr(backend.executor, "remote", False)
                with Progress(progress).session() as bars:
                    _write_evidence(stage, item_table, _pairs_table(training), attributions, evidence_model,
                                    settings.evidence_lookup, backend.executor if remote else None, bars)

    failed = [item.id for item in evalset.items if done[item.id].status != "done"]
    skipped = len(training.skipped) + len(evalset.skipped)
    unmatched = [inf.messages for item in evalset.items for inf in done[item.id].influences
                 if inf.pair_id is None]
    return CollectResult(run.path, len(evalset.items), len(evalset.items) - len(failed), failed,
                         resumed, len(training.pairs), skipped, len(unmatched), unmatched[:5],
                         list(getattr(backend, "notes", [])))


@contextlib.contextmanager
def write_collection(out: str | Path, training: TrainingSet, eval_path: str | Path, backend: dict[str, Any],
                     settings: CollectSettings | None = None, *,
                     records: Mapping[str, Attribution] | None = None) -> Iterator[StageWriter]:
    """Write a run directory as :func:`collect` does from attribution records made without a
    backend (a benchmark's synthetic ones), and hold its collect stage open while the block runs.

    `backend` stands for what a backend's :meth:`~refine.attribution.base.AttributionBackend.settings`
    records (``backend``, ``options``, …). settings.json and provenance.json are written first;
    then, given `records` (an Attribution per item of `eval_path`, by eval id), pairs.parquet from
    `training`, and items.parquet and attributions.parquet from the records, the items graded as
    collect grades them. The block writes whatever else the stage holds through the writer it is
    handed: the text evidence, or, without `records`, the tables themselves (then only
    ``training.files`` is read). `out` must be new or empty.
    """
    settings = settings or CollectSettings()
    record = _settings_record(training, str(eval_path), backend, settings)
    run = RunDir(out)
    run.prepare_for(record, overwrite=False)
    run.write_settings(record, provenance())
    with run.stage("collect", record) as stage:
        if records is not None:
            evalset = load_eval(str(eval_path), skip_invalid=settings.skip_invalid, format=settings.eval_format)
            write_parquet(stage.path(PAIRS), _pairs_table(training))
            _finalize(stage, evalset.items, dict(records), settings.grade, None, str(eval_path))
        yield stage


def _finalize(stage: StageWriter, items: list[EvalItem], records: dict[str, Attribution],
              grade_settings: GradeSettings, grader_model: Any, eval_path: str) -> tuple[pa.Table, pa.Table]:
    """Write items.parquet and attributions.parquet, in eval-set order."""
    # The answer a remote service generated stands in for a missing one.
    answered = [item if item.answer is not None or records[item.id].answer is None
                else EvalItem(**{**asdict(item), "answer": records[item.id].answer})
                for item in items]
    needs_model = any(item.verdict is None for item in answered)
    if needs_model and grader_model is None:
        from ..core.embeddings import EmbeddingModel
        grader_model = EmbeddingModel()
    grades = grade_items(answered, grade_settings, grader_model if needs_model else None,
                         file=str(eval_path))

    rows: dict[str, list] = {k: [] for k in ("eval_id", "rank", "pair_id", "source_id", "score",
                                             "influence_level", "file_id", "messages")}
    for item in answered:
        for rank, inf in enumerate(records[item.id].influences, start=1):
            rows["eval_id"].append(item.id)
            rows["rank"].append(rank)
            rows["pair_id"].append(inf.pair_id)
            rows["source_id"].append(inf.source_id)
            rows["score"].append(inf.score)
            rows["influence_level"].append(inf.influence_level)
            rows["file_id"].append(inf.file_id)
            rows["messages"].append(inf.messages)
    attributions = pa.table({
        "eval_id": pa.array(rows["eval_id"], pa.string()),
        "rank": pa.array(rows["rank"], pa.int32()),
        "pair_id": pa.array(rows["pair_id"], pa.string()),
        "source_id": pa.array(rows["source_id"], pa.string()),
        "score": pa.array(rows["score"], pa.float64()),
        "influence_level": pa.array(rows["influence_level"], pa.string()),
        "file_id": pa.array(rows["file_id"], pa.string()),
        "messages": pa.array(rows["messages"], pa.string()),
    })
    item_table = pa.table({
        "eval_id": [i.id for i in answered],
        "line": pa.array([i.line for i in answered], pa.int64()),
        "question": [i.question for i in answered],
        "answer": pa.array([i.answer for i in answered], pa.string()),
        "system_prompt": pa.array([i.system_prompt for i in answered], pa.string()),
        "reference": pa.array([i.reference for i in answered], pa.string()),
        "verdict": [g.verdict for g in grades],
        "verdict_source": [g.source for g in grades],
        "grade_f1": pa.array([g.f1 for g in grades], pa.float64()),
        "grade_key_recall": pa.array([g.key_recall for g in grades], pa.float64()),
        "grade_semantic": pa.array([g.semantic for g in grades], pa.float64()),
        "grade_numbers_ok": pa.array([g.numbers_ok for g in grades], pa.bool_()),
        "status": [records[i.id].status for i in answered],
        "error": pa.array([records[i.id].error for i in answered], pa.string()),
        "n_influences": pa.array([len(records[i.id].influences) for i in answered], pa.int32()),
        "version": pa.array([records[i.id].version for i in answered], pa.string()),
    })
    write_parquet(stage.path(ATTRIBUTIONS), attributions)
    write_parquet(stage.path(ITEMS), item_table)
    return item_table, attributions


def _write_evidence(stage: StageWriter, items: pa.Table, pairs: pa.Table, attributions: pa.Table,
                    model: EmbeddingModel, lookup: int, executor: Any, bars: Any) -> None:
    """evidence.parquet, claims.parquet and claim_links.parquet (:mod:`refine.stages.flagging.evidence`). The
    sentences are encoded here — through the embedding cache, so a crashed collect encodes only
    what it never saved, and on the executor's workers when they hold this model — so that flag
    only compares scores it is handed. The training sentences' vectors go to disk, not memory."""
    from .flagging.gather import gather

    done = items.filter(pa.compute.equal(items["status"], "done")).select(
        ["eval_id", "question", "answer", "reference", "verdict"]).to_pandas()
    matrices = []

    def encode(texts: list[str]) -> Any:
        return model.encode(texts, executor=executor, progress=bars.callback("evidence: encode answers and references", len(texts)))

    def encode_claims(texts: list[str], what: str = "training sentences") -> Any:
        matrix = model.encode_to_disk(texts, executor=executor,
                                      progress=bars.callback(f"evidence: encode {what}", len(texts)))
        matrices.append(matrix)
        return matrix.array

    try:
        evidence = gather(done, pairs.select(["pair_id", "question", "answer"]).to_pandas(),
                          attributions.select(["eval_id", "pair_id"]).to_pandas(), encode, lookup=lookup,
                          encode_claims=encode_claims)
    finally:
        for matrix in matrices:
            matrix.close()
    tables = evidence.tables()
    write_parquet(stage.path(EVIDENCE), tables["rows"])
    write_parquet(stage.path(CLAIMS), tables["claims"])
    write_parquet(stage.path(CLAIM_LINKS), tables["links"])

