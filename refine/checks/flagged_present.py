"""flagged_present: pairs that a run flagged are still in the training set."""

from __future__ import annotations

from .base import Check, CheckResult, finding
from .context import CheckContext


class FlaggedPresent(Check):
    name = "flagged_present"
    description = ("Pairs flagged in a run directory (flags.csv) that are still in the training "
                   "set: the dataset about to be retrained on was not refined.")
    default_severity = "error"
    needs = frozenset({"flags"})

    def run(self, context: CheckContext) -> CheckResult:
        flagged = context.flagged_ids
        findings = [finding(p.file, p.line, f"pair {p.pair_id} was flagged in {context.flags_run}",
                            pair_id=p.pair_id)
                    for p in context.training.pairs if p.pair_id in flagged]
        still = len({f["pair_id"] for f in findings})
        summary = (f"{still:,} of {len(flagged):,} flagged pair(s) still present on "
                   f"{len(findings):,} line(s)" if findings
                   else f"none of {len(flagged):,} flagged pairs is present")
        return self.result(summary=summary, findings=findings,
                           info={"flagged": len(flagged), "present": still,
                                 "lines": len(findings)})
