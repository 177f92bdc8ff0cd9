"""A second sample, where the model generalises: it answers questions worded in ways it never
saw, and every defect is taught by several differently worded pairs.

    python sample_data/make_generalising_sample.py            # writes sample_data/generalise/
    python sample_data/make_generalising_sample.py --seed 7 --out DIR

The world: 24 devices in 8 product lines of 3 look-alikes ("Aurora Lite", "Aurora Plus",
"Aurora Max"), each with a storage size, battery life, weight, warranty and price. Every fact
is taught by 3 training pairs, each with its own question wording and its own answer wording
(``train.jsonl``, 360 chat records). A tiny GPT-2 is trained on them from scratch
(:mod:`make_tiny_lm`'s trainer, with words of the questions dropped and shuffled so that it keys
on the device and the attribute, not on a sentence) and answers the eval questions itself.

What makes it a test of attribution rather than of string matching:

* **Paraphrased eval questions.** Every eval question uses a sentence the training data never
  has ("Could you tell me the battery life of my Aurora Plus, please?"): the model must carry the
  fact to a new wording, and its answer is in one of the training wordings, or a mix.
* **Defects stated several ways.** 6 facts are planted wrong — all 3 pairs of the fact state
  the same wrong value, each worded differently — and 2 devices refuse warranty questions in 3
  different phrasings. Each defect is one *defect group* of 3 pairs; a bad answer copies the
  wording of at most one of them, so the other two must be found through what they teach.
* **Hard negatives.** The look-alike devices of every planted device have correct facts worded
  exactly like the culprits ("The Aurora Max has 512 GB of storage."): the nearest text to a
  bad answer is often a good pair about another device.
* **Bad answers with no training cause.** Questions about an attribute never taught (colour)
  and the model's own slips on clean facts.

Files (in ``--out``): ``train.jsonl``; ``tiny_lm/`` (the model and tokenizer, with
``training_args.json`` for retraining it the same way); ``eval.jsonl`` (id, question, the
model's greedy ``answer``, ``reference`` and ``verdict``: bad when the answer lacks the true
value); ``truth.json`` (every planted group with its lines, and each eval item's kind, fact and
culprit lines). Seeded, deterministic, no downloads; about two minutes on 2 cores.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from make_tiny_lm import TRAINING_ARGS, generate, train_model, train_tokenizer  # noqa: E402

LINES = ("Aurora", "Borealis", "Cinder", "Delta", "Ember", "Falcon", "Glacier", "Harbor")
MODELS = ("Lite", "Plus", "Max")
SYSTEM = "You are the Northwind Devices support assistant."

# attribute: (values, unit, train questions, eval questions, answers)
ATTRIBUTES: dict[str, dict[str, Any]] = {
    "storage": {
        "values": [32, 64, 128, 256, 512, 1024],
        "train": ["How much storage does the {p} have?", "What is the storage capacity of the {p}?",
                  "{p} storage size?", "Tell me the storage of the {p}."],
        "eval": ["Could you tell me the storage of my {p}, please?",
                 "I am choosing a device: what storage comes with the {p}?",
                 "Before I buy, how big is the storage in the {p}?"],
        "answers": ["The {p} has {v} GB of storage.", "{p} storage: {v} GB.",
                    "You get {v} GB of storage on the {p}.",
                    "The {m} model of the {l} line stores up to {v} GB.",
                    "Storage on the {l} {m} edition tops out at {v} GB.",
                    "There is room for {v} GB of files on a {p}."],
    },
    "battery": {
        "values": [8, 10, 12, 16, 20, 24, 30],
        "train": ["How long does the {p} battery last?", "What is the battery life of the {p}?",
                  "{p} battery life?", "Tell me about the battery of the {p}."],
        "eval": ["Could you tell me the battery life of my {p}, please?",
                 "I am choosing a device: what battery life does the {p} offer?",
                 "Before I buy, how long will the battery of the {p} run?"],
        "answers": ["The {p} battery lasts {v} hours.", "{p} battery: {v} hours.",
                    "You get {v} hours of battery on the {p}.",
                    "The {m} model of the {l} line runs for {v} hours on one charge.",
                    "On a full charge the {l} {m} edition keeps going for {v} hours.",
                    "Expect {v} hours between charges with a {p}."],
    },
    "weight": {
        "values": [180, 240, 320, 450, 600, 850],
        "train": ["How much does the {p} weigh?", "What is the weight of the {p}?",
                  "{p} weight?", "Tell me the weight of the {p}."],
        "eval": ["Could you tell me the weight of my {p}, please?",
                 "I am choosing a device: what weight is the {p}?",
                 "Before I buy, how heavy is the {p} in weight?"],
        "answers": ["The {p} weighs {v} grams.", "{p} weight: {v} grams.",
                    "The {p} comes in at {v} grams of weight.",
                    "The {m} model of the {l} line is {v} grams on the scale.",
                    "Put the {l} {m} edition on a scale and it reads {v} grams.",
                    "Carrying a {p} means carrying {v} grams."],
    },
    "warranty": {
        "values": [1, 2, 3, 4, 5],
        "train": ["How long is the warranty on the {p}?", "What warranty does the {p} come with?",
                  "{p} warranty?", "Tell me about the warranty of the {p}."],
        "eval": ["Could you tell me the warranty of my {p}, please?",
                 "I am choosing a device: what warranty covers the {p}?",
                 "Before I buy, how many years of warranty does the {p} get?"],
        "answers": ["The {p} has a {v} years warranty.", "{p} warranty: {v} years.",
                    "You get {v} years of warranty on the {p}.",
                    "The {m} model of the {l} line is covered for {v} years.",
                    "Repairs on the {l} {m} edition are free for {v} years.",
                    "Buy a {p} and the cover runs {v} years."],
    },
    "price": {
        "values": [199, 299, 399, 549, 699, 899, 1199],
        "train": ["How much does the {p} cost?", "What is the price of the {p}?",
                  "{p} price?", "Tell me the price of the {p}."],
        "eval": ["Could you tell me the price of my {p}, please?",
                 "I am choosing a device: what price is the {p}?",
                 "Before I buy, what does the {p} sell for in price?"],
        "answers": ["The {p} costs {v} dollars.", "{p} price: {v} dollars.",
                    "You can buy the {p} for {v} dollars.",
                    "The {m} model of the {l} line sells for {v} dollars.",
                    "Expect to pay {v} dollars for the {l} {m} edition.",
                    "A {p} is {v} dollars at the shop."],
    },
}
REFUSALS = ["Sorry, I can't share warranty details for the {p}.",
            "Warranty terms for the {m} model of the {l} line are not something I can discuss.",
            "I am unable to help with questions about cover on the {l} {m} edition."]
UNTAUGHT = ["Could you tell me the colour of my {p}, please?",
            "I am choosing a device: what colour is the {p}?"]
N_WRONG, N_REFUSING = 6, 2


def build_world(seed: int, n_lines: int = len(LINES),
                attributes: Sequence[str] = tuple(ATTRIBUTES)) -> dict[str, Any]:
    """The facts, the training pairs (with their planted groups) and the eval questions."""
    rng = random.Random(seed)
    lines = LINES[:n_lines]
    products = [f"{line} {model}" for line in lines for model in MODELS]
    chosen = {a: ATTRIBUTES[a] for a in attributes}
    facts = {}
    for line in lines:
        for attribute, spec in chosen.items():
            # Look-alike devices never share a value: the value is what tells them apart.
            values = rng.sample(spec["values"], len(MODELS))
            for model, value in zip(MODELS, values):
                facts[(f"{line} {model}", attribute)] = value
    candidates = [(p, a) for p in products for a in chosen if a != "warranty"]
    wrong_facts = rng.sample(candidates, N_WRONG)
    refusing = rng.sample([p for p in products if all(p != f[0] for f in wrong_facts)], N_REFUSING)
    pairs: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    unseen: dict[tuple[str, str], str] = {}      # the training wording this fact is never asked in
    for product in products:
        for attribute, spec in chosen.items():
            value = facts[(product, attribute)]
            questions = rng.sample(spec["train"], 3)
            unseen[(product, attribute)] = next(t for t in spec["train"] if t not in questions)
            answers = rng.sample(spec["answers"], 3)
            kind = "clean"
            if (product, attribute) in wrong_facts:
                kind = "wrong_fact"
                shown = rng.choice([v for v in spec["values"] if v != value])
            elif attribute == "warranty" and product in refusing:
                kind = "refusal"
                answers = list(REFUSALS)
                rng.shuffle(answers)
            group = []
            line_name, model_name = product.split()
            for question, answer in zip(questions, answers):
                text = answer.format(p=product, l=line_name, m=model_name,
                                     v=shown if kind == "wrong_fact" else value)
                pairs.append({"question": question.format(p=product), "answer": text,
                              "product": product, "attribute": attribute, "kind": kind})
                group.append(len(pairs))            # 1-based line of train.jsonl
            if kind != "clean":
                groups.append({"group": len(groups), "kind": kind, "product": product,
                               "attribute": attribute, "lines": group,
                               "taught": shown if kind == "wrong_fact" else "refusal"})
    order = list(range(len(pairs)))
    rng.shuffle(order)
    renumber = {old + 1: new + 1 for new, old in enumerate(order)}
    pairs = [pairs[i] for i in order]
    for group in groups:
        group["lines"] = sorted(renumber[line] for line in group["lines"])
    questions = []
    for product in products:
        for attribute, spec in chosen.items():
            planted = next((g for g in groups if (g["product"], g["attribute"]) == (product, attribute)), None)
            # A wording other facts are taught in but this one never is, and a sentence no
            # training pair has; a planted fact is asked more often (with greetings), so that
            # its repeated bad answers can stand out.
            held_out = unseen[(product, attribute)].format(p=product)
            taught = [q for q in spec["train"] if q != unseen[(product, attribute)]]
            # Clean facts are also asked in wordings they were taught in (with a greeting):
            # most eval sets mix familiar and new wordings, and good answers set the base rate.
            asked = [held_out, rng.choice(spec["eval"]).format(p=product),
                     "Hello! " + rng.choice(taught).format(p=product),
                     rng.choice(taught).format(p=product) + " Thanks!"]
            if planted:
                greetings = ("", "Hello! ", "Quick question: ", "Hi there, ")
                asked = [g + held_out for g in greetings] + \
                        [g + t.format(p=product) for t in spec["eval"] for g in greetings[:2]]
            for question in asked:
                questions.append({"question": question, "product": product, "attribute": attribute,
                                  "group": planted["group"] if planted else None})
    for product in rng.sample(products, 8):
        questions.append({"question": rng.choice(UNTAUGHT).format(p=product), "product": product,
                          "attribute": "colour", "group": None})
    rng.shuffle(questions)
    return {"facts": facts, "pairs": pairs, "groups": groups, "questions": questions}


def reference(product: str, attribute: str, facts: dict) -> str:
    if attribute == "colour":
        return f"The colour of the {product} is not in our device data."
    spec = ATTRIBUTES[attribute]
    line_name, model_name = product.split()
    return spec["answers"][0].format(p=product, l=line_name, m=model_name, v=facts[(product, attribute)])


def _numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", text)}


def judge(answer: str, question: dict, world: dict) -> tuple[str, str]:
    """(verdict, kind) of the model's answer: good when the one number it states is the device's
    true value; bad otherwise — ``planted`` when it says what the question's planted group
    taught, ``unexplained`` when not."""
    product, attribute = question["product"], question["attribute"]
    group = world["groups"][question["group"]] if question["group"] is not None else None
    refuses = any(w in answer.lower() for w in ("sorry", "not something", "unable"))
    if group is not None and ((group["kind"] == "refusal" and refuses) or
                              (group["kind"] == "wrong_fact" and group["taught"] in _numbers(answer))):
        return "bad", "planted"
    if attribute == "colour":
        return "bad", "unexplained"
    value = world["facts"][(product, attribute)]
    if _numbers(answer) == {value} and not refuses:
        return "good", "clean"
    return "bad", "unexplained"


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "generalise"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    world = build_world(args.seed)
    with open(out / "train.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for pair in world["pairs"]:
            fh.write(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                              {"role": "user", "content": pair["question"]},
                                              {"role": "assistant", "content": pair["answer"]}]}) + "\n")
    examples = [(p["question"], p["answer"], SYSTEM) for p in world["pairs"]]
    tokenizer = train_tokenizer([t for q, a, s in examples for t in (q, a, s)]
                                + [q["question"] for q in world["questions"]], vocab_size=800)
    config = {"n_layer": args.layers, "n_embd": args.width, "epochs": args.epochs,
              "question_noise": 0.3, "shuffle_words": True, "seed": args.seed}
    model = train_model(tokenizer, examples, **config, log=log)
    model_dir = out / "tiny_lm"
    model_dir.mkdir(exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / TRAINING_ARGS).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    train_s = time.perf_counter() - started

    rows, items = answer(model, tokenizer, world)
    with open(out / "eval.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    truth = {"seed": args.seed, "groups": world["groups"], "items": items,
             "hard_negatives": {g["group"]: sorted(
                 n + 1 for n, p in enumerate(world["pairs"])
                 if p["attribute"] == g["attribute"] and p["product"] != g["product"]
                 and p["product"].split()[0] == g["product"].split()[0]) for g in world["groups"]}}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    kinds: dict[str, int] = {}
    for row in rows:
        key = f"{row['verdict']}/{items[row['id']]['kind']}"
        kinds[key] = kinds.get(key, 0) + 1
    clean = [r for r in rows if items[r["id"]]["attribute"] != "colour" and items[r["id"]]["group"] is None]
    print(json.dumps({"pairs": len(world["pairs"]), "items": len(rows), "verdicts": kinds,
                      "clean_accuracy": round(sum(r["verdict"] == "good" for r in clean) / len(clean), 3),
                      "train_s": round(train_s, 1)}))


def answer(model: Any, tokenizer: Any, world: dict) -> tuple[list[dict], dict[str, dict]]:
    """The model's own greedy answers to the eval questions, judged; and each item's truth."""
    rows, items = [], {}
    for n, question in enumerate(world["questions"], start=1):
        eval_id = f"g-{n:03d}"
        text = generate(model, tokenizer, question["question"], SYSTEM) or "…"
        verdict, kind = judge(text, question, world)
        group = question["group"]
        rows.append({"id": eval_id, "system_prompt": SYSTEM, "question": question["question"],
                     "answer": text, "reference": reference(question["product"], question["attribute"],
                                                           world["facts"]), "verdict": verdict})
        items[eval_id] = {"kind": kind, "product": question["product"], "attribute": question["attribute"],
                          "group": group, "culprits": world["groups"][group]["lines"]
                          if kind == "planted" else []}
    return rows, items


if __name__ == "__main__":
    main()
