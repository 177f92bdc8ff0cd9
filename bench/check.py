"""Benchmark: `refine.checks.run_checks` with every check on over 200,000 training pairs.

    python bench/check.py            # 200,000 pairs (+ planted problems), target 60 s
    python bench/check.py --small    # 20,000 pairs, a quick sanity run

The training set is two chat JSONL files of synthetic pairs (bench/_synth.py) with problems
planted in known numbers: exact duplicates, near duplicates (one word added to a copy's
answer), conflicting answers (a copy's question with another pair's answer), invalid lines and
very long answers. The eval set holds fresh questions plus copied and slightly changed
training questions; the baseline is the full set before 1% of its pairs were dropped; the run
directory holds a flags.csv flagging pairs of which some are still present.

Only `run_checks` is timed (loading included); the figures are checked against what was
planted, so a fast but blind check cannot pass. Prints one JSON line on stdout; progress goes
to stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import chat_record, log, unique_pairs, write_jsonl  # noqa: E402

TARGET_S = 60


def build(root: Path, n_pairs: int, seed: int) -> dict:
    from refine.flagging import FLAG_COLUMNS
    from refine.text import pair_key

    rng = random.Random(seed)
    n_dropped = n_pairs // 100
    pairs = unique_pairs(n_pairs + n_dropped, seed)
    kept = pairs[:n_pairs]
    plant = {"exact": n_pairs // 400, "near": n_pairs // 800, "conflict": n_pairs // 1000,
             "invalid": 20, "long": 10, "leaked": 100, "leaked_near": 50, "flagged_present": 40}

    lines: list = [chat_record(*p) for p in kept]
    for i in rng.sample(range(n_pairs), plant["exact"]):
        lines.append(chat_record(*kept[i]))
    for i in rng.sample(range(n_pairs), plant["near"]):
        q, a, s = kept[i]
        lines.append(chat_record(q, a + " Thanks for asking, hope this helps.", s))
    for i in rng.sample(range(n_pairs), plant["conflict"]):
        q, _, s = kept[i]
        lines.append(chat_record(q, kept[(i + 1) % n_pairs][1], s))
    for i in range(plant["long"]):
        lines.append(chat_record(f"Tell me everything about topic {i}.",
                                 " ".join(["detail"] * 3000), None))
    rng.shuffle(lines)
    for _ in range(plant["invalid"]):
        lines.insert(rng.randrange(len(lines)), '{"messages": [{"role": "user"')
    half = len(lines) // 2
    train = [root / "train-a.jsonl", root / "train-b.jsonl"]
    for path, part in zip(train, (lines[:half], lines[half:])):
        with open(path, "w", encoding="utf-8") as fh:
            for record in part:  # an invalid line is a str, written as it is
                fh.write(record if isinstance(record, str) else json.dumps(record))
                fh.write("\n")

    baseline = root / "baseline.jsonl"
    write_jsonl(baseline, (chat_record(*p) for p in pairs))

    fresh = unique_pairs(900, seed + 1)
    eval_items = [{"id": f"fresh-{i}", "question": f"{q} (eval variant {i})"}
                  for i, (q, _, _) in enumerate(fresh)]
    for n, i in enumerate(rng.sample(range(n_pairs), plant["leaked"] + plant["leaked_near"])):
        question = kept[i][0] if n < plant["leaked"] else kept[i][0] + " Thanks."
        eval_items.append({"id": f"leak-{n}", "question": question})
    eval_path = root / "eval.jsonl"
    write_jsonl(eval_path, iter(eval_items))

    run = root / "run"
    run.mkdir()
    flagged = rng.sample(range(n_pairs), plant["flagged_present"])
    gone = range(n_pairs, n_pairs + n_dropped)
    with open(run / "flags.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, FLAG_COLUMNS)
        writer.writeheader()
        for i in [*flagged, *list(gone)[:60]]:
            q, a, _ = pairs[i]
            row = {c: "" for c in FLAG_COLUMNS}
            row.update(pair_id=pair_key(q, a), file=str(baseline), line=i + 1, question=q,
                       answer=a, flagged="True")
            writer.writerow(row)
    return {"train": [str(p) for p in train], "eval": str(eval_path), "baseline": str(baseline),
            "run": str(run), "plant": plant, "lines": len(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n_pairs = 20_000 if args.small else 200_000

    with stdout_to_stderr(), tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        data = build(Path(tmp), n_pairs, args.seed)
        log(f"built {data['lines']:,} lines in {time.perf_counter() - started:.1f}s")

        from refine.checks import run_checks

        started = time.perf_counter()
        report = run_checks(data["train"], eval_path=data["eval"], baseline=data["baseline"],
                            flags_run=data["run"])
        seconds = time.perf_counter() - started
        log(report.to_table(max_findings=3))

    plant = data["plant"]
    counts = {r.name: r.n_findings for r in report.results}
    info = {r.name: r.info for r in report.results}
    caught = {
        "invalid": counts["format_validity"] == plant["invalid"],
        "exact": info["exact_duplicates"]["extra_lines"] >= plant["exact"],
        "near": counts["near_duplicates"] >= plant["near"],
        "conflict": counts["conflicting_answers"] >= plant["conflict"],
        "leaked": {f"leak-{n}" for n in range(plant["leaked"] + plant["leaked_near"])}
                  <= {f["eval_id"] for f in report.result("eval_leakage").findings},
        "flagged_present": info["flagged_present"]["present"] == plant["flagged_present"],
        "size_guard_passes": report.result("size_guard").passed,
        "long": counts["length_outliers"] >= plant["long"],
    }
    emit_json({
        "bench": "check",
        "pairs": n_pairs,
        "lines": data["lines"],
        "seconds": round(seconds, 2),
        "load_seconds": round(report.load_seconds, 2),
        "per_check_seconds": {r.name: round(r.seconds, 2) for r in report.results},
        "findings": counts,
        "planted_caught": all(caught.values()),
        "missed": sorted(k for k, ok in caught.items() if not ok),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "target_s": TARGET_S,
    })


if __name__ == "__main__":
    main()
