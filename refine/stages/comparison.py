"""`compare`: how far two runs over the same eval set agree.

For instance SeekrFlow's levels against a local backend, or embedding against gradient. All
figures use one sign convention — larger score, stronger influence — and are computed over
the eval items both runs finished:

* ``topk_overlap``: per item, |A ∩ B| / min(|A|, |B|) of the cited pairs (items where both cite
  something), averaged; ``topk_jaccard`` likewise with |A ∪ B|;
* ``blame_spearman``: Spearman rank correlation of per-pair blame over the pairs either run
  cites (a pair one run does not cite has blame 0 there);
* ``flagged_jaccard`` and the overlap counts of the flagged sets (when both runs are flagged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import RunDirError
from ..core.rundir import RunDir
from ..settings import LEVEL_WEIGHTS

__all__ = ["CompareResult", "compare"]

@dataclass(frozen=True)
class CompareResult:
    run_a: str
    run_b: str
    backend_a: str
    backend_b: str
    items_compared: int
    items_both_cite: int
    topk_overlap: float | None
    topk_jaccard: float | None
    blame_spearman: float | None
    pairs_cited_a: int
    pairs_cited_b: int
    flagged_a: int | None
    flagged_b: int | None
    flagged_both: int | None
    flagged_jaccard: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _load(run: RunDir) -> tuple[pd.DataFrame, pd.DataFrame, str, dict[str, float]]:
    """Finished items, matched citations, the backend, and the level weights of the run's own
    flag settings (the defaults when it has no current flags)."""
    backend = run.collect_settings().get("collect", {}).get("backend", "?")
    weights = run.flag_settings().level_weights if run.is_current("flag") else dict(LEVEL_WEIGHTS)
    return (run.items(["eval_id", "verdict"], done=True),
            run.attributions(["eval_id", "pair_id", "influence_level"], matched=True), backend, weights)


def compare(run_a: str | Path, run_b: str | Path) -> CompareResult:
    """Agreement figures between two collected runs."""
    a, b = RunDir(run_a), RunDir(run_b)
    items_a, cites_a, backend_a, weights_a = _load(a)
    items_b, cites_b, backend_b, weights_b = _load(b)
    common = set(items_a["eval_id"]) & set(items_b["eval_id"])
    if not common:
        raise RunDirError(f"{a.path} and {b.path} share no finished eval items; compare runs over "
                          "the same eval set")
    sets_a = cites_a[cites_a["eval_id"].isin(common)].groupby("eval_id")["pair_id"].agg(set)
    sets_b = cites_b[cites_b["eval_id"].isin(common)].groupby("eval_id")["pair_id"].agg(set)
    overlaps, jaccards = [], []
    for eval_id in sorted(set(sets_a.index) & set(sets_b.index)):
        x, y = sets_a[eval_id], sets_b[eval_id]
        overlaps.append(len(x & y) / min(len(x), len(y)))
        jaccards.append(len(x & y) / len(x | y))

    verdicts = items_a.set_index("eval_id")["verdict"]
    bad = {e for e in common if verdicts.get(e) == "bad"}

    def blame(cites: pd.DataFrame, level_weights: dict[str, float]) -> pd.Series:
        subset = cites[cites["eval_id"].isin(bad)]
        weights = subset["influence_level"].map(level_weights)
        return weights.groupby(subset["pair_id"]).sum()

    blame_a, blame_b = blame(cites_a, weights_a), blame(cites_b, weights_b)
    union = sorted(set(blame_a.index) | set(blame_b.index))
    spearman = None
    if len(union) >= 3:
        from scipy.stats import spearmanr

        value = spearmanr(blame_a.reindex(union, fill_value=0), blame_b.reindex(union, fill_value=0))
        spearman = None if pd.isna(value.statistic) else round(float(value.statistic), 6)

    flagged = [None, None, None, None]
    if a.is_current("flag") and b.is_current("flag"):
        fa = set(a.flags().query("flagged")["pair_id"])
        fb = set(b.flags().query("flagged")["pair_id"])
        flagged = [len(fa), len(fb), len(fa & fb),
                   round(len(fa & fb) / len(fa | fb), 6) if fa | fb else None]

    mean = lambda values: round(sum(values) / len(values), 6) if values else None  # noqa: E731
    return CompareResult(str(a.path), str(b.path), backend_a, backend_b, len(common), len(overlaps),
                         mean(overlaps), mean(jaccards), spearman, int(cites_a["pair_id"].nunique()),
                         int(cites_b["pair_id"].nunique()), *flagged)
