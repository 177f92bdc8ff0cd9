"""A collect killed with SIGKILL loses nothing it had saved and asks for nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from ..conftest import ROOT, people_dataset, write_jsonl
from .fake_server import FakeSeekrFlow

CONCURRENCY = 4


def _command(data: dict, run: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "refine.cli", "collect", "--backend", "seekrflow", "--model-id", "m",
            "--base-url", url, "--concurrency", str(CONCURRENCY), "--train", str(data["train"]),
            "--eval", str(data["eval"]), "--out", str(run), "-q"]


def _journal_ids(run: Path) -> list[str]:
    path = run / "journal.jsonl"
    if not path.exists():
        return []
    ids = []
    for line in path.read_bytes().splitlines(keepends=True):
        if line.endswith(b"\n"):
            ids.append(json.loads(line)["eval_id"])
    return ids


def test_sigkill_then_rerun_requests_only_what_is_missing(tmp_path: Path) -> None:
    server = FakeSeekrFlow(latency=0.03).start()
    try:
        data = people_dataset(tmp_path / "data")
        items = [{"id": f"q{n}", "question": f"Where does person{n % 120} live? ({n})",
                  "answer": f"Person{n % 120} lives somewhere.", "verdict": "good"} for n in range(300)]
        data["eval"] = write_jsonl(tmp_path / "eval.jsonl", items)
        run = tmp_path / "run"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(_command(data, run, server.url), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(_journal_ids(run)) < 60 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved = _journal_ids(run)
        assert 60 <= len(saved) < 300, "the kill should land mid-run"
        counts_at_kill = dict(server.counts)

        done = subprocess.run(_command(data, run, server.url), env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert f"({len(saved)} already done)" in done.stdout

        by_question = {item["id"]: item["question"] for item in items}
        for eval_id in saved:  # nothing acknowledged is asked for again
            assert server.counts[by_question[eval_id]] == 1
        repeated = [q for q, c in server.counts.items() if c > 1]
        # only requests in flight at the kill, whose answers were never saved, are repeated
        assert len(repeated) <= CONCURRENCY
        assert all(counts_at_kill.get(q) == 1 for q in repeated)
        table = pd.read_parquet(run / "items.parquet")
        assert len(table) == 300 and set(table["status"]) == {"done"}
        assert len(_journal_ids(run)) == len(set(_journal_ids(run))) == 300
        final = pd.read_parquet(run / "attributions.parquet")
        assert final.groupby("eval_id").size().max() == 2  # no item's results duplicated
    finally:
        server.shutdown()
