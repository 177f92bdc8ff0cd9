"""How the report is drawn: its two plots (inline SVG), the bad answers' table as JSON for the
page's script, and report.md."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ...core.plots import pyplot, svg
from ...settings import ReportSettings
from ..outcomes import markdown_lines

MD_BAD_ROWS = 200      # bad answers report.md lists
BAD_PAGE = 25          # bad answers the page draws at a time


def plots(levels: pd.DataFrame, cited: pd.DataFrame, settings: ReportSettings) -> tuple[str, str, int]:
    """Citations per influence level, bad against good, as bars; and each cited pair's blame
    against its good citations as a scatter of at most ``max_points`` pairs, every flagged one
    among them. Returns (bars SVG, scatter SVG, points drawn)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    order = ["high", "medium", "low"]
    width = 0.38
    x = np.arange(len(order))
    for offset, verdict, colour in ((-width / 2, "bad", "#d92d20"), (width / 2, "good", "#12b76a")):
        counts = [int(levels.get((verdict, level), 0)) for level in order]
        ax.bar(x + offset, counts, width, label=f"{verdict} answers", color=colour)
    ax.set_xticks(x, order)
    ax.set_ylabel("citations")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    levels_svg = svg(fig)

    points = cited
    if len(points) > settings.max_points:
        flagged = points[points["flagged"]]
        rest = points[~points["flagged"]]
        keep = max(settings.max_points - len(flagged), 0)
        points = pd.concat([flagged, rest.sample(n=min(keep, len(rest)), random_state=settings.seed)])
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    normal = points[~points["flagged"]]
    flagged = points[points["flagged"]]
    ax.scatter(normal["good_weight"], normal["blame"], s=10, alpha=0.5, color="#667085", label="cited")
    ax.scatter(flagged["good_weight"], flagged["blame"], s=22, color="#d92d20", label="flagged")
    ax.set_xlabel("good citations (level-weighted)")
    ax.set_ylabel("blame (level-weighted bad citations)")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return levels_svg, svg(fig), len(points)


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside a <script> element (no "</script>", no "<!--")."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:160]


def _md_modes(modes: list[dict[str, Any]]) -> str:
    return ", ".join(str(m["cluster"]) for m in modes)


def _md_cites(files: list[str], levels: list[str], cites: list[int]) -> str:
    """A bad answer's cited pairs for a Markdown cell: the flagged ones by name, the rest counted."""
    named = [f"{files[cites[i]]}:{cites[i + 1]} ({levels[cites[i + 2] % 4]}, flagged)"
             for i in range(0, len(cites), 3) if cites[i + 2] >= 4]
    others = len(cites) // 3 - len(named)
    return "; ".join(named + ([f"{others} other{'s' if others != 1 else ''}"] if others else [])) or "none"


def markdown(c: dict) -> str:
    """report.md from the page's context `c`: the summary, the outcome, the failure modes, the
    flagged pairs, the bad answers and what to run next."""
    lines = [f"# refine report — {c['title']}", "",
             f"- eval items: **{c['n_items']}**, bad answers: **{c['n_bad']}** ({c['bad_rate'] * 100:.1f}%)",
             f"- training pairs cited: {c['n_cited']}; flagged: **{c['n_flagged']}**",
             f"- training records affected: {c['affected_lines']} of {c['n_records']} "
             f"({c['affected_share'] * 100:.2f}%)", f"- backend: {c['backend']}", "",
             "| file | records | flagged records |", "|---|---:|---:|"]
    lines += [f"| {_md_cell(f['file'])} | {f['records']} | {f['flagged']} |" for f in c["files"]]
    if c["outcome"]:
        lines += markdown_lines(c["outcome"], _md_cell)
    if c["modes"]:
        lines += ["", f"## Failure modes ({c['n_modes']})", "",
                  f"{c['n_unclustered']} bad answers are unclustered (one-off slips).", ""]
        for m in c["modes"]:
            example = (f"e.g. “{_md_cell(m['representative_question'])}”; "
                       if m["representative_question"] != m["label"] else "")
            lines.append(f"- **{m['cluster']}: {_md_cell(m['label'])}** — {m['size']} bad answers; {example}"
                         "driven by " + ", ".join(p["where"] for p in m["pairs"][:3]))
    lines += ["", f"## Flagged pairs ({c['n_flagged']})", "",
              "| pair | question | bad | good | blame | q | failure modes | claim repeated against the references |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    lines += [f"| {p['where']} | {_md_cell(p['question'])} | {p['n_bad']} | {p['n_good']} | "
              f"{p['blame']:g} | {p['q_value']:.2g} | {_md_modes(p['modes'])} | {_md_cell(p['claim_text'])} |"
              for p in c["flagged"][:50]]
    if c["n_flagged"] > 50:
        lines.append(f"| … | {c['n_flagged'] - 50} more in report.html / flags.csv | | | | | | |")
    bad = c["bad_answers"]
    rows = bad["rows"][:MD_BAD_ROWS]
    lines += ["", f"## Bad answers ({bad['total']})", "",
              "All of them, searchable, with the pairs each cites: report.html, section “Bad answers”"
              + (f" (the first {len(bad['rows'])})" if len(bad["rows"]) < bad["total"] else "") + ".", "",
              "| eval id | failure mode | question | answer | reference | why bad | cited pairs |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {_md_cell(r[0])} | {'' if r[5] is None else 'unclustered' if r[5] < 0 else r[5]} | "
              f"{_md_cell(r[1])} | {_md_cell(r[2])} | {_md_cell(r[3])} | {_md_cell(bad['reasons'][r[4]])} | "
              f"{_md_cell(_md_cites(bad['files'], bad['levels'], r[6]))} |" for r in rows]
    if bad["total"] > len(rows):
        lines.append(f"| … | | {bad['total'] - len(rows)} more in report.html | | | | |")
    lines += ["", "## What next", ""]
    emitted = c["next"]["emitted"]
    if emitted:
        lines.append(f"Emitted ({emitted['mode']}) from these flags; manifest: `{emitted['manifest']}`")
        lines += [f"- `{o['path']}` ({o['records']} records)" for o in emitted["outputs"]]
        lines += [f"- `{o['path']}` ({o['records']} records set aside for review)" for o in emitted["quarantine"]]
        lines.append("")
    for plan in c["next"]["plans"]:
        lines.append(f"{'Or: ' if plan['alternative'] else ''}**{plan['title']}**")
        for step in plan["steps"]:
            lines.append(f"- {step['what']}" + (f":  \n  `{step['command']}`" if step["command"] else "."))
        lines.append("")
    lines.append(c["after_retraining"])
    return "\n".join(lines) + "\n"
