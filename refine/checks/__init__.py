"""Checks of a training set before retraining on it: `refine check`.

::

    from refine import CheckSettings, check

    report = check(["refined/faq.jsonl"], CheckSettings(options={"near_duplicates": {"threshold": 0.9}}),
                   eval_path="eval.jsonl", baseline="data/faq.jsonl", flags_run="runs/r1")
    print(report.to_table())
    report.passed          # False when an error-level check failed

One module per check, each a :class:`Check` subclass that registers itself:

==================== ======== ======== ===============================================
check                severity needs    what it finds
==================== ======== ======== ===============================================
format_validity      error             lines that are not valid training records
exact_duplicates     warning           the same pair on several lines
near_duplicates      warning           pairs at word-shingle Jaccard ≥ threshold
conflicting_answers  error             one question, answers that say different things
eval_leakage         error    eval     eval questions present in training
flagged_present      error    flags    pairs a run flagged, still in the data
size_guard           error    baseline too much of the baseline dropped
length_outliers      warning           questions/answers of outlying length
==================== ======== ======== ===============================================
"""

from __future__ import annotations

from .base import SEVERITIES, Check, CheckResult, available_checks, make_check
from .context import CheckContext
from .report import CheckReport
from .runner import check, run_checks

__all__ = ["SEVERITIES", "Check", "CheckContext", "CheckReport", "CheckResult",
           "available_checks", "check", "make_check", "run_checks"]
