"""A run directory cannot lie: every stage records what it was made from, a stage re-run with
other settings removes what was made from its old outputs, and no reader uses a stale file.

Each combination is tried: re-run collect, flag, cluster or emit with other settings, then
every later stage's outputs are gone and every reader of them refuses, naming the stage to
run again; the stages before it are untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from refine import (ClusterSettings, CollectSettings, EmitSettings, FlagSettings, RunDir, RunDirError,
                    cluster, collect, emit, flag, report)
from refine.core.rundir import STAGES, downstream

from .conftest import people_dataset

STAGE_FILES = {name: stage.outputs for name, stage in STAGES.items()}


def _all_stages(data: dict, run: Path, out: Path, **changes) -> None:
    collect([str(data["train"])], str(data["eval"]), run, changes.get("collect", CollectSettings()),
            progress=False, overwrite=True)
    flag(run, changes.get("flag", FlagSettings()))
    cluster(run, changes.get("cluster", ClusterSettings(min_size=2)))
    emit(run, out, changes.get("emit", EmitSettings()))
    report(run)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("lineage")
    data = people_dataset(root / "data", unexplained=4)
    _all_stages(data, root / "run", root / "refined.jsonl")
    return {"data": data, "run": root / "run"}


@pytest.fixture
def fresh(base: dict, tmp_path: Path) -> dict:
    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    return {**base, "run": run, "out": tmp_path / "refined.jsonl"}


def test_every_stage_records_its_settings_inputs_and_outputs(base: dict) -> None:
    run = RunDir(base["run"])
    for name in ("collect", "flag", "cluster", "emit", "report"):
        record = run.current(name)
        assert record["stage"] == name and record["digest"]
        assert set(record["outputs"]) == set(STAGE_FILES[name])
        assert set(record["inputs"]) == set(STAGES[name].needs) | set(STAGES[name].uses)
    assert run.record("flag")["settings"] == {"min_bad": 2, "alpha": 0.1,
                                              "level_weights": {"high": 1.0, "medium": 0.5, "low": 0.25},
                                              "defect_groups": True, "member_max_good": 0,
                                              "evidence": True, "repeat_min": 0.7, "support_min": 0.65,
                                              "paraphrase_min": 0.8, "repeat_words_min": 0.5,
                                              "support_words_min": 0.4, "same_claim_min": 0.7}
    emitted = run.record("emit")["external"]
    assert any(path.endswith("refined.jsonl") for path in emitted)
    assert all(len(meta["sha256"]) == 64 for meta in emitted.values())


RERUNS = {
    "collect": lambda d, run, out: collect([str(d["train"])], str(d["eval"]), run, CollectSettings(top_k=5),
                                           progress=False, overwrite=True),
    "flag": lambda d, run, out: flag(run, FlagSettings(min_bad=3)),
    "cluster": lambda d, run, out: cluster(run, ClusterSettings(min_size=2, distance_threshold=0.3)),
    "emit": lambda d, run, out: emit(run, out, EmitSettings(mode="quarantine")),
}


def _readers(run: RunDir) -> dict[str, callable]:
    """One reader per stage output a later stage consumes."""
    return {"collect": lambda: run.items(), "flag": lambda: run.flags(),
            "cluster": lambda: run.clusters(), "report": lambda: run.current("report"),
            "emit": lambda: run.current("emit"), "review": lambda: run.current("review"),
            "outcome": lambda: run.outcome()}


@pytest.mark.parametrize("stage", list(RERUNS))
def test_rerunning_a_stage_with_other_settings_removes_everything_made_from_it(fresh: dict, stage: str) -> None:
    run = RunDir(fresh["run"])
    before = {name: run.record(name)["digest"] for name in STAGES if run.record(name)}
    RERUNS[stage](fresh["data"], fresh["run"], fresh["out"])
    later = downstream(stage)
    assert run.record(stage)["digest"] != before[stage]
    for name in later:
        assert run.record(name) is None, name
        for file in STAGE_FILES[name]:
            assert not run.file(file).exists(), file
        with pytest.raises(RunDirError, match=f"run `{STAGES[name].command}` first"):
            _readers(run)[name]()
    for name in set(before) - set(later) - {stage}:
        assert run.record(name)["digest"] == before[name], name   # earlier stages are untouched
        run.current(name)


@pytest.mark.parametrize("stage", ["flag", "cluster", "report"])
def test_rerunning_a_stage_with_the_same_inputs_keeps_what_follows(fresh: dict, stage: str) -> None:
    run = RunDir(fresh["run"])
    again = {"flag": lambda: flag(fresh["run"]), "cluster": lambda: cluster(fresh["run"], ClusterSettings(min_size=2)),
             "report": lambda: report(fresh["run"])}[stage]
    again()   # in this copy (the report shows the run directory's path)
    before = {name: run.record(name)["digest"] for name in STAGES if run.record(name)}
    again()
    assert {name: run.record(name)["digest"] for name in before} == before


def test_a_stage_needs_its_upstream_stages_current(fresh: dict, tmp_path: Path) -> None:
    data = fresh["data"]
    collect([str(data["train"])], str(data["eval"]), tmp_path / "new", progress=False)
    for make, words in ((lambda: cluster(tmp_path / "new"), "run `refine flag` first"),
                        (lambda: report(tmp_path / "new"), "run `refine flag` first"),
                        (lambda: emit(tmp_path / "new", tmp_path / "o.jsonl"), "run `refine flag` first")):
        with pytest.raises(RunDirError, match=words):
            make()
    flag(tmp_path / "new")
    with pytest.raises(RunDirError, match="counter-examples need current failure modes"):
        emit(tmp_path / "new", tmp_path / "o.jsonl", EmitSettings(counterexamples=True))
    assert not (tmp_path / "o.jsonl").exists()


def test_a_file_changed_behind_a_stages_back_is_refused(fresh: dict) -> None:
    run = RunDir(fresh["run"])
    with open(run.file("flags.csv"), "a", encoding="utf-8") as fh:
        fh.write("tampered\n")
    with pytest.raises(RunDirError, match="flags.csv was changed after `refine flag` wrote it; run `refine flag` again"):
        run.flags()
    with pytest.raises(RunDirError, match=r"run `refine flag` again \(and then `refine cluster`\)"):
        run.clusters()   # made from those flags
    with pytest.raises(RunDirError, match="refine flag"):
        report(fresh["run"])


def test_a_stage_that_dies_leaves_no_record_and_nothing_downstream_reads_it(fresh: dict,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import refine.stages.flagging

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(refine.stages.flagging, "write_json", broken)
    with pytest.raises(OSError):
        flag(fresh["run"], FlagSettings(min_bad=3))
    run = RunDir(fresh["run"])
    assert run.record("flag") is None
    with pytest.raises(RunDirError, match="refine flag"):
        run.clusters()


def test_overwrite_removes_every_stage(fresh: dict) -> None:
    data = fresh["data"]
    collect([str(data["train"])], str(data["eval"]), fresh["run"], CollectSettings(top_k=3),
            progress=False, overwrite=True)
    leftovers = sorted(p.name for p in fresh["run"].iterdir() if p.is_file())
    assert leftovers == sorted(["settings.json", "provenance.json", "pairs.parquet", "journal.jsonl",
                                "items.parquet", "attributions.parquet", "evidence.parquet", "claims.parquet",
                                "claim_links.parquet"])
    assert [p.name for p in (fresh["run"] / "stages").iterdir()] == ["collect.json"]


def test_the_report_says_what_the_current_emit_wrote(fresh: dict) -> None:
    html = (fresh["run"] / "report.html").read_text()
    assert "refined.jsonl" in html and "Nothing was emitted" not in html
    emit(fresh["run"], fresh["out"], EmitSettings(mode="quarantine"))   # the report is now stale
    assert not (fresh["run"] / "report.html").exists()
    report(fresh["run"])
    record = json.loads((fresh["run"] / "stages" / "report.json").read_text())
    assert record["inputs"]["emit"] == RunDir(fresh["run"]).record("emit")["digest"]
    assert "quarantine" in (fresh["run"] / "report.html").read_text()
