"""A float32 matrix kept in a file, not in memory: what a driver scores against.

At 10⁷ training pairs the embedding backend's vectors are 30 GB, and the gradient backend's
features are N × D: more than a driver should hold. A :class:`DiskMatrix` is `rows` × `columns`
float32 in a file, zero until written; rows are written at any position, in one system call
per run of consecutive rows. Two things differ between its users, and both are chosen when
the matrix is made:

* **where the file lives.** ``DiskMatrix(directory, rows, columns)`` is a scratch matrix: an
  unnamed temporary file (``O_TMPFILE`` where the system has it) in a directory on disk that
  the caller chooses (``TMPDIR`` may be a RAM-backed tmpfs). It vanishes when the matrix is
  closed or the process ends, crash or not: nothing is left for another run to find.
  ``DiskMatrix.create(path, rows, columns)`` and ``DiskMatrix.open(path)`` are a stored matrix:
  a named ``.npy`` file that outlives the process (a cache). Each write to it is on disk
  (``fsync``) before :meth:`~DiskMatrix.write_rows` returns, so a resume record written after
  it can be trusted; :meth:`~DiskMatrix.open` refuses a file that is not a whole C-ordered
  float32 matrix.
* **how it is read: the memory policy.** ``policy="map"`` reads through one read-only memory
  map (:attr:`~DiskMatrix.array`). Pages read through a map count in the process's resident
  memory until the system needs them back, so a reader that walks the whole matrix calls
  :meth:`~DiskMatrix.release` as it goes: the pages stay in the page cache (a re-read is cheap)
  but leave the process. Rows are written before the matrix is first read. ``policy="stream"``
  maps nothing: :meth:`~DiskMatrix.blocks` reads each block into an array of its own with
  plain file I/O, so resident memory is one block however often the matrix is walked (the
  page cache still speeds re-reads). Scratch matrices default to ``map``, stored ones to
  ``stream``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Literal

import numpy as np

__all__ = ["DiskMatrix"]

_FLOAT32 = np.dtype("<f4")
Policy = Literal["map", "stream"]


class DiskMatrix:
    """`rows` × `columns` float32 in a file, zero until written (see the module for the kinds)."""

    def __init__(self, directory: str | os.PathLike[str], rows: int, columns: int, *,
                 policy: Policy = "map") -> None:
        """A scratch matrix in an unnamed file in `directory`."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        scratch = tempfile.TemporaryFile(dir=directory)
        scratch.truncate(rows * columns * _FLOAT32.itemsize)
        self._setup(None, scratch, 0, (rows, columns), policy)

    @classmethod
    def create(cls, path: str | os.PathLike[str], rows: int, columns: int, *,
               policy: Policy = "stream") -> "DiskMatrix":
        """A stored matrix: a zero ``.npy`` at `path`, replacing what was there."""
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (int(rows), int(columns))})
            fh.truncate(fh.tell() + rows * columns * _FLOAT32.itemsize)
        return cls.open(path, policy=policy)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, policy: Policy = "stream") -> "DiskMatrix":
        """The stored matrix at `path`; a ValueError unless it is a whole C-ordered float32 matrix."""
        path = Path(path)
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
        if fortran or dtype != _FLOAT32 or len(shape) != 2:
            raise ValueError(f"{path} is not a C-ordered float32 matrix")
        if path.stat().st_size != offset + shape[0] * shape[1] * _FLOAT32.itemsize:
            raise ValueError(f"{path} is truncated or padded")
        matrix = cls.__new__(cls)
        matrix._setup(path, None, offset, shape, policy)
        return matrix

    def _setup(self, path: Path | None, scratch: IO[bytes] | None, offset: int,
               shape: tuple[int, int], policy: Policy) -> None:
        if policy not in ("map", "stream"):
            raise ValueError(f"policy is {policy!r}; expected 'map' or 'stream'")
        self.path = path                  # None for a scratch matrix: its file has no name
        self.policy = policy
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self._scratch = scratch
        self._offset = offset             # where row 0 starts: after the .npy header
        self._row_bytes = self.shape[1] * _FLOAT32.itemsize
        self._map: mmap.mmap | None = None

    def __len__(self) -> int:
        return self.shape[0]

    @contextlib.contextmanager
    def _opened(self, writing: bool) -> Iterator[IO[bytes]]:
        """The file: a scratch matrix's own, or the stored one opened for this one operation
        (so a stored matrix that is only read never needs write access)."""
        if self._scratch is not None:
            yield self._scratch
            return
        with open(self.path, "r+b" if writing else "rb") as fh:
            yield fh
            if writing:
                fh.flush()
                os.fsync(fh.fileno())

    def write_rows(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        """Row `positions[i]` ← `vectors[i]`; under ``map``, before the matrix is first read."""
        if self._map is not None:
            raise RuntimeError("a DiskMatrix is written before it is read")
        vectors = np.ascontiguousarray(vectors, dtype=_FLOAT32)
        positions = np.asarray(positions, dtype=np.int64)
        if vectors.shape != (len(positions), self.shape[1]):
            raise ValueError(f"expected {len(positions)} rows of {self.shape[1]}, got {vectors.shape}")
        if len(positions) and (positions.min() < 0 or positions.max() >= self.shape[0]):
            raise IndexError(f"rows {positions.min()}..{positions.max()} outside 0..{self.shape[0] - 1}")
        # Runs of consecutive positions go out in one write (a whole shard, when rows arrive in order).
        order = np.argsort(positions, kind="stable")
        positions, data = positions[order], memoryview(vectors[order]).cast("B")
        starts = np.flatnonzero(np.diff(positions, prepend=-2) != 1)
        stops = np.append(starts[1:], len(positions))
        width, pwrite = self._row_bytes, os.pwrite
        with self._opened(writing=True) as fh:
            fd = fh.fileno()
            # One system call per run (per row, as rows usually arrive): the loop is kept lean.
            for low, high, offset in zip((starts * width).tolist(), (stops * width).tolist(),
                                         (positions[starts] * width + self._offset).tolist()):
                written = pwrite(fd, data[low:high], offset)
                while written < high - low:        # a write may take fewer bytes than it was given
                    low, offset = low + written, offset + written
                    written = pwrite(fd, data[low:high], offset)

    @property
    def array(self) -> np.ndarray:
        """The matrix, read-only, through the memory map (``map`` only)."""
        if self.policy != "map":
            raise RuntimeError("a DiskMatrix with policy 'stream' is read in blocks()")
        if self._map is None:
            if self.shape[0] == 0:
                empty = np.zeros(self.shape, dtype=_FLOAT32)
                empty.flags.writeable = False
                return empty
            with self._opened(writing=False) as fh:
                self._map = mmap.mmap(fh.fileno(), self._offset + self.shape[0] * self._row_bytes,
                                      access=mmap.ACCESS_READ)
        return np.frombuffer(self._map, dtype=_FLOAT32, offset=self._offset).reshape(self.shape)

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) over the whole matrix, `size` rows at a time: views of the map
        under ``map``, arrays read for the occasion under ``stream``."""
        if self.policy == "map":
            array = self.array
            for start in range(0, self.shape[0], size):
                yield start, array[start:start + size]
            return
        with self._opened(writing=False) as fh:
            fh.seek(self._offset)
            for start in range(0, self.shape[0], size):
                n = min(size, self.shape[0] - start)
                rows = np.fromfile(fh, dtype=_FLOAT32, count=n * self.shape[1])
                yield start, rows.reshape(n, self.shape[1])

    def release(self) -> None:
        """Hand the pages read so far back to the system (they are re-read on the next access)."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Let the file go: a scratch matrix's is deleted, a stored one's stays."""
        # Arrays made from the map may outlive the matrix; the map then stays open until they go.
        self._map = None
        if self._scratch is not None:
            self._scratch.close()
