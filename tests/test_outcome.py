"""`refine outcome`: a retrained model's run against the run whose flags led to the refined set.

BEFORE is the quickstart run on sample_data/ (flagged and clustered). AFTER and the controls
are real collections of the same eval set with other answers: AFTER is collected over the
refined files emit wrote, with half of BEFORE's bad answers replaced by their reference
(verdict good) and five good answers made bad; controls are collected over the original files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

import refine
from refine import OutcomeSettings, RunDir, collect, outcome
from refine.cli import main
from refine.errors import RunDirError
from refine.stages.outcomes import read_outcome

from .conftest import SAMPLE, write_jsonl

TRAIN = [SAMPLE / "train" / "support_faq.jsonl", SAMPLE / "train" / "product_docs.jsonl"]
WRONG = "I am not sure; please ask someone else."


def _eval_rows() -> list[dict]:
    return [json.loads(line) for line in (SAMPLE / "eval.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def runs(sample_run: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("outcome")
    rows = _eval_rows()
    bad = [r["id"] for r in rows if r["verdict"] == "bad"]
    good = [r["id"] for r in rows if r["verdict"] == "good"]
    fixed, broken = set(bad[::2]), set(good[3:53:10])

    def variant(name: str, fix: set[str] = frozenset(), brk: set[str] = frozenset(), drop: int = 0,
                rename: dict[str, str] | None = None) -> Path:
        out = []
        for row in rows[:len(rows) - drop]:
            row = dict(row)
            if row["id"] in fix:
                row.update(answer=row["reference"], verdict="good")
            if row["id"] in brk:
                row.update(answer=WRONG, verdict="bad")
            row["id"] = (rename or {}).get(row["id"], row["id"])
            out.append(row)
        return write_jsonl(root / f"{name}.jsonl", out)

    refined = sorted((sample_run["root"] / "refined").glob("*.jsonl"))
    still_bad = [e for e in bad if e not in fixed]
    made = {"before": sample_run["run"], "fixed": fixed, "broken": broken, "root": root}
    for name, train, eval_path in (
            ("after", refined, variant("after", fixed, broken)),
            ("control", TRAIN, variant("control")),                           # retrained, unmodified set
            ("noisy_control", TRAIN, variant("noisy_control", set(still_bad[:3]))),
            ("like_after", TRAIN, variant("like_after", fixed, broken)),      # no better than AFTER
            ("other_ids", refined, variant("other_ids", fixed, broken, drop=1, rename={"ev-001": "ev-999"}))):
        collect(train, eval_path, root / name, progress=False)
        made[name] = root / name
    return made


def _cli(*args: object):
    return CliRunner().invoke(main, [*map(str, args)])


def test_counts_per_failure_mode_and_per_flagged_pair(runs: dict) -> None:
    result = outcome(runs["before"], runs["after"])
    figures = result.figures
    before = RunDir(runs["before"])
    fixed, broken = runs["fixed"], runs["broken"]
    assert (figures["items"], figures["bad_before"]) == (146, 48)
    assert (figures["fixed"], figures["still_bad"], figures["newly_bad"]) == (24, 24, 5)
    assert figures["bad_after"] == 48 - 24 + 5 and figures["bad_rate_after"] == round(29 / 146, 6)
    assert figures["newly_bad_share"] == round(5 / 146, 6) and figures["vs_controls"] is None

    # Modes and their names are BEFORE's clustering; every bad answer before is in one of them.
    clusters = before.clusters()
    labels = dict(zip(before.modes()["cluster"], before.modes()["label"]))
    assert [m["mode"] for m in figures["by_mode"]] == [*sorted(labels), -1]
    for mode in figures["by_mode"]:
        members = set(clusters.loc[clusters["cluster"] == mode["mode"], "eval_id"])
        assert mode["label"] == labels.get(mode["mode"], "unclustered")
        assert (mode["bad_before"], mode["fixed"]) == (len(members), len(members & fixed))
        assert mode["still_bad"] == len(members - fixed)
    assert sum(m["bad_before"] for m in figures["by_mode"]) == 48

    # Per flagged pair: the bad answers before that cite it.
    flagged = before.flags(flagged_only=True)
    cites = before.attributions(["eval_id", "pair_id"], matched=True)
    bad_ids = set(before.items(["eval_id", "verdict"]).query("verdict == 'bad'")["eval_id"])
    assert {p["pair_id"] for p in figures["by_pair"]} == set(flagged["pair_id"])
    for pair in figures["by_pair"]:
        citing = set(cites.loc[cites["pair_id"] == pair["pair_id"], "eval_id"]) & bad_ids
        assert (pair["bad_before"], pair["fixed"], pair["still_bad"]) == (
            len(citing), len(citing & fixed), len(citing - fixed))
    assert [p["bad_before"] for p in figures["by_pair"]] == sorted(
        (p["bad_before"] for p in figures["by_pair"]), reverse=True)
    assert result.path == runs["after"] / "outcome.json"
    assert json.loads(result.path.read_text(encoding="utf-8")) == figures


def test_the_regressions_are_listed_with_both_answers(runs: dict) -> None:
    figures = outcome(runs["before"], runs["after"]).figures
    rows = {r["id"]: r for r in _eval_rows()}
    assert [r["eval_id"] for r in figures["regressions"]] == sorted(runs["broken"])
    for regression in figures["regressions"]:
        original = rows[regression["eval_id"]]
        assert regression["question"] == original["question"]
        assert regression["answer_before"] == original["answer"]
        assert regression["answer_after"] == WRONG


def test_json_has_the_figures_and_the_summary_says_them(runs: dict) -> None:
    result = _cli("outcome", runs["before"], runs["after"], "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert (printed["fixed"], printed["newly_bad"]) == (24, 5)
    assert {"items", "bad_before", "bad_after", "bad_rate_before", "bad_rate_after", "still_bad",
            "newly_bad_share", "by_mode", "by_pair", "regressions", "vs_controls", "before", "after",
            "controls"} <= set(printed)
    assert printed == read_outcome(runs["after"])

    result = _cli("outcome", runs["before"], runs["after"], "--show", "2")
    assert result.exit_code == 0, result.output
    assert "fixed 24, still bad 24, newly bad 5" in result.output
    assert "48 (32.9%) before -> 29 (19.9%) after" in result.output
    assert sorted(runs["broken"])[0] in result.output and "3 more in outcome.json" in result.output


def test_the_stage_record_names_the_runs_it_was_made_from_and_the_bytes_repeat(runs: dict) -> None:
    outcome(runs["before"], runs["after"], [runs["control"], runs["noisy_control"]])
    first = (runs["after"] / "outcome.json").read_bytes()
    record = RunDir(runs["after"]).record("outcome")
    before = RunDir(runs["before"])
    assert record["settings"]["before"] == {
        "run": str(runs["before"]), "items_sha256": before.record("collect")["outputs"]["items.parquet"]["sha256"],
        "flag_digest": before.record("flag")["digest"], "cluster_digest": before.record("cluster")["digest"]}
    assert [c["run"] for c in record["settings"]["controls"]] == [str(runs["control"]), str(runs["noisy_control"])]
    assert all(len(c["items_sha256"]) == 64 for c in record["settings"]["controls"])
    outcome(runs["before"], runs["after"], [runs["control"], runs["noisy_control"]])
    assert (runs["after"] / "outcome.json").read_bytes() == first


def test_runs_over_other_eval_ids_are_refused_naming_both_runs_and_the_ids(runs: dict) -> None:
    result = _cli("outcome", runs["before"], runs["other_ids"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert str(runs["before"]) in result.output and str(runs["other_ids"]) in result.output
    assert "ev-001" in result.output and "ev-146" in result.output and "ev-999" in result.output
    with pytest.raises(RunDirError, match="other_ids"):
        outcome(runs["before"], runs["after"], [runs["other_ids"]])


def test_a_large_change_exceeds_retraining_noise_and_the_test_is_exact(runs: dict) -> None:
    figures = outcome(runs["before"], runs["after"], [runs["control"], runs["noisy_control"]]).figures
    noise = figures["vs_controls"]
    assert noise["controls"] == 2 and noise["alpha"] == 0.05
    assert noise["overall"]["exceeds_noise"] and noise["overall"]["direction"] == "fewer bad"
    assert noise["overall"]["p_value"] < 1e-4
    assert noise["good_before"]["exceeds_noise"] and noise["good_before"]["direction"] == "more bad"
    assert figures["control_bad"] == [48, 45]
    assert all(0 <= m["vs_controls"]["p_value"] <= m["vs_controls"]["q_value"] <= 1 for m in figures["by_mode"])

    # One control: McNemar's exact test on the items where AFTER and the control disagree.
    overall = outcome(runs["before"], runs["after"], [runs["control"]]).figures["vs_controls"]["overall"]
    assert overall["discordant"] == 24 + 5 and overall["after_bad"] == 29
    assert overall["p_value"] == pytest.approx(binomtest(5, 29, 0.5).pvalue, rel=1e-5)


def test_after_no_better_than_a_control_is_within_noise(runs: dict) -> None:
    noise = outcome(runs["before"], runs["after"], [runs["like_after"]]).figures["vs_controls"]
    assert noise["overall"]["p_value"] == 1.0 and not noise["overall"]["exceeds_noise"]
    assert noise["overall"]["discordant"] == 0
    figures = read_outcome(runs["after"])
    assert not any(m["vs_controls"]["exceeds_noise"] for m in figures["by_mode"])


def test_the_gate_fails_above_the_share_of_newly_bad_answers(runs: dict) -> None:
    outcome(runs["before"], runs["after"])
    result = _cli("check", "--outcome", runs["after"], "--json")      # 5 of 146 > 2%
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert [c["name"] for c in report["checks"]] == ["outcome_regressions"]
    gate = report["checks"][0]
    assert gate["status"] == "fail" and gate["info"]["newly_bad"] == 5
    assert sorted(f["eval_id"] for f in gate["findings"]) == sorted(runs["broken"])

    result = _cli("check", "--outcome", runs["after"], "--option", "outcome_regressions.max_newly_bad_share=0.05")
    assert result.exit_code == 0, result.output
    assert refine.check([], outcome_run=str(runs["after"])).passed is False


def test_the_gate_refuses_an_outcome_made_from_a_before_run_that_changed(runs: dict, sample_copy: dict) -> None:
    after = runs["root"] / "after"
    outcome(sample_copy["run"], after)
    refine.flag(sample_copy["run"], refine.FlagSettings(min_bad=3))
    result = _cli("check", "--outcome", after)
    assert result.exit_code == 2 and "earlier BEFORE run" in result.output and "refine outcome" in result.output


def test_the_report_of_the_retrained_run_shows_the_outcome(runs: dict) -> None:
    after = runs["after"]
    outcome(runs["before"], after)
    refine.flag(after)
    refine.report(after)
    assert '<section id="outcome">' in (after / "report.html").read_text(encoding="utf-8")
    outcome(runs["before"], after, [runs["control"], runs["noisy_control"]])
    assert not RunDir(after).is_current("report")           # made before the outcome: gone
    refine.report(after)
    html = (after / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="outcome">'):]
    section = section[:section.index("</section>")]
    assert "24 fixed" in section and "5 newly bad" in section and "<svg" in section
    assert section.count("<tr>") == 1 + len(read_outcome(after)["by_mode"])
    markdown = (after / "report.md").read_text(encoding="utf-8")
    assert "## Outcome against" in markdown and "**24 fixed**" in markdown


def test_settings_are_validated() -> None:
    with pytest.raises(refine.ConfigError, match="outcome.alpha"):
        OutcomeSettings(alpha=0)
