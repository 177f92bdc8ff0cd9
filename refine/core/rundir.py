"""The run directory: every file a run holds, which stage made it, and from what.

::

    RUN/
      settings.json, provenance.json      collect: what decides the results; tool versions
      pairs.parquet                       collect: the pair index (pair_id, file, line, file_id, …)
      journal.jsonl                       collect: one line per finished eval item (the resume point)
      items.parquet, attributions.parquet collect: per eval item; per (item, influential pair)
      evidence.parquet, claims.parquet,   collect: text evidence (refine.stages.flagging.evidence): per (item, pair,
      claim_links.parquet                 sentence) scores, the sentences, same-claim links
      flags.csv, flags.json               flag
      clusters.parquet, clusters.csv,     cluster: failure modes, their driving pairs, themes of
      cluster_pairs.parquet, themes.csv,  flagged pairs, and each cited pair's modes and theme
      flag_modes.parquet                  (flag_modes is joined to flags by `flags(with_modes=True)`)
      report.html, report.md              report
      outcome.json                        outcome: a retrained run against the run before it
      stages/<stage>.json                 one record per stage that finished

Lineage works as DVC's lock file does, one small record per stage: the stage's settings, the
digests of the stages it read (``inputs``), and the sha256 and size of each file it wrote
(``outputs``; emit and review write outside RUN and list those files as ``external``). A
record is removed when its stage starts and written when it ends, so a crashed stage leaves
no record. Reading a stage's output checks the chain: the record must exist, its files must
have the recorded sizes, and every stage it read must still be the one it read. Otherwise
the error names the stage to run again. When a stage finishes with a different digest than
before, every stage downstream of it is removed, so a report, flags or an emitted dataset
never mix two runs. No stage writes another stage's file.

The typed readers here (`items`, `attributions`, `pairs`, `flags`, …) are the one place the
tables are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ._atomic import sha256_file, write_json
from .._version import __version__
from ..errors import RunDirError
from ..formats.records import Attribution

if TYPE_CHECKING:
    import pandas as pd

    from ..settings import FlagSettings

__all__ = ["STAGES", "RunDir", "SettingsChangedError", "Stage", "StageWriter"]

SETTINGS = "settings.json"
PROVENANCE = "provenance.json"
PAIRS = "pairs.parquet"
JOURNAL = "journal.jsonl"
ITEMS = "items.parquet"
ATTRIBUTIONS = "attributions.parquet"
EVIDENCE = "evidence.parquet"
CLAIMS = "claims.parquet"
CLAIM_LINKS = "claim_links.parquet"
FLAGS_CSV = "flags.csv"
FLAGS_JSON = "flags.json"
CLUSTERS = "clusters.parquet"
CLUSTERS_CSV = "clusters.csv"
CLUSTER_PAIRS = "cluster_pairs.parquet"
THEMES_CSV = "themes.csv"
FLAG_MODES = "flag_modes.parquet"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
OUTCOME_JSON = "outcome.json"
STAGES_DIR = "stages"


@dataclass(frozen=True)
class Stage:
    name: str
    outputs: tuple[str, ...]       # files in RUN this stage writes (and nothing else)
    needs: tuple[str, ...]         # stages it reads, which must be current
    uses: tuple[str, ...] = ()     # stages it reads when they are there and current
    command: str = ""              # what to run to make it again


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("collect", (SETTINGS, PROVENANCE, PAIRS, ITEMS, ATTRIBUTIONS, EVIDENCE, CLAIMS, CLAIM_LINKS), (), (),
          "refine collect"),
    Stage("flag", (FLAGS_CSV, FLAGS_JSON), ("collect",), (), "refine flag"),
    Stage("cluster", (CLUSTERS, CLUSTERS_CSV, CLUSTER_PAIRS, THEMES_CSV, FLAG_MODES),
          ("collect", "flag"), (), "refine cluster"),
    Stage("emit", (), ("collect", "flag"), ("cluster",), "refine emit"),
    Stage("review", (), ("collect", "flag"), ("cluster",), "refine review export"),
    Stage("outcome", (OUTCOME_JSON,), ("collect",), (), "refine outcome"),
    Stage("report", (REPORT_HTML, REPORT_MD), ("collect", "flag"), ("cluster", "emit", "outcome"), "refine report"),
)}
# Files refine keeps in RUN besides the stage outputs: the journal (collect's resume point).
_OTHER = (JOURNAL,)


def downstream(name: str) -> list[str]:
    """Every stage that reads `name`, directly or not, in the order they run."""
    found: list[str] = []
    for stage in STAGES.values():
        if stage.name in found or stage.name == name:
            continue
        reads = set(stage.needs) | set(stage.uses)
        if name in reads or reads & set(found):
            found.append(stage.name)
    return found


class SettingsChangedError(RunDirError):
    """A run directory holds a collection made with other settings."""

    def __init__(self, path: Path, changed: list[str], advice: str = "use another run directory or --overwrite") -> None:
        self.path, self.changed = path, changed
        super().__init__(f"{path}: was collected with other settings (changed: "
                         f"{', '.join(changed) or '(format)'}); {advice}")


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class JournalWriter:
    """Appends finished records to the journal.

    Each record is handed to the operating system (flushed) before `append` returns, so a
    killed process loses nothing it acknowledged; an fsync at most every `sync_every`
    seconds, and on close, also covers a power cut without costing a disk flush per item.
    """

    def __init__(self, path: Path, sync_every: float = 1.0) -> None:
        self._fh = open(path, "ab")
        self._sync_every = sync_every
        self._last_sync = time.monotonic()

    def append(self, record: Attribution) -> None:
        self._fh.write(json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False)
                       .encode("utf-8") + b"\n")
        self._fh.flush()
        if time.monotonic() - self._last_sync >= self._sync_every:
            self.sync()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_FLAG_CHUNK = 50_000      # rows of flags.csv read at a time for the flagged rows alone


def _truthy(column: "pd.Series") -> "pd.Series":
    return column.astype(str).str.lower().isin(["true", "1", "yes"])


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as they decide results: input files by content (sha256), not by the path
    they were reached through, so the same run resumes from another working directory."""
    inputs = settings.get("inputs", {})
    strip = lambda entry: {k: v for k, v in entry.items() if k != "path"}  # noqa: E731
    return {**settings, "inputs": {
        **inputs,
        "train": [strip(e) for e in inputs.get("train", [])],
        "eval": strip(inputs.get("eval", {})),
    }}


def first_rows_sql(pairs: str, select: str, join: str = "") -> str:
    """SQL for the first row (in file order) of each pair of the pairs.parquet at `pairs` (a
    quoted path): what "a pair's file, line and texts" means wherever several rows hold it."""
    return f"""
        SELECT {select} FROM read_parquet({pairs}, file_row_number = true) {join}
        QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY file_row_number) = 1"""


class StageWriter:
    """What a running stage may write: its own files in RUN, and files outside it it declares."""

    def __init__(self, run: "RunDir", stage: Stage) -> None:
        self.run, self.stage = run, stage
        self.external: dict[str, dict[str, Any]] = {}

    def path(self, name: str) -> Path:
        if name not in self.stage.outputs:
            raise RunDirError(f"stage {self.stage.name!r} does not own {name}")  # a bug, not a user error
        return self.run.file(name)

    def wrote_outside(self, path: str | Path, sha256: str, **info: Any) -> None:
        """Record an output written outside RUN (emit's dataset, review's CSV)."""
        self.external[str(path)] = {"sha256": sha256, **info}


class RunDir:
    """A run directory on disk: its files, its stage records and typed readers of its tables."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # --- collect's settings and the journal ----------------------------------------------------
    def require(self) -> None:
        """A RunDirError unless the run directory is there: saying it does not exist, or is a file
        (what a reader checks first, so that a mistyped path is not called an unfinished run)."""
        if not self.path.exists():
            raise RunDirError(f"{self.path}: run directory does not exist "
                              f"(`refine collect --out {self.path}` makes one)")
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: is a file, not a run directory")

    def _not_a_run(self) -> RunDirError:
        return RunDirError(f"{self.path}: not a refine run directory (no {SETTINGS}); "
                           "run `refine collect` first")

    def settings(self) -> dict[str, Any]:
        self.require()
        path = self.file(SETTINGS)
        if not path.is_file():
            raise self._not_a_run()
        return json.loads(path.read_text(encoding="utf-8"))

    def prepare_for(self, settings: dict[str, Any], *, overwrite: bool) -> bool:
        """Make the directory ready for a collection with `settings`.

        Returns True when it resumes an earlier collection with the same settings. Starting
        afresh removes everything refine wrote here, every stage's files included.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory")
        existing = self.file(SETTINGS)
        if existing.is_file():
            old = json.loads(existing.read_text(encoding="utf-8"))
            if _comparable(old) == _comparable(settings):
                return True
            if not overwrite:
                raise SettingsChangedError(self.path, _diff(_comparable(old), _comparable(settings)))
            self.clear()
        elif self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
            raise RunDirError(f"{self.path}: exists, is not empty and is not a refine run directory; "
                              "use another run directory or --overwrite")
        elif overwrite and self.path.is_dir():
            self.clear()
        return False

    def clear(self) -> None:
        """Remove what refine wrote here (and nothing else)."""
        for stage in STAGES.values():
            self._remove_stage(stage.name)
        for name in _OTHER:
            self.file(name).unlink(missing_ok=True)
        for extra in self.path.glob(".*.tmp"):
            extra.unlink(missing_ok=True)

    def write_settings(self, settings: dict[str, Any], provenance: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.file(SETTINGS), settings)
        write_json(self.file(PROVENANCE), provenance)

    def read_journal(self) -> dict[str, Attribution]:
        """The latest record per eval id. A torn last line (a crash mid-write) is cut off."""
        path = self.file(JOURNAL)
        records: dict[str, Attribution] = {}
        if not path.is_file():
            return records
        good_bytes = 0
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                try:
                    record = Attribution.from_json(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    break
                records[record.eval_id] = record
                good_bytes += len(raw)
        if good_bytes != path.stat().st_size:
            with open(path, "r+b") as fh:
                fh.truncate(good_bytes)
        return records

    def journal_writer(self) -> JournalWriter:
        self.path.mkdir(parents=True, exist_ok=True)
        return JournalWriter(self.file(JOURNAL))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # --- stage records ------------------------------------------------------------------------
    def _record_path(self, name: str) -> Path:
        return self.path / STAGES_DIR / f"{name}.json"

    def record(self, name: str) -> dict[str, Any] | None:
        """The record of stage `name`, or None when it has not finished here."""
        path = self._record_path(name)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("stage") == name else None

    def _staleness(self, name: str, _seen: frozenset[str] = frozenset()) -> tuple[str, str] | None:
        """(why stage `name`'s outputs cannot be used, the earliest stage to run again), or None."""
        stage = STAGES[name]
        record = self.record(name)
        if record is None:
            return f"`{stage.command}` has not run here (since an earlier stage last changed)", name
        for file, meta in record.get("outputs", {}).items():
            path = self.file(file)
            if not path.is_file():
                return f"{file} is missing", name
            if path.stat().st_size != meta.get("bytes"):
                return f"{file} was changed after `{stage.command}` wrote it", name
        for upstream, digest in record.get("inputs", {}).items():
            if upstream in _seen:
                continue
            now = self.record(upstream)
            if digest is None:
                # A stage it could have used was not there then: if one is now, this is stale.
                if now is not None and upstream in stage.uses:
                    return f"`{STAGES[upstream].command}` ran after it", name
                continue
            deeper = self._staleness(upstream, _seen | {name})
            if deeper is not None:
                return deeper
            if now is None or now.get("digest") != digest:
                return f"it was made from an earlier `{STAGES[upstream].command}`", name
        return None

    def stale_reason(self, name: str) -> str | None:
        """Why stage `name`'s outputs cannot be used (None: they are current)."""
        found = self._staleness(name)
        return None if found is None else found[0]

    def current(self, name: str) -> dict[str, Any]:
        """The record of stage `name` if its outputs can be used, else a RunDirError naming
        the stage to run again."""
        self.require()
        if self.record("collect") is None and not self.file(SETTINGS).is_file():
            raise self._not_a_run()
        found = self._staleness(name)
        if found is None:
            return self.record(name)  # type: ignore[return-value]
        reason, culprit = found
        command = STAGES[culprit].command
        then = f" (and then `{STAGES[name].command}`)" if culprit != name else ""
        if culprit == "collect" and not self.file(SETTINGS).is_file():
            raise self._not_a_run()
        if self.record(culprit) is None:
            made = ", ".join(STAGES[culprit].outputs) or f"no {culprit} record"
            raise RunDirError(f"{self.path}: {made} missing (the {culprit} stage has not run since the "
                              f"run directory was made or an earlier stage changed); run `{command}` first"
                              + then)
        raise RunDirError(f"{self.path}: the {name} stage's outputs cannot be used: {reason}; "
                          f"run `{command}` again" + then)

    def is_current(self, name: str) -> bool:
        return self.stale_reason(name) is None

    def _remove_stage(self, name: str) -> None:
        self._record_path(name).unlink(missing_ok=True)
        for file in STAGES[name].outputs:
            self.file(file).unlink(missing_ok=True)

    @contextlib.contextmanager
    def stage(self, name: str, settings: dict[str, Any]) -> Iterator[StageWriter]:
        """Run stage `name`: its needs must be current; its old record goes first; on success
        its new record is written and, when its digest changed, every stage downstream of it
        is removed."""
        stage = STAGES[name]
        for need in stage.needs:
            self.current(need)
        inputs = {need: self.record(need)["digest"] for need in stage.needs}   # type: ignore[index]
        inputs.update({use: self.record(use)["digest"] if self.is_current(use) else None
                       for use in stage.uses})
        before = self.record(name)
        self.path.mkdir(parents=True, exist_ok=True)
        self._record_path(name).unlink(missing_ok=True)
        writer = StageWriter(self, stage)
        yield writer
        outputs = {}
        for file in stage.outputs:
            path = self.file(file)
            if path.is_file():
                outputs[file] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        body = {"settings": settings, "outputs": outputs, "external": writer.external}
        record = {"stage": name, "tool": __version__, "inputs": inputs, **body,
                  "digest": hashlib.sha256(_canonical(body)).hexdigest()}
        if before is None or before.get("digest") != record["digest"]:
            for later in downstream(name):
                self._remove_stage(later)
        write_json(self._record_path(name), record)

    # --- typed readers --------------------------------------------------------------------------
    def _parquet(self, stage: str, name: str, columns: list[str] | None) -> "pd.DataFrame":
        import pandas as pd

        self.current(stage)
        return pd.read_parquet(self.file(name), columns=columns)

    def collect_settings(self) -> dict[str, Any]:
        """settings.json of a finished collection."""
        self.current("collect")
        return self.settings()

    def items(self, columns: list[str] | None = None, *, done: bool = False) -> "pd.DataFrame":
        """items.parquet: one row per eval item (`done`: finished ones only)."""
        wanted = None if columns is None else list(dict.fromkeys([*columns, *(["status"] if done else [])]))
        table = self._parquet("collect", ITEMS, wanted)
        if done:
            table = table[table["status"] == "done"]
            if columns is not None and "status" not in columns:
                table = table.drop(columns="status")
        return table

    def attributions(self, columns: list[str] | None = None, *, matched: bool = False) -> "pd.DataFrame":
        """attributions.parquet (`matched`: only citations of a local pair)."""
        wanted = None if columns is None else list(dict.fromkeys([*columns, *(["pair_id"] if matched else [])]))
        table = self._parquet("collect", ATTRIBUTIONS, wanted)
        return table[table["pair_id"].notna()] if matched else table

    def pairs(self, columns: list[str] | None = None, *, unique: bool = False) -> "pd.DataFrame":
        """pairs.parquet: one row per training record (`unique`: the first row per pair_id)."""
        table = self._parquet("collect", PAIRS, columns)
        return table.drop_duplicates("pair_id") if unique else table

    def first_rows(self, pair_ids: list[str], columns: list[str]) -> "pd.DataFrame":
        """`columns` of the first row of each of `pair_ids` in pairs.parquet, indexed by pair_id:
        read by DuckDB, so that the rest of pairs.parquet (10⁷ pairs' texts) is never loaded."""
        import pandas as pd

        from ._duckdb import connect, quoted

        self.current("collect")
        chosen = ", ".join(f'"{c}"' for c in columns)
        with connect() as con:
            con.register("wanted", pd.DataFrame({"pair_id": pd.Series(pair_ids, dtype=object)}))
            return con.sql(first_rows_sql(quoted(str(self.file(PAIRS))), f"pair_id, {chosen}",
                                          "SEMI JOIN wanted USING (pair_id)")).df().set_index("pair_id")

    def flag_summary(self) -> dict[str, Any]:
        self.current("flag")
        return json.loads(self.file(FLAGS_JSON).read_text(encoding="utf-8"))

    def flag_settings(self) -> "FlagSettings":
        """The settings the current flags were made with (level weights included)."""
        from ..settings import FlagSettings

        return FlagSettings(**self.current("flag")["settings"])

    def flags(self, columns: list[str] | None = None, *, with_modes: bool = False,
              flagged_only: bool = False) -> "pd.DataFrame":
        """flags.csv (pair ids kept as text); `with_modes` joins the current cluster stage's
        failure modes, theme and multi-mode call-out (empty when it has not run);
        `flagged_only` reads the flagged rows alone, which come first (a file of millions of
        rows is read only as far as they go)."""
        import pandas as pd

        self.current("flag")
        wanted = None if columns is None else (lambda c: c in set(columns) | {"pair_id", "flagged"})
        # Texts stay texts (a question "42" is not a number) and lines whole numbers in every
        # chunk, whatever else a chunk holds.
        options = dict(dtype={"pair_id": str, "file": str, "file_id": str, "question": str, "answer": str,
                              "claim": str, "evidence_via": str,
                              "flagged_by": str, "line": "Int64"},
                       keep_default_na=False, na_values=[""], usecols=wanted)
        path = self.file(FLAGS_CSV)
        if flagged_only:
            parts = []
            with pd.read_csv(path, chunksize=_FLAG_CHUNK, **options) as chunks:
                for chunk in chunks:
                    self._check_flag_columns(chunk)
                    chunk["flagged"] = _truthy(chunk["flagged"])
                    parts.append(chunk[chunk["flagged"]])
                    if not chunk["flagged"].all():
                        break
            table = pd.concat(parts, ignore_index=True) if parts else pd.read_csv(path, nrows=0, **options)
        else:
            table = pd.read_csv(path, **options)
            self._check_flag_columns(table)
            table["flagged"] = _truthy(table["flagged"])
        if with_modes:
            modes = (self._parquet("cluster", FLAG_MODES, None) if self.is_current("cluster")
                     else pd.DataFrame({"pair_id": pd.Series(dtype=str)}))
            table = table.merge(modes, on="pair_id", how="left")
            for column, empty in (("failure_modes", ""), ("theme", ""), ("multi_mode", False)):
                table[column] = table[column].fillna(empty) if column in table else empty
            table["multi_mode"] = table["multi_mode"].astype(bool)
        return table

    def _check_flag_columns(self, table: "pd.DataFrame") -> None:
        if "flagged" not in table.columns or "pair_id" not in table.columns:
            raise RunDirError(f"{self.file(FLAGS_CSV)}: needs 'pair_id' and 'flagged' columns")

    def clusters(self) -> "pd.DataFrame":
        """clusters.parquet: eval_id, cluster (-1: unclustered), label of each bad answer."""
        return self._parquet("cluster", CLUSTERS, None)

    def cluster_pairs(self) -> "pd.DataFrame":
        """cluster_pairs.parquet: blame of each pair within each failure mode."""
        return self._parquet("cluster", CLUSTER_PAIRS, None)

    def modes(self) -> "pd.DataFrame":
        """clusters.csv: one row per failure mode (the unclustered row left out)."""
        import pandas as pd

        self.current("cluster")
        table = pd.read_csv(self.file(CLUSTERS_CSV), keep_default_na=False)
        return table[table["cluster"].astype(int) >= 0].reset_index(drop=True)

    def outcome(self) -> dict[str, Any]:
        """outcome.json: this retrained run against the run before it (:mod:`refine.stages.outcomes`,
        whose `read_outcome` also checks the runs it was made from)."""
        self.current("outcome")
        return json.loads(self.file(OUTCOME_JSON).read_text(encoding="utf-8"))

    def themes(self) -> "pd.DataFrame":
        import pandas as pd

        self.current("cluster")
        return pd.read_csv(self.file(THEMES_CSV), keep_default_na=False)
