"""Recipes: collect → flag → cluster → emit → report, scripted in YAML.

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
    report: {enabled: true}                      # RUN/report.html and RUN/report.md, last, so
                                                 # that it shows what emit wrote

Relative paths are relative to the recipe file, so a recipe runs the same from any directory.
Every section is a settings dataclass of :mod:`refine.settings` (the same defaults as the CLI
and the API). Unknown keys are errors naming the key and its line. ``--set collect.top_k=20``
overrides a key (the value is read as YAML); an error in it names the ``--set``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
from ..settings import (CheckSettings, ClusterSettings, CollectSettings, EmitSettings, FlagSettings,
                       GradeSettings, ReportSettings)
from ..formats.training import TrainingInput

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
}
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


@dataclass(frozen=True)
class RecipeResult:
    recipe: Recipe
    collect: CollectResult
    flag: FlagResult
    cluster: ClusterResult | None
    report: ReportResult | None
    emit: EmitResult


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
    )


def run_recipe(recipe: Recipe | str | Path, *, overrides: Iterable[str] = (),
               progress: bool = True) -> RecipeResult:
    """collect → flag → cluster → emit → report, as the recipe says: a :class:`Recipe`, or a
    recipe file read by :func:`load_recipe` with `overrides` (``KEY=VALUE``, what `refine run
    --set` gives)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise ConfigError("apply to a recipe file; build the Recipe with them instead",
                          key="overrides")
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
    flagged = flag(recipe.run_dir, recipe.flag)
    clustered = None
    if recipe.cluster is not None and flagged.bad_items:
        clustered = cluster(recipe.run_dir, recipe.cluster)
    # A re-run replaces what this run's last emit wrote (and nobody changed since), so that
    # `refine run` can be run again; anything else at emit.out needs emit.overwrite.
    emitted = emit(recipe.run_dir, recipe.emit_out, recipe.emit, overwrite=recipe.emit_overwrite,
                   replace_own=True)
    reported = report(recipe.run_dir, recipe.report) if recipe.report is not None else None
    return RecipeResult(recipe, collected, flagged, clustered, reported, emitted)


_CHECK_SCHEMA: dict[str, Any] = {"name": str, "description": str, "checks": Section(CheckSettings)}


def load_check_config(path: str | Path, overrides: Iterable[str] = ()) -> CheckSettings:
    """A pre-retraining gate file: ``checks: {select: [...], options: {...}, severity: {...},
    max_findings: N}``, read like a recipe."""
    config = read_config(path, _CHECK_SCHEMA, overrides, what="check configuration file")
    return config.build(CheckSettings, "checks", config.section("checks"))
