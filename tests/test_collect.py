"""collect: the run directory it writes, resuming, and refusing what it must."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from refine import (AttributionBackend, Attribution, CollectSettings, InputError, RunDirError,
                    collect)
from refine.formats.records import Influence

from .conftest import write_jsonl


def test_collect_writes_items_attributions_pairs_and_settings(people: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = collect([str(people["train"])], str(people["eval"]), run, progress=False)
    assert (result.items, result.done, result.failed, result.resumed) == (43, 43, [], 0)
    settings = json.loads((run / "settings.json").read_text())
    assert settings["inputs"]["train"][0]["sha256"] and settings["collect"]["backend"] == "embedding"
    items = pd.read_parquet(run / "items.parquet")
    assert list(items["eval_id"][:3]) == ["p0", "p1", "p2"]
    assert set(items["verdict"]) == {"good", "bad"} and set(items["status"]) == {"done"}
    attributions = pd.read_parquet(run / "attributions.parquet")
    assert set(attributions["influence_level"]) <= {"high", "medium", "low"}
    assert attributions.groupby("eval_id")["rank"].max().max() <= 10
    pairs = pd.read_parquet(run / "pairs.parquet")
    assert len(pairs) == 120 and set(attributions["pair_id"]) <= set(pairs["pair_id"])
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["tool"] == "refine" and provenance["libraries"]["sentence-transformers"]


def test_the_same_inputs_give_the_same_bytes(people: dict, tmp_path: Path) -> None:
    for name in ("a", "b"):
        collect([str(people["train"])], str(people["eval"]), tmp_path / name, progress=False)
    for file in ("items.parquet", "attributions.parquet", "pairs.parquet", "settings.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_other_settings_on_the_same_run_are_refused_unless_overwrite(people: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    collect([str(people["train"])], str(people["eval"]), run, progress=False)
    with pytest.raises(RunDirError, match=r"other settings \(changed: collect.top_k\)"):
        collect([str(people["train"])], str(people["eval"]), run, CollectSettings(top_k=3), progress=False)
    collect([str(people["train"])], str(people["eval"]), run, CollectSettings(top_k=3),
            overwrite=True, progress=False)
    assert json.loads((run / "settings.json").read_text())["collect"]["top_k"] == 3


def test_a_changed_input_file_is_other_settings(people: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    collect([str(people["train"])], str(people["eval"]), run, progress=False)
    with open(people["eval"], "a") as fh:
        fh.write(json.dumps({"id": "new", "question": "Who?", "answer": "Me.", "verdict": "good"}) + "\n")
    with pytest.raises(RunDirError, match="inputs.eval.sha256"):
        collect([str(people["train"])], str(people["eval"]), run, progress=False)


def test_bad_input_writes_nothing(people: dict, tmp_path: Path) -> None:
    bad_eval = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q?", "answer": "A"}])
    run = tmp_path / "run"
    with pytest.raises(InputError, match="no 'verdict' and no 'reference'"):
        collect([str(people["train"])], str(bad_eval), run, progress=False)
    assert not run.exists()


def test_a_non_run_directory_is_not_overwritten(people: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a refine run directory"):
        collect([str(people["train"])], str(people["eval"]), run, progress=False)
    assert (run / "precious.txt").read_text() == "mine"


class Crash(Exception):
    pass


@dataclass(frozen=True)
class CountingOptions:
    pass


class CountingBackend(AttributionBackend):
    """A plug-in backend that cites the first pair and can crash part-way, like a killed process."""

    name = "counting-test"
    Options = CountingOptions
    needs_answer = False
    calls: list[str] = []
    crash_after_batches = -1

    def prepare(self, training, progress) -> None:
        self.first = training.pairs[0]
        self.batches = 0

    def attribute(self, items):
        if self.batches == CountingBackend.crash_after_batches:
            raise Crash()
        self.batches += 1
        CountingBackend.calls.extend(i.id for i in items)
        return [Attribution(i.id, [Influence(self.first.pair_id, "high", 1.0, self.first.file_id, "Q: x\nA: y")],
                            answer=i.answer) for i in items]


def test_an_interrupted_collect_resumes_without_repeating_finished_items(people: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    CountingBackend.calls = []
    CountingBackend.crash_after_batches = 2
    settings = CollectSettings(backend="counting-test", batch_size=8)
    with pytest.raises(Crash):
        collect([str(people["train"])], str(people["eval"]), run, settings, progress=False)
    assert len(CountingBackend.calls) == 16
    CountingBackend.crash_after_batches = -1
    result = collect([str(people["train"])], str(people["eval"]), run, settings, progress=False)
    assert result.resumed == 16 and result.done == 43
    assert len(CountingBackend.calls) == 43 == len(set(CountingBackend.calls))


def test_a_torn_journal_line_is_dropped_and_redone(people: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    settings = CollectSettings(backend="counting-test", batch_size=8)
    CountingBackend.calls = []
    collect([str(people["train"])], str(people["eval"]), run, settings, progress=False)
    journal = run / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:10]) + lines[10][: len(lines[10]) // 2])
    CountingBackend.calls = []
    result = collect([str(people["train"])], str(people["eval"]), run, settings, progress=False)
    assert result.resumed == 10 and len(CountingBackend.calls) == 33


def test_the_same_files_reached_by_another_path_resume_the_run(people: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    collect([str(people["train"])], str(people["eval"]), run, progress=False)
    monkeypatch.chdir(Path(people["train"]).parent)
    result = collect(["train.jsonl"], "eval.jsonl", run, progress=False)
    assert result.resumed == 43
    assert json.loads((run / "settings.json").read_text())["inputs"]["train"][0]["path"] == "train.jsonl"


def test_a_run_written_from_records_is_the_run_collect_writes(people: dict, tmp_path: Path) -> None:
    """write_collection (what the benchmarks build their runs with) writes what collect writes."""
    from refine import load_training
    from refine.core.rundir import RunDir
    from refine.stages.collection import write_collection

    settings = CollectSettings(backend="counting-test", evidence=False)
    collected = tmp_path / "collected"
    collect([str(people["train"])], str(people["eval"]), collected, settings, progress=False)
    records = RunDir(collected).read_journal()
    written = tmp_path / "written"
    with write_collection(written, load_training([str(people["train"])]), str(people["eval"]),
                          {"backend": "counting-test", "options": {}}, settings, records=records) as stage:
        assert stage.stage.name == "collect"
    for name in ("settings.json", "pairs.parquet", "items.parquet", "attributions.parquet", "stages/collect.json"):
        assert (written / name).read_bytes() == (collected / name).read_bytes(), name
