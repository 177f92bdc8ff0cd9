"""Settings and options: every field has help, and one check (refine.fields.validate) refuses a
bad value naming the key it is under."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

import refine.settings as settings
from refine.attribution.embedding import EmbeddingOptions
from refine.attribution.gradient import GradientOptions
from refine.attribution.seekrflow import SeekrFlowOptions
from refine.errors import ConfigError
from refine.executors.ray import RayOptions
from refine.fields import field_kind, number_problem, setting, validate

#: Each dataclass whose fields are settings, the key its errors are under, and what it needs built.
PREFIXES: dict[type, str] = {
    settings.GradeSettings: "grade",
    settings.CollectSettings: "collect",
    settings.FlagSettings: "flag",
    settings.ClusterSettings: "cluster",
    settings.ReportSettings: "report",
    settings.EditSettings: "emit",
    settings.EmitSettings: "emit",
    settings.CheckSettings: "checks",
    settings.OutcomeSettings: "outcome",
    settings.FinetuneSettings: "finetune",
    settings.AnswerSettings: "answer",
    settings.RetrainSettings: "retrain",
    GradientOptions: "backend_options",
    EmbeddingOptions: "backend_options",
    SeekrFlowOptions: "backend_options",
    RayOptions: "collect.executor",
}
REQUIRED: dict[type, dict[str, Any]] = {
    settings.FinetuneSettings: {"base_model": "models/base"},
    settings.RetrainSettings: {"finetune": settings.FinetuneSettings(base_model="models/base")},
    GradientOptions: {"model": "models/lm"},
    SeekrFlowOptions: {"model_id": "ft-1"},
}


def test_every_settings_dataclass_is_listed() -> None:
    defined = {cls for _, cls in inspect.getmembers(settings, dataclasses.is_dataclass)
               if isinstance(cls, type) and cls.__module__ == settings.__name__}
    assert defined <= set(PREFIXES)


@pytest.mark.parametrize("cls", list(PREFIXES), ids=lambda cls: cls.__name__)
def test_every_field_has_help_and_the_defaults_pass_their_own_check(cls: type) -> None:
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name} has no help"
    cls(**REQUIRED.get(cls, {}))


def _outside(cls: type, f: dataclasses.Field) -> Any:
    """A value just outside what field `f` accepts."""
    meta = f.metadata
    if "choices" in meta:
        return "no-such-choice"
    kind, _ = field_kind(cls, f.name)
    step = 1 if kind is int else 0.001
    if "low" in meta:
        return meta["low"] if meta.get("low_open") else meta["low"] - step
    return meta["high"] if meta.get("high_open") else meta["high"] + step


BOUNDED = [(cls, f) for cls in PREFIXES for f in dataclasses.fields(cls)
           if {"low", "high", "choices"} & set(f.metadata)]


@pytest.mark.parametrize("cls, f", BOUNDED, ids=[f"{cls.__name__}.{f.name}" for cls, f in BOUNDED])
def test_a_value_out_of_bounds_is_refused_naming_its_key(cls: type, f: dataclasses.Field) -> None:
    bad = _outside(cls, f)
    key = f"{PREFIXES[cls]}.{f.name}"
    with pytest.raises(ConfigError) as caught:
        cls(**{**REQUIRED.get(cls, {}), f.name: bad})
    assert caught.value.key == key
    assert str(caught.value).startswith(f"'{key}': ") and repr(bad) in str(caught.value)


@pytest.mark.parametrize("cls, name, value, message", [
    (settings.FlagSettings, "evidence", "yes", "must be true or false, got 'yes'"),
    (settings.FlagSettings, "min_bad", 2.5, "must be an integer ≥ 1, got 2.5"),
    (settings.FlagSettings, "level_weights", {"high": 1}, "must give a weight for each of high, medium, low"),
    (settings.ClusterSettings, "seed", float("nan"), "must be an integer ≥ 0, got nan"),
    (settings.CollectSettings, "backend_options", [1], "must be a mapping, got [1]"),
    (settings.CollectSettings, "grade", {}, "must be GradeSettings, got {}"),
    (settings.CheckSettings, "select", "near_duplicates", "must be a list of check names"),
    (settings.EmitSettings, "mode", "fix", "unknown mode 'fix'; expected one of prune, edit, quarantine"),
    (GradientOptions, "batch_size", 0, "must be a positive integer or auto, got 0"),
    (GradientOptions, "device", "tpu", "unknown device 'tpu'; expected one of auto, cpu, cuda, mps (or cuda:N)"),
    (SeekrFlowOptions, "model_id", None, "is required for the seekrflow backend (--model-id)"),
    (RayOptions, "resources", {"GPU": -1}, "must map resource names to amounts ≥ 0"),
])
def test_what_a_field_accepts_follows_from_its_type_and_its_check(cls: type, name: str, value: Any,
                                                                  message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cls(**{**REQUIRED.get(cls, {}), name: value})
    assert caught.value.key == f"{PREFIXES[cls]}.{name}" and message in caught.value.message


def test_none_is_accepted_where_the_annotation_allows_it_and_a_check_sees_it() -> None:
    @dataclasses.dataclass(frozen=True)
    class Options:
        rate: float | None = setting("Requests per second.", None, low=0, low_open=True)
        name: str | None = setting("A name.", None, check=lambda v: None if v else "is required")

        def __post_init__(self) -> None:
            validate(self, "opts")

    assert Options(name="x").rate is None and Options(rate=2.0, name="x").rate == 2.0
    with pytest.raises(ConfigError) as caught:
        Options()
    assert caught.value.key == "opts.name"


def test_emit_settings_take_the_edit_settings_fields_as_they_are_declared() -> None:
    for name in ("question_min", "agree_min"):
        emit, edit = (next(f for f in dataclasses.fields(cls) if f.name == name)
                      for cls in (settings.EmitSettings, settings.EditSettings))
        assert emit.default == edit.default and emit.metadata == edit.metadata
    assert settings.EmitSettings(question_min=0.6).edit == settings.EditSettings(question_min=0.6)


def test_the_cosine_floors_are_the_flag_stage_s() -> None:
    from refine.stages.flagging.evidence_text import FLOOR, LINK_FLOOR

    lows = {f.name: f.metadata.get("low") for f in dataclasses.fields(settings.FlagSettings)}
    assert lows["repeat_min"] == lows["support_min"] == lows["paraphrase_min"] == FLOOR
    assert lows["same_claim_min"] == LINK_FLOOR


def test_number_problem_says_what_was_expected() -> None:
    assert number_problem(3, low=1, integer=True) is None
    assert number_problem(0, low=0, high=1, low_open=True) == "a number > 0 and ≤ 1"
    assert number_problem(True, integer=True) == "an integer"
