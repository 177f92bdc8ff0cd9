"""A float32 matrix kept in a file, not in memory, for the vectors a driver scores against.

At 10⁷ training pairs the embedding backend's vectors are 30 GB: more than a driver should
hold. A :class:`DiskMatrix` lives in an unnamed temporary file (``O_TMPFILE`` where the system
has it) in a directory on disk that the caller chooses (the embedding cache: ``TMPDIR`` may be
a RAM-backed tmpfs). Rows are written once, at any position, then read through a read-only
memory map. Pages read through a map count in the process's resident memory until the system
needs them back, so a reader that walks the whole matrix calls :meth:`release` as it goes:
the pages stay in the page cache (a re-read is cheap) but leave the process. The file vanishes
when the matrix is closed or the process ends, crash or not: nothing is left for another run
to find.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["DiskMatrix"]

_FLOAT32 = np.dtype("<f4")


class DiskMatrix:
    """`rows` × `columns` float32, zero until written."""

    def __init__(self, directory: str | os.PathLike[str], rows: int, columns: int) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.shape = (rows, columns)
        self._row_bytes = columns * _FLOAT32.itemsize
        self._file = tempfile.TemporaryFile(dir=directory)
        self._file.truncate(rows * self._row_bytes)
        self._map: mmap.mmap | None = None

    def write_rows(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        """Row `positions[i]` ← `vectors[i]`; before the matrix is first read."""
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
        fd, width, pwrite = self._file.fileno(), self._row_bytes, os.pwrite
        # One system call per run (per row, as rows usually arrive): the loop is kept lean.
        for low, high, offset in zip((starts * width).tolist(), (stops * width).tolist(),
                                     (positions[starts] * width).tolist()):
            written = pwrite(fd, data[low:high], offset)
            while written < high - low:        # a write may take fewer bytes than it was given
                low, offset = low + written, offset + written
                written = pwrite(fd, data[low:high], offset)

    @property
    def array(self) -> np.ndarray:
        """The matrix, read-only, through the memory map."""
        if self._map is None:
            if self.shape[0] == 0:
                empty = np.zeros(self.shape, dtype=_FLOAT32)
                empty.flags.writeable = False
                return empty
            self._map = mmap.mmap(self._file.fileno(), self.shape[0] * self._row_bytes, access=mmap.ACCESS_READ)
        return np.frombuffer(self._map, dtype=_FLOAT32).reshape(self.shape)

    def release(self) -> None:
        """Hand the pages read so far back to the system (they are re-read on the next access)."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        # Arrays made from the map may outlive the matrix; the map then stays open until they go.
        self._map = None
        self._file.close()
