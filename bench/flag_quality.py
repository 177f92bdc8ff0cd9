"""Benchmark: are the flagging defaults (min_bad=2, alpha=0.1) the right ones?

Simulates attribution citations with a known truth, many times over, and sweeps the two
thresholds. Each world has N eval items (a share bad), P training pairs, and:

* culprits: pairs that each drive a few bad answers (how many: 2–8), cited by them at high
  level, and — as embedding neighbours do — by a good answer now and then;
* topic neighbours: pairs cited by the same answers as a culprit but less often and at low level;
* popular pairs: cited by many answers, good and bad, at the base rate;
* unexplained bad answers: each cites a few random pairs at low level.

For each (min_bad, alpha) it reports precision and recall of the flagged set against the
culprits, averaged over worlds; then the real sample_data run as a check on real text.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from refine.flagging import FlagSettings, flag_statistics

ROOT = Path(__file__).resolve().parent.parent


def world(rng: np.random.Generator, n_items: int = 400, n_pairs: int = 3000, n_culprits: int = 15,
          bad_rate: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    n_bad = int(n_items * bad_rate)
    verdict = np.array(["bad"] * n_bad + ["good"] * (n_items - n_bad))
    ids = [f"e{i}" for i in range(n_items)]
    items = pd.DataFrame({"eval_id": ids, "verdict": verdict})
    bad_ids, good_ids = ids[:n_bad], ids[n_bad:]
    rows: list[tuple[str, str, str]] = []
    culprits = {f"c{k}" for k in range(n_culprits)}
    explained = rng.permutation(bad_ids)
    cursor = 0
    for k in range(n_culprits):
        drives = int(rng.integers(2, 9))
        victims = explained[cursor:cursor + drives]
        cursor = (cursor + drives) % max(1, len(explained) - 10)
        for v in victims:
            rows.append((v, f"c{k}", "high" if rng.random() < 0.7 else "medium"))
            if rng.random() < 0.5:
                rows.append((v, f"n{k}", "low"))          # a topic neighbour, now and then
        for g in rng.choice(good_ids, size=int(rng.poisson(0.4)), replace=False):
            rows.append((g, f"c{k}", "low"))
        for g in rng.choice(good_ids, size=int(rng.poisson(1.5)), replace=False):
            rows.append((g, f"n{k}", "medium"))
    for item in ids:                                      # everyday citations, verdict-blind
        for p in rng.integers(0, n_pairs, size=int(rng.poisson(3))):
            rows.append((item, f"p{int(p) % 200 if rng.random() < 0.3 else int(p)}",
                         rng.choice(["high", "medium", "low"])))
    for item in explained[cursor:cursor + 20]:            # unexplained bad answers
        for p in rng.integers(0, n_pairs, size=3):
            rows.append((item, f"u{int(p)}", "low"))
    return items, pd.DataFrame(rows, columns=["eval_id", "pair_id", "influence_level"]), culprits


def sweep(worlds: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    generated = [world(rng) for _ in range(worlds)]
    out = []
    for min_bad in (1, 2, 3, 4):
        for alpha in (0.01, 0.05, 0.1, 0.2):
            hits = flagged_total = culprits_total = empty = 0
            false_flags = []
            by_kind = {"neighbour": 0, "popular": 0, "unexplained": 0}
            for items, cites, culprits in generated:
                stats, _, _ = flag_statistics(items, cites, FlagSettings(min_bad=min_bad, alpha=alpha))
                flagged = set(stats.index[stats["flagged"]])
                hits += len(flagged & culprits)
                flagged_total += len(flagged)
                culprits_total += len(culprits)
                empty += not flagged
                for pair in flagged - culprits:
                    by_kind[{"n": "neighbour", "p": "popular", "u": "unexplained"}[pair[0]]] += 1
                false_flags.append(len(flagged - culprits))
            # Pooled over the worlds: a world that flags nothing adds no precision (an empty
            # flagged set is not "precise"), and its misses count against recall.
            out.append({"min_bad": min_bad, "alpha": alpha,
                        "precision": round(hits / flagged_total, 3) if flagged_total else None,
                        "recall": round(hits / culprits_total, 3),
                        "worlds_flagging_nothing": empty,
                        "false_flags_per_world": round(float(np.mean(false_flags)), 2),
                        "false_flags_by_kind": by_kind})
    return out


def sample_check() -> dict:
    from refine import load_recipe, run_recipe

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                             [f"run_dir={tmp}/run", f"emit.out={tmp}/refined"])
        result = run_recipe(recipe, progress=False)
    planted = json.loads((ROOT / "sample_data" / "planted.json").read_text())["planted_pairs"]
    expected = {(Path(p["file"]).name, p["line"]) for p in planted}
    flagged = {(Path(r.file).name, r.line) for r in result.flag.flagged_pairs.itertuples()}
    return {"planted": len(expected), "flagged": len(flagged), "hits": len(flagged & expected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--small", action="store_true", help="5 worlds, no sample-data run")
    args = parser.parse_args()
    grid = sweep(5 if args.small else args.worlds, args.seed)
    default = next(g for g in grid if g["min_bad"] == 2 and g["alpha"] == 0.1)
    result = {"bench": "flag_quality", "worlds": 5 if args.small else args.worlds,
              "default": default, "grid": grid}
    if not args.small:
        result["sample_data"] = sample_check()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
