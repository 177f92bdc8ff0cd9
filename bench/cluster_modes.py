"""cluster's per-pair failure modes: DuckDB (refine) against the Python loop it replaced.

The table cluster builds from the cluster × pair blame: for each cited pair its failure modes,
its theme (the mode it drives most) and whether it drives unrelated modes, and the flagged
pairs of each theme. Synthetic input: `--pairs` cited pairs (10⁶ by default), each driving 1-3
of 50 modes, 1% flagged. Both run on the same input in this process, alternately (A B A B),
on 2 cores (DuckDB takes one thread per core, up to 8); their outputs are compared. The loop is the
definition in bench/_oracles.py, which tests/test_clustering.py checks refine against. Prints one
JSON line.

Usage: python bench/cluster_modes.py [--pairs 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from _oracles import modes_of_pairs_in_python  # noqa: E402
from _out import emit_json, peak_rss_mb, stdout_to_stderr  # noqa: E402
from _synth import log  # noqa: E402


def world(n_pairs: int, n_modes: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, n_pairs)
    pair_ids = np.repeat([f"{i:012x}" for i in range(n_pairs)], per)
    clusters = np.concatenate([rng.choice(n_modes, k, replace=False) for k in per])
    per_pair = pd.DataFrame({"pair_id": pair_ids, "cluster": clusters.astype("int64"),
                             "blame": rng.integers(1, 20, len(pair_ids)) * 0.5,
                             "n_items": rng.integers(1, 10, len(pair_ids)).astype("int64")})
    flagged = [f"{i:012x}" for i in np.flatnonzero(rng.random(n_pairs) < 0.01)]
    flags = pd.DataFrame({"pair_id": flagged, "file": "train.jsonl",
                          "line": pd.array(np.arange(1, len(flagged) + 1), dtype="Int64")}).set_index("pair_id")
    names = {m: f"mode {m}" for m in range(n_modes)}
    centroids = {m: v / np.linalg.norm(v) for m, v in enumerate(rng.normal(size=(n_modes, 16)))}
    return per_pair, flags, names, centroids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    args = parser.parse_args()
    with stdout_to_stderr(), threadpool_limits(2):
        from refine.stages.clustering import _modes_of_pairs
        from refine.settings import ClusterSettings

        per_pair, flags, names, centroids = world(args.pairs)
        settings = ClusterSettings()
        log(f"{len(per_pair):,} (mode, pair) rows over {args.pairs:,} pairs, {len(flags):,} flagged")
        seconds: dict[str, list[float]] = {"duckdb": [], "python_loop": []}
        out = {}
        for kind in ("duckdb", "python_loop", "duckdb", "python_loop"):
            t = time.perf_counter()
            if kind == "duckdb":
                out[kind] = _modes_of_pairs(per_pair, flags, names, centroids, settings)
            else:
                out[kind] = modes_of_pairs_in_python(per_pair, flags, names, centroids,
                                                     settings.unrelated_similarity)
            seconds[kind].append(round(time.perf_counter() - t, 2))
            log(f"  {kind}: {seconds[kind][-1]} s")
        same = all(a.astype(str).equals(b.astype(str)) for a, b in zip(out["duckdb"], out["python_loop"]))
        figures = {"bench": "cluster_modes", "pairs": args.pairs, "rows": len(per_pair),
                   "duckdb_s": seconds["duckdb"], "python_loop_s": seconds["python_loop"],
                   "loop_over_duckdb": round(sum(seconds["python_loop"]) / sum(seconds["duckdb"]), 2),
                   "same_tables": bool(same), "peak_rss_mb": round(peak_rss_mb())}
    emit_json(figures)


if __name__ == "__main__":
    main()
