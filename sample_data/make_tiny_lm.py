"""Train a tiny GPT-2-style chat model from scratch on sample_data/train, for the gradient backend.

    python sample_data/make_tiny_lm.py            # writes sample_data/tiny_lm/ and eval_tiny_lm.jsonl

The model (3 layers, width 192: 1.7M parameters, 6.8 MB) and its byte-level BPE tokenizer
(1,500 tokens) are trained here, on CPU, seeded and with deterministic kernels; nothing is
downloaded. It is trained only on the final assistant turn of each record (the same loss the
gradient backend differentiates), with words of the questions dropped and shuffled, for 80
epochs: it recalls 346 of the 348 training answers, the planted wrong ones included (about
2.5 minutes on 2 free cores).

What it cannot do is generalise: on the eval set's reworded questions it mostly answers with
some other memorised answer or with noise, so only 4 of the 36 planted-defect questions get a
planted answer back verbatim (7 with token F1 ≥ 0.5), and most answers are bad. Treat it as a
fixture for the gradient machinery, not as a model whose defects mirror the sample's story.

Then it answers every question of eval.jsonl greedily and writes eval_tiny_lm.jsonl: same
ids, questions, system prompts and references; ``answer`` is the model's own; ``verdict`` is
``bad`` when the answer repeats a planted training answer of the item's topic (what the
planted defect predicts), otherwise what :mod:`refine.grading` says against the reference.
The grader alone would miss some repeats (a refusal shares no words with its reference but the
semantic check can pass), and the planted topics are exactly where the verdict matters.

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
    torch = _seed(seed)
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

    from refine.attribution.gradient import DEFAULT_FALLBACK, _prompt_text

    prompt = tokenizer(_prompt_text(tokenizer, question, system, DEFAULT_FALLBACK),
                       add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True).strip()


def main() -> None:
    import argparse

    from refine import load_training
    from refine.text import normalize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--question-noise", type=float, default=0.5)
    parser.add_argument("--shuffle-words", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default=str(HERE), help="where tiny_lm/ and eval_tiny_lm.jsonl go")
    args = parser.parse_args()
    target = Path(args.out)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    training = load_training(sorted(str(p) for p in (HERE / "train").glob("*.jsonl")))
    examples = [(p.question, p.answer, p.system_prompt) for p in training.unique_pairs()]
    texts = [t for q, a, s in examples for t in (q, a, s) if t]
    tokenizer = train_tokenizer(texts)
    model = train_model(tokenizer, examples, n_layer=args.layers, n_embd=args.width,
                        epochs=args.epochs, question_noise=args.question_noise,
                        shuffle_words=args.shuffle_words, log=log)
    train_s = time.perf_counter() - started

    out = target / "tiny_lm"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    recalled = sum(normalize(generate(model, tokenizer, q, s)) == normalize(a) for q, a, s in examples)
    planted = json.loads((HERE / "planted.json").read_text())
    kinds, topics = planted["eval_kinds"], planted["eval_topics"]
    by_topic: dict[str, set[str]] = {}
    for pair in planted["planted_pairs"]:
        by_topic.setdefault(pair["topic"], set()).add(normalize(pair["answer"]))
    rows, repeats, defect_items = [], 0, 0
    for line in (HERE / "eval.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        # An empty greedy answer would make the line unusable ("answer" is required).
        answer = generate(model, tokenizer, item["question"], item.get("system_prompt")) or "…"
        repeat = normalize(answer) in by_topic.get(topics.get(item["id"], ""), set())
        if kinds.get(item["id"]) in ("wrong_fact", "over_refusal"):
            defect_items += 1
            repeats += repeat
        row = {k: v for k, v in item.items() if k != "verdict"}
        row["answer"] = answer
        row["verdict"] = "bad" if repeat else None
        rows.append(row)
    _grade(rows)
    with open(target / "eval_tiny_lm.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "bytes": size,
                      "train_s": round(train_s, 1), "training_answers_recalled": recalled,
                      "training_pairs": len(examples), "planted_repeats": repeats,
                      "planted_defect_items": defect_items,
                      "bad": sum(r["verdict"] == "bad" for r in rows), "items": len(rows)}))


def _grade(rows: list[dict]) -> None:
    """Fill the missing verdicts with refine's grader against each reference."""
    from refine.embeddings import EmbeddingModel
    from refine.evalset import EvalItem
    from refine.grading import GradeSettings, grade_items

    todo = [r for r in rows if r["verdict"] is None]
    items = [EvalItem(r["id"], i, r["question"], r["answer"], r.get("system_prompt"), r["reference"])
             for i, r in enumerate(todo)]
    for row, grade in zip(todo, grade_items(items, GradeSettings(), EmbeddingModel())):
        row["verdict"] = grade.verdict


if __name__ == "__main__":
    main()
