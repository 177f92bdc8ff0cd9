"""Benchmark: `refine collect --backend seekrflow` against a real `refine serve` process.

1. ratio_vs_bound — 1,000 eval items, concurrency 32, the server delaying every request by
   100 ms (an ASGI middleware: the network and a remote model). Ideal wall time is
   1000 × 0.1 s / 32; the ratio is the measured collect wall time (loading inputs, requests,
   journaling, writing the run) over that. The served training set is small and the eval
   texts are pre-encoded, so that server compute — which shares this machine's two cores with
   the client — does not stand in for client overhead.
2. server_requests_per_s — the embedding backend over 20,000 pairs, no injected latency,
   1,000 unseen questions (nothing cached), through the same client at concurrency 8.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import chat_record, log, unique_pairs, write_jsonl  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_main(port: int, latency: float, train: list[str]) -> None:
    """The server process: `refine serve`'s app, plus a fixed delay per request."""
    import asyncio

    import uvicorn

    from refine.attribution.base import make_backend
    from refine.server import create_app
    from refine.training import load_training

    training = load_training(train)
    backend = make_backend("embedding", {}, top_k=10)
    backend.prepare(training, lambda desc, total: (lambda n: None))
    app = create_app(backend, model_id="bench", pairs=len(training.pairs))

    if latency > 0:
        @app.middleware("http")
        async def delay(request, call_next):  # noqa: ANN001
            await asyncio.sleep(latency)
            return await call_next(request)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=256)


def start_server(root: Path, train: Path, latency: float) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(latency), str(train)],
                            env={**os.environ, "REFINE_CACHE_DIR": str(root / "cache")})
    url = f"http://127.0.0.1:{port}"
    # Encoding 20,000 pairs (twice: Q+A and answer) takes minutes on two cores the first time.
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


def eval_items(pairs: list, n: int, offset: int) -> list[dict]:
    return [{"id": f"e{i}", "question": pairs[(i + offset) % len(pairs)][0] + f" [{i}]",
             "answer": pairs[(i + offset) % len(pairs)][1], "verdict": "good" if i % 4 else "bad"}
            for i in range(n)]


def timed_collect(train: Path, evalf: Path, run: Path, url: str, concurrency: int) -> float:
    import refine

    settings = refine.CollectSettings(backend="seekrflow", backend_options={
        "model_id": "bench", "base_url": url, "concurrency": concurrency})
    start = time.perf_counter()
    result = refine.collect([str(train)], str(evalf), run, settings, progress=False)
    elapsed = time.perf_counter() - start
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} items failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "LATENCY", "TRAIN"), help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--small", action="store_true", help="200 items, 2,000 pairs")
    args = parser.parse_args()
    if args.serve:
        return serve_main(int(args.serve[0]), float(args.serve[1]), [args.serve[2]])
    items_n, pairs_n = (200, 2000) if args.small else (args.items, args.pairs)
    latency, concurrency = 0.1, 32
    with stdout_to_stderr() as real_stdout, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pairs = unique_pairs(pairs_n, seed=11)
        small_train, big_train = root / "small.jsonl", root / "big.jsonl"
        write_jsonl(small_train, (chat_record(*p) for p in pairs[:500]))
        write_jsonl(big_train, (chat_record(*p) for p in pairs))
        first, second = root / "eval1.jsonl", root / "eval2.jsonl"
        write_jsonl(first, iter(eval_items(pairs[:500], items_n, 0)))
        write_jsonl(second, iter(eval_items(pairs, items_n, 7)))

        # 1. pipeline efficiency against the latency bound
        from refine.embeddings import EmbeddingModel
        from refine.text import qa_text
        model = EmbeddingModel(cache_dir=root / "cache")
        items = [json.loads(l) for l in first.read_text().splitlines()]
        model.encode([qa_text(i["question"], i["answer"]) for i in items] + [i["answer"] for i in items])
        server, url = start_server(root, small_train, latency)
        try:
            log("latency run ...")
            wall = timed_collect(small_train, first, root / "run1", url, concurrency)
        finally:
            server.terminate()
            server.wait()
        bound = items_n * latency / concurrency

        # 2. the server's own throughput with the embedding backend over many pairs
        server, url = start_server(root, big_train, 0.0)
        try:
            log("throughput run ...")
            served = timed_collect(big_train, second, root / "run2", url, 8)
        finally:
            server.terminate()
            server.wait()
    emit_json({"bench": "http_collect", "items": items_n, "concurrency": concurrency,
               "latency_s": latency, "wall_s": round(wall, 3), "bound_s": round(bound, 3),
               "ratio_vs_bound": round(wall / bound, 3), "target_ratio_vs_bound": 1.3,
               "server_pairs": pairs_n, "server_requests": items_n,
               "server_requests_per_s": round(items_n / served, 1)})


if __name__ == "__main__":
    main()
