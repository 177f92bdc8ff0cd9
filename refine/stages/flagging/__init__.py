"""`flag`: find the training pairs that *repeatedly* drive bad answers, with statistics.

By default a pair is flagged on **text evidence** (:mod:`refine.stages.flagging.evidence`): bad answers that say
what the pair says where their references do not, tested by claim group; flags.csv then says
which sentence of the pair (``claim``) and how many answers speak against and for it. The
citation statistics below are computed for every cited pair all the same, and decide the flags
when the run has no answers and references, or with ``evidence`` off (defect groups by
citations, :mod:`refine.stages.flagging.defects`, or every pair alone).

For every training pair cited by at least one finished eval item:

* ``n_bad`` / ``n_good``: distinct bad / good answers citing it;
* ``blame``: the level-weighted count of bad citations (high 1, medium 0.5, low 0.25 by default);
* ``p_value``: one-sided hypergeometric (Fisher's exact) test (:mod:`.significance`) of "cited by
  bad answers more often than the bad-answer base rate explains": of the N finished items, B are bad; the
  pair is cited by n = n_bad + n_good of them; under the null those n are a random draw, so
  p = P(X ≥ n_bad), X ~ Hypergeometric(N, B, n);
* ``q_value``: Benjamini–Hochberg across pairs. Only *testable* pairs enter the correction —
  those cited at least ``min_bad`` times and whose smallest achievable p (all n citations
  bad) is ≤ alpha (Tarone's filter, as adapted to FDR by Gilbert 2005). A pair that could
  never be flagged, whatever its citers' verdicts, would only dilute the pairs that can; the
  filter looks at n alone, never at which verdicts cited the pair, so it keeps the FDR
  guarantee. Untestable pairs get q = 1.

A pair is **flagged** when ``n_bad ≥ min_bad`` (default 2: repeatedly) and ``q ≤ alpha``.
A bad answer that no training pair explains cites nothing, or a different pair each time,
so it cannot get a pair flagged.

The statistics are computed by DuckDB (:mod:`.citations`) straight from the run's Parquet
files, and flags.csv is written a batch of rows at a time: memory is bounded by DuckDB's limit
and a batch, not by the number of citations (10⁸ citations of 10⁷ pairs: bench/out_of_core.py).
Only numeric per-pair and per-group columns are held in memory (about 100 bytes a cited pair).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...core._atomic import atomic_path, write_json
from ...core._duckdb import connect, quoted, squeezed
from ...core.lineage import ATTRIBUTIONS, CLAIM_LINKS, CLAIMS, EVIDENCE, FLAGS_CSV, FLAGS_JSON, ITEMS, PAIRS
from ...core.rundir import RunDir, first_rows_sql
from ...errors import RunDirError
from ...settings import FlagSettings
from .citations import flagged_by, pair_statistics, prepare_citations
from .significance import count_test

__all__ = ["FLAG_COLUMNS", "FlagResult", "FlagSettings", "flag", "flag_statistics", "read_flags"]

FLAG_COLUMNS = ["pair_id", "file", "line", "file_id", "question", "answer", "n_lines", "n_bad",
                "n_good", "blame", "good_weight", "bad_share", "p_value", "q_value", "testable",
                "topic_n_bad", "topic_n_good", "defect_group", "group_size", "group_n_bad",
                "group_n_good", "group_p", "group_q", "claim", "evidence_bad", "evidence_good",
                "evidence_via", "flagged", "flagged_by"]
_FLOATS = {"blame", "good_weight", "bad_share", "p_value", "q_value", "group_p", "group_q"}


@dataclass(frozen=True)
class FlagResult:
    run_dir: Path
    items: int
    bad_items: int
    flagged: int
    cited_pairs: int

    @functools.cached_property
    def table(self) -> pd.DataFrame:
        """flags.csv: one row per cited pair, flagged first, then most blamed (read on use:
        it can be millions of rows)."""
        return RunDir(self.run_dir).flags()

    @property
    def flagged_pairs(self) -> pd.DataFrame:
        return RunDir(self.run_dir).flags(flagged_only=True)


#: The per-pair columns of the text evidence: (default for a pair it says nothing about).
EVIDENCE_DEFAULTS = {"defect_group": 0, "group_size": 1, "group_n_bad": 0, "group_n_good": 0, "group_p": 1.0,
                     "group_q": 1.0, "claim": None, "evidence_bad": 0, "evidence_good": 0, "evidence_via": None}


def _with_evidence(stats: dict[str, Any], per_pair: pd.DataFrame, groups: pd.DataFrame
                   ) -> tuple[dict[str, Any], pd.DataFrame]:
    """The citation statistics (`stats`, pairs alone, in pair_id order) with the flags of the
    text evidence (:func:`refine.stages.flagging.judge.judge`: a pair is flagged when it is a member of a
    flagged claim group), and the evidence's own columns (``EVIDENCE_DEFAULTS``) as a side table
    of the pairs it speaks of, indexed by pair_id: a handful of rows, where a column over every
    cited pair would be 10⁷ strings. Pairs the evidence found that no item cites (a lookup, a
    scan) are appended to the arrays."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = stats["pair_id"].cast(pa.string())
    found = pa.array(list(per_pair.index), pa.string())
    where = pc.index_in(found, value_set=ids)
    cited = where.is_valid().to_numpy(zero_copy_only=False) if len(found) else np.zeros(0, bool)
    extra = [pid for pid, hit in zip(per_pair.index, cited) if not hit]
    n = len(ids)
    rows = np.empty(len(per_pair), dtype=np.int64)
    rows[cited] = where.fill_null(0).to_numpy(zero_copy_only=False)[cited]
    rows[~cited] = n + np.arange(len(extra))

    def grown(name: str, fill: Any) -> np.ndarray:
        values = np.asarray(stats[name])
        return np.concatenate([values, np.full(len(extra), fill, dtype=values.dtype)])

    out: dict[str, Any] = {"pair_id": pa.concat_arrays([ids, pa.array(extra, pa.string())])}
    for name, fill in (("n_bad", 0), ("n_good", 0), ("blame", 0.0), ("good_weight", 0.0), ("bad_share", 0.0),
                       ("p_value", 1.0), ("q_value", 1.0), ("testable", False)):
        out[name] = grown(name, fill)
    g = per_pair["claim_group"].to_numpy(np.int64)
    member = per_pair["member"].to_numpy(bool)
    flagged = np.zeros(n + len(extra), dtype=bool)
    flagged[rows] = member
    codes = np.zeros(n + len(extra), dtype=np.int8)
    codes[rows] = np.where(member, np.where(per_pair["by"].to_numpy(object) == "test", 3, 4), 0)
    out.update(flagged=flagged, flagged_by=flagged_by(codes))
    side = pd.DataFrame({
        "defect_group": g + 1, "group_size": groups["size"].to_numpy(np.int64)[g],
        "group_n_bad": groups["m_bad"].to_numpy(np.int64)[g], "group_n_good": groups["m_good"].to_numpy(np.int64)[g],
        "group_p": groups["p"].to_numpy(float)[g], "group_q": groups["q"].to_numpy(float)[g],
        "claim": per_pair["claim_text"].to_numpy(object),
        "evidence_bad": per_pair["evidence_bad"].to_numpy(np.int64),
        "evidence_good": per_pair["evidence_good"].to_numpy(np.int64),
        "evidence_via": per_pair["evidence_via"].to_numpy(object)}, index=per_pair.index.rename("pair_id"))
    return out, side


def _judge_evidence(con: Any, settings: FlagSettings, n_items: int, n_bad_items: int
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`refine.stages.flagging.judge.judge` over the views already made, with the finished items'
    verdicts from the table ``items`` (:func:`.citations.prepare_citations`)."""
    from .judge import judge

    con.execute("CREATE OR REPLACE TEMP VIEW verdicts_in AS SELECT eval_id, bad FROM items")
    return judge(con, settings, lambda k, n: count_test(k, n, n_items, n_bad_items, settings))


def _has_evidence(run: RunDir) -> bool:
    """Whether collect wrote text evidence with any row (runs without answers or references
    have none: flag falls back to the citation rules)."""
    import pyarrow.parquet as pq

    path = run.file(EVIDENCE)
    return path.exists() and pq.ParquetFile(path).metadata.num_rows > 0


def flag_statistics(items: pd.DataFrame, citations: pd.DataFrame, settings: FlagSettings,
                    pairs: pd.DataFrame | None = None, *, model: Any = None) -> tuple[pd.DataFrame, int, int]:
    """Per-pair statistics from items (eval_id, verdict[, question]) and citations (eval_id,
    pair_id, influence_level); with `pairs` (pair_id, question, answer) and
    ``settings.defect_groups``, defect-group statistics too, and the flags are the group
    members (:mod:`refine.stages.flagging.defects`). With `pairs`, items that have ``answer`` and ``reference``
    and ``settings.evidence`` (the default), the text evidence decides (:mod:`refine.stages.flagging.evidence`,
    sentences encoded by `model`, the default embedding model unless given).

    Returns (table indexed by pair_id, N finished items, B bad items).
    """
    evidence = None
    if settings.evidence and pairs is not None and {"answer", "reference"} <= set(items.columns) \
            and items["answer"].notna().any():
        from ...core.embeddings import EmbeddingModel
        from .gather import gather

        evidence = gather(items, pairs, citations, (model or EmbeddingModel()).encode)
        evidence = evidence if len(evidence.rows) else None
    judged = None
    if (pairs is None and settings.defect_groups) or evidence is not None:
        counting = FlagSettings(**{**asdict(settings), "defect_groups": False})
    else:
        counting = settings
    with connect() as con:
        frame = items.assign(question=items["question"] if "question" in items else None)
        con.register("items_frame", frame[["eval_id", "question", "verdict"]])
        con.register("cites_frame", citations[["eval_id", "pair_id", "influence_level"]])
        con.execute("CREATE VIEW items_in AS SELECT eval_id::VARCHAR AS eval_id, question::VARCHAR AS question, "
                    "verdict::VARCHAR AS verdict FROM items_frame")
        con.execute("CREATE VIEW cites_in AS SELECT eval_id::VARCHAR AS eval_id, pair_id::VARCHAR AS pair_id, "
                    "influence_level::VARCHAR AS influence_level FROM cites_frame WHERE pair_id IS NOT NULL")
        if pairs is not None:
            con.register("pairs_frame", pairs[["pair_id", "question", "answer"]].reset_index(drop=True)
                         .assign(row=np.arange(len(pairs))))
            con.execute("CREATE VIEW pairs_first AS SELECT pair_id::VARCHAR AS pair_id, question::VARCHAR AS question, "
                        "answer::VARCHAR AS answer FROM pairs_frame QUALIFY row_number() OVER "
                        "(PARTITION BY pair_id ORDER BY row) = 1")
        n_items, n_bad_items = prepare_citations(con, counting)
        if evidence is not None:
            from .judge import evidence_views

            evidence_views(con, evidence)
            judged = _judge_evidence(con, settings, n_items, n_bad_items)
        stats = pair_statistics(con, counting, n_items, n_bad_items)
    if judged is not None:
        stats, side = _with_evidence(stats, *judged)
        table = pd.DataFrame({**stats, "pair_id": stats["pair_id"].to_pylist(),
                              "flagged_by": stats["flagged_by"].to_pylist()}).set_index("pair_id").join(side)
        for name, fill in EVIDENCE_DEFAULTS.items():
            if fill is not None:
                table[name] = table[name].fillna(fill).astype(type(fill))
        return table, n_items, n_bad_items
    table = pd.DataFrame({**stats, "pair_id": stats["pair_id"].to_pylist(),
                          "flagged_by": stats["flagged_by"].to_pylist()}).set_index("pair_id")
    return table, n_items, n_bad_items


def _run_views(con: Any, run: RunDir) -> None:
    """The run's Parquet files as the views the statistics read."""
    run.current("collect")
    items, cites, pairs = (quoted(str(run.file(name))) for name in (ITEMS, ATTRIBUTIONS, PAIRS))
    con.execute(f"CREATE VIEW items_in AS SELECT eval_id, question, verdict FROM read_parquet({items}) "
                "WHERE status = 'done'")
    con.execute(f"CREATE VIEW cites_in AS SELECT eval_id, pair_id, influence_level FROM read_parquet({cites}) "
                "WHERE pair_id IS NOT NULL")
    # The first line of each pair, in file order, and how many lines hold it.
    con.execute("CREATE TEMP TABLE pairs_first AS " + first_rows_sql(
        pairs, "pair_id, file, line, file_id, question, answer, count(*) OVER (PARTITION BY pair_id) AS n_lines"))


def _store(con: Any, stats: dict[str, Any], side: pd.DataFrame | None = None) -> set[str]:
    """Move the statistics into DuckDB's table ``stats`` (emptying `stats`), and the evidence's
    side table into ``evidence_cols``: what Python held goes before flags.csv is sorted, so the
    two never add up. Returns the columns stored (the side table's among them)."""
    import pyarrow as pa

    con.register("stats_in", pa.table(stats))
    con.execute("CREATE TEMP TABLE stats AS SELECT * FROM stats_in")
    con.unregister("stats_in")
    present = set(stats)
    stats.clear()         # the arrays are freed here (no cycles hold them)
    if side is not None:
        con.register("side_in", side.reset_index())
        con.execute("CREATE TEMP TABLE evidence_cols AS SELECT * FROM side_in")
        con.unregister("side_in")
        present |= {f"evidence:{name}" for name in EVIDENCE_DEFAULTS}
    return present


def _count_groups(stats: dict[str, Any], judged: tuple[pd.DataFrame, pd.DataFrame] | None, *,
                 flagged_only: bool) -> int:
    """Defect groups of several pairs: all of them, or those that are flagged."""
    if judged is not None:
        groups = judged[1]
        several = groups["size"] > 1
        return int((several & groups["flagged"]).sum() if flagged_only else several.sum())
    if "defect_group" not in stats:
        return 0
    if flagged_only:
        return int(np.unique(stats["defect_group"][stats["flagged"] & (stats["defect_group"] > 0)]).size)
    return int(np.unique(stats["defect_group"][stats["group_size"] > 1]).size)


def _write_csv(con: Any, present: set[str], path: Path) -> None:
    """flags.csv from the table ``stats`` (columns `present`): flagged first, then by blame, q
    and pair id; numbers as "%.6g" formats them, truth values as True / False.

    Written by DuckDB's COPY, which sorts out of core and writes in parallel (pandas' writer
    formats every float in Python: minutes at 10⁷ rows)."""
    side = any(name.startswith("evidence:") for name in present)

    def column(name: str) -> str:
        if side and name in EVIDENCE_DEFAULTS:
            fill = EVIDENCE_DEFAULTS[name]
            if fill is None:
                return f"nullif(e.{name}, '') AS {name}"
            value = f"coalesce(e.{name}, {fill!r})"
            return f"printf('%.6g', {value}) AS {name}" if name in _FLOATS else f"{value} AS {name}"
        if name not in present and name not in ("file", "line", "file_id", "question", "answer", "n_lines"):
            return f"NULL AS {name}"
        if name in _FLOATS:
            return f"printf('%.6g', s.{name}) AS {name}"
        if name in ("flagged", "testable"):     # as pandas writes them: True / False
            return f"CASE WHEN s.{name} THEN 'True' ELSE 'False' END AS {name}"
        if name in ("flagged_by", "claim", "evidence_via"):
            return f"nullif(s.{name}::VARCHAR, '') AS {name}"
        if name == "n_lines":
            return "coalesce(p.n_lines, 0) AS n_lines"
        return f"{'p' if name in ('file', 'line', 'file_id', 'question', 'answer') else 's'}.{name}"

    with atomic_path(path) as tmp:
        con.execute(f"""
            COPY (SELECT {", ".join(column(c) for c in FLAG_COLUMNS)}
                  FROM stats s LEFT JOIN pairs_first p USING (pair_id)
                  {"LEFT JOIN evidence_cols e USING (pair_id)" if side else ""}
                  ORDER BY s.flagged DESC, s.blame DESC, s.q_value ASC, s.pair_id ASC)
            TO {quoted(str(tmp))} (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '"', ESCAPE '"', NULLSTR '',
                                   COMMENT '')""")


def flag(run_dir: str | Path, settings: FlagSettings | None = None) -> FlagResult:
    """Compute flag statistics for a collected run; write RUN/flags.csv and RUN/flags.json."""
    settings = settings or FlagSettings()
    run = RunDir(run_dir)
    with connect() as con:
        _run_views(con, run)
        evidence = settings.evidence and _has_evidence(run)
        counting = FlagSettings(**{**asdict(settings), "defect_groups": False}) if evidence else settings
        n_items, n_bad_items = prepare_citations(con, counting)
        if n_items == 0:
            raise RunDirError(f"{run.path}: no eval item finished; nothing to flag")
        judged = None
        if evidence:
            from .judge import evidence_views

            evidence_views(con, files={"evidence_in": str(run.file(EVIDENCE)), "claims_in": str(run.file(CLAIMS)),
                                       "claim_links_in": str(run.file(CLAIM_LINKS))})
            judged = _judge_evidence(con, settings, n_items, n_bad_items)
        stats = pair_statistics(con, counting, n_items, n_bad_items)
        side = None
        cited_pairs = len(stats["pair_id"])
        if judged is not None:
            stats, side = _with_evidence(stats, *judged)
        flagged = stats["flagged"]
        summary: dict[str, Any] = {
            "settings": asdict(settings),
            "items": n_items,
            "bad_items": n_bad_items,
            "bad_rate": round(n_bad_items / n_items, 6),
            "cited_pairs": cited_pairs,
            "testable_pairs": int(stats["testable"].sum()),
            "flagged_pairs": int(flagged.sum()),
            "rule": "evidence" if evidence else "defect groups" if settings.defect_groups else "pairs",
            "defect_groups": _count_groups(stats, judged, flagged_only=False),
            "flagged_groups": _count_groups(stats, judged, flagged_only=True),
        }
        with squeezed(con):
            present = _store(con, stats, side)
        with run.stage("flag", asdict(settings)) as stage:
            _write_csv(con, present, stage.path(FLAGS_CSV))
            write_json(stage.path(FLAGS_JSON), summary)
    return FlagResult(run.path, n_items, n_bad_items, summary["flagged_pairs"], summary["cited_pairs"])


def read_flags(run_dir: str | Path, columns: list[str] | None = None, *,
               with_modes: bool = False) -> pd.DataFrame:
    """flags.csv of a run whose flags are current (pair ids kept as text); `columns` limits
    what is read; `with_modes` joins each pair's failure modes and theme from `refine cluster`."""
    return RunDir(run_dir).flags(columns, with_modes=with_modes)
