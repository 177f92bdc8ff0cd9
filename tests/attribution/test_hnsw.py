"""search: hnsw — the embedding backend's approximate index: what it finds, what it costs to
build twice, what a killed build keeps, and what it tells the user about its recall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from refine import CollectSettings, ConfigError, collect, load_eval, make_backend
from refine import pair_index
from refine.cli import main
from refine.attribution.pair_index import PairIndex

from ..conftest import people_dataset

faiss = pytest.importorskip("faiss")


def _collect(data: dict, out: Path, **options) -> object:
    settings = CollectSettings(top_k=5, backend_options=options)
    return collect([str(data["train"])], str(data["eval"]), out, settings, progress=False)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return people_dataset(tmp_path_factory.mktemp("hnsw") / "data", unexplained=2)


def test_hnsw_cites_what_exact_search_cites_and_says_its_recall(people: dict, tmp_path: Path) -> None:
    exact = _collect(people, tmp_path / "exact")
    found = _collect(people, tmp_path / "hnsw", search="hnsw")
    a = pd.read_parquet(tmp_path / "exact" / "attributions.parquet")
    b = pd.read_parquet(tmp_path / "hnsw" / "attributions.parquet")
    key = ["eval_id", "rank", "pair_id", "influence_level"]
    assert len(a) > 40 and a[key].equals(b[key])
    # Rescored exactly, in float32 summed in another order than a whole block: equal to the
    # 6 decimals the scores are kept at, up to one unit in the last of them.
    assert np.abs(a.score.to_numpy() - b.score.to_numpy()).max() <= 1.01e-6
    assert exact.notes == []
    # Exact search is recorded as before hnsw existed (so older runs resume); hnsw says so.
    options = lambda run: json.loads((tmp_path / run / "settings.json").read_text())["collect"]["options"]  # noqa: E731
    assert "search" not in options("exact") and "ef_search" not in options("exact")
    assert (options("hnsw")["search"], options("hnsw")["ef_search"]) == ("hnsw", 128)
    assert found.notes == ["hnsw search: recall@5 1.0000 against exact search on the first 45 eval "
                           "items (ef_search=128)"]


def test_the_index_is_built_once_per_pairs_and_model(people: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _collect(people, tmp_path / "one", search="hnsw", cache_dir=str(cache))
    (index,) = cache.glob("embeddings/*/hnsw/*.faiss")
    before = index.stat()
    _collect(people, tmp_path / "two", search="hnsw", cache_dir=str(cache))
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # Another answer weight scores with other vectors: another index beside the first.
    _collect(people, tmp_path / "three", search="hnsw", cache_dir=str(cache), answer_weight=0.3)
    assert len(list(cache.glob("embeddings/*/hnsw/*.faiss"))) == 2


def _clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, n)] + 0.4 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Killed(Exception):
    pass


def test_a_killed_build_resumes_from_its_checkpoint_to_the_same_bytes(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pair_index, "_BUILD_CHUNK", 500)
    monkeypatch.setattr(pair_index, "_CHECKPOINT_SECONDS", 0.0)
    x = _clustered(4_000)
    whole = PairIndex.open_or_build(tmp_path / "whole", "k", len(x), lambda a, b: x[a:b])

    asked: list[int] = []

    def dying(a: int, b: int) -> np.ndarray:
        asked.append(a)
        if a == 3_000:
            raise Killed
        return x[a:b]

    with pytest.raises(Killed):
        PairIndex.open_or_build(tmp_path / "resumed", "k", len(x), dying)
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["k.partial.faiss", "k.partial.json"]
    asked.clear()

    def alive(a: int, b: int) -> np.ndarray:
        asked.append(a)
        return x[a:b]

    resumed = PairIndex.open_or_build(tmp_path / "resumed", "k", len(x), alive)
    assert asked == [3_000, 3_500]          # the finished chunks are not added again
    assert resumed.path.read_bytes() == whole.path.read_bytes()
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["k.faiss"]


def test_a_checkpoint_that_does_not_read_back_is_built_again(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pair_index, "_BUILD_CHUNK", 500)
    x = _clustered(1_500, seed=3)
    (tmp_path / "k.partial.faiss").write_bytes(b"torn")
    (tmp_path / "k.partial.json").write_text('{"chunks": 2, "vectors": 1000}')
    rebuilt = PairIndex.open_or_build(tmp_path, "k", len(x), lambda a, b: x[a:b])
    clean = PairIndex.open_or_build(tmp_path / "clean", "k", len(x), lambda a, b: x[a:b])
    assert rebuilt.size == 1_500 and rebuilt.path.read_bytes() == clean.path.read_bytes()


def test_the_graph_is_the_same_bytes_whatever_the_thread_count(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pair_index, "_BUILD_CHUNK", 1_000)
    x = _clustered(3_000, seed=1)
    built = []
    before = faiss.omp_get_max_threads()
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        try:
            built.append(PairIndex.open_or_build(tmp_path / str(threads), "k", len(x), lambda a, b: x[a:b]))
        finally:
            faiss.omp_set_num_threads(before)
    assert built[0].path.read_bytes() == built[1].path.read_bytes()


def test_its_recall_on_hard_data_is_high_and_grows_with_the_search_breadth(tmp_path: Path) -> None:
    # Uniform random directions in 64 dimensions: no structure for the graph to use, the worst case.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8_000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.normal(size=(200, 64)).astype(np.float32)
    index = PairIndex.open_or_build(tmp_path, "k", len(x), lambda a, b: x[a:b])
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]

    def recall(breadth: int) -> float:
        found = index.search(q, 10, breadth)
        return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])

    # Measured: 0.56 at 10 candidates, 0.85 at 32, 0.998 at 128 (the default), 0.9995 at 256.
    narrow, default = recall(10), recall(128)
    assert narrow < 0.7 and default >= 0.95


def test_the_recall_it_reports_is_the_share_of_exact_top_k_it_found(people: dict, tmp_path: Path) -> None:
    backend = make_backend("embedding", {"search": "hnsw", "cache_dir": str(tmp_path / "cache")}, top_k=5)
    from refine import load_training

    backend.prepare(load_training([str(people["train"])]), lambda desc, total: (lambda n: None))
    items = load_eval(str(people["eval"])).items[:8]

    class HalfBlind:
        """Finds each item's exact top 5 but swaps the 2nd and 4th for the worst pairs."""

        def search(self, queries, count, breadth):
            scores = backend.scores(items)
            order = np.argsort(-scores, axis=1, kind="stable")
            found = order[:, :5].copy()
            found[:, [1, 3]] = order[:, -2:]
            return found

    backend._index = HalfBlind()
    backend.notes.clear()
    backend._probe_recall(items)
    assert backend.notes == ["hnsw search: recall@5 0.6000 against exact search on the first 8 eval "
                             "items (ef_search=128)"]


@pytest.mark.parametrize("options, key", [({"search": "faiss"}, "backend_options.search"),
                                          ({"search": "hnsw", "ef_search": 0}, "backend_options.ef_search"),
                                          ({"search": "hnsw", "ef_search": 2**31}, "backend_options.ef_search"),
                                          ({"search": "hnsw", "ef_search": 12.5}, "backend_options.ef_search")])
def test_bad_search_options_are_config_errors(options: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_backend("embedding", options, top_k=5)
    assert err.value.key == key


def test_without_faiss_the_cli_says_which_extra_and_writes_nothing(people: dict, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["collect", "--train", str(people["train"]), "--eval", str(people["eval"]),
                                       "--out", str(out), "--option", "search=hnsw", "-q"])
    assert result.exit_code == 2
    assert "pip install 'refine[ann]'" in result.output and "backend_options.search" in result.output
    assert not out.exists()


def test_a_slot_the_index_left_empty_is_never_cited_however_low_the_thresholds() -> None:
    from refine.attribution.calibration import LevelCalibration, levels_of_top

    anything = LevelCalibration(-np.inf, -np.inf, -np.inf, -np.inf)
    ranked = levels_of_top(np.array([[3, 0]]), np.array([[0.9, -np.inf]]), np.array([[0.1, 0.2, 0.9]]), anything)
    assert ranked == [[(3, 0.9, "high")]]
