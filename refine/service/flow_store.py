"""What `refine serve` keeps for the SeekrFlow files, projects, fine-tunes and models routes.

Everything lives under one directory (``--store``), one small JSON per object::

    STORE/files/<file-id>/meta.json, STORE/files/<file-id>/content/<the uploaded file's name>
    STORE/projects/<n>.json
    STORE/jobs/<ft-id>/job.json (the job and its events), STORE/jobs/<ft-id>/model/ (what it trained)

Ids are made here (``file-<32 hex>``, ``ft-<32 hex>``, projects count from 1) and every id a
request names is matched against that form before it comes near a path, so no request reaches
outside the store. Fine-tunes run one at a time on a background thread with
:func:`refine.stages.local_training.finetune_local`: pending → running → completed (or failed, or
cancelled), with an event per step and the training loss per epoch. A job that was pending or
running when the server stopped is failed when it starts again.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import threading
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from ..core._atomic import write_json
from ..errors import ConfigError, InputError, RefineError
from ..seekrflow.flow import ACCELERATORS

__all__ = ["FlowStore", "NotFound", "Refused", "epoch_losses", "make_store", "one_training_file"]

FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
JOB_ID = re.compile(r"^ft-[0-9a-f]{32}$")
#: The file types SeekrFlow takes for each purpose refine can train on (the SDK's FileType).
TRAINING_TYPES = ("jsonl", "parquet")
PURPOSES = ("fine-tune", "preference-fine-tune", "reinforcement-fine-tune", "pre-train", "alignment")
FILE_TYPES = ("jsonl", "parquet", "pt", "html", "md", "rst", "rtf", "txt", "xml", "json", "csv",
              "doc", "docx", "pdf", "ppt", "pptx")
FINAL = frozenset({"completed", "failed", "cancelled", "deleted"})
_CHUNK = 1 << 20


class NotFound(RefineError):
    """No such file, project, job or model (the routes answer 404)."""


class Refused(RefineError):
    """A request the store will not carry out (the routes answer 400 with the message)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _safe_name(name: str) -> str:
    """A file name safe to store under: the last path component, odd characters replaced."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    if len(base) > 120:
        stem, dot, suffix = base.rpartition(".")
        base = f"{stem[:100]}.{suffix[:16]}" if dot and stem else base[:120]
    return base or "upload"


class FlowStore:
    """Files, projects, fine-tunes and models under `root`, and the thread that trains.

    `base_models` maps the model id a fine-tune request names to a local model directory.
    """

    def __init__(self, root: str | Path, base_models: dict[str, Path], *, device: str = "auto",
                 max_upload_bytes: int = 2 << 30) -> None:
        self.root = Path(root)
        self.base_models = {name: Path(path) for name, path in base_models.items()}
        self.device = device
        self.max_upload_bytes = max_upload_bytes
        self._lock = threading.RLock()
        self._queue: queue.Queue[str] = queue.Queue()
        self._cancelled: set[str] = set()
        self._models: dict[str, Any] = {}   # job id → loaded (model, tokenizer), for chat
        self._model_lock = threading.Lock()
        self._recover()
        self._worker = threading.Thread(target=self._work, name="refine-finetune", daemon=True)
        self._worker.start()

    def _dir(self, name: str) -> Path:
        """A folder of the store, made on first use (a server that never stores keeps no store)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _listed(self, name: str) -> list[Path]:
        path = self.root / name
        return sorted(path.iterdir()) if path.is_dir() else []

    # --- files ------------------------------------------------------------------------------------
    def add_file(self, filename: str, purpose: str, stream: BinaryIO, *, team: str | None = None) -> dict[str, Any]:
        if purpose not in PURPOSES:
            raise Refused(f"unknown purpose {purpose!r}; one of {', '.join(PURPOSES)}")
        name = _safe_name(filename)
        kind = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if kind not in FILE_TYPES:
            raise Refused(f"{name}: unsupported file type {kind or '(none)'!r}; one of {', '.join(FILE_TYPES)}")
        if purpose != "alignment" and kind not in TRAINING_TYPES:
            raise Refused(f"{name}: a {purpose} file must be {' or '.join(TRAINING_TYPES)}, not {kind}")
        file_id = f"file-{uuid.uuid4().hex}"
        folder = self._dir("files") / file_id
        (folder / "content").mkdir(parents=True)
        target = folder / "content" / name
        size = 0
        try:
            with open(target, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > self.max_upload_bytes:
                        raise Refused(f"{name}: larger than this server takes ({self.max_upload_bytes} bytes)")
                    out.write(chunk)
            if size == 0:
                raise Refused(f"{name}: the file is empty")
            if purpose == "fine-tune":
                self._check_training(target, name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        meta = {"id": file_id, "object": "file", "created_at": _now(), "type": kind, "purpose": purpose,
                "filename": name, "bytes": size, "created_by": team, "deleted": False}
        write_json(folder / "meta.json", meta)
        return meta

    @staticmethod
    def _check_training(path: Path, name: str) -> None:
        """Refuse a fine-tune file refine could not train on, naming the first bad record."""
        from ..formats.training import load_training

        try:
            load_training([str(path)])
        except InputError as exc:
            where = f"line {exc.line}: " if exc.line is not None else f"row {exc.row}: " if exc.row else ""
            field = f"field '{exc.field}': " if exc.field else ""
            raise Refused(f"{name}: {where}{field}{exc.message}") from None

    def _file_folder(self, file_id: str) -> Path:
        folder = self.root / "files" / file_id
        if not FILE_ID.match(file_id or "") or not (folder / "meta.json").is_file():
            raise NotFound(f"no file {file_id!r}")
        return folder

    def file(self, file_id: str) -> dict[str, Any]:
        return json.loads((self._file_folder(file_id) / "meta.json").read_text(encoding="utf-8"))

    def file_path(self, file_id: str) -> Path:
        meta = self.file(file_id)
        return self._file_folder(file_id) / "content" / meta["filename"]

    def files(self, purpose: str | None = None) -> list[dict[str, Any]]:
        found = []
        for folder in self._listed("files"):
            if FILE_ID.match(folder.name) and (folder / "meta.json").is_file():
                meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
                if purpose is None or meta.get("purpose") == purpose:
                    found.append(meta)
        return sorted(found, key=lambda m: (m["created_at"], m["id"]))

    def delete_file(self, file_id: str) -> dict[str, Any]:
        folder = self._file_folder(file_id)
        with self._lock:
            shutil.rmtree(folder)
        return {"id": file_id, "object": "file", "deleted": True}

    # --- projects ---------------------------------------------------------------------------------
    def add_project(self, name: str, description: str, *, team: str | None = None) -> dict[str, Any]:
        for key, value, low, high in (("name", name, 5, 100), ("description", description, 5, 1000)):
            if not isinstance(value, str) or not low <= len(value) <= high:
                raise Refused(f"project {key} must be {low} to {high} characters")
        with self._lock:
            taken = [int(p.stem) for p in self._dir("projects").glob("*.json") if p.stem.isdigit()]
            now = _now()
            project = {"id": max(taken, default=0) + 1, "name": name, "description": description,
                       "user_id": 0, "team_id": team, "created_at": now, "updated_at": now}
            write_json(self.root / "projects" / f"{project['id']}.json", project)
        return project

    def project(self, project_id: int) -> dict[str, Any]:
        path = self.root / "projects" / f"{int(project_id)}.json"
        if not path.is_file():
            raise NotFound(f"no project {project_id}")
        project = json.loads(path.read_text(encoding="utf-8"))
        runs = [j for j in self.jobs() if j.get("project_id") == project["id"]]
        return {**project, "runs": len(runs), "runs_deployed": 0,
                "last_modified": max([project["updated_at"], *(j["created_at"] for j in runs)])}

    def projects(self) -> list[dict[str, Any]]:
        ids = sorted(int(p.stem) for p in self._listed("projects") if p.suffix == ".json" and p.stem.isdigit())
        return [self.project(i) for i in ids]

    # --- models -----------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        listed = []
        for name, path in self.base_models.items():
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
            listed.append({"id": name, "object": "model", "name": name, "size": size,
                           "model_type": "Base Model", "type": "chat", "supports_lora": True})
        for job in self.jobs():
            if job["status"] == "completed":
                listed.append({"id": job["id"], "object": "model", "name": job["id"], "size": job.get("model_bytes", 0),
                               "model_type": "Fine-tuned Run", "type": "chat", "supports_lora": False,
                               "base_model": job["model"], "created_at": job["completed_at"]})
        return listed

    # --- fine-tunes -------------------------------------------------------------------------------
    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
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
        self.project(project_id)
        model = training.get("model")
        if model not in self.base_models:
            known = ", ".join(sorted(self.base_models)) or "none: start refine serve with --base-model"
            raise Refused(f"unknown base model {model!r}; this server trains {known}")
        if training.get("fine_tune_type", "STANDARD") != "STANDARD" or training.get("pre_train"):
            raise Refused("refine serve runs STANDARD instruction fine-tunes only")
        files = training.get("training_files")
        if not isinstance(files, list) or not files:
            raise Refused("training_files must list at least one file id")
        for file_id in files:
            try:
                meta = self.file(str(file_id))
            except NotFound:
                raise Refused(f"no training file {file_id!r}") from None
            if meta["purpose"] != "fine-tune":
                raise Refused(f"{file_id} was uploaded for {meta['purpose']!r}, not 'fine-tune'")
        if infra.get("accel_type") not in ACCELERATORS:
            raise Refused(f"accel_type must be one of {', '.join(ACCELERATORS)}")
        lora = training.get("lora_config")
        chosen: dict[str, Any] = {"base_model": str(self.base_models[model]), "lora": lora is not None,
                                  "epochs": training.get("n_epochs"), "device": self.device,
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
        now = _now()
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
        (self._dir("jobs") / job_id).mkdir()
        self._save(job)
        self._event(job_id, "JOB_PENDING", "queued")
        self._queue.put(job_id)
        return self.job(job_id)

    def _job_path(self, job_id: str) -> Path:
        path = self.root / "jobs" / job_id / "job.json"
        if not JOB_ID.match(job_id or "") or not path.is_file():
            raise NotFound(f"no fine-tune {job_id!r}")
        return path

    def job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(self._job_path(job_id).read_text(encoding="utf-8"))

    def jobs(self) -> list[dict[str, Any]]:
        found = [self.job(p.name) for p in self._listed("jobs")
                 if JOB_ID.match(p.name) and (p / "job.json").is_file()]
        return sorted(found, key=lambda j: (j["created_at"], j["id"]))

    def training_sources(self, model: str) -> list[tuple[Path, str]] | None:
        """(stored path, file id) of each file a completed fine-tune `model` was trained on, or
        None when `model` is no completed fine-tune here (or a file of it was deleted since)."""
        try:
            job = self.job(model)
            if job["status"] != "completed":
                return None
            return [(self.file_path(f), f) for f in job["training_files"]]
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
            self._update(job_id, status="cancelled", completed_at=_now())
            self._event(job_id, "CANCEL_REQUESTED", "cancelled")
        return self.job(job_id)

    def _save(self, job: dict[str, Any]) -> None:
        write_json(self.root / "jobs" / job["id"] / "job.json", job)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self.job(job_id)
            job.update(changes)
            self._save(job)

    def _event(self, job_id: str, kind: str, message: str, **metrics: Any) -> None:
        with self._lock:
            job = self.job(job_id)
            job["events"].append({"object": "fine-tune-event", "created_at": _now(), "type": kind,
                                  "message": message, "level": "Info" if kind != "JOB_ERROR" else "Error",
                                  **metrics})
            self._save(job)

    def _recover(self) -> None:
        for folder in self._listed("jobs"):
            if JOB_ID.match(folder.name) and (folder / "job.json").is_file():
                job = self.job(folder.name)
                if job["status"] not in FINAL:
                    self._update(job["id"], status="failed", completed_at=_now(),
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
        from ..stages.local_training import finetune_local
        from ..settings import FinetuneSettings

        with self._lock:
            if job_id in self._cancelled or self.job(job_id)["status"] != "pending":
                return
            self._update(job_id, status="running")
            self._event(job_id, "JOB_START", "training started")
        job = self.job(job_id)
        settings = FinetuneSettings(base_model=str(self.base_models[job["model"]]), **job["settings"])
        folder = self.root / "jobs" / job_id
        try:
            train = one_training_file([self.file_path(f) for f in job["training_files"]],
                                      folder / "train.jsonl")
            local = finetune_local(train, folder / "model", settings, progress=False)
        except Exception as exc:   # any failure of training fails the job, with its reason
            message = str(exc) if isinstance(exc, RefineError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                if job_id not in self._cancelled:
                    self._update(job_id, status="failed", completed_at=_now(), error=message)
                    self._event(job_id, "JOB_ERROR", message)
            return
        with self._lock:
            if job_id in self._cancelled:
                return
            for epoch, loss in epoch_losses(local.record):
                self._event(job_id, "EPOCH_COMPLETE", f"epoch {epoch}: loss {loss:.4f}", epoch=epoch, loss=loss)
            size = sum(f.stat().st_size for f in Path(local.path).rglob("*") if f.is_file())
            self._update(job_id, status="completed", completed_at=_now(), inference_available=True,
                         fine_tuned_model=job_id, model_bytes=size,
                         final_loss=local.record.get("final_loss"))
            self._event(job_id, "JOB_COMPLETE", f"fine-tuned model {job_id} is ready")

    def wait_idle(self) -> None:
        """Block until every queued job has finished (for tests and a clean shutdown)."""
        self._queue.join()

    # --- inference --------------------------------------------------------------------------------
    def chat(self, model: str, messages: list[dict[str, Any]], max_new_tokens: int,
             stop: list[str] | None = None) -> dict[str, Any]:
        """Greedy generation by `model` (a completed fine-tune's id, or a base model's)."""
        loaded = self._load(model)
        with self._model_lock:   # one generation at a time: the models are not shared safely
            return _generate(*loaded, messages, max_new_tokens, stop or [])

    def _load(self, model: str) -> tuple[Any, Any]:
        with self._model_lock:
            if model in self._models:
                return self._models[model]
        if model in self.base_models:
            path, adapter = self.base_models[model], None
        else:
            try:
                job = self.job(model)
            except NotFound:
                raise NotFound(f"no model {model!r}; GET v1/flow/models lists them") from None
            if job["status"] != "completed":
                raise Refused(f"fine-tune {model} is {job['status']}; it answers once completed")
            path, adapter = self.root / "jobs" / model / "model", None
            record = json.loads((path / "finetune.json").read_text(encoding="utf-8"))
            if record["output"]["adapter"]:
                path, adapter = Path(record["base_model"]["path"]), path
        loaded = _load_model(path, adapter, self.device)
        with self._model_lock:
            if len(self._models) >= 2:   # keep memory bounded: the two latest models stay loaded
                self._models.pop(next(iter(self._models)))
            self._models[model] = loaded
        return loaded


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


def _load_model(path: Path, adapter: Path | None, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..core.devices import resolve_device

    try:
        where = resolve_device(device, "float32")
    except ConfigError as exc:
        raise Refused(f"cannot load a model on {device}: {exc.message}") from None

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(where).eval()
    return model, tokenizer


def _text(content: Any) -> str:
    if isinstance(content, list):   # content parts: the text ones, in order
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def _generate(model: Any, tokenizer: Any, messages: list[dict[str, Any]], max_new_tokens: int,
              stop: list[str]) -> dict[str, Any]:
    import torch

    chat = [{"role": str(m.get("role", "user")), "content": _text(m.get("content"))} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    else:   # as refine.stages.local_training renders an exchange without a template
        from ..attribution.gradient import DEFAULT_FALLBACK

        system = "".join(f"{m['content']}\n\n" for m in chat if m["role"] == "system")
        question = next((m["content"] for m in reversed(chat) if m["role"] == "user"), "")
        prompt = DEFAULT_FALLBACK.format(system=system, question=question)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None:
        if ids.shape[1] >= limit:
            raise Refused(f"the prompt is {ids.shape[1]} tokens; this model reads at most {limit}")
        max_new_tokens = min(max_new_tokens, limit - ids.shape[1])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max(max_new_tokens, 1), pad_token_id=pad)
    new = out[0, ids.shape[1]:]
    ended = tokenizer.eos_token_id is not None and bool((new == tokenizer.eos_token_id).any())
    text = tokenizer.decode(new, skip_special_tokens=True)
    finish = "stop" if ended else "length"
    for marker in stop:
        if marker and marker in text:
            text, finish = text[: text.index(marker)], "stop"
    return {"content": text.strip(), "finish_reason": finish, "prompt_tokens": int(ids.shape[1]),
            "completion_tokens": int(new.shape[0])}


def make_store(root: str | Path, base_models: list[str], device: str = "auto") -> FlowStore:
    """A store with the base models given as local directories (each listed by its folder's
    name), or a ConfigError naming one that is not there."""
    from ..settings import FINETUNE_DEVICES

    if device not in FINETUNE_DEVICES:
        raise ConfigError(f"unknown device {device!r}; one of {', '.join(FINETUNE_DEVICES)}", key="device")
    named: dict[str, Path] = {}
    for entry in base_models:
        path = Path(entry)
        if not (path / "config.json").is_file():
            raise ConfigError(f"{entry} is not a local model directory (no config.json)", key="base_model")
        if path.name in named:
            raise ConfigError(f"two base models are named {path.name!r}", key="base_model")
        named[path.name] = path.resolve()
    return FlowStore(root, named, device=device)

