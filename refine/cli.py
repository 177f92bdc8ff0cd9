"""The `refine` command: a thin layer over the Python API with the same verbs.

Each command parses options, builds the settings object (:mod:`refine.settings`, whose
defaults and help texts the options take), calls one public function and turns a RefineError
into a one-line message on stderr and the error's exit code (see :mod:`refine.errors`).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ._version import __version__
from .errors import ConfigError, IncompleteRunError, RefineError
from .formats.layouts import LAYOUTS
from .settings import (MODES, CheckSettings, ClusterSettings, CollectSettings, EmitSettings,
                       FlagSettings, OutcomeSettings, ReportSettings, default, help_of)

#: The public function (``refine.<name>``) each command calls: the command's own name, a
#: subcommand's joined with an underscore (``refine review export``: ``refine.review_export``),
#: except these.
FUNCTIONS = {"run": "run_recipe", "backends": "available_backends"}

_BACKEND_FLAGS = ("options", "model", "adapter", "model_id", "base_url", "concurrency", "rate",
                  "timeout", "max_retries")
_EXECUTOR_FLAGS = ("executor_kind", "ray_address", "workers", "worker_resources")
#: The options of a command that are neither a parameter of its function nor a field of that
#: function's settings, and what each becomes there: the parameter or settings field it is
#: folded into, or None where it only shapes what the command prints.
FOLDED: dict[str, dict[str, str | None]] = {
    "collect": {**dict.fromkeys(_BACKEND_FLAGS, "backend_options"),
                **dict.fromkeys(_EXECUTOR_FLAGS, "executor"), "quiet": "progress"},
    "flag": {"show": None},
    "compare": {"as_json": None},
    "outcome": {"as_json": None, "show": None},
    "check": {"config": "settings", "as_json": None},
    "run": {"quiet": "progress"},
    "upload": {"quiet": "progress"},
    "finetune": {"quiet": "progress"},
    "serve": {"options": "backend_options", "api_key_env": "api_key"},
}


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RefineError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
    return wrapper


def _setting(cls: type, name: str, *flags: str, **kwargs: Any) -> Callable[..., Any]:
    """An option whose default and help come from the settings dataclass."""
    value = default(cls, name)
    if isinstance(value, bool):
        kwargs.setdefault("is_flag", True)
    else:
        kwargs.setdefault("show_default", True)
        if value is not None:
            kwargs.setdefault("type", type(value))
    return click.option(*(flags or (f"--{name.replace('_', '-')}",)), name, default=value,
                        help=help_of(cls, name), **kwargs)


def _quiet(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress output.")(f)


def _backend_choice() -> Any:
    """The backends by name (listing them imports none)."""
    from .plugins import BACKENDS

    return click.Choice(sorted(BACKENDS.names()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="refine")
def main() -> None:
    """Find the fine-tuning pairs that repeatedly drive bad answers, and emit a refined dataset.

    Typical flow: collect → flag → cluster → emit → report, or all of them from a recipe with
    `refine run`.
    """


LAYOUT_NAMES = list(LAYOUTS)


@main.command("collect")
@click.option("--train", "train", multiple=True, required=True, metavar="SOURCE",
              help="Training data: a JSONL, JSON, CSV, TSV or Parquet file, or a saved Hugging Face "
                   "dataset directory (DIR, or DIR:split for a DatasetDict). Repeat for several.")
@click.option("--eval", "eval_path", required=True, metavar="SOURCE",
              help="Eval set (any training source): question, answer, and verdict or reference.")
@_setting(CollectSettings, "train_format", "--format", type=click.Choice(LAYOUT_NAMES))
@_setting(CollectSettings, "eval_format", "--eval-format", type=click.Choice(LAYOUT_NAMES))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Run directory to write (resumed when it holds the same run).")
@_setting(CollectSettings, "backend", type=_backend_choice())
@_setting(CollectSettings, "top_k")
@click.option("--model", default=None,
              help="embedding: a local sentence-transformers model directory (default: the "
                   "packaged all-MiniLM-L6-v2); gradient: the local causal LM directory.")
@click.option("--adapter", default=None,
              help="gradient: a local PEFT LoRA adapter directory on top of --model.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A backend option (docs/backends.md lists each backend's), read as YAML. Repeatable.")
@_setting(CollectSettings, "batch_size")
@click.option("--model-id", default=None, help="seekrflow: the fine-tuned model's id.")
@click.option("--base-url", default=None,
              help="seekrflow: the API's base URL (default: $SEEKR_BASE_URL, else "
                   "https://flow.seekr.com; a `refine serve` address works too).")
@click.option("--concurrency", default=None, type=int, help="seekrflow: requests in flight [8].")
@click.option("--rate", default=None, type=float, help="seekrflow: at most this many requests/s.")
@click.option("--timeout", default=None, type=float, help="seekrflow: seconds per request [60].")
@click.option("--max-retries", default=None, type=int,
              help="seekrflow: retries per request on 408/409/429/5xx, garbled bodies and "
                   "connection errors [5].")
@_setting(CollectSettings, "skip_invalid")
@click.option("--executor", "executor_kind", default=None, metavar="NAME",
              help="Where the heavy work runs: inprocess (default) or ray (pip install 'refine[ray]').")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="ray: auto (the cluster this machine is in), ray://HOST:PORT, or none for a new "
                   "local cluster.")
@click.option("--workers", default=None, type=int, help="ray: worker actors, each with a model [2].")
@click.option("--worker-resources", default=None, metavar="NAME=N,...",
              help="ray: what one worker holds, e.g. GPU=1,CPU=4 [CPU=1].")
@click.option("--overwrite", is_flag=True, help="Start OUT afresh even if it holds another run.")
@_quiet
@_handle_errors
def collect_command(train: tuple[str, ...], eval_path: str, train_format: str | None,
                    eval_format: str | None, out: str, backend: str, top_k: int,
                    model: str | None, adapter: str | None, options: tuple[str, ...],
                    batch_size: int, model_id: str | None, base_url: str | None, concurrency: int | None,
                    rate: float | None, timeout: float | None, max_retries: int | None,
                    skip_invalid: bool, executor_kind: str | None, ray_address: str | None,
                    workers: int | None, worker_resources: str | None, overwrite: bool,
                    quiet: bool) -> None:
    """Attribute every eval item to training pairs; write the run directory OUT.

    Backends are plug-ins: `refine backends` lists the installed ones. The seekrflow
    backend reads its API key from $SEEKR_API_KEY (and $SEEKR_TEAM_ID, $SEEKR_BASE_URL as the
    official SDK does). Exit code 3 when items are left failed: run the same command again to
    retry just those.
    """
    from .stages.collection import collect
    from .config import parse_key_values

    backend_options = parse_key_values(options, "--option")
    named = {"model": model, "adapter": adapter, "model_id": model_id, "base_url": base_url,
             "concurrency": concurrency, "rate": rate, "timeout": timeout,
             "max_retries": max_retries}
    backend_options.update({k: v for k, v in named.items() if v is not None})
    settings = CollectSettings(backend=backend, top_k=top_k, backend_options=backend_options,
                               batch_size=batch_size, skip_invalid=skip_invalid,
                               train_format=train_format, eval_format=eval_format,
                               executor=_executor_config(executor_kind, ray_address, workers,
                                                         worker_resources))
    result = collect(list(train), eval_path, out, settings, overwrite=overwrite, progress=not quiet)
    _report_collect(result)
    if result.failed:
        sys.exit(IncompleteRunError.exit_code)


def _executor_config(kind: str | None, address: str | None, workers: int | None,
                     resources: str | None) -> dict[str, Any] | None:
    """The ``collect.executor`` mapping the --executor flags describe."""
    given = {"address": address, "workers": workers}
    if resources is not None:
        parsed: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in resources.split(","))):
            name, sep, amount = part.partition("=")
            try:
                parsed[name.strip()] = float(amount) if sep and name.strip() else float("nan")
            except ValueError:
                parsed[name.strip()] = float("nan")
            if not parsed[name.strip()] >= 0:
                raise ConfigError(f"expected NAME=AMOUNT,... (e.g. GPU=1,CPU=4), got {part!r}",
                                  key="--worker-resources")
        given["resources"] = parsed
    given = {k: v for k, v in given.items() if v is not None}
    if kind is None and not given:
        return None
    if (kind or "inprocess") == "inprocess" and given:
        flags = {"address": "--ray-address", "workers": "--workers", "resources": "--worker-resources"}
        raise ConfigError(f"{', '.join(flags[k] for k in given)} only apply to --executor ray",
                          key="--executor")
    return {"kind": kind or "inprocess", **given}


@main.command("backends")
def backends_command() -> None:
    """List the attribution backends (built-in and plug-ins)."""
    from .attribution.base import available_backends

    for name in available_backends():
        click.echo(name)


def _report_collect(result: Any) -> None:
    click.echo(f"collected {result.done}/{result.items} eval items over {result.training_pairs} "
               f"training pairs into {result.run_dir}"
               + (f" ({result.resumed} already done)" if result.resumed else ""))
    for note in result.notes:
        click.echo(note)
    if result.skipped_lines:
        click.echo(f"skipped {result.skipped_lines} invalid input records", err=True)
    if result.unmatched_results:
        click.echo(f"{result.unmatched_results} attribution results match no local training line "
                   f"(kept in {Path(result.run_dir) / 'attributions.parquet'} with no pair_id), e.g.:",
                   err=True)
        for example in result.unmatched_examples[:3]:
            click.echo("  " + example.replace("\n", " | ")[:120], err=True)
    if result.failed:
        shown = ", ".join(result.failed[:10]) + (" …" if len(result.failed) > 10 else "")
        click.echo(f"{len(result.failed)} items failed (run again to retry them): {shown}", err=True)


@main.command("flag")
@click.argument("run_dir", type=click.Path(file_okay=False))
@_setting(FlagSettings, "min_bad")
@_setting(FlagSettings, "alpha")
@click.option("--show", default=20, show_default=True, type=int, help="Flagged pairs to list.")
@_handle_errors
def flag_command(run_dir: str, min_bad: int, alpha: float, show: int) -> None:
    """Flag the training pairs that repeatedly drive bad answers; write RUN/flags.csv."""
    from .stages.flagging import flag

    result = flag(run_dir, FlagSettings(min_bad=min_bad, alpha=alpha))
    _report_flags(result, show)


def _report_flags(result: Any, show: int) -> None:
    click.echo(f"{result.flagged} of {result.cited_pairs} cited pairs flagged "
               f"({result.bad_items} bad of {result.items} answers) -> {Path(result.run_dir) / 'flags.csv'}")
    # Listed in the order of what is printed: q as shown ascending (none shown: last), then bad
    # answers descending, then file and line.
    listed = []
    for row in result.flagged_pairs.itertuples():
        claimed = getattr(row, "flagged_by", "") in ("claim test", "claim repeated")
        # A claim flagged by its group's test shows that test's q; one flagged on its counts alone, none.
        q = row.q_value if not claimed else row.group_q if row.flagged_by == "claim test" else None
        q = None if q is None or q != q else float(q)   # q != q: NaN
        bad = int(row.group_n_bad if claimed else row.n_bad)
        shown = 0.0 if q is None else float(f"{q:.2g}")
        listed.append(((q is None, shown, -bad, str(row.file), int(row.line)), claimed, q, row))
    listed.sort(key=lambda entry: entry[0])
    for _, claimed, q, row in listed[:show]:
        shown_q = "q=–" if q is None else f"q={q:.2g}"
        if claimed:
            # What bad answers repeat against their references, and how many answers back it.
            claim = row.claim if len(row.claim) <= 70 else row.claim[:69] + "…"
            click.echo(f"  {row.file}:{row.line}  repeated by {row.group_n_bad} bad, supported by "
                       f"{row.group_n_good}  {shown_q}  \"{claim}\"")
            continue
        question = row.question if len(row.question) <= 70 else row.question[:69] + "…"
        click.echo(f"  {row.file}:{row.line}  bad={row.n_bad} good={row.n_good} "
                   f"{shown_q}  {question}")


def _emit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for name in reversed(("mode", "question_min", "agree_min")):
        kwargs = {"type": click.Choice(MODES)} if name == "mode" else {}
        f = _setting(EmitSettings, name, **kwargs)(f)
    return f


_OUT_HELP = ("The refined file itself when the run has one training file and OUT ends in its "
             "extension (refined.jsonl for a .jsonl source; manifest: refined.manifest.json beside "
             "it). Otherwise a directory, made if missing, holding each source's refined copy under "
             "the source's own name and manifest.json.")
_OVERWRITE_HELP = ("Replace outputs (and the manifest) that already exist; without it nothing that "
                   "exists is replaced. Inputs are never replaced.")


@main.command("emit")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(), help=_OUT_HELP)
@_emit_options
@_setting(EmitSettings, "counterexamples")
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
@_handle_errors
def emit_command(run_dir: str, out: str, mode: str, question_min: float, agree_min: float,
                 counterexamples: bool, overwrite: bool) -> None:
    """Write the refined dataset and its manifest.

    \b
    refine emit RUN --out refined.jsonl   refined.jsonl + refined.manifest.json
    refine emit RUN --out refined         refined/<source name> + refined/manifest.json

    Refuses, before writing anything, to replace a path that exists unless --overwrite.
    """
    from .stages.emission import emit

    settings = EmitSettings(mode=mode, counterexamples=counterexamples, question_min=question_min,
                            agree_min=agree_min)
    _report_emit(emit(run_dir, out, settings, overwrite=overwrite))


def _report_emit(result: Any) -> None:
    outputs = ", ".join(str(p) for p in result.outputs)
    kept = result.records_out - result.added
    extra = "".join(f", {label} {n}" for label, n in (("edited", result.edited),
                                                      ("quarantined", result.quarantined)) if n)
    added = (f"; added {result.added} counter-examples ({result.records_out} records out)"
             if result.added else "")
    click.echo(f"kept {kept} of {result.records_in} records (removed {result.removed}{extra}){added} "
               f"-> {outputs}; manifest: {result.manifest}")
    if result.quarantine is not None:
        click.echo(f"quarantined pairs for review: {result.quarantine}")


@main.group("review")
def review_group() -> None:
    """Hand flagged pairs to a person and bring their decisions back."""


@review_group.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="CSV to write.")
@_emit_options
@_handle_errors
def review_export_command(run_dir: str, out: str, mode: str, question_min: float, agree_min: float) -> None:
    """Write one row per flagged pair, with the action --mode would take, for a spreadsheet."""
    from .stages.review import review_export

    result = review_export(run_dir, out, EmitSettings(mode=mode, question_min=question_min,
                                                      agree_min=agree_min))
    click.echo(f"{result.rows} flagged pairs to review -> {result.path} "
               "(fill in `action`: keep/drop/edit/quarantine, and `new_answer` for an edit)")


@review_group.command("apply")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("review_csv", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(), help=_OUT_HELP + " As for emit.")
@_emit_options
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
@_handle_errors
def review_apply_command(run_dir: str, review_csv: str, out: str, mode: str, question_min: float,
                         agree_min: float, overwrite: bool) -> None:
    """Validate a filled-in review CSV and emit with the reviewed decisions."""
    from .stages.review import review_apply

    _report_emit(review_apply(run_dir, review_csv, out, EmitSettings(
        mode=mode, question_min=question_min, agree_min=agree_min), overwrite=overwrite))


@main.command("cluster")
@click.argument("run_dir", type=click.Path(file_okay=False))
@_setting(ClusterSettings, "distance_threshold")
@_setting(ClusterSettings, "min_size")
@_handle_errors
def cluster_command(run_dir: str, distance_threshold: float, min_size: int) -> None:
    """Group the bad answers into failure modes and find the pairs driving each (after flag)."""
    from .stages.clustering import cluster

    result = cluster(run_dir, ClusterSettings(distance_threshold=distance_threshold, min_size=min_size))
    _report_clusters(result)


def _report_clusters(result: Any) -> None:
    unclustered = int((result.items["cluster"] < 0).sum())
    click.echo(f"{len(result.modes)} failure modes over {len(result.items)} bad answers"
               + (f" ({unclustered} unclustered)" if unclustered else "")
               + f" -> {Path(result.run_dir) / 'clusters.csv'}")
    for mode in result.modes.itertuples():
        click.echo(f"  mode {mode.cluster}: {mode.label} ({mode.size} answers)")


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@_setting(ReportSettings, "max_flagged")
@_setting(ReportSettings, "max_cited")
@_handle_errors
def report_command(run_dir: str, max_flagged: int, max_cited: int) -> None:
    """Write RUN/report.html (self-contained) and RUN/report.md."""
    from .stages.reporting import report

    result = report(run_dir, ReportSettings(max_flagged=max_flagged, max_cited=max_cited))
    click.echo(f"report: {result.html} ({result.bytes / 1e6:.2f} MB), {result.markdown}")


@main.command("outcome")
@click.argument("before", type=click.Path(file_okay=False))
@click.argument("after", type=click.Path(file_okay=False))
@click.option("--control", "controls", multiple=True, type=click.Path(file_okay=False), metavar="RUN",
              help="A run of a model retrained without the refinement (unmodified set, or as many "
                   "random pairs removed), same seeds, same eval set: tests the changes against "
                   "retraining noise. Repeatable.")
@_setting(OutcomeSettings, "alpha")
@click.option("--show", default=10, show_default=True, type=int,
              help="Flagged pairs and newly bad answers to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def outcome_command(before: str, after: str, controls: tuple[str, ...], alpha: float, show: int,
                    as_json: bool) -> None:
    """Did it work? What the retrained model's run AFTER fixed and broke against BEFORE, the run
    whose flags led to the refined set (same eval set); writes AFTER/outcome.json."""
    import json

    from .stages.outcomes import outcome, summary_lines

    result = outcome(before, after, list(controls), OutcomeSettings(alpha=alpha))
    if as_json:
        click.echo(json.dumps(result.figures, sort_keys=True, ensure_ascii=False))
        return
    for line in summary_lines(result.figures, show):
        click.echo(line)
    click.echo(f"-> {result.path}")


@main.command("compare")
@click.argument("run_a", type=click.Path(file_okay=False))
@click.argument("run_b", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def compare_command(run_a: str, run_b: str, as_json: bool) -> None:
    """How far two runs over the same eval set agree (top-k overlap, blame rank correlation,
    flagged-set overlap)."""
    import json

    from .stages.comparison import compare

    result = compare(run_a, run_b)
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
        return
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    click.echo(f"{result.backend_a} ({run_a}) vs {result.backend_b} ({run_b}) over "
               f"{result.items_compared} eval items")
    for label, value in (("top-k overlap", result.topk_overlap), ("top-k Jaccard", result.topk_jaccard),
                         ("blame Spearman", result.blame_spearman),
                         ("flagged A / B / both", f"{fmt(result.flagged_a)} / {fmt(result.flagged_b)} / "
                                                  f"{fmt(result.flagged_both)}"),
                         ("flagged Jaccard", result.flagged_jaccard)):
        click.echo(f"  {label:22s} {fmt(value)}")


@main.command("check")
@click.argument("train", nargs=-1)
@click.option("--eval", "eval_path", help="Eval set: enables the leakage check.")
@click.option("--baseline", multiple=True, help="The original training source(s): enables the size guard.")
@click.option("--flags", "flags_run", type=click.Path(file_okay=False),
              help="A flagged run directory: enables the flagged-pairs-still-present check.")
@click.option("--outcome", "outcome_run", type=click.Path(file_okay=False),
              help="A retrained run where `refine outcome` ran: enables the newly-bad-answers gate "
                   "(outcome_regressions); TRAIN may then be left out.")
@click.option("--select", multiple=True, metavar="CHECK", help="Run only these checks. Repeatable.")
@click.option("--option", "options", multiple=True, metavar="CHECK.KEY=VALUE",
              help="A check option, e.g. near_duplicates.threshold=0.9. Repeatable.")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="A gate file (see recipes/pre-retrain-gate.yaml); flags given here win.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.option("--max-findings", default=None, type=int, help="Findings shown per failed check [20].")
@_handle_errors
def check_command(train: tuple[str, ...], eval_path: str | None, baseline: tuple[str, ...],
                  flags_run: str | None, outcome_run: str | None, select: tuple[str, ...],
                  options: tuple[str, ...], config: str | None, as_json: bool,
                  max_findings: int | None) -> None:
    """Check a training set before retraining on it (or, with --outcome, the retrained model's
    answers); exit 1 when an error-level check fails."""
    import dataclasses

    from .checks import available_checks, check
    from .config import parse_key_values
    from .stages.recipe import load_check_config

    settings = load_check_config(config) if config else CheckSettings()
    merged_options = {name: dict(values) for name, values in settings.options.items()}
    for name, values in parse_key_values(options, "--option").items():
        if not isinstance(values, dict):
            raise ConfigError(f"needs CHECK.KEY=VALUE; known checks: {', '.join(available_checks())}",
                              key="--option")
        merged_options.setdefault(name, {}).update(values)
    settings = dataclasses.replace(
        settings, select=list(select) or settings.select, options=merged_options,
        max_findings=settings.max_findings if max_findings is None else max_findings)
    report = check(list(train), settings, eval_path=eval_path, baseline=list(baseline),
                   flags_run=flags_run, outcome_run=outcome_run)
    click.echo(report.to_json() if as_json else report.to_table())
    if not report.passed:
        sys.exit(1)


@main.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set flag.min_bad=3. Repeatable.")
@_quiet
@_handle_errors
def run_command(recipe: str, overrides: tuple[str, ...], quiet: bool) -> None:
    """Run a recipe: collect → flag → cluster → emit → report (cluster and report can be
    turned off in the recipe).

    Exit code 3 when collect left eval items failed (nothing is flagged or emitted then).
    """
    from .stages.recipe import run_recipe

    result = run_recipe(recipe, overrides=overrides, progress=not quiet)
    _report_collect(result.collect)
    _report_flags(result.flag, 20)
    if result.cluster is not None:
        _report_clusters(result.cluster)
    _report_emit(result.emit)
    if result.report is not None:
        click.echo(f"report: {result.report.html}")


def _seekrflow_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Where the SeekrFlow API is and who asks it (the key itself only ever from the environment)."""
    for option in reversed((
        click.option("--base-url", default=None,
                     help="The API's base URL (default: $SEEKR_BASE_URL, else https://flow.seekr.com; "
                          "a `refine serve` address works too)."),
        click.option("--api-key-env", default="SEEKR_API_KEY", show_default=True, metavar="VAR",
                     help="The environment variable holding the API key (not needed for a loopback server)."),
        click.option("--team-id", default=None, help="Sent as x-team-id (default: $SEEKR_TEAM_ID)."),
        click.option("--timeout", default=120.0, show_default=True, type=float, help="Seconds per request."),
        click.option("--max-retries", default=5, show_default=True, type=int,
                     help="Retries of a request the service did not act on (408, 429, no connection; "
                          "reads also on 5xx)."),
    )):
        f = option(f)
    return f


@main.command("upload")
@click.argument("source", type=click.Path(exists=True))
@click.option("--purpose", default="fine-tune", show_default=True,
              type=click.Choice(["fine-tune", "preference-fine-tune", "reinforcement-fine-tune", "pre-train"]),
              help="What the file is for (as the SDK's files.upload).")
@_seekrflow_options
@_quiet
@_handle_errors
def upload_command(source: str, purpose: str, base_url: str | None, api_key_env: str,
                   team_id: str | None, timeout: float, max_retries: int, quiet: bool) -> None:
    """Upload the dataset a run emitted (SOURCE a run directory) or one file to SeekrFlow.

    A run's file ids are recorded in RUN/upload.json (with the emit they came from), where
    `refine finetune --run RUN` finds them.
    """
    from .stages.handoff import upload

    result = upload(source, purpose=purpose, base_url=base_url, api_key_env=api_key_env,
                    team_id=team_id, timeout=timeout, max_retries=max_retries, progress=not quiet)
    for item in result.files:
        click.echo(f"uploaded {item.path} ({item.bytes} bytes) -> {item.file_id}")
    if result.record is not None:
        click.echo(f"file ids recorded in {result.record}; next: refine finetune --run {source} "
                   f"--model BASE_MODEL" + (f" --base-url {result.base_url.rstrip('/')}" if base_url else ""))
    else:
        ids = " ".join(f"--file-id {i}" for i in result.file_ids)
        click.echo(f"next: refine finetune {ids} --model BASE_MODEL"
                   + (f" --base-url {result.base_url.rstrip('/')}" if base_url else ""))


def _finetune_setting(name: str, *flags: str, **kwargs: Any) -> Callable[..., Any]:
    from .settings import FinetuneSettings

    return _setting(FinetuneSettings, name, *flags, **kwargs)


@main.command("finetune")
@click.option("--run", "run", type=click.Path(file_okay=False),
              help="A run directory: train on what `refine upload RUN` uploaded (with --local: on "
                   "the dataset it emitted).")
@click.option("--file-id", "file_id", multiple=True, metavar="FILE_ID",
              help="An uploaded training file's id. Repeatable.")
@click.option("--train", type=click.Path(dir_okay=False, exists=True),
              help="--local: the training file (instead of --run).")
@click.option("--model", "base_model", required=True,
              help="The base model: its SeekrFlow name (GET v1/flow/models), or with --local its "
                   "local directory.")
@_finetune_setting("epochs")
@_finetune_setting("learning_rate")
@_finetune_setting("batch_size")
@_finetune_setting("max_length")
@_finetune_setting("lora", "--lora/--no-lora", show_default=True)
@_finetune_setting("lora_r")
@_finetune_setting("lora_alpha", type=float)
@_finetune_setting("lora_dropout")
@_finetune_setting("seed")
@_finetune_setting("device", type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--project-id", type=int, default=None,
              help="The SeekrFlow project to run in (default: a new one named after the run).")
@click.option("--experiment-name", default=None, help="A suffix for the output model's name.")
@click.option("--accel-type", default="H100", show_default=True,
              type=click.Choice(["GAUDI2", "GAUDI3", "A100", "A10", "H100", "MI300X"]),
              help="Accelerator type to train on.")
@click.option("--n-accel", default=1, show_default=True, type=int, help="Accelerators per node.")
@click.option("--n-node", default=1, show_default=True, type=int, help="Nodes.")
@click.option("--local", is_flag=True, help="Fine-tune here (TRL/peft) instead of on SeekrFlow.")
@click.option("--out", type=click.Path(file_okay=False),
              help="--local: the model directory to write [RUN/model].")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the job until it completes, fails or is cancelled.")
@click.option("--poll-interval", default=10.0, show_default=True, type=float,
              help="Seconds between looks at a running job.")
@_seekrflow_options
@_quiet
@_handle_errors
def finetune_command(run: str | None, file_id: tuple[str, ...], train: str | None, base_model: str,
                     epochs: int, learning_rate: float, batch_size: int, max_length: int, lora: bool,
                     lora_r: int, lora_alpha: float, lora_dropout: float, seed: int, device: str,
                     project_id: int | None, experiment_name: str | None, accel_type: str,
                     n_accel: int, n_node: int, local: bool, out: str | None, wait: bool,
                     poll_interval: float, base_url: str | None, api_key_env: str,
                     team_id: str | None, timeout: float, max_retries: int, quiet: bool) -> None:
    """Fine-tune a base model on the refined dataset: on SeekrFlow (after `refine upload`), or
    here with --local.

    Follows the job with its epochs and loss and prints the new model and what to run next.
    A failed or cancelled job, a base model the service does not know or a file it rejects
    end with one error (exit 2).
    """
    from .stages.handoff import finetune
    from .settings import FinetuneSettings

    settings = FinetuneSettings(base_model=base_model, epochs=epochs, learning_rate=learning_rate,
                                batch_size=batch_size, max_length=max_length, lora=lora,
                                lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                seed=seed, device=device)

    def started(job: dict[str, Any]) -> None:
        click.echo(f"started fine-tune {job['id']} of {base_model} (status {job.get('status')})")

    result = finetune(settings, run=run, file_id=file_id, train=train, local=local, out=out,
                      project_id=project_id, experiment_name=experiment_name, accel_type=accel_type,
                      n_accel=n_accel, n_node=n_node, base_url=base_url, api_key_env=api_key_env,
                      team_id=team_id, wait=wait, poll_interval=poll_interval, timeout=timeout,
                      max_retries=max_retries, progress=not quiet, on_start=started)
    _report_finetune(result, run)


def _report_finetune(result: Any, run: str | None) -> None:
    if result.local is not None:
        model = result.local
        loss = model.record.get("final_loss")
        kind = f"a LoRA adapter on {result.base_model}" if model.adapter else "a full model"
        click.echo(f"fine-tuned here: {model.path} ({kind}"
                   + (f", final loss {loss:.4g}" if isinstance(loss, (int, float)) else "") + ")")
        flags = (f"--model {result.base_model} --adapter {model.path}" if model.adapter
                 else f"--model {model.path}")
        click.echo(f"next: refine collect --backend gradient {flags} --train {result.training_files[0]} "
                   "--eval EVAL --out RUN2   (then `refine outcome`)")
        return
    if result.status != "completed":
        click.echo(f"fine-tune {result.job_id} is {result.status} at {result.base_url}; look again "
                   f"with the SDK: client.fine_tuning.retrieve({result.job_id!r})")
        return
    losses = [e["loss"] for e in result.events if isinstance(e.get("loss"), (int, float))]
    click.echo(f"fine-tune {result.job_id} completed: model {result.model} (base {result.base_model}, "
               f"project {result.project_id}" + (f", final loss {losses[-1]:.4g}" if losses else "") + ")"
               + (f"; recorded in {result.record}" if result.record else ""))
    if not result.inference_available:
        click.echo(f"next: deploy it (client.deployments.create(model_type='Fine-tuned Run', "
                   f"model_id={result.job_id!r}, ...)), then:")
    click.echo(f"next: ask it: client.chat.completions.create(model={result.model!r}, messages=[...]) "
               f"with SeekrFlow(base_url={result.base_url.rstrip('/')!r})")
    click.echo(f"      attribute its answers: refine collect --backend seekrflow --model-id {result.model} "
               f"--base-url {result.base_url.rstrip('/')} --train TRAIN --eval EVAL --out RUN2")


@main.command("serve")
@click.option("--train", "train", multiple=True, metavar="SOURCE",
              help="Training source(s) the server attributes to (as for collect). Repeatable. "
                   "Without it: no attribution route, only the files and fine-tuning API.")
@_setting(CollectSettings, "backend", type=_backend_choice())
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="A backend option.")
@_setting(CollectSettings, "top_k")
@click.option("--model-id", default="local", show_default=True,
              help="The model id the route answers for.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --api-key-env.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind; 0 picks a free one.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="Require the key in $VAR on every route, sent as `Authorization: KEY` "
                   "(the SeekrFlow SDK's form) or `Authorization: Bearer KEY`.")
@click.option("--store", default=None, type=click.Path(file_okay=False),
              help="Where uploaded files, projects, fine-tunes and their models are kept "
                   "[./refine-store, made on first use].")
@click.option("--base-model", "base_model", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A local model directory fine-tune requests may name (by its folder's name). "
                   "Repeatable.")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda", "mps"]), help="Where fine-tunes train.")
@_handle_errors
def serve_command(train: tuple[str, ...], backend: str, options: tuple[str, ...], top_k: int,
                  model_id: str, host: str, port: int, api_key_env: str | None, store: str | None,
                  base_model: tuple[str, ...], device: str) -> None:
    """Serve the SeekrFlow attribution API over a local backend, and SeekrFlow's files,
    fine-tuning and chat API over local fine-tunes of --base-model."""
    import os

    from .config import parse_key_values
    from .service.server import serve

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"environment variable {api_key_env} is not set", key="--api-key-env")

    def ready(url: str) -> None:
        bases = ", ".join(Path(b).name for b in base_model) or "none"
        if not train:
            click.echo(f"serving model fine-tunes of {bases} on {url} (files, fine-tunes and chat "
                       "under /v1; no attribution without --train; Ctrl-C to stop)")
            return
        click.echo(f"serving model {model_id!r} ({backend} backend) on {url} "
                   f"(route: {url}/v1/flow/explain/models/{model_id}/influential-finetuning-data; "
                   f"fine-tunes of {bases}; Ctrl-C to stop)")

    settings = CollectSettings(backend=backend, top_k=top_k,
                               backend_options=parse_key_values(options, "--option"))
    serve(list(train), settings, model_id=model_id, host=host, port=port, api_key=api_key,
          store=store, base_model=list(base_model), device=device, on_ready=ready)


if __name__ == "__main__":  # pragma: no cover
    main()
