"""A field of a settings or options dataclass: its help text, what it accepts, and the one check.

Every stage's settings (:mod:`refine.settings`) and every backend's and executor's options are
frozen dataclasses whose fields are declared with :func:`setting`::

    alpha: float = setting("False-discovery rate of the over-citation test.", 0.1, low=0, high=1,
                           low_open=True)

and checked, when the dataclass is built, by :func:`validate`: a bad value is a ConfigError
keyed ``<prefix>.<field>`` (``flag.alpha``, ``backend_options.projection_dim``). What a field
accepts follows from its annotation and what :func:`setting` was told:

==============================  =============================================================
declared                        accepted
==============================  =============================================================
``check=``                      what the function finds nothing wrong with, None included
``X | None``                    None, or what X accepts
``choices=``                    one of them
``bool``                        true or false
``int``, ``float``              a finite number (an integer for int) within ``low``/``high``
``dict[...]``, ``list[...]``    a mapping, a list
a dataclass                     an instance of it
``str``                         any value: a path or a name, taken as given
==============================  =============================================================

The CLI makes its options from the same fields (:mod:`refine.cli.options`), and ``refine
backends --options NAME`` prints a plug-in's. This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable, Sequence

from .errors import ConfigError

__all__ = ["DEVICES", "describe", "device_problem", "field_default", "field_kind", "number_problem",
           "setting", "validate"]

#: The torch devices a backend can be given (or ``cuda:N``).
DEVICES = ("auto", "cpu", "cuda", "mps")


def setting(text: str, default: Any = dataclasses.MISSING, *,
            factory: Callable[[], Any] | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False,
            choices: Sequence[Any] | None = None, check: Callable[[Any], str | None] | None = None,
            affects_results: bool = True) -> Any:
    """A dataclass field with help `text` and what it accepts (the module's table); no
    `default` nor `factory`: a required field.

    `check(value)` says what is wrong with a value (None: nothing). `affects_results=False`
    marks an option that changes how a backend runs, never what it finds."""
    metadata: dict[str, Any] = {"help": text}
    for key, value in (("low", low), ("high", high), ("choices", choices), ("check", check)):
        if value is not None:
            metadata[key] = tuple(value) if key == "choices" else value
    for key, value in (("low_open", low_open), ("high_open", high_open)):
        if value:
            metadata[key] = True
    if not affects_results:
        metadata["affects_results"] = False
    return dataclasses.field(default=default, default_factory=factory or dataclasses.MISSING,
                             metadata=metadata)


def validate(instance: Any, prefix: str) -> None:
    """Check each field of a settings or options dataclass against what it accepts; the first
    bad value is a ConfigError keyed ``<prefix>.<field>``."""
    hints = _hints(type(instance))
    for f in dataclasses.fields(instance):
        problem = _problem(getattr(instance, f.name), hints[f.name], f.metadata, f.name)
        if problem is not None:
            raise ConfigError(problem, key=f"{prefix}.{f.name}")


def field_kind(cls: type, name: str) -> tuple[type, bool]:
    """The type a field of `cls` holds (``dict`` for ``dict[str, float]``; the first of a
    union) and whether it may be None."""
    members = _members(_hints(cls)[name])
    kind = next((m for m in members if m is not type(None)), type(None))
    return typing.get_origin(kind) or kind, type(None) in members


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) of each field of a dataclass; the default is
    ``dataclasses.MISSING`` for a required field, the help empty where none was given."""
    return [(f.name, field_default(f), f.metadata.get("help", "")) for f in dataclasses.fields(cls)]


def field_default(f: dataclasses.Field) -> Any:
    """A field's default (a fresh one, from its factory), or ``dataclasses.MISSING``."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def number_problem(value: Any, *, low: float | None = None, high: float | None = None,
                   integer: bool = False, low_open: bool = False, high_open: bool = False) -> str | None:
    """None when `value` is such a number, else what was expected ("an integer ≥ 1")."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return None
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '≥'} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '≤'} {high:g}")
    return ("an integer" if integer else "a number") + (" " + " and ".join(bounds) if bounds else "")


def device_problem(value: Any) -> str | None:
    """What is wrong with a backend's `device` (None: nothing)."""
    if value in DEVICES or (isinstance(value, str) and value.startswith("cuda:")):
        return None
    return f"unknown device {value!r}; expected one of {', '.join(DEVICES)} (or cuda:N)"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _members(hint: Any) -> tuple[Any, ...]:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def _problem(value: Any, hint: Any, meta: typing.Mapping[str, Any], name: str) -> str | None:
    if "check" in meta:
        return meta["check"](value)
    members = _members(hint)
    if value is None and type(None) in members:
        return None
    kind = next(m for m in members if m is not type(None))
    kind = typing.get_origin(kind) or kind
    if "choices" in meta:
        if value in meta["choices"]:
            return None
        return f"unknown {name} {value!r}; expected one of {', '.join(map(str, meta['choices']))}"
    if kind is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if kind in (int, float):
        expected = number_problem(value, integer=kind is int, low=meta.get("low"), high=meta.get("high"),
                                  low_open=meta.get("low_open", False),
                                  high_open=meta.get("high_open", False))
        return None if expected is None else f"must be {expected}, got {value!r}"
    if kind in (dict, list):
        shape = "a mapping" if kind is dict else "a list"
        return None if isinstance(value, kind) else f"must be {shape}, got {value!r}"
    if dataclasses.is_dataclass(kind):
        return None if isinstance(value, kind) else f"must be {kind.__name__}, got {value!r}"
    return None
