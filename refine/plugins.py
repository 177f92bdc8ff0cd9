"""Plug-ins found through entry points: attribution backends and pre-retraining checks.

A package adds one by declaring it in its own ``pyproject.toml``, refine untouched::

    [project.entry-points."refine.backends"]
    my_backend = "my_package.attribution:MyBackend"      # an AttributionBackend subclass

    [project.entry-points."refine.checks"]
    my_check = "my_package.checks:MyCheck"                # a Check subclass

    [project.entry-points."refine.executors"]
    my_executor = "my_package.executors:MyExecutor"       # an Executor subclass

refine declares its own built-ins the same way. Names are listed without importing anything
(so ``refine --help`` stays fast); a plug-in's module is imported when it is first used. When
refine runs from a source tree that was never installed (no entry points at all), the
built-in modules of the package are found by scanning it instead.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import ConfigError

__all__ = ["BACKENDS", "CHECKS", "EXECUTORS", "load_plugin", "plugin_names"]

BACKENDS = "refine.backends"
CHECKS = "refine.checks"
EXECUTORS = "refine.executors"
_BUILTIN_PACKAGES = {BACKENDS: "refine.attribution", CHECKS: "refine.checks", EXECUTORS: "refine.executors"}
_NOT_PLUGINS = {"base", "context", "report", "runner"}


@lru_cache(maxsize=None)
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in sorted(entry_points(group=group), key=lambda ep: ep.name)}


def _import_builtins(group: str) -> None:
    package = importlib.import_module(_BUILTIN_PACKAGES[group])
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in _NOT_PLUGINS:
            importlib.import_module(f"{package.__name__}.{info.name}")


def plugin_names(group: str) -> list[str]:
    """Names of the plug-ins of `group` declared by installed packages (nothing imported)."""
    return list(_entry_points(group))


def load_plugin(group: str, name: str) -> Any:
    """The class behind plug-in `name`, imported on first use."""
    found = _entry_points(group).get(name)
    if found is None:
        raise KeyError(name)
    try:
        return found.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"plug-in {name!r} ({found.value}) cannot be loaded: {exc}",
                          key=group) from None


def load_all(group: str) -> None:
    """Import every plug-in of `group` (so that each registers itself); the built-in modules
    directly when refine is not installed."""
    if not _entry_points(group):
        _import_builtins(group)
        return
    for name in _entry_points(group):
        load_plugin(group, name)
