"""The training loop: TRL's SFTTrainer visiting the examples in refine's order, offline and with
torch's deterministic algorithms, resuming from the newest checkpoint; and the record of what it
did (:mod:`.record`)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from ...core._atomic import sha256_file, write_json
from ...core._progress import Progress
from ...core.provenance import provenance
from ...errors import ConfigError
from ...settings import FinetuneSettings
from .examples import chat_template, example_order, order_digest, rows
from .record import ORDER_METHOD, RECORD, RECORD_FORMAT, read_json

__all__ = ["train", "trainer_classes"]

_MAX_LOGGED = 200          # loss entries kept in the record; longer runs log every n-th step


@functools.cache
def trainer_classes() -> tuple[type, type]:
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
            self.refine_order = example_order(len(dataset), self.refine_seed, self.refine_epochs)
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


def train(base: Path, fingerprint: str, data: Any, settings: FinetuneSettings, device: str,
           inputs: dict, work: Path, progress: bool) -> dict:
    import torch

    checkpoints = work / "checkpoints"
    # Checkpoints of other inputs (the data changed since the crash) are no place to go on from.
    if read_json(work / "inputs.json") != inputs:
        shutil.rmtree(checkpoints, ignore_errors=True)
    shutil.rmtree(work / "model", ignore_errors=True)
    write_json(work / "inputs.json", inputs)
    Trainer, Bar = trainer_classes()
    pairs = data.pairs
    with _quiet_and_deterministic(), Progress(progress).session() as bars:
        tokenizer, model = _load(base, settings.seed)
        template = chat_template(tokenizer, pairs)
        from datasets import Dataset

        steps = -(-len(pairs) * settings.epochs // settings.batch_size)
        bar = Bar(bars)
        try:
            trainer = Trainer(model=model, args=_config(settings, device, work, steps),
                              train_dataset=Dataset.from_list(rows(pairs, template)),
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
                       "sha256": order_digest(trainer.refine_order)},
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
