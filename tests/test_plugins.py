"""Plug-ins come through entry points: a package refine has never heard of adds a backend and a
check by declaring them in its own metadata, and the CLI finds both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, chat, people_dataset, write_jsonl

PLUGIN = '''
from dataclasses import dataclass

from refine.attribution.base import AttributionBackend
from refine.checks.base import Check
from refine.records import Attribution, Influence


@dataclass(frozen=True)
class EchoOptions:
    level: str = "high"


class EchoBackend(AttributionBackend):
    """Cites the first training pair for every item: a test double of a third-party backend."""

    name = "echo"
    Options = EchoOptions

    def prepare(self, training, progress):
        self.first = training.pairs[0]

    def attribute(self, items):
        pair = self.first
        return [Attribution(item.id, [Influence(pair_id=pair.pair_id, influence_level=self.options.level,
                                                score=1.0, file_id=pair.file_id,
                                                messages=f"Q: {pair.question}\\nA: {pair.answer}")],
                            answer=item.answer) for item in items]


class AtLeastTen(Check):
    name = "at_least_ten"
    description = "The training set has at least ten records."
    default_severity = "error"

    def run(self, context):
        n = len(context.training.pairs)
        return self.result(summary=f"{n} records", passed=n >= 10)
'''


def _install_plugin(root: Path) -> Path:
    site = root / "site"
    (site / "refine_echo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "refine_echo_plugin.py").write_text(PLUGIN)
    info = site / "refine_echo_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: refine-echo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[refine.backends]\necho = refine_echo_plugin:EchoBackend\n\n"
                                          "[refine.checks]\nat_least_ten = refine_echo_plugin:AtLeastTen\n")
    return site


def _refine(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "refine.cli", *args], capture_output=True, text=True, env=env)


def test_a_third_party_backend_and_check_are_found_without_editing_refine(tmp_path: Path) -> None:
    site = _install_plugin(tmp_path)
    data = people_dataset(tmp_path / "data")
    listed = _refine(site, "backends")
    assert listed.stdout.split() == ["echo", "embedding", "gradient", "seekrflow"]
    run = tmp_path / "run"
    done = _refine(site, "collect", "--backend", "echo", "--option", "level=medium", "--train",
                   str(data["train"]), "--eval", str(data["eval"]), "--out", str(run), "-q")
    assert done.returncode == 0, done.stderr
    settings = json.loads((run / "settings.json").read_text())
    assert settings["collect"] == {"top_k": 10, "backend": "echo", "options": {"level": "medium"}}

    small = write_jsonl(tmp_path / "small.jsonl", [chat(f"q{i}?", f"a{i}.") for i in range(3)])
    checked = _refine(site, "check", str(small), "--select", "at_least_ten", "--json")
    assert checked.returncode == 1, checked.stderr
    assert json.loads(checked.stdout)["checks"][0]["summary"] == "3 records"
