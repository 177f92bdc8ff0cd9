"""emit: byte-identical kept lines, a manifest that says what changed and why, atomic writes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refine import ConfigError, RunDirError, collect, emit, flag

from .conftest import chat, people_dataset, write_jsonl


@pytest.fixture
def flagged_run(tmp_path: Path) -> dict:
    data = people_dataset(tmp_path / "data")
    # Make the file awkward: a blank line, CRLF ending, non-ASCII and an unknown field.
    raw = Path(data["train"]).read_bytes().splitlines(keepends=True)
    raw[0] = raw[0].rstrip(b"\n") + b"\r\n"
    raw[1] = json.dumps(chat("Where does person1 live?", "Person1 lives in Paris.", meta={"ü": 1}),
                        ensure_ascii=False).encode() + b"\n"
    raw.insert(3, b"\n")  # shifts the poisoned persons 5-7 to lines 7-9
    Path(data["train"]).write_bytes(b"".join(raw))
    data["poisoned_lines"] = [7, 8, 9]
    run = tmp_path / "run"
    collect([str(data["train"])], str(data["eval"]), run, progress=False)
    flag(run)
    return {**data, "run": run, "tmp": tmp_path}


def test_kept_lines_are_byte_identical_and_in_order(flagged_run: dict) -> None:
    out = flagged_run["tmp"] / "out.jsonl"
    before = Path(flagged_run["train"]).read_bytes()
    result = emit(flagged_run["run"], out)
    lines = before.splitlines(keepends=True)
    expected = b"".join(l for n, l in enumerate(lines, 1) if n not in flagged_run["poisoned_lines"])
    assert out.read_bytes() == expected
    assert Path(flagged_run["train"]).read_bytes() == before  # input untouched
    assert (result.records_in, result.records_out, result.removed) == (120, 117, 3)


def test_the_manifest_records_inputs_outputs_and_every_removal(flagged_run: dict) -> None:
    out = flagged_run["tmp"] / "out.jsonl"
    result = emit(flagged_run["run"], out)
    assert result.manifest == flagged_run["tmp"] / "out.manifest.json"
    manifest = json.loads(result.manifest.read_text())
    train = Path(flagged_run["train"])
    assert manifest["inputs"] == [{"path": str(train), "format": "jsonl", "records": 120,
                                   "sha256": hashlib.sha256(train.read_bytes()).hexdigest()}]
    assert manifest["outputs"][0]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["outputs"][0]["records"] == 117
    removed = manifest["removed"]
    assert [r["line"] for r in removed] == flagged_run["poisoned_lines"]
    first = removed[0]
    assert first["reason"].startswith("flagged: 2 bad answers repeat its claim \"Person5 lives in Atlantis.\" against their references")
    assert set(first["stats"]) >= {"n_bad", "n_good", "blame", "q_value"}
    assert first["answer"] == "Person5 lives in Atlantis."
    assert manifest["settings"]["flag"]["min_bad"] == 2 and manifest["tool"]["name"] == "refine"
    assert manifest["summary"] == {"records_in": 120, "records_out": 117, "removed": 3, "dropped": 3,
                                   "quarantined": 0, "edited": 0, "kept_flagged": 0, "added": 0,
                                   "decided_automatically": 3, "decided_by_review": 0,
                                   "flagged_pairs": 3, "eval_items": 43, "bad_items": 6}
    assert first["action"] == "drop" and first["decided_by"] == "automatic"
    assert manifest["mode"] == "prune" and manifest["quarantine"] == []


def test_the_same_run_gives_the_same_bytes(flagged_run: dict) -> None:
    a, b = flagged_run["tmp"] / "a.jsonl", flagged_run["tmp"] / "b.jsonl"
    emit(flagged_run["run"], a)
    emit(flagged_run["run"], b)
    assert a.read_bytes() == b.read_bytes()
    strip = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k != "outputs"}
    assert strip(a.with_name("a.manifest.json")) == strip(b.with_name("b.manifest.json"))


def test_a_training_file_changed_since_collect_is_refused_and_nothing_is_written(flagged_run: dict) -> None:
    with open(flagged_run["train"], "ab") as fh:
        fh.write(json.dumps(chat("New?", "New.")).encode() + b"\n")
    out = flagged_run["tmp"] / "out.jsonl"
    with pytest.raises(RunDirError, match="changed since it was collected"):
        emit(flagged_run["run"], out)
    assert not out.exists() and not out.with_name("out.manifest.json").exists()
    assert not list(out.parent.glob(".*.tmp"))


def test_emit_refuses_to_overwrite_its_input(flagged_run: dict) -> None:
    with pytest.raises(ConfigError, match="never overwrites its inputs"):
        emit(flagged_run["run"], flagged_run["train"])


def test_emit_needs_flags(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data")
    collect([str(data["train"])], str(data["eval"]), tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match="run `refine flag` first"):
        emit(tmp_path / "run", tmp_path / "out.jsonl")


def test_several_training_files_give_one_output_each(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "data")
    lines = Path(data["train"]).read_text().splitlines(keepends=True)
    first = write_jsonl(tmp_path / "data" / "part1.jsonl", [l.rstrip("\n") for l in lines[:60]])
    parquet = tmp_path / "data" / "part2.parquet"
    rows = [json.loads(l)["messages"] for l in lines[60:]]
    pq.write_table(pa.table({"question": [m[0]["content"] for m in rows],
                             "answer": [m[1]["content"] for m in rows]}), parquet)
    # poison a pair in the Parquet file too, asked about twice
    table = pq.read_table(parquet).to_pydict()
    table["answer"][10] = "Person70 lives in Atlantis."
    pq.write_table(pa.table(table), parquet)
    with open(data["eval"], "a") as fh:
        for v in range(2):
            fh.write(json.dumps({"id": f"p70-{v}", "question": "Where does person70 live?" + " Hm?" * v,
                                 "answer": "Person70 lives in Atlantis.", "reference": "Person70 lives in Rome.",
                                 "verdict": "bad"}) + "\n")
    run = tmp_path / "run"
    collect([str(first), str(parquet)], str(data["eval"]), run, progress=False)
    flag(run)
    out = tmp_path / "refined"
    result = emit(run, out)
    assert result.outputs == [out / "part1.jsonl", out / "part2.parquet"]
    assert result.manifest == out / "manifest.json"
    kept = (out / "part1.jsonl").read_bytes()
    assert kept == b"".join(l.encode() for n, l in enumerate(lines[:60], 1) if n not in (6, 7, 8))
    pruned = pq.read_table(out / "part2.parquet").to_pydict()
    assert len(pruned["question"]) == 59 and "Person70 lives in Atlantis." not in pruned["answer"]


def test_outputs_get_ordinary_file_permissions(flagged_run: dict) -> None:
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    result = emit(flagged_run["run"], flagged_run["tmp"] / "out.jsonl")
    for path in (result.outputs[0], result.manifest, flagged_run["run"] / "flags.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
