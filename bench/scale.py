"""Benchmark: how collection scales — cost growth in N, Ray's overhead, gradients on Ray.

    python bench/scale.py               # the issue's sizes: 25k→200k pairs × 2,000 items (hours on 2 cores)
    python bench/scale.py --scale 0.1   # 2.5k→20k pairs × 2,000 items (~20 min on 2 cores)

Every measurement runs in its own subprocess with its own empty embedding cache (every run is
cold: it encodes what it scores), so each peak RSS (VmHWM) is that run's own:

1. growth — embedding collect, in-process, at N, 2N, 4N, 8N pairs × the same eval items:
   seconds and the driver's peak RSS per N; time(8N)/time(N) (8 when linear).
2. ray_overhead — embedding collect at two sizes, in-process with 2 torch threads against Ray
   with 2 single-CPU workers (1 torch thread each: Ray sets it from num_cpus) on a local cluster
   started before the clock runs (its start is reported apart); the driver scores with 2 BLAS
   threads in both. Peak RSS of each Ray worker at both sizes (flat when a worker holds only the
   model and one chunk).
3. gradient — the gradient backend (sample_data/tiny_lm, default settings) on synthetic pairs,
   in-process (2 torch + 2 BLAS threads) against Ray (2 workers × 1 thread); the two feature
   matrices compared byte for byte.

Prints one JSON line of figures on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import chat_record, log, unique_pairs, variant_answer, write_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2


def _vmhwm_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_eval(path: Path, pairs: list, n_eval: int, seed: int) -> None:
    """Eval items about the first pairs (present at every size), 20% with a wrong detail, 10%
    about nothing in training."""
    rng = random.Random(seed)
    unseen = unique_pairs(n_eval, seed + 99)
    items = []
    for i in range(n_eval):
        question, base, _ = unseen[i] if rng.random() < 0.1 else pairs[rng.randrange(len(pairs))]
        bad = rng.random() < 0.2
        items.append({"id": f"ev-{i:05d}", "question": question,
                      "answer": variant_answer(rng, base, bad) + " (as said)",
                      "verdict": "bad" if bad else "good"})
    write_jsonl(path, iter(items))


# --- one measurement per subprocess ----------------------------------------------------------
def _limits():
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(THREADS)
    return threadpool_limits(THREADS)


def _collect_timed(train: str, evalf: str, out: Path, backend: str, options: dict,
                   executor_config: dict | None) -> dict:
    """One cold collect; with Ray, the cluster is started first and the workers' peak RSS read
    before they go."""
    import refine
    from refine import collection
    from refine.executors import make_executor

    figures: dict = {}
    executor = None
    if executor_config:
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=THREADS, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)
        figures["ray_start_s"] = round(time.perf_counter() - t, 2)
        executor = make_executor(executor_config)
        close, executor.close = executor.close, lambda: None
        collection.make_executor = lambda config: executor
    settings = refine.CollectSettings(backend=backend, backend_options=options)
    t = time.perf_counter()
    refine.collect([train], evalf, out, settings, progress=False)
    figures["seconds"] = round(time.perf_counter() - t, 2)
    if executor is not None:
        figures["worker_peak_rss_mb"] = [round(_vmhwm_mb(pid)) for pid in executor.worker_pids()]
        close()
    figures["driver_peak_rss_mb"] = round(_vmhwm_mb())
    return figures


def child(argv: list[str]) -> None:
    kind, backend, train, evalf, out, cache = argv[:6]
    os.environ["REFINE_CACHE_DIR"] = cache
    with stdout_to_stderr() as real_stdout:
        limits = _limits()
        options: dict = {"cache_dir": cache}
        if backend == "gradient":
            options.update(model=str(ROOT / "sample_data" / "tiny_lm"))
        config = {"kind": "ray", "workers": THREADS, "resources": {"CPU": 1}} if kind == "ray" else None
        figures = _collect_timed(train, evalf, Path(out), backend, options, config)
        del limits
        os.write(real_stdout, (json.dumps(figures) + "\n").encode())


def _run_child(kind: str, backend: str, train: Path, evalf: Path, root: Path, label: str) -> dict:
    cache = root / f"cache-{label}"
    log(f"[{label}] {kind} {backend} collect of {train.name} ...")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, __file__, "--child", kind, backend, str(train), str(evalf),
                           str(root / f"run-{label}"), str(cache)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        log(done.stderr[-3000:])
        raise SystemExit(f"[{label}] failed with exit code {done.returncode}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["cache"] = str(cache)
    log(f"[{label}] {figures}")
    return figures


def _linear_fit(seconds: dict[int, float]) -> dict:
    """time = fixed + per_pair·N by least squares: the fixed part is the eval items' own cost
    (encoding their texts), which time(8N)/time(N) mixes in; linear growth shows as small
    residuals and a marginal ratio (t(8N) − t(N)) / (t(2N) − t(N)) of 7."""
    import numpy as np

    n = np.array(sorted(seconds), dtype=float)
    t = np.array([seconds[int(k)] for k in n])
    per_pair, fixed = np.polyfit(n, t, 1)
    residual = np.abs(t - (fixed + per_pair * n)) / t
    sizes = sorted(seconds)
    return {"fit_fixed_s": round(float(fixed), 2), "fit_per_1000_pairs_s": round(float(per_pair) * 1000, 3),
            "fit_max_rel_residual": round(float(residual.max()), 3),
            "marginal_ratio_8x": round((seconds[sizes[-1]] - seconds[sizes[0]])
                                       / max(seconds[sizes[1]] - seconds[sizes[0]], 1e-9), 2),
            "marginal_target": 7}


def _agreement(run_a: Path, run_b: Path, features_a: Path, features_b: Path) -> dict:
    """How far two runs' feature matrices and citations are apart. Identical bytes need the same
    torch thread count in both (a matrix product sums in another order on another count)."""
    import numpy as np
    import pyarrow.parquet as pq

    a, b = np.load(features_a), np.load(features_b)
    cited = []
    for run in (run_a, run_b):
        table = pq.read_table(run / "attributions.parquet", columns=["eval_id", "rank", "pair_id"]).to_pandas()
        cited.append(table.sort_values(["eval_id", "rank"]).groupby("eval_id")["pair_id"].apply(list).to_dict())
    items = sorted(set(cited[0]) | set(cited[1]))
    same_list = sum(cited[0].get(i) == cited[1].get(i) for i in items)
    same_top = sum((cited[0].get(i) or [None])[0] == (cited[1].get(i) or [None])[0] for i in items)
    return {"features_identical": bool(a.tobytes() == b.tobytes()),
            "features_max_rel_diff": float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-30)),
            "items_same_citations": round(same_list / max(len(items), 1), 3),
            "items_same_top1": round(same_top / max(len(items), 1), 3)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="pair counts × this (eval items stay 2,000); 1.0 = 25k→200k")
    parser.add_argument("--eval-items", type=int, default=2000)
    parser.add_argument("--gradient-pairs", type=int, default=20_000)
    parser.add_argument("--skip", action="append", default=[], choices=["growth", "ray", "gradient"])
    args = parser.parse_args()
    sizes = [int(25_000 * args.scale * f) for f in (1, 2, 4, 8)]
    gradient_pairs = int(args.gradient_pairs * args.scale)
    out: dict = {"bench": "scale", "threads": f"in-process: {THREADS} torch + {THREADS} BLAS threads; "
                 f"ray: {THREADS} workers × 1 CPU (1 torch thread), driver {THREADS} BLAS threads",
                 "scale": args.scale, "loadavg_1m": [round(os.getloadavg()[0], 2)]}
    with tempfile.TemporaryDirectory(prefix="refine-bench-scale-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        pairs = unique_pairs(max(sizes[-1], gradient_pairs), 1234)
        files = {}
        overhead_sizes = [sizes[0] // 4, sizes[0]]
        for n in sorted(set(sizes) | set(overhead_sizes) | {gradient_pairs}):
            files[n] = root / f"train-{n}.jsonl"
            write_jsonl(files[n], (chat_record(q, a, s) for q, a, s in pairs[:n]))
        evalf = root / "eval.jsonl"
        make_eval(evalf, pairs[:sizes[0]], args.eval_items, 7)
        log(f"inputs written in {time.perf_counter() - t:.1f}s")

        runs: dict = {}
        if "growth" not in args.skip:
            runs = {n: _run_child("inprocess", "embedding", files[n], evalf, root, f"growth-{n}") for n in sizes}
            out["growth"] = {
                "eval_items": args.eval_items,
                "seconds": {n: r["seconds"] for n, r in runs.items()},
                "peak_rss_mb": {n: r["driver_peak_rss_mb"] for n, r in runs.items()},
                "time_ratio_8x": round(runs[sizes[-1]]["seconds"] / runs[sizes[0]]["seconds"], 2),
                **_linear_fit({n: r["seconds"] for n, r in runs.items()}),
                "target": "8 ± 15% (6.8–9.2) where the per-pair cost dominates",
            }
        if "ray" not in args.skip:
            ray_out = {}
            for n in overhead_sizes:
                # The in-process run of the growth series at the same size is the same run.
                local = runs.get(n) or _run_child("inprocess", "embedding", files[n], evalf, root, f"growth-{n}")
                remote = _run_child("ray", "embedding", files[n], evalf, root, f"ray-{n}")
                same = all((root / f"run-growth-{n}" / f).read_bytes() == (root / f"run-ray-{n}" / f).read_bytes()
                           for f in ("items.parquet", "attributions.parquet", "pairs.parquet"))
                ray_out[n] = {"in_process_s": local["seconds"], "ray_s": remote["seconds"],
                              "ratio": round(remote["seconds"] / local["seconds"], 3),
                              "ray_start_s": remote["ray_start_s"],
                              "worker_peak_rss_mb": remote["worker_peak_rss_mb"],
                              "driver_peak_rss_mb": [local["driver_peak_rss_mb"], remote["driver_peak_rss_mb"]],
                              "same_bytes": same}
            out["ray_overhead"] = {"eval_items": args.eval_items, "runs": ray_out, "target": "ratio ≤ 1.25"}
        if "gradient" not in args.skip:
            n = gradient_pairs
            gradient_eval = root / "eval-gradient.jsonl"
            make_eval(gradient_eval, pairs[:n], 200, 11)
            local = _run_child("inprocess", "gradient", files[n], gradient_eval, root, "gradient-in")
            remote = _run_child("ray", "gradient", files[n], gradient_eval, root, "gradient-ray")
            out["gradient"] = {"pairs": n, "eval_items": 200, "in_process_s": local["seconds"],
                               "ray_s": remote["seconds"], "ratio": round(remote["seconds"] / local["seconds"], 3),
                               "ray_start_s": remote["ray_start_s"],
                               **_agreement(root / "run-gradient-in", root / "run-gradient-ray",
                                            *(next(Path(r["cache"]).rglob("features.npy")) for r in (local, remote))),
                               "worker_peak_rss_mb": remote["worker_peak_rss_mb"],
                               "driver_peak_rss_mb": [local["driver_peak_rss_mb"], remote["driver_peak_rss_mb"]],
                               "target": "ratio ≤ 1.25, features identical (to float tolerance: 2 torch threads here, "
                                         "1 per Ray worker, sum in another order)"}
    out["loadavg_1m"].append(round(os.getloadavg()[0], 2))
    emit_json(out)


if __name__ == "__main__":
    main()
