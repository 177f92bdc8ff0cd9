"""eval_leakage: eval questions that are also in the training set."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..core.text import normalize
from . import _minhash
from .base import Check, CheckResult, finding, validate_number
from .context import CheckContext


@dataclass(frozen=True)
class EvalLeakageOptions:
    threshold: float = 0.8
    """Jaccard similarity of the questions' word shingle sets from which they are one question."""
    shingle_size: int = 3
    num_perm: int = 64
    seed: int = 1

    def __post_init__(self) -> None:
        check = "eval_leakage"
        validate_number(check, "threshold", self.threshold, minimum=0, maximum=1,
                        exclusive_minimum=True)
        validate_number(check, "shingle_size", self.shingle_size, minimum=1, integer=True)
        validate_number(check, "num_perm", self.num_perm, minimum=8, maximum=1024, integer=True)
        validate_number(check, "seed", self.seed, minimum=0, integer=True)


class EvalLeakage(Check):
    name = "eval_leakage"
    description = ("Eval questions found in the training set, by normalised exact match or by "
                   "word-shingle Jaccard ≥ `threshold`: scores on them measure memory, not skill.")
    default_severity = "error"
    needs = frozenset({"eval"})
    Options = EvalLeakageOptions

    def run(self, context: CheckContext) -> CheckResult:
        opts = self.options
        assert context.eval is not None
        items = context.eval.items
        by_question: dict[str, list[int]] = defaultdict(list)
        for index, pair in enumerate(context.training.pairs):
            by_question[normalize(pair.question)].append(index)
        train_questions = list(by_question)
        eval_questions = [normalize(item.question) for item in items]

        matches: list[tuple[int, str, str, float]] = []  # (eval index, train question, kind, J)
        for e, question in enumerate(eval_questions):
            if question in by_question:
                matches.append((e, question, "exact", 1.0))

        eval_shingles = _minhash.shingle(
            _minhash.word_tokens(context, [item.question for item in items]), opts.shingle_size)
        train_shingles = _minhash.shingle(_minhash.word_tokens(
            context, [context.training.pairs[by_question[q][0]].question for q in train_questions]),
            opts.shingle_size)
        lsh = _minhash.build_lsh(_minhash.signatures(eval_shingles, opts.num_perm, opts.seed),
                                 opts.threshold, opts.seed)
        train_sigs = _minhash.signatures(train_shingles, opts.num_perm, opts.seed)
        for t, question in enumerate(train_questions):
            for e in _minhash.query(lsh, train_sigs[t], opts.seed):
                if eval_questions[e] == question:
                    continue
                similarity = _minhash.jaccard(eval_shingles.set_of(e), train_shingles.set_of(t))
                if similarity >= opts.threshold:
                    matches.append((e, question, "near", similarity))

        findings = []
        leaked_items = set()
        for e, question, kind, similarity in sorted(matches, key=lambda m: (m[0], by_question[m[1]][0])):
            item = items[e]
            leaked_items.add(e)
            for index in by_question[question]:
                pair = context.training.pairs[index]
                how = "exact match" if kind == "exact" else f"near match, Jaccard {similarity:.2f}"
                findings.append(finding(
                    context.eval.path, item.line,
                    f"eval question {item.id!r} is in training at {pair.file}:{pair.line} ({how})",
                    eval_id=item.id, train_file=pair.file, train_line=pair.line, match=kind,
                    jaccard=round(similarity, 4)))
        summary = (f"{len(leaked_items):,} of {len(items):,} eval question(s) found in training "
                   f"({len(findings):,} training line(s))" if findings
                   else f"none of {len(items):,} eval questions is in training")
        return self.result(summary=summary, findings=findings,
                           info={"eval_items": len(items), "leaked_items": len(leaked_items),
                                 "training_lines": len(findings), "threshold": opts.threshold,
                                 "lsh": _minhash.lsh_info(lsh, opts.threshold)})
