"""Where a backend's shardable work runs: in this process (default) or on a Ray cluster."""

from .base import Executor, WorkerSpec, available_executors, make_executor

__all__ = ["Executor", "WorkerSpec", "available_executors", "make_executor"]
