"""Ray Data `map_batches` with an actor pool against refine's own actors on shards, for the
embedding backend's encoding.

The same texts (`--pairs` synthetic pairs: question+answer and answer alone, as the backend
encodes them), the same model, 2 single-CPU actors each holding the model (1 torch thread each,
as Ray sets it from num_cpus), 1,024 texts per task or batch, each side sorted by length as
refine sorts them (less padding), each side in its own process on a local cluster started
before the clock runs:

* **refine**: `EmbeddingModel.encode(texts, executor=RayExecutor(workers=2))` into an empty
  cache — each finished chunk saved to the cache as it arrives (what makes a killed run resume);
* **ray_data**: `ray.data.from_items(texts).map_batches(Encoder, batch_size=1024, concurrency=2,
  num_cpus=1)` collected to the driver — nothing saved until the end.

Each side runs twice (A B B A). Prints one JSON line: seconds of each run, the ratio of the
sums, and the largest difference between the vectors (the same texts in the same batches of
1,024: equal, or to float tolerance).

Usage: python bench/ray_data.py [--pairs 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import log, unique_pairs  # noqa: E402

WORKERS = 2
BATCH = 1024


def _texts(n_pairs: int) -> list[str]:
    from refine.core.text import qa_text

    pairs = unique_pairs(n_pairs, seed=21)
    texts = [qa_text(q, a) for q, a, _ in pairs] + [a for _, a, _ in pairs]
    return sorted(texts, key=len)


class Encoder:
    """A Ray Data actor: the model loaded once, then batches of texts → vectors."""

    def __init__(self) -> None:
        from refine.core.embeddings import text_encoder, resolve_model_path, DEFAULT_MODEL

        self.encode = text_encoder(str(resolve_model_path(DEFAULT_MODEL)), 64, "cpu")

    def __call__(self, batch: dict) -> dict:
        return {"i": batch["i"], "vector": self.encode(list(batch["text"]))}


def worker(kind: str, n_pairs: int, out: str) -> None:
    import numpy as np
    import ray

    texts = _texts(n_pairs)
    with stdout_to_stderr() as real_stdout:
        t = time.perf_counter()
        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)
        figures = {"ray_start_s": round(time.perf_counter() - t, 2), "texts": len(texts)}
        t = time.perf_counter()
        if kind == "refine":
            from refine.core.embeddings import EmbeddingModel
            from refine.executors import make_executor

            with tempfile.TemporaryDirectory() as cache, \
                    make_executor({"kind": "ray", "workers": WORKERS, "resources": {"CPU": 1}}) as executor:
                vectors = EmbeddingModel(cache_dir=cache).encode(texts, executor=executor)
        else:
            import ray.data

            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            dataset = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)]).map_batches(
                Encoder, batch_size=BATCH, concurrency=WORKERS, num_cpus=1)
            # Batches finish in any order (order is not preserved by default, which would cost
            # waiting): put the rows back by their index.
            rows = sorted(dataset.iter_rows(), key=lambda row: row["i"])
            vectors = np.stack([row["vector"] for row in rows])
        figures["seconds"] = round(time.perf_counter() - t, 2)
        np.save(out, vectors)
        ray.shutdown()
        os.write(real_stdout, (json.dumps(figures) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3_000)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, n_pairs, out = args.worker
        worker(kind, int(n_pairs), out)
        return
    import numpy as np

    figures: dict = {"workers": WORKERS, "batch": BATCH, "pairs": args.pairs}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        vectors = {}
        # Each side twice, in the order A B B A, so that a drift of the machine's speed over the
        # run falls on both alike.
        for kind in ("refine", "ray_data", "ray_data", "refine"):
            log(f"{kind} ...")
            out = str(Path(tmp) / f"{kind}.npy")
            done = subprocess.run([sys.executable, __file__, "--worker", kind, str(args.pairs), out],
                                  stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env, check=True)
            figures.setdefault(kind, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
            vectors[kind] = np.load(out)
            log(f"  {figures[kind][-1]}")
    seconds = {kind: sum(run["seconds"] for run in figures[kind]) for kind in ("refine", "ray_data")}
    figures["ray_data_over_refine"] = round(seconds["ray_data"] / seconds["refine"], 3)
    figures["max_abs_vector_difference"] = float(np.abs(vectors["refine"] - vectors["ray_data"]).max())
    emit_json(figures)


if __name__ == "__main__":
    main()
