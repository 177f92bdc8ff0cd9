"""Every file a run directory holds, the stage that makes it, and how stages follow each other.

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

The records are kept, and the chain checked, by :class:`refine.core.rundir.RunDir`; this module
is the table they follow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunDirError

if TYPE_CHECKING:
    from .rundir import RunDir

__all__ = ["ATTRIBUTIONS", "CLAIMS", "CLAIM_LINKS", "CLUSTERS", "CLUSTERS_CSV", "CLUSTER_PAIRS", "EVIDENCE",
           "FLAGS_CSV", "FLAGS_JSON", "FLAG_MODES", "ITEMS", "JOURNAL", "OTHER_FILES", "OUTCOME_JSON", "PAIRS",
           "PROVENANCE", "REPORT_HTML", "REPORT_MD", "SETTINGS", "STAGES", "STAGES_DIR", "THEMES_CSV", "Stage",
           "StageWriter", "downstream", "record_digest"]

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
OTHER_FILES = (JOURNAL,)


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


def record_digest(body: dict[str, Any]) -> str:
    """The sha256 of a stage record's body (settings, outputs, external files) as canonical JSON:
    what a downstream stage records it read."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


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
