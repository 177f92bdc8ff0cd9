"""outcome_regressions: the retrained model does not answer badly too many eval items that the
model before it answered well (from ``refine outcome``'s figures in the retrained run)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Check, CheckResult, finding, validate_number
from .context import CheckContext


@dataclass(frozen=True)
class OutcomeRegressionsOptions:
    max_newly_bad_share: float = 0.02
    """Largest share of the eval items that may be answered well before and badly after."""

    def __post_init__(self) -> None:
        validate_number("outcome_regressions", "max_newly_bad_share", self.max_newly_bad_share,
                        minimum=0, maximum=1)


class OutcomeRegressions(Check):
    name = "outcome_regressions"
    description = ("Eval items answered well before the refinement and badly by the retrained model "
                   "(`refine outcome`) are at most `max_newly_bad_share` of the eval items.")
    default_severity = "error"
    needs = frozenset({"outcome"})
    Options = OutcomeRegressionsOptions

    def run(self, context: CheckContext) -> CheckResult:
        figures = context.outcome
        assert figures is not None and context.outcome_run is not None
        newly, items = figures["newly_bad"], figures["items"]
        share = newly / items if items else 0.0
        limit = self.options.max_newly_bad_share
        info = {"items": items, "newly_bad": newly, "newly_bad_share": round(share, 6),
                "fixed": figures["fixed"], "max_newly_bad_share": limit,
                "before": figures["before"]["run"]}
        text = (f"{newly:,} of {items:,} eval items newly bad ({share:.1%}; {figures['fixed']:,} fixed) "
                f"against {figures['before']['run']}")
        if share <= limit:
            return self.result(summary=f"{text}; within max_newly_bad_share {limit:g}", passed=True, info=info)
        where = f"{context.outcome_run}/outcome.json"
        findings = [finding(where, None, f"eval item {r['eval_id']} was answered well before and badly "
                                         f"now: {' '.join(r['question'].split())[:80]}", eval_id=r["eval_id"])
                    for r in figures["regressions"]]
        return self.result(summary=f"{text}; more than max_newly_bad_share {limit:g}", passed=False,
                           findings=findings, info=info)
