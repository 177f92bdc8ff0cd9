"""The official SeekrFlow SDK (`seekrai`) is the contract.

1. The SDK's own `client.explainability.get_influential_finetuning_data`, sync and async, talks
   to a real `refine serve` process: with a key, without one, with a wrong key, for an unknown
   model, and without an answer.
2. refine's client sends what the SDK sends for the same call — method, request target (path
   and query, byte for byte), `Authorization` and `x-team-id` — to a loopback server that records
   requests, for base URLs given as an argument or through $SEEKR_BASE_URL, with and without a
   trailing `/v1`. The SDK's sync and async methods differ in one point (the async one also
   sends `model_id` as a query parameter); refine's sync and async clients follow each.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import pytest

seekrai = pytest.importorskip("seekrai", reason="the official SDK is a test dependency (pip install -e '.[dev]')")
from seekrai import AsyncSeekrFlow, SeekrFlow  # noqa: E402
from seekrai.error import AuthenticationError, InvalidRequestError  # noqa: E402

from refine.seekrflow import AsyncSeekrFlowClient, SeekrFlowClient  # noqa: E402

from ..conftest import SAMPLE  # noqa: E402
from ..recording import Recorder, recording  # noqa: E402
from ..serve_process import refine_serve  # noqa: E402

TRAIN = str(SAMPLE / "train" / "support_faq.jsonl")
KEY = "sk-contract-0451"
QUESTION = "How do I download an invoice for last month?"
ANSWER = "Open Billing > Invoices and pick the month."


@pytest.fixture(scope="module")
def served_with_key():
    with refine_serve("--train", TRAIN, "--model-id", "ft-contract", "--api-key-env", "CONTRACT_KEY",
                      env={"CONTRACT_KEY": KEY}) as url:
        yield url


@pytest.fixture(scope="module")
def served_without_key():
    with refine_serve("--train", TRAIN, "--model-id", "ft-open") as url:
        yield url


@pytest.fixture(autouse=True)
def _no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEEKR_API_KEY", "SEEKR_BASE_URL", "SEEKR_TEAM_ID"):
        monkeypatch.delenv(name, raising=False)


def _check_response(response) -> None:
    assert response.version and response.results
    for result in response.results:
        assert set(result) >= {"id", "influence_level", "file_id", "messages"}
        assert result["influence_level"] in ("high", "medium", "low")
        assert result["messages"].startswith("Q: ") and "\nA: " in result["messages"]


@pytest.mark.parametrize("suffix", ["", "/v1", "/v1/"])
def test_the_sdk_gets_attributions_from_refine_serve_with_a_key(served_with_key: str, suffix: str) -> None:
    with SeekrFlow(api_key=KEY, base_url=served_with_key + suffix) as client:
        response = client.explainability.get_influential_finetuning_data(
            model_id="ft-contract", question=QUESTION, answer=ANSWER)
    _check_response(response)


def test_the_async_sdk_gets_the_same_attributions(served_with_key: str) -> None:
    async def both():
        async with AsyncSeekrFlow(api_key=KEY, base_url=served_with_key) as client:
            return await client.explainability.get_influential_finetuning_data(
                model_id="ft-contract", question=QUESTION, answer=ANSWER, system_prompt="Be brief.")

    response = asyncio.run(both())
    _check_response(response)
    with SeekrFlow(api_key=KEY, base_url=served_with_key) as client:
        sync = client.explainability.get_influential_finetuning_data(
            model_id="ft-contract", question=QUESTION, answer=ANSWER, system_prompt="Be brief.")
    assert sync.results == response.results


def test_the_sdk_reads_key_and_base_url_from_its_environment(served_with_key: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEKR_API_KEY", KEY)
    monkeypatch.setenv("SEEKR_BASE_URL", served_with_key + "/v1")
    with SeekrFlow() as client:
        _check_response(client.explainability.get_influential_finetuning_data(
            model_id="ft-contract", question=QUESTION, answer=ANSWER))


def test_a_server_without_a_key_answers_the_sdk_whatever_key_it_sends(served_without_key: str) -> None:
    with SeekrFlow(api_key="anything", base_url=served_without_key) as client:
        _check_response(client.explainability.get_influential_finetuning_data(
            model_id="ft-open", question=QUESTION, answer=ANSWER))

    async def call():
        async with AsyncSeekrFlow(api_key="anything", base_url=served_without_key) as client:
            return await client.explainability.get_influential_finetuning_data(
                model_id="ft-open", question=QUESTION, answer=ANSWER)
    _check_response(asyncio.run(call()))


@pytest.mark.parametrize("key,model,answer,error,words", [
    ("sk-wrong", "ft-contract", ANSWER, AuthenticationError, "wrong API key"),
    (KEY, "ft-unknown", ANSWER, InvalidRequestError, "unknown model 'ft-unknown'"),
    (KEY, "ft-contract", None, InvalidRequestError, "answer is required"),
])
def test_the_sdk_raises_its_own_errors_for_refusals(served_with_key: str, key: str, model: str,
                                                    answer: str | None, error: type, words: str) -> None:
    with SeekrFlow(api_key=key, base_url=served_with_key) as client:
        with pytest.raises(error, match=words):
            client.explainability.get_influential_finetuning_data(model_id=model, question=QUESTION,
                                                                  answer=answer)

    async def call():
        async with AsyncSeekrFlow(api_key=key, base_url=served_with_key) as client:
            await client.explainability.get_influential_finetuning_data(model_id=model,
                                                                        question=QUESTION, answer=answer)
    with pytest.raises(error, match=words):
        asyncio.run(call())


# --- what goes over the wire -------------------------------------------------------------------

BODY = json.dumps({"results": [{"id": "r1", "influence_level": "high", "file_id": "file-1",
                                "messages": "Q: q\nA: a"}], "answer": "a", "version": "v0"}).encode()


@pytest.fixture
def recorder():
    with recording(lambda method, path, body: (200, BODY)) as server:
        yield server


CALLS = [
    {"model_id": "ft-abc123", "question": "How do refunds work?"},
    {"model_id": "ft-abc123", "question": "What's 2+2 & why? 100% sure/certain", "answer": "4 = 2+2"},
    {"model_id": "meta-llama/Llama-3.1-8B", "question": "Café — naïve?\nSecond line\ttab",
     "system_prompt": "You are terse.", "answer": "Oui ; très."},
    {"model_id": "ft model #1", "question": "a=b&c=d?", "system_prompt": "", "answer": ""},
]


def _sdk_call(base_url: str | None, call: dict) -> None:
    with SeekrFlow(api_key=KEY, base_url=base_url) as client:
        client.explainability.get_influential_finetuning_data(**call)


async def _sdk_acall(base_url: str | None, call: dict) -> None:
    async with AsyncSeekrFlow(api_key=KEY, base_url=base_url) as client:
        await client.explainability.get_influential_finetuning_data(**call)


def _refine_call(base_url: str | None, call: dict) -> None:
    with SeekrFlowClient(KEY, base_url=base_url) as client:
        client.get_influential_finetuning_data(**call)


async def _refine_acall(base_url: str | None, call: dict) -> None:
    async with AsyncSeekrFlowClient(KEY, base_url=base_url) as client:
        await client.get_influential_finetuning_data(**call)


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
@pytest.mark.parametrize("through_env", [False, True], ids=["argument", "SEEKR_BASE_URL"])
def test_refine_sends_what_the_sdk_sends(recorder: Recorder, monkeypatch: pytest.MonkeyPatch,
                                         suffix: str, through_env: bool) -> None:
    monkeypatch.setenv("SEEKR_TEAM_ID", "team-7")
    base_url = None
    if through_env:
        monkeypatch.setenv("SEEKR_BASE_URL", recorder.url + suffix)
    else:
        base_url = recorder.url + suffix
    for call in CALLS:
        _sdk_call(base_url, call)
        _refine_call(base_url, call)
        asyncio.run(_sdk_acall(base_url, call))
        asyncio.run(_refine_acall(base_url, call))
    sent = recorder.requests
    assert len(sent) == 4 * len(CALLS)
    for n in range(len(CALLS)):
        sdk, ours, sdk_async, ours_async = sent[4 * n: 4 * n + 4]
        assert ours == sdk, CALLS[n]
        assert ours_async == sdk_async, CALLS[n]
        assert sdk["method"] == "GET" and sdk["authorization"] == KEY and sdk["team"] == "team-7"
        assert sdk["target"].startswith("/v1/flow/explain/models/") and "?question=" in sdk["target"]
        assert sdk_async["target"] == sdk["target"] + "&" + urlencode({"model_id": CALLS[n]["model_id"]})


def test_no_team_header_without_a_team(recorder: Recorder) -> None:
    _sdk_call(recorder.url, CALLS[0])
    _refine_call(recorder.url, CALLS[0])
    sdk, ours = recorder.requests
    assert sdk == ours and sdk["team"] is None
