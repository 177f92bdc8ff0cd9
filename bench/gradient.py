"""Benchmark: the gradient backend against the embedding backend, peers, removal, memory.

    python sample_data/make_tiny_lm.py      # once: sample_data/tiny_lm/ and eval_tiny_lm.jsonl
    python bench/gradient.py [--second-seed 7] [--memory-pairs 50000] [--skip ...]

Prints one JSON line on stdout; progress goes to stderr. Sections (each can be skipped):

``quality`` — for the sample tiny LM and for a second synthetic set (make_sample_data.py with
another seed, its own tiny LM trained here), `refine collect` + `refine flag` with the
``gradient`` and the ``embedding`` backend side by side on the same eval set (the model's own
greedy answers, eval_tiny_lm.jsonl):
  * ``precision_at_10``: over the planted-defect items whose answer repeats a planted answer
    (the only ones a planted pair can have caused), the share of the 10 best-scored pairs
    that are culprits (planted pairs of the item's topic; any refusal pair for a refusal),
    divided by the most possible, min(10, culprits); ``top1``: the best pair is a culprit;
  * ``flag_precision`` / ``flag_recall``: flagged pairs against the 13 planted ones; and how
    many flagged pairs that are not planted have an answer that ≥ 2 bad answers repeat
    (token F1 ≥ 0.5): the model's own fallback answers, real culprits the plan did not plant.

``removal`` — the tiny LM retrained (same tokenizer, settings and seed) on the dataset
`refine emit` writes without the gradient run's flagged pairs (``flagged_removed``), on the
dataset without as many random records (``random_removed``), and on what `refine emit --mode
edit` writes (``flagged_edited``: answers replaced by references where refine can vouch for
one, the rest quarantined). ``defects``: planted-defect items whose answer still repeats a
planted answer (token F1 ≥ 0.5), against ``defects_before``; ``truthful``: those answered
with the truth (token F1 ≥ 0.5 with the reference).

``speed`` — training-feature throughput (pairs/s) over a plain forward + backward of the same
model on the same batches (``throughput_ratio``, target ≥ 0.7); then, one torch thread each
(the cores are shared; two threads mostly measure contention), refine's whole gradient
attribution (features of every pair and query + scoring) against Kronfluence (EK-FAC) and
TRAK on the same model, loss and data, with their precision_at_10 on the same queries:
``refine_loss`` differentiates the plain answer loss like the peers (no relative scaling),
``refine`` uses the defaults (margin, layerwise, relative), ``refine_trak`` the same with one
D×D preconditioner block; ``kronfluence_margin`` is Kronfluence measuring the query's margin
like refine's default. ``peer_time_over_refine_loss`` / ``peer_time_over_refine`` > 1 means
refine was faster.

``memory`` — in a fresh process, peak RSS of preparing + scoring at ``--memory-pairs`` pairs
(the sample pairs, each repeated with a numbered question) with projection_dim 4096, next to
the size of the feature matrix it writes and the RSS after loading the model.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
SECTIONS = ("quality", "variants", "second_seed", "removal", "edit", "closed_loop", "speed", "peers",
            "memory")
GENERALISE = SAMPLE / "generalise"
# Gradient scoring variants measured on both samples (issue 13): the default, K-FAC-whitened
# projection, a TrackStar-style one (diagonal second-moment normalisation + the eval set's
# autocorrelation mixed into the curvature), contrastive queries, and their combinations.
VARIANTS = {
    "previous_default": {"whiten": "none", "contrast": 0.0, "preconditioner": "layerwise"},
    "default": {},
    "kfac_layerwise": {"whiten": "kfac", "contrast": 0.0, "preconditioner": "layerwise"},
    "trackstar_style": {"whiten": "diag", "eval_mix": 0.5, "preconditioner": "layerwise", "contrast": 0.0},
    "contrast_layerwise": {"whiten": "none", "contrast": 1.0, "preconditioner": "layerwise"},
    "contrast_cosine": {"whiten": "none", "contrast": 1.0, "preconditioner": "cosine"},
}


def log(msg: str) -> None:
    print(f"[bench/gradient] {msg}", file=sys.stderr, flush=True)


def _tiny_lm():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tiny_lm", SAMPLE / "make_tiny_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_files(data: Path) -> list[str]:
    return sorted(str(p) for p in (data / "train").glob("*.jsonl"))


class World:
    """A sample dataset folder with its tiny LM, eval set and ground truth."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.model = data / "tiny_lm"
        self.eval = data / "eval_tiny_lm.jsonl"
        self.truth = json.loads((data / "eval_tiny_lm.truth.json").read_text(encoding="utf-8"))
        self.train = _train_files(data)
        self.planted = {(Path(p["file"]).name, p["line"]) for p in self.truth["planted_pairs"]}

    def culprits(self, item_id: str) -> set[tuple[str, int]]:
        kind = self.truth["eval_kinds"][item_id]
        topic = self.truth["eval_topics"].get(item_id)
        return {(Path(p["file"]).name, p["line"]) for p in self.truth["planted_pairs"]
                if p["topic"] == topic or (kind == "over_refusal" and p["kind"] == kind)}

    def repeating_items(self) -> list:
        """The planted-defect items whose answer says what a planted pair taught."""
        from refine import load_eval

        lm = _tiny_lm()
        out = []
        for item in load_eval(str(self.eval)).items:
            kind = self.truth["eval_kinds"][item.id]
            if kind in ("wrong_fact", "over_refusal") and lm.repeats_planted(
                    item.answer, lm.culprit_answers(self.truth, kind,
                                                    self.truth["eval_topics"][item.id])):
                out.append(item)
        return out


class GeneralisingWorld:
    """sample_data/generalise: the model answers paraphrases, defects live in 3 wordings each."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.model = data / "tiny_lm"
        self.eval = data / "eval.jsonl"
        self.truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
        self.train = [str(data / "train.jsonl")]
        self.planted = {("train.jsonl", line) for g in self.truth["groups"] for line in g["lines"]}

    def culprits(self, item_id: str) -> set[tuple[str, int]]:
        return {("train.jsonl", line) for line in self.truth["items"][item_id]["culprits"]}

    def repeating_items(self) -> list:
        """The items whose answer says what their fact's planted group taught."""
        from refine import load_eval

        return [i for i in load_eval(str(self.eval)).items
                if self.truth["items"][i.id]["kind"] == "planted"]


def _generaliser():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_generalising_sample",
                                                  SAMPLE / "make_generalising_sample.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SAMPLE))
    spec.loader.exec_module(module)
    return module


def precision_at_10(world: World, items: list, scores, pairs) -> dict:
    import numpy as np

    where = [(Path(p.file).name, p.line) for p in pairs]
    precision, top1 = [], []
    for item, row in zip(items, scores):
        culprits = world.culprits(item.id)
        best = [where[j] for j in np.argsort(-np.asarray(row), kind="stable")[:10]]
        precision.append(sum(b in culprits for b in best) / min(10, len(culprits)))
        top1.append(best[0] in culprits)
    return {"precision_at_10": round(float(np.mean(precision)), 3),
            "top1": round(float(np.mean(top1)), 3), "queries": len(items)}


def evaluate(world: World, name: str, options: dict, tmp: Path) -> dict:
    from refine import load_eval, load_training
    from refine.attribution.base import make_backend
    from refine.stages.collection import CollectSettings, collect
    from refine.stages.flagging import flag

    started = time.perf_counter()
    run = tmp / f"run-{name}"
    collect(world.train, str(world.eval), run, CollectSettings(name, 10, options), progress=False)
    collect_s = time.perf_counter() - started
    from refine.stages.grading import token_f1

    from refine import FlagSettings

    alone = flag(run, FlagSettings(defect_groups=False)).flagged_pairs
    alone_set = {(Path(r.file).name, r.line) for r in alone.itertuples()}
    table = flag(run).flagged_pairs
    flagged = {(Path(r.file).name, r.line) for r in table.itertuples()}
    hits = len(flagged & world.planted)
    # A flagged pair that is not planted can still be a real culprit of *this* model: one
    # whose answer it repeats, word for word, for other questions (a fallback answer).
    bad_answers = [i.answer for i in load_eval(str(world.eval)).items if i.verdict == "bad"]
    repeated = sum(1 for r in table.itertuples()
                   if (Path(r.file).name, r.line) not in world.planted
                   and sum(token_f1(a, r.answer) >= 0.5 for a in bad_answers) >= 2)

    # Rankings come from the raw scores, not from the level-filtered citations.
    training = load_training(world.train)
    items = world.repeating_items()
    with make_backend(name, options, top_k=10) as ranker:
        ranker.prepare(training, lambda desc, total: (lambda n: None))
        ranker.prepare_queries(load_eval(str(world.eval)).items, lambda desc, total: (lambda n: None))
        scores = ranker.scores(items)
        pairs = training.unique_pairs()
    alone_hits = len(alone_set & world.planted)
    return {**precision_at_10(world, items, scores, pairs),
            "flagged": len(flagged), "flag_hits": hits,
            "flagged_not_planted_whose_answer_bad_answers_repeat": repeated,
            "flag_precision": round(hits / len(flagged), 3) if flagged else None,
            "flag_recall": round(hits / len(world.planted), 3),
            "pairs_alone": {"flagged": len(alone_set),
                            "flag_precision": round(alone_hits / len(alone_set), 3) if alone_set else None,
                            "flag_recall": round(alone_hits / len(world.planted), 3)},
            "collect_s": round(collect_s, 1), "run": str(run)}


def quality(world: World, tmp: Path, projection_dim: int) -> dict:
    gradient = {"model": str(world.model), "projection_dim": projection_dim,
                "cache_dir": str(tmp / "cache")}
    return {"gradient": evaluate(world, "gradient", gradient, tmp),
            "embedding": evaluate(world, "embedding", {"cache_dir": str(tmp / "emb")}, tmp)}


def variants(world: World, tmp: Path, projection_dim: int) -> dict:
    """Each gradient variant's precision@10, top-1 and flags on `world`, one thread each."""
    from threadpoolctl import threadpool_limits

    import torch

    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            for name, extra in VARIANTS.items():
                options = {"model": str(world.model), "projection_dim": projection_dim,
                           "cache_dir": str(tmp / f"cache-{name}"), **extra}
                result = evaluate(world, "gradient", options, tmp / name)
                result.pop("run")
                out[name] = {k: result[k] for k in ("precision_at_10", "top1", "flag_precision",
                                                    "flag_recall", "flagged", "collect_s")}
    finally:
        torch.set_num_threads(threads)
    return out


def closed_loop(world: GeneralisingWorld, run: Path, tmp: Path, seeds: tuple[int, ...]) -> dict:
    """Flag → emit (prune, edit, edit + counter-examples; and as many random records removed)
    → retrain the tiny LM the same way (the given training seeds) → ask the eval set again.

    Per variant and seed: of the items whose answer repeated a planted defect, the share that no
    longer does (``defect_removed``) and the share now right (``correct``); and the bad rate of
    the items about clean facts against the original eval set's (``other_bad_rate_change``).
    ``unmodified`` retrains the original data with the same seeds: the noise of retraining.
    """
    from refine import ClusterSettings, EmitSettings, cluster, emit, load_training

    gen = _generaliser()
    lm = _tiny_lm()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world.model, local_files_only=True)
    config = json.loads((world.model / lm.TRAINING_ARGS).read_text())
    scene = gen.build_world(world.truth["seed"])
    original = {row["id"]: row for row in map(json.loads, world.eval.read_text().splitlines())}
    defect_items = [e for e, it in world.truth["items"].items() if it["kind"] == "planted"]
    clean_items = [e for e, it in world.truth["items"].items() if it["group"] is None]
    before_bad = sum(original[e]["verdict"] == "bad" for e in clean_items) / len(clean_items)

    cluster(run, ClusterSettings(min_size=2))
    datasets = {"unmodified": Path(world.train[0])}
    removed = 0
    for name, settings in (("prune", EmitSettings()), ("edit", EmitSettings(mode="edit")),
                           ("edit_counterexamples", EmitSettings(mode="edit", counterexamples=True))):
        target = tmp / f"{name}.jsonl"
        result = emit(run, target, settings)
        datasets[name] = target
        if name == "prune":
            removed = result.removed
    lines = Path(world.train[0]).read_text().splitlines()
    drop = set(random.Random(0).sample(range(len(lines)), removed))
    datasets["random_removed"] = tmp / "random.jsonl"
    datasets["random_removed"].write_text("".join(l + "\n" for i, l in enumerate(lines) if i not in drop))

    out: dict = {"seeds": list(seeds), "defect_items": len(defect_items), "records_removed": removed,
                 "other_bad_rate_before": round(before_bad, 3)}
    for name, path in datasets.items():
        examples = [(p.question, p.answer, p.system_prompt) for p in load_training([str(path)]).unique_pairs()]
        runs = []
        for seed in seeds:
            started = time.perf_counter()
            model = lm.train_model(tokenizer, examples, **{**config, "seed": seed})
            rows, items = gen.answer(model, tokenizer, scene)
            verdict = {r["id"]: (r["verdict"], items[r["id"]]["kind"]) for r in rows}
            runs.append({"defect_removed": sum(verdict[e][1] != "planted" for e in defect_items) / len(defect_items),
                         "correct": sum(verdict[e][0] == "good" for e in defect_items) / len(defect_items),
                         "other_bad_rate": sum(verdict[e][0] == "bad" for e in clean_items) / len(clean_items)})
            log(f"closed loop {name} seed {seed}: {runs[-1]} ({time.perf_counter() - started:.0f} s)")
        summary = {}
        for key in ("defect_removed", "correct", "other_bad_rate"):
            values = [r[key] for r in runs]
            summary[key] = {"mean": round(sum(values) / len(values), 3),
                            "min": round(min(values), 3), "max": round(max(values), 3)}
        summary["other_bad_rate_change"] = round(summary["other_bad_rate"]["mean"] - before_bad, 3)
        out[name] = summary
    return out


def make_world(seed: int, tmp: Path) -> World:
    """Another synthetic dataset of the same design and a tiny LM trained on it."""
    data = tmp / f"seed-{seed}"
    subprocess.run([sys.executable, str(SAMPLE / "make_sample_data.py"), "--seed", str(seed),
                    "--out", str(data)], check=True, stdout=sys.stderr)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(SAMPLE / "make_tiny_lm.py"), "--data", str(data)],
                   check=True, stdout=sys.stderr)
    log(f"seed {seed}: tiny LM trained and answered in {time.perf_counter() - started:.0f} s")
    return World(data)


def _retrained(world: World, train_files: list[str]) -> dict:
    """Planted-defect items a tiny LM retrained on `train_files` like the original still gets
    wrong (repeats a planted answer), and how many it now answers with the truth (token F1 ≥
    0.5 with the reference)."""
    from transformers import AutoTokenizer

    from refine.stages.grading import token_f1

    lm = _tiny_lm()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(world.model, local_files_only=True)
    config = json.loads((world.model / lm.TRAINING_ARGS).read_text())
    model = lm.train_model(tokenizer, lm.examples_of(train_files), **config)
    rows = [json.loads(line) for line in world.eval.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if world.truth["eval_kinds"][r["id"]] in ("wrong_fact", "over_refusal")]
    for row in rows:
        row["answer"] = lm.generate(model, tokenizer, row["question"], row.get("system_prompt"))
    log(f"retrained on {', '.join(Path(f).parent.parent.name + '/' + Path(f).name for f in train_files)}"
        f" in {time.perf_counter() - started:.0f} s")
    return {"defects": lm.planted_repeats(rows, world.truth),
            "truthful": sum(token_f1(r["answer"], r["reference"]) >= 0.5 for r in rows)}


def removal(world: World, run: Path, tmp: Path, seed: int = 0, prune: bool = True,
            edit: bool = True) -> dict:
    from refine import load_training
    from refine.stages.emission import EmitSettings, emit
    from refine.stages.flagging import read_flags

    lm = _tiny_lm()
    rows = [json.loads(line) for line in world.eval.read_text(encoding="utf-8").splitlines()]
    before = lm.planted_repeats(rows, world.truth)
    pruned = tmp / "pruned" / "train"     # one output per input file, same names
    flagged = int(read_flags(run)["flagged"].sum())
    removed = emit(run, pruned).removed          # records: a pair can sit on several lines
    out = {"pairs_flagged": flagged, "records_removed": removed,
           "training_pairs": len(load_training(world.train).unique_pairs()),
           "defect_items": sum(k in ("wrong_fact", "over_refusal")
                               for k in world.truth["eval_kinds"].values()),
           "defects_before": before}
    if prune:
        out.update(_pruned_and_random(world, pruned, removed, tmp, seed))
    if edit:
        # `--mode edit`: answers replaced by the references of the bad answers they drove,
        # where refine can vouch for one; the rest quarantined (left out of training).
        edited = tmp / "edited" / "train"
        result = emit(run, edited, EmitSettings(mode="edit"))
        out["flagged_edited"] = {**_retrained(world, _train_files(edited.parent)),
                                 "edited": result.edited, "quarantined": result.quarantined}
    return out


def _pruned_and_random(world: World, pruned: Path, removed: int, tmp: Path, seed: int) -> dict:
    out = {"flagged_removed": _retrained(world, _train_files(pruned.parent))}
    # The same number of random records removed, planted ones included by chance.
    rng = random.Random(seed)
    lines = [(path, i) for path in world.train
             for i in range(len(Path(path).read_text(encoding="utf-8").splitlines()))]
    drop = set(rng.sample(lines, removed))
    random_dir = tmp / "random" / "train"
    random_dir.mkdir(parents=True)
    for path in world.train:
        kept = [line for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines())
                if (path, i) not in drop]
        (random_dir / Path(path).name).write_text("\n".join(kept) + "\n", encoding="utf-8")
    out["random_removed"] = _retrained(world, _train_files(random_dir.parent))
    out["random_removed"]["planted_among_them"] = sum(
        (Path(p).name, i + 1) in world.planted for p, i in drop)
    return out


def throughput(world: World, n: int, batch_size: int, tmp: Path) -> dict:
    import torch

    from refine import load_training
    from refine.attribution.base import make_backend
    from refine.attribution.gradient import encode_example

    pairs = load_training(world.train).unique_pairs()[:n]
    examples = [(p.question, p.answer, p.system_prompt) for p in pairs]
    backend = make_backend("gradient", {"model": str(world.model), "batch_size": batch_size,
                                        "cache_dir": str(tmp / "tp")}, top_k=10)
    backend.features(examples[:batch_size])                       # load and warm up
    tokenizer, model, _ = backend._load()
    encoded = sorted((encode_example(tokenizer, *e) for e in examples), key=lambda e: len(e[0]))

    def plain() -> float:
        for p in model.parameters():
            p.requires_grad_(True)
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
        elapsed = time.perf_counter() - started
        for p in model.parameters():
            p.requires_grad_(False)
        return elapsed

    def ours() -> float:
        started = time.perf_counter()
        backend.features(examples)
        return time.perf_counter() - started

    # Interleaved, best of three each: the cores are shared, so one slow spell must not
    # land on one side only.
    plain_s, feature_s = min(plain() for _ in range(1)), float("inf")
    for _ in range(3):
        feature_s = min(feature_s, ours())
        plain_s = min(plain_s, plain())
    return {"pairs": len(examples), "batch_size": batch_size,
            "feature_pairs_per_s": round(len(examples) / feature_s, 1),
            "plain_pairs_per_s": round(len(examples) / plain_s, 1),
            "throughput_ratio": round(plain_s / feature_s, 3)}


def peers(world: World, tmp: Path, projection_dim: int) -> dict:
    import _peers
    import torch

    from refine import load_eval, load_training
    from refine.attribution.base import make_backend

    training = load_training(world.train)
    pairs = training.unique_pairs()
    items = world.repeating_items()
    train_examples = [(p.question, p.answer, p.system_prompt) for p in pairs]
    queries = [(i.question, i.answer, i.system_prompt) for i in items]
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    limits = threadpool_limits(1)       # BLAS too: refine's scoring is numpy/scipy
    out: dict = {"threads": "1 torch + 1 BLAS (threadpoolctl) for every method",
                 "projection_dim": projection_dim,
                 "damping_rule": "0.1 x the mean eigenvalue of each curvature block for every method "
                                 "(Kronfluence's own heuristic); refine's tuned default (1.0) shown too",
                 "queries": len(items)}
    # Like for like first: the peers differentiate the plain answer loss, with no relative
    # scaling; then refine's defaults (margin, relative) on the same queries.
    plain = {"whiten": "none", "contrast": 0.0}
    variants = {"refine_loss": {**plain, "preconditioner": "layerwise", "measurement": "loss",
                                "relative": False, "damping": 0.1},
                "refine": {}, "refine_previous_default": VARIANTS["previous_default"],
                "refine_layerwise_damping_0.1": {**plain, "preconditioner": "layerwise", "damping": 0.1},
                "refine_trak": {**plain, "preconditioner": "trak", "damping": 0.1}}
    try:
        for name, extra in variants.items():
            started, cpu = time.perf_counter(), time.process_time()
            with make_backend("gradient", {"model": str(world.model),
                                           "projection_dim": projection_dim,
                                           "cache_dir": str(tmp / f"peer-cache-{name}"),
                                           **extra}, top_k=10) as ours:
                ours.prepare(training, lambda desc, total: (lambda n: None))
                ours.prepare_queries(load_eval(str(world.eval)).items, lambda desc, total: (lambda n: None))
                scores = ours.scores(items)
            out[name] = {**precision_at_10(world, items, scores, pairs),
                         "total_s": round(time.perf_counter() - started, 1),
                         "cpu_s": round(time.process_time() - cpu, 1)}
    finally:
        torch.set_num_threads(threads)
        limits.restore_original_limits()
    refine_s = out["refine_loss"]["total_s"]
    import _bergson

    runners = {"kronfluence": lambda: _peers.kronfluence_scores(
                   str(world.model), train_examples, queries, strategy="ekfac",
                   work_dir=tmp, num_threads=1, damping=None),
               # The same, measuring the query's margin as refine's default does.
               "kronfluence_margin": lambda: _peers.kronfluence_scores(
                   str(world.model), train_examples, queries, strategy="ekfac",
                   work_dir=tmp, num_threads=1, measurement="margin", damping=None),
               "trak": lambda: _peers.trak_scores(
                   str(world.model), train_examples, queries, proj_dim=projection_dim, work_dir=tmp,
                   num_threads=1, damping=0.1)}
    available = _peers.available()
    available["kronfluence_margin"] = available["kronfluence"]
    bergson_why = _bergson.available()
    for method in ("trackstar", "ekfac", "shampoo", "cosine"):
        runners[f"bergson_{method}"] = (lambda m: lambda: _bergson.bergson_scores(
            str(world.model), train_examples, queries, method=m, projection_dim=projection_dim,
            work_dir=tmp / f"bergson-{m}", num_threads=1))(method)
        available[f"bergson_{method}"] = bergson_why
    for name, why in available.items():
        if why:
            out[name] = why
            continue
        log(f"peer {name} ...")
        try:
            with threadpool_limits(1):
                peer_scores, timing = runners[name]()
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            out[name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            continue
        out[name] = {**precision_at_10(world, items, peer_scores, pairs),
                     **{k: round(v, 1) if k.endswith("_s") else v for k, v in timing.items()},
                     "peer_time_over_refine_loss": round(timing["total_s"] / refine_s, 2),
                     "peer_time_over_refine": round(timing["total_s"] / out["refine"]["total_s"],
                                                    2),
                     "peer_time_over_refine_previous_default": round(
                         timing["total_s"] / out["refine_previous_default"]["total_s"], 2)}
    return out


def memory(world: World, n_pairs: int, tmp: Path) -> dict:
    """Runs in a fresh process (see --memory-child), so nothing else inflates its peak RSS."""
    result = subprocess.run([sys.executable, __file__, "--memory-child", str(n_pairs),
                             "--model", str(world.model), "--tmp", str(tmp)],
                            check=True, capture_output=True, text=True)
    sys.stderr.write(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_child(n_pairs: int, model: str, tmp: Path) -> None:
    import resource

    from refine import load_eval, load_training
    from refine.attribution.base import make_backend

    def peak_mb() -> float:
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec,
        # so a child of a big process would report the parent's peak.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    pairs = load_training(_train_files(SAMPLE)).unique_pairs()
    big = tmp / "memory-train.jsonl"
    with open(big, "w", encoding="utf-8") as fh:
        for i in range(n_pairs):
            p = pairs[i % len(pairs)]
            question = p.question if i < len(pairs) else f"{p.question} (#{i // len(pairs)})"
            fh.write(json.dumps({"messages": [{"role": "user", "content": question},
                                              {"role": "assistant", "content": p.answer}]},
                                ensure_ascii=False) + "\n")
    training = load_training([str(big)])
    items = load_eval(str(SAMPLE / "eval_tiny_lm.jsonl")).items[:32]
    backend = make_backend("gradient", {"model": model, "projection_dim": 4096,
                                        "cache_dir": str(tmp / "memory-cache")}, top_k=10)
    backend._load()
    after_load = peak_mb()
    started = time.perf_counter()
    with stdout_to_stderr():
        from tqdm import tqdm

        def progress(desc: str, total: int):
            bar = tqdm(total=total, desc=desc, mininterval=10)
            return bar.update
        backend.prepare(training, progress)
    prepare_s = time.perf_counter() - started
    backend.attribute(items)
    matrix = backend._train.shape
    print(json.dumps({"pairs": n_pairs, "projection_dim": 4096, "features_dim": matrix[1],
                      "feature_matrix_mb": round(matrix[0] * matrix[1] * 4 / 2**20, 1),
                      "rss_after_model_load_mb": after_load, "peak_rss_mb": peak_mb(),
                      "prepare_s": round(prepare_s, 1),
                      "pairs_per_s": round(n_pairs / prepare_s, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projection-dim", type=int, default=4096)
    parser.add_argument("--second-seed", type=int, default=7)
    parser.add_argument("--memory-pairs", type=int, default=50_000)
    parser.add_argument("--loop-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds of the closed loop's retrainings")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.model, Path(args.tmp))
        return
    world = World(SAMPLE)
    if not (world.model / "config.json").is_file():
        sys.exit("run `python sample_data/make_tiny_lm.py` first")
    figures: dict = {"bench": "gradient", "projection_dim": args.projection_dim}
    with stdout_to_stderr(), tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        run = None
        general = GeneralisingWorld(GENERALISE) if (GENERALISE / "tiny_lm" / "config.json").is_file() else None
        if general is None:
            figures["generalise"] = "run `python sample_data/make_generalising_sample.py` first"
        general_run = None
        if "quality" not in args.skip:
            log("quality on the sample tiny LM ...")
            figures["sample"] = quality(world, tmp_path / "sample", args.projection_dim)
            run = Path(figures["sample"]["gradient"].pop("run"))
            figures["sample"]["embedding"].pop("run")
            if general is not None:
                log("quality on the generalising sample ...")
                figures["generalise"] = quality(general, tmp_path / "generalise", args.projection_dim)
                figures["generalise"]["gradient"].pop("run")
                general_run = Path(figures["generalise"]["embedding"].pop("run"))
        if "variants" not in args.skip:
            log("gradient variants on both samples ...")
            figures["variants"] = {"sample": variants(world, tmp_path / "variants-sample", args.projection_dim)}
            if general is not None:
                figures["variants"]["generalise"] = variants(general, tmp_path / "variants-generalise",
                                                             args.projection_dim)
        if "closed_loop" not in args.skip and general is not None:
            log("closed loop on the generalising sample (retrainings) ...")
            if general_run is None:   # the embedding backend's flags: the best of the two here
                general_run = Path(evaluate(general, "embedding", {"cache_dir": str(tmp_path / "emb")},
                                            tmp_path / "loop-run")["run"])
            figures["closed_loop"] = closed_loop(general, general_run, tmp_path / "loop",
                                                 tuple(args.loop_seeds))
        prune, edit = "removal" not in args.skip, "edit" not in args.skip
        if (prune or edit) and run is not None:
            log("removal check (retrainings) ...")
            figures["removal"] = removal(world, run, tmp_path / "removal", prune=prune, edit=edit)
        if "second_seed" not in args.skip:
            log(f"second synthetic set, seed {args.second_seed} ...")
            other = make_world(args.second_seed, tmp_path)
            figures[f"seed_{args.second_seed}"] = result = quality(
                other, tmp_path / "other", args.projection_dim)
            for backend in result.values():
                backend.pop("run")
        if "speed" not in args.skip:
            log("throughput ...")
            figures["throughput"] = throughput(world, 128, 16, tmp_path)
        if "peers" not in args.skip:
            figures["peers"] = peers(world, tmp_path / "peers-sample", args.projection_dim)
            if general is not None:
                figures["peers_generalise"] = peers(general, tmp_path / "peers-generalise",
                                                    args.projection_dim)
        if "memory" not in args.skip:
            log(f"memory at {args.memory_pairs} pairs ...")
            figures["memory"] = memory(world, args.memory_pairs, tmp_path)
    emit_json(figures)


if __name__ == "__main__":
    main()
