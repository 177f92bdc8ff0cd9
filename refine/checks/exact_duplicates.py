"""exact_duplicates: the same pair (same normalised question and answer) on several lines."""

from __future__ import annotations

from collections import defaultdict

from .base import Check, CheckResult, finding, locations
from .context import CheckContext


class ExactDuplicates(Check):
    name = "exact_duplicates"
    description = ("The same question and answer (up to case and spacing: the same pair_id) on "
                   "more than one line; the copies weigh the pair several times in training.")
    default_severity = "warning"

    def run(self, context: CheckContext) -> CheckResult:
        lines: dict[str, list] = defaultdict(list)
        for pair in context.training.pairs:
            lines[pair.pair_id].append(pair)
        findings = []
        extra_lines = 0
        for pair_id, group in lines.items():
            if len(group) < 2:
                continue
            extra_lines += len(group) - 1
            first, rest = group[0], group[1:]
            where = locations((p.file, p.line) for p in rest)
            findings.append(finding(
                first.file, first.line,
                f"the same pair is on {len(group)} lines; copies at {where}",
                pair_id=pair_id, lines=[{"file": p.file, "line": p.line} for p in group]))
        summary = (f"{len(findings):,} pair(s) repeated, {extra_lines:,} extra line(s)"
                   if findings else "no pair is on more than one line")
        return self.result(summary=summary, findings=findings,
                           info={"groups": len(findings), "extra_lines": extra_lines})
