"""Checks of a training set before retraining on it: `refine check`.

::

    from refine import CheckSettings, check

    report = check(["refined/faq.jsonl"], CheckSettings(options={"near_duplicates": {"threshold": 0.9}}),
                   eval_path="eval.jsonl", baseline="data/faq.jsonl", flags_run="runs/r1")
    print(report.to_table())
    report.passed          # False when an error-level check failed

One module per check, each a :class:`Check` subclass that registers itself; its ``description``,
``default_severity`` and ``needs`` say what it finds and what it needs to run.
:func:`available_checks` lists them in the order they run (refine's own in the order
:data:`refine.plugins.CHECKS` declares them, then plug-ins).
"""

from __future__ import annotations

from .base import SEVERITIES, Check, CheckResult, available_checks, make_check
from .context import CheckContext
from .report import CheckReport
from .runner import check, run_checks

__all__ = ["SEVERITIES", "Check", "CheckContext", "CheckReport", "CheckResult",
           "available_checks", "check", "make_check", "run_checks"]
