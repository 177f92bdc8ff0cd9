"""Chat completions of `refine serve`: greedy generation by a base model or a completed fine-tune,
loaded on first use (the two latest kept loaded), one generation at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .flow_common import Refused

__all__ = ["ChatModels"]


class ChatModels:
    """Models loaded for chat on `device`, by the id a request names."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._models: dict[str, Any] = {}   # model id → loaded (model, tokenizer)
        self._lock = threading.Lock()
        # Loads one at a time: threads importing transformers, or loading one model, at once
        # fail ("Cannot copy out of meta tensor"); a request that waited finds the model loaded.
        self._loading = threading.Lock()

    def answer(self, model: str, path: Path, adapter: Path | None, messages: list[dict[str, Any]],
               max_new_tokens: int, stop: list[str]) -> dict[str, Any]:
        """Greedy generation by `model`: the model directory `path` (with the peft `adapter` on it)."""
        loaded = self._load(model, path, adapter)
        with self._lock:   # one generation at a time: the models are not shared safely
            return _generate(*loaded, messages, max_new_tokens, stop)

    def _load(self, model: str, path: Path, adapter: Path | None) -> tuple[Any, Any]:
        with self._loading:
            with self._lock:
                if model in self._models:
                    return self._models[model]
            loaded = _load_model(path, adapter, self.device)
            with self._lock:
                if len(self._models) >= 2:   # keep memory bounded: the two latest models stay loaded
                    self._models.pop(next(iter(self._models)))
                self._models[model] = loaded
            return loaded


def _load_model(path: Path, adapter: Path | None, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..core.devices import resolve_device

    try:
        where = resolve_device(device, "float32")
    except ConfigError as exc:
        raise Refused(f"cannot load a model on {device}: {exc.message}") from None

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(where).eval()
    return model, tokenizer


def _text(content: Any) -> str:
    if isinstance(content, list):   # content parts: the text ones, in order
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def _generate(model: Any, tokenizer: Any, messages: list[dict[str, Any]], max_new_tokens: int,
              stop: list[str]) -> dict[str, Any]:
    import torch

    chat = [{"role": str(m.get("role", "user")), "content": _text(m.get("content"))} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    else:   # as refine.stages.local_training renders an exchange without a template
        from ..attribution.gradient import DEFAULT_FALLBACK

        system = "".join(f"{m['content']}\n\n" for m in chat if m["role"] == "system")
        question = next((m["content"] for m in reversed(chat) if m["role"] == "user"), "")
        prompt = DEFAULT_FALLBACK.format(system=system, question=question)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None:
        if ids.shape[1] >= limit:
            raise Refused(f"the prompt is {ids.shape[1]} tokens; this model reads at most {limit}")
        max_new_tokens = min(max_new_tokens, limit - ids.shape[1])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max(max_new_tokens, 1), pad_token_id=pad)
    new = out[0, ids.shape[1]:]
    ended = tokenizer.eos_token_id is not None and bool((new == tokenizer.eos_token_id).any())
    text = tokenizer.decode(new, skip_special_tokens=True)
    finish = "stop" if ended else "length"
    for marker in stop:
        if marker and marker in text:
            text, finish = text[: text.index(marker)], "stop"
    return {"content": text.strip(), "finish_reason": finish, "prompt_tokens": int(ids.shape[1]),
            "completion_tokens": int(new.shape[0])}
