"""conflicting_answers: one question taught with answers that say different things."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from ..errors import ConfigError
from ..core.text import normalize
from . import _minhash
from .base import Check, CheckResult, finding, locations, validate_number
from .context import CheckContext

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MAX_VARIANTS = 50  # counting stops here: a question with this many answers is plainly in conflict


@dataclass(frozen=True)
class ConflictingAnswersOptions:
    answer_similarity: float = 0.8
    """Answers whose word sets are at least this Jaccard-similar, and that state the same
    numbers, are the same answer worded differently, not a conflict."""
    same_system_prompt: bool = True
    """Compare only lines with the same system prompt (one may ask for another language)."""

    def __post_init__(self) -> None:
        validate_number("conflicting_answers", "answer_similarity", self.answer_similarity,
                        minimum=0, maximum=1)
        if not isinstance(self.same_system_prompt, bool):
            raise ConfigError(f"is {self.same_system_prompt!r}; expected true or false",
                              key="checks.conflicting_answers.same_system_prompt")


class ConflictingAnswers(Check):
    name = "conflicting_answers"
    description = ("The same normalised question (under the same system prompt) with answers "
                   "that are not near-identical: the model is taught two things at once.")
    default_severity = "error"
    Options = ConflictingAnswersOptions

    def run(self, context: CheckContext) -> CheckResult:
        groups: dict[tuple[str, str], list] = defaultdict(list)
        for pair in context.training.pairs:
            system = normalize(pair.system_prompt or "") if self.options.same_system_prompt else ""
            groups[(system, normalize(pair.question))].append(pair)
        findings = []
        lines_involved = 0
        for group in groups.values():
            if len({p.pair_id for p in group}) < 2:
                continue
            variants = self._variants(context, group)
            if variants < 2:
                continue
            lines_involved += len(group)
            first = group[0]
            count = f"{variants}+" if variants >= _MAX_VARIANTS else str(variants)
            findings.append(finding(
                first.file, first.line,
                f"{count} different answers to the same question on {len(group)} lines: "
                + locations((p.file, p.line) for p in group),
                question=first.question, variants=variants,
                answers=[{"file": p.file, "line": p.line, "answer": p.answer} for p in group]))
        summary = (f"{len(findings):,} question(s) with conflicting answers over "
                   f"{lines_involved:,} lines" if findings
                   else "no question has conflicting answers")
        return self.result(summary=summary, findings=findings,
                           info={"questions": len(findings), "lines": lines_involved,
                                 "answer_similarity": self.options.answer_similarity})

    def _variants(self, context: CheckContext, group: list) -> int:
        """How many answers of `group` differ from each other (near-identical ones are one),
        up to _MAX_VARIANTS."""
        distinct = list(dict.fromkeys(normalize(p.answer) for p in group))
        words = _minhash.word_tokens(context, distinct)
        leaders: list[tuple[set[str], set[str]]] = []
        for text, answer_words in zip(distinct, words):
            key = (set(answer_words), set(_NUMBER.findall(text)))
            if not any(numbers == key[1] and _similar(key[0], seen, self.options.answer_similarity)
                       for seen, numbers in leaders):
                leaders.append(key)
                if len(leaders) == _MAX_VARIANTS:
                    break
        return len(leaders)


def _similar(a: set[str], b: set[str], threshold: float) -> bool:
    union = len(a | b)
    return (len(a & b) / union if union else 1.0) >= threshold
