"""SeekrFlow files, projects, models and fine-tunes over HTTP, as the official SDK sends them.

Each method sends what ``seekrai`` 0.35.1 sends for the call it is named after (read from its
source: ``seekrai/resources/files.py``, ``projects.py``, ``models.py``, ``finetune.py``,
``seekrai/filemanager.py``, ``seekrai/abstract/api_requestor.py``):

=====================  ==========================================================================
method                 request
=====================  ==========================================================================
``upload_file``        ``files.upload(path, purpose=...)``: one multipart ``PUT v1/flow/files``
                       with the form field ``purpose``, the file as part ``files`` (its basename
                       as filename) and a part ``filename`` sent as a file named ``upload`` whose
                       content is the basename
``retrieve_file``      ``GET v1/flow/files/{id}``
``create_project``     ``POST v1/flow/projects``, JSON ``{"id": null, "name", "description"}``
``list_models``        ``GET v1/flow/models``
``create_finetune``    the sync ``fine_tuning.create``: ``POST v1/flow/fine-tune`` with the body
                       ``FinetuneRequest.model_dump(exclude_none=True)`` (same keys, same order,
                       same JSON text); with a LoRA config, ``GET v1/flow/models`` first, and the
                       base model must be listed (by id or name) with ``supports_lora: true``
``retrieve_finetune``  ``GET v1/flow/fine-tunes/{id}``
``list_events``        ``GET v1/flow/fine-tunes/{id}/events``
``chat_completion``    ``chat.completions.create(model=..., messages=..., max_tokens=...,
                       temperature=0)``: ``POST v1/inference/chat/completions`` with the body
                       ``ChatCompletionRequest.model_dump()`` (the SDK's defaults for the rest);
                       non-streaming, and retried as a read (it creates nothing)
=====================  ==========================================================================

Headers, base URL and key as :mod:`refine.seekrflow.client` (``Authorization: <key>`` bare,
``x-team-id`` from the team given or ``$SEEKR_TEAM_ID``; the key is never logged, stored or
put into a message).

Retries differ from the attribution client's in one point: a request that creates something
(an upload, a project, a fine-tune) is retried only where the service cannot have acted on
it: a connection that never opened, 408 and 429. A 5xx, a timeout waiting for the answer or a
connection dropped mid-answer might have left a file or a job behind, and sending it again
would make a second one, so that is an error naming what may exist. Reads (GET) are retried as
the attribution client retries: 408, 409, 429, 5xx, transport errors and garbled bodies, with
backoff and ``Retry-After``. 401/403 (the key is refused), 404 and every other 4xx (an unknown
base model, a rejected file) fail at once with the service's own words.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from .client import (RETRY_STATUSES, RetryPolicy, SeekrFlowError, _Base, _retry_after,
                     _TRANSPORT_ERRORS)

__all__ = ["ACCELERATORS", "FINAL_STATUSES", "FlowClient", "LoraConfig", "TrainingRequest",
           "finetune_body"]

#: The accelerator types the SDK's ``InfrastructureConfig`` accepts.
ACCELERATORS = ("GAUDI2", "GAUDI3", "A100", "A10", "H100", "MI300X")
#: Fine-tune statuses after which nothing changes any more.
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "deleted"})
PURPOSES = ("fine-tune", "preference-fine-tune", "reinforcement-fine-tune", "pre-train")
_CREATE_RETRY_STATUSES = frozenset({408, 429})
# Only these transport errors mean the request never reached the service.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class LoraConfig:
    """The SDK's ``LoRAConfig`` (its defaults)."""

    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    bias: str = "none"

    def to_json(self) -> dict[str, Any]:
        return {"r": int(self.r), "alpha": int(self.alpha), "dropout": float(self.dropout),
                "bias": self.bias, "extras": {}}


@dataclass(frozen=True)
class TrainingRequest:
    """What one fine-tune asks for: the SDK's ``TrainingConfig`` and ``InfrastructureConfig``."""

    training_files: list[str]
    model: str
    n_epochs: int
    learning_rate: float | None = None
    batch_size: int | None = None
    max_length: int | None = None
    experiment_name: str | None = None
    lora: LoraConfig | None = None
    accel_type: str = "H100"
    n_accel: int = 1
    n_node: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def finetune_body(project_id: int, request: TrainingRequest) -> dict[str, Any]:
    """``FinetuneRequest(...).model_dump(exclude_none=True)`` for `request`: the SDK's keys in
    the SDK's order, absent values left out."""
    training: dict[str, Any] = {"training_files": list(request.training_files), "model": request.model,
                                "n_epochs": int(request.n_epochs)}
    optional = {"learning_rate": None if request.learning_rate is None else float(request.learning_rate),
                "batch_size": request.batch_size, "experiment_name": request.experiment_name,
                "max_length": request.max_length}
    # TrainingConfig's field order: learning_rate, n_checkpoints, batch_size, experiment_name,
    # max_length, pre_train, fine_tune_type, lora_config, ...
    for key in ("learning_rate", "batch_size", "experiment_name", "max_length"):
        if optional[key] is not None:
            training[key] = optional[key]
    training["pre_train"] = False
    training["fine_tune_type"] = "STANDARD"
    if request.lora is not None:
        training["lora_config"] = request.lora.to_json()
    training.update(request.extra)
    return {"project_id": int(project_id), "training_config": training,
            "infrastructure_config": {"accel_type": request.accel_type, "n_accel": int(request.n_accel),
                                      "n_node": int(request.n_node)}}


def _detail(response: httpx.Response) -> str:
    """The service's own words about a refusal, on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300].replace("\n", " ")
            if value:
                return json.dumps(value)[:300]
    return response.text[:300].replace("\n", " ") or response.reason_phrase


class FlowClient(_Base):
    """Blocking client for the SeekrFlow calls of a fine-tuning hand-off."""

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float = 120.0, retry: RetryPolicy | None = None,
                 team_id: str | None = None, seed: int | None = None,
                 api_key_env: str = "SEEKR_API_KEY",
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(api_key, base_url, timeout, retry, team_id, seed)
        self.api_key_env = api_key_env   # named in the message when the key is refused
        self._http = httpx.Client(headers=self._headers, timeout=timeout, transport=transport)
        self.retries = 0

    # --- the calls ------------------------------------------------------------------------------
    def upload_file(self, path: str | Path, *, purpose: str = "fine-tune",
                    progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Upload one file (``files.upload``); the service's ``FileResponse`` as a dict."""
        from tqdm.utils import CallbackIOWrapper

        path = Path(path)
        if purpose not in PURPOSES:
            raise SeekrFlowError(f"unknown purpose {purpose!r}; one of {', '.join(PURPOSES)}")

        @contextmanager
        def body() -> Iterator[dict[str, Any]]:
            # The SDK's own shape: the open file (wrapped to count what is read, its name kept)
            # and the basename as a plain string, which httpx sends as a file named "upload".
            with path.open("rb") as fh:
                reader = CallbackIOWrapper(progress, fh, "read") if progress else fh
                yield {"files": {"files": reader, "filename": path.name}, "data": {"purpose": purpose}}

        found = self._send("PUT", "v1/flow/files", f"uploading {path.name}", creates=True, body=body)
        return self._require(found, "id", f"the upload of {path.name}")

    def retrieve_file(self, file_id: str) -> dict[str, Any]:
        return self._require(self._send("GET", f"v1/flow/files/{file_id}", f"file {file_id}"),
                             "id", f"file {file_id}")

    def create_project(self, name: str, description: str) -> dict[str, Any]:
        payload = {"id": None, "name": name, "description": description}
        found = self._send("POST", "v1/flow/projects", "creating a project", creates=True, json_body=payload)
        return self._require(found, "id", "the new project")

    def list_models(self) -> list[dict[str, Any]]:
        found = self._send("GET", "v1/flow/models", "the model list")
        data = found.get("data")
        if not isinstance(data, list):
            raise SeekrFlowError("malformed model list (no 'data' list)")
        return [m for m in data if isinstance(m, dict)]

    def create_finetune(self, project_id: int, request: TrainingRequest) -> dict[str, Any]:
        """Start a fine-tune (the sync ``fine_tuning.create``), checking LoRA support first
        where a LoRA config is given, as the SDK does."""
        if request.lora is not None:
            listed = next((m for m in self.list_models()
                           if (str(m["id"]) if m.get("id") is not None else None) == request.model
                           or m.get("name") == request.model), None)
            if listed is None:
                raise SeekrFlowError(f"model {request.model!r} is not listed at {self.base_url}; "
                                     "cannot enable LoRA (check --model)")
            if not listed.get("supports_lora", False):
                raise SeekrFlowError(f"model {request.model!r} does not support LoRA fine-tuning "
                                     "(leave out the --lora flags)")
        found = self._send("POST", "v1/flow/fine-tune", f"starting a fine-tune of {request.model}",
                           creates=True, json_body=finetune_body(project_id, request))
        return self._require(found, "id", "the new fine-tune")

    def retrieve_finetune(self, job_id: str) -> dict[str, Any]:
        return self._require(self._send("GET", f"v1/flow/fine-tunes/{job_id}", f"fine-tune {job_id}"),
                             "status", f"fine-tune {job_id}")

    def list_events(self, job_id: str) -> list[dict[str, Any]]:
        found = self._send("GET", f"v1/flow/fine-tunes/{job_id}/events", f"the events of {job_id}")
        data = found.get("data") or []
        return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []

    def chat_completion(self, model: str, messages: list[dict[str, Any]], *, max_tokens: int,
                        temperature: float = 0.0) -> dict[str, Any]:
        """One chat completion (``chat.completions.create``); the service's response as a dict,
        its first choice checked to hold a message."""
        payload = {"messages": messages, "model": model, "max_completion_tokens": None,
                   "max_tokens": max_tokens, "stop": None, "temperature": temperature, "top_p": 1.0,
                   "top_k": 5, "repetition_penalty": 1.0, "stream": False, "logprobs": False,
                   "top_logprobs": None, "echo": False, "n": 1, "safety_model": None,
                   "response_format": None, "tools": None}
        found = self._send("POST", "v1/inference/chat/completions", f"asking {model}", json_body=payload)
        choices = found.get("choices")
        message = choices[0].get("message") if isinstance(choices, list) and choices and \
            isinstance(choices[0], dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content", ""), (str, type(None))):
            raise SeekrFlowError(f"malformed chat completion from {model} (no choices[0].message)")
        return found

    # --- one request, with its retries -----------------------------------------------------------
    def _send(self, method: str, route: str, what: str, *, creates: bool = False,
              json_body: dict[str, Any] | None = None,
              body: Callable[[], Any] | None = None) -> dict[str, Any]:
        url = self.base_url + route
        content = None if json_body is None else json.dumps(json_body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        for attempt in range(self.retry.max_retries + 1):
            last = attempt == self.retry.max_retries
            try:
                if body is not None:
                    with body() as parts:
                        response = self._http.request(method, url, **parts)
                else:
                    response = self._http.request(method, url, content=content, headers=headers)
            except _TRANSPORT_ERRORS as exc:
                if creates and not isinstance(exc, _NOT_SENT):
                    raise SeekrFlowError(f"{what}: {type(exc).__name__} before the service answered; "
                                         "it may have acted on the request, so it is not sent again "
                                         "(check what exists before trying again)", retryable=False,
                                         attempts=attempt + 1) from None
                if last:
                    raise SeekrFlowError(f"{what}: {type(exc).__name__} after {attempt + 1} attempts",
                                         retryable=True, attempts=attempt + 1) from None
                self._wait(attempt, None)
                continue
            status = response.status_code
            retryable = (status in _CREATE_RETRY_STATUSES if creates
                         else status in RETRY_STATUSES or status >= 500)
            if retryable and not last:
                self._wait(attempt, _retry_after(response))
                continue
            if status >= 400:
                raise self._refusal(response, what, attempt + 1)
            if status == 204:
                return {}
            try:
                found = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                found, problem = None, f"not JSON: {exc}"
            else:
                problem = None if isinstance(found, dict) else f"a JSON {type(found).__name__}, not an object"
            if problem is None:
                return found
            if creates or last:
                raise SeekrFlowError(f"{what}: malformed response body ({problem})", status=status,
                                     attempts=attempt + 1)
            self._wait(attempt, None)
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        self.retries += 1
        time.sleep(self.retry.delay(attempt, retry_after, self._rng))

    def _refusal(self, response: httpx.Response, what: str, attempts: int) -> SeekrFlowError:
        status = response.status_code
        if status in (401, 403):
            return SeekrFlowError(f"{what}: HTTP {status}: the API key was refused (check the "
                                  f"environment variable {self.api_key_env}, and the team for a "
                                  "team-scoped key)", status=status, attempts=attempts, fatal=True)
        if status >= 500:
            return SeekrFlowError(f"{what}: HTTP {status} from {response.request.url.host}: "
                                  f"{_detail(response)}", status=status, retryable=True, attempts=attempts)
        return SeekrFlowError(f"{what}: HTTP {status}: {_detail(response)}", status=status,
                              attempts=attempts, fatal=status == 404)

    @staticmethod
    def _require(found: dict[str, Any], key: str, what: str) -> dict[str, Any]:
        if found.get(key) is None:
            raise SeekrFlowError(f"malformed response for {what} (no {key!r})")
        return found

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "FlowClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
