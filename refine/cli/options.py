"""The options the commands share, made from the dataclasses that define them.

:func:`settings_options` is the one way a settings dataclass (:mod:`refine.settings`) becomes
options: one ``--field-name`` per field, with the field's help text and its default shown, and
the command handed the settings object built from them. The rules, the same for every command:

================================  ==========================================================
field                             option
================================  ==========================================================
a number or a string              ``--top-k 10`` (a string with choices: one of them)
true or false                     ``--evidence/--no-evidence``
a list                            repeated: ``--select CHECK --select CHECK``
a mapping                         repeated ``KEY=VALUE`` (read as YAML) over the default:
                                  ``--level-weights medium=0.4``
settings of its own               its fields, prefixed: ``--grade-f1-min 0.3``
================================  ==========================================================

A plug-in's options (a backend's ``collect.backend_options``, an executor's
``collect.executor``) are ``--option KEY=VALUE`` and ``--executor-option KEY=VALUE``; the few
with a flag of their own (``--model``, ``--timeout``, ``--workers``…) are :func:`plugin_option`\\s,
whose help and defaults come from the plug-ins' ``Options`` dataclasses when help is shown.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Callable

import click
from click.core import ParameterSource

from ..errors import RefineError
from ..fields import describe, field_default, field_kind

__all__ = ["RefineGroup", "given", "plugin_option", "quiet", "settings_options", "shown"]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class RefineCommand(click.Command):
    """A command that turns a RefineError into one ``error:`` line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RefineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


class RefineGroup(click.Group):
    """A group whose commands (and subgroups') are :class:`RefineCommand`\\s."""

    command_class = RefineCommand
    group_class = type      # subgroups are RefineGroups too


def settings_options(cls: type, *, into: str = "settings", skip: tuple[str, ...] = (),
                     flags: dict[str, str] | None = None, types: dict[str, Any] | None = None) -> Decorator:
    """One option per field of the settings dataclass `cls` (the module's table), and the
    command called with ``into=cls(...)`` built from them instead.

    `skip` leaves fields out (they keep their defaults, or the command fills them in);
    `flags` renames an option (``{"train_format": "--format"}``); `types` gives one a click
    type of its own (the installed backends as a Choice)."""
    chosen = [f for f in dataclasses.fields(cls) if f.name not in skip]
    options = [option for f in chosen for option in _options(cls, f, "", flags or {}, types or {})]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[into] = _build(cls, chosen, "", kwargs)
            return command(*args, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper
    return decorate


def given(cls: type, settings: Any) -> dict[str, Any]:
    """The fields of `settings` (built by :func:`settings_options`) whose options were given on
    the command line, with their values."""
    ctx = click.get_current_context()
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)
            if ctx.get_parameter_source(f.name) not in (None, ParameterSource.DEFAULT,
                                                         ParameterSource.DEFAULT_MAP)}


def quiet(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress output.")(f)


def plugin_option(*decls: str, registry: Any, key: str, shown_as: Callable[[Any], str] | None = None,
                  **kwargs: Any) -> Decorator:
    """An option that sets the option `key` of those of `registry`'s built-in plug-ins that have
    one (``--timeout`` is ``--option timeout=…``); by default unset: the plug-in's own default."""
    return click.option(*decls, cls=_PluginOption, registry=registry, key=key,
                        shown_as=shown_as or shown, default=None, **kwargs)


class _PluginOption(click.Option):
    """Its help is read from the plug-ins' Options dataclasses when help is shown, so that
    starting refine imports no plug-in."""

    def __init__(self, *args: Any, registry: Any, key: str, shown_as: Callable[[Any], str],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registry, self.key, self.shown_as = registry, key, shown_as

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        parts = []
        for name in self.registry.builtins:
            for option, value, text in describe(self.registry.get(name).Options):
                if option == self.key:
                    default = "" if value in (None, "", dataclasses.MISSING) else \
                        f"  [default: {self.shown_as(value)}]"
                    parts.append(f"{name}: {text}{default}")
        self.help = "; ".join(parts)
        return super().get_help_record(ctx)


def shown(value: Any) -> str:
    """A value as it is written after ``--option KEY=`` or in a recipe (YAML)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, str):
        import yaml

        try:
            plain = "\n" not in value and "," not in value and yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        return value if plain else json.dumps(value, ensure_ascii=False)
    return str(value)


def _options(cls: type, f: dataclasses.Field, prefix: str, flags: dict[str, str],
             types: dict[str, Any]) -> list[Decorator]:
    kind, _ = field_kind(cls, f.name)
    name = prefix + f.name
    if dataclasses.is_dataclass(kind):
        return [option for sub in dataclasses.fields(kind) for option in _options(kind, sub, f"{name}_", {}, {})]
    flag = flags.get(f.name, "--" + name.replace("_", "-"))
    text = f.metadata.get("help", "")
    value = field_default(f)
    if kind is bool:
        return [click.option(f"{flag}/--no-{flag[2:]}", name, default=value, show_default=True, help=text)]
    if kind is dict:
        pairs = tuple(f"{k}={shown(v)}" for k, v in (value or {}).items())
        return [click.option(flag, name, multiple=True, metavar="KEY=VALUE", default=pairs,
                             show_default=bool(pairs), help=f"{text} Repeatable; read as YAML.")]
    if kind is list:
        return [click.option(flag, name, multiple=True, metavar="NAME", help=f"{text} Repeatable.")]
    click_type = types.get(f.name) or (click.Choice(f.metadata["choices"]) if "choices" in f.metadata
                                       else {int: click.INT, float: click.FLOAT}.get(kind, click.STRING))
    if value is dataclasses.MISSING:
        return [click.option(flag, name, type=click_type, required=True, help=text)]
    return [click.option(flag, name, type=click_type, default=value, show_default=True, help=text)]


def _build(cls: type, chosen: list[dataclasses.Field], prefix: str, kwargs: dict[str, Any]) -> Any:
    """``cls(...)`` from the options' values, popped from `kwargs`."""
    from ..config import parse_key_values

    source = click.get_current_context().get_parameter_source
    values = {}
    for f in chosen:
        kind, _ = field_kind(cls, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(kind):
            values[f.name] = _build(kind, list(dataclasses.fields(kind)), f"{name}_", kwargs)
            continue
        value = kwargs.pop(name)
        if kind in (dict, list):    # given: merged over the default; else the default itself
            default = source(name) in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
            value = field_default(f) if default else list(value) if kind is list else \
                {**(field_default(f) or {}), **parse_key_values(value, "--" + name.replace("_", "-"))}
        values[f.name] = value
    return cls(**values)
