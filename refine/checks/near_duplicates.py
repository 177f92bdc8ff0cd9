"""near_duplicates: pairs whose words are nearly the same, though not exact duplicates."""

from __future__ import annotations

from dataclasses import dataclass

from . import _minhash
from .base import Check, CheckResult, finding, validate_number
from .context import CheckContext


@dataclass(frozen=True)
class NearDuplicatesOptions:
    threshold: float = 0.8
    """Jaccard similarity of the word shingle sets from which two pairs are near-duplicates."""
    shingle_size: int = 3
    """Words per shingle."""
    num_perm: int = 64
    """MinHash permutations: more finds pairs near the threshold more surely, slower."""
    seed: int = 1
    max_bucket: int = 200
    """An LSH bucket with more lines than this is compared against its first line only."""

    def __post_init__(self) -> None:
        check = "near_duplicates"
        validate_number(check, "threshold", self.threshold, minimum=0, maximum=1,
                        exclusive_minimum=True)
        validate_number(check, "shingle_size", self.shingle_size, minimum=1, integer=True)
        validate_number(check, "num_perm", self.num_perm, minimum=8, maximum=1024, integer=True)
        validate_number(check, "seed", self.seed, minimum=0, integer=True)
        validate_number(check, "max_bucket", self.max_bucket, minimum=2, integer=True)


class NearDuplicates(Check):
    name = "near_duplicates"
    description = ("Pairs whose question and answer words (word shingles, MinHash LSH) are at "
                   "least `threshold` Jaccard-similar; exact duplicates are left to "
                   "exact_duplicates.")
    default_severity = "warning"
    Options = NearDuplicatesOptions

    def run(self, context: CheckContext) -> CheckResult:
        opts = self.options
        pairs = context.training.unique_pairs()
        questions = _minhash.word_tokens(context, [p.question for p in pairs])
        answers = _minhash.word_tokens(context, [p.answer for p in pairs])
        texts = [q + [_minhash.SEPARATOR] + a for q, a in zip(questions, answers)]
        shingles = _minhash.shingle(texts, opts.shingle_size)
        sigs = _minhash.signatures(shingles, opts.num_perm, opts.seed)
        found, search = _minhash.similar_pairs(sigs, shingles, opts.threshold, opts.seed,
                                               max_bucket=opts.max_bucket)
        found.sort(key=lambda f: (f[1], f[0]))
        findings = []
        for i, j, similarity in found:
            first, second = pairs[i], pairs[j]
            findings.append(finding(
                second.file, second.line,
                f"near-duplicate of {first.file}:{first.line} (Jaccard {similarity:.2f})",
                other_file=first.file, other_line=first.line, jaccard=round(similarity, 4)))
        info = {"threshold": opts.threshold, "distinct_pairs": len(pairs),
                "near_duplicate_pairs": len(findings), **search}
        summary = (f"{len(findings):,} pair(s) of lines at Jaccard ≥ {opts.threshold:g}"
                   if findings else f"no two distinct pairs at Jaccard ≥ {opts.threshold:g}")
        return self.result(summary=summary, findings=findings, info=info)
