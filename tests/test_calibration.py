"""Levels from scores that arrive a block of pairs at a time (shards, workers, streamed scoring):
the top k are exact whatever the order, and the per-query statistics are exact up to
``stats_max`` pairs and a fixed sample past it."""

from __future__ import annotations

import numpy as np
import pytest

from refine.attribution.calibration import LevelCalibration, assign_levels, levels_of_blocks, stats_sample

CALIBRATION = LevelCalibration(min_score=-np.inf)


def _blocks(scores: np.ndarray, widths: list[int], order: list[int]) -> list[tuple[int, np.ndarray]]:
    starts = np.cumsum([0, *widths[:-1]])
    return [(int(starts[i]), scores[:, starts[i]:starts[i] + widths[i]]) for i in order]


def _world(n_queries: int, n_pairs: int, seed: int = 3) -> tuple[np.ndarray, dict[int, float]]:
    """Gaussian background scores and, per query, pairs planted at known robust z-scores."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.1, 0.02, size=(n_queries, n_pairs))
    planted = {11: 4.2, n_pairs // 2: 5.7, n_pairs - 3: 8.0}    # low, medium, high
    for pair, z in planted.items():
        scores[:, pair] = 0.1 + z * 0.02
    return scores, planted


def _reference(scores: np.ndarray, top_k: int, c: LevelCalibration) -> list[list[tuple[int, float, str]]]:
    """The definition, computed the plain way: a full stable sort and the whole row's statistics."""
    out = []
    for row in scores:
        median = np.median(row)
        mad = max(np.median(np.abs(row - median)) * 1.4826, 1e-12)
        kept = []
        for j in np.argsort(-row, kind="stable")[:top_k]:
            z = (row[j] - median) / mad
            if z >= c.z_low and row[j] >= c.min_score:
                kept.append((int(j), float(row[j]), "high" if z >= c.z_high else "medium" if z >= c.z_medium
                             else "low"))
        out.append(kept)
    return out


def test_blocks_in_any_order_and_width_give_exactly_what_the_whole_matrix_gives() -> None:
    scores, _ = _world(6, 1000)
    whole = assign_levels(scores, top_k=7, calibration=CALIBRATION)
    assert whole == _reference(scores, 7, CALIBRATION)
    widths = [1, 300, 99, 5, 595]
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1]):
        assert levels_of_blocks(_blocks(scores, widths, order), 6, 1000, 7, CALIBRATION) == whole
    assert [j for j, _, _ in whole[0]] == [997, 500, 11]
    assert [level for _, _, level in whole[0]] == ["high", "medium", "low"]


def test_equal_scores_rank_by_pair_index_wherever_the_block_boundaries_fall() -> None:
    scores = np.zeros((1, 12))
    scores[0, [2, 5, 9, 10]] = 1.0
    for widths in ([12], [3, 3, 3, 3], [6, 6]):
        for order in (list(range(len(widths))), list(reversed(range(len(widths))))):
            top = levels_of_blocks(_blocks(scores, widths, order), 1, 12, 3, CALIBRATION)
            assert [j for j, _, _ in top[0]] == [2, 5, 9] == [j for j, _, _ in _reference(scores, 3, CALIBRATION)[0]]


def test_past_stats_max_the_statistics_come_from_one_fixed_sample_and_levels_hold() -> None:
    scores, planted = _world(4, 20_000)
    exact = assign_levels(scores, top_k=5, calibration=CALIBRATION)
    widths = [7_000, 6_000, 7_000]
    sampled = levels_of_blocks(_blocks(scores, widths, [2, 0, 1]), 4, 20_000, 5, CALIBRATION,
                               stats_max=2_000)
    # The planted pairs keep their scores and levels (a robust z moves by about 0.02 here; the
    # planted ones are far from a threshold), and the top k never comes from the sample.
    for sampled_row, exact_row in zip(sampled, exact):
        assert sampled_row[:3] == exact_row[:3]
        assert [(j, level) for j, _, level in sampled_row[:3]] == list(zip(planted, ["low", "medium", "high"]))[::-1]
    # The sample is a function of the number of pairs only: every run, shard and query uses it.
    assert np.array_equal(stats_sample(20_000, 2_000), stats_sample(20_000, 2_000))
    assert stats_sample(2_000, 2_000) is None


def test_the_sample_moves_a_robust_z_by_about_what_the_docstring_says() -> None:
    rng = np.random.default_rng(5)
    row = rng.normal(0.0, 1.0, size=400_000)
    sample = row[stats_sample(row.size)]
    exact_median, sample_median = np.median(row), np.median(sample)
    exact_mad = np.median(np.abs(row - exact_median)) * 1.4826
    sample_mad = np.median(np.abs(sample - sample_median)) * 1.4826
    z_exact, z_sample = (5.0 - exact_median) / exact_mad, (5.0 - sample_median) / sample_mad
    assert abs(z_sample - z_exact) < 0.05      # documented: about 0.02 at the default 200,000


def test_blocks_that_miss_pairs_are_an_error() -> None:
    scores, _ = _world(2, 100)
    with pytest.raises(ValueError, match="cover 60 pairs, not 100"):
        levels_of_blocks(_blocks(scores, [60, 40], [0]), 2, 100, 5, CALIBRATION)
