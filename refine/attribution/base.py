"""The one small interface every attribution backend implements."""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

from ..formats.evalset import EvalItem
from ..plugins import BACKENDS, EXECUTORS, concrete
from ..formats.records import Attribution
from ..formats.training import TrainingSet

if TYPE_CHECKING:
    from ..core.embeddings import EmbeddingModel

__all__ = ["AttributionBackend", "available_backends", "backend_class", "make_backend"]

ProgressFn = Callable[[int], None]


class AttributionBackend(abc.ABC):
    """Attributes eval items to training pairs.

    A backend is a plug-in (:data:`refine.plugins.BACKENDS`, entry point group
    ``refine.backends``); one defined in code registers itself under ``name`` by subclassing.
    Its options are a dataclass (``Options``) whose fields are the keys a recipe or the CLI may
    set; unknown keys are errors. Use it as a context manager so that held resources are
    released.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    needs_answer: ClassVar[bool] = True   # False: the backend can produce the answer itself

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and concrete(cls):
            BACKENDS.register(cls)

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
            self.executor = EXECUTORS.make("inprocess")
        return self.executor

    def settings(self) -> dict[str, Any]:
        """Everything that decides this backend's results: saved with the run."""
        return {"backend": self.name, "options": dataclasses.asdict(self.options)}

    def embedding_model(self) -> "EmbeddingModel | None":
        """The sentence-embedding model this backend holds, if any (None by default). `collect`
        grades answers and encodes the text evidence with it rather than load another model, and
        encodes the evidence on the backend's executor when its workers hold it."""
        return None

    def serve_mode(self) -> None:
        """Called once by `refine serve` before it answers requests with this backend: questions
        then come one at a time and rarely repeat, so a backend that saves what it computes per
        question (to a disk cache) may stop here. The default changes nothing."""

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
    """The backends by name: refine's own, installed plug-ins and those defined in code."""
    return sorted(BACKENDS.names())


def backend_class(name: str) -> type[AttributionBackend]:
    """The backend called `name` (its plug-in imported on first use), or a ConfigError."""
    return BACKENDS.get(name)


def make_backend(name: str, options: dict[str, Any] | None, *, top_k: int) -> AttributionBackend:
    """Build a backend from a plain options dict, validating its keys (:meth:`Registry.make
    <refine.plugins.Registry.make>`)."""
    return BACKENDS.make(name, options, top_k=top_k)
