"""What `refine serve` keeps for the SeekrFlow files, projects, fine-tunes and models routes.

Everything lives under one directory (``--store``), one small JSON per object::

    STORE/files/<file-id>/meta.json, STORE/files/<file-id>/content/<the uploaded file's name>
    STORE/projects/<n>.json
    STORE/jobs/<ft-id>/job.json (the job and its events), STORE/jobs/<ft-id>/model/ (what it trained)

Ids are made here (``file-<32 hex>``, ``ft-<32 hex>``, projects count from 1) and every id a
request names is matched against that form before it comes near a path, so no request reaches
outside the store. The files, projects and models are here; the fine-tunes are
:mod:`refine.service.flow_jobs`, the chat completions :mod:`refine.service.flow_chat`.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from ..core._atomic import write_json
from ..errors import ConfigError, InputError
from .flow_chat import ChatModels
from .flow_common import NotFound, Refused, utc_now
from .flow_jobs import FineTunes, epoch_losses, one_training_file

# The errors and the job helpers are re-exported: code reads them from here too.
__all__ = ["FlowStore", "NotFound", "Refused", "epoch_losses", "make_store", "one_training_file"]

FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
#: The file types SeekrFlow takes for each purpose refine can train on (the SDK's FileType).
TRAINING_TYPES = ("jsonl", "parquet")
PURPOSES = ("fine-tune", "preference-fine-tune", "reinforcement-fine-tune", "pre-train", "alignment")
FILE_TYPES = ("jsonl", "parquet", "pt", "html", "md", "rst", "rtf", "txt", "xml", "json", "csv",
              "doc", "docx", "pdf", "ppt", "pptx")
_CHUNK = 1 << 20


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
        self._chat = ChatModels(device)
        self._jobs = FineTunes(self, self._lock)

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
        meta = {"id": file_id, "object": "file", "created_at": utc_now(), "type": kind, "purpose": purpose,
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
            now = utc_now()
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

    # --- fine-tunes (:mod:`refine.service.flow_jobs`) ---------------------------------------------
    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check a ``FinetuneRequest`` body, queue the job, and return it (pending)."""
        return self._jobs.create(body)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._jobs.job(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        return self._jobs.jobs()

    def training_sources(self, model: str) -> list[tuple[Path, str]] | None:
        """(stored path, file id) of each file a completed fine-tune `model` was trained on, or
        None when `model` is no completed fine-tune here (or a file of it was deleted since)."""
        return self._jobs.training_sources(model)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return self._jobs.events(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._jobs.cancel(job_id)

    def wait_idle(self) -> None:
        """Block until every queued job has finished (for tests and a clean shutdown)."""
        self._jobs.wait_idle()

    # --- inference (:mod:`refine.service.flow_chat`) ----------------------------------------------
    def chat(self, model: str, messages: list[dict[str, Any]], max_new_tokens: int,
             stop: list[str] | None = None) -> dict[str, Any]:
        """Greedy generation by `model` (a completed fine-tune's id, or a base model's)."""
        path, adapter = self._model_files(model)
        return self._chat.answer(model, path, adapter, messages, max_new_tokens, stop or [])

    def _model_files(self, model: str) -> tuple[Path, Path | None]:
        """(model directory, peft adapter or None) of `model`, a base model's name or a completed
        fine-tune's id."""
        if model in self.base_models:
            return self.base_models[model], None
        try:
            job = self.job(model)
        except NotFound:
            raise NotFound(f"no model {model!r}; GET v1/flow/models lists them") from None
        if job["status"] != "completed":
            raise Refused(f"fine-tune {model} is {job['status']}; it answers once completed")
        path = self.root / "jobs" / model / "model"
        record = json.loads((path / "finetune.json").read_text(encoding="utf-8"))
        if record["output"]["adapter"]:
            return Path(record["base_model"]["path"]), path
        return path, None


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
