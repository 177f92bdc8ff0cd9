"""Benchmark: `refine.collect` against sentence-transformers' own encode of the same texts.

    python bench/collect.py            # 20,000 pairs x 500 eval items (several minutes on 2 cores)
    python bench/collect.py --small    # 1,000 x 50, a quick sanity run

One process, in this order (reported as "order"; ``--collect-first`` moves the raw encode
after the two collects, to check for an order effect):

1. build the backend's EmbeddingModel (fingerprint) and load the SentenceTransformer it wraps
   -> model_load_s; warm the model up on a few unrelated texts;
2. raw encode: ``SentenceTransformer.encode`` (batch_size 64, normalize_embeddings=True) on
   exactly the distinct texts collect embeds, as the embedding backend builds them
   (``EmbeddingBackend._texts``: each pair's / item's ``qa_text``, plus its answer alone when
   ``answer_weight`` > 0): first the training texts, then the eval texts not among them
   -> raw_encode_s;
3. cold collect: ``refine.collect`` (progress=False) into a fresh run dir with an empty
   embedding cache, given the backend from step 1 -> collect_cold_s;
4. warm collect: the same collect into another fresh run dir, with a new backend (new
   EmbeddingModel, same cache dir, model never loaded) -> collect_warm_s.

Model loading is excluded from all three timings (``model_load_included: false``): collect is
handed a backend whose model is already built (the documented ``backend=`` argument), and
the raw encode uses that same loaded model object.

The machine is assumed otherwise idle: "loadavg_1m" gives the 1-minute load average at the
start and the end, and "cpu_s" the process CPU seconds of each span: where cpu_s / wall
seconds falls well below torch_threads the process did not get its cores, and that span's
wall time (and so the ratio) is inflated by other processes.

The two collects gather no text evidence (``collect.evidence`` off), so that they and the raw
encode embed the same texts. ``evidence`` times what collect does besides by default —
``refine.stages.flagging.evidence.gather`` on the cold run's tables, with a fresh cache and then a warm one —
against the raw encode of exactly its sentences (answers, references, every training answer's).

Prints one JSON line of figures on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import chat_record, log, unique_pairs, variant_answer, write_jsonl  # noqa: E402


def make_inputs(root: Path, n_pairs: int, n_eval: int, seed: int) -> tuple[Path, Path]:
    rng = random.Random(seed + 1)
    pairs = unique_pairs(n_pairs, seed)
    train = root / "train.jsonl"
    write_jsonl(train, (chat_record(q, a, s) for q, a, s in pairs))
    # Eval items: most ask (roughly) a training question and answer near its training answer,
    # ~20% of those with a wrong detail (verdict bad); ~10% are about something unseen.
    unseen = unique_pairs(n_eval, seed + 99)
    train_texts = {(q, a) for q, a, _ in pairs}
    items = []
    for i in range(n_eval):
        if rng.random() < 0.1:
            question, base, _ = unseen[i]
        else:
            question, base, _ = pairs[rng.randrange(n_pairs)]
        bad = rng.random() < 0.2
        answer = variant_answer(rng, base, bad)
        if (question, answer) in train_texts:
            answer += " (paraphrased)"
        # The reference is the answer the item is near (what a bad answer got wrong): without
        # references, text evidence has nothing to compare and gather returns at once.
        items.append({"id": f"ev-{i:05d}", "question": question, "answer": answer, "reference": base,
                      "verdict": "bad" if bad else "good"})
    evalf = root / "eval.jsonl"
    write_jsonl(evalf, iter(items))
    return train, evalf


def evidence_spans(root: Path, run: Path, model, raw, timed) -> dict:
    """The text evidence collect gathers (refine.stages.flagging.evidence.gather: every sentence of the answers,
    references and training answers encoded, then compared), cold (an empty cache) and warm,
    against the raw encode of exactly those sentences."""
    import pandas as pd

    from refine.core.embeddings import EmbeddingModel
    from refine.stages.flagging.evidence import gather
    from refine.stages.flagging.evidence_text import sentences

    items = pd.read_parquet(run / "items.parquet")
    items = items[items["status"] == "done"]
    pairs = pd.read_parquet(run / "pairs.parquet")
    cites = pd.read_parquet(run / "attributions.parquet", columns=["eval_id", "pair_id"])
    texts = sorted({s for column in (items["answer"], items["reference"]) for t in column for s in sentences(t)})
    claims = [s for t in pairs.drop_duplicates("pair_id")["answer"] for s in sentences(t)]
    _, raw_s, raw_cpu = timed("raw encode of the evidence sentences",
                              lambda: (raw(texts), raw(list(dict.fromkeys(claims)))))
    spans = {}
    for label, cache in (("cold", root / "evidence-cache"), ("warm", root / "evidence-cache")):
        # The loaded model is shared (loaded once per process), so no span loads it.
        fresh = EmbeddingModel(cache_dir=cache, batch_size=model.batch_size)

        def run_gather():
            matrices = []

            def to_disk(t, what=None):
                matrices.append(fresh.encode_to_disk(t))
                return matrices[-1].array
            try:
                return gather(items, pairs, cites, fresh.encode, encode_claims=to_disk)
            finally:
                for m in matrices:
                    m.close()
        result, seconds, cpu = timed(f"evidence gather ({label} cache)", run_gather)
        spans[label] = (result, seconds, cpu)
    return {"sentences": {"eval": len(texts), "training": len(claims)},
            "raw_encode_s": round(raw_s, 3), "gather_cold_s": round(spans["cold"][1], 3),
            "gather_warm_s": round(spans["warm"][1], 3),
            "ratio_vs_raw_encode": round(spans["cold"][1] / raw_s, 4),
            "cpu_s": {"raw_encode": round(raw_cpu, 3), "gather_cold": round(spans["cold"][2], 3),
                      "gather_warm": round(spans["warm"][2], 3)},
            "rows": len(spans["cold"][0].rows), "links": len(spans["cold"][0].links)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="1,000 pairs x 50 eval items")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--eval-items", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--collect-first", action="store_true",
                        help="time the two collects before the raw encode (to check for an "
                             "order effect)")
    args = parser.parse_args()
    n_pairs = args.pairs or (1_000 if args.small else 20_000)
    n_eval = args.eval_items or (50 if args.small else 500)

    with tempfile.TemporaryDirectory(prefix="refine-bench-collect-") as tmp, stdout_to_stderr():
        root = Path(tmp)
        cache_dir = root / "cache"
        os.environ["REFINE_CACHE_DIR"] = str(cache_dir)   # nothing may land in ~/.cache
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

        import numpy as np
        import pyarrow.parquet as pq
        import torch

        import refine
        from refine.attribution.embedding import EmbeddingBackend, EmbeddingOptions
        from refine.core.embeddings import EmbeddingModel, resolve_model_path

        load_start = round(os.getloadavg()[0], 2)
        if load_start > 0.5:
            log(f"warning: 1-minute load average is {load_start} before starting; "
                "other processes on this machine will slow the timings down")
        t = time.perf_counter()
        train, evalf = make_inputs(root, n_pairs, n_eval, args.seed)
        log(f"inputs: {n_pairs} pairs, {n_eval} eval items in {time.perf_counter() - t:.1f}s "
            f"({train.stat().st_size / 1e6:.1f} MB)")

        options = EmbeddingOptions(cache_dir=str(cache_dir))
        # Attribution alone here, like for like with the raw encode of the same texts; the text
        # evidence collect gathers besides is timed on its own below, against its own raw encode.
        settings = refine.CollectSettings(backend_options={"cache_dir": str(cache_dir)}, evidence=False)

        t = time.perf_counter()
        model = EmbeddingModel(cache_dir=cache_dir, batch_size=options.batch_size)
        st = model._st_model()
        model_load_s = time.perf_counter() - t
        backend = EmbeddingBackend(options, top_k=settings.top_k, model=model)

        # Exactly the texts collect embeds, as the backend builds them (Q+A, and the answer
        # alone when answer_weight > 0), each distinct text once: the cache encodes a text
        # once, and eval texts already encoded for training are not encoded again.
        training = refine.load_training([str(train)])
        pairs = training.unique_pairs()
        assert len(pairs) == n_pairs, len(pairs)
        train_all = backend._texts([(p.question, p.answer) for p in pairs])
        train_texts = list(dict.fromkeys(train_all))
        eval_items = refine.load_eval(str(evalf)).items
        seen = set(train_texts)
        eval_texts = [x for x in dict.fromkeys(backend._texts([(i.question, i.answer or "")
                                                                for i in eval_items]))
                      if x not in seen]
        assert model.path == resolve_model_path("default")
        log(f"model built and loaded in {model_load_s:.2f}s; torch threads {torch.get_num_threads()}")

        def raw(texts):
            return st.encode(list(texts), batch_size=options.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)

        raw(["warm-up sentence number one.", "Q: How do I warm up?\nA: Encode a few texts first.",
             "A third, somewhat longer warm-up sentence to exercise another padding length."] * 22)
        tok = st.tokenizer(train_texts[::max(1, len(train_texts) // 2000)])["input_ids"]
        n_tokens = sum(map(len, tok)) / len(tok)
        log(f"texts to encode: {len(train_texts)} training, {len(eval_texts)} eval "
            f"(answer_weight {options.answer_weight}); mean {n_tokens:.1f} tokens")

        def timed(label, fn):
            log(f"{label} ...")
            t, c = time.perf_counter(), time.process_time()
            result = fn()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            log(f"{label}: {wall:.2f}s wall, {cpu:.2f}s CPU")
            return result, wall, cpu

        def raw_encode():
            vectors = raw(train_texts)
            raw(eval_texts)
            return vectors

        warm_model = EmbeddingModel(cache_dir=cache_dir, batch_size=options.batch_size)
        warm_backend = EmbeddingBackend(options, top_k=settings.top_k, model=warm_model)

        def run_collect(name, with_backend):
            return refine.collect([str(train)], str(evalf), root / name, settings,
                                  progress=False, backend=with_backend)

        spans = ["raw_encode", "collect_cold", "collect_warm"]
        if args.collect_first:
            spans = ["collect_cold", "collect_warm", "raw_encode"]
        done = {}
        for span in spans:
            if span == "raw_encode":
                done[span] = timed("raw encode", raw_encode)
            elif span == "collect_cold":
                done[span] = timed("collect (cold cache)", lambda: run_collect("run-cold", backend))
            else:  # a new EmbeddingModel: loads the cache from disk, never the model
                done[span] = timed("collect (warm cache)", lambda: run_collect("run-warm", warm_backend))
        raw_train, raw_encode_s, raw_encode_cpu_s = done["raw_encode"]
        cold, collect_cold_s, collect_cold_cpu_s = done["collect_cold"]
        warm, collect_warm_s, collect_warm_cpu_s = done["collect_warm"]
        evidence = evidence_spans(root, cold.run_dir, model, raw, timed)
        # The vectors collect used (read back from the cache it filled) are the raw encode's.
        where = {x: i for i, x in enumerate(train_texts)}
        used = backend.model.encode(train_all)
        max_abs_diff = float(np.abs(used - raw_train[[where[x] for x in train_all]]).max())
        same = pq.read_table(root / "run-cold" / "attributions.parquet").equals(
            pq.read_table(root / "run-warm" / "attributions.parquet"))

        figures = {
            "bench": "collect",
            "pairs": n_pairs,
            "eval_items": n_eval,
            "raw_encode_s": round(raw_encode_s, 3),
            "collect_cold_s": round(collect_cold_s, 3),
            "collect_warm_s": round(collect_warm_s, 3),
            "ratio_vs_raw_encode": round(collect_cold_s / raw_encode_s, 4),
            "cache_ratio": round(collect_warm_s / collect_cold_s, 4),
            "targets": {"ratio_vs_raw_encode": 1.15, "cache_ratio": 0.1},
            # Process CPU seconds of the same spans: cpu / wall well below torch_threads means
            # the span did not get its cores (other processes; see loadavg_1m).
            "cpu_s": {"raw_encode": round(raw_encode_cpu_s, 3),
                      "collect_cold": round(collect_cold_cpu_s, 3),
                      "collect_warm": round(collect_warm_cpu_s, 3)},
            "ratio_vs_raw_encode_cpu": round(collect_cold_cpu_s / raw_encode_cpu_s, 4),
            "torch_threads": torch.get_num_threads(),
            "model_load_included": False,
            "model_load_s": round(model_load_s, 3),
            "order": ["model_load", "warm_up", *spans],
            "texts_encoded": {"train": len(train_texts), "eval": len(eval_texts)},
            "answer_weight": options.answer_weight,
            "mean_train_tokens": round(n_tokens, 1),
            "loadavg_1m": [load_start, round(os.getloadavg()[0], 2)],
            "warm_loaded_model": warm_model._model is not None,
            "warm_same_attributions": bool(same),
            "max_abs_diff_vs_raw": max_abs_diff,
            "items_done": [cold.done, warm.done],
            "evidence": evidence,
            "small": args.small,
        }
    emit_json(figures)


if __name__ == "__main__":
    main()
