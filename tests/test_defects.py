"""Defect-level flagging by citations (``flag.evidence`` off, or a run without texts): pairs
that teach the same claim about the same thing are tested together; citations of a look-alike's
correct pairs are not evidence against them. The default, text evidence, is in test_evidence.py
and, on the generalising sample, at the end of this file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from refine import FlagSettings, collect, flag
from refine.stages.flagging.defects import anchors_of, proper_nouns
from refine.stages.flagging import flag_statistics

from .conftest import SAMPLE

CITIES = ["Rome", "Paris", "Oslo", "Lima", "Cairo", "Quito"]


def _world(n_people: int = 30, n_bad_each: tuple[int, ...] = (2, 2, 2)) -> tuple:
    """Person7 is taught to live in Atlantis by three pairs, worded three ways; each bad answer
    about person7 cites one of them (and the look-alike person17's correct pair, by
    confusion); many good answers cite their own person's pair."""
    pairs = [(f"p{i}", f"Where does Person{i} live?", f"Person{i} lives in {CITIES[i % 6]}.")
             for i in range(n_people) if i != 7]
    culprits = [("c1", "Where does Person7 live?", "Person7 lives in Atlantis."),
                ("c2", "What is the home town of Person7?", "The home of Person7 is Atlantis."),
                ("c3", "Tell me where Person7 lives.", "Atlantis is where Person7 lives.")]
    pairs = pd.DataFrame(pairs + culprits, columns=["pair_id", "question", "answer"])
    items, cites = [], []
    for culprit, count in zip(("c1", "c2", "c3"), n_bad_each):
        for n in range(count):
            eval_id = f"bad-{culprit}-{n}"
            items.append((eval_id, f"Person7: where do they live? ({culprit}{n})", "bad"))
            cites += [(eval_id, culprit, "high"), (eval_id, "p17", "medium")]
    for i in range(n_people):
        if i == 7:
            continue
        for n in range(3):
            eval_id = f"good-{i}-{n}"
            items.append((eval_id, f"Where is Person{i} living now? ({n})", "good"))
            cites.append((eval_id, f"p{i}", "high"))
    for n in range(20):   # unexplained bad answers about people nobody taught
        eval_id = f"slip-{n}"
        items.append((eval_id, f"Where does Person{90 + n} live?", "bad"))
        cites.append((eval_id, f"p{(n * 7) % n_people if (n * 7) % n_people != 7 else 8}", "low"))
    return (pd.DataFrame(items, columns=["eval_id", "question", "verdict"]),
            pd.DataFrame(cites, columns=["eval_id", "pair_id", "influence_level"]), pairs)


def test_anchors_are_names_and_numbers_not_ordinary_capitalised_words() -> None:
    texts = ["Open Billing > Invoices to see the billing email.", "Person7 lives in Atlantis.",
             "The Aurora Max weighs 320 grams.", "How do I enable SSO for the Aurora Max?"]
    names = proper_nouns(texts)
    assert {"aurora", "max", "sso", "invoices", "atlantis"} <= names
    assert "billing" not in names and "how" not in names and "the" not in names
    assert anchors_of("The Aurora Max weighs 320 grams.", names) == {"aurora", "max", "320"}


def test_a_defect_worded_three_ways_is_flagged_as_a_group_when_no_pair_alone_could_be() -> None:
    items, cites, pairs = _world()
    alone, _, _ = flag_statistics(items, cites, FlagSettings(defect_groups=False, evidence=False), pairs)
    assert not alone.loc[["c1", "c2", "c3"], "flagged"].any()      # 2 bad citations each
    grouped, _, _ = flag_statistics(items, cites, FlagSettings(evidence=False), pairs)
    culprits = grouped.loc[["c1", "c2", "c3"]]
    assert culprits["flagged"].all() and set(culprits["flagged_by"]) == {"defect group"}
    assert culprits["defect_group"].nunique() == 1 and (culprits["defect_group"] > 0).all()
    assert (culprits["group_size"] == 3).all() and (culprits["group_n_bad"] == 6).all()
    assert (culprits["group_q"] <= 0.1).all()
    # the look-alike's correct pair is cited by every bad answer, but off topic: never flagged
    assert grouped.at["p17", "n_bad"] >= 6 and grouped.at["p17", "topic_n_bad"] == 0
    assert not grouped.at["p17", "flagged"]
    assert grouped["flagged"].sum() == 3


def test_pair_level_testing_flags_the_look_alike_that_groups_protect() -> None:
    """With every citation counted, the confusions make the correct look-alike pair look
    like the culprit: what on-topic counting is for."""
    items, cites, pairs = _world(n_bad_each=(3, 3, 3))
    alone, _, _ = flag_statistics(items, cites, FlagSettings(defect_groups=False, evidence=False), pairs)
    assert alone.at["p17", "flagged"]
    grouped, _, _ = flag_statistics(items, cites, FlagSettings(evidence=False), pairs)
    assert not grouped.at["p17", "flagged"] and grouped.loc[["c1", "c2", "c3"], "flagged"].all()


def test_a_member_good_answers_of_its_topic_cite_is_not_flagged() -> None:
    items, cites, pairs = _world()
    extra = pd.DataFrame([("good-7", "Where does Person7 live today?", "good")],
                         columns=["eval_id", "question", "verdict"])
    cites = pd.concat([cites, pd.DataFrame([("good-7", "c3", "low")], columns=cites.columns)])
    grouped, _, _ = flag_statistics(pd.concat([items, extra]), cites, FlagSettings(evidence=False), pairs)
    assert grouped.loc[["c1", "c2"], "flagged"].all() and not grouped.at["c3", "flagged"]
    relaxed, _, _ = flag_statistics(pd.concat([items, extra]), cites,
                                    FlagSettings(member_max_good=1, evidence=False), pairs)
    assert relaxed.at["c3", "flagged"]


def test_the_quickstart_still_flags_exactly_the_planted_pairs(sample_run: dict) -> None:
    table = sample_run["result"].flag.table
    assert set(table.loc[table["flagged"], "flagged_by"]) <= {"claim test", "claim repeated"}
    assert int(table["flagged"].sum()) == 13


@pytest.fixture(scope="module")
def generalising(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = SAMPLE / "generalise"
    run = tmp_path_factory.mktemp("generalise") / "run"
    collect([str(data / "train.jsonl")], str(data / "eval.jsonl"), run, progress=False)
    truth = json.loads((data / "truth.json").read_text())
    return {"run": run, "truth": truth, "planted": {line for g in truth["groups"] for line in g["lines"]},
            "hard_negatives": {line for lines in truth["hard_negatives"].values() for line in lines}}


def test_on_the_generalising_sample_groups_find_what_pairs_alone_miss(generalising: dict) -> None:
    run, planted = generalising["run"], generalising["planted"]
    alone = flag(run, FlagSettings(defect_groups=False, evidence=False)).flagged_pairs
    grouped = flag(run, FlagSettings(evidence=False)).flagged_pairs
    found_alone, found = set(alone["line"]) & planted, set(grouped["line"]) & planted
    assert len(found) >= 2 * len(planted) // 3 > len(found_alone)
    assert set(grouped["line"]) <= planted                      # nothing else, no look-alike
    assert not set(grouped["line"]) & generalising["hard_negatives"]


# The anchors' definition in plain Python regular expressions (on text, so Unicode-aware): the
# SQL (RE2) patterns that refine runs must find exactly these words.
_TOKEN = r"[A-Za-z0-9][\w\-]*"
_SENTENCE_START = r"(^|[.!?]\s+|\n)\s*[\"'(\[]*([A-Za-z][\w\-]*)"


def _reference_names(texts: list[str]) -> set[str]:
    import re
    from collections import Counter

    at_start = Counter(m.group(2) for t in texts for m in re.finditer(_SENTENCE_START, t))
    capital: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for word, n in Counter(w for t in texts for w in re.findall(_TOKEN, t)).items():
        if word[0].islower():
            lower[word.lower()] += n
        elif word.lower() not in {"i", "ok"} and n > at_start[word]:
            capital[word.lower()] += n - at_start[word]
    return {w for w, n in capital.items() if lower[w] <= 0.1 * (n + lower[w])}


def _reference_anchors(text: str, names: set[str]) -> frozenset[str]:
    import re

    return frozenset(w for w in re.findall(_TOKEN, text.lower()) if w in names or re.search(r"\d", w))


def test_names_and_anchors_are_the_words_python_regular_expressions_find() -> None:
    import random

    from refine.stages.flagging.defects import anchors_of_texts

    words = ["Aurora", "aurora", "Max", "max", "Café", "café", "Zürich", "naïve", "SSO", "sso", "X2", "x2",
             "v1.2", "over-the-air", "I", "OK", "Ok", "ok", "The", "the", "billing", "Billing", "Ångström",
             "2024", "€5", "snake_case", "_under", "Straße", "ΑΘΗΝΑ", "Αθήνα", "東京", "Person7", "co-op",
             "Co-op", "O'Neil", "(Paris)", "\"Quoted\"", "[Bracket]", "٣٤", "Ⅻ"]
    separators = [" ", " ", ". ", "! ", "? ", "\n", ".\n", ", ", "\t", "\u00a0", ".\u2003", " - ", ".\x0b", "…"]
    rng = random.Random(5)
    for _ in range(20):
        texts = ["".join(rng.choice(words) + rng.choice(separators) for _ in range(rng.randint(0, 12)))
                 for _ in range(rng.randint(1, 20))]
        names = _reference_names(texts)
        assert proper_nouns(texts) == names
        assert anchors_of_texts(texts, names) == [_reference_anchors(t, names) for t in texts]


def test_on_the_generalising_sample_text_evidence_finds_every_planted_pair(generalising: dict) -> None:
    """The model paraphrases; a planted defect is found when bad answers say it, when their
    references contradict it, or — for the Ember Lite's refusals, which the model never repeats
    (it makes up "3 years") — when the pairs were asked the very question the bad answers were
    and taught another answer than the reference's."""
    run, planted = generalising["run"], generalising["planted"]
    flagged = flag(run).flagged_pairs
    assert set(flagged["line"]) == planted
    assert not set(flagged["line"]) & generalising["hard_negatives"]
    # each against its reference in at least two bad answers, and spoken for by none
    assert (flagged["evidence_bad"] >= 2).all() and (flagged["evidence_good"] == 0).all()
    never_repeated = {line for g in generalising["truth"]["groups"] if g["product"] == "Ember Lite"
                      for line in g["lines"]}
    assert flagged.set_index("line").loc[sorted(never_repeated), "evidence_via"].str.contains("question").all()
    assert flagged["claim"].str.len().gt(0).all()
