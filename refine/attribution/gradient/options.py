"""The gradient backend's settings: one frozen dataclass, checked when it is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..calibration import LevelCalibration
from ...errors import ConfigError
from ...fields import DEVICES, device_problem, number_problem, setting, validate
from .encoding import DEFAULT_FALLBACK

__all__ = ["DEVICES", "DTYPES", "MEASUREMENTS", "PRECONDITIONERS", "WHITENINGS", "GradientOptions"]

PRECONDITIONERS = ("layerwise", "trak", "identity", "cosine")
MEASUREMENTS = ("margin", "loss")
WHITENINGS = ("none", "diag", "kfac")
DTYPES = ("float32", "bfloat16", "float16")


def _model(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "is required: the path of a local causal LM directory"


def _batch_size(value: Any) -> str | None:
    if value == "auto" or number_problem(value, low=1, integer=True) is None:
        return None
    return f"must be a positive integer or auto, got {value!r}"


def _modules(value: Any) -> str | None:
    if value is None or (isinstance(value, (list, tuple)) and value
                         and all(isinstance(m, str) and m for m in value)):
        return None
    return "must be a non-empty list of module name patterns (fnmatch)"


def _fallback(value: Any) -> str | None:
    return None if isinstance(value, str) and "{question}" in value else "must be a string containing '{question}'"


@dataclass(frozen=True)
class GradientOptions:
    """What a gradient run computes: each field is a key of ``backend_options`` (fields marked
    ``affects_results: False`` change only how it runs, never its results)."""

    model: str = setting("Required: the local causal LM directory (Hugging Face weights, config and "
                         "tokenizer; nothing is fetched from a hub).", "", check=_model)
    adapter: str | None = setting("A local PEFT LoRA adapter directory on top of model: then only the "
                                  "adapter's weights are differentiated.", None)
    projection_dim: int = setting("About how many numbers each projected gradient has.", 4096, low=1)
    seed: int = setting("Seed of the projection matrices.", 0)
    damping: float = setting("layerwise/trak: λ relative to the mean non-zero eigenvalue of each "
                             "block's Gram matrix.", 1.0, low=0, low_open=True)
    preconditioner: str = setting("cosine: the cosine of query and pair features (after whitening); "
                                  "layerwise: one curvature block per layer (LoGra/K-FAC style); trak: "
                                  "one block over all layers; identity: the plain inner product.",
                                  "cosine", choices=PRECONDITIONERS)
    relative: bool = setting("layerwise/trak: divide each pair's score by its own size under the same "
                             "metric (RelatIF), so pairs with huge gradients do not top every query.", True)
    measurement: str = setting("What is differentiated: margin, −log(p/(1−p)) per answer token "
                               "(TRAK's margin); loss, the mean token loss of the answer.", "margin",
                               choices=MEASUREMENTS)
    batch_size: int | str = setting("Examples per backward pass (auto: 64 on a GPU, halved on running "
                                    "out of memory; 16 on the CPU).", 16, check=_batch_size,
                                    affects_results=False)
    device: str = setting("auto (a GPU when torch sees one), cpu, cuda (or cuda:N) or mps; a device "
                          "this machine lacks is an error before anything is written.", "auto",
                          check=device_problem, affects_results=False)
    dtype: str = setting("The model's weights (float16: GPU only); projections, features and scores "
                         "stay float32.", "float32", choices=DTYPES)
    modules: list[str] | None = setting("fnmatch patterns of the layers differentiated (default: every "
                                        "Linear/Conv1D layer of the transformer blocks, the LoRA layers "
                                        "with an adapter).", None, check=_modules)
    chat_template_fallback: str = setting("The prompt when the tokenizer has no chat template: a format "
                                          "string with {system} and {question}.", DEFAULT_FALLBACK,
                                          check=_fallback)
    max_length: int = setting("Tokens per example (prompts are cut from the left).", 512, low=1)
    whiten: str = setting("kfac: whiten each layer's inputs and output gradients by the inverse square "
                          "roots of their token second moments before projecting; diag: their "
                          "diagonals only; none.", "kfac", choices=WHITENINGS)
    whiten_damping: float = setting("Damping of the whitening, times the mean eigenvalue of each second "
                                    "moment.", 0.1, low=0, low_open=True)
    whiten_examples: int = setting("Training pairs the whitening statistics come from (the first ones).",
                                   1024, low=1)
    whiten_max_dim: int = setting("A layer side wider than this keeps only the diagonal of its second "
                                  "moment.", 4096, low=1)
    eval_mix: float = setting("layerwise/trak: share μ of the eval set's features mixed into the "
                              "curvature (TrackStar's mixing), damping what every eval answer shares.",
                              0.0, low=0, high=1)
    contrast: float = setting("Each query's gradient less this times the mean gradient of the good eval "
                              "answers nearest to it (needs verdicts in the eval set).", 1.0, low=0, high=1)
    contrast_neighbours: int = setting("Good eval answers a query is contrasted with.", 8, low=1)
    z_low: float = setting("Robust z-score below which a pair is not cited.", LevelCalibration.z_low)
    z_medium: float = setting("Robust z-score from which a cited pair is of medium influence.",
                              LevelCalibration.z_medium)
    z_high: float = setting("Robust z-score from which a cited pair is of high influence.",
                            LevelCalibration.z_high)
    cache_dir: str | None = setting("Where training features are kept between runs (default: refine's "
                                    "cache directory).", None, affects_results=False)

    def __post_init__(self) -> None:
        validate(self, "backend_options")
        if self.eval_mix > 0 and self.preconditioner not in ("layerwise", "trak"):
            raise ConfigError("mixes the eval set into the curvature of `layerwise` or `trak`",
                              key="backend_options.eval_mix")
        self.calibration()

    def calibration(self) -> LevelCalibration:
        return LevelCalibration(self.z_low, self.z_medium, self.z_high, 0.0)
