"""sample_data/: the generator is deterministic, and the quickstart finds exactly what is planted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import SAMPLE, planted_pairs

GENERATED = ["train/support_faq.jsonl", "train/product_docs.jsonl", "eval.jsonl", "planted.json"]


def test_the_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    shutil.copy(SAMPLE / "make_sample_data.py", tmp_path)
    subprocess.run([sys.executable, str(tmp_path / "make_sample_data.py")], check=True, cwd=tmp_path,
                   capture_output=True)
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def test_the_help_desk_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SAMPLE / "make_helpdesk_sample.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in ("train.jsonl", "eval.jsonl", "truth.json"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / "helpdesk" / name).read_bytes(), name


def test_quickstart_flags_exactly_the_planted_pairs(sample_run: dict) -> None:
    result = sample_run["result"]
    expected = planted_pairs()
    flagged = {(Path(r.file).name, r.line) for r in result.flag.flagged_pairs.itertuples()}
    assert flagged == expected

    manifest = json.loads(result.emit.manifest.read_text())
    assert {(Path(r["file"]).name, r["line"]) for r in manifest["removed"]} == expected
    for path, before in sample_run["inputs"].items():
        assert Path(path).read_bytes() == before
        kept = (sample_run["root"] / "refined" / Path(path).name).read_bytes().splitlines(keepends=True)
        removed = {line for name, line in expected if name == Path(path).name}
        assert kept == [l for n, l in enumerate(before.splitlines(keepends=True), 1) if n not in removed]
