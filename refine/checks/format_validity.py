"""format_validity: every line of every training file is a valid training record."""

from __future__ import annotations

from .base import Check, CheckResult, finding
from .context import CheckContext


def _reason(file: str, line: int, reason: str) -> str:
    # SkippedLine reasons are whole error messages; the finding names file and line (or row) itself.
    for prefix in (f"{file}:{line}: ", f"{file}: row {line}: "):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


class FormatValidity(Check):
    name = "format_validity"
    description = ("Every non-blank line (or row) of every training file parses as a record of a "
                   "known layout: chat messages, ShareGPT, Alpaca, prompt/completion or question/answer.")
    default_severity = "error"

    def run(self, context: CheckContext) -> CheckResult:
        findings = [finding(file, None, reason) for file, reason in context.unreadable.items()]
        findings += [finding(s.file, s.line, _reason(s.file, s.line, s.reason))
                     for s in context.training.skipped]
        order = {path: i for i, path in enumerate(context.train_paths)}
        findings.sort(key=lambda f: (order.get(f["file"], len(order)), f["line"] or 0))
        n_files = len(context.train_paths)
        n_records = len(context.training.pairs)
        if not findings:
            return self.result(summary=f"all {n_records:,} records of {n_files} file(s) are valid",
                               info={"records": n_records, "invalid_lines": 0})
        n_lines = len(context.training.skipped)
        parts = [f"{n_lines:,} invalid line(s)"] if n_lines else []
        if context.unreadable:
            parts.append(f"{len(context.unreadable)} file(s) with no valid record")
        return self.result(summary=", ".join(parts) + f" ({n_records:,} valid records)",
                           findings=findings,
                           info={"records": n_records, "invalid_lines": n_lines,
                                 "unreadable_files": sorted(context.unreadable)})
