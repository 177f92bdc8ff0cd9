"""Handing a long-lived worker's freed heap back to the operating system.

glibc keeps memory a process frees for reuse; a model worker whose tensors grow from task to task
(chunks sorted by text length pad to ever longer sequences) leaves holes in its heap that the
next, larger tensors do not fit, and smaller allocations made in between (by Ray's threads, by
the tokenizer) pin them in place. Measured on an embedding worker (bench/worker_heap.py): ~185 MB
of heap in use throughout, while the heap freed but kept grew by ~20 MB per 1,024-text task, in a
Ray actor and in a plain process alike, so a worker's peak RSS grew with the number of pairs.
``malloc_trim(0)`` hands every free page back to the OS (not only the heap's top); it walks the
free lists, milliseconds against a task's seconds. The executors call it after every task.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Callable

__all__ = ["release_free_heap"]


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
