"""The review round trip: export to a spreadsheet-friendly CSV, validate it, emit with it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from refine import EmitSettings, InputError
from refine.stages.review import REVIEW_COLUMNS, apply_review, export_review

EDIT = EmitSettings(mode="edit")


def _read(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def _write(path: Path, rows: list[dict[str, str]], columns: list[str] = REVIEW_COLUMNS) -> Path:
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def exported(sample_copy: dict, tmp_path: Path) -> dict:
    path = tmp_path / "review.csv"
    result = export_review(sample_copy["run"], path, EDIT)
    return {"path": path, "rows": _read(path), "run": sample_copy["run"], "tmp": tmp_path, "result": result}


def test_export_has_one_quoted_utf8_row_per_flagged_pair(exported: dict) -> None:
    raw = exported["path"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")                   # spreadsheets detect UTF-8
    rows = exported["rows"]
    assert exported["result"].rows == len(rows) == 13
    assert list(rows[0]) == REVIEW_COLUMNS
    assert all(r["action"] == "" and r["new_answer"] == "" for r in rows)
    assert all(r["bad_example_1"] and r["failure_modes"] for r in rows)
    assert {r["suggested_action"] for r in rows} == {"edit", "quarantine"}
    assert all(bool(r["suggested_answer"]) == (r["suggested_action"] == "edit") for r in rows)


def test_apply_emits_the_reviewed_decisions_and_says_so(exported: dict) -> None:
    rows = exported["rows"]
    rows[0].update(action="keep", note="checked by hand, fine")
    rows[1].update(action="edit", new_answer="A corrected answer,\nover two lines — with “quotes”.")
    rows[2].update(action="drop")
    review = _write(exported["tmp"] / "filled.csv", rows)
    result = apply_review(exported["run"], review, exported["tmp"] / "out", EDIT)
    manifest = json.loads(result.manifest.read_text())
    by_pair = {c["pair_id"]: c for c in manifest["removed"] + manifest["edited"] + manifest["kept"]}
    assert by_pair[rows[0]["pair_id"]]["action"] == "keep"
    assert by_pair[rows[1]["pair_id"]]["new_answer"].startswith("A corrected answer,\nover two lines")
    assert by_pair[rows[2]["pair_id"]]["action"] == "drop"
    assert {by_pair[r["pair_id"]]["decided_by"] for r in rows[:3]} == {"reviewed"}
    assert {by_pair[r["pair_id"]]["decided_by"] for r in rows[3:]} == {"automatic"}
    assert manifest["summary"]["decided_by_review"] == 3 and manifest["summary"]["kept_flagged"] == 1
    kept_line = rows[0]
    output = (exported["tmp"] / "out" / Path(kept_line["file"]).name).read_text()
    assert kept_line["answer"] in output


@pytest.mark.parametrize("change,row,field,words", [
    (lambda r: r[4].update(action="delete"), 6, "action", "'delete'"),
    (lambda r: r[2].update(action="edit", suggested_answer="", checksum=""), 4, "checksum", "read-only"),
    (lambda r: r[0].update(pair_id="0000000000000000"), 2, "pair_id", "unknown pair_id"),
    (lambda r: r[1].update(question="edited question"), 3, "checksum", "read-only"),
    (lambda r: r[3].update(action="drop", new_answer="x"), 5, "new_answer", "action is 'drop'"),
])
def test_bad_review_rows_are_errors_naming_the_row(exported: dict, change, row: int, field: str,
                                                   words: str) -> None:
    rows = exported["rows"]
    change(rows)
    review = _write(exported["tmp"] / "bad.csv", rows)
    out = exported["tmp"] / "out"
    with pytest.raises(InputError) as info:
        apply_review(exported["run"], review, out, EDIT)
    assert (info.value.line, info.value.field) == (row, field) and words in str(info.value)
    assert not out.exists()


def test_an_edit_without_any_answer_is_an_error(exported: dict) -> None:
    rows = exported["rows"]
    target = next(i for i, r in enumerate(rows) if r["suggested_action"] == "quarantine")
    rows[target].update(action="edit")
    review = _write(exported["tmp"] / "bad.csv", rows)
    with pytest.raises(InputError, match="no new_answer") as info:
        apply_review(exported["run"], review, exported["tmp"] / "out", EDIT)
    assert info.value.line == target + 2


def test_wrong_columns_and_encoding_are_errors(exported: dict) -> None:
    rows = [{k: v for k, v in r.items() if k != "note"} for r in exported["rows"]]
    review = _write(exported["tmp"] / "cols.csv", rows, [c for c in REVIEW_COLUMNS if c != "note"])
    with pytest.raises(InputError, match="missing note"):
        apply_review(exported["run"], review, exported["tmp"] / "out", EDIT)
    latin = exported["tmp"] / "latin.csv"
    # what a spreadsheet saving as "CSV (Windows)" does to the text
    latin.write_bytes(exported["path"].read_bytes().decode("utf-8-sig").encode("cp1252", errors="replace")
                      + b'"caf\xe9"\r\n')
    with pytest.raises(InputError, match="not UTF-8"):
        apply_review(exported["run"], latin, exported["tmp"] / "out", EDIT)
