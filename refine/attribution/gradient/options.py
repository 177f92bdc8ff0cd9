"""The gradient backend's settings: one frozen dataclass, checked when it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..calibration import LevelCalibration
from ...errors import ConfigError
from .encoding import DEFAULT_FALLBACK

__all__ = ["DEVICES", "DTYPES", "MEASUREMENTS", "PRECONDITIONERS", "WHITENINGS", "GradientOptions"]

PRECONDITIONERS = ("layerwise", "trak", "identity", "cosine")
MEASUREMENTS = ("margin", "loss")
WHITENINGS = ("none", "diag", "kfac")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class GradientOptions:
    """What a gradient run computes: each field is a key of ``backend_options`` (fields marked
    ``affects_results: False`` change only how it runs, never its results)."""

    model: str = ""
    adapter: str | None = None
    projection_dim: int = 4096
    seed: int = 0
    damping: float = 1.0
    preconditioner: str = "cosine"
    relative: bool = True
    measurement: str = "margin"
    batch_size: int | str = field(default=16, metadata={"affects_results": False})
    device: str = field(default="auto", metadata={"affects_results": False})
    dtype: str = "float32"
    modules: list[str] | None = None
    chat_template_fallback: str = DEFAULT_FALLBACK
    max_length: int = 512
    whiten: str = "kfac"
    whiten_damping: float = 0.1
    whiten_examples: int = 1024
    whiten_max_dim: int = 4096
    eval_mix: float = 0.0
    contrast: float = 1.0
    contrast_neighbours: int = 8
    z_low: float = LevelCalibration.z_low
    z_medium: float = LevelCalibration.z_medium
    z_high: float = LevelCalibration.z_high
    cache_dir: str | None = field(default=None, metadata={"affects_results": False})

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(why, key=f"backend_options.{key}")

        if not isinstance(self.model, str) or not self.model:
            raise bad("model", "is required: the path of a local causal LM directory")
        for key in ("projection_dim", "batch_size", "max_length"):
            value = getattr(self, key)
            if key == "batch_size" and value == "auto":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, f"must be a positive integer{' or auto' if key == 'batch_size' else ''}, "
                          f"got {value!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise bad("device", f"is {self.device!r}; expected one of {', '.join(DEVICES)} (or cuda:N)")
        if self.dtype not in DTYPES:
            raise bad("dtype", f"is {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise bad("seed", f"must be an integer, got {self.seed!r}")
        if not isinstance(self.damping, (int, float)) or isinstance(self.damping, bool) \
                or not self.damping > 0:
            raise bad("damping", f"must be a positive number, got {self.damping!r}")
        if self.measurement not in MEASUREMENTS:
            raise bad("measurement", f"is {self.measurement!r}; expected one of "
                      f"{', '.join(MEASUREMENTS)}")
        if not isinstance(self.relative, bool):
            raise bad("relative", f"must be true or false, got {self.relative!r}")
        if self.preconditioner not in PRECONDITIONERS:
            raise bad("preconditioner", f"is {self.preconditioner!r}; expected one of "
                      f"{', '.join(PRECONDITIONERS)}")
        if self.whiten not in WHITENINGS:
            raise bad("whiten", f"is {self.whiten!r}; expected one of {', '.join(WHITENINGS)}")
        for key in ("whiten_damping", "eval_mix"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= (
                    1 if key == "eval_mix" else math.inf) or (key == "whiten_damping" and value == 0):
                raise bad(key, f"must be {'in [0, 1]' if key == 'eval_mix' else 'a positive number'}, "
                          f"got {value!r}")
        for key in ("whiten_examples", "whiten_max_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, f"must be a positive integer, got {value!r}")
        if not isinstance(self.contrast, (int, float)) or isinstance(self.contrast, bool) \
                or not 0 <= self.contrast <= 1:
            raise bad("contrast", f"must be in [0, 1], got {self.contrast!r}")
        if not isinstance(self.contrast_neighbours, int) or isinstance(self.contrast_neighbours, bool) \
                or self.contrast_neighbours < 1:
            raise bad("contrast_neighbours", f"must be a positive integer, got {self.contrast_neighbours!r}")
        if self.eval_mix > 0 and self.preconditioner not in ("layerwise", "trak"):
            raise bad("eval_mix", "mixes the eval set into the curvature of `layerwise` or `trak`")
        if self.modules is not None and (not isinstance(self.modules, (list, tuple)) or not all(
                isinstance(m, str) and m for m in self.modules) or not self.modules):
            raise bad("modules", "must be a non-empty list of module name patterns (fnmatch)")
        if not isinstance(self.chat_template_fallback, str) or "{question}" not in \
                self.chat_template_fallback:
            raise bad("chat_template_fallback", "must be a string containing '{question}'")
        self.calibration()

    def calibration(self) -> LevelCalibration:
        return LevelCalibration(self.z_low, self.z_medium, self.z_high, 0.0)
