"""The `refine` command: a thin layer over the Python API with the same verbs.

Each command parses options, builds the settings object, calls one public function and turns
a RefineError into a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ._version import __version__
from .errors import ConfigError, IncompleteRunError, RefineError


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RefineError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
    return wrapper


def _set_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="refine")
def main() -> None:
    """Find the fine-tuning pairs that repeatedly drive bad answers, and emit a refined dataset.

    Typical flow: collect → flag → emit, or all three from a recipe with `refine run`.
    """


LAYOUT_NAMES = ["messages", "sharegpt", "alpaca", "prompt_completion", "question_answer"]


@main.command("collect")
@click.option("--train", "train", multiple=True, required=True, metavar="SOURCE",
              help="Training data: a JSONL, JSON, CSV, TSV or Parquet file, or a saved Hugging Face "
                   "dataset directory (DIR, or DIR:split for a DatasetDict). Repeat for several.")
@click.option("--eval", "eval_path", required=True, metavar="SOURCE",
              help="Eval set (any training source): question, answer, and verdict or reference.")
@click.option("--format", "train_format", type=click.Choice(LAYOUT_NAMES), default=None,
              help="Record layout of the training sources (default: detected per record or file).")
@click.option("--eval-format", "eval_format", type=click.Choice(LAYOUT_NAMES), default=None,
              help="Record layout of the eval set (default: detected).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Run directory to write (resumed when it holds the same run).")
@click.option("--backend", default="embedding", show_default=True, help="Attribution backend.")
@click.option("--top-k", default=10, show_default=True, type=int,
              help="At most this many influential pairs per eval item.")
@click.option("--model", default=None,
              help="embedding: a local sentence-transformers model directory (default: the "
                   "packaged all-MiniLM-L6-v2); gradient: the local causal LM directory.")
@click.option("--adapter", default=None,
              help="gradient: a local PEFT LoRA adapter directory on top of --model.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A backend option (see the README), read as YAML. Repeatable.")
@click.option("--batch-size", default=32, show_default=True, type=int,
              help="Eval items attributed (and saved) per step.")
@click.option("--model-id", default=None, help="seekrflow: the fine-tuned model's id.")
@click.option("--base-url", default=None,
              help="seekrflow: the API's base URL (a `refine serve` address works too).")
@click.option("--concurrency", default=None, type=int, help="seekrflow: requests in flight [8].")
@click.option("--rate", default=None, type=float, help="seekrflow: at most this many requests/s.")
@click.option("--timeout", default=None, type=float, help="seekrflow: seconds per request [60].")
@click.option("--max-retries", default=None, type=int,
              help="seekrflow: retries per request on 408/409/429/5xx and connection errors [5].")
@click.option("--skip-invalid", is_flag=True, help="Skip and count invalid input lines instead "
                                                   "of stopping at the first.")
@click.option("--overwrite", is_flag=True, help="Start RUN afresh even if it holds another run.")
@_set_options
@_handle_errors
def collect_command(train: tuple[str, ...], eval_path: str, train_format: str | None,
                    eval_format: str | None, out: str, backend: str, top_k: int,
                    model: str | None, adapter: str | None, options: tuple[str, ...],
                    batch_size: int, model_id: str | None, base_url: str | None, concurrency: int | None,
                    rate: float | None, timeout: float | None, max_retries: int | None,
                    skip_invalid: bool, overwrite: bool, quiet: bool) -> None:
    """Attribute every eval item to training pairs; write the run directory OUT.

    The seekrflow backend reads its API key from $SEEKR_API_KEY (and $SEEKR_TEAM_ID,
    $SEEKR_BASE_URL as the official SDK does). Exit code 3 when items are left failed: run the
    same command again to retry just those.
    """
    from .collection import CollectSettings, collect
    from .recipe import parse_key_values

    backend_options = parse_key_values(options, "--option")
    named = {"model": model, "adapter": adapter, "model_id": model_id, "base_url": base_url,
             "concurrency": concurrency, "rate": rate, "timeout": timeout,
             "max_retries": max_retries}
    backend_options.update({k: v for k, v in named.items() if v is not None})
    settings = CollectSettings(backend=backend, top_k=top_k, backend_options=backend_options,
                               batch_size=batch_size, skip_invalid=skip_invalid,
                               train_format=train_format, eval_format=eval_format)
    result = collect(list(train), eval_path, out, settings, overwrite=overwrite, progress=not quiet)
    _report_collect(result)
    if result.failed:
        sys.exit(IncompleteRunError.exit_code)


def _report_collect(result: Any) -> None:
    click.echo(f"collected {result.done}/{result.items} eval items over {result.training_pairs} "
               f"training pairs into {result.run_dir}"
               + (f" ({result.resumed} already done)" if result.resumed else ""))
    if result.skipped_lines:
        click.echo(f"skipped {result.skipped_lines} invalid input lines", err=True)
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
@click.option("--min-bad", default=2, show_default=True, type=int,
              help="Flag only pairs cited by at least this many distinct bad answers.")
@click.option("--alpha", default=0.1, show_default=True, type=float,
              help="False-discovery rate for the over-citation test.")
@click.option("--show", default=20, show_default=True, type=int, help="Flagged pairs to list.")
@_handle_errors
def flag_command(run_dir: str, min_bad: int, alpha: float, show: int) -> None:
    """Flag the training pairs that repeatedly drive bad answers; write RUN/flags.csv."""
    from .flagging import FlagSettings, flag

    result = flag(run_dir, FlagSettings(min_bad=min_bad, alpha=alpha))
    _report_flags(result, show)


def _report_flags(result: Any, show: int) -> None:
    click.echo(f"{result.flagged} of {len(result.table)} cited pairs flagged "
               f"({result.bad_items} bad of {result.items} answers) -> {Path(result.run_dir) / 'flags.csv'}")
    for row in result.flagged_pairs.head(show).itertuples():
        question = row.question if len(row.question) <= 70 else row.question[:69] + "…"
        click.echo(f"  {row.file}:{row.line}  bad={row.n_bad} good={row.n_good} "
                   f"q={row.q_value:.2g}  {question}")


def _mode_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--mode", type=click.Choice(["prune", "edit", "quarantine"]), default="prune",
                     show_default=True,
                     help="prune: drop flagged pairs; quarantine: move them to a separate file; "
                          "edit: replace their answer with the agreeing eval reference, else "
                          "quarantine them for review.")(f)
    return f


@main.command("emit")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(),
              help="Output file (or dataset directory) in the input's format; a directory of them "
                   "when the run has several training sources.")
@_mode_options
@click.option("--counterexamples", is_flag=True,
              help="Append corrected pairs (eval question + reference) for failure modes that "
                   "lost every pair driving them (needs `refine cluster`).")
@_handle_errors
def emit_command(run_dir: str, out: str, mode: str, counterexamples: bool) -> None:
    """Write the refined dataset and OUT.manifest.json."""
    from .emission import emit

    _report_emit(emit(run_dir, out, mode=mode, counterexamples=counterexamples))


def _report_emit(result: Any) -> None:
    outputs = ", ".join(str(p) for p in result.outputs)
    extra = "".join(f", {label} {n}" for label, n in (("edited", result.edited),
                                                      ("quarantined", result.quarantined),
                                                      ("added", result.added)) if n)
    click.echo(f"kept {result.records_out} of {result.records_in} records "
               f"(removed {result.removed}{extra}) -> {outputs}; manifest: {result.manifest}")
    if result.quarantine is not None:
        click.echo(f"quarantined pairs for review: {result.quarantine}")


@main.group("review")
def review_group() -> None:
    """Hand flagged pairs to a person and bring their decisions back."""


@review_group.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="CSV to write.")
@_mode_options
@_handle_errors
def review_export_command(run_dir: str, out: str, mode: str) -> None:
    """Write one row per flagged pair, with a suggested action, for a spreadsheet."""
    from .review import export_review

    result = export_review(run_dir, out, mode=mode)
    click.echo(f"{result.rows} flagged pairs to review -> {result.path} "
               "(fill in `action`: keep/drop/edit/quarantine, and `new_answer` for an edit)")


@review_group.command("apply")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("review_csv", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(),
              help="Output JSONL (a directory when the run has several training files).")
@_mode_options
@_handle_errors
def review_apply_command(run_dir: str, review_csv: str, out: str, mode: str) -> None:
    """Validate a filled-in review CSV and emit with the reviewed decisions."""
    from .review import apply_review

    _report_emit(apply_review(run_dir, review_csv, out, mode=mode))


@main.command("cluster")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--distance-threshold", default=0.6, show_default=True, type=float,
              help="Cosine distance at which failure modes stop merging.")
@click.option("--min-size", default=3, show_default=True, type=int,
              help="Smaller groups of bad answers stay unclustered.")
@_handle_errors
def cluster_command(run_dir: str, distance_threshold: float, min_size: int) -> None:
    """Group the bad answers into failure modes and find the pairs driving each."""
    from .clustering import ClusterSettings, cluster

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
@_handle_errors
def report_command(run_dir: str) -> None:
    """Write RUN/report.html (self-contained) and RUN/report.md."""
    from .reporting import report

    result = report(run_dir)
    click.echo(f"report: {result.html} ({result.bytes / 1e6:.2f} MB), {result.markdown}")


@main.command("compare")
@click.argument("run_a", type=click.Path(file_okay=False))
@click.argument("run_b", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@_handle_errors
def compare_command(run_a: str, run_b: str, as_json: bool) -> None:
    """How far two runs over the same eval set agree (top-k overlap, blame rank correlation,
    flagged-set overlap)."""
    import json

    from .comparison import compare

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
@click.argument("train", nargs=-1, required=True)
@click.option("--eval", "eval_path", help="Eval set: enables the leakage check.")
@click.option("--baseline", multiple=True, help="The original training source(s): enables the size guard.")
@click.option("--flags", "flags_run", type=click.Path(file_okay=False),
              help="A flagged run directory: enables the flagged-pairs-still-present check.")
@click.option("--select", multiple=True, metavar="CHECK", help="Run only these checks. Repeatable.")
@click.option("--option", "options", multiple=True, metavar="CHECK.KEY=VALUE",
              help="A check option, e.g. near_duplicates.threshold=0.9. Repeatable.")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="A gate file (see recipes/pre-retrain-gate.yaml); flags given here win.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.option("--max-findings", default=None, type=int, help="Findings shown per failed check.")
@_handle_errors
def check_command(train: tuple[str, ...], eval_path: str | None, baseline: tuple[str, ...],
                  flags_run: str | None, select: tuple[str, ...], options: tuple[str, ...],
                  config: str | None, as_json: bool, max_findings: int | None) -> None:
    """Check a training set before retraining on it; exit 1 when an error-level check fails."""
    from .checks import available_checks, run_checks
    from .recipe import load_check_config, parse_key_values

    settings = load_check_config(config) if config else {}
    merged_options = {name: dict(values) for name, values in (settings.get("options") or {}).items()}
    for name, values in parse_key_values(options, "--option").items():
        if not isinstance(values, dict):
            raise ConfigError(f"needs CHECK.KEY=VALUE; known checks: {', '.join(available_checks())}",
                              key="--option")
        merged_options.setdefault(name, {}).update(values)
    if max_findings is None:
        max_findings = int(settings.get("max_findings", 20))
    report = run_checks(list(train), eval_path=eval_path, baseline=list(baseline) or None,
                        flags_run=flags_run, select=list(select) or settings.get("select"),
                        options=merged_options, severity=settings.get("severity"),
                        max_findings=max_findings)
    click.echo(report.to_json() if as_json else report.to_table())
    if not report.passed:
        sys.exit(1)


@main.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set flag.min_bad=3. Repeatable.")
@_set_options
@_handle_errors
def run_command(recipe: str, overrides: tuple[str, ...], quiet: bool) -> None:
    """Run a recipe: collect → flag → emit."""
    from .recipe import load_recipe, run_recipe

    result = run_recipe(load_recipe(recipe, overrides), progress=not quiet)
    _report_collect(result.collect)
    _report_flags(result.flag, 20)
    if result.cluster is not None:
        _report_clusters(result.cluster)
    if result.report is not None:
        click.echo(f"report: {result.report.html}")
    _report_emit(result.emit)


@main.command("serve")
@click.option("--train", "train", multiple=True, required=True, metavar="SOURCE",
              help="Training source(s) the server attributes to (as for collect). Repeatable.")
@click.option("--backend", default="embedding", show_default=True, help="Local attribution backend.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="A backend option.")
@click.option("--top-k", default=10, show_default=True, type=int)
@click.option("--model-id", default="local", show_default=True,
              help="The model id the route answers for.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --api-key-env.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind; 0 picks a free one.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="Require the key in $VAR on the attribution route, sent as `Authorization: KEY` "
                   "(the SeekrFlow SDK's form) or `Authorization: Bearer KEY`.")
@_handle_errors
def serve_command(train: tuple[str, ...], backend: str, options: tuple[str, ...], top_k: int,
                  model_id: str, host: str, port: int, api_key_env: str | None) -> None:
    """Serve the SeekrFlow attribution API over a local backend."""
    import os

    from .server import serve
    from .recipe import parse_key_values

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"environment variable {api_key_env} is not set", key="--api-key-env")
    def ready(url: str) -> None:
        click.echo(f"serving model {model_id!r} ({backend} backend) on {url} "
                   f"(route: {url}/v1/flow/explain/models/{model_id}/influential-finetuning-data; "
                   "Ctrl-C to stop)")

    serve(list(train), backend=backend, backend_options=parse_key_values(options, "--option"),
          top_k=top_k, model_id=model_id, host=host, port=port, api_key=api_key, on_ready=ready)


if __name__ == "__main__":  # pragma: no cover
    main()
