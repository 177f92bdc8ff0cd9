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
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core._atomic import sha256_file, write_json
from ..core._progress import Progress
from ..errors import ConfigError, RunDirError
from ..core.provenance import provenance
from ..settings import FinetuneSettings
from ..formats.training import TrainingInput, TrainingPair, load_training

__all__ = ["RECORD", "FinetuneSettings", "LocalModel", "finetune_local"]

RECORD = "finetune.json"
RECORD_FORMAT = 1
_PARTIAL = ".{name}.finetune-partial"
# How the order is drawn; part of the inputs, so that a change of method is never mistaken for
# the same run.
ORDER_METHOD = "numpy default_rng([seed, epoch]).permutation, one per epoch, concatenated"
# Settings left out of what a finished model is matched on: `checkpoint_steps` never changes the
# weights; `base_model` and `device` are there as the model's fingerprint and the device resolved
# (and the LoRA settings only when training LoRA).
_NOT_INPUTS = ("base_model", "checkpoint_steps", "device")
_MAX_LOGGED = 200          # loss entries kept in the record; longer runs log every n-th step


@dataclass(frozen=True)
class LocalModel:
    """A fine-tuned model in `path`: a full model directory, or (``adapter``) a peft adapter
    to load on the base model that ``record["base_model"]["path"]`` names."""

    path: Path
    adapter: bool
    record: dict[str, Any]


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
    from ..core.embeddings import _fingerprint

    fingerprint = _fingerprint(base)
    inputs = _inputs(fingerprint, data.files[0].sha256, settings, device)
    found = _finished(out, inputs)
    if found is not None:
        return found
    _check_replaceable(out, inputs, replace)
    work = out.parent / _PARTIAL.format(name=out.name)
    with _locked(work, out):
        model = work / "model"
        found = _finished(model, inputs)       # trained, then stopped before the swap
        if found is None:
            record = _train(base, fingerprint, data, settings, device, inputs, work, progress)
        else:
            record = found.record
        _swap_in(model, out, work)
        shutil.rmtree(work, ignore_errors=True)
    return LocalModel(out, record["output"]["adapter"], record)


# -- what a model is made from -------------------------------------------------------------

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
    from ..core.devices import resolve_device

    try:
        return resolve_device(name, "float32")
    except ConfigError as exc:
        raise ConfigError(exc.message, key="finetune.device") from None


def _inputs(fingerprint: str, data_sha256: str, settings: FinetuneSettings, device: str) -> dict:
    chosen = {k: v for k, v in dataclasses.asdict(settings).items() if k not in _NOT_INPUTS
              and (settings.lora or not (k.startswith("lora_") or k == "target_modules"))}
    inputs = {"base_model_fingerprint": fingerprint, "data_sha256": data_sha256,
              "settings": chosen, "device": device.split(":")[0], "order": ORDER_METHOD,
              "format": RECORD_FORMAT}
    return json.loads(json.dumps(inputs))     # as it reads back from a record


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_record(directory: Path) -> dict | None:
    return _read_json(directory / RECORD)


def _finished(directory: Path, inputs: dict) -> LocalModel | None:
    """The model in `directory` when it is finished and made from `inputs`."""
    record = _read_record(directory)
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


def _check_replaceable(out: Path, inputs: dict, replace: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise RunDirError(f"{out} is a file, not a model directory")
    record = _read_record(out)
    if record is None:
        if any(out.iterdir()):
            raise RunDirError(f"{out} holds files but no {RECORD}: refine replaces only a model "
                              "directory it wrote; choose another out_dir")
        return
    if record.get("complete") is True and record.get("inputs") != inputs and not replace:
        changed = "; ".join(_differences(record.get("inputs"), inputs))
        raise RunDirError(f"{out} holds a model made from other inputs ({changed}); pass "
                          "replace=True to retrain it there, or choose another out_dir")


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


# -- training ----------------------------------------------------------------------------

def _order(n: int, seed: int, epochs: int) -> Any:
    import numpy as np

    return np.concatenate([np.random.default_rng([seed, epoch]).permutation(n)
                           for epoch in range(epochs)]).astype(np.int64)


@functools.cache
def _classes() -> tuple[type, type]:
    """(trainer, progress callback), built on first use: trl and torch load slowly."""
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class InOrder(torch.utils.data.Sampler):
        def __init__(self, order: Any) -> None:
            self.order = order

        def __iter__(self) -> Iterator[int]:
            return iter(self.order.tolist())

        def __len__(self) -> int:
            return len(self.order)

    class Trainer(SFTTrainer):
        """SFTTrainer visiting the examples in refine's order (set `refine_seed`, `refine_epochs`)."""

        refine_seed = 0
        refine_epochs = 1
        refine_order: Any = None

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            self.refine_order = _order(len(dataset), self.refine_seed, self.refine_epochs)
            return InOrder(self.refine_order)

    class Bar(TrainerCallback):
        def __init__(self, progress: Progress) -> None:
            self.progress, self.bar, self.resumed = progress, None, 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.resumed = state.global_step
            self.bar = self.progress.bar("finetune", total=state.max_steps, unit="step",
                                         initial=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(1)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs and self.bar is not None:
                self.bar.set_postfix(loss=f"{logs['loss']:.4g}")

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # Only the newest checkpoint is resumed from; older ones are disk.
            for old in Path(args.output_dir).glob("checkpoint-*"):
                if old.name != f"checkpoint-{state.global_step}":
                    shutil.rmtree(old, ignore_errors=True)

    return Trainer, Bar


@contextlib.contextmanager
def _quiet_and_deterministic() -> Iterator[None]:
    """Offline, without the libraries' own bars (refine shows its own), and with torch's
    deterministic algorithms; each setting put back afterwards."""
    import datasets
    import torch
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # cuBLAS is deterministic only with a fixed workspace (read when CUDA starts up).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    hf_bars, ds_bars = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    algorithms = (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(algorithms[0], warn_only=algorithms[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if hf_bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            datasets.enable_progress_bars()


def _load(base: Path, seed: int) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    set_seed(seed)      # weights a checkpoint lacks are drawn at random
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"cannot load the model in {str(base)!r}: {type(exc).__name__}: {exc}",
                          key="finetune.base_model") from None
    if tokenizer.eos_token is None:
        raise ConfigError(f"the tokenizer in {str(base)!r} has no end-of-sequence token, so the "
                          "model could not learn where an answer ends", key="finetune.base_model")
    return tokenizer, model


def _template(tokenizer: Any, pairs: list[TrainingPair]) -> dict:
    """How the exchanges are rendered (recorded), checked on an exchange like the data's."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        from ..attribution.gradient import DEFAULT_FALLBACK

        return {"used": "fallback", "format": DEFAULT_FALLBACK + "{answer}<eos>"}
    system = next((p.system_prompt for p in pairs if p.system_prompt), None)
    try:
        tokenizer.apply_chat_template(_prompt(pairs[0].question, system) + _completion(pairs[0].answer),
                                      tokenize=False)
    except Exception as exc:   # jinja2's TemplateError, or the template's raise_exception()
        raise ConfigError(f"the tokenizer's chat template refused an exchange"
                          f"{' with a system prompt' if system else ''}: {exc}",
                          key="finetune.base_model") from None
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return {"used": "tokenizer", "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def _prompt(question: str, system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": question}]


def _completion(answer: str) -> list[dict]:
    return [{"role": "assistant", "content": answer}]


def _rows(pairs: list[TrainingPair], template: dict) -> list[dict]:
    if template["used"] == "tokenizer":
        return [{"prompt": _prompt(p.question, p.system_prompt), "completion": _completion(p.answer)}
                for p in pairs]
    from ..attribution.gradient import DEFAULT_FALLBACK

    # The trainer appends the end-of-sequence token to each completion.
    return [{"prompt": DEFAULT_FALLBACK.format(system=f"{p.system_prompt}\n\n" if p.system_prompt else "",
                                               question=p.question),
             "completion": p.answer} for p in pairs]


def _config(settings: FinetuneSettings, device: str, work: Path, steps: int) -> Any:
    import torch
    from trl import SFTConfig

    cuda = device.startswith("cuda")
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    options: dict[str, Any] = dict(
        output_dir=str(work / "checkpoints"), num_train_epochs=1,   # the order holds the epochs
        per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=1,
        learning_rate=settings.learning_rate, lr_scheduler_type="linear", warmup_steps=0,
        seed=settings.seed, data_seed=settings.seed, max_length=settings.max_length,
        completion_only_loss=True, packing=False, report_to="none", disable_tqdm=True,
        logging_strategy="steps", logging_steps=max(1, -(-steps // _MAX_LOGGED)),
        save_strategy="steps" if settings.checkpoint_steps else "no",
        save_steps=settings.checkpoint_steps or 500,
        use_cpu=device == "cpu", dataloader_pin_memory=cuda, dataloader_num_workers=0,
        # bfloat16 autocast where the GPU has it; float32 elsewhere (the CPU's bf16 is slow).
        bf16=cuda and torch.cuda.is_bf16_supported(), fp16=False)
    # Recomputing activations saves GPU memory and changes no number; on the CPU it only costs.
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names \
        else "gradient_checkpointing"
    options[checkpointing] = cuda
    if checkpointing == "activation_checkpointing":
        options["gradient_checkpointing"] = None      # the deprecated alias would override it
    return SFTConfig(**options)


def _lora(settings: FinetuneSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                      lora_dropout=settings.lora_dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=list(settings.target_modules) if settings.target_modules else None)


def _latest_checkpoint(directory: Path) -> str | None:
    steps = [(int(p.name.split("-")[1]), p) for p in directory.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(steps)[1]) if steps else None


def _versions() -> dict:
    from importlib import metadata

    record = provenance()
    for name in ("trl", "peft", "accelerate", "datasets"):
        try:
            record["libraries"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            record["libraries"][name] = None
    return record


def _train(base: Path, fingerprint: str, data: Any, settings: FinetuneSettings, device: str,
           inputs: dict, work: Path, progress: bool) -> dict:
    import torch

    checkpoints = work / "checkpoints"
    # Checkpoints of other inputs (the data changed since the crash) are no place to go on from.
    if _read_json(work / "inputs.json") != inputs:
        shutil.rmtree(checkpoints, ignore_errors=True)
    shutil.rmtree(work / "model", ignore_errors=True)
    write_json(work / "inputs.json", inputs)
    Trainer, Bar = _classes()
    pairs = data.pairs
    with _quiet_and_deterministic(), Progress(progress).session() as bars:
        tokenizer, model = _load(base, settings.seed)
        template = _template(tokenizer, pairs)
        from datasets import Dataset

        steps = -(-len(pairs) * settings.epochs // settings.batch_size)
        bar = Bar(bars)
        try:
            trainer = Trainer(model=model, args=_config(settings, device, work, steps),
                              train_dataset=Dataset.from_list(_rows(pairs, template)),
                              processing_class=tokenizer, callbacks=[bar],
                              peft_config=_lora(settings) if settings.lora else None)
        except ValueError as exc:
            if settings.lora and "target_modules" in str(exc):
                raise ConfigError(f"peft cannot choose the modules of this model: {exc}",
                                  key="finetune.target_modules") from None
            raise
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.refine_seed, trainer.refine_epochs = settings.seed, settings.epochs
        if len(trainer.train_dataset) == 0:
            raise ConfigError(f"no example keeps any of its answer within {settings.max_length} "
                              "tokens", key="finetune.max_length")
        resume = _latest_checkpoint(checkpoints)
        try:
            trainer.train(resume_from_checkpoint=resume)
        except torch.OutOfMemoryError:
            raise ConfigError(f"out of memory on {device}: lower batch_size or max_length, or train "
                              "a LoRA adapter (lora: true)", key="finetune.batch_size") from None
        trained = trainer.accelerator.unwrap_model(trainer.model)
        model_dir = work / "model"
        trained.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    losses = [[entry["step"], entry["loss"]] for entry in trainer.state.log_history if "loss" in entry]
    files = {p.relative_to(model_dir).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(model_dir.rglob("*")) if p.is_file()}
    source = data.files[0]
    record = {
        "stage": "finetune", "format": RECORD_FORMAT, "complete": True, "inputs": inputs,
        "base_model": {"path": str(base), "fingerprint": fingerprint},
        "data": {"path": source.path, "sha256": source.sha256, "format": source.format,
                 "layout": source.layout, "records": source.records, "skipped": source.skipped,
                 "examples": len(trainer.train_dataset)},
        "settings": dataclasses.asdict(settings),
        "chat_template": template,
        "loss_on": "answer",
        "seed": settings.seed,
        "data_order": {"method": ORDER_METHOD, "epochs": settings.epochs,
                       "sha256": _digest(trainer.refine_order)},
        # Bit-for-bit sameness holds on the same kind of device, GPU count and CPU thread count.
        "device": device, "gpus": trainer.args.n_gpu if device.startswith("cuda") else 0,
        "cpu_threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if trainer.args.bf16 else "float32",
        "deterministic_algorithms": True,
        "optimizer": str(trainer.args.optim.value if hasattr(trainer.args.optim, "value")
                         else trainer.args.optim),
        "steps": trainer.state.global_step, "resumed_from_step": bar.resumed,
        "final_loss": losses[-1][1] if losses else None,
        "losses": losses,
        "output": {"adapter": settings.lora, "files": files},
        "provenance": _versions(),
    }
    write_json(model_dir / RECORD, record)
    return record


def _digest(order: Any) -> str:
    return hashlib.sha256(order.astype("<i8").tobytes()).hexdigest()
