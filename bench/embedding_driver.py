"""Benchmark: what the embedding backend's driver holds while it scores N training pairs.

    python bench/embedding_driver.py                          # 10⁶ pairs × 1,000 eval items
    python bench/embedding_driver.py --baseline /tmp/old      # the same against another checkout, A B B A

Encoding is not what is measured (bench/scale.py measures it): every text's vector is put in
the embedding cache before the clock runs — random unit vectors, written as the cache writes
its shards — so `refine collect` only reads the cache and scores. Each run is a fresh process
(2 torch and 2 BLAS threads); its peak RSS (VmHWM) is its own. With --baseline the same runs
are made with that checkout first on PYTHONPATH, alternated with this one. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _out import emit_json, peak_rss_mb, stdout_to_stderr  # noqa: E402
from _synth import log  # noqa: E402

THREADS = 2
SHARD = 1024


def write_inputs(root: Path, n_pairs: int, n_items: int) -> tuple[Path, Path]:
    train, evalf = root / "train.jsonl", root / "eval.jsonl"
    with open(train, "w", encoding="utf-8") as fh:
        for i in range(n_pairs):
            fh.write(json.dumps({"messages": [
                {"role": "user", "content": f"What does catalogue entry {i} say about part {i % 977}?"},
                {"role": "assistant", "content": f"Entry {i} lists part {i % 977} at {i % 89} units."}]}) + "\n")
    with open(evalf, "w", encoding="utf-8") as fh:
        for i in range(n_items):
            j = (i * 7919) % n_pairs
            fh.write(json.dumps({"id": f"ev-{i:05d}", "question": f"What does catalogue entry {j} say?",
                                 "answer": f"Entry {j} lists part {j % 977} at {(j + 1) % 89} units.",
                                 "verdict": "bad" if i % 5 == 0 else "good"}) + "\n")
    return train, evalf


def seed_cache(cache: Path, train: Path, evalf: Path) -> int:
    """Every text collect will ask for, with a random unit vector, in the cache's shard files."""
    import numpy as np

    import refine
    from refine.core.embeddings import EmbeddingModel
    from refine.core.text import qa_text

    pairs = refine.load_training([str(train)]).unique_pairs()
    items = refine.load_eval(str(evalf)).items
    texts = ([qa_text(p.question, p.answer) for p in pairs] + [p.answer for p in pairs]
             + [qa_text(i.question, i.answer or "") for i in items] + [i.answer or "" for i in items])
    del pairs, items
    keys = sorted({hashlib.sha256(t.encode("utf-8")).digest()[:16] for t in texts})
    directory = EmbeddingModel(cache_dir=cache).cache_path
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for start in range(0, len(keys), SHARD):
        block = keys[start:start + SHARD]
        key_array = np.frombuffer(b"".join(block), dtype=np.uint8).reshape(len(block), 16)
        vectors = rng.normal(size=(len(block), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with open(directory / f"shard-{hashlib.sha256(key_array.tobytes()).hexdigest()[:24]}.npz", "wb") as fh:
            np.savez(fh, keys=key_array, vectors=vectors)
    return len(keys)


def child(train: str, evalf: str, out: str, cache: str) -> None:
    with stdout_to_stderr() as real_stdout:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(THREADS)
        with threadpool_limits(THREADS):
            import refine

            settings = refine.CollectSettings(backend="embedding", backend_options={"cache_dir": cache})
            t = time.perf_counter()
            refine.collect([train], evalf, Path(out), settings, progress=False)
            seconds = time.perf_counter() - t
        figures = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb()),
                   "refine": str(Path(refine.__file__).resolve().parent.parent)}
        os.write(real_stdout, (json.dumps(figures) + "\n").encode())


def run(label: str, tree: str | None, train: Path, evalf: Path, root: Path, cache: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if tree:
        env["PYTHONPATH"] = tree
    out = root / f"run-{label}"
    log(f"[{label}] collect ...")
    done = subprocess.run([sys.executable, __file__, "--child", str(train), str(evalf), str(out), str(cache)],
                          capture_output=True, text=True, env=env, cwd=tree or None)
    if done.returncode != 0:
        log(done.stderr[-3000:])
        raise SystemExit(f"[{label}] failed with exit code {done.returncode}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"[{label}] {figures}")
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--eval-items", type=int, default=1000)
    parser.add_argument("--baseline", help="another refine checkout, measured alternately with this one")
    args = parser.parse_args()
    out: dict = {"bench": "embedding_driver", "pairs": args.pairs, "eval_items": args.eval_items,
                 "threads": f"{THREADS} torch + {THREADS} BLAS", "loadavg_1m": [round(os.getloadavg()[0], 2)],
                 "vectors_mb": round(args.pairs * 2 * 384 * 4 / 2**20)}
    with tempfile.TemporaryDirectory(prefix="refine-bench-driver-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        train, evalf = write_inputs(root, args.pairs, args.eval_items)
        out["cached_texts"] = seed_cache(root / "cache", train, evalf)
        log(f"inputs and cache written in {time.perf_counter() - t:.0f}s")
        order = [("this", None)]
        if args.baseline:
            base = str(Path(args.baseline).resolve())
            order = [("baseline", base), ("this", None), ("this", None), ("baseline", base)]
        runs: dict[str, list[dict]] = {}
        for n, (label, tree) in enumerate(order):
            runs.setdefault(label, []).append(run(f"{label}-{n}", tree, train, evalf, root, root / "cache"))
        same = None
        if args.baseline:
            same = all((root / "run-baseline-0" / f).read_bytes() == (root / "run-this-1" / f).read_bytes()
                       for f in ("items.parquet", "attributions.parquet", "pairs.parquet"))
    for label, figures in runs.items():
        out[label] = {"seconds": [f["seconds"] for f in figures], "peak_rss_mb": [f["peak_rss_mb"] for f in figures]}
    if args.baseline:
        out["rss_ratio"] = round(max(out["this"]["peak_rss_mb"]) / max(out["baseline"]["peak_rss_mb"]), 3)
        out["time_ratio"] = round(sum(out["this"]["seconds"]) / sum(out["baseline"]["seconds"]), 3)
        out["same_bytes"] = same
    out["loadavg_1m"].append(round(os.getloadavg()[0], 2))
    emit_json(out)


if __name__ == "__main__":
    main()
