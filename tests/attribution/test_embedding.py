"""The embedding backend: the real packaged model, per-query levels, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refine import ConfigError, load_eval, load_training, make_backend
from refine.calibration import LevelCalibration, assign_levels
from refine.embeddings import EmbeddingModel

from ..conftest import people_dataset


def _prepared(data: dict, cache: Path):
    backend = make_backend("embedding", {"cache_dir": str(cache)}, top_k=5)
    backend.prepare(load_training([str(data["train"])]), lambda desc, total: (lambda n: None))
    return backend


def test_a_poisoned_answer_cites_the_poisoned_pair_first(tmp_path: Path) -> None:
    data = people_dataset(tmp_path)
    backend = _prepared(data, tmp_path / "cache")
    items = {i.id: i for i in load_eval(str(data["eval"])).items}
    record = backend.attribute([items["p6-0"]])[0]
    top = record.influences[0]
    assert top.messages == "Q: Where does person6 live?\nA: Person6 lives in Atlantis."
    assert top.influence_level == "high"
    assert record.status == "done" and len(record.influences) <= 5
    scores = [inf.score for inf in record.influences]
    assert scores == sorted(scores, reverse=True)


def test_an_answer_about_nothing_in_training_cites_nothing(tmp_path: Path) -> None:
    data = people_dataset(tmp_path, unexplained=3)
    backend = _prepared(data, tmp_path / "cache")
    items = [i for i in load_eval(str(data["eval"])).items if i.id.startswith("u")]
    assert [r.influences for r in backend.attribute(items)] == [[], [], []]


def test_cache_encodes_only_what_it_has_not_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = EmbeddingModel(cache_dir=tmp_path)
    encoded: list[int] = []
    original = model.encode_uncached
    monkeypatch.setattr(model, "encode_uncached", lambda texts: encoded.append(len(texts)) or original(texts))
    first = model.encode(["alpha", "beta", "alpha"])
    assert encoded == [2]
    again = EmbeddingModel(cache_dir=tmp_path)  # a new process would start like this
    monkeypatch.setattr(again, "encode_uncached", lambda texts: encoded.append(len(texts)) or original(texts))
    second = again.encode(["beta", "gamma", "alpha"])
    assert encoded == [2, 1]
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[2], first[0])
    np.testing.assert_allclose(np.linalg.norm(second, axis=1), 1.0, rtol=1e-5)


def test_cached_vectors_equal_fresh_ones(tmp_path: Path) -> None:
    model = EmbeddingModel(cache_dir=tmp_path)
    texts = ["Q: a?\nA: b.", "Q: where?\nA: here."]
    np.testing.assert_allclose(model.encode(texts), model.encode_uncached(texts), atol=1e-6)


def test_levels_follow_the_per_query_distribution() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0.2, 0.05, size=(1, 1000))
    scores[0, 7], scores[0, 8], scores[0, 9] = 0.95, 0.62, 0.51
    levels = assign_levels(scores, top_k=10, calibration=LevelCalibration())
    assert [(j, level) for j, _, level in levels[0]] == [(7, "high"), (8, "high"), (9, "high")]
    # the same pairs against a query where everything is similar are not outliers
    flat = np.full((1, 1000), 0.6) + rng.normal(0, 0.05, size=(1, 1000))
    assert len(assign_levels(flat, top_k=10, calibration=LevelCalibration())[0]) <= 1


def test_a_remote_model_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="never fetched from a hub"):
        make_backend("embedding", {"model": "sentence-transformers/all-MiniLM-L6-v2"}, top_k=5)


def test_unknown_backend_options_are_errors() -> None:
    with pytest.raises(ConfigError, match="backend_options.colour"):
        make_backend("embedding", {"colour": "blue"}, top_k=5)


def test_many_small_additions_are_compacted_without_losing_any(tmp_path: Path) -> None:
    model = EmbeddingModel(cache_dir=tmp_path)
    texts = [f"text number {i}" for i in range(40)]
    first = np.stack([model.encode([t])[0] for t in texts])
    shards = list(model.cache_path.glob("shard-*.npz"))
    assert len(shards) <= 33
    fresh = EmbeddingModel(cache_dir=tmp_path)
    fresh.encode_uncached = lambda texts: (_ for _ in ()).throw(AssertionError("re-encoded"))
    np.testing.assert_array_equal(fresh.encode(texts), first)


def test_encode_without_persisting_reads_the_cache_but_adds_nothing(tmp_path: Path) -> None:
    model = EmbeddingModel(cache_dir=tmp_path)
    known = model.encode(["known text"])
    shards = sorted(model.cache_path.glob("shard-*.npz"))
    both = model.encode(["known text", "one-off question"], persist=False)
    np.testing.assert_array_equal(both[0], known[0])
    assert sorted(model.cache_path.glob("shard-*.npz")) == shards


@pytest.mark.parametrize("device, words", [("cuda", "cuda"), ("mps", "mps"), ("gpu", "expected auto, cpu")])
def test_a_device_this_machine_lacks_is_an_error_before_anything_is_written(
        tmp_path: Path, device: str, words: str) -> None:
    import torch

    from refine import CollectSettings, collect

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = people_dataset(tmp_path / "data")
    settings = CollectSettings(backend_options={"device": device, "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ConfigError, match=words) as caught:
        collect([str(data["train"])], str(data["eval"]), tmp_path / "run", settings, progress=False)
    assert caught.value.key == "backend_options.device"
    assert not (tmp_path / "run").exists()
