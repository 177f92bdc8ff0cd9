"""`report`: one self-contained HTML page (RUN/report.html) and a Markdown summary (RUN/report.md).

The page needs no network to be viewed: CSS, the table sorting/filtering script and the plots
(matplotlib, inlined as SVG) are all inside it. Everything shown is escaped (training data is
untrusted text). Large runs are sampled, not dumped: at most ``max_flagged`` flagged pairs,
``max_cited`` cited pairs, three example citations a side, and ``max_points`` scatter points
(every flagged pair included), so the page stays small whatever the run's size.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._atomic import atomic_open
from ._version import __version__
from .clustering import CLUSTER_PAIRS, CLUSTERS, CLUSTERS_CSV
from .flagging import read_flags
from .rundir import ATTRIBUTIONS, FLAGS_JSON, ITEMS, PAIRS, RunDir

__all__ = ["ReportResult", "ReportSettings", "report"]

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


@dataclass(frozen=True)
class ReportSettings:
    max_flagged: int = 500
    max_cited: int = 1000
    max_points: int = 3000
    examples: int = 3
    seed: int = 0


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    bytes: int


def _text(value: Any) -> str:
    """A CSV cell as text: empty cells come back from pandas as NaN."""
    return value if isinstance(value, str) else ""


def _where(file: str, line: Any) -> str:
    return f"{Path(str(file)).name}:{line}"


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _plots(levels: pd.DataFrame, cited: pd.DataFrame, settings: ReportSettings) -> tuple[str, str, int]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "refine"  # stable ids: same run, same bytes
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
    levels_svg = _svg(fig)

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
    return levels_svg, _svg(fig), len(points)


def _examples(citations: pd.DataFrame, items: pd.DataFrame, pair_ids: set[str], n: int) -> dict:
    """Up to n bad and n good citing answers per pair, strongest first."""
    rank = {"high": 0, "medium": 1, "low": 2}
    subset = citations[citations["pair_id"].isin(pair_ids)].merge(
        items[["eval_id", "question", "answer", "verdict"]], on="eval_id")
    subset = subset.assign(order=subset["influence_level"].map(rank)).sort_values(
        ["pair_id", "order", "eval_id"], kind="mergesort")
    out: dict[tuple[str, str], list[dict]] = {}
    for (pair, verdict), group in subset.groupby(["pair_id", "verdict"], sort=False):
        out[(pair, verdict)] = [{"question": q, "answer": a, "level": l} for q, a, l in
                                zip(group["question"][:n], group["answer"][:n], group["influence_level"][:n])]
    return out


def report(run_dir: str | Path, settings: ReportSettings | None = None) -> ReportResult:
    """Write RUN/report.html and RUN/report.md from a flagged (and ideally clustered) run."""
    import jinja2

    settings = settings or ReportSettings()
    run = RunDir(run_dir)
    run_settings = run.settings()
    run.require(ITEMS, ATTRIBUTIONS, PAIRS, FLAGS_JSON)
    items = pd.read_parquet(run.file(ITEMS), columns=["eval_id", "question", "answer", "verdict", "status"])
    items = items[items["status"] == "done"]
    citations = pd.read_parquet(run.file(ATTRIBUTIONS), columns=["eval_id", "pair_id", "influence_level"])
    citations = citations[citations["pair_id"].notna()]
    flags = read_flags(run.path)
    summary = json.loads(run.file(FLAGS_JSON).read_text(encoding="utf-8"))
    pairs = pd.read_parquet(run.file(PAIRS), columns=["pair_id", "file", "line", "file_id"])

    verdict_of = items.set_index("eval_id")["verdict"]
    levels = citations.assign(verdict=citations["eval_id"].map(verdict_of)).groupby(
        ["verdict", "influence_level"]).size()
    flagged_ids = set(flags.loc[flags["flagged"], "pair_id"])
    pairs_flagged = pairs[pairs["pair_id"].isin(flagged_ids)]
    files = []
    for (file, file_id), group in pairs.groupby(["file", "file_id"], sort=False):
        hit = int(group["pair_id"].isin(flagged_ids).sum())
        files.append({"file": file, "file_id": file_id, "records": len(group), "flagged": hit,
                      "share": hit / len(group)})

    levels_svg, scatter_svg, n_points = _plots(levels, flags, settings)
    flagged = flags[flags["flagged"]].head(settings.max_flagged)
    examples = _examples(citations, items, set(flagged["pair_id"]), settings.examples)
    flagged_rows = []
    for row in flagged.to_dict("records"):
        flagged_rows.append({**row, "where": _where(row["file"], row["line"]),
                             "failure_modes": _text(row.get("failure_modes")),
                             "theme": _text(row.get("theme")),
                             "multi_mode": bool(row.get("multi_mode")),
                             "bad_examples": examples.get((row["pair_id"], "bad"), []),
                             "good_examples": examples.get((row["pair_id"], "good"), [])})
    cited_rows = [{**row, "where": _where(row["file"], row["line"])}
                  for row in flags.sort_values(["blame", "pair_id"], ascending=[False, True],
                                               kind="mergesort").head(settings.max_cited).to_dict("records")]

    modes, n_unclustered = _modes(run, items, flags, settings)
    context = {
        "title": run.path.name, "run_dir": str(run.path), "version": __version__,
        "backend": run_settings.get("collect", {}).get("backend", "?"),
        "n_items": summary["items"], "n_bad": summary["bad_items"], "bad_rate": summary["bad_rate"],
        "n_cited": len(flags), "n_flagged": len(flagged_ids), "n_records": len(pairs),
        "affected_lines": len(pairs_flagged),
        "affected_share": len(pairs_flagged) / max(len(pairs), 1),
        "files": files, "levels_svg": levels_svg, "scatter_svg": scatter_svg,
        "scatter_points": n_points, "scatter_sampled": n_points < len(flags),
        "modes": modes, "n_modes": len(modes), "n_unclustered": n_unclustered,
        "flagged": flagged_rows, "flagged_truncated": len(flagged_ids) > len(flagged_rows),
        "cited": cited_rows,
        "settings_json": json.dumps({"flag": summary["settings"], "collect": run_settings.get("collect")},
                                    sort_keys=True),
    }
    env = jinja2.Environment(loader=jinja2.PackageLoader("refine", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html.j2").render(**context)
    with atomic_open(run.file(REPORT_HTML), "w", encoding="utf-8") as fh:
        fh.write(html)
    with atomic_open(run.file(REPORT_MD), "w", encoding="utf-8") as fh:
        fh.write(_markdown(context))
    return ReportResult(run.file(REPORT_HTML), run.file(REPORT_MD), len(html.encode("utf-8")))


def _modes(run: RunDir, items: pd.DataFrame, flags: pd.DataFrame,
           settings: ReportSettings) -> tuple[list[dict], int]:
    if not (run.file(CLUSTERS_CSV).is_file() and run.file(CLUSTER_PAIRS).is_file()):
        return [], 0
    table = pd.read_csv(run.file(CLUSTERS_CSV), keep_default_na=False)
    per_item = pd.read_parquet(run.file(CLUSTERS))
    per_pair = pd.read_parquet(run.file(CLUSTER_PAIRS))
    info = flags.set_index("pair_id")
    pairs = pd.read_parquet(run.file(PAIRS), columns=["pair_id", "file", "line", "question", "answer"]) \
        .drop_duplicates("pair_id").set_index("pair_id")
    answers = items.set_index("eval_id")
    modes = []
    for row in table[table["cluster"].astype(int) >= 0].to_dict("records"):
        c = int(row["cluster"])
        members = per_item.loc[per_item["cluster"] == c, "eval_id"].head(settings.examples + 1)
        driving = per_pair[per_pair["cluster"] == c].head(8)
        modes.append({**row, "cluster": c, "examples": [
            {"question": answers.at[e, "question"], "answer": answers.at[e, "answer"]} for e in members[1:]],
            "pairs": [{"where": _where(pairs.at[p, "file"], pairs.at[p, "line"]),
                       "question": pairs.at[p, "question"], "answer": pairs.at[p, "answer"],
                       "blame": float(b), "n_items": int(n),
                       "flagged": bool(info.at[p, "flagged"]) if p in info.index else False}
                      for p, b, n in zip(driving["pair_id"], driving["blame"], driving["n_items"])]})
    return modes, int((per_item["cluster"] < 0).sum())


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:160]


def _markdown(c: dict) -> str:
    lines = [f"# refine report — {c['title']}", "",
             f"- eval items: **{c['n_items']}**, bad answers: **{c['n_bad']}** ({c['bad_rate'] * 100:.1f}%)",
             f"- training pairs cited: {c['n_cited']}; flagged: **{c['n_flagged']}**",
             f"- training records affected: {c['affected_lines']} of {c['n_records']} "
             f"({c['affected_share'] * 100:.2f}%)", f"- backend: {c['backend']}", "",
             "| file | records | flagged lines |", "|---|---:|---:|"]
    lines += [f"| {_md_cell(f['file'])} | {f['records']} | {f['flagged']} |" for f in c["files"]]
    if c["modes"]:
        lines += ["", f"## Failure modes ({c['n_modes']})", ""]
        for m in c["modes"]:
            lines.append(f"- **{m['cluster']}: {_md_cell(m['label'])}** — {m['size']} bad answers; "
                         f"e.g. “{_md_cell(m['representative_question'])}”; driven by "
                         + ", ".join(p["where"] for p in m["pairs"][:3]))
    lines += ["", f"## Flagged pairs ({c['n_flagged']})", "",
              "| pair | question | bad | good | blame | q |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {p['where']} | {_md_cell(p['question'])} | {p['n_bad']} | {p['n_good']} | "
              f"{p['blame']:g} | {p['q_value']:.2g} |" for p in c["flagged"][:50]]
    if c["n_flagged"] > 50:
        lines.append(f"| … | {c['n_flagged'] - 50} more in report.html / flags.csv | | | | |")
    return "\n".join(lines) + "\n"
