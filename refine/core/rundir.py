"""The run directory on disk: its files, the records of the stages that made them, and the
typed readers of its tables.

Which file each stage writes, and the lineage rules the records follow, are
:mod:`refine.core.lineage`'s table; :class:`RunDir` keeps them: it starts and finishes a stage
(:meth:`RunDir.stage`), tells whether a stage's outputs can still be used (:meth:`RunDir.current`,
naming the stage to run again when not), and holds the one place the tables are read (`items`,
`attributions`, `pairs`, `flags`, …).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .._version import __version__
from ..errors import RunDirError
from ..formats.records import Attribution
from ._atomic import sha256_file, write_json
from .journal import JournalWriter, read_journal
from .lineage import (ATTRIBUTIONS, CLAIM_LINKS, CLAIMS, CLUSTER_PAIRS, CLUSTERS, CLUSTERS_CSV, EVIDENCE,
                      FLAG_MODES, FLAGS_CSV, FLAGS_JSON, ITEMS, JOURNAL, OTHER_FILES, OUTCOME_JSON, PAIRS,
                      PROVENANCE, REPORT_HTML, REPORT_MD, SETTINGS, STAGES, STAGES_DIR, THEMES_CSV, Stage,
                      StageWriter, downstream, record_digest)

if TYPE_CHECKING:
    import pandas as pd

    from ..settings import FlagSettings

# The file names and the stage table are re-exported: code reads them from here too.
__all__ = ["ATTRIBUTIONS", "CLAIMS", "CLAIM_LINKS", "CLUSTERS", "CLUSTERS_CSV", "CLUSTER_PAIRS", "EVIDENCE",
           "FLAGS_CSV", "FLAGS_JSON", "FLAG_MODES", "ITEMS", "JOURNAL", "OUTCOME_JSON", "PAIRS", "PROVENANCE",
           "REPORT_HTML", "REPORT_MD", "SETTINGS", "STAGES", "THEMES_CSV", "RunDir", "SettingsChangedError",
           "Stage", "StageWriter", "downstream", "first_rows_sql"]


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
        for name in OTHER_FILES:
            self.file(name).unlink(missing_ok=True)
        for extra in self.path.glob(".*.tmp"):
            extra.unlink(missing_ok=True)

    def write_settings(self, settings: dict[str, Any], provenance: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.file(SETTINGS), settings)
        write_json(self.file(PROVENANCE), provenance)

    def read_journal(self) -> dict[str, Attribution]:
        """The latest record per eval id. A torn last line (a crash mid-write) is cut off."""
        return read_journal(self.file(JOURNAL))

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
        record = {"stage": name, "tool": __version__, "inputs": inputs, **body, "digest": record_digest(body)}
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
