"""SeekrFlow ``influential-finetuning-data`` over HTTP, sync and async, with retries.

``GET {base_url}/v1/flow/explain/models/{model_id}/influential-finetuning-data``
with query parameters ``question`` (required), ``system_prompt`` and ``answer`` (optional:
without it the service generates the answer with the deployed model and echoes it back).
The API key is sent as ``Authorization: Bearer <key>``; it is never logged, stored or put
into an exception message.

Retries: 408, 409, 429 and 5xx answers, timeouts and connection errors (a connection dropped
mid-body included) are retried with exponential backoff and full jitter, honouring a
``Retry-After`` header (seconds or an HTTP date). Other 4xx answers and malformed bodies are
not retried: asking again would get the same answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import BackendError
from ..records import LEVELS

__all__ = ["AsyncSeekrFlowClient", "InfluenceResponse", "InfluenceResult", "RetryPolicy",
           "SeekrFlowClient", "SeekrFlowError", "parse_response"]

DEFAULT_BASE_URL = "https://flow.seekr.com"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
ROUTE = "/v1/flow/explain/models/{model_id}/influential-finetuning-data"


class SeekrFlowError(BackendError):
    """A request failed for good (after retries, or for a reason retrying cannot fix)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 attempts: int = 1) -> None:
        self.status = status
        self.retryable = retryable
        self.attempts = attempts
        super().__init__(message)


@dataclass(frozen=True)
class InfluenceResult:
    id: str
    influence_level: str
    file_id: str | None
    messages: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def question_answer(self) -> tuple[str, str] | None:
        """The pair as (question, answer) from ``"Q: ...\\nA: ..."``, or None when not of that form."""
        text = self.messages
        if not text.startswith("Q:") or "\nA:" not in text:
            return None
        question, _, answer = text[2:].partition("\nA:")
        return question.strip(), answer.strip()


@dataclass(frozen=True)
class InfluenceResponse:
    results: list[InfluenceResult]
    answer: str | None
    version: str | None


def parse_response(body: Any) -> InfluenceResponse:
    """Validate a response body; unknown fields and versions are tolerated."""
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    raw_results = body.get("results")
    if not isinstance(raw_results, list):
        raise ValueError("'results' is missing or not a list")
    results = []
    for i, raw in enumerate(raw_results):
        if not isinstance(raw, dict):
            raise ValueError(f"results[{i}] is not an object")
        level = str(raw.get("influence_level", "")).lower()
        if level not in LEVELS:
            raise ValueError(f"results[{i}].influence_level is {raw.get('influence_level')!r}")
        messages = raw.get("messages")
        if not isinstance(messages, str):
            raise ValueError(f"results[{i}].messages is not a string")
        known = {"id", "influence_level", "file_id", "messages"}
        results.append(InfluenceResult(
            id=str(raw.get("id", "")), influence_level=level,
            file_id=raw.get("file_id") if isinstance(raw.get("file_id"), str) else None,
            messages=messages, extra={k: v for k, v in raw.items() if k not in known}))
    answer = body.get("answer")
    version = body.get("version")
    return InfluenceResponse(results, answer if isinstance(answer, str) else None,
                             str(version) if version is not None else None)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base: float = 0.5      # seconds; attempt n waits up to base · 2^n (full jitter)
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        return rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** attempt))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()


def _params(question: str, answer: str | None, system_prompt: str | None) -> dict[str, str]:
    params = {"question": question}
    if system_prompt is not None:
        params["system_prompt"] = system_prompt
    if answer is not None:
        params["answer"] = answer
    return params


class _RateLimiter:
    """At most `rate` request starts per second, spread evenly."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock() if rate else None

    async def wait(self) -> None:
        if self._lock is None:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


def _interpret(response: httpx.Response, attempts: int) -> InfluenceResponse:
    """Turn a response into a result, or raise SeekrFlowError saying whether to retry."""
    status = response.status_code
    if status in RETRY_STATUSES or status >= 500:
        raise SeekrFlowError(f"HTTP {status}", status=status, retryable=True, attempts=attempts)
    if status in (401, 403):
        raise SeekrFlowError(f"HTTP {status}: the API key was refused (check the environment "
                             "variable holding it)", status=status, attempts=attempts)
    if status >= 400:
        detail = response.text[:200].replace("\n", " ")
        raise SeekrFlowError(f"HTTP {status}: {detail}", status=status, attempts=attempts)
    try:
        return parse_response(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SeekrFlowError(f"malformed response body (not JSON: {exc})", status=status,
                             attempts=attempts) from None
    except ValueError as exc:
        raise SeekrFlowError(f"malformed response body ({exc})", status=status,
                             attempts=attempts) from None


class _Base:
    def __init__(self, api_key: str | None, base_url: str, timeout: float,
                 retry: RetryPolicy | None, auth_scheme: str, seed: int | None) -> None:
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"{auth_scheme} {api_key}".strip()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._rng = random.Random(seed)

    def _url(self, model_id: str) -> str:
        return self.base_url + ROUTE.format(model_id=quote(model_id, safe=""))

    def _outcome(self, attempt: int, response: httpx.Response | None,
                 error: Exception | None) -> InfluenceResponse | float:
        """The parsed result of an attempt, or how long to wait before the next one.

        Raises SeekrFlowError when there is no next one: a failure retrying cannot fix, or the
        last retry spent.
        """
        last = attempt == self.retry.max_retries
        if error is not None:
            if last:
                raise SeekrFlowError(f"{type(error).__name__} after {attempt + 1} attempts",
                                     retryable=True, attempts=attempt + 1)
            return self.retry.delay(attempt, None, self._rng)
        try:
            return _interpret(response, attempt + 1)
        except SeekrFlowError as exc:
            if not exc.retryable or last:
                raise
            return self.retry.delay(attempt, _retry_after(response), self._rng)

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(base_url={self.base_url!r})"


_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class SeekrFlowClient(_Base):
    """Blocking client, shaped like the SeekrFlow SDK's ``get_influential_finetuning_data``."""

    def __init__(self, api_key: str | None = None, *, base_url: str = DEFAULT_BASE_URL,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 auth_scheme: str = "Bearer", seed: int | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(api_key, base_url, timeout, retry, auth_scheme, seed)
        self._http = httpx.Client(headers=self._headers, timeout=timeout, transport=transport)

    def get_influential_finetuning_data(self, model_id: str, question: str, answer: str | None = None,
                                        system_prompt: str | None = None) -> InfluenceResponse:
        params = _params(question, answer, system_prompt)
        for attempt in range(self.retry.max_retries + 1):
            response, error = None, None
            try:
                response = self._http.get(self._url(model_id), params=params)
            except _TRANSPORT_ERRORS as exc:
                error = exc
            outcome = self._outcome(attempt, response, error)
            if isinstance(outcome, InfluenceResponse):
                return outcome
            time.sleep(outcome)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "SeekrFlowClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSeekrFlowClient(_Base):
    """asyncio client with bounded concurrency and an optional request-rate cap."""

    def __init__(self, api_key: str | None = None, *, base_url: str = DEFAULT_BASE_URL,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 concurrency: int = 8, rate: float | None = None, auth_scheme: str = "Bearer",
                 seed: int | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(api_key, base_url, timeout, retry, auth_scheme, seed)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(headers=self._headers, timeout=timeout, limits=limits,
                                       transport=transport)
        self._slots = asyncio.Semaphore(concurrency)
        self._rate = _RateLimiter(rate)
        self.retries = 0   # how many times any request was retried, for progress reports

    async def get_influential_finetuning_data(self, model_id: str, question: str,
                                              answer: str | None = None,
                                              system_prompt: str | None = None) -> InfluenceResponse:
        params = _params(question, answer, system_prompt)
        for attempt in range(self.retry.max_retries + 1):
            response, error = None, None
            async with self._slots:   # the slot is not held while waiting to retry
                await self._rate.wait()
                try:
                    response = await self._http.get(self._url(model_id), params=params)
                except _TRANSPORT_ERRORS as exc:
                    error = exc
            outcome = self._outcome(attempt, response, error)
            if isinstance(outcome, InfluenceResponse):
                return outcome
            self.retries += 1
            await asyncio.sleep(outcome)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncSeekrFlowClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
