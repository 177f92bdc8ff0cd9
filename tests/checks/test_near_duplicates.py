from __future__ import annotations

from pathlib import Path

import pytest

from refine.checks import run_checks
from refine.errors import ConfigError

from .data import clean_pairs, write_train

LONG_Q = "How do I reset the office router after a power cut without losing the settings?"
LONG_A = ("Open the admin console, export the configuration, hold the reset button for ten "
          "seconds, then import the configuration again and restart the access points.")


def _run(path: str, **options):
    return run_checks([path], select=["near_duplicates"],
                      options={"near_duplicates": options}).result("near_duplicates")


def test_a_clean_file_passes(tmp_path: Path) -> None:
    assert _run(write_train(tmp_path / "train.jsonl", clean_pairs() + [(LONG_Q, LONG_A)])).passed


def test_a_reworded_copy_is_reported_with_both_lines(tmp_path: Path) -> None:
    pairs = clean_pairs(20) + [(LONG_Q, LONG_A)] + clean_pairs(25)[20:]
    pairs.append((LONG_Q.replace("the settings", "my settings"), LONG_A + " Done!"))
    train = write_train(tmp_path / "train.jsonl", pairs)
    result = _run(train)
    assert not result.passed
    [pair] = result.findings
    assert (pair["file"], pair["line"], pair["other_file"], pair["other_line"]) == (train, 27, train, 21)
    assert 0.8 <= pair["jaccard"] < 1


def test_exact_duplicates_are_left_to_their_own_check(tmp_path: Path) -> None:
    pairs = clean_pairs(10) + [(LONG_Q, LONG_A), (LONG_Q, LONG_A)]
    assert _run(write_train(tmp_path / "train.jsonl", pairs)).passed


def test_a_higher_threshold_lets_the_copy_pass(tmp_path: Path) -> None:
    pairs = clean_pairs(10) + [(LONG_Q, LONG_A), (LONG_Q, LONG_A + " Done!")]
    train = write_train(tmp_path / "train.jsonl", pairs)
    assert not _run(train).passed
    assert _run(train, threshold=0.99).passed


@pytest.mark.parametrize("options, key", [({"threshold": 0}, "threshold"),
                                          ({"threshold": 1.5}, "threshold"),
                                          ({"shingle_size": 0}, "shingle_size"),
                                          ({"num_perm": "64"}, "num_perm")])
def test_bad_options_name_their_key(tmp_path: Path, options: dict, key: str) -> None:
    train = write_train(tmp_path / "train.jsonl", clean_pairs(3))
    with pytest.raises(ConfigError) as info:
        _run(train, **options)
    assert info.value.key == f"checks.near_duplicates.{key}"
