"""The one small interface every check implements.

A check is one class: it declares a ``name``, a ``description``, a ``default_severity``, what
optional inputs it ``needs`` and an ``Options`` dataclass of its settings, and it registers
itself by being defined. Checks are plug-ins (:data:`refine.plugins.CHECKS`, entry point group
``refine.checks``), so a package adds one without editing refine. ``run(context)`` looks at the
loaded inputs and returns a :class:`CheckResult`; rendering results is
:mod:`refine.checks.report`'s business.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from ..errors import ConfigError
from ..plugins import CHECKS, concrete
from ..settings import number_problem

if TYPE_CHECKING:
    from .context import CheckContext

__all__ = ["NEEDS", "SEVERITIES", "Check", "CheckResult", "available_checks", "check_class",
           "finding", "locations", "make_check", "validate_number"]

SEVERITIES = ("error", "warning", "info")
NEEDS = {"eval": "an eval set (--eval)",
         "baseline": "a baseline training set (--baseline)",
         "flags": "a flagged run directory (--flags)",
         "outcome": "a retrained run with `refine outcome` figures (--outcome)"}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class CheckResult:
    """What one check found.

    ``findings`` holds every finding (a report shows only the first few, and counts them all);
    each names the ``file`` and 1-based ``line`` it is about (``line`` is None for a finding
    about a whole file) and says what is wrong in ``message``. ``skipped`` is the reason a
    check did not run; a skipped check counts as passed.
    """

    name: str
    severity: str
    passed: bool
    summary: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def status(self) -> str:
        """``"skip"``, ``"pass"`` or ``"fail"``."""
        if self.skipped is not None:
            return "skip"
        return "pass" if self.passed else "fail"

    @property
    def n_findings(self) -> int:
        return len(self.findings)

    def to_dict(self, max_findings: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict with at most `max_findings` findings (all when None); no timing,
        so the same inputs give the same dict."""
        shown = self.findings if max_findings is None else self.findings[:max_findings]
        return {"name": self.name, "severity": self.severity, "status": self.status,
                "passed": self.passed, "summary": self.summary, "skip_reason": self.skipped,
                "n_findings": self.n_findings, "findings": shown, "info": self.info}


def finding(file: str, line: int | None, message: str, **extra: Any) -> dict[str, Any]:
    """One finding: the file and 1-based line it is about (None: the whole file), what is
    wrong, and any further fields a reader may want (other lines, similarity, lengths)."""
    return {"file": file, "line": line, "message": message, **extra}


def locations(places: Iterable[tuple[str, int]], limit: int = 5) -> str:
    """``"a.jsonl:3, a.jsonl:9 and 4 more"``: the first `limit` of many file:line places."""
    places = list(places)
    text = ", ".join(f"{file}:{line}" for file, line in places[:limit])
    return text + (f" and {len(places) - limit:,} more" if len(places) > limit else "")


@dataclass(frozen=True)
class NoOptions:
    """The options of a check that has none."""


class Check(abc.ABC):
    """One check of a training set before retraining.

    Subclass it with class attributes ``name``, ``description``, ``default_severity``
    (one of :data:`SEVERITIES`), ``needs`` (a subset of :data:`NEEDS`: without those inputs the
    check is skipped, not failed) and ``Options`` (a dataclass validating itself in
    ``__post_init__`` with :class:`~refine.errors.ConfigError` keyed ``checks.<name>.<option>``),
    and implement :meth:`run`. Defining the class registers it under ``name``; the checks run
    and are reported in :meth:`CHECKS.names() <refine.plugins.Registry.names>` order (refine's
    own first, in the order :data:`refine.plugins.CHECKS` declares them; then the others by name).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    default_severity: ClassVar[str] = "warning"
    needs: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type] = NoOptions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__ or not concrete(cls):
            return
        if not _NAME.match(cls.name):
            raise TypeError(f"check name {cls.name!r} must be lower_snake_case")
        if cls.default_severity not in SEVERITIES:
            raise TypeError(f"check {cls.name!r}: default_severity must be one of {SEVERITIES}")
        cls.needs = frozenset(cls.needs)
        if not cls.needs <= set(NEEDS):
            raise TypeError(f"check {cls.name!r}: needs must be a subset of {sorted(NEEDS)}")
        if not dataclasses.is_dataclass(cls.Options):
            raise TypeError(f"check {cls.name!r}: Options must be a dataclass")
        CHECKS.register(cls)

    def __init__(self, options: Any = None, *, severity: str | None = None) -> None:
        self.options = options if options is not None else self.Options()
        if severity is not None and severity not in SEVERITIES:
            raise ConfigError(f"is {severity!r}; expected one of {', '.join(SEVERITIES)}",
                              key=f"checks.{self.name}.severity")
        self.severity = severity or self.default_severity

    def skip_reason(self, context: "CheckContext") -> str | None:
        """Why this check cannot run on `context` (an input it needs is missing), else None."""
        missing = sorted(need for need in self.needs if not context.has(need))
        if not missing:
            return None
        return "needs " + " and ".join(NEEDS[need] for need in missing)

    def prepare(self, context: "CheckContext") -> None:
        """Refuse, with a :class:`~refine.errors.RefineError`, inputs that make this check
        meaningless. Every selected check is prepared before any check runs."""

    @abc.abstractmethod
    def run(self, context: "CheckContext") -> CheckResult:
        """Look at the inputs and say what is wrong; never raise for a problem in the data."""

    def result(self, *, summary: str, findings: Iterable[dict[str, Any]] = (),
               passed: bool | None = None, info: dict[str, Any] | None = None) -> CheckResult:
        """A result of this check; it passes when there are no findings unless `passed` says."""
        findings = list(findings)
        return CheckResult(self.name, self.severity, not findings if passed is None else passed,
                           summary, findings, dict(info or {}))

    def skipped(self, reason: str) -> CheckResult:
        return CheckResult(self.name, self.severity, True, f"skipped: {reason}", skipped=reason)


def available_checks() -> list[str]:
    """Names of all checks, in the order they run: refine's own, then plug-ins by name."""
    return CHECKS.names()


def check_class(name: str, *, key: str = "checks") -> type[Check]:
    """The check called `name`, or a ConfigError keyed `key` listing the known ones."""
    return CHECKS.get(name, key=key)


def make_check(name: str, options: dict[str, Any] | None = None, *,
               severity: str | None = None) -> Check:
    """Build a check from a plain options dict, validating its keys and values."""
    return CHECKS.make(name, options, severity=severity)


def validate_number(check: str, option: str, value: Any, *, minimum: float | None = None,
                    maximum: float | None = None, integer: bool = False,
                    exclusive_minimum: bool = False, optional: bool = False) -> None:
    """Raise ConfigError (key ``checks.<check>.<option>``) unless `value` is such a number."""
    if value is None and optional:
        return
    expected = number_problem(value, low=minimum, high=maximum, integer=integer,
                              low_open=exclusive_minimum)
    if expected is None:
        return
    if optional:
        expected += " or null"
    raise ConfigError(f"is {value!r}; expected {expected}", key=f"checks.{check}.{option}")
