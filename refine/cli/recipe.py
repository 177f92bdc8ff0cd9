"""`refine run`: every step of a recipe."""

from __future__ import annotations

import click

from . import main
from .analyse import report_clusters, report_flags
from .collect import report_collect
from .emit import report_emit
from .options import quiet


@main.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set flag.min_bad=3. Repeatable.")
@quiet
def run_command(recipe: str, overrides: tuple[str, ...], quiet: bool) -> None:
    """Run a recipe: collect → flag → cluster → emit → report (cluster and report can be
    turned off in the recipe), and with `retrain:` on: fine-tune, answer, collect, outcome.

    Exit code 3 when collect left eval items failed (nothing is flagged or emitted then).
    """
    from ..stages.recipe import run_recipe

    result = run_recipe(recipe, overrides=overrides, progress=not quiet)
    report_collect(result.collect)
    report_flags(result.flag, 20)
    if result.cluster is not None:
        report_clusters(result.cluster)
    report_emit(result.emit)
    if result.report is not None:
        click.echo(f"report: {result.report.html}")
    if result.retrain is not None:
        from ..stages.outcomes import summary_lines

        for retrained in (result.retrain.after, *result.retrain.controls):
            click.echo(f"retrained ({retrained.name}): model {retrained.model}; answers {retrained.answers}; "
                       f"collected -> {retrained.run_dir}")
        for line in summary_lines(result.retrain.outcome.figures, 10):
            click.echo(line)
        click.echo(f"-> {result.retrain.outcome.path}")
