"""A small SeekrFlow-shaped HTTP server for tests, with faults chosen by a tag in the question.

``[tag] Where does person3 live?`` — tags: ``ok``, ``slow`` (0.2 s), ``429once`` (429 with
``Retry-After: 1`` the first time), ``500once``, ``drop`` (connection closed mid-body the
first time), ``hang`` (always slower than any test timeout), ``hangonce``, ``badjson`` (a 200
whose body is not JSON, always), ``badjsononce``, ``badshapeonce`` (JSON, but not the
documented schema, the first time), ``401``. Every request is counted per question.

Like the real service (as the official SDK speaks to it), the key is expected as the bare
``Authorization`` header; the model ``missing`` does not exist (404).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PERSON = re.compile(r"person(\d+)")
CITIES = ["Rome", "Paris", "Oslo", "Lima", "Cairo", "Quito", "Hanoi", "Dakar", "Riga", "Sofia"]


class FakeSeekrFlow(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, api_key: str | None = None, latency: float = 0.0, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.api_key = api_key
        self.latency = latency
        self.counts: Counter[str] = Counter()
        self.auth_headers: set[str] = set()
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (timeout) leaves a broken pipe behind: expected here."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "FakeSeekrFlow":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


def body_for(question: str, answer: str | None) -> dict:
    match = PERSON.search(question)
    n = int(match.group(1)) if match else 0
    city = "Atlantis" if n in (5, 6, 7) else CITIES[n % len(CITIES)]
    return {"results": [
        {"id": f"r-{n}", "influence_level": "high", "file_id": "file-remote",
         "messages": f"Q: Where does person{n} live?\nA: Person{n} lives in {city}.", "score_hint": 0.9},
        {"id": "r-x", "influence_level": "low", "file_id": "file-remote",
         "messages": "Q: Something we never trained on?\nA: Indeed."},
    ], "answer": answer if answer is not None else f"Person{n} lives in {city}.", "version": "v0-test"}


class _Handler(BaseHTTPRequestHandler):
    server: FakeSeekrFlow

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        question = params.get("question", "")
        with self.server.lock:
            self.server.counts[question] += 1
            count = self.server.counts[question]
            self.server.auth_headers.add(self.headers.get("Authorization", ""))
        if not url.path.endswith("/influential-finetuning-data"):
            return self._send(404, b'{"detail": "not found"}')
        if self.server.api_key and self.headers.get("Authorization") != self.server.api_key:
            return self._send(401, b'{"detail": "bad key"}')
        if "/models/missing/" in url.path:
            return self._send(404, b'{"detail": "model not found"}')
        time.sleep(self.server.latency)
        tag = question[1:question.index("]")] if question.startswith("[") else "ok"
        payload = json.dumps(body_for(question, params.get("answer"))).encode()
        if tag == "slow":
            time.sleep(0.2)
        elif tag == "429once" and count == 1:
            return self._send(429, b'{"detail": "slow down"}', {"Retry-After": "1"})
        elif tag == "500once" and count == 1:
            return self._send(500, b'{"detail": "oops"}')
        elif tag == "drop" and count == 1:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[:10])
            self.wfile.flush()
            self.close_connection = True
            return
        elif tag == "hang" or (tag == "hangonce" and count == 1):
            time.sleep(3)
        elif tag == "badjson" or (tag == "badjsononce" and count == 1):
            return self._send(200, b"{not json")
        elif tag == "badshapeonce" and count == 1:
            return self._send(200, b'{"results": "nope", "version": "v0"}')
        elif tag == "401":
            return self._send(401, b'{"detail": "no"}')
        self._send(200, payload)
