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
    assert server.auth_headers == {KEY}   # the bare key, as the official SDK sends it


@pytest.mark.parametrize("tag", ["429once", "500once", "drop", "hangonce", "badjsononce", "badshapeonce"])
def test_transient_failures_are_retried(server: FakeSeekrFlow, tag: str) -> None:
    """A garbled 2xx body is a passing fault of a proxy or the service, like a 5xx: the GET is
    idempotent, so it is asked again."""
    question = f"[{tag}] Where does person1 live?"
    with SeekrFlowClient(KEY, base_url=server.url, timeout=0.5, retry=fast_retry()) as client:
        assert client.get_influential_finetuning_data("m", question).results
    assert server.counts[question] == 2


def test_retry_after_is_honoured(server: FakeSeekrFlow) -> None:
    async def go() -> float:
        async with AsyncSeekrFlowClient(KEY, base_url=server.url, retry=fast_retry()) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await client.get_influential_finetuning_data("m", "[429once] person2")
            return loop.time() - start
    assert asyncio.run(go()) >= 0.95  # Retry-After: 1, against a 10 ms backoff base


@pytest.mark.parametrize("tag,model,requests,words,fatal", [
    ("badjson", "m", 2, "malformed response body", False),
    ("hang", "m", 2, "ReadTimeout after 2 attempts", False),
    ("401", "m", 1, "HTTP 401: the API key was refused", True),
    ("ok", "missing", 1, "HTTP 404: no such model", True),
])
def test_permanent_failures_raise_after_the_right_number_of_requests(
        server: FakeSeekrFlow, tag: str, model: str, requests: int, words: str, fatal: bool) -> None:
    question = f"[{tag}] person4"
    with SeekrFlowClient(KEY, base_url=server.url, timeout=0.5, retry=fast_retry(1)) as client:
        with pytest.raises(SeekrFlowError, match=words) as info:
            client.get_influential_finetuning_data(model, question)
    assert server.counts[question] == requests
    assert info.value.fatal is fatal
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
    tags = ["ok", "slow", "429once", "500once", "drop", "hang", "hangonce", "badjson", "badjsononce",
            "badshapeonce"]
    items = [{"id": f"{tag}-{n}", "question": f"[{tag}] Where does person{n} live?",
              "verdict": "bad" if n in (5, 6, 7) else "good"} for n in range(12) for tag in tags]
    items.append({"id": "no-answer", "question": "Where does person3 live?", "verdict": "good"})
    eval_path = write_jsonl(tmp_path / "eval.jsonl", items)
    data = {**data, "eval": eval_path}
    result = _collect(data, tmp_path / "run", server.url, concurrency=6)

    assert result.items == len(items)
    assert sorted(result.failed) == sorted(f"{t}-{n}" for n in range(12) for t in ("hang", "badjson"))
    once = {"ok": 1, "slow": 1, "hang": 2, "badjson": 2}
    for item in items[:-1]:
        assert server.counts[item["question"]] == once.get(item["id"].split("-")[0], 2), item["id"]
    table = pd.read_parquet(tmp_path / "run" / "items.parquet").set_index("eval_id")
    assert table.loc["no-answer", "answer"] == "Person3 lives in Lima."  # generated, echoed, kept
    assert "malformed response body" in table.loc["badjson-0", "error"]
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


def _cli_collect(data: dict, run: Path, url: str, *extra: str):
    from click.testing import CliRunner

    from refine.cli import main

    args = ["collect", "--backend", "seekrflow", "--base-url", url, "--train", str(data["train"]),
            "--eval", str(data["eval"]), "--out", str(run), "-q", "--timeout", "0.5",
            "--max-retries", "1", "--option", "backoff_base=0.01", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("model,words", [("m-1", "HTTP 401: the API key was refused"),
                                         ("missing", "HTTP 404: no such model")])
def test_a_refused_key_or_an_unknown_model_stops_the_run_at_once(
        server: FakeSeekrFlow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str,
        words: str) -> None:
    """The same answer would come for every item: one clear error, exit code 2, and only the
    requests already in flight were sent — not one per eval item."""
    monkeypatch.setenv("SEEKR_API_KEY", KEY if model == "missing" else "sk-wrong")
    data = people_dataset(tmp_path / "data")
    result = _cli_collect(data, tmp_path / "run", server.url, "--model-id", model, "--concurrency", "2")
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and words in result.output
    assert "a re-run resumes" in result.output and "sk-wrong" not in result.output
    assert sum(server.counts.values()) <= 2 * 4  # at most the queued tasks, never all 43 items
    assert not (tmp_path / "run" / "items.parquet").exists()


def test_the_key_fixed_a_rerun_resumes_after_a_refusal(server: FakeSeekrFlow, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = people_dataset(tmp_path / "data")
    monkeypatch.setenv("SEEKR_API_KEY", "sk-wrong")
    assert _cli_collect(data, tmp_path / "run", server.url, "--model-id", "m-1").exit_code == 2
    monkeypatch.setenv("SEEKR_API_KEY", KEY)
    result = _cli_collect(data, tmp_path / "run", server.url, "--model-id", "m-1")
    assert result.exit_code == 0, result.output
    assert "collected 43/43" in result.output


def test_items_left_failed_make_collect_exit_3_and_a_recipe_stop_before_flagging(
        server: FakeSeekrFlow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from refine import IncompleteRunError, load_recipe, run_recipe

    monkeypatch.setenv("SEEKR_API_KEY", KEY)
    data = people_dataset(tmp_path / "data")
    items = [{"id": "fine", "question": "Where does person1 live?", "verdict": "good"},
             {"id": "broken", "question": "[badjson] Where does person2 live?", "verdict": "good"}]
    data["eval"] = write_jsonl(tmp_path / "eval.jsonl", items)
    result = _cli_collect(data, tmp_path / "run", server.url, "--model-id", "m-1")
    assert result.exit_code == 3
    assert "1 items failed (run again to retry them): broken" in result.output

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({
        "train": str(data["train"]), "eval": str(data["eval"]), "run_dir": str(tmp_path / "r"),
        "collect": {"backend": "seekrflow", "backend_options": {
            "model_id": "m-1", "base_url": server.url, "timeout": 0.5, "max_retries": 1,
            "backoff_base": 0.01}}}))
    with pytest.raises(IncompleteRunError, match="1 of 2 eval items failed") as info:
        run_recipe(load_recipe(recipe), progress=False)
    assert info.value.exit_code == 3
    assert not (tmp_path / "r" / "flags.csv").exists()
