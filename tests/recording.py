"""A loopback HTTP server that records every request it gets: what the SDK and refine send,
compared on the wire by the contract tests."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

#: (method, path without query, body) -> (status, answer: JSON-able or bytes)
Respond = Callable[[str, str, bytes], "tuple[int, Any]"]


class Recorder(ThreadingHTTPServer):
    """`requests`: one dict per request (method, target, authorization, team, content_type,
    length, chunked, body — raw bytes, or what `parse_body(content_type, body)` makes of them).
    `script`: statuses to answer first, one per request, before `respond` answers again."""

    daemon_threads = True

    def __init__(self, respond: Respond, parse_body: Callable[[str, bytes], Any] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond, self.parse_body = respond, parse_body
        self.requests: list[dict] = []
        self.script: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type") or ""
        self.server.requests.append({
            "method": self.command, "target": self.path, "authorization": self.headers.get("Authorization"),
            "team": self.headers.get("x-team-id"), "content_type": kind.split(";")[0] or None,
            "length": self.headers.get("Content-Length"), "chunked": self.headers.get("Transfer-Encoding"),
            "body": self.server.parse_body(kind, body) if self.server.parse_body else body})
        status, answer = self.server.respond(self.command, self.path.split("?")[0], body)
        if self.server.script:
            status, answer = self.server.script.pop(0), {"detail": "the service says no"}
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815


@contextmanager
def recording(respond: Respond, parse_body: Callable[[str, bytes], Any] | None = None) -> Iterator[Recorder]:
    server = Recorder(respond, parse_body)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
