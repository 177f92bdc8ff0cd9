"""Keep stdout for the one JSON line of figures: everything else printed goes to stderr."""

from __future__ import annotations

import contextlib
import json
import os
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
