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
holds up to BAD_ROWS answers (TEXT_CHARS characters a text) as compact JSON, drawn BAD_PAGE
rows at a time: with bench/cluster_report.py's short texts, 19,910 bad answers of 100,000
items add 7 MB to the page (2.6 MB without) and 0.5 s to its load in Chromium; a search takes
10-70 ms.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core._atomic import atomic_open
from .._version import __version__
from .grading import explain
from .outcomes import markdown_lines, report_section
from ..core.rundir import REPORT_HTML, REPORT_MD, RunDir
from ..settings import GradeSettings, ReportSettings

__all__ = ["ReportResult", "ReportSettings", "report"]



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


def _tallies(run: RunDir, flagged_ids: set[str], shown_ids: set[str]) -> tuple[
        pd.Series, list[dict[str, Any]], int, int, pd.DataFrame]:
    """What the report counts over every citation and every training row, counted by DuckDB
    over the Parquet files (10⁸ citations are never loaded): citations per (verdict, level) of
    the finished items; per source file (in the order files first appear) its records and
    flagged records; all records and flagged records; and the citations of the pairs shown."""
    from ..core._duckdb import connect, quoted
    from ..core.rundir import ATTRIBUTIONS, ITEMS, PAIRS

    run.current("collect")
    cited, items, pairs = (quoted(str(run.file(name))) for name in (ATTRIBUTIONS, ITEMS, PAIRS))
    with connect() as con:
        con.register("flagged_ids", pd.DataFrame({"pair_id": pd.Series(sorted(flagged_ids), dtype=object)}))
        con.register("shown_ids", pd.DataFrame({"pair_id": pd.Series(sorted(shown_ids), dtype=object)}))
        con.execute(f"CREATE TEMP TABLE done AS SELECT eval_id, verdict FROM read_parquet({items}) "
                    "WHERE status = 'done'")
        levels = con.sql(f"""
            SELECT d.verdict, a.influence_level, count(*) AS n
            FROM read_parquet({cited}) a JOIN done d USING (eval_id)
            WHERE a.pair_id IS NOT NULL AND d.verdict IS NOT NULL AND a.influence_level IS NOT NULL
            GROUP BY ALL""").df().set_index(["verdict", "influence_level"])["n"]
        rows = con.sql(f"""
            WITH marked AS (SELECT file, file_id, file_row_number AS row,
                                   pair_id IN (SELECT pair_id FROM flagged_ids) AS hit
                            FROM read_parquet({pairs}, file_row_number = true))
            SELECT file, file_id, count(*) AS records, count(*) FILTER (hit) AS flagged, min(row) AS first
            FROM marked GROUP BY file, file_id ORDER BY first""").fetchall()
        n_records, affected = con.execute(f"""
            SELECT count(*), count(*) FILTER (pair_id IN (SELECT pair_id FROM flagged_ids))
            FROM read_parquet({pairs})""").fetchall()[0]
        citations = con.sql(f"""
            SELECT eval_id, pair_id, influence_level FROM read_parquet({cited})
            SEMI JOIN shown_ids USING (pair_id)""").df()
    # A file or file_id that is missing groups nowhere, as pandas' groupby drops it.
    files = [{"file": file, "file_id": file_id, "records": records, "flagged": hit, "share": hit / records}
             for file, file_id, records, hit, _ in rows if file is not None and file_id is not None]
    return levels, files, int(n_records), int(affected), citations


def _examples(citations: pd.DataFrame, items: pd.DataFrame, pair_ids: set[str], n: int) -> dict:
    """Up to n bad and n good citing answers per pair, strongest first: (eval_id, level) lists."""
    rank = {"high": 0, "medium": 1, "low": 2}
    subset = citations[citations["pair_id"].isin(pair_ids)].merge(items[["eval_id", "verdict"]], on="eval_id")
    subset = subset.assign(order=subset["influence_level"].map(rank)).sort_values(
        ["pair_id", "order", "eval_id"], kind="mergesort")
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (pair, verdict), group in subset.groupby(["pair_id", "verdict"], sort=False):
        out[(pair, verdict)] = list(zip(group["eval_id"][:n], group["influence_level"][:n]))
    return out


BAD_ROWS = 25_000      # bad answers the page holds; beyond, the first ones in eval-set order
TEXT_CHARS = 2_000     # characters of a question, answer or reference the page holds
MD_BAD_ROWS = 200      # bad answers report.md lists
BAD_PAGE = 25          # bad answers the page draws at a time
_LEVEL_CODES = {"high": 0, "medium": 1, "low": 2}   # any other level: 3; +4 when the pair is flagged


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def _bad_answers(run: RunDir, items: pd.DataFrame, why: Any, flagged_ids: set[str],
                 mode_of: dict[str, int], labels: dict[int, str]) -> dict[str, Any]:
    """Every bad answer (up to BAD_ROWS, in eval-set order) with its reference, the reason for
    its verdict, its failure mode (-1: unclustered; None: not clustered) and the pairs it cites
    in rank order, as compact rows the page's script renders a page at a time: ``[eval_id,
    question, answer, reference, reason index, mode, [file index, line, level code, …]]``, the
    files and the reasons named once in ``files`` and ``reasons``."""
    from ..core._duckdb import connect, quoted
    from ..core.rundir import ATTRIBUTIONS, PAIRS, first_rows_sql

    bad = items[items["verdict"] == "bad"]
    shown = list(bad.index[:BAD_ROWS])
    with connect() as con:
        con.register("bad_ids", pd.DataFrame({"eval_id": pd.Series(shown, dtype=object)}))
        con.register("flagged_ids", pd.DataFrame({"pair_id": pd.Series(sorted(flagged_ids), dtype=object)}))
        cited = con.sql(f"""
            WITH c AS (SELECT eval_id, rank, pair_id, influence_level
                       FROM read_parquet({quoted(str(run.file(ATTRIBUTIONS)))})
                       SEMI JOIN bad_ids USING (eval_id) WHERE pair_id IS NOT NULL),
                 p AS ({first_rows_sql(quoted(str(run.file(PAIRS))), "pair_id, file, line",
                                       "SEMI JOIN c USING (pair_id)")})
            SELECT c.eval_id, c.influence_level AS level, p.file, p.line,
                   c.pair_id IN (SELECT pair_id FROM flagged_ids) AS flagged
            FROM c JOIN p USING (pair_id) ORDER BY c.eval_id, c.rank, p.file, p.line""").fetchall()
    files: dict[str, int] = {}
    cites: dict[str, list[int]] = {}
    for eval_id, level, file, line, flagged in cited:
        index = files.setdefault(Path(str(file)).name, len(files))
        code = _LEVEL_CODES.get(level, 3) + (4 if flagged else 0)
        cites.setdefault(eval_id, []).extend((index, int(line), code))
    reasons: dict[str, int] = {}   # most reasons repeat ("verdict given in the eval set"): named once
    rows = [[e, _clip(_text(bad.at[e, "question"])), _clip(_text(bad.at[e, "answer"])),
             _clip(_text(bad.at[e, "reference"])), reasons.setdefault(why(e), len(reasons)),
             mode_of.get(e) if mode_of else None, cites.get(e, [])] for e in shown]
    return {"total": int(len(bad)), "files": list(files), "levels": ["high", "medium", "low", "?"],
            "reasons": list(reasons), "modes": {str(c): label for c, label in sorted(labels.items())},
            "rows": rows}


def _script_json(value: Any) -> str:
    """`value` as JSON that is safe inside a <script> element (no "</script>", no "<!--")."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _why_bad(items: pd.DataFrame, grade: GradeSettings) -> Any:
    """eval_id → the reason an answer got its verdict (computed for the answers shown only)."""
    table = items.set_index("eval_id")
    cache: dict[str, str] = {}

    def why(eval_id: str) -> str:
        if eval_id not in cache:
            row = table.loc[eval_id]
            number = lambda v: None if pd.isna(v) else float(v)  # noqa: E731
            cache[eval_id] = explain(
                row["verdict"], row["verdict_source"], grade, f1=number(row["grade_f1"]),
                key_recall_value=number(row["grade_key_recall"]), semantic=number(row["grade_semantic"]),
                numbers_ok=None if pd.isna(row["grade_numbers_ok"]) else bool(row["grade_numbers_ok"]),
                answer=_text(row["answer"]), reference=_text(row["reference"]),
                question=_text(row["question"]))
        return cache[eval_id]
    return why


def _answer(items: pd.DataFrame, why: Any, eval_id: str, level: str | None = None) -> dict[str, Any]:
    row = items.loc[eval_id]
    return {"eval_id": eval_id, "question": row["question"], "answer": _text(row["answer"]),
            "reference": _text(row["reference"]), "why": why(eval_id) if row["verdict"] == "bad" else "",
            "level": level}


def _pair_modes(failure_modes: str, theme: str) -> list[dict[str, Any]]:
    """The failure modes a pair drives (``"2: label | 3: label"``), the one it drives most
    (its theme) first: ``{"cluster", "label", "main"}`` each."""
    modes = []
    for part in filter(None, failure_modes.split(" | ")):
        number, _, label = part.partition(": ")
        if number.strip().lstrip("-").isdigit():
            modes.append({"cluster": int(number), "label": label, "main": part == theme})
    return sorted(modes, key=lambda m: (not m["main"], m["cluster"]))


def _settings_rows(collected: dict[str, Any], flag_settings: dict[str, Any],
                   cluster_record: dict[str, Any] | None, report_settings: ReportSettings) -> list[dict]:
    """Every setting that shaped the report, as (stage, setting, value) rows."""
    def flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
        if isinstance(value, dict) and value:
            return [pair for key in sorted(value) for pair in flat(f"{prefix}.{key}" if prefix else key, value[key])]
        return [(prefix, value)]

    rows = []
    collect = collected.get("collect", {})
    for key, value in flat("", collect):
        rows.append({"stage": "collect", "setting": key, "value": value})
    for key, value in flat("", collected.get("grade", {})):
        rows.append({"stage": "grade", "setting": key, "value": value})
    for key, value in flat("", flag_settings):
        rows.append({"stage": "flag", "setting": key, "value": value})
    if cluster_record is not None:
        for key, value in flat("", cluster_record["settings"]):
            rows.append({"stage": "cluster", "setting": key, "value": value})
    for key, value in flat("", dataclasses.asdict(report_settings)):
        rows.append({"stage": "report", "setting": key, "value": value})
    return [{**r, "value": json.dumps(r["value"]) if not isinstance(r["value"], str) else r["value"]}
            for r in rows]


GATE = "recipes/pre-retrain-gate.yaml"   # the shipped gate, relative to a checkout's root


def _exists(shown: str) -> bool:
    """Whether a manifest's output path is there: a file or directory, or ``DIR:split``."""
    head, sep, _ = shown.rpartition(":")
    return Path(shown).exists() or bool(sep and head and Path(head).is_dir())


def _emitted(run: RunDir) -> dict[str, Any] | None:
    """What emit wrote from the current flags, read from its own manifest (the emit record
    names it and its digest), or None: emit has not run on these flags, or its manifest or an
    output it lists is gone or changed."""
    if not run.is_current("emit"):
        return None
    record = run.record("emit")
    for path, meta in record["external"].items():  # type: ignore[index]
        if "records" in meta or not path.endswith("manifest.json"):
            continue  # a data or quarantine output; the manifest carries no record count
        try:
            text = Path(path).read_bytes()
            manifest = json.loads(text)
        except (OSError, ValueError):
            return None
        if hashlib.sha256(text).hexdigest() != meta.get("sha256") or not isinstance(manifest, dict):
            return None
        outputs = [{"path": str(o["path"]), "records": o["records"]} for o in manifest["outputs"]]
        quarantine = [{"path": str(o["path"]), "records": o["records"]} for o in manifest.get("quarantine", [])]
        if not all(_exists(o["path"]) for o in outputs + quarantine):
            return None
        return {"mode": manifest["mode"], "counterexamples": record["settings"].get("counterexamples", False),
                "out": record["settings"]["out"], "manifest": path, "outputs": outputs,
                "quarantine": quarantine, "summary": manifest["summary"]}
    return None


def _next_steps(run: RunDir, collected: dict[str, Any], has_modes: bool) -> dict[str, Any]:
    """What to run next, as plans to pick from, each a list of steps run in order: a step is
    what it does and its command (None for one that is not a refine command, e.g. retraining).

    When emit ran on the current flags, the first plan gates exactly the files its manifest
    lists, then retrains; the other plans are the emits not yet run (the same emit is not
    offered again) and the review round trip. An emit or review apply whose output exists
    carries ``--overwrite``."""
    quote = shlex.quote
    path = quote(str(run.path))
    train = " ".join(f"--baseline {quote(e['path'])}" for e in collected["inputs"]["train"])
    eval_path = quote(collected["inputs"]["eval"]["path"])
    emitted = _emitted(run)
    out = emitted["out"] if emitted else str(run.path / "refined")
    overwrite = " --overwrite" if Path(out).exists() else ""
    written = {"what": "Then write this report again: it lists the files written and the command "
                       "that checks exactly those", "command": f"refine report {path}"}
    plans = []
    if not has_modes:
        plans.append({"title": "Group the bad answers into failure modes", "steps": [
            {"what": "Cluster the bad answers", "command": f"refine cluster {path}"},
            {"what": "Then write this report again: it shows the failure modes", "command": f"refine report {path}"}]})
    if emitted:
        files = [o["path"] for o in emitted["outputs"]]
        plans.append({"title": "Gate the refined data, then retrain on it", "steps": [
            {"what": "Check exactly the refined files the manifest lists (exit 1 when an error-level "
                     "check fails)",
             "command": f"refine check {' '.join(quote(f) for f in files)} {train} --flags {path} "
                        f"--eval {eval_path} --config {GATE}"},
            {"what": "When it passes, fine-tune on " + ", ".join(files) + " in place of the original data",
             "command": None}]})
    for mode, title in (("prune", "Drop every flagged pair; kept records are copied unchanged"),
                        ("edit", "Fix flagged answers from agreeing eval references (others set aside "
                                 "for review)")):
        if emitted and emitted["mode"] == mode:
            continue
        flags = (f" --mode {mode}" if mode != "prune" else "") + overwrite
        plans.append({"title": title, "steps": [
            {"what": "Write the refined data and its manifest",
             "command": f"refine emit {path} --out {quote(out)}{flags}"},
            written]})
    # A sheet exported from these flags may hold decisions already: it is not exported over.
    review = run.record("review") if run.is_current("review") else None
    exported = review is not None and Path(review["settings"]["out"]).is_file()
    sheet = review["settings"]["out"] if exported else str(run.path / "review.csv")  # type: ignore[index]
    export = [] if exported else [
        {"what": "Export one row per flagged pair, with the suggested action, to a sheet",
         "command": f"refine review export {path} --out {quote(sheet)}"}]
    plans.append({"title": "Decide pair by pair in a spreadsheet", "steps": export + [
        {"what": f"Open {sheet}{' (exported earlier)' if exported else ''} and fill in the "
                 "action column (keep, drop, edit or quarantine; a row left empty takes the "
                 "suggested action), and new_answer for an edit; save it as CSV UTF-8. Then apply it",
         "command": f"refine review apply {path} {quote(sheet)} --out {quote(out)}{overwrite}"},
        written]})
    # The emits and the review are alternatives to each other, and to what was emitted.
    choices = [p for p in plans if p["steps"][0]["command"].startswith(("refine emit", "refine review"))]
    for plan in plans:
        plan["alternative"] = any(plan is c for c in choices) and (bool(emitted) or plan is not choices[0])
    return {"emitted": emitted, "plans": plans}


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
    why = _why_bad(items, grade)
    by_id = items.set_index("eval_id")

    flagged_ids = set(flags.loc[flags["flagged"], "pair_id"])
    flagged = flags[flags["flagged"]].head(settings.max_flagged)
    levels, files, n_records, affected_lines, citations = _tallies(run, flagged_ids, set(flagged["pair_id"]))

    levels_svg, scatter_svg, n_points = _plots(levels, flags, settings)
    examples = _examples(citations, items, set(flagged["pair_id"]), settings.examples)
    flagged_rows = []
    for row in flagged.to_dict("records"):
        flagged_rows.append({**row, "where": _where(row["file"], row["line"]),
                             "claim_text": _text(row.get("claim")),
                             "modes": _pair_modes(_text(row.get("failure_modes")), _text(row.get("theme"))),
                             "multi_mode": bool(row.get("multi_mode")),
                             "bad_examples": [_answer(by_id, why, e, level) for e, level in
                                              examples.get((row["pair_id"], "bad"), [])],
                             "good_examples": [_answer(by_id, why, e, level) for e, level in
                                               examples.get((row["pair_id"], "good"), [])]})
    cited_rows = [{**row, "where": _where(row["file"], row["line"])}
                  for row in flags.sort_values(["blame", "pair_id"], ascending=[False, True],
                                               kind="mergesort").head(settings.max_cited).to_dict("records")]

    modes, unclustered = _modes(run, by_id, why, flags, settings)
    has_modes = run.is_current("cluster")
    per_item = run.clusters() if has_modes else pd.DataFrame({"eval_id": [], "cluster": []})
    mode_of = {str(e): int(c) for e, c in zip(per_item["eval_id"], per_item["cluster"])}
    bad_answers = _bad_answers(run, by_id, why, flagged_ids, mode_of,
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
        "bad_answers": bad_answers, "bad_json": _script_json(bad_answers), "bad_page": BAD_PAGE,
        "next": _next_steps(run, collected, has_modes),
        "after_retraining": (f"After retraining, answer this eval set with the new model and collect it into a "
                             f"new run: its bad-answer rate, here {summary['bad_rate'] * 100:.1f}% "
                             f"({summary['bad_items']} of {summary['items']}), says whether the answers got "
                             f"better, and refine outcome {shlex.quote(str(run.path))} NEW_RUN which were "
                             "fixed and which broke (with --control runs: beyond retraining noise or not)."),
        "outcome": report_section(run),
        "settings_rows": _settings_rows(collected, summary["settings"],
                                        run.record("cluster") if has_modes else None, settings),
    }
    env = jinja2.Environment(loader=jinja2.PackageLoader("refine", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html.j2").render(**context)
    with run.stage("report", dataclasses.asdict(settings)) as stage:
        with atomic_open(stage.path(REPORT_HTML), "w", encoding="utf-8") as fh:
            fh.write(html)
        with atomic_open(stage.path(REPORT_MD), "w", encoding="utf-8") as fh:
            fh.write(_markdown(context))
    return ReportResult(run.file(REPORT_HTML), run.file(REPORT_MD), len(html.encode("utf-8")))


def _modes(run: RunDir, items: pd.DataFrame, why: Any, flags: pd.DataFrame,
           settings: ReportSettings) -> tuple[list[dict], list[dict]]:
    """The failure modes with examples and driving pairs, and the unclustered bad answers."""
    if not run.is_current("cluster"):
        return [], []
    table = run.modes()
    per_item = run.clusters()
    per_pair = run.cluster_pairs()
    info = flags.set_index("pair_id")
    pairs = run.first_rows(sorted(set(per_pair.groupby("cluster").head(8)["pair_id"])),
                           ["file", "line", "question", "answer"])
    representative_of = {}
    modes = []
    for row in table.to_dict("records"):
        c = int(row["cluster"])
        members = [e for e in per_item.loc[per_item["cluster"] == c, "eval_id"] if e in items.index]
        representative = next((e for e in members if items.at[e, "question"] == row["representative_question"]),
                              members[0] if members else None)
        representative_of[c] = representative
        driving = per_pair[per_pair["cluster"] == c].head(8)
        modes.append({**row, "cluster": c,
                      "representative": _answer(items, why, representative) if representative else None,
                      "examples": [_answer(items, why, e) for e in members if e != representative][:settings.examples],
                      "pairs": [{"where": _where(pairs.at[p, "file"], pairs.at[p, "line"]),
                                 "question": pairs.at[p, "question"], "answer": pairs.at[p, "answer"],
                                 "blame": float(b), "n_items": int(n),
                                 "flagged": bool(info.at[p, "flagged"]) if p in info.index else False}
                                for p, b, n in zip(driving["pair_id"], driving["blame"], driving["n_items"])]})
    unclustered = [_answer(items, why, e) for e in per_item.loc[per_item["cluster"] < 0, "eval_id"]
                   if e in items.index]
    return modes, unclustered


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


def _markdown(c: dict) -> str:
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
