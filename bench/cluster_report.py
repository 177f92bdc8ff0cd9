"""Benchmark: `refine cluster` over 20,000 bad answers and `refine report` over 1,000,000
attribution rows.

The run directory is synthetic (100,000 eval items × 10 citations, ~20% bad, built as
bench/flag_emit.py builds its runs). The bad answers are embedded once before timing —
the target is for cached embeddings — then `flag`, `cluster` and `report` are timed. Prints
one JSON line: cluster_s (target ≤ 60), report_s (target ≤ 30), report_mb (target ≤ 10).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _out import emit_json, stdout_to_stderr  # noqa: E402
from _synth import log, unique_pairs  # noqa: E402
from flag_emit import build_run, make_citations  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10,000 items over 20,000 pairs")
    args = parser.parse_args()
    n_items, n_pairs = (10_000, 20_000) if args.small else (100_000, 200_000)
    with stdout_to_stderr(), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["REFINE_CACHE_DIR"] = str(root / "cache")
        import pandas as pd

        import refine
        from refine.core.embeddings import EmbeddingModel
        from refine.core.text import qa_text

        cites, bad, planted = make_citations(n_pairs, n_items, max(20, n_pairs // 1000), seed=3)
        run, _ = build_run(root, "cr", unique_pairs(n_pairs, seed=3), cites, bad, planted, seed=3)
        items = pd.read_parquet(run / "items.parquet")
        bad_items = items[items["verdict"] == "bad"]
        log(f"embedding {len(bad_items)} bad answers once (not timed) ...")
        EmbeddingModel().encode([qa_text(q, a) for q, a in zip(bad_items["question"], bad_items["answer"])])

        start = time.perf_counter()
        refine.flag(run)
        flag_s = time.perf_counter() - start
        start = time.perf_counter()
        clustered = refine.cluster(run)
        cluster_s = time.perf_counter() - start
        start = time.perf_counter()
        reported = refine.report(run)
        report_s = time.perf_counter() - start
        rows = len(pd.read_parquet(run / "attributions.parquet", columns=["eval_id"]))
    emit_json({"bench": "cluster_report", "attribution_rows": rows, "bad_items": int(len(bad_items)),
               "failure_modes": int(len(clustered.modes)), "flag_s": round(flag_s, 2),
               "cluster_s": round(cluster_s, 2), "report_s": round(report_s, 2),
               "report_mb": round(reported.bytes / 1e6, 2),
               "targets": {"cluster_s": 60, "report_s": 30, "report_mb": 10}})


if __name__ == "__main__":
    main()
