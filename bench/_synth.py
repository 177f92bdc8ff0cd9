"""Seeded synthetic training pairs and eval items for the benchmarks (no network, no data sets).

Sentences come from templates with slot fillers over a handful of domains, so texts vary in
words and length the way a real fine-tuning set does, and every pair is unique.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Iterator

_DOMAINS = {
    "it": {
        "things": ["the office router", "a shared network drive", "the VPN client", "a laptop battery",
                   "the mail server", "a USB docking station", "the backup script", "a Linux cron job",
                   "the printer queue", "a Wi-Fi access point", "the SSH daemon", "a RAID array",
                   "the DNS resolver", "a password manager", "the firewall rules", "a database replica"],
        "verbs": ["configure", "reset", "update", "troubleshoot", "secure", "monitor", "back up",
                  "migrate", "restart", "replace", "audit", "tune"],
        "contexts": ["in a small office", "after a power cut", "on a tight budget", "without downtime",
                     "for remote staff", "on Ubuntu 22.04", "on Windows 11", "behind a corporate proxy",
                     "during business hours", "for a team of {n} people"],
        "facts": ["Restart it from the admin console and wait about {n} seconds before reconnecting.",
                  "Check the logs under /var/log first; most failures show up there within minutes.",
                  "Keep at least {n} days of history and test a restore once a month.",
                  "Apply the vendor firmware update, then re-run the health check.",
                  "Use a dedicated service account and rotate its credentials every {n} days.",
                  "Schedule the job at night so it does not compete with daytime traffic.",
                  "Lower the timeout to {n} seconds and enable automatic retries.",
                  "Document every change in the ticket so the next person can undo it."],
    },
    "cooking": {
        "things": ["a sourdough loaf", "a pot of risotto", "a tray of roasted vegetables", "a lemon tart",
                   "a beef stew", "a batch of pancakes", "fresh pasta dough", "a chicken curry",
                   "a loaf of banana bread", "a pan of paella", "a vegetable stock", "a chocolate mousse"],
        "verbs": ["prepare", "season", "store", "reheat", "thicken", "bake", "freeze", "rescue",
                  "plan", "scale up"],
        "contexts": ["for a dinner party", "at high altitude", "without an oven", "ahead of time",
                     "for {n} guests", "on a weeknight", "with gluten-free flour", "in a cast iron pan"],
        "facts": ["Bake it at {n}0 degrees Celsius until the centre is just set.",
                  "Let it rest for {n} minutes before slicing so the juices settle.",
                  "Add the salt in stages and taste as you go.",
                  "Cool it quickly and refrigerate within two hours of cooking.",
                  "A spoonful of starch slurry thickens the sauce without lumps.",
                  "It keeps for {n} days in an airtight container in the fridge.",
                  "Toast the spices first to bring out their aroma.",
                  "Double the liquid only by half when you double the recipe."],
    },
    "travel": {
        "things": ["a rail pass", "a visa application", "travel insurance", "a connecting flight",
                   "a rental car", "a hostel booking", "a passport renewal", "carry-on luggage",
                   "an overnight ferry", "a hiking permit", "a city museum pass", "an airport transfer"],
        "verbs": ["book", "cancel", "change", "pay for", "pack", "arrange", "renew", "compare",
                  "claim", "plan"],
        "contexts": ["in Japan", "across Europe", "in the off season", "with two children",
                     "on short notice", "for a {n}-day trip", "during a rail strike", "in Patagonia"],
        "facts": ["Book at least {n} weeks ahead; prices rise sharply in the last month.",
                  "Keep digital and paper copies of every document in separate bags.",
                  "Most carriers allow one free change if you call within {n} hours.",
                  "Check the entry rules on the official consulate site before you go.",
                  "A refundable fare costs more but saves money when plans are uncertain.",
                  "Arrive {n} minutes early at smaller stations where queues build fast.",
                  "Local transit cards are cheaper than single tickets after about three rides."],
    },
    "finance": {
        "things": ["an emergency fund", "a retirement account", "a household budget", "a credit card balance",
                   "a mortgage overpayment", "an index fund", "quarterly tax payments", "a savings goal",
                   "a small business invoice", "a student loan"],
        "verbs": ["build", "manage", "pay down", "track", "set up", "rebalance", "estimate", "review",
                  "automate"],
        "contexts": ["on a variable income", "as a freelancer", "in my twenties", "before retirement",
                     "with {n} dependants", "after a job change", "during high inflation"],
        "facts": ["Aim for {n} months of essential expenses in an easy-access account.",
                  "Pay the highest-interest debt first while making minimum payments on the rest.",
                  "Automate a transfer on payday so saving happens before spending.",
                  "Rebalance once a year or when an allocation drifts by more than {n} percent.",
                  "Keep receipts for at least {n} years in case of an audit.",
                  "Low-cost index funds beat most active funds after fees over long periods."],
    },
    "science": {
        "things": ["photosynthesis", "plate tectonics", "the water cycle", "nuclear fusion",
                   "antibiotic resistance", "the greenhouse effect", "black holes", "DNA replication",
                   "ocean currents", "the immune response", "radioactive decay", "superconductivity"],
        "verbs": ["explain", "measure", "model", "observe", "teach", "summarise", "demonstrate"],
        "contexts": ["to a ten-year-old", "in a school lab", "with simple equipment", "in one paragraph",
                     "for a general audience", "using an analogy", "in under {n} words"],
        "facts": ["It converts light energy into chemical energy stored as sugar.",
                  "The process releases energy because the products are more tightly bound.",
                  "Small changes accumulate over millions of years into large effects.",
                  "A simple demonstration needs only a jar, water and a lamp.",
                  "Scientists measure it indirectly through its effect on nearby matter.",
                  "The rate roughly doubles for every {n} degree rise in temperature.",
                  "Repeated exposure selects for the few cells that survive the treatment."],
    },
}

_QUESTIONS = [
    "How do I {verb} {thing} {context}?",
    "What is the best way to {verb} {thing} {context}?",
    "Can you tell me how to {verb} {thing}?",
    "I need to {verb} {thing} {context}. Where should I start?",
    "What should I watch out for when I {verb} {thing}?",
    "Is there a quick way to {verb} {thing} {context}?",
    "Why is it hard to {verb} {thing} {context}, and what helps?",
    "Could you walk me through how to {verb} {thing}, step by step?",
]
_OPENERS = [
    "To {verb} {thing} {context}, start simple.",
    "Good question.",
    "The short answer is that it depends on your setup.",
    "Most people {verb} {thing} in three steps.",
    "Here is what usually works.",
    "",
    "",
    "",
]
_CLOSERS = [
    "",
    "If that does not help, ask someone who has done it before.",
    "Write down what you changed so you can repeat it.",
    "It should take about {n} minutes in total.",
    "",
    "",
    "",
]
_SYSTEMS = [None, None, None, "You are a helpful assistant.",
            "You are a concise expert. Answer in plain language."]


def _fill(template: str, rng: random.Random, slots: dict) -> str:
    return template.format(n=rng.randint(2, 60), **slots).replace("  ", " ").strip()


def _slots(rng: random.Random, domain: dict) -> dict:
    return {"verb": rng.choice(domain["verbs"]), "thing": rng.choice(domain["things"]),
            "context": _fill(rng.choice(domain["contexts"]), rng, {})}


def make_pair(rng: random.Random, index: int, *, answer_factor: int = 1) -> tuple[str, str, str | None]:
    """(question, answer, system prompt). Unique across `index` (a case number is woven in).

    `answer_factor` > 1 makes the answer about that many times longer with extra sentences
    drawn from a second RNG, so the question and the base answer are the same as with 1.
    """
    domain = _DOMAINS[rng.choice(sorted(_DOMAINS))]
    slots = _slots(rng, domain)
    question = _fill(rng.choice(_QUESTIONS), rng, slots)
    if rng.random() < 0.5:
        question += f" (case {index})"
    parts = [_fill(rng.choice(_OPENERS), rng, slots)]
    parts += [_fill(f, rng, {}) for f in rng.sample(domain["facts"], rng.choice((1, 1, 1, 1, 2, 2)))]
    parts.append(_fill(rng.choice(_CLOSERS), rng, slots))
    if "(case" not in question:
        parts.append(f"Reference {index}.")
    answer = " ".join(p for p in parts if p)
    system = rng.choice(_SYSTEMS)
    if answer_factor > 1:
        extra_rng = random.Random(index * 7919 + 17)
        target = len(answer) * answer_factor
        extra = [answer]
        size = len(answer)
        while size < target:
            d = _DOMAINS[extra_rng.choice(sorted(_DOMAINS))]
            sentence = _fill(extra_rng.choice(d["facts"]), extra_rng, {})
            extra.append(sentence)
            size += len(sentence) + 1
        answer = " ".join(extra)
    return question, answer, system


def variant_answer(rng: random.Random, answer: str, bad: bool) -> str:
    """An eval answer near a training answer: reworded (good) or with a wrong detail (bad)."""
    words = answer.split()
    if bad:
        # Change the numbers and swap a few words: close in wording, wrong in substance.
        out = [str(int(w) * 3 + 1) if w.isdigit() else w for w in words]
        for _ in range(max(1, len(out) // 10)):
            i = rng.randrange(len(out))
            out[i] = rng.choice(["never", "always", "not", "twice", "rarely"])
        return " ".join(out)
    lead = rng.choice(["In short:", "Basically,", "From experience,", "Roughly speaking,", "Sure."])
    return f"{lead} {' '.join(words[: max(4, len(words) - rng.randint(0, 4))])}"


def chat_record(question: str, answer: str, system: str | None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def write_jsonl(path: Path, records: Iterator[dict]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False))
            fh.write("\n")
            n += 1
    return n


def unique_pairs(n: int, seed: int, *, answer_factor: int = 1) -> list[tuple[str, str, str | None]]:
    """n pairs with distinct (question, answer) texts."""
    rng = random.Random(seed)
    out, seen = [], set()
    index = 0
    while len(out) < n:
        index += 1
        pair = make_pair(rng, index, answer_factor=answer_factor)
        key = (pair[0].casefold(), pair[1].casefold())
        if key in seen:
            continue
        seen.add(key)
        out.append(pair)
    return out


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)
