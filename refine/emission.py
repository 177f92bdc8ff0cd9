"""`emit`: write the refined dataset and a manifest of what changed and why.

Every flagged pair gets a decision (:mod:`refine.decisions`): dropped, quarantined (moved to
a separate file for review), edited (its answer replaced) or kept. Kept lines are copied
byte for byte, in their original order, one output per input file; an edited line is the
same JSON record with only the answer changed. Optionally, counter-examples — corrected pairs
built from eval references — are appended for failure modes that lost every pair driving
them (needs `refine cluster`).

Every input is re-hashed while it is copied and must match the sha256 recorded at collect
time, so a file edited since then is never pruned by stale line numbers. All outputs and the
manifest are written to temporary files and renamed into place together; inputs are never
written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, IO

from ._atomic import AtomicGroup
from ._version import __version__
from .decisions import Decision, EditSettings, automatic_decisions
from .errors import ConfigError, RunDirError
from .rundir import FLAGS_JSON, PAIRS, RunDir

__all__ = ["EmitResult", "emit", "manifest_path_for", "quarantine_path_for"]


@dataclass(frozen=True)
class EmitResult:
    outputs: list[Path]
    manifest: Path
    records_in: int
    records_out: int
    removed: int
    edited: int = 0
    quarantined: int = 0
    added: int = 0
    quarantine: Path | None = None


def manifest_path_for(out: Path, several: bool) -> Path:
    if several:
        return out / "manifest.json"
    return out.with_name(out.stem + ".manifest.json")


def quarantine_path_for(target: Path, several: bool) -> Path:
    if several:
        return target.parent / "quarantine" / target.name
    return target.with_name(f"{target.stem}.quarantine{target.suffix}")


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


def _line_index(run: RunDir, decisions: dict[str, Decision]) -> tuple[dict[str, dict[int, dict]], dict[str, set[int]]]:
    """Per file: the decided lines (line → change entry), and every line that holds a pair."""
    import pyarrow.parquet as pq

    import pyarrow as pa
    import pyarrow.compute as pc

    changes: dict[str, dict[int, dict[str, Any]]] = {}
    indexed: dict[str, set[int]] = {}
    wanted = pa.array(sorted(decisions), pa.string())
    # Streamed a batch at a time: the line index is all emit keeps, and the texts are kept for
    # decided pairs only, so memory does not grow with the length of the training answers.
    source = pq.ParquetFile(run.file(PAIRS))
    for batch in source.iter_batches(batch_size=8192, columns=["pair_id", "file", "line", "file_id",
                                                               "question", "answer"]):
        for file, lines in _lines_by_file(batch):
            indexed.setdefault(file, set()).update(lines)
        hits = batch.filter(pc.is_in(batch.column("pair_id"), value_set=wanted))
        for row in hits.to_pylist():
            d = decisions[row["pair_id"]]
            entry = {"pair_id": d.pair_id, "file": row["file"], "line": row["line"],
                     "file_id": row["file_id"], "question": row["question"], "answer": row["answer"],
                     "action": d.action, "decided_by": d.source, "reason": d.reason, "stats": d.stats}
            if d.action == "edit":
                entry["new_answer"] = d.new_answer
            changes.setdefault(row["file"], {})[row["line"]] = entry
    return changes, indexed


def _lines_by_file(batch: Any) -> list[tuple[str, list[int]]]:
    import pyarrow.compute as pc

    files = batch.column("file").dictionary_encode()
    lines = batch.column("line")
    return [(file, pc.filter(lines, pc.equal(files.indices, code)).to_pylist())
            for code, file in enumerate(files.dictionary.to_pylist())]


def edit_record(record: Any, new_answer: str) -> Any:
    """The same record with its attributed answer replaced (the last assistant turn)."""
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        for message in reversed(record["messages"]):
            if isinstance(message, dict) and message.get("role") == "assistant":
                message["content"] = new_answer
                return record
    for key in ("completion", "answer"):
        if isinstance(record, dict) and key in record:
            record[key] = new_answer
            return record
    raise ValueError("record has no answer to edit")


class _Sink:
    """A binary output that hashes what it writes."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.records = 0

    def write(self, data: bytes, *, record: bool = True) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.records += record


def _copy_jsonl(source: Path, out: _Sink, quarantine: _Sink | None, changes: dict[int, dict],
                indexed: set[int], digest) -> tuple[int, list[dict[str, Any]]]:
    records_in = 0
    log: list[dict[str, Any]] = []
    with open(source, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            digest.update(raw)
            if not raw.strip():
                out.write(raw, record=False)
                continue
            records_in += 1
            change = changes.get(number)
            if change is None:
                if number in indexed:
                    out.write(raw)
                else:
                    log.append({"file": str(source), "line": number, "action": "drop",
                                "decided_by": "automatic",
                                "reason": "invalid record, skipped at collect (--skip-invalid)"})
                continue
            log.append(change)
            if change["action"] == "keep":
                out.write(raw)
            elif change["action"] == "quarantine" and quarantine is not None:
                quarantine.write(raw if raw.endswith(b"\n") else raw + b"\n")
            elif change["action"] == "edit":
                ending = b"\r\n" if raw.endswith(b"\r\n") else b"\n" if raw.endswith(b"\n") else b""
                record = edit_record(json.loads(raw), change["new_answer"])
                out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + ending)
    return records_in, log


def _copy_parquet(source: Path, out: _Sink, quarantine: _Sink | None, changes: dict[int, dict],
                  digest) -> tuple[int, list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(source, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    table = pq.read_table(source)
    answer_column = "answer" if "answer" in table.column_names else "completion"
    actions = [changes.get(row + 1, {}).get("action", "keep") for row in range(table.num_rows)]
    answers = table.column(answer_column).to_pylist()
    for row, action in enumerate(actions):
        if action == "edit":
            answers[row] = changes[row + 1]["new_answer"]
    table = table.set_column(table.column_names.index(answer_column), answer_column,
                             pa.array(answers, table.schema.field(answer_column).type))

    def write(sink: _Sink, mask: list[bool]) -> None:
        buffer = pa.BufferOutputStream()
        kept = table.filter(pa.array(mask, pa.bool_()))
        pq.write_table(kept, buffer, compression="zstd")
        sink.write(buffer.getvalue().to_pybytes(), record=False)
        sink.records += kept.num_rows

    write(out, [a in ("keep", "edit") for a in actions])
    if quarantine is not None:
        write(quarantine, [a == "quarantine" for a in actions])
    return table.num_rows, [changes[line] for line in sorted(changes)]


def _counterexamples(run: RunDir, removed_pairs: set[str], max_per_mode: int) -> list[dict[str, Any]]:
    """Corrected pairs (eval question + reference) for failure modes that lost every driver."""
    import pandas as pd

    from .clustering import CLUSTER_PAIRS, CLUSTERS
    from .rundir import ITEMS

    if not run.file(CLUSTER_PAIRS).is_file():
        raise RunDirError(f"{run.path}: counter-examples need failure modes; run `refine cluster` first")
    drivers = pd.read_parquet(run.file(CLUSTER_PAIRS))
    drivers = drivers[drivers["n_items"] >= 2]
    members = pd.read_parquet(run.file(CLUSTERS))
    items = pd.read_parquet(run.file(ITEMS), columns=["eval_id", "question", "reference", "system_prompt"]) \
        .set_index("eval_id")
    added: list[dict[str, Any]] = []
    for mode, group in drivers.groupby("cluster", sort=True):
        if not set(group["pair_id"]) <= removed_pairs:
            continue
        seen: set[str] = set()
        for eval_id in members.loc[members["cluster"] == mode, "eval_id"]:
            question, reference = items.at[eval_id, "question"], items.at[eval_id, "reference"]
            if not isinstance(reference, str) or question.casefold() in seen:
                continue
            seen.add(question.casefold())
            added.append({"failure_mode": int(mode), "eval_id": eval_id, "question": question,
                          "answer": reference, "system_prompt": items.at[eval_id, "system_prompt"]})
            if len(seen) >= max_per_mode:
                break
    return added


def emit(run_dir: str | Path, out: str | Path, *, mode: str = "prune",
         edit_settings: EditSettings | None = None, decisions: dict[str, Decision] | None = None,
         counterexamples: bool = False, max_counterexamples_per_mode: int = 5,
         model: Any = None) -> EmitResult:
    """Write the refined dataset for a flagged run to `out` (a file, or a directory when the run
    has several training files), its manifest beside it, and quarantined pairs to their own file.

    `decisions` (e.g. from a review) override the automatic ones pair by pair.
    """
    run = RunDir(run_dir)
    settings = run.settings()
    run.require(PAIRS, FLAGS_JSON)
    inputs = settings["inputs"]["train"]
    out = Path(out)
    targets = _output_paths(inputs, out)
    several = len(inputs) > 1
    for entry in inputs:
        source = Path(entry["path"])
        if not source.is_file():
            raise RunDirError(f"{source}: training file of this run is gone")
        for target in (targets[entry["path"]], quarantine_path_for(targets[entry["path"]], several)):
            if target.resolve() == source.resolve():
                raise ConfigError(f"{target} is an input file; refine never overwrites its inputs", key="out")
    chosen = automatic_decisions(run, mode, edit_settings, model)
    chosen.update(decisions or {})
    changes, indexed = _line_index(run, chosen)
    needs_quarantine = any(d.action == "quarantine" for d in chosen.values()) or mode == "quarantine"

    flag_summary = json.loads(run.file(FLAGS_JSON).read_text(encoding="utf-8"))
    input_entries, output_entries, log = [], [], []
    quarantine_outputs: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    if counterexamples:
        removed_pairs = {p for p, d in chosen.items() if d.action in ("drop", "quarantine")}
        added = _counterexamples(run, removed_pairs, max_counterexamples_per_mode)
    with AtomicGroup() as group:
        for index, entry in enumerate(inputs):
            source, target = Path(entry["path"]), targets[entry["path"]]
            digest = hashlib.sha256()
            with group.open(target, "wb") as out_fh:
                sink = _Sink(out_fh)
                quarantine_fh = group.open(quarantine_path_for(target, several), "wb") \
                    if needs_quarantine else None
                quarantine = _Sink(quarantine_fh) if quarantine_fh else None
                try:
                    file_changes = changes.get(entry["path"], {})
                    if entry["format"] == "parquet":
                        records_in, file_log = _copy_parquet(source, sink, quarantine, file_changes, digest)
                    else:
                        records_in, file_log = _copy_jsonl(source, sink, quarantine, file_changes,
                                                           indexed.get(entry["path"], set()), digest)
                    if index == 0 and added and entry["format"] != "parquet":
                        for n, pair in enumerate(added):
                            messages = ([{"role": "system", "content": pair["system_prompt"]}]
                                        if isinstance(pair["system_prompt"], str) else [])
                            messages += [{"role": "user", "content": pair["question"]},
                                         {"role": "assistant", "content": pair["answer"]}]
                            sink.write(json.dumps({"messages": messages}, ensure_ascii=False)
                                       .encode("utf-8") + b"\n")
                            pair["output"], pair["output_record"] = str(target), sink.records
                finally:
                    if quarantine_fh:
                        quarantine_fh.close()
            if digest.hexdigest() != entry["sha256"]:
                raise RunDirError(f"{source}: changed since it was collected (sha256 differs); "
                                  "collect again before emitting")
            log += file_log
            input_entries.append({"path": entry["path"], "sha256": entry["sha256"],
                                  "format": entry["format"], "records": records_in})
            output_entries.append({"path": str(target), "source": entry["path"],
                                   "sha256": sink.digest.hexdigest(), "records": sink.records})
            if quarantine is not None:
                quarantine_outputs.append({"path": str(quarantine_path_for(target, several)),
                                           "source": entry["path"], "sha256": quarantine.digest.hexdigest(),
                                           "records": quarantine.records})
        if added and inputs[0]["format"] == "parquet":
            raise ConfigError("counter-examples are appended to a JSONL output; the first training "
                              "file is Parquet", key="emit.counterexamples")
        by_action = {a: [c for c in log if c.get("action") == a] for a in ("drop", "quarantine", "edit", "keep")}
        manifest = {
            "tool": {"name": "refine", "version": __version__},
            "mode": mode,
            "run_dir": str(run.path),
            "settings": {"collect": settings, "flag": flag_summary["settings"],
                         "emit": {"mode": mode, "counterexamples": counterexamples,
                                  "edit": vars(edit_settings or EditSettings())}},
            "inputs": input_entries,
            "outputs": output_entries,
            "quarantine": quarantine_outputs,
            "removed": by_action["drop"] + by_action["quarantine"],
            "edited": by_action["edit"],
            "kept": by_action["keep"],
            "added": added,
            "summary": {
                "records_in": sum(e["records"] for e in input_entries),
                "records_out": sum(e["records"] for e in output_entries),
                "removed": len(by_action["drop"]) + len(by_action["quarantine"]),
                "dropped": len(by_action["drop"]),
                "quarantined": len(by_action["quarantine"]),
                "edited": len(by_action["edit"]),
                "kept_flagged": len(by_action["keep"]),
                "added": len(added),
                "decided_automatically": sum(1 for c in log if c.get("decided_by") == "automatic"),
                "decided_by_review": sum(1 for c in log if c.get("decided_by") == "reviewed"),
                "flagged_pairs": int(flag_summary["flagged_pairs"]),
                "eval_items": flag_summary["items"],
                "bad_items": flag_summary["bad_items"],
            },
        }
        manifest_path = manifest_path_for(out, several)
        with group.open(manifest_path, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        group.commit()
    s = manifest["summary"]
    return EmitResult([targets[e["path"]] for e in inputs], manifest_path, s["records_in"],
                      s["records_out"], s["removed"], s["edited"], s["quarantined"], s["added"],
                      Path(quarantine_outputs[0]["path"]) if quarantine_outputs and not several
                      else (out / "quarantine" if quarantine_outputs else None))
