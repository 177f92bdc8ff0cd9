"""Where records come from: a file or a saved Hugging Face dataset, named as the user names it.

=================  ==================================================================
``format``         what it is
=================  ==================================================================
``jsonl``          JSON Lines (``.jsonl``, ``.ndjson``, and any file not named below);
                   read line by line here, so that a record is traced to its line and
                   kept lines are copied byte for byte
``json``           a ``.json`` file holding one JSON array of records
``csv``, ``tsv``   comma- or tab-separated values with a header row; every cell is text
``parquet``        ``.parquet`` / ``.pq``
``hf_dataset``     a directory written by ``Dataset.save_to_disk``; a ``DatasetDict``
                   directory names its split as ``DIR:split`` (``DIR`` alone when it has
                   one split)
=================  ==================================================================

Every format but JSONL is read with the ``datasets`` library, from local files only (the
library is put offline before it is imported, and its build cache goes to a temporary
directory that is removed). Records of those formats are located by their 1-based row.

A source's digest is the sha256 of the file, or, for a dataset, of the names and bytes of
every file of its split directory: what a run records and what emission checks again.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core._atomic import sha256_file
from ..errors import InputError

__all__ = ["FORMATS", "Source", "TableRows", "csv_records", "datasets_quietly", "directory_digest",
           "load_dataset", "open_source", "read_rows", "source_digest"]

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "hf_dataset")
TABLE_FORMATS = ("json", "csv", "tsv", "parquet", "hf_dataset")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
DELIMITERS = {"csv": ",", "tsv": "\t"}


@dataclass(frozen=True)
class Source:
    """One input as named (`spec`), what it is, and where its data lies."""

    spec: str
    format: str
    path: Path                # the file; for a dataset, the directory of its (split's) data
    root: Path                # the file; for a dataset, the directory named
    split: str | None = None  # the split of a DatasetDict

    @property
    def is_table(self) -> bool:
        return self.format in TABLE_FORMATS

    @property
    def unit(self) -> str:
        """What a record's position counts: lines of a JSONL file, rows of anything else."""
        return "row" if self.is_table else "line"

    def identity(self) -> tuple[Path, str | None]:
        return self.root.resolve(), self.split


def _dataset_kind(directory: Path) -> str | None:
    if (directory / "dataset_dict.json").is_file():
        return "dict"
    if (directory / "state.json").is_file() and (directory / "dataset_info.json").is_file():
        return "dataset"
    return None


def _splits(directory: Path) -> list[str]:
    import json

    try:
        names = json.loads((directory / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError("is a DatasetDict directory whose dataset_dict.json cannot be read",
                         file=str(directory)) from None
    return [str(n) for n in names]


def open_source(spec: str | os.PathLike[str]) -> Source:
    """What `spec` names, or an InputError saying why it cannot be read."""
    spec = str(spec)
    path = Path(spec)
    split = None
    if not path.exists() and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if Path(head).is_dir() and tail:
            path, split = Path(head), tail
    if path.is_dir():
        kind = _dataset_kind(path)
        if kind is None:
            raise InputError("is a directory, but not a saved Hugging Face dataset (no "
                             "dataset_info.json and state.json, nor dataset_dict.json)", file=spec)
        if kind == "dataset":
            if split is not None:
                raise InputError(f"is a single dataset, not a DatasetDict: it has no split {split!r}",
                                 file=spec)
            return Source(spec, "hf_dataset", path, path)
        splits = _splits(path)
        if split is None:
            if len(splits) != 1:
                raise InputError(f"is a DatasetDict with splits {', '.join(splits)}; name one as "
                                 f"{spec}:SPLIT", file=spec)
            split = splits[0]
        if split not in splits or _dataset_kind(path / split) != "dataset":
            raise InputError(f"has no split {split!r}; its splits: {', '.join(splits)}", file=spec)
        return Source(spec, "hf_dataset", path / split, path, split)
    if not path.is_file():
        raise InputError("no such file", file=spec)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None and path.suffix.lower() == ".json" and _starts_with(path, b"["):
        kind = "json"
    return Source(spec, kind or "jsonl", path, path)


def _starts_with(path: Path, token: bytes) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(token)


def source_digest(source: Source) -> str:
    if source.format != "hf_dataset":
        return sha256_file(source.path)
    return directory_digest(source.path)


def directory_digest(directory: Path) -> str:
    """sha256 over the relative names and contents of every file below `directory`."""
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = file.relative_to(directory).as_posix().encode("utf-8")
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


# --- reading tables with `datasets` ----------------------------------------------------------


@contextlib.contextmanager
def datasets_quietly() -> Iterator[Any]:
    """The `datasets` module, offline, without progress bars or info logs, with a build cache
    that is removed afterwards (it would otherwise be reused across runs by path and mtime)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    from datasets.utils import logging as ds_logging

    verbosity = ds_logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    ds_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="refine-datasets-") as cache:
            yield datasets, cache
    finally:
        ds_logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def _check_utf8(source: Source) -> bytes:
    data = source.path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(f"is not valid UTF-8 (byte {column} of the line); save it as UTF-8",
                         file=source.spec, line=line) from None
    return data


def _csv_header(source: Source, data: bytes) -> list[str]:
    """The header's column names, after checking every row has as many fields (pandas would
    otherwise take a row's surplus first field as an index and shift the rest silently)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8").lstrip("\ufeff"), newline=""),
                        delimiter=DELIMITERS[source.format])
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("is empty: a header row is needed", file=source.spec) from None
    except csv.Error as exc:
        raise InputError(f"header row cannot be read: {exc}", file=source.spec, line=1) from None
    seen: set[str] = set()
    for name in header:
        if not name.strip():
            raise InputError("header row has an empty column name", file=source.spec, line=1)
        if name in seen:
            raise InputError(f"header row names column {name!r} twice", file=source.spec, line=1)
        seen.add(name)
    row = 0
    try:
        for fields in reader:
            if not fields:
                continue
            row += 1
            if len(fields) != len(header):
                raise InputError(f"row {row} has {len(fields)} fields, the header {len(header)}",
                                 file=source.spec, line=reader.line_num)
    except csv.Error as exc:
        raise InputError(f"cannot be read as {source.format}: {exc}", file=source.spec,
                         line=reader.line_num) from None
    return header


def load_dataset(source: Source) -> Any:
    """The source as a `datasets.Dataset` held in memory (or memory-mapped, for a saved one)."""
    with datasets_quietly() as (datasets, cache):
        try:
            if source.format == "hf_dataset":
                return datasets.load_from_disk(str(source.path))
            if source.format in DELIMITERS:
                columns = _csv_header(source, _check_utf8(source))
                # Every cell is text: a CSV has no types, and an answer "042" must stay "042".
                features = datasets.Features({c: datasets.Value("string") for c in columns})
                # index_col=False: a row with a surplus field is an error, never a silent shift.
                return datasets.Dataset.from_csv(
                    str(source.path), sep=DELIMITERS[source.format], index_col=False,
                    features=features, keep_default_na=False, na_filter=False, cache_dir=cache,
                    keep_in_memory=True)
            if source.format == "parquet":
                return datasets.Dataset.from_parquet(str(source.path), cache_dir=cache, keep_in_memory=True)
            _check_utf8(source)
            return datasets.Dataset.from_json(str(source.path), cache_dir=cache, keep_in_memory=True)
        except InputError:
            raise
        except Exception as exc:  # datasets, pandas and pyarrow raise many unrelated types
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot be read as {source.format}: {message}", file=source.spec) from None


@dataclass
class TableRows:
    """The rows of a table source, as plain records, with the dataset they came from."""

    columns: list[str]
    count: int
    dataset: Any

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(1-based row, record), streamed a batch at a time."""
        row = 0
        for batch in self.dataset.iter(batch_size=2048):
            for values in zip(*(batch[c] for c in self.columns)):
                row += 1
                yield row, dict(zip(self.columns, values))


def read_rows(source: Source) -> TableRows:
    dataset = load_dataset(source)
    return TableRows(list(dataset.column_names), dataset.num_rows, dataset)


def csv_records(data: bytes, delimiter: str) -> Iterator[tuple[int | None, bytes]]:
    """The raw bytes of each record of a CSV file, in order: (0, header), (1, first row), …;
    blank lines come as (None, bytes). Joined, they are the file: a kept row can be copied
    byte for byte, a quoted field spanning lines included."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(data.decode("utf-8"), newline=""):
            consumed.append(line)
            yield line

    row = 0
    for fields in csv.reader(lines(), delimiter=delimiter):
        raw = "".join(consumed).encode("utf-8")
        consumed.clear()
        if not fields:
            yield None, raw
            continue
        yield row, raw
        row += 1
    if consumed:
        yield None, "".join(consumed).encode("utf-8")
