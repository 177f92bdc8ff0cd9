"""Executors hand the heap a task freed back to the OS, at most every few seconds.

glibc keeps freed memory resident; an encoder whose chunks grow from one to the next left its
peak RSS growing with the number of chunks (refine.core._heap; the same on a Ray worker is checked
in test_executors.py). The case runs in a fresh interpreter, so its heap holds only what the case
did: a task allocates 200 MB in 100 KB pieces (below glibc's mmap threshold, so on the heap) and
frees all but the last, which pins the heap's top so glibc cannot shrink the heap on its own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from refine.core._heap import HeapTrimmer, release_free_heap

can_trim = pytest.mark.skipif(not (sys.platform.startswith("linux") and release_free_heap()),
                              reason="needs Linux's RssAnon and glibc's malloc_trim")

_CASE = r"""
import sys
from refine import _heap
from refine.executors import WorkerSpec, make_executor

_heap.trimmer.every_s = 0.0     # after every task, however short (the pacing is tested below)

kept = []

def task(kind):
    pieces = [bytearray(100_000) for _ in range(2_000)]
    kept.append(pieces[-1])
    del pieces
    if kind == "free, then raise":
        raise ValueError("the task's own error")
    return kind

def resident_anon_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("RssAnon:"))

how = sys.argv[1]
if how == "called directly":
    task("free")
else:
    with make_executor(None) as executor:
        try:
            list(executor.map(WorkerSpec(factory=lambda: task, key="heap"), [how]))
        except ValueError:
            pass
print(resident_anon_mb())
"""


def _resident_anon_mb_after(how: str) -> int:
    done = subprocess.run([sys.executable, "-c", _CASE, how], capture_output=True, text=True,
                          check=True, timeout=60)
    return int(done.stdout)


@can_trim
def test_a_task_run_in_process_leaves_the_heap_it_freed_with_the_os_even_when_it_raises() -> None:
    kept_by_glibc = _resident_anon_mb_after("called directly")
    assert kept_by_glibc > 150, "the case no longer leaves freed heap resident: it tests nothing"
    assert _resident_anon_mb_after("free") < kept_by_glibc - 150
    assert _resident_anon_mb_after("free, then raise") < kept_by_glibc - 150


def test_trims_come_at_most_every_few_seconds_so_short_tasks_do_not_pay_for_one_each() -> None:
    now = [100.0]
    trims = []
    trimmer = HeapTrimmer(2.0, clock=lambda: now[0], release=lambda: trims.append(now[0]) or True)
    assert trimmer.after_task()            # a process's first task: its heap may hold anything
    for step in (0.5, 0.5, 0.5):           # short tasks pay nothing until 2 s have passed
        now[0] += step
        assert not trimmer.after_task()
    now[0] += 0.5
    assert trimmer.after_task()
    now[0] += 10.0                         # a long task trims right after it
    assert trimmer.after_task()
    assert trims == [100.0, 102.0, 112.0]
