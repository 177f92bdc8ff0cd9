"""size_guard: the refined set did not lose too much of the set it was refined from."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .base import Check, CheckResult, finding, validate_number
from .context import CheckContext


@dataclass(frozen=True)
class SizeGuardOptions:
    max_drop: float = 0.2
    """Largest share of the baseline's distinct pairs that may be missing from the training set."""
    max_new: float = 0.5
    """Largest share of the training set's distinct pairs that may be absent from the baseline;
    above it the baseline is not what the training set was derived from, and checking against it
    is refused (InputError) before any check runs."""

    def __post_init__(self) -> None:
        validate_number("size_guard", "max_drop", self.max_drop, minimum=0, maximum=1)
        validate_number("size_guard", "max_new", self.max_new, minimum=0, maximum=1)


def _shares(context: CheckContext) -> tuple[set[str], set[str], set[str], set[str]]:
    assert context.baseline is not None
    base = {p.pair_id for p in context.baseline.pairs}
    now = {p.pair_id for p in context.training.pairs}
    return base, now, base - now, now - base


class SizeGuard(Check):
    name = "size_guard"
    description = ("The training set keeps at least 1 - `max_drop` of the baseline's distinct "
                   "pairs; a baseline it was not derived from is refused.")
    default_severity = "error"
    needs = frozenset({"baseline"})
    Options = SizeGuardOptions

    def prepare(self, context: CheckContext) -> None:
        _, now, _, new = context.memo("size_guard.shares", lambda: _shares(context))
        if now and len(new) / len(now) > self.options.max_new:
            baseline = ", ".join(f.path for f in context.baseline.files)
            raise InputError(
                f"is not an ancestor of the training set: {len(new):,} of its {len(now):,} "
                f"distinct pairs ({len(new) / len(now):.0%}) are not in the baseline, more than "
                f"checks.size_guard.max_new = {self.options.max_new:g}; give the file the "
                "training set was refined from", file=baseline)

    def run(self, context: CheckContext) -> CheckResult:
        base, now, dropped, new = context.memo("size_guard.shares", lambda: _shares(context))
        share = len(dropped) / len(base) if base else 0.0
        info = {"baseline_pairs": len(base), "pairs": len(now), "dropped": len(dropped),
                "new": len(new), "dropped_share": round(share, 6),
                "max_drop": self.options.max_drop}
        text = (f"{len(dropped):,} of {len(base):,} baseline pairs dropped ({share:.1%}), "
                f"{len(new):,} new")
        if share <= self.options.max_drop:
            return self.result(summary=f"{text}; within max_drop {self.options.max_drop:g}",
                               passed=True, info=info)
        seen: set[str] = set()
        findings = []
        for pair in context.baseline.pairs:
            if pair.pair_id in dropped and pair.pair_id not in seen:
                seen.add(pair.pair_id)
                findings.append(finding(pair.file, pair.line,
                                        "baseline pair is not in the training set",
                                        pair_id=pair.pair_id))
        return self.result(summary=f"{text}; more than max_drop {self.options.max_drop:g}",
                           passed=False, findings=findings, info=info)
