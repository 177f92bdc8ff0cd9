"""Record layouts: how a question/answer pair sits in one record of a dataset.

=====================  ===========================================================  ============
layout                 fields                                                       answer is
=====================  ===========================================================  ============
``messages``           ``messages: [{role: system|user|assistant|tool, content}]``  last assistant turn
                       (OpenAI chat)
``sharegpt``           ``conversations: [{from: human|gpt|system|…, value}]``       last ``gpt`` turn
                       (also ``messages`` holding ``from``/``value`` turns)
``alpaca``             ``instruction``, ``input`` (optional), ``output``,            ``output``
                       ``system`` (optional)
``prompt_completion``  ``prompt``, ``completion``                                   ``completion``
``question_answer``    ``question``, ``answer``, ``system_prompt`` (optional)       ``answer``
=====================  ===========================================================  ============

A multi-turn conversation is attributed on its last assistant turn and the user turn before
it; the first system turn is its system prompt. An Alpaca question is ``instruction``, then
``input`` on the next line when there is one (as LLaMA-Factory joins them).

The layout of a record is detected from its fields: exactly one layout must have all of its
fields there; none or several is an error naming the fields, and ``--format`` names the layout
outright. Each layout also knows how to put a new answer into a record (``edit``) and how to
write a new record (``make``), so that an edited or added pair keeps the dataset's own layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import InputError

__all__ = ["LAYOUTS", "Layout", "Located", "detect_layout", "get_layout"]


@dataclass(frozen=True)
class Located:
    """Where a record is: a file and its line (JSONL) or 1-based row (every other source)."""

    file: str
    line: int | None = None
    row: int | None = None

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, file=self.file, line=self.line, row=self.row, field=field)


def require_text(value: Any, where: Located, field: str) -> str:
    if value is None:
        raise where.error("is missing", field)
    if not isinstance(value, str):
        raise where.error(f"must be a string, got {type(value).__name__}", field)
    if not value.strip():
        raise where.error("is empty", field)
    return value


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _turns(record: dict, key: str, where: Located) -> list:
    turns = record.get(key)
    if isinstance(turns, str):
        # A CSV cell holds the conversation as JSON text.
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError as exc:
            raise where.error(f"is not a JSON list of turns ({exc.msg})", key) from None
    if not isinstance(turns, list) or not turns:
        raise where.error("must be a non-empty list", key)
    return turns


class Layout:
    """One way of laying a pair out in a record."""

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]          # all present: the record has this layout
    answer_field: ClassVar[str]                # named in messages about the answer

    def matches(self, keys: set[str], record: dict | None = None, *, answer_required: bool = True) -> bool:
        needed = self.fields if answer_required else tuple(f for f in self.fields if f != self.answer_field)
        return set(needed) <= keys

    def parse(self, record: dict, where: Located, *,
              answer_required: bool = True) -> tuple[str, str | None, str | None]:
        """(question, answer, system prompt); answer None only when not `answer_required` and
        the record has none."""
        raise NotImplementedError

    def edit(self, record: dict, new_answer: str) -> dict:
        """The same record with its attributed answer replaced."""
        raise NotImplementedError

    def make(self, question: str, answer: str, system: str | None) -> dict:
        """A new record of this layout."""
        raise NotImplementedError


class _Conversation(Layout):
    """A list of turns: the chat layouts."""

    key: ClassVar[str]
    role_key: ClassVar[str]
    text_key: ClassVar[str]
    roles: ClassVar[dict[str, str]]            # the layout's role names → system/user/assistant/tool

    def _role(self, turn: dict) -> str | None:
        return self.roles.get(turn.get(self.role_key))

    def _key(self, record: dict) -> str:
        """The field holding the turns."""
        return self.key

    def parse(self, record: dict, where: Located, *,
              answer_required: bool = True) -> tuple[str, str | None, str | None]:
        key = self._key(record)
        turns = _turns(record, key, where)
        for i, turn in enumerate(turns):
            at = f"{key}[{i}]"
            if not isinstance(turn, dict):
                raise where.error(f"must be an object with '{self.role_key}' and '{self.text_key}'", at)
            role = turn.get(self.role_key)
            if self._role(turn) is None:
                got = "missing" if role is None else repr(role)
                raise where.error(f"is {got}; expected one of {', '.join(self.roles)}",
                                  f"{at}.{self.role_key}")
            if self._role(turn) != "tool":
                require_text(turn.get(self.text_key), where, f"{at}.{self.text_key}")
        roles = [self._role(t) for t in turns]
        systems = [t[self.text_key] for t, r in zip(turns, roles) if r == "system"]
        system = systems[0] if systems else None
        last_assistant = max((i for i, r in enumerate(roles) if r == "assistant"), default=None)
        if last_assistant is None or (not answer_required and roles[-1] == "user"):
            if answer_required:
                raise where.error("has no assistant turn", key)
            users = [i for i, r in enumerate(roles) if r == "user"]
            if not users:
                raise where.error("has no user turn", key)
            return turns[users[-1]][self.text_key], None, system
        users = [i for i in range(last_assistant) if roles[i] == "user"]
        if not users:
            raise where.error("has no user turn before the last assistant turn", key)
        return turns[users[-1]][self.text_key], turns[last_assistant][self.text_key], system

    def edit(self, record: dict, new_answer: str) -> dict:
        key = self._key(record)
        turns = record[key]
        as_text = isinstance(turns, str)
        if as_text:
            turns = json.loads(turns)
        for turn in reversed(turns):
            if isinstance(turn, dict) and self._role(turn) == "assistant":
                turn[self.text_key] = new_answer
                break
        else:
            raise ValueError("record has no assistant turn to edit")
        record[key] = json.dumps(turns, ensure_ascii=False) if as_text else turns
        return record

    def make(self, question: str, answer: str, system: str | None) -> dict:
        names = {canonical: name for name, canonical in reversed(list(self.roles.items()))}
        turns = ([{self.role_key: names["system"], self.text_key: system}] if system else [])
        turns += [{self.role_key: names["user"], self.text_key: question},
                  {self.role_key: names["assistant"], self.text_key: answer}]
        return {self.key: turns}


class Messages(_Conversation):
    name = "messages"
    fields = ("messages",)
    answer_field = "messages"
    key, role_key, text_key = "messages", "role", "content"
    roles = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}

    def matches(self, keys: set[str], record: dict | None = None, *, answer_required: bool = True) -> bool:
        return "messages" in keys and not _holds_sharegpt_turns(record)


class ShareGPT(_Conversation):
    name = "sharegpt"
    fields = ("conversations",)
    answer_field = "conversations"
    key, role_key, text_key = "conversations", "from", "value"
    roles = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
             "assistant": "assistant", "chatgpt": "assistant", "function_call": "tool",
             "observation": "tool", "tool": "tool"}

    def matches(self, keys: set[str], record: dict | None = None, *, answer_required: bool = True) -> bool:
        return "conversations" in keys or ("messages" in keys and _holds_sharegpt_turns(record))

    def _key(self, record: dict) -> str:
        return "conversations" if "conversations" in record else "messages"


def _holds_sharegpt_turns(record: dict | None) -> bool:
    if record is None:
        return False
    turns = record.get("messages")
    if isinstance(turns, str):
        return '"from"' in turns and '"value"' in turns
    return isinstance(turns, list) and bool(turns) and isinstance(turns[0], dict) \
        and "from" in turns[0] and "value" in turns[0]


class Alpaca(Layout):
    name = "alpaca"
    fields = ("instruction", "output")
    answer_field = "output"

    def parse(self, record: dict, where: Located, *,
              answer_required: bool = True) -> tuple[str, str | None, str | None]:
        instruction = require_text(record.get("instruction"), where, "instruction")
        extra = record.get("input")
        if extra is not None and not isinstance(extra, str):
            raise where.error(f"must be a string, got {type(extra).__name__}", "input")
        question = instruction + ("\n" + extra if extra and extra.strip() else "")
        answer = record.get("output")
        if answer is not None or answer_required:
            answer = require_text(answer, where, "output")
        return question, answer, _optional_text(record.get("system"))

    def edit(self, record: dict, new_answer: str) -> dict:
        record["output"] = new_answer
        return record

    def make(self, question: str, answer: str, system: str | None) -> dict:
        return {"instruction": question, "input": "", "output": answer,
                **({"system": system} if system else {})}


class _Flat(Layout):
    question_field: ClassVar[str]

    def parse(self, record: dict, where: Located, *,
              answer_required: bool = True) -> tuple[str, str | None, str | None]:
        question = require_text(record.get(self.question_field), where, self.question_field)
        answer = record.get(self.answer_field)
        if answer is not None or answer_required:
            answer = require_text(answer, where, self.answer_field)
        return question, answer, _optional_text(record.get("system_prompt"))

    def edit(self, record: dict, new_answer: str) -> dict:
        record[self.answer_field] = new_answer
        return record

    def make(self, question: str, answer: str, system: str | None) -> dict:
        return {self.question_field: question, self.answer_field: answer,
                **({"system_prompt": system} if system else {})}


class PromptCompletion(_Flat):
    name = "prompt_completion"
    fields = ("prompt", "completion")
    question_field, answer_field = "prompt", "completion"


class QuestionAnswer(_Flat):
    name = "question_answer"
    fields = ("question", "answer")
    question_field, answer_field = "question", "answer"


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in
                              (Messages(), ShareGPT(), Alpaca(), PromptCompletion(), QuestionAnswer())}
_DESCRIBED = "'messages', 'conversations', 'instruction'/'output', 'prompt'/'completion' or 'question'/'answer'"


def get_layout(name: str, *, key: str = "format") -> Layout:
    """The layout called `name`, or a ConfigError listing the known ones."""
    from ..errors import ConfigError

    if name not in LAYOUTS:
        raise ConfigError(f"unknown record layout {name!r}; one of {', '.join(LAYOUTS)}", key=key)
    return LAYOUTS[name]


def detect_layout(keys: set[str], where: Located, record: dict | None = None, *,
                  answer_required: bool = True, columns: bool = False) -> Layout:
    """The one layout whose fields are all in `keys`.

    None: an error naming the field a partly present layout lacks (a ``prompt`` without a
    ``completion``), or listing the layouts. Several: an error naming them, to be settled with
    ``--format``. For eval sets (`answer_required` False) the question's fields will do.
    """
    found = [layout for layout in LAYOUTS.values()
             if layout.matches(keys, record, answer_required=answer_required)]
    if len(found) == 1:
        return found[0]
    noun = "column" if columns else "field"
    if found:
        names = ", ".join(layout.name for layout in found)
        raise where.error(f"fits several record layouts ({names}); name one with --format")
    for layout in LAYOUTS.values():
        present = [f for f in layout.fields if f in keys]
        if present:
            missing = next(f for f in layout.fields if f not in keys)
            if columns:
                raise where.error(f"has {', '.join(repr(f) for f in present)} but no {missing!r} column "
                                  f"(layout {layout.name}); its columns: {', '.join(sorted(keys))}")
            raise where.error("is missing", missing)
    if not answer_required and not columns:
        raise where.error("is missing", "question")   # the eval set's own layout
    found_keys = f"; its columns: {', '.join(sorted(keys))}" if columns else ""
    raise where.error(f"has no {_DESCRIBED} {noun}{found_keys}")
