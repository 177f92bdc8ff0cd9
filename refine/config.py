"""YAML configuration files — recipes and check gates — read one way.

A file is read with ``yaml.safe_load``, every mapping key's line remembered, ``--set a.b=v``
overrides applied (values read as YAML), and its keys checked against a schema: top-level keys
of a given type, and sections whose keys are the fields of a settings dataclass
(:mod:`refine.settings`) plus a few extra ones. An unknown key, a value of the wrong type, or
a setting its dataclass refuses is a ConfigError naming the key and where it came from: the
file and line, or the ``--set`` that introduced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import ConfigError

__all__ = ["ConfigFile", "Section", "parse_key_values", "read_config"]


@dataclass(frozen=True)
class Section:
    """A mapping whose keys are the fields of `settings` (a dataclass) and of `extra`."""

    settings: type
    extra: dict[str, Any] = field(default_factory=dict)      # key → type
    skip: tuple[str, ...] = ()                                # fields not settable here

    def keys(self) -> list[str]:
        names = [f.name for f in dataclasses.fields(self.settings) if f.name not in self.skip]
        return sorted([*names, *self.extra])


@dataclass
class ConfigFile:
    path: Path
    data: dict[str, Any]
    lines: dict[tuple[str, ...], int]
    overrides: dict[tuple[str, ...], str]

    def error(self, message: str, key: str | tuple[str, ...] | None) -> ConfigError:
        """A ConfigError at `key`, placed at the --set that gave it, or at its line."""
        path = tuple(key.split(".")) if isinstance(key, str) else (key or ())
        for n in range(len(path), 0, -1):
            if path[:n] in self.overrides:
                return ConfigError(message, key=".".join(path) or None, file=f"--set {self.overrides[path[:n]]}")
        line = next((self.lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in self.lines), None)
        return ConfigError(message, key=".".join(path) or None, file=str(self.path), line=line)

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return dict(value) if isinstance(value, dict) else {}

    def build(self, cls: type, name: str, values: dict[str, Any]) -> Any:
        """``cls(**values)``, its ConfigError placed where the offending key came from."""
        try:
            return cls(**values)
        except ConfigError as exc:
            key = exc.key if exc.key and "." in exc.key else f"{name}.{exc.key}" if exc.key else name
            raise self.error(exc.message, key) from None


def _compose(text: str, file: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML safely and remember the line of every mapping key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=file,
                          line=mark.line + 1 if mark else None) from None
    lines: dict[tuple[str, ...], int] = {}

    def walk(n: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = (*prefix, str(key_node.value))
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)

    walk(node, ())
    return data, lines


def _apply_override(data: dict[str, Any], override: str, flag: str = "--set") -> tuple[str, ...]:
    if "=" not in override:
        raise ConfigError(f"needs KEY=VALUE, got {override!r}", key=flag)
    key, _, raw = override.partition("=")
    path = tuple(part for part in key.strip().split(".") if part)
    if not path:
        raise ConfigError(f"needs a key, got {override!r}", key=flag)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a mapping", key=key, file=f"{flag} {override}")
        node = child
    node[path[-1]] = value
    return path


def parse_key_values(pairs: Iterable[str], flag_name: str) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` → ``{"a": 1, "b": {"c": "x"}}``, values read as YAML."""
    out: dict[str, Any] = {}
    for item in pairs:
        _apply_override(out, item, flag_name)
    return out


def _kind(spec: Any) -> str:
    types = spec if isinstance(spec, tuple) else (spec,)
    names = {list: "a list", str: "a string", bool: "true or false", dict: "a mapping",
             int: "an integer", float: "a number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def read_config(path: str | Path, schema: dict[str, Any], overrides: Iterable[str] = (), *,
                required: tuple[str, ...] = (), what: str = "configuration file") -> ConfigFile:
    """Read and check a YAML file against `schema` (top key → a type, a tuple of types, or a
    :class:`Section`); `overrides` are ``key.sub=value`` strings applied first."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise ConfigError(f"no such {what}", file=file)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not valid UTF-8 (byte {exc.start + 1})", file=file) from None
    data, lines = _compose(text, file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"a {what} must be a mapping at the top level", file=file, line=1)
    config = ConfigFile(path, data, lines, {})
    for override in overrides:
        key = _apply_override(data, override)
        config.overrides[key] = override
    for key, value in data.items():
        if key not in schema:
            raise config.error(f"unknown key; known: {', '.join(sorted(schema))}", (key,))
        spec = schema[key]
        if isinstance(spec, Section):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise config.error("must be a mapping", (key,))
            for sub in value:
                if sub not in spec.keys():
                    raise config.error(f"unknown key; known under '{key}': {', '.join(spec.keys())}",
                                       (key, str(sub)))
                expected = spec.extra.get(sub)
                if expected is not None and not isinstance(value[sub], expected):
                    raise config.error(f"must be {_kind(expected)}, got {type(value[sub]).__name__}",
                                       (key, str(sub)))
        elif not isinstance(value, spec):
            raise config.error(f"must be {_kind(spec)}, got {type(value).__name__}", (key,))
    for key in required:
        if key not in data:
            raise ConfigError("is required", key=key, file=file)
    return config
