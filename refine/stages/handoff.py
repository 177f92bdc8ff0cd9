"""`upload` and `finetune`: hand the refined dataset to SeekrFlow (or any server speaking its
API, `refine serve` included) and train on it, or train here with `local=True`.

``upload(RUN)`` reads what the run's last emit wrote from the emit stage's record and its
manifest (both checked: the manifest's digest against the record, each output's against the
manifest), uploads each refined file as the SDK's ``files.upload(path, purpose="fine-tune")``
does, and writes ``RUN/upload.json``::

    {"base_url": ..., "emit": <the emit record's digest>, "manifest": <its path>,
     "purpose": "fine-tune", "uploaded_at": ...,
     "files": [{"path", "sha256", "bytes", "file_id"}, ...]}

The file ids live there, and only there: the emit record and the manifest are digests that
the report and a re-run check, so neither is rewritten after emit; ``upload.json`` names the
emit it uploaded (its digest), so an upload of an earlier emission is never taken for the
current one. ``upload(FILE)`` uploads one file and records nothing.

``finetune(...)`` starts a fine-tune of the uploaded files (``file_id``, or the run's
``upload.json``) as the SDK's ``fine_tuning.create`` does, in the project given or a new one,
follows it with progress until it completes, fails or is cancelled, and writes
``RUN/finetune.json`` (the job, never the key). A failed or cancelled job is a
:class:`~refine.seekrflow.SeekrFlowError` (the CLI exits 2). ``local=True`` runs
:func:`refine.stages.local_training.finetune_local` on the emitted dataset instead and writes the
model under the run directory.

The API key is read from the environment only (``$SEEKR_API_KEY``, or the variable
`api_key_env` names); a loopback server may be asked without one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlparse

from ..core._atomic import sha256_file, write_json
from ..errors import ConfigError, InputError, RunDirError
from ..core.rundir import RunDir
from ..seekrflow.client import RetryPolicy, SeekrFlowError, resolve_base_url

if TYPE_CHECKING:
    from ..seekrflow.flow import FlowClient
    from ..settings import FinetuneSettings

__all__ = ["FinetuneResult", "UploadResult", "UploadedFile", "emitted_files", "finetune", "follow_finetune",
           "upload", "uploaded_file_ids"]

UPLOAD_RECORD = "upload.json"
FINETUNE_RECORD = "finetune.json"


@dataclass(frozen=True)
class UploadedFile:
    path: Path
    file_id: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class UploadResult:
    files: list[UploadedFile]
    base_url: str
    record: Path | None = None     # RUN/upload.json, when a run's emitted dataset was uploaded

    @property
    def file_ids(self) -> list[str]:
        return [f.file_id for f in self.files]


# --- what emit wrote ---------------------------------------------------------------------------
def emitted_files(run_dir: str | Path) -> tuple[dict[str, Any], list[Path]]:
    """(the current emit record, the refined files its manifest lists), each checked: the
    manifest against the digest the record holds, each file against the manifest's."""
    run = RunDir(run_dir)
    record = run.current("emit")
    manifests = [p for p, meta in record.get("external", {}).items()
                 if "records" not in meta and p.endswith("manifest.json")]
    if len(manifests) != 1:
        raise RunDirError(f"{run.path}: the emit record names no manifest; run `refine emit` again")
    manifest_path = Path(manifests[0])
    try:
        text = manifest_path.read_bytes()
    except OSError:
        raise RunDirError(f"{manifest_path}: the manifest of the last emit is gone; run `refine emit` "
                          "again") from None
    if hashlib.sha256(text).hexdigest() != record["external"][manifests[0]].get("sha256"):
        raise RunDirError(f"{manifest_path}: changed since `refine emit` wrote it; run `refine emit` again")
    manifest = json.loads(text)
    files = []
    for entry in manifest.get("outputs", []):
        path = Path(str(entry["path"]))
        if not path.exists():
            raise RunDirError(f"{path}: the refined file emit wrote is gone (emit's paths are relative "
                              "to where it ran); run `refine emit` again or upload the file itself")
        if not path.is_file():
            raise ConfigError(f"{path} is a dataset directory; SeekrFlow takes files: emit to a .jsonl "
                              "or .parquet file (refine emit RUN --out refined.jsonl)", key="out")
        if sha256_file(path) != entry.get("sha256"):
            raise RunDirError(f"{path}: changed since `refine emit` wrote it; run `refine emit` again")
        files.append(path)
    if not files:
        raise RunDirError(f"{manifest_path}: lists no refined file")
    return record, files


def _api_key(api_key_env: str, base_url: str) -> str | None:
    key = os.environ.get(api_key_env) or None
    host = urlparse(base_url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if key is None and not loopback:
        raise ConfigError(f"the environment variable {api_key_env} holding the API key is not set",
                          key="api_key_env")
    return key


def _client(base_url: str | None, api_key_env: str, team_id: str | None, timeout: float,
            max_retries: int) -> "FlowClient":
    from ..seekrflow.flow import FlowClient

    url = resolve_base_url(base_url)
    if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
        raise ConfigError(f"must be an http(s) URL, got {url.rstrip('/')!r}", key="base_url")
    return FlowClient(_api_key(api_key_env, url), base_url=url, timeout=timeout, team_id=team_id,
                      retry=RetryPolicy(max_retries=max_retries), api_key_env=api_key_env)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- upload ------------------------------------------------------------------------------------
def upload(source: str | Path, *, purpose: str = "fine-tune", base_url: str | None = None,
           api_key_env: str = "SEEKR_API_KEY", team_id: str | None = None, timeout: float = 120.0,
           max_retries: int = 5, progress: bool = True) -> UploadResult:
    """Upload the dataset a run emitted (`source` a run directory: every refined file its
    last emit wrote; their ids go to ``RUN/upload.json``) or one file, as
    ``files.upload(path, purpose=...)`` does."""
    from ..core._progress import Progress

    source = Path(source)
    if not source.exists():
        raise InputError("no such file or run directory", file=str(source))
    record, files = emitted_files(source) if source.is_dir() else (None, [source])
    for path in files:
        if path.stat().st_size == 0:
            raise InputError("is empty; nothing to upload", file=str(path))
    uploaded = []
    with _client(base_url, api_key_env, team_id, timeout, max_retries) as client, \
            Progress(progress).session() as bars:
        for path in files:
            size = path.stat().st_size
            bar = bars.bar(f"upload {path.name}", size, unit="byte")
            found = client.upload_file(path, purpose=purpose, progress=bar.update)
            bar.close()
            uploaded.append(UploadedFile(path, str(found["id"]), size, sha256_file(path)))
        base = client.base_url
    written = None
    if record is not None:
        written = source / UPLOAD_RECORD
        manifest = next(p for p, m in record["external"].items()
                        if "records" not in m and p.endswith("manifest.json"))
        write_json(written, {"base_url": base, "emit": record["digest"], "manifest": manifest,
                             "purpose": purpose, "uploaded_at": _now(),
                             "files": [{"path": str(f.path), "sha256": f.sha256, "bytes": f.bytes,
                                        "file_id": f.file_id} for f in uploaded]})
    return UploadResult(uploaded, base, written)


def uploaded_file_ids(run_dir: str | Path, base_url: str | None = None) -> list[str]:
    """The file ids `refine upload RUN` recorded, if they are of the run's current emit and
    were uploaded to `base_url` (resolved as the client resolves it); else a RunDirError
    saying what to run."""
    run = RunDir(run_dir)
    record = run.current("emit")
    path = run.file(UPLOAD_RECORD)
    if not path.is_file():
        raise RunDirError(f"{run.path}: the emitted dataset has not been uploaded; run "
                          f"`refine upload {run.path}` first")
    try:
        uploaded = json.loads(path.read_text(encoding="utf-8"))
        ids = [str(f["file_id"]) for f in uploaded["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunDirError(f"{path}: unreadable; run `refine upload {run.path}` again") from None
    if uploaded.get("emit") != record["digest"]:
        raise RunDirError(f"{path}: uploaded an earlier emit of this run; run `refine upload "
                          f"{run.path}` again")
    wanted = resolve_base_url(base_url)
    if uploaded.get("base_url") != wanted:
        raise RunDirError(f"{path}: the files were uploaded to {uploaded.get('base_url')}, not "
                          f"{wanted}; run `refine upload {run.path}` against it (or pass --file-id)")
    return ids


# --- finetune ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinetuneResult:
    status: str                     # completed; or, not waited for, the status it was left in
    model: str                      # what to ask: the fine-tune's id, or the local model directory
    base_model: str
    job_id: str | None = None       # the service's job (None: trained here)
    project_id: int | None = None
    base_url: str | None = None
    training_files: list[str] = field(default_factory=list)   # file ids, or the local file
    events: list[dict[str, Any]] = field(default_factory=list)
    inference_available: bool = False
    local: Any = None               # the LocalModel of a local fine-tune
    record: Path | None = None      # RUN/finetune.json of a job the service ran


def _training_request(settings: Any, file_ids: list[str], experiment_name: str | None,
                      accel_type: str, n_accel: int, n_node: int) -> Any:
    from ..seekrflow.flow import ACCELERATORS, LoraConfig, TrainingRequest

    if accel_type not in ACCELERATORS:
        raise ConfigError(f"must be one of {', '.join(ACCELERATORS)}, got {accel_type!r}", key="accel_type")
    for key, value in (("n_accel", n_accel), ("n_node", n_node)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"must be an integer ≥ 1, got {value!r}", key=key)
    if settings.batch_size > 1024:
        raise ConfigError("SeekrFlow takes a batch size of at most 1024", key="finetune.batch_size")
    lora = None
    if settings.lora:
        if float(settings.lora_alpha) != int(settings.lora_alpha):
            raise ConfigError(f"SeekrFlow takes a whole-number LoRA alpha, got {settings.lora_alpha}",
                              key="finetune.lora_alpha")
        lora = LoraConfig(r=settings.lora_r, alpha=int(settings.lora_alpha), dropout=settings.lora_dropout)
    return TrainingRequest(training_files=file_ids, model=settings.base_model, n_epochs=settings.epochs,
                           learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                           max_length=settings.max_length, experiment_name=experiment_name, lora=lora,
                           accel_type=accel_type, n_accel=n_accel, n_node=n_node)


def _project_name(run: Path | None, base_model: str) -> tuple[str, str]:
    what = f"the refined dataset of {run.resolve().name}" if run is not None else "uploaded files"
    name = f"refine {run.resolve().name if run is not None else Path(base_model).name}"[:100]
    return name.ljust(5, "_"), f"Fine-tune of {base_model} on {what}, started by refine."[:1000]


def _follow(client: "FlowClient", job: dict[str, Any], poll_interval: float, progress: bool) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    """Poll the job and its events until it reaches a final status; show epochs and loss."""
    from ..core._progress import Progress
    from ..seekrflow.flow import FINAL_STATUSES

    job_id = str(job["id"])
    epochs = int(job.get("n_epochs") or 1)
    events: list[dict[str, Any]] = []
    with Progress(progress).session() as bars:
        bar = bars.bar(f"fine-tune {job_id}", epochs, unit="epoch")
        shown = 0
        while True:
            job = client.retrieve_finetune(job_id)
            events = client.list_events(job_id)
            done = max((int(e["epoch"]) for e in events if isinstance(e.get("epoch"), (int, float))),
                       default=0)
            losses = [e["loss"] for e in events if isinstance(e.get("loss"), (int, float))]
            postfix = {"status": job["status"], **({"loss": f"{losses[-1]:.4g}"} if losses else {})}
            bar.set_postfix(**postfix)
            if min(done, epochs) > shown:
                bar.update(min(done, epochs) - shown)
                shown = min(done, epochs)
            if job["status"] in FINAL_STATUSES:
                return job, events
            time.sleep(poll_interval)


def _failure(job: dict[str, Any], events: list[dict[str, Any]]) -> str:
    said = job.get("error") or job.get("error_analysis")
    if not said:
        said = next((e.get("message") for e in reversed(events) if e.get("message")), None)
    return f": {said}" if said else ""


def finetune(settings: "FinetuneSettings | None" = None, *, run: str | Path | None = None,
             file_id: str | Sequence[str] = (), train: str | Path | None = None, local: bool = False,
             out: str | Path | None = None, project_id: int | None = None,
             experiment_name: str | None = None, accel_type: str = "H100", n_accel: int = 1,
             n_node: int = 1, base_url: str | None = None, api_key_env: str = "SEEKR_API_KEY",
             team_id: str | None = None, wait: bool = True, poll_interval: float = 10.0,
             timeout: float = 120.0, max_retries: int = 5, progress: bool = True,
             on_start: Callable[[dict[str, Any]], None] | None = None) -> FinetuneResult:
    """Fine-tune `settings.base_model` on a refined dataset.

    On SeekrFlow (or a server speaking its API): on the files `file_id` names, or those
    ``refine upload RUN`` uploaded for `run`; in project `project_id`, or a new one. Waits
    for a final status unless `wait` is false (`on_start` is called with the job as soon as
    it exists). The settings' epochs, learning rate, batch size, maximum length and LoRA
    settings are sent; seed, device and target modules apply to local fine-tunes only.

    ``local=True``: :func:`refine.stages.local_training.finetune_local` here, on `train` or the run's
    emitted dataset, into `out` (default: ``RUN/model``).
    """
    if settings is None:
        raise ConfigError("is required: the base model to fine-tune (FinetuneSettings(base_model=...))",
                          key="finetune.base_model")
    run_path = Path(run) if run is not None else None
    ids = [file_id] if isinstance(file_id, str) else list(file_id)
    if local:
        return _finetune_here(settings, run_path, ids, train, out, progress)
    if train is not None or out is not None:
        raise ConfigError("train and out are for a local fine-tune (--local); SeekrFlow trains on "
                          "uploaded files (--file-id, or --run after `refine upload`)", key="train")
    if ids and run_path is not None:
        raise ConfigError("give the files (--file-id) or the run (--run), not both", key="file_id")
    if not ids and run_path is None:
        raise ConfigError("name what to train on: --file-id FILE_ID, or --run RUN after `refine upload RUN`",
                          key="file_id")
    if run_path is not None:
        ids = uploaded_file_ids(run_path, base_url)
    request = _training_request(settings, ids, experiment_name, accel_type, n_accel, n_node)
    with _client(base_url, api_key_env, team_id, timeout, max_retries) as client:
        if project_id is None:
            name, description = _project_name(run_path, settings.base_model)
            project_id = int(client.create_project(name, description)["id"])
        job = client.create_finetune(project_id, request)
        if on_start is not None:
            on_start(job)
        events: list[dict[str, Any]] = []
        if wait:
            job, events = _follow(client, job, poll_interval, progress)
        base = client.base_url
    job_id = str(job["id"])
    record = None
    if run_path is not None:
        record = run_path / FINETUNE_RECORD
        write_json(record, {"job_id": job_id, "base_url": base, "project_id": project_id,
                            "base_model": settings.base_model, "training_files": ids,
                            "emit": RunDir(run_path).current("emit")["digest"], "status": job.get("status"),
                            "created_at": job.get("created_at"), "completed_at": job.get("completed_at"),
                            "recorded_at": _now()})
    if job.get("status") in ("failed", "cancelled"):
        raise SeekrFlowError(f"fine-tune {job_id} {job['status']}{_failure(job, events)}")
    return FinetuneResult(str(job.get("status")), job_id, settings.base_model, job_id, project_id, base,
                          ids, events, bool(job.get("inference_available")), None, record)


def follow_finetune(job_id: str, *, base_url: str | None = None, api_key_env: str = "SEEKR_API_KEY",
                    team_id: str | None = None, poll_interval: float = 10.0, timeout: float = 120.0,
                    max_retries: int = 5, progress: bool = True) -> FinetuneResult:
    """Follow a fine-tune the service already runs (one :func:`finetune` started, e.g. before a
    crash) until it reaches a final status, as :func:`finetune` follows a new one; a failed or
    cancelled job is a SeekrFlowError."""
    with _client(base_url, api_key_env, team_id, timeout, max_retries) as client:
        job = client.retrieve_finetune(job_id)
        job, events = _follow(client, job, poll_interval, progress)
        base = client.base_url
    if job.get("status") in ("failed", "cancelled"):
        raise SeekrFlowError(f"fine-tune {job_id} {job['status']}{_failure(job, events)}")
    return FinetuneResult(str(job.get("status")), job_id, str(job.get("model")), job_id, job.get("project_id"),
                          base, list(job.get("training_files") or []), events,
                          bool(job.get("inference_available")))


def _finetune_here(settings: Any, run: Path | None, ids: list[str], train: str | Path | None,
                   out: str | Path | None, progress: bool) -> FinetuneResult:
    from .local_training import finetune_local
    from ..service.flow_jobs import one_training_file

    if ids:
        raise ConfigError("a local fine-tune reads files here (--train or --run), not uploaded ids",
                          key="file_id")
    if (train is None) == (run is None):
        raise ConfigError("give the training file (--train) or the run whose emitted dataset to "
                          "train on (--run), one of them", key="train")
    if run is not None:
        _, files = emitted_files(run)
        source: str | Path = one_training_file(files, run / "finetune-train.jsonl")
        target = Path(out) if out is not None else run / "model"
    else:
        if out is None:
            raise ConfigError("is required with --train: the directory to write the model to", key="out")
        source, target = Path(train), Path(out)   # type: ignore[arg-type]
    model = finetune_local(source, target, settings, progress=progress)
    return FinetuneResult("completed", str(model.path), settings.base_model, training_files=[str(source)],
                          inference_available=True, local=model)
