"""Defect groups: the pairs that teach the same claim about the same thing, tested together.

A defect is often taught by several pairs worded differently ("The Aurora Lite weighs 450
grams." / "Carrying an Aurora Lite means carrying 450 grams."). Each bad answer repeats one
wording and cites the others less, so every pair alone is cited by 1–4 bad answers — too few
for any pair-level test — while the group is cited by many. And a bad answer about one device
also cites the correct pairs of its look-alikes ("The Aurora Max weighs 320 grams."): the
model confused them, but those pairs are right, and removing them would break the good answers
about the Aurora Max.

So, per cited pair:

* **Anchors** of a text: its tokens that name something — every token with a digit ("512",
  "X2", "person5"), and every word the training data capitalises in mid-sentence and almost
  never writes in lower case (proper nouns: "Aurora", "Lite", "SSO"; not "Billing", which is
  also written "billing"); lower-cased.
* A citation is **off topic** when the eval question and the pair's question name different
  things: each has an anchor the other lacks ("Aurora Plus" against "Aurora Max", "person5"
  against "person6"). Anything else is on topic — a paraphrase that names less, or more, is
  still about the same thing. Off-topic citations are kept in the flags table but do not
  count as evidence against the pair.
* Pairs are in one **defect group** when their questions name the same things and their
  answers make the same claim: the same question anchors and the same answer anchors (the
  entity and every number), both non-empty. Every other cited pair is a group of its own.
* Each group is tested like a pair (:mod:`refine.flagging`): of the N finished items, B bad,
  the group is cited on topic by m distinct items, m_bad of them bad; p = P(X ≥ m_bad),
  X ~ Hypergeometric(N, B, m). Benjamini–Hochberg runs over the *testable* groups (Tarone's
  filter on m alone, as for pairs), so **the false-discovery rate is controlled over flagged
  groups** (at most alpha of the flagged groups, in expectation, are not over-cited).
* A flagged group's **members** are flagged when bad answers cite them on topic (n ≥ 1) and
  good answers do not (at most ``member_max_good`` on-topic good citations); a group of one
  pair is that pair, flagged by its test. This is a rule applied within flagged groups, not a
  second test: the error rate is stated for groups; members are the pairs of a flagged group
  that only bad answers of their topic cite.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["anchors_of", "defect_statistics", "proper_nouns"]

_TOKEN = re.compile(r"[A-Za-z0-9][\w\-]*")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+|\n)\s*[\"'(\[]*([A-Za-z][\w\-]*)")
_NOT_NAMES = {"i", "i'm", "i've", "i'll", "i'd", "ok"}
_DIGIT = re.compile(r"\d")


def proper_nouns(texts: Iterable[str], lower_share: float = 0.1) -> set[str]:
    """Lower-cased words the texts capitalise somewhere other than at a sentence's start, and
    almost never write in lower case (at most `lower_share` of their uses): names, not the
    ordinary words a UI label or a heading capitalises ("Billing > Invoices")."""
    # One regex pass over all texts at once (a newline starts a sentence, as a text's start
    # does): every token counted, then the capitalised ones that open a sentence taken off.
    joined = "\n".join(texts)
    at_start = Counter(m.group(2) for m in _SENTENCE_START.finditer(joined))
    capital: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for word, n in Counter(_TOKEN.findall(joined)).items():
        key = word.lower()
        if word[0].islower():
            lower[key] += n
        elif key not in _NOT_NAMES and n > at_start.get(word, 0):
            capital[key] += n - at_start.get(word, 0)
    return {w for w, n in capital.items() if lower.get(w, 0) <= lower_share * (n + lower.get(w, 0))}


def anchors_of(text: str, names: set[str]) -> frozenset[str]:
    """The tokens of `text` that name something: with a digit, or a known proper noun."""
    return frozenset(w for w in set(_TOKEN.findall(text.lower())) if w in names or _DIGIT.search(w))


def _codes_of(column: pd.Series, code: dict[str, int]) -> np.ndarray:
    """`code` of every value of `column`, looked up once per distinct value."""
    positions, uniques = pd.factorize(column)
    return np.array([code[u] for u in uniques], dtype=np.int64)[positions]


def _groups(keys: dict[str, tuple[frozenset, frozenset]]) -> dict[str, int]:
    """Group id per pair: pairs with equal, non-empty (question anchors, answer anchors)."""
    by_key: dict[tuple, int] = {}
    out: dict[str, int] = {}
    for pair_id in sorted(keys):
        question, answer = keys[pair_id]
        key = (question, answer) if question and answer else ("single", pair_id)
        out[pair_id] = by_key.setdefault(key, len(by_key))
    return out


def defect_statistics(items: pd.DataFrame, cited: pd.DataFrame, pairs: pd.DataFrame, *,
                      min_bad: int, alpha: float, member_max_good: int,
                      tail, bh) -> pd.DataFrame:
    """Per cited pair: on-topic counts, its defect group and the group's test, and whether it
    is flagged as a member of a flagged group.

    `items`: eval_id, question, verdict (finished items); `cited`: one row per (eval_id,
    pair_id) with verdict; `pairs`: pair_id, question, answer (one row per pair);
    `tail`/`bh`: the hypergeometric tail and Benjamini–Hochberg of :mod:`refine.flagging`.
    """
    n_items = len(items)
    n_bad_items = int((items["verdict"] == "bad").sum())
    question_of = dict(zip(pairs["pair_id"], pairs["question"]))
    answer_of = dict(zip(pairs["pair_id"], pairs["answer"]))
    cited_ids = sorted(cited["pair_id"].unique())
    names = proper_nouns([question_of[p] for p in cited_ids] + [answer_of[p] for p in cited_ids])
    memo: dict[str, frozenset[str]] = {}     # texts repeat (templated questions, shared answers)

    def anchors(text: str) -> frozenset[str]:
        found = memo.get(text)
        if found is None:
            found = memo[text] = anchors_of(text, names)
        return found

    question_anchors = {p: anchors(question_of[p]) for p in cited_ids}
    answer_anchors = {p: anchors(answer_of[p]) for p in cited_ids}
    item_anchors = dict(zip(items["eval_id"], (anchors(q) for q in items["question"])))

    # Whether the item's and the pair's anchor sets are on topic, once per distinct combination
    # of the two (numbered), not once per citation.
    codes: dict[frozenset, int] = {}
    item_code = {e: codes.setdefault(a, len(codes)) for e, a in item_anchors.items()}
    pair_code = {p: codes.setdefault(a, len(codes)) for p, a in question_anchors.items()}
    by_code = list(codes)
    e_codes, p_codes = (_codes_of(cited[column], code) for column, code in
                        (("eval_id", item_code), ("pair_id", pair_code)))
    combos, inverse = np.unique(e_codes * len(codes) + p_codes, return_inverse=True)
    verdicts = np.fromiter((not (by_code[c % len(codes)] - by_code[c // len(codes)]
                                 and by_code[c // len(codes)] - by_code[c % len(codes)])
                            for c in combos.tolist()), dtype=bool, count=len(combos))
    on_topic = verdicts[inverse.reshape(-1)] if len(combos) else np.zeros(len(cited), dtype=bool)
    topical = cited[on_topic]
    is_bad = topical["verdict"] == "bad"
    per_pair = pd.DataFrame({"pair_id": topical["pair_id"], "bad": is_bad.astype(np.int64),
                             "good": (~is_bad).astype(np.int64)}).groupby("pair_id").sum()
    out = pd.DataFrame(index=pd.Index(cited_ids, name="pair_id"))
    out["topic_n_bad"] = per_pair["bad"].reindex(out.index, fill_value=0).astype(np.int64)
    out["topic_n_good"] = per_pair["good"].reindex(out.index, fill_value=0).astype(np.int64)

    group_of = _groups({p: (question_anchors[p], answer_anchors[p]) for p in cited_ids})
    out["defect_group"] = pd.Series(group_of).reindex(out.index).astype(np.int64)
    by_group = topical.assign(group=topical["pair_id"].map(group_of))
    distinct = by_group.drop_duplicates(["group", "eval_id"])
    counts = distinct.assign(bad=(distinct["verdict"] == "bad").astype(np.int64)).groupby("group").agg(
        m=("eval_id", "size"), m_bad=("bad", "sum"))
    sizes = out.groupby("defect_group").size()
    groups = pd.DataFrame(index=sizes.index)
    groups["size"] = sizes
    groups["m"] = counts["m"].reindex(groups.index, fill_value=0).astype(np.int64)
    groups["m_bad"] = counts["m_bad"].reindex(groups.index, fill_value=0).astype(np.int64)
    m, m_bad = groups["m"].to_numpy(), groups["m_bad"].to_numpy()
    groups["p"] = np.where(m > 0, tail(m_bad, m, n_items, n_bad_items), 1.0)
    testable = (m >= min_bad) & (np.where(m > 0, tail(m, m, n_items, n_bad_items), 1.0) <= alpha)
    q = np.ones(len(groups))
    q[testable] = bh(groups["p"].to_numpy()[testable])
    groups["q"] = q
    groups["testable"] = testable
    groups["flagged"] = (m_bad >= min_bad) & (q <= alpha)
    # Number the groups of several pairs 1.. by their members' order; singletons get 0.
    multi = sorted(groups.index[groups["size"].to_numpy() > 1].tolist())
    label = {g: i + 1 for i, g in enumerate(multi)}

    joined = groups.reindex(out["defect_group"].to_numpy())
    out["group_size"] = joined["size"].to_numpy()
    out["group_n_bad"] = joined["m_bad"].to_numpy()
    out["group_n_good"] = (joined["m"] - joined["m_bad"]).to_numpy()
    out["group_p"] = joined["p"].to_numpy()
    out["group_q"] = joined["q"].to_numpy()
    out["group_testable"] = joined["testable"].to_numpy()
    # A pair alone is its own group: flagged by its test, as a pair-level flag would be.
    alone = joined["size"].to_numpy() == 1
    out["member"] = joined["flagged"].to_numpy() & (out["topic_n_bad"] >= 1) & (
        alone | (out["topic_n_good"] <= member_max_good))
    out["defect_group"] = out["defect_group"].map(label).fillna(0).astype(np.int64)
    return out
