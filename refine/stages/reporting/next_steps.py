"""What the report says to run next: plans to pick from, each a list of commands in order."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

from ...core.rundir import RunDir

GATE = "recipes/pre-retrain-gate.yaml"   # the shipped gate, relative to a checkout's root


def _exists(shown: str) -> bool:
    """Whether a manifest's output path is there: a file or directory, or ``DIR:split``."""
    head, sep, _ = shown.rpartition(":")
    return Path(shown).exists() or bool(sep and head and Path(head).is_dir())


def _emitted(run: RunDir) -> dict[str, Any] | None:
    """What emit wrote from the current flags, read from its own manifest (the emit record
    names it and its digest), or None: emit has not run on these flags, or its manifest or an
    output it lists is gone or changed."""
    if not run.is_current("emit"):
        return None
    record = run.record("emit")
    for path, meta in record["external"].items():  # type: ignore[index]
        if "records" in meta or not path.endswith("manifest.json"):
            continue  # a data or quarantine output; the manifest carries no record count
        try:
            text = Path(path).read_bytes()
            manifest = json.loads(text)
        except (OSError, ValueError):
            return None
        if hashlib.sha256(text).hexdigest() != meta.get("sha256") or not isinstance(manifest, dict):
            return None
        outputs = [{"path": str(o["path"]), "records": o["records"]} for o in manifest["outputs"]]
        quarantine = [{"path": str(o["path"]), "records": o["records"]} for o in manifest.get("quarantine", [])]
        if not all(_exists(o["path"]) for o in outputs + quarantine):
            return None
        return {"mode": manifest["mode"], "counterexamples": record["settings"].get("counterexamples", False),
                "out": record["settings"]["out"], "manifest": path, "outputs": outputs,
                "quarantine": quarantine, "summary": manifest["summary"]}
    return None


def what_next(run: RunDir, collected: dict[str, Any], has_modes: bool) -> dict[str, Any]:
    """What to run next, as plans to pick from, each a list of steps run in order: a step is
    what it does and its command (None for one that is not a refine command, e.g. retraining).

    When emit ran on the current flags, the first plan gates exactly the files its manifest
    lists, then retrains; the other plans are the emits not yet run (the same emit is not
    offered again) and the review round trip. An emit or review apply whose output exists
    carries ``--overwrite``."""
    quote = shlex.quote
    path = quote(str(run.path))
    train = " ".join(f"--baseline {quote(e['path'])}" for e in collected["inputs"]["train"])
    eval_path = quote(collected["inputs"]["eval"]["path"])
    emitted = _emitted(run)
    out = emitted["out"] if emitted else str(run.path / "refined")
    overwrite = " --overwrite" if Path(out).exists() else ""
    written = {"what": "Then write this report again: it lists the files written and the command "
                       "that checks exactly those", "command": f"refine report {path}"}
    plans = []
    if not has_modes:
        plans.append({"title": "Group the bad answers into failure modes", "steps": [
            {"what": "Cluster the bad answers", "command": f"refine cluster {path}"},
            {"what": "Then write this report again: it shows the failure modes", "command": f"refine report {path}"}]})
    if emitted:
        files = [o["path"] for o in emitted["outputs"]]
        plans.append({"title": "Gate the refined data, then retrain on it", "steps": [
            {"what": "Check exactly the refined files the manifest lists (exit 1 when an error-level "
                     "check fails)",
             "command": f"refine check {' '.join(quote(f) for f in files)} {train} --flags {path} "
                        f"--eval {eval_path} --config {GATE}"},
            {"what": "When it passes, fine-tune on " + ", ".join(files) + " in place of the original data",
             "command": None}]})
    for mode, title in (("prune", "Drop every flagged pair; kept records are copied unchanged"),
                        ("edit", "Fix flagged answers from agreeing eval references (others set aside "
                                 "for review)")):
        if emitted and emitted["mode"] == mode:
            continue
        flags = (f" --mode {mode}" if mode != "prune" else "") + overwrite
        plans.append({"title": title, "steps": [
            {"what": "Write the refined data and its manifest",
             "command": f"refine emit {path} --out {quote(out)}{flags}"},
            written]})
    # A sheet exported from these flags may hold decisions already: it is not exported over.
    review = run.record("review") if run.is_current("review") else None
    exported = review is not None and Path(review["settings"]["out"]).is_file()
    sheet = review["settings"]["out"] if exported else str(run.path / "review.csv")  # type: ignore[index]
    export = [] if exported else [
        {"what": "Export one row per flagged pair, with the suggested action, to a sheet",
         "command": f"refine review export {path} --out {quote(sheet)}"}]
    plans.append({"title": "Decide pair by pair in a spreadsheet", "steps": export + [
        {"what": f"Open {sheet}{' (exported earlier)' if exported else ''} and fill in the "
                 "action column (keep, drop, edit or quarantine; a row left empty takes the "
                 "suggested action), and new_answer for an edit; save it as CSV UTF-8. Then apply it",
         "command": f"refine review apply {path} {quote(sheet)} --out {quote(out)}{overwrite}"},
        written]})
    # The emits and the review are alternatives to each other, and to what was emitted.
    choices = [p for p in plans if p["steps"][0]["command"].startswith(("refine emit", "refine review"))]
    for plan in plans:
        plan["alternative"] = any(plan is c for c in choices) and (bool(emitted) or plan is not choices[0])
    return {"emitted": emitted, "plans": plans}
