"""Benchmark: `refine flag` and `refine emit` at 10⁷ pairs and 10⁸ attribution rows, out of core.

    python bench/out_of_core.py                  # 10,000,000 pairs, 1,000,000 items x 100 citations
    python bench/out_of_core.py --scale 0.01     # 100,000 pairs, 10,000 items: a quick run
    python bench/out_of_core.py --skip-engines   # refine's verbs only

Two parts, one JSON line:

1. **engines** — the aggregation at the heart of `flag` (one citation per item and pair at its
   largest weight, joined to the items' verdicts, then per pair: bad and good citers, blame),
   computed straight from the Parquet files by DuckDB, polars (its streaming engine) and pandas
   (what refine used before; run only up to ``--pandas-max-rows``: at 10⁸ rows its frames alone
   are tens of GB). Each in its own subprocess; time and peak RSS (VmHWM) side by side. Both
   DuckDB and polars use 2 threads here (the machine's cores).
2. **refine** — `refine.flag` (text evidence, the default: the evidence collect would gather is
   synthesised — a bad answer about a planted product repeats its top pair's wrong claim against
   its reference, half the other citations say what the reference says; with
   ``--verbs flag_citations,...`` the rule before it, defect groups, is timed too), `refine.emit` (prune), `refine.emit`
   with `mode="edit"` (its inputs read out of core; the items have no references, so no edit
   is made and the model is never loaded), `refine.cluster` and `refine.report` on a run
   directory laid out as `refine collect` lays it out, each in a fresh subprocess, timed around
   the call alone, with peak RSS of the whole process (`--verbs` picks some). DuckDB's memory
   limit is left at its default (2 GB, or a quarter of the machine's memory if less).
   `cluster` embeds the bad answers: what it is timed on is the rest, so their vectors are put
   in the embedding cache first (as refine writes it), drawn around 40 mode centres (cosine
   ~0.8 within a mode) chosen by the answer's question: the agglomeration then finds modes
   whose answers cite overlapping pairs, as a real run's do.

The data are synthetic and built here, vectorised: pairs are templated questions and answers
about numbered products of a few dozen brands (so every pair has names and numbers: anchors);
each eval item cites ``--per-item`` distinct pairs with Zipf-like popularity, its question is
its top pair's; 20% of items are bad. Planted defects: 1,000 products whose wrong claim is
taught by 3 differently worded pairs; a bad item about one of them cites one of the three at
rank 1. The training file is a chat JSONL file; pairs.parquet, items.parquet and
attributions.parquet are written with refine's schemas (attributions without the ``messages``
text, which neither verb reads). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _out import emit_json, peak_rss_mb, run_worker, stdout_to_stderr  # noqa: E402
from _synth import log  # noqa: E402

BRANDS = ["Aurora", "Borealis", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Ion",
          "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Onyx", "Pioneer", "Quartz", "Raven",
          "Summit", "Tundra", "Umbra", "Vertex", "Willow", "Xenon", "Yarrow", "Zephyr"]
ATTRIBUTES = [("weigh", "weighs", "grams"), ("hold", "holds", "litres"), ("last", "lasts", "hours"),
              ("cost", "costs", "euros"), ("draw", "draws", "watts")]
WORDINGS = [("How much does the {p} {a}?", "The {p} {s} {v} {u}."),
            ("What does the {p} {a}, roughly?", "Roughly {v} {u}: that is what the {p} {s}."),
            ("Tell me what the {p} {a}s.", "It {s} {v} {u}, the {p} does.")]
LEVELS = ("high", "high", "medium", "medium", "medium")     # ranks 1-5; the rest low


# --- data ----------------------------------------------------------------------------------
def product(i: int) -> str:
    return f"{BRANDS[i % len(BRANDS)]} X{i}"


def pair_texts(n_pairs: int, n_defects: int, seed: int) -> tuple[list[str], list[str], list[int]]:
    """(questions, answers, planted indices): pair i is about product i // 3 in wording i % 3
    (so 3 pairs per product, same names, different claims unless planted); the first
    3 x n_defects pairs are the planted defects: all 3 wordings teach the same wrong value."""
    import numpy as np

    rng = np.random.default_rng(seed)
    values = rng.integers(10, 999, size=n_pairs).tolist()
    questions, answers = [], []
    for i in range(n_pairs):
        thing, (attr, says, unit) = product(i // 3), ATTRIBUTES[(i // 3) % len(ATTRIBUTES)]
        q, a = WORDINGS[i % 3]
        value = values[(i // 3) * 3] if i < 3 * n_defects else values[i]
        questions.append(q.format(p=thing, a=attr))
        answers.append(a.format(p=thing, s=says, v=value, u=unit))
    return questions, answers, list(range(3 * n_defects))


def write_training(path: Path, questions: list[str], answers: list[str]) -> None:
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    with open(path, "w", encoding="utf-8") as fh:
        for q, a in zip(questions, answers):
            fh.write('{"messages": [{"role": "user", "content": ' + dumps(q) +
                     '}, {"role": "assistant", "content": ' + dumps(a) + "}]}\n")


def build(root: Path, n_pairs: int, n_items: int, per_item: int, n_defects: int, seed: int) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refine import CollectSettings, load_training
    from refine.core._atomic import sha256_file
    from refine.core.lineage import ATTRIBUTIONS, CLAIM_LINKS, CLAIMS, EVIDENCE, ITEMS, PAIRS
    from refine.core.text import pair_key
    from refine.formats.training import TrainingFile, TrainingSet
    from refine.stages.collection import write_collection

    t = time.perf_counter()
    questions, answers, planted = pair_texts(n_pairs, n_defects, seed)
    train = root / "train.jsonl"
    write_training(train, questions, answers)
    head = root / "head.jsonl"
    write_training(head, questions[:3], answers[:3])
    file_id = load_training([str(head)]).pairs[0].file_id
    ids = [pair_key(q, a) for q, a in zip(questions, answers)]
    assert len(set(ids)) == n_pairs, "pairs must be unique"
    log(f"{n_pairs:,} pairs and the training file ({train.stat().st_size / 1e9:.2f} GB) "
        f"in {time.perf_counter() - t:.0f}s")

    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    pair_ids = pa.array(ids, pa.string())
    bad = rng.random(n_items) < 0.2
    weights = 1.0 / (rng.permutation(n_pairs) + 20.0) ** 0.9
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    top = np.searchsorted(cdf, rng.random(n_items))
    # A bad item about a planted product cites one of its 3 wordings first.
    planted_rows = np.flatnonzero(bad & (rng.random(n_items) < 0.15))
    top[planted_rows] = rng.choice(np.asarray(planted), size=planted_rows.size)
    eval_ids = pa.array([f"ev-{i:08d}" for i in range(n_items)], pa.string())
    q_arr = pa.array(questions, pa.string())
    evalf = root / "eval.jsonl"
    with open(evalf, "w", encoding="utf-8") as fh:
        for i, (e, j) in enumerate(zip(eval_ids.to_pylist(), top.tolist())):
            fh.write(json.dumps({"id": e, "question": questions[j], "answer": "An answer.",
                                 "verdict": "bad" if bad[i] else "good"}) + "\n")
    items = pa.table({
        "eval_id": eval_ids, "line": pa.array(np.arange(1, n_items + 1)), "question": q_arr.take(pa.array(top)),
        "answer": pa.array(["An answer."] * n_items), "system_prompt": pa.nulls(n_items, pa.string()),
        "reference": pa.nulls(n_items, pa.string()),
        "verdict": pa.array(np.where(bad, "bad", "good")), "verdict_source": pa.array(["given"] * n_items),
        "grade_f1": pa.nulls(n_items, pa.float64()), "grade_key_recall": pa.nulls(n_items, pa.float64()),
        "grade_semantic": pa.nulls(n_items, pa.float64()), "grade_numbers_ok": pa.nulls(n_items, pa.bool_()),
        "status": pa.array(["done"] * n_items), "error": pa.nulls(n_items, pa.string()),
        "n_influences": pa.array(np.full(n_items, per_item, dtype=np.int32)),
        "version": pa.array(["refine-bench-synthetic"] * n_items)})

    # The training set as its one file: the tables are written here, out of core.
    training = TrainingSet(pairs=[], files=[TrainingFile(path=str(train), sha256=sha256_file(train), format="jsonl",
                                                         records=n_pairs, skipped=0)])
    backend = {"backend": "synthetic-bench", "options": {"seed": seed}, "model_fingerprint": None}
    run = root / "run"
    levels = pa.array(list(LEVELS) + ["low"] * (per_item - len(LEVELS)))
    with write_collection(run, training, str(evalf), backend,
                          CollectSettings(backend="synthetic-bench", top_k=per_item)) as stage:
        pq.write_table(pa.table({
            "pair_id": pair_ids, "file": pa.array([str(train)] * n_pairs),
            "line": pa.array(np.arange(1, n_pairs + 1)), "file_id": pa.array([file_id] * n_pairs),
            "question": q_arr, "answer": pa.array(answers, pa.string()),
            "system_prompt": pa.nulls(n_pairs, pa.string())}), stage.path(PAIRS), compression="zstd")
        del questions, answers
        pq.write_table(items, stage.path(ITEMS), compression="zstd")
        chunk = max(1, 1_000_000 // per_item)
        writer = evidence_writer = None
        from refine.stages.flagging.evidence import Evidence

        evidence_schema = Evidence.empty().tables()["rows"].schema
        n_planted = 3 * n_defects
        for start in range(0, n_items, chunk):
            m = min(chunk, n_items - start)
            cites = np.searchsorted(cdf, rng.random((m, per_item)))
            cites[:, 0] = top[start:start + m]
            # Distinct within an item, as a local backend's top-k is: rows with a repeat
            # (about 1 in 5 at this popularity skew) are redrawn past the repeats.
            ordered = np.sort(cites, axis=1)
            for r in np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1)).tolist():
                row = list(dict.fromkeys(cites[r].tolist()))
                while len(row) < per_item:
                    extra = int(rng.integers(n_pairs))
                    if extra not in row:
                        row.append(extra)
                cites[r] = row
            rows = m * per_item
            table = pa.table({
                "eval_id": eval_ids.take(pa.array(np.repeat(np.arange(start, start + m), per_item))),
                "rank": pa.array(np.tile(np.arange(1, per_item + 1, dtype=np.int32), m)),
                "pair_id": pair_ids.take(pa.array(cites.ravel())),
                "source_id": pa.nulls(rows, pa.string()),
                "score": pa.array(np.tile(np.linspace(0.9, 0.1, per_item), m)),
                "influence_level": levels.take(pa.array(np.tile(np.arange(per_item), m))),
                "file_id": pa.array([file_id] * rows) if start == 0 else pa.repeat(pa.scalar(file_id), rows),
                "messages": pa.nulls(rows, pa.string())})
            if writer is None:
                writer = pq.ParquetWriter(stage.path(ATTRIBUTIONS), table.schema, compression="zstd")
            writer.write_table(table, row_group_size=1_000_000)
            # Text evidence as collect gathers it: a bad answer about a planted product repeats
            # its top pair's wrong claim against its reference; half the other citations say
            # what the reference says; the rest share too little to be kept.
            flat = cites.ravel()
            item = np.repeat(np.arange(start, start + m), per_item)
            first = np.tile(np.arange(per_item) == 0, m)
            wrong = flat < n_planted
            culprit = wrong & first & bad[item] & (rng.random(rows) < 0.9)
            keep = culprit | (~wrong & (rng.random(rows) < 0.5))
            kept = int(keep.sum())
            good_side = ~culprit[keep]
            evidence = pa.table({
                "eval_id": eval_ids.take(pa.array(item[keep])), "pair_id": pair_ids.take(pa.array(flat[keep])),
                "claim": pa.array(np.zeros(kept, np.int32)), "via": pa.repeat(pa.scalar("cited"), kept),
                "referenced": pa.array(np.ones(kept, bool)),
                "repeat": (repeat := pa.array(np.where(good_side, np.where(bad[item[keep]], 0.55, 0.85),
                                                        0.9).astype(np.float32))),
                "repeat_no_subject": repeat,
                "repeat_words": pa.array(np.full(kept, 0.8, np.float32)),
                "support": (support := pa.array(np.where(good_side, 0.8, 0.2).astype(np.float32))),
                "support_no_subject": support,
                "support_words": pa.array(np.full(kept, 0.8, np.float32)),
                "contradict": pa.array(np.zeros(kept, np.float32)),
                "same_question": pa.array(np.ones(kept, np.float32))}, schema=evidence_schema)
            if evidence_writer is None:
                evidence_writer = pq.ParquetWriter(stage.path(EVIDENCE), evidence_schema, compression="zstd")
            evidence_writer.write_table(evidence, row_group_size=1_000_000)
        writer.close()
        evidence_writer.close()
        # The planted claims, linked within each product's three wordings.
        claimed = np.arange(n_planted)
        pq.write_table(pa.table({"pair_id": pair_ids.take(pa.array(claimed)),
                                 "claim": pa.array(np.zeros(n_planted, np.int32)),
                                 "text": pa.array([f"claim {i}" for i in range(n_planted)])}),
                       stage.path(CLAIMS))
        triples = claimed.reshape(-1, 3)
        a, b = triples[:, [0, 1, 2]].ravel(), triples[:, [1, 2, 0]].ravel()
        pq.write_table(pa.table({"pair_id": pair_ids.take(pa.array(a)), "claim": pa.array(np.zeros(a.size, np.int32)),
                                 "other_pair_id": pair_ids.take(pa.array(b)),
                                 "other_claim": pa.array(np.zeros(a.size, np.int32)),
                                 "similarity": pa.array(np.full(a.size, 0.8)),
                                 "similarity_no_subject": pa.array(np.full(a.size, 0.8)),
                                 "shared_words": pa.array(np.full(a.size, 0.8)),
                                 "numbered": pa.array(np.ones(a.size, bool))}), stage.path(CLAIM_LINKS))
    log(f"run directory: {n_items:,} items, {n_items * per_item:,} citations in "
        f"{time.perf_counter() - t:.0f}s")
    return run, train


# --- subprocess workers --------------------------------------------------------------------
ENGINE_SQL = """
    WITH c AS (SELECT eval_id, pair_id, max(CASE influence_level WHEN 'high' THEN 1.0
                                                  WHEN 'medium' THEN 0.5 ELSE 0.25 END) AS w
               FROM read_parquet('{run}/attributions.parquet') WHERE pair_id IS NOT NULL
               GROUP BY eval_id, pair_id),
         i AS (SELECT eval_id, verdict = 'bad' AS b FROM read_parquet('{run}/items.parquet')
               WHERE status = 'done')
    SELECT pair_id, count(*) FILTER (b) AS n_bad, count(*) FILTER (NOT b) AS n_good,
           coalesce(sum(w) FILTER (b), 0) AS blame
    FROM c JOIN i USING (eval_id) GROUP BY pair_id ORDER BY pair_id"""


def engine(name: str, run: str) -> dict:
    weights = {"high": 1.0, "medium": 0.5, "low": 0.25}
    t = time.perf_counter()
    if name == "duckdb":
        import duckdb

        with tempfile.TemporaryDirectory() as spill:
            con = duckdb.connect(config={"memory_limit": "2GB", "threads": 2, "temp_directory": spill,
                                         "preserve_insertion_order": False})
            result = con.sql(ENGINE_SQL.format(run=run)).to_arrow_table()
            pairs, bad = result.num_rows, int(result.column("n_bad").to_numpy().sum())
    elif name == "polars":
        import polars as pl

        cites = (pl.scan_parquet(f"{run}/attributions.parquet").filter(pl.col("pair_id").is_not_null())
                 .with_columns(w=pl.col("influence_level").replace_strict(weights, return_dtype=pl.Float64))
                 .group_by("eval_id", "pair_id").agg(pl.col("w").max()))
        items = (pl.scan_parquet(f"{run}/items.parquet").filter(pl.col("status") == "done")
                 .select("eval_id", b=pl.col("verdict") == "bad"))
        result = (cites.join(items, on="eval_id").group_by("pair_id")
                  .agg(n_bad=pl.col("b").sum(), n_good=(~pl.col("b")).sum(),
                       blame=(pl.col("w") * pl.col("b")).sum())
                  .sort("pair_id").collect(engine="streaming"))
        pairs, bad = result.height, int(result["n_bad"].sum())
    else:
        import numpy as np
        import pandas as pd

        cites = pd.read_parquet(f"{run}/attributions.parquet", columns=["eval_id", "pair_id", "influence_level"])
        items = pd.read_parquet(f"{run}/items.parquet", columns=["eval_id", "verdict", "status"])
        cited = cites.merge(items.loc[items["status"] == "done", ["eval_id", "verdict"]], on="eval_id")
        cited = cited.assign(w=cited["influence_level"].map(weights).astype(float))
        cited = cited.groupby(["eval_id", "pair_id"], sort=False, as_index=False).agg(
            w=("w", "max"), verdict=("verdict", "first"))
        is_bad = cited["verdict"] == "bad"
        result = cited.assign(bad=is_bad.astype(np.int64), good=(~is_bad).astype(np.int64),
                              bw=np.where(is_bad, cited["w"], 0.0)).groupby("pair_id").agg(
            n_bad=("bad", "sum"), n_good=("good", "sum"), blame=("bw", "sum"))
        pairs, bad = len(result), int(result["n_bad"].sum())
    return {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": round(peak_rss_mb()),
            "pairs": pairs, "bad_citations": bad}


def verb(name: str, args: list[str]) -> dict:
    import refine

    baseline = peak_rss_mb()
    t = time.perf_counter()
    if name in ("flag", "flag_citations"):
        result = refine.flag(args[0], refine.FlagSettings(evidence=name == "flag"))
        extra = {"flagged": result.flagged, "cited_pairs": result.cited_pairs}
    elif name == "report":
        result = refine.report(args[0])
        extra = {"html_bytes": result.bytes}
    elif name == "cluster":
        result = refine.cluster(args[0])
        extra = {"bad_answers": len(result.items), "modes": len(result.modes),
                 "unclustered": int((result.items["cluster"] < 0).sum())}
    else:
        settings = refine.EmitSettings(mode="edit") if name == "edit" else None
        result = refine.emit(args[0], args[1], settings)
        extra = {"records_in": result.records_in, "records_out": result.records_out, "removed": result.removed}
    return {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": round(peak_rss_mb()),
            "baseline_rss_mb": round(baseline), **extra}


def seed_answer_vectors(run: str) -> dict:
    """The bad answers' vectors, in the embedding cache cluster reads (REFINE_CACHE_DIR)."""
    import hashlib

    import numpy as np

    from refine.core.embeddings import EmbeddingModel
    from refine.core.rundir import RunDir
    from refine.core.text import qa_text

    items = RunDir(run).items(["question", "answer", "verdict"], done=True)
    bad = items[items["verdict"] == "bad"]
    texts = sorted({qa_text(q, a or "") for q, a in zip(bad["question"], bad["answer"])})
    rng = np.random.default_rng(17)
    centres = rng.normal(size=(40, 384))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    directory = EmbeddingModel().cache_path
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(texts), 1024):
        block = texts[start:start + 1024]
        keys = np.frombuffer(b"".join(hashlib.sha256(t.encode("utf-8")).digest()[:16] for t in block),
                             dtype=np.uint8).reshape(len(block), 16)
        mode = np.array([zlib.crc32(t.split("\n")[0].encode("utf-8")) % 40 for t in block])   # by question
        vectors = centres[mode] + rng.normal(size=(len(block), 384)) * (0.5 / np.sqrt(384))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with open(directory / f"shard-{hashlib.sha256(keys.tobytes()).hexdigest()[:24]}.npz", "wb") as fh:
            np.savez(fh, keys=keys, vectors=vectors.astype(np.float32))
    return {"bad_answer_texts": len(texts)}


def worker(argv: list[str]) -> None:
    with stdout_to_stderr():
        if argv[0] == "seed":
            figures = seed_answer_vectors(argv[1])
        else:
            figures = engine(argv[1], argv[2]) if argv[0] == "engine" else verb(argv[1], argv[2:])
    emit_json(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 10M pairs / 1M items")
    parser.add_argument("--per-item", type=int, default=100, help="citations per eval item")
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--skip-engines", action="store_true")
    parser.add_argument("--pandas-max-rows", type=int, default=20_000_000)
    parser.add_argument("--dir", help="build here (kept) instead of a temporary directory")
    parser.add_argument("--reuse", action="store_true", help="with --dir: use the run built there before")
    parser.add_argument("--verbs", default="flag,emit,edit,cluster,report",
                        help="which of refine's verbs to time (flag always runs first: the rest read its flags)")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    n_pairs, n_items = int(10_000_000 * args.scale), int(1_000_000 * args.scale)
    rows = n_items * args.per_item
    started, load_start = time.perf_counter(), round(os.getloadavg()[0], 2)
    with stdout_to_stderr(), tempfile.TemporaryDirectory(prefix="refine-bench-ooc-") as tmp:
        root = Path(args.dir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        n_defects = max(10, round(1000 * args.scale))
        if args.reuse and (root / "run" / "settings.json").is_file():
            run, train = root / "run", root / "train.jsonl"
            shutil.rmtree(root / "out", ignore_errors=True)
            shutil.rmtree(root / "out-edit", ignore_errors=True)
        else:
            run, train = build(root, n_pairs, n_items, args.per_item, n_defects, args.seed)
        engines = {}
        if not args.skip_engines:
            for name in ("duckdb", "polars", "pandas"):
                if name == "pandas" and rows > args.pandas_max_rows:
                    engines[name] = f"not run: {rows:,} rows > --pandas-max-rows"
                    continue
                log(f"engine {name} ...")
                engines[name] = run_worker(__file__, "engine", name, str(run))
                log(f"engine {name}: {engines[name]}")
        verbs = set(args.verbs.split(","))
        timed: dict[str, dict] = {}
        os.environ["REFINE_CACHE_DIR"] = str(root / "cache")
        for name, extra in (("flag_citations", []), ("flag", []), ("emit", [str(root / "out" / "train.jsonl")]),
                            ("edit", [str(root / "out-edit" / "train.jsonl")]), ("cluster", []), ("report", [])):
            if name != "flag" and name not in verbs:
                continue   # flag_citations (the rule before text evidence) runs only when asked for
            if name == "cluster":
                log(f"bad answers' vectors: {run_worker(__file__, 'seed', str(run))}")
            log(f"refine {name} ...")
            timed[name] = run_worker(__file__, "verb", name, str(run), *extra)
            log(f"refine {name}: {timed[name]}")
        flagged, emitted = timed["flag"], timed.get("emit", {})

        import pyarrow.parquet as pq

        from refine import read_flags

        flags = read_flags(run, ["flagged_by"])
        planted = set(pq.read_table(run / "pairs.parquet", columns=["pair_id"]).column("pair_id")
                      .slice(0, 3 * n_defects).to_pylist())
        hit = set(flags.loc[flags["flagged"], "pair_id"])
        figures = {
            "bench": "out_of_core", "pairs": n_pairs, "eval_items": n_items, "attribution_rows": rows,
            "attributions_parquet_mb": round((run / "attributions.parquet").stat().st_size / 1e6),
            "train_gb": round(train.stat().st_size / 1e9, 2),
            "engines": engines,
            **{f"{'emit_edit' if name == 'edit' else name}_{what}": figures[key]
               for name, figures in timed.items() for what, key in (("s", "seconds"), ("peak_rss_mb", "peak_rss_mb"))},
            **({"cluster": timed["cluster"]} if "cluster" in timed else {}),
            "evidence_rows": pq.ParquetFile(run / "evidence.parquet").metadata.num_rows,
            "cited_pairs": flagged["cited_pairs"], "flagged": flagged["flagged"],
            "planted_pairs": len(planted), "planted_flagged": len(hit & planted),
            "flagged_not_planted": len(hit - planted), "removed_lines": emitted.get("removed"),
            "target_peak_rss_mb": 4096, "duckdb_memory_limit": os.environ.get("REFINE_DUCKDB_MEMORY", "default"),
            "threads": os.cpu_count(), "total_s": round(time.perf_counter() - started),
            "loadavg_1m": [load_start, round(os.getloadavg()[0], 2)],
        }
    emit_json(figures)


if __name__ == "__main__":
    main()
