"""Keep stdout for the one JSON line of figures: everything else printed goes to stderr."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
from typing import Iterator


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[int]:
    """Point fd 1 (and sys.stdout) at stderr for the duration; yield a dup of the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def emit_json(figures: dict) -> None:
    sys.stdout.write(json.dumps(figures, sort_keys=False) + "\n")
    sys.stdout.flush()


def peak_rss_mb() -> float:
    """Peak RSS of this process image, MiB.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across
    fork and exec, so a worker started by a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_worker(script: str, *args: str) -> dict:
    """Run `script --worker ARGS` in a fresh interpreter; its last stdout line as JSON."""
    proc = subprocess.run([sys.executable, script, "--worker", *args],
                          stdout=subprocess.PIPE, stderr=sys.stderr, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])
