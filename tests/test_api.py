"""The public surface: what `import refine` promises."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from typing import Any, Callable

import click
import pytest

import refine
import refine.settings
from refine import cli
from refine.fields import field_kind


def test_every_exported_name_resolves_to_what_its_module_defines() -> None:
    import importlib

    assert refine.__all__ == sorted(refine.__all__)
    for name in refine.__all__:
        value = getattr(refine, name)
        module = refine._LAZY.get(name)
        if module is not None:   # the lazy name is the very object of the module that defines it
            assert value is getattr(importlib.import_module(f"refine.{module}"), name), name
        elif name != "__version__":
            assert value is getattr(refine.errors, name), name
    assert refine.__version__ == importlib.import_module("refine._version").__version__


def test_every_error_class_is_in_the_one_tree_and_exported() -> None:
    errors = [cls for _, cls in inspect.getmembers(refine.errors, inspect.isclass)
              if issubclass(cls, BaseException) and cls.__module__ == "refine.errors"]
    assert len(errors) >= 6
    for cls in errors:
        assert issubclass(cls, refine.RefineError), cls
        assert getattr(refine, cls.__name__) is cls and cls.__name__ in refine.__all__, cls


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every command under `group` by its full name ("review export"), subgroups walked."""
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        full = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            found.update(_commands(command, full))
        else:
            found[full] = command
    return found


def _settings_taken(fn: Callable[..., Any]) -> list[type]:
    """The settings dataclasses `fn` takes."""
    annotations = [p.annotation if isinstance(p.annotation, str) else str(p.annotation)
                   for p in inspect.signature(fn).parameters.values()]
    return [getattr(refine.settings, name) for annotation in annotations
            for name in re.findall(r"\b(\w+Settings)\b", annotation)]


def _field_options(cls: type, prefix: str = "") -> dict[str, tuple[type, str]]:
    """Each field of `cls` by the name of its option (a field holding settings of its own: its
    fields, prefixed), with the class and field it is."""
    options: dict[str, tuple[type, str]] = {}
    for f in dataclasses.fields(cls):
        options[prefix + f.name] = (cls, f.name)
        kind, _ = field_kind(cls, f.name)
        if dataclasses.is_dataclass(kind):
            options.update(_field_options(kind, f"{prefix}{f.name}_"))
    return options


def _accepted(fn: Callable[..., Any]) -> set[str]:
    """The parameters of `fn` and the fields of the settings dataclasses it takes."""
    names = set(inspect.signature(fn).parameters)
    for cls in _settings_taken(fn):
        names.update(_field_options(cls))
    return names


def _api_problems(group: click.Group, functions: dict[str, str],
                  folded: dict[str, dict[str, str | None]]) -> list[str]:
    """What breaks "each command calls the public function of its name, which takes the
    command's settings": one line per problem."""
    commands = _commands(group)
    problems = [f"{table}: {name!r} is no command" for table, names in (("FUNCTIONS", functions),
                                                                         ("FOLDED", folded))
                for name in names if name not in commands]
    for full, command in commands.items():
        name = functions.get(full, full.replace(" ", "_"))
        if name not in refine.__all__:
            problems.append(f"`refine {full}`: no public function refine.{name}")
            continue
        accepted = _accepted(getattr(refine, name))
        options = {param.name for param in command.params}
        extra = folded.get(full, {})
        for option in sorted(options):
            if option in extra:
                target = extra[option]
                if option in accepted:
                    problems.append(f"`refine {full}`: {option} is listed as folded but {name} takes it")
                elif target is not None and target not in accepted:
                    problems.append(f"`refine {full}`: {option} is folded into {target}, which {name} "
                                    "does not take")
            elif option not in accepted:
                problems.append(f"`refine {full}`: {name} takes no {option} (parameter or setting)")
        problems += [f"`refine {full}`: FOLDED names {option}, which is no option"
                     for option in extra if option not in options]
        given = options | {target for target in extra.values() if target}
        problems += [f"`refine {full}`: {name} needs {param.name}, which no option gives"
                     for param in inspect.signature(getattr(refine, name)).parameters.values()
                     if param.default is param.empty
                     and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
                     and param.name not in given]
        source = inspect.getsource(inspect.unwrap(command.callback))
        if not re.search(rf"\b{name}\(", source):
            problems.append(f"`refine {full}`: does not call {name}")
    return problems


def test_every_command_calls_the_public_function_of_its_name_with_its_settings() -> None:
    commands = _commands(cli.main)
    assert {"review export", "review apply", "check", "serve", "run", "backends"} <= set(commands)
    assert _api_problems(cli.main, cli.FUNCTIONS, cli.FOLDED) == []


def test_the_api_check_finds_a_command_without_its_function_or_settings() -> None:
    @click.group()
    def fake() -> None:
        """A CLI that drifted from the API."""

    @fake.command("frobnicate")
    def frobnicate() -> None:
        """No refine.frobnicate."""

    @fake.command("flag")
    @click.argument("run_dir")
    @click.option("--min-bad", type=int)
    @click.option("--colour")
    def flag_command(run_dir: str, min_bad: int, colour: str) -> None:
        """Takes an option flag has no setting for, and calls something else."""

    problems = _api_problems(fake, {"gone": "nothing"}, {"flag": {"show": None}})
    assert problems == [
        "FUNCTIONS: 'gone' is no command",
        "`refine frobnicate`: no public function refine.frobnicate",
        "`refine flag`: flag takes no colour (parameter or setting)",
        "`refine flag`: FOLDED names show, which is no option",
        "`refine flag`: does not call flag",
    ]


@pytest.mark.parametrize("name", ["check", "review_export", "review_apply", "serve"])
def test_the_verbs_the_api_lacked_are_functions_of_the_module_that_owns_them(name: str) -> None:
    function = getattr(refine, name)
    assert callable(function) and name in dir(refine)
    assert function.__module__.startswith(f"refine.{refine._LAZY[name].split('.')[0]}")


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = ("import sys, refine.cli; heavy = {'torch', 'pandas', 'pyarrow', 'sentence_transformers'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
