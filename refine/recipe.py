"""Recipes: collect → flag → emit, scripted in YAML.

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
    report: {enabled: true}                      # RUN/report.html and RUN/report.md
    emit: {out: runs/quickstart/refined.jsonl,   # default: <run_dir>/refined.<input's suffix>,
                                                 # or <run_dir>/refined/ for several sources
           mode: prune,                          # prune | edit | quarantine
           counterexamples: false, question_min: 0.75, agree_min: 0.8}

Relative paths are relative to the recipe file, so a recipe runs the same from any directory.
Unknown keys are errors naming the key and its line. ``--set collect.top_k=20`` overrides a
key (the value is read as YAML).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import yaml

from .clustering import ClusterResult, ClusterSettings, cluster
from .collection import CollectResult, CollectSettings, collect
from .emission import EmitResult, emit
from .errors import ConfigError, IncompleteRunError
from .flagging import FlagResult, FlagSettings, flag
from .decisions import MODES, EditSettings
from .grading import GradeSettings
from .layouts import get_layout
from .reporting import ReportResult, ReportSettings, report
from .training import TrainingInput

__all__ = ["Recipe", "RecipeResult", "load_recipe", "run_recipe"]

_SCHEMA: dict[str, Any] = {
    "name": str, "description": str, "train": (list, str), "eval": str, "run_dir": str,
    "overwrite": bool,
    "collect": {f.name: None for f in fields(CollectSettings) if f.name != "grade"},
    "grade": {f.name: None for f in fields(GradeSettings)},
    "flag": {f.name: None for f in fields(FlagSettings)},
    "cluster": {"enabled": None, **{f.name: None for f in fields(ClusterSettings)}},
    "report": {"enabled": None, **{f.name: None for f in fields(ReportSettings)}},
    "emit": {"out": str, "mode": str, "counterexamples": bool, "question_min": float,
             "agree_min": float},
}
_REQUIRED = ("train", "eval", "run_dir")


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
    emit_mode: str = "prune"
    emit_counterexamples: bool = False
    edit: EditSettings | None = None
    cluster: ClusterSettings | None = None    # None: the step is off
    report: ReportSettings | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class RecipeResult:
    recipe: Recipe
    collect: CollectResult
    flag: FlagResult
    cluster: ClusterResult | None
    report: ReportResult | None
    emit: EmitResult


def _compose_lines(text: str, file: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML safely and remember the line of every mapping key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=file,
                          line=mark.line + 1 if mark else None) from None
    lines: dict[tuple[str, ...], int] = {}

    def walk(n: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = (*prefix, str(key_node.value))
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)

    walk(node, ())
    return data, lines


def _apply_override(data: dict[str, Any], override: str) -> tuple[str, ...]:
    if "=" not in override:
        raise ConfigError(f"--set needs key=value, got {override!r}", key="--set")
    key, _, raw = override.partition("=")
    path = tuple(part for part in key.strip().split(".") if part)
    if not path:
        raise ConfigError(f"--set needs a key, got {override!r}", key="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a mapping", key=key)
        node = child
    node[path[-1]] = value
    return path


def _validate_keys(data: dict[str, Any], lines: dict[tuple[str, ...], int], file: str) -> None:
    def where(path: tuple[str, ...]) -> int | None:
        return lines.get(path)

    for key, value in data.items():
        spec = _SCHEMA.get(key)
        if key not in _SCHEMA:
            raise ConfigError(f"unknown key; known: {', '.join(sorted(_SCHEMA))}", key=key,
                              file=file, line=where((key,)))
        if isinstance(spec, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError("must be a mapping", key=key, file=file, line=where((key,)))
            for sub in value:
                if sub not in spec:
                    raise ConfigError(f"unknown key; known under '{key}': {', '.join(sorted(spec))}",
                                      key=f"{key}.{sub}", file=file, line=where((key, str(sub))))
        elif not isinstance(value, spec):
            kind = spec.__name__ if isinstance(spec, type) else "a list or a string"
            raise ConfigError(f"must be {kind}, got {type(value).__name__}", key=key, file=file,
                              line=where((key,)))
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError("is required", key=key, file=file)


_PATH_OPTIONS = ("model", "adapter", "cache_dir")


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read and validate a recipe; `overrides` are ``key.sub=value`` strings."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise ConfigError("no such recipe file", file=file)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not valid UTF-8 (byte {exc.start + 1})", file=file) from None
    data, lines = _compose_lines(text, file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("a recipe must be a mapping at the top level", file=file, line=1)
    for override in overrides:
        lines.pop(_apply_override(data, override), None)
    _validate_keys(data, lines, file)

    base = path.parent

    def resolve(p: str) -> str:
        return os.path.normpath(p if Path(p).is_absolute() else base / p)

    train_entries = data["train"] if isinstance(data["train"], list) else [data["train"]]
    train: list[str | TrainingInput] = []
    for entry in train_entries:
        if isinstance(entry, dict) and set(entry) <= {"path", "format"} and isinstance(entry.get("path"), str):
            try:
                layout = get_layout(entry["format"], key="train.format").name if entry.get("format") else None
            except ConfigError as exc:
                raise ConfigError(exc.message, key=exc.key, file=file, line=lines.get(("train",))) from None
            train.append(TrainingInput(resolve(entry["path"]), layout))
        elif isinstance(entry, str):
            train.append(resolve(entry))
        else:
            train = []
            break
    if not train:
        raise ConfigError("must be a source or a list of sources (a path, or {path: ..., format: ...})",
                          key="train", file=file, line=lines.get(("train",)))
    run_dir = resolve(data["run_dir"])
    emit_cfg = data.get("emit") or {}
    # One source: its refined copy in the same format (a dataset directory has no suffix).
    first = Path(train[0].path if isinstance(train[0], TrainingInput) else train[0])
    default_out = Path(run_dir) / ("refined" + (first.suffix if first.is_file() else "")
                                   if len(train) == 1 else "refined")
    collect_cfg = dict(data.get("collect") or {})
    options = collect_cfg.get("backend_options")
    if isinstance(options, dict):
        # Model, adapter and cache folders are paths too: relative to the recipe when they
        # exist there (a value like "default" is left alone).
        collect_cfg["backend_options"] = {
            k: resolve(v) if k in _PATH_OPTIONS and isinstance(v, str) and v
            and not Path(v).is_absolute() and (base / v).exists() else v
            for k, v in options.items()}
    try:
        collect_settings = CollectSettings(**collect_cfg, grade=GradeSettings(**(data.get("grade") or {})))
        flag_settings = FlagSettings(**(data.get("flag") or {}))
        cluster_cfg = dict(data.get("cluster") or {})
        cluster_settings = ClusterSettings(**cluster_cfg) if cluster_cfg.pop("enabled", True) else None
        report_cfg = dict(data.get("report") or {})
        report_settings = ReportSettings(**report_cfg) if report_cfg.pop("enabled", True) else None
        emit_mode = emit_cfg.get("mode", "prune")
        if emit_mode not in MODES:
            raise ConfigError(f"unknown mode {emit_mode!r}; one of {', '.join(MODES)}", key="emit.mode")
        edit_settings = EditSettings(**{k: emit_cfg[k] for k in ("question_min", "agree_min")
                                        if k in emit_cfg})
    except ConfigError as exc:
        section = exc.key.split(".") if exc.key else []
        raise ConfigError(exc.message, key=exc.key, file=file,
                          line=lines.get(tuple(section))) from None
    return Recipe(
        path=path,
        name=str(data.get("name") or path.stem),
        train=train,
        eval=resolve(data["eval"]),
        run_dir=run_dir,
        emit_out=resolve(emit_cfg["out"]) if "out" in emit_cfg else str(default_out),
        collect=collect_settings,
        flag=flag_settings,
        emit_mode=emit_mode,
        emit_counterexamples=bool(emit_cfg.get("counterexamples", False)),
        edit=edit_settings,
        cluster=cluster_settings,
        report=report_settings,
        overwrite=bool(data.get("overwrite", False)),
    )


def run_recipe(recipe: Recipe, *, progress: bool = True) -> RecipeResult:
    """collect → flag → cluster → report → emit, as the recipe says."""
    collected = collect(recipe.train, recipe.eval, recipe.run_dir, recipe.collect,
                        overwrite=recipe.overwrite, progress=progress)
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
    reported = report(recipe.run_dir, recipe.report) if recipe.report is not None else None
    emitted = emit(recipe.run_dir, recipe.emit_out, mode=recipe.emit_mode, edit_settings=recipe.edit,
                   counterexamples=recipe.emit_counterexamples)
    return RecipeResult(recipe, collected, flagged, clustered, reported, emitted)


def parse_key_values(pairs: Iterable[str], flag_name: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``, values read as YAML."""
    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"needs KEY=VALUE, got {item!r}", key=flag_name)
        _apply_override(out, item)
    return out


_CHECK_KEYS = {"name", "description", "checks"}
_CHECK_SECTION = {"select", "options", "severity", "max_findings"}


def load_check_config(path: str | Path) -> dict[str, Any]:
    """A pre-retraining gate file: ``checks: {select: [...], options: {...}, severity: {...}}``.

    Returns keyword arguments for :func:`refine.checks.run_checks`; unknown keys are errors
    naming the key and its line.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise ConfigError("no such check configuration file", file=file)
    data, lines = _compose_lines(path.read_text(encoding="utf-8"), file)
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping at the top level", file=file, line=1)
    for key in data:
        if key not in _CHECK_KEYS:
            raise ConfigError(f"unknown key; known: {', '.join(sorted(_CHECK_KEYS))}", key=key,
                              file=file, line=lines.get((key,)))
    section = data.get("checks") or {}
    if not isinstance(section, dict):
        raise ConfigError("must be a mapping", key="checks", file=file, line=lines.get(("checks",)))
    for key in section:
        if key not in _CHECK_SECTION:
            raise ConfigError(f"unknown key; known under 'checks': {', '.join(sorted(_CHECK_SECTION))}",
                              key=f"checks.{key}", file=file, line=lines.get(("checks", str(key))))
    return dict(section)
