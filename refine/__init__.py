"""refine: turn training-data attribution into dataset decisions.

The same verbs as the CLI (``refine review export`` is :func:`review_export`; ``refine run`` is
:func:`run_recipe` and ``refine backends`` :func:`available_backends`, as
:data:`refine.cli.FUNCTIONS` records)::

    from refine import collect, flag, emit, load_recipe, run_recipe

    collect(["train.jsonl"], "eval.jsonl", "runs/r1")
    result = flag("runs/r1")
    emit("runs/r1", "train.refined.jsonl")

Names are imported on first use, so that ``refine --help`` does not load pandas or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import BackendError, ConfigError, IncompleteRunError, InputError, RefineError, RunDirError

_LAZY = {
    "Attribution": "records",
    "AttributionBackend": "attribution.base",
    "CheckSettings": "settings",
    "ClusterResult": "clustering",
    "ClusterSettings": "settings",
    "CollectResult": "collection",
    "CompareResult": "comparison",
    "CollectSettings": "settings",
    "EditSettings": "settings",
    "EmitResult": "emission",
    "EmitSettings": "settings",
    "EvalItem": "evalset",
    "EvalSet": "evalset",
    "FinetuneResult": "handoff",
    "FinetuneSettings": "settings",
    "FlagResult": "flagging",
    "FlagSettings": "settings",
    "GradeSettings": "settings",
    "Influence": "records",
    "OutcomeResult": "outcomes",
    "OutcomeSettings": "settings",
    "Recipe": "recipe",
    "ReportResult": "reporting",
    "ReportSettings": "settings",
    "RunDir": "rundir",
    "RecipeResult": "recipe",
    "TrainingInput": "training",
    "TrainingPair": "training",
    "TrainingSet": "training",
    "UploadResult": "handoff",
    "available_backends": "attribution.base",
    "check": "checks",
    "cluster": "clustering",
    "compare": "comparison",
    "collect": "collection",
    "emit": "emission",
    "finetune_local": "local_training",
    "finetune": "handoff",
    "flag": "flagging",
    "load_eval": "evalset",
    "load_recipe": "recipe",
    "load_training": "training",
    "make_backend": "attribution.base",
    "outcome": "outcomes",
    "read_flags": "flagging",
    "report": "reporting",
    "review_apply": "review",
    "review_export": "review",
    "run_recipe": "recipe",
    "serve": "server",
    "upload": "handoff",
}

__all__ = sorted([*_LAZY, "BackendError", "ConfigError", "IncompleteRunError", "InputError",
                  "RefineError", "RunDirError", "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
