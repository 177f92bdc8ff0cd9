"""`refine collect` and `refine backends`: attribution, and the plug-ins that do it."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path
from typing import Any

import click

from . import main
from ..errors import ConfigError, IncompleteRunError
from ..plugins import BACKENDS, EXECUTORS
from ..settings import CollectSettings
from .options import plugin_option, quiet, settings_options, shown


def backend_choice() -> click.Choice:
    """The backends by name (listing them imports none)."""
    return click.Choice(sorted(BACKENDS.names()))


def _resources_flag(resources: dict[str, float]) -> str:
    return ",".join(f"{name}={amount:g}" for name, amount in resources.items())


@main.command("collect")
@click.option("--train", "train", multiple=True, required=True, metavar="SOURCE",
              help="Training data: a JSONL, JSON, CSV, TSV or Parquet file, or a saved Hugging Face "
                   "dataset directory (DIR, or DIR:split for a DatasetDict). Repeat for several.")
@click.option("--eval", "eval_path", required=True, metavar="SOURCE",
              help="Eval set (any training source): question, answer, and verdict or reference.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Run directory to write (resumed when it holds the same run).")
@settings_options(CollectSettings, skip=("backend_options", "executor"),
                  flags={"train_format": "--format"}, types={"backend": backend_choice()})
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A backend option (`refine backends --options NAME` lists a backend's), read as "
                   "YAML. Repeatable.")
@plugin_option("--model", registry=BACKENDS, key="model")
@plugin_option("--adapter", registry=BACKENDS, key="adapter")
@plugin_option("--model-id", registry=BACKENDS, key="model_id")
@plugin_option("--base-url", registry=BACKENDS, key="base_url")
@plugin_option("--concurrency", registry=BACKENDS, key="concurrency", type=int)
@plugin_option("--rate", registry=BACKENDS, key="rate", type=float)
@plugin_option("--timeout", registry=BACKENDS, key="timeout", type=float)
@plugin_option("--max-retries", registry=BACKENDS, key="max_retries", type=int)
@click.option("--executor", "executor_kind", default=None, metavar="NAME",
              help="Where the heavy work runs: inprocess (default) or ray (pip install 'refine[ray]').")
@click.option("--executor-option", "executor_options", multiple=True, metavar="KEY=VALUE",
              help="An executor option (`refine backends --options ray` lists them), read as YAML. "
                   "Repeatable.")
@plugin_option("--ray-address", registry=EXECUTORS, key="address", metavar="ADDR")
@plugin_option("--workers", registry=EXECUTORS, key="workers", type=int)
@plugin_option("--worker-resources", registry=EXECUTORS, key="resources", metavar="NAME=N,...",
               shown_as=_resources_flag)
@click.option("--overwrite", is_flag=True, help="Start OUT afresh even if it holds another run.")
@quiet
def collect_command(train: tuple[str, ...], eval_path: str, out: str, settings: CollectSettings,
                    options: tuple[str, ...], model: str | None, adapter: str | None,
                    model_id: str | None, base_url: str | None, concurrency: int | None,
                    rate: float | None, timeout: float | None, max_retries: int | None,
                    executor_kind: str | None, executor_options: tuple[str, ...],
                    ray_address: str | None, workers: int | None, worker_resources: str | None,
                    overwrite: bool, quiet: bool) -> None:
    """Attribute every eval item to training pairs; write the run directory OUT.

    Backends are plug-ins: `refine backends` lists the installed ones. The seekrflow
    backend reads its API key from $SEEKR_API_KEY (and $SEEKR_TEAM_ID, $SEEKR_BASE_URL as the
    official SDK does). Exit code 3 when items are left failed: run the same command again to
    retry just those.
    """
    from ..config import parse_key_values
    from ..stages.collection import collect

    backend_options = parse_key_values(options, "--option")
    named = {"model": model, "adapter": adapter, "model_id": model_id, "base_url": base_url,
             "concurrency": concurrency, "rate": rate, "timeout": timeout,
             "max_retries": max_retries}
    backend_options.update({k: v for k, v in named.items() if v is not None})
    executor = _executor_config(executor_kind, parse_key_values(executor_options, "--executor-option"),
                                ray_address, workers, worker_resources)
    settings = dataclasses.replace(settings, backend_options=backend_options, executor=executor)
    result = collect(list(train), eval_path, out, settings, overwrite=overwrite, progress=not quiet)
    report_collect(result)
    if result.failed:
        sys.exit(IncompleteRunError.exit_code)


def _executor_config(kind: str | None, options: dict[str, Any], address: str | None,
                     workers: int | None, resources: str | None) -> dict[str, Any] | None:
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
    if (kind or "inprocess") == "inprocess" and given:
        flags = {"address": "--ray-address", "workers": "--workers", "resources": "--worker-resources"}
        raise ConfigError(f"{', '.join(flags[k] for k in given)} only apply to --executor ray",
                          key="--executor")
    given = {**options, **given}
    if kind is None and not given:
        return None
    return {"kind": kind or "inprocess", **given}


def report_collect(result: Any) -> None:
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
        shown_failed = ", ".join(result.failed[:10]) + (" …" if len(result.failed) > 10 else "")
        click.echo(f"{len(result.failed)} items failed (run again to retry them): {shown_failed}", err=True)


@main.command("backends")
@click.option("--options", "options_of", metavar="NAME",
              help="Print the options of the backend (or executor) NAME: each one's default and help.")
@click.option("--verbose", "-v", is_flag=True, help="Print every backend's and executor's options.")
def backends_command(options_of: str | None, verbose: bool) -> None:
    """List the attribution backends (built-in and plug-ins), and with --options or -v what
    each one can be told."""
    from ..attribution.base import available_backends
    from ..executors import available_executors

    backends = available_backends()
    if options_of is None and not verbose:
        for name in backends:
            click.echo(name)
        return
    if options_of is not None:
        registry = EXECUTORS if options_of in available_executors() else BACKENDS
        click.echo(_options_listing(registry, options_of))
        return
    listings = [_options_listing(BACKENDS, name) for name in backends]
    listings += [_options_listing(EXECUTORS, name) for name in available_executors()]
    click.echo("\n\n".join(listings))


def _options_listing(registry: Any, name: str) -> str:
    """One plug-in's options, each as ``name = default`` (as written in YAML) over its help."""
    from ..fields import describe

    where = ("--option KEY=VALUE, or collect.backend_options in a recipe" if registry.kind == "backend"
             else f"--executor {name} --executor-option KEY=VALUE, or collect.executor in a recipe")
    lines = [f"{name} ({registry.kind}; {where})"]
    described = describe(registry.get(name).Options)
    for option, value, text in described:
        lines.append(f"  {option} = {'(required)' if value is dataclasses.MISSING else shown(value)}")
        lines += textwrap.wrap(text, 88, initial_indent=" " * 6, subsequent_indent=" " * 6)
    if not described:
        lines.append("  (no options)")
    return "\n".join(lines)
