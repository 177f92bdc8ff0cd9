"""`refine flag`, `cluster`, `report`, `outcome` and `compare`: what a run's attributions say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import main
from ..settings import ClusterSettings, FlagSettings, OutcomeSettings, ReportSettings
from .options import settings_options


@main.command("flag")
@click.argument("run_dir", type=click.Path(file_okay=False))
@settings_options(FlagSettings)
@click.option("--show", default=20, show_default=True, type=int, help="Flagged pairs to list.")
def flag_command(run_dir: str, settings: FlagSettings, show: int) -> None:
    """Flag the training pairs that repeatedly drive bad answers; write RUN/flags.csv."""
    from ..stages.flagging import flag

    report_flags(flag(run_dir, settings), show)


def report_flags(result: Any, show: int) -> None:
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



@main.command("cluster")
@click.argument("run_dir", type=click.Path(file_okay=False))
@settings_options(ClusterSettings)
def cluster_command(run_dir: str, settings: ClusterSettings) -> None:
    """Group the bad answers into failure modes and find the pairs driving each (after flag)."""
    from ..stages.clustering import cluster

    report_clusters(cluster(run_dir, settings))


def report_clusters(result: Any) -> None:
    unclustered = int((result.items["cluster"] < 0).sum())
    click.echo(f"{len(result.modes)} failure modes over {len(result.items)} bad answers"
               + (f" ({unclustered} unclustered)" if unclustered else "")
               + f" -> {Path(result.run_dir) / 'clusters.csv'}")
    for mode in result.modes.itertuples():
        click.echo(f"  mode {mode.cluster}: {mode.label} ({mode.size} answers)")


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@settings_options(ReportSettings)
def report_command(run_dir: str, settings: ReportSettings) -> None:
    """Write RUN/report.html (self-contained) and RUN/report.md."""
    from ..stages.reporting import report

    result = report(run_dir, settings)
    click.echo(f"report: {result.html} ({result.bytes / 1e6:.2f} MB), {result.markdown}")


@main.command("outcome")
@click.argument("before", type=click.Path(file_okay=False))
@click.argument("after", type=click.Path(file_okay=False))
@click.option("--control", "controls", multiple=True, type=click.Path(file_okay=False), metavar="RUN",
              help="A run of a model retrained without the refinement (unmodified set, or as many "
                   "random pairs removed), same seeds, same eval set: tests the changes against "
                   "retraining noise. Repeatable.")
@settings_options(OutcomeSettings)
@click.option("--show", default=10, show_default=True, type=int,
              help="Flagged pairs and newly bad answers to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def outcome_command(before: str, after: str, controls: tuple[str, ...], settings: OutcomeSettings,
                    show: int, as_json: bool) -> None:
    """Did it work? What the retrained model's run AFTER fixed and broke against BEFORE, the run
    whose flags led to the refined set (same eval set); writes AFTER/outcome.json."""
    import json

    from ..stages.outcomes import outcome, summary_lines

    result = outcome(before, after, list(controls), settings)
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
def compare_command(run_a: str, run_b: str, as_json: bool) -> None:
    """How far two runs over the same eval set agree (top-k overlap, blame rank correlation,
    flagged-set overlap)."""
    import json

    from ..stages.comparison import compare

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
