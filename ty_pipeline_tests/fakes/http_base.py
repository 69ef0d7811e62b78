"""A tiny loopback HTTP server that fake upstream services build on.

Tests talk to the fakes over real HTTP so the production clients (sessions, timeouts, retries)
are exercised exactly as in production. Each fake subclasses `LoopbackServer` and implements
`handle(request) -> Response`. Every request is recorded with its start and end time so tests can
assert on ordering and overlap instead of on wall-clock durations.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    started: float
    ended: float | None = None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Response:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay_s: float = 0.0  # sleep before answering (simulates slow upstreams / read timeouts)
    drop_connection: bool = False  # close the socket without any answer
    reset_connection: bool = False  # abort the connection with a TCP RST (SO_LINGER 0), no answer

    @classmethod
    def json_body(cls, payload: Any, status: int = 200, **kw: Any) -> Response:
        return cls(status=status, body=dump_json(payload), **kw)


def dump_json(payload: Any) -> str:
    """UTF-8 JSON text; a lone surrogate (which UTF-8 cannot carry) travels as a `\\udXXX` escape, the
    only way a real server can send one."""
    text = json.dumps(payload, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload)
    return text


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeUpstream/1.0"
    # Headers and body go out in separate writes; without this Nagle's algorithm holds the second
    # write for ~40 ms and every fake-backed test pays it per request.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # keep pytest output clean

    def _serve(self) -> None:
        fake: LoopbackServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        req = Request(
            method=self.command,
            path=parts.path,
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            started=time.monotonic(),
        )
        with fake._lock:
            fake.requests.append(req)
        try:
            resp = fake.handle(req)
        except Exception as exc:  # a bug in a fake must be loud, not a hang
            resp = Response.json_body({"error": f"fake server bug: {exc!r}"}, status=599)
        if resp.delay_s:
            time.sleep(resp.delay_s)
        if resp.reset_connection:
            req.ended = time.monotonic()
            self.close_connection = True
            with contextlib.suppress(OSError):
                # Linger on, timeout 0: close() sends RST instead of FIN, as a crashed peer or a proxy does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            return
        if resp.drop_connection:
            req.ended = time.monotonic()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = resp.body
        if not isinstance(payload, (bytes, str)):
            payload = dump_json(payload)
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its read timeout fired); that is the point of the test
        req.ended = time.monotonic()

    do_GET = _serve
    do_POST = _serve
    do_HEAD = _serve
    do_DELETE = _serve


class LoopbackServer:
    """Base class: start with `with FakeX() as fake:` and point the client at `fake.base_url`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=lambda: httpd.serve_forever(poll_interval=0.05), name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_to(self, path_prefix: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]
