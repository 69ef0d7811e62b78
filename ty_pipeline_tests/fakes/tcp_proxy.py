"""A loopback TCP proxy that can drop connections: a database that goes away for a moment.

Every connection is forwarded byte for byte to the target (e.g. PostgreSQL), except the first
`drop_first` ones, which are accepted and closed at once, as a server restart or a failing network
path looks to a client. `dropped` and `forwarded` count what happened, for assertions.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class DroppingTcpProxy:
    def __init__(self, target_host: str, target_port: int, drop_first: int = 0) -> None:
        self.target = (target_host, target_port)
        self.drop_first = drop_first
        self.dropped = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    def __enter__(self) -> DroppingTcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stopping.set()
        self._server.close()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _addr = self._server.accept()
            except OSError:
                return  # closed by __exit__
            with self._lock:
                drop = self.dropped < self.drop_first
                if drop:
                    self.dropped += 1
                else:
                    self.forwarded += 1
            if drop:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
