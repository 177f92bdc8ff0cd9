"""Approximate nearest-neighbour search for the embedding backend: which library, at what recall.

The embedding backend's score is (1 - w)·cos(Q+A) + w·cos(A), the inner product of the
concatenated vectors [√(1-w)·qa, √w·a]. This compares, on those 768-d vectors, exact blocked
search (numpy, what `refine collect` does by default) with FAISS (HNSW-Flat, IVF-Flat) and
usearch (HNSW, float32 and float16), every engine at 2 threads (BLAS and OpenMP limited alike):
build time, search time for the eval items, recall@k against exact search (after the
candidates are rescored exactly, as refine does), index size, and whether two builds give the
same results (on the real set: refine's index built with 2 threads and with 1 compared byte for
byte; the others built twice with 2 threads, their results compared).

Two data sets:
* **real**: `--real` synthetic pairs (bench/_synth.py) encoded with the default model, and eval
  answers reworded or changed from training answers (the model did not copy them);
* **scaled**: `--scaled` vectors made from the real ones (each a real pair's two vectors with
  Gaussian noise, cosine ≈ 0.85 to its source, renormalised), for build and search cost at a
  size this machine cannot encode; the same real eval items query them.

Usage:  python bench/ann.py [--real 10000] [--scaled 1000000] [--items 1000] [--top-k 10]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import atexit
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from _out import emit_json, peak_rss_mb, stdout_to_stderr  # noqa: E402
from _synth import log, unique_pairs, variant_answer  # noqa: E402

W = 0.5  # the backend's default answer_weight


def _vectors(args) -> tuple[np.ndarray, np.ndarray]:
    from refine.core.embeddings import EmbeddingModel
    from refine.core.text import qa_text

    pairs = unique_pairs(args.real, seed=11)
    rng = random.Random(12)
    items = []
    for _ in range(args.items):
        q, a, _ = pairs[rng.randrange(len(pairs))]
        items.append((q, variant_answer(rng, a, bad=rng.random() < 0.5)))
    model = EmbeddingModel(cache_dir=args.cache, batch_size=64)

    def joined(rows):
        texts = [qa_text(q, a) for q, a in rows] + [a for _, a in rows]
        v = model.encode(texts)
        n = len(rows)
        return np.hstack([np.sqrt(1 - W) * v[:n], np.sqrt(W) * v[n:]]).astype(np.float32)

    t = time.perf_counter()
    train = joined([(q, a) for q, a, _ in pairs])
    queries = joined(items)
    log(f"encoded {len(pairs)} pairs and {len(items)} items in {time.perf_counter() - t:.0f} s")
    return train, queries


def _scaled(real: np.ndarray, n: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    half = real.shape[1] // 2
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        base = real[rng.integers(0, len(real), stop - start)]
        noisy = base + rng.normal(0, 0.6 / np.sqrt(real.shape[1]), base.shape).astype(np.float32)
        for lo, hi, scale in ((0, half, np.sqrt(1 - W)), (half, None, np.sqrt(W))):
            part = noisy[:, lo:hi]
            part *= scale / np.linalg.norm(part, axis=1, keepdims=True)
        out[start:stop] = noisy
    return out


def exact_top(train: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    best_i = np.empty((len(queries), 0), np.int64)
    best_s = np.empty((len(queries), 0), np.float32)
    for start in range(0, len(train), 65_536):
        block = queries @ train[start:start + 65_536].T
        kk = min(k, block.shape[1])
        top = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        idx = np.concatenate([best_i, top + start], axis=1)
        sc = np.concatenate([best_s, np.take_along_axis(block, top, axis=1)], axis=1)
        order = np.argsort(-sc, axis=1, kind="stable")[:, :k]
        best_i, best_s = np.take_along_axis(idx, order, axis=1), np.take_along_axis(sc, order, axis=1)
    return best_i, best_s


def rescored_recall(train, queries, candidates, exact_s, k) -> float:
    """Recall@k after exact rescoring: a found pair counts when its exact score reaches the k-th
    exact score (so ties between near-duplicate pairs are not counted as misses)."""
    candidates = np.where(candidates < 0, 0, candidates)
    scores = np.einsum("qd,qcd->qc", queries, train[candidates])
    top = np.sort(scores, axis=1)[:, ::-1][:, :k]
    kth = exact_s[:, k - 1:k] - 1e-6
    return float((top >= kth).sum() / (len(queries) * k))


def refine_hnsw(train, queries, k, cands, efs):
    """refine's own index (refine.attribution.pair_index: FAISS HNSW-Flat, M = 32, efConstruction = 128,
    built a chunk at a time), searched as the backend searches: all ef candidates rescored."""
    import faiss

    from refine.attribution.pair_index import PairIndex

    def build(directory: str, threads: int) -> PairIndex:
        faiss.omp_set_num_threads(threads)
        return PairIndex.open_or_build(Path(directory), "bench", len(train), lambda a, b: train[a:b])

    scratch = tempfile.TemporaryDirectory()
    atexit.register(scratch.cleanup)
    t = time.perf_counter()
    index = build(scratch.name + "/a", THREADS)
    out = {"build_s": round(time.perf_counter() - t, 2),
           "bytes_per_vector": round(index.path.stat().st_size / len(train), 1)}
    runs = {}
    for ef in efs:
        t = time.perf_counter()
        found = index.search(queries, max(ef, k), ef)
        runs[ef] = (time.perf_counter() - t, found)

    def same() -> bool:
        # Built again with one thread: the same bytes, so the same results.
        again = build(scratch.name + "/b", 1).path.read_bytes()
        faiss.omp_set_num_threads(THREADS)
        return index.path.read_bytes() == again

    return out, runs, same


def _faiss_bytes(index) -> int:
    import faiss

    return len(faiss.serialize_index(index))


def faiss_ivf(train, queries, k, cands, probes):
    import faiss

    faiss.omp_set_num_threads(THREADS)
    nlist = int(4 * np.sqrt(len(train)))
    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(train.shape[1])
    index = faiss.IndexIVFFlat(quantizer, train.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    sample = train[np.random.default_rng(0).choice(len(train), min(len(train), 64 * nlist), replace=False)]
    index.train(sample)
    index.add(train)
    build = time.perf_counter() - t
    out = {"build_s": round(build, 2), "nlist": nlist,
           "bytes_per_vector": round(_faiss_bytes(index) / len(train), 1)}
    runs = {}
    for p in probes:
        index.nprobe = p
        t = time.perf_counter()
        _, found = index.search(queries, cands)
        runs[p] = (time.perf_counter() - t, found)
    return out, runs, lambda: _rebuild_same(lambda: faiss_ivf(train, queries, k, cands, probes[-1:]), runs)


def usearch_hnsw(train, queries, k, cands, efs, dtype):
    from usearch.index import Index

    def build():
        index = Index(ndim=train.shape[1], metric="ip", dtype=dtype, connectivity=32, expansion_add=128)
        index.add(np.arange(len(train), dtype=np.uint64), train, threads=THREADS)
        return index

    t = time.perf_counter()
    index = build()
    out = {"build_s": round(time.perf_counter() - t, 2),
           "bytes_per_vector": round(index.serialized_length / len(train), 1)}
    runs = {}
    for ef in efs:
        index.expansion_search = ef
        t = time.perf_counter()
        found = index.search(queries, max(ef, k), threads=THREADS).keys.astype(np.int64)
        runs[ef] = (time.perf_counter() - t, found)
    return out, runs, lambda: _rebuild_same(lambda: usearch_hnsw(train, queries, k, cands, efs[-1:], dtype), runs)


def _rebuild_same(again, runs) -> bool:
    _, runs2, _ = again()
    (param, (_, found2)), = runs2.items()
    return bool(np.array_equal(runs[param][1], found2))


def measure(name, train, queries, k, cands, rebuild: bool) -> dict:
    log(f"{name}: {len(train):,} vectors × {len(queries):,} queries")
    t = time.perf_counter()
    _, exact_s = exact_top(train, queries, k)
    figures = {"n": len(train), "exact_search_s": round(time.perf_counter() - t, 2)}
    engines = {
        "refine_hnsw (faiss)": lambda: refine_hnsw(train, queries, k, cands, [64, 128, 256]),
        "faiss_ivf_flat": lambda: faiss_ivf(train, queries, k, cands, [8, 32, 64]),
        "usearch_hnsw_f32": lambda: usearch_hnsw(train, queries, k, cands, [64, 128, 256], "f32"),
        "usearch_hnsw_f16": lambda: usearch_hnsw(train, queries, k, cands, [64, 128, 256], "f16"),
    }
    for engine, run in engines.items():
        out, runs, same = run()
        for param, (seconds, found) in runs.items():
            out[f"p{param}"] = {"search_s": round(seconds, 3),
                                "recall": round(rescored_recall(train, queries, found, exact_s, k), 4)}
        if rebuild:
            out["deterministic"] = same()
        log(f"  {engine}: {out}")
        figures[engine] = out
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=int, default=10_000)
    parser.add_argument("--scaled", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=128, help="IVF results rescored exactly "
                        "(HNSW engines rescore all ef candidates, as refine does)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "refine-bench-ann-cache"),
                        help="embedding cache (kept, so a re-run does not encode again)")
    args = parser.parse_args()
    with stdout_to_stderr(), threadpool_limits(THREADS):
        import torch

        torch.set_num_threads(THREADS)
        train, queries = _vectors(args)
        figures = {"threads": THREADS, "top_k": args.top_k, "candidates": args.candidates,
                   "items": args.items, "real": measure("real", train, queries, args.top_k, args.candidates, True)}
        if args.scaled:
            big = _scaled(train, args.scaled)
            figures["scaled"] = measure("scaled", big, queries, args.top_k, args.candidates, False)
        figures["peak_rss_mb"] = round(peak_rss_mb())
    emit_json(figures)


if __name__ == "__main__":
    main()
