"""`refine serve` as a real process on a free loopback port, for tests that talk to it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from .conftest import ROOT

_READY = re.compile(r"serving model .* on (http://\S+) ")


@contextmanager
def refine_serve(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Iterator[str]:
    """Start `refine serve --port 0 ARGS`, yield its URL once it says where it listens, stop it."""
    command = [sys.executable, "-m", "refine.cli", "serve", "--port", "0", *args]
    proc = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        for line in proc.stdout:
            match = _READY.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not ready.wait(timeout) or not found:
            proc.kill()
            raise RuntimeError(f"refine serve did not start: {proc.stderr.read()}")
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
