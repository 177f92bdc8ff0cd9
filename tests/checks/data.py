"""Small training sets for the check tests: a clean one, and problems to plant in it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

from refine.stages.flagging import FLAG_COLUMNS
from refine.core.rundir import FLAGS_CSV, FLAGS_JSON, RunDir
from refine.core.text import pair_key

from ..conftest import chat, write_jsonl

CITIES = ["Rome", "Paris", "Oslo", "Lima", "Cairo", "Quito", "Hanoi", "Dakar", "Riga", "Sofia"]
JOBS = ["baker", "pilot", "nurse", "judge", "miner", "tailor", "welder"]


def clean_pairs(n: int = 40) -> list[tuple[str, str]]:
    """n distinct, unrelated Q/A pairs of ordinary lengths: every check passes on them."""
    out = []
    for i in range(n):
        if i % 2:
            out.append((f"Where does person{i} live?",
                        f"Person{i} lives in {CITIES[i % len(CITIES)]}, near the old market."))
        else:
            out.append((f"What does person{i} do for a living?",
                        f"Person{i} works as a {JOBS[i % len(JOBS)]} and enjoys it."))
    return out


def write_train(path: Path, pairs: Iterable[Any]) -> str:
    """Write (question, answer) tuples as chat records; raw strings are written as they are."""
    write_jsonl(path, [p if isinstance(p, str) else chat(*p) for p in pairs])
    return str(path)


def write_eval(path: Path, questions: Iterable[str]) -> str:
    write_jsonl(path, [{"id": f"e{i}", "question": q} for i, q in enumerate(questions)])
    return str(path)


def clean_eval_questions() -> list[str]:
    return [f"What is the capital of {country}?" for country in ("Peru", "Chad", "Laos")]


def write_flags(run_dir: Path, flagged: Iterable[tuple[str, str]],
                not_flagged: Iterable[tuple[str, str]] = ()) -> str:
    """A run directory whose flag stage holds these flags.csv rows, as `refine flag` writes them
    (its collect stage recorded with no files: the check reads the flags alone)."""
    run = RunDir(run_dir)
    with run.stage("collect", {}):
        pass
    with run.stage("flag", {"min_bad": 2}) as stage:
        with open(stage.path(FLAGS_CSV), "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, FLAG_COLUMNS)
            writer.writeheader()
            for is_flagged, pairs in ((True, flagged), (False, not_flagged)):
                for line, (question, answer) in enumerate(pairs, start=1):
                    row = {column: "" for column in FLAG_COLUMNS}
                    row.update(pair_id=pair_key(question, answer), file="train.jsonl", line=line,
                               question=question, answer=answer, n_bad=3, n_good=0,
                               flagged=str(is_flagged))
                    writer.writerow(row)
        stage.path(FLAGS_JSON).write_text("{}\n", encoding="utf-8")
    return str(run_dir)
