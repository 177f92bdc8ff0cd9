"""`emit`: write the refined dataset and a manifest of what changed and why.

Every flagged pair gets a decision (:mod:`refine.stages.emission.decisions`): dropped, quarantined (moved to
a separate output for review), edited (its answer replaced) or kept. Each training source
comes back in its own format (:mod:`refine.formats.writers`): kept JSONL lines and CSV rows byte for
byte, in their original order; a JSON array, Parquet file or saved Hugging Face dataset with
the same records, schema and split names, less the removed ones. An edited record is the
same record with only the answer changed. Optionally, counter-examples — corrected pairs
built from eval references — are appended to the first output for failure modes that lost
every pair driving them (needs `refine cluster`).

Where the outputs go, one rule: `out` is the refined file itself when the run has one
training file and `out` ends in that file's extension (``refined.jsonl`` for a ``.jsonl``
source), with its manifest beside it as ``<out stem>.manifest.json``; otherwise `out` is a
directory (made when missing) holding each source's refined copy under the source's own name
(``refined/train.jsonl``, ``refined/sft_dataset/``) and the manifest as ``manifest.json``.
Quarantined pairs go beside the file (``refined.quarantine.jsonl``) or under
``<out>/quarantine/``.

Every input is re-hashed and must match the digest recorded at collect time, so a source
edited since then is never pruned by stale positions. Nothing that exists is replaced unless
asked (`overwrite`), and never an input; that is checked before anything is written. All
outputs and the manifest are written to temporary files (and directories) and renamed into
place together; inputs are never written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...core._atomic import AtomicGroup, sha256_file
from ..._version import __version__
from .decisions import Decision, automatic_decisions
from ...errors import ConfigError, InputError, RunDirError
from ...core.lineage import PAIRS
from ...core.rundir import RunDir
from ...settings import EmitSettings
from ...formats.sources import Source, open_source
from ...formats.writers import Plan, Positions, Written, write_dataset_group, write_refined

__all__ = ["EmitResult", "EmitSettings", "emit", "manifest_path_for", "quarantine_path_for"]

_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".pq")


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


def manifest_path_for(out: Path, in_directory: bool) -> Path:
    """The manifest of an emission to `out`: inside it when `out` is a directory of outputs,
    else beside the file as ``<out stem>.manifest.json``."""
    if in_directory:
        return out / "manifest.json"
    return out.with_name(out.stem + ".manifest.json")


def quarantine_path_for(target: Path, in_directory: bool) -> Path:
    if in_directory:
        return target.parent / "quarantine" / target.name
    return target.with_name(f"{target.stem}.quarantine{target.suffix}")


def _output_name(source: Source) -> str:
    return source.root.name


def _out_is_directory(sources: list[Source], out: Path) -> bool:
    """The one rule for `out`: the refined file itself when there is one training file and
    `out` ends in its extension; a directory of outputs otherwise (a saved dataset, having no
    extension, always goes inside one)."""
    if len(sources) > 1:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file, but there are {len(sources)} training sources: "
                              "give a directory, one output per input is written into it", key="out")
        if out.suffix.lower() in _FILE_SUFFIXES:
            raise ConfigError(f"{out} looks like a file name, but there are {len(sources)} training "
                              "sources: give a directory, one output per input is written into it", key="out")
        return True
    source = sources[0]
    suffix = source.root.suffix.lower() if source.format != "hf_dataset" else ""
    if suffix and out.suffix.lower() == suffix:
        return False
    advice = (f"give a name ending in {suffix} for the refined file, or a directory to write it into"
              if suffix else "give a directory to write it into")
    if out.suffix.lower() in _FILE_SUFFIXES:
        raise ConfigError(f"{out} looks like a {out.suffix} file, but the training source "
                          f"{source.root.name} is {source.format}: {advice}", key="out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, but --out names a directory here (it does not end in "
                          f"the training file's extension); nothing was written: {advice}", key="out")
    return True


def _output_paths(sources: list[Source], out: Path, in_directory: bool) -> dict[str, Path]:
    """Where each source's refined copy goes: `out` itself, or inside the directory `out`
    under the source's name. Splits of one DatasetDict share one output directory."""
    if not in_directory:
        return {sources[0].spec: out}
    paths: dict[str, Path] = {}
    owner: dict[Path, Path] = {}
    for source in sources:
        target = out / _output_name(source)
        if target.name in ("manifest.json", "quarantine"):
            raise ConfigError(f"the training source {source.root} is named {target.name!r}, which "
                              f"the manifest or the quarantine takes in {out}; rename the source "
                              "(or, for one source, give --out a name ending in its extension)", key="out")
        root = source.root.resolve()
        if owner.setdefault(target, root) != root or (target in paths.values() and source.split is None):
            raise ConfigError(f"two training sources are named {target.name!r}; they would "
                              "overwrite each other in the output directory", key="out")
        paths[source.spec] = target
    return paths


def _line_index(run: RunDir, decisions: dict[str, Decision]) -> tuple[dict[str, dict[int, dict]], dict[str, Positions]]:
    """Per file: the decided lines (line → change entry), and every line that holds a pair."""
    import pyarrow.parquet as pq

    import pyarrow as pa
    import pyarrow.compute as pc

    changes: dict[str, dict[int, dict[str, Any]]] = {}
    indexed: dict[str, Positions] = {}
    wanted = pa.array(sorted(decisions), pa.string())
    # Streamed a batch at a time: the line index is all emit keeps, and the texts are kept for
    # decided pairs only, so memory does not grow with the length of the training answers.
    run.current("collect")
    source = pq.ParquetFile(run.file(PAIRS))
    for batch in source.iter_batches(batch_size=8192, columns=["pair_id", "file", "line", "file_id",
                                                               "question", "answer"]):
        for file, lines in _lines_by_file(batch):
            indexed.setdefault(file, Positions()).update(lines)
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


def _lines_by_file(batch: Any) -> list[tuple[str, Any]]:
    import pyarrow.compute as pc

    files = batch.column("file").dictionary_encode()
    lines = batch.column("line")
    return [(file, pc.filter(lines, pc.equal(files.indices, code)).to_numpy(zero_copy_only=False))
            for code, file in enumerate(files.dictionary.to_pylist())]


def _counterexamples(run: RunDir, removed_pairs: set[str], max_per_mode: int) -> list[dict[str, Any]]:
    """Corrected pairs (eval question + reference) for failure modes whose every flagged
    driving pair was removed or rewritten."""
    if not run.is_current("cluster"):
        raise RunDirError(f"{run.path}: counter-examples need current failure modes "
                          f"({run.stale_reason('cluster')}); run `refine cluster` first")
    drivers = run.cluster_pairs()
    # A mode's drivers are its flagged pairs: the others its answers cite (a look-alike topic's
    # correct pairs, say) are not what taught it.
    flagged = set(run.flags(["flagged"], flagged_only=True)["pair_id"])
    drivers = drivers[(drivers["n_items"] >= 2) & drivers["pair_id"].isin(flagged)]
    members = run.clusters()
    items = run.items(["eval_id", "question", "reference", "system_prompt"]).set_index("eval_id")
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


def _decisions_digest(decisions: dict[str, Decision] | None) -> str | None:
    """What reviewed decisions an emission used, as a digest (they decide its outputs)."""
    if not decisions:
        return None
    payload = sorted((d.pair_id, d.action, d.new_answer or "") for d in decisions.values())
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


def _open_inputs(inputs: list[dict[str, Any]]) -> list[Source]:
    sources = []
    for entry in inputs:
        try:
            source = open_source(entry["path"])
        except InputError:
            raise RunDirError(f"{entry['path']}: training file of this run is gone") from None
        if source.format != entry["format"]:
            raise RunDirError(f"{entry['path']}: was read as {entry['format']} at collect, is "
                              f"{source.format} now; collect again before emitting")
        sources.append(source)
    return sources


def _refuse_inputs_as_outputs(sources: list[Source], paths: list[Path]) -> None:
    inputs = {s.root.resolve() for s in sources}
    for path in paths:
        resolved = path.resolve()
        if resolved in inputs or any(resolved in root.parents for root in inputs if root.is_dir()):
            raise ConfigError(f"{path} is an input; refine never overwrites its inputs", key="out")


def _split_path(shown: str) -> tuple[Path, str | None]:
    """A manifest's output path: a file or directory, or ``DIR:split`` for a split of one."""
    path = Path(shown)
    if not path.exists() and ":" in shown:
        head, _, split = shown.rpartition(":")
        if Path(head).is_dir():
            return Path(head), split
    return path, None


def _previous_manifest(manifest_path: Path) -> dict[str, Any] | None:
    """The manifest an earlier emission left at `manifest_path` (None: none, or unreadable)."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["run_dir"], manifest["outputs"], manifest["quarantine"]
        return manifest
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unchanged(entries: list[dict[str, Any]]) -> set[Path]:
    """The paths of manifest `entries` whose digests still match (every split of a dataset)."""
    from ...formats.sources import directory_digest

    matches: dict[Path, bool] = {}
    for entry in entries:
        path, split = _split_path(str(entry["path"]))
        part = path / split if split is not None else path
        if part.is_dir():
            same = directory_digest(part) == str(entry["sha256"])
        else:
            same = part.is_file() and sha256_file(part) == str(entry["sha256"])
        matches[path] = matches.get(path, True) and same
    return {path for path, same in matches.items() if same}


def _own_outputs(run: RunDir, manifest_path: Path) -> set[Path]:
    """What the last emission of this run directory wrote here and nobody changed since: the
    manifest at `manifest_path` when it names this run, and the outputs it lists whose
    digests still match."""
    manifest = _previous_manifest(manifest_path)
    if manifest is None or Path(manifest["run_dir"]).resolve() != run.path.resolve():
        return set()
    return {manifest_path} | _unchanged(manifest["outputs"] + manifest["quarantine"])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _refuse_existing(paths: dict[Path, bool], overwrite: bool, own: set[Path]) -> None:
    """Before anything is written: refuse to put a file where a directory is (or the other way
    round), and to replace anything that exists at `paths` (path → written as a directory)
    unless `overwrite`, or unless it is in `own`."""
    for path, as_directory in paths.items():
        if path.exists() and path.is_dir() != as_directory:
            what, other = ("a directory", "file") if path.is_dir() else ("a file", "directory")
            raise ConfigError(f"{path} is {what}, where emit would write a {other}; nothing was "
                              "written. Choose another --out (it is the refined file when it ends in "
                              "the training file's extension, else a directory)", key="out")
    existing = [str(p) for p in paths if (p.exists() or p.is_symlink()) and p not in own]
    if existing and not overwrite:
        them = "it" if len(existing) == 1 else "them"
        raise ConfigError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                          f"nothing was written. Choose another --out, or pass --overwrite "
                          f"(emit.overwrite: true in a recipe) to replace {them}", key="out")


def emit(run_dir: str | Path, out: str | Path, settings: EmitSettings | None = None, *,
         decisions: dict[str, Decision] | None = None, model: Any = None, overwrite: bool = False,
         replace_own: bool = False) -> EmitResult:
    """Write the refined dataset for a flagged run to `out`, its manifest, and quarantined
    pairs to their own output. `out` is the refined file itself when the run has one training
    file and `out` ends in its extension (manifest: ``<out stem>.manifest.json`` beside it);
    otherwise a directory holding one output per source under the source's name, and
    ``manifest.json``.

    `decisions` (e.g. from a review) override the automatic ones pair by pair. A path that
    exists is replaced only with `overwrite` (an input never), or with `replace_own` when the
    last emission of this run directory wrote it there and it is unchanged since (what
    `refine run` passes, so that a recipe runs again); otherwise a ConfigError names it before
    anything is written.
    """
    settings = settings or EmitSettings()
    mode, counterexamples = settings.mode, settings.counterexamples
    run = RunDir(run_dir)
    collected = run.collect_settings()
    flag_summary = run.flag_summary()
    inputs = collected["inputs"]["train"]
    sources = _open_inputs(inputs)
    out = Path(out)
    in_directory = _out_is_directory(sources, out)
    targets = _output_paths(sources, out, in_directory)
    several = len(inputs) > 1
    manifest_path = manifest_path_for(out, in_directory)
    quarantines = {spec: quarantine_path_for(t, in_directory) for spec, t in targets.items()}
    _refuse_inputs_as_outputs(sources, [*targets.values(), *quarantines.values(), manifest_path])
    as_directory = {targets[s.spec]: s.format == "hf_dataset" for s in sources}
    own = _own_outputs(run, manifest_path) if replace_own else set()
    _refuse_existing({**as_directory, manifest_path: False}, overwrite, own)
    chosen = automatic_decisions(run, mode, settings.edit, model)
    chosen.update(decisions or {})
    changes, indexed = _line_index(run, chosen)
    needs_quarantine = any(d.action == "quarantine" for d in chosen.values()) or mode == "quarantine"
    if needs_quarantine:
        _refuse_existing({quarantines[s.spec]: s.format == "hf_dataset" for s in sources}, overwrite, own)
    # The manifest being replaced may list quarantined pairs this emission sets aside no more
    # (an edit, then a prune to the same --out): they go with it, unless someone changed them.
    previous = _previous_manifest(manifest_path)
    writing = set(quarantines.values()) if needs_quarantine else set()
    stale = sorted(p for p in _unchanged(previous["quarantine"]) if p not in writing) if previous else []

    added: list[dict[str, Any]] = []
    if counterexamples:
        # A failure mode has lost its drivers when each was dropped, set aside or rewritten:
        # the retrained model may then lack the fact in other wordings, which the eval
        # references of that mode supply.
        changed = {p for p, d in chosen.items() if d.action in ("drop", "quarantine", "edit")}
        added = _counterexamples(run, changed, settings.max_counterexamples_per_mode)
    plans = [Plan(changes.get(e["path"], {}), indexed.get(e["path"], Positions()), e.get("layout"),
                  added if i == 0 else [], needs_quarantine) for i, e in enumerate(inputs)]

    written: dict[str, Written] = {}
    with run.stage("emit", {**asdict(settings), "out": str(out),
                            "decisions": _decisions_digest(decisions)}) as stage, AtomicGroup() as group:
        done_targets: set[Path] = set()
        for entry, source, plan in zip(inputs, sources, plans):
            target = targets[source.spec]
            quarantine = quarantines[source.spec] if needs_quarantine else None
            if source.format != "hf_dataset":
                written[entry["path"]] = write_refined(entry, source, plan, target, quarantine, group)
            elif target not in done_targets:
                members = [i for i, s in enumerate(sources) if targets[s.spec] == target]
                results = write_dataset_group([inputs[i] for i in members], [sources[i] for i in members],
                                              [plans[i] for i in members], target, quarantine, group)
                written.update({inputs[i]["path"]: w for i, w in zip(members, results)})
            done_targets.add(target)

        def shown(path: Path, source: Source) -> str:
            return f"{path}:{source.split}" if source.split is not None else str(path)

        log: list[dict[str, Any]] = []
        input_entries, output_entries, quarantine_outputs = [], [], []
        for entry, source in zip(inputs, sources):
            result, target = written[entry["path"]], targets[source.spec]
            log += result.log
            input_entries.append({"path": entry["path"], "sha256": entry["sha256"],
                                  "format": entry["format"], "records": result.records_in})
            output_entries.append({"path": shown(target, source), "source": entry["path"],
                                   "sha256": result.sha256, "records": result.records_out})
            if result.quarantine_sha256 is not None:
                quarantine_outputs.append({"path": shown(quarantines[source.spec], source),
                                           "source": entry["path"], "sha256": result.quarantine_sha256,
                                           "records": result.quarantined})
        by_action = {a: [c for c in log if c.get("action") == a] for a in ("drop", "quarantine", "edit", "keep")}
        manifest = {
            "tool": {"name": "refine", "version": __version__},
            "mode": mode,
            "run_dir": str(run.path),
            "settings": {"collect": collected, "flag": flag_summary["settings"],
                         "emit": asdict(settings)},
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
        manifest_text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        with group.open(manifest_path, "w", encoding="utf-8") as fh:
            fh.write(manifest_text)
        group.commit()
        for path in stale:
            _remove(path)
        if in_directory and (out / "quarantine").is_dir() and not any((out / "quarantine").iterdir()):
            (out / "quarantine").rmdir()
        for entry in output_entries + quarantine_outputs:
            stage.wrote_outside(entry["path"], entry["sha256"], records=entry["records"])
        stage.wrote_outside(manifest_path, hashlib.sha256(manifest_text.encode("utf-8")).hexdigest())
    s = manifest["summary"]
    outputs = list(dict.fromkeys(targets[src.spec] for src in sources))
    return EmitResult(outputs, manifest_path, s["records_in"], s["records_out"], s["removed"],
                      s["edited"], s["quarantined"], s["added"],
                      (quarantines[sources[0].spec] if not several else out / "quarantine")
                      if quarantine_outputs else None)
