"""The record a locally fine-tuned model keeps beside its weights (``finetune.json``): what it was
made from, and whether a model directory holds the one asked for."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import RunDirError
from ...settings import FinetuneSettings

__all__ = ["ORDER_METHOD", "RECORD", "RECORD_FORMAT", "LocalModel", "check_replaceable", "finished", "inputs_of",
           "read_json"]

RECORD = "finetune.json"
RECORD_FORMAT = 1
# How the order is drawn; part of the inputs, so that a change of method is never mistaken for
# the same run.
ORDER_METHOD = "numpy default_rng([seed, epoch]).permutation, one per epoch, concatenated"
# Settings left out of what a finished model is matched on: `checkpoint_steps` never changes the
# weights; `base_model` and `device` are there as the model's fingerprint and the device resolved
# (and the LoRA settings only when training LoRA).
_NOT_INPUTS = ("base_model", "checkpoint_steps", "device")


@dataclass(frozen=True)
class LocalModel:
    """A fine-tuned model in `path`: a full model directory, or (``adapter``) a peft adapter
    to load on the base model that ``record["base_model"]["path"]`` names."""

    path: Path
    adapter: bool
    record: dict[str, Any]


def inputs_of(fingerprint: str, data_sha256: str, settings: FinetuneSettings, device: str) -> dict:
    """What a finished model is matched on: the base model's fingerprint, the data's digest, the
    settings that change the weights, the kind of device, the order method and the record format."""
    chosen = {k: v for k, v in dataclasses.asdict(settings).items() if k not in _NOT_INPUTS
              and (settings.lora or not (k.startswith("lora_") or k == "target_modules"))}
    inputs = {"base_model_fingerprint": fingerprint, "data_sha256": data_sha256,
              "settings": chosen, "device": device.split(":")[0], "order": ORDER_METHOD,
              "format": RECORD_FORMAT}
    return json.loads(json.dumps(inputs))     # as it reads back from a record


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing, torn or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_record(directory: Path) -> dict | None:
    return read_json(directory / RECORD)


def finished(directory: Path, inputs: dict) -> LocalModel | None:
    """The model in `directory` when it is finished and made from `inputs`."""
    record = read_record(directory)
    if record is None or record.get("complete") is not True or record.get("inputs") != inputs:
        return None
    for name, meta in record["output"]["files"].items():
        file = directory / name
        if not file.is_file() or file.stat().st_size != meta["bytes"]:
            return None
    return LocalModel(directory, record["output"]["adapter"], record)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new))
                for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix[:-1]} {old!r} → {new!r}"]


def check_replaceable(out: Path, inputs: dict, replace: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise RunDirError(f"{out} is a file, not a model directory")
    record = read_record(out)
    if record is None:
        if any(out.iterdir()):
            raise RunDirError(f"{out} holds files but no {RECORD}: refine replaces only a model "
                              "directory it wrote; choose another out_dir")
        return
    if record.get("complete") is True and record.get("inputs") != inputs and not replace:
        changed = "; ".join(_differences(record.get("inputs"), inputs))
        raise RunDirError(f"{out} holds a model made from other inputs ({changed}); pass "
                          "replace=True to retrain it there, or choose another out_dir")
