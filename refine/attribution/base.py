"""The one small interface every attribution backend implements."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar, Iterator

from ..errors import ConfigError
from ..plugins import BACKENDS, load_all, load_plugin, plugin_names
from ..evalset import EvalItem
from ..records import Attribution
from ..training import TrainingSet

__all__ = ["AttributionBackend", "available_backends", "backend_class", "make_backend"]

ProgressFn = Callable[[int], None]

_REGISTRY: dict[str, type["AttributionBackend"]] = {}


class AttributionBackend(abc.ABC):
    """Attributes eval items to training pairs.

    A backend is found as a plug-in (:mod:`refine.plugins`, entry point group
    ``refine.backends``); one defined in code registers itself under ``name`` by subclassing. Its options are a dataclass
    (``Options``) whose fields are the keys a recipe or the CLI may set; unknown keys are
    errors. Use it as a context manager so that held resources are released.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    needs_answer: ClassVar[bool] = True   # False: the backend can produce the answer itself

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # ABCMeta fills __abstractmethods__ only after this hook, so look at the methods.
        abstract = any(getattr(getattr(cls, attr, None), "__isabstractmethod__", False)
                       for attr in dir(cls))
        if not abstract and hasattr(cls, "name"):
            _REGISTRY[cls.name] = cls

    def __init__(self, options: Any, *, top_k: int) -> None:
        self.options = options
        self.top_k = top_k
        self.executor: Any = None

    def use_executor(self, executor: Any) -> None:
        """Run the shardable work on `executor` (:mod:`refine.executors`). `collect` calls this
        before anything is written, so a backend checks here what it needs of the executor
        (a device this machine lacks, when the work stays in this process) and raises a
        ConfigError if that cannot be had. Backends without shardable work ignore it."""
        self.executor = executor

    def _executor(self) -> Any:
        if self.executor is None:
            from ..executors.inprocess import InProcessExecutor

            self.executor = InProcessExecutor()
        return self.executor

    def settings(self) -> dict[str, Any]:
        """Everything that decides this backend's results: saved with the run."""
        return {"backend": self.name, "options": dataclasses.asdict(self.options)}

    def prepare(self, training: TrainingSet, progress: Callable[[str, int], ProgressFn]) -> None:
        """One-off work over the training set before attributing (e.g. encoding it).

        `progress(description, total)` returns a callback that advances a progress bar.
        """

    def prepare_queries(self, items: list[EvalItem], progress: Callable[[str, int], ProgressFn]) -> None:
        """One-off work over the whole eval set before attributing any of it (e.g. a curvature
        that mixes in the eval set's own statistics). Always given every item, also on a
        resumed run, so that results do not depend on what was left to do."""

    @abc.abstractmethod
    def attribute(self, items: list[EvalItem]) -> list[Attribution]:
        """Attribute a batch of items; one record per item, in order. A failure of one item
        is a record with ``status="failed"``, not an exception."""

    def iter_attributions(self, items: list[EvalItem], batch_size: int) -> Iterator[Attribution]:
        """Yield one record per item as soon as it is finished, in any order.

        The default attributes batch by batch; backends that wait on I/O override it to keep
        many items in flight, so that `collect` can save each record the moment it arrives.
        """
        for start in range(0, len(items), batch_size):
            yield from self.attribute(items[start:start + batch_size])

    def close(self) -> None:
        """Release what the backend holds."""

    def __enter__(self) -> "AttributionBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def available_backends() -> list[str]:
    """Backends declared as plug-ins (entry points) and those defined in code, by name."""
    if not plugin_names(BACKENDS):
        load_all(BACKENDS)
    return sorted(set(plugin_names(BACKENDS)) | set(_REGISTRY))


def backend_class(name: str) -> type[AttributionBackend]:
    """The backend called `name` (its plug-in imported on first use), or a ConfigError."""
    if name not in _REGISTRY and name in plugin_names(BACKENDS):
        cls = load_plugin(BACKENDS, name)
        _REGISTRY.setdefault(name, cls)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backend {name!r}; available: {', '.join(available_backends())}",
                          key="backend")
    return _REGISTRY[name]


def make_backend(name: str, options: dict[str, Any] | None, *, top_k: int) -> AttributionBackend:
    """Build a registered backend from a plain options dict, validating its keys."""
    cls = backend_class(name)
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(cls.Options)}
    for key in options:
        if key not in known:
            raise ConfigError(f"unknown option for backend {name!r}; known: {', '.join(sorted(known))}",
                              key=f"backend_options.{key}")
    try:
        parsed = cls.Options(**options)
    except TypeError as exc:
        raise ConfigError(str(exc), key="backend_options") from None
    return cls(parsed, top_k=top_k)
