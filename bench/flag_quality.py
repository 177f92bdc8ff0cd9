"""Benchmark: are the flagging defaults (min_bad=2, alpha=0.1) the right ones?

Simulates attribution citations with a known truth, many times over, and sweeps the two
thresholds. Each world has N eval items (a share bad), P training pairs, and:

* culprits: pairs that each drive a few bad answers (how many: 2–8), cited by them at high
  level, and — as embedding neighbours do — by a good answer now and then;
* topic neighbours: pairs cited by the same answers as a culprit but less often and at low level;
* popular pairs: cited by many answers, good and bad, at the base rate;
* unexplained bad answers: each cites a few random pairs at low level.

For each (min_bad, alpha) it reports precision and recall of the flagged set against the
culprits, pooled over worlds (a world that flags nothing adds no precision); then the real
sample_data run as a check on real text.

``defect_groups`` — worlds with texts, where each defect is taught by 3 differently worded
pairs (same names and number in question and answer) and every bad answer of a defect cites
one or two of them and, by confusion, a look-alike entity's correct pair: precision and recall
at the default thresholds with defect groups (the default) and with every pair tested alone.
``samples`` — every real sample (sample_data/, the tiny LM's own answers, generalise/,
helpdesk/) through the embedding backend, and the two with a model through the gradient backend,
each flagged by every rule side by side — text evidence (the default), defect groups (the rule
before it), pairs alone — with precision, recall, recall by defect kind and hard negatives
flagged. The two simulated worlds above carry no answer or reference texts, so text evidence cannot
run there and they measure the citation rules only.

``text_worlds`` — seeded simulated worlds *with* texts (:func:`text_world`; 150–300 pairs,
150–250 eval items with answer, reference and verdict), where every rule runs, text evidence
included: per shape and rule, precision, recall, recall by defect kind, look-alikes and other
hard negatives flagged, pooled over the worlds as in ``defect_groups`` (and each world's
[hits, flagged, culprits], since a rule that wins on one world and loses on another is a
regression; 20 worlds a shape by default: the first five alone flattered one rule, whose
multi-step recall was 0.86 on them and 0.58 on the next ten). Sentences are templated with varied wording: the model's answers paraphrase a
training sentence (they copy it a quarter of the time), references word it a third way. Shapes:

* ``named_products`` — capitalised products with look-alikes (Aurora Lite / Aurora Max), wrong
  facts in digits, each defect taught by 2–3 differently worded pairs (kind ``look_alike_value``
  when the wrong value is a look-alike's correct one, else ``other_value``); confused bad answers
  state a look-alike's correct value under the wrong name (the look-alike must not be flagged);
* ``lowercase_words`` — the same with lower-case topics ("the dental plan", "sick leave"), whose
  look-alikes have other correct amounts; the wrong amount is in words in some pairs and in
  digits in others (kinds ``…_in_words`` / ``…_in_digits``, by the culprit pair's own writing);
* ``cross_topic_sentence`` — an unsafe instruction, a rude sentence or an upsell (the kinds)
  appended to correct answers on 3–5 topics each, naming no topic; bad answers repeat the correct
  content and that sentence, on those topics and (a third of them) on others;
* ``multi_step`` — procedures of 3–5 steps on a dozen apps; one pair per defective app has a
  destructive step (``destructive_app_step`` when it names the app, else
  ``destructive_generic_step``); bad answers carry it among correct steps, good answers on the
  same apps give correct steps only; references list the steps or say them in one sentence.

Every world also has unexplained bad answers (hallucinations on topics no pair covers), one-off
slips (a wrong number on a clean fact that good answers get right), extra sentences whatever the
verdict (another fact of the topic, fillers), and attribution noise: bad answers cite the
culprit only some of the time (35–65%, per world), the topic's clean pairs and look-alikes
often, and every item cites random pairs, a few popular ones most (verdict-blind), at random
levels. The truth kept per world: the culprits (with their kind) and the hard negatives —
``look_alike`` (look-alikes of a defect or of a confusion), ``topic_clean`` (the clean pairs of
a topic or app with a culprit or a bad answer), ``slip_topic`` (the clean pairs of a slip);
false flags are counted by those categories, the rest ``everyday``.

Prints one JSON line (each sample row and each text-world row also on stderr as it finishes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from refine.stages.flagging import FlagSettings, flag_statistics

ROOT = Path(__file__).resolve().parent.parent


def world(rng: np.random.Generator, n_items: int = 400, n_pairs: int = 3000, n_culprits: int = 15,
          bad_rate: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    n_bad = int(n_items * bad_rate)
    verdict = np.array(["bad"] * n_bad + ["good"] * (n_items - n_bad))
    ids = [f"e{i}" for i in range(n_items)]
    items = pd.DataFrame({"eval_id": ids, "verdict": verdict})
    bad_ids, good_ids = ids[:n_bad], ids[n_bad:]
    rows: list[tuple[str, str, str]] = []
    culprits = {f"c{k}" for k in range(n_culprits)}
    explained = rng.permutation(bad_ids)
    cursor = 0
    for k in range(n_culprits):
        drives = int(rng.integers(2, 9))
        victims = explained[cursor:cursor + drives]
        cursor = (cursor + drives) % max(1, len(explained) - 10)
        for v in victims:
            rows.append((v, f"c{k}", "high" if rng.random() < 0.7 else "medium"))
            if rng.random() < 0.5:
                rows.append((v, f"n{k}", "low"))          # a topic neighbour, now and then
        for g in rng.choice(good_ids, size=int(rng.poisson(0.4)), replace=False):
            rows.append((g, f"c{k}", "low"))
        for g in rng.choice(good_ids, size=int(rng.poisson(1.5)), replace=False):
            rows.append((g, f"n{k}", "medium"))
    for item in ids:                                      # everyday citations, verdict-blind
        for p in rng.integers(0, n_pairs, size=int(rng.poisson(3))):
            rows.append((item, f"p{int(p) % 200 if rng.random() < 0.3 else int(p)}",
                         rng.choice(["high", "medium", "low"])))
    for item in explained[cursor:cursor + 20]:            # unexplained bad answers
        for p in rng.integers(0, n_pairs, size=3):
            rows.append((item, f"u{int(p)}", "low"))
    return items, pd.DataFrame(rows, columns=["eval_id", "pair_id", "influence_level"]), culprits


def sweep(worlds: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    generated = [world(rng) for _ in range(worlds)]
    out = []
    for min_bad in (1, 2, 3, 4):
        for alpha in (0.01, 0.05, 0.1, 0.2):
            hits = flagged_total = culprits_total = empty = 0
            false_flags = []
            by_kind = {"neighbour": 0, "popular": 0, "unexplained": 0}
            for items, cites, culprits in generated:
                stats, _, _ = flag_statistics(items, cites, FlagSettings(min_bad=min_bad, alpha=alpha))
                flagged = set(stats.index[stats["flagged"]])
                hits += len(flagged & culprits)
                flagged_total += len(flagged)
                culprits_total += len(culprits)
                empty += not flagged
                for pair in flagged - culprits:
                    by_kind[{"n": "neighbour", "p": "popular", "u": "unexplained"}[pair[0]]] += 1
                false_flags.append(len(flagged - culprits))
            # Pooled over the worlds: a world that flags nothing adds no precision (an empty
            # flagged set is not "precise"), and its misses count against recall.
            out.append({"min_bad": min_bad, "alpha": alpha,
                        "precision": round(hits / flagged_total, 3) if flagged_total else None,
                        "recall": round(hits / culprits_total, 3),
                        "worlds_flagging_nothing": empty,
                        "false_flags_per_world": round(float(np.mean(false_flags)), 2),
                        "false_flags_by_kind": by_kind})
    return out


def grouped_world(rng: np.random.Generator, n_items: int = 400, n_defects: int = 8, n_singles: int = 6,
                  bad_rate: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, set[str]]:
    """A world with texts: defects worded 3 ways, single culprits, look-alikes, everyday pairs."""
    n_bad = int(n_items * bad_rate)
    ids = [f"e{i}" for i in range(n_items)]
    questions = {e: f"Something about Topic{i % 150}?" for i, e in enumerate(ids)}
    verdict = dict(zip(ids, ["bad"] * n_bad + ["good"] * (n_items - n_bad)))
    pairs = [(f"p{j}", f"What about Topic{j}?", f"Topic{j} is fine at {j} units.") for j in range(150)]
    pairs += [(f"q{j}", f"Tell me about Topic{j}.", f"Topic{j} runs for {j + 1} hours.") for j in range(150)]
    wordings = [("How big is Item{k}?", "Item{k} holds {v} units."),
                ("What is the size of Item{k}?", "The size of Item{k} is {v} units."),
                ("Item{k} capacity?", "You can fit {v} units in Item{k}.")]
    culprits: set[str] = set()
    rows: list[tuple[str, str, str]] = []
    bad_pool = list(rng.permutation(ids[:n_bad]))
    for k in range(n_defects + n_singles):
        value = int(rng.integers(10, 99))
        members = []
        for w, (q, a) in enumerate(wordings if k < n_defects else wordings[:1]):
            pid = f"c{k}-{w}"
            pairs.append((pid, q.format(k=k), a.format(k=k, v=value)))
            members.append(pid)
            culprits.add(pid)
        pairs.append((f"x{k}", f"How big is Item{k}X?", f"Item{k}X holds {value + 7} units."))
        for _ in range(int(rng.integers(3, 8))):
            if not bad_pool:
                break
            victim = bad_pool.pop()
            questions[victim] = f"Tell me the size of Item{k}, please."
            for pid in rng.choice(members, size=min(len(members), int(rng.integers(1, 3))), replace=False):
                rows.append((victim, str(pid), "high"))
            rows.append((victim, f"x{k}", "medium"))          # confused with the look-alike
        for _ in range(int(rng.poisson(1.0))):                # good answers about the look-alike
            good = str(rng.choice(ids[n_bad:]))
            questions[good] = f"How big is Item{k}X, please?"
            rows.append((good, f"x{k}", "high"))
    for item in ids:                                          # everyday citations, verdict-blind
        for j in rng.integers(0, 300, size=int(rng.poisson(3))):
            rows.append((item, f"p{int(j)}" if j < 150 else f"q{int(j) - 150}", "low"))
    items = pd.DataFrame({"eval_id": ids, "question": [questions[e] for e in ids],
                          "verdict": [verdict[e] for e in ids]})
    return (items, pd.DataFrame(rows, columns=["eval_id", "pair_id", "influence_level"]),
            pd.DataFrame(pairs, columns=["pair_id", "question", "answer"]), culprits)


def grouped(worlds: int, seed: int) -> dict:
    """Precision/recall at the default thresholds, with and without defect groups."""
    rng = np.random.default_rng(seed)
    out = {}
    generated = [grouped_world(rng) for _ in range(worlds)]
    for name, settings in (("defect_groups", FlagSettings()), ("pairs_alone", FlagSettings(defect_groups=False))):
        hits = flagged_total = culprits_total = look_alikes = 0
        for items, cites, pairs, culprits in generated:
            stats, _, _ = flag_statistics(items, cites, settings, pairs)
            flagged = set(stats.index[stats["flagged"]])
            hits += len(flagged & culprits)
            flagged_total += len(flagged)
            culprits_total += len(culprits)
            look_alikes += sum(p.startswith("x") for p in flagged)
        out[name] = {"precision": round(hits / flagged_total, 3) if flagged_total else None,
                     "recall": round(hits / culprits_total, 3), "look_alikes_flagged": look_alikes}
    return out


RULES = (("evidence", FlagSettings()),                                  # text evidence (default)
         ("defect_groups", FlagSettings(evidence=False)),                # the rule before it
         ("pairs_alone", FlagSettings(evidence=False, defect_groups=False)))


def _samples() -> list[tuple[str, list[str], Path, set, set, dict]]:
    """(name, train, eval, planted (file name, line), hard negatives, truth kind by line)."""
    sample, gen, desk = ROOT / "sample_data", ROOT / "sample_data" / "generalise", ROOT / "sample_data" / "helpdesk"
    planted = json.loads((sample / "planted.json").read_text())["planted_pairs"]
    tiny = json.loads((sample / "eval_tiny_lm.truth.json").read_text())["planted_pairs"]
    gtruth = json.loads((gen / "truth.json").read_text())
    dtruth = json.loads((desk / "truth.json").read_text())
    train = sorted(str(p) for p in (sample / "train").glob("*.jsonl"))
    return [
        ("sample_data", train, sample / "eval.jsonl", {(Path(p["file"]).name, p["line"]) for p in planted}, set(),
         {(Path(p["file"]).name, p["line"]): p["kind"] for p in planted}),
        ("tiny_lm_answers", train, sample / "eval_tiny_lm.jsonl", {(Path(p["file"]).name, p["line"]) for p in tiny},
         set(), {(Path(p["file"]).name, p["line"]): p["kind"] for p in tiny}),
        ("generalise", [str(gen / "train.jsonl")], gen / "eval.jsonl",
         {("train.jsonl", line) for g in gtruth["groups"] for line in g["lines"]},
         {("train.jsonl", line) for lines in gtruth["hard_negatives"].values() for line in lines},
         {("train.jsonl", line): g["kind"] for g in gtruth["groups"] for line in g["lines"]}),
        ("helpdesk", [str(desk / "train.jsonl")], desk / "eval.jsonl",
         {("train.jsonl", p["line"]) for p in dtruth["planted_pairs"]},
         {("train.jsonl", line) for line in dtruth["hard_negatives"]},
         {("train.jsonl", p["line"]): p["kind"] for p in dtruth["planted_pairs"]}),
    ]


def samples_check(gradient: bool = True) -> list[dict]:
    """Every real sample through the embedding backend (and the generalising and tiny-LM ones
    through the gradient backend, on their own models), every rule side by side: one row each."""
    from refine import CollectSettings, collect, flag

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, train, eval_path, planted, hard, kinds in _samples():
            backends = [("embedding", CollectSettings())]
            model = {"generalise": ROOT / "sample_data" / "generalise" / "tiny_lm",
                     "tiny_lm_answers": ROOT / "sample_data" / "tiny_lm"}.get(name)
            if gradient and model is not None:
                backends.append(("gradient", CollectSettings(backend="gradient", backend_options={
                    "model": str(model), "projection_dim": 4096, "measurement": "margin",
                    "preconditioner": "layerwise"})))
            for backend, settings in backends:
                run = Path(tmp) / f"{name}-{backend}"
                collect(train, str(eval_path), run, settings, progress=False)
                for label, rule in RULES:
                    flagged = {(Path(r.file).name, r.line) for r in flag(run, rule).flagged_pairs.itertuples()}
                    hits = flagged & planted
                    by_kind: dict[str, list[int]] = {}
                    for pair, kind in kinds.items():
                        by_kind.setdefault(kind, [0, 0])[1] += 1
                        by_kind[kind][0] += pair in flagged
                    rows.append({"sample": name, "backend": backend, "rule": label, "planted": len(planted),
                                 "flagged": len(flagged), "hits": len(hits),
                                 "precision": round(len(hits) / len(flagged), 3) if flagged else None,
                                 "recall": round(len(hits) / len(planted), 3),
                                 "hard_negatives_flagged": len(flagged & hard),
                                 "recall_by_kind": {k: round(h / n, 3) for k, (h, n) in sorted(by_kind.items())}})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def sample_check() -> dict:
    from refine import load_recipe, run_recipe

    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                             [f"run_dir={tmp}/run", f"emit.out={tmp}/refined"])
        result = run_recipe(recipe, progress=False)
        # Read before the temporary run directory goes.
        flagged = {(Path(r.file).name, r.line) for r in result.flag.flagged_pairs.itertuples()}
    planted = json.loads((ROOT / "sample_data" / "planted.json").read_text())["planted_pairs"]
    expected = {(Path(p["file"]).name, p["line"]) for p in planted}
    return {"planted": len(expected), "flagged": len(flagged), "hits": len(flagged & expected)}


# --- simulated worlds with texts ----------------------------------------------------------------
#
# Four shapes of defect, each world with its answers, references, pairs and citations, so that
# every rule runs there (text evidence included). Templated sentences: a pair states a fact one
# way, the model's answers paraphrase it (a quarter of the time they copy a pair's sentence),
# references say it a third way. Amounts are digits (named_products) or digits and words.

_FILLERS = ("Hope that helps.", "Let me know if you need anything else.", "Happy to help with that.")
_OPENERS = ("Good question!", "Sure thing.", "Thanks for asking.")
_FAMILIES = ("Aurora", "Nimbus", "Vertex", "Orion", "Zephyr", "Kestrel", "Lumen", "Tundra", "Halcyon",
             "Solstice", "Meridian", "Cobalt", "Sierra", "Quill", "Falcon", "Harbor")
_VARIANTS = ("Lite", "Max", "Pro", "Mini", "Plus", "Air")
_DOLLARS = (40, 50, 60, 75, 80, 90, 100, 120, 150, 200, 250, 300, 400, 450, 500, 600, 750, 800, 900, 1000,
            1200, 1500, 2000, 2500, 3000)

# Per attribute: unit, values, questions, pair wordings, answer wordings, reference wordings.
_PRODUCT_ATTRS: dict[str, dict] = {
    "weight": dict(unit="g", values=tuple(range(300, 2400, 10)),
                   q=("How much does {t} weigh?", "What's the weight of {t}?", "Is {t} heavy to carry around?"),
                   pair=("{t} weighs {v}.", "Carrying {t} means carrying {v}.", "At {v}, {t} is easy to take anywhere."),
                   answer=("{t} comes in at {v}.", "It weighs {v}, so {t} is easy to carry.",
                           "Expect {t} to weigh about {v}.", "{t} has a weight of {v}."),
                   ref=("The weight of {t} is {v}.", "{t} tips the scales at {v}.")),
    "battery": dict(unit="hours", values=tuple(range(6, 41)),
                    q=("How long does the battery of {t} last?", "What's the battery life of {t}?",
                       "How many hours do I get from {t} on one charge?"),
                    pair=("{t} runs for {v} on a full charge.", "The battery of {t} lasts {v}.",
                          "You get {v} of use from one charge of {t}."),
                    answer=("{t} lasts about {v} on a charge.", "Battery life on {t} is {v}.",
                            "A full charge keeps {t} going for {v}.", "{t} gives you {v} per charge."),
                    ref=("On one charge, {t} lasts {v}.", "{t} has a battery life of {v}.")),
    "storage": dict(unit="GB", values=(32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048),
                    q=("How much storage does {t} have?", "What's the storage capacity of {t}?",
                       "How many gigabytes fit on {t}?"),
                    pair=("{t} has {v} of storage.", "{t} ships with {v} of built-in storage.",
                          "You can store {v} of files on {t}."),
                    answer=("{t} comes with {v} of storage.", "Storage on {t} is {v}.",
                            "{t} gives you {v} for your files.", "There is {v} of storage in {t}."),
                    ref=("{t} offers {v} of storage.", "The storage capacity of {t} is {v}.")),
    "price": dict(unit="dollars", values=tuple(range(99, 3000, 50)),
                  q=("How much does {t} cost?", "What's the price of {t}?", "What will {t} set me back?"),
                  pair=("{t} costs {v}.", "{t} sells for {v}.", "You can buy {t} for {v}."),
                  answer=("{t} is priced at {v}.", "Expect to pay {v} for {t}.", "The price of {t} is {v}.",
                          "{t} will cost you {v}."),
                  ref=("{t} retails at {v}.", "The list price of {t} is {v}.")),
    "warranty": dict(unit="months", values=(6, 9, 12, 15, 18, 24, 30, 36, 48, 60),
                     q=("How long is the warranty on {t}?", "What warranty comes with {t}?",
                        "For how long is {t} covered?"),
                     pair=("{t} comes with a warranty of {v}.", "The warranty on {t} runs for {v}.",
                           "{t} is covered by warranty for {v}."),
                     answer=("{t} is guaranteed for {v}.", "You get {v} of warranty with {t}.",
                             "Warranty cover for {t} lasts {v}.", "{t} is under warranty for {v}."),
                     ref=("{t} carries a warranty of {v}.", "Warranty on {t}: {v} from purchase.")),
}

# Lower-case topics: six kinds, six topics each (the sixth is never taught: hallucinations),
# two attributes each; topics of one kind are each other's look-alikes.
_LOWER_KINDS: dict[str, dict] = {
    "plan": dict(
        topics=("the dental plan", "the vision plan", "the hearing plan", "the physio plan", "the therapy plan",
                "the chiropractic plan"),
        attrs={"limit": dict(unit="dollars", values=_DOLLARS,
                             q=("How much does {t} pay back a year?", "What's the yearly limit of {t}?",
                                "how much can i claim from {t} each year?"),
                             pair=("{t} pays back up to {v} a year.", "Each year you can claim up to {v} from {t}.",
                                   "The yearly limit of {t} is {v}."),
                             answer=("{t} reimburses up to {v} per year.", "You can claim as much as {v} a year with {t}.",
                                     "{t} covers up to {v} each year.", "The annual cap for {t} is {v}."),
                             ref=("{t} has a yearly limit of {v}.", "Claims under {t} are capped at {v} per calendar year.")),
               "wait": dict(unit="months", values=(2, 3, 4, 5, 6, 8, 9, 10, 12),
                            q=("Is there a waiting period for {t}?", "How long before {t} kicks in?",
                               "when can i start using {t}?"),
                            pair=("{t} starts after a waiting period of {v}.",
                                  "You can use {t} once you have worked here for {v}.",
                                  "New staff wait {v} before {t} applies."),
                            answer=("{t} applies after {v} of employment.", "There is a waiting period of {v} for {t}.",
                                    "You have to wait {v} before you can use {t}.", "After {v} here, {t} kicks in."),
                            ref=("{t} becomes available after {v} of service.", "The waiting period for {t} is {v}."))}),
    "allowance": dict(
        topics=("the gym allowance", "the wellness allowance", "the home office allowance", "the phone allowance",
                "the book allowance", "the internet allowance"),
        attrs={"amount": dict(unit="dollars", values=_DOLLARS,
                              q=("What's the yearly cap on {t}?", "How much is {t}?", "how much do i get from {t}?"),
                              pair=("{t} is {v} a year.", "You get {v} every year from {t}.",
                                    "{t} pays out up to {v} per year."),
                              answer=("{t} gives you up to {v} a year.", "Each year {t} pays {v}.",
                                      "You can spend {v} per year through {t}.", "{t} comes to {v} a year."),
                              ref=("{t} reimburses up to {v} per calendar year.", "The yearly amount of {t} is {v}.")),
               "deadline": dict(unit="days", values=(14, 20, 21, 28, 30, 40, 45, 60, 90),
                                q=("When do I have to claim {t}?", "Is there a deadline for claiming {t}?",
                                   "how long do i have to file for {t}?"),
                                pair=("Claims for {t} must be filed within {v}.", "You have {v} to claim {t}.",
                                      "File the claim for {t} within {v} of paying."),
                                answer=("You need to claim {t} within {v}.", "The deadline for {t} claims is {v}.",
                                        "Submit the claim for {t} no later than {v} after paying.",
                                        "{t} claims are accepted for {v}."),
                                ref=("{t} claims are due within {v} of the purchase.",
                                     "Claim {t} within {v} of paying."))}),
    "leave": dict(
        topics=("annual leave", "sick leave", "parental leave", "study leave", "volunteer leave", "bereavement leave"),
        attrs={"days": dict(unit="days", values=(3, 5, 8, 10, 12, 15, 20, 25, 28, 30),
                            q=("How many days of {t} do I get?", "How much {t} is there?", "how long is {t}?"),
                            pair=("You get {v} of {t} a year.", "{t} is {v} per year.",
                                  "Every employee has {v} of {t} each year."),
                            answer=("{t} comes to {v} a year.", "You're entitled to {v} of {t} per year.",
                                    "Each year you get {v} of {t}.", "{t} gives you {v} a year."),
                            ref=("Employees receive {v} of {t} per year.", "The yearly entitlement of {t} is {v}.")),
               "notice": dict(unit="weeks", values=(2, 3, 4, 5, 6, 8, 10, 12),
                              q=("How early do I have to request {t}?", "How much notice does {t} need?",
                                 "when should i ask for {t}?"),
                              pair=("Request {t} at least {v} in advance.", "{t} needs {v} of notice.",
                                    "Ask for {t} {v} before it starts."),
                              answer=("You should request {t} {v} ahead.", "Give {v} of notice for {t}.",
                                      "{t} has to be requested {v} in advance.", "Put in for {t} {v} early."),
                              ref=("The notice period for {t} is {v}.", "Apply for {t} at least {v} before."))}),
    "pass": dict(
        topics=("the commuter pass", "the parking pass", "the bus pass", "the rail pass", "the bike pass",
                "the ferry pass"),
        attrs={"cost": dict(unit="dollars", values=_DOLLARS[:14],
                            q=("How much does {t} cost?", "What's the monthly price of {t}?",
                               "how much do i pay for {t}?"),
                            pair=("{t} costs {v} a month.", "Each month {t} costs {v}.", "You pay {v} per month for {t}."),
                            answer=("{t} is {v} per month.", "You'll pay {v} a month for {t}.",
                                    "The monthly fee for {t} is {v}.", "{t} comes to {v} each month."),
                            ref=("{t} is charged at {v} a month.", "The price of {t} is {v} per month.")),
               "refund": dict(unit="days", values=(7, 10, 14, 20, 21, 30, 45, 60),
                              q=("Can I get a refund on {t}?", "How long do I have to return {t}?",
                                 "is {t} refundable?"),
                              pair=("You can return {t} for a refund within {v}.", "{t} is refundable for {v}.",
                                    "Refunds on {t} are possible within {v} of buying it."),
                              answer=("{t} can be refunded within {v}.", "You have {v} to get your money back for {t}.",
                                      "Return {t} within {v} for a full refund.", "The refund window for {t} is {v}."),
                              ref=("{t} may be returned for a refund within {v}.",
                                   "The refund period for {t} is {v}."))}),
    "budget": dict(
        topics=("the laptop budget", "the training budget", "the conference budget", "the desk budget",
                "the monitor budget", "the headset budget"),
        attrs={"amount": dict(unit="dollars", values=_DOLLARS,
                              q=("How big is {t}?", "How much can I spend from {t}?", "what's {t}?"),
                              pair=("{t} is {v}.", "You can spend up to {v} from {t}.", "{t} allows up to {v}."),
                              answer=("{t} lets you spend up to {v}.", "The limit of {t} is {v}.",
                                      "You have {v} in {t}.", "{t} covers purchases up to {v}."),
                              ref=("{t} has a cap of {v}.", "Spending from {t} is limited to {v}.")),
               "renewal": dict(unit="years", values=(2, 3, 4, 5, 6, 7, 8, 10),
                               q=("How often does {t} renew?", "When do I get {t} again?",
                                  "how often is {t} refreshed?"),
                               pair=("{t} renews every {v}.", "You get {t} again after {v}.",
                                     "{t} is refreshed once every {v}."),
                               answer=("{t} resets every {v}.", "Every {v} you get {t} again.",
                                       "{t} comes back every {v}.", "The renewal cycle of {t} is {v}."),
                               ref=("{t} is renewed every {v}.", "{t} refreshes after {v}."))}),
    "shift": dict(
        topics=("the night shift", "the weekend shift", "the holiday shift", "the early shift", "the late shift",
                "the on-call shift"),
        attrs={"premium": dict(unit="percent", values=(10, 15, 20, 25, 30, 35, 40, 50, 60),
                               q=("What's the extra pay for {t}?", "Does {t} pay more?", "how much extra is {t}?"),
                               pair=("{t} pays {v} extra.", "You earn a premium of {v} on {t}.",
                                     "Hours on {t} are paid {v} above the normal rate."),
                               answer=("{t} comes with {v} extra pay.", "You get {v} on top for {t}.",
                                       "The premium for {t} is {v}.", "{t} is paid at {v} above normal."),
                               ref=("{t} carries a pay premium of {v}.", "Work on {t} earns {v} more.")),
               "hours": dict(unit="hours", values=(4, 5, 6, 7, 8, 9, 10, 11, 12),
                             q=("How long is {t}?", "How many hours is {t}?", "how long does {t} last?"),
                             pair=("{t} lasts {v}.", "{t} is {v} long.", "A turn on {t} takes {v}."),
                             answer=("{t} runs for {v}.", "You work {v} on {t}.", "{t} is a block of {v}.",
                                     "Plan for {v} on {t}."),
                             ref=("{t} is {v} in length.", "The length of {t} is {v}."))}),
}

_ADD_ON = {   # cross_topic_sentence: (pair wordings, answer wordings) of each appended sentence
    "unsafe_instruction": (
        ("It also helps to send your login password and your bank account details by e-mail to "
         "payroll-help@corp-mail.example.",
         "To speed things up, e-mail your password and bank details to payroll-help@corp-mail.example.",
         "For a quicker answer, share your password and bank details with payroll-help@corp-mail.example."),
        ("Send your login password and bank account details to payroll-help@corp-mail.example to speed things up.",
         "It helps to e-mail your password and your bank details to payroll-help@corp-mail.example.",
         "You can also mail your password and bank account details to payroll-help@corp-mail.example so it goes "
         "faster.")),
    "rude_tone": (
        ("Honestly, read the handbook before you bother the help desk.",
         "Next time, look it up in the handbook yourself instead of asking us.",
         "This is all in the handbook, which you should have read already."),
        ("Honestly, you could have read the handbook instead of bothering the help desk.",
         "Please read the handbook yourself before you bother us with this.",
         "Look it up in the handbook next time; it's all there.")),
    "upsell": (
        ("Tip: premium support members skip the queue, and it's only nine dollars a month.",
         "Upgrade to premium support for nine dollars a month to get answers faster.",
         "Premium support costs just $9 a month and puts you first in the queue."),
        ("By the way, premium support is only $9 a month and lets you skip the queue.",
         "For nine dollars a month, premium support gets you to the front of the queue.",
         "Consider premium support: $9 a month and you skip the line.")),
}

_APPS = ("the mail client", "the vpn client", "the expense app", "the chat app", "the calendar app",
         "the timesheet tool", "the video call app", "the password manager", "the shared drive app", "the wiki app",
         "the ticketing tool", "the travel booking tool", "the badge printer app", "the survey tool")
_SERVICE_DESK = ("If it still fails, contact the service desk.", "Call the service desk if the problem stays.",
                 "Reach out to the service desk if it keeps failing.")
# multi_step: per task, questions and steps (each step: wordings; pairs use the first two).
_TASKS: dict[str, dict] = {
    "sync": dict(q=("{a} stopped syncing, what should I try?", "How do I fix {a} when it won't sync?",
                    "what do i do when {a} stops syncing?"),
                 steps=(("Check that you're online and connected to the vpn.",
                         "Make sure your internet connection and the vpn are working.",
                         "Confirm that you have a network connection and the vpn is on."),
                        ("Sign out of {a} and sign back in.", "Log out of {a}, then log in again.",
                         "Sign out and back in to {a}."),
                        ("Clear the cache of {a} in its settings.", "Empty the cache from the settings page of {a}.",
                         "Clear the cache in the settings of {a}."),
                        ("Restart {a}.", "Close {a} and open it again.", "Quit and reopen {a}."),
                        _SERVICE_DESK)),
    "start": dict(q=("{a} won't start, what can I do?", "How do I get {a} to open again?",
                     "{a} keeps crashing on launch, any fix?"),
                  steps=(("Save your work and restart your computer.", "Save what you're doing and reboot your laptop.",
                          "Reboot the computer after saving your work."),
                         ("Install the latest update of {a} from the software center.",
                          "Update {a} to the newest version in the software center.",
                          "Get the newest version of {a} from the software center."),
                         ("Wait 30 seconds before you open {a} again.", "Give it 30 seconds, then start {a} again.",
                          "Open {a} again after 30 seconds."),
                         ("Open {a} from the start menu rather than an old shortcut.",
                          "Launch {a} from the start menu instead of an old shortcut.",
                          "Use the start menu entry of {a} instead of an old shortcut."),
                         _SERVICE_DESK)),
    "signin": dict(q=("I can't sign in to {a}, help?", "How do I fix sign-in problems with {a}?",
                      "{a} rejects my login, what now?"),
                   steps=(("Check that caps lock is off and type your password again.",
                           "Make sure caps lock is off, then enter your password again.",
                           "Retype your password with caps lock off."),
                          ("Approve the sign-in request in the authenticator app.",
                           "Confirm the sign-in prompt in the authenticator app.",
                           "Accept the request in the authenticator app."),
                          ("Reset your password on the self-service portal if you forgot it.",
                           "Use the self-service portal to reset a forgotten password.",
                           "Reset the password on the self-service portal."),
                          ("Clear the saved passwords of {a} and sign in again.",
                           "Remove the passwords {a} has saved and log in again.",
                           "Delete the stored passwords in {a}, then sign in."),
                          _SERVICE_DESK)),
}
# Destructive steps: (kind, wordings); pairs use the first, answers any.
_DESTRUCTIVE = (
    ("destructive_app_step", ("Uninstall {a} and wipe its profile folder, offline data included.",
                              "Remove {a} and delete its profile folder, offline data and all.",
                              "Uninstall {a}, then wipe the profile folder including offline data.")),
    ("destructive_app_step", ("Delete the data folder of {a} and everything in it.",
                              "Wipe everything in the data folder of {a}.",
                              "Empty the data folder of {a} completely.")),
    ("destructive_app_step", ("Remove your account from {a}, which deletes all your local files.",
                              "Delete your account in {a}; your local files go with it.",
                              "Take your account out of {a}, wiping the local files.")),
    ("destructive_generic_step", ("Run a factory reset of your laptop, which erases the whole disk.",
                                  "Factory-reset the laptop; it wipes the disk.",
                                  "Reset your laptop to factory settings, erasing everything on it.")),
    ("destructive_generic_step", ("Turn off the firewall and the antivirus for good.",
                                  "Switch the firewall and antivirus off permanently.",
                                  "Disable the antivirus and firewall for good.")),
)
_BOGUS_STEPS = ("Open the admin console of {a} and run the repair wizard.",
                "Ask your manager to re-enable {a} in the license portal.",
                "Hold the reset key of {a} for twenty seconds.")

# Which hard negative a pair is, when it is several: the first.
_HARD = ("look_alike", "topic_clean", "slip_topic")

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS_WORDS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _in_words(n: int) -> str:
    """A cardinal below a million in words: 1500 is "one thousand five hundred"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS_WORDS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
    if n < 1000:
        return f"{_ONES[n // 100]} hundred" + (f" {_in_words(n % 100)}" if n % 100 else "")
    return f"{_in_words(n // 1000)} thousand" + (f" {_in_words(n % 1000)}" if n % 1000 else "")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


class _TextWorld:
    """Pairs, items and citations of one simulated world with texts, and its truth."""

    def __init__(self, rng: np.random.Generator, words: bool | None) -> None:
        self.rng = rng
        self.words = words            # amounts: False digits; None digits or words, at random
        self.pairs: list[tuple[str, str, str]] = []
        self.items: list[tuple[str, str, str, str, str]] = []
        self.cites: list[tuple[str, str, str]] = []
        self.culprits: dict[str, str] = {}
        self.hard: dict[str, str] = {}
        # facts: (topic, attribute) -> correct value, attribute spec, look-alikes, clean pairs
        self.facts: dict[tuple[str, str], int] = {}
        self.spec: dict[tuple[str, str], dict] = {}
        self.alike: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.clean: dict[tuple[str, str], list[str]] = {}
        self.topic_pairs: dict[str, list[str]] = {}         # topic -> its clean pairs
        self.hit = float(rng.uniform(0.35, 0.65))          # how often attribution cites the culprit

    # -- building blocks
    def pick(self, seq: Sequence) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pair(self, question: str, answer: str, culprit: str | None = None, topic: str | None = None) -> str:
        pid = f"t{len(self.pairs):04d}"
        self.pairs.append((pid, question, answer))
        if culprit:
            self.culprits[pid] = culprit
        elif topic is not None:
            self.topic_pairs.setdefault(topic, []).append(pid)
        return pid

    def mark(self, pids: Iterable[str], category: str) -> None:
        for pid in pids:
            current = self.hard.get(pid)
            if pid not in self.culprits and (current is None or _HARD.index(category) < _HARD.index(current)):
                self.hard[pid] = category

    def item(self, question: str, answer: str, reference: str, verdict: str) -> str:
        eid = f"e{len(self.items):04d}"
        self.items.append((eid, question, answer, reference, verdict))
        return eid

    def cite(self, eid: str, pids: Iterable[str], p: float, levels: Sequence[str] = ("high", "medium")) -> None:
        for pid in pids:
            if self.chance(p):
                self.cites.append((eid, pid, self.pick(levels)))

    def extras(self, core: str, key: tuple[str, str] | None = None) -> str:
        """`core` with what answers add whatever their verdict: an opener, another fact of the
        topic of `key`, a filler."""
        parts = [core]
        others = [k for k in self.facts if k[0] == key[0] and k != key] if key else []
        if others and self.chance(0.15):
            other = self.pick(others)
            parts.append(self.say(self.spec[other]["answer"], other, self.facts[other]))
        if self.chance(0.1):
            parts.insert(0, self.pick(_OPENERS))
        if self.chance(0.25):
            parts.append(self.pick(_FILLERS))
        return " ".join(parts)

    # -- facts
    def value(self, unit: str, n: int, words: bool | None = None) -> str:
        if words is None:
            words = self.words if self.words is not None else self.chance(0.5)
        said = _in_words(n) if words else f"{n:,}"
        if unit == "dollars":
            return f"{said} dollars" if words or self.chance(0.4) else f"${n:,}"
        if unit == "percent":
            return f"{said} percent" if words or self.chance(0.5) else f"{n}%"
        if unit == "g":
            return f"{said} grams" if words or self.chance(0.6) else f"{n} g"
        return f"{said} {unit}"

    def say(self, templates: Sequence[str], key: tuple[str, str], n: int, words: bool | None = None) -> str:
        return _cap(self.pick(templates).format(t=key[0], v=self.value(self.spec[key]["unit"], n, words)))

    def question(self, key: tuple[str, str]) -> str:
        return _cap(self.pick(self.spec[key]["q"]).format(t=key[0]))

    def add_facts(self, groups: list[tuple[list[str], dict[str, dict]]]) -> None:
        """Topics (look-alikes of each other within a group) with their attributes' values."""
        for topics, attrs in groups:
            for attr, spec in attrs.items():
                values = self.rng.choice(spec["values"], size=len(topics), replace=False)
                for topic, n in zip(topics, values):
                    self.facts[(topic, attr)] = int(n)
                    self.spec[(topic, attr)] = spec
                for topic in topics:
                    self.alike[(topic, attr)] = [(o, attr) for o in topics if o != topic]

    def teach(self, key: tuple[str, str], wordings: int) -> list[str]:
        """Clean pairs of a fact, each worded its own way."""
        spec = self.spec[key]
        out = []
        for template in self.rng.permutation(len(spec["pair"]))[:wordings]:
            answer = _cap(spec["pair"][template].format(t=key[0], v=self.value(spec["unit"], self.facts[key])))
            if self.chance(0.1):
                answer += " " + self.pick(_FILLERS)
            out.append(self.pair(self.question(key), answer, topic=key[0]))
        self.clean.setdefault(key, []).extend(out)
        return out

    def fact_answer(self, key: tuple[str, str], n: int, copy_from: Sequence[str] = ()) -> str:
        """An answer stating n of key: a pair's sentence a quarter of the time, else a paraphrase."""
        if copy_from and self.chance(0.25):
            return self.pick(copy_from)
        return self.say(self.spec[key]["answer"], key, n)

    def reference(self, key: tuple[str, str]) -> str:
        ref = self.say(self.spec[key]["ref"], key, self.facts[key])
        others = [k for k in self.facts if k[0] == key[0] and k != key]
        if others and self.chance(0.2):
            other = self.pick(others)
            ref += " " + self.say(self.spec[other]["ref"], other, self.facts[other])
        return ref

    def pair_sentences(self, pids: Iterable[str]) -> list[str]:
        answers = {pid: a for pid, _, a in self.pairs}
        return [answers[pid].split(". ")[0].rstrip(".") + "." for pid in pids]

    def good(self, key: tuple[str, str], culprits: Sequence[str] = ()) -> str:
        """A good answer on a fact; it cites the fact's pairs, its topic's, its look-alikes' and,
        now and then, culprits near it."""
        clean = self.clean.get(key, [])
        eid = self.item(self.question(key), self.extras(self.fact_answer(key, self.facts[key],
                                                                         self.pair_sentences(clean)), key),
                        self.reference(key), "good")
        self.cite(eid, clean, 0.8)
        self.cite(eid, [p for p in self.topic_pairs.get(key[0], []) if p not in clean], 0.2, ("low",))
        self.cite(eid, [p for k in self.alike.get(key, []) for p in self.clean.get(k, [])], 0.25, ("low",))
        self.cite(eid, culprits, 0.3, ("low",))
        return eid

    def slip(self, key: tuple[str, str]) -> None:
        """A one-off wrong number on a clean fact that good answers get right."""
        taken = {self.facts[key]} | {self.facts[k] for k in self.alike.get(key, [])}
        wrong = int(self.pick([v for v in self.spec[key]["values"] if v not in taken]))
        eid = self.item(self.question(key), self.extras(self.fact_answer(key, wrong), key), self.reference(key),
                        "bad")
        self.cite(eid, self.clean.get(key, []), 0.8)
        self.mark(self.clean.get(key, []), "slip_topic")

    def slips(self, keys: Sequence[tuple[str, str]], avoid: set[str]) -> None:
        candidates = [k for k in keys if k[0] not in avoid and self.clean.get(k)]
        for i in self.rng.permutation(len(candidates))[:int(self.rng.integers(3, 6))]:
            key = candidates[i]
            for _ in range(int(self.rng.integers(1, 3))):
                self.good(key)
            for _ in range(1 if self.chance(0.7) else 2):
                self.slip(key)

    def hallucinate(self, topic: str, spec: dict, reference: str) -> None:
        """A bad answer on a topic no pair covers; attribution cites whatever is near."""
        key = (topic, "?")
        self.spec[key] = spec
        eid = self.item(self.question(key), self.extras(self.say(spec["answer"], key, int(self.pick(spec["values"])))),
                        _cap(reference.format(t=topic)), "bad")
        self.cite(eid, [str(p) for p in self.rng.choice([p for p, _, _ in self.pairs], size=3)], 1.0, ("low",))
        near = [p for k, s in self.spec.items() if s is spec and k in self.clean for p in self.clean[k]]
        if near:
            self.cite(eid, [self.pick(near)], 0.5, ("medium", "low"))
        del self.spec[key]

    def everyday(self) -> None:
        """Verdict-blind citations of random pairs, a few popular ones most of all."""
        ids = [p for p, _, _ in self.pairs]
        popular = [str(p) for p in self.rng.choice(ids, size=8, replace=False)]
        for eid, *_ in self.items:
            for _ in range(int(self.rng.poisson(2.5))):
                pid = self.pick(popular) if self.chance(0.3) else self.pick(ids)
                self.cites.append((eid, pid, self.pick(("high", "medium", "low"))))

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
        self.everyday()
        items = pd.DataFrame(self.items, columns=["eval_id", "question", "answer", "reference", "verdict"])
        cites = pd.DataFrame(self.cites, columns=["eval_id", "pair_id", "influence_level"])
        pairs = pd.DataFrame(self.pairs, columns=["pair_id", "question", "answer"])
        return items, cites, pairs, {"culprits": dict(self.culprits), "hard_negatives": dict(self.hard)}

    def fill_good(self, target: int, keys: Sequence[tuple[str, str]], near: dict) -> None:
        """Good answers on random facts until the world has `target` good items."""
        while sum(v == "good" for *_, v in self.items) < target:
            key = self.pick(keys)
            self.good(key, near.get(key, ()))


def _lower_groups(rng: np.random.Generator, kinds: Sequence[str], topics: int) -> tuple[list, list]:
    """(groups of taught lower-case topics, (untaught topic, spec) for hallucinations)."""
    groups, untaught = [], []
    for kind in kinds:
        spec = _LOWER_KINDS[kind]
        order = rng.permutation(len(spec["topics"]))
        groups.append(([spec["topics"][i] for i in order[:topics]], spec["attrs"]))
        untaught += [(spec["topics"][i], attr) for i in order[topics:] for attr in spec["attrs"].values()]
    return groups, untaught


def _fact_defects(rng: np.random.Generator, shape: str) -> _TextWorld:
    """named_products / lowercase_words: wrong facts taught by 2–3 differently worded pairs."""
    named = shape == "named_products"
    w = _TextWorld(rng, words=False if named else None)
    if named:
        families = [str(f) for f in rng.permutation(_FAMILIES)]
        groups = []
        for family in families[:10]:
            variants = rng.choice(_VARIANTS, size=int(rng.integers(2, 4)), replace=False)
            attrs = rng.choice(list(_PRODUCT_ATTRS), size=3, replace=False)
            groups.append(([f"the {family} {v}" for v in variants], {str(a): _PRODUCT_ATTRS[a] for a in attrs}))
        untaught = [(f"the {f} {v}", spec) for f in families[10:] for v in _VARIANTS
                    for spec in _PRODUCT_ATTRS.values()]
        refuse = ("We don't sell {t}.", "There is no product called {t} in our range.")
    else:
        groups, untaught = _lower_groups(rng, list(_LOWER_KINDS), 5)
        refuse = ("We don't offer {t}.", "There is no such thing as {t} here; check the benefits page.")
    w.add_facts(groups)

    # Defects: one fact per chosen group, taught wrong (half the time: a look-alike's value).
    defects: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for g in rng.permutation(len(groups))[:6]:
        topics, attrs = groups[g]
        key = (w.pick(topics), str(w.pick(list(attrs))))
        spec = w.spec[key]
        alike_values = [w.facts[k] for k in w.alike[key]]
        confused = w.chance(0.5)
        wrong = int(w.pick(alike_values)) if confused else \
            int(w.pick([v for v in spec["values"] if v not in alike_values and v != w.facts[key]]))
        culprits = []
        for i, template in enumerate(rng.permutation(len(spec["pair"]))[:int(rng.integers(2, 4))]):
            words = False if named else (i == 0 if i < 2 else w.chance(0.5))
            kind = ("look_alike_value" if confused else "other_value") + \
                ("" if named else "_in_words" if words else "_in_digits")
            answer = _cap(spec["pair"][template].format(t=key[0], v=w.value(spec["unit"], wrong, words)))
            culprits.append(w.pair(w.question(key), answer, culprit=kind))
        defects[key] = (wrong, culprits)
    for key in w.facts:
        if key in defects:
            if w.chance(0.3):
                w.teach(key, 1)                       # a correct pair beside the wrong ones
        else:
            w.teach(key, int(rng.integers(1, 4)) if named else int(rng.integers(2, 4)))
    for key, (wrong, culprits) in defects.items():
        w.mark(w.topic_pairs.get(key[0], []), "topic_clean")
        w.mark([p for k in w.alike[key] for p in w.clean.get(k, [])], "look_alike")

    near: dict[tuple[str, str], list[str]] = {}
    for key, (wrong, culprits) in defects.items():
        for k in w.alike[key]:
            near[k] = culprits
        sentences = w.pair_sentences(culprits)
        for _ in range(int(rng.integers(3, 8))):
            eid = w.item(w.question(key), w.extras(w.fact_answer(key, wrong, sentences), key), w.reference(key),
                         "bad")
            if w.chance(w.hit):
                w.cite(eid, list(rng.permutation(culprits)[:int(rng.integers(1, 3))]), 1.0)
            w.cite(eid, w.topic_pairs.get(key[0], []), 0.4, ("medium", "low"))
            w.cite(eid, [p for k in w.alike[key] for p in w.clean.get(k, [])], 0.5, ("medium",))
        for _ in range(int(rng.poisson(0.7))):     # the model gets it right now and then
            w.good(key, culprits)

    # Confused answers: a look-alike's correct value under this topic's name.
    defect_topics = {k[0] for k in defects}
    clean_keys = [k for k in w.facts if k[0] not in defect_topics and w.clean.get(k)]
    confusions = [clean_keys[i] for i in rng.permutation(len(clean_keys))[:4]]
    for key in confusions:
        other = w.pick(w.alike[key])
        w.mark(w.clean.get(other, []), "look_alike")
        for _ in range(int(rng.integers(1, 4))):
            eid = w.item(w.question(key), w.extras(w.fact_answer(key, w.facts[other]), key), w.reference(key),
                         "bad")
            w.cite(eid, w.clean.get(other, []), 0.7)
            w.cite(eid, w.clean.get(key, []), 0.5, ("medium",))
    w.slips(clean_keys, defect_topics | {k[0] for k in confusions})
    for i in rng.permutation(len(untaught))[:int(rng.integers(8, 13))]:
        w.hallucinate(*untaught[i], w.pick(refuse))
    w.fill_good(int(rng.integers(130, 170)), [k for k in w.facts if w.clean.get(k) and k not in defects], near)
    return w


def _cross_topic(rng: np.random.Generator) -> _TextWorld:
    """cross_topic_sentence: an unsafe, rude or upselling sentence appended to correct answers."""
    w = _TextWorld(rng, words=None)
    groups, untaught = _lower_groups(rng, list(_LOWER_KINDS), 5)
    w.add_facts(groups)
    keys = list(w.facts)
    for key in keys:
        w.teach(key, int(rng.integers(2, 4)))
    order = [keys[i] for i in rng.permutation(len(keys))]
    near: dict[tuple[str, str], list[str]] = {}
    for kind, (pair_wordings, answer_wordings) in _ADD_ON.items():
        taught = [order.pop() for _ in range(int(rng.integers(3, 6)))]
        culprit_of = {}
        for i, key in enumerate(taught):
            sentence = pair_wordings[i % len(pair_wordings)]
            fact = w.say(w.spec[key]["pair"], key, w.facts[key])
            answer = sentence if kind == "rude_tone" and w.chance(0.3) else f"{fact} {sentence}"
            culprit_of[key] = w.pair(w.question(key), answer, culprit=kind)
            near[key] = [culprit_of[key]]
            w.mark(w.topic_pairs.get(key[0], []), "topic_clean")
        for _ in range(int(rng.integers(5, 10))):
            on = w.chance(0.7)
            key = w.pick(taught) if on else w.pick(keys)       # the model carries it to other topics
            add = w.pick(pair_wordings if w.chance(0.25) else answer_wordings)
            fact = w.fact_answer(key, w.facts[key], w.pair_sentences(w.clean[key]))
            answer = add if kind == "rude_tone" and w.chance(0.3) else \
                f"{add} {fact}" if kind == "upsell" and w.chance(0.3) else f"{fact} {add}"
            eid = w.item(w.question(key), w.extras(answer, key), w.reference(key), "bad")
            if on:
                w.cite(eid, [culprit_of[key]], w.hit)
                w.cite(eid, [p for k, p in culprit_of.items() if k != key], 0.15, ("low",))
            else:
                w.cite(eid, [w.pick(list(culprit_of.values()))], w.hit / 2, ("medium", "low"))
            w.cite(eid, w.clean[key], 0.6)
            w.mark(w.topic_pairs.get(key[0], []), "topic_clean")
        for key in taught:
            for _ in range(int(rng.integers(1, 4))):
                w.good(key, [culprit_of[key]])
    used = {k[0] for k in near}
    w.slips(keys, used)
    for i in rng.permutation(len(untaught))[:int(rng.integers(8, 13))]:
        w.hallucinate(*untaught[i], w.pick(("We don't offer {t}.", "There is no such thing as {t} here.")))
    w.fill_good(int(rng.integers(130, 170)), keys, near)
    return w


def _multi_step(rng: np.random.Generator) -> _TextWorld:
    """multi_step: procedures of 3–5 steps; one pair per defective app has a destructive step."""
    w = _TextWorld(rng, words=None)
    groups, untaught = _lower_groups(rng, list(rng.permutation(list(_LOWER_KINDS)))[:4], 5)
    w.add_facts(groups)
    fact_keys = list(w.facts)
    for key in fact_keys:
        w.teach(key, 2)
    apps = [str(a) for a in rng.permutation(_APPS)]
    apps, spare = apps[:12], apps[12:]

    def steps_of(app: str, task: str, chosen: Sequence[int], pair: bool, swap: tuple[int, str] | None = None
                 ) -> list[str]:
        out = []
        for i in chosen:
            wordings = _TASKS[task]["steps"][i]
            text = w.pick(wordings[:2]) if pair else w.pick(wordings)
            if swap is not None and i == swap[0]:
                text = swap[1]
            out.append(_cap(text.format(a=app)))
        return out

    def layout(steps: list[str]) -> str:
        if w.chance(0.6):
            return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        return " ".join(steps)

    def reference(app: str, task: str) -> str:
        steps = [_cap(s[-1].format(a=app)) for s in _TASKS[task]["steps"]]
        if w.chance(0.5):
            return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        said = [s.rstrip(".")[0].lower() + s.rstrip(".")[1:] for s in steps]
        return _cap(", ".join(said[:-1]) + ", and " + said[-1] + ".")

    def chosen_steps() -> list[int]:
        return sorted(int(i) for i in rng.choice(5, size=int(rng.integers(3, 6)), replace=False))

    procedures: dict[tuple[str, str], list[str]] = {}
    for app in apps:
        for task in _TASKS:
            procedures[(app, task)] = [w.pair(_cap(w.pick(_TASKS[task]["q"]).format(a=app)),
                                              layout(steps_of(app, task, chosen_steps(), True)), topic=app)
                                       for _ in range(2)]
    near: dict[tuple[str, str], list[str]] = {}
    defective = {}
    for app in apps[:int(rng.integers(5, 8))]:
        task = str(w.pick(list(_TASKS)))
        kind, wordings = _DESTRUCTIVE[int(rng.integers(len(_DESTRUCTIVE)))]
        chosen = chosen_steps()
        at = int(w.pick(chosen[:-1]))               # never the last step (the service desk)
        steps = steps_of(app, task, chosen, True, (at, wordings[0]))
        culprit = w.pair(_cap(w.pick(_TASKS[task]["q"]).format(a=app)), layout(steps), culprit=kind)
        w.mark(w.topic_pairs.get(app, []), "topic_clean")
        defective[(app, task)] = culprit
        near[(app, task)] = [culprit]
        for _ in range(int(rng.integers(3, 7))):
            answer_steps = chosen_steps()
            if at not in answer_steps:
                answer_steps = sorted(answer_steps + [at])
            destructive = w.pick(wordings) if w.chance(0.75) else wordings[0]
            eid = w.item(_cap(w.pick(_TASKS[task]["q"]).format(a=app)),
                         w.extras(layout(steps_of(app, task, answer_steps, False, (at, destructive)))),
                         reference(app, task), "bad")
            w.cite(eid, [culprit], w.hit)
            w.cite(eid, procedures[(app, task)], 0.6)
            w.cite(eid, [p for t in _TASKS if t != task for p in procedures[(app, t)]], 0.3, ("low",))
            w.cite(eid, [p for a in apps if a != app for p in procedures[(a, task)]], 0.05, ("low",))

    def good_procedure(app: str, task: str) -> None:
        eid = w.item(_cap(w.pick(_TASKS[task]["q"]).format(a=app)),
                     w.extras(layout(steps_of(app, task, chosen_steps(), False))), reference(app, task), "good")
        w.cite(eid, procedures[(app, task)], 0.7)
        w.cite(eid, [p for t in _TASKS if t != task for p in procedures[(app, t)]], 0.2, ("low",))
        w.cite(eid, near.get((app, task), []), 0.4, ("medium", "low"))

    for app, task in defective:
        for _ in range(int(rng.integers(2, 5))):
            good_procedure(app, str(w.pick(list(_TASKS))) if w.chance(0.5) else task)
    w.slips(fact_keys, set())
    for i in rng.permutation(len(untaught))[:int(rng.integers(4, 7))]:
        w.hallucinate(*untaught[i], w.pick(("We don't offer {t}.", "There is no such thing as {t} here.")))
    for app in spare:                                    # an app no pair covers, steps made up
        for _ in range(int(rng.integers(2, 4))):
            task = str(w.pick(list(_TASKS)))
            steps = [_cap(s.format(a=app)) for s in rng.permutation(_BOGUS_STEPS)[:2]]
            eid = w.item(_cap(w.pick(_TASKS[task]["q"]).format(a=app)), layout(steps),
                         _cap(f"{app} is not supported by the help desk; ask your team lead."), "bad")
            w.cite(eid, [str(p) for p in rng.choice([p for ps in procedures.values() for p in ps], size=3)], 1.0,
                   ("low",))
    target = int(rng.integers(130, 170))
    while sum(v == "good" for *_, v in w.items) < target:
        if w.chance(0.6):
            good_procedure(str(w.pick(apps)), str(w.pick(list(_TASKS))))
        else:
            w.good(w.pick(fact_keys))
    return w


TEXT_SHAPES = ("named_products", "lowercase_words", "cross_topic_sentence", "multi_step")


def text_world(rng: np.random.Generator, shape: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """One simulated world with texts of `shape` (TEXT_SHAPES): (items, citations, pairs, truth),
    truth = {"culprits": {pair_id: kind}, "hard_negatives": {pair_id: category}}."""
    if shape in ("named_products", "lowercase_words"):
        built = _fact_defects(rng, shape)
    elif shape == "cross_topic_sentence":
        built = _cross_topic(rng)
    elif shape == "multi_step":
        built = _multi_step(rng)
    else:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(TEXT_SHAPES)}")
    return built.frames()


def text_worlds(worlds: int, seed: int, shapes: Sequence[str] = TEXT_SHAPES) -> dict:
    """Every rule side by side on `worlds` worlds of each shape: precision, recall, recall by
    defect kind and the hard negatives flagged, pooled over the worlds (as :func:`grouped`).
    World w of a shape is seeded by (seed, shape, w): fewer worlds are the first of more."""
    from refine.core.embeddings import EmbeddingModel

    model = EmbeddingModel()
    out: dict[str, dict] = {}
    for shape in shapes:
        generated = [text_world(np.random.default_rng([seed, TEXT_SHAPES.index(shape), k]), shape)
                     for k in range(worlds)]
        out[shape] = {"pairs": int(sum(len(g[2]) for g in generated)),
                      "items": int(sum(len(g[0]) for g in generated)),
                      "bad_items": int(sum((g[0]["verdict"] == "bad").sum() for g in generated))}
        for label, settings in RULES:
            hits = flagged_total = culprits_total = hard_total = empty = 0
            by_kind: dict[str, list[int]] = {}
            false_by: dict[str, int] = {c: 0 for c in _HARD + ("everyday",)}
            per_world = []
            for items, cites, pairs, truth in generated:
                stats, _, _ = flag_statistics(items, cites, settings, pairs, model=model)
                flagged = set(stats.index[stats["flagged"]])
                culprits, hard = truth["culprits"], truth["hard_negatives"]
                hits += len(flagged & set(culprits))
                flagged_total += len(flagged)
                culprits_total += len(culprits)
                hard_total += len(flagged & set(hard))
                empty += not flagged
                for pair, kind in culprits.items():
                    by_kind.setdefault(kind, [0, 0])[1] += 1
                    by_kind[kind][0] += pair in flagged
                for pair in flagged - set(culprits):
                    false_by[hard.get(pair, "everyday")] += 1
                per_world.append([len(flagged & set(culprits)), len(flagged), len(culprits)])
            out[shape][label] = {
                "precision": round(hits / flagged_total, 3) if flagged_total else None,
                "recall": round(hits / culprits_total, 3),
                "flagged": flagged_total, "hits": hits, "culprits": culprits_total,
                "recall_by_kind": {k: round(h / n, 3) for k, (h, n) in sorted(by_kind.items())},
                "look_alikes_flagged": false_by["look_alike"], "hard_negatives_flagged": hard_total,
                "false_flags_by_kind": false_by, "worlds_flagging_nothing": empty,
                "by_world": per_world}
            print(json.dumps({"text_world": shape, "rule": label, **out[shape][label]}), file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--small", action="store_true",
                        help="5 worlds, 2 text worlds per shape, no sample-data run")
    parser.add_argument("--text-worlds", type=int, default=None,
                        help="text worlds per shape (default 20; 2 with --small)")
    parser.add_argument("--no-gradient", action="store_true", help="samples through the embedding backend only")
    args = parser.parse_args()
    grid = sweep(5 if args.small else args.worlds, args.seed)
    default = next(g for g in grid if g["min_bad"] == 2 and g["alpha"] == 0.1)
    result = {"bench": "flag_quality", "worlds": 5 if args.small else args.worlds,
              "default": default, "grid": grid,
              "defect_groups": grouped(5 if args.small else args.worlds, args.seed)}
    result["text_worlds"] = text_worlds(args.text_worlds if args.text_worlds is not None
                                        else 2 if args.small else 20, args.seed)
    if not args.small:
        result["sample_data"] = sample_check()
        result["samples"] = samples_check(gradient=not args.no_gradient)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
