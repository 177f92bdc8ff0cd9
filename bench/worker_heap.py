"""Benchmark: what a long-lived embedding worker's memory does task after task.

    python bench/worker_heap.py                  # 12,000 pairs (22 tasks of distinct texts) per mode
    python bench/worker_heap.py --pairs 25000

Four modes, each in a fresh process (and, for Ray, a fresh local cluster of 2 CPUs), each
encoding the same length-sorted chunks of 1,024 texts with one torch thread, as collect does:

* ``ray``: refine's Ray executor, one worker; it hands the heap a task freed back after its
  tasks, at most every 2 s (refine/_heap.py; each task here takes longer);
* ``in-process``: refine's in-process executor, which does the same in this process;
* ``ray-untrimmed``, ``in-process-untrimmed``: the same with that hand-back turned off in the
  process that encodes.

Every task first reads its process's memory — what the previous tasks left behind: RSS and
glibc's ``mallinfo2`` heap in use and heap free but kept — then encodes its chunk. Reported per
mode: those readings after the first task, the middle one and the last, and the worker's peak
RSS (VmHWM). Prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import log, unique_pairs  # noqa: E402

MODES = ("ray", "ray-untrimmed", "in-process", "in-process-untrimmed")
CHUNK = 1024


def memory_mb() -> dict:
    """This process's RSS and peak, and glibc's heap in use / free but kept (all arenas)."""
    out: dict = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) // 1024

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                          "usmblks", "fsmblks", "uordblks", "fordblks",
                                                          "keepcost")]

    mallinfo2 = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if mallinfo2 is not None:
        mallinfo2.restype = MallInfo2
        info = mallinfo2()
        out.update(heap_in_use=info.uordblks >> 20, heap_free_kept=info.fordblks >> 20)
    return out


def measuring_encoder(path: str, trimmed: bool):
    """A worker factory: the refine text encoder, each task prefixed by a memory reading."""
    from refine.core.embeddings import text_encoder

    if not trimmed:     # in the process that encodes, and only there
        from refine import _heap

        _heap.trimmer.after_task = lambda: False
    encode = text_encoder(path, 32, "cpu")

    def task(texts: list[str]) -> dict:
        before = memory_mb()
        encode(texts)
        return before
    return task


def child(mode: str, n_pairs: int) -> dict:
    import functools

    import torch

    from refine.core.embeddings import DEFAULT_MODEL, resolve_model_path
    from refine.core.text import qa_text

    torch.set_num_threads(1)
    pairs = unique_pairs(n_pairs, 1234)
    texts = sorted({t for q, a, _ in pairs for t in (qa_text(q, a), a)}, key=len)
    chunks = [texts[i:i + CHUNK] for i in range(0, len(texts), CHUNK)] + [[]]   # the last reads only
    path = str(resolve_model_path(DEFAULT_MODEL))
    from refine.executors import WorkerSpec, make_executor

    t = time.perf_counter()
    on_ray = mode.startswith("ray")
    if on_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)
    spec = WorkerSpec(factory=functools.partial(measuring_encoder, path, not mode.endswith("untrimmed")),
                      key=mode)
    with make_executor({"kind": "ray", "workers": 1} if on_ray else None) as executor:
        # One task at a time, so each reading follows the task before it.
        readings = [next(iter(executor.map(spec, [chunk])))[1] for chunk in chunks]
    peak = readings[-1]["VmHWM"]
    if on_ray:
        ray.shutdown()
    seconds = time.perf_counter() - t
    after = readings[1:]       # the reading at task i+1's start is what task i left
    picks = {"after_first_task": after[0], "after_middle_task": after[len(after) // 2],
             "after_last_task": after[-1]}
    figures = {k: {m: v[m] for m in ("VmRSS", "heap_in_use", "heap_free_kept") if m in v}
               for k, v in picks.items()}
    return {"tasks": len(after), "seconds": round(seconds, 1), "peak_rss_mb": peak, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=12_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with stdout_to_stderr() as real_stdout:
            figures = child(args.child, args.pairs)
            os.write(real_stdout, (json.dumps(figures) + "\n").encode())
        return
    out: dict = {"bench": "worker_heap", "pairs": args.pairs, "torch_threads": 1, "chunk": CHUNK,
                 "loadavg_1m": round(os.getloadavg()[0], 2), "modes": {}}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        log(f"[{mode}] {args.pairs} pairs ...")
        done = subprocess.run([sys.executable, __file__, "--child", mode, "--pairs", str(args.pairs)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            log(done.stderr[-3000:])
            raise SystemExit(f"[{mode}] failed with exit code {done.returncode}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"[{mode}] {figures}")
        out["modes"][mode] = figures
    emit_json(out)


if __name__ == "__main__":
    main()
