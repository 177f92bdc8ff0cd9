"""`finetune_local`: re-fine-tune a local model on a refined dataset (TRL's SFTTrainer).

::

    from refine import FinetuneSettings, finetune_local

    model = finetune_local("train.refined.jsonl", "models/retrained",
                           FinetuneSettings(base_model="models/base"))
    model.path, model.adapter, model.record["final_loss"]

What it promises:

* Offline. The base model is a local Hugging Face model directory; a hub id or a missing path is
  a :class:`~refine.errors.ConfigError` naming it, and nothing is downloaded.
* Any training data refine reads (:func:`refine.load_training`). Each record is one exchange: its
  system prompt, its question (of a conversation: the last user turn before the last assistant
  turn, as refine reads it) and its answer. The loss is on the answer alone. The exchange is
  rendered with the tokenizer's chat template when it has one, else as
  ``{system}Q: {question}\\nA: {answer}<eos>`` (the gradient backend's fallback).
* The same inputs and settings on the same kind of device give the same weights. The seed fixes the
  LoRA initialisation and dropout. The examples are visited in ``epochs`` seeded permutations one
  after another (numpy ``default_rng([seed, epoch])``), not in an order chosen by the trainer
  library. Torch's deterministic algorithms are on while training.
* ``out_dir`` holds the model (every weight, or a peft adapter on the base model), its tokenizer, and
  ``finetune.json``. The record says what the model was made from (the base model's fingerprint, the
  data's digest, the settings, the device), how (the chat template, the seed, the digest of the
  example order, library versions), the loss, and the digest of every file written.
* Re-running with the same inputs and settings returns the finished model without training.
  Training goes on in ``.<out_dir>.finetune-partial`` beside ``out_dir``, with a checkpoint every
  ``checkpoint_steps`` steps. A crashed run resumes from its last checkpoint and gives the same
  weights as one that never stopped. ``out_dir`` is swapped in whole when training ends, so it
  never holds half a model. A finished ``out_dir`` made from other inputs is never overwritten
  unless ``replace=True``.

The stage and its ``out_dir`` are here; the record it keeps is :mod:`.record`, what the trainer is
given :mod:`.examples`, and the training loop :mod:`.loop`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from ...errors import ConfigError, RunDirError
from ...formats.training import TrainingInput, load_training
from ...settings import FinetuneSettings
from . import loop
from .record import RECORD, LocalModel, check_replaceable, finished, inputs_of

__all__ = ["RECORD", "FinetuneSettings", "LocalModel", "finetune_local"]

_PARTIAL = ".{name}.finetune-partial"


def finetune_local(train: str | Path | TrainingInput, out_dir: str | Path, settings: FinetuneSettings,
                   *, progress: bool = True, replace: bool = False) -> LocalModel:
    """Train `settings.base_model` (or a LoRA adapter on it) on `train`, into `out_dir`.

    Returns at once with the model already in `out_dir` when that was made from the same
    base model, data and settings on the same kind of device. Raises ConfigError for a base model
    that is not a local directory, a missing package (``pip install 'refine[finetune]'``) or a
    device that is not here. Raises RunDirError when `out_dir` holds something else: files
    refine did not write, or (unless `replace`) a model made from other inputs.
    """
    if not isinstance(settings, FinetuneSettings):
        raise ConfigError(f"must be FinetuneSettings, got {type(settings).__name__}", key="finetune")
    out = Path(os.path.abspath(out_dir))
    base = _base_model_dir(settings.base_model)
    _require(settings.lora)
    device = _device(settings.device)
    data = load_training([train])
    from ...core.embeddings import _fingerprint

    fingerprint = _fingerprint(base)
    inputs = inputs_of(fingerprint, data.files[0].sha256, settings, device)
    found = finished(out, inputs)
    if found is not None:
        return found
    check_replaceable(out, inputs, replace)
    work = out.parent / _PARTIAL.format(name=out.name)
    with _locked(work, out):
        model = work / "model"
        found = finished(model, inputs)       # trained, then stopped before the swap
        if found is None:
            record = loop.train(base, fingerprint, data, settings, device, inputs, work, progress)
        else:
            record = found.record
        _swap_in(model, out, work)
        shutil.rmtree(work, ignore_errors=True)
    return LocalModel(out, record["output"]["adapter"], record)


def _base_model_dir(path: str) -> Path:
    directory = Path(path).expanduser()
    if (directory / "config.json").is_file():
        return directory.resolve()
    if (directory / "adapter_config.json").is_file():
        why = "is a peft adapter, not a model: give the model it was trained on"
    elif directory.is_dir():
        why = "is a directory without config.json, not a Hugging Face model directory"
    elif not directory.exists() and not Path(path).is_absolute() and path.count("/") <= 1:
        why = ("does not exist here; it looks like a hub id, and refine never downloads models: "
               "download it yourself and give its local directory")
    else:
        why = "does not exist"
    raise ConfigError(f"{path!r} {why}", key="finetune.base_model")


def _require(lora: bool) -> None:
    import importlib.util

    missing = [name for name in ("trl", *(("peft",) if lora else ()))
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"fine-tuning needs the package{'s' if len(missing) > 1 else ''} "
                          f"{' and '.join(missing)}: pip install 'refine[finetune]'", key="finetune")


def _device(name: str) -> str:
    from ...core.devices import resolve_device

    try:
        return resolve_device(name, "float32")
    except ConfigError as exc:
        raise ConfigError(exc.message, key="finetune.device") from None


@contextlib.contextmanager
def _locked(work: Path, out: Path) -> Iterator[None]:
    """Hold `work` for this process: two trainings into one out_dir would mix checkpoints."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "a") as fh:
        try:
            import fcntl
        except ImportError:       # not POSIX: unguarded
            yield
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"another process is fine-tuning into {out} ({work} is locked)") from None
        yield


def _swap_in(model: Path, out: Path, work: Path) -> None:
    """Put the finished `model` at `out` by renames: `out` is the old folder or the new one."""
    if out.exists():
        old = work / "replaced"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(model, out)
