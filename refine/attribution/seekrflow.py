"""SeekrFlow attribution over HTTP: one request per eval item, many in flight.

The requests are the official SDK's (:mod:`refine.seekrflow.client`): the key from
``$SEEKR_API_KEY`` (or the variable ``api_key_env`` names) as a bare ``Authorization`` header,
``x-team-id`` from ``team_id`` or ``$SEEKR_TEAM_ID``, the base URL from ``base_url`` or
``$SEEKR_BASE_URL``. A refused key (401/403) or an unknown model (404) stops the collection
at once with one error — every other request would fail the same way; finished items stay
saved in the journal. Any other failure marks only that item failed, for the next run.

Each result ("Q: …\\nA: …") is mapped back to a line of the user's training files by its
normalised question and answer (the pair id), or, failing that, by its question when that
question is unique among the local pairs of the same ``file_id``. A result that matches no
local line is kept with an empty pair id and reported; it cannot be pruned.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import queue
import threading
from dataclasses import dataclass, fields
from typing import Iterator
from urllib.parse import urlparse

from ..errors import BackendError, ConfigError
from ..fields import setting, validate
from ..formats.evalset import EvalItem
from ..formats.records import Attribution, Influence
from ..seekrflow.client import (AsyncSeekrFlowClient, InfluenceResult, RetryPolicy, SeekrFlowError,
                                resolve_base_url)
from ..core.text import normalize, pair_key
from ..formats.training import TrainingPair, TrainingSet
from .base import AttributionBackend

__all__ = ["SeekrFlowBackend", "SeekrFlowOptions"]

def _model_id(value: object) -> str | None:
    return None if isinstance(value, str) and value else "is required for the seekrflow backend (--model-id)"


def _base_url(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        return f"must be an http(s) URL, got {value!r}"
    url = resolve_base_url(value)
    if urlparse(url).scheme in ("http", "https") and urlparse(url).hostname:
        return None
    return f"must be an http(s) URL, got {url.rstrip('/')!r}{'' if value else ' (from $SEEKR_BASE_URL)'}"


@dataclass(frozen=True)
class SeekrFlowOptions:
    """Which hosted model is asked, where, and how hard: each field is a key of ``backend_options``."""

    model_id: str | None = setting("Required: the fine-tuned model's id.", None, check=_model_id)
    base_url: str | None = setting("The API's base URL (default: $SEEKR_BASE_URL, else "
                                   "https://flow.seekr.com; a `refine serve` address works too).", None,
                                   check=_base_url)
    concurrency: int = setting("Requests in flight.", 8, low=1, affects_results=False)
    rate: float | None = setting("At most this many requests per second (default: no cap).", None,
                                 low=0, low_open=True, affects_results=False)
    timeout: float = setting("Seconds per request.", 60.0, low=0, low_open=True, affects_results=False)
    max_retries: int = setting("Retries per request on 408/409/429/5xx, garbled bodies and connection "
                               "errors.", 5, low=0, affects_results=False)
    backoff_base: float = setting("Retry n waits a random time up to this × 2ⁿ seconds (at most 30; "
                                  "a Retry-After header is honoured).", 0.5, low=0, low_open=True,
                                  affects_results=False)
    api_key_env: str = setting("The environment variable holding the API key (not needed for a "
                               "loopback server).", "SEEKR_API_KEY", affects_results=False)
    team_id: str | None = setting("Sent as x-team-id (default: $SEEKR_TEAM_ID).", None,
                                  affects_results=False)

    def __post_init__(self) -> None:
        validate(self, "backend_options")


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SeekrFlowBackend(AttributionBackend):
    name = "seekrflow"
    Options = SeekrFlowOptions
    needs_answer = False

    def __init__(self, options: SeekrFlowOptions, *, top_k: int) -> None:
        super().__init__(options, top_k=top_k)
        self.base_url = resolve_base_url(options.base_url)
        self._api_key = os.environ.get(options.api_key_env) or None
        if self._api_key is None and not _is_loopback(self.base_url):
            raise ConfigError(f"the environment variable {options.api_key_env} holding the API key "
                              "is not set", key="backend_options.api_key_env")
        self._by_key: dict[str, TrainingPair] = {}
        self._by_question: dict[tuple[str | None, str], list[TrainingPair]] = {}

    def settings(self) -> dict:
        options = {f.name: getattr(self.options, f.name) for f in fields(self.options)
                   if f.metadata.get("affects_results", True)}
        # The service asked decides the results, wherever its address came from.
        options["base_url"] = self.base_url
        return {"backend": self.name, "options": options}

    def prepare(self, training: TrainingSet, progress) -> None:
        for pair in training.unique_pairs():
            self._by_key[pair.pair_id] = pair
            self._by_question.setdefault((pair.file_id, normalize(pair.question)), []).append(pair)

    def match(self, result: InfluenceResult) -> TrainingPair | None:
        """The local training pair a remote result stands for, if any."""
        parsed = result.question_answer
        if parsed is None:
            return None
        pair = self._by_key.get(pair_key(*parsed))
        if pair is not None:
            return pair
        same_question = self._by_question.get((result.file_id, normalize(parsed[0])), [])
        return same_question[0] if len(same_question) == 1 else None

    def _record(self, item: EvalItem, results: list[InfluenceResult], answer: str | None,
                version: str | None) -> Attribution:
        influences = []
        for result in results[: self.top_k]:
            pair = self.match(result)
            influences.append(Influence(
                pair_id=pair.pair_id if pair else None, influence_level=result.influence_level,
                score=None, file_id=result.file_id or (pair.file_id if pair else None),
                messages=result.messages, source_id=result.id or None))
        return Attribution(item.id, influences, answer=item.answer or answer, version=version)

    async def _one(self, client: AsyncSeekrFlowClient, item: EvalItem) -> Attribution:
        try:
            response = await client.get_influential_finetuning_data(
                self.options.model_id, item.question, answer=item.answer,
                system_prompt=item.system_prompt)
        except SeekrFlowError as exc:
            if exc.fatal:
                raise BackendError(f"seekrflow: {exc}. Stopped: every request would fail the same "
                                   "way; finished items are saved and a re-run resumes") from None
            return Attribution(item.id, answer=item.answer, status="failed", error=str(exc))
        return self._record(item, response.results, response.answer, response.version)

    def _client(self) -> AsyncSeekrFlowClient:
        o = self.options
        return AsyncSeekrFlowClient(self._api_key, base_url=self.base_url, timeout=o.timeout,
                                    retry=RetryPolicy(max_retries=o.max_retries, backoff_base=o.backoff_base),
                                    concurrency=o.concurrency, rate=o.rate, team_id=o.team_id)

    def attribute(self, items: list[EvalItem]) -> list[Attribution]:
        by_id = {record.eval_id: record for record in self.iter_attributions(items, len(items))}
        return [by_id[item.id] for item in items]

    def iter_attributions(self, items: list[EvalItem], batch_size: int) -> Iterator[Attribution]:
        """Requests run on an event loop in a worker thread; records come back as they finish."""
        finished: queue.Queue = queue.Queue()
        stop = threading.Event()
        end = object()

        async def run_all() -> None:
            async with self._client() as client:
                async def one(item: EvalItem) -> None:
                    finished.put(await self._one(client, item))

                pending: set[asyncio.Task] = set()

                async def settle(until: str) -> None:
                    nonlocal pending
                    done, pending = await asyncio.wait(pending, return_when=until)
                    for task in done:
                        task.result()   # a fatal error stops everything now

                try:
                    for item in items:
                        if stop.is_set():
                            break
                        # Keep a bounded number of tasks queued, not one per eval item.
                        while len(pending) >= 4 * self.options.concurrency:
                            await settle(asyncio.FIRST_COMPLETED)
                        pending.add(asyncio.create_task(one(item)))
                    while pending:
                        await settle(asyncio.FIRST_EXCEPTION)
                finally:
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)

        def worker() -> None:
            try:
                asyncio.run(run_all())
            except BaseException as exc:  # handed to the consuming thread, which re-raises it
                finished.put(exc)
            finally:
                finished.put(end)

        thread = threading.Thread(target=worker, name="refine-seekrflow", daemon=True)
        thread.start()
        try:
            while (got := finished.get()) is not end:
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            stop.set()
