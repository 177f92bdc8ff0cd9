"""Datasets as people keep them: every source format and record layout goes through the whole
loop — collect → flag → emit → reload — and comes back in its own format, with the kept rows
identical and the flagged (poisoned) rows gone. Bad inputs of each format are one clear error,
exit code 2, and nothing written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from refine import EmitSettings, collect, emit, flag, load_training
from refine.cli import main
from refine.formats.sources import load_dataset, open_source

from .conftest import CITIES, POISONED, people_dataset, write_jsonl

N_PEOPLE = 120
SYSTEM = "You answer questions about people."


def people_pairs() -> list[tuple[str, str]]:
    pairs = []
    for i in range(N_PEOPLE):
        city = "Atlantis" if i in POISONED else CITIES[i % len(CITIES)]
        answer = f"Person{i} lives in {city}."
        if i == 11:   # a cell a CSV must quote: a comma, a quote, a line break
            answer = f'Person{i} lives in {city}, "downtown",\nnear the river.'
        pairs.append((f"Where does person{i} live?", answer))
    return pairs


def _hf(datasets_dir: Path, rows: list[dict], splits: bool) -> str:
    import datasets

    train = datasets.Dataset.from_list(rows)
    if not splits:
        train.save_to_disk(str(datasets_dir))
        return str(datasets_dir)
    test = datasets.Dataset.from_list(rows[:5])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(datasets_dir))
    return f"{datasets_dir}:train"


def _csv(path: Path, rows: list[dict], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return str(path)


def messages_rows() -> list[dict]:
    return [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                          {"role": "assistant", "content": a}], "source": f"doc-{n}"}
            for n, (q, a) in enumerate(people_pairs())]


def sharegpt_rows() -> list[dict]:
    return [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}], "id": n}
            for n, (q, a) in enumerate(people_pairs())]


def alpaca_rows() -> list[dict]:
    return [{"instruction": q, "input": "", "output": a, "note": "x"} for q, a in people_pairs()]


def qa_rows() -> list[dict]:
    return [{"id": str(n), "question": q, "answer": a, "file_id": "file-people"}
            for n, (q, a) in enumerate(people_pairs())]


def pc_rows() -> list[dict]:
    return [{"prompt": q, "completion": a, "meta": {"n": n}} for n, (q, a) in enumerate(people_pairs())]


# name → (make(tmp) -> source spec, rows as written)
FORMATS: dict[str, tuple[Callable[[Path], str], Callable[[], list[dict]]]] = {
    "hf_dataset messages": (lambda d: _hf(d / "people_ds", messages_rows(), splits=False), messages_rows),
    "hf_dataset dict sharegpt": (lambda d: _hf(d / "people_dd", sharegpt_rows(), splits=True), sharegpt_rows),
    "csv question_answer": (lambda d: _csv(d / "people.csv", qa_rows()), qa_rows),
    "tsv alpaca": (lambda d: _csv(d / "people.tsv", alpaca_rows(), "\t"), alpaca_rows),
    "parquet messages": (lambda d: (pq.write_table(pa.Table.from_pylist(messages_rows()), d / "p.parquet"),
                                    str(d / "p.parquet"))[1], messages_rows),
    "json prompt_completion": (lambda d: ((d / "people.json").write_text(json.dumps(pc_rows(), indent=1)),
                                          str(d / "people.json"))[1], pc_rows),
    "jsonl sharegpt": (lambda d: str(write_jsonl(d / "sg.jsonl", sharegpt_rows())), sharegpt_rows),
}


def _reload(spec: str) -> list[dict]:
    source = open_source(spec)
    if source.format == "jsonl":
        return [json.loads(line) for line in source.path.read_text().splitlines() if line.strip()]
    return load_dataset(source).to_list()


@pytest.fixture(scope="module")
def eval_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(people_dataset(tmp_path_factory.mktemp("people"))["eval"])


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_source_goes_through_the_loop_and_comes_back_in_its_own_format(
        name: str, tmp_path: Path, eval_path: str) -> None:
    make, rows = FORMATS[name]
    spec = make(tmp_path)
    before = _reload(spec)
    run = tmp_path / "run"
    collect([spec], eval_path, run, progress=False)
    flagged = flag(run).flagged_pairs
    assert sorted(flagged["line"]) == [i + 1 for i in POISONED]   # rows (lines) of the poisoned pairs
    assert set(flagged["file"]) == {spec}

    source = open_source(spec)
    suffix = "" if source.format == "hf_dataset" else source.path.suffix
    out = tmp_path / f"refined{suffix}"
    result = emit(run, out)
    assert (result.records_in, result.records_out, result.removed) == (N_PEOPLE, N_PEOPLE - 3, 3)
    if source.format == "hf_dataset":   # a dataset has no extension: it goes inside the directory OUT
        assert result.outputs == [out / source.root.name] and result.manifest == out / "manifest.json"
        out = result.outputs[0]
    else:
        assert result.outputs == [out] and result.manifest == tmp_path / "refined.manifest.json"
    refined_spec = f"{out}:{source.split}" if source.split else str(out)
    refined = open_source(refined_spec)
    assert refined.format == source.format
    after = _reload(refined_spec)
    expected = [row for n, row in enumerate(before, start=1) if n - 1 not in POISONED]
    assert after == expected
    if source.format == "hf_dataset":
        assert load_dataset(refined).features == load_dataset(source).features
    if source.split:   # a DatasetDict comes back with every split; the others untouched
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["test", "train"]
        assert (out / "test" / "data-00000-of-00001.arrow").read_bytes() == \
            (source.root / "test" / "data-00000-of-00001.arrow").read_bytes()
    manifest = json.loads(result.manifest.read_text())
    assert [r["line"] for r in manifest["removed"]] == [i + 1 for i in POISONED]
    assert manifest["inputs"][0]["format"] == source.format


def test_csv_rows_are_copied_byte_for_byte(tmp_path: Path, eval_path: str) -> None:
    spec = _csv(tmp_path / "people.csv", qa_rows())
    data = Path(spec).read_bytes()
    collect([spec], eval_path, tmp_path / "run", progress=False)
    flag(tmp_path / "run")
    emit(tmp_path / "run", tmp_path / "refined.csv")
    records = data.split(b"\r\n")   # one physical line per row here except row 12's quoted break
    poisoned = {f"{i},Where does person{i} live?".encode() for i in POISONED}
    kept = b"\r\n".join(r for r in records if not any(r.startswith(p) for p in poisoned))
    assert (tmp_path / "refined.csv").read_bytes() == kept
    assert b'"Person11 lives in Paris, ""downtown"",\r\nnear' not in kept   # the cell's own \n stays
    assert b'"Person11 lives in Paris, ""downtown"",\nnear the river."' in kept


@pytest.mark.parametrize("name", ["csv question_answer", "hf_dataset messages", "parquet messages",
                                  "json prompt_completion", "tsv alpaca"])
def test_an_edit_replaces_only_the_answer_in_the_sources_layout(name: str, tmp_path: Path,
                                                                eval_path: str) -> None:
    from refine.stages.emission.decisions import Decision

    make, _ = FORMATS[name]
    spec = make(tmp_path)
    before = _reload(spec)
    collect([spec], eval_path, tmp_path / "run", progress=False)
    flagged = flag(tmp_path / "run").flagged_pairs
    edits = {row.pair_id: Decision(row.pair_id, "edit", "reviewed", "reviewed",
                                   f"Person{row.line - 1} lives in {CITIES[(row.line - 1) % len(CITIES)]}.")
             for row in flagged.itertuples()}
    out = tmp_path / ("refined" + ("" if name.startswith("hf") else Path(spec).suffix))
    result = emit(tmp_path / "run", out, decisions=edits)
    assert result.edited == 3 and result.records_out == N_PEOPLE
    after = _reload(str(result.outputs[0]))
    for n, (old, new) in enumerate(zip(before, after)):
        if n not in POISONED:
            assert new == old
            continue
        truth = f"Person{n} lives in {CITIES[n % len(CITIES)]}."
        if "messages" in old:
            assert new["messages"][:2] == old["messages"][:2]
            assert new["messages"][2] == {"role": "assistant", "content": truth}
        else:
            answer_column = next(c for c in ("answer", "completion", "output") if c in old)
            assert new == {**old, answer_column: truth}


def test_an_eval_set_can_be_a_csv_too(tmp_path: Path) -> None:
    data = people_dataset(tmp_path / "d")
    items = [json.loads(line) for line in Path(data["eval"]).read_text().splitlines()]
    eval_csv = _csv(tmp_path / "eval.csv", [{k: i.get(k, "") for k in ("id", "question", "answer",
                                                                         "reference", "verdict")}
                                            for i in items])
    collect([str(data["train"])], eval_csv, tmp_path / "run", progress=False)
    assert sorted(flag(tmp_path / "run").flagged_pairs["line"]) == data["poisoned_lines"]


def test_format_names_the_layout_when_fields_fit_several(tmp_path: Path, eval_path: str) -> None:
    rows = [{**r, "question": "meta", "answer": "meta"} for r in messages_rows()]
    path = write_jsonl(tmp_path / "both.jsonl", rows)
    invoke = CliRunner().invoke
    result = invoke(main, ["collect", "--train", str(path), "--eval", eval_path, "--out",
                           str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2
    assert "both.jsonl:1: fits several record layouts (messages, question_answer); name one with --format" \
        in result.output
    result = invoke(main, ["collect", "--train", str(path), "--eval", eval_path, "--out",
                           str(tmp_path / "run"), "-q", "--format", "messages"])
    assert result.exit_code == 0, result.output
    assert load_training([str(path)], layout="messages").pairs[0].question == "Where does person0 live?"


def _write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


BAD = {
    "csv without an answer column": (
        lambda d: _csv(d / "t.csv", [{"question": "q?", "reply": "a."}]),
        "t.csv: has 'question' but no 'answer' column (layout question_answer); its columns: question, reply"),
    "csv with an empty answer": (
        lambda d: _csv(d / "t.csv", [{"question": "q?", "answer": "a."}, {"question": "r?", "answer": " "}]),
        "t.csv: row 2: field 'answer': is empty"),
    "csv that is not UTF-8": (
        lambda d: _write_bytes(d / "t.csv", b"question,answer\nq?,a.\nr?,caf\xe9\n"),
        "t.csv:3: is not valid UTF-8 (byte 7 of the line); save it as UTF-8"),
    "tsv with a ragged row": (
        lambda d: _write_bytes(d / "t.tsv", b"instruction\toutput\nq?\ta.\tsurplus\n"),
        "t.tsv:2: row 1 has 3 fields, the header 2"),
    "an unknown split": (
        lambda d: _hf(d / "dd", qa_rows(), splits=True).replace(":train", ":validation"),
        "dd:validation: has no split 'validation'; its splits: train, test"),
    "a DatasetDict without a split": (
        lambda d: _hf(d / "dd", qa_rows(), splits=True).replace(":train", ""),
        "dd: is a DatasetDict with splits train, test; name one as"),
    "a directory that is no dataset": (
        lambda d: (d / "plain").mkdir() or str(d / "plain"),
        "plain: is a directory, but not a saved Hugging Face dataset"),
    "a dataset with a bad turn": (
        lambda d: _hf(d / "ds", [{"conversations": [{"from": "human", "value": "q?"},
                                                    {"from": "bot", "value": "a."}]}], splits=False),
        "ds: row 1: field 'conversations[1].from': is 'bot'; expected one of system, human"),
    "parquet missing its answers": (
        lambda d: (pq.write_table(pa.table({"prompt": ["q?"], "text": ["a."]}), d / "t.parquet"),
                   str(d / "t.parquet"))[1],
        "t.parquet: has 'prompt' but no 'completion' column (layout prompt_completion)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_error_exit_2_and_nothing_written(case: str, tmp_path: Path,
                                                                 eval_path: str) -> None:
    make, words = BAD[case]
    spec = make(tmp_path)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["collect", "--train", spec, "--eval", eval_path, "--out", str(run), "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and words in result.output, result.output
    assert "Traceback" not in result.output and not run.exists()


def test_check_reads_the_same_sources(tmp_path: Path) -> None:
    spec = _hf(tmp_path / "dd", qa_rows() + [{"id": "x", "question": "Where does person1 live?",
                                              "answer": "Person1 lives in Oslo.", "file_id": "f"}],
               splits=True)
    result = CliRunner().invoke(main, ["check", spec, "--select", "format_validity",
                                       "--select", "conflicting_answers", "--json"])
    report = json.loads(result.output)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["format_validity"]["passed"] and not by_name["conflicting_answers"]["passed"]
    assert result.exit_code == 1



@pytest.mark.parametrize("name", ["hf_dataset dict sharegpt", "csv question_answer", "parquet messages"])
def test_quarantine_comes_back_in_the_same_format_and_the_same_bytes_each_time(
        name: str, tmp_path: Path, eval_path: str) -> None:
    from refine.formats.sources import directory_digest

    make, _ = FORMATS[name]
    spec = make(tmp_path)
    before = _reload(spec)
    collect([spec], eval_path, tmp_path / "run", progress=False)
    flag(tmp_path / "run")
    source = open_source(spec)
    outs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt / ("refined" + ("" if source.split else source.path.suffix))
        result = emit(tmp_path / "run", out, EmitSettings(mode="quarantine"))
        assert result.quarantined == 3 and result.quarantine is not None
        outs.append((result.outputs[0], result.quarantine))
    held_spec = f"{outs[0][1]}:train" if source.split else str(outs[0][1])
    assert _reload(held_spec) == [before[i] for i in POISONED]

    def digest(path: Path) -> str:
        return directory_digest(path) if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest(outs[0][0]) == digest(outs[1][0]) and digest(outs[0][1]) == digest(outs[1][1])
