"""What to do with each flagged pair: drop it, set it aside, fix its answer, or keep it.

Automatic decisions follow the emit mode:

* ``prune`` — drop every flagged pair;
* ``quarantine`` — move every flagged pair to a separate file for a person to decide;
* ``edit`` — replace a flagged pair's answer with the reference answer of the bad eval
  answers it drove, when that is safe: at least one such eval item asks about the same thing
  as the pair — its question is close to the pair's (embedding cosine ≥ ``question_min``) and
  names nothing the pair's question contradicts (the anchors of :mod:`refine.stages.flagging.defects`: a
  question about the "Aurora Plus" is not about the "Aurora Max", however close the wording)
  — and has a reference, and the references of all such items agree (cosine ≥ ``agree_min``
  with the chosen one). The chosen reference is the one whose question is closest. A
  reference that opens with a bare "Yes." or "No." (or "Yes,"/"No,") answered a yes/no eval
  question; unless the pair's question is one too, that opening is left out, since it would
  not fit. Otherwise the pair is quarantined — *left for review* — rather than guessed at.

A review CSV (:mod:`refine.stages.review`) overrides these per pair; the manifest records which
decisions were automatic and which reviewed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError
from ...core.rundir import RunDir
from ...settings import MODES, EditSettings

__all__ = ["ACTIONS", "MODES", "Decision", "EditSettings", "EditSuggestion", "automatic_decisions",
           "fit_reference", "is_yes_no_question", "suggest_edits"]

ACTIONS = ("keep", "drop", "edit", "quarantine")
STAT_COLUMNS = ("n_bad", "n_good", "blame", "bad_share", "p_value", "q_value")
GROUP_COLUMNS = ("flagged_by", "defect_group", "group_size", "group_n_bad", "group_n_good", "group_q", "claim",
                 "evidence_bad", "evidence_good", "evidence_via")
_BY_CLAIM = ("claim test", "claim repeated")
_YES_NO_OPENING = re.compile(r"^\s*(?:yes|no)\b(?:\s*[.!,]\s*|\s*$)", re.IGNORECASE)
# A question a bare yes or no answers opens (a clause of) its sentence with one of these.
_AUXILIARIES = frozenset(
    "am is are was were do does did have has had can could will would shall should may might must "
    "isn't aren't wasn't weren't don't doesn't didn't haven't hasn't hadn't can't cannot couldn't "
    "won't wouldn't shouldn't mustn't".split())


@dataclass(frozen=True)
class EditSuggestion:
    new_answer: str | None
    why: str
    eval_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    pair_id: str
    action: str                      # one of ACTIONS
    source: str                      # "automatic" | "reviewed"
    reason: str
    new_answer: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def _stats(row: dict[str, Any]) -> dict[str, Any]:
    stats = {k: (int(row[k]) if k.startswith("n_") else round(float(row[k]), 6))
             for k in STAT_COLUMNS if k in row}
    if row.get("flagged_by") == "defect group" or row.get("flagged_by") in _BY_CLAIM:
        stats.update({"defect_group": int(row["defect_group"]), "group_size": int(row["group_size"]),
                      "group_n_bad": int(row["group_n_bad"]), "group_n_good": int(row["group_n_good"]),
                      "group_q": round(float(row["group_q"]), 6)})
    if row.get("flagged_by") in _BY_CLAIM:
        stats.update({"claim": str(row["claim"]), "evidence_bad": int(row["evidence_bad"]),
                      "evidence_good": int(row["evidence_good"]), "evidence_via": str(row["evidence_via"] or "")})
    return stats


def flag_reason(row: dict[str, Any]) -> str:
    """Why a pair is flagged, in one line (the manifest's and the review sheet's)."""
    if row.get("flagged_by") in _BY_CLAIM:
        how = (f"group q = {float(row['group_q']):.3g}" if row["flagged_by"] == "claim test"
               else "no answer or reference supports it")
        return (f"flagged: {int(row['group_n_bad'])} bad answers repeat its claim \"{row['claim']}\" against "
                f"their references ({int(row['group_size'])} pair{'s' if int(row['group_size']) != 1 else ''} "
                f"make{'' if int(row['group_size']) != 1 else 's'} this claim; {int(row['group_n_good'])} "
                f"answers or references support it; {how})")
    if row.get("flagged_by") == "defect group":
        return (f"flagged: member of defect group {int(row['defect_group'])}: {int(row['group_size'])} "
                f"pairs teaching the same claim, cited by {int(row['group_n_bad'])} bad and "
                f"{int(row['group_n_good'])} good answers on topic; group q = {float(row['group_q']):.3g}")
    return (f"flagged: cited by {int(row['n_bad'])} bad and {int(row['n_good'])} good answers; "
            f"q = {float(row['q_value']):.3g}")


def is_yes_no_question(question: str) -> bool:
    """Whether a clause of a sentence of `question` that ends in "?" opens with an auxiliary
    verb ("Is there a size limit?", "Quick question: can I …?", "If I cancel, do I …?")."""
    text = question.replace("\u2019", "'")
    for sentence in re.findall(r"[^.!?]*\?", text):
        for clause in re.split(r"[,:;]", sentence):
            words = clause.split()
            if words and words[0].lower().strip("\"'(?") in _AUXILIARIES:
                return True
    return False


def fit_reference(reference: str, question: str) -> str:
    """`reference` as an answer to the training `question`: without an opening bare yes or no
    unless `question` asks for one (empty when that is all the reference says)."""
    opening = _YES_NO_OPENING.match(reference)
    if opening is None or is_yes_no_question(question):
        return reference
    rest = reference[opening.end():]
    return rest[:1].upper() + rest[1:]


def flagged_table(run: RunDir, columns: list[str] | None = None, *, with_modes: bool = False) -> pd.DataFrame:
    return run.flags(columns, with_modes=with_modes, flagged_only=True)


def _edit_inputs(run: RunDir, pair_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, set[str]]:
    """What suggest_edits reads, through DuckDB so that a run of 10⁷ pairs and 10⁸ citations
    is never loaded whole: the finished bad items (question, reference), the citations of
    `pair_ids` by them, the first row's texts of `pair_ids`, and the names (proper nouns) of
    every pair's texts (:func:`refine.stages.flagging.defects.create_names`, computed in the database)."""
    from ...core._duckdb import connect, quoted
    from ..flagging.defects import create_names
    from ...core.lineage import ATTRIBUTIONS, ITEMS, PAIRS
    from ...core.rundir import first_rows_sql

    run.current("collect")
    with connect() as con:
        con.register("wanted", pd.DataFrame({"pair_id": pd.Series(pair_ids, dtype=object)}))
        con.execute("CREATE TEMP TABLE pairs_first AS "
                    + first_rows_sql(quoted(str(run.file(PAIRS))), "pair_id, question, answer"))
        create_names(con, "SELECT question AS t FROM pairs_first UNION ALL SELECT answer FROM pairs_first")
        names = {k for (k,) in con.execute("SELECT k FROM names").fetchall()}
        con.execute(f"""
            CREATE TEMP TABLE bad AS SELECT eval_id, question, reference
            FROM read_parquet({quoted(str(run.file(ITEMS)))}) WHERE status = 'done' AND verdict = 'bad'""")
        bad = con.sql("SELECT * FROM bad").df().set_index("eval_id")
        cites = con.sql(f"""
            SELECT eval_id, pair_id FROM read_parquet({quoted(str(run.file(ATTRIBUTIONS)))})
            SEMI JOIN wanted USING (pair_id) SEMI JOIN bad USING (eval_id)""").df()
        pairs = con.sql("SELECT * FROM pairs_first SEMI JOIN wanted USING (pair_id)").df().set_index("pair_id")
    return bad, cites, pairs, names


def suggest_edits(run: RunDir, pair_ids: list[str], settings: EditSettings,
                  model: Any = None) -> dict[str, EditSuggestion]:
    """For each pair, the reference answer it could safely be given instead, or why not."""
    if not pair_ids:
        return {}
    from ..flagging.defects import anchors_of_texts

    bad, cites, pairs, names = _edit_inputs(run, pair_ids)
    asked_ids = sorted(set(cites["eval_id"]))
    found = anchors_of_texts([pairs.at[p, "question"] for p in pair_ids] +
                             [bad.at[e, "question"] for e in asked_ids], names)
    taught_of, asked_of = dict(zip(pair_ids, found)), dict(zip(asked_ids, found[len(pair_ids):]))

    def same_thing(pair_id: str, eval_id: str) -> bool:
        asked, taught = asked_of[eval_id], taught_of[pair_id]
        return not (asked - taught and taught - asked)
    if model is None:
        from ...core.embeddings import EmbeddingModel
        model = EmbeddingModel()
    out: dict[str, EditSuggestion] = {}
    for pair_id in pair_ids:
        eval_ids = sorted(set(cites.loc[cites["pair_id"] == pair_id, "eval_id"]))
        with_ref = [e for e in eval_ids if isinstance(bad.at[e, "reference"], str)]
        if not with_ref:
            out[pair_id] = EditSuggestion(None, "no bad answer it drove has a reference")
            continue
        with_ref = [e for e in with_ref if same_thing(pair_id, e)]
        if not with_ref:
            out[pair_id] = EditSuggestion(None, "the bad answers it drove are about other things "
                                                "(their questions name what the pair's does not)")
            continue
        vectors = model.encode([pairs.at[pair_id, "question"]] + [bad.at[e, "question"] for e in with_ref])
        similarity = vectors[1:] @ vectors[0]
        close = [(float(s), e) for s, e in zip(similarity, with_ref) if s >= settings.question_min]
        if not close:
            out[pair_id] = EditSuggestion(None, f"no eval question close to the pair's (best cosine "
                                                f"{float(similarity.max()):.2f} < {settings.question_min})")
            continue
        close.sort(key=lambda se: (-se[0], se[1]))
        references = [bad.at[e, "reference"] for _, e in close]
        ref_vectors = model.encode(references)
        agreement = ref_vectors @ ref_vectors[0]
        if float(np.min(agreement)) < settings.agree_min:
            out[pair_id] = EditSuggestion(None, f"the references of {len(close)} close eval questions "
                                                f"disagree (cosine {float(np.min(agreement)):.2f})",
                                          tuple(e for _, e in close))
            continue
        answer = fit_reference(references[0], pairs.at[pair_id, "question"])
        if not answer.strip():
            out[pair_id] = EditSuggestion(None, f"the reference of {close[0][1]} is a bare "
                                                f"{references[0].strip()!r}, and the pair's question "
                                                "is not a yes/no question", tuple(e for _, e in close))
            continue
        trimmed = ("" if answer == references[0] else
                   ", without its opening yes/no: the pair's question is not a yes/no question")
        out[pair_id] = EditSuggestion(
            answer, f"reference of {close[0][1]} (question cosine {close[0][0]:.2f}; "
                    f"{len(close)} close eval question(s) agree){trimmed}", tuple(e for _, e in close))
    return out


def automatic_decisions(run: RunDir, mode: str, settings: EditSettings | None = None,
                        model: Any = None) -> dict[str, Decision]:
    """The decision for every flagged pair under `mode`."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; one of {', '.join(MODES)}", key="emit.mode")
    flagged = flagged_table(run, list(STAT_COLUMNS + GROUP_COLUMNS))
    base = {row["pair_id"]: (flag_reason(row), _stats(row)) for row in flagged.to_dict("records")}
    if mode == "prune":
        return {p: Decision(p, "drop", "automatic", r, stats=s) for p, (r, s) in base.items()}
    if mode == "quarantine":
        return {p: Decision(p, "quarantine", "automatic", r, stats=s) for p, (r, s) in base.items()}
    suggestions = suggest_edits(run, list(base), settings or EditSettings(), model)
    decisions = {}
    for p, (reason, stats) in base.items():
        suggestion = suggestions[p]
        if suggestion.new_answer is not None:
            decisions[p] = Decision(p, "edit", "automatic", f"{reason}; answer replaced by the "
                                    f"{suggestion.why}", suggestion.new_answer, stats)
        else:
            decisions[p] = Decision(p, "quarantine", "automatic",
                                    f"{reason}; left for review: {suggestion.why}", stats=stats)
    return decisions
