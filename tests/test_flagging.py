"""flag: per-pair statistics, the over-citation test, and what must never be flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import hypergeom

from refine import ConfigError, FlagSettings, RunDirError, collect, flag, read_flags
from refine.stages.flagging import flag_statistics

from .conftest import people_dataset


def _items(verdicts: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"eval_id": list(verdicts), "verdict": list(verdicts.values())})


def _citations(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["eval_id", "pair_id", "influence_level"])


def test_counts_blame_and_the_hypergeometric_p_value() -> None:
    verdicts = {f"b{i}": "bad" for i in range(4)} | {f"g{i}": "good" for i in range(16)}
    cites = [("b0", "x", "high"), ("b1", "x", "medium"), ("b2", "x", "low"), ("g0", "x", "high"),
             ("b0", "x", "low"),  # the same item citing twice counts once, at its highest level
             ("g1", "y", "high"), ("b3", "y", "high")]
    stats, n, b = flag_statistics(_items(verdicts), _citations(cites), FlagSettings())
    assert (n, b) == (20, 4)
    x = stats.loc["x"]
    assert (x.n_bad, x.n_good) == (3, 1)
    assert x.blame == pytest.approx(1.0 + 0.5 + 0.25)
    assert x.p_value == pytest.approx(hypergeom.sf(2, 20, 4, 4))
    assert stats.loc["y"].p_value == pytest.approx(hypergeom.sf(0, 20, 4, 2))


def test_pairs_that_cannot_reach_significance_do_not_dilute_the_others() -> None:
    verdicts = {f"b{i}": "bad" for i in range(6)} | {f"g{i}": "good" for i in range(60)}
    cites = [(f"b{i}", "culprit", "high") for i in range(6)]
    # 50 pairs each cited once by a good answer: untestable, so they cost the culprit nothing
    cites += [(f"g{i}", f"filler{i}", "high") for i in range(50)]
    stats, _, _ = flag_statistics(_items(verdicts), _citations(cites), FlagSettings())
    assert stats.loc["culprit"].flagged and stats.loc["culprit"].q_value == stats.loc["culprit"].p_value
    assert not stats["testable"].drop("culprit").any()


def test_a_pair_cited_by_good_answers_as_often_as_the_base_rate_is_not_flagged() -> None:
    verdicts = {f"b{i}": "bad" for i in range(10)} | {f"g{i}": "good" for i in range(30)}
    cites = [(f"b{i}", "popular", "high") for i in range(4)] + \
            [(f"g{i}", "popular", "high") for i in range(12)]
    stats, _, _ = flag_statistics(_items(verdicts), _citations(cites), FlagSettings())
    assert stats.loc["popular"].n_bad == 4 and not stats.loc["popular"].flagged


def test_one_bad_citation_is_an_anecdote_not_a_flag() -> None:
    verdicts = {"b0": "bad"} | {f"g{i}": "good" for i in range(200)}
    stats, _, _ = flag_statistics(_items(verdicts), _citations([("b0", "x", "high")]),
                                  FlagSettings(min_bad=2, alpha=1.0))
    assert not stats.loc["x"].flagged


def test_flag_on_a_run_finds_exactly_the_poisoned_pairs(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data", unexplained=6)
    run = tmp_path / "run"
    collect([str(data["train"])], str(data["eval"]), run, progress=False)
    result = flag(run)
    assert sorted(result.flagged_pairs["line"]) == data["poisoned_lines"]
    table = read_flags(run)
    assert list(table.columns[:6]) == ["pair_id", "file", "line", "file_id", "question", "answer"]
    assert table["flagged"].tolist()[:3] == [True, True, True] and table["flagged"].sum() == 3
    assert table["blame"].iloc[0] >= table["blame"].iloc[3]
    summary = json.loads((run / "flags.json").read_text())
    assert summary["flagged_pairs"] == 3 and summary["settings"]["min_bad"] == 2
    # repeatable to the byte
    first = (run / "flags.csv").read_bytes()
    flag(run)
    assert (run / "flags.csv").read_bytes() == first


def test_unexplained_bad_answers_alone_flag_nothing(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data", unexplained=6)
    lines = [json.loads(l) for l in Path(data["eval"]).read_text().splitlines()]
    keep = [l for l in lines if not l["id"].startswith("p5") and not l["id"].startswith("p6")
            and not l["id"].startswith("p7")]
    Path(data["eval"]).write_text("".join(json.dumps(l) + "\n" for l in keep))
    run = tmp_path / "run"
    collect([str(data["train"])], str(data["eval"]), run, progress=False)
    assert flag(run).flagged == 0


def test_flag_needs_a_collected_run(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a refine run directory"):
        flag(tmp_path)


@pytest.mark.parametrize("kwargs,key", [({"min_bad": 0}, "flag.min_bad"), ({"alpha": 0}, "flag.alpha"),
                                        ({"level_weights": {"high": 1}}, "flag.level_weights")])
def test_bad_flag_settings_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        FlagSettings(**kwargs)
    assert info.value.key == key


def _exact_tail(k: int, n: int, population: int, bad: int) -> float:
    from fractions import Fraction
    from math import comb

    total = sum(Fraction(comb(bad, j) * comb(population - bad, n - j)) for j in range(max(k, 0), min(n, bad) + 1))
    return float(total / comb(population, n))


def test_the_hypergeometric_tail_is_exact_to_rounding_and_agrees_with_scipy() -> None:
    import numpy as np

    from refine.stages.flagging.significance import upper_tail

    rng = np.random.default_rng(3)
    for population, bad in ((20, 4), (60, 59), (60, 1), (300, 75), (300, 0), (300, 300)):
        n = rng.integers(0, population + 1, 40)
        k = np.concatenate([np.minimum(rng.integers(0, 12, 40), n), n, np.zeros_like(n), n + 1])
        n = np.tile(n, 4)
        got = upper_tail(k, n, population, bad)
        exact = np.array([_exact_tail(int(a), int(b), population, bad) for a, b in zip(k, n)])
        np.testing.assert_allclose(got, exact, rtol=1e-12, atol=1e-300)
    # far tails keep their digits, and large runs agree with scipy's sf
    assert 0 < upper_tail(np.array([300]), np.array([300]), 100_000, 20_000)[0] < 1e-200
    for population, bad in ((100_000, 19_968), (1_000_000, 200_000)):
        n = rng.integers(1, 3_000, 200)
        k = np.minimum(rng.integers(0, 80, 200), n)
        np.testing.assert_allclose(upper_tail(k, n, population, bad), hypergeom.sf(k - 1, population, bad, n),
                                   rtol=1e-8, atol=1e-300)


def test_flags_csv_is_quoted_as_pythons_csv_writer_quotes_and_blame_sums_any_weights(tmp_path: Path) -> None:
    import numpy as np

    data = people_dataset(tmp_path / "data", unexplained=6)
    # Texts with what a CSV writer must get right: "#" (DuckDB's comment sign), commas, quotes,
    # line breaks.
    lines = [json.loads(l) for l in Path(data["train"]).read_text().splitlines()]
    for i, record in enumerate(lines):
        record["messages"][0]["content"] += f' #{i}, a "quick" one\nthanks'
    Path(data["train"]).write_text("".join(json.dumps(l) + "\n" for l in lines))
    run = tmp_path / "run"
    collect([str(data["train"])], str(data["eval"]), run, progress=False)
    weights = {"high": 0.3, "medium": 0.2, "low": 0.1}          # sums that are not exact in binary
    result = flag(run, FlagSettings(level_weights=weights))
    assert sorted(result.flagged_pairs["line"]) == data["poisoned_lines"]

    text = (run / "flags.csv").read_text(encoding="utf-8")
    as_python_writes_it = pd.read_csv(run / "flags.csv", dtype=str, keep_default_na=False).to_csv(
        index=False, lineterminator="\n")
    assert text == as_python_writes_it and "#5, a " in text

    cites = pd.read_parquet(run / "attributions.parquet").dropna(subset=["pair_id"])
    items = pd.read_parquet(run / "items.parquet").query("status == 'done'")
    cites = cites.merge(items[["eval_id", "verdict"]], on="eval_id")
    cites["weight"] = cites["influence_level"].map(weights)
    per_item = cites.groupby(["eval_id", "pair_id"]).agg(weight=("weight", "max"), verdict=("verdict", "first"))
    expected = per_item[per_item["verdict"] == "bad"].groupby("pair_id")["weight"].sum()
    table = read_flags(run).set_index("pair_id")
    got = table.loc[expected.index, "blame"]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-5)    # flags.csv keeps 6 digits
