"""The SeekrFlow client and backend against a real HTTP server on loopback that misbehaves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest

from refine import CollectSettings, ConfigError, collect, flag
from refine.seekrflow import (AsyncSeekrFlowClient, RetryPolicy, SeekrFlowClient, SeekrFlowError,
                              parse_response)

from ..conftest import people_dataset, write_jsonl
from .fake_server import FakeSeekrFlow

KEY = "sk-test-5ecret-key-0042"


@pytest.fixture
def server():
    fake = FakeSeekrFlow(api_key=KEY).start()
    yield fake
    fake.shutdown()


def fast_retry(retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=retries, backoff_base=0.01)


def test_the_sync_client_returns_typed_results_and_sends_the_key(server: FakeSeekrFlow) -> None:
    with SeekrFlowClient(KEY, base_url=server.url) as client:
        response = client.get_influential_finetuning_data("m-1", "Where does person3 live?")
    assert response.version == "v0-test" and response.answer == "Person3 lives in Lima."
    first = response.results[0]
    assert (first.id, first.influence_level, first.file_id) == ("r-3", "high", "file-remote")
    assert first.question_answer == ("Where does person3 live?", "Person3 lives in Lima.")
    assert first.extra == {"score_hint": 0.9}
    assert server.auth_headers == {f"Bearer {KEY}"}


@pytest.mark.parametrize("tag,requests", [("429once", 2), ("500once", 2), ("drop", 2)])
def test_transient_failures_are_retried(server: FakeSeekrFlow, tag: str, requests: int) -> None:
    question = f"[{tag}] Where does person1 live?"
    with SeekrFlowClient(KEY, base_url=server.url, retry=fast_retry()) as client:
        assert client.get_influential_finetuning_data("m", question).results
    assert server.counts[question] == requests


def test_retry_after_is_honoured(server: FakeSeekrFlow) -> None:
    async def go() -> float:
        async with AsyncSeekrFlowClient(KEY, base_url=server.url, retry=fast_retry()) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await client.get_influential_finetuning_data("m", "[429once] person2")
            return loop.time() - start
    assert asyncio.run(go()) >= 0.95  # Retry-After: 1, against a 10 ms backoff base


@pytest.mark.parametrize("tag,requests,words", [("badjson", 1, "malformed response body"),
                                                ("401", 1, "HTTP 401"),
                                                ("hang", 2, "ReadTimeout after 2 attempts")])
def test_permanent_failures_raise_after_the_right_number_of_requests(server: FakeSeekrFlow, tag: str,
                                                                     requests: int, words: str) -> None:
    question = f"[{tag}] person4"
    with SeekrFlowClient(KEY, base_url=server.url, timeout=0.5, retry=fast_retry(1)) as client:
        with pytest.raises(SeekrFlowError, match=words) as info:
            client.get_influential_finetuning_data("m", question)
    assert server.counts[question] == requests
    assert KEY not in str(info.value) and KEY not in repr(client)


def test_parse_response_tolerates_unknown_fields_and_rejects_bad_levels() -> None:
    parsed = parse_response({"results": [], "answer": None, "version": "v9", "new": 1})
    assert parsed.results == [] and parsed.version == "v9"
    with pytest.raises(ValueError, match="influence_level"):
        parse_response({"results": [{"influence_level": "huge", "messages": "Q: a\nA: b"}]})


def _collect(data: dict, run: Path, url: str, **options) -> object:
    settings = CollectSettings(backend="seekrflow", backend_options={
        "model_id": "m-1", "base_url": url, "timeout": 0.5, "max_retries": 1,
        "backoff_base": 0.01, **options})
    return collect([str(data["train"])], str(data["eval"]), run, settings, progress=False)


def test_collect_survives_every_fault_and_lists_what_failed(server: FakeSeekrFlow, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEKR_API_KEY", KEY)
    data = people_dataset(tmp_path / "data")
    tags = ["ok", "slow", "429once", "500once", "drop", "hang", "badjson", "401"]
    items = [{"id": f"{tag}-{n}", "question": f"[{tag}] Where does person{n} live?",
              "verdict": "bad" if n in (5, 6, 7) else "good"} for n in range(12) for tag in tags]
    items.append({"id": "no-answer", "question": "Where does person3 live?", "verdict": "good"})
    eval_path = write_jsonl(tmp_path / "eval.jsonl", items)
    data = {**data, "eval": eval_path}
    result = _collect(data, tmp_path / "run", server.url, concurrency=6)

    assert result.items == len(items)
    assert sorted(result.failed) == sorted(f"{t}-{n}" for n in range(12) for t in ("hang", "badjson", "401"))
    expected = {"ok": 1, "slow": 1, "429once": 2, "500once": 2, "drop": 2, "hang": 2, "badjson": 1, "401": 1}
    for item in items[:-1]:
        assert server.counts[item["question"]] == expected[item["id"].split("-")[0]], item["id"]
    table = pd.read_parquet(tmp_path / "run" / "items.parquet").set_index("eval_id")
    assert table.loc["no-answer", "answer"] == "Person3 lives in Lima."  # generated, echoed, kept
    assert "HTTP 401" in table.loc["401-0", "error"]
    attributions = pd.read_parquet(tmp_path / "run" / "attributions.parquet")
    assert attributions["pair_id"].isna().sum() == result.unmatched_results > 0
    matched = attributions.dropna(subset=["pair_id"])
    assert (matched["source_id"].str.startswith("r-")).all()

    # a second run retries only the failed items
    before = dict(server.counts)
    again = _collect(data, tmp_path / "run", server.url, concurrency=6)
    assert again.resumed == len(items) - len(result.failed)
    retried = {q for q in server.counts if server.counts[q] != before.get(q, 0)}
    assert retried == {i["question"] for i in items if i["id"] in result.failed}


def test_results_map_back_to_local_lines_and_flag(server: FakeSeekrFlow, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEKR_API_KEY", KEY)
    data = people_dataset(tmp_path / "data")
    run = tmp_path / "run"
    result = _collect(data, run, server.url)
    assert result.failed == [] and result.unmatched_results == result.items
    assert sorted(flag(run).flagged_pairs["line"]) == data["poisoned_lines"]


def test_the_api_key_is_never_written_or_printed(server: FakeSeekrFlow, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("SEEKR_API_KEY", KEY)
    data = people_dataset(tmp_path / "data")
    run = tmp_path / "run"
    _collect(data, run, server.url)
    flag(run)
    for file in run.rglob("*"):
        if file.is_file():
            assert KEY.encode() not in file.read_bytes(), file
    captured = capsys.readouterr()
    assert KEY not in captured.out and KEY not in captured.err


def test_a_remote_service_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SEEKR_API_KEY", raising=False)
    data = people_dataset(tmp_path / "data")
    with pytest.raises(ConfigError, match="SEEKR_API_KEY"):
        _collect(data, tmp_path / "run", "https://flow.example.com")
    assert not (tmp_path / "run").exists()
