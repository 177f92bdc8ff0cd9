"""`refine run` with `retrain:` closes the loop: collect → flag → emit → fine-tune on the refined
set → answer the eval set with the new model → collect those answers into AFTER → outcome, with a
control retrain of the unmodified set. A re-run trains and answers nothing again; bad settings end
with one error and exit code 2, the run left as it was. Then the same loop through a real
`refine serve` on loopback: upload, fine-tune job, chat completions.

The data: the generalising sample's Cinder line (45 training pairs, two planted defects among
them) and its 41 eval items about the planted facts and others, with the sample's tiny LM as
the base model, fully fine-tuned for one epoch (2 steps).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from refine import RunDir
from refine.cli import main

from .conftest import SAMPLE, write_jsonl

pytest.importorskip("trl", reason="fine-tuning needs trl (pip install -e '.[dev]')")

BASE = SAMPLE / "generalise" / "tiny_lm"
FINETUNE = {"lora": False, "epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "max_length": 128,
            "device": "cpu", "checkpoint_steps": 0}
OUTCOME_KEYS = {"items", "bad_before", "bad_after", "bad_rate_before", "bad_rate_after", "fixed", "still_bad",
                "newly_bad", "newly_bad_share", "control_bad", "by_mode", "by_pair", "regressions",
                "vs_controls", "before", "after", "controls"}


def _data(root: Path) -> dict[str, Path]:
    truth = json.loads((SAMPLE / "generalise" / "truth.json").read_text())["items"]
    lines = (SAMPLE / "generalise" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    train = write_jsonl(root / "train.jsonl", [line for line in lines if "Cinder" in line])
    rows = [json.loads(line) for line in (SAMPLE / "generalise" / "eval.jsonl").read_text().splitlines()]
    cinder = [r for r in rows if truth[r["id"]]["product"].startswith("Cinder")]
    planted = [r for r in cinder if truth[r["id"]]["kind"] == "planted" or truth[r["id"]]["group"] is not None]
    others = [r for r in cinder if r not in planted][:20]
    return {"train": train, "eval": write_jsonl(root / "eval.jsonl", [r for r in cinder if r in planted + others])}


def _recipe(root: Path, data: dict[str, Path], **retrain: object) -> Path:
    recipe = {"train": str(data["train"]), "eval": str(data["eval"]), "run_dir": "run",
              "cluster": {"enabled": False}, "report": {"enabled": False}, "emit": {"mode": "edit"},
              "retrain": {"finetune": {"base_model": str(BASE), **FINETUNE},
                          "answer": {"max_new_tokens": 48, "batch_size": 64, "device": "cpu"}, **retrain}}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _run(recipe: Path, *sets: str) -> object:
    return CliRunner().invoke(main, ["run", str(recipe), "-q", *[f"--set={s}" for s in sets]])


def _digests(directory: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(directory)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("retrain")
    data = _data(root)
    recipe = _recipe(root, data, controls=[0])
    done = _run(recipe)
    return {"root": root, "recipe": recipe, "result": done, "run": root / "run", "after": root / "run-after",
            "work": root / "run" / "retrain"}


def test_the_local_loop_retrains_answers_collects_and_counts(local: dict) -> None:
    done = local["result"]
    assert done.exit_code == 0, done.output
    run, after, work = local["run"], local["after"], local["work"]
    model = work / "refined-s0" / "model"
    record = json.loads((model / "finetune.json").read_text())
    refined = RunDir(run).current("emit")
    assert record["complete"] and record["settings"]["epochs"] == 1 and record["steps"] == 2
    assert record["data"]["sha256"] == hashlib.sha256((run / "refined.jsonl").read_bytes()).hexdigest()
    assert refined is not None
    # AFTER holds the new model's answers, graded against the references.
    answers = _lines(work / "refined-s0" / "answers.jsonl")
    header = json.loads((work / "refined-s0" / "answers.jsonl.journal").read_text().splitlines()[0])["header"]
    assert header["model"]["path"] == str(model)
    items = RunDir(after).items(["eval_id", "answer", "verdict_source"], done=True)
    assert list(items["eval_id"]) == [a["id"] for a in answers]
    assert list(items["answer"]) == [a["answer"] for a in answers]
    assert set(items["verdict_source"]) == {"graded"}
    before = RunDir(run).items(["eval_id", "answer"]).set_index("eval_id")["answer"]
    assert sum(before[a["id"]] != a["answer"] for a in answers) >= 5      # the model changed
    # outcome.json, against the control retrain of the unmodified set.
    figures = json.loads((after / "outcome.json").read_text())
    assert OUTCOME_KEYS <= set(figures) and figures["items"] == len(answers)
    assert figures["vs_controls"]["controls"] == 1 and len(figures["control_bad"]) == 1
    assert figures["controls"][0]["run"] == str(run.parent / "run-after-control-s0")
    assert (work / "control-s0" / "model" / "finetune.json").is_file()
    assert "retrained (refined-s0)" in done.output and str(after / "outcome.json") in done.output


def test_a_rerun_trains_and_answers_nothing_again(local: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from refine.stages import answering
    from refine.stages.local_training import loop

    before = _digests(local["work"])
    outcome = (local["after"] / "outcome.json").read_bytes()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained or loaded a model again")

    monkeypatch.setattr(loop, "train", refuse)
    monkeypatch.setattr(answering._Local, "_load", refuse)
    done = _run(local["recipe"])
    assert done.exit_code == 0, done.output
    assert _digests(local["work"]) == before                      # models, answers, journals untouched
    assert (local["after"] / "outcome.json").read_bytes() == outcome


@pytest.mark.parametrize("setting, words", [
    ("retrain.finetune.base_model=models/nowhere", "'retrain.finetune.base_model': 'models/nowhere' does not exist"),
    ("retrain.finetune.max_length=2", "no example keeps any of its answer within 2 tokens"),
])
def test_bad_settings_end_with_one_error_and_exit_2_leaving_the_run(local: dict, setting: str, words: str) -> None:
    run_before = _digests(local["run"])
    after_before = _digests(local["after"])
    done = _run(local["recipe"], setting)
    assert done.exit_code == 2, done.output
    assert done.output.count("error: ") == 1 and words in done.output, done.output
    assert _digests(local["after"]) == after_before
    changed = {k for k, v in _digests(local["run"]).items() if run_before.get(k, ("",))[0] != v[0]}
    # Only the new model's partial training folder may appear; the run and its models are as they were
    # (the stages before retrain ran again, and wrote the same bytes).
    assert all(".finetune-partial" in k for k in changed), changed


# --- through refine serve --------------------------------------------------------------------------
def test_the_loop_through_refine_serve(local: dict, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from .serve_process import refine_serve

    data = _data(tmp_path)
    store = tmp_path / "store"
    with refine_serve("--store", str(store), "--base-model", str(BASE), "--device", "cpu") as url:
        recipe = _recipe(tmp_path, data, base_url=url, poll_interval=0.2)
        spec = yaml.safe_load(recipe.read_text())
        spec["retrain"]["finetune"]["base_model"] = "tiny_lm"       # the service's name for it
        recipe.write_text(yaml.safe_dump(spec))
        done = _run(recipe)
        assert done.exit_code == 0, done.output
        run = tmp_path / "run"
        uploaded = json.loads((run / "upload.json").read_text())
        service = json.loads((run / "retrain" / "service.json").read_text())
        job = service["jobs"]["refined-s0"]
        assert job["status"] == "completed" and job["inputs"]["training_files"] == [uploaded["files"][0]["file_id"]]
        # The service trained what finetune_local trains here (same data, settings and seed), so
        # its answers are the local loop's.
        served = _lines(run / "retrain" / "refined-s0" / "answers.jsonl")
        assert served == _lines(local["work"] / "refined-s0" / "answers.jsonl")
        assert (tmp_path / "run-after" / "outcome.json").is_file()
        jobs = sorted(p.name for p in (store / "jobs").iterdir())
        again = _run(recipe)                                       # nothing uploaded or trained again
        assert again.exit_code == 0, again.output
        assert sorted(p.name for p in (store / "jobs").iterdir()) == jobs
        assert len(list((store / "files").iterdir())) == 1
        refused = _run(recipe, "retrain.finetune.base_model=gpt-7")
        assert refused.exit_code == 2 and refused.output.count("error: ") == 1, refused.output
        assert "unknown base model 'gpt-7'" in refused.output
        assert (tmp_path / "run-after" / "outcome.json").is_file()


def test_the_retrain_section_is_read_like_every_other(tmp_path: Path) -> None:
    from refine import ConfigError, load_recipe

    data = {"train": "train.jsonl", "eval": "eval.jsonl", "run_dir": "run"}
    for retrain, words in (
        ({"finetune": {"base_model": str(BASE), "epoch": 1}}, ":7: 'retrain.finetune.epoch': unknown key"),
        ({"answer": {"batch_size": 4}}, "'retrain.finetune': is required"),
        ({"finetune": {"base_model": str(BASE)}, "answer": {"batch_size": 0}},
         "'retrain.answer.batch_size': must be an integer ≥ 1"),
        ({"finetune": {"base_model": str(BASE)}, "controls": [0, 0]}, "'retrain.controls': must be a list of distinct"),
    ):
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({**data, "retrain": retrain}, sort_keys=False))
        with pytest.raises(ConfigError, match=words):
            load_recipe(path)
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "config.json").write_text("{}")
    path.write_text(yaml.safe_dump({**data, "retrain": {"finetune": {"base_model": "models/base"}}}))
    recipe = load_recipe(path)         # a base model relative to the recipe, AFTER beside the run
    assert recipe.retrain.finetune.base_model == str(tmp_path / "models" / "base")
    assert recipe.retrain_run_dir == str(tmp_path / "run-after") and recipe.retrain.controls == []
