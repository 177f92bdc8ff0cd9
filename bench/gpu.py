"""Benchmark (GPU machine): the gradient backend on CUDA, float32 and bfloat16, against the CPU.

    python bench/gpu.py            # about 2 minutes on one GPU; prints one JSON line

Prepared to run as one short script where a GPU is lent (refine's CI has none):

* ``agreement`` — the sample tiny LM (sample_data/tiny_lm) on the CPU in float32 and on the GPU
  in float32 and bfloat16: the same best pair per bad answer, and the top-10 overlap, for the
  sample's bad answers (eval_tiny_lm.jsonl);
* ``throughput`` — a GPT-2-small-shaped model (12 layers, width 768, random weights: nothing is
  downloaded) on 1,024 synthetic pairs: training-feature pairs/s on the GPU in float32 and
  bfloat16 with ``batch_size: auto`` (the batch it settled on), over a plain forward + backward
  of the same batches, and the GPU's peak memory.

Exits with a one-line JSON saying so when torch sees no CUDA device.
"""

from __future__ import annotations

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


def _quiet(desc: str, total: int):
    return lambda n: None


def agreement(tmp: Path) -> dict:
    import numpy as np

    from refine import load_eval, load_training
    from refine.attribution.base import make_backend

    training = load_training(sorted(str(p) for p in (SAMPLE / "train").glob("*.jsonl")))
    evalset = load_eval(str(SAMPLE / "eval_tiny_lm.jsonl")).items
    bad = [i for i in evalset if i.verdict == "bad"]
    scores, seconds = {}, {}
    for name, device, dtype in (("cpu_float32", "cpu", "float32"), ("cuda_float32", "cuda", "float32"),
                                ("cuda_bfloat16", "cuda", "bfloat16")):
        started = time.perf_counter()
        with make_backend("gradient", {"model": str(SAMPLE / "tiny_lm"), "device": device, "dtype": dtype,
                                       "cache_dir": str(tmp / name)}, top_k=10) as backend:
            backend.prepare(training, _quiet)
            backend.prepare_queries(evalset, _quiet)
            scores[name] = backend.scores(bad)
        seconds[name] = round(time.perf_counter() - started, 1)
    reference = scores["cpu_float32"]
    out = {"bad_answers": len(bad), "seconds": seconds}
    for name in ("cuda_float32", "cuda_bfloat16"):
        other = scores[name]
        out[name] = {"same_best_pair": round(float(np.mean(reference.argmax(1) == other.argmax(1))), 3),
                     "top10_overlap": round(float(np.mean(
                         [len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10
                          for a, b in zip(reference, other)])), 3)}
    return out


def throughput(tmp: Path, n_pairs: int = 1024) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    sys.path.insert(0, str(SAMPLE))
    from make_tiny_lm import train_tokenizer

    from refine import load_training
    from refine.attribution.base import make_backend
    from refine.attribution.gradient import encode_example

    pairs = load_training(sorted(str(p) for p in (SAMPLE / "train").glob("*.jsonl"))).unique_pairs()
    examples = [(f"{p.question} (#{i})", p.answer, p.system_prompt) for i, p in
                zip(range(n_pairs), (pairs[i % len(pairs)] for i in range(n_pairs)))]
    tokenizer = train_tokenizer([t for q, a, s in examples for t in (q, a, s) if t], vocab_size=8000)
    model_dir = tmp / "gpt2-small-shaped"
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=768, n_layer=12, n_head=12,
                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    big = tmp / "big.jsonl"
    with open(big, "w", encoding="utf-8") as fh:
        for q, a, _ in examples:
            fh.write(json.dumps({"messages": [{"role": "user", "content": q},
                                              {"role": "assistant", "content": a}]}) + "\n")
    training = load_training([str(big)])
    out = {"pairs": n_pairs, "layers": 12, "width": 768}
    for dtype in ("float32", "bfloat16"):
        backend = make_backend("gradient", {"model": str(model_dir), "device": "cuda", "dtype": dtype,
                                            "batch_size": "auto", "whiten": "none",
                                            "cache_dir": str(tmp / f"cache-{dtype}")}, top_k=10)
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        backend.prepare(training, _quiet)
        torch.cuda.synchronize()
        feature_s = time.perf_counter() - started
        _, model, _ = backend._load()
        encoded = [encode_example(tokenizer, q, a, s, max_length=512) for q, a, s in examples]
        batch = backend._batch
        started = time.perf_counter()
        for start in range(0, len(encoded), batch):   # a plain forward + backward, same batches
            chunk = encoded[start:start + batch]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            for row, (x, y) in enumerate(chunk):
                ids[row, :len(x)], labels[row, :len(y)] = torch.tensor(x), torch.tensor(y)
            for param in model.parameters():
                param.requires_grad_(True)
            model(input_ids=ids.cuda(), labels=labels.cuda()).loss.backward()
            model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        plain_s = time.perf_counter() - started
        out[dtype] = {"feature_pairs_per_s": round(n_pairs / feature_s, 1),
                      "plain_pairs_per_s": round(n_pairs / plain_s, 1),
                      "throughput_ratio": round(plain_s / feature_s, 3), "auto_batch_size": batch,
                      "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        backend.close()
    return out


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        emit_json({"bench": "gpu", "skipped": f"no CUDA device visible to torch {torch.__version__}"})
        return
    figures = {"bench": "gpu", "device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with stdout_to_stderr(), tempfile.TemporaryDirectory() as tmp:
        figures["agreement"] = agreement(Path(tmp))
        figures["throughput"] = throughput(Path(tmp))
    emit_json(figures)


if __name__ == "__main__":
    main()
