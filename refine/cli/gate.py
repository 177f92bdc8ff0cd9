"""`refine check`: the gate before retraining."""

from __future__ import annotations

import sys

import click

from . import main
from ..errors import ConfigError
from ..settings import CheckSettings
from .options import given, settings_options


@main.command("check")
@click.argument("train", nargs=-1)
@click.option("--eval", "eval_path", help="Eval set: enables the leakage check.")
@click.option("--baseline", multiple=True, help="The original training source(s): enables the size guard.")
@click.option("--flags", "flags_run", type=click.Path(file_okay=False),
              help="A flagged run directory: enables the flagged-pairs-still-present check.")
@click.option("--outcome", "outcome_run", type=click.Path(file_okay=False),
              help="A retrained run where `refine outcome` ran: enables the newly-bad-answers gate "
                   "(outcome_regressions); TRAIN may then be left out.")
@settings_options(CheckSettings, into="flags", skip=("options",))
@click.option("--option", "options", multiple=True, metavar="CHECK.KEY=VALUE",
              help="A check option, e.g. near_duplicates.threshold=0.9. Repeatable.")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="A gate file (see recipes/pre-retrain-gate.yaml); options given here win.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
def check_command(train: tuple[str, ...], eval_path: str | None, baseline: tuple[str, ...],
                  flags_run: str | None, outcome_run: str | None, flags: CheckSettings,
                  options: tuple[str, ...], config: str | None, as_json: bool) -> None:
    """Check a training set before retraining on it (or, with --outcome, the retrained model's
    answers); exit 1 when an error-level check fails."""
    import dataclasses

    from ..checks import available_checks, check
    from ..config import parse_key_values
    from ..stages.recipe import load_check_config

    settings = load_check_config(config) if config else CheckSettings()
    overrides = given(CheckSettings, flags)
    overrides.pop("options", None)            # --option below: per check, merged over the gate file's
    if "severity" in overrides:
        overrides["severity"] = {**settings.severity, **overrides["severity"]}
    merged_options = {name: dict(values) for name, values in settings.options.items()}
    for name, values in parse_key_values(options, "--option").items():
        if not isinstance(values, dict):
            raise ConfigError(f"needs CHECK.KEY=VALUE; known checks: {', '.join(available_checks())}",
                              key="--option")
        merged_options.setdefault(name, {}).update(values)
    settings = dataclasses.replace(settings, **overrides, options=merged_options)
    report = check(list(train), settings, eval_path=eval_path, baseline=list(baseline),
                   flags_run=flags_run, outcome_run=outcome_run)
    click.echo(report.to_json() if as_json else report.to_table())
    if not report.passed:
        sys.exit(1)
