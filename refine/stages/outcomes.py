"""`outcome`: did it work? The retrained model's run (AFTER) against the run whose flags led
to the refined set (BEFORE), over the same eval set.

Figures, written to ``AFTER/outcome.json`` (the outcome stage's one output; its record names
the BEFORE and control runs with the digests of their items):

* overall: bad answers before and after and their rates; ``fixed`` (bad before, good after),
  ``still_bad``, ``newly_bad`` (good before, bad after: the regressions, each listed with its
  question and both answers) and ``newly_bad_share`` of the eval items;
* ``by_mode``: per failure mode of BEFORE (its ``refine cluster``; -1: the unclustered bad
  answers), its bad answers before, fixed and still bad;
* ``by_pair``: per pair BEFORE flagged, the bad answers before that cite it, fixed and still bad.

**Retraining noise.** A model retrained on the *unmodified* set answers some items
differently too, so "24 fixed" alone says little. Control runs — models retrained on the
unmodified set (or with as many random pairs removed), at the same seeds, answering the same
eval set — give a test, paired over eval items:

*Null hypothesis*: on every eval item, AFTER's verdict is exchangeable with the K controls'
verdicts of that item (as far as that item goes, AFTER is one more retrain that the
refinement did not change), independently across items.

Given how many of the K + 1 runs answered item i badly (b_i), AFTER is then bad on it with
probability b_i / (K + 1), so the number S of AFTER's bad answers in a group of items is a
sum of independent Bernoulli(b_i / (K + 1)): a Poisson-binomial distribution, computed
exactly (nothing is sampled, so there is no seed and the same runs give the same p-values).
Items on which all K + 1 runs agree carry no information. With one control this is McNemar's
exact test (a binomial test with p = 1/2 on the discordant items). The p-value is two-sided
(twice the smaller tail, capped at 1): the chance, under the null, of a count of AFTER's bad
answers at least this far out in either tail; under the null P(p ≤ α) ≤ α. Groups tested:
all items (``overall``), the items good before (``good_before``: are the regressions more than
retraining churn?), and each failure mode, with Benjamini–Hochberg over the modes (disjoint
item sets, so independent tests under the null: the false-discovery rate among the modes
called beyond noise is at most ``alpha``). A group *exceeds noise* when its p (``overall``,
``good_before``) or q (a mode) is ≤ ``alpha``.

What it does not cover: the items are the units, so noise that moves a whole run at once (a
seed that is worse everywhere) counts only as far as the controls show it. Use controls at
AFTER's seeds, more than one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core._atomic import write_json
from ..errors import RunDirError
from ..core.lineage import ATTRIBUTIONS, ITEMS, OUTCOME_JSON
from ..core.rundir import RunDir
from ..settings import OutcomeSettings

__all__ = ["OutcomeResult", "OutcomeSettings", "outcome", "read_outcome"]

TEST = ("exact conditional permutation test over eval items (McNemar's exact test with one "
        "control), two-sided")
_IDS_SHOWN = 5


@dataclass(frozen=True)
class OutcomeResult:
    """What `outcome` counted (``figures``: the object written to ``path``)."""

    run_dir: Path
    path: Path
    figures: dict[str, Any]

    @property
    def fixed(self) -> int:
        return int(self.figures["fixed"])

    @property
    def newly_bad(self) -> int:
        return int(self.figures["newly_bad"])


def _source(run: RunDir, *, stages: bool = False) -> dict[str, Any]:
    """A run as a stage record names it: its path and the digest of its items (and, for
    BEFORE, of the flags and failure modes the figures come from)."""
    collect = run.record("collect") or {}
    source: dict[str, Any] = {"run": str(run.path),
                              "items_sha256": collect.get("outputs", {}).get(ITEMS, {}).get("sha256")}
    if stages:
        for name in ("flag", "cluster"):
            record = run.record(name) if run.is_current(name) else None
            source[f"{name}_digest"] = None if record is None else record["digest"]
    return source


def _shown(ids: list[str]) -> str:
    return ", ".join(ids[:_IDS_SHOWN]) + (f" and {len(ids) - _IDS_SHOWN} more" if len(ids) > _IDS_SHOWN else "")


def _same_eval_set(before: RunDir, before_ids: pd.Index, other: RunDir, other_ids: pd.Index,
                   role: str) -> None:
    only_before = sorted(set(before_ids) - set(other_ids))
    only_other = sorted(set(other_ids) - set(before_ids))
    if not only_before and not only_other:
        return
    parts = ([f"only in {before.path} (BEFORE): {_shown(only_before)}"] if only_before else []) + \
            ([f"only in {other.path} ({role}): {_shown(only_other)}"] if only_other else [])
    raise RunDirError(f"{before.path} and {other.path} are not runs over the same eval set (the ids "
                      f"of their finished eval items differ: {'; '.join(parts)}); collect {role} from "
                      "BEFORE's eval set, and run it again until no item is left failed")


def _verdicts(run: RunDir, columns: list[str]) -> pd.DataFrame:
    return run.items(["eval_id", *columns], done=True).set_index("eval_id")


def _null_pmf(b: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """The null distribution of AFTER's bad answers over the items whose runs disagree (a
    Poisson-binomial, one binomial per level b of bad runs, convolved exactly), and the count
    of items every run answered badly (bad in AFTER whatever the null)."""
    from scipy.stats import binom

    pmf = np.array([1.0])
    for level in range(1, k + 1):
        n = int((b == level).sum())
        if n:
            pmf = np.convolve(pmf, binom.pmf(np.arange(n + 1), n, level / (k + 1)))
    return pmf, int((b == k + 1).sum())


def _test(after_bad: np.ndarray, control_bad: np.ndarray) -> dict[str, Any]:
    """AFTER against K controls over one group of items (see the module docstring)."""
    k = control_bad.shape[1]
    b = after_bad.astype(int) + control_bad.sum(axis=1)
    pmf, certain = _null_pmf(b, k)
    observed = int(after_bad.sum())
    t = observed - certain
    p = min(1.0, 2 * min(float(pmf[:t + 1].sum()), float(pmf[t:].sum())))
    expected = float((b[b <= k] / (k + 1)).sum()) + certain
    direction = ("fewer bad" if observed < expected - 1e-9 else
                 "more bad" if observed > expected + 1e-9 else "as expected")
    return {"items": int(len(b)), "after_bad": observed,
            "control_bad_mean": round(float(control_bad.sum()) / k, 6),
            "expected_after_bad": round(expected, 6), "discordant": int(((b > 0) & (b <= k)).sum()),
            "p_value": float(f"{p:.6g}"), "direction": direction}


def _bh(p_values: list[float]) -> list[float]:
    if not p_values:
        return []
    from scipy.stats import false_discovery_control

    return [float(f"{q:.6g}") for q in false_discovery_control(np.array(p_values), method="bh")]


def _flagged_citations(before: RunDir, bad_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """BEFORE's flagged pairs (pair_id, file, line) and their (pair_id, eval_id) citations by
    bad answers, read by DuckDB (the attribution table is never loaded whole)."""
    from ..core._duckdb import connect, quoted

    flagged = before.flags(["pair_id", "file", "line"], flagged_only=True)
    with connect() as con:
        con.register("flagged_ids", pd.DataFrame({"pair_id": pd.Series(list(flagged["pair_id"]), dtype=object)}))
        con.register("bad_ids", pd.DataFrame({"eval_id": pd.Series(bad_ids, dtype=object)}))
        cites = con.sql(f"""
            SELECT DISTINCT pair_id, eval_id FROM read_parquet({quoted(str(before.file(ATTRIBUTIONS)))})
            SEMI JOIN flagged_ids USING (pair_id) SEMI JOIN bad_ids USING (eval_id)""").df()
    return flagged, cites


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def outcome(before: str | Path, after: str | Path, controls: Sequence[str | Path] = (),
            settings: OutcomeSettings | None = None) -> OutcomeResult:
    """Count what the refinement fixed and what it broke, and write AFTER/outcome.json.

    `before`: the flagged (and ideally clustered) run whose flags led to the refined set;
    `after`: the retrained model's answers to the same eval set, collected and graded;
    `controls`: runs of models retrained without the refinement, for the test against
    retraining noise (module docstring). Runs over other eval ids are refused (RunDirError
    naming both runs and the ids). The same inputs give the same bytes.
    """
    settings = settings or OutcomeSettings()
    before_run, after_run = RunDir(before), RunDir(after)
    old = _verdicts(before_run, ["question", "answer", "reference", "verdict"])
    new = _verdicts(after_run, ["answer", "verdict"])
    _same_eval_set(before_run, old.index, after_run, new.index, "AFTER")
    control_runs = [RunDir(c) for c in controls]
    control_bad = np.zeros((len(old), len(control_runs)), dtype=bool)
    for j, control in enumerate(control_runs):
        verdicts = _verdicts(control, ["verdict"])
        _same_eval_set(before_run, old.index, control, verdicts.index, "the control")
        control_bad[:, j] = (verdicts["verdict"].reindex(old.index) == "bad").to_numpy()

    ids = old.index.to_numpy(dtype=object)
    bad_before = (old["verdict"] == "bad").to_numpy()
    bad_after = (new["verdict"].reindex(old.index) == "bad").to_numpy()
    after_bad_of = dict(zip(ids, bad_after))
    n = len(ids)

    modes: list[dict[str, Any]] = []
    groups: list[np.ndarray] = []
    if before_run.is_current("cluster"):
        clusters = before_run.clusters()
        clusters = clusters[clusters["eval_id"].isin(set(ids[bad_before]))]
        for c in sorted(clusters["cluster"].astype(int).unique(), key=lambda c: (c < 0, c)):
            members = clusters[clusters["cluster"] == c]
            still = sum(bool(after_bad_of[e]) for e in members["eval_id"])
            modes.append({"mode": int(c), "label": "unclustered" if c < 0 else str(members["label"].iloc[0]),
                          "bad_before": len(members), "fixed": len(members) - still, "still_bad": still})
            groups.append(np.isin(ids, members["eval_id"].to_numpy(dtype=object)))

    flagged, cites = _flagged_citations(before_run, list(ids[bad_before]))
    citing = cites.groupby("pair_id")["eval_id"].agg(list)
    pairs = []
    for row in flagged.itertuples():
        items = citing.get(row.pair_id, [])
        still = sum(bool(after_bad_of[e]) for e in items)
        pairs.append({"pair_id": row.pair_id, "file": str(row.file), "line": int(row.line),
                      "bad_before": len(items), "fixed": len(items) - still, "still_bad": still})
    pairs.sort(key=lambda p: (-p["bad_before"], p["file"], p["line"], p["pair_id"]))

    regressed = ~bad_before & bad_after
    regressions = [{"eval_id": e, "question": _text(old.at[e, "question"]),
                    "reference": _text(old.at[e, "reference"]),
                    "answer_before": _text(old.at[e, "answer"]), "answer_after": _text(new.at[e, "answer"])}
                   for e in ids[regressed]]

    noise = None
    if control_runs:
        tests = [_test(bad_after[g], control_bad[g]) for g in groups]
        for mode, test, q in zip(modes, tests, _bh([t["p_value"] for t in tests])):
            mode["vs_controls"] = {**test, "q_value": q, "exceeds_noise": q <= settings.alpha}
        noise = {"test": TEST, "controls": len(control_runs), "alpha": settings.alpha}
        for name, mask in (("overall", np.ones(n, dtype=bool)), ("good_before", ~bad_before)):
            test = _test(bad_after[mask], control_bad[mask])
            noise[name] = {**test, "exceeds_noise": test["p_value"] <= settings.alpha}

    rate = lambda count: round(count / n, 6) if n else 0.0  # noqa: E731
    sources = {"before": _source(before_run, stages=True), "controls": [_source(c) for c in control_runs]}
    figures = {
        **sources, "after": _source(after_run), "items": n,
        "bad_before": int(bad_before.sum()), "bad_after": int(bad_after.sum()),
        "bad_rate_before": rate(int(bad_before.sum())), "bad_rate_after": rate(int(bad_after.sum())),
        "fixed": int((bad_before & ~bad_after).sum()), "still_bad": int((bad_before & bad_after).sum()),
        "newly_bad": int(regressed.sum()), "newly_bad_share": rate(int(regressed.sum())),
        "control_bad": [int(control_bad[:, j].sum()) for j in range(len(control_runs))],
        "by_mode": modes, "by_pair": pairs, "regressions": regressions, "vs_controls": noise,
    }
    with after_run.stage("outcome", {"alpha": settings.alpha, **sources}) as stage:
        write_json(stage.path(OUTCOME_JSON), figures)
    return OutcomeResult(after_run.path, after_run.file(OUTCOME_JSON), figures)


def read_outcome(after: str | Path) -> dict[str, Any]:
    """AFTER's outcome.json, when its outcome stage is current and the BEFORE and control runs
    it was made from (where they still are at the recorded paths) hold the same items, flags
    and failure modes as then; otherwise a RunDirError saying to run `refine outcome` again."""
    run = RunDir(after)
    figures = run.outcome()
    named = [("BEFORE", figures["before"], True)] + [("control", c, False) for c in figures["controls"]]
    for role, source, stages in named:
        other = RunDir(source["run"])
        if other.path.is_dir() and _source(other, stages=stages) != source:
            raise RunDirError(f"{run.path}: {OUTCOME_JSON} was made from an earlier {role} run "
                              f"{other.path} (its items, flags or failure modes changed since); run "
                              f"`refine outcome` again")
    return figures


def report_section(run: RunDir) -> dict[str, Any] | None:
    """What `refine report` shows of AFTER's outcome (None when `refine outcome` has not run
    here): the figures and one SVG bar plot, fixed and still bad per failure mode and newly
    bad among the answers good before."""
    if not run.is_current("outcome"):
        return None
    from ..core.plots import pyplot, svg

    plt = pyplot()
    figures = read_outcome(run.path)
    rows = [(f"{m['mode']}: {m['label'][:40]}" if m["mode"] >= 0 else "unclustered", m["fixed"], m["still_bad"], 0)
            for m in figures["by_mode"]]
    good_before = figures["items"] - figures["bad_before"]
    rows.append((f"good before ({good_before})", 0, 0, figures["newly_bad"]))
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(rows) + 1.0))
    y = np.arange(len(rows))[::-1]
    fixed, still, newly = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    ax.barh(y, fixed, color="#12b76a", label="fixed")
    ax.barh(y, still, left=fixed, color="#d92d20", label="still bad")
    ax.barh(y, newly, color="#f79009", label="newly bad")
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_xlabel("answers")
    ax.legend(frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return {**figures, "svg": svg(fig)}


def summary_lines(figures: dict[str, Any], show: int = 10) -> list[str]:
    """The figures for a person: what `refine outcome` prints without --json."""
    pct = lambda share: f"{share * 100:.1f}%"  # noqa: E731
    lines = [f"{figures['after']['run']} against {figures['before']['run']} over {figures['items']} eval items",
             f"  bad answers: {figures['bad_before']} ({pct(figures['bad_rate_before'])}) before -> "
             f"{figures['bad_after']} ({pct(figures['bad_rate_after'])}) after",
             f"  fixed {figures['fixed']}, still bad {figures['still_bad']}, newly bad {figures['newly_bad']} "
             f"({pct(figures['newly_bad_share'])} of the eval items)"]
    noise = figures["vs_controls"]

    def verdict(test: dict[str, Any] | None, stat: str = "p_value") -> str:
        if test is None:
            return ""
        call = f"{test['direction']}, beyond noise" if test["exceeds_noise"] else "within noise"
        return f"  [{stat[0]}={test[stat]:.2g}: {call}]"

    if noise is not None:
        lines.append(f"  against {noise['controls']} control run(s) ({noise['test']}; alpha {noise['alpha']:g}):")
        for name, label in (("overall", "all items"), ("good_before", "items good before")):
            test = noise[name]
            lines.append(f"    {label}: {test['after_bad']} bad after, {test['control_bad_mean']:g} in a control "
                         f"on average{verdict(test)}")
    if figures["by_mode"]:
        lines.append("  by failure mode of BEFORE:")
        for m in figures["by_mode"]:
            label = m["label"] if len(m["label"]) <= 60 else m["label"][:59] + "…"
            name = f"{m['mode']}: {label}" if m["mode"] >= 0 else label
            lines.append(f"    {name}  {m['bad_before']} bad before: {m['fixed']} fixed, "
                         f"{m['still_bad']} still bad{verdict(m.get('vs_controls'), 'q_value')}")
    if figures["by_pair"]:
        lines.append(f"  by flagged pair of BEFORE ({len(figures['by_pair'])}):")
        for p in figures["by_pair"][:show]:
            lines.append(f"    {Path(p['file']).name}:{p['line']}  {p['bad_before']} bad before: "
                         f"{p['fixed']} fixed, {p['still_bad']} still bad")
    if figures["regressions"]:
        lines.append(f"  newly bad ({figures['newly_bad']}):")
        for r in figures["regressions"][:show]:
            clip = lambda text: " ".join(text.split())[:100]  # noqa: E731
            lines += [f"    {r['eval_id']}  {clip(r['question'])}", f"      before: {clip(r['answer_before'])}",
                      f"      after:  {clip(r['answer_after'])}"]
        if len(figures["regressions"]) > show:
            lines.append(f"    … {len(figures['regressions']) - show} more in outcome.json")
    return lines


def markdown_lines(figures: dict[str, Any], cell: Any) -> list[str]:
    """report.md's outcome section: the overall figures and one row per failure mode (`cell`
    escapes a table cell)."""
    noise = figures["vs_controls"]
    lines = ["", f"## Outcome against {cell(figures['before']['run'])}", "",
             f"- bad answers: {figures['bad_before']} before, **{figures['bad_after']}** now; "
             f"**{figures['fixed']} fixed**, {figures['still_bad']} still bad, "
             f"**{figures['newly_bad']} newly bad**"]
    if noise is not None:
        overall = noise["overall"]
        lines.append(f"- against {noise['controls']} control run(s): p = {overall['p_value']:.2g}, "
                     + (f"{overall['direction']}, beyond retraining noise" if overall["exceeds_noise"]
                        else "within retraining noise"))
    lines += ["", "| failure mode | bad before | fixed | still bad |" + (" q |" if noise else ""),
              "|---|---:|---:|---:|" + ("---:|" if noise else "")]
    for m in figures["by_mode"]:
        q = f" {m['vs_controls']['q_value']:.2g} |" if noise else ""
        lines.append(f"| {cell(m['label'] if m['mode'] < 0 else str(m['mode']) + ': ' + m['label'])} | "
                     f"{m['bad_before']} | {m['fixed']} | {m['still_bad']} |{q}")
    return lines
