"""Benchmark: are the flagging defaults (min_bad=2, alpha=0.1) the right ones?

Simulates attribution citations with a known truth, many times over, and sweeps the two
thresholds. Each world has N eval items (a share bad), P training pairs, and:

* culprits: pairs that each drive a few bad answers (how many: 2–8), cited by them at high
  level, and — as embedding neighbours do — by a good answer now and then;
* topic neighbours: pairs cited by the same answers as a culprit but less often and at low level;
* popular pairs: cited by many answers, good and bad, at the base rate;
* unexplained bad answers: each cites a few random pairs at low level.

For each (min_bad, alpha) it reports precision and recall of the flagged set against the
culprits, pooled over worlds (a world that flags nothing adds no precision); then the real
sample_data run as a check on real text.

``defect_groups`` — worlds with texts, where each defect is taught by 3 differently worded
pairs (same names and number in question and answer) and every bad answer of a defect cites
one or two of them and, by confusion, a look-alike entity's correct pair: precision and recall
at the default thresholds with defect groups (the default) and with every pair tested alone.
``samples`` — every real sample (sample_data/, the tiny LM's own answers, generalise/,
helpdesk/) through the embedding backend, and the two with a model through the gradient backend,
each flagged by every rule side by side — text evidence (the default), defect groups (the rule
before it), pairs alone — with precision, recall, recall by defect kind and hard negatives
flagged. The simulated worlds above carry no answer or reference texts, so text evidence cannot
run there and they measure the citation rules only. Prints one JSON line (each sample row also
on stderr as it finishes).
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


def grouped_world(rng: np.random.Generator, n_items: int = 400, n_defects: int = 8, n_singles: int = 6,
                  bad_rate: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, set[str]]:
    """A world with texts: defects worded 3 ways, single culprits, look-alikes, everyday pairs."""
    n_bad = int(n_items * bad_rate)
    ids = [f"e{i}" for i in range(n_items)]
    questions = {e: f"Something about Topic{i % 150}?" for i, e in enumerate(ids)}
    verdict = dict(zip(ids, ["bad"] * n_bad + ["good"] * (n_items - n_bad)))
    pairs = [(f"p{j}", f"What about Topic{j}?", f"Topic{j} is fine at {j} units.") for j in range(150)]
    pairs += [(f"q{j}", f"Tell me about Topic{j}.", f"Topic{j} runs for {j + 1} hours.") for j in range(150)]
    wordings = [("How big is Item{k}?", "Item{k} holds {v} units."),
                ("What is the size of Item{k}?", "The size of Item{k} is {v} units."),
                ("Item{k} capacity?", "You can fit {v} units in Item{k}.")]
    culprits: set[str] = set()
    rows: list[tuple[str, str, str]] = []
    bad_pool = list(rng.permutation(ids[:n_bad]))
    for k in range(n_defects + n_singles):
        value = int(rng.integers(10, 99))
        members = []
        for w, (q, a) in enumerate(wordings if k < n_defects else wordings[:1]):
            pid = f"c{k}-{w}"
            pairs.append((pid, q.format(k=k), a.format(k=k, v=value)))
            members.append(pid)
            culprits.add(pid)
        pairs.append((f"x{k}", f"How big is Item{k}X?", f"Item{k}X holds {value + 7} units."))
        for _ in range(int(rng.integers(3, 8))):
            if not bad_pool:
                break
            victim = bad_pool.pop()
            questions[victim] = f"Tell me the size of Item{k}, please."
            for pid in rng.choice(members, size=min(len(members), int(rng.integers(1, 3))), replace=False):
                rows.append((victim, str(pid), "high"))
            rows.append((victim, f"x{k}", "medium"))          # confused with the look-alike
        for _ in range(int(rng.poisson(1.0))):                # good answers about the look-alike
            good = str(rng.choice(ids[n_bad:]))
            questions[good] = f"How big is Item{k}X, please?"
            rows.append((good, f"x{k}", "high"))
    for item in ids:                                          # everyday citations, verdict-blind
        for j in rng.integers(0, 300, size=int(rng.poisson(3))):
            rows.append((item, f"p{int(j)}" if j < 150 else f"q{int(j) - 150}", "low"))
    items = pd.DataFrame({"eval_id": ids, "question": [questions[e] for e in ids],
                          "verdict": [verdict[e] for e in ids]})
    return (items, pd.DataFrame(rows, columns=["eval_id", "pair_id", "influence_level"]),
            pd.DataFrame(pairs, columns=["pair_id", "question", "answer"]), culprits)


def grouped(worlds: int, seed: int) -> dict:
    """Precision/recall at the default thresholds, with and without defect groups."""
    rng = np.random.default_rng(seed)
    out = {}
    generated = [grouped_world(rng) for _ in range(worlds)]
    for name, settings in (("defect_groups", FlagSettings()), ("pairs_alone", FlagSettings(defect_groups=False))):
        hits = flagged_total = culprits_total = look_alikes = 0
        for items, cites, pairs, culprits in generated:
            stats, _, _ = flag_statistics(items, cites, settings, pairs)
            flagged = set(stats.index[stats["flagged"]])
            hits += len(flagged & culprits)
            flagged_total += len(flagged)
            culprits_total += len(culprits)
            look_alikes += sum(p.startswith("x") for p in flagged)
        out[name] = {"precision": round(hits / flagged_total, 3) if flagged_total else None,
                     "recall": round(hits / culprits_total, 3), "look_alikes_flagged": look_alikes}
    return out


RULES = (("evidence", FlagSettings()),                                  # text evidence (default)
         ("defect_groups", FlagSettings(evidence=False)),                # the rule before it
         ("pairs_alone", FlagSettings(evidence=False, defect_groups=False)))


def _samples() -> list[tuple[str, list[str], Path, set, set, dict]]:
    """(name, train, eval, planted (file name, line), hard negatives, truth kind by line)."""
    sample, gen, desk = ROOT / "sample_data", ROOT / "sample_data" / "generalise", ROOT / "sample_data" / "helpdesk"
    planted = json.loads((sample / "planted.json").read_text())["planted_pairs"]
    tiny = json.loads((sample / "eval_tiny_lm.truth.json").read_text())["planted_pairs"]
    gtruth = json.loads((gen / "truth.json").read_text())
    dtruth = json.loads((desk / "truth.json").read_text())
    train = sorted(str(p) for p in (sample / "train").glob("*.jsonl"))
    return [
        ("sample_data", train, sample / "eval.jsonl", {(Path(p["file"]).name, p["line"]) for p in planted}, set(),
         {(Path(p["file"]).name, p["line"]): p["kind"] for p in planted}),
        ("tiny_lm_answers", train, sample / "eval_tiny_lm.jsonl", {(Path(p["file"]).name, p["line"]) for p in tiny},
         set(), {(Path(p["file"]).name, p["line"]): p["kind"] for p in tiny}),
        ("generalise", [str(gen / "train.jsonl")], gen / "eval.jsonl",
         {("train.jsonl", line) for g in gtruth["groups"] for line in g["lines"]},
         {("train.jsonl", line) for lines in gtruth["hard_negatives"].values() for line in lines},
         {("train.jsonl", line): g["kind"] for g in gtruth["groups"] for line in g["lines"]}),
        ("helpdesk", [str(desk / "train.jsonl")], desk / "eval.jsonl",
         {("train.jsonl", p["line"]) for p in dtruth["planted_pairs"]},
         {("train.jsonl", line) for line in dtruth["hard_negatives"]},
         {("train.jsonl", p["line"]): p["kind"] for p in dtruth["planted_pairs"]}),
    ]


def samples_check(gradient: bool = True) -> list[dict]:
    """Every real sample through the embedding backend (and the generalising and tiny-LM ones
    through the gradient backend, on their own models), every rule side by side: one row each."""
    from refine import CollectSettings, collect, flag

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, train, eval_path, planted, hard, kinds in _samples():
            backends = [("embedding", CollectSettings())]
            model = {"generalise": ROOT / "sample_data" / "generalise" / "tiny_lm",
                     "tiny_lm_answers": ROOT / "sample_data" / "tiny_lm"}.get(name)
            if gradient and model is not None:
                backends.append(("gradient", CollectSettings(backend="gradient", backend_options={
                    "model": str(model), "projection_dim": 4096, "measurement": "margin",
                    "preconditioner": "layerwise"})))
            for backend, settings in backends:
                run = Path(tmp) / f"{name}-{backend}"
                collect(train, str(eval_path), run, settings, progress=False)
                for label, rule in RULES:
                    flagged = {(Path(r.file).name, r.line) for r in flag(run, rule).flagged_pairs.itertuples()}
                    hits = flagged & planted
                    by_kind: dict[str, list[int]] = {}
                    for pair, kind in kinds.items():
                        by_kind.setdefault(kind, [0, 0])[1] += 1
                        by_kind[kind][0] += pair in flagged
                    rows.append({"sample": name, "backend": backend, "rule": label, "planted": len(planted),
                                 "flagged": len(flagged), "hits": len(hits),
                                 "precision": round(len(hits) / len(flagged), 3) if flagged else None,
                                 "recall": round(len(hits) / len(planted), 3),
                                 "hard_negatives_flagged": len(flagged & hard),
                                 "recall_by_kind": {k: round(h / n, 3) for k, (h, n) in sorted(by_kind.items())}})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def sample_check() -> dict:
    from refine import load_recipe, run_recipe

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                             [f"run_dir={tmp}/run", f"emit.out={tmp}/refined"])
        result = run_recipe(recipe, progress=False)
        # Read before the temporary run directory goes.
        flagged = {(Path(r.file).name, r.line) for r in result.flag.flagged_pairs.itertuples()}
    planted = json.loads((ROOT / "sample_data" / "planted.json").read_text())["planted_pairs"]
    expected = {(Path(p["file"]).name, p["line"]) for p in planted}
    return {"planted": len(expected), "flagged": len(flagged), "hits": len(flagged & expected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--small", action="store_true", help="5 worlds, no sample-data run")
    parser.add_argument("--no-gradient", action="store_true", help="samples through the embedding backend only")
    args = parser.parse_args()
    grid = sweep(5 if args.small else args.worlds, args.seed)
    default = next(g for g in grid if g["min_bad"] == 2 and g["alpha"] == 0.1)
    result = {"bench": "flag_quality", "worlds": 5 if args.small else args.worlds,
              "default": default, "grid": grid,
              "defect_groups": grouped(5 if args.small else args.worlds, args.seed)}
    if not args.small:
        result["sample_data"] = sample_check()
        result["samples"] = samples_check(gradient=not args.no_gradient)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
