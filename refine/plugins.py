"""The one registry of plug-ins: attribution backends, executors and pre-retraining checks.

Each family is a :class:`Registry`: :data:`BACKENDS`, :data:`EXECUTORS`, :data:`CHECKS`. A
registry holds

- refine's **built-ins**, declared here by name and import path (``module:Class``), always
  present, listed in the order they are declared (the order checks run and report in);
- **installed plug-ins**, which another package declares in its own ``pyproject.toml``, refine
  untouched::

      [project.entry-points."refine.backends"]
      my_backend = "my_package.attribution:MyBackend"      # an AttributionBackend subclass

      [project.entry-points."refine.checks"]
      my_check = "my_package.checks:MyCheck"                # a Check subclass

      [project.entry-points."refine.executors"]
      my_executor = "my_package.executors:MyExecutor"       # an Executor subclass

- classes **defined in code**: a concrete subclass of a family's base class that declares a
  ``name`` registers itself, and ``@REGISTRY.register`` registers any class with a ``name`` and
  an ``Options`` dataclass.

refine's ``pyproject.toml`` declares the built-ins as entry points too (a test keeps the two
equal). Names are listed without importing anything, so ``refine --help`` stays fast; a
plug-in's module is imported when the plug-in is first used.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import ConfigError

__all__ = ["BACKENDS", "CHECKS", "EXECUTORS", "Registry", "concrete", "plugin_names"]


def concrete(cls: type) -> bool:
    """Whether `cls` has no abstract method left. (ABCMeta fills ``__abstractmethods__`` only
    after ``__init_subclass__``, where classes register themselves, so look at the methods.)"""
    return not any(getattr(getattr(cls, attr, None), "__isabstractmethod__", False) for attr in dir(cls))


class Registry:
    """The plug-ins of one family, by name.

    `group` is the entry point group installed packages declare theirs in; `kind` names one in
    messages (``"backend"``); `builtins` maps refine's own names to ``module:Class``, in the order
    they are listed; `name_key` is the settings key an unknown name is blamed on, and
    `options_key` the one under which the options live (``{name}`` is the plug-in's name).
    """

    def __init__(self, group: str, kind: str, builtins: dict[str, str], *, name_key: str,
                 options_key: str) -> None:
        self.group = group
        self.kind = kind
        self.builtins = dict(builtins)
        self._name_key = name_key
        self._options_key = options_key
        self._classes: dict[str, type] = {}

    def __repr__(self) -> str:
        return f"Registry({self.group!r})"

    @cached_property
    def _installed(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def register(self, cls: type) -> type:
        """Register `cls` under its ``name`` (a decorator); a later class of the same name
        replaces it."""
        name = cls.__dict__.get("name")
        if not isinstance(name, str):
            raise TypeError(f"{cls.__qualname__} must declare a name to be a {self.kind}")
        self._classes[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Forget a class registered in code (a built-in or installed plug-in of that name
        comes back on its next use)."""
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        """Every plug-in's name, importing none: the built-ins in their declared order, then
        installed plug-ins and classes defined in code by name."""
        others = (set(self._installed) | set(self._classes)) - set(self.builtins)
        return [*self.builtins, *sorted(others)]

    def get(self, name: str, *, key: str | None = None) -> Any:
        """The class of plug-in `name` (its module imported on first use), or a ConfigError
        keyed `key` (default: this registry's name key) that lists the available ones."""
        if name not in self._classes:
            target = self.builtins.get(name)
            if target is None and name in self._installed:
                target = self._installed[name].value
            if target is None:
                available = ", ".join(sorted(self.names()))
                raise ConfigError(f"unknown {self.kind} {name!r}; available: {available}",
                                  key=key or self._name_key)
            try:
                loaded = EntryPoint(name, target, self.group).load()
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"plug-in {name!r} ({target}) cannot be loaded: {exc}",
                                  key=self.group) from None
            # Its module registered it by defining it (under its own name); this name finds it too.
            self._classes.setdefault(name, loaded)
        return self._classes[name]

    def make(self, name: str, options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """An instance of plug-in `name`, its ``Options`` dataclass built from the plain
        mapping `options` (None: the defaults) and passed first, `kwargs` after it.

        An option the plug-in does not know is a ConfigError keyed ``<options key>.<option>``
        naming the plug-in and the options it knows; a value ``Options`` refuses is its own
        ConfigError (keyed by the option); a missing required option one keyed by the options
        key."""
        cls = self.get(name)
        where = self._options_key.format(name=name)
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ConfigError(f"must be a mapping of option names to values, got "
                              f"{type(options).__name__}", key=where)
        known = sorted(field.name for field in dataclasses.fields(cls.Options))
        for option in options:
            if option not in known:
                listing = ", ".join(known) or "(none)"
                raise ConfigError(f"unknown option of {self.kind} {name!r}; known: {listing}",
                                  key=f"{where}.{option}")
        try:
            parsed = cls.Options(**options)
        except TypeError as exc:
            raise ConfigError(str(exc), key=where) from None
        return cls(parsed, **kwargs)


BACKENDS = Registry("refine.backends", "backend", {
    "embedding": "refine.attribution.embedding:EmbeddingBackend",
    "gradient": "refine.attribution.gradient:GradientBackend",
    "seekrflow": "refine.attribution.seekrflow:SeekrFlowBackend",
}, name_key="backend", options_key="backend_options")

EXECUTORS = Registry("refine.executors", "executor", {
    "inprocess": "refine.executors.inprocess:InProcessExecutor",
    "ray": "refine.executors.ray:RayExecutor",
}, name_key="collect.executor.kind", options_key="collect.executor")

# In the order they run and are reported.
CHECKS = Registry("refine.checks", "check", {
    "format_validity": "refine.checks.format_validity:FormatValidity",
    "exact_duplicates": "refine.checks.exact_duplicates:ExactDuplicates",
    "near_duplicates": "refine.checks.near_duplicates:NearDuplicates",
    "conflicting_answers": "refine.checks.conflicting_answers:ConflictingAnswers",
    "eval_leakage": "refine.checks.eval_leakage:EvalLeakage",
    "flagged_present": "refine.checks.flagged_present:FlaggedPresent",
    "size_guard": "refine.checks.size_guard:SizeGuard",
    "length_outliers": "refine.checks.length_outliers:LengthOutliers",
    "outcome_regressions": "refine.checks.outcome_regressions:OutcomeRegressions",
}, name_key="checks", options_key="checks.{name}")

_REGISTRIES = {registry.group: registry for registry in (BACKENDS, EXECUTORS, CHECKS)}


def plugin_names(registry: Registry | str) -> list[str]:
    """The names in `registry` (or the registry of that entry point group), sorted."""
    if isinstance(registry, str):
        registry = _REGISTRIES[registry]
    return sorted(registry.names())
