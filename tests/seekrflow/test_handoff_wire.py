"""refine's upload and fine-tune requests are the official SDK's, on the wire.

A loopback server records every request: method, path and query, the headers that matter
(``Authorization``, ``x-team-id``, the content type without its boundary, the length), a
multipart body as its parts (name, filename, content type, bytes), any other body as its raw
bytes. The SDK's call and refine's are sent to it in turn and must record the same:
``files.upload(path, purpose=...)``, ``projects.create``, the sync ``fine_tuning.create`` with
and without a LoRA config (with one, both first ask ``GET v1/flow/models``),
``fine_tuning.retrieve`` and ``list_events``, ``files.retrieve``. Then the errors: a 4xx is
one SeekrFlowError with the service's words and no retry; a create is never sent twice after a
5xx, a read is; the key is never in a message.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("seekrai", reason="the official SDK is a test dependency (pip install -e '.[dev]')")
from seekrai import SeekrFlow  # noqa: E402
from seekrai.types import InfrastructureConfig, TrainingConfig  # noqa: E402
from seekrai.types.finetune import LoRAConfig  # noqa: E402

from refine.seekrflow.client import RetryPolicy, SeekrFlowError  # noqa: E402
from refine.seekrflow.flow import FlowClient, LoraConfig, TrainingRequest  # noqa: E402

from ..recording import Recorder, recording  # noqa: E402

KEY = "sk-wire-0451"
FILE = {"id": "file-0123", "object": "file", "filename": "train.jsonl", "purpose": "fine-tune", "bytes": 3}
PROJECT = {"id": 7, "name": "refine run", "description": "a project", "user_id": 1,
           "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
MODELS = {"object": "list", "data": [{"id": "base-7b", "name": "base-7b", "size": 1, "model_type": "Base Model",
                                      "supports_lora": True}]}
JOB = {"id": "ft-1", "status": "completed", "accel_type": "H100", "n_accel": 1, "model": "base-7b",
       "n_epochs": 2, "inference_available": True}
EVENTS = {"object": "list", "data": [{"object": "fine-tune-event", "epoch": 1, "loss": 0.5}]}


def _answer(method: str, path: str) -> tuple[int, dict]:
    if path == "/v1/flow/files" and method == "PUT":
        return 200, FILE
    if path.startswith("/v1/flow/files/"):
        return 200, FILE
    if path == "/v1/flow/projects":
        return 200, PROJECT
    if path == "/v1/flow/models":
        return 200, MODELS
    if path in ("/v1/flow/fine-tune", "/v1/flow/fine-tunes/ft-1"):
        return 200, JOB
    if path == "/v1/flow/fine-tunes/ft-1/events":
        return 200, EVENTS
    return 404, {"detail": "no such route"}


def _parts(content_type: str, body: bytes) -> list[dict]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [{"name": part.get_param("name", header="content-disposition"), "filename": part.get_filename(),
             "type": part.get("Content-Type"), "content": part.get_payload(decode=True)}
            for part in message.iter_parts()]


def _body(content_type: str, body: bytes) -> Any:
    return _parts(content_type, body) if content_type.startswith("multipart/") else body


@pytest.fixture
def recorder():
    with recording(lambda method, path, body: _answer(method, path), _body) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEEKR_API_KEY", "SEEKR_BASE_URL", "SEEKR_TEAM_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.refined.jsonl"
    path.write_bytes(b'{"messages": [{"role": "user", "content": "Caf\xc3\xa9?"}, '
                     b'{"role": "assistant", "content": "Oui."}]}\n' * 40)
    return path


def _pairs(sent: list[dict]) -> tuple[list[dict], list[dict]]:
    half = len(sent) // 2
    return sent[:half], sent[half:]


@pytest.mark.parametrize("suffix", ["", "/v1/"])
def test_an_upload_is_the_sdks_multipart_put(recorder: Recorder, train_file: Path,
                                             monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    monkeypatch.setenv("SEEKR_TEAM_ID", "team-7")
    for purpose in ("fine-tune", "pre-train"):
        with SeekrFlow(api_key=KEY, base_url=recorder.url + suffix) as sdk:
            sdk.files.upload(train_file, purpose=purpose)
        with FlowClient(KEY, base_url=recorder.url + suffix) as ours:
            assert ours.upload_file(train_file, purpose=purpose)["id"] == "file-0123"
    sdk_sent, ours_sent = recorder.requests[0::2], recorder.requests[1::2]
    assert ours_sent == sdk_sent
    first = sdk_sent[0]
    assert (first["method"], first["target"], first["authorization"], first["team"], first["content_type"]) == \
        ("PUT", "/v1/flow/files", KEY, "team-7", "multipart/form-data")
    assert [(p["name"], p["filename"], p["content"]) for p in first["body"]] == [
        ("purpose", None, b"fine-tune"), ("files", "train.refined.jsonl", train_file.read_bytes()),
        ("filename", "upload", b"train.refined.jsonl")]
    assert sdk_sent[1]["body"][0]["content"] == b"pre-train"


def test_project_fine_tune_and_follow_are_the_sdks_requests(recorder: Recorder, train_file: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEKR_TEAM_ID", "team-7")
    infra = InfrastructureConfig(accel_type="A100", n_accel=2, n_node=1)
    plain = TrainingConfig(training_files=["file-0123"], model="base-7b", n_epochs=2, learning_rate=2e-4,
                           batch_size=8, max_length=1024)
    lora = TrainingConfig(training_files=["file-0123", "file-0456"], model="base-7b", n_epochs=1,
                          learning_rate=1e-4, batch_size=4, max_length=512, experiment_name="refined",
                          lora_config=LoRAConfig(r=16, alpha=32, dropout=0.05))
    with SeekrFlow(api_key=KEY, base_url=recorder.url) as sdk:
        sdk.projects.create(name="refine run", description="a project")
        sdk.fine_tuning.create(project_id=7, training_config=plain, infrastructure_config=infra)
        sdk.fine_tuning.create(project_id=7, training_config=lora, infrastructure_config=infra)
        sdk.fine_tuning.retrieve("ft-1")
        sdk.fine_tuning.list_events("ft-1")
        sdk.files.retrieve("file-0123")
    with FlowClient(KEY, base_url=recorder.url) as ours:
        ours.create_project("refine run", "a project")
        ours.create_finetune(7, TrainingRequest(["file-0123"], "base-7b", 2, learning_rate=2e-4, batch_size=8,
                                                max_length=1024, accel_type="A100", n_accel=2))
        ours.create_finetune(7, TrainingRequest(["file-0123", "file-0456"], "base-7b", 1, learning_rate=1e-4,
                                                batch_size=4, max_length=512, experiment_name="refined",
                                                lora=LoraConfig(r=16, alpha=32, dropout=0.05),
                                                accel_type="A100", n_accel=2))
        ours.retrieve_finetune("ft-1")
        ours.list_events("ft-1")
        ours.retrieve_file("file-0123")
    sdk_sent, ours_sent = _pairs(recorder.requests)
    assert ours_sent == sdk_sent
    assert [(r["method"], r["target"]) for r in sdk_sent] == [
        ("POST", "/v1/flow/projects"), ("POST", "/v1/flow/fine-tune"), ("GET", "/v1/flow/models"),
        ("POST", "/v1/flow/fine-tune"), ("GET", "/v1/flow/fine-tunes/ft-1"),
        ("GET", "/v1/flow/fine-tunes/ft-1/events"), ("GET", "/v1/flow/files/file-0123")]
    assert all(r["authorization"] == KEY and r["team"] == "team-7" for r in sdk_sent)
    assert json.loads(sdk_sent[0]["body"]) == {"id": None, "name": "refine run", "description": "a project"}
    assert json.loads(sdk_sent[3]["body"])["training_config"]["lora_config"] == {
        "r": 16, "alpha": 32, "dropout": 0.05, "bias": "none", "extras": {}}
    assert sdk_sent[1]["content_type"] == "application/json"


def test_lora_on_a_model_the_service_does_not_list_is_refused_before_anything_starts(
        recorder: Recorder) -> None:
    with FlowClient(KEY, base_url=recorder.url) as ours:
        with pytest.raises(SeekrFlowError, match="'other-model' is not listed"):
            ours.create_finetune(7, TrainingRequest(["file-0123"], "other-model", 1, lora=LoraConfig()))
    assert [(r["method"], r["target"]) for r in recorder.requests] == [("GET", "/v1/flow/models")]


def test_a_refusal_is_one_error_with_the_services_words_and_no_retry(recorder: Recorder,
                                                                     train_file: Path) -> None:
    recorder.script = [400]
    with FlowClient(KEY, base_url=recorder.url, retry=RetryPolicy(max_retries=3, backoff_base=0)) as ours:
        with pytest.raises(SeekrFlowError, match="HTTP 400: the service says no") as caught:
            ours.create_finetune(7, TrainingRequest(["file-0123"], "base-7b", 1))
    assert len(recorder.requests) == 1 and KEY not in str(caught.value)
    recorder.script = [401]
    with FlowClient(KEY, base_url=recorder.url, api_key_env="MY_KEY") as ours:
        with pytest.raises(SeekrFlowError, match="refused .*MY_KEY") as caught:
            ours.upload_file(train_file)
    assert caught.value.fatal and KEY not in str(caught.value)


def test_a_create_is_not_sent_again_after_a_5xx_but_a_read_is(recorder: Recorder, train_file: Path) -> None:
    policy = RetryPolicy(max_retries=3, backoff_base=0)
    recorder.script = [502]
    with FlowClient(KEY, base_url=recorder.url, retry=policy) as ours:
        with pytest.raises(SeekrFlowError, match="HTTP 502"):
            ours.upload_file(train_file)
    assert len(recorder.requests) == 1
    recorder.script = [429, 503, 500]
    with FlowClient(KEY, base_url=recorder.url, retry=policy) as ours:
        assert ours.retrieve_finetune("ft-1")["status"] == "completed"
    assert len(recorder.requests) == 1 + 4
    recorder.script = [429]
    with FlowClient(KEY, base_url=recorder.url, retry=policy) as ours:
        assert ours.upload_file(train_file)["id"] == "file-0123"   # 429: the service did not take it
    assert [r["method"] for r in recorder.requests[-2:]] == ["PUT", "PUT"]
    assert recorder.requests[-1]["body"] == recorder.requests[-2]["body"]   # the whole file again
