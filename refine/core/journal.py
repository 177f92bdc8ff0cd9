"""The journal: one JSON line per finished eval item, collect's resume point (RUN/journal.jsonl)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..formats.records import Attribution

__all__ = ["JournalWriter", "read_journal"]


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


def read_journal(path: Path) -> dict[str, Attribution]:
    """The latest record per eval id in the journal at `path` (none when it is not there). A torn
    last line (a crash mid-write) is cut off the file."""
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
