"""The vectorised MinHash is datasketch's MinHash, and the LSH search finds what it should."""

from __future__ import annotations

import numpy as np
from datasketch import MinHash

from refine.checks import _minhash


def test_signatures_equal_datasketch_minhash_of_the_same_shingles() -> None:
    texts = [["the", "cat", "sat", "on", "the", "mat"], ["a"], [], ["x", "y", "z", "w"] * 30]
    shingles = _minhash.shingle(texts, 3)
    sigs = _minhash.signatures(shingles, 64, 1)
    for i in range(len(texts)):
        reference = MinHash(num_perm=64, seed=1, scheme="affine32", hashfunc=int)
        reference.update_batch(shingles.hashes[shingles.offsets[i]:shingles.offsets[i + 1]].tolist())
        assert np.array_equal(sigs[i], reference.hashvalues), i


def test_a_short_text_is_one_shingle_and_an_empty_text_has_none() -> None:
    shingles = _minhash.shingle([["one", "two"], [], ["a", "b", "c", "d"]], 3)
    assert np.diff(shingles.offsets).tolist() == [1, 0, 2]
    assert _minhash.jaccard(shingles.set_of(1), shingles.set_of(1)) == 0.0


def test_shingle_hashes_do_not_depend_on_the_other_texts() -> None:
    alone = _minhash.shingle([["where", "is", "the", "station"]], 2)
    among = _minhash.shingle([["zebra", "is", "here"], ["where", "is", "the", "station"]], 2)
    assert alone.set_of(0) == among.set_of(1)


def test_similar_pairs_finds_planted_pairs_and_only_them() -> None:
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(5000)]
    texts = [list(rng.choice(vocabulary, 40)) for _ in range(2000)]
    planted = {(i, i + 1000) for i in range(0, 1000, 50)}
    for i, j in planted:
        texts[j] = texts[i][:39] + ["changed"]  # 37 of 38 shingles shared
    shingles = _minhash.shingle(texts, 3)
    found, info = _minhash.similar_pairs(_minhash.signatures(shingles, 64, 1), shingles, 0.8, 1,
                                         max_bucket=200)
    assert {(i, j) for i, j, _ in found} == planted
    assert all(similarity >= 0.8 for _, _, similarity in found)
    assert info["lsh"]["recall_at_threshold"] > 0.9
