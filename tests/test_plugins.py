"""One registry per plug-in family (refine.plugins): refine's built-ins are always there, a
package refine has never heard of adds a backend and a check by declaring them in its own
metadata, a class defined in code registers itself, and the CLI finds them all."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from refine.attribution.base import AttributionBackend, available_backends, make_backend
from refine.checks import Check, available_checks, make_check
from refine.errors import ConfigError
from refine.executors import Executor, available_executors, make_executor
from refine.plugins import BACKENDS, CHECKS, EXECUTORS

from .conftest import ROOT, chat, people_dataset, write_jsonl

REGISTRIES = [BACKENDS, EXECUTORS, CHECKS]

PLUGIN = '''
from dataclasses import dataclass

from refine.attribution.base import AttributionBackend
from refine.checks.base import Check
from refine.formats.records import Attribution, Influence


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


def test_the_built_ins_are_there_when_only_a_plug_in_is_installed(tmp_path: Path) -> None:
    # refine's own entry points invisible (no site-packages, no refine.egg-info), the echo plug-in's there.
    site = _install_plugin(tmp_path)
    source = tmp_path / "source"
    source.mkdir()
    (source / "refine").symlink_to(ROOT / "refine")
    code = ("import json; from importlib.metadata import entry_points; "
            "from refine.plugins import BACKENDS, CHECKS, EXECUTORS; "
            "print(json.dumps({r.group: [[e.name for e in entry_points(group=r.group)], r.names()] "
            "for r in (BACKENDS, EXECUTORS, CHECKS)}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(source)])}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True)
    assert json.loads(out.stdout) == {
        "refine.backends": [["echo"], [*BACKENDS.builtins, "echo"]],
        "refine.executors": [[], [*EXECUTORS.builtins]],
        "refine.checks": [["at_least_ten"], [*CHECKS.builtins, "at_least_ten"]],
    }


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda registry: registry.group)
def test_pyproject_declares_exactly_the_built_ins(registry) -> None:
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared.get(registry.group) == registry.builtins
    for name, target in registry.builtins.items():
        module, _, attr = target.partition(":")
        cls = registry.get(name)
        assert cls is getattr(importlib.import_module(module), attr)
        assert cls.name == name


def _listed_with(registry, name: str) -> list[str]:
    """What `registry` lists once `name` is defined in code: refine's own first, then the others
    (other tests' classes too) by name."""
    return [*registry.builtins, *sorted(set(registry.names()) - set(registry.builtins) | {name})]


@dataclass(frozen=True)
class LevelOptions:
    level: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.level, int) or self.level < 1:
            raise ConfigError(f"must be an integer ≥ 1, got {self.level!r}", key="level")


def test_a_backend_defined_at_run_time_is_listed_and_made_beside_the_built_ins() -> None:
    before, expected = BACKENDS.names(), _listed_with(BACKENDS, "zz_fake")

    class Fake(AttributionBackend):
        name = "zz_fake"
        Options = LevelOptions

        def attribute(self, items):
            return []

    try:
        assert BACKENDS.names() == expected
        assert available_backends() == sorted(expected)
        backend = make_backend("zz_fake", {"level": 3}, top_k=4)
        assert isinstance(backend, Fake) and backend.options == LevelOptions(3) and backend.top_k == 4
        with pytest.raises(ConfigError, match="unknown option of backend 'zz_fake'; known: level") as caught:
            make_backend("zz_fake", {"colour": "blue"}, top_k=4)
        assert caught.value.key == "backend_options.colour"
        with pytest.raises(ConfigError, match="must be an integer ≥ 1, got 0"):
            make_backend("zz_fake", {"level": 0}, top_k=4)
    finally:
        BACKENDS.unregister("zz_fake")
    assert BACKENDS.names() == before
    with pytest.raises(ConfigError, match="unknown backend 'zz_fake'; available: ") as caught:
        make_backend("zz_fake", {}, top_k=4)
    assert caught.value.key == "backend" and "embedding, gradient, seekrflow" in str(caught.value)


def test_an_executor_defined_at_run_time_is_listed_and_made_beside_the_built_ins() -> None:
    before, expected = EXECUTORS.names(), _listed_with(EXECUTORS, "zz_fake")

    class Fake(Executor):
        name = "zz_fake"
        Options = LevelOptions

        def map(self, spec, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
            return iter(enumerate(tasks))

    try:
        assert EXECUTORS.names() == expected
        assert available_executors() == sorted(expected)
        executor = make_executor({"kind": "zz_fake", "level": 2})
        assert isinstance(executor, Fake) and executor.options == LevelOptions(2)
        with pytest.raises(ConfigError, match="unknown option of executor 'zz_fake'") as caught:
            make_executor({"kind": "zz_fake", "spot": True})
        assert caught.value.key == "collect.executor.spot"
    finally:
        EXECUTORS.unregister("zz_fake")
    assert EXECUTORS.names() == before


def test_a_check_defined_at_run_time_runs_after_the_built_ins() -> None:
    before, expected = CHECKS.names(), _listed_with(CHECKS, "zz_fake")

    class Fake(Check):
        name = "zz_fake"
        description = "Test double."
        Options = LevelOptions

        def run(self, context):
            return self.result(summary="fine")

    try:
        assert available_checks() == CHECKS.names() == expected
        check = make_check("zz_fake", {"level": 5}, severity="info")
        assert isinstance(check, Fake) and check.options == LevelOptions(5) and check.severity == "info"
        with pytest.raises(ConfigError, match="unknown option of check 'zz_fake'; known: level") as caught:
            make_check("zz_fake", {"levle": 5})
        assert caught.value.key == "checks.zz_fake.levle"
    finally:
        CHECKS.unregister("zz_fake")
    assert available_checks() == before


def test_the_register_decorator_registers_a_class_that_subclasses_nothing() -> None:
    @EXECUTORS.register
    class Listed:
        name = "zz_listed"
        Options = LevelOptions

        def __init__(self, options: LevelOptions) -> None:
            self.options = options

    try:
        assert Listed.name == "zz_listed" and EXECUTORS.get("zz_listed") is Listed
        assert make_executor({"kind": "zz_listed", "level": 7}).options == LevelOptions(7)
    finally:
        EXECUTORS.unregister("zz_listed")
    with pytest.raises(TypeError, match="must declare a name"):
        EXECUTORS.register(type("Nameless", (), {}))
