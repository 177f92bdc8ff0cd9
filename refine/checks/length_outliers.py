"""length_outliers: questions or answers far longer or shorter than the rest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from .base import Check, CheckResult, finding, validate_number
from .context import CheckContext

_FIELDS = ("question", "answer")


@dataclass(frozen=True)
class LengthOutliersOptions:
    k: float = 6.0
    """A length is an outlier when its robust z, (length - median) / max(1.4826 · MAD, 1), is
    beyond ±k."""
    max_question_tokens: int | None = None
    """A question longer than this is a finding whatever the others are (None: no limit)."""
    max_answer_tokens: int | None = None
    min_pairs: int = 20
    """Below this many lines the robust z is not computed (the median says little)."""
    tokenizer: str | None = None
    """A local Hugging Face tokenizer directory to count tokens with; None: whitespace words."""

    def __post_init__(self) -> None:
        check = "length_outliers"
        validate_number(check, "k", self.k, minimum=0, exclusive_minimum=True)
        validate_number(check, "max_question_tokens", self.max_question_tokens, minimum=1,
                        integer=True, optional=True)
        validate_number(check, "max_answer_tokens", self.max_answer_tokens, minimum=1,
                        integer=True, optional=True)
        validate_number(check, "min_pairs", self.min_pairs, minimum=2, integer=True)
        if self.tokenizer is not None:
            path = Path(str(self.tokenizer))
            if not ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
                raise ConfigError(f"{self.tokenizer!r} is not a local tokenizer directory (no "
                                  "tokenizer.json or tokenizer_config.json); tokenizers are never "
                                  "fetched from a hub", key="checks.length_outliers.tokenizer")


def _counter(tokenizer: str | None) -> Callable[[Sequence[str]], list[int]]:
    if tokenizer is None:
        return lambda texts: [len(t.split()) for t in texts]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)

    def count(texts: Sequence[str]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(texts), 4096):
            ids = tok(list(texts[start:start + 4096]), add_special_tokens=False)["input_ids"]
            out.extend(len(i) for i in ids)
        return out

    return count


def _robust_z(lengths: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(z per length, median, MAD). The scale is at least one token: lengths are whole
    tokens, and a set of equally long lines (MAD 0) would otherwise make a one-token
    difference infinitely unusual."""
    median = float(np.median(lengths))
    mad = float(np.median(np.abs(lengths - median)))
    return (lengths - median) / max(1.4826 * mad, 1.0), median, mad


class LengthOutliers(Check):
    name = "length_outliers"
    description = ("Questions or answers whose length in tokens is beyond median ± k robust "
                   "standard deviations (1.4826 · MAD), or over a hard maximum.")
    default_severity = "warning"
    Options = LengthOutliersOptions

    def run(self, context: CheckContext) -> CheckResult:
        opts = self.options
        pairs = context.training.pairs
        count = _counter(opts.tokenizer)
        unit = "whitespace tokens" if opts.tokenizer is None else "tokenizer tokens"
        hits: list[tuple[int, int, dict[str, Any]]] = []
        info: dict[str, Any] = {"unit": unit, "k": opts.k}
        use_z = len(pairs) >= opts.min_pairs
        if not use_z:
            info["note"] = f"fewer than min_pairs = {opts.min_pairs} lines: hard limits only"
        for f, field_name in enumerate(_FIELDS):
            texts = [getattr(p, field_name) for p in pairs]
            distinct = list(dict.fromkeys(texts))
            length_of = dict(zip(distinct, count(distinct)))
            lengths = np.array([length_of[t] for t in texts], dtype=np.float64)
            limit = opts.max_question_tokens if field_name == "question" else opts.max_answer_tokens
            z = np.zeros(len(lengths))
            if use_z:
                z, median, mad = _robust_z(lengths)
                info[field_name] = {"median": median, "mad": mad, "max": int(lengths.max())}
            over_z = np.abs(z) > opts.k
            over_max = lengths > limit if limit is not None else np.zeros(len(lengths), bool)
            for i in np.flatnonzero(over_z | over_max):
                n = int(lengths[i])
                why = [f"robust z {z[i]:+.1f}, beyond ±{opts.k:g}"] if over_z[i] else []
                why += [f"over max_{field_name}_tokens = {limit}"] if over_max[i] else []
                hits.append((int(i), f, finding(
                    pairs[i].file, pairs[i].line, f"{field_name} is {n:,} {unit}: " + "; ".join(why),
                    field=field_name, tokens=n, robust_z=round(float(z[i]), 2))))
        hits.sort(key=lambda h: (h[0], h[1]))
        findings = [h[2] for h in hits]
        summary = (f"{len(findings):,} question/answer length outlier(s)" if findings
                   else "no question or answer length is an outlier")
        return self.result(summary=summary, findings=findings, info=info)
