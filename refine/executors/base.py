"""Executors: where a backend's heavy, shardable work runs — in this process, or on Ray.

A backend cuts its work into **tasks** (a chunk of texts to encode, a chunk of training pairs
to differentiate) and hands them to an executor with a **worker spec**: a picklable factory
that builds, once per worker, the callable that turns one task into one result (a worker that
holds a model replica). The executor yields ``(index, result)`` as tasks finish, each index
exactly once; the backend stores each result as it arrives (in its cache, or its feature
file), so a crashed run resumes where it stopped and a re-run computes nothing twice. Every
reduction happens in the calling process, in a fixed order.

Executors are plug-ins (:data:`refine.plugins.EXECUTORS`, entry point group
``refine.executors``): ``inprocess`` (the default) and ``ray``. None of their settings changes
results: a run collected in-process resumes on Ray, and the other way round.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Sequence

from ..plugins import EXECUTORS, concrete

__all__ = ["Executor", "WorkerSpec", "available_executors", "make_executor"]


@dataclass(frozen=True)
class WorkerSpec:
    """How to build a worker where it runs.

    `factory()` returns the callable `worker(task) -> result`; it must be picklable (a module-
    level function or class, with picklable arguments bound, e.g. by functools.partial).
    `key` names what the worker holds (a model and its settings): workers built for one key are
    reused for every map over the same key. `gpus` is how many GPUs one worker needs.
    """

    factory: Callable[[], Callable[[Any], Any]]
    key: str
    gpus: float = 0.0
    # In this process the caller's own worker (its model already loaded) does the work; only
    # an executor that ships workers elsewhere calls `factory`.
    local: Callable[[Any], Any] | None = None


class Executor(abc.ABC):
    """Runs tasks on workers. Use it as a context manager: workers live until it closes."""

    name: ClassVar[str]
    Options: ClassVar[type]
    #: True when workers run in other processes: a backend then resolves its device there.
    remote: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and concrete(cls):
            EXECUTORS.register(cls)

    def __init__(self, options: Any) -> None:
        self.options = options

    @abc.abstractmethod
    def map(self, spec: WorkerSpec, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Run every task on a worker built from `spec`; yield (index, result) as each
        finishes, every index exactly once, whatever workers die on the way."""

    def prepare(self, spec: WorkerSpec) -> None:
        """Check, before anything is written, that workers for `spec` can be had (a ConfigError
        if not)."""

    def close(self) -> None:
        """Release the workers."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def available_executors() -> list[str]:
    """The executors by name: refine's own, installed plug-ins and those defined in code."""
    return sorted(EXECUTORS.names())


def make_executor(config: dict[str, Any] | None) -> Executor:
    """The executor a ``{kind: NAME, ...options}`` mapping (a recipe's ``collect.executor``, or
    the CLI's --executor flags) describes; ``None`` is in-process."""
    config = dict(config or {"kind": "inprocess"})
    kind = config.pop("kind", "inprocess")
    return EXECUTORS.make(kind, config)


@dataclass(frozen=True)
class NoOptions:
    """An executor without options."""
