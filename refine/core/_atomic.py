"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

# mkstemp creates 0600 files whatever the umask; the files refine writes are ordinary outputs.
_UMASK = os.umask(0)
os.umask(_UMASK)
_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *,
                encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on clean exit it replaces `path`, on error it vanishes."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, _MODE)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline="" if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path`, for writers that take a file name (DuckDB's COPY); on
    clean exit the file there replaces `path`, on error it vanishes."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _MODE)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as stable, human-readable JSON (sorted keys, trailing newline)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


_PARQUET_COMPRESSION = "zstd"
_PARQUET_ROW_GROUP = 16384


def write_parquet(path: str | os.PathLike[str], table: Any) -> None:
    """Write a pyarrow Table atomically.

    Row groups are kept small so that a reader filtering for a few rows decodes one group at
    a time instead of whole columns of text.
    """
    import pyarrow.parquet as pq

    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh, compression=_PARQUET_COMPRESSION, row_group_size=_PARQUET_ROW_GROUP)


def write_parquet_batches(path: str | os.PathLike[str], batches: Any) -> None:
    """Write a pyarrow RecordBatchReader atomically, a batch at a time: memory stays at a batch
    (row groups as :func:`write_parquet` writes them)."""
    import pyarrow.parquet as pq

    with atomic_open(path, "wb") as fh:
        with pq.ParquetWriter(fh, batches.schema, compression=_PARQUET_COMPRESSION) as writer:
            for batch in batches:
                writer.write_batch(batch, row_group_size=_PARQUET_ROW_GROUP)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class AtomicGroup:
    """Several files (and directories) that appear together or not at all (as far as renames allow).

    Each `open()` writes to a temporary file and each `directory()` is a temporary directory;
    `commit()` renames them all into place in the order they were made (a directory replacing
    an earlier one of the same name); leaving the context without commit removes them.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, Path]] = []

    def directory(self, path: str | os.PathLike[str]) -> Path:
        """A new empty directory to fill; `commit()` puts it at `path`."""
        target = Path(path)
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.chmod(tmp, 0o777 & ~_UMASK)
        self._pending.append((tmp, target))
        return Path(tmp)

    def open(self, path: str | os.PathLike[str], mode: str = "wb",
             encoding: str | None = None) -> IO[Any]:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.fchmod(fd, _MODE)
        self._pending.append((tmp, target))
        return os.fdopen(fd, mode, encoding=encoding, newline="" if "b" not in mode else None)

    def commit(self) -> None:
        for tmp, _ in self._pending:
            files = [Path(tmp)] if not os.path.isdir(tmp) else [p for p in Path(tmp).rglob("*") if p.is_file()]
            for file in files:
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        for tmp, target in self._pending:
            if os.path.isdir(tmp):
                _replace_directory(Path(tmp), target)
            else:
                os.replace(tmp, target)
        self._pending.clear()

    def discard(self) -> None:
        for tmp, _ in self._pending:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        self._pending.clear()

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _replace_directory(new: Path, target: Path) -> None:
    """Put directory `new` at `target`; an existing directory there is moved aside first and
    removed only once `new` is in place (a rename cannot replace a non-empty directory)."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
