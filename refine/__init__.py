"""refine: turn training-data attribution into dataset decisions.

The same verbs as the CLI::

    from refine import collect, flag, emit, load_recipe, run_recipe

    collect(["train.jsonl"], "eval.jsonl", "runs/r1")
    result = flag("runs/r1")
    emit("runs/r1", "train.refined.jsonl")
"""

from ._version import __version__
from .attribution.base import AttributionBackend, available_backends, make_backend
from .collect import CollectResult, CollectSettings, collect
from .emit import EmitResult, emit
from .errors import BackendError, ConfigError, InputError, RefineError, RunDirError
from .evalset import EvalItem, EvalSet, load_eval
from .flagging import FlagResult, FlagSettings, flag, read_flags
from .grading import GradeSettings
from .records import Attribution, Influence
from .recipe import Recipe, RecipeResult, load_recipe, run_recipe
from .training import TrainingPair, TrainingSet, load_training

__all__ = [
    "Attribution",
    "AttributionBackend",
    "BackendError",
    "CollectResult",
    "CollectSettings",
    "ConfigError",
    "EmitResult",
    "EvalItem",
    "EvalSet",
    "FlagResult",
    "FlagSettings",
    "GradeSettings",
    "Influence",
    "InputError",
    "Recipe",
    "RecipeResult",
    "RefineError",
    "RunDirError",
    "TrainingPair",
    "TrainingSet",
    "__version__",
    "available_backends",
    "collect",
    "emit",
    "flag",
    "load_eval",
    "load_recipe",
    "load_training",
    "make_backend",
    "read_flags",
    "run_recipe",
]
