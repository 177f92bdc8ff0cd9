"""Rendering check results: a JSON document for machines, a plain-text table for people."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .base import CheckResult

__all__ = ["CheckReport"]

_STATUS = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


@dataclass
class CheckReport:
    """The results of one `run_checks` call, in the order the checks ran.

    ``passed`` is False when an error-level check failed; failed warnings and infos are
    reported but do not fail the report. Renderings list at most ``max_findings`` findings per
    check and always give the full count.
    """

    results: list[CheckResult]
    inputs: dict[str, Any] = field(default_factory=dict)
    max_findings: int = 20
    load_seconds: float = field(default=0.0, compare=False)

    @property
    def passed(self) -> bool:
        return not self.failed_errors

    @property
    def failed_errors(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail" and r.severity == "error"]

    def result(self, name: str) -> CheckResult:
        """The result of the check called `name` (KeyError when it did not run)."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self, max_findings: int | None = None) -> dict[str, Any]:
        cap = self.max_findings if max_findings is None else max_findings
        return {
            "passed": self.passed,
            "failed": [r.name for r in self.failed_errors],
            "warnings": [r.name for r in self.results if r.status == "fail" and r.severity != "error"],
            "skipped": [r.name for r in self.results if r.status == "skip"],
            "max_findings": cap,
            "inputs": self.inputs,
            "checks": [r.to_dict(cap) for r in self.results],
        }

    def to_json(self, max_findings: int | None = None) -> str:
        """The report as JSON with sorted keys and no timings: the same inputs and settings
        give the same text."""
        return json.dumps(self.to_dict(max_findings), sort_keys=True, indent=2,
                          ensure_ascii=False) + "\n"

    def to_table(self, max_findings: int | None = None) -> str:
        """One row per check (check, severity, status, summary), the verdict, then the first
        findings of every failed check."""
        cap = self.max_findings if max_findings is None else max_findings
        rows = [("check", "severity", "status", "summary")]
        rows += [(r.name, r.severity, _STATUS[r.status], r.summary) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths)), row[3]]).rstrip()
                 for row in rows]
        failed = self.failed_errors
        verdict = ("PASS" if self.passed else
                   f"FAIL ({len(failed)} error-level check(s) failed: "
                   f"{', '.join(r.name for r in failed)})")
        lines += ["", f"result: {verdict}"]
        for result in self.results:
            if result.status != "fail" or not result.findings:
                continue
            lines += ["", f"{result.name} ({result.severity}): {result.n_findings:,} finding(s)"]
            for item in result.findings[:cap]:
                where = item["file"] if item.get("line") is None else f"{item['file']}:{item['line']}"
                lines.append(f"  {where}  {item['message']}")
            if result.n_findings > cap:
                lines.append(f"  ... and {result.n_findings - cap:,} more")
        return "\n".join(lines) + "\n"
