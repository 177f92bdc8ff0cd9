"""Writing a refined copy of a training source in the source's own format.

One writer per format (:mod:`refine.formats.sources`), each given a :class:`Plan` — what happens to
each record (by its line or row), and the pairs to append — and the places to write:

* ``jsonl``: kept lines are copied byte for byte, blank lines included;
* ``csv``/``tsv``: kept rows are copied byte for byte (a quoted field spanning lines too), the
  header first, in the output and in the quarantine file;
* ``json``: the kept records of the array, unchanged, as a JSON array;
* ``parquet``: the kept rows, same schema (its metadata included), zstd-compressed;
* ``hf_dataset``: a dataset directory with the same features and split names: the attributed
  split(s) filtered, the other splits of a ``DatasetDict`` copied file by file.

An edited record is the same record with only its answer replaced, in its own layout
(:mod:`refine.formats.layouts`); appended records are written in the source's layout. Every input is
re-hashed (as it is read, or before) and must match the digest recorded at collect time, so a
source changed since then is never pruned by stale positions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, IO, Callable

import numpy as np

from ..core._atomic import AtomicGroup
from ..errors import ConfigError, RunDirError
from .layouts import Layout, Located, detect_layout, get_layout
from .sources import (DELIMITERS, Source, csv_records, datasets_quietly, directory_digest, load_dataset,
                      source_digest)

__all__ = ["Plan", "Written", "write_dataset_group", "write_refined"]

INVALID = "invalid record, skipped at collect (--skip-invalid)"


class Positions:
    """A set of record positions (lines or rows, ≥ 0) held as a bitmap: 10⁷ positions take
    10 MB here, against about 600 MB as a Python set of ints."""

    def __init__(self, positions: Any = ()) -> None:
        self._bits = np.zeros(0, dtype=bool)
        self.update(positions)

    def update(self, positions: Any) -> None:
        values = np.asarray(positions, dtype=np.int64).ravel()
        if not values.size:
            return
        if values.min() < 0:
            raise ValueError("positions are ≥ 0")
        top = int(values.max()) + 1
        if top > self._bits.size:
            self._bits = np.concatenate([self._bits, np.zeros(max(top, 2 * self._bits.size) - self._bits.size, bool)])
        self._bits[values] = True

    def __contains__(self, position: object) -> bool:
        return isinstance(position, (int, np.integer)) and 0 <= position < self._bits.size and bool(self._bits[position])

    def __len__(self) -> int:
        return int(self._bits.sum())


@dataclass
class Plan:
    """What to do with the records of one source.

    `changes` maps a line (JSONL) or row to its change entry (with ``action``: keep, drop,
    quarantine or edit, and ``new_answer`` for an edit); `indexed` holds every position that
    is a valid pair (any other non-blank record was skipped as invalid at collect, and is
    dropped); `added` are pairs (question, answer, system_prompt) to append.
    """

    changes: dict[int, dict[str, Any]]
    indexed: Positions | set[int]
    layout: str | None
    added: list[dict[str, Any]] = field(default_factory=list)
    quarantine: bool = False

    def action(self, position: int) -> str:
        change = self.changes.get(position)
        if change is not None:
            return change["action"]
        return "keep" if position in self.indexed else "invalid"


@dataclass
class Written:
    records_in: int
    records_out: int
    sha256: str
    log: list[dict[str, Any]]
    quarantined: int = 0
    quarantine_sha256: str | None = None


class _Sink:
    """A binary output that hashes and counts what it writes."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.records = 0

    def write(self, data: bytes, *, record: bool = True) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.records += record


def _log_for(plan: Plan, position: int, source: Source) -> dict[str, Any] | None:
    change = plan.changes.get(position)
    if change is not None:
        return change
    if position not in plan.indexed:
        return {"file": source.spec, "line": position, "action": "drop", "decided_by": "automatic",
                "reason": INVALID}
    return None


def _route(plan: Plan, position: int, source: Source, raw: bytes, out: _Sink, quarantine: _Sink | None,
           log: list[dict[str, Any]], ending: bytes = b"\n") -> str:
    """Log a line-based record's change and copy it where a keep or a quarantine puts it, byte
    for byte; return its action (an edit is the caller's: only it knows the format)."""
    action = plan.action(position)
    if (entry := _log_for(plan, position, source)) is not None:
        log.append(entry)
    if action == "keep":
        out.write(raw)
    elif action == "quarantine" and quarantine is not None:
        quarantine.write(raw if raw.endswith((b"\n", b"\r")) else raw + ending)
    return action


def _check_digest(actual: str, entry: dict[str, Any]) -> None:
    if actual != entry["sha256"]:
        raise RunDirError(f"{entry['path']}: changed since it was collected (sha256 differs); "
                          "collect again before emitting")


def _layout_for(plan: Plan, record: dict[str, Any], where: Located) -> Layout:
    return get_layout(plan.layout) if plan.layout else detect_layout(set(record), where, record)


def _note_added(plan: Plan, output: Path, first_record: int) -> None:
    for n, pair in enumerate(plan.added):
        pair["output"], pair["output_record"] = str(output), first_record + n


# --- JSONL -------------------------------------------------------------------------------------


def _write_jsonl(entry: dict, source: Source, plan: Plan, target: Path, quarantine: Path | None,
                 group: AtomicGroup) -> Written:
    digest = hashlib.sha256()
    log: list[dict[str, Any]] = []
    records_in = 0
    first_layout: Layout | None = None
    with group.open(target, "wb") as out_fh:
        out = _Sink(out_fh)
        q_fh = group.open(quarantine, "wb") if quarantine is not None else None
        q = _Sink(q_fh) if q_fh else None
        try:
            with open(source.path, "rb") as fh:
                for number, raw in enumerate(fh, start=1):
                    digest.update(raw)
                    if not raw.strip():
                        out.write(raw, record=False)
                        continue
                    records_in += 1
                    action = _route(plan, number, source, raw, out, q, log)
                    if action == "edit":
                        ending = b"\r\n" if raw.endswith(b"\r\n") else b"\n" if raw.endswith(b"\n") else b""
                        record = json.loads(raw)
                        layout = _layout_for(plan, record, Located(source.spec, line=number))
                        edited = layout.edit(record, plan.changes[number]["new_answer"])
                        out.write(json.dumps(edited, ensure_ascii=False).encode("utf-8") + ending)
                    if first_layout is None and plan.added and action != "invalid":
                        record = json.loads(raw)
                        first_layout = _layout_for(plan, record, Located(source.spec, line=number))
            if plan.added:
                _note_added(plan, target, out.records + 1)
                for pair in plan.added:
                    record = first_layout.make(pair["question"], pair["answer"], pair["system_prompt"])
                    out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        finally:
            if q_fh:
                q_fh.close()
    _check_digest(digest.hexdigest(), entry)
    return Written(records_in, out.records, out.digest.hexdigest(), log,
                   q.records if q else 0, q.digest.hexdigest() if q else None)


# --- CSV / TSV ---------------------------------------------------------------------------------


def _csv_cells(record: dict[str, Any], columns: list[str]) -> list[str]:
    """A record as CSV cells: lists and objects (a conversation) as JSON text, None as empty."""
    cells = []
    for column in columns:
        value = record.get(column)
        if value is None:
            cells.append("")
        elif isinstance(value, (list, dict)):
            cells.append(json.dumps(value, ensure_ascii=False))
        else:
            cells.append(str(value))
    return cells


def _csv_line(cells: list[str], delimiter: str, ending: bytes) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=ending.decode() or "\n").writerow(cells)
    return buffer.getvalue().encode("utf-8")


def _write_csv(entry: dict, source: Source, plan: Plan, target: Path, quarantine: Path | None,
               group: AtomicGroup) -> Written:
    data = source.path.read_bytes()
    _check_digest(hashlib.sha256(data).hexdigest(), entry)
    delimiter = DELIMITERS[source.format]
    layout = get_layout(plan.layout)
    log: list[dict[str, Any]] = []
    columns: list[str] = []
    ending = b"\n"
    rows = 0
    with group.open(target, "wb") as out_fh:
        out = _Sink(out_fh)
        q_fh = group.open(quarantine, "wb") if quarantine is not None else None
        q = _Sink(q_fh) if q_fh else None
        try:
            for row, raw in csv_records(data, delimiter):
                if row is None:
                    out.write(raw, record=False)
                    continue
                if row == 0:
                    columns = [c.strip() for c in next(csv.reader([raw.decode("utf-8").lstrip("\ufeff")],
                                                                   delimiter=delimiter))]
                    ending = b"\r\n" if raw.endswith(b"\r\n") else b"\n"
                    out.write(raw, record=False)
                    if q is not None:
                        q.write(raw, record=False)
                    continue
                rows = row
                if _route(plan, row, source, raw, out, q, log, ending) == "edit":
                    cells = next(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter=delimiter))
                    record = layout.edit(dict(zip(columns, cells)), plan.changes[row]["new_answer"])
                    line_end = b"\r\n" if raw.endswith(b"\r\n") else b"\n" if raw.endswith(b"\n") else b""
                    out.write(_csv_line(_csv_cells(record, columns), delimiter, line_end))
            if rows != entry.get("rows", rows):
                raise RunDirError(f"{entry['path']}: {rows} CSV rows read now, {entry['rows']} at collect: "
                                  "the rows cannot be copied one for one")
            if plan.added:
                _note_added(plan, target, out.records + 1)
                if data and not data.endswith((b"\n", b"\r")):
                    out.write(ending, record=False)
                for pair in plan.added:
                    record = layout.make(pair["question"], pair["answer"], pair["system_prompt"])
                    out.write(_csv_line(_csv_cells(record, columns), delimiter, ending))
        finally:
            if q_fh:
                q_fh.close()
    return Written(rows, out.records, out.digest.hexdigest(), log,
                   q.records if q else 0, q.digest.hexdigest() if q else None)


# --- JSON array --------------------------------------------------------------------------------


def _write_json(entry: dict, source: Source, plan: Plan, target: Path, quarantine: Path | None,
                group: AtomicGroup) -> Written:
    data = source.path.read_bytes()
    _check_digest(hashlib.sha256(data).hexdigest(), entry)
    records = json.loads(data)
    layout = get_layout(plan.layout)
    kept, held, log = [], [], []
    for row, record in enumerate(records, start=1):
        action = plan.action(row)
        if (entry_log := _log_for(plan, row, source)) is not None:
            log.append(entry_log)
        if action == "keep":
            kept.append(record)
        elif action == "edit":
            kept.append(layout.edit(record, plan.changes[row]["new_answer"]))
        elif action == "quarantine":
            held.append(record)
    if plan.added:
        _note_added(plan, target, len(kept) + 1)
        kept += [layout.make(p["question"], p["answer"], p["system_prompt"]) for p in plan.added]

    def dump(path: Path, rows: list) -> str:
        payload = (json.dumps(rows, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        with group.open(path, "wb") as fh:
            fh.write(payload)
        return hashlib.sha256(payload).hexdigest()

    sha = dump(target, kept)
    q_sha = dump(quarantine, held) if quarantine is not None else None
    return Written(len(records), len(kept), sha, log, len(held), q_sha)


# --- Arrow tables: Parquet and saved datasets --------------------------------------------------


def _refined_table(table: Any, plan: Plan, source: Source) -> tuple[Any, Any, list[dict[str, Any]]]:
    """(kept table with edits, quarantined table, log) from an Arrow table and a plan."""
    import pyarrow as pa

    layout = get_layout(plan.layout)
    pieces: list[Any] = []
    run_start: int | None = None
    held: list[int] = []
    log: list[dict[str, Any]] = []

    def close_run(end: int) -> None:
        nonlocal run_start
        if run_start is not None:
            pieces.append(table.slice(run_start, end - run_start))
            run_start = None

    for index in range(table.num_rows):
        row = index + 1
        action = plan.action(row)
        if (entry_log := _log_for(plan, row, source)) is not None:
            log.append(entry_log)
        if action == "keep":
            if run_start is None:
                run_start = index
            continue
        close_run(index)
        if action == "edit":
            record = layout.edit(table.slice(index, 1).to_pylist()[0], plan.changes[row]["new_answer"])
            pieces.append(pa.Table.from_pylist([record], schema=table.schema))
        elif action == "quarantine":
            held.append(index)
    close_run(table.num_rows)
    if plan.added:
        records = [layout.make(p["question"], p["answer"], p["system_prompt"]) for p in plan.added]
        pieces.append(pa.Table.from_pylist([{c: r.get(c) for c in table.column_names} for r in records],
                                           schema=table.schema))
    kept = pa.concat_tables(pieces) if pieces else table.slice(0, 0)
    return kept, table.take(pa.array(held, pa.int64())), log


def _arrow_table(dataset: Any) -> Any:
    if getattr(dataset, "_indices", None) is not None:
        dataset = dataset.flatten_indices()
    return dataset.data.table


def _write_parquet(entry: dict, source: Source, plan: Plan, target: Path, quarantine: Path | None,
                   group: AtomicGroup) -> Written:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_digest(source_digest(source), entry)
    table = pq.read_table(source.path)
    kept, held, log = _refined_table(table, plan, source)
    if plan.added:
        _note_added(plan, target, kept.num_rows - len(plan.added) + 1)

    def write(path: Path, part: Any) -> str:
        buffer = pa.BufferOutputStream()
        pq.write_table(part, buffer, compression="zstd")
        payload = buffer.getvalue().to_pybytes()
        with group.open(path, "wb") as fh:
            fh.write(payload)
        return hashlib.sha256(payload).hexdigest()

    sha = write(target, kept)
    q_sha = write(quarantine, held) if quarantine is not None else None
    return Written(table.num_rows, kept.num_rows, sha, log, held.num_rows, q_sha)


def _save_dataset(table: Any, like: Any, directory: Path, fingerprint: str) -> None:
    import datasets
    from datasets.table import InMemoryTable

    # A fixed fingerprint, derived from what went in: the same inputs give the same bytes.
    refined = datasets.Dataset(InMemoryTable(table), info=like.info.copy(), split=like.split,
                               fingerprint=fingerprint)
    with datasets_quietly():
        refined.save_to_disk(str(directory))


def write_dataset_group(entries: list[dict], sources: list[Source], plans: list[Plan], target: Path,
                        quarantine: Path | None, group: AtomicGroup) -> list[Written]:
    """One saved dataset (or DatasetDict) directory holding the refined split(s) of `entries`,
    which all lie in the same dataset directory."""
    root = sources[0].root
    is_dict = sources[0].split is not None
    out_dir = group.directory(target)
    q_dir = group.directory(quarantine) if quarantine is not None else None
    written: list[Written] = []
    attributed = {s.split for s in sources}
    if is_dict:
        shutil.copy2(root / "dataset_dict.json", out_dir / "dataset_dict.json")
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name not in attributed:
                shutil.copytree(child, out_dir / child.name)
        if q_dir is not None:
            (q_dir / "dataset_dict.json").write_text(json.dumps({"splits": sorted(attributed)}) + "\n",
                                                    encoding="utf-8")
    for entry, source, plan in zip(entries, sources, plans):
        _check_digest(source_digest(source), entry)
        dataset = load_dataset(source)
        table = _arrow_table(dataset)
        kept, held, log = _refined_table(table, plan, source)
        if plan.added:
            _note_added(plan, target, kept.num_rows - len(plan.added) + 1)
        split_dir = out_dir / source.split if is_dict else out_dir
        seed = entry["sha256"] + json.dumps(sorted((k, v["action"], v.get("new_answer")) for k, v in
                                                   plan.changes.items()), ensure_ascii=False)
        _save_dataset(kept, dataset, split_dir, hashlib.sha256(seed.encode()).hexdigest()[:16])
        q_sha = None
        if q_dir is not None:
            q_split = q_dir / source.split if is_dict else q_dir
            _save_dataset(held, dataset, q_split, hashlib.sha256(("q" + seed).encode()).hexdigest()[:16])
            q_sha = directory_digest(q_split)
        written.append(Written(table.num_rows, kept.num_rows, directory_digest(split_dir), log,
                               held.num_rows, q_sha))
    return written


WRITERS: dict[str, Callable[..., Written]] = {
    "jsonl": _write_jsonl, "csv": _write_csv, "tsv": _write_csv, "json": _write_json,
    "parquet": _write_parquet,
}


def write_refined(entry: dict, source: Source, plan: Plan, target: Path, quarantine: Path | None,
                  group: AtomicGroup) -> Written:
    """Write the refined copy of one file source (datasets go through write_dataset_group)."""
    if source.format not in WRITERS:
        raise ConfigError(f"no writer for format {source.format!r}", key="format")
    return WRITERS[source.format](entry, source, plan, target, quarantine, group)
