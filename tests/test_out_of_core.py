"""flag and cluster read attributions out of core: memory bounded by DuckDB's limit, not the
data, and the same bytes whatever that limit.

The run is built by bench/out_of_core.py's own builder at 1/200 of the benchmark's size
(50,000 pairs, 5,000 eval items x 100 citations = 500,000 rows), with 10 planted defects each
taught by 3 differently worded pairs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refine import flag, read_flags
from refine.core.rundir import RunDir
from refine.formats.writers import Positions

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(BENCH))
    try:
        from out_of_core import build
    finally:
        sys.path.remove(str(BENCH))
    run, _ = build(tmp_path_factory.mktemp("ooc"), 50_000, 5_000, 100, 10, seed=11)
    return run


@pytest.mark.parametrize("evidence,flagged_by", [(True, "claim test"), (False, "defect group")])
def test_flags_are_the_same_bytes_when_duckdb_must_spill_to_disk(big_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path, evidence: bool,
                                                                  flagged_by: str) -> None:
    """Both rules: text evidence (the builder writes the evidence collect would gather) and
    the citation rule it replaced."""
    from refine import FlagSettings

    settings = FlagSettings(evidence=evidence)
    # Scratch files go to a folder of this test's, to see that none is left behind.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    flag(big_run, settings)
    roomy = (big_run / "flags.csv").read_bytes(), (big_run / "flags.json").read_bytes()
    monkeypatch.setenv("REFINE_DUCKDB_MEMORY", "60MB")   # DuckDB writes ~66 MB of temporary files here
    result = flag(big_run, settings)
    assert ((big_run / "flags.csv").read_bytes(), (big_run / "flags.json").read_bytes()) == roomy
    assert list(tmp_path.iterdir()) == []
    # the planted defects' pairs (less those a good answer on their topic also cites), nothing else
    planted = set(pd.read_parquet(big_run / "pairs.parquet", columns=["pair_id"])["pair_id"][:30])
    flagged = read_flags(big_run, ["flagged_by"]).query("flagged")
    assert set(flagged["pair_id"]) <= planted and result.flagged == len(flagged) >= 25
    assert set(flagged["flagged_by"]) == {flagged_by}


@pytest.mark.parametrize("limit,message", [("lots", "cannot start DuckDB"), ("8MB", "ran out of memory")])
def test_a_memory_limit_that_is_no_size_or_too_small_is_a_clear_error(big_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     limit: str, message: str) -> None:
    from refine import ConfigError

    before = (big_run / "flags.csv").read_bytes() if (big_run / "flags.csv").exists() else None
    monkeypatch.setenv("REFINE_DUCKDB_MEMORY", limit)
    with pytest.raises(ConfigError, match=f"{message}.*REFINE_DUCKDB_MEMORY"):
        flag(big_run)
    # nothing half-written: the flags of the last good run are still there, whole
    assert ((big_run / "flags.csv").read_bytes() if before is not None else None) == before


def test_the_flagged_rows_alone_are_read_up_to_the_first_unflagged_one(big_run: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import refine.core.rundir

    flag(big_run)
    everything = read_flags(big_run)
    monkeypatch.setattr(refine.core.rundir, "_FLAG_CHUNK", 7)       # flagged rows span several chunks
    alone = RunDir(big_run).flags(flagged_only=True)
    pd.testing.assert_frame_equal(alone, everything[everything["flagged"]].reset_index(drop=True),
                                  check_dtype=False)
    assert len(alone) >= 25 and len(everything) > 40_000


def test_line_positions_are_a_set_of_non_negative_ints() -> None:
    positions = Positions([3, 1, 10_000_000])
    positions.update(np.array([4]))
    assert 1 in positions and 4 in positions and 10_000_000 in positions
    assert 2 not in positions and -1 not in positions and 10_000_001 not in positions and "1" not in positions
    assert len(positions) == 4
    with pytest.raises(ValueError):
        positions.update([-2])


def test_a_missing_run_file_is_named_not_blamed_on_the_scratch_space(tmp_path: Path) -> None:
    from refine import RunDirError
    from refine.core._duckdb import connect, quoted

    gone = tmp_path / "run" / "items.parquet"
    with pytest.raises(RunDirError, match=f"{gone} is missing"):
        with connect() as con:
            con.sql(f"SELECT * FROM read_parquet({quoted(str(gone))})").fetchall()
