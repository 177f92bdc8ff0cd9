"""The report's "What next": every command it suggests runs, through the real CLI, and exits 0.

The commands are read out of report.html itself (each plan is a `div.plan`, each command a
`pre.command`, run in order), so a suggestion added later is run here too. Each plan runs on
its own fresh copy of the run and its refined data, from the checkout's root (the quickstart's
working directory: the gate file is `recipes/pre-retrain-gate.yaml`).
"""

from __future__ import annotations

import re
import shlex
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from refine.cli import main

from ..conftest import ROOT


class _Plans(HTMLParser):
    """The plans of a report page (a list of command lists), and any `refine …` command in a
    <code> element outside them."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: list[list[str]] = []
        self.loose: list[str] = []
        self._depth = 0            # div nesting inside the current plan (0: outside any)
        self._text: list[str] | None = None
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div" and (self._depth or "plan" in classes):
            if not self._depth:
                self.plans.append([])
            self._depth += 1
        if (tag == "pre" and "command" in classes) or tag == "code":
            self._text, self._tag = [], tag

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._tag and self._text is not None:
            text = "".join(self._text).strip()
            if tag == "pre":
                assert self._depth, f"a command outside any plan: {text}"
                self.plans[-1].append(text)
            elif text.startswith("refine ") and not self._depth:
                self.loose.append(text)
            self._text = None
        if tag == "div" and self._depth:
            self._depth -= 1


def plans_of(run: Path) -> list[list[str]]:
    parser = _Plans()
    parser.feed((run / "report.html").read_text(encoding="utf-8"))
    assert parser.loose == [], "the page suggests a command outside its plans"
    assert parser.plans and all(parser.plans), "a plan without a command"
    markdown = (run / "report.md").read_text(encoding="utf-8")
    listed = re.findall(r"`(refine [^`]+)`", markdown.split("## What next", 1)[1])
    assert listed == [c for plan in parser.plans for c in plan], "report.md and report.html disagree"
    return parser.plans


def cli(command: str) -> None:
    args = shlex.split(command)
    assert args[0] == "refine", command
    result = CliRunner().invoke(main, args[1:])
    assert result.exit_code == 0, f"`{command}` exited {result.exit_code}:\n{result.output}{result.exception!r}"


@pytest.fixture
def state(sample_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the quickstart run whose refined data is its own (tmp/state/refined): a plan
    that emits again never writes the session's shared outputs."""
    monkeypatch.chdir(ROOT)
    root = tmp_path / "state"
    shutil.copytree(sample_run["run"], root / "run")
    cli(f"refine emit {root / 'run'} --out {root / 'refined'}")
    cli(f"refine report {root / 'run'}")
    return {"root": root, "run": root / "run", "shared": str(sample_run["root"])}


def run_each_plan(state: dict, after=None) -> list[list[str]]:
    """Run every plan of the state's report, each on a fresh copy of the state; `after(state)`
    runs after each plan. Returns the plans run."""
    root, snapshot = state["root"], state["root"].with_name("snapshot")
    shutil.copytree(root, snapshot)
    plans = plans_of(state["run"])
    for plan in plans:
        shutil.rmtree(root)
        shutil.copytree(snapshot, root)
        for command in plan:
            assert state["shared"] not in command
            cli(command)
        if after is not None:
            after(plan)
    return plans


def test_every_command_suggested_after_emit_runs(state: dict) -> None:
    def reviewed(plan: list[str]) -> None:
        if plan[0].startswith("refine review export"):
            # The sheet exported from these flags may hold decisions: it is not offered for export
            # again, only applied.
            again = next(p for p in plans_of(state["run"]) if "refine review" in p[0])
            assert again[0].startswith("refine review apply")
            for command in again:
                cli(command)

    plans = run_each_plan(state, after=reviewed)
    gate, *others = plans
    # The gate checks exactly the refined files the emit manifest lists, then comes retraining.
    refined = state["root"] / "refined"
    assert gate == [f"refine check {refined / 'support_faq.jsonl'} {refined / 'product_docs.jsonl'} "
                    f"--baseline {ROOT / 'sample_data/train/support_faq.jsonl'} "
                    f"--baseline {ROOT / 'sample_data/train/product_docs.jsonl'} --flags {state['run']} "
                    f"--eval {ROOT / 'sample_data/eval.jsonl'} --config recipes/pre-retrain-gate.yaml"]
    commands = [c for plan in others for c in plan]
    # The emit that ran (prune) is not offered again; one that would replace outputs says so.
    assert not any(c.startswith("refine emit") and "--mode" not in c for c in commands)
    assert all("--overwrite" in c for c in commands if c.startswith(("refine emit", "refine review apply")))
    # The review is two steps, with the sheet's editing between them.
    review = next(plan for plan in others if plan[0].startswith("refine review export"))
    assert review[1].startswith("refine review apply")
    assert not any("&&" in c or "compare" in c for c in commands)


def test_every_command_suggested_before_emit_runs_and_leads_to_a_gate(state: dict) -> None:
    # Other flags: cluster, emit and report are gone until they run again on these.
    cli(f"refine flag {state['run']} --min-bad 3")
    cli(f"refine report {state['run']}")
    gates: list[list[str]] = []

    def gate(plan: list[str]) -> None:
        # Each plan ends by writing the report again, which then offers the gate: run it too.
        for then in plans_of(state["run"]):
            if then[0].startswith("refine check"):
                gates.append(then)
                for command in then:
                    cli(command)

    plans = run_each_plan(state, after=gate)
    assert plans[0][0] == f"refine cluster {state['run']}"
    assert [p[0].split()[1] for p in plans[1:]] == ["emit", "emit", "review"]
    assert len(gates) == 3   # after each emit and after the review; not after cluster alone
    assert "--overwrite" not in " ".join(c for plan in plans for c in plan)   # nothing emitted yet
