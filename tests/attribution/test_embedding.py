"""The embedding backend: the real packaged model, per-query levels, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refine import ConfigError, load_eval, load_training, make_backend
from refine.attribution.calibration import LevelCalibration, assign_levels
from refine.core.embeddings import EmbeddingModel

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
    # and the process that compacted finds every text in the merged shard
    model.encode_uncached = fresh.encode_uncached
    np.testing.assert_array_equal(model.encode(texts), first)


def test_a_training_set_is_encoded_to_a_file_not_into_memory(tmp_path: Path) -> None:
    model = EmbeddingModel(cache_dir=tmp_path)
    texts = [f"pair {i}: the answer is {i * 7}" for i in range(300)] + ["pair 3: the answer is 21"]
    on_disk = model.encode_to_disk(texts)
    vectors = on_disk.array
    assert vectors.shape == (301, 384) and not vectors.flags.owndata and not vectors.flags.writeable
    np.testing.assert_array_equal(vectors, model.encode(texts))
    np.testing.assert_array_equal(vectors[300], vectors[3])
    on_disk.release()   # pages go back to the system; the values stay
    np.testing.assert_array_equal(vectors, model.encode(texts))
    # the file has no name: nothing is left in the cache for another run to find
    assert not any(not p.name.startswith("shard-") for p in model.cache_path.iterdir())
    assert model.encode_to_disk([]).array.shape == (0, 384)


@pytest.mark.parametrize("device, words", [("cuda", "cuda"), ("mps", "mps"), ("gpu", "expected one of auto, cpu")])
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


def test_a_cache_of_many_shards_finds_each_text_where_it_was_added_last(tmp_path: Path) -> None:
    from refine import embeddings

    model = EmbeddingModel(cache_dir=tmp_path)
    texts = [f"sentence {i}" for i in range(50)]
    encoded = model.encode_uncached(texts)
    keys = embeddings._key_array(texts)
    cache = embeddings._ShardCache(model.cache_path)
    for start, stop in [(0, 20), (20, 35), (35, 50)]:
        cache.add(keys[start:stop], encoded[start:stop])
    np.testing.assert_array_equal(_gathered(cache, keys), encoded)
    # Texts 10-19 again, with other vectors (two runs encoding them at once): as with a dict,
    # the copy added last is the one found — in this process, the new shard ...
    repeat = cache.add(keys[10:20], encoded[10:20] + 1)
    expected = encoded.copy()
    expected[10:20] += 1
    np.testing.assert_array_equal(_gathered(cache, keys), expected)
    # ... and in a fresh one, which reads the shards in name order, the later name.
    first = cache._paths[0]
    expected[10:20] = encoded[10:20] + (repeat.name > first.name)
    np.testing.assert_array_equal(_gathered(embeddings._ShardCache(model.cache_path), keys), expected)
    assert list(cache.lookup(embeddings._key_array(["never seen"]))) == [-1]


def _gathered(cache, keys: np.ndarray) -> np.ndarray:
    rows = cache.lookup(keys)
    assert (rows >= 0).all()
    got = np.full((len(keys), 384), np.nan, dtype=np.float32)
    cache.gather(rows, lambda positions, vectors: got.__setitem__(positions, vectors))
    return got


def test_keys_that_share_their_first_half_are_told_apart(tmp_path: Path) -> None:
    from refine import embeddings

    cache = embeddings._ShardCache(tmp_path / "cache")
    added = [[7, 3], [7, 1], [9, 9], [7, 2], [7, 1]]       # four keys start with 7; [7, 1] twice
    for value, key in enumerate(added):
        cache.add(np.array([key], dtype=np.uint64), np.full((1, 4), value, dtype=np.float32))
        cache.lookup(np.array([key], dtype=np.uint64))     # indexed one at a time, among its kin
    queries = np.array([[7, 2], [7, 1], [7, 3], [7, 4], [9, 9], [8, 3]], dtype=np.uint64)
    for reader in (cache, embeddings._ShardCache(tmp_path / "cache")):
        rows = reader.lookup(queries)
        assert [r < 0 for r in rows] == [False, False, False, True, False, True]
        got = np.full(6, -1.0, dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        reader.gather(rows[known], lambda positions, vectors: got.__setitem__(known[positions], vectors[:, 0]))
        assert got[[0, 2, 4]].tolist() == [3.0, 0.0, 2.0]
    assert got[1] in (1.0, 4.0)      # a fresh reader takes the later shard name of the two
    assert cache.lookup(queries[1:2]).tolist() == [4]   # this process: the one added last


def test_a_cache_another_process_compacted_is_read_again(tmp_path: Path) -> None:
    texts = [f"question {i}" for i in range(40)]
    ours = EmbeddingModel(cache_dir=tmp_path)
    first = ours.encode(texts[:5])
    theirs = EmbeddingModel(cache_dir=tmp_path)
    for text in texts:                       # many small shards: theirs merges them, ours too
        theirs.encode([text])
    np.testing.assert_array_equal(ours.encode(texts[:5]), first)
    np.testing.assert_array_equal(ours.encode(texts), theirs.encode(texts))


def test_a_cache_it_cannot_write_in_still_serves_a_training_set(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    model = EmbeddingModel(cache_dir=tmp_path / "cache")
    texts = ["one", "two", "three"]
    expected = model.encode(texts)
    real = tempfile.TemporaryFile

    def read_only_cache(*args, dir=None, **kwargs):   # root may write anywhere: refuse as a read-only disk would
        if dir is not None and Path(dir) == model.cache_path:
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only_cache)
    np.testing.assert_array_equal(model.encode_to_disk(texts).array, expected)


def test_items_read_from_their_own_file_score_as_items_encoded_one_batch_at_a_time(tmp_path: Path) -> None:
    import dataclasses

    data = people_dataset(tmp_path)
    items = load_eval(str(data["eval"])).items
    # The same question and answer twice, under two ids: the answers' rows must still line up.
    items = [*items[:5], dataclasses.replace(items[3], id="twin"), *items[5:]]
    prepared = _prepared(data, tmp_path / "cache")
    prepared.prepare_queries(items, lambda desc, total: (lambda n: None))
    by_batch = _prepared(data, tmp_path / "cache")      # no prepare_queries: encoded per batch
    for start in range(0, len(items), 7):
        batch = items[start:start + 7]
        assert ([r.influences for r in prepared.attribute(batch)]
                == [r.influences for r in by_batch.attribute(batch)])
    assert any(r.influences for r in prepared.attribute(items))
