"""Ray: tasks on a pool of actors, each building its worker (a model replica) once.

``address``: none starts a local Ray cluster in this process (``local_cpus`` CPUs; all by
default); ``auto`` joins the cluster this machine belongs to; ``ray://host:port`` a remote one
through Ray Client. ``workers`` actors are started, each holding ``resources`` (``CPU`` and
``GPU`` become Ray's num_cpus/num_gpus, other names custom resources; ``GPU`` defaults to what
the backend's device asks for). Before any actor starts, a cluster with no node that has that
much is an error naming what is missing, since Ray would otherwise wait forever.

One pool of actors lives at a time. Each actor holds one worker: mapping for another worker spec
(the same model whitened, another model) rebuilds the worker inside the same actor process,
dropping the previous one first, so a GPU never holds two replicas; only other resources start a
new pool. At most two tasks are in flight per actor. A task whose actor dies (a killed process, a lost node) goes to a fresh actor, up to
``max_retries`` times per task; every task's result is yielded exactly once whatever happened.
An exception raised *in* a task (a bad input, a refused setting) is re-raised here as it is.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..core import _heap
from ..errors import BackendError, ConfigError, RefineError
from ..fields import number_problem, setting, validate
from .base import Executor, WorkerSpec

__all__ = ["RayExecutor", "RayOptions"]

_IN_FLIGHT = 2
_WAIT_S = 30.0   # how often a map with no worker built checks that one still can be


def _address(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and _address_ok(value)):
        return None
    return f"must be auto, ray://host:port or host:port, got {value!r}"


def _resources(value: Any) -> str | None:
    if isinstance(value, dict) and all(isinstance(k, str) and number_problem(v, low=0) is None
                                       for k, v in value.items()):
        return None
    return f"must map resource names to amounts ≥ 0, e.g. GPU=1,CPU=4; got {value!r}"


@dataclass(frozen=True)
class RayOptions:
    """Which Ray cluster, and the actors on it: each field is a key of ``collect.executor``."""

    address: str | None = setting("auto: the cluster this machine is in; ray://HOST:PORT or HOST:PORT: "
                                  "that one; unset: a new local cluster in this process.", None,
                                  check=_address)
    workers: int = setting("Worker actors, each holding one model replica.", 2, low=1)
    resources: dict[str, float] = setting("What one worker holds: CPU and GPU become Ray's num_cpus and "
                                          "num_gpus, other names custom resources (GPU defaults to what "
                                          "the backend's device asks for).", factory=lambda: {"CPU": 1},
                                          check=_resources)
    max_retries: int = setting("Times a task whose actor died goes to a fresh actor.", 3, low=0)
    local_cpus: int | None = setting("A new local cluster's CPUs (default: all).", None, low=1)

    def __post_init__(self) -> None:
        validate(self, "collect.executor")


def _shown(address: str) -> str:
    """An address as it may be printed: without credentials (``ray://user:token@host``)."""
    scheme, sep, rest = address.rpartition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = _shown(address).split("://", 1)[-1].rstrip("/").rpartition(":")
    return host.strip("[]"), port


def _address_ok(address: str) -> bool:
    if address in ("auto", "local"):
        return True
    host, port = _host_port(address)
    return bool(host) and port.isdigit()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ConfigError unless something listens at a host:port address (plain or ``ray://``):
    Ray itself retries an unreachable address for minutes before it gives up."""
    import socket

    if address in ("auto", "local"):
        return      # Ray finds (or fails to find) this machine's cluster at once
    host, port = _host_port(address)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {_shown(address)}: {exc.strerror or exc}",
                          key="collect.executor.address") from None


class _Worker:
    """The actor: holds one worker (a model replica) at a time, built by `use`; a failure to
    build is raised by every task instead (an actor that dies building would otherwise look
    like a lost node). Kept across worker specs, so a second model (or the same model with
    other settings) costs a load, not a new process."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.run_task: Any = None
        self.error: BaseException | None = None

    def use(self, key: str, factory: Any) -> tuple[int, str]:
        """Build the worker for `key` unless it is the one held; this process's id and Ray
        node id."""
        if key != self.key:
            self.run_task = self.error = None      # the previous model goes before the next loads
            self.key = key
            try:
                self.run_task = factory()
            except Exception as exc:   # noqa: BLE001 - shipped back to the caller as it is
                self.error = exc
        return self.where()

    def where(self) -> tuple[int, str]:
        import os

        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, task: Any) -> Any:
        if self.error is not None:
            raise self.error
        try:
            return self.run_task(task)
        finally:
            # An actor lives for the whole map: without this its peak RSS grows with the
            # number of tasks it ran, not with the largest one (see refine.core._heap).
            _heap.trimmer.after_task()


class RayExecutor(Executor):
    name = "ray"
    Options = RayOptions
    remote = True

    def __init__(self, options: RayOptions) -> None:
        super().__init__(options)
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'refine[ray]'",
                              key="collect.executor.kind") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            where = _shown(options.address) if options.address else "a new local cluster"
            if options.address is not None:
                _check_reachable(options.address)
            try:
                ray.init(address=options.address, num_cpus=options.local_cpus if options.address is None else None,
                         include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                raise ConfigError(f"cannot reach the Ray cluster at {where}: {str(exc).splitlines()[0]}",
                                  key="collect.executor.address") from None
            self._started = True
        self._actor_class = ray.remote(_Worker)
        self._pool_needs: dict[str, float] | None = None
        self._holds: dict[Any, str] = {}     # the worker spec key each actor's worker was built for
        self._actors: list[Any] = []
        self._pids: dict[Any, tuple[int, str]] = {}
        #: Tasks run again because their worker was lost (a killed process, a removed node),
        #: and workers replaced.
        self.retried = 0
        self.replaced = 0
        try:
            self.check_fits(self._needs(0.0))
        except ConfigError:
            self.close()       # a cluster started here goes with the error
            raise

    # -- actors ------------------------------------------------------------------------------
    def _needs(self, gpus: float) -> dict[str, float]:
        need = {k: float(v) for k, v in self.options.resources.items()}
        if "GPU" not in need and gpus:
            need["GPU"] = float(gpus)
        return {k: v for k, v in need.items() if v > 0}

    def check_fits(self, need: dict[str, float]) -> None:
        """A ConfigError unless some live node has every resource one worker needs."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        if any(all(node["Resources"].get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
            return
        have = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(n["Resources"].items())
                                   if not k.startswith("node:") and "memory" not in k) for n in nodes)
        wanted = ", ".join(f"{k}={v:g}" for k, v in need.items())
        raise ConfigError(f"no node of the Ray cluster has {wanted} for one worker "
                          f"(its nodes: {have or 'none'})", key="collect.executor.resources")

    def prepare(self, spec: WorkerSpec) -> None:
        self.check_fits(self._needs(spec.gpus))

    def _start(self, spec: WorkerSpec) -> Any:
        need = self._needs(spec.gpus)
        options: dict[str, Any] = {"num_cpus": need.pop("CPU", 0.0), "num_gpus": need.pop("GPU", 0.0),
                                   "max_restarts": 0, "max_task_retries": 0}
        if need:
            options["resources"] = need
        return self._actor_class.options(**options).remote()

    def _pool(self, spec: WorkerSpec) -> list[Any]:
        """The actors, started anew only when a worker needs other resources than the last."""
        needs = self._needs(spec.gpus)
        if self._pool_needs != needs:
            self._release()
            self.check_fits(needs)
            self._actors = [self._start(spec) for _ in range(self.options.workers)]
            self._pool_needs = needs
        return self._actors

    def worker_pids(self) -> list[int]:
        """The process ids of the current pool's workers that have started (for tests that
        kill one)."""
        return [self._pids[a][0] for a in self._actors if a in self._pids]

    def worker_locations(self) -> list[tuple[int, str]]:
        """(process id, Ray node id) of every actor of the current pool: known once its worker
        is built; an actor still building is asked (it holds no task yet, so it answers as soon
        as it is built)."""
        return [self._pids[a] if a in self._pids else tuple(self._ray.get(a.where.remote()))
                for a in self._actors]

    # -- the work ----------------------------------------------------------------------------
    def map(self, spec: WorkerSpec, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        from ray import exceptions as rex

        lost = tuple(getattr(rex, name) for name in
                     ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
                      "NodeDiedError", "ObjectLostError", "OwnerDiedError", "LocalRayletDiedError")
                     if hasattr(rex, name))
        actors = self._pool(spec)
        queue: deque[int] = deque(range(len(tasks)))
        pending: dict[Any, tuple[int, Any]] = {}
        in_flight: Counter[Any] = Counter()
        attempts: Counter[int] = Counter()
        # Tasks go only to actors whose worker for this spec is built: a replacement for a lost
        # actor may wait for room on the cluster, and live actors must not leave tasks queued
        # on it.
        pings = {a.use.remote(spec.key, spec.factory): a for a in actors if self._holds.get(a) != spec.key}
        replaced = [0]

        def feed() -> None:
            # One task per actor in turn, so that a map of few tasks spreads over all workers;
            # a second one in flight only while enough are left for the actors still loading.
            fed = True
            while queue and fed:
                fed = False
                loading = sum(1 for a in actors if self._holds.get(a) != spec.key)
                for actor in actors:
                    if queue and self._holds.get(actor) == spec.key and in_flight[actor] < _IN_FLIGHT \
                            and (in_flight[actor] == 0 or len(queue) > loading):
                        index = queue.popleft()
                        pending[actor.run.remote(tasks[index])] = (index, actor)
                        in_flight[actor] += 1
                        fed = True

        def replace(actor: Any) -> None:
            if actor in actors:    # its other tasks come back as errors and are requeued too
                replaced[0] += 1
                self.replaced += 1
                if replaced[0] > self.options.workers * (self.options.max_retries + 1):
                    raise BackendError(f"Ray lost {replaced[0]} workers in one map; giving up "
                                       "(is a node failing over and over?)")
                try:      # a process that hangs rather than dies still holds its GPU
                    ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
                fresh = self._start(spec)
                actors[actors.index(actor)] = fresh
                pings[fresh.use.remote(spec.key, spec.factory)] = fresh

        feed()
        while pending or (queue and pings):
            ready, _ = ray.wait(list(pending) + list(pings), num_returns=1, timeout=_WAIT_S)
            if not ready:
                if not pending:     # no worker is built, and none is running anything
                    try:
                        self.check_fits(self._needs(spec.gpus))
                    except ConfigError as exc:
                        raise BackendError(f"the Ray cluster lost every node that can run a worker: "
                                           f"{exc.message}") from None
                continue
            if ready[0] in pings:
                actor = pings.pop(ready[0])
                try:
                    self._pids[actor] = ray.get(ready[0])
                    self._holds[actor] = spec.key
                except lost:
                    replace(actor)
                feed()
                continue
            index, actor = pending.pop(ready[0])
            in_flight[actor] -= 1
            try:
                result = ray.get(ready[0])
            except rex.RayTaskError as exc:           # the task itself raised: not retried
                cause = exc.as_instanceof_cause()
                original = getattr(cause, "cause", None)
                if isinstance(original, (RefineError, ValueError, TypeError)):
                    raise original from None
                raise BackendError(f"task {index} failed on a Ray worker: {str(exc).splitlines()[0]}") from None
            except lost as exc:
                attempts[index] += 1
                self.retried += 1
                if attempts[index] > self.options.max_retries:
                    raise BackendError(f"Ray workers died running task {index} {attempts[index]} times "
                                       f"(max_retries {self.options.max_retries}): "
                                       f"{str(exc).splitlines()[0]}") from None
                queue.appendleft(index)
                self._pids.pop(actor, None)
                self._holds.pop(actor, None)
                replace(actor)
                feed()
                continue
            yield index, result
            feed()

    def _release(self) -> None:
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        self._pids = {}
        self._holds = {}
        self._pool_needs = None

    def close(self) -> None:
        self._release()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False
