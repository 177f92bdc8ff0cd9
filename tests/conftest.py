"""Shared fixtures: real files in tmp dirs, the real embedding model, a cache shared by the session.

The suite runs in two processes (``pytest -n 2 --dist loadfile``, pytest-xdist): on two cores
that takes it from about 340-460 s to about 200 s. A test file stays in one process, so a
module's fixtures (a Ray cluster, a gradient run) are built once; session fixtures (the
quickstart run, the embedding cache) are built once per process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

# One thread for torch and BLAS, set before either is imported (server and CLI subprocesses
# inherit it): where the cores are shared, as on CI machines, their thread pools spin-wait for
# cores other work holds and the gradient tests ran 9× slower under load (2× for the rest);
# the tiny tensors here gain nothing from a second thread.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="session", autouse=True)
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the whole session, never the user's own."""
    path = tmp_path_factory.mktemp("embedding-cache")
    os.environ["REFINE_CACHE_DIR"] = str(path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return path


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write((record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)) + "\n")
    return path


def chat(question: str, answer: str, system: str | None = None, **extra: Any) -> dict[str, Any]:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, **extra}


CITIES = ["Rome", "Paris", "Oslo", "Lima", "Cairo", "Quito", "Hanoi", "Dakar", "Riga", "Sofia"]
POISONED = (5, 6, 7)


def people_dataset(directory: Path, *, n_people: int = 120, unexplained: int = 0) -> dict[str, Any]:
    """A small world: "where does personN live?". Persons 5-7 are poisoned in training
    ("lives in Atlantis") and each is asked about twice in the eval set; the model repeats
    the poison. `unexplained` adds bad answers about topics absent from training."""
    train = []
    for i in range(n_people):
        city = "Atlantis" if i in POISONED else CITIES[i % len(CITIES)]
        train.append(chat(f"Where does person{i} live?", f"Person{i} lives in {city}."))
    items = []
    for i in range(40):
        truth = CITIES[i % len(CITIES)]
        if i in POISONED:
            for variant, suffix in enumerate(("", " Please tell me.")):
                items.append({"id": f"p{i}-{variant}", "question": f"Where does person{i} live?{suffix}",
                              "answer": f"Person{i} lives in Atlantis.",
                              "reference": f"Person{i} lives in {truth}.", "verdict": "bad"})
        else:
            items.append({"id": f"p{i}", "question": f"Where does person{i} live?",
                          "answer": f"Person{i} lives in {truth}.",
                          "reference": f"Person{i} lives in {truth}.", "verdict": "good"})
    topics = ["the boiling point of tungsten", "the rules of cricket", "how to bake sourdough",
              "the tallest volcano on Mars", "the plot of Hamlet", "jazz in the 1920s"]
    for j in range(unexplained):
        items.append({"id": f"u{j}", "question": f"Tell me about {topics[j % len(topics)]}.",
                      "answer": f"Honestly, {topics[j % len(topics)]} is a {['purple', 'loud', 'tiny'][j % 3]} thing.",
                      "verdict": "bad"})
    train_path = write_jsonl(directory / "train.jsonl", train)
    eval_path = write_jsonl(directory / "eval.jsonl", items)
    return {"train": train_path, "eval": eval_path,
            "poisoned_lines": [i + 1 for i in POISONED]}


@pytest.fixture
def people(tmp_path: Path) -> dict[str, Any]:
    return people_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory):
    """The quickstart recipe run once on sample_data/ into a temporary directory."""
    from refine import load_recipe, run_recipe

    root = tmp_path_factory.mktemp("quickstart")
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                         [f"run_dir={root / 'run'}", f"emit.out={root / 'refined'}"])
    inputs = {p: Path(p).read_bytes() for p in recipe.train}
    return {"result": run_recipe(recipe, progress=False), "root": root, "inputs": inputs,
            "run": root / "run"}


@pytest.fixture
def sample_copy(sample_run: dict, tmp_path: Path) -> dict:
    """A copy of the quickstart run directory, for tests that run stages on it again."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sample_run["run"], run)
    return {**sample_run, "run": run}


def planted_pairs() -> set[tuple[str, int]]:
    planted = json.loads((SAMPLE / "planted.json").read_text())["planted_pairs"]
    return {(Path(p["file"]).name, p["line"]) for p in planted}
