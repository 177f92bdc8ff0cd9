"""`refine serve`: a real server process; the seekrflow backend through it gives the embedding flags."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from refine import CollectSettings, ConfigError, collect, flag
from refine.server import check_bind

from ..conftest import ROOT, SAMPLE

TRAIN = [str(SAMPLE / "train" / "support_faq.jsonl"), str(SAMPLE / "train" / "product_docs.jsonl")]
KEY = "serve-test-key-77"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SERVE_KEY": KEY}
    args = [sys.executable, "-m", "refine.cli", "serve", "--model-id", "northwind-ft",
            "--port", str(port), "--api-key-env", "SERVE_KEY"]
    for path in TRAIN:
        args += ["--train", path]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode())
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _get(url: str, **params):
    return httpx.get(f"{url}/v1/flow/explain/models/northwind-ft/influential-finetuning-data",
                     params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


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
    direct = flag(tmp_path / "direct").flagged_pairs[["file", "line"]]
    through = flag(tmp_path / "remote").flagged_pairs[["file", "line"]]
    assert sorted(map(tuple, through.values)) == sorted(map(tuple, direct.values))
    assert len(direct) == 13


def test_a_public_bind_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="without an API key"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "k")
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
