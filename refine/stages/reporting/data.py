"""What the report reads from a run: counts over every citation and training row (by DuckDB,
out of core), the answers shown as examples, the table of every bad answer, the failure modes,
why each answer got its verdict, and the settings that shaped it all."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ...core.rundir import RunDir
from ...settings import GradeSettings, ReportSettings
from ..grading import explain

BAD_ROWS = 25_000      # bad answers the page holds; beyond, the first ones in eval-set order
TEXT_CHARS = 2_000     # characters of a question, answer or reference the page holds
_LEVEL_CODES = {"high": 0, "medium": 1, "low": 2}   # any other level: 3; +4 when the pair is flagged


def text_of(value: Any) -> str:
    """A CSV cell as text: empty cells come back from pandas as NaN."""
    return value if isinstance(value, str) else ""


def where(file: str, line: Any) -> str:
    """A pair's place as a person reads it: ``file.jsonl:12``."""
    return f"{Path(str(file)).name}:{line}"


def tallies(run: RunDir, flagged_ids: set[str], shown_ids: set[str]) -> tuple[
        pd.Series, list[dict[str, Any]], int, int, pd.DataFrame]:
    """What the report counts over every citation and every training row, counted by DuckDB
    over the Parquet files (10⁸ citations are never loaded): citations per (verdict, level) of
    the finished items; per source file (in the order files first appear) its records and
    flagged records; all records and flagged records; and the citations of the pairs shown."""
    from ...core._duckdb import connect, quoted
    from ...core.lineage import ATTRIBUTIONS, ITEMS, PAIRS

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


def examples(citations: pd.DataFrame, items: pd.DataFrame, pair_ids: set[str], n: int) -> dict:
    """Up to n bad and n good citing answers per pair, strongest first: (eval_id, level) lists."""
    rank = {"high": 0, "medium": 1, "low": 2}
    subset = citations[citations["pair_id"].isin(pair_ids)].merge(items[["eval_id", "verdict"]], on="eval_id")
    subset = subset.assign(order=subset["influence_level"].map(rank)).sort_values(
        ["pair_id", "order", "eval_id"], kind="mergesort")
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (pair, verdict), group in subset.groupby(["pair_id", "verdict"], sort=False):
        out[(pair, verdict)] = list(zip(group["eval_id"][:n], group["influence_level"][:n]))
    return out


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def bad_answers(run: RunDir, items: pd.DataFrame, why: Any, flagged_ids: set[str],
                mode_of: dict[str, int], labels: dict[int, str]) -> dict[str, Any]:
    """Every bad answer (up to BAD_ROWS, in eval-set order) with its reference, the reason for
    its verdict, its failure mode (-1: unclustered; None: not clustered) and the pairs it cites
    in rank order, as compact rows the page's script renders a page at a time: ``[eval_id,
    question, answer, reference, reason index, mode, [file index, line, level code, …]]``, the
    files and the reasons named once in ``files`` and ``reasons``."""
    from ...core._duckdb import connect, quoted
    from ...core.lineage import ATTRIBUTIONS, PAIRS
    from ...core.rundir import first_rows_sql

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
    rows = [[e, _clip(text_of(bad.at[e, "question"])), _clip(text_of(bad.at[e, "answer"])),
             _clip(text_of(bad.at[e, "reference"])), reasons.setdefault(why(e), len(reasons)),
             mode_of.get(e) if mode_of else None, cites.get(e, [])] for e in shown]
    return {"total": int(len(bad)), "files": list(files), "levels": ["high", "medium", "low", "?"],
            "reasons": list(reasons), "modes": {str(c): label for c, label in sorted(labels.items())},
            "rows": rows}


def why_bad(items: pd.DataFrame, grade: GradeSettings) -> Any:
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
                answer=text_of(row["answer"]), reference=text_of(row["reference"]),
                question=text_of(row["question"]))
        return cache[eval_id]
    return why


def answer_of(items: pd.DataFrame, why: Any, eval_id: str, level: str | None = None) -> dict[str, Any]:
    """An answer as the page shows it: question, answer, reference, why it is bad (bad ones) and
    the level it cites a pair at (`level`, when shown under a pair)."""
    row = items.loc[eval_id]
    return {"eval_id": eval_id, "question": row["question"], "answer": text_of(row["answer"]),
            "reference": text_of(row["reference"]), "why": why(eval_id) if row["verdict"] == "bad" else "",
            "level": level}


def pair_modes(failure_modes: str, theme: str) -> list[dict[str, Any]]:
    """The failure modes a pair drives (``"2: label | 3: label"``), the one it drives most
    (its theme) first: ``{"cluster", "label", "main"}`` each."""
    modes = []
    for part in filter(None, failure_modes.split(" | ")):
        number, _, label = part.partition(": ")
        if number.strip().lstrip("-").isdigit():
            modes.append({"cluster": int(number), "label": label, "main": part == theme})
    return sorted(modes, key=lambda m: (not m["main"], m["cluster"]))


def settings_rows(collected: dict[str, Any], flag_settings: dict[str, Any],
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


def failure_modes(run: RunDir, items: pd.DataFrame, why: Any, flags: pd.DataFrame,
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
    modes = []
    for row in table.to_dict("records"):
        c = int(row["cluster"])
        members = [e for e in per_item.loc[per_item["cluster"] == c, "eval_id"] if e in items.index]
        representative = next((e for e in members if items.at[e, "question"] == row["representative_question"]),
                              members[0] if members else None)
        driving = per_pair[per_pair["cluster"] == c].head(8)
        modes.append({**row, "cluster": c,
                      "representative": answer_of(items, why, representative) if representative else None,
                      "examples": [answer_of(items, why, e) for e in members if e != representative][:settings.examples],
                      "pairs": [{"where": where(pairs.at[p, "file"], pairs.at[p, "line"]),
                                 "question": pairs.at[p, "question"], "answer": pairs.at[p, "answer"],
                                 "blame": float(b), "n_items": int(n),
                                 "flagged": bool(info.at[p, "flagged"]) if p in info.index else False}
                                for p, b, n in zip(driving["pair_id"], driving["blame"], driving["n_items"])]})
    unclustered = [answer_of(items, why, e) for e in per_item.loc[per_item["cluster"] < 0, "eval_id"]
                   if e in items.index]
    return modes, unclustered
