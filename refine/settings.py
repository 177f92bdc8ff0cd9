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
answer              :class:`AnswerSettings`
retrain             :class:`RetrainSettings` (a recipe's ``retrain:`` section)
==================  ======================================================================

Every field is declared with :func:`refine.fields.setting`: its help text, its default and what
it accepts. Each dataclass checks itself when built (:func:`refine.fields.validate`: a
:class:`~refine.errors.ConfigError` keyed ``<stage>.<field>``), and the CLI's options
(:mod:`refine.cli.options`) and the recipe schema are made from the same fields, so the CLI,
the Python API and recipes share one default and one check for everything. This module imports
nothing heavy: the CLI reads it to build ``--help``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .fields import DEVICES, field_default, number_problem, setting, validate
from .formats.layouts import LAYOUTS
from .formats.records import LEVELS

__all__ = ["FINETUNE_DEVICES", "LEVEL_WEIGHTS", "MODES", "AnswerSettings", "CheckSettings",
           "ClusterSettings", "CollectSettings", "EditSettings", "EmitSettings", "FinetuneSettings",
           "FlagSettings", "GradeSettings", "OutcomeSettings", "ReportSettings", "RetrainSettings",
           "default", "help_of", "number_problem", "setting_names"]

#: How much a citation at each influence level counts, unless a run's flag settings say otherwise.
LEVEL_WEIGHTS: dict[str, float] = {"high": 1.0, "medium": 0.5, "low": 0.25}
MODES = ("prune", "edit", "quarantine")
FINETUNE_DEVICES = DEVICES
# Below these cosines two sentences say nothing alike: refine.stages.flagging.evidence_text's
# FLOOR and LINK_FLOOR (not imported: that would load the flag stage; a test keeps them equal).
_FLOOR = 0.5
_LINK_FLOOR = 0.5


def help_of(cls: type, name: str) -> str:
    """The help text of one setting."""
    return _field(cls, name).metadata.get("help", "")


def default(cls: type, name: str) -> Any:
    """The default of one setting (what the CLI shows and uses)."""
    return field_default(_field(cls, name))


def setting_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _same_as(cls: type, name: str) -> Any:
    """A field declared as `cls`'s field `name` is: one default, one help, one check for both."""
    f = _field(cls, name)
    return dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)


def _name(what: str) -> Any:
    """The check of a field that must be a non-empty string."""
    return lambda value: None if isinstance(value, str) and value.strip() else f"must be {what}, got {value!r}"


def _executor(value: Any) -> str | None:
    if value is None or (isinstance(value, dict) and isinstance(value.get("kind", "inprocess"), str)):
        return None
    return "must be a mapping with a `kind` (inprocess or ray), e.g. {kind: ray, address: auto}"


def _level_weights(value: Any) -> str | None:
    if not isinstance(value, dict) or set(value) != set(LEVELS):
        return f"must give a weight for each of {', '.join(LEVELS)}"
    return next((f"the weight of {level} must be {expected}, got {weight!r}" for level, weight in value.items()
                 if (expected := number_problem(weight, low=0)) is not None), None)


def _check_names(value: Any) -> str | None:
    return None if value is None or isinstance(value, list) else "must be a list of check names"


def _module_names(value: Any) -> str | None:
    if value is None or (isinstance(value, list) and value and all(isinstance(m, str) and m for m in value)):
        return None
    return "must be a non-empty list of module names, or null for peft's default"


def _seeds(value: Any) -> str | None:
    if isinstance(value, list) and len(set(map(repr, value))) == len(value) and all(
            number_problem(seed, low=0, integer=True) is None for seed in value):
        return None
    return f"must be a list of distinct seeds (integers ≥ 0), got {value!r}"


def _url(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return None
    return f"must be an http(s) URL or null, got {value!r}"


@dataclass(frozen=True)
class GradeSettings:
    """How an answer without a verdict is judged against its reference (:mod:`refine.stages.grading`)."""

    f1_min: float = setting("Token F1 an answer needs.", 0.2, low=0, high=1)
    key_recall_min: float = setting("Share of the reference's key words an answer needs.", 0.5, low=0, high=1)
    semantic_min: float = setting("Embedding cosine to the reference an answer needs.", 0.4, low=0, high=1)
    require_numbers: bool = setting("Every number the reference adds must be in the answer.", True)

    def __post_init__(self) -> None:
        validate(self, "grade")


@dataclass(frozen=True)
class CollectSettings:
    """How to collect. Every field but `batch_size`, `skip_invalid` and `executor` decides the results."""

    backend: str = setting("Attribution backend (`refine backends` lists them).", "embedding",
                           check=_name("a backend name"))
    top_k: int = setting("At most this many influential pairs per eval item.", 10, low=1)
    backend_options: dict[str, Any] = setting("The backend's own options (`refine backends --options "
                                              "NAME` lists them).", factory=dict)
    grade: GradeSettings = setting("How answers without a verdict are graded.", factory=GradeSettings)
    batch_size: int = setting("Eval items attributed (and saved) per step.", 32, low=1)
    skip_invalid: bool = setting("Skip and count invalid records instead of stopping at the first.", False)
    train_format: str | None = setting("Record layout of every training source (default: detected).",
                                       None, choices=LAYOUTS)
    eval_format: str | None = setting("Record layout of the eval set (default: detected).", None,
                                      choices=LAYOUTS)
    evidence: bool = setting("Gather text evidence (refine.stages.flagging.evidence: sentences of answers, "
                             "references and training answers compared) for flag; off: flag uses "
                             "citations alone.", True)
    evidence_lookup: int = setting("Training sentences each sentence of a bad answer is looked up "
                                   "against (text evidence beyond citations; 0: citations only).", 20, low=0)
    executor: dict[str, Any] | None = setting(
        "Where the backend's heavy work runs: none (this process) or {kind: ray, address, workers, "
        "resources}. Never changes results.", None, check=_executor)

    def __post_init__(self) -> None:
        validate(self, "collect")


@dataclass(frozen=True)
class FlagSettings:
    """Which cited pairs are flagged (:mod:`refine.stages.flagging`)."""

    min_bad: int = setting("Flag only pairs cited by at least this many distinct bad answers.", 2, low=1)
    alpha: float = setting("False-discovery rate of the over-citation test.", 0.1, low=0, high=1, low_open=True)
    level_weights: dict[str, float] = setting("Weight of a citation at each influence level (blame).",
                                              factory=lambda: dict(LEVEL_WEIGHTS), check=_level_weights)
    defect_groups: bool = setting("Without text evidence: test pairs that teach the same claim about the "
                                  "same thing together (refine.stages.flagging.defects), counting on-topic "
                                  "citations only; off: test each pair alone on all its citations.", True)
    member_max_good: int = setting("A member of a flagged defect group is flagged when at most this "
                                   "many good answers of its topic cite it.", 0, low=0)
    evidence: bool = setting("Judge pairs by what the texts say (refine.stages.flagging.evidence): a bad "
                             "answer that repeats a pair's sentence its reference lacks is evidence "
                             "against the pair; off, or in a run without answers and references: the "
                             "citation tests above.", True)
    repeat_min: float = setting("Cosine at which a sentence of an answer repeats a pair's sentence.",
                                0.7, low=_FLOOR, high=1)
    support_min: float = setting("Cosine at which a reference sentence states (or, with other numbers, "
                                 "contradicts) a pair's sentence.", 0.65, low=_FLOOR, high=1)
    paraphrase_min: float = setting("Cosine at which an answer sentence repeats a pair's sentence in its "
                                    "own words (needing only support_words_min of the pair's words).",
                                    0.8, low=_FLOOR, high=1)
    repeat_words_min: float = setting("Share of a pair sentence's content words beyond its question (all "
                                      "of them when it states numbers) an answer must have to repeat it (a "
                                      "model echoes training text in its words).", 0.5,
                                      low=0, high=1)
    support_words_min: float = setting("Share of a pair sentence's content words beyond its question a "
                                       "reference must have to state it, unless the two still read alike "
                                       "(support_min) bare of the words naming their subject.",
                                       0.4, low=0, high=1)
    same_claim_min: float = setting("Cosine at which two pairs' sentences (same numbers, no other "
                                    "name) make the same claim: one defect group.", 0.7,
                                    low=_LINK_FLOOR, high=1)

    def __post_init__(self) -> None:
        validate(self, "flag")


@dataclass(frozen=True)
class ClusterSettings:
    """How bad answers are grouped into failure modes (:mod:`refine.stages.clustering`)."""

    distance_threshold: float = setting("Cosine distance at which failure modes stop merging.", 0.6,
                                        low=0, high=2, low_open=True, high_open=True)
    min_size: int = setting("Smaller groups of bad answers stay unclustered.", 3, low=1)
    top_pairs: int = setting("Driving pairs listed per failure mode.", 5, low=1)
    max_direct: int = setting("Above this many bad answers, cluster k-means micro-clusters instead.",
                              3000, low=10)
    unrelated_similarity: float = setting("Failure modes whose centroids are less similar than this "
                                          "are unrelated (a pair driving both is called out).", 0.3,
                                          low=-1, high=1)
    seed: int = setting("Seed of the k-means summary.", 0, low=0)

    def __post_init__(self) -> None:
        validate(self, "cluster")


@dataclass(frozen=True)
class ReportSettings:
    """How much a report shows (:mod:`refine.stages.reporting`); big runs are sampled, not dumped."""

    max_flagged: int = setting("Flagged pairs listed.", 500, low=0)
    max_cited: int = setting("Cited pairs listed (behind a toggle).", 1000, low=0)
    max_points: int = setting("Points in the blame scatter plot.", 3000, low=0)
    max_unclustered: int = setting("Unclustered bad answers listed.", 200, low=0)
    examples: int = setting("Example answers shown per pair and per failure mode.", 3, low=0)
    seed: int = setting("Seed of the samples.", 0, low=0)

    def __post_init__(self) -> None:
        validate(self, "report")


@dataclass(frozen=True)
class EditSettings:
    """When a flagged pair's answer may be replaced by an eval reference (:mod:`refine.stages.emission.decisions`)."""

    question_min: float = setting("Cosine an eval question needs to the pair's question to count as "
                                  "the same question.", 0.75, low=0, high=1)
    agree_min: float = setting("Cosine the references of all such questions need to each other.", 0.8,
                               low=0, high=1)

    def __post_init__(self) -> None:
        validate(self, "emit")


@dataclass(frozen=True)
class EmitSettings:
    """What happens to flagged pairs in the refined dataset (:mod:`refine.stages.emission`); its
    last two fields are :class:`EditSettings`' (:attr:`edit`)."""

    mode: str = setting("prune: drop flagged pairs; quarantine: move them to a separate output; edit: "
                        "replace their answer with the agreeing eval reference, else quarantine them.",
                        "prune", choices=MODES)
    counterexamples: bool = setting("Append corrected pairs (eval question + reference) for failure "
                                    "modes that lost every pair driving them (needs `refine cluster`).",
                                    False)
    max_counterexamples_per_mode: int = setting("Counter-examples per failure mode.", 5, low=1)
    question_min: float = _same_as(EditSettings, "question_min")
    agree_min: float = _same_as(EditSettings, "agree_min")

    def __post_init__(self) -> None:
        validate(self, "emit")

    @property
    def edit(self) -> EditSettings:
        return EditSettings(self.question_min, self.agree_min)


@dataclass(frozen=True)
class CheckSettings:
    """Which pre-retraining checks run, how, and how loud (:mod:`refine.checks`)."""

    select: list[str] | None = setting("Checks to run (default: all).", None, check=_check_names)
    options: dict[str, dict[str, Any]] = setting("Per-check options.", factory=dict)
    severity: dict[str, str] = setting("Per-check severity replacing its default.", factory=dict)
    max_findings: int = setting("Findings shown per failed check.", 20, low=0)

    def __post_init__(self) -> None:
        validate(self, "checks")


@dataclass(frozen=True)
class OutcomeSettings:
    """How a retrained run is judged against the run before it (:mod:`refine.stages.outcomes`)."""

    alpha: float = setting("Level of the test against the control runs: a change exceeds retraining "
                           "noise when its p (overall) or Benjamini-Hochberg q (per failure mode) is "
                           "at most this.", 0.05, low=0, high=1, low_open=True)

    def __post_init__(self) -> None:
        validate(self, "outcome")


@dataclass(frozen=True)
class FinetuneSettings:
    """How a model is re-fine-tuned on a refined dataset (:mod:`refine.stages.local_training`, or
    SeekrFlow through :mod:`refine.stages.handoff`). Every field but `checkpoint_steps` decides
    the model."""

    base_model: str = setting("The base model: its SeekrFlow name (GET v1/flow/models), or for a local "
                              "fine-tune the path of its Hugging Face model directory (never a hub id: "
                              "nothing is downloaded).", check=_name("the path of a local model directory"))
    lora: bool = setting("Train a LoRA adapter (peft) on the frozen base model; off: train every "
                         "weight of a full copy.", True)
    lora_r: int = setting("Rank of the LoRA update matrices.", 16, low=1)
    lora_alpha: float = setting("LoRA scaling numerator (the update is scaled by alpha / r).", 32,
                                low=0, low_open=True)
    lora_dropout: float = setting("Dropout on the LoRA branch's input.", 0.05, low=0, high=1, high_open=True)
    target_modules: list[str] | None = setting("Module names the LoRA adapter wraps (default: peft's "
                                               "choice for the model's architecture).", None,
                                               check=_module_names)
    epochs: int = setting("Passes over the training set.", 3, low=1)
    learning_rate: float = setting("Peak learning rate of AdamW, decayed linearly to 0 (LoRA: about "
                                   "1e-4 to 3e-4; a full fine-tune: about 1e-5 to 5e-5).", 2e-4,
                                   low=0, low_open=True)
    batch_size: int = setting("Examples per optimiser step.", 8, low=1)
    max_length: int = setting("Tokens per example; longer ones are cut at the end, and one whose "
                              "answer is cut away entirely is left out.", 1024, low=2)
    seed: int = setting("Seed of the initialisation (LoRA), dropout and the order of the examples.", 0, low=0)
    device: str = setting("Where to train: auto (a GPU when torch sees one, else the CPU), cpu, "
                          "cuda or mps.", "auto", choices=FINETUNE_DEVICES)
    checkpoint_steps: int = setting("Save a resumable checkpoint every this many steps, so a crashed "
                                    "run goes on from there (0: never). Never changes the model.", 200, low=0)

    def __post_init__(self) -> None:
        validate(self, "finetune")


@dataclass(frozen=True)
class AnswerSettings:
    """How a model answers an eval set (:mod:`refine.stages.answering`): greedy decoding, so the
    same model, eval set and settings give the same answers."""

    max_new_tokens: int = setting("Most tokens generated per answer.", 128, low=1)
    batch_size: int = setting("Questions answered together: one generate call here, or requests in "
                              "flight to a service.", 16, low=1)
    device: str = setting("Where a local model answers: auto (a GPU when torch sees one, else the "
                          "CPU), cpu, cuda or mps.", "auto", choices=FINETUNE_DEVICES)

    def __post_init__(self) -> None:
        validate(self, "answer")


@dataclass(frozen=True)
class RetrainSettings:
    """The loop after emit (:mod:`refine.stages.retraining`): fine-tune on the refined set,
    answer the eval set with the new model, collect those answers, and count what changed."""

    finetune: FinetuneSettings = setting("How the model is fine-tuned (its base model is required).")
    answer: AnswerSettings = setting("How the new model answers the eval set.", factory=AnswerSettings)
    outcome: OutcomeSettings = setting("How the retrained run is judged.", factory=OutcomeSettings)
    controls: list[int] = setting("Seeds of control retrains on the unmodified training set (the "
                                  "retraining noise outcome tests against; [] for none).", factory=list,
                                  check=_seeds)
    base_url: str | None = setting("Train and answer through this SeekrFlow API (a `refine serve` "
                                   "address works); null: here, with finetune_local.", None, check=_url)
    api_key_env: str = setting("The environment variable holding the API key (not needed for a "
                               "loopback server).", "SEEKR_API_KEY", check=_name("an environment variable"))
    team_id: str | None = setting("Sent as x-team-id (default: $SEEKR_TEAM_ID).", None)
    poll_interval: float = setting("Seconds between looks at a fine-tune the service runs.", 10.0,
                                   low=0, low_open=True)

    def __post_init__(self) -> None:
        validate(self, "retrain")
