"""What the checks look at: the training set under check and the optional inputs.

A bad record in a training file is not an error here but a finding of ``format_validity``:
training files are read with ``skip_invalid`` and the skipped lines kept, and a file with no
readable record at all is kept as *unreadable* with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import InputError
from ..formats.evalset import EvalSet, load_eval
from ..formats.sources import open_source, source_digest
from ..formats.training import (SkippedLine, TrainingFile, TrainingSet, decode_json_line,
                        iter_jsonl_lines, load_training, parse_training_record)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CheckContext", "load_eval_questions", "load_training_for_check"]


def _jsonl_reasons(name: str, path: Path) -> list[SkippedLine]:
    """Why each non-blank line of a JSONL file is not a training record."""
    reasons = []
    for number, raw in iter_jsonl_lines(path):
        if not raw.strip():
            continue
        try:
            parse_training_record(decode_json_line(raw, file=name, line=number), file=name,
                                  line=number)
        except InputError as exc:
            reasons.append(SkippedLine(name, number, str(exc)))
    return reasons


def load_training_for_check(paths: Sequence[str]) -> tuple[TrainingSet, dict[str, str]]:
    """Read the training files, keeping bad lines as skipped and whole bad files as unreadable.

    Returns the training set (pairs of the readable lines, every skipped line) and
    ``{file: reason}`` for files with no readable record. A missing file, or one given
    twice, is an InputError: that is a mistake in the command, not in the data.
    """
    if not paths:
        raise InputError("no training file given")
    pairs, files, skipped = [], [], []
    unreadable: dict[str, str] = {}
    seen: set[tuple[Path, str | None]] = set()
    for name in map(str, paths):
        source = open_source(name)
        if source.identity() in seen:
            raise InputError("given twice", file=name)
        seen.add(source.identity())
        try:
            one = load_training([name], skip_invalid=True)
        except InputError as exc:
            if exc.file != name or exc.line is not None or exc.row is not None:
                raise
            unreadable[name] = exc.message
            if not source.is_table:
                skipped.extend(_jsonl_reasons(name, source.path))
            continue
        pairs.extend(one.pairs)
        files.extend(one.files)
        skipped.extend(one.skipped)
    return TrainingSet(pairs, files, skipped), unreadable


def load_eval_questions(path: str) -> EvalSet:
    """Read an eval set for the checks: only a question is required of each record.

    Answers, verdicts and references do not matter for leakage, so a file of bare questions
    will do; a record without a question is an InputError naming it.
    """
    return load_eval(path, questions_only=True)


def _flagged_ids(table: "pd.DataFrame") -> frozenset[str]:
    return frozenset(table.loc[table["flagged"], "pair_id"].astype(str))


@dataclass
class CheckContext:
    """The inputs of one `run_checks` call, loaded once and shared by the checks.

    ``training`` is the set under check (invalid lines skipped, listed in
    ``training.skipped``; files with no readable record in ``unreadable``). ``eval``,
    ``baseline`` and ``flags`` are None when not given. ``memo`` shares derived data (token
    lists, shingles) between checks.
    """

    train_paths: list[str]
    training: TrainingSet
    unreadable: dict[str, str] = field(default_factory=dict)
    eval: EvalSet | None = None
    baseline: TrainingSet | None = None
    flags: "pd.DataFrame | None" = None
    flags_run: str | None = None
    outcome: dict[str, Any] | None = None
    outcome_run: str | None = None
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def load(cls, train: Sequence[str], *, eval_path: str | None = None,
             baseline: str | Sequence[str] | None = None,
             flags_run: str | None = None, outcome_run: str | None = None) -> "CheckContext":
        """Read every input; raise InputError/RunDirError for one that cannot be used at all.
        With `outcome_run` (a retrained run's `refine outcome` figures) `train` may be empty."""
        training, unreadable = (load_training_for_check([str(p) for p in train])
                                if train or outcome_run is None else (TrainingSet([], []), {}))
        baseline_set = None
        if baseline is not None:
            paths = [baseline] if isinstance(baseline, (str, Path)) else list(baseline)
            baseline_set = load_training([str(p) for p in paths], skip_invalid=True)
        flags = None
        if flags_run is not None:
            from ..stages.flagging import read_flags

            flags = read_flags(flags_run)
        outcome = None
        if outcome_run is not None:
            from ..stages.outcomes import read_outcome

            outcome = read_outcome(outcome_run)
        return cls(train_paths=[str(p) for p in train], training=training, unreadable=unreadable,
                   eval=load_eval_questions(eval_path) if eval_path is not None else None,
                   baseline=baseline_set, flags=flags,
                   flags_run=str(flags_run) if flags_run is not None else None, outcome=outcome,
                   outcome_run=str(outcome_run) if outcome_run is not None else None)

    def has(self, need: str) -> bool:
        """Whether the optional input `need` ("eval", "baseline", "flags" or "outcome") was given."""
        return {"eval": self.eval, "baseline": self.baseline, "flags": self.flags,
                "outcome": self.outcome}[need] is not None

    @property
    def flagged_ids(self) -> frozenset[str]:
        """pair_ids flagged in the run directory (empty without one)."""
        if self.flags is None:
            return frozenset()
        return self.memo("flagged_ids", lambda: _flagged_ids(self.flags))

    def memo(self, key: str, factory: Callable[[], Any]) -> Any:
        """``factory()``, computed once per context under `key`."""
        if key not in self._memo:
            self._memo[key] = factory()
        return self._memo[key]

    def inputs(self) -> dict[str, Any]:
        """The inputs, with content hashes: what a report says it was made from."""
        def files(entries: list[TrainingFile]) -> list[dict[str, Any]]:
            return [{"path": f.path, "sha256": f.sha256, "format": f.format, "records": f.records,
                     "skipped": f.skipped} for f in entries]

        train = files(self.training.files)
        train += [{"path": path, "unreadable": reason} for path, reason in self.unreadable.items()]
        order = {path: i for i, path in enumerate(self.train_paths)}
        train.sort(key=lambda entry: order.get(entry["path"], len(order)))
        return {
            "train": train,
            "eval": (None if self.eval is None else
                     {"path": self.eval.path, "sha256": source_digest(open_source(self.eval.path)),
                      "items": len(self.eval.items)}),
            "baseline": None if self.baseline is None else files(self.baseline.files),
            "flags_run": self.flags_run,
            "outcome_run": self.outcome_run,
        }
