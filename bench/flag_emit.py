"""Benchmark: `refine.flag` and `refine.emit` on a large synthetic run directory.

    python bench/flag_emit.py           # 1,000,000 attribution rows over 200,000 pairs
    python bench/flag_emit.py --small   # 50,000 rows over 10,000 pairs, a quick sanity run

No embedding model runs. The run directory is written the way `refine.collect` writes it, by
`refine.stages.collection.write_collection`: a chat JSONL training file is written and read back
with `refine.load_training`, and the settings record (with the training file's real sha256 and
format), pairs.parquet, items.parquet and attributions.parquet come from that training set and a
journal of `Attribution` records. (No journal.jsonl is written: flag and emit do not read it.)

Citations: ~100,000 eval items each cite 10 distinct pairs drawn with Zipf-like popularity
(rank 1-2 high, 3-5 medium, 6-10 low); ~20% of items are bad; ~200 planted pairs are cited
mostly by bad items (a bad item cites one with probability 0.15, a good one with 0.004).

`flag` and `emit` each run in a fresh subprocess (`--worker`), timed there around the call
alone, with peak RSS read at the end (VmHWM of /proc/self/status: the whole subprocess,
imports included; `emit_baseline_rss_mb` is the same figure taken just before the call), so that building the data does not
pollute either figure. The same is done for a second run whose training file holds the same
number of pairs, with the same citation structure, but much longer answers (~5x the file
bytes), to show whether emit's memory grows with the training file.

Text evidence (what collect's :mod:`refine.stages.flagging.evidence` writes) is synthesised with the same
citation structure (``write_evidence``): flag runs the text-evidence rule (the default), and
again with the citation rule (defect groups) in its own subprocess, side by side.

Prints one JSON line of figures on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _out import emit_json, peak_rss_mb, run_worker, stdout_to_stderr  # noqa: E402
from _synth import chat_record, log, unique_pairs, variant_answer, write_jsonl  # noqa: E402

TOP_K = 10
LEVELS = ["high", "high", "medium", "medium", "medium", "low", "low", "low", "low", "low"]


# --- the citation structure (pair indices), shared by both runs ------------------------------
def make_citations(n_pairs: int, n_items: int, n_planted: int, seed: int):
    """(cites: n_items x TOP_K pair indices, bad: bool per item, planted: pair indices)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # Zipf-like popularity over a random order of the pairs.
    rank_of = rng.permutation(n_pairs)
    weights = 1.0 / (rank_of + 20.0) ** 0.9
    weights /= weights.sum()
    # Planted pairs: random pairs outside the 1% most popular.
    candidates = np.flatnonzero(rank_of >= n_pairs // 100)
    planted = rng.choice(candidates, size=n_planted, replace=False)
    bad = rng.random(n_items) < 0.2

    draws = rng.choice(n_pairs, size=(n_items, TOP_K + 8), p=weights)
    cites = np.empty((n_items, TOP_K), dtype=np.int64)
    for row in range(n_items):
        unique = list(dict.fromkeys(draws[row].tolist()))
        while len(unique) < TOP_K:  # rare: too many repeats among the draws
            extra = int(rng.choice(n_pairs, p=weights))
            if extra not in unique:
                unique.append(extra)
        cites[row] = unique[:TOP_K]
    # Plant: the item's top citation becomes a planted pair.
    p_plant = np.where(bad, 0.15, 0.004)
    plant_rows = np.flatnonzero(rng.random(n_items) < p_plant)
    picks = rng.choice(planted, size=plant_rows.size)
    for row, pick in zip(plant_rows.tolist(), picks.tolist()):
        if pick not in cites[row]:
            cites[row, 1:] = cites[row, :-1].copy()
            cites[row, 0] = pick
    return cites, bad, planted


# --- one run directory -----------------------------------------------------------------------
def build_run(root: Path, name: str, pair_texts, cites, bad, planted, seed: int) -> tuple[Path, Path]:
    import numpy as np

    from refine import CollectSettings, load_eval, load_training
    from refine.core.text import qa_text
    from refine.formats.records import Attribution, Influence
    from refine.stages.collection import write_collection

    t0 = time.perf_counter()
    train = root / f"train-{name}.jsonl"
    write_jsonl(train, (chat_record(q, a, s) for q, a, s in pair_texts))
    training = load_training([str(train)])
    unique = training.unique_pairs()
    assert len(unique) == len(pair_texts), "pairs must be unique"
    log(f"[{name}] training file {train.stat().st_size / 1e6:.1f} MB written and loaded "
        f"in {time.perf_counter() - t0:.1f}s")

    t = time.perf_counter()
    rng = random.Random(seed)
    n_items = cites.shape[0]
    evalf = root / f"eval-{name}.jsonl"
    write_jsonl(evalf, ({"id": f"ev-{i:06d}", "question": unique[int(cites[i, 0])].question,
                         "answer": variant_answer(rng, unique[int(cites[i, 0])].answer, bool(bad[i])),
                         "verdict": "bad" if bad[i] else "good"} for i in range(n_items)))
    evalset = load_eval(str(evalf))
    log(f"[{name}] {n_items} eval items written and loaded in {time.perf_counter() - t:.1f}s")

    t = time.perf_counter()
    score_rng = np.random.default_rng(seed)
    scores = np.round(0.92 - 0.03 * np.arange(TOP_K) - 0.02 * score_rng.random((n_items, TOP_K)), 6)
    messages = [qa_text(p.question, p.answer) for p in unique]
    version = "refine-bench-synthetic"
    journal = {}
    for i, item in enumerate(evalset.items):
        row, srow = cites[i].tolist(), scores[i].tolist()
        journal[item.id] = Attribution(
            item.id,
            [Influence(pair_id=unique[j].pair_id, influence_level=LEVELS[r], score=srow[r],
                       file_id=unique[j].file_id, messages=messages[j])
             for r, j in enumerate(row)],
            answer=item.answer, version=version)
    log(f"[{name}] {n_items * TOP_K} Attribution influences built in {time.perf_counter() - t:.1f}s")

    t = time.perf_counter()
    settings = CollectSettings(backend="synthetic-bench", top_k=TOP_K)
    backend = {"backend": "synthetic-bench", "options": {"seed": seed}, "model_fingerprint": None}
    run = root / f"run-{name}"
    with write_collection(run, training, str(evalf), backend, settings, records=journal) as stage:
        write_evidence(stage, [p.pair_id for p in unique], [i.id for i in evalset.items], cites, bad, planted, seed)
    log(f"[{name}] run dir finalized in {time.perf_counter() - t:.1f}s")
    return run, train


def write_evidence(stage, pair_ids: list[str], eval_ids: list[str], cites, bad, planted, seed: int) -> None:
    """The text evidence collect would gather, synthesised with the same citation structure:
    a planted pair's claim is repeated against the reference by the bad items citing it at rank 1
    (and shared by no other answer); other pairs' citations say what the reference says about half the time (good answers repeat it,
    references state it); the rest share too little to be kept. Planted claims are linked in
    triples (a defect worded three ways)."""
    import numpy as np
    import pyarrow as pa

    from refine.core._atomic import write_parquet
    from refine.core.lineage import CLAIM_LINKS, CLAIMS, EVIDENCE

    rng = np.random.default_rng(seed + 1)
    n_items, k = cites.shape
    item = np.repeat(np.arange(n_items), k)
    pair = cites.ravel()
    rank = np.tile(np.arange(k), n_items)
    is_bad = bad[item]
    wrong = np.isin(pair, planted)
    culprit = wrong & (rank == 0) & is_bad & (rng.random(item.size) < 0.9)
    agree = ~wrong & (rng.random(item.size) < 0.5)
    keep = culprit | agree
    item, pair, culprit = item[keep], pair[keep], culprit[keep]
    n = item.size
    repeat = np.where(culprit, 0.9, np.where(is_bad[keep], 0.55, 0.85)).astype(np.float32)
    support = np.where(culprit, 0.2, 0.8).astype(np.float32)
    ids = np.asarray(pair_ids, dtype=object)
    rows = pa.table({"eval_id": pa.array(np.asarray(eval_ids, dtype=object)[item], pa.string()),
                     "pair_id": pa.array(ids[pair], pa.string()), "claim": pa.array(np.zeros(n, np.int32)),
                     "via": pa.array(np.full(n, "cited", dtype=object), pa.string()),
                     "referenced": pa.array(np.ones(n, bool)),
                     "repeat": repeat, "repeat_no_subject": repeat, "repeat_words": np.full(n, 0.8, np.float32),
                     "support": support, "support_no_subject": support,
                     "support_words": np.full(n, 0.8, np.float32), "contradict": np.zeros(n, np.float32),
                     "same_question": np.ones(n, np.float32)})
    write_parquet(stage.path(EVIDENCE), rows)
    claimed = np.unique(pair[culprit])
    write_parquet(stage.path(CLAIMS), pa.table({"pair_id": pa.array(ids[claimed], pa.string()),
                                               "claim": pa.array(np.zeros(claimed.size, np.int32)),
                                               "text": pa.array([f"claim of {p}" for p in ids[claimed]], pa.string())}))
    # Links within triples of claims (a defect worded three ways), not one chain of them all.
    a = claimed[: claimed.size // 3 * 3].reshape(-1, 3)
    a, b = a[:, [0, 1, 2]].ravel(), a[:, [1, 2, 0]].ravel()
    write_parquet(stage.path(CLAIM_LINKS), pa.table({
        "pair_id": pa.array(ids[a], pa.string()), "claim": pa.array(np.zeros(a.size, np.int32)),
        "other_pair_id": pa.array(ids[b], pa.string()), "other_claim": pa.array(np.zeros(a.size, np.int32)),
        "similarity": np.full(a.size, 0.6), "similarity_no_subject": np.full(a.size, 0.6),
        "shared_words": np.full(a.size, 0.6), "numbered": np.zeros(a.size, bool)}))


# --- subprocess workers ----------------------------------------------------------------------
def worker(argv: list[str]) -> None:
    with stdout_to_stderr():
        import pandas  # noqa: F401  (libraries both verbs use, so the baseline includes them)
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        import refine

        baseline = peak_rss_mb()
        verb = argv[0]
        t = time.perf_counter()
        if verb in ("flag", "flag-citations"):
            settings = refine.FlagSettings(evidence=verb == "flag")
            result = refine.flag(argv[1], settings)
            extra = {"flagged": result.flagged, "cited_pairs": len(result.table),
                     "items": result.items, "bad_items": result.bad_items}
        elif verb == "emit":
            result = refine.emit(argv[1], argv[2])
            extra = {"records_in": result.records_in, "records_out": result.records_out,
                     "removed": result.removed}
        else:
            raise SystemExit(f"unknown worker verb {verb!r}")
        seconds = time.perf_counter() - t
        figures = {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline, **extra}
    emit_json(figures)


# --- main ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="10,000 pairs, 5,000 items")
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--long-factor", type=int, default=10,
                        help="answer length multiplier of the long-answers run (default 10: "
                             "about 5x the training file's bytes)")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    n_pairs, n_items, n_planted = (10_000, 5_000, 20) if args.small else (200_000, 100_000, 200)

    started = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="refine-bench-flag-") as tmp, stdout_to_stderr():
        if load_start > 0.5:
            log(f"warning: 1-minute load average is {load_start} before starting; "
                "other processes on this machine will slow the timings down")
        root = Path(tmp)
        os.environ["REFINE_CACHE_DIR"] = str(root / "cache")  # nothing here embeds; belt and braces

        t = time.perf_counter()
        cites, bad, planted = make_citations(n_pairs, n_items, n_planted, args.seed)
        log(f"citations: {cites.size} rows over {n_pairs} pairs, {int(bad.sum())} bad items, "
            f"{n_planted} planted, in {time.perf_counter() - t:.1f}s")

        runs = {}
        for name, factor in (("normal", 1), ("long", args.long_factor)):
            t = time.perf_counter()
            texts = unique_pairs(n_pairs, args.seed, answer_factor=factor)
            log(f"[{name}] {n_pairs} pairs generated in {time.perf_counter() - t:.1f}s")
            runs[name] = build_run(root, name, texts, cites, bad, planted, args.seed)
            if name == "normal":
                from refine.core.text import pair_key
                planted_ids = {pair_key(texts[j][0], texts[j][1]) for j in planted.tolist()}
            del texts
            gc.collect()

        results = {}
        for name, (run, train) in runs.items():
            log(f"[{name}] flag ...")
            # The citation rule first: the text-evidence rule's flags.csv is the one emit and the
            # recall below read.
            results[f"flag_citations_{name}"] = run_worker(__file__, "flag-citations", str(run))
            log(f"[{name}] flag with the citation rule (defect groups): {results[f'flag_citations_{name}']}")
            results[f"flag_{name}"] = run_worker(__file__, "flag", str(run))
            log(f"[{name}] flag: {results[f'flag_{name}']}")
            log(f"[{name}] emit ...")
            results[f"emit_{name}"] = run_worker(__file__, "emit", str(run), str(root / f"out-{name}" / train.name))
            log(f"[{name}] emit: {results[f'emit_{name}']}")

        import pyarrow.parquet as pq

        from refine import read_flags

        flags = read_flags(runs["normal"][0])
        flagged_ids = set(flags.loc[flags["flagged"], "pair_id"])
        n_rows = pq.ParquetFile(runs["normal"][0] / "attributions.parquet").metadata.num_rows
        train_mb = runs["normal"][1].stat().st_size / 1e6
        train_mb_long = runs["long"][1].stat().st_size / 1e6
        fn, en = results["flag_normal"], results["emit_normal"]
        fl, el = results["flag_long"], results["emit_long"]
        figures = {
            "bench": "flag_emit",
            "attribution_rows": n_rows,
            "pairs": n_pairs,
            "eval_items": n_items,
            "flag_s": round(fn["seconds"], 3),
            "emit_s": round(en["seconds"], 3),
            "emit_peak_rss_mb": round(en["peak_rss_mb"], 1),
            "emit_peak_rss_mb_long_answers": round(el["peak_rss_mb"], 1),
            "emit_baseline_rss_mb": round(en["baseline_rss_mb"], 1),
            "train_mb": round(train_mb, 1),
            "train_mb_long_answers": round(train_mb_long, 1),
            "flagged": fn["flagged"],
            "planted": len(planted_ids),
            "planted_recall": round(len(flagged_ids & planted_ids) / len(planted_ids), 4),
            "flagged_not_planted": len(flagged_ids - planted_ids),
            "bad_items": fn["bad_items"],
            "cited_pairs": fn["cited_pairs"],
            "removed_lines": en["removed"],
            "flag_peak_rss_mb": round(fn["peak_rss_mb"], 1),
            "evidence_rows": pq.ParquetFile(runs["normal"][0] / "evidence.parquet").metadata.num_rows,
            "flagged_citation_rule": results["flag_citations_normal"]["flagged"],
            "flag_s_citation_rule": round(results["flag_citations_normal"]["seconds"], 3),
            "flag_peak_rss_mb_citation_rule": round(results["flag_citations_normal"]["peak_rss_mb"], 1),
            "flag_s_citation_rule_long_answers": round(results["flag_citations_long"]["seconds"], 3),
            "flag_s_long_answers": round(fl["seconds"], 3),
            "emit_s_long_answers": round(el["seconds"], 3),
            "flag_peak_rss_mb_long_answers": round(fl["peak_rss_mb"], 1),
            "flagged_long_answers": fl["flagged"],
            "targets": {"flag_s": 10, "emit_s": 10},
            "total_s": round(time.perf_counter() - started, 1),
            "loadavg_1m": [load_start, round(os.getloadavg()[0], 2)],
            "small": args.small,
        }
    emit_json(figures)


if __name__ == "__main__":
    main()
