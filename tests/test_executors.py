"""Executors: on Ray the same run directory, the same bytes, whatever workers die on the way.

One simulated two-node Ray cluster (``ray.cluster_utils.Cluster``: a head and a second node, one
CPU each) is shared by the module; the CLI case starts its own local cluster in a subprocess.
Embedding and gradient runs on Ray are compared with in-process runs of the same inputs:
``items.parquet``, ``attributions.parquet`` and ``pairs.parquet`` (and flags and the emitted
dataset made from them) are byte-identical, not merely close. That holds because no sum is
reordered: each worker computes whole chunks in the same float32 arithmetic as in-process (the
suite runs torch with one thread everywhere; another thread count sums a matrix product in
another order, and bench/scale.py measures how far apart that leaves the features), and every
reduction (curvature statistics, top-k, the level statistics) runs in the driver in chunk
order, however the chunks arrived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from refine import (CollectSettings, ConfigError, EmitSettings, FlagSettings, collect, emit, flag,
                    load_eval, load_training)
from refine.executors import make_executor

from .conftest import ROOT, SAMPLE, people_dataset

ray = pytest.importorskip("ray")

COMPARED = ("items.parquet", "attributions.parquet", "pairs.parquet")
# Curvature statistics over the first 32 pairs only (2 tasks): enough to test their reduction.
GRADIENT = {"model": str(SAMPLE / "tiny_lm"), "projection_dim": 512, "whiten_examples": 32}
CHUNK = 16      # training pairs per gradient task: the 120 pairs are 8 tasks, with work to lose


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two Ray nodes on this machine, one CPU each: one worker per node at CPU=1."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return people_dataset(tmp_path_factory.mktemp("executors") / "data", unexplained=2)


def _collect(data: dict, out: Path, backend: str, cache: Path, executor: Any = None, **options) -> Any:
    settings = CollectSettings(backend=backend, top_k=5, executor=executor,
                               backend_options={**options, "cache_dir": str(cache)})
    return collect([str(data["train"])], str(data["eval"]), out, settings, progress=False)


def _same_bytes(a: Path, b: Path, names: tuple[str, ...] = COMPARED) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def in_process(data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reference runs of both backends in this process, each with its own fresh cache."""
    from refine import embeddings
    from refine.attribution.gradient import backend as gradient_backend

    root = tmp_path_factory.mktemp("in-process")
    _collect(data, root / "embedding", "embedding", root / "cache-e")
    with pytest.MonkeyPatch.context() as patch:
        # The chunk size is part of the arithmetic — texts are batched within a chunk, curvature
        # statistics summed per chunk, then over chunks — so the Ray runs below that use small
        # chunks (to have several tasks) are compared with in-process runs of the same chunks.
        patch.setattr(embeddings, "_CHUNK", 16)
        _collect(data, root / "embedding-16", "embedding", root / "cache-e16")
        patch.setattr(gradient_backend, "_CHUNK", CHUNK)
        _collect(data, root / "gradient", "gradient", root / "cache-g", **GRADIENT)
    return {"embedding": root / "embedding", "embedding-16": root / "embedding-16",
            "gradient": root / "gradient"}


class Watched:
    """Wraps an executor's map: counts the examples each kind of task carried, and can kill a
    worker, or the whole run, after the n-th result."""

    def __init__(self, executor: Any, *, kill_after: int | None = None, stop_after: int | None = None,
                 kill: Any = None) -> None:
        self.executor, self.kill_after, self.stop_after, self.kill = executor, kill_after, stop_after, kill
        self.examples: dict[str, int] = {}
        self.tasks: dict[str, int] = {}
        self.results = 0
        original = executor.map

        def watched_map(spec: Any, tasks: list) -> Iterator[tuple[int, Any]]:
            for kind, chunk in (t if isinstance(t, tuple) else ("encode", t) for t in tasks):
                self.examples[kind] = self.examples.get(kind, 0) + len(chunk or ())
                self.tasks[kind] = self.tasks.get(kind, 0) + 1
            for index, result in original(spec, tasks):
                self.results += 1
                if self.results == self.kill_after:
                    self.kill(executor)
                if self.results == self.stop_after:
                    raise KeyboardInterrupt("the driver stops here, as if killed")
                yield index, result

        executor.map = watched_map


def _run_with(data: dict, out: Path, backend: str, cache: Path, watched: Watched,
              monkeypatch: pytest.MonkeyPatch, **options) -> Any:
    """Collect with a watched Ray executor in place of the one the settings would build."""
    from refine import collection

    monkeypatch.setattr(collection, "make_executor", lambda config: watched.executor)
    try:
        return _collect(data, out, backend, cache, **options)
    finally:
        monkeypatch.undo()


def test_an_embedding_run_on_ray_writes_the_same_bytes_and_so_the_same_flags_and_dataset(
        cluster: Any, data: dict, in_process: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from refine import embeddings

    monkeypatch.setattr(embeddings, "_CHUNK", 16)     # several tasks, for both workers
    watched = Watched(make_executor({"kind": "ray", "workers": 2}))
    _run_with(data, tmp_path / "run", "embedding", tmp_path / "cache", watched, monkeypatch)
    assert watched.tasks["encode"] >= 3 and watched.results == watched.tasks["encode"]
    _same_bytes(in_process["embedding-16"], tmp_path / "run")
    outputs = []
    for run in (in_process["embedding-16"], tmp_path / "run"):
        result = flag(run, FlagSettings())
        emitted = emit(run, tmp_path / f"refined-{len(outputs)}.jsonl", EmitSettings())
        outputs.append((result.flagged_pairs.to_csv(index=False), Path(emitted.outputs[0]).read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][1] != Path(data["train"]).read_bytes()     # something was flagged and removed


def test_a_worker_hands_the_heap_a_task_freed_back_before_the_next_task(cluster: Any) -> None:
    """glibc keeps freed memory resident; a worker trims it after its tasks, raising or not, so
    its peak RSS follows its largest tasks, not how many it ran (refine.core._heap). The task frees
    200 MB it allocated in 100 KB pieces (below glibc's mmap threshold, so on the heap), all but
    the last, which pins the heap's top so glibc cannot shrink the heap on its own."""
    from refine.executors import WorkerSpec

    def worker_factory():
        from refine import _heap

        _heap.trimmer.every_s = 0.0     # after every task, however short (the pacing: test_heap.py)
        kept = []

        def resident_anon_mb() -> int:
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("RssAnon:"))

        def task(kind: str) -> int:
            if kind != "measure":
                pieces = [bytearray(100_000) for _ in range(2_000)]
                kept.append(pieces[-1])
                del pieces
                if kind == "free, then raise":
                    raise ValueError("the task's own error")
            return resident_anon_mb()
        return task

    from refine.core._heap import release_free_heap

    if not release_free_heap():
        pytest.skip("this C library has no malloc_trim (not glibc)")
    spec = WorkerSpec(factory=worker_factory, key="heap")
    with make_executor({"kind": "ray", "workers": 1}) as executor:
        def run(kind: str) -> int:
            return [result for _, result in executor.map(spec, [kind])][0]

        freed_but_resident = run("free")
        trimmed = run("measure")
        assert trimmed < freed_but_resident - 150
        with pytest.raises(ValueError, match="the task's own error"):
            run("free, then raise")
        assert run("measure") < trimmed + 50


def _kill_a_worker(executor: Any) -> None:
    os.kill(executor.worker_pids()[-1], signal.SIGKILL)


def _finished_pairs(cache: Path, n_pairs: int, chunk: int) -> int:
    """Training pairs whose feature chunks the cache's resume record lists as written."""
    import json

    state = json.loads(next(cache.rglob("done.json")).read_text())
    assert state["chunk"] == chunk
    return sum(min(hi * chunk, n_pairs) - lo * chunk for lo, hi in state["finished"])


def test_a_gradient_run_survives_a_killed_worker_and_a_killed_driver_and_resumes_exactly(
        cluster: Any, data: dict, in_process: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from refine.attribution.gradient import backend as gradient_backend

    chunk = CHUNK
    n_train = len(load_training([str(data["train"])]).unique_pairs())
    statistics_chunks = -(-min(GRADIENT["whiten_examples"], n_train) // chunk)

    def run(out: str, watched: Watched | None = None) -> Watched:
        watched = watched or Watched(make_executor({"kind": "ray", "workers": 2}))
        with monkeypatch.context() as patch:
            patch.setattr(gradient_backend, "_CHUNK", chunk)
            _run_with(data, tmp_path / out, "gradient", tmp_path / "cache", watched, patch, **GRADIENT)
        return watched

    # Results come in this order: the feature layout (1), the curvature statistics (2 chunks),
    # then the training features. A worker is killed after the first; the driver dies while
    # the training features are half done.
    killed = Watched(make_executor({"kind": "ray", "workers": 2}), kill_after=1, kill=_kill_a_worker,
                     stop_after=1 + statistics_chunks + 3)
    with pytest.raises(KeyboardInterrupt):
        run("run", killed)
    assert killed.executor.replaced >= 1          # the killed worker was replaced, its tasks redone
    finished = _finished_pairs(tmp_path / "cache", n_train, chunk)
    assert 0 < finished < n_train

    resumed = run("run")
    _same_bytes(in_process["gradient"], tmp_path / "run")
    # Nothing saved is computed again: not the curvature statistics (all done before the driver
    # died), not the training features' finished chunks; the eval answers are featurised on
    # every run (they are not cached).
    n_eval = len(load_eval(str(data["eval"])).items)
    assert "statistics" not in resumed.examples
    assert resumed.examples["features"] == (n_train - finished) + n_eval


def test_a_removed_node_loses_only_its_unfinished_work(cluster: Any, data: dict, in_process: dict,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from refine import embeddings

    def remove_a_node_with_a_worker(executor: Any) -> None:
        # One worker per node (each takes the node's one CPU); the head node stays.
        where = {node: pid for pid, node in executor.worker_locations()}
        victim = next(n for n in cluster.worker_nodes if n.node_id in where)
        cluster.remove_node(victim, allow_graceful=False)
        # Actor calls go straight to the worker process, which outlives its node's raylet for
        # a moment: wait until it is gone, so that the tasks it is given next are lost.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(where[victim.node_id], 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        # No node replaces it: the replacement worker waits for room that never comes, and
        # the surviving worker does the rest of the work alone.

    monkeypatch.setattr(embeddings, "_CHUNK", 16)     # many tasks, some left when the node goes
    watched = Watched(make_executor({"kind": "ray", "workers": 2}), kill_after=1,
                      kill=remove_a_node_with_a_worker)
    _run_with(data, tmp_path / "run", "embedding", tmp_path / "cache", watched, monkeypatch)
    assert watched.executor.replaced >= 1
    _same_bytes(in_process["embedding-16"], tmp_path / "run")


def test_resources_no_node_has_are_an_error_before_anything_is_written(cluster: Any, data: dict,
                                                                        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no node of the Ray cluster has CPU=1, GPU=1 for one worker \(its nodes: CPU 1") as caught:
        _collect(data, tmp_path / "run", "embedding", tmp_path / "cache",
                 executor={"kind": "ray", "resources": {"CPU": 1, "GPU": 1}})
    assert caught.value.key == "collect.executor.resources"
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("config, key, words", [
    ({"kind": "dask"}, "collect.executor.kind", "unknown executor 'dask'; available: inprocess, ray"),
    ({"kind": "ray", "workers": 0}, "collect.executor.workers", "must be an integer ≥ 1"),
    ({"kind": "ray", "resources": {"GPU": -1}}, "collect.executor.resources", "amounts ≥ 0"),
    ({"kind": "ray", "spot": True}, "collect.executor.spot", "unknown option of executor 'ray'"),
    ({"kind": "ray", "address": "nowhere"}, "collect.executor.address", "must be auto, ray://host:port"),
])
def test_bad_executor_settings_are_config_errors_naming_the_key(config: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        make_executor(config)
    assert caught.value.key == key


def test_a_worker_that_sees_other_model_files_refuses_to_work(tmp_path: Path) -> None:
    import shutil

    from refine.attribution.gradient import GradientOptions, gradient_worker
    from refine.core.embeddings import EmbeddingModel, text_encoder

    model = EmbeddingModel()
    with pytest.raises(ConfigError, match="differ from the ones the run was started with"):
        text_encoder(str(model.path), 64, "cpu", "a fingerprint of other files")
    copy = tmp_path / "tiny_lm"
    shutil.copytree(SAMPLE / "tiny_lm", copy)
    with pytest.raises(ConfigError, match=f"the model files at {copy} on .* differ") as caught:
        gradient_worker(GradientOptions(model=str(copy)), None, "the driver's fingerprint")
    assert caught.value.key == "backend_options.model"


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "refine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.parametrize("flags, words", [
    (["--executor", "dask"], "unknown executor 'dask'"),
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"],
     "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--workers", "3"], "--workers only apply to --executor ray"),
    (["--executor", "ray", "--worker-resources", "GPU"], "expected NAME=AMOUNT"),
])
def test_the_cli_refuses_bad_executor_flags_with_exit_2_and_writes_nothing(
        data: dict, tmp_path: Path, flags: list[str], words: str) -> None:
    done = _cli("collect", "--train", str(data["train"]), "--eval", str(data["eval"]),
                "--out", str(tmp_path / "run"), *flags)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and done.stderr.count("\n") <= 2
    assert not (tmp_path / "run").exists()


def test_a_recipe_run_on_the_cluster_this_machine_belongs_to_gives_the_in_process_results(
        cluster: Any, data: dict, in_process: dict, tmp_path: Path) -> None:
    """The issue's promise: the same recipe with ``collect.executor: {kind: ray, address: auto}``,
    run on a machine of a Ray cluster (Ray finds the cluster from RAY_ADDRESS, as on any node of
    a cluster started with `ray start`), gives the same collect files, flags and dataset."""
    import shutil

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""\
name: on-the-cluster
train: [{data['train']}]
eval: {data['eval']}
run_dir: run
collect:
  backend: embedding
  top_k: 5
  executor: {{kind: ray, address: auto, workers: 2}}
cluster: {{enabled: false}}
report: {{enabled: false}}
emit:
  out: run/refined
""", encoding="utf-8")

    def workers_ever_started() -> int:
        # The GCS's actor table, dead actors included (ray.util.state needs the dashboard).
        from ray._private import state

        return sum(1 for actor in state.actors().values() if actor["ActorClassName"] == "_Worker")

    before = workers_ever_started()
    done = _cli("run", str(recipe), "--quiet",
                env={"RAY_ADDRESS": cluster.address, "REFINE_CACHE_DIR": str(tmp_path / "cache"),
                     "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr
    assert workers_ever_started() == before + 2      # the recipe's two workers ran on this cluster
    run = tmp_path / "run"
    assert any((tmp_path / "cache" / "embeddings").rglob("*.npz"))   # encoded there, not read
    _same_bytes(in_process["embedding"], run)

    reference = tmp_path / "in-process"
    shutil.copytree(in_process["embedding"], reference)
    flag(reference, FlagSettings())
    emitted = emit(reference, tmp_path / "in-process-refined", EmitSettings())
    assert (run / "flags.csv").read_bytes() == (reference / "flags.csv").read_bytes()
    # `out: run/refined` has no .jsonl: a directory, with the one input's refined copy inside
    assert (run / "refined" / "train.jsonl").read_bytes() == Path(emitted.outputs[0]).read_bytes()
    assert Path(emitted.outputs[0]).read_bytes() != Path(data["train"]).read_bytes()   # pairs were removed


def test_the_cli_starts_a_local_ray_cluster_and_writes_what_in_process_writes(
        data: dict, in_process: dict, tmp_path: Path) -> None:
    done = _cli("collect", "--train", str(data["train"]), "--eval", str(data["eval"]), "--top-k", "5",
                "--out", str(tmp_path / "run"), "--executor", "ray", "--workers", "2", "--quiet",
                env={"REFINE_CACHE_DIR": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr
    _same_bytes(in_process["embedding"], tmp_path / "run")
    assert any((tmp_path / "cache" / "embeddings").rglob("*.npz"))   # encoded there, not read
