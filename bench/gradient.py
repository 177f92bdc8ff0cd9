"""Benchmark: the gradient backend against the embedding backend on the sample tiny LM.

    python sample_data/make_tiny_lm.py      # once: sample_data/tiny_lm/ and eval_tiny_lm.jsonl
    python bench/gradient.py [--projection-dim 4096] [--preconditioner trak]

For each backend, `refine.collect` + `refine.flag` run on sample_data/train with
eval_tiny_lm.jsonl (the tiny model's own greedy answers), and the figures are:

* ``precision_at_10``: over the planted-defect eval items judged bad, the share of the backend's
  10 best-scored training pairs that are planted pairs of the item's own topic, divided by the
  most that topic allows (min(10, its planted pairs)): 1.0 = every planted pair of the topic
  ranks in the top 10. ``top1`` is the share whose best pair is one of them;
  The ``_repeating`` figures keep only the items whose answer repeats a planted answer of
  their topic (token F1 ≥ 0.5): the only ones a planted pair can have caused;
* ``flag_precision`` / ``flag_recall``: flagged pairs against the 13 planted ones.

Then the training-feature throughput of the gradient backend (pairs/s) over a plain
forward + backward of the same model on the same batches (``throughput_ratio``, target ≥ 0.7).
Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


def _planted() -> tuple[dict, dict, set]:
    planted = json.loads((SAMPLE / "planted.json").read_text())
    by_topic: dict[str, set] = {}
    lines = set()
    for p in planted["planted_pairs"]:
        by_topic.setdefault(p["topic"], set()).add((Path(p["file"]).name, p["line"]))
        lines.add((Path(p["file"]).name, p["line"]))
    return planted, by_topic, lines


def evaluate(name: str, options: dict, train: list[str], eval_path: Path, tmp: Path) -> dict:
    import numpy as np

    from refine import load_eval, load_training
    from refine.attribution.base import make_backend
    from refine.collection import CollectSettings, collect
    from refine.flagging import flag
    from refine.grading import token_f1

    planted, by_topic, planted_lines = _planted()
    started = time.perf_counter()
    backend = make_backend(name, options, top_k=10)
    result = collect(train, str(eval_path), tmp / name, CollectSettings(name, 10, options),
                     progress=False, backend=backend)
    collect_s = time.perf_counter() - started
    flagged = {(Path(r.file).name, r.line) for r in flag(result.run_dir).flagged_pairs.itertuples()}

    # Rankings come from the raw scores, not from the level-filtered citations.
    training = load_training(train)
    pairs = training.unique_pairs()
    where = [(Path(p.file).name, p.line) for p in pairs]
    kinds = planted["eval_kinds"]
    items = [i for i in load_eval(str(eval_path)).items
             if kinds.get(i.id) in ("wrong_fact", "over_refusal") and i.verdict == "bad"]
    with make_backend(name, options, top_k=10) as ranker:
        ranker.prepare(training, lambda desc, total: (lambda n: None))
        scores = ranker.scores(items)
    answers = {(Path(p["file"]).name, p["line"]): p["answer"] for p in planted["planted_pairs"]}
    precision, top1, repeats = [], [], []
    for item, row in zip(items, scores):
        culprits = by_topic[planted["eval_topics"][item.id]]
        best = [where[j] for j in np.argsort(-row, kind="stable")[:10]]
        precision.append(sum(b in culprits for b in best) / min(10, len(culprits)))
        top1.append(best[0] in culprits)
        repeats.append(max(token_f1(item.answer, answers[c]) for c in culprits) >= 0.5)
    hits = len(flagged & planted_lines)
    repeats = np.array(repeats, dtype=bool)
    return {"precision_at_10": round(float(np.mean(precision)), 3),
            "top1": round(float(np.mean(top1)), 3), "queries": len(items),
            "repeating_queries": int(repeats.sum()),
            "precision_at_10_repeating": round(float(np.mean(np.array(precision)[repeats])), 3)
            if repeats.any() else None,
            "top1_repeating": round(float(np.mean(np.array(top1)[repeats])), 3)
            if repeats.any() else None,
            "flagged": len(flagged), "flag_hits": hits,
            "flag_precision": round(hits / len(flagged), 3) if flagged else None,
            "flag_recall": round(hits / len(planted_lines), 3), "collect_s": round(collect_s, 1)}


def throughput(model_dir: Path, train: list[str], n: int, batch_size: int, tmp: Path) -> dict:
    import torch

    from refine import load_training
    from refine.attribution.base import make_backend
    from refine.attribution.gradient import encode_example

    pairs = load_training(train).unique_pairs()[:n]
    examples = [(p.question, p.answer, p.system_prompt) for p in pairs]
    backend = make_backend("gradient", {"model": str(model_dir), "batch_size": batch_size,
                                        "cache_dir": str(tmp / "tp")}, top_k=10)
    backend.features(examples[:batch_size])                       # load and warm up
    started = time.perf_counter()
    backend.features(examples)
    feature_s = time.perf_counter() - started

    tokenizer, model, _ = backend._load()
    for p in model.parameters():
        p.requires_grad_(True)
    encoded = sorted((encode_example(tokenizer, *e) for e in examples), key=lambda e: len(e[0]))
    started = time.perf_counter()
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start:start + batch_size]
        width = max(len(x) for x, _ in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (x, y) in enumerate(batch):
            ids[row, :len(x)], labels[row, :len(y)], mask[row, :len(x)] = \
                torch.tensor(x), torch.tensor(y), 1
        model.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    plain_s = time.perf_counter() - started
    return {"pairs": len(examples), "batch_size": batch_size,
            "feature_pairs_per_s": round(len(examples) / feature_s, 1),
            "plain_pairs_per_s": round(len(examples) / plain_s, 1),
            "throughput_ratio": round(plain_s / feature_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projection-dim", type=int, default=4096)
    parser.add_argument("--preconditioner", default="trak")
    parser.add_argument("--damping", type=float, default=1.0)
    parser.add_argument("--model", default=str(SAMPLE / "tiny_lm"))
    parser.add_argument("--eval", default=str(SAMPLE / "eval_tiny_lm.jsonl"))
    args = parser.parse_args()
    model_dir, eval_path = Path(args.model), Path(args.eval)
    if not (model_dir / "config.json").is_file() or not eval_path.is_file():
        sys.exit("run `python sample_data/make_tiny_lm.py` first")
    train = sorted(str(p) for p in (SAMPLE / "train").glob("*.jsonl"))
    with stdout_to_stderr(), tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        options = {"model": str(model_dir), "projection_dim": args.projection_dim,
                   "preconditioner": args.preconditioner, "damping": args.damping,
                   "cache_dir": str(tmp_path / "cache")}
        shown = {k: v for k, v in options.items() if k != "cache_dir"}
        figures = {"bench": "gradient", "options": shown,
                   "gradient": evaluate("gradient", options, train, eval_path, tmp_path),
                   "embedding": evaluate("embedding", {"cache_dir": str(tmp_path / "emb")}, train,
                                                eval_path, tmp_path),
                   "throughput": throughput(model_dir, train, 128, 16, tmp_path),
                   "peers": "not run (kronfluence / traker not installed here)"}
    emit_json(figures)


if __name__ == "__main__":
    main()
