"""The run directory: everything one collection produced, and what it was produced from.

::

    RUN/
      settings.json         what decides the results: inputs (with sha256), backend, options;
                            a re-run with other settings is refused unless --overwrite
      provenance.json       tool and library versions
      pairs.parquet         the pair index: pair_id, file, line, file_id, question, answer
      journal.jsonl         one line per finished eval item, appended and flushed as it
                            finishes: the resume point (a torn last line is ignored)
      items.parquet         per eval item: question, answer, verdict (given or graded), status
      attributions.parquet  per (item, influential pair): rank, pair_id, score, level, file_id
      flags.csv, flags.json written by `refine flag`
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ._atomic import write_json
from .errors import RunDirError
from .records import Attribution

__all__ = ["RunDir"]

SETTINGS = "settings.json"
PROVENANCE = "provenance.json"
PAIRS = "pairs.parquet"
JOURNAL = "journal.jsonl"
ITEMS = "items.parquet"
ATTRIBUTIONS = "attributions.parquet"
FLAGS_CSV = "flags.csv"
FLAGS_JSON = "flags.json"
_OWNED = (SETTINGS, PROVENANCE, PAIRS, JOURNAL, ITEMS, ATTRIBUTIONS, FLAGS_CSV, FLAGS_JSON)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        out: list[str] = []
        for key in keys:
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


class JournalWriter:
    """Appends finished records to the journal.

    Each record is handed to the operating system (flushed) before `append` returns, so a
    killed process loses nothing it acknowledged; an fsync at most every `sync_every`
    seconds, and on close, also covers a power cut without costing a disk flush per item.
    """

    def __init__(self, path: Path, sync_every: float = 1.0) -> None:
        self._fh = open(path, "ab")
        self._sync_every = sync_every
        self._last_sync = time.monotonic()

    def append(self, record: Attribution) -> None:
        self._fh.write(json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False)
                       .encode("utf-8") + b"\n")
        self._fh.flush()
        if time.monotonic() - self._last_sync >= self._sync_every:
            self.sync()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as they decide results: input files by content (sha256), not by the path
    they were reached through, so the same run resumes from another working directory."""
    inputs = settings.get("inputs", {})
    strip = lambda entry: {k: v for k, v in entry.items() if k != "path"}  # noqa: E731
    return {**settings, "inputs": {
        **inputs,
        "train": [strip(e) for e in inputs.get("train", [])],
        "eval": strip(inputs.get("eval", {})),
    }}


class RunDir:
    """A run directory on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # --- opening -------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        path = self.file(SETTINGS)
        if not path.is_file():
            raise RunDirError(f"{self.path}: not a refine run directory (no {SETTINGS}); "
                              "run `refine collect` first")
        return json.loads(path.read_text(encoding="utf-8"))

    def require(self, *names: str) -> None:
        for name in names:
            if not self.file(name).is_file():
                hint = "refine flag" if name.startswith("flags") else "refine collect"
                raise RunDirError(f"{self.path}: {name} is missing; run `{hint}` first")

    def prepare_for(self, settings: dict[str, Any], *, overwrite: bool) -> bool:
        """Make the directory ready for a collection with `settings`.

        Returns True when it resumes an earlier collection with the same settings.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory")
        existing = self.file(SETTINGS)
        if existing.is_file():
            old = json.loads(existing.read_text(encoding="utf-8"))
            if _comparable(old) == _comparable(settings):
                return True
            if not overwrite:
                changed = ", ".join(_diff(_comparable(old), _comparable(settings))) or "(format)"
                raise RunDirError(f"{self.path}: was collected with other settings (changed: {changed}); "
                                  "use another run directory or --overwrite")
            self.clear()
        elif self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
            raise RunDirError(f"{self.path}: exists, is not empty and is not a refine run directory; "
                              "use another run directory or --overwrite")
        elif overwrite and self.path.is_dir():
            self.clear()
        return False

    def clear(self) -> None:
        """Remove what refine wrote here (and nothing else)."""
        for name in _OWNED:
            self.file(name).unlink(missing_ok=True)
        for extra in self.path.glob(".*.tmp"):
            extra.unlink(missing_ok=True)

    def write_settings(self, settings: dict[str, Any], provenance: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.file(SETTINGS), settings)
        write_json(self.file(PROVENANCE), provenance)

    # --- the journal ---------------------------------------------------------------------
    def read_journal(self) -> dict[str, Attribution]:
        """The latest record per eval id. A torn last line (a crash mid-write) is cut off."""
        path = self.file(JOURNAL)
        records: dict[str, Attribution] = {}
        if not path.is_file():
            return records
        good_bytes = 0
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                try:
                    record = Attribution.from_json(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    break
                records[record.eval_id] = record
                good_bytes += len(raw)
        if good_bytes != path.stat().st_size:
            with open(path, "r+b") as fh:
                fh.truncate(good_bytes)
        return records

    def journal_writer(self) -> "JournalWriter":
        self.path.mkdir(parents=True, exist_ok=True)
        return JournalWriter(self.file(JOURNAL))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
