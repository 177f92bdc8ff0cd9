"""Benchmark: `refine collect --backend seekrflow` against a real `refine serve` process.

1. ratio_vs_bound — 1,000 eval items, concurrency 32, the server delaying every request by
   100 ms (an ASGI middleware: the network and a remote model). Ideal wall time is
   1000 × 0.1 s / 32; the ratio is the measured collect wall time (loading inputs, requests,
   journaling, writing the run) over that. The served training set is small and the eval
   texts are pre-encoded, so that server compute — which shares this machine's two cores with
   the client — does not stand in for client overhead.
2. server_requests_per_s — the embedding backend over 20,000 pairs, no injected latency,
   1,000 unseen questions (nothing cached), through the same client at concurrency 8.
3. faulted_finished_first_run — every 4th request the server answers with a fault, in turn:
   429 with Retry-After, 500, a body cut off mid-way, a stall longer than the client's
   timeout, a 200 whose body is not JSON. How many items one first run finishes, out of all
   (target: all), with the default retry settings.

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


FAULT_TIMEOUT = 2.0   # the client's timeout in the faulted run; the stall fault outlasts it


def _faulty(app):  # noqa: ANN001, ANN202
    """Every 4th attribution request gets a fault, the five kinds in turn."""
    import asyncio
    import itertools

    counter = itertools.count(1)

    async def send_json(send, status: int, body: bytes, headers=()) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    async def wrapped(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or not scope["path"].endswith("influential-finetuning-data"):
            return await app(scope, receive, send)
        n = next(counter)
        if n % 4:
            return await app(scope, receive, send)
        kind = (n // 4) % 5
        if kind == 0:
            return await send_json(send, 429, b'{"detail": "slow down"}', [(b"retry-after", b"1")])
        if kind == 1:
            return await send_json(send, 500, b'{"detail": "oops"}')
        if kind == 2:   # a body cut off: fewer bytes than Content-Length, then the connection ends
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"results": [', "more_body": False})
            return None
        if kind == 3:
            await asyncio.sleep(FAULT_TIMEOUT + 1)
            return await app(scope, receive, send)
        return await send_json(send, 200, b"<html>bad gateway</html>")

    return wrapped


def serve_main(port: int, latency: float, train: list[str], faults: bool = False) -> None:
    """The server process: `refine serve`'s app, plus a fixed delay per request (and faults)."""
    import asyncio

    import uvicorn

    from refine.attribution.base import make_backend
    from refine.service.server import create_app
    from refine.formats.training import load_training

    training = load_training(train)
    backend = make_backend("embedding", {}, top_k=10)
    backend.prepare(training, lambda desc, total: (lambda n: None))
    app = create_app(backend, model_id="bench", pairs=len(training.pairs))

    if latency > 0:
        @app.middleware("http")
        async def delay(request, call_next):  # noqa: ANN001
            await asyncio.sleep(latency)
            return await call_next(request)

    uvicorn.run(_faulty(app) if faults else app, host="127.0.0.1", port=port, log_level="critical",
                backlog=256)


def start_server(root: Path, train: Path, latency: float,
                 faults: bool = False) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(latency), str(train)]
                            + (["--faults"] if faults else []),
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


def timed_collect(train: Path, evalf: Path, run: Path, url: str, concurrency: int,
                  **options) -> tuple[float, object]:
    import refine

    settings = refine.CollectSettings(backend="seekrflow", backend_options={
        "model_id": "bench", "base_url": url, "concurrency": concurrency, **options})
    start = time.perf_counter()
    result = refine.collect([str(train)], str(evalf), run, settings, progress=False)
    return time.perf_counter() - start, result


def _complete(timed: tuple[float, object]) -> float:
    elapsed, result = timed
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} items failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "LATENCY", "TRAIN"), help=argparse.SUPPRESS)
    parser.add_argument("--faults", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--small", action="store_true", help="200 items, 2,000 pairs")
    args = parser.parse_args()
    if args.serve:
        return serve_main(int(args.serve[0]), float(args.serve[1]), [args.serve[2]], args.faults)
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
        from refine.core.embeddings import EmbeddingModel
        from refine.core.text import qa_text
        model = EmbeddingModel(cache_dir=root / "cache")
        items = [json.loads(l) for l in first.read_text().splitlines()]
        model.encode([qa_text(i["question"], i["answer"]) for i in items] + [i["answer"] for i in items])
        server, url = start_server(root, small_train, latency)
        try:
            log("latency run ...")
            wall = _complete(timed_collect(small_train, first, root / "run1", url, concurrency))
        finally:
            server.terminate()
            server.wait()
        bound = items_n * latency / concurrency

        # 2. the server's own throughput with the embedding backend over many pairs
        server, url = start_server(root, big_train, 0.0)
        try:
            log("throughput run ...")
            served = _complete(timed_collect(big_train, second, root / "run2", url, 8))
        finally:
            server.terminate()
            server.wait()

        # 3. one first run against a server that faults every 4th request
        faulted_n = min(items_n, 200)
        faulted_eval = root / "eval3.jsonl"
        write_jsonl(faulted_eval, iter(eval_items(pairs[:500], faulted_n, 3)))
        server, url = start_server(root, small_train, 0.0, faults=True)
        try:
            log("faulted run ...")
            faulted_wall, faulted = timed_collect(small_train, faulted_eval, root / "run3", url, 8,
                                                  timeout=FAULT_TIMEOUT)
        finally:
            server.terminate()
            server.wait()
    emit_json({"bench": "http_collect", "items": items_n, "concurrency": concurrency,
               "latency_s": latency, "wall_s": round(wall, 3), "bound_s": round(bound, 3),
               "ratio_vs_bound": round(wall / bound, 3), "target_ratio_vs_bound": 1.3,
               "server_pairs": pairs_n, "server_requests": items_n,
               "server_requests_per_s": round(items_n / served, 1),
               "faulted_items": faulted_n, "faulted_finished_first_run": faulted.done,
               "faulted_wall_s": round(faulted_wall, 2), "target_faulted_finished": faulted_n})


if __name__ == "__main__":
    main()
