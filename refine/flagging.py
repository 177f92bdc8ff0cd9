"""`flag`: find the training pairs that *repeatedly* drive bad answers, with statistics.

For every training pair cited by at least one finished eval item:

* ``n_bad`` / ``n_good``: distinct bad / good answers citing it;
* ``blame``: the level-weighted count of bad citations (high 1, medium 0.5, low 0.25 by default);
* ``p_value``: one-sided hypergeometric (Fisher's exact) test of "cited by bad answers more
  often than the bad-answer base rate explains": of the N finished items, B are bad; the
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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._atomic import atomic_open, write_json
from .errors import RunDirError
from .settings import FlagSettings
from .rundir import FLAGS_CSV, FLAGS_JSON, RunDir

__all__ = ["FLAG_COLUMNS", "FlagResult", "FlagSettings", "flag", "flag_statistics", "read_flags"]

FLAG_COLUMNS = ["pair_id", "file", "line", "file_id", "question", "answer", "n_lines", "n_bad",
                "n_good", "blame", "good_weight", "bad_share", "p_value", "q_value", "testable",
                "topic_n_bad", "topic_n_good", "defect_group", "group_size", "group_n_bad",
                "group_n_good", "group_p", "group_q", "flagged", "flagged_by"]


@dataclass(frozen=True)
class FlagResult:
    run_dir: Path
    table: pd.DataFrame          # one row per cited pair, most blamed first
    items: int
    bad_items: int
    flagged: int

    @property
    def flagged_pairs(self) -> pd.DataFrame:
        return self.table[self.table["flagged"]]


def _bh(p_values: np.ndarray) -> np.ndarray:
    from scipy.stats import false_discovery_control

    if p_values.size == 0:
        return p_values
    return false_discovery_control(p_values, method="bh")


def _tail(k: np.ndarray, n: np.ndarray, population: int, bad: int) -> np.ndarray:
    """P(X ≥ k), X ~ Hypergeometric(population, bad, n), elementwise.

    Computed once per distinct (k, n): scipy's sf sums the pmf term by term, and a run with
    hundreds of thousands of cited pairs has only a few hundred distinct citation counts.
    """
    from scipy.stats import hypergeom

    combos, inverse = np.unique(np.stack([k, n]), axis=1, return_inverse=True)
    return hypergeom.sf(combos[0] - 1, population, bad, combos[1])[inverse.ravel()]


def flag_statistics(items: pd.DataFrame, citations: pd.DataFrame, settings: FlagSettings,
                    pairs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, int, int]:
    """Per-pair statistics from items (eval_id, verdict[, question]) and citations (eval_id,
    pair_id, level); with `pairs` (pair_id, question, answer) and ``settings.defect_groups``,
    defect-group statistics too, and the flags are the group members (:mod:`refine.defects`).

    Returns (table indexed by pair_id, N finished items, B bad items).
    """
    n_items = len(items)
    n_bad_items = int((items["verdict"] == "bad").sum())
    cited = citations.merge(items[["eval_id", "verdict"]], on="eval_id", how="inner")
    cited = cited.assign(weight=cited["influence_level"].map(settings.level_weights).astype(float))
    # One citation per (item, pair): a remote service may list a pair twice.
    cited = cited.groupby(["eval_id", "pair_id"], sort=False, as_index=False).agg(
        weight=("weight", "max"), verdict=("verdict", "first"))
    is_bad = cited["verdict"] == "bad"
    grouped = cited.assign(bad=is_bad.astype(np.int64), good=(~is_bad).astype(np.int64),
                           bad_w=np.where(is_bad, cited["weight"], 0.0),
                           good_w=np.where(is_bad, 0.0, cited["weight"]))
    stats = grouped.groupby("pair_id", sort=True).agg(
        n_bad=("bad", "sum"), n_good=("good", "sum"), blame=("bad_w", "sum"),
        good_weight=("good_w", "sum"))
    n_cited = (stats["n_bad"] + stats["n_good"]).to_numpy()
    stats["bad_share"] = stats["n_bad"] / n_cited
    stats["p_value"] = _tail(stats["n_bad"].to_numpy(), n_cited, n_items, n_bad_items)
    p_min = _tail(n_cited, n_cited, n_items, n_bad_items)
    testable = (n_cited >= settings.min_bad) & (p_min <= settings.alpha)
    q = np.ones(len(stats))
    q[testable] = _bh(stats["p_value"].to_numpy()[testable])
    stats["q_value"] = q
    stats["testable"] = testable
    pair_flag = (stats["n_bad"] >= settings.min_bad) & (stats["q_value"] <= settings.alpha)
    if settings.defect_groups and pairs is not None:
        from .defects import defect_statistics

        groups = defect_statistics(items, cited, pairs, min_bad=settings.min_bad, alpha=settings.alpha,
                                   member_max_good=settings.member_max_good, tail=_tail, bh=_bh)
        stats = stats.join(groups)
        stats["flagged"] = stats["member"].astype(bool)
        stats["flagged_by"] = np.where(~stats["flagged"], "",
                                       np.where(stats["group_size"] > 1, "defect group", "pair"))
        stats = stats.drop(columns="member")
    else:
        stats["flagged"] = pair_flag
        stats["flagged_by"] = np.where(pair_flag, "pair", "")
    return stats, n_items, n_bad_items


def flag(run_dir: str | Path, settings: FlagSettings | None = None) -> FlagResult:
    """Compute flag statistics for a collected run; write RUN/flags.csv and RUN/flags.json."""
    settings = settings or FlagSettings()
    run = RunDir(run_dir)
    items = run.items(["eval_id", "question", "verdict"], done=True)
    if items.empty:
        raise RunDirError(f"{run.path}: no eval item finished; nothing to flag")
    citations = run.attributions(["eval_id", "pair_id", "influence_level"], matched=True)
    pairs = run.pairs(["pair_id", "file", "line", "file_id", "question", "answer"])
    stats, n_items, n_bad_items = flag_statistics(
        items, citations, settings, pairs.drop_duplicates("pair_id")[["pair_id", "question", "answer"]])

    n_lines = pairs.groupby("pair_id", sort=False).size().rename("n_lines")
    first = pairs.drop_duplicates("pair_id").set_index("pair_id")
    table = stats.join(first, how="left").join(n_lines, how="left").reset_index()
    table = table.sort_values(["flagged", "blame", "q_value", "pair_id"],
                              ascending=[False, False, True, True], kind="mergesort")
    table = table.reindex(columns=FLAG_COLUMNS).reset_index(drop=True)
    table["n_lines"] = table["n_lines"].fillna(0).astype(np.int64)
    table["line"] = table["line"].astype("Int64")

    summary: dict[str, Any] = {
        "settings": asdict(settings),
        "items": n_items,
        "bad_items": n_bad_items,
        "bad_rate": round(n_bad_items / n_items, 6),
        "cited_pairs": int(len(table)),
        "testable_pairs": int(table["testable"].sum()),
        "flagged_pairs": int(table["flagged"].sum()),
        "defect_groups": int(table.loc[table["group_size"] > 1, "defect_group"].nunique())
        if settings.defect_groups else 0,
        "flagged_groups": int(table.loc[table["flagged"] & (table["group_size"] > 1), "defect_group"].nunique())
        if settings.defect_groups else 0,
    }
    with run.stage("flag", asdict(settings)) as stage:
        with atomic_open(stage.path(FLAGS_CSV), "w", encoding="utf-8") as fh:
            table.to_csv(fh, index=False, float_format="%.6g", lineterminator="\n")
        write_json(stage.path(FLAGS_JSON), summary)
    return FlagResult(run.path, table, n_items, n_bad_items, summary["flagged_pairs"])


def read_flags(run_dir: str | Path, columns: list[str] | None = None, *,
               with_modes: bool = False) -> pd.DataFrame:
    """flags.csv of a run whose flags are current (pair ids kept as text); `columns` limits
    what is read; `with_modes` joins each pair's failure modes and theme from `refine cluster`."""
    return RunDir(run_dir).flags(columns, with_modes=with_modes)
