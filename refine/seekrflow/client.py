"""SeekrFlow ``influential-finetuning-data`` over HTTP, sync and async, with retries.

The request is the one the official SDK (``seekrai``, read from its source:
``seekrai/client.py``, ``seekrai/utils/api_helpers.py``,
``seekrai/resources/explainability.py``, ``seekrai/abstract/api_requestor.py``) sends for
``client.explainability.get_influential_finetuning_data``:

* ``GET {base}v1/flow/explain/models/{model_id}/influential-finetuning-data?{query}``, where
  ``base`` is the base URL given, else ``$SEEKR_BASE_URL``, else ``https://flow.seekr.com``,
  with a trailing ``/vN`` removed and a trailing ``/`` ensured; the model id goes into the path
  as it is; the query is ``urlencode`` of ``question``, ``system_prompt``, ``answer`` in that
  order with the absent ones left out;
* ``Authorization: <key>`` — the bare key, no ``Bearer`` scheme;
* ``x-team-id: <team>`` when a team is given or ``$SEEKR_TEAM_ID`` is set.

The key is never logged, stored or put into an exception message.

Retries (the request is an idempotent GET): 408, 409, 429 and 5xx answers, timeouts,
connection errors (a connection dropped mid-body included) and 2xx answers whose body is not
the documented JSON (a garbled or truncated body from a proxy or the service) are retried with
exponential backoff and full jitter, honouring a ``Retry-After`` header (seconds or an HTTP
date), at most ``max_retries`` times. 401/403 (the key is refused) and 404 (no such model)
are *fatal*: they would be the same for every question, so a collection stops at once. Other
4xx answers fail that one request without retrying.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from .._version import __version__
from ..errors import BackendError
from ..formats.records import LEVELS

__all__ = ["AsyncSeekrFlowClient", "InfluenceResponse", "InfluenceResult", "RetryPolicy",
           "SeekrFlowClient", "SeekrFlowError", "parse_response", "request_target",
           "resolve_base_url"]

DEFAULT_BASE_URL = "https://flow.seekr.com"
BASE_URL_ENV = "SEEKR_BASE_URL"
TEAM_ENV = "SEEKR_TEAM_ID"
TEAM_HEADER = "x-team-id"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
ROUTE = "v1/flow/explain/models/{model_id}/influential-finetuning-data"


class SeekrFlowError(BackendError):
    """A request failed for good (after retries, or for a reason retrying cannot fix).

    ``fatal``: every other request would fail the same way (the key is refused, the model does
    not exist), so whoever is sending many should stop.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 attempts: int = 1, fatal: bool = False) -> None:
        self.status = status
        self.retryable = retryable
        self.attempts = attempts
        self.fatal = fatal
        super().__init__(message)


def resolve_base_url(base_url: str | None = None) -> str:
    """The base URL as the SDK forms it: the argument, else $SEEKR_BASE_URL, else the default;
    a trailing ``/vN`` removed (the version lives in each route) and a trailing ``/`` ensured."""
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    url = re.sub(r"/v\d+/?$", "/", url)
    return url if url.endswith("/") else url + "/"


def request_target(base_url: str, model_id: str, question: str, answer: str | None = None,
                   system_prompt: str | None = None, *, model_id_param: bool = False) -> str:
    """The full URL of one attribution request, built as the SDK builds it (`model_id_param`:
    as its async method does)."""
    params = [("question", question), ("system_prompt", system_prompt), ("answer", answer)]
    if model_id_param:
        params.append(("model_id", model_id))
    query = urlencode([(k, v) for k, v in params if v is not None])
    # Split and joined as the SDK does, so that even a model id holding '?' or '#' goes out the
    # same way (the query lands before any fragment).
    scheme, netloc, path, base_query, fragment = urlsplit(base_url + ROUTE.format(model_id=model_id))
    if base_query:
        query = f"{base_query}&{query}"
    return urlunsplit((scheme, netloc, path, query, fragment))


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
    detail = response.text[:200].replace("\n", " ")
    if status in (401, 403):
        raise SeekrFlowError(f"HTTP {status}: the API key was refused (check the environment "
                             "variable holding it, and the team for a team-scoped key)",
                             status=status, attempts=attempts, fatal=True)
    if status == 404:
        raise SeekrFlowError(f"HTTP 404: no such model at {response.request.url.host} ({detail}); "
                             "check the model id and the base URL", status=status,
                             attempts=attempts, fatal=True)
    if status >= 400:
        raise SeekrFlowError(f"HTTP {status}: {detail}", status=status, attempts=attempts)
    try:
        return parse_response(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SeekrFlowError(f"malformed response body (not JSON: {exc})", status=status,
                             retryable=True, attempts=attempts) from None
    except ValueError as exc:
        raise SeekrFlowError(f"malformed response body ({exc})", status=status, retryable=True,
                             attempts=attempts) from None


class _Base:
    def __init__(self, api_key: str | None, base_url: str | None, timeout: float,
                 retry: RetryPolicy | None, team_id: str | None, seed: int | None) -> None:
        self._headers = {"User-Agent": f"refine/{__version__}"}
        if api_key:
            self._headers["Authorization"] = api_key
        team_id = team_id or os.environ.get(TEAM_ENV)
        if team_id:
            self._headers[TEAM_HEADER] = team_id
        self.base_url = resolve_base_url(base_url)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._rng = random.Random(seed)

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

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 team_id: str | None = None, seed: int | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(api_key, base_url, timeout, retry, team_id, seed)
        self._http = httpx.Client(headers=self._headers, timeout=timeout, transport=transport)

    def get_influential_finetuning_data(self, model_id: str, question: str,
                                        system_prompt: str | None = None,
                                        answer: str | None = None) -> InfluenceResponse:
        url = request_target(self.base_url, model_id, question, answer, system_prompt)
        for attempt in range(self.retry.max_retries + 1):
            response, error = None, None
            try:
                response = self._http.get(url)
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

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 concurrency: int = 8, rate: float | None = None, team_id: str | None = None,
                 seed: int | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(api_key, base_url, timeout, retry, team_id, seed)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(headers=self._headers, timeout=timeout, limits=limits,
                                       transport=transport)
        self._slots = asyncio.Semaphore(concurrency)
        self._rate = _RateLimiter(rate)
        self.retries = 0   # how many times any request was retried, for progress reports

    async def get_influential_finetuning_data(self, model_id: str, question: str,
                                              system_prompt: str | None = None,
                                              answer: str | None = None) -> InfluenceResponse:
        url = request_target(self.base_url, model_id, question, answer, system_prompt,
                             model_id_param=True)
        for attempt in range(self.retry.max_retries + 1):
            response, error = None, None
            async with self._slots:   # the slot is not held while waiting to retry
                await self._rate.wait()
                try:
                    response = await self._http.get(url)
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
