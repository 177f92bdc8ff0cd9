"""emit: byte-identical kept lines, a manifest that says what changed and why, atomic writes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refine import ConfigError, EmitSettings, RunDirError, collect, emit, flag

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


# --- where outputs go, and what they may replace ---------------------------------------------
#
# One rule for `out`: the refined file itself when the run has one training file and `out`
# ends in its extension (manifest beside it as <stem>.manifest.json); otherwise a directory
# holding one output per source under the source's name, and manifest.json. Nothing that
# exists is replaced without `overwrite` (--overwrite), and an input never.


def _cli(*args: object):
    from click.testing import CliRunner

    from refine.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _pruned(flagged_run: dict) -> bytes:
    lines = Path(flagged_run["train"]).read_bytes().splitlines(keepends=True)
    return b"".join(l for n, l in enumerate(lines, 1) if n not in flagged_run["poisoned_lines"])


def test_emit_refuses_to_replace_an_existing_file_and_overwrite_replaces_it(flagged_run: dict) -> None:
    tmp = flagged_run["tmp"]
    out = tmp / "refined.jsonl"
    out.write_text("my own notes, not a dataset\n")
    result = _cli("emit", flagged_run["run"], "--out", out)
    assert result.exit_code == 2
    assert f"{out} already exists; nothing was written" in result.output
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert out.read_text() == "my own notes, not a dataset\n"
    assert not (tmp / "refined.manifest.json").exists() and not list(tmp.glob(".*.tmp"))

    result = _cli("emit", flagged_run["run"], "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == _pruned(flagged_run)
    manifest = json.loads((tmp / "refined.manifest.json").read_text())
    assert manifest["outputs"][0]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_an_unrelated_file_where_a_directory_is_meant_is_left_alone_even_with_overwrite(flagged_run: dict) -> None:
    notes = flagged_run["tmp"] / "notes.txt"      # not .jsonl: --out names a directory
    notes.write_text("shopping list\n")
    for extra in ([], ["--overwrite"]):
        result = _cli("emit", flagged_run["run"], "--out", notes, *extra)
        assert result.exit_code == 2
        assert f"{notes} is a file, but --out names a directory here" in result.output
        assert "give a name ending in .jsonl" in result.output
        assert notes.read_text() == "shopping list\n"
    assert not (flagged_run["tmp"] / "notes.manifest.json").exists()


def test_emitting_again_to_the_same_out_needs_overwrite(flagged_run: dict) -> None:
    out = flagged_run["tmp"] / "out.jsonl"
    manifest = flagged_run["tmp"] / "out.manifest.json"
    emit(flagged_run["run"], out)
    before = manifest.read_bytes()
    with pytest.raises(ConfigError) as info:
        emit(flagged_run["run"], out, EmitSettings(mode="quarantine"))
    assert f"{out}, {manifest} already exist" in str(info.value) and "--overwrite" in str(info.value)
    assert manifest.read_bytes() == before and not (flagged_run["tmp"] / "out.quarantine.jsonl").exists()

    result = emit(flagged_run["run"], out, EmitSettings(mode="quarantine"), overwrite=True)
    assert result.quarantined == 3 and json.loads(manifest.read_text())["mode"] == "quarantine"
    assert out.read_bytes() == _pruned(flagged_run)
    assert len((flagged_run["tmp"] / "out.quarantine.jsonl").read_bytes().splitlines()) == 3


def test_emitting_again_takes_away_what_the_replaced_manifest_set_aside(flagged_run: dict) -> None:
    out = flagged_run["tmp"] / "refined"
    emit(flagged_run["run"], out, EmitSettings(mode="quarantine"))
    assert len(list((out / "quarantine").iterdir())) == 1
    emit(flagged_run["run"], out, overwrite=True)                 # a prune sets nothing aside
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.jsonl"]
    assert json.loads((out / "manifest.json").read_text())["quarantine"] == []


def test_a_set_aside_file_changed_since_is_left_where_it_is(flagged_run: dict) -> None:
    out = flagged_run["tmp"] / "refined"
    emit(flagged_run["run"], out, EmitSettings(mode="quarantine"))
    held = next((out / "quarantine").iterdir())
    held.write_text("annotated by hand\n")
    emit(flagged_run["run"], out, overwrite=True)
    assert held.read_text() == "annotated by hand\n"


def test_an_existing_quarantine_file_is_not_replaced_either(flagged_run: dict) -> None:
    out, held = flagged_run["tmp"] / "out.jsonl", flagged_run["tmp"] / "out.quarantine.jsonl"
    held.write_text("set aside by hand\n")
    with pytest.raises(ConfigError, match=f"{held} already exists; nothing was written"):
        emit(flagged_run["run"], out, EmitSettings(mode="quarantine"))
    assert held.read_text() == "set aside by hand\n"
    assert not out.exists() and not (flagged_run["tmp"] / "out.manifest.json").exists()
    emit(flagged_run["run"], out)       # prune sets nothing aside: nothing to refuse
    assert held.read_text() == "set aside by hand\n"


def test_out_with_the_inputs_extension_is_the_file_with_the_manifest_beside_it(flagged_run: dict) -> None:
    out = flagged_run["tmp"] / "new" / "refined.jsonl"
    result = emit(flagged_run["run"], out, EmitSettings(mode="quarantine"))
    assert result.outputs == [out] and out.read_bytes() == _pruned(flagged_run)
    assert result.manifest == out.with_name("refined.manifest.json")
    assert result.quarantine == out.with_name("refined.quarantine.jsonl")
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "refined.jsonl", "refined.manifest.json", "refined.quarantine.jsonl"]


def test_out_without_the_inputs_extension_is_a_directory_with_the_manifest_inside(flagged_run: dict) -> None:
    tmp = flagged_run["tmp"]
    out = tmp / "newdir"
    result = emit(flagged_run["run"], out)
    assert result.outputs == [out / "train.jsonl"] and result.manifest == out / "manifest.json"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.jsonl"]
    assert (out / "train.jsonl").read_bytes() == _pruned(flagged_run)
    assert json.loads(result.manifest.read_text())["outputs"][0]["path"] == str(out / "train.jsonl")
    assert not (tmp / "newdir.manifest.json").exists()

    existing = tmp / "existing"             # an existing directory: the same layout, the rest untouched
    existing.mkdir()
    (existing / "README.txt").write_text("mine\n")
    result = emit(flagged_run["run"], existing, EmitSettings(mode="quarantine"))
    assert result.outputs == [existing / "train.jsonl"] and result.manifest == existing / "manifest.json"
    assert result.quarantine == existing / "quarantine" / "train.jsonl"
    assert (existing / "README.txt").read_text() == "mine\n"
    assert not (tmp / "existing.manifest.json").exists()


def test_out_with_another_data_extension_is_an_error(flagged_run: dict) -> None:
    out = flagged_run["tmp"] / "refined.csv"
    with pytest.raises(ConfigError, match=r"refined.csv looks like a .csv file, but the training source "
                                          r"train.jsonl is jsonl: give a name ending in .jsonl"):
        emit(flagged_run["run"], out)
    assert not out.exists() and not (flagged_run["tmp"] / "refined.csv.manifest.json").exists()


def test_inputs_are_never_replaced_even_with_overwrite(flagged_run: dict) -> None:
    train = Path(flagged_run["train"])
    before = train.read_bytes()
    for out in (train, train.parent):       # the input itself, or a directory that holds it
        with pytest.raises(ConfigError, match="is an input; refine never overwrites its inputs"):
            emit(flagged_run["run"], out, overwrite=True)
    assert train.read_bytes() == before and not (train.parent / "manifest.json").exists()


def test_review_apply_refuses_to_replace_an_existing_file_too(flagged_run: dict) -> None:
    tmp = flagged_run["tmp"]
    assert _cli("review", "export", flagged_run["run"], "--out", tmp / "review.csv").exit_code == 0
    out = tmp / "reviewed.jsonl"
    out.write_text("not yours\n")
    result = _cli("review", "apply", flagged_run["run"], tmp / "review.csv", "--out", out)
    assert result.exit_code == 2 and f"{out} already exists" in result.output and "--overwrite" in result.output
    assert out.read_text() == "not yours\n" and not (tmp / "reviewed.manifest.json").exists()
    result = _cli("review", "apply", flagged_run["run"], tmp / "review.csv", "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "kept 117 of 120 records" in result.output and out.read_bytes() == _pruned(flagged_run)


def test_a_recipe_runs_again_over_what_it_wrote_but_not_over_what_was_changed(tmp_path: Path) -> None:
    from refine import load_recipe, run_recipe

    people_dataset(tmp_path / "data")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: data/train.jsonl\neval: data/eval.jsonl\nrun_dir: run\n"
                      "cluster: {enabled: false}\nreport: {enabled: false}\n")
    out = tmp_path / "run" / "refined.jsonl"
    run_recipe(load_recipe(recipe), progress=False)
    written = out.read_bytes()
    again = run_recipe(load_recipe(recipe), progress=False)       # `refine run` twice just works
    assert again.emit.outputs == [out] and out.read_bytes() == written

    out.write_bytes(written + b"{\"hand\": \"edit\"}\n")            # changed since the run wrote it
    with pytest.raises(ConfigError, match=f"{out} already exists; nothing was written") as info:
        run_recipe(load_recipe(recipe), progress=False)
    assert "emit.overwrite: true" in str(info.value)
    assert out.read_bytes().endswith(b"{\"hand\": \"edit\"}\n")
    run_recipe(load_recipe(recipe, ["emit.overwrite=true"]), progress=False)
    assert out.read_bytes() == written

    # what another run directory wrote is not this run's to replace
    with pytest.raises(ConfigError, match="already exist"):
        run_recipe(load_recipe(recipe, ["run_dir=other", f"emit.out={out}"]), progress=False)
    assert out.read_bytes() == written
