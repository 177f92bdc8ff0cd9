"""Text evidence, judged: which answers are against and for each claim, the claims grouped into
defects, each group tested, and the pairs flagged (:mod:`.evidence` says why; the scores come
from :mod:`.gather`).

Run by ``flag`` (:func:`judge`, with :class:`~refine.settings.FlagSettings`):

* an item *repeats* a claim when ``repeat ≥ repeat_min`` and ``repeat_words ≥
  repeat_words_min`` (a model echoes training text in its words), or ``repeat ≥
  paraphrase_min`` with ``support_words_min`` of its words and, bare of their subjects, still
  ``repeat_no_subject ≥ support_min`` (a close paraphrase); its reference *states* the claim
  when ``support ≥ support_min`` and either ``support_words ≥ support_words_min`` or, bare of
  their subjects, ``support_no_subject ≥ support_min`` (a reference is written apart, in its
  own words: "Quit and reopen the app" states "Close the app and open it again" with none of
  its words, and "Clear the cache of the calendar app" does not state "Delete the data folder
  of the calendar app" however close the two read). The words counted are those beyond the
  claim's question (the app's name says nothing about what to do with it);
* **against** the claim: a bad answer repeats it, or its reference contradicts it
  (``contradict ≥ support_min``), and its reference —
  which it must have: without one nothing says what is wrong — does not state it;
* **for** the claim: a good answer repeats it — a good answer to another question than the
  pair's (``same_question``, the questions' cosine, below
  :data:`~refine.stages.flagging.evidence_text.SAME_QUESTION`) only when it says it closely (``repeat ≥
  paraphrase_min``): the steps of one app's procedures all read alike ("Remove the passwords
  the app has saved" and "Remove your account from the app, which deletes your files" are 0.75
  apart), and a correct step of its login procedure must not speak for a destructive one — or
  the reference of an item that repeats or cites it states it (a pair whose answer agrees with
  the reference of the questions that cite it is never flagged);
* claims that bad answers repeat against their references, linked with similarity ≥
  ``same_claim_min`` and the same test as a reference's (alike bare of their subjects, or
  sharing ``support_words_min`` of their words beyond their questions) — or at all when they
  state the same numbers — form a **defect group**,
  whatever their wording and topic (one unsafe sentence on six topics is one group; links
  need the same numbers and nothing that says they are about different things in any case);
  each group counts the distinct items against any of its claims (``m_bad``) and those for
  one and against none (``m_good``: good answers that repeat it, and items — bad ones too —
  whose reference states it);
* test: of the N finished items, B bad, the m = m_bad + m_good items that repeat the group's
  claim are under the null a random draw: p = P(X ≥ m_bad), X ~ Hypergeometric(N, B, m),
  Benjamini–Hochberg over testable groups (Tarone's filter on m, as for pairs);
* a group is **flagged** when at least ``min_bad`` bad answers repeat it against their
  references and either its q ≤ alpha with more items against than for (``test``: the false-discovery rate over flagged groups
  is at most alpha when verdicts are independent of which claim an answer repeats) or no item
  at all is for it (``text``: every answer that repeats it is bad and contradicted by its
  reference — evidence a person accepts, with no probabilistic guarantee beyond its counts);
* a flagged group's **members** are the pairs with a claim in it (so repeated against a
  reference by a bad answer at least once) that no item is for;
* a claim is also flagged **alone** (``text``) when at least ``min_bad`` bad answers are
  against it, no item is for it, and its group has more items against than for: grouping by
  similarity links "Remove your account, which deletes your files" to "Remove the passwords the
  app has saved", which good answers repeat, and that must not hide the first.

What still holds when verdicts come from a grader: the test conditions on verdicts, so a
grader's errors that do not depend on the claim only cost power; a grader that marks answers
bad *because* they say something the reference lacks makes "bad" and "against" the same event,
and then only the ``text`` rule's counts (never the q-value) speak for a flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from .evidence_text import SAME_QUESTION

if TYPE_CHECKING:
    from .gather import Evidence

__all__ = ["evidence_views", "judge"]


def _components(nodes: list[tuple[str, int]], edges: list[tuple[tuple[str, int], tuple[str, int]]]
                ) -> dict[tuple[str, int], int]:
    """Connected components (union-find), numbered by their smallest node."""
    parent = {n: n for n in nodes}

    def find(n: tuple[str, int]) -> tuple[str, int]:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = sorted({find(n) for n in nodes})
    number = {r: i for i, r in enumerate(roots)}
    return {n: number[find(n)] for n in nodes}


# Columns that evidence collected by an older refine lacks, and the values that make its rule
# the rule it was collected for: no subject-free comparison (a paraphrase and a link pass as
# they did; a reference states a claim on its words alone, as it did).
_OLDER = {"evidence_in": {"repeat_no_subject": 1.0, "support_no_subject": 0.0},
          "claim_links_in": {"similarity_no_subject": 1.0, "shared_words": 1.0}}


def evidence_views(con: Any, evidence: "Evidence | None" = None, files: dict[str, str] | None = None) -> None:
    """The views :func:`judge` reads — ``evidence_in``, ``claims_in``, ``claim_links_in`` — over
    an in-memory :class:`Evidence` or over the run's Parquet files (`files`: name → path)."""
    from ...core._duckdb import quoted

    for name, table in (("evidence_in", "rows"), ("claims_in", "claims"), ("claim_links_in", "links")):
        if evidence is not None:
            con.register(f"{name}_frame", getattr(evidence, table))
            source = f"{name}_frame"
        else:
            source = f"read_parquet({quoted(files[name])})"
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        filled = "".join(f", {value!r}::DOUBLE AS {column}" for column, value in _OLDER.get(name, {}).items()
                         if column not in present)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT *{filled} FROM {source}")


def judge(con: Any, settings: Any, test: Callable[..., Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per pair and per claim group, the text evidence and the flags (module docstring).

    Reads the views of :func:`evidence_views` and ``verdicts_in`` (eval_id, bad: the finished
    items), in DuckDB: the 10⁸ rows of a large run are scanned, never held; only the claims some
    bad answer repeats against its reference (and the claims linked to them) reach Python.
    `test(k, n)` gives (p, q, testable) arrays of the count test. Returns (pairs, groups):
    pairs indexed by pair_id with columns claim, claim_text, evidence_bad, evidence_good,
    evidence_via, claim_group, member; groups indexed by group number with size, claims, m_bad,
    m_good, p, q, flagged, rule."""
    r, pr, s_ = float(settings.repeat_min), float(settings.paraphrase_min), float(settings.support_min)
    rw, sw = float(settings.repeat_words_min), float(settings.support_words_min)
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW judged AS
        SELECT eval_id, pair_id, claim, via, against, "for" FROM (
          SELECT e.eval_id, e.pair_id, e.claim, e.via,
                 v.bad AND e.referenced AND (rep OR con) AND NOT st AS against,
                 (rep AND NOT v.bad AND (e.same_question >= {SAME_QUESTION!r} OR e.repeat >= {pr!r}))
                   OR (st AND (rep OR e.via IN ('cited', 'question'))) AS "for"
          FROM (SELECT *, (repeat >= {r!r} AND repeat_words >= {rw!r})
                          OR (repeat >= {pr!r} AND repeat_words >= {sw!r} AND repeat_no_subject >= {s_!r}) AS rep,
                          support >= {s_!r} AND (support_words >= {sw!r} OR support_no_subject >= {s_!r}) AS st,
                          contradict >= {s_!r} AS con FROM evidence_in) e
          JOIN verdicts_in v USING (eval_id))
        WHERE against OR "for" """)
    candidates = con.execute("SELECT DISTINCT pair_id, claim FROM judged WHERE against "
                             "ORDER BY pair_id, claim").fetchall()
    empty_pairs = pd.DataFrame(columns=["claim", "claim_text", "evidence_bad", "evidence_good", "evidence_via",
                                        "claim_group", "member", "by"]).rename_axis("pair_id")
    empty_groups = pd.DataFrame(columns=["size", "claims", "m_bad", "m_good", "p", "q", "flagged", "rule"])
    if not candidates:
        return empty_pairs, empty_groups
    cand_set = {(p, int(c)) for p, c in candidates}
    con.register("candidates_frame", pd.DataFrame(candidates, columns=["pair_id", "claim"]))
    links = con.execute(f"""
        SELECT l.pair_id, l.claim, l.other_pair_id, l.other_claim,
               l.similarity >= {float(settings.same_claim_min)!r}
                 AND (l.similarity_no_subject >= {s_!r} OR l.shared_words >= {sw!r}) AS same, l.numbered
        FROM claim_links_in l SEMI JOIN candidates_frame c ON c.pair_id = l.pair_id AND c.claim = l.claim
        ORDER BY ALL""").fetchall()
    # Only claims that bad answers repeat against their references are grouped: a claim no bad
    # answer repeats is no evidence of a defect (and single linkage through such claims — a
    # correct step like every other step — would chain unrelated defects together). Two are the
    # same claim when similar enough, or, stating the same numbers, similar at all (two wordings
    # of one wrong number).
    edges = [((a, int(b)), (c, int(d))) for a, b, c, d, same, numbered in links
             if (c, int(d)) in cand_set and (same or numbered)]
    nodes = sorted(cand_set)
    group_of = _components(nodes, edges)
    n_groups = max(group_of.values()) + 1
    con.register("group_frame", pd.DataFrame([(p, c, g) for (p, c), g in group_of.items()],
                                             columns=["pair_id", "claim", "grp"]))
    con.execute("""
        CREATE OR REPLACE TEMP TABLE judged_grouped AS
        SELECT g.grp, j.* FROM judged j JOIN group_frame g ON g.pair_id = j.pair_id AND g.claim = j.claim""")
    # Per group, each item once: against when it repeats one of the group's claims against its
    # reference (a bad answer that also repeats the correct rest of a pair is still against);
    # for when it supports one and is against none.
    counts = con.execute("""
        SELECT grp, count(*) FILTER (a) AS m_bad, count(*) FILTER (f AND NOT a) AS m_good
        FROM (SELECT grp, eval_id, bool_or(against) AS a, bool_or("for") AS f FROM judged_grouped GROUP BY ALL)
        GROUP BY grp ORDER BY grp""").df().set_index("grp").reindex(range(n_groups), fill_value=0)
    own = con.execute("""
        SELECT pair_id, claim, count(*) FILTER (against) AS evidence_bad, count(*) FILTER ("for") AS evidence_good,
               any_value(grp) AS grp,
               coalesce(string_agg(DISTINCT via, ',' ORDER BY via) FILTER (against), '') AS evidence_via
        FROM judged_grouped GROUP BY pair_id, claim ORDER BY pair_id, claim""").df()
    con.execute("DROP TABLE judged_grouped")
    for name in ("candidates_frame", "group_frame"):
        con.unregister(name)

    m_bad, m_good = counts["m_bad"].to_numpy(np.int64), counts["m_good"].to_numpy(np.int64)
    p, q, _ = test(m_bad, m_bad + m_good)
    enough = m_bad >= settings.min_bad
    by_test = enough & (q <= settings.alpha) & (m_bad > m_good)
    by_text = enough & (m_good == 0)
    pair_sets: dict[int, set[str]] = {}
    claim_count = np.zeros(n_groups, dtype=np.int64)
    for (pid, _), g in group_of.items():
        pair_sets.setdefault(g, set()).add(pid)
        claim_count[g] += 1
    groups = pd.DataFrame({"size": [len(pair_sets[g]) for g in range(n_groups)], "claims": claim_count,
                           "m_bad": m_bad, "m_good": m_good, "p": p, "q": q, "flagged": by_test | by_text,
                           "rule": np.where(by_test, "test", np.where(by_text, "text", ""))})

    # Per pair: its claim in a flagged group, else its claim with the most evidence against.
    grp = own["grp"].to_numpy(np.int64)
    in_group = groups["flagged"].to_numpy()[grp] & (own["evidence_good"] == 0).to_numpy()
    # A claim is also judged alone, where its group leans against it too: a link to a look-alike
    # claim that good answers repeat ("Remove the passwords the app has saved" beside "Remove
    # your account, which deletes your files") must not hide a claim that bad answers repeat and
    # nothing speaks for. Where its group has as much for as against ("Check that you're online"
    # in good answers beside "Make sure your phone is online" in two bad ones), the group speaks.
    leans = (counts["m_bad"].to_numpy(np.int64) > counts["m_good"].to_numpy(np.int64))[grp]
    alone = ((own["evidence_bad"] >= settings.min_bad) & (own["evidence_good"] == 0)).to_numpy() & leans
    own["member"] = in_group | alone
    own["by"] = np.where(in_group & (groups["rule"].to_numpy(object)[grp] == "test"), "test",
                         np.where(in_group | alone, "text", ""))
    own = own.sort_values(["pair_id", "member", "evidence_bad", "evidence_good", "claim"],
                          ascending=[True, False, False, True, True], kind="mergesort")
    best = own.drop_duplicates("pair_id").set_index("pair_id")
    con.register("best_frame", best.reset_index()[["pair_id", "claim"]])
    texts = dict(((p, int(c)), t) for p, c, t in con.execute(
        "SELECT c.pair_id, c.claim, c.text FROM claims_in c SEMI JOIN best_frame b "
        "ON b.pair_id = c.pair_id AND b.claim = c.claim").fetchall())
    con.unregister("best_frame")
    best["claim_text"] = [texts.get((pid, int(c)), "") for pid, c in zip(best.index, best["claim"])]
    best = best.rename(columns={"grp": "claim_group"})
    return best[["claim", "claim_text", "evidence_bad", "evidence_good", "evidence_via", "claim_group",
                 "member", "by"]], groups
