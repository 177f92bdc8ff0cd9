"""The fine-tunes of `refine serve`'s store: STORE/jobs/<ft-id>/job.json (the job and its events)
and STORE/jobs/<ft-id>/model/ (what it trained).

A ``FinetuneRequest`` is checked and queued (:meth:`FineTunes.create`); jobs run one at a time on
a background thread with :func:`refine.stages.local_training.finetune_local`: pending → running →
completed (or failed, or cancelled), with an event per step and the training loss per epoch. A
job that was pending or running when the server stopped is failed when it starts again.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import traceback
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._atomic import write_json
from ..errors import ConfigError, RefineError
from ..seekrflow.flow import ACCELERATORS
from .flow_common import NotFound, Refused, utc_now

if TYPE_CHECKING:
    from .flow_store import FlowStore

__all__ = ["FINAL", "JOB_ID", "FineTunes", "epoch_losses", "one_training_file"]

JOB_ID = re.compile(r"^ft-[0-9a-f]{32}$")
FINAL = frozenset({"completed", "failed", "cancelled", "deleted"})


class FineTunes:
    """The fine-tune jobs of `store` and the thread that trains them, one at a time. `lock` is the
    store's: a job file is never read half written."""

    def __init__(self, store: "FlowStore", lock: threading.RLock) -> None:
        self.store = store
        self.folder = store.root / "jobs"
        self._lock = lock
        self._queue: queue.Queue[str] = queue.Queue()
        self._cancelled: set[str] = set()
        self._recover()
        self._worker = threading.Thread(target=self._work, name="refine-finetune", daemon=True)
        self._worker.start()

    def _listed(self) -> list[Path]:
        return sorted(self.folder.iterdir()) if self.folder.is_dir() else []

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check a ``FinetuneRequest`` body, queue the job, and return it (pending)."""
        from ..settings import FinetuneSettings

        if not isinstance(body, dict):
            raise Refused("the body must be a JSON object (a FinetuneRequest)")
        training, infra = body.get("training_config"), body.get("infrastructure_config")
        if not isinstance(training, dict) or not isinstance(infra, dict):
            raise Refused("training_config and infrastructure_config are required")
        project_id = body.get("project_id")
        if not isinstance(project_id, int) or isinstance(project_id, bool):
            raise Refused("project_id must be an integer")
        self.store.project(project_id)
        model = training.get("model")
        if model not in self.store.base_models:
            known = ", ".join(sorted(self.store.base_models)) or "none: start refine serve with --base-model"
            raise Refused(f"unknown base model {model!r}; this server trains {known}")
        if training.get("fine_tune_type", "STANDARD") != "STANDARD" or training.get("pre_train"):
            raise Refused("refine serve runs STANDARD instruction fine-tunes only")
        files = training.get("training_files")
        if not isinstance(files, list) or not files:
            raise Refused("training_files must list at least one file id")
        for file_id in files:
            try:
                meta = self.store.file(str(file_id))
            except NotFound:
                raise Refused(f"no training file {file_id!r}") from None
            if meta["purpose"] != "fine-tune":
                raise Refused(f"{file_id} was uploaded for {meta['purpose']!r}, not 'fine-tune'")
        if infra.get("accel_type") not in ACCELERATORS:
            raise Refused(f"accel_type must be one of {', '.join(ACCELERATORS)}")
        lora = training.get("lora_config")
        chosen: dict[str, Any] = {"base_model": str(self.store.base_models[model]), "lora": lora is not None,
                                  "epochs": training.get("n_epochs"), "device": self.store.device,
                                  "checkpoint_steps": 0}
        for key in ("learning_rate", "batch_size", "max_length"):
            if training.get(key) is not None:
                chosen[key] = training[key]
        if lora is not None:
            if not isinstance(lora, dict):
                raise Refused("lora_config must be an object")
            chosen.update({f"lora_{k}": lora[k] for k in ("r", "alpha", "dropout") if k in lora})
        try:
            settings = FinetuneSettings(**chosen)
        except ConfigError as exc:
            raise Refused(str(exc).replace("finetune.", "training_config.")) from None
        job_id = f"ft-{uuid.uuid4().hex}"
        now = utc_now()
        job = {"id": job_id, "object": "fine-tune", "status": "pending", "model": model,
               "training_files": [str(f) for f in files], "validation_files": training.get("validation_files"),
               "n_epochs": settings.epochs, "learning_rate": settings.learning_rate,
               "batch_size": settings.batch_size, "lora_config": lora, "fine_tune_type": "STANDARD",
               "experiment_name": training.get("experiment_name"),
               "accel_type": infra["accel_type"], "n_accel": infra.get("n_accel", 1),
               "n_node": infra.get("n_node", 1), "project_id": project_id, "created_at": now,
               "completed_at": None, "inference_available": False, "fine_tuned_model": None,
               "error": None, "settings": {k: v for k, v in chosen.items() if k != "base_model"},
               "events": []}
        (self.folder / job_id).mkdir(parents=True)
        self._save(job)
        self._event(job_id, "JOB_PENDING", "queued")
        self._queue.put(job_id)
        return self.job(job_id)

    def _job_path(self, job_id: str) -> Path:
        path = self.folder / job_id / "job.json"
        if not JOB_ID.match(job_id or "") or not path.is_file():
            raise NotFound(f"no fine-tune {job_id!r}")
        return path

    def job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(self._job_path(job_id).read_text(encoding="utf-8"))

    def jobs(self) -> list[dict[str, Any]]:
        found = [self.job(p.name) for p in self._listed()
                 if JOB_ID.match(p.name) and (p / "job.json").is_file()]
        return sorted(found, key=lambda j: (j["created_at"], j["id"]))

    def training_sources(self, model: str) -> list[tuple[Path, str]] | None:
        """(stored path, file id) of each file a completed fine-tune `model` was trained on, or
        None when `model` is no completed fine-tune here (or a file of it was deleted since)."""
        try:
            job = self.job(model)
            if job["status"] != "completed":
                return None
            return [(self.store.file_path(f), f) for f in job["training_files"]]
        except NotFound:
            return None

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return self.job(job_id)["events"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self.job(job_id)
            if job["status"] in FINAL:
                raise Refused(f"fine-tune {job_id} is {job['status']}; only a pending or running one "
                              "can be cancelled")
            self._cancelled.add(job_id)
            self._update(job_id, status="cancelled", completed_at=utc_now())
            self._event(job_id, "CANCEL_REQUESTED", "cancelled")
        return self.job(job_id)

    def _save(self, job: dict[str, Any]) -> None:
        write_json(self.folder / job["id"] / "job.json", job)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self.job(job_id)
            job.update(changes)
            self._save(job)

    def _event(self, job_id: str, kind: str, message: str, **metrics: Any) -> None:
        with self._lock:
            job = self.job(job_id)
            job["events"].append({"object": "fine-tune-event", "created_at": utc_now(), "type": kind,
                                  "message": message, "level": "Info" if kind != "JOB_ERROR" else "Error",
                                  **metrics})
            self._save(job)

    def _recover(self) -> None:
        for folder in self._listed():
            if JOB_ID.match(folder.name) and (folder / "job.json").is_file():
                job = self.job(folder.name)
                if job["status"] not in FINAL:
                    self._update(job["id"], status="failed", completed_at=utc_now(),
                                 error="the server stopped while the job was pending or running")
                    self._event(job["id"], "JOB_ERROR", "the server stopped while the job was pending or running")

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            try:
                self._run(job_id)
            except Exception:   # the worker outlives any one job; the job says why it failed
                traceback.print_exc()
            finally:
                self._queue.task_done()

    def _run(self, job_id: str) -> None:
        from ..settings import FinetuneSettings
        from ..stages.local_training import finetune_local

        with self._lock:
            if job_id in self._cancelled or self.job(job_id)["status"] != "pending":
                return
            self._update(job_id, status="running")
            self._event(job_id, "JOB_START", "training started")
        job = self.job(job_id)
        settings = FinetuneSettings(base_model=str(self.store.base_models[job["model"]]), **job["settings"])
        folder = self.folder / job_id
        try:
            train = one_training_file([self.store.file_path(f) for f in job["training_files"]],
                                      folder / "train.jsonl")
            local = finetune_local(train, folder / "model", settings, progress=False)
        except Exception as exc:   # any failure of training fails the job, with its reason
            message = str(exc) if isinstance(exc, RefineError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                if job_id not in self._cancelled:
                    self._update(job_id, status="failed", completed_at=utc_now(), error=message)
                    self._event(job_id, "JOB_ERROR", message)
            return
        with self._lock:
            if job_id in self._cancelled:
                return
            for epoch, loss in epoch_losses(local.record):
                self._event(job_id, "EPOCH_COMPLETE", f"epoch {epoch}: loss {loss:.4f}", epoch=epoch, loss=loss)
            size = sum(f.stat().st_size for f in Path(local.path).rglob("*") if f.is_file())
            self._update(job_id, status="completed", completed_at=utc_now(), inference_available=True,
                         fine_tuned_model=job_id, model_bytes=size,
                         final_loss=local.record.get("final_loss"))
            self._event(job_id, "JOB_COMPLETE", f"fine-tuned model {job_id} is ready")

    def wait_idle(self) -> None:
        """Block until every queued job has finished (for tests and a clean shutdown)."""
        self._queue.join()


def one_training_file(paths: list[Path], combined: Path) -> Path:
    """The one file a local fine-tune reads: the file itself, or several JSONL files joined
    (in order) into `combined`."""
    if len(paths) == 1:
        return paths[0]
    if not all(p.suffix.lower() == ".jsonl" for p in paths):
        raise ConfigError("several training files are joined only when each is JSONL; give one file",
                          key="training_files")
    with open(combined, "wb") as out:
        for path in paths:
            data = path.read_bytes()
            out.write(data if data.endswith(b"\n") else data + b"\n")
    return combined


def epoch_losses(record: dict[str, Any]) -> list[tuple[int, float]]:
    """(epoch, mean logged training loss) per epoch of a local fine-tune's record: a logged step
    belongs to the epoch its last example is of (the examples run epoch after epoch)."""
    examples = int(record.get("data", {}).get("examples") or 0)
    batch = int(record.get("settings", {}).get("batch_size") or 1)
    epochs = int(record.get("settings", {}).get("epochs") or 1)
    sums: dict[int, list[float]] = {}
    for step, loss in record.get("losses") or []:
        epoch = min(epochs, max(1, -(-int(step) * batch // examples))) if examples else 1
        sums.setdefault(epoch, []).append(float(loss))
    return [(epoch, sum(v) / len(v)) for epoch, v in sorted(sums.items())]
