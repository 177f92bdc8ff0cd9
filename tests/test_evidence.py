"""Text evidence (the default flag rule): a pair is flagged when bad answers say what it says
and their references do not — however the defect is worded, and whatever topic it shows on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from refine import FlagSettings, collect, flag
from refine.evidence_text import name_conflict, negated, numbers, sentences
from refine.flagging import flag_statistics

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
    # The clean pairs the bad answers cite say what the references say: spared.
    assert not table.loc[["ok-1", "ok-2", "ok-3", "ok-4", "vision-ok"], "flagged"].any()


def test_the_old_rule_is_one_setting_away_and_misses_what_nobody_cites() -> None:
    items, cites, pairs = _desk()
    table, _, _ = flag_statistics(items, cites, FlagSettings(evidence=False), pairs)
    assert not table.loc[table.index.str.startswith("unsafe"), "flagged"].any()


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
    assert flagged["claim"].str.len().gt(0).all() and flagged["evidence_via"].notna().any()


def test_on_the_help_desk_sample_citations_alone_find_little(helpdesk: dict) -> None:
    old = flag(helpdesk["run"], FlagSettings(evidence=False)).flagged_pairs
    assert len(set(old["line"]) & helpdesk["planted"]) < len(helpdesk["planted"]) // 2
