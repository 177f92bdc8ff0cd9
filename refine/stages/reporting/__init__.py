"""`report`: one self-contained HTML page (RUN/report.html) and a Markdown summary (RUN/report.md).

It answers a newcomer's two questions. *Why is this bad?* Every bad answer stands beside its
reference answer and the grader's reason (or "verdict given"), with its failure mode and the
training pairs it cites (and at which influence level): a few per flagged pair and per mode
inline, and all of them in a searchable table; the terms (influence levels, blame, q-value,
testable, failure mode) are explained where they appear. *What do I run next?* Plans to pick
from, each a list of commands to run in order: when `refine emit` ran on the current flags, the
gate on exactly the files its manifest lists, then retraining; the emits not yet run and the
review round trip (export, edit the sheet, apply), with ``--overwrite`` where they would
replace an output.

The page needs no network to be viewed: CSS, the scripts and the plots (matplotlib, inlined as
SVG) are all inside it. Everything shown is escaped (training and eval data are untrusted
text; the bad-answer table's rows are JSON that the page's script puts in as text). Large runs
are sampled, not dumped: at most ``max_flagged`` flagged pairs, ``max_cited`` cited pairs
(behind a toggle), ``max_unclustered`` unclustered answers, ``examples`` example answers a
side, and ``max_points`` scatter points (every flagged pair included). The bad-answer table
holds up to ``BAD_ROWS`` answers (``TEXT_CHARS`` characters a text) as compact JSON, drawn
``BAD_PAGE`` rows at a time (what that costs a large run's page: docs/benchmarks.md).

The stage is here; what it reads from the run is :mod:`.data`, how it draws the page and
report.md :mod:`.render`, and what it suggests running next :mod:`.next_steps`.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..._version import __version__
from ...core._atomic import atomic_open
from ...core.lineage import REPORT_HTML, REPORT_MD
from ...core.rundir import RunDir
from ...settings import GradeSettings, ReportSettings
from ..outcomes import report_section
from . import data, render
from .next_steps import what_next

__all__ = ["ReportResult", "ReportSettings", "report"]


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    bytes: int


def report(run_dir: str | Path, settings: ReportSettings | None = None) -> ReportResult:
    """Write RUN/report.html and RUN/report.md from a flagged (and ideally clustered) run."""
    import jinja2

    settings = settings or ReportSettings()
    run = RunDir(run_dir)
    collected = run.collect_settings()
    summary = run.flag_summary()
    grade = GradeSettings(**collected.get("grade", {}))
    items = run.items(["eval_id", "question", "answer", "reference", "verdict", "verdict_source",
                       "grade_f1", "grade_key_recall", "grade_semantic", "grade_numbers_ok"], done=True)
    flags = run.flags(with_modes=True)
    why = data.why_bad(items, grade)
    by_id = items.set_index("eval_id")

    flagged_ids = set(flags.loc[flags["flagged"], "pair_id"])
    flagged = flags[flags["flagged"]].head(settings.max_flagged)
    levels, files, n_records, affected_lines, citations = data.tallies(run, flagged_ids, set(flagged["pair_id"]))

    levels_svg, scatter_svg, n_points = render.plots(levels, flags, settings)
    examples = data.examples(citations, items, set(flagged["pair_id"]), settings.examples)
    flagged_rows = []
    for row in flagged.to_dict("records"):
        flagged_rows.append({**row, "where": data.where(row["file"], row["line"]),
                             "claim_text": data.text_of(row.get("claim")),
                             "modes": data.pair_modes(data.text_of(row.get("failure_modes")),
                                                      data.text_of(row.get("theme"))),
                             "multi_mode": bool(row.get("multi_mode")),
                             "bad_examples": [data.answer_of(by_id, why, e, level) for e, level in
                                              examples.get((row["pair_id"], "bad"), [])],
                             "good_examples": [data.answer_of(by_id, why, e, level) for e, level in
                                               examples.get((row["pair_id"], "good"), [])]})
    cited_rows = [{**row, "where": data.where(row["file"], row["line"])}
                  for row in flags.sort_values(["blame", "pair_id"], ascending=[False, True],
                                               kind="mergesort").head(settings.max_cited).to_dict("records")]

    modes, unclustered = data.failure_modes(run, by_id, why, flags, settings)
    has_modes = run.is_current("cluster")
    per_item = run.clusters() if has_modes else pd.DataFrame({"eval_id": [], "cluster": []})
    mode_of = {str(e): int(c) for e, c in zip(per_item["eval_id"], per_item["cluster"])}
    bad_answers = data.bad_answers(run, by_id, why, flagged_ids, mode_of,
                                   {int(m["cluster"]): str(m["label"]) for m in modes})
    context = {
        "title": run.path.name, "run_dir": str(run.path), "version": __version__,
        "backend": collected.get("collect", {}).get("backend", "?"),
        "n_items": summary["items"], "n_bad": summary["bad_items"], "bad_rate": summary["bad_rate"],
        "n_cited": len(flags), "n_testable": summary.get("testable_pairs", 0),
        "n_flagged": len(flagged_ids), "n_records": n_records,
        "affected_lines": affected_lines,
        "affected_share": affected_lines / max(n_records, 1),
        "files": files, "levels_svg": levels_svg, "scatter_svg": scatter_svg,
        "scatter_points": n_points, "scatter_sampled": n_points < len(flags),
        "modes": modes, "n_modes": len(modes), "has_modes": has_modes,
        "unclustered": unclustered[:settings.max_unclustered], "n_unclustered": len(unclustered),
        "flagged": flagged_rows, "flagged_truncated": len(flagged_ids) > len(flagged_rows),
        "cited": cited_rows, "min_bad": summary["settings"]["min_bad"], "alpha": summary["settings"]["alpha"],
        "rule": summary.get("rule", ""),
        "weights": summary["settings"]["level_weights"],
        "bad_answers": bad_answers, "bad_json": render.script_json(bad_answers), "bad_page": render.BAD_PAGE,
        "next": what_next(run, collected, has_modes),
        "after_retraining": (f"After retraining, answer this eval set with the new model and collect it into a "
                             f"new run: its bad-answer rate, here {summary['bad_rate'] * 100:.1f}% "
                             f"({summary['bad_items']} of {summary['items']}), says whether the answers got "
                             f"better, and refine outcome {shlex.quote(str(run.path))} NEW_RUN which were "
                             "fixed and which broke (with --control runs: beyond retraining noise or not)."),
        "outcome": report_section(run),
        "settings_rows": data.settings_rows(collected, summary["settings"],
                                            run.record("cluster") if has_modes else None, settings),
    }
    env = jinja2.Environment(loader=jinja2.PackageLoader("refine", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html.j2").render(**context)
    with run.stage("report", dataclasses.asdict(settings)) as stage:
        with atomic_open(stage.path(REPORT_HTML), "w", encoding="utf-8") as fh:
            fh.write(html)
        with atomic_open(stage.path(REPORT_MD), "w", encoding="utf-8") as fh:
            fh.write(render.markdown(context))
    return ReportResult(run.file(REPORT_HTML), run.file(REPORT_MD), len(html.encode("utf-8")))
