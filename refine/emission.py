"""`emit`: write the refined dataset and a manifest of what changed and why.

Kept JSONL lines are copied byte for byte, in their original order, one output per input
file. Every input is re-hashed while it is copied and must match the sha256 recorded at
collect time, so a file edited since then is never pruned by stale line numbers. All outputs
and the manifest are written to temporary files and renamed into place together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._atomic import AtomicGroup
from ._version import __version__
from .errors import ConfigError, RunDirError
from .flagging import read_flags
from .rundir import FLAGS_JSON, PAIRS, RunDir

__all__ = ["EmitResult", "emit", "manifest_path_for"]

_STAT_COLUMNS = ("n_bad", "n_good", "blame", "bad_share", "p_value", "q_value")


@dataclass(frozen=True)
class EmitResult:
    outputs: list[Path]
    manifest: Path
    records_in: int
    records_out: int
    removed: int


def manifest_path_for(out: Path, several: bool) -> Path:
    if several:
        return out / "manifest.json"
    return out.with_name(out.stem + ".manifest.json")


def _output_paths(inputs: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    if len(inputs) == 1:
        if out.is_dir():
            return {inputs[0]["path"]: out / Path(inputs[0]["path"]).name}
        return {inputs[0]["path"]: out}
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, but there are {len(inputs)} training files: "
                          "give a directory, one output per input file is written into it", key="out")
    paths: dict[str, Path] = {}
    for entry in inputs:
        target = out / Path(entry["path"]).name
        if target in paths.values():
            raise ConfigError(f"two training files are named {target.name!r}; they would "
                              "overwrite each other in the output directory", key="out")
        paths[entry["path"]] = target
    return paths


def _removals(run: RunDir) -> tuple[dict[str, dict[int, dict[str, Any]]], int]:
    """For each input file, the lines to remove and why; and the number of flagged pairs."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    flags = read_flags(run.path)
    flagged = flags[flags["flagged"]]
    stats = {row["pair_id"]: {k: row[k] for k in _STAT_COLUMNS if k in flagged.columns}
             for row in flagged.to_dict("records")}
    pairs = pq.read_table(run.file(PAIRS), columns=["pair_id", "file", "line", "file_id",
                                                     "question", "answer"])
    pairs = pairs.filter(pc.is_in(pairs["pair_id"], value_set=pa.array(sorted(stats), pa.string())))
    removals: dict[str, dict[int, dict[str, Any]]] = {}
    for row in pairs.to_pylist():
        s = stats[row["pair_id"]]
        reason = (f"flagged: cited by {int(s['n_bad'])} bad and {int(s['n_good'])} good answers; "
                  f"q = {float(s['q_value']):.3g}")
        removals.setdefault(row["file"], {})[row["line"]] = {
            "pair_id": row["pair_id"], "file": row["file"], "line": row["line"],
            "file_id": row["file_id"], "question": row["question"], "answer": row["answer"],
            "reason": reason,
            "stats": {k: (int(v) if k.startswith("n_") else round(float(v), 6)) for k, v in s.items()},
        }
    return removals, len(stats)


def _copy_jsonl(source: Path, sink, drop: dict[int, dict[str, Any]], indexed: set[int],
                digest, out_digest) -> tuple[int, int, list[dict[str, Any]]]:
    """Copy kept lines; return (records in, records out, removed entries in line order)."""
    records_in = records_out = 0
    removed: list[dict[str, Any]] = []
    with open(source, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            digest.update(raw)
            if not raw.strip():
                sink.write(raw)
                out_digest.update(raw)
                continue
            records_in += 1
            if number in drop:
                removed.append(drop[number])
            elif number not in indexed:
                removed.append({"file": str(source), "line": number,
                                "reason": "invalid record, skipped at collect (--skip-invalid)"})
            else:
                sink.write(raw)
                out_digest.update(raw)
                records_out += 1
    return records_in, records_out, removed


def _copy_parquet(source: Path, sink, drop: dict[int, dict[str, Any]],
                  digest, out_digest) -> tuple[int, int, list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(source, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    table = pq.read_table(source)
    keep = [row + 1 not in drop for row in range(table.num_rows)]
    kept = table.filter(pa.array(keep, pa.bool_()))
    buffer = pa.BufferOutputStream()
    pq.write_table(kept, buffer, compression="zstd")
    data = buffer.getvalue().to_pybytes()
    sink.write(data)
    out_digest.update(data)
    return table.num_rows, kept.num_rows, [drop[line] for line in sorted(drop)]


def emit(run_dir: str | Path, out: str | Path) -> EmitResult:
    """Write the pruned dataset for a flagged run to `out` (a file, or a directory when the
    run has several training files) and its manifest beside it."""
    import pyarrow.parquet as pq

    run = RunDir(run_dir)
    settings = run.settings()
    run.require(PAIRS, FLAGS_JSON)
    inputs = settings["inputs"]["train"]
    out = Path(out)
    targets = _output_paths(inputs, out)
    for entry in inputs:
        source = Path(entry["path"])
        if not source.is_file():
            raise RunDirError(f"{source}: training file of this run is gone")
        if targets[entry["path"]].resolve() == source.resolve():
            raise ConfigError(f"{targets[entry['path']]} is an input file; refine never "
                              "overwrites its inputs", key="out")
    several = len(inputs) > 1
    manifest_path = manifest_path_for(out, several)
    removals, n_flagged = _removals(run)
    indexed_lines: dict[str, set[int]] = {}
    for row in pq.read_table(run.file(PAIRS), columns=["file", "line"]).to_pylist():
        indexed_lines.setdefault(row["file"], set()).add(row["line"])

    flag_summary = json.loads(run.file(FLAGS_JSON).read_text(encoding="utf-8"))
    input_entries, output_entries, removed_all = [], [], []
    with AtomicGroup() as group:
        for entry in inputs:
            source, target = Path(entry["path"]), targets[entry["path"]]
            digest, out_digest = hashlib.sha256(), hashlib.sha256()
            drop = removals.get(entry["path"], {})
            with group.open(target, "wb") as sink:
                if entry["format"] == "parquet":
                    counts = _copy_parquet(source, sink, drop, digest, out_digest)
                else:
                    counts = _copy_jsonl(source, sink, drop,
                                         indexed_lines.get(entry["path"], set()), digest,
                                         out_digest)
            if digest.hexdigest() != entry["sha256"]:
                raise RunDirError(f"{source}: changed since it was collected (sha256 differs); "
                                  "collect again before emitting")
            records_in, records_out, removed = counts
            removed_all += removed
            input_entries.append({"path": entry["path"], "sha256": entry["sha256"],
                                  "format": entry["format"], "records": records_in})
            output_entries.append({"path": str(target), "source": entry["path"],
                                   "sha256": out_digest.hexdigest(), "records": records_out})
        manifest = {
            "tool": {"name": "refine", "version": __version__},
            "mode": "prune",
            "run_dir": str(run.path),
            "settings": {"collect": settings, "flag": flag_summary["settings"]},
            "inputs": input_entries,
            "outputs": output_entries,
            "removed": removed_all,
            "summary": {
                "records_in": sum(e["records"] for e in input_entries),
                "records_out": sum(e["records"] for e in output_entries),
                "removed": len(removed_all),
                "flagged_pairs": n_flagged,
                "eval_items": flag_summary["items"],
                "bad_items": flag_summary["bad_items"],
            },
        }
        with group.open(manifest_path, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        group.commit()
    return EmitResult([targets[e["path"]] for e in inputs], manifest_path,
                      manifest["summary"]["records_in"], manifest["summary"]["records_out"],
                      len(removed_all))
