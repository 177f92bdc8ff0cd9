"""The local causal LM of a gradient run: loaded where the work runs, its layers hooked by a
:class:`~.projector.Projector`, examples in, projected gradients out.

Every training pair and eval item becomes the gradient of a function of its answer, over the
**final assistant turn only** (the prompt — system message, question, chat-template markers —
is masked to -100: :func:`~.encoding.encode_example`). Restricting it to the answer is what
makes the gradient about *what was said*, not about how questions are phrased. The function
(``measurement``) is

* ``margin`` (default): the mean over answer tokens of −log(p/(1−p)), TRAK's margin. Its
  gradient is the token loss gradient divided by (1−p), so each answer token weighs the same
  however confident the model is. With the plain loss, an answer the model has learned by
  heart has almost no gradient left except on its few uncertain tokens, and those decide the
  ranking;
* ``loss``: the mean next-token loss itself.

The features are gradients of the *loss* (or of −margin).
"""

from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...core.devices import resolve_device
from ...core.embeddings import fingerprint
from ...errors import BackendError, ConfigError
from .encoding import encode_example
from .options import GradientOptions
from .projector import Projector

__all__ = ["GradientModel", "local_dir"]


def local_dir(path: Any, key: str) -> Path:
    """`path` as a local model (`key` ``model``) or PEFT adapter (``adapter``) directory, or a
    ConfigError: models are never fetched from a hub."""
    marker = "adapter_config.json" if key == "adapter" else "config.json"
    what = "PEFT adapter" if key == "adapter" else "model"
    if not isinstance(path, str) or not path:
        raise ConfigError(f"must be the path of a local {what} directory, got {path!r}",
                          key=f"backend_options.{key}")
    directory = Path(path)
    if not (directory / marker).is_file():
        hint = " (it looks like an adapter: give it as --adapter, the base model as --model)" \
            if key == "model" and (directory / "adapter_config.json").is_file() else ""
        raise ConfigError(f"{path!r} is not a local {what} directory (no {marker}){hint}; "
                          "models are never fetched from a hub", key=f"backend_options.{key}")
    return directory


class GradientModel:
    """The model, tokenizer and projector of `options`, loaded on first use (:meth:`load`).

    Built in the driver and in every worker: the paths are checked and the files fingerprinted
    when it is made; the device is resolved, and the model loaded, where it is used.
    """

    def __init__(self, options: GradientOptions) -> None:
        self.options = options
        self.path = local_dir(options.model, "model")
        # Resolved where the model is loaded: in this process, or on each Ray worker.
        self._device: str | None = None
        self._batch_now: int | None = None
        self.adapter_path = local_dir(options.adapter, "adapter") if options.adapter else None
        if options.adapter:
            try:
                import peft  # noqa: F401
            except ImportError:
                raise ConfigError("a LoRA adapter needs the package 'peft' (pip install peft)",
                                  key="backend_options.adapter") from None
        self.fingerprint = fingerprint(self.path) + (
            "+" + fingerprint(self.adapter_path) if self.adapter_path else "")
        self._loaded: tuple[Any, Any, Projector] | None = None

    @property
    def device(self) -> str:
        """The torch device of this process's model (a ConfigError if it cannot be had here)."""
        if self._device is None:
            self._device = resolve_device(self.options.device, self.options.dtype)
        return self._device

    @property
    def batch(self) -> int:
        """Examples per forward and backward pass."""
        if self._batch_now is None:
            # `auto`: start large on a GPU and halve on running out of memory; 16 on the CPU.
            self._batch_now = (64 if self.device != "cpu" else 16) if self.options.batch_size == "auto" \
                else self.options.batch_size
        return self._batch_now

    @batch.setter
    def batch(self, value: int) -> None:
        self._batch_now = value

    def close(self) -> None:
        """Let the loaded model go (it is loaded again on next use)."""
        self._loaded = None

    def load(self) -> tuple[Any, Any, Projector]:
        """(tokenizer, model, projector), loaded once."""
        if self._loaded is not None:
            return self._loaded
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.pytorch_utils import Conv1D

        from transformers.utils import logging as hf_logging

        # Belt and braces: the paths are local, and nothing may reach a hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # refine shows its own progress; transformers' per-load bars would interleave with it.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        stage, where = "model", self.path
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True,
                                                         dtype=getattr(torch, self.options.dtype))
            if self.adapter_path is not None:
                from peft import PeftModel

                stage, where = "adapter", self.adapter_path
                model = PeftModel.from_pretrained(model, self.adapter_path, is_trainable=True,
                                                  local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the {stage} in {str(where)!r}: "
                              f"{type(exc).__name__}: {exc}", key=f"backend_options.{stage}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        model.to(self.device).eval()
        for param in model.parameters():
            # Only activation gradients are needed: the hooks build the weight gradients' projections.
            param.requires_grad_(False)
        layers = []
        for name, module in model.named_modules():
            if isinstance(module, Conv1D):
                n_in, n_out, conv = module.weight.shape[0], module.weight.shape[1], True
            elif isinstance(module, torch.nn.Linear):
                n_in, n_out, conv = module.in_features, module.out_features, False
            else:
                continue
            if self._selected(name):
                layers.append((name, module, n_in, n_out, conv))
        if not layers:
            raise ConfigError("no Linear or Conv1D layer of the model matches "
                              f"{self.options.modules or 'the transformer blocks'}",
                              key="backend_options.modules")
        projector = Projector(torch, layers, self.options.projection_dim, self.options.seed, self.device)
        self._loaded = (tokenizer, model, projector)
        return self._loaded

    def _selected(self, name: str) -> bool:
        if self.options.modules is not None:
            return any(fnmatch(name, pattern) for pattern in self.options.modules)
        parts = name.split(".")
        in_block = any(p.isdigit() for p in parts)   # transformer.h.3.mlp.c_fc, model.layers.0...
        if self.adapter_path is not None:
            return in_block and any(p.startswith("lora_") for p in parts)
        return in_block and not any(p.startswith("lora_") for p in parts)

    def features(self, examples: Sequence[tuple[str, str, str | None]]) -> np.ndarray:
        """Projected loss gradients of (question, answer, system) examples: examples × D."""
        tokenizer, model, projector = self.load()
        positions = getattr(model.config, "n_positions", None) or \
            getattr(model.config, "max_position_embeddings", None)
        max_length = min(self.options.max_length, positions or self.options.max_length)
        encoded = [encode_example(tokenizer, q, a, s, fallback=self.options.chat_template_fallback,
                                  max_length=max_length) for q, a, s in examples]
        out = np.zeros((len(encoded), projector.dim), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        start = 0
        while start < len(order):
            chunk = order[start:start + self.batch]
            try:
                feats = self._batch_features(chunk, encoded, tokenizer, model, projector)
            except Exception as exc:   # torch raises OutOfMemoryError (CUDA) or RuntimeError
                if "out of memory" not in str(exc).lower() or self.options.batch_size != "auto" \
                        or self.batch == 1:
                    if "out of memory" in str(exc).lower():
                        raise BackendError(f"out of {self.device} memory at batch_size {self.batch}: "
                                           "use a smaller batch_size or max_length, or batch_size=auto") from None
                    raise
                self.batch //= 2            # `auto`: halve and try the same examples again
                self._empty_cache()
                continue
            if feats is not None:
                out[chunk] = feats
            start += len(chunk)
        return out

    def _batch_features(self, chunk: list[int], encoded: list, tokenizer: Any, model: Any,
                        projector: Projector) -> np.ndarray | None:
        import torch

        embed = model.get_input_embeddings()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        width = max(len(encoded[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):   # right padding: causal attention never sees it
            n = len(encoded[i][0])
            ids[row, :n] = torch.tensor(encoded[i][0])
            labels[row, :n] = torch.tensor(encoded[i][1])
            mask[row, :n] = 1
        ids, labels, mask = ids.to(self.device), labels.to(self.device), mask.to(self.device)
        projector.token_mask = mask
        with projector:
            inputs = embed(ids).detach().requires_grad_(True)
            logits = model(inputs_embeds=inputs, attention_mask=mask).logits.float()
            shifted, targets = logits[:, :-1], labels[:, 1:]
            keep = targets != -100
            scored, wanted = shifted[keep], targets[keep]                 # answer tokens
            row = torch.arange(len(chunk), device=self.device).unsqueeze(1).expand_as(targets)[keep]
            chosen = scored.gather(1, wanted.unsqueeze(1)).squeeze(1)
            if self.options.measurement == "margin":
                # −(logit_c − logsumexp_{j≠c} logit_j) = −log(p/(1−p)), exact in float32
                # even where p rounds to 1 (its gradient is the loss's divided by 1−p).
                others = scored.scatter(1, wanted.unsqueeze(1), float("-inf"))
                value = torch.logsumexp(others, dim=1) - chosen
            else:
                value = torch.logsumexp(scored, dim=1) - chosen            # −log p
            counts = keep.sum(dim=1).clamp(min=1)
            # Summing per-example means: each example's gradient is that of its own mean.
            per_example = torch.zeros(len(chunk), dtype=value.dtype, device=self.device).index_add(0, row, value)
            (per_example / counts).sum().backward()
            if projector.statistics is not None:
                projector.discard()
                return None
            return projector.features(len(chunk)).cpu().numpy()

    def _empty_cache(self) -> None:
        import torch

        if str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()
