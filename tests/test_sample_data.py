"""sample_data/: the generator is deterministic, and the quickstart finds exactly what is planted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from refine import load_recipe, run_recipe

from .conftest import ROOT, SAMPLE

GENERATED = ["train/support_faq.jsonl", "train/product_docs.jsonl", "eval.jsonl", "planted.json"]


def test_the_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    shutil.copy(SAMPLE / "make_sample_data.py", tmp_path)
    subprocess.run([sys.executable, str(tmp_path / "make_sample_data.py")], check=True, cwd=tmp_path,
                   capture_output=True)
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def test_quickstart_flags_exactly_the_planted_pairs(tmp_path: Path) -> None:
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                         [f"run_dir={tmp_path / 'run'}", f"emit.out={tmp_path / 'refined'}"])
    inputs = {p: Path(p).read_bytes() for p in recipe.train}
    result = run_recipe(recipe, progress=False)

    planted = json.loads((SAMPLE / "planted.json").read_text())["planted_pairs"]
    expected = {(Path(p["file"]).name, p["line"]) for p in planted}
    flagged = {(Path(r.file).name, r.line) for r in result.flag.flagged_pairs.itertuples()}
    assert flagged == expected

    manifest = json.loads(result.emit.manifest.read_text())
    assert {(Path(r["file"]).name, r["line"]) for r in manifest["removed"]} == expected
    for path, before in inputs.items():
        assert Path(path).read_bytes() == before
        kept = (tmp_path / "refined" / Path(path).name).read_bytes().splitlines(keepends=True)
        removed = {line for name, line in expected if name == Path(path).name}
        assert kept == [l for n, l in enumerate(before.splitlines(keepends=True), 1) if n not in removed]
