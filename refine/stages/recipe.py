"""Recipes: collect → flag → cluster → emit → report (→ retrain), scripted in YAML.

::

    name: quickstart                # optional
    description: ...                # optional
    train: [data/a.jsonl, data/b.csv, data/hf_dir:train,  # any training source; a mapping
            {path: data/c.csv, format: alpaca}]       # names one source's record layout
    eval: data/eval.jsonl
    run_dir: runs/quickstart
    overwrite: false                # start the run directory afresh
    collect: {backend: embedding, top_k: 10, batch_size: 32, skip_invalid: false,
              train_format: null, eval_format: null,    # record layouts; null: detected
              backend_options: {model: default}}
    grade: {f1_min: 0.2, key_recall_min: 0.5, semantic_min: 0.4, require_numbers: true}
    flag: {min_bad: 2, alpha: 0.1, level_weights: {high: 1.0, medium: 0.5, low: 0.25}}
    cluster: {enabled: true, distance_threshold: 0.6, min_size: 3}
    emit: {out: runs/quickstart/refined.jsonl,   # default: <run_dir>/refined.<input's suffix>,
                                                 # or <run_dir>/refined/ for several sources
           overwrite: false,                     # replace what exists at out (a re-run replaces
                                                 # what its own last emit wrote there anyway)
           mode: prune,                          # prune | edit | quarantine
           counterexamples: false, max_counterexamples_per_mode: 5,
           question_min: 0.75, agree_min: 0.8}
    report: {enabled: true}                      # RUN/report.html and RUN/report.md, after
                                                 # emit, so that it shows what emit wrote
    retrain:                                     # optional: close the loop (refine.stages.retraining)
      run_dir: runs/quickstart-after             # AFTER: the new answers collected (default:
                                                 # <run_dir>-after); outcome.json there
      finetune: {base_model: models/base, epochs: 3, seed: 0, ...}   # FinetuneSettings
      answer: {max_new_tokens: 128, batch_size: 16, device: auto}   # AnswerSettings
      controls: [0, 1, 2]                        # seeds of control retrains on the unmodified set
      outcome: {alpha: 0.05}
      base_url: null                             # a SeekrFlow API (or `refine serve`): train and
      api_key_env: SEEKR_API_KEY                 # answer there; null: here (finetune_local)
      team_id: null
      poll_interval: 10

Relative paths are relative to the recipe file, so a recipe runs the same from any directory
(a base model too, when it is there).
Every section is a settings dataclass of :mod:`refine.settings` (the same defaults as the CLI
and the API). Unknown keys are errors naming the key and its line. ``--set collect.top_k=20``
overrides a key (the value is read as YAML); an error in it names the ``--set``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .clustering import ClusterResult, cluster
from .collection import CollectResult, collect
from ..config import ConfigFile, Section, parse_key_values, read_config
from .emission import EmitResult, emit
from ..errors import ConfigError, IncompleteRunError
from .flagging import FlagResult, flag
from ..formats.layouts import get_layout
from .reporting import ReportResult, report
from ..core.rundir import SettingsChangedError
from ..settings import (AnswerSettings, CheckSettings, ClusterSettings, CollectSettings, EmitSettings,
                        FinetuneSettings, FlagSettings, GradeSettings, OutcomeSettings, ReportSettings,
                        RetrainSettings, setting_names)
from ..formats.training import TrainingInput
from .retraining import RetrainResult, check_base_model, retrain

__all__ = ["Recipe", "RecipeResult", "load_check_config", "load_recipe", "parse_key_values", "run_recipe"]

_SCHEMA: dict[str, Any] = {
    "name": str, "description": str, "train": (list, str, dict), "eval": str, "run_dir": str,
    "overwrite": bool,
    "collect": Section(CollectSettings, skip=("grade",)),
    "grade": Section(GradeSettings),
    "flag": Section(FlagSettings),
    "cluster": Section(ClusterSettings, {"enabled": bool}),
    "emit": Section(EmitSettings, {"out": str, "overwrite": bool}),
    "report": Section(ReportSettings, {"enabled": bool}),
    "retrain": Section(RetrainSettings, {"enabled": bool, "run_dir": str}),
}
_RETRAIN_PARTS = {"finetune": FinetuneSettings, "answer": AnswerSettings, "outcome": OutcomeSettings}
_REQUIRED = ("train", "eval", "run_dir")
_PATH_OPTIONS = ("model", "adapter", "cache_dir")


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    train: list[str | TrainingInput]
    eval: str
    run_dir: str
    emit_out: str
    collect: CollectSettings
    flag: FlagSettings
    emit: EmitSettings
    cluster: ClusterSettings | None = None    # None: the step is off
    report: ReportSettings | None = None
    overwrite: bool = False
    emit_overwrite: bool = False      # emit may replace what exists at emit_out
    retrain: RetrainSettings | None = None    # None: the loop stops at emit (and report)
    retrain_run_dir: str | None = None        # AFTER, where the retrained model's answers are collected


@dataclass(frozen=True)
class RecipeResult:
    recipe: Recipe
    collect: CollectResult
    flag: FlagResult
    cluster: ClusterResult | None
    report: ReportResult | None
    emit: EmitResult
    retrain: RetrainResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)   # wall time per step


def _train_sources(config: ConfigFile, resolve: Any) -> list[str | TrainingInput]:
    value = config.data["train"]
    entries = value if isinstance(value, list) else [value]
    train: list[str | TrainingInput] = []
    for entry in entries:
        if isinstance(entry, dict) and set(entry) <= {"path", "format"} and isinstance(entry.get("path"), str):
            try:
                layout = get_layout(entry["format"], key="train.format").name if entry.get("format") else None
            except ConfigError as exc:
                raise config.error(exc.message, "train") from None
            train.append(TrainingInput(resolve(entry["path"]), layout))
        elif isinstance(entry, str):
            train.append(resolve(entry))
        else:
            train = []
            break
    if not train:
        raise config.error("must be a source or a list of sources (a path, or {path: ..., format: ...})",
                           "train")
    return train


def _retrain(config: ConfigFile, resolve: Any, run_dir: str) -> tuple[RetrainSettings | None, str | None]:
    """The ``retrain:`` section: its settings, and AFTER's run directory."""
    if config.data.get("retrain") is None:
        return None, None
    values = config.section("retrain")
    if not values.pop("enabled", True):
        return None, None
    after = resolve(values.pop("run_dir")) if "run_dir" in values else f"{run_dir}-after"
    if values.get("finetune") is None:
        raise config.error("is required: the fine-tune's settings, at least its base_model", "retrain.finetune")
    for name, cls in _RETRAIN_PARTS.items():
        part = values.get(name)
        if part is None:
            values.pop(name, None)
            continue
        if not isinstance(part, dict):
            raise config.error("must be a mapping", f"retrain.{name}")
        known = setting_names(cls)
        for key in part:
            if key not in known:
                raise config.error(f"unknown key; known under 'retrain.{name}': {', '.join(known)}",
                                   ("retrain", name, str(key)))
        part = dict(part)
        if name == "finetune":
            if "base_model" not in part:
                raise config.error("is required: the local model directory (or, with base_url, the "
                                   "service's model) to fine-tune", "retrain.finetune.base_model")
            model = part["base_model"]
            if values.get("base_url") is None and isinstance(model, str) and model and \
                    not Path(model).is_absolute() and (config.path.parent / model).exists():
                part["base_model"] = resolve(model)
        try:
            values[name] = cls(**part)
        except ConfigError as exc:
            raise config.error(exc.message, f"retrain.{exc.key}" if exc.key else f"retrain.{name}") from None
    settings = config.build(RetrainSettings, "retrain", values)
    if settings.base_url is None:       # a model that is not here fails now, not after collect
        try:
            check_base_model(settings.finetune.base_model)
        except ConfigError as exc:
            raise config.error(exc.message, "retrain.finetune.base_model") from None
    return settings, after


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read and validate a recipe; `overrides` are ``key.sub=value`` strings."""
    config = read_config(path, _SCHEMA, overrides, required=_REQUIRED, what="recipe file")
    data = config.data
    base = config.path.parent

    def resolve(p: str) -> str:
        return os.path.normpath(p if Path(p).is_absolute() else base / p)

    train = _train_sources(config, resolve)
    run_dir = resolve(data["run_dir"])
    emit_cfg = config.section("emit")
    # One source: its refined copy in the same format (a dataset directory has no suffix).
    first = Path(train[0].path if isinstance(train[0], TrainingInput) else train[0])
    default_out = Path(run_dir) / ("refined" + (first.suffix if first.is_file() else "")
                                   if len(train) == 1 else "refined")
    collect_cfg = config.section("collect")
    options = collect_cfg.get("backend_options")
    if isinstance(options, dict):
        # Model, adapter and cache folders are paths too: relative to the recipe when they
        # exist there (a value like "default" is left alone).
        collect_cfg["backend_options"] = {
            k: resolve(v) if k in _PATH_OPTIONS and isinstance(v, str) and v
            and not Path(v).is_absolute() and (base / v).exists() else v
            for k, v in options.items()}
    grade = config.build(GradeSettings, "grade", config.section("grade"))
    cluster_cfg, report_cfg = config.section("cluster"), config.section("report")
    cluster_on, report_on = cluster_cfg.pop("enabled", True), report_cfg.pop("enabled", True)
    retrain_settings, retrain_run_dir = _retrain(config, resolve, run_dir)
    return Recipe(
        path=config.path,
        name=str(data.get("name") or config.path.stem),
        train=train,
        eval=resolve(data["eval"]),
        run_dir=run_dir,
        emit_out=resolve(emit_cfg.pop("out")) if "out" in emit_cfg else str(default_out),
        emit_overwrite=bool(emit_cfg.pop("overwrite", False)),
        collect=config.build(CollectSettings, "collect", {**collect_cfg, "grade": grade}),
        flag=config.build(FlagSettings, "flag", config.section("flag")),
        emit=config.build(EmitSettings, "emit", emit_cfg),
        cluster=config.build(ClusterSettings, "cluster", cluster_cfg) if cluster_on else None,
        report=config.build(ReportSettings, "report", report_cfg) if report_on else None,
        overwrite=bool(data.get("overwrite", False)),
        retrain=retrain_settings,
        retrain_run_dir=retrain_run_dir,
    )


def run_recipe(recipe: Recipe | str | Path, *, overrides: Iterable[str] = (),
               progress: bool = True) -> RecipeResult:
    """collect → flag → cluster → emit → report (→ retrain), as the recipe says: a :class:`Recipe`,
    or a recipe file read by :func:`load_recipe` with `overrides` (``KEY=VALUE``, what `refine run
    --set` gives). With ``retrain:``, the loop goes on (:func:`refine.stages.retraining.retrain`):
    fine-tune on the refined set, answer the eval set, collect the answers into AFTER, outcome."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise ConfigError("apply to a recipe file; build the Recipe with them instead",
                          key="overrides")
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal started
        seconds[step] = time.perf_counter() - started
        started = time.perf_counter()

    try:
        collected = collect(recipe.train, recipe.eval, recipe.run_dir, recipe.collect,
                            overwrite=recipe.overwrite, progress=progress)
    except SettingsChangedError as exc:
        raise SettingsChangedError(exc.path, exc.changed, "use another run_dir, or set "
                                   "`overwrite: true` in the recipe (or --set overwrite=true)") from None
    if collected.failed:
        # Flags and a dataset from part of the eval set would look complete; they are not.
        shown = ", ".join(collected.failed[:5]) + (" …" if len(collected.failed) > 5 else "")
        raise IncompleteRunError(f"{recipe.run_dir}: {len(collected.failed)} of {collected.items} eval "
                                 f"items failed ({shown}); nothing was flagged or emitted. Run the "
                                 "recipe again to retry just those")
    lap("collect")
    flagged = flag(recipe.run_dir, recipe.flag)
    lap("flag")
    clustered = None
    if recipe.cluster is not None and flagged.bad_items:
        clustered = cluster(recipe.run_dir, recipe.cluster)
        lap("cluster")
    # A re-run replaces what this run's last emit wrote (and nobody changed since), so that
    # `refine run` can be run again; anything else at emit.out needs emit.overwrite.
    emitted = emit(recipe.run_dir, recipe.emit_out, recipe.emit, overwrite=recipe.emit_overwrite,
                   replace_own=True)
    lap("emit")
    reported = None
    if recipe.report is not None:
        reported = report(recipe.run_dir, recipe.report)
        lap("report")
    retrained = None
    if recipe.retrain is not None:
        retrained = retrain(recipe.run_dir, recipe.retrain, train=recipe.train, eval_path=recipe.eval,
                            after=recipe.retrain_run_dir, collect_settings=recipe.collect, progress=progress)
        seconds.update({f"retrain.{step}": s for step, s in retrained.seconds.items()})
    return RecipeResult(recipe, collected, flagged, clustered, reported, emitted, retrained, seconds)


_CHECK_SCHEMA: dict[str, Any] = {"name": str, "description": str, "checks": Section(CheckSettings)}


def load_check_config(path: str | Path, overrides: Iterable[str] = ()) -> CheckSettings:
    """A pre-retraining gate file: ``checks: {select: [...], options: {...}, severity: {...},
    max_findings: N}``, read like a recipe."""
    config = read_config(path, _CHECK_SCHEMA, overrides, what="check configuration file")
    return config.build(CheckSettings, "checks", config.section("checks"))
