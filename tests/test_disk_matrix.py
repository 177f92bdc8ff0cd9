"""A float32 matrix in a file. A scratch one: an unnamed file, written at any rows, read through
a map, gone when closed. A stored one: a named .npy, each write on disk before it returns, read
a block at a time, refused when it is not whole."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from refine.core.disk_matrix import DiskMatrix


def test_rows_written_in_any_order_read_back_in_place(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    expected = rng.normal(size=(1000, 12)).astype(np.float32)
    matrix = DiskMatrix(tmp_path, 1000, 12)
    order = rng.permutation(1000)
    for part in np.array_split(order, 7):          # scattered rows, as shards arrive
        matrix.write_rows(part, expected[part])
    matrix.write_rows(np.arange(100, 200), expected[100:200])   # a run of rows: one write
    np.testing.assert_array_equal(matrix.array, expected)


def test_unwritten_rows_are_zero_and_the_matrix_is_read_only(tmp_path: Path) -> None:
    matrix = DiskMatrix(tmp_path, 5, 3)
    matrix.write_rows(np.array([3]), np.ones((1, 3)))
    array = matrix.array
    assert array.tolist() == [[0.0] * 3] * 3 + [[1.0] * 3] + [[0.0] * 3]
    with pytest.raises(ValueError):
        array[0, 0] = 2.0
    with pytest.raises(RuntimeError, match="written before it is read"):
        matrix.write_rows(np.array([0]), np.ones((1, 3)))
    with pytest.raises(ValueError, match="expected 2 rows of 3"):
        DiskMatrix(tmp_path, 5, 3).write_rows(np.array([0, 1]), np.ones((2, 4)))
    with pytest.raises(IndexError, match="outside 0..4"):
        DiskMatrix(tmp_path, 5, 3).write_rows(np.array([2, 5]), np.ones((2, 3)))
    assert not DiskMatrix(tmp_path, 0, 3).array.flags.writeable


def test_released_pages_are_read_again_with_the_same_values(tmp_path: Path) -> None:
    values = np.arange(4096 * 8, dtype=np.float32).reshape(-1, 64)
    matrix = DiskMatrix(tmp_path, len(values), 64)
    matrix.write_rows(np.arange(len(values)), values)
    before = matrix.array.sum()
    matrix.release()
    assert matrix.array.sum() == before
    np.testing.assert_array_equal(matrix.array, values)


def test_the_file_has_no_name_and_is_gone_when_closed(tmp_path: Path) -> None:
    def held() -> list[str]:
        """What this process still holds open or mapped in tmp_path (Linux names both)."""
        if not Path("/proc/self/maps").is_file():
            return []
        links = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                 if os.path.exists(f"/proc/self/fd/{fd}")]
        maps = Path("/proc/self/maps").read_text().splitlines()
        return [x for x in links + maps if str(tmp_path) in x]

    matrix = DiskMatrix(tmp_path, 100, 4)
    matrix.write_rows(np.arange(100), np.ones((100, 4)))
    view = matrix.array
    assert list(tmp_path.iterdir()) == []            # nothing another run could find
    assert held()                                   # ... but the process has it
    matrix.close()
    assert view.sum() == 400.0                       # arrays already made stay readable
    del view
    gc.collect()
    assert held() == []                              # the file and its map are gone
    assert DiskMatrix(tmp_path, 0, 4).array.shape == (0, 4)


def test_a_stored_matrix_is_an_npy_written_in_any_order_and_read_in_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    expected = rng.normal(size=(10, 3)).astype(np.float32)
    path = tmp_path / "features.npy"
    matrix = DiskMatrix.create(path, 10, 3)
    assert (matrix.path, matrix.policy, len(matrix)) == (path, "stream", 10)
    matrix.write_rows(np.arange(6, 10), expected[6:])           # chunks finish in any order
    assert np.load(path)[6:].tolist() == expected[6:].tolist() and not np.load(path)[:6].any()
    matrix.write_rows(np.arange(0, 6), expected[:6])
    blocks = list(DiskMatrix.open(path).blocks(4))               # read back by another process
    assert [start for start, _ in blocks] == [0, 4, 8] and [len(b) for _, b in blocks] == [4, 4, 2]
    np.testing.assert_array_equal(np.vstack([b for _, b in blocks]), expected)
    np.testing.assert_array_equal(np.load(path), expected)       # numpy's own format
    with pytest.raises(RuntimeError, match="read in blocks"):
        _ = matrix.array                                          # `stream` never maps
    mapped = DiskMatrix.open(path, policy="map")
    np.testing.assert_array_equal(mapped.array, expected)
    np.testing.assert_array_equal(np.vstack([b for _, b in mapped.blocks(3)]), expected)
    mapped.close()
    assert path.is_file()                                         # a stored matrix stays


def test_a_stored_matrix_that_is_not_whole_float32_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npy"
    DiskMatrix.create(path, 4, 2).write_rows(np.arange(4), np.ones((4, 2)))
    with open(path, "r+b") as fh:                                # a torn write
        fh.truncate(path.stat().st_size - 4)
    with pytest.raises(ValueError, match="truncated"):
        DiskMatrix.open(path)
    np.save(path, np.ones((4, 2)))                               # float64
    with pytest.raises(ValueError, match="float32"):
        DiskMatrix.open(path)
    with pytest.raises(ValueError, match="policy"):
        DiskMatrix(tmp_path, 2, 2, policy="mmap")


def test_a_scratch_matrix_can_be_streamed_too(tmp_path: Path) -> None:
    values = np.arange(40, dtype=np.float32).reshape(10, 4)
    matrix = DiskMatrix(tmp_path, 10, 4, policy="stream")
    matrix.write_rows(np.arange(10)[::-1], values[::-1])
    np.testing.assert_array_equal(np.vstack([b for _, b in matrix.blocks(3)]), values)
    matrix.write_rows(np.array([0]), np.zeros((1, 4)))            # nothing mapped: still writable
    assert next(matrix.blocks(1))[1].tolist() == [[0.0] * 4]
    assert list(tmp_path.iterdir()) == []
