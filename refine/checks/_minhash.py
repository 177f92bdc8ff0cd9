"""Word-shingle MinHash and LSH for the near-match checks, fast enough for 10⁵–10⁶ texts.

Texts become sets of hashed word k-shingles (``refine.core.text.tokens``: case, punctuation and
articles ignored). Signatures are datasketch's ``affine32`` MinHash of those sets —
``a·fmix32(h) + b mod 2³²`` with datasketch's own permutations — computed for all texts at once
with numpy instead of one ``MinHash.update_batch`` per text (a test holds the two equal).
datasketch's ``MinHashLSH`` picks the bands for the threshold and finds the candidates;
candidates are then confirmed on the exact Jaccard similarity of their shingle sets, so a
reported similarity is measured, not estimated.
"""

from __future__ import annotations

import contextlib
import gc
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..core.text import tokens

if TYPE_CHECKING:
    from .context import CheckContext

try:
    from datasketch import LeanMinHash, MinHash, MinHashLSH
except ImportError:  # pragma: no cover - datasketch is a dependency; this is the hint if lost
    raise ImportError("the near-duplicate and eval-leakage checks need datasketch: "
                      "pip install 'datasketch>=2.0'") from None

__all__ = ["SEPARATOR", "Shingles", "build_lsh", "candidate_pairs", "jaccard", "lsh_info", "query",
           "shingle", "signatures", "similar_pairs", "word_tokens"]

SEPARATOR = "\x1f"  # between question and answer tokens, so no shingle spans the two
_PAD = 0            # the hash of the filler that makes a short text one whole shingle
_SCHEME = "affine32"
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_SHINGLES = 1 << 19
_WEIGHTS = (0.05, 0.95)  # false positive, false negative: see build_lsh


@dataclass(frozen=True)
class Shingles:
    """The shingle hashes of many texts: text i has ``hashes[offsets[i]:offsets[i + 1]]``."""

    hashes: np.ndarray   # uint32
    offsets: np.ndarray  # int64, one more than there are texts

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def set_of(self, i: int) -> set[int]:
        return set(self.hashes[self.offsets[i]:self.offsets[i + 1]].tolist())


def word_tokens(context: "CheckContext", texts: Sequence[str]) -> list[list[str]]:
    """``refine.core.text.tokens`` of each text, each distinct text tokenised once per context."""
    cache: dict[str, list[str]] = context.memo("word_tokens", dict)
    out = []
    for text in texts:
        words = cache.get(text)
        if words is None:
            words = cache[text] = tokens(text)
        out.append(words)
    return out


def jaccard(a: set[int], b: set[int]) -> float:
    """Exact Jaccard similarity; 0 for two empty sets (a text with no words matches nothing)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle(token_lists: Sequence[Sequence[str]], size: int) -> Shingles:
    """Hashed word `size`-shingles of each token list.

    A text shorter than `size` words is one shingle (itself); a text with no words has none.
    Hashes depend on the words alone (CRC-32 of each word, mixed), so they are the same in
    every process and for every data set.
    """
    word_hash: dict[str, int] = {}
    flat: list[int] = []
    counts = np.zeros(len(token_lists), dtype=np.int64)
    for i, words in enumerate(token_lists):
        if not words:
            continue
        for word in words:
            h = word_hash.get(word)
            if h is None:
                h = word_hash[word] = zlib.crc32(word.encode("utf-8")) + 1
            flat.append(h)
        if len(words) < size:
            flat.extend([_PAD] * (size - len(words)))
        counts[i] = max(len(words), size)
    tokens = np.asarray(flat, dtype=np.uint64)
    n_shingles = np.where(counts > 0, counts - size + 1, 0)
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(n_shingles, out=offsets[1:])
    token_starts = np.cumsum(counts) - counts
    # Position of each shingle's first word: its text's first word plus its rank in the text.
    starts = (np.arange(offsets[-1], dtype=np.int64)
              - np.repeat(offsets[:-1], n_shingles) + np.repeat(token_starts, n_shingles))
    h = np.zeros(len(starts), dtype=np.uint64)
    for j in range(size):
        h = h * _MIX + tokens[starts + j]
    return Shingles((_fmix64(h) >> np.uint64(32)).astype(np.uint32), offsets)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a, b) for `num_perm` and `seed`."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures(shingles: Shingles, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, one row (uint32 × num_perm) per text, equal to datasketch's
    ``MinHash(num_perm, seed, scheme="affine32", hashfunc=int).update_batch(hashes)``.
    A text with no shingles gets the empty MinHash (all bits set)."""
    a, b = permutations(num_perm, seed)
    n = len(shingles)
    out = np.full((n, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    offsets = shingles.offsets
    nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
    mixed = _fmix32(shingles.hashes)
    start = 0
    while start < len(nonempty):
        # As many texts as fit in one chunk of shingles (at least one).
        first = offsets[nonempty[start]]
        stop = int(np.searchsorted(offsets[nonempty], first + _CHUNK_SHINGLES, side="right"))
        stop = max(stop, start + 1)
        rows = nonempty[start:stop]
        last = offsets[rows[-1] + 1]
        permuted = mixed[first:last, None] * a[None, :] + b[None, :]
        out[rows] = np.minimum.reduceat(permuted, offsets[rows] - first, axis=0)
        start = stop
    return out


def _lean(row: np.ndarray, seed: int) -> Any:
    return LeanMinHash(seed=seed, hashvalues=row, scheme=_SCHEME)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Indexing creates millions of small objects and no cycles: the collector's passes over
    # them would double the time and free nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_lsh(sigs: np.ndarray, threshold: float, seed: int) -> Any:
    """A datasketch MinHashLSH of the signature rows, keyed by row number.

    Its bands are chosen with false negatives weighing 19 times false positives: every
    candidate is confirmed on its exact Jaccard anyway, so a false candidate costs a
    comparison while a missed one is a finding lost. With 64 permutations at threshold 0.8 that
    is 10 bands of 6 rows, proposing a pair exactly at the threshold with probability 0.95 and
    one at 0.85 with 0.99 (datasketch's even weighting: 5 × 11, 0.36 and 0.60).
    """
    lsh = MinHashLSH(threshold=threshold, num_perm=sigs.shape[1], weights=_WEIGHTS)
    with _gc_paused(), lsh.insertion_session() as session:
        for i, row in enumerate(sigs):
            session.insert(i, _lean(row, seed), check_duplication=False)
    return lsh


def query(lsh: Any, row: np.ndarray, seed: int) -> list[int]:
    """Row numbers in `lsh` that share a band with `row`."""
    return lsh.query(_lean(row, seed))


def lsh_info(lsh: Any, threshold: float) -> dict[str, Any]:
    """The bands of `lsh` and the chance that it proposes a pair exactly at `threshold`."""
    recall = 1 - (1 - threshold ** lsh.r) ** lsh.b
    return {"bands": lsh.b, "rows": lsh.r, "recall_at_threshold": round(recall, 4)}


def candidate_pairs(lsh: Any, *, max_bucket: int) -> np.ndarray:
    """Distinct pairs (i < j) of rows sharing an LSH bucket: an (n, 2) int64 array, sorted.

    A bucket of more than `max_bucket` rows (many lines that are all alike) pairs each row with
    the bucket's first row only, so the work stays linear in the number of rows.
    """
    triangles: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    firsts, seconds = [], []
    for table in lsh.hashtables:
        for key in table.keys():
            members = table.get(key)
            if len(members) < 2:
                continue
            rows = np.fromiter(sorted(members), dtype=np.int64, count=len(members))
            if len(rows) > max_bucket:
                firsts.append(np.full(len(rows) - 1, rows[0]))
                seconds.append(rows[1:])
                continue
            if len(rows) not in triangles:
                triangles[len(rows)] = np.triu_indices(len(rows), k=1)
            upper, lower = triangles[len(rows)]
            firsts.append(rows[upper])
            seconds.append(rows[lower])
    if not firsts:
        return np.zeros((0, 2), dtype=np.int64)
    n = int(max(s.max() for s in seconds)) + 1  # pairs are encoded as i * n + j to dedupe
    codes = np.unique(np.concatenate(firsts) * n + np.concatenate(seconds))
    return np.stack([codes // n, codes % n], axis=1)


def similar_pairs(sigs: np.ndarray, shingles: Shingles, threshold: float, seed: int, *,
                  max_bucket: int) -> tuple[list[tuple[int, int, float]], dict[str, Any]]:
    """Pairs of texts (i < j) whose shingle sets are at least `threshold` Jaccard-similar,
    with their exact similarity, sorted; and figures on the search.

    Candidates come from the LSH index; those whose MinHash estimate lies more than three
    standard errors below the threshold are dropped without the exact comparison (a pair at the
    threshold is lost that way about once in a thousand).
    """
    lsh = build_lsh(sigs, threshold, seed)
    candidates = candidate_pairs(lsh, max_bucket=max_bucket)
    floor = threshold - 3 * np.sqrt(threshold * (1 - threshold) / sigs.shape[1])
    keep = np.zeros(len(candidates), dtype=bool)
    for start in range(0, len(candidates), 1 << 17):
        block = candidates[start:start + (1 << 17)]
        estimate = (sigs[block[:, 0]] == sigs[block[:, 1]]).mean(axis=1)
        keep[start:start + len(block)] = estimate >= floor
    sets: dict[int, set[int]] = {}

    def set_of(k: int) -> set[int]:
        if k not in sets:
            sets[k] = shingles.set_of(k)
        return sets[k]

    found = []
    for i, j in candidates[keep].tolist():
        similarity = jaccard(set_of(i), set_of(j))
        if similarity >= threshold:
            found.append((i, j, similarity))
    info = {"candidates": len(candidates), "compared": int(keep.sum()),
            "lsh": lsh_info(lsh, threshold)}
    return found, info
