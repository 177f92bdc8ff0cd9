"""`refine emit` and `refine review`: the refined dataset, decided automatically or by a person."""

from __future__ import annotations

from typing import Any

import click

from . import IGNORED, main
from ..settings import EmitSettings
from .options import settings_options

_OUT_HELP = ("The refined file itself when the run has one training file and OUT ends in its "
             "extension (refined.jsonl for a .jsonl source; manifest: refined.manifest.json beside "
             "it). Otherwise a directory, made if missing, holding each source's refined copy under "
             "the source's own name and manifest.json.")
_OVERWRITE_HELP = ("Replace outputs (and the manifest) that already exist; without it nothing that "
                   "exists is replaced. Inputs are never replaced.")


@main.command("emit")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(), help=_OUT_HELP)
@settings_options(EmitSettings)
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
def emit_command(run_dir: str, out: str, settings: EmitSettings, overwrite: bool) -> None:
    """Write the refined dataset and its manifest.

    \b
    refine emit RUN --out refined.jsonl   refined.jsonl + refined.manifest.json
    refine emit RUN --out refined         refined/<source name> + refined/manifest.json

    Refuses, before writing anything, to replace a path that exists unless --overwrite.
    """
    from ..stages.emission import emit

    report_emit(emit(run_dir, out, settings, overwrite=overwrite))


def report_emit(result: Any) -> None:
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
@settings_options(EmitSettings, skip=IGNORED["review export"])
def review_export_command(run_dir: str, out: str, settings: EmitSettings) -> None:
    """Write one row per flagged pair, with the action --mode would take, for a spreadsheet."""
    from ..stages.review import review_export

    result = review_export(run_dir, out, settings)
    click.echo(f"{result.rows} flagged pairs to review -> {result.path} "
               "(fill in `action`: keep/drop/edit/quarantine, and `new_answer` for an edit)")


@review_group.command("apply")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("review_csv", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(), help=_OUT_HELP + " As for emit.")
@settings_options(EmitSettings)
@click.option("--overwrite", is_flag=True, help=_OVERWRITE_HELP)
def review_apply_command(run_dir: str, review_csv: str, out: str, settings: EmitSettings,
                         overwrite: bool) -> None:
    """Validate a filled-in review CSV and emit with the reviewed decisions."""
    from ..stages.review import review_apply

    report_emit(review_apply(run_dir, review_csv, out, settings, overwrite=overwrite))
