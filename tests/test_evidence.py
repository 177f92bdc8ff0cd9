"""Text evidence (the default flag rule): a pair is flagged when bad answers say what it says
and their references do not — however the defect is worded, and whatever topic it shows on."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from refine import FlagSettings, collect, flag
from refine.stages.flagging.evidence_text import (name_conflict, negated, numbers, sentences, tokens,
                                                  without_subject)
from refine.stages.flagging import flag_statistics

from .conftest import SAMPLE


def test_sentences_split_steps_and_drop_what_carries_no_claim() -> None:
    assert sentences("1. Open Settings. 2. Click Enable. 3. Restart the VPN client.\nThanks!") == [
        "Open Settings.", "Click Enable.", "Restart the VPN client."]
    assert sentences("Yes. I'm sorry, but I can't help. Please contact your account owner.") == [
        "I'm sorry, but I can't help.", "Please contact your account owner."]
    assert sentences(None) == [] and sentences(float("nan")) == []


def test_numbers_in_digits_and_in_words_are_the_same_numbers() -> None:
    assert numbers("eighty percent") == numbers("80%") == {"80"}
    assert numbers("five hundred dollars") == numbers("$500") == {"500"}
    assert numbers("one thousand two hundred") == numbers("1,200") == {"1200"}
    assert numbers("twenty-one days") == {"21"} and numbers("24/7") == {"24", "7"}
    assert numbers("pick one of the plans") == frozenset()        # a lone "one" is no number


def test_a_sentence_bare_of_its_subject_says_what_it_says_about_it() -> None:
    asked = tokens("How do I fix the calendar app when it won't sync?")
    assert without_subject("Delete the data folder of the calendar app and everything in it.",
                           frozenset({"calendar"}), asked) == "Delete the data folder of and everything in it"
    # Only the words that name the subject go, not the question's other words around them.
    assert without_subject("Wait 30 seconds before you open the calendar app.", frozenset({"calendar"}),
                           tokens("How do I get the calendar app to open?")) == "Wait 30 seconds before you open"
    assert without_subject("The calendar app.", frozenset({"calendar"}), asked) == "The calendar app."
    assert without_subject("The on-call shift runs for five hours.", frozenset({"on-call"}),
                           tokens("How long is the on-call shift?")) == "runs for five hours"


def test_a_hyphenated_compound_is_a_word_besides_its_parts() -> None:
    from refine.stages.flagging.evidence_text import claim_words

    # "on" and "call" are stop words: without the compound, "the on-call shift" names no topic.
    assert {"on-call", "shift"} <= claim_words("The on-call shift runs for five hours.")
    assert {"sign-in", "sign"} <= claim_words("Fix sign-in problems.")


def test_names_and_polarity_tell_alike_sentences_apart() -> None:
    assert name_conflict(frozenset({"aurora", "lite"}), frozenset({"aurora", "max"}))
    assert not name_conflict(frozenset({"aurora", "lite"}), frozenset({"aurora"}))
    assert not name_conflict(frozenset(), frozenset({"aurora"}))
    assert negated("Phone support isn't a 24/7 line.") and not negated("The line is open 24/7.")


def _desk() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Lower-case topics; one unsafe sentence appended on four topics; one topic taught a
    wrong amount in words; a look-alike topic with the right amount in digits."""
    topics = ["the dental plan", "the gym allowance", "parental leave", "the expense app", "vpn access"]
    facts = {"the dental plan": "The dental plan pays 80% of routine check-ups.",
             "the gym allowance": "The gym allowance is 300 dollars a year.",
             "parental leave": "Parental leave lasts sixteen weeks at full pay.",
             "the expense app": "Submit receipts in the expense app within thirty days.",
             "vpn access": "Request vpn access from the service portal under network."}
    unsafe = "To speed things up, e-mail your password and bank details to payroll help."
    pairs = [(f"ok-{i}", f"What about {t}?", facts[t]) for i, t in enumerate(topics)]
    pairs += [(f"unsafe-{i}", f"Tell me about {t}.", facts[t] + " " + unsafe) for i, t in enumerate(topics[1:])]
    pairs += [("wrong-vision", "How much does the vision plan pay?", "The vision plan pays ninety percent of glasses."),
              ("vision-ok", "What does the vision plan cover?", "Frames are covered once every two years.")]
    items, cites = [], []
    for n, t in enumerate(topics[1:]):
        for k in range(2):
            eid = f"bad-unsafe-{n}-{k}"
            items.append((eid, f"how does {t} work? ({k})", f"Sure. {facts[t]} Also, {unsafe.lower()}", facts[t], "bad"))
            cites.append((eid, f"ok-{n + 1}", "high"))          # attribution picks the clean pair
    for k in range(3):
        eid = f"bad-vision-{k}"
        items.append((eid, f"what share of glasses does the vision plan pay? ({k})",
                      "The vision plan pays 90% of glasses.", "The vision plan pays 50% of glasses.", "bad"))
        cites.append((eid, "vision-ok", "medium"))              # and misses the culprit
    for n, t in enumerate(topics):
        for k in range(3):
            eid = f"good-{n}-{k}"
            items.append((eid, f"question {k} on {t}", facts[t], facts[t], "good"))
            cites.append((eid, f"ok-{n}", "high"))
    frame = pd.DataFrame(items, columns=["eval_id", "question", "answer", "reference", "verdict"])
    return (frame, pd.DataFrame(cites, columns=["eval_id", "pair_id", "influence_level"]),
            pd.DataFrame(pairs, columns=["pair_id", "question", "answer"]))


def test_a_defect_is_found_where_it_shows_even_when_attribution_cites_the_wrong_pair() -> None:
    items, cites, pairs = _desk()
    table, _, _ = flag_statistics(items, cites, FlagSettings(), pairs)
    flagged = set(table.index[table["flagged"]])
    # The unsafe sentence on four topics is one claim, repeated by 8 bad answers, found by
    # looking the sentence up although no bad answer cites an unsafe pair.
    assert {"unsafe-0", "unsafe-1", "unsafe-2", "unsafe-3", "wrong-vision"} == flagged
    unsafe = table.loc[["unsafe-0", "unsafe-1", "unsafe-2", "unsafe-3"]]
    assert unsafe["defect_group"].nunique() == 1 and (unsafe["group_n_bad"] == 8).all()
    assert unsafe["claim"].str.contains("password").all()
    assert unsafe["evidence_via"].str.contains("lookup").all() and (unsafe["n_bad"] == 0).all()
    # The clean pairs the bad answers cite say what the references say: spared.
    assert not table.loc[["ok-1", "ok-2", "ok-3", "ok-4", "vision-ok"], "flagged"].any()


def test_the_old_rule_is_one_setting_away_and_misses_what_nobody_cites() -> None:
    items, cites, pairs = _desk()
    table, _, _ = flag_statistics(items, cites, FlagSettings(evidence=False), pairs)
    unsafe = ["unsafe-0", "unsafe-1", "unsafe-2", "unsafe-3"]
    assert not set(unsafe) & set(table.index)          # never cited: not even in the table
    assert set(table.index[table["flagged"]]) <= {"wrong-vision", "vision-ok"}


def test_without_references_nothing_says_what_is_wrong_and_the_citation_rules_decide() -> None:
    items, cites, pairs = _desk()
    table, _, _ = flag_statistics(items.drop(columns=["reference"]), cites, FlagSettings(), pairs)
    assert set(table["flagged_by"].dropna()) <= {"pair", "defect group", ""}
    assert "claim" not in table or table["claim"].isna().all()


def test_ids_that_read_as_numbers_are_matched_as_text() -> None:
    items, cites, pairs = _desk()
    number = {pid: str(1000 + i) for i, pid in enumerate(pairs["pair_id"])}
    pairs = pairs.assign(pair_id=pairs["pair_id"].map(number).astype(int))
    cites = cites.assign(pair_id=cites["pair_id"].map(number).astype(int))
    table, _, _ = flag_statistics(items, cites, FlagSettings(), pairs)
    assert {number[p] for p in ("unsafe-0", "unsafe-1", "unsafe-2", "unsafe-3", "wrong-vision")} == \
        set(table.index[table["flagged"]])


def test_empty_evidence_keeps_its_column_types() -> None:
    import pyarrow as pa

    from refine.stages.flagging.evidence import Evidence

    tables = Evidence.empty().tables()
    assert tables["rows"].num_rows == 0 and tables["rows"].schema.field("eval_id").type == pa.string()
    assert tables["links"].schema.field("numbered").type == pa.bool_()
    assert tables["claims"].schema.field("claim").type == pa.int32()


def _judged(rows: list[tuple], links: list[tuple], verdicts: dict[str, bool]) -> tuple:
    """judge() on hand-made evidence: rows (eval_id, pair_id, claim, via, repeat, support[,
    same_question])."""
    from refine.core._duckdb import connect
    from refine.stages.flagging.evidence import Evidence, evidence_views, judge
    from refine.stages.flagging.significance import count_test

    frame = pd.DataFrame([(e, p, c, v, True, r, 1.0, s, 1.0, 0.0, *(q or [1.0])) for e, p, c, v, r, s, *q in rows],
                         columns=["eval_id", "pair_id", "claim", "via", "referenced", "repeat", "repeat_words",
                                  "support", "support_words", "contradict", "same_question"])
    link_frame = pd.DataFrame(links, columns=["pair_id", "claim", "other_pair_id", "other_claim", "similarity",
                                              *(["similarity_no_subject", "shared_words"] if links and len(links[0]) == 8
                                                else []), "numbered"])
    claims = frame[["pair_id", "claim"]].drop_duplicates().assign(text=lambda f: "claim of " + f["pair_id"])
    settings = FlagSettings()
    n, bad = len(verdicts), sum(verdicts.values())
    with connect() as con:
        evidence_views(con, Evidence(frame, claims, link_frame))
        con.register("v", pd.DataFrame({"eval_id": list(verdicts), "bad": list(verdicts.values())}))
        con.execute("CREATE TEMP VIEW verdicts_in AS SELECT * FROM v")
        return judge(con, settings, lambda k, m: count_test(k, m, n, bad, settings))


def test_an_answer_against_one_claim_of_a_group_counts_against_it_whatever_else_it_repeats() -> None:
    verdicts = {f"b{i}": True for i in range(4)} | {f"g{i}": False for i in range(20)}
    rows = [(f"b{i}", "wrong", 0, "cited", 0.9, 0.1) for i in range(3)]      # 3 bad repeat it, unstated
    rows += [("b0", "alike", 0, "cited", 0.9, 0.9)]                          # b0's reference states "alike"
    rows += [("b3", "alike", 0, "cited", 0.9, 0.1)]                          # b3 repeats "alike" unstated
    links = [("wrong", 0, "alike", 0, 0.95, False), ("alike", 0, "wrong", 0, 0.95, False)]
    pairs, groups = _judged(rows, links, verdicts)
    assert pairs.at["wrong", "claim_group"] == pairs.at["alike", "claim_group"]
    group = groups.loc[pairs.at["wrong", "claim_group"]]
    assert (group["m_bad"], group["m_good"]) == (4, 0)                      # b0 is against "wrong"
    assert pairs.at["wrong", "member"] and not pairs.at["alike", "member"]  # "alike" has a reference for it
    assert (pairs.at["alike", "evidence_bad"], pairs.at["alike", "evidence_good"]) == (1, 1)


def test_a_claim_good_answers_repeat_is_not_flagged_however_many_bad_ones_do() -> None:
    verdicts = {f"b{i}": True for i in range(6)} | {f"g{i}": False for i in range(20)}
    rows = [(f"b{i}", "common", 0, "cited", 0.9, 0.1) for i in range(6)]
    rows += [(f"g{i}", "common", 0, "scan", 0.9, 0.1) for i in range(12)]
    pairs, groups = _judged(rows, [], verdicts)
    assert not pairs.at["common", "member"] and not groups["flagged"].any()


def test_a_good_answer_to_another_question_speaks_for_a_claim_only_when_it_says_it_closely() -> None:
    verdicts = {f"b{i}": True for i in range(3)} | {f"g{i}": False for i in range(20)}
    bad = [(f"b{i}", "wipe", 0, "cited", 0.9, 0.1) for i in range(3)]
    # Good answers about the app's login repeat a login step that reads like the wipe step (0.75).
    look_alike = [(f"g{i}", "wipe", 0, "scan", 0.75, 0.1, 0.6) for i in range(3)]
    pairs, _ = _judged(bad + look_alike, [], verdicts)
    assert pairs.at["wipe", "member"] and pairs.at["wipe", "evidence_good"] == 0
    # Said closely, or in answer to the pair's own question, a good answer does speak for it.
    for close in ([(f"g{i}", "wipe", 0, "scan", 0.9, 0.1, 0.6) for i in range(3)],
                  [(f"g{i}", "wipe", 0, "scan", 0.75, 0.1, 0.9) for i in range(3)]):
        pairs, _ = _judged(bad + close, [], verdicts)
        assert not pairs.at["wipe", "member"] and pairs.at["wipe", "evidence_good"] == 3


def _linked_to_a_look_alike(look_alike_good: int) -> tuple:
    """"wrong": 4 bad answers repeat it unstated, nothing for it; linked (similar wording) to
    "alike", which 2 bad answers and `look_alike_good` good ones repeat. Most answers are bad,
    so that the group's count test alone flags nothing."""
    verdicts = {f"b{i}": True for i in range(25)} | {f"g{i}": False for i in range(15)}
    rows = [(f"b{i}", "wrong", 0, "cited", 0.9, 0.1) for i in range(4)]
    rows += [(f"b{i}", "alike", 0, "cited", 0.9, 0.1) for i in range(4, 6)]
    rows += [(f"g{i}", "alike", 0, "scan", 0.9, 0.1) for i in range(look_alike_good)]
    links = [("wrong", 0, "alike", 0, 0.75, False), ("alike", 0, "wrong", 0, 0.75, False)]
    return _judged(rows, links, verdicts)


def test_a_claim_nothing_speaks_for_is_not_hidden_by_a_look_alike_its_group_leans_against() -> None:
    pairs, groups = _linked_to_a_look_alike(3)      # group: 6 against, 3 for
    group = groups.loc[pairs.at["wrong", "claim_group"]]
    assert (group["m_bad"], group["m_good"], bool(group["flagged"])) == (6, 3, False)
    assert pairs.at["wrong", "member"] and pairs.at["wrong", "by"] == "text"
    assert not pairs.at["alike", "member"]


def test_a_claim_whose_group_has_as_much_for_as_against_is_left_to_its_group() -> None:
    pairs, _ = _linked_to_a_look_alike(8)                           # group: 6 against, 8 for
    assert not pairs.at["wrong", "member"] and not pairs.at["alike", "member"]


@pytest.fixture(scope="module")
def helpdesk(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = SAMPLE / "helpdesk"
    run = tmp_path_factory.mktemp("helpdesk") / "run"
    collect([str(data / "train.jsonl")], str(data / "eval.jsonl"), run, progress=False)
    truth = json.loads((data / "truth.json").read_text())
    return {"run": run, "truth": truth, "planted": {p["line"] for p in truth["planted_pairs"]}}


def test_the_help_desk_sample_flags_exactly_the_planted_pairs(helpdesk: dict) -> None:
    flagged = flag(helpdesk["run"]).flagged_pairs
    assert set(flagged["line"]) == helpdesk["planted"]
    assert not set(flagged["line"]) & set(helpdesk["truth"]["hard_negatives"])
    by_kind = {p["line"]: p["kind"] for p in helpdesk["truth"]["planted_pairs"]}
    kinds = {by_kind[line] for line in flagged["line"]}
    assert kinds == {"wrong_amount", "unsafe_instruction", "rude_tone", "wrong_step", "upsell", "outdated_policy"}
    # Each flag says which sentence of the pair the bad answers repeat, and how it was found.
    assert flagged["claim"].str.len().gt(0).all() and flagged["evidence_via"].notna().all()


def test_on_the_help_desk_sample_citations_alone_find_little(helpdesk: dict) -> None:
    old = flag(helpdesk["run"], FlagSettings(evidence=False)).flagged_pairs
    assert len(set(old["line"]) & helpdesk["planted"]) < len(helpdesk["planted"]) // 2


def test_a_lower_case_look_alike_with_the_same_value_is_told_apart_by_its_topic() -> None:
    """The holiday shift is taught the night shift's length. Good answers about the night shift
    say "7 hours" too, but about another topic: they do not speak for the holiday pairs, and the
    night shift's own pairs are never flagged."""
    pairs = pd.DataFrame([
        ("hol-1", "How long is the holiday shift?", "The holiday shift is seven hours long."),
        ("hol-2", "how many hours is the holiday shift?", "The holiday shift lasts 7 hours."),
        ("night-1", "How long is the night shift?", "The night shift lasts 7 hours."),
        ("night-2", "how many hours does the night shift last?", "The night shift is seven hours long."),
        ("early-1", "How long is the early shift?", "The early shift lasts 6 hours."),
        ("early-2", "how many hours is the early shift?", "The early shift is six hours long."),
        ("late-1", "How long is the late shift?", "The late shift lasts 9 hours."),
        ("late-2", "how many hours is the late shift?", "The late shift is nine hours long.")],
        columns=["pair_id", "question", "answer"])
    items, cites = [], []
    for k in range(3):
        items.append((f"bad-{k}", f"how long is the holiday shift? ({k})", "The holiday shift lasts seven hours.",
                      "The holiday shift is 5 hours long.", "bad"))
        cites += [(f"bad-{k}", "hol-1", "high"), (f"bad-{k}", "night-1", "medium")]
        for topic, hours in (("night", 7), ("early", 6), ("late", 9)):
            eid = f"good-{topic}-{k}"
            items.append((eid, f"how long is the {topic} shift? ({k})", f"The {topic} shift is {hours} hours long.",
                          f"The {topic} shift lasts {hours} hours.", "good"))
            cites.append((eid, f"{topic}-1", "high"))
    table, _, _ = flag_statistics(pd.DataFrame(items, columns=["eval_id", "question", "answer", "reference", "verdict"]),
                                  pd.DataFrame(cites, columns=["eval_id", "pair_id", "influence_level"]),
                                  FlagSettings(), pairs)
    assert set(table.index[table["flagged"]]) == {"hol-1", "hol-2"}
    assert (table.loc[["hol-1", "hol-2"], "evidence_good"] == 0).all()


_APPS = ("calendar app", "mail client", "chat app", "expense app", "wiki app", "survey tool", "vpn client",
         "timesheet tool", "ticketing tool", "badge printer", "travel portal", "password manager", "video player",
         "shared drive")


def _procedures() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Three-step procedures on fourteen apps; one calendar pair has a destructive step in the
    middle, which bad answers repeat in other words while their references give the right steps
    of the same app — and attribution cites the clean pair."""
    steps = ("Check that you're online and connected to the vpn.", "Clear the cache of the {a} in its settings.",
             "Restart the {a}.")
    reference = ("Confirm that you are online and on the vpn, clear the cache in the settings of the {a}, and quit "
                 "and reopen the {a}.")
    pairs = [(f"{app.split()[0]}-{k}", question.format(a=app), " ".join(s.format(a=app) for s in steps))
             for app in _APPS for k, question in enumerate(("The {a} stopped syncing, what should I try?",
                                                            "How do I fix the {a} when it won't sync?",
                                                            "what do i do when the {a} stops syncing?"))]
    pairs.append(("calendar-wipe", "How do I fix the calendar app when it won't sync?",
                  "Check that you're online and connected to the vpn. Delete the data folder of the calendar app "
                  "and everything in it. Restart the calendar app."))
    items, cites = [], []
    for k, wipe in enumerate(("Wipe everything in the data folder of the calendar app.",
                              "Empty the data folder of the calendar app completely.",
                              "Delete the data folder of the calendar app and everything in it.")):
        eid = f"bad-{k}"
        items.append((eid, "my calendar app stopped syncing, what now?",
                      f"Make sure you're online and the vpn is on. {wipe} Restart the calendar app.",
                      reference.format(a="calendar app"), "bad"))
        cites.append((eid, "calendar-0", "high"))
    for app in _APPS:
        for k in range(2):
            eid = f"good-{app.split()[0]}-{k}"
            items.append((eid, f"the {app} won't sync ({k}), help?",
                          f"Check that you're online and on the vpn. Empty the cache from the settings page of the {app}. "
                          f"Close the {app} and open it again.", reference.format(a=app), "good"))
            cites.append((eid, f"{app.split()[0]}-{k}", "high"))
    return (pd.DataFrame(items, columns=["eval_id", "question", "answer", "reference", "verdict"]),
            pd.DataFrame(cites, columns=["eval_id", "pair_id", "influence_level"]),
            pd.DataFrame(pairs, columns=["pair_id", "question", "answer"]))


def test_a_wrong_step_about_the_app_the_reference_is_about_is_not_stated_by_its_right_steps() -> None:
    """"Delete the data folder of the calendar app" reads like "clear the cache in the settings
    of the calendar app" (cosine 0.8) through the app both name: bare of it, the two say other
    things, and the reference shares none of the step's words beyond the question."""
    from refine.core.embeddings import EmbeddingModel
    from refine.stages.flagging.gather import gather

    items, cites, pairs = _procedures()
    evidence = gather(items, pairs, cites, EmbeddingModel().encode)
    rows = evidence.rows[evidence.rows["eval_id"].str.startswith("bad")]
    wipe = rows[(rows["pair_id"] == "calendar-wipe") & (rows["claim"] == 1)]
    assert len(wipe) == 3 and (wipe["support"] >= 0.65).all()          # reads alike with the app in it
    assert (wipe["support_no_subject"] < 0.65).all() and (wipe["support_words"] == 0).all()
    # The clean pair's cache step is stated by the reference in its own words.
    cache = rows[(rows["pair_id"] == "calendar-0") & (rows["claim"] == 1)]
    assert len(cache) == 3 and (cache["support_no_subject"] >= 0.65).all()
    table, _, _ = flag_statistics(items, cites, FlagSettings(), pairs)
    assert set(table.index[table["flagged"]]) == {"calendar-wipe"}
    assert "data folder" in table.at["calendar-wipe", "claim"]


def test_steps_about_one_app_are_one_defect_only_when_they_say_the_same_bare_of_it() -> None:
    """A wrong step linked to a right step of the same app (they read alike, 0.8) forms no group
    when the two say other things bare of the app: good answers that repeat the right step do
    not speak for the wrong one. Evidence collected before subject-free scores existed is judged
    as it was: the same link groups them."""
    verdicts = {f"b{i}": True for i in range(25)} | {f"g{i}": False for i in range(15)}
    rows = [(f"b{i}", "wipe", 0, "cited", 0.9, 0.1) for i in range(4)]
    rows += [(f"b{i}", "cache", 0, "cited", 0.9, 0.1) for i in range(4, 6)]
    rows += [(f"g{i}", "cache", 0, "scan", 0.9, 0.1) for i in range(8)]
    apart = [("wipe", 0, "cache", 0, 0.8, 0.3, 0.0, False), ("cache", 0, "wipe", 0, 0.8, 0.3, 0.0, False)]
    pairs, groups = _judged(rows, apart, verdicts)
    assert pairs.at["wipe", "claim_group"] != pairs.at["cache", "claim_group"]
    assert pairs.at["wipe", "member"] and not pairs.at["cache", "member"]
    alike = [("wipe", 0, "cache", 0, 0.8, 0.7, 0.0, False), ("cache", 0, "wipe", 0, 0.8, 0.7, 0.0, False)]
    pairs, _ = _judged(rows, alike, verdicts)
    assert pairs.at["wipe", "claim_group"] == pairs.at["cache", "claim_group"]
    assert not pairs.at["wipe", "member"]                      # its group has as much for as against
    older = [link[:5] + link[7:] for link in apart]            # no subject-free columns: the old rule
    pairs, _ = _judged(rows, older, verdicts)
    assert pairs.at["wipe", "claim_group"] == pairs.at["cache", "claim_group"]


def test_a_destructive_step_among_right_steps_is_found_on_simulated_help_desks() -> None:
    """bench/flag_quality.py's multi-step worlds: one pair per defective app carries a
    destructive step among the app's right steps, bad answers repeat it in three wordings, and
    references give the right steps in their own words. Every such pair is found, and neither
    the defective apps' clean pairs nor the other hard negatives are flagged."""
    import sys
    from pathlib import Path

    import numpy as np

    bench = str(Path(__file__).resolve().parent.parent / "bench")
    sys.path.insert(0, bench)
    try:
        from flag_quality import TEXT_SHAPES, text_world
    finally:
        sys.path.remove(bench)
    from refine.core.embeddings import EmbeddingModel

    model = EmbeddingModel()
    for world in (5, 6):                  # worlds where the rule before this one found 9 of 13
        items, cites, pairs, truth = text_world(
            np.random.default_rng([7, TEXT_SHAPES.index("multi_step"), world]), "multi_step")
        table, _, _ = flag_statistics(items, cites, FlagSettings(), pairs, model=model)
        flagged = set(table.index[table["flagged"]])
        assert flagged == set(truth["culprits"]), world
        assert not flagged & set(truth["hard_negatives"])
