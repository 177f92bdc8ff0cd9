"""Close the loop: `refine serve` answers the official SDK's files, projects, models,
fine-tuning and chat calls, and `refine upload` / `refine finetune` hand a run's refined
dataset to it.

A real `refine serve` process on loopback, with a key, fine-tunes the tiny local model
(sample_data/generalise/tiny_lm) for one epoch; the SDK (sync and async clients) uploads,
lists, retrieves, downloads and deletes files, makes a project, starts fine-tunes (LoRA and
full), follows one to completed with its loss per epoch, cancels queued ones, and asks the new
model, which also answers the attribution route over its training file. Then refine's own CLI
does the same from a run directory: upload (the file ids recorded
in RUN/upload.json, the emit record and manifest untouched), fine-tune, and the errors that end
with exit 2.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("seekrai", reason="the official SDK is a test dependency (pip install -e '.[dev]')")
pytest.importorskip("trl", reason="fine-tuning needs trl and peft (pip install -e '.[dev]')")
from click.testing import CliRunner  # noqa: E402
from seekrai import AsyncSeekrFlow, SeekrFlow  # noqa: E402
from seekrai.error import AuthenticationError, InvalidRequestError  # noqa: E402
from seekrai.types import InfrastructureConfig, TrainingConfig  # noqa: E402
from seekrai.types.finetune import LoRAConfig  # noqa: E402

from refine import collect, emit, flag  # noqa: E402
from refine.cli import main  # noqa: E402
from refine.core.rundir import RunDir  # noqa: E402

from ..conftest import SAMPLE, people_dataset  # noqa: E402
from ..serve_process import refine_serve  # noqa: E402

KEY = "sk-loop-2718"
BASE = SAMPLE / "generalise" / "tiny_lm"
INFRA = InfrastructureConfig(accel_type="H100", n_accel=1)


@pytest.fixture(autouse=True)
def _no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEEKR_API_KEY", "SEEKR_BASE_URL", "SEEKR_TEAM_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOOP_KEY", KEY)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loop")
    lines = (SAMPLE / "generalise" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("store")
    with refine_serve("--store", str(store), "--base-model", str(BASE), "--device", "cpu",
                      "--api-key-env", "LOOP_KEY", env={"LOOP_KEY": KEY}) as url:
        yield {"url": url, "store": store}


def _client(served: dict) -> SeekrFlow:
    return SeekrFlow(api_key=KEY, base_url=served["url"])


def _wait(client: SeekrFlow, job_id: str, timeout: float = 180) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.retrieve(job_id)
        if job.status.value in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"{job_id} did not finish")


@pytest.fixture(scope="module")
def trained(served: dict, data: Path) -> dict:
    """A LoRA fine-tune started by the sync SDK, followed to its end."""
    with _client(served) as client:
        upload = client.files.upload(data / "train.jsonl", purpose="fine-tune")
        project = client.projects.create(name="loop project", description="closing the loop")
        config = TrainingConfig(training_files=[upload.id], model="tiny_lm", n_epochs=1, batch_size=4,
                                lora_config=LoRAConfig(r=8, alpha=16, dropout=0.0))
        job = client.fine_tuning.create(project_id=project.id, training_config=config,
                                        infrastructure_config=INFRA)
        assert job.status.value == "pending" and job.lora_config.r == 8
        done = _wait(client, job.id)
    return {"file": upload, "project": project, "job": done}


# --- files ---------------------------------------------------------------------------------------
def test_the_sdk_uploads_lists_retrieves_downloads_and_deletes_a_file(served: dict, data: Path,
                                                                      tmp_path: Path) -> None:
    source = data / "train.jsonl"
    with _client(served) as client:
        uploaded = client.files.upload(source, purpose="fine-tune")
        assert (uploaded.filename, uploaded.bytes, uploaded.purpose.value, uploaded.type.value) == \
            ("train.jsonl", source.stat().st_size, "fine-tune", "jsonl")
        assert uploaded.id in [f.id for f in client.files.list().data]
        assert uploaded.id in [f.id for f in client.files.list(purpose="fine-tune", sort_order="desc").data]
        assert client.files.list(purpose="pre-train").data == []
        assert client.files.retrieve(uploaded.id) == uploaded
        got = client.files.retrieve_content(uploaded.id, output=tmp_path / "back.jsonl")
        assert got.size == source.stat().st_size and (tmp_path / "back.jsonl").read_bytes() == source.read_bytes()
        assert client.files.delete(uploaded.id).deleted is True
        assert uploaded.id not in [f.id for f in client.files.list().data]
        with pytest.raises(InvalidRequestError, match="no file"):
            client.files.retrieve(uploaded.id)


def test_the_async_sdk_does_the_same(served: dict, data: Path, tmp_path: Path) -> None:
    source = data / "train.jsonl"

    async def round_trip():
        async with AsyncSeekrFlow(api_key=KEY, base_url=served["url"]) as client:
            # The async client has no single upload; its bulk upload is another route.
            with SeekrFlow(api_key=KEY, base_url=served["url"]) as sync:
                uploaded = sync.files.upload(source)
            listed = await client.files.list(limit=50)
            retrieved = await client.files.retrieve(uploaded.id)
            got = await client.files.retrieve_content(uploaded.id, output=tmp_path / "back.jsonl")
            deleted = await client.files.delete(uploaded.id)
            return uploaded, listed, retrieved, got, deleted

    uploaded, listed, retrieved, got, deleted = asyncio.run(round_trip())
    assert uploaded.id in [f.id for f in listed.data] and retrieved == uploaded
    assert got.size == source.stat().st_size and (tmp_path / "back.jsonl").read_bytes() == source.read_bytes()
    assert deleted.deleted is True and deleted.id == uploaded.id


def test_files_it_cannot_train_on_a_wrong_key_and_odd_ids_are_refused(served: dict, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "q"}, '
                                        '{"role": "assistant", "content": "a"}]}\nnot json\n')
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with _client(served) as client:
        with pytest.raises(InvalidRequestError, match="must be jsonl or parquet"):
            client.files.upload(tmp_path / "notes.txt")
        with pytest.raises(InvalidRequestError, match="bad.jsonl: line 2"):
            client.files.upload(tmp_path / "bad.jsonl")
        with pytest.raises(InvalidRequestError, match="empty"):
            client.files.upload(tmp_path / "empty.jsonl")
        before = {f.id for f in client.files.list().data}
    with SeekrFlow(api_key="sk-wrong", base_url=served["url"]) as client:
        with pytest.raises(AuthenticationError):
            client.files.list()
        with pytest.raises(AuthenticationError):
            client.files.upload(tmp_path / "bad.jsonl")
    for odd in ("..%2F..%2Fprojects%2F1.json", "file-..", "%2e%2e", "file-" + "0" * 31 + "g"):
        answer = httpx.get(f"{served['url']}/v1/flow/files/{odd}/content", headers={"Authorization": KEY})
        assert answer.status_code == 404, odd
    with _client(served) as client:
        assert {f.id for f in client.files.list().data} == before   # nothing refused was kept
    # An uploaded name with path parts is kept as its last part, inside the store.
    answer = httpx.put(f"{served['url']}/v1/flow/files", headers={"Authorization": KEY},
                       data={"purpose": "fine-tune"},
                       files={"files": ("../../escape.jsonl", (SAMPLE / "generalise" / "train.jsonl").read_bytes())})
    assert answer.status_code == 200 and answer.json()["filename"] == "escape.jsonl"
    assert not list(served["store"].parent.glob("escape.jsonl"))
    assert len(list(served["store"].rglob("escape.jsonl"))) == 1


# --- projects, fine-tunes, models, chat -----------------------------------------------------------
def test_projects_are_created_listed_and_retrieved(served: dict, trained: dict) -> None:
    with _client(served) as client:
        project = client.projects.retrieve(trained["project"].id)
        assert (project.name, project.description) == ("loop project", "closing the loop")
        listed = {p.id: p for p in client.projects.list().data}
        assert listed[project.id].runs >= 1
        with pytest.raises(InvalidRequestError, match="no project 999"):
            client.projects.retrieve(999)

    async def alist():
        async with AsyncSeekrFlow(api_key=KEY, base_url=served["url"]) as client:
            return await client.projects.list()
    assert project.id in [p.id for p in asyncio.run(alist()).data]


def test_questions_arriving_together_for_a_model_not_loaded_yet_are_all_answered(
        served: dict, trained: dict) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def ask(_: int) -> str:
        with _client(served) as client:
            reply = client.chat.completions.create(model=trained["job"].id, max_tokens=8,
                                                   messages=[{"role": "user", "content": "Aurora Max weight?"}])
        return reply.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    assert len(set(answers)) == 1                       # greedy: one model, loaded once, one answer


def test_a_lora_fine_tune_completes_with_its_loss_per_epoch_and_the_new_model_answers(
        served: dict, trained: dict) -> None:
    job = trained["job"]
    assert job.status.value == "completed" and job.inference_available
    with _client(served) as client:
        events = client.fine_tuning.list_events(job.id).data
        losses = [(e.epoch, e.loss) for e in events if e.loss is not None]
        assert len(losses) == 1 and losses[0][0] == 1 and losses[0][1] > 0
        assert job.id in [j.id for j in client.fine_tuning.list().data]
        models = {m.id: m for m in client.models.list().data}
        assert models["tiny_lm"].model_type == "Base Model" and models[job.id].model_type == "Fine-tuned Run"
        ask = dict(model=job.id, messages=[{"role": "system", "content": "You are the Northwind Devices support "
                                            "assistant."}, {"role": "user", "content": "Aurora Max weight?"}],
                   max_tokens=24)
        first = client.chat.completions.create(**ask)
        again = client.chat.completions.create(**ask)
        assert first.choices[0].message.content and first.choices[0].message.content == again.choices[0].message.content
        assert first.model == job.id and first.usage.completion_tokens <= 24
        with pytest.raises(InvalidRequestError, match="no model"):
            client.chat.completions.create(model="ft-unknown", messages=[{"role": "user", "content": "hi"}])
    raw = httpx.get(f"{served['url']}/v1/flow/models", headers={"Authorization": KEY}).json()["data"]
    assert next(m for m in raw if m["id"] == "tiny_lm")["supports_lora"] is True

    async def aask():
        async with AsyncSeekrFlow(api_key=KEY, base_url=served["url"]) as client:
            return (await client.chat.completions.create(**ask), await client.fine_tuning.list_events(job.id),
                    await client.fine_tuning.retrieve(job.id))
    answer, aevents, ajob = asyncio.run(aask())
    assert answer.choices[0].message.content == first.choices[0].message.content
    assert aevents.data == events and ajob.status.value == "completed"


def test_the_new_model_answers_the_attribution_route_with_its_uploaded_file(served: dict, trained: dict) -> None:
    with _client(served) as client:
        response = client.explainability.get_influential_finetuning_data(
            model_id=trained["job"].id, question="Aurora Max weight?", answer="Aurora Max weight: 850 grams.")
        assert response.results and {r["file_id"] for r in response.results} == {trained["file"].id}
        assert response.results[0]["messages"] == "Q: Aurora Max weight?\nA: Aurora Max weight: 850 grams."
        with pytest.raises(InvalidRequestError, match="attributes for no model"):
            client.explainability.get_influential_finetuning_data(model_id="ft-nope", question="q", answer="a")


def test_the_async_sdk_starts_a_full_fine_tune_and_both_clients_cancel_queued_ones(
        served: dict, trained: dict) -> None:
    config = TrainingConfig(training_files=[trained["file"].id], model="tiny_lm", n_epochs=1, batch_size=4)
    project = trained["project"].id

    async def start_and_cancel():
        async with AsyncSeekrFlow(api_key=KEY, base_url=served["url"]) as client:
            full = await client.fine_tuning.create(project_id=project, training_config=config,
                                                   infrastructure_config=INFRA)   # POST fine-tunes
            queued = await client.fine_tuning.create(project_id=project, training_config=config,
                                                     infrastructure_config=INFRA)
            cancelled = await client.fine_tuning.cancel(queued.id)                 # POST .../cancel
            return full, cancelled

    full, cancelled = asyncio.run(start_and_cancel())
    assert full.lora_config is None and cancelled.status.value == "cancelled"
    with _client(served) as client:
        queued = client.fine_tuning.create(project_id=project, training_config=config, infrastructure_config=INFRA)
        assert client.fine_tuning.cancel(queued.id).status.value == "cancelled"                # PUT .../cancel
        with pytest.raises(InvalidRequestError, match="is cancelled"):
            client.fine_tuning.cancel(queued.id)
        done = _wait(client, full.id)
        assert done.status.value == "completed"
        assert client.fine_tuning.retrieve(cancelled.id).status.value == "cancelled"
        answer = client.chat.completions.create(model=full.id, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=8)
        assert answer.choices[0].finish_reason is not None


def test_fine_tunes_it_cannot_run_are_refused(served: dict, trained: dict) -> None:
    project, file_id = trained["project"].id, trained["file"].id
    with _client(served) as client:
        for config, words in (
            (TrainingConfig(training_files=[file_id], model="llama-70b", n_epochs=1), "unknown base model 'llama-70b'"),
            (TrainingConfig(training_files=[file_id], model="llama-70b", n_epochs=1, lora_config=LoRAConfig()),
             "not found; cannot enable LoRA"),   # the SDK's own check against models.list
            (TrainingConfig(training_files=["file-" + "0" * 32], model="tiny_lm", n_epochs=1), "no training file"),
        ):
            with pytest.raises(InvalidRequestError, match=words):
                client.fine_tuning.create(project_id=project, training_config=config, infrastructure_config=INFRA)
        with pytest.raises(InvalidRequestError, match="no project 424242"):
            client.fine_tuning.create(project_id=424242, training_config=TrainingConfig(
                training_files=[file_id], model="tiny_lm", n_epochs=1), infrastructure_config=INFRA)


# --- refine upload / refine finetune ---------------------------------------------------------------
@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("handoff")
    people = people_dataset(root / "data")
    run = root / "run"
    collect([str(people["train"])], str(people["eval"]), run, progress=False)
    flag(run)
    result = emit(run, root / "refined.jsonl")
    return {"run": run, "root": root, "refined": result.outputs[0], "manifest": result.manifest}


def _refine(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_refine_uploads_a_runs_refined_dataset_and_fine_tunes_on_it(served: dict, emitted: dict) -> None:
    run, url = emitted["run"], served["url"]
    emit_record = RunDir(run).record("emit")
    manifest = Path(emitted["manifest"]).read_bytes()
    done = _refine("upload", str(run), "--base-url", url, "--api-key-env", "LOOP_KEY", "-q")
    assert done.exit_code == 0, done.output
    uploaded = json.loads((run / "upload.json").read_text())
    assert KEY not in (run / "upload.json").read_text()
    file_id = uploaded["files"][0]["file_id"]
    assert uploaded["emit"] == emit_record["digest"] and uploaded["base_url"] == url + "/"
    assert uploaded["files"][0]["sha256"] == hashlib.sha256(Path(emitted["refined"]).read_bytes()).hexdigest()
    # Neither the emit record nor the manifest changed: the report and re-runs still trust them.
    assert RunDir(run).record("emit") == emit_record and RunDir(run).is_current("emit")
    assert Path(emitted["manifest"]).read_bytes() == manifest
    with _client(served) as client:
        assert client.files.retrieve(file_id).bytes == Path(emitted["refined"]).stat().st_size

    done = _refine("finetune", "--run", str(run), "--model", "tiny_lm", "--epochs", "1", "--batch-size", "16",
                   "--no-lora", "--base-url", url, "--api-key-env", "LOOP_KEY", "--poll-interval", "0.2")
    assert done.exit_code == 0, done.output
    record = json.loads((run / "finetune.json").read_text())
    assert record["status"] == "completed" and record["training_files"] == [file_id]
    assert f"fine-tune {record['job_id']} completed" in done.output and "next: ask it" in done.output
    with _client(served) as client:
        job = client.fine_tuning.retrieve(record["job_id"])
        assert job.lora_config is None and job.batch_size == 16 and job.project_id == record["project_id"]
        assert client.chat.completions.create(model=job.id, messages=[{"role": "user", "content": "Where does "
                                              "person1 live?"}], max_tokens=12).choices[0].message.content is not None


def test_refine_finetune_ends_with_one_error_and_exit_2(served: dict, emitted: dict, tmp_path: Path) -> None:
    url = served["url"]
    with _client(served) as client:
        file_id = client.files.upload(emitted["refined"]).id
    common = ["--base-url", url, "--api-key-env", "LOOP_KEY", "--poll-interval", "0.2", "--epochs", "1"]
    for args, words in (
        (["--file-id", file_id, "--model", "gpt-7", "--no-lora"], "HTTP 400: unknown base model 'gpt-7'"),
        (["--file-id", file_id, "--model", "gpt-7"], "model 'gpt-7' is not listed"),   # LoRA: checked first
        (["--file-id", file_id, "--model", "tiny_lm", "--max-length", "2", "--no-lora"],
         "failed: 'finetune.max_length': no example keeps any of its answer within 2 tokens"),
        (["--file-id", "file-" + "1" * 32, "--model", "tiny_lm"], "no training file"),
    ):
        done = CliRunner().invoke(main, ["finetune", *args, *common])
        assert done.exit_code == 2, done.output
        assert done.output.count("error: ") == 1 and words in done.output, done.output
        assert KEY not in done.output
    done = CliRunner().invoke(main, ["upload", str(emitted["refined"]), "--base-url", url,
                                     "--api-key-env", "NOT_SET_ANYWHERE"])
    assert done.exit_code == 2 and "HTTP 401: the API key was refused" in done.output
    # A run uploaded elsewhere, or emitted again since, is not trained on by mistake.
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(emitted["run"], copy)
    (copy / "upload.json").write_text(json.dumps({"base_url": url + "/", "emit": "0" * 64,
                                                  "files": [{"file_id": file_id}]}))
    done = CliRunner().invoke(main, ["finetune", "--run", str(copy), "--model", "tiny_lm", *common])
    assert done.exit_code == 2 and "uploaded an earlier emit of this run" in done.output


def test_refine_finetune_local_trains_here_under_the_run_directory(emitted: dict, tmp_path: Path) -> None:
    done = _refine("finetune", "--local", "--run", str(emitted["run"]), "--model", str(BASE), "--epochs", "1",
                   "--batch-size", "16", "--device", "cpu", "-q")
    assert done.exit_code == 0, done.output
    model = emitted["run"] / "model"
    record = json.loads((model / "finetune.json").read_text())
    assert record["complete"] and record["output"]["adapter"] and (model / "adapter_config.json").is_file()
    assert record["data"]["sha256"] == hashlib.sha256(Path(emitted["refined"]).read_bytes()).hexdigest()
    assert f"--adapter {model}" in done.output
    done = CliRunner().invoke(main, ["finetune", "--local", "--file-id", "file-1", "--model", str(BASE)])
    assert done.exit_code == 2 and "not uploaded ids" in done.output
