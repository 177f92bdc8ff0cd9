"""`retrain`: close the loop after emit. Fine-tune on the refined dataset, answer the eval set
with the new model, collect those answers into a run of their own (AFTER), and count what
changed against BEFORE (:func:`refine.outcome`); optionally the same for control retrains of the
unmodified training set, the retraining noise that outcome tests against.

::

    BEFORE/retrain/                        the loop's working files, beside BEFORE's own
      refined-s<seed>/model/               here: finetune_local's model (its record says what from)
      refined-s<seed>/answers.jsonl        the eval set answered by the new model (and its journal)
      control-s<seed>/model/, answers.jsonl    each control retrain, the same way
      service.json                         through a service: files uploaded, jobs started
    AFTER/                                 a run directory: the new answers collected, outcome.json
    AFTER-control-s<seed>/                 each control's answers collected

Here the model is :func:`refine.finetune_local` with the settings' seed (each control with its
own seed); through a service (``base_url``: SeekrFlow, or ``refine serve``) the refined files are
uploaded as :func:`refine.upload` does (their ids in ``BEFORE/upload.json``) and fine-tuned as
:func:`refine.finetune` does; the service picks its own seed (SeekrFlow's API takes none), so
there the control seeds only count the retrains.

Every step resumes, so running the loop again does only what is missing: finetune_local returns a
finished model made from the same inputs at once (and goes on from its last checkpoint after a
crash); an upload of the current emit to the same service is used again; a job started before is
followed again rather than started twice (a failed one is started afresh); answering goes on
from its journal; collect from its own. A step whose inputs changed (flag again, emit something
else) is done again and replaces what it made before; the AFTER runs are this loop's own, and a
directory holding anything else is refused before anything is trained.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core._atomic import write_json
from ..errors import ConfigError, IncompleteRunError, RunDirError
from ..formats.training import TrainingInput
from ..settings import CollectSettings, RetrainSettings
from .outcomes import OutcomeResult

__all__ = ["RetrainResult", "RetrainSettings", "retrain"]

WORK = "retrain"
SERVICE_RECORD = "service.json"


@dataclass(frozen=True)
class Retrained:
    """One retrain: the refined set's (``refined-s<seed>``) or a control's (``control-s<seed>``)."""

    name: str
    seed: int
    model: str              # the local model directory, or the service's model id
    answers: Path
    run_dir: Path           # its answers collected
    seconds: dict[str, float] = field(default_factory=dict)   # per step: finetune, answer, collect


@dataclass(frozen=True)
class RetrainResult:
    after: Retrained
    controls: list[Retrained]
    outcome: OutcomeResult
    seconds: dict[str, float]      # per step over every retrain, and outcome


@dataclass(frozen=True)
class _Arm:
    name: str
    seed: int
    work: Path
    run_dir: Path
    refined: bool


def retrain(before: str | Path, settings: RetrainSettings, *, train: Sequence[str | TrainingInput],
            eval_path: str | Path, after: str | Path | None = None,
            collect_settings: CollectSettings | None = None, progress: bool = True) -> RetrainResult:
    """Retrain on what BEFORE's last emit wrote, answer `eval_path` (BEFORE's eval set) with the new
    model, collect the answers into `after` (default ``<before>-after``) with `collect_settings`
    (BEFORE's), and write ``AFTER/outcome.json``; the same for each control seed, on `train` (the
    unmodified training sources). See the module docstring for what resumes."""
    from .handoff import emitted_files

    before = Path(before)
    _, refined_files = emitted_files(before)        # the last emit, checked; refused when there is none
    collect_settings = collect_settings or CollectSettings()
    after_dir = Path(after) if after is not None else before.with_name(before.name + "-after")
    if settings.base_url is None:
        check_base_model(settings.finetune.base_model)
    own = settings.finetune.seed
    arms = [_Arm(f"refined-s{own}", own, before / WORK / f"refined-s{own}", after_dir, True)] + [
        _Arm(f"control-s{seed}", seed, before / WORK / f"control-s{seed}",
             after_dir.with_name(f"{after_dir.name}-control-s{seed}"), False) for seed in settings.controls]
    answers = {arm.name: arm.work / "answers.jsonl" for arm in arms}
    for arm in arms:
        _check_run_dir(arm.run_dir, before / WORK)
    sources = {True: [str(f) for f in refined_files], False: list(train)}
    # The answers are refine's own eval layout, whatever BEFORE's eval set was in.
    eval_format, collect_settings = collect_settings.eval_format, dataclasses.replace(collect_settings,
                                                                                       eval_format=None)
    done: list[Retrained] = []
    for arm in arms:
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        model = _finetune(arm, before, settings, sources[arm.refined], progress)
        seconds["finetune"] = time.perf_counter() - started
        started = time.perf_counter()
        _answer(model, eval_path, eval_format, answers[arm.name], settings, progress)
        seconds["answer"] = time.perf_counter() - started
        started = time.perf_counter()
        _collect(sources[arm.refined], answers[arm.name], arm.run_dir, collect_settings, progress)
        seconds["collect"] = time.perf_counter() - started
        done.append(Retrained(arm.name, arm.seed, model, answers[arm.name], arm.run_dir, seconds))
    from .outcomes import outcome

    started = time.perf_counter()
    counted = outcome(before, after_dir, [r.run_dir for r in done[1:]], settings.outcome)
    totals = {step: sum(r.seconds[step] for r in done) for step in ("finetune", "answer", "collect")}
    return RetrainResult(done[0], done[1:], counted, {**totals, "outcome": time.perf_counter() - started})


def check_base_model(path: str) -> None:
    """A ConfigError (``finetune.base_model``) unless `path` is a local model directory."""
    from .local_training import _base_model_dir

    _base_model_dir(path)


def _check_run_dir(run_dir: Path, work: Path) -> None:
    """Refuse, before anything is trained, a directory that is not this loop's to write: one
    holding anything but a run over answers under `work`."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory; set retrain.run_dir to another path")
    settings = run_dir / "settings.json"
    if not settings.is_file():
        if any(run_dir.iterdir()):
            raise RunDirError(f"{run_dir}: exists, is not empty and is not a refine run directory; set "
                              "retrain.run_dir to another path")
        return
    try:
        evaluated = json.loads(settings.read_text(encoding="utf-8"))["inputs"]["eval"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        evaluated = None
    if not isinstance(evaluated, str) or Path(evaluated).parent.parent != work:
        raise RunDirError(f"{run_dir}: holds a run over {evaluated}, not over a retrained model's answers "
                          f"(under {work}); set retrain.run_dir to another path")


# --- fine-tune ---------------------------------------------------------------------------------
def _one_file(arm: _Arm, sources: list[Any]) -> Any:
    """The one training file a fine-tune reads: the source itself, or several JSONL files joined."""
    from ..service.flow_store import one_training_file

    if len(sources) == 1:
        return sources[0]
    if any(isinstance(s, TrainingInput) for s in sources):
        raise ConfigError("a retrain reads one training file, or several JSONL files joined; name one "
                          "source (or JSONL files without a format)", key="retrain.controls")
    arm.work.mkdir(parents=True, exist_ok=True)
    return one_training_file([Path(s) for s in sources], arm.work / "train.jsonl")


def _finetune(arm: _Arm, before: Path, settings: RetrainSettings, sources: list[Any], progress: bool) -> str:
    """The retrained model: a local directory, or the service's model id."""
    chosen = dataclasses.replace(settings.finetune, seed=arm.seed)
    if settings.base_url is None:
        from .local_training import finetune_local

        # The models under BEFORE/retrain are this loop's: one of other inputs is replaced.
        return str(finetune_local(_one_file(arm, sources), arm.work / "model", chosen, progress=progress,
                                  replace=True).path)
    return _finetune_service(arm, before, settings, chosen, sources, progress)


def _service_state(before: Path) -> dict[str, Any]:
    path = before / WORK / SERVICE_RECORD
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    return state if isinstance(state, dict) else {}


def _save_state(before: Path, state: dict[str, Any]) -> None:
    write_json(before / WORK / SERVICE_RECORD, state)


def _finetune_service(arm: _Arm, before: Path, settings: RetrainSettings, chosen: Any, sources: list[Any],
                      progress: bool) -> str:
    from ..core._atomic import sha256_file
    from ..seekrflow.client import resolve_base_url
    from .handoff import finetune, follow_finetune, upload, uploaded_file_ids

    url = resolve_base_url(settings.base_url)
    connection = dict(base_url=settings.base_url, api_key_env=settings.api_key_env, team_id=settings.team_id)
    state = _service_state(before)
    if state.get("base_url") != url:
        state = {"base_url": url, "uploads": {}, "jobs": {}}
    if arm.refined:
        try:
            ids = uploaded_file_ids(before, settings.base_url)
        except RunDirError:    # not uploaded yet, or an upload of an earlier emit
            ids = upload(before, progress=progress, **connection).file_ids
    else:
        source = _one_file(arm, sources)
        path = Path(source.path if isinstance(source, TrainingInput) else source)
        digest = sha256_file(path)
        if digest not in state["uploads"]:
            state["uploads"][digest] = upload(path, progress=progress, **connection).file_ids[0]
            _save_state(before, state)
        ids = [state["uploads"][digest]]
    sent = {k: v for k, v in dataclasses.asdict(chosen).items()
            if k not in ("seed", "device", "checkpoint_steps")}     # what the service is sent
    inputs = json.loads(json.dumps({"training_files": ids, "settings": sent}))   # as the record reads back
    job = state["jobs"].get(arm.name)
    follow = dict(poll_interval=settings.poll_interval, progress=progress, **connection)
    if isinstance(job, dict) and job.get("inputs") == inputs and _status(job["job_id"], settings) not in (
            "failed", "cancelled"):
        result = follow_finetune(job["job_id"], **follow)
    else:
        def started(found: dict[str, Any]) -> None:
            state["jobs"][arm.name] = {"job_id": str(found["id"]), "inputs": inputs,
                                       "status": found.get("status")}
            state["project_id"] = found.get("project_id", state.get("project_id"))
            _save_state(before, state)

        result = finetune(chosen, file_id=ids, project_id=state.get("project_id"),
                          experiment_name=f"refine retrain {arm.name}", on_start=started, **follow)
    state["jobs"][arm.name]["status"] = result.status
    _save_state(before, state)
    return result.model


def _status(job_id: str, settings: RetrainSettings) -> str:
    """A started job's status now: a failed or cancelled one is started afresh, not followed."""
    from .handoff import _client

    with _client(settings.base_url, settings.api_key_env, settings.team_id, 120.0, 5) as client:
        return str(client.retrieve_finetune(job_id).get("status"))


# --- answer and collect -------------------------------------------------------------------------
def _answer(model: str, eval_path: str | Path, eval_format: str | None, out: Path, settings: RetrainSettings,
            progress: bool) -> None:
    from .answering import answer_eval

    answer_eval(eval_path, model, out, settings=settings.answer, eval_format=eval_format,
                base_url=settings.base_url, api_key_env=settings.api_key_env, team_id=settings.team_id,
                overwrite=True, progress=progress)


def _collect(train: list[Any], answers: Path, run_dir: Path, settings: CollectSettings, progress: bool) -> None:
    from .collection import collect

    # The run is this loop's (checked first): answers that changed since make it afresh.
    collected = collect(train, str(answers), run_dir, settings, overwrite=True, progress=progress)
    if collected.failed:
        shown = ", ".join(collected.failed[:5]) + (" …" if len(collected.failed) > 5 else "")
        raise IncompleteRunError(f"{run_dir}: {len(collected.failed)} of {collected.items} eval items failed "
                                 f"({shown}); run the recipe again to retry just those")
