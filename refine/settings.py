"""The settings of every stage, in one place: one validated dataclass per stage.

==================  ======================================================================
stage               settings
==================  ======================================================================
collect             :class:`CollectSettings` (with :class:`GradeSettings` for the grader)
flag                :class:`FlagSettings`
cluster             :class:`ClusterSettings`
report              :class:`ReportSettings`
emit (and review)   :class:`EmitSettings`
check (the gate)    :class:`CheckSettings`
outcome             :class:`OutcomeSettings`
finetune            :class:`FinetuneSettings`
==================  ======================================================================

Each validates itself when built (a :class:`~refine.errors.ConfigError` keyed
``<stage>.<field>``), carries a ``help`` text per field, and is what the CLI's defaults and
the recipe schema are derived from, so the CLI, the Python API and recipes share one default
for everything. This module imports nothing heavy: the CLI reads it to build ``--help``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .formats.layouts import get_layout
from .formats.records import LEVELS

__all__ = ["LEVEL_WEIGHTS", "MODES", "CheckSettings", "ClusterSettings", "CollectSettings",
           "EditSettings", "EmitSettings", "FinetuneSettings", "FlagSettings", "GradeSettings",
           "OutcomeSettings", "ReportSettings", "default", "help_of", "number_problem", "setting_names"]

#: How much a citation at each influence level counts, unless a run's flag settings say otherwise.
LEVEL_WEIGHTS: dict[str, float] = {"high": 1.0, "medium": 0.5, "low": 0.25}
MODES = ("prune", "edit", "quarantine")


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


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


def _number(value: Any, key: str, **bounds: Any) -> None:
    expected = number_problem(value, **bounds)
    if expected is not None:
        raise ConfigError(f"must be {expected}, got {value!r}", key=key)


def _flag(value: Any, key: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, got {value!r}", key=key)


def help_of(cls: type, name: str) -> str:
    """The help text of one setting."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


def default(cls: type, name: str) -> Any:
    """The default of one setting (what the CLI shows and uses)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def setting_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class GradeSettings:
    """How an answer without a verdict is judged against its reference (:mod:`refine.stages.grading`)."""

    f1_min: float = _help("Token F1 an answer needs.", default=0.2)
    key_recall_min: float = _help("Share of the reference's key words an answer needs.", default=0.5)
    semantic_min: float = _help("Embedding cosine to the reference an answer needs.", default=0.4)
    require_numbers: bool = _help("Every number the reference adds must be in the answer.", default=True)

    def __post_init__(self) -> None:
        _flag(self.require_numbers, "grade.require_numbers")
        for name in ("f1_min", "key_recall_min", "semantic_min"):
            _number(getattr(self, name), f"grade.{name}", low=0, high=1)


@dataclass(frozen=True)
class CollectSettings:
    """How to collect. Every field but `batch_size`, `skip_invalid` and `executor` decides the results."""

    backend: str = _help("Attribution backend.", default="embedding")
    top_k: int = _help("At most this many influential pairs per eval item.", default=10)
    backend_options: dict[str, Any] = _help("The backend's own options.", default_factory=dict)
    grade: GradeSettings = _help("How answers without a verdict are graded.", default_factory=GradeSettings)
    batch_size: int = _help("Eval items attributed (and saved) per step.", default=32)
    skip_invalid: bool = _help("Skip and count invalid records instead of stopping at the first.",
                               default=False)
    train_format: str | None = _help("Record layout of every training source (default: detected).",
                                     default=None)
    eval_format: str | None = _help("Record layout of the eval set (default: detected).", default=None)
    evidence: bool = _help("Gather text evidence (refine.stages.flagging.evidence: sentences of answers, references "
                           "and training answers compared) for flag; off: flag uses citations alone.",
                           default=True)
    evidence_lookup: int = _help("Training sentences each sentence of a bad answer is looked up "
                                 "against (text evidence beyond citations; 0: citations only).",
                                 default=20)
    executor: dict[str, Any] | None = _help(
        "Where the backend's heavy work runs: none (this process) or {kind: ray, address, workers, "
        "resources}. Never changes results.", default=None)

    def __post_init__(self) -> None:
        if self.executor is not None and (not isinstance(self.executor, dict)
                                          or not isinstance(self.executor.get("kind", "inprocess"), str)):
            raise ConfigError("must be a mapping with a `kind` (inprocess or ray), e.g. {kind: ray, address: auto}",
                              key="collect.executor")
        if not isinstance(self.backend, str) or not self.backend:
            raise ConfigError(f"must be a backend name, got {self.backend!r}", key="collect.backend")
        _number(self.top_k, "collect.top_k", low=1, integer=True)
        _number(self.batch_size, "collect.batch_size", low=1, integer=True)
        _number(self.evidence_lookup, "collect.evidence_lookup", low=0, integer=True)
        _flag(self.evidence, "collect.evidence")
        _flag(self.skip_invalid, "collect.skip_invalid")
        if not isinstance(self.backend_options, dict):
            raise ConfigError("must be a mapping", key="collect.backend_options")
        if not isinstance(self.grade, GradeSettings):
            raise ConfigError("must be grade settings", key="grade")
        for key in ("train_format", "eval_format"):
            if getattr(self, key) is not None:
                get_layout(getattr(self, key), key=f"collect.{key}")


@dataclass(frozen=True)
class FlagSettings:
    """Which cited pairs are flagged (:mod:`refine.stages.flagging`)."""

    min_bad: int = _help("Flag only pairs cited by at least this many distinct bad answers.", default=2)
    alpha: float = _help("False-discovery rate of the over-citation test.", default=0.1)
    level_weights: dict[str, float] = _help("Weight of a citation at each influence level (blame).",
                                            default_factory=lambda: dict(LEVEL_WEIGHTS))
    defect_groups: bool = _help("Without text evidence: test pairs that teach the same claim about the "
                                "same thing together (refine.stages.flagging.defects), counting on-topic citations "
                                "only; off: test each pair alone on all its citations.", default=True)
    member_max_good: int = _help("A member of a flagged defect group is flagged when at most this "
                                 "many good answers of its topic cite it.", default=0)
    evidence: bool = _help("Judge pairs by what the texts say (refine.stages.flagging.evidence): a bad answer that "
                           "repeats a pair's sentence its reference lacks is evidence against the "
                           "pair; off, or in a run without answers and references: the citation "
                           "tests above.", default=True)
    repeat_min: float = _help("Cosine at which a sentence of an answer repeats a pair's sentence.",
                              default=0.7)
    support_min: float = _help("Cosine at which a reference sentence states (or, with other numbers, "
                               "contradicts) a pair's sentence.", default=0.65)
    paraphrase_min: float = _help("Cosine at which an answer sentence repeats a pair's sentence in its own "
                                  "words (needing only support_words_min of the pair's words).", default=0.8)
    repeat_words_min: float = _help("Share of a pair sentence's content words an answer must have to "
                                    "repeat it (a model echoes training text in its words).", default=0.5)
    support_words_min: float = _help("Share of a pair sentence's content words a reference must have to "
                                     "state it (a reference is written apart, in its own words).", default=0.4)
    same_claim_min: float = _help("Cosine at which two pairs' sentences (same numbers, no other "
                                  "name) make the same claim: one defect group.", default=0.7)

    def __post_init__(self) -> None:
        from .stages.flagging.evidence_text import FLOOR, LINK_FLOOR

        _flag(self.evidence, "flag.evidence")
        for name in ("repeat_min", "paraphrase_min", "support_min", "same_claim_min"):
            floor = LINK_FLOOR if name == "same_claim_min" else FLOOR
            _number(getattr(self, name), f"flag.{name}", low=floor, high=1)
        for name in ("repeat_words_min", "support_words_min"):
            _number(getattr(self, name), f"flag.{name}", low=0, high=1)
        _number(self.min_bad, "flag.min_bad", low=1, integer=True)
        _flag(self.defect_groups, "flag.defect_groups")
        _number(self.member_max_good, "flag.member_max_good", low=0, integer=True)
        _number(self.alpha, "flag.alpha", low=0, high=1, low_open=True)
        if not isinstance(self.level_weights, dict) or set(self.level_weights) != set(LEVELS):
            raise ConfigError(f"must give a weight for each of {', '.join(LEVELS)}",
                              key="flag.level_weights")
        for level, weight in self.level_weights.items():
            _number(weight, f"flag.level_weights.{level}", low=0)


@dataclass(frozen=True)
class ClusterSettings:
    """How bad answers are grouped into failure modes (:mod:`refine.stages.clustering`)."""

    distance_threshold: float = _help("Cosine distance at which failure modes stop merging.", default=0.6)
    min_size: int = _help("Smaller groups of bad answers stay unclustered.", default=3)
    top_pairs: int = _help("Driving pairs listed per failure mode.", default=5)
    max_direct: int = _help("Above this many bad answers, cluster k-means micro-clusters instead.",
                            default=3000)
    unrelated_similarity: float = _help("Failure modes whose centroids are less similar than this "
                                        "are unrelated (a pair driving both is called out).", default=0.3)
    seed: int = _help("Seed of the k-means summary.", default=0)

    def __post_init__(self) -> None:
        _number(self.distance_threshold, "cluster.distance_threshold", low=0, high=2, low_open=True,
                high_open=True)
        _number(self.min_size, "cluster.min_size", low=1, integer=True)
        _number(self.top_pairs, "cluster.top_pairs", low=1, integer=True)
        _number(self.max_direct, "cluster.max_direct", low=10, integer=True)
        _number(self.unrelated_similarity, "cluster.unrelated_similarity", low=-1, high=1)
        _number(self.seed, "cluster.seed", low=0, integer=True)


@dataclass(frozen=True)
class ReportSettings:
    """How much a report shows (:mod:`refine.stages.reporting`); big runs are sampled, not dumped."""

    max_flagged: int = _help("Flagged pairs listed.", default=500)
    max_cited: int = _help("Cited pairs listed (behind a toggle).", default=1000)
    max_points: int = _help("Points in the blame scatter plot.", default=3000)
    max_unclustered: int = _help("Unclustered bad answers listed.", default=200)
    examples: int = _help("Example answers shown per pair and per failure mode.", default=3)
    seed: int = _help("Seed of the samples.", default=0)

    def __post_init__(self) -> None:
        for name in ("max_flagged", "max_cited", "max_points", "max_unclustered", "examples", "seed"):
            _number(getattr(self, name), f"report.{name}", low=0, integer=True)


@dataclass(frozen=True)
class EditSettings:
    """When a flagged pair's answer may be replaced by an eval reference (:mod:`refine.stages.emission.decisions`)."""

    question_min: float = _help("Cosine an eval question needs to the pair's question to count as "
                                "the same question.", default=0.75)
    agree_min: float = _help("Cosine the references of all such questions need to each other.",
                             default=0.8)

    def __post_init__(self) -> None:
        for name in ("question_min", "agree_min"):
            _number(getattr(self, name), f"emit.{name}", low=0, high=1)


@dataclass(frozen=True)
class EmitSettings:
    """What happens to flagged pairs in the refined dataset (:mod:`refine.stages.emission`)."""

    mode: str = _help("prune: drop flagged pairs; quarantine: move them to a separate output; edit: "
                      "replace their answer with the agreeing eval reference, else quarantine them.",
                      default="prune")
    counterexamples: bool = _help("Append corrected pairs (eval question + reference) for failure "
                                  "modes that lost every pair driving them (needs `refine cluster`).",
                                  default=False)
    max_counterexamples_per_mode: int = _help("Counter-examples per failure mode.", default=5)
    question_min: float = _help(help_of(EditSettings, "question_min"), default=0.75)
    agree_min: float = _help(help_of(EditSettings, "agree_min"), default=0.8)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; one of {', '.join(MODES)}", key="emit.mode")
        _flag(self.counterexamples, "emit.counterexamples")
        _number(self.max_counterexamples_per_mode, "emit.max_counterexamples_per_mode", low=1, integer=True)
        self.edit   # validates question_min and agree_min

    @property
    def edit(self) -> EditSettings:
        return EditSettings(self.question_min, self.agree_min)


@dataclass(frozen=True)
class CheckSettings:
    """Which pre-retraining checks run, how, and how loud (:mod:`refine.checks`)."""

    select: list[str] | None = _help("Checks to run (default: all).", default=None)
    options: dict[str, dict[str, Any]] = _help("Per-check options.", default_factory=dict)
    severity: dict[str, str] = _help("Per-check severity replacing its default.", default_factory=dict)
    max_findings: int = _help("Findings shown per failed check.", default=20)

    def __post_init__(self) -> None:
        if self.select is not None and (isinstance(self.select, str) or not isinstance(self.select, list)):
            raise ConfigError("must be a list of check names", key="checks.select")
        for key in ("options", "severity"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError("must be a mapping keyed by check name", key=f"checks.{key}")
        _number(self.max_findings, "checks.max_findings", low=0, integer=True)


@dataclass(frozen=True)
class OutcomeSettings:
    """How a retrained run is judged against the run before it (:mod:`refine.stages.outcomes`)."""

    alpha: float = _help("Level of the test against the control runs: a change exceeds retraining "
                         "noise when its p (overall) or Benjamini-Hochberg q (per failure mode) is "
                         "at most this.", default=0.05)

    def __post_init__(self) -> None:
        _number(self.alpha, "outcome.alpha", low=0, high=1, low_open=True)


FINETUNE_DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class FinetuneSettings:
    """How a local model is re-fine-tuned on a refined dataset (:mod:`refine.stages.local_training`).
    Every field but `checkpoint_steps` decides the model."""

    base_model: str = _help("Path of the local Hugging Face model directory to start from (never "
                            "a hub id: nothing is downloaded).")
    lora: bool = _help("Train a LoRA adapter (peft) on the frozen base model; off: train every "
                       "weight of a full copy.", default=True)
    lora_r: int = _help("Rank of the LoRA update matrices.", default=16)
    lora_alpha: float = _help("LoRA scaling numerator (the update is scaled by alpha / r).", default=32)
    lora_dropout: float = _help("Dropout on the LoRA branch's input.", default=0.05)
    target_modules: list[str] | None = _help("Module names the LoRA adapter wraps (default: "
                                             "peft's choice for the model's architecture).",
                                             default=None)
    epochs: int = _help("Passes over the training set.", default=3)
    learning_rate: float = _help("Peak learning rate of AdamW, decayed linearly to 0 (LoRA: about "
                                 "1e-4 to 3e-4; a full fine-tune: about 1e-5 to 5e-5).", default=2e-4)
    batch_size: int = _help("Examples per optimiser step.", default=8)
    max_length: int = _help("Tokens per example; longer ones are cut at the end, and one whose "
                            "answer is cut away entirely is left out.", default=1024)
    seed: int = _help("Seed of the initialisation (LoRA), dropout and the order of the examples.",
                      default=0)
    device: str = _help("Where to train: auto (a GPU when torch sees one, else the CPU), cpu, "
                        "cuda or mps.", default="auto")
    checkpoint_steps: int = _help("Save a resumable checkpoint every this many steps, so a crashed "
                                  "run goes on from there (0: never). Never changes the model.",
                                  default=200)

    def __post_init__(self) -> None:
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ConfigError(f"must be the path of a local model directory, got {self.base_model!r}",
                              key="finetune.base_model")
        _flag(self.lora, "finetune.lora")
        _number(self.lora_r, "finetune.lora_r", low=1, integer=True)
        _number(self.lora_alpha, "finetune.lora_alpha", low=0, low_open=True)
        _number(self.lora_dropout, "finetune.lora_dropout", low=0, high=1, high_open=True)
        if self.target_modules is not None and (
                isinstance(self.target_modules, str) or not isinstance(self.target_modules, list)
                or not self.target_modules
                or not all(isinstance(m, str) and m for m in self.target_modules)):
            raise ConfigError("must be a non-empty list of module names, or null for peft's default",
                              key="finetune.target_modules")
        _number(self.epochs, "finetune.epochs", low=1, integer=True)
        _number(self.learning_rate, "finetune.learning_rate", low=0, low_open=True)
        _number(self.batch_size, "finetune.batch_size", low=1, integer=True)
        _number(self.max_length, "finetune.max_length", low=2, integer=True)
        _number(self.seed, "finetune.seed", low=0, integer=True)
        _number(self.checkpoint_steps, "finetune.checkpoint_steps", low=0, integer=True)
        if self.device not in FINETUNE_DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; one of {', '.join(FINETUNE_DEVICES)}",
                              key="finetune.device")
