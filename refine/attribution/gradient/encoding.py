"""One exchange as the model saw it: the prompt through the chat template, the answer the only
part that is scored (every other label is -100)."""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError

__all__ = ["DEFAULT_FALLBACK", "encode_example", "prompt_text"]

DEFAULT_FALLBACK = "{system}Q: {question}\nA: "


def prompt_text(tokenizer: Any, question: str, system: str | None, fallback: str) -> str:
    """The prompt as text: the tokenizer's chat template with the generation prompt, or
    `fallback` (a format string with ``{system}`` and ``{question}``) when it has none."""
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": question}]
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
        except Exception as exc:   # jinja2's TemplateError, or the template's raise_exception()
            raise ConfigError(f"the tokenizer's chat template refused a {len(messages)}-message "
                              f"prompt{' with a system prompt' if system else ''}: {exc}",
                              key="backend_options.model") from None
    return fallback.format(system=f"{system}\n\n" if system else "", question=question)


def encode_example(tokenizer: Any, question: str, answer: str, system: str | None = None, *,
                   fallback: str = DEFAULT_FALLBACK,
                   max_length: int = 512) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one exchange: labels are -100 everywhere but the answer tokens
    (and the end-of-turn token after them, when the tokenizer has one).

    Prompt and answer are tokenized apart and joined as ids, so the mask never depends on how
    a tokenizer would merge across the boundary. Overlong prompts are cut from the left, so
    the answer is kept.
    """
    prompt = tokenizer(prompt_text(tokenizer, question, system, fallback),
                       add_special_tokens=False)["input_ids"]
    target = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        target = target + [tokenizer.eos_token_id]
    target = target[:max(1, max_length - 1)]
    prompt = prompt[max(0, len(prompt) + len(target) - max_length):]
    return prompt + target, [-100] * len(prompt) + target
