"""`check` (what `refine check` calls) and `run_checks`: load the inputs once, run the selected
checks, collect a report."""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..errors import ConfigError, InputError
from ..settings import CheckSettings
from .base import available_checks, check_class, make_check
from .context import CheckContext
from .report import CheckReport

__all__ = ["check", "run_checks"]


def check(train: Sequence[str], settings: CheckSettings | None = None, *,
          eval_path: str | None = None, baseline: str | Sequence[str] | None = None,
          flags_run: str | None = None, outcome_run: str | None = None) -> CheckReport:
    """Check training sources before retraining on them, as the settings (a gate file's
    ``checks:`` section, :func:`refine.stages.recipe.load_check_config`) say; see :func:`run_checks`."""
    settings = settings or CheckSettings()
    return run_checks(train, eval_path=eval_path, baseline=baseline or None, flags_run=flags_run,
                      outcome_run=outcome_run,
                      select=settings.select, options=settings.options, severity=settings.severity,
                      max_findings=settings.max_findings)


def run_checks(train: Sequence[str], *, eval_path: str | None = None,
               baseline: str | Sequence[str] | None = None, flags_run: str | None = None,
               outcome_run: str | None = None, select: Sequence[str] | None = None,
               options: dict[str, dict[str, Any]] | None = None,
               severity: dict[str, str] | None = None, max_findings: int = 20) -> CheckReport:
    """Check training files before retraining on them.

    `select` names the checks to run (default: all, in :func:`available_checks` order);
    `options` maps a check name to its options, `severity` a check name to a severity that
    replaces its default. Check names, option names and values are validated before any
    file is read (ConfigError, keyed ``checks.<name>.<option>``). Inputs that cannot be used
    at all — a missing file, an eval line without a question, a run directory without
    flags.csv, a baseline the training set is not derived from — raise before any check runs;
    problems *in* the training data are findings. A check whose inputs (`eval_path`,
    `baseline`, `flags_run`, `outcome_run`) are not given is skipped with the reason. With
    `outcome_run` and no training file, only the checks of the outcome run.
    """
    names = available_checks()
    if select is not None:
        if isinstance(select, str):
            raise ConfigError("must be a list of check names, not one string", key="checks.select")
        for name in select:
            check_class(name, key="checks.select")
        chosen = set(select)
        names = [name for name in names if name in chosen]
    if not train and outcome_run is not None:
        outcome_checks = [name for name in names if "outcome" in check_class(name).needs]
        if select is not None and outcome_checks != names:
            raise InputError("no training file given: only the checks of --outcome run without one")
        names = outcome_checks
    options = dict(options or {})
    severity = dict(severity or {})
    for name in options:
        check_class(name, key="checks.options")
    for name in severity:
        check_class(name, key="checks.severity")
    built = {name: make_check(name, options.get(name), severity=severity.get(name))
             for name in available_checks() if name in options or name in severity or name in names}
    checks = [built[name] for name in names]

    started = time.perf_counter()
    context = CheckContext.load(train, eval_path=eval_path, baseline=baseline,
                                flags_run=flags_run, outcome_run=outcome_run)
    skip = {check.name: check.skip_reason(context) for check in checks}
    for check in checks:
        if skip[check.name] is None:
            check.prepare(context)
    load_seconds = time.perf_counter() - started

    results = []
    for check in checks:
        if skip[check.name] is not None:
            results.append(check.skipped(skip[check.name]))
            continue
        started = time.perf_counter()
        result = check.run(context)
        result.seconds = time.perf_counter() - started
        results.append(result)
    return CheckReport(results, context.inputs(), max_findings=max_findings,
                       load_seconds=load_seconds)
