"""The citation statistics of flags.csv, computed by DuckDB straight from the citations: per
cited pair its bad and good citers, blame and test (:mod:`.significance`), and with defect
groups (:mod:`.defects`) the groups' counts and tests and which pairs they flag.

The inputs are two views a caller makes, ``items_in`` (eval_id, question, verdict: the finished
items) and ``cites_in`` (eval_id, pair_id, influence_level); memory is bounded by DuckDB's limit,
not by the number of citations, and only numeric columns come back to Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core._duckdb import quoted, squeezed
from ...settings import FlagSettings
from .significance import count_test

__all__ = ["flagged_by", "pair_statistics", "prepare_citations", "weighted_sum_sql", "weights_sql"]


def weights_sql(weights: dict[str, float]) -> str:
    """The level weights as a table (level, weight DOUBLE)."""
    rows = ", ".join(f"({quoted(level)}, {float(w)!r}::DOUBLE)" for level, w in sorted(weights.items()))
    return f"SELECT * FROM (VALUES {rows}) t(level, weight)"


def weighted_sum_sql(weights: dict[str, float], condition: str) -> str:
    """Σ weight over the rows where `condition` holds, as Σ_w w · (number of such rows of weight w)
    in a fixed order: a parallel sum of doubles depends on the order rows arrive in, and the
    same inputs must give the same bytes whatever the threads and the memory limit."""
    terms = [f"{w!r}::DOUBLE * count(*) FILTER ({condition} AND c.weight = {w!r}::DOUBLE)"
             for w in sorted({float(v) for v in weights.values()})]
    return "(" + " + ".join(terms) + ")"


def prepare_citations(con: Any, settings: FlagSettings) -> tuple[int, int]:
    """From the views items_in, cites_in: the table ``items`` (item: a number for each finished
    item, eval_id, question, bad) and the view ``cited`` (item, pair_id, weight, bad): one row
    per item and pair — a remote service may list a pair twice — at its largest weight.
    Returns (N finished items, B bad)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE weights AS {weights_sql(settings.level_weights)}")
    # Items by number, not by eval id: the aggregates over 10⁸ citations hash 8 bytes, not a string.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE items AS
        SELECT row_number() OVER (ORDER BY eval_id) AS item, eval_id, question,
               coalesce(verdict = 'bad', false) AS bad
        FROM items_in""")
    con.execute("""
        CREATE OR REPLACE TEMP VIEW cited AS
        SELECT i.item, c.pair_id, max(w.weight) AS weight, any_value(i.bad) AS bad
        FROM cites_in c JOIN items i USING (eval_id) LEFT JOIN weights w ON w.level = c.influence_level
        GROUP BY i.item, c.pair_id""")
    n_items, n_bad = con.execute("SELECT count(*), count(*) FILTER (bad) FROM items").fetchall()[0]
    return int(n_items), int(n_bad)


def pair_statistics(con: Any, settings: FlagSettings, n_items: int, n_bad_items: int) -> dict[str, Any]:
    """Per cited pair, in pair_id order: every statistic column of flags.csv (numpy arrays;
    the ids an Arrow array, which holds 10⁷ of them in a fifth of the memory Python strings take)."""
    columns, groups = _aggregates(con, settings)
    with squeezed(con):
        return _derived(columns, groups, settings, n_items, n_bad_items)


def _aggregates(con: Any, settings: FlagSettings) -> tuple[Any, dict[str, np.ndarray] | None]:
    """The per-pair counts (an Arrow table in pair_id order) and, with defect groups, the
    per-group counts (in group order); the scratch tables they came from are dropped."""
    with_groups = settings.defect_groups
    if with_groups:
        from .defects import defect_tables

        defect_tables(con)
        source, extra = "cited_topic c", """,
            count(*) FILTER (c.bad AND c.on_topic) AS topic_n_bad,
            count(*) FILTER (NOT c.bad AND c.on_topic) AS topic_n_good, any_value(c.gi) AS gi"""
    else:
        source, extra = "cited c", ""
    columns = con.sql(f"""
        SELECT c.pair_id, count(*) FILTER (c.bad) AS n_bad, count(*) FILTER (NOT c.bad) AS n_good,
               {weighted_sum_sql(settings.level_weights, "c.bad")} AS blame,
               {weighted_sum_sql(settings.level_weights, "NOT c.bad")} AS good_weight {extra}
        FROM {source} GROUP BY c.pair_id ORDER BY c.pair_id""").to_arrow_table()
    groups = None
    if with_groups:
        groups = con.execute("""
            WITH sizes AS (SELECT gi, count(*) AS size FROM pair_info GROUP BY gi),
                 counts AS (SELECT gi, count(*) AS m, count(*) FILTER (bad) AS m_bad
                            FROM (SELECT DISTINCT gi, item, bad FROM cited_topic WHERE on_topic) GROUP BY gi)
            SELECT s.gi, s.size, coalesce(c.m, 0) AS m, coalesce(c.m_bad, 0) AS m_bad
            FROM sizes s LEFT JOIN counts c USING (gi) ORDER BY s.gi""").fetchnumpy()
    # DuckDB's pages for these go before numpy's arrays come, so the two do not add up.
    for table in ("cited_topic", "pair_info", "cited_texts", "names", "items"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return columns, groups


def _derived(columns: Any, groups: dict[str, np.ndarray] | None, settings: FlagSettings,
             n_items: int, n_bad_items: int) -> dict[str, Any]:
    """Tests, groups' labels and flags from the counts (:func:`_aggregates`)."""
    out: dict[str, Any] = {"pair_id": columns.column("pair_id").combine_chunks()}

    def numbers(name: str, dtype: Any) -> np.ndarray:
        return columns.column(name).to_numpy().astype(dtype, copy=False)

    n_bad, n_good = numbers("n_bad", np.int64), numbers("n_good", np.int64)
    n_cited = n_bad + n_good
    out.update(n_bad=n_bad, n_good=n_good, blame=numbers("blame", float), good_weight=numbers("good_weight", float))
    out["bad_share"] = n_bad / np.maximum(n_cited, 1)
    out["p_value"], out["q_value"], out["testable"] = count_test(n_bad, n_cited, n_items, n_bad_items, settings)
    pair_flag = (n_bad >= settings.min_bad) & (out["q_value"] <= settings.alpha)
    if groups is None:
        out["flagged"] = pair_flag
        out["flagged_by"] = flagged_by(pair_flag.astype(np.int8))
        return out

    size = np.asarray(groups["size"], dtype=np.int64)
    m, m_bad = (np.asarray(groups[c], dtype=np.int64) for c in ("m", "m_bad"))
    group_p, group_q, group_testable = count_test(m_bad, m, n_items, n_bad_items, settings)
    group_flagged = (m_bad >= settings.min_bad) & (group_q <= settings.alpha)
    # Groups of several pairs are numbered 1.. in the order of their smallest pair id.
    label = np.where(size > 1, np.cumsum(size > 1), 0)

    gi, topic_bad, topic_good = (numbers(c, np.int64) for c in ("gi", "topic_n_bad", "topic_n_good"))
    out.update(topic_n_bad=topic_bad, topic_n_good=topic_good, defect_group=label[gi],
               group_size=size[gi], group_n_bad=m_bad[gi], group_n_good=(m - m_bad)[gi],
               group_p=group_p[gi], group_q=group_q[gi], group_testable=group_testable[gi])
    # A pair alone is its own group: flagged by its test, as a pair-level flag would be.
    alone = size[gi] == 1
    flagged = group_flagged[gi] & (topic_bad >= 1) & (alone | (topic_good <= settings.member_max_good))
    out["flagged"] = flagged
    out["flagged_by"] = flagged_by(np.where(~flagged, 0, np.where(alone, 1, 2)).astype(np.int8))
    return out


_FLAGGED_BY = ["", "pair", "defect group", "claim test", "claim repeated"]


def flagged_by(codes: np.ndarray) -> Any:
    """flagged_by from codes 0 (not flagged), 1 (pair), 2 (defect group), 3 (claim test), 4
    (claim repeated), as a dictionary array: a byte a pair, not a Python string."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(_FLAGGED_BY))
