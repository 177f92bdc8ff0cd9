"""The default executor: every task in this process, in order, on one worker per spec."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from ..core import _heap
from .base import Executor, NoOptions, WorkerSpec

__all__ = ["InProcessExecutor"]


class InProcessExecutor(Executor):
    name = "inprocess"
    Options = NoOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options or NoOptions())
        self._workers: dict[str, Callable[[Any], Any]] = {}

    def map(self, spec: WorkerSpec, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        worker = spec.local or self._workers.get(spec.key)
        if worker is None:
            worker = self._workers[spec.key] = spec.factory()
        for index, task in enumerate(tasks):
            try:
                result = worker(task)
            finally:
                _heap.trimmer.after_task()     # as a Ray worker does (refine.core._heap)
            yield index, result

    def close(self) -> None:
        self._workers.clear()
