"""A local HTTP server for the download cases: a model behind any query string, a 404, a server
that trickles one byte at a time, and one that promises a 100 GiB model."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HUGE_BYTES = 100 << 30


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # the cases read the client's output, not the server's
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urlsplit(self.path).path
        try:
            if path == "/model.tflite":
                self._head(len(self.server.model))
                self.wfile.write(self.server.model)
            elif path == "/trickle.tflite":
                self._head(len(self.server.model))
                self._trickle(self.server.model, 1)
            elif path == "/huge.tflite":
                self._head(HUGE_BYTES)
                self._trickle(b"", 1 << 20)
            else:
                self.send_error(404, "no such model")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (or was killed at its deadline)

    def _head(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _trickle(self, body: bytes, chunk: int) -> None:
        """``chunk`` bytes every ``interval`` seconds until the client leaves or the server stops."""
        sent = 0
        while not self.server.stopping.is_set():
            self.wfile.write(body[sent:sent + chunk] or bytes(chunk))
            self.wfile.flush()
            sent += chunk
            self.server.stopping.wait(self.server.interval)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    model: bytes
    interval: float
    stopping: threading.Event


class FuzzServer:
    """``with FuzzServer(model_bytes) as s: s.url("/model.tflite?token=...")``."""

    def __init__(self, model: bytes, interval_s: float = 2.0):
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.model = model
        self._server.interval = interval_s
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, name="fuzz-http", daemon=True)

    def url(self, path: str, userinfo: str = "") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{userinfo + '@' if userinfo else ''}{host}:{port}{path}"

    def __enter__(self) -> FuzzServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
