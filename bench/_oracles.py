"""Reference implementations the benchmarks measure refine against, and the tests check it with.

Plain Python, written for clarity, not speed: each is the definition of what a faster path in
refine must give. Tests import this module by putting bench/ on sys.path (as they import
bench/out_of_core.py's builder); a benchmark never imports tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def modes_of_pairs_in_python(per_pair: pd.DataFrame, flags: pd.DataFrame, names: dict[int, str],
                             centroids: dict[int, np.ndarray], threshold: float):
    """cluster's per-pair failure modes and the flagged pairs of each theme
    (:func:`refine.stages.clustering._modes_of_pairs`), by their definition: a loop over the pairs
    (refine's own code before it moved to DuckDB)."""
    flagged = set(flags.index)

    def unrelated(modes: list[int]) -> bool:
        return any(float(centroids[a] @ centroids[b]) < threshold
                   for i, a in enumerate(modes) for b in modes[i + 1:])

    ordered = per_pair.sort_values(["pair_id", "blame", "n_items", "cluster"],
                                   ascending=[True, False, False, True], kind="mergesort")
    rows = []
    for pair_id, group in ordered.groupby("pair_id", sort=True):
        modes = sorted(int(c) for c in group["cluster"])
        main = int(group["cluster"].iloc[0])
        rows.append({"pair_id": pair_id, "failure_modes": " | ".join(f"{m}: {names[m]}" for m in modes),
                     "theme": f"{main}: {names[main]}", "multi_mode": pair_id in flagged and unrelated(modes)})
    table = pd.DataFrame(rows, columns=["pair_id", "failure_modes", "theme", "multi_mode"])
    table["multi_mode"] = table["multi_mode"].astype(bool)
    themed = table[table["pair_id"].isin(flagged)]
    theme_rows = []
    for theme, group in themed.groupby(themed["theme"].str.split(":").str[0].astype(int), sort=True):
        where = flags.loc[group["pair_id"]]
        theme_rows.append({"theme": int(theme), "label": names[int(theme)], "size": len(group),
                           "pairs": "; ".join(f"{f}:{l}" for f, l in zip(where["file"], where["line"]))})
    return table, pd.DataFrame(theme_rows, columns=["theme", "label", "size", "pairs"])
