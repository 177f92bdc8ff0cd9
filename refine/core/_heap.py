"""Handing a long-lived worker's freed heap back to the operating system.

glibc keeps memory a process frees for reuse; a model worker whose tensors grow from task to task
(chunks sorted by text length pad to ever longer sequences) leaves holes in its heap that the
next, larger tensors do not fit, and smaller allocations made in between (by Ray's threads, by
the tokenizer) pin them in place. On an embedding worker (bench/worker_heap.py) the heap in use
stayed flat while the heap freed but kept grew task after task, in a Ray actor and in a plain
process alike, so a worker's peak RSS grew with the number of pairs (the figures:
docs/scaling.md, "Why a worker's memory grew with N").

``malloc_trim(0)`` hands every free page back to the OS (not only the heap's top). It is not
free: the call walks the free lists, and the next task faults the pages back in. Against an
embedding task of seconds that is nothing; against the gradient backend's shorter tasks, a trim
after each made collect measurably slower. So the executors trim after a task only once
`EVERY_S` seconds have passed since the last trim: the heap kept between trims is what that much
work leaves, whatever N is, and the cost stays a few percent of the time.
"""

from __future__ import annotations

import ctypes
import functools
import time
from typing import Callable

__all__ = ["HeapTrimmer", "release_free_heap", "trimmer"]


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)   # the C library this process already uses
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)   # glibc only: musl and macOS have none
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Give the heap's free pages back to the OS; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class HeapTrimmer:
    """Trims after a task when `every_s` seconds have passed since the last trim (the first
    task of a process always trims)."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic,
                 release: Callable[[], bool] = release_free_heap) -> None:
        self.every_s = every_s
        self._clock, self._release = clock, release
        self._last: float | None = None

    def after_task(self) -> bool:
        """True when this call trimmed."""
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return self._release()


EVERY_S = 2.0
#: The one trimmer of this process (the heap is the process's): both executors call it.
trimmer = HeapTrimmer(EVERY_S)
