"""The `refine` command: a thin layer over the Python API with the same verbs.

Each command parses options, builds the settings object, calls one public function, and a
RefineError becomes a one-line message on stderr and the error's exit code (see
:mod:`refine.errors`). The options of a settings dataclass are made from its fields, with their
help and defaults (:mod:`refine.cli.options`), so every setting a recipe can set is an option too.

==================  =========================================================
module              commands
==================  =========================================================
:mod:`.collect`     collect, backends
:mod:`.analyse`     flag, cluster, report, outcome, compare
:mod:`.emit`        emit, review export, review apply
:mod:`.gate`        check
:mod:`.recipe`      run
:mod:`.seekrflow`   upload, finetune, serve
==================  =========================================================
"""

from __future__ import annotations

import click

from .._version import __version__
from .options import RefineGroup

__all__ = ["FOLDED", "FUNCTIONS", "IGNORED", "main"]

#: The public function (``refine.<name>``) each command calls: the command's own name, a
#: subcommand's joined with an underscore (``refine review export``: ``refine.review_export``),
#: except these.
FUNCTIONS = {"run": "run_recipe", "backends": "available_backends"}

_BACKEND_FLAGS = ("options", "model", "adapter", "model_id", "base_url", "concurrency", "rate",
                  "timeout", "max_retries")
_EXECUTOR_FLAGS = ("executor_kind", "executor_options", "ray_address", "workers", "worker_resources")
#: The options of a command that are neither a parameter of its function nor a field of that
#: function's settings, and what each becomes there: the parameter or settings field it is
#: folded into, or None where it only shapes what the command prints.
FOLDED: dict[str, dict[str, str | None]] = {
    "collect": {**dict.fromkeys(_BACKEND_FLAGS, "backend_options"),
                **dict.fromkeys(_EXECUTOR_FLAGS, "executor"), "quiet": "progress"},
    "backends": {"options_of": None, "verbose": None},
    "flag": {"show": None},
    "compare": {"as_json": None},
    "outcome": {"as_json": None, "show": None},
    "check": {"config": "settings", "as_json": None},
    "run": {"quiet": "progress"},
    "upload": {"quiet": "progress"},
    "finetune": {"quiet": "progress"},
    "serve": {"options": "backend_options", "api_key_env": "api_key"},
}
#: The settings fields a command has no option for, because its function does not read them.
IGNORED: dict[str, tuple[str, ...]] = {
    # refine.serve reads the backend, its options, top_k and train_format: it grades nothing.
    "serve": ("grade", "batch_size", "skip_invalid", "eval_format", "evidence", "evidence_lookup",
              "executor"),
    # A review file holds decisions about flagged pairs; counter-examples are added when emitting.
    "review export": ("counterexamples", "max_counterexamples_per_mode"),
}


@click.group(cls=RefineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="refine")
def main() -> None:
    """Find the fine-tuning pairs that repeatedly drive bad answers, and emit a refined dataset.

    Typical flow: collect → flag → cluster → emit → report, or all of them from a recipe with
    `refine run`.
    """


# Each module adds its commands to `main`.
from . import analyse, collect, emit, gate, recipe, seekrflow  # noqa: E402,F401
