"""Text evidence, gathered: for each eval item and training pair, how closely the item's answer
and its reference say what each sentence of the pair's answer says (:mod:`.evidence` says why).

Run by ``collect`` (:func:`gather`): the sentences are encoded there, cached, and only scores
reach ``flag`` (:mod:`.judge`). A *claim* is a sentence of a training pair's answer
(:mod:`refine.stages.flagging.evidence_text`). For an eval item and a pair, each claim gets:

* ``repeat`` — how closely the item's answer says it: the best cosine (shipped embedding model)
  between the claim and a sentence of the answer about the same thing (:func:`_other_things`:
  no name the other lacks on both sides, no parallel wording with a subject word of its own on
  both sides) that negates as the claim does; 0 when the answer states fewer than half of the
  numbers the claim states. ``repeat_no_subject``: the same with both sentences bare of the
  words naming their subject (:func:`~refine.stages.flagging.evidence_text.without_subject`:
  the steps of one app's procedures read alike through the app they name).
  ``repeat_words``: the share of the claim's content words beyond its question that the
  answer has;
* ``support`` / ``support_no_subject`` / ``support_words`` — the same against the item's
  *reference*, sentence by sentence and clause by clause, with every number of the claim:
  whether the reference states it; ``contradict`` — for a named claim, how closely a reference
  sentence about the same thing says it with other numbers of the same unit ("the Cinder Lite
  stores 128 GB" against "has 256 GB"; not "costs 299 dollars" against "weighs 450 grams").

Rows are kept for four kinds of (item, pair): the pairs the item **cites**; for a bad answer,
the pairs whose claims its sentences **look up** among all training answers (exact search, the
``lookup`` best claims per sentence); for a bad answer, the pairs that were asked its very
**question** (cosine ≥ :data:`~refine.stages.flagging.evidence_text.SAME_QUESTION`, the same numbers, about
the same thing) and taught another answer than its reference gives — none of the reference's
numbers, or a refusal where the reference answers — whose every claim is then contradicted
(``contradict`` is the questions' cosine: a model that never learned the refusal and made up a
third answer was still taught nothing right by it); and for every claim a bad answer repeats, every item of
the eval set whose answer repeats it too (the **scan**, so that a good answer repeating a claim
is counted whether or not it cited the pair). Claims that a bad answer repeats are also
**linked** to every training claim that says the same (same numbers, about the same thing,
cosine ≥ :data:`LINK_FLOOR`): the other wordings of one defect; each link says how alike the
two are without their subjects and the share of words beyond their questions they share, so
that flag can tell another wording from another step about the same app. Scores below
:data:`FLOOR` are dropped, so flag's thresholds must be at least that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .evidence_text import (FLOOR, LINK_FLOOR, SAME_QUESTION, claim_words, clauses, name_conflict, names_in,
                            negated, numbers, sentences, tokens, units, without_subject, word_recall)

__all__ = ["EVIDENCE_COLUMNS", "Evidence", "gather"]

_BLOCK = 1024       # query sentences at a time
_COLUMNS = 32768    # sentences compared with them at a time (1024 x 32768 floats: 128 MB)

EVIDENCE_COLUMNS = ["eval_id", "pair_id", "claim", "via", "referenced", "repeat", "repeat_no_subject",
                    "repeat_words", "support", "support_no_subject", "support_words", "contradict", "same_question"]
#: The score columns, in order (each a float32).
_SCORES = EVIDENCE_COLUMNS[5:]


def _schemas() -> dict[str, Any]:
    """The Arrow schemas of the three tables (so that a table of no rows has its types too)."""
    import pyarrow as pa

    scores = [(name, pa.float32()) for name in _SCORES]
    return {
        "rows": pa.schema([("eval_id", pa.string()), ("pair_id", pa.string()), ("claim", pa.int32()),
                           ("via", pa.string()), ("referenced", pa.bool_()), *scores]),
        "claims": pa.schema([("pair_id", pa.string()), ("claim", pa.int32()), ("text", pa.string())]),
        "links": pa.schema([("pair_id", pa.string()), ("claim", pa.int32()), ("other_pair_id", pa.string()),
                            ("other_claim", pa.int32()), ("similarity", pa.float64()),
                            ("similarity_no_subject", pa.float64()), ("shared_words", pa.float64()),
                            ("numbered", pa.bool_())]),
    }


@dataclass(frozen=True)
class Evidence:
    """What collect hands flag: per (item, pair, claim) scores, the claims' texts, their links."""

    rows: pd.DataFrame      # EVIDENCE_COLUMNS
    claims: pd.DataFrame    # pair_id, claim, text
    links: pd.DataFrame     # pair_id, claim, other_pair_id, other_claim, similarity, similarity_no_subject,
    #                         shared_words, numbered

    @staticmethod
    def empty() -> "Evidence":
        schemas = _schemas()
        return Evidence(*(schemas[name].empty_table().to_pandas() for name in ("rows", "claims", "links")))

    def tables(self) -> dict[str, Any]:
        """The three tables as Arrow tables of fixed schemas (what collect writes)."""
        import pyarrow as pa

        schemas = _schemas()
        return {name: pa.Table.from_pandas(getattr(self, name), schema=schemas[name], preserve_index=False)
                for name in ("rows", "claims", "links")}


class _Texts:
    """Sentences of many texts, flattened, with what the gates need per sentence and per text."""

    def __init__(self, texts: Sequence[Any], names: frozenset[str], questions: Sequence[Any],
                 split: Callable[[str | None], list[str]] = sentences, topics: frozenset[str] = frozenset()) -> None:
        texts = [t if isinstance(t, str) else None for t in texts]     # pandas gives NaN for none
        self.owner: list[int] = []
        self.index: list[int] = []
        self.text: list[str] = []
        for i, text in enumerate(texts):
            for j, sentence in enumerate(split(text)):
                self.owner.append(i)
                self.index.append(j)
                self.text.append(sentence)
        self.owner_arr = np.asarray(self.owner, dtype=np.int64)
        self.starts = np.searchsorted(self.owner_arr, np.arange(len(texts) + 1))
        self.numbers = [numbers(t) for t in self.text]
        self.names = [names_in(t, names) for t in self.text]
        self.words = [claim_words(t) for t in self.text]
        self.negated = [negated(t) for t in self.text]
        self.units = [units(t) for t in self.text]
        self.whole_numbers = [numbers(t) if t else frozenset() for t in texts]
        self.whole_words = [claim_words(t) if t else frozenset() for t in texts]
        # What each text is about: the words of its question (numbers are compared apart), and
        # of each sentence the words it shares with its question — its subject.
        self.asked = [frozenset(w for w in claim_words(q) if not w.isdigit()) if isinstance(q, str) else frozenset()
                      for q in questions]
        self.subject = [w & self.asked[o] & topics for w, o in zip(self.words, self.owner)]
        # What each sentence says beyond what was asked: its content words its question lacks
        # (all of them where it states numbers: "paid 15% above the normal rate" is stated by
        # "the weekend shift earns fifteen percent more" through its subject and its number, which
        # must be the same), and its text bare of the words that name its subject (encoded only
        # where needed).
        self.beyond = [w if n else w - self.asked[o] for w, o, n in zip(self.words, self.owner, self.numbers)]
        spoken = [tokens(q) if isinstance(q, str) else frozenset() for q in questions]
        self.bare = [without_subject(t, s, spoken[o]) if s else t
                     for t, s, o in zip(self.text, self.subject, self.owner)]
        # A claim that says one word beyond its subject ("Restart the calendar app." is
        # "Restart") is compared whole: one word alone is no sentence to the model ("Restart"
        # and "Quit and reopen" are 0.62 apart).
        self.short = [b != t and len([w for w in claim_words(b) if not w.isdigit()]) < 2
                      for b, t in zip(self.bare, self.text)]
        self.vectors: np.ndarray = np.zeros((0, 0), dtype=np.float32)
        # Vectors of the bare texts that differ from their sentence: row → position (-1: none).
        self.bare_at = np.full(len(self.text), -1, dtype=np.int64)
        self.bare_vectors = np.zeros((0, 0), dtype=np.float32)

    def rows_of(self, owner: int) -> range:
        return range(int(self.starts[owner]), int(self.starts[owner + 1]))

    def bare_needed(self, rows: Sequence[int]) -> list[int]:
        """Of sentences `rows`, those whose bare text differs from them and is not encoded yet."""
        return sorted({int(r) for r in rows if self.bare[r] != self.text[r] and self.bare_at[r] < 0})

    def bare_matrix(self, rows: range) -> np.ndarray:
        """The vectors of sentences `rows` bare of their subjects (rows × dimension): the
        sentence's own vector where nothing names a subject."""
        out = np.array(self.vectors[rows.start:rows.stop], dtype=np.float32)
        at = self.bare_at[rows.start:rows.stop]
        if (at >= 0).any():
            out[at >= 0] = self.bare_vectors[at[at >= 0]]
        return out


def _encode_bare(wanted: Sequence[tuple[_Texts, list[int]]], encode: Callable[[list[str]], np.ndarray]) -> None:
    """Encode, in one call, the bare texts of the sentences `wanted` (per part, its rows from
    :meth:`_Texts.bare_needed`), each distinct text once."""
    texts = sorted({part.bare[r] for part, rows in wanted for r in rows})
    if not texts:
        return
    vectors = np.asarray(encode(texts), dtype=np.float32)
    at = {t: i for i, t in enumerate(texts)}
    for part, rows in wanted:
        if not rows:
            continue
        start = len(part.bare_vectors)
        picked = vectors[[at[part.bare[r]] for r in rows]]
        part.bare_vectors = picked if not start else np.concatenate([part.bare_vectors, picked])
        part.bare_at[rows] = np.arange(start, start + len(rows))


def _bare_cosines(whole: np.ndarray, bare: np.ndarray, claims: _Texts, rows: range) -> np.ndarray:
    """Cosines of claims `rows` with other sentences bare of their subjects (`bare`), or of the
    whole sentences (`whole`) for a claim that is short bare (:class:`_Texts`)."""
    return np.where(np.asarray([claims.short[r] for r in rows])[:, None], whole, bare)


def _whole(text: str | None) -> list[str]:
    """A question as one sentence (what it asks is all of it)."""
    return [text.strip()] if isinstance(text, str) and text.strip() else []


def _answers_otherwise(claims: _Texts, pair: int, references: _Texts, item: int) -> bool:
    """Whether pair `pair`'s answer gives another answer than reference `item`: it states none of
    the numbers the reference states, or it negates (a refusal, "that is not covered") where the
    reference does not."""
    wanted = references.whole_numbers[item]
    if wanted and not wanted & claims.whole_numbers[pair]:
        return True
    refuses = any(claims.negated[c] for c in claims.rows_of(pair))
    return refuses and not any(references.negated[r] for r in references.rows_of(item))


def _topic_words(questions: list[Any]) -> frozenset[str]:
    """The words that name a topic in the training questions: asked about in more than one
    question ("holiday" in "how long is the holiday shift?" and "does the holiday shift pay
    more?") but in at most a tenth of them (not "long", "pay", "shift" where every topic is one)."""
    from collections import Counter

    counts = Counter(w for q in questions if isinstance(q, str) for w in claim_words(q) if not w.isdigit())
    most = max(2, len(questions) // 10)
    return frozenset(w for w, n in counts.items() if 2 <= n <= most)


def _other_things(a: _Texts, i: int, b: _Texts, j: int, *, parallel: bool = False) -> bool:
    """Whether sentence `i` of `a` and sentence `j` of `b` are about different things: each names
    something the other does not; or each has a subject word of its own — a topic word
    (:func:`_topic_words`) it shares with its own question, that neither the other sentence nor
    the other's question has: what tells "the holiday shift is seven hours long" from "the night
    shift lasts 7 hours" when nothing is capitalised. Between two training claims (`parallel`)
    the subject words count only when the two are worded in parallel (half their content words
    shared): two pairs asked about "refunds" and about a "money-back guarantee" can make the same
    claim in other words, and a link between them is left to their meaning and numbers."""
    if name_conflict(a.names[i], b.names[j]):
        return True
    a_subject, b_subject = a.subject[i], b.subject[j]
    if parallel:
        plain_a = {w for w in a.words[i] if not w.isdigit()}
        plain_b = {w for w in b.words[j] if not w.isdigit()}
        if len(plain_a & plain_b) * 2 < len(plain_a | plain_b):
            return False
    return (bool(a_subject) and bool(b_subject)
            and bool(a_subject - b.words[j] - b.asked[b.owner[j]])
            and bool(b_subject - a.words[i] - a.asked[a.owner[i]]))


def _best(sims: np.ndarray, rows: range, claims: _Texts, c: int, texts: _Texts, *, same_units: bool = False) -> float:
    """The best similarity of claim `c` to the sentences `rows` of `texts` that are about the
    same thing and negate as it does (and, with `same_units`, count something the claim counts)."""
    best = 0.0
    for k, row in enumerate(rows):
        if sims[k] > best and texts.negated[row] == claims.negated[c] and not _other_things(claims, c, texts, row) \
                and (not same_units or claims.units[c] & texts.units[row]):
            best = float(sims[k])
    return best


def _best_columns(queries: np.ndarray, matrix: np.ndarray, k: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Per query row, the (up to) `k` columns of `matrix` rows most similar to it with cosine
    ≥ `floor`, best first: (columns, similarities), -1 / -inf where fewer. `matrix` is read a
    block of rows at a time (it can be a memory map of millions of sentences)."""
    best_c = np.full((len(queries), 0), -1, dtype=np.int64)
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    for start in range(0, len(matrix), _COLUMNS):
        sims = queries @ np.asarray(matrix[start:start + _COLUMNS]).T
        sims[sims < floor] = -np.inf
        width = min(k, sims.shape[1])
        top = np.argpartition(-sims, width - 1, axis=1)[:, :width]
        cols = np.concatenate([best_c, top + start], axis=1)
        vals = np.concatenate([best_s, np.take_along_axis(sims, top, axis=1)], axis=1)
        order = np.lexsort((cols, -vals), axis=1)[:, :k]
        best_c, best_s = np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)
    best_c[~np.isfinite(best_s)] = -1
    return best_c, best_s


def _columns_above(queries: np.ndarray, matrix: np.ndarray, floor: float) -> list[tuple[int, int, float]]:
    """Every (query row, matrix row, cosine) with cosine ≥ `floor`, a block of `matrix` at a time."""
    found: list[tuple[int, int, float]] = []
    for start in range(0, len(matrix), _COLUMNS):
        sims = queries @ np.asarray(matrix[start:start + _COLUMNS]).T
        rows, cols = np.nonzero(sims >= floor)
        found += zip(rows.tolist(), (cols + start).tolist(), sims[rows, cols].tolist())
    return found


def gather(items: pd.DataFrame, pairs: pd.DataFrame, citations: pd.DataFrame,
           encode: Callable[[list[str]], np.ndarray], *, lookup: int = 20,
           encode_claims: Callable[..., np.ndarray] | None = None) -> Evidence:
    """Text evidence (module docstring) from `items` (eval_id, answer, reference, verdict),
    `pairs` (pair_id, question, answer; the first row of each pair id counts) and `citations`
    (eval_id, pair_id). `encode` maps texts to L2-normalised vectors; `encode_claims` (default
    `encode`) does so for every sentence of every training answer, and — called with a second
    argument, "training questions" (what it encodes, for its progress) — for every training
    question; it may return a memory map
    (collect hands it :meth:`~refine.core.embeddings.EmbeddingModel.encode_to_disk`): those vectors are
    only ever read a block at a time."""
    from .defects import proper_nouns

    # Ids as text, as collect writes them (an id column read as numbers must still match).
    items = items.assign(eval_id=items["eval_id"].astype(str)).reset_index(drop=True)
    pairs = pairs.assign(pair_id=pairs["pair_id"].astype(str)).drop_duplicates("pair_id").reset_index(drop=True)
    citations = citations.assign(eval_id=citations["eval_id"].astype(str), pair_id=citations["pair_id"].astype(str))
    # Without answers, or without a single reference, the texts cannot say what a pair did:
    # no evidence at all, and flag falls back to the citation rules.
    if not len(items) or not len(pairs) or items["answer"].isna().all() \
            or "reference" not in items or items["reference"].isna().all():
        return Evidence.empty()
    # Numbers are compared as numbers, so a name is a word without digits.
    names = frozenset(n for n in proper_nouns(list(pairs["question"]) + list(pairs["answer"]))
                      if not any(ch.isdigit() for ch in n))
    questions = list(items["question"]) if "question" in items else [None] * len(items)
    topics = _topic_words(list(pairs["question"]))
    answers = _Texts(list(items["answer"]), names, questions, topics=topics)
    references = _Texts(list(items["reference"]) if "reference" in items else [None] * len(items), names, questions,
                        clauses, topics=topics)
    claims = _Texts(list(pairs["answer"]), names, list(pairs["question"]), topics=topics)
    asked = _Texts(questions, names, questions, _whole, topics=topics)
    taught = _Texts(list(pairs["question"]), names, list(pairs["question"]), _whole, topics=topics)
    every = sorted(set(answers.text) | set(references.text) | set(asked.text))
    vectors = encode(every) if every else np.zeros((0, 1), np.float32)
    at = {t: i for i, t in enumerate(every)}
    for part in (answers, references, asked):
        part.vectors = vectors[[at[t] for t in part.text]] if part.text else np.zeros((0, vectors.shape[1]), np.float32)
    del vectors
    claims.vectors = (encode_claims or encode)(claims.text) if claims.text else np.zeros((0, 1), np.float32)
    if not taught.text:
        taught.vectors = np.zeros((0, 1), np.float32)
    else:
        taught.vectors = encode_claims(taught.text, "training questions") if encode_claims else encode(taught.text)

    # Ids as plain lists: a pandas lookup per link costs more than the link (millions of them).
    pair_ids, eval_ids = pairs["pair_id"].tolist(), items["eval_id"].tolist()
    pair_row = {p: i for i, p in enumerate(pair_ids)}
    item_row = {e: i for i, e in enumerate(items["eval_id"])}
    bad = (items["verdict"] == "bad").to_numpy()
    wanted: dict[tuple[int, int], str] = {}
    for e, p in zip(citations["eval_id"], citations["pair_id"]):
        if e in item_row and p in pair_row:
            wanted[(item_row[e], pair_row[p])] = "cited"

    if lookup and len(claims.text):
        # Each sentence of a bad answer, looked up among all training claims. Many claims share
        # a template ("The X has 64 GB of storage."): the best by cosine alone are other things'
        # claims, so more are fetched and those naming something else are passed over.
        queries = np.flatnonzero(bad[answers.owner_arr]) if len(answers.text) else np.zeros(0, int)
        for start in range(0, len(queries), _BLOCK):
            rows = queries[start:start + _BLOCK]
            top, _ = _best_columns(answers.vectors[rows], claims.vectors, lookup * 8, FLOOR)
            for r, row in enumerate(rows.tolist()):
                kept = 0
                for c in top[r].tolist():
                    if kept == lookup or c < 0:
                        break
                    if not _other_things(answers, row, claims, c):
                        wanted.setdefault((answers.owner[row], claims.owner[c]), "lookup")
                        kept += 1

    # The pairs asked an item's own question whose answer gives another answer than its
    # reference: none of the numbers the reference states, or a refusal where it answers. A
    # pair that was asked the question and taught another answer is against every bad answer to
    # it (the model may have made up a third answer: the pair still taught it nothing right).
    # A good answer to the question does not speak for the pair: the pair still teaches the
    # wrong answer.
    same_question: dict[tuple[int, int], float] = {}
    if lookup and len(taught.text) and len(asked.text):
        queries = np.asarray([r for r in range(len(asked.text)) if bad[asked.owner[r]]
                              and len(references.rows_of(asked.owner[r]))], dtype=np.int64)
        for start in range(0, len(queries), _BLOCK):
            rows = queries[start:start + _BLOCK]
            top, sims = _best_columns(asked.vectors[rows], taught.vectors, lookup * 4, SAME_QUESTION)
            for r, row in enumerate(rows.tolist()):
                item = asked.owner[row]
                kept = 0
                for c, sim in zip(top[r].tolist(), sims[r].tolist()):
                    if kept == lookup or c < 0:
                        break
                    # Questions that name other numbers ask about other things ("person5",
                    # "person46"; "a 2-year plan", "a 3-year plan").
                    if asked.numbers[row] != taught.numbers[c] or _other_things(asked, row, taught, c):
                        continue
                    kept += 1
                    pair = taught.owner[c]
                    if _answers_otherwise(claims, pair, references, item):
                        same_question[(item, pair)] = max(same_question.get((item, pair), 0.0), float(sim))
                        wanted[(item, pair)] = "question"

    # The sentences bare of their subjects: every answer and reference sentence that names one,
    # and the claims of the pairs about to be scored (cached by collect like the rest).
    _encode_bare([(answers, answers.bare_needed(range(len(answers.text)))),
                  (references, references.bare_needed(range(len(references.text)))),
                  (claims, claims.bare_needed([c for p in sorted({p for _, p in wanted}) for c in claims.rows_of(p)]))],
                 encode)

    out: dict[tuple[int, int, int], tuple] = {}

    def asked_alike(item: int, pair: int) -> float:
        # How alike the item's question and the pair's are (1 where either has none: nothing
        # says they differ).
        q_item, q_pair = asked.rows_of(item), taught.rows_of(pair)
        if not len(q_item) or not len(q_pair):
            return 1.0
        return float(asked.vectors[q_item.start] @ np.asarray(taught.vectors[q_pair.start]))

    def score(item: int, pair: int, via: str, only: set[int] | None = None) -> None:
        a_rows, r_rows = answers.rows_of(item), references.rows_of(item)
        c_rows = claims.rows_of(pair)
        if not len(a_rows) or not len(c_rows):
            return
        own = np.asarray(claims.vectors[c_rows.start:c_rows.stop])
        own_bare = claims.bare_matrix(c_rows)
        a_sims = own @ answers.vectors[a_rows.start:a_rows.stop].T
        a_bare = _bare_cosines(a_sims, own_bare @ answers.bare_matrix(a_rows).T, claims, c_rows)
        r_sims = own @ references.vectors[r_rows.start:r_rows.stop].T if len(r_rows) else None
        r_bare = _bare_cosines(r_sims, own_bare @ references.bare_matrix(r_rows).T, claims, c_rows) \
            if len(r_rows) else None
        for k, c in enumerate(c_rows):
            if only is not None and claims.index[c] not in only:
                continue
            key = (item, pair, claims.index[c])
            if key in out:
                continue
            need = claims.numbers[c]
            # An answer repeats a claim's numbers when it states at least half of them (a claim
            # can list several; a stray "(1)" in a pair must not hide what it says).
            said = len(need & answers.whole_numbers[item]) * 2 >= len(need)
            rep = _best(a_sims[k], a_rows, claims, c, answers) if said else 0.0
            rep_bare = _best(a_bare[k], a_rows, claims, c, answers) if said else 0.0
            sup = sup_bare = con = 0.0
            if r_sims is not None:
                if need <= references.whole_numbers[item]:
                    sup = _best(r_sims[k], r_rows, claims, c, references)
                    sup_bare = _best(r_bare[k], r_rows, claims, c, references)
                elif via != "scan" and claims.names[c]:
                    # The reference gives other numbers for what the claim counts, of the same
                    # named thing ("128 GB" against "256 GB"; not "299 dollars" against "450 grams").
                    con = _best(r_sims[k], r_rows, claims, c, references, same_units=True)
            if via == "question":
                con = max(con, same_question[(item, pair)])
            if rep >= FLOOR or (via == "cited" and sup >= FLOOR) or con >= FLOOR:
                out[key] = (via, bool(len(r_rows)),
                            rep, rep_bare, word_recall(claims.beyond[c], answers.whole_words[item]),
                            sup, sup_bare, word_recall(claims.beyond[c], references.whole_words[item]), con,
                            asked_alike(item, pair))

    for (item, pair), via in sorted(wanted.items()):
        score(item, pair, via)

    # The scan: every answer that repeats a claim some bad answer repeats.
    repeated = sorted({(pair, claim) for (item, pair, claim), v in out.items()
                       if bad[item] and (v[2] >= FLOOR or v[8] >= FLOOR)})
    claim_at = {(claims.owner[c], claims.index[c]): c for c in range(len(claims.text))}
    candidate_rows = np.asarray([claim_at[k] for k in repeated], dtype=np.int64)
    for start in range(0, len(candidate_rows), _BLOCK):
        rows = candidate_rows[start:start + _BLOCK]
        hits = sorted({(int(r), int(answers.owner_arr[a])) for r, a, _ in
                       _columns_above(np.asarray(claims.vectors[rows]), answers.vectors, FLOOR)})
        for r, item in hits:
            c = int(rows[r])
            score(item, claims.owner[c], "scan", {claims.index[c]})

    # Links: each repeated claim to every training claim that says the same.
    found: list[tuple[int, int, float]] = []
    for start in range(0, len(candidate_rows), _BLOCK):
        rows = candidate_rows[start:start + _BLOCK]
        for r, o, sim in _columns_above(np.asarray(claims.vectors[rows]), claims.vectors, LINK_FLOOR):
            c = int(rows[r])
            if claims.owner[o] == claims.owner[c] or claims.numbers[o] != claims.numbers[c] \
                    or _other_things(claims, o, claims, c, parallel=True):
                continue
            found.append((c, o, sim))
    _encode_bare([(claims, claims.bare_needed([o for _, o, _ in found]))], encode)
    links: list[tuple[str, int, str, int, float, float, float, bool]] = []
    for start in range(0, len(found), _COLUMNS):
        block = found[start:start + _COLUMNS]
        ends = np.asarray([(c, o) for c, o, _ in block], dtype=np.int64)
        rows = np.unique(ends)
        bare = np.concatenate([claims.bare_matrix(range(int(r), int(r) + 1)) for r in rows])
        at = np.searchsorted(rows, ends)
        alike = np.einsum("ij,ij->i", bare[at[:, 0]], bare[at[:, 1]])
        for (c, o, sim), bare_sim in zip(block, alike.tolist()):
            shared = max(word_recall(claims.beyond[c], claims.words[o]), word_recall(claims.beyond[o], claims.words[c]))
            links.append((pair_ids[claims.owner[c]], claims.index[c],
                          pair_ids[claims.owner[o]], claims.index[o], round(float(sim), 6),
                          round(bare_sim, 6), round(shared, 6), bool(claims.numbers[c])))

    keys = sorted(out)
    rows = pd.DataFrame({
        "eval_id": [eval_ids[i] for i, _, _ in keys],
        "pair_id": [pair_ids[p] for _, p, _ in keys],
        "claim": np.asarray([c for _, _, c in keys], dtype=np.int32),
        "via": [out[k][0] for k in keys],
        "referenced": np.asarray([out[k][1] for k in keys], dtype=bool),
        **{name: np.round(np.asarray([out[k][j] for k in keys], dtype=np.float64), 6).astype(np.float32)
           for j, name in enumerate(_SCORES, start=2)},
    }, columns=EVIDENCE_COLUMNS)
    named = sorted({(p, c) for _, p, c in keys} | {(claim_at_owner, ci) for claim_at_owner, ci in
                   ((pair_row[l[2]], l[3]) for l in links)})
    claim_table = pd.DataFrame({
        "pair_id": [pair_ids[p] for p, _ in named],
        "claim": np.asarray([c for _, c in named], dtype=np.int32),
        "text": [claims.text[claim_at[(p, c)]] for p, c in named]})
    link_table = pd.DataFrame(sorted(links), columns=["pair_id", "claim", "other_pair_id", "other_claim",
                                                     "similarity", "similarity_no_subject", "shared_words",
                                                     "numbered"])
    link_table["claim"] = link_table["claim"].astype(np.int32)
    link_table["other_claim"] = link_table["other_claim"].astype(np.int32)
    return Evidence(rows, claim_table, link_table)
