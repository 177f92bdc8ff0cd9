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
* Each group is tested like a pair (:mod:`refine.stages.flagging`): of the N finished items, B bad,
  the group is cited on topic by m distinct items, m_bad of them bad; p = P(X ≥ m_bad),
  X ~ Hypergeometric(N, B, m). Benjamini–Hochberg runs over the *testable* groups (Tarone's
  filter on m alone, as for pairs), so **the false-discovery rate is controlled over flagged
  groups** (at most alpha of the flagged groups, in expectation, are not over-cited).
* A flagged group's **members** are flagged when bad answers cite them on topic (n ≥ 1) and
  good answers do not (at most ``member_max_good`` on-topic good citations); a group of one
  pair is that pair, flagged by its test. This is a rule applied within flagged groups, not a
  second test: the error rate is stated for groups; members are the pairs of a flagged group
  that only bad answers of their topic cite.

Everything here runs in DuckDB (:mod:`refine.core._duckdb`) over tables of any size: the tokens are
found by RE2 patterns written to match Python's ``re`` on text (Unicode ``\\w``, ``\\s`` and
``\\d``), and the per-citation work is joins and aggregates that spill to disk. Known
differences from Python, all rare: DuckDB lower-cases "İ" to "i" (Python: "i̇") and a final
"Σ" to "σ" (Python: "ς"); and RE2's Unicode tables are of another version than Python's, so
about 200 letters of recently encoded scripts (e.g. U+11F02) are not word characters here.
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from ...core._duckdb import connect, quoted

__all__ = ["anchors_of", "anchors_of_texts", "create_names", "defect_tables", "proper_nouns"]

# RE2 patterns. Python's \w on text is a letter, a digit of any script or "_"; its \s also
# takes \v, the separators \x1c-\x1f, NEL and every Unicode space; its \d every decimal digit.
_WORD = r"[\p{L}\p{N}_\-]"
TOKEN = r"[A-Za-z0-9]" + _WORD + "*"
_SPACE = r"[\t\n\v\f\r\x{1c}-\x{1f}\x{85}\p{Z}]"
SENTENCE_START = r"(^|[.!?]" + _SPACE + r"+|\n)" + _SPACE + r"*[" + "\"'" + r"(\[]*([A-Za-z]" + _WORD + "*)"
DIGIT = r"\p{Nd}"
_NOT_NAMES = ("i", "ok")


def create_names(con: Any, texts_sql: str, *, table: str = "names", lower_share: float = 0.1) -> None:
    """Create `table` (k): the lower-cased words the texts (the column ``t`` of `texts_sql`)
    capitalise somewhere other than at a sentence's start, and almost never write in lower case
    (at most `lower_share` of their uses): names, not the ordinary words a UI label or a
    heading capitalises ("Billing > Invoices")."""
    not_names = ", ".join(quoted(w) for w in _NOT_NAMES)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        WITH texts AS ({texts_sql}),
        words AS (SELECT w, count(*) AS n FROM
                    (SELECT unnest(regexp_extract_all(t, {quoted(TOKEN)})) AS w FROM texts) GROUP BY w),
        starts AS (SELECT w, count(*) AS s FROM
                    (SELECT unnest(regexp_extract_all(t, {quoted(SENTENCE_START)}, 2)) AS w FROM texts) GROUP BY w),
        keyed AS (SELECT lower(w) AS k, regexp_matches(w, '^[a-z]') AS is_lower, n, coalesce(s, 0) AS s
                  FROM words LEFT JOIN starts USING (w)),
        counted AS (SELECT k, coalesce(sum(n) FILTER (is_lower), 0) AS lower_n,
                           sum(n - s) FILTER (NOT is_lower AND k NOT IN ({not_names}) AND n > s) AS capital_n
                    FROM keyed GROUP BY k)
        SELECT k FROM counted
        WHERE capital_n IS NOT NULL AND lower_n <= {float(lower_share)!r} * (capital_n + lower_n)""")


def anchors_sql(source_sql: str, key: str, text: str, names: str = "names") -> str:
    """(key, a): the sorted anchors of each text of `source_sql` that has any — its tokens
    (lower-cased) with a digit or in `names`."""
    return f"""
        SELECT {key}, list_sort(list_distinct(list(w))) AS a FROM
          (SELECT {key}, unnest(regexp_extract_all(lower({text}), {quoted(TOKEN)})) AS w FROM ({source_sql}))
        WHERE regexp_matches(w, {quoted(DIGIT)}) OR w IN (SELECT k FROM {names})
        GROUP BY {key}"""


def proper_nouns(texts: Iterable[str], lower_share: float = 0.1) -> set[str]:
    """The names among the words of `texts` (:func:`create_names`)."""
    frame = pd.DataFrame({"t": list(texts)}, dtype=object)
    with connect() as con:
        con.register("given_texts", frame)
        create_names(con, "SELECT t FROM given_texts", lower_share=lower_share)
        return {row[0] for row in con.execute("SELECT k FROM names").fetchall()}


def anchors_of(text: str, names: set[str]) -> frozenset[str]:
    """The tokens of `text` that name something: with a digit, or one of `names`."""
    return anchors_of_texts([text], names)[0]


def anchors_of_texts(texts: list[str], names: set[str]) -> list[frozenset[str]]:
    """:func:`anchors_of` for many texts in one query."""
    with connect() as con:
        con.register("given_texts", pd.DataFrame({"i": range(len(texts)), "t": texts}))
        con.register("given_names", pd.DataFrame({"k": sorted(names)}, dtype=object))
        con.execute("CREATE TEMP TABLE names AS SELECT k::VARCHAR AS k FROM given_names")
        found = dict(con.execute(anchors_sql("SELECT i, t FROM given_texts", "i", "t")).fetchall())
    return [frozenset(found.get(i) or ()) for i in range(len(texts))]


def defect_tables(con: Any) -> None:
    """From ``items`` (item, question), ``pairs_first`` (pair_id, question, answer) and
    ``cited`` (item, pair_id, weight, bad: one row per citation; :mod:`refine.stages.flagging`),
    create:

    * ``pair_info`` (pair_id, grp, gi): each cited pair's defect group, as the smallest pair id
      of the group (``grp``, the pair's own id when it is in no group) and its number in the
      order of ``grp`` (``gi``, from 0);
    * ``cited_topic`` (item, pair_id, weight, bad, gi, on_topic): the citations with their
      group and verdict of topic.
    """
    con.execute("""
        CREATE OR REPLACE TEMP TABLE cited_texts AS
        SELECT c.pair_id, p.question, p.answer
        FROM (SELECT DISTINCT c.pair_id FROM cites_in c SEMI JOIN items i ON i.eval_id = c.eval_id) c
        LEFT JOIN pairs_first p USING (pair_id)""")
    create_names(con, "SELECT question AS t FROM cited_texts UNION ALL SELECT answer FROM cited_texts")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE pair_info AS
        WITH qa AS ({anchors_sql("SELECT pair_id, question FROM cited_texts", "pair_id", "question")}),
             aa AS ({anchors_sql("SELECT pair_id, answer FROM cited_texts", "pair_id", "answer")}),
             keyed AS (SELECT c.pair_id, coalesce(qa.a, []::VARCHAR[]) AS qa, coalesce(aa.a, []::VARCHAR[]) AS aa
                       FROM cited_texts c LEFT JOIN qa USING (pair_id) LEFT JOIN aa USING (pair_id)),
             grouped AS (SELECT pair_id, qa, CASE WHEN len(qa) > 0 AND len(aa) > 0
                                   THEN min(pair_id) OVER (PARTITION BY qa, aa) ELSE pair_id END AS grp
                         FROM keyed)
        SELECT pair_id, qa, grp, dense_rank() OVER (ORDER BY grp) - 1 AS gi FROM grouped""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE cited_topic AS
        WITH ia AS ({anchors_sql("SELECT item, question FROM items", "item", "question")})
        SELECT c.item, c.pair_id, c.weight, c.bad, p.gi,
               list_has_all(p.qa, coalesce(ia.a, []::VARCHAR[])) OR list_has_all(coalesce(ia.a, []::VARCHAR[]), p.qa)
                 AS on_topic
        FROM cited c JOIN pair_info p USING (pair_id) LEFT JOIN ia USING (item)""")
