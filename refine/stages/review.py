"""The review round trip: export flagged pairs to a spreadsheet, bring the decisions back.

``export`` writes one row per flagged pair: ids, file, line, question, answer, statistics,
failure modes, why it is flagged (its defect group, when it is a member of one), up to three
example bad answers, the suggested action (and answer, for an
edit), and empty ``action`` (keep / drop / edit / quarantine) and ``new_answer`` columns for
the reviewer. The file is UTF-8 with a byte-order mark (so spreadsheets detect the encoding),
every field quoted, newlines kept inside fields.

``apply`` validates the file against the run before anything is written — columns, encoding,
ids, actions, an edit without a new answer, and any change to a column the reviewer is not
meant to touch (each row carries a checksum of its exported content) — and names the CSV row
of the first problem. Rows left with an empty action take the suggested action; the manifest
says which decisions were automatic and which reviewed.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..core._atomic import atomic_open
from .emission.decisions import ACTIONS, Decision, automatic_decisions, flag_reason, flagged_table
from .emission import EmitResult, emit
from ..errors import InputError
from ..core.rundir import RunDir
from ..settings import EmitSettings

__all__ = ["REVIEW_COLUMNS", "ReviewExport", "apply_review", "export_review", "read_review",
           "review_apply", "review_export"]

READ_ONLY = ["pair_id", "file", "line", "file_id", "question", "answer", "n_bad", "n_good", "blame",
             "q_value", "failure_modes", "why_flagged", "bad_example_1", "bad_example_2", "bad_example_3",
             "suggested_action", "suggested_answer"]
REVIEW_COLUMNS = READ_ONLY + ["checksum", "action", "new_answer", "note"]


@dataclass(frozen=True)
class ReviewExport:
    path: Path
    rows: int


def _checksum(row: dict[str, str]) -> str:
    payload = "\x1f".join(str(row[c]) for c in READ_ONLY)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def export_review(run_dir: str | Path, out: str | Path, settings: EmitSettings | None = None, *,
                  model: Any = None) -> ReviewExport:
    """Write the review CSV for a flagged run; suggestions follow the emit settings' mode."""
    settings = settings or EmitSettings()
    run = RunDir(run_dir)
    flagged = flagged_table(run, with_modes=True)
    suggestions = automatic_decisions(run, settings.mode, settings.edit, model)
    items = run.items(["eval_id", "question", "answer", "verdict"]).set_index("eval_id")
    cites = run.attributions(["eval_id", "pair_id", "rank"], matched=True)
    cites = cites[cites["pair_id"].isin(flagged["pair_id"])]
    cites = cites[cites["eval_id"].map(items["verdict"]) == "bad"].sort_values(["pair_id", "rank", "eval_id"])
    examples = {p: [f"{items.at[e, 'question']} → {items.at[e, 'answer']}" for e in g["eval_id"][:3]]
                for p, g in cites.groupby("pair_id")}
    rows = []
    for record in flagged.to_dict("records"):
        decision = suggestions[record["pair_id"]]
        bad = examples.get(record["pair_id"], []) + ["", "", ""]
        row = {c: _as_text(record.get(c)) for c in READ_ONLY[:11]}
        row["why_flagged"] = flag_reason(record)
        row.update({"bad_example_1": bad[0], "bad_example_2": bad[1], "bad_example_3": bad[2],
                    "suggested_action": decision.action, "suggested_answer": decision.new_answer or ""})
        row["checksum"] = _checksum(row)
        row.update({"action": "", "new_answer": "", "note": decision.reason})
        rows.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REVIEW_COLUMNS, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
    with run.stage("review", {**asdict(settings), "out": str(out)}) as stage:
        with atomic_open(out, "w", encoding="utf-8-sig") as fh:
            fh.write(text)
        stage.wrote_outside(out, hashlib.sha256(("\ufeff" + text).encode("utf-8")).hexdigest(),
                            rows=len(rows))
    return ReviewExport(Path(out), len(rows))


def read_review(run_dir: str | Path, path: str | Path, settings: EmitSettings | None = None, *,
                model: Any = None) -> dict[str, Decision]:
    """Validate a filled-in review CSV against the run; return its decisions by pair id."""
    settings = settings or EmitSettings()
    run = RunDir(run_dir)
    # The run first: a sheet is judged against its flags, and a mistyped run directory is the
    # first thing to say.
    flagged = set(flagged_table(run)["pair_id"])
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError("no such file", file=name) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"is not UTF-8 (byte {exc.start + 1}); save the sheet as 'CSV UTF-8'",
                         file=name) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in REVIEW_COLUMNS if c not in header]
    extra = [c for c in header if c not in REVIEW_COLUMNS]
    if missing or extra:
        detail = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                         f"unexpected {', '.join(extra)}" if extra else ""]))
        raise InputError(f"wrong columns ({detail}); export a fresh file with `refine review export`",
                         file=name, line=1)
    automatic = None
    decisions: dict[str, Decision] = {}
    for number, row in enumerate(reader, start=2):
        where = {"file": name, "line": number}
        pair_id = (row["pair_id"] or "").strip()
        if pair_id not in flagged:
            raise InputError(f"unknown pair_id {pair_id!r}: not a flagged pair of {run.path}",
                             field="pair_id", **where)
        if pair_id in decisions:
            raise InputError(f"pair_id {pair_id!r} appears twice", field="pair_id", **where)
        if _checksum(row) != row["checksum"]:
            raise InputError("a column that was exported read-only was changed (only action, "
                             "new_answer and note are for the reviewer)", field="checksum", **where)
        action = (row["action"] or "").strip().lower()
        if action and action not in ACTIONS:
            raise InputError(f"is {row['action']!r}; expected one of {', '.join(ACTIONS)} or empty",
                             field="action", **where)
        new_answer = (row["new_answer"] or "").strip()
        if action == "edit" and not new_answer and not row["suggested_answer"].strip():
            raise InputError("action is edit but there is no new_answer (and no suggested answer)",
                             field="new_answer", **where)
        if new_answer and action not in ("edit", ""):
            raise InputError(f"new_answer is given but action is {action!r}", field="new_answer", **where)
        if not action and not new_answer:
            continue  # left to the automatic decision
        if automatic is None:
            automatic = automatic_decisions(run, settings.mode, settings.edit, model)
        base = automatic[pair_id]
        action = action or "edit"
        answer = (new_answer or row["suggested_answer"].strip()) if action == "edit" else None
        note = (row["note"] or "").strip()
        decisions[pair_id] = Decision(pair_id, action, "reviewed",
                                      f"reviewed: {action}" + (f" ({note})" if note and note != base.reason else ""),
                                      answer, base.stats)
    return decisions


def apply_review(run_dir: str | Path, review_csv: str | Path, out: str | Path,
                 settings: EmitSettings | None = None, *, model: Any = None,
                 overwrite: bool = False) -> EmitResult:
    """Emit with the reviewed decisions; rows left empty take the automatic decision of the
    settings' mode. `out` and `overwrite` as for :func:`refine.stages.emission.emit`: what exists is
    replaced only with `overwrite`."""
    decisions = read_review(run_dir, review_csv, settings, model=model)
    return emit(run_dir, out, settings, decisions=decisions, model=model, overwrite=overwrite)


# The names of the `refine review` verbs, as the package exports them (refine.review_export).
review_export = export_review
review_apply = apply_review
