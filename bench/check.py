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
import re
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
    from refine.stages.flagging import FLAG_COLUMNS
    from refine.core.rundir import FLAGS_CSV, FLAGS_JSON, RunDir
    from refine.core.text import pair_key

    rng = random.Random(seed)
    n_dropped = n_pairs // 100
    # Every question made unique by an id of its own, so that the data holds no duplicate,
    # conflict or leak but the planted ones (templated questions repeat otherwise) and the
    # found counts can be held to the planted counts exactly.
    # Templated pairs can also differ in nothing but their numbers: one of each such group only.
    distinct, seen = [], set()
    for q, a, s in unique_pairs(2 * (n_pairs + n_dropped), seed):
        shape = re.sub(r"\d+", "#", f"{q}\x1f{a}")
        if shape not in seen:
            seen.add(shape)
            distinct.append((q, a, s))
    pairs = [(f"{q} (ref T{i})", a, s) for i, (q, a, s) in enumerate(distinct[:n_pairs + n_dropped])]
    kept = pairs[:n_pairs]
    plant = {"exact": n_pairs // 400, "near": n_pairs // 800, "conflict": n_pairs // 1000,
             "invalid": 20, "long": 10, "leaked": 100, "leaked_near": 50, "flagged_present": 40}

    lines: list = [chat_record(*p) for p in kept]
    for i in rng.sample(range(n_pairs), plant["exact"]):
        lines.append(chat_record(*kept[i]))
    for i in rng.sample(range(n_pairs), plant["near"]):
        # One word more, and the question's punctuation changed: not the same normalised question,
        # or it would be a conflicting answer too (a short answer plus a sentence is another text).
        q, a, s = kept[i]
        lines.append(chat_record(q + "?", a + " Thanks.", s))
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

    # Questions no training question is near (templated ones would be: one slot word apart).
    words = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo",
             "jasper", "kelp", "lagoon", "meadow", "nectar", "opal", "prairie", "quartz", "reef"]
    eval_items = [{"id": f"fresh-{i}", "question": f"Eval question {i}: " + " ".join(rng.sample(words, 6)) + "?"}
                  for i in range(900)]
    for n, i in enumerate(rng.sample(range(n_pairs), plant["leaked"] + plant["leaked_near"])):
        question = kept[i][0] if n < plant["leaked"] else kept[i][0] + " Thanks."
        eval_items.append({"id": f"leak-{n}", "question": question})
    eval_path = root / "eval.jsonl"
    write_jsonl(eval_path, iter(eval_items))

    run = RunDir(root / "run")
    flagged = rng.sample(range(n_pairs), plant["flagged_present"])
    gone = range(n_pairs, n_pairs + n_dropped)
    # A run directory whose flag stage holds these flags (the check reads nothing else of it).
    with run.stage("collect", {}):
        pass
    with run.stage("flag", {}) as stage:
        with open(stage.path(FLAGS_CSV), "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, FLAG_COLUMNS)
            writer.writeheader()
            for i in [*flagged, *list(gone)[:60]]:
                q, a, _ = pairs[i]
                row = {c: "" for c in FLAG_COLUMNS}
                row.update(pair_id=pair_key(q, a), file=str(baseline), line=i + 1, question=q,
                           answer=a, flagged="True")
                writer.writerow(row)
        stage.path(FLAGS_JSON).write_text("{}\n", encoding="utf-8")
    run = run.path
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
    # Found against planted, exactly: a check that reports more than was planted is as wrong
    # as one that misses some (the data holds nothing else of each kind).
    leaked = {f["eval_id"] for f in report.result("eval_leakage").findings}
    found = {
        "invalid": (counts["format_validity"], plant["invalid"]),
        "exact": (info["exact_duplicates"]["extra_lines"], plant["exact"]),
        "near": (counts["near_duplicates"], plant["near"]),
        "conflict": (counts["conflicting_answers"], plant["conflict"]),
        "leaked": (len(leaked), plant["leaked"] + plant["leaked_near"]),
        "flagged_present": (info["flagged_present"]["present"], plant["flagged_present"]),
        "long": (counts["length_outliers"], plant["long"]),
    }
    caught = {name: got == want for name, (got, want) in found.items()}
    caught["leaked"] = leaked == {f"leak-{n}" for n in range(plant["leaked"] + plant["leaked_near"])}
    caught["size_guard_passes"] = report.result("size_guard").passed
    emit_json({
        "bench": "check",
        "pairs": n_pairs,
        "lines": data["lines"],
        "seconds": round(seconds, 2),
        "load_seconds": round(report.load_seconds, 2),
        "per_check_seconds": {r.name: round(r.seconds, 2) for r in report.results},
        "findings": counts,
        "found_vs_planted": {name: list(pair) for name, pair in found.items()},
        "planted_caught_exactly": all(caught.values()),
        "missed": sorted(k for k, ok in caught.items() if not ok),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "target_s": TARGET_S,
    })


if __name__ == "__main__":
    main()
