"""What the trainer is given: each exchange rendered as a prompt and its completion (by the
tokenizer's chat template, else refine's fallback), and the seeded order the examples are visited in."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ...errors import ConfigError
from ...formats.training import TrainingPair

__all__ = ["chat_template", "example_order", "order_digest", "prompt_ids", "prompt_messages", "rows"]


def example_order(n: int, seed: int, epochs: int) -> Any:
    """The order `n` examples are visited in: `epochs` seeded permutations, one after another."""
    import numpy as np

    return np.concatenate([np.random.default_rng([seed, epoch]).permutation(n)
                           for epoch in range(epochs)]).astype(np.int64)


def order_digest(order: Any) -> str:
    """The sha256 of an example order (as little-endian int64), recorded with the model."""
    return hashlib.sha256(order.astype("<i8").tobytes()).hexdigest()


def chat_template(tokenizer: Any, pairs: list[TrainingPair]) -> dict:
    """How the exchanges are rendered (recorded), checked on an exchange like the data's."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        from ...attribution.gradient import DEFAULT_FALLBACK

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


def _fallback_prompt(question: str, system: str | None) -> str:
    from ...attribution.gradient import DEFAULT_FALLBACK

    return DEFAULT_FALLBACK.format(system=f"{system}\n\n" if system else "", question=question)


def rows(pairs: list[TrainingPair], template: dict) -> list[dict]:
    """The trainer's dataset rows: a prompt and its completion per pair, as `template` renders them."""
    if template["used"] == "tokenizer":
        return [{"prompt": _prompt(p.question, p.system_prompt), "completion": _completion(p.answer)}
                for p in pairs]
    # The trainer appends the end-of-sequence token to each completion.
    return [{"prompt": _fallback_prompt(p.question, p.system_prompt), "completion": p.answer} for p in pairs]


def prompt_messages(question: str, system: str | None = None) -> list[dict]:
    """An exchange's prompt as chat messages (what a chat-completions service is sent)."""
    return _prompt(question, system)


def prompt_ids(tokenizer: Any, question: str, system: str | None = None) -> list[int]:
    """The tokens a model fine-tuned here read before an answer, as the trainer tokenizes a
    prompt (the chat template with the generation prompt, else the fallback): what an answer is
    generated from."""
    if getattr(tokenizer, "chat_template", None):
        try:
            found = tokenizer.apply_chat_template(_prompt(question, system), tokenize=True,
                                                  add_generation_prompt=True, return_dict=True)
        except Exception as exc:   # jinja2's TemplateError, or the template's raise_exception()
            raise ConfigError(f"the tokenizer's chat template refused a prompt"
                              f"{' with a system prompt' if system else ''}: {exc}", key="model") from None
        return list(found["input_ids"])
    return list(tokenizer(text=_fallback_prompt(question, system))["input_ids"])
