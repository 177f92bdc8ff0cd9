"""Options made from the settings dataclasses: every setting a recipe can set is an option of
the commands that take it, with its true default in --help, and a plug-in's options are listed
from its Options dataclass."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner

import refine
from refine import cli
from refine.attribution.gradient import GradientOptions
from refine.cli.options import RefineGroup, settings_options, shown
from refine.fields import field_kind
from refine.settings import CollectSettings, FlagSettings, GradeSettings

from ..test_api import _commands, _settings_taken

#: Fields a command takes through an option of its own form rather than one made from the field.
HAND_MADE = {("check", "options"): "--option CHECK.KEY=VALUE"}


def _setting_options() -> list[tuple[str, click.Command, str, type, dataclasses.Field]]:
    """(command, its click command, option name, class, field) for every field of every settings
    dataclass a command's function takes, but those the command folds or ignores."""
    found = []
    for full, command in _commands(cli.main).items():
        function = getattr(refine, cli.FUNCTIONS.get(full, full.replace(" ", "_")))
        left_out = {*cli.FOLDED.get(full, {}).values(), *cli.IGNORED.get(full, ())}
        for cls in _settings_taken(function):
            for f in dataclasses.fields(cls):
                if f.name in left_out:
                    continue
                kind, _ = field_kind(cls, f.name)
                nested = [(f"{f.name}_{sub.name}", kind, sub) for sub in dataclasses.fields(kind)] \
                    if dataclasses.is_dataclass(kind) else [(f.name, cls, f)]
                found += [(full, command, *entry) for entry in nested]
    return found


SETTING_OPTIONS = _setting_options()


def test_the_commands_take_every_setting_of_every_stage() -> None:
    covered = {(full, name) for full, _, name, _, _ in SETTING_OPTIONS}
    for full, fields in [("flag", FlagSettings), ("collect", CollectSettings), ("cluster", refine.ClusterSettings),
                         ("report", refine.ReportSettings), ("emit", refine.EmitSettings),
                         ("review apply", refine.EmitSettings), ("outcome", refine.OutcomeSettings),
                         ("finetune", refine.FinetuneSettings), ("check", refine.CheckSettings)]:
        names = {f.name for f in dataclasses.fields(fields)} - {"grade", "backend_options", "executor"}
        assert {(full, name) for name in names} <= covered, full
    assert {("collect", f"grade_{f.name}") for f in dataclasses.fields(GradeSettings)} <= covered


@pytest.mark.parametrize("full, command, name, cls, f", SETTING_OPTIONS,
                         ids=[f"{entry[0]}:{entry[2]}" for entry in SETTING_OPTIONS])
def test_every_setting_is_an_option_with_its_help_and_true_default(full: str, command: click.Command,
                                                                   name: str, cls: type,
                                                                   f: dataclasses.Field) -> None:
    options = {param.name: param for param in command.params}
    assert name in options, f"`refine {full}` has no option for {cls.__name__}.{f.name}"
    if (full, name) in HAND_MADE:
        return
    option = options[name]
    with click.Context(command) as ctx:
        text = option.get_help_record(ctx)[1]
    assert f.metadata["help"] in text
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    kind, _ = field_kind(cls, f.name)
    if value is dataclasses.MISSING:
        assert option.required and "[required]" in text
    elif kind is bool:
        assert f"[default: {(option.opts if value else option.secondary_opts)[0][2:]}]" in text
    elif kind is dict and value:
        assert all(f"{key}={shown(weight)}" in text for key, weight in value.items())
    elif value is None or value == {} or value == []:
        assert "default" in f.metadata["help"], "the help says what unset means"
    else:
        assert f"[default: {value}]" in text


def _settings_of(cls: type, args: list[str], prefix: str = "") -> Any:
    """What a command made with settings_options(cls) is handed for `args`."""
    seen = []

    @click.group(cls=RefineGroup)
    def group() -> None:
        """A stand-in for refine's."""

    @group.command("take")
    @settings_options(cls)
    def take(settings: Any) -> None:
        seen.append(settings)

    result = CliRunner().invoke(group, ["take", *args])
    return seen[0] if seen else result


def test_no_option_given_is_the_dataclass_s_own_defaults() -> None:
    assert _settings_of(FlagSettings, []) == FlagSettings()
    assert _settings_of(CollectSettings, []) == CollectSettings()


def test_each_kind_of_field_is_set_from_the_command_line() -> None:
    flags = _settings_of(FlagSettings, ["--min-bad", "3", "--no-evidence", "--level-weights", "medium=0.4",
                                        "--level-weights", "low=0"])
    assert flags == FlagSettings(min_bad=3, evidence=False,
                                 level_weights={"high": 1.0, "medium": 0.4, "low": 0})
    collect = _settings_of(CollectSettings, ["--grade-f1-min", "0.3", "--no-grade-require-numbers",
                                             "--train-format", "alpaca", "--skip-invalid"])
    assert collect == CollectSettings(grade=GradeSettings(f1_min=0.3, require_numbers=False),
                                      train_format="alpaca", skip_invalid=True)
    check = _settings_of(refine.CheckSettings, ["--select", "a", "--select", "b", "--severity", "a=error"])
    assert check == refine.CheckSettings(select=["a", "b"], severity={"a": "error"})


def test_a_bad_value_is_one_error_line_naming_the_setting() -> None:
    result = _settings_of(FlagSettings, ["--alpha", "0"])
    assert result.exit_code == 2
    assert result.output == "error: 'flag.alpha': must be a number > 0 and ≤ 1, got 0.0\n"


def test_backends_lists_every_option_of_a_backend_with_its_default() -> None:
    result = CliRunner().invoke(cli.main, ["backends", "--options", "gradient"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    listed = {line.split(" = ")[0].strip(): line.split(" = ", 1)[1] for line in lines if " = " in line}
    options = {f.name: f for f in dataclasses.fields(GradientOptions)}
    assert list(listed) == list(options)
    for name, f in options.items():
        assert listed[name] == shown(f.default)
        assert f.metadata["help"].split()[0] in result.output
    assert '  chat_template_fallback = "{system}Q: {question}\\nA: "' in lines


def test_backends_verbose_lists_every_backend_and_executor() -> None:
    result = CliRunner().invoke(cli.main, ["backends", "-v"])
    assert result.exit_code == 0, result.output
    from refine import available_backends
    from refine.executors import available_executors

    # Every backend, then every executor (a test elsewhere in this process may have defined one
    # more in code: it is listed too).
    headings = [line.split()[0] for line in result.output.splitlines() if line and not line.startswith(" ")]
    assert headings == [*available_backends(), *available_executors()]
    assert {"embedding", "gradient", "seekrflow", "inprocess", "ray"} <= set(headings)
    assert "  workers = 2" in result.output and "  (no options)" in result.output
    assert CliRunner().invoke(cli.main, ["backends"]).output.split() == available_backends()


def test_a_plug_in_flag_shows_the_plug_in_s_default() -> None:
    text = CliRunner().invoke(cli.main, ["collect", "--help"]).output
    flat = " ".join(text.split())
    assert "seekrflow: Requests in flight. [default: 8]" in flat
    assert "ray: Worker actors, each holding one model replica. [default: 2]" in flat
    assert "[default: CPU=1]" in flat


def test_help_of_a_command_loads_no_heavy_library() -> None:
    code = ("import sys; from click.testing import CliRunner; from refine.cli import main; "
            "assert CliRunner().invoke(main, ['collect', '--help']).exit_code == 0; "
            "print(sorted({'torch', 'pandas', 'pyarrow', 'sentence_transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
