"""Handing a long-lived worker's freed heap back to the operating system.

glibc keeps memory a process frees for reuse; a model worker whose tensors grow from task to task
(chunks sorted by text length pad to ever longer sequences) leaves holes in its heap that the
next, larger tensors do not fit, while other threads' small allocations (a Ray worker's) pin the
heap between them. Measured on a Ray embedding worker: 186 MB in use throughout, but the free yet
resident part of its heap grew by ~7 MB per 1,024-text task, so its peak RSS grew with the number
of pairs. ``malloc_trim(0)`` returns every free page (not only the heap's top) to the OS; it
walks the free lists, which takes milliseconds against a task's seconds.
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
