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

from . import _moved  # noqa: F401  (old module paths keep working)
from ._version import __version__
from .errors import BackendError, ConfigError, IncompleteRunError, InputError, RefineError, RunDirError

_LAZY = {
    "AnswerResult": "stages.answering",
    "AnswerSettings": "settings",
    "Attribution": "formats.records",
    "AttributionBackend": "attribution.base",
    "CheckSettings": "settings",
    "ClusterResult": "stages.clustering",
    "ClusterSettings": "settings",
    "CollectResult": "stages.collection",
    "CompareResult": "stages.comparison",
    "CollectSettings": "settings",
    "EditSettings": "settings",
    "EmitResult": "stages.emission",
    "EmitSettings": "settings",
    "EvalItem": "formats.evalset",
    "EvalSet": "formats.evalset",
    "FinetuneResult": "stages.handoff",
    "FinetuneSettings": "settings",
    "FlagResult": "stages.flagging",
    "FlagSettings": "settings",
    "GradeSettings": "settings",
    "Influence": "formats.records",
    "OutcomeResult": "stages.outcomes",
    "OutcomeSettings": "settings",
    "Recipe": "stages.recipe",
    "ReportResult": "stages.reporting",
    "ReportSettings": "settings",
    "RetrainResult": "stages.retraining",
    "RetrainSettings": "settings",
    "RunDir": "core.rundir",
    "RecipeResult": "stages.recipe",
    "TrainingInput": "formats.training",
    "TrainingPair": "formats.training",
    "TrainingSet": "formats.training",
    "UploadResult": "stages.handoff",
    "answer_eval": "stages.answering",
    "available_backends": "attribution.base",
    "check": "checks",
    "cluster": "stages.clustering",
    "compare": "stages.comparison",
    "collect": "stages.collection",
    "emit": "stages.emission",
    "finetune_local": "stages.local_training",
    "finetune": "stages.handoff",
    "flag": "stages.flagging",
    "load_eval": "formats.evalset",
    "load_recipe": "stages.recipe",
    "load_training": "formats.training",
    "make_backend": "attribution.base",
    "outcome": "stages.outcomes",
    "read_flags": "stages.flagging",
    "report": "stages.reporting",
    "review_apply": "stages.review",
    "retrain": "stages.retraining",
    "review_export": "stages.review",
    "run_recipe": "stages.recipe",
    "serve": "service.server",
    "upload": "stages.handoff",
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
