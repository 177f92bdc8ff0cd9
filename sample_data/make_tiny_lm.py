"""Train a tiny GPT-2-style chat model from scratch on sample_data/train, for the gradient backend.

    python sample_data/make_tiny_lm.py        # writes sample_data/tiny_lm/, eval_tiny_lm.jsonl
                                              # and eval_tiny_lm.truth.json
    python sample_data/make_tiny_lm.py --data DIR   # the same for a dataset written by
                                                    # make_sample_data.py --seed N --out DIR

The model (3 layers, width 192: 1.7M parameters, 6.8 MB) and its byte-level BPE tokenizer
(1,500 tokens) are trained here, on CPU, seeded and with deterministic kernels; nothing is
downloaded; two runs write byte-identical files. It is trained only on the final assistant
turn of each record (the answer tokens the gradient backend differentiates), with words of the
questions dropped and shuffled, for 80 epochs: about 5–10 minutes on 2 cores; it recalls 346 of
the 348 training answers, the planted wrong ones included. The settings go to
tiny_lm/training_args.json so bench/gradient.py can retrain it the same way without some pairs.

A model this small does not carry a fact to a truly reworded question ("my 12 GB backup…"), so
its eval set is its own (:func:`tiny_eval_questions`): training questions asked again in new
greetings and sign-offs — 5 per planted pair, 1 per clean pair — plus the sample eval's
questions on topics absent from training. ``answer`` is the model's own greedy answer, so the
planted pairs really cause the bad answers (59 of the 65 planted-defect items repeat a planted
answer). ``verdict`` is ``bad`` when a planted-defect item repeats a planted answer, otherwise
what :mod:`refine.stages.grading` says against the reference (the truth for planted topics, the
pair's own answer for clean ones). Some clean questions get another pair's answer back —
the model's own mistakes, which the gradient backend attributes too. eval_tiny_lm.truth.json
gives each item's kind and topic (same shape as planted.json).

The functions (`train_tokenizer`, `train_model`, `generate`) are importable: tests train
smaller models with them in seconds.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SPECIAL = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
    "{% else %}<|assistant|>{{ m['content'] }}<|end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

Example = tuple[str, str, "str | None"]   # (question, answer, system prompt)


def train_tokenizer(texts: Sequence[str], vocab_size: int = 1500):
    """A byte-level BPE tokenizer trained on `texts`, with the chat template above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>",
                                   additional_special_tokens=SPECIAL[2:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _seed(seed: int) -> Any:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch


def train_model(tokenizer: Any, examples: Sequence[Example], *, n_layer: int = 2, n_embd: int = 128,
                n_head: int = 4, epochs: int = 60, batch_size: int = 16, lr: float = 3e-3,
                seed: int = 0, max_length: int = 256, question_noise: float = 0.0,
                shuffle_words: bool = False, log: Any = None):
    """A GPT-2 trained from scratch on the answers of `examples` (prompt tokens masked).

    With `question_noise` > 0, each epoch drops that share of each question's words at random
    (never the whole question): a model this small otherwise keys on the exact question
    string and answers any rewording with noise; dropped words make it key on content words.
    `shuffle_words` also shuffles the kept words, so word order stops mattering.
    """
    deterministic = __import__("torch").are_deterministic_algorithms_enabled()
    torch = _seed(seed)
    try:
        return _train(torch, tokenizer, examples, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                      epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                      max_length=max_length, question_noise=question_noise,
                      shuffle_words=shuffle_words, log=log)
    finally:
        torch.use_deterministic_algorithms(deterministic)   # the caller's setting, as it was


def _train(torch: Any, tokenizer: Any, examples: Sequence[Example], *, n_layer: int, n_embd: int,
           n_head: int, epochs: int, batch_size: int, lr: float, seed: int, max_length: int,
           question_noise: float, shuffle_words: bool, log: Any):
    from transformers import GPT2Config, GPT2LMHeadModel

    from refine.attribution.gradient import encode_example

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=max_length, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    encoded = [encode_example(tokenizer, q, a, s, max_length=max_length) for q, a, s in examples]
    rng = random.Random(seed)

    def noisy(question: str) -> str:
        words = question.split()
        kept = [w for w in words if rng.random() >= question_noise] or words
        if shuffle_words:
            rng.shuffle(kept)
        return " ".join(kept)

    steps = epochs * -(-len(encoded) // batch_size)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for epoch in range(epochs):
        if question_noise > 0 and epoch < epochs - 5:   # the last epochs see the exact questions
            encoded = [encode_example(tokenizer, noisy(q), a, s, max_length=max_length)
                       for q, a, s in examples]
        elif question_noise > 0:
            encoded = [encode_example(tokenizer, q, a, s, max_length=max_length)
                       for q, a, s in examples]
        order = list(range(len(encoded)))
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start:start + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (x, y) in enumerate(batch):
                ids[row, :len(x)], labels[row, :len(y)], mask[row, :len(x)] = \
                    torch.tensor(x), torch.tensor(y), 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            total += loss.item() * len(batch)
        if log and (epoch % 10 == 9 or epoch == epochs - 1):
            log(f"epoch {epoch + 1}/{epochs} loss {total / len(encoded):.4f}")
    model.eval()
    return model


def generate(model: Any, tokenizer: Any, question: str, system: str | None = None,
             max_new_tokens: int = 96) -> str:
    """The model's greedy answer to one question."""
    import torch

    from refine.attribution.gradient import DEFAULT_FALLBACK, prompt_text

    prompt = tokenizer(prompt_text(tokenizer, question, system, DEFAULT_FALLBACK),
                       add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True).strip()


# New greetings and sign-offs for the tiny model's eval questions: a wrapper no training
# question has, around the content of a training question.
TINY_PREFIXES = ("", "Hello! ", "Hi there, ", "Quick one: ", "Hey! ")
TINY_SUFFIXES = ("", " Thanks a lot!", " Cheers.", " Please help.")
VARIANTS_PER_PLANTED = 5
TRAINING_ARGS = "training_args.json"


def _sample_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sample_data", HERE / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _core(question: str) -> str:
    """The question without the sample generator's greeting and sign-off."""
    sample = _sample_module()
    for prefix in sample.Q_PREFIXES:
        if question.startswith(prefix):
            question = question[len(prefix):]
            break
    for suffix in sample.Q_SUFFIXES:
        if question.endswith(suffix):
            question = question[:-len(suffix)]
            break
    return question


def _variants(question: str, n: int, taken: set[str], rng: random.Random) -> list[str]:
    from refine.core.text import normalize

    core = _core(question)
    wrappers = [(p, s) for p in TINY_PREFIXES for s in TINY_SUFFIXES if p or s]
    rng.shuffle(wrappers)
    out = []
    for prefix, suffix in wrappers:
        variant = prefix + core + suffix
        if normalize(variant) not in taken:
            taken.add(normalize(variant))
            out.append(variant)
        if len(out) == n:
            break
    return out


def culprit_answers(planted: dict, kind: str, topic: str) -> list[str]:
    """The planted answers that can cause an item's defect: its topic's, or any refusal."""
    return [p["answer"] for p in planted["planted_pairs"]
            if p["topic"] == topic or (kind == "over_refusal" and p["kind"] == kind)]


def repeats_planted(answer: str, culprits: Sequence[str]) -> bool:
    """Does the answer say what a planted pair taught (token F1 ≥ 0.5 with one of them)?"""
    from refine.stages.grading import token_f1

    return any(token_f1(answer, c) >= 0.5 for c in culprits)


def tiny_eval_questions(data: Path, seed: int = 0) -> tuple[list[dict], dict]:
    """The eval questions for the tiny model, and what each is for.

    A model of this size cannot carry a fact to a reworded question (see the module doc), so
    its eval set asks the training questions again in new wrappers ("Hello! … Cheers."):
    5 per planted pair (65 items whose answers the planted defects decide), one for each
    clean pair (reference: the pair's own answer), and the sample eval's questions on topics
    absent from training (reference: the sample's). A planted item's reference is the truth
    from the sample eval set. Several items per planted pair, among many clean ones, is what
    lets a repeated culprit stand out statistically.
    """
    from refine import load_training
    from refine.core.text import normalize

    rng = random.Random(seed)
    planted = json.loads((data / "planted.json").read_text(encoding="utf-8"))
    training = load_training(sorted(str(p) for p in (data / "train").glob("*.jsonl")))
    pairs = training.unique_pairs()
    taken = {normalize(p.question) for p in training.pairs}
    sample_eval = [json.loads(line) for line in
                   (data / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    kinds, topics = planted["eval_kinds"], planted["eval_topics"]
    truth = {}
    for item in sample_eval:
        truth.setdefault(topics.get(item["id"]), item["reference"])
    where = {(Path(p.file).name, p.line): p for p in pairs}
    rows: list[dict] = []
    planted_keys = set()
    for spec in planted["planted_pairs"]:
        pair = where[(Path(spec["file"]).name, spec["line"])]
        planted_keys.add(pair.pair_id)
        for question in _variants(pair.question, VARIANTS_PER_PLANTED, taken, rng):
            rows.append({"system_prompt": pair.system_prompt, "question": question,
                         "reference": truth[spec["topic"]], "kind": spec["kind"],
                         "topic": spec["topic"]})
    clean = [p for p in pairs if p.pair_id not in planted_keys]
    for pair in clean:
        for question in _variants(pair.question, 1, taken, rng):
            rows.append({"system_prompt": pair.system_prompt, "question": question,
                         "reference": pair.answer, "kind": "clean", "topic": None})
    for item in sample_eval:
        if kinds.get(item["id"]) == "unexplained":
            rows.append({"system_prompt": item.get("system_prompt"), "question": item["question"],
                         "reference": item["reference"], "kind": "unexplained",
                         "topic": topics[item["id"]]})
    rng.shuffle(rows)
    truth_file = {"eval_kinds": {}, "eval_topics": {}, "planted_pairs": planted["planted_pairs"]}
    for number, row in enumerate(rows, 1):
        row["id"] = f"tl-{number:03d}"
        truth_file["eval_kinds"][row["id"]] = row.pop("kind")
        topic = row.pop("topic")
        if topic:
            truth_file["eval_topics"][row["id"]] = topic
    return rows, truth_file


def answer_eval(model: Any, tokenizer: Any, rows: Sequence[dict], truth: dict) -> list[dict]:
    """The model's greedy answers to `rows`, with verdicts: a planted item is ``bad`` when its
    answer repeats a planted answer; every other verdict is refine's grader's."""
    out = []
    for row in rows:
        # An empty greedy answer would make the line unusable ("answer" is required).
        answer = generate(model, tokenizer, row["question"], row.get("system_prompt")) or "…"
        kind = truth["eval_kinds"][row["id"]]
        repeat = kind in ("wrong_fact", "over_refusal") and repeats_planted(
            answer, culprit_answers(truth, kind, truth["eval_topics"][row["id"]]))
        line = {"id": row["id"]}
        if row.get("system_prompt"):
            line["system_prompt"] = row["system_prompt"]
        line.update(question=row["question"], answer=answer, reference=row["reference"],
                    verdict="bad" if repeat else None)
        out.append(line)
    _grade(out)
    return out


def planted_repeats(rows: Sequence[dict], truth: dict) -> int:
    """How many planted-defect items answer with what a planted pair taught."""
    count = 0
    for row in rows:
        kind = truth["eval_kinds"][row["id"]]
        if kind in ("wrong_fact", "over_refusal"):
            count += repeats_planted(row["answer"], culprit_answers(
                truth, kind, truth["eval_topics"][row["id"]]))
    return count


def examples_of(train_files: Sequence[str]) -> list[Example]:
    from refine import load_training

    return [(p.question, p.answer, p.system_prompt)
            for p in load_training(list(train_files)).unique_pairs()]


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    from refine.core.text import normalize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE),
                        help="a sample dataset folder (train/, eval.jsonl, planted.json), "
                             "e.g. one written by make_sample_data.py --seed N --out DIR")
    parser.add_argument("--out", default=None, help="where tiny_lm/ and eval_tiny_lm*.json* go "
                        "(default: the data folder)")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--question-noise", type=float, default=0.5)
    parser.add_argument("--shuffle-words", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--eval-only", action="store_true",
                        help="keep the trained OUT/tiny_lm and only write its eval set again")
    args = parser.parse_args(argv)
    data = Path(args.data)
    target = Path(args.out or args.data)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    examples = examples_of(sorted(str(p) for p in (data / "train").glob("*.jsonl")))
    texts = [t for q, a, s in examples for t in (q, a, s) if t]
    out = target / "tiny_lm"
    if args.eval_only:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    else:
        tokenizer = train_tokenizer(texts)
        config = {"n_layer": args.layers, "n_embd": args.width, "epochs": args.epochs,
                  "question_noise": args.question_noise, "shuffle_words": args.shuffle_words}
        model = train_model(tokenizer, examples, **config, log=log)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        # What bench/gradient.py needs to retrain the same model on a pruned training set.
        (out / TRAINING_ARGS).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    train_s = time.perf_counter() - started

    recalled = sum(normalize(generate(model, tokenizer, q, s)) == normalize(a)
                   for q, a, s in examples)
    questions, truth = tiny_eval_questions(data)
    rows = answer_eval(model, tokenizer, questions, truth)
    with open(target / "eval_tiny_lm.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (target / "eval_tiny_lm.truth.json").write_text(
        json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    kinds = truth["eval_kinds"]
    verdicts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = verdicts.setdefault(kinds[row["id"]], {"good": 0, "bad": 0})
        counts[row["verdict"]] += 1
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "bytes": size,
                      "train_s": round(train_s, 1), "training_answers_recalled": recalled,
                      "training_pairs": len(examples),
                      "planted_repeats": planted_repeats(rows, truth),
                      "planted_defect_items": sum(k in ("wrong_fact", "over_refusal")
                                                  for k in kinds.values()),
                      "verdicts": verdicts, "items": len(rows)}))


def _grade(rows: list[dict]) -> None:
    """Fill the missing verdicts with refine's grader against each reference."""
    from refine.core.embeddings import EmbeddingModel
    from refine.formats.evalset import EvalItem
    from refine.stages.grading import GradeSettings, grade_items

    todo = [r for r in rows if r["verdict"] is None]
    items = [EvalItem(r["id"], i, r["question"], r["answer"], r.get("system_prompt"), r["reference"])
             for i, r in enumerate(todo)]
    for row, grade in zip(todo, grade_items(items, GradeSettings(), EmbeddingModel())):
        row["verdict"] = grade.verdict


if __name__ == "__main__":
    main()
