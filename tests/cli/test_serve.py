"""`refine serve`: a real server process; the seekrflow backend through it gives the embedding flags."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from refine import CollectSettings, ConfigError, collect, flag
from refine.service.server import check_bind

from ..conftest import ROOT, SAMPLE
from ..serve_process import refine_serve

TRAIN = [str(SAMPLE / "train" / "support_faq.jsonl"), str(SAMPLE / "train" / "product_docs.jsonl")]
KEY = "serve-test-key-77"


@pytest.fixture(scope="module")
def served():
    args = ["--model-id", "northwind-ft", "--api-key-env", "SERVE_KEY"]
    for path in TRAIN:
        args += ["--train", path]
    with refine_serve(*args, env={"SERVE_KEY": KEY}) as url:
        yield url


def _get(url: str, authorization: str = f"Bearer {KEY}", **params):
    return httpx.get(f"{url}/v1/flow/explain/models/northwind-ft/influential-finetuning-data",
                     params=params, headers={"Authorization": authorization}, timeout=30)


def test_the_key_is_accepted_bare_as_the_sdk_sends_it_or_as_bearer(served: str) -> None:
    params = {"question": "Refund?", "answer": "90 days."}
    assert _get(served, KEY, **params).status_code == 200
    assert _get(served, f"Bearer {KEY}", **params).status_code == 200
    assert _get(served, f"bearer  {KEY}", **params).status_code == 200
    for wrong in (f"Basic {KEY}", f"{KEY}x", f"Bearer {KEY[:-1]}", ""):
        assert _get(served, wrong, **params).status_code == 401, wrong


def test_serve_says_where_it_listens_and_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "refine.cli", "serve", "--train", TRAIN[0],
                               "--port", str(port)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"error: 'port': cannot listen on 127.0.0.1:{port}" in done.stderr


def test_health_openapi_and_the_seekrflow_schema(served: str) -> None:
    assert httpx.get(served + "/health").json()["pairs"] == 348
    schema = httpx.get(served + "/openapi.json").json()
    assert "/v1/flow/explain/models/{model_id}/influential-finetuning-data" in schema["paths"]
    body = _get(served, question="How long do I have to request a refund?",
                answer="You have 90 days to ask for a refund.").json()
    assert set(body) == {"results", "answer", "version"}
    assert body["results"][0]["messages"].startswith("Q: ") and body["results"][0]["influence_level"] == "high"


@pytest.mark.parametrize("params,status,words", [
    ({"question": "Refund?"}, 400, "answer is required"),
    ({"answer": "x"}, 422, "question"),
])
def test_bad_requests_get_4xx_with_a_json_detail(served: str, params: dict, status: int, words: str) -> None:
    response = _get(served, **params)
    assert response.status_code == status and words in str(response.json()["detail"])


def test_wrong_key_and_unknown_model(served: str) -> None:
    response = httpx.get(f"{served}/v1/flow/explain/models/northwind-ft/influential-finetuning-data",
                         params={"question": "q", "answer": "a"}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and response.json()["detail"]
    response = httpx.get(f"{served}/v1/flow/explain/models/other/influential-finetuning-data",
                         params={"question": "q", "answer": "a"}, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 404


def test_seekrflow_through_serve_flags_what_embedding_flags_directly(served: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEKR_API_KEY", KEY)
    eval_path = str(SAMPLE / "eval.jsonl")
    collect(TRAIN, eval_path, tmp_path / "direct", progress=False)
    remote = CollectSettings(backend="seekrflow", backend_options={
        "model_id": "northwind-ft", "base_url": served, "concurrency": 4})
    result = collect(TRAIN, eval_path, tmp_path / "remote", remote, progress=False)
    assert result.failed == [] and result.unmatched_results == 0
    direct = flag(tmp_path / "direct").flagged_pairs
    through = flag(tmp_path / "remote").flagged_pairs
    assert sorted(map(tuple, through[["file", "line"]].values)) == sorted(map(tuple, direct[["file", "line"]].values))
    assert len(direct) == 13
    # SeekrFlow gives levels and messages, no scores: the text evidence flags all the same.
    assert set(through["flagged_by"]) <= {"claim test", "claim repeated"} and through["claim"].notna().all()


def test_a_public_bind_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="without an API key"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "k")
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
