"""One DuckDB database for a stage's out-of-core work: bounded memory, its own spill folder.

`flag` and `cluster` aggregate attribution tables of 10⁸ rows; held as pandas frames they need
tens of GB. DuckDB streams Parquet a row group at a time, and its hash aggregates, joins and
sorts spill to disk past a memory limit, so memory is bounded by that limit, not by the data
(bench/out_of_core.py measured it against polars and pandas).

The database is a file in a private temporary folder, not an in-memory one, so that the tables
a stage builds on the way are paged to disk like everything else; the folder goes when the
work is done, whatever happened. It lies under the system's temporary folder (``TMPDIR``), which
must hold the scratch tables (what they took at 10⁸ citations of 10⁷ pairs: docs/scaling.md).
Results do not depend on the thread count: every query whose output is kept orders its rows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

__all__ = ["MEMORY_ENV", "connect", "quoted", "squeezed"]

#: Environment variable overriding DuckDB's memory limit ("2GB", "500MB"); the default is 2 GB
#: or a quarter of this machine's memory, whichever is smaller.
MEMORY_ENV = "REFINE_DUCKDB_MEMORY"


def _memory_limit() -> str:
    given = os.environ.get(MEMORY_ENV, "").strip()
    if given:
        return given
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return f"{max(256, min(2048, total // 4 >> 20))}MB"


@contextlib.contextmanager
def connect() -> Iterator[Any]:
    """A DuckDB connection on a scratch database, removed (with its spill files) on exit."""
    import duckdb

    from ..errors import ConfigError, RunDirError

    folder = tempfile.mkdtemp(prefix="refine-duckdb-")
    limit = _memory_limit()
    try:
        try:
            con = duckdb.connect(os.path.join(folder, "work.duckdb"), config={
                "memory_limit": limit,
                "temp_directory": os.path.join(folder, "spill"),
                "preserve_insertion_order": False,
                "threads": max(1, min(os.cpu_count() or 1, 8)),
            })
        except duckdb.Error as exc:
            raise ConfigError(f"cannot start DuckDB ({exc}); check {MEMORY_ENV}", key=MEMORY_ENV) from None
        try:
            yield con
        except duckdb.OutOfMemoryException:
            raise ConfigError(f"DuckDB ran out of memory within its limit of {limit}; set {MEMORY_ENV} "
                              "higher (e.g. 4GB)", key=MEMORY_ENV) from None
        except duckdb.IOException as exc:
            missing = re.search(r'No files found that match the pattern "([^"]*)"', str(exc))
            if missing:     # an input, not the scratch space: a damaged run directory
                raise RunDirError(f"{missing.group(1)} is missing: run the stage that writes it "
                                  "again") from None
            raise ConfigError(f"DuckDB could not read or write a file ({exc}); its scratch tables go "
                              f"under {tempfile.gettempdir()}: point TMPDIR at a disk with room",
                              key="TMPDIR") from None
        finally:
            con.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def squeezed(con: Any, limit: str = "128MB") -> Iterator[None]:
    """DuckDB held to `limit` for a while (its cached pages written out to the scratch
    database), then given its own limit back: for the Python work between two queries, so
    that DuckDB's cache and numpy's arrays do not add up."""
    before = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    con.execute(f"SET memory_limit = {quoted(limit)}")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = {quoted(before)}")


def quoted(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
