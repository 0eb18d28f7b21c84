"""Model downloads: an http(s) URL fetched once into the cache, within a size cap and an overall
deadline, with its credentials sent but never shown.

A download lives in the cache folder (``$TVMQ_CACHE`` or ``~/.cache/tvmq``) under
``downloads/<key>/<name>``: the key hashes the whole URL (credentials and query included, so two
tokens never share a file), the name is the last segment of the URL's path (never its query).
The SHA-256 of the content is kept beside it and checked on every reuse; a URL may pin it with a
fragment, ``https://host/m.tflite#sha256=<hex>``. ``user:password@`` in the URL is sent as HTTP
basic authentication; every message names the URL through :func:`tvmq.redact.redact_url`.

Limits (:mod:`tvmq.limits`): at most ``$TVMQ_MAX_MODEL_BYTES`` bytes, and
``$TVMQ_DOWNLOAD_TIMEOUT`` seconds in all. A watchdog shuts the connection down when the time is
up, which ends a read that a server keeps alive by sending a byte now and then (the TLS handshake
itself is bounded by the per-read timeout only).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

from tvmq.errors import DownloadError, ModelTooLarge, one_line
from tvmq.limits import DOWNLOAD_SECONDS, MODEL_BYTES
from tvmq.redact import redact_url

READ_TIMEOUT_S = 60.0  # the longest one connect or read may wait for the server
CHUNK_BYTES = 1 << 16


def cache_dir() -> Path:
    root = os.environ.get("TVMQ_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "tvmq"


def download(url: str) -> Path:
    """The cached file of ``url`` (an http(s) URL, maybe with ``#sha256=<hex>``), downloaded when
    the cache lacks it or holds other bytes; raises :class:`DownloadError` or :class:`ModelTooLarge`."""
    base, _, fragment = url.partition("#")
    expected = fragment[len("sha256="):].lower() if fragment.startswith("sha256=") else None
    shown = redact_url(base)
    key = hashlib.sha256(base.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    folder = cache_dir() / "downloads" / key
    target = folder / file_name(base)
    sumfile = target.with_name(target.name + ".sha256")
    if _cached(target, sumfile, expected):
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(dir=folder, suffix=".part")
    except OSError as err:
        raise DownloadError(f"cannot download {shown}: cannot write the cache folder {folder}: "
                            f"{err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(base, out, shown)
        if expected is not None and digest != expected:
            raise DownloadError(f"download of {shown} has sha256 {digest}, but the URL asks for {expected}")
        os.replace(part, target)
        sumfile.write_text(digest + "\n")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
    return target


def file_name(url: str) -> str:
    """The cache file's name: the last segment of the URL's path, in safe characters."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^\w.+-]", "_", segment)[-100:]
    return name if name.strip(".") else "model"


def _cached(target: Path, sumfile: Path, expected: str | None) -> bool:
    try:
        recorded = sumfile.read_text().strip()
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
    except OSError:
        return False
    return actual == recorded and expected in (None, actual)


def _fetch(url: str, out: BinaryIO, shown: str) -> str:
    """Write what ``url`` answers into ``out``, within the limits; its SHA-256."""
    cap, seconds = MODEL_BYTES.value(), DOWNLOAD_SECONDS.value()
    too_late = DownloadError(f"cannot download {shown}: it took longer than {seconds:g} s "
                             "(the limit, $TVMQ_DOWNLOAD_TIMEOUT)")
    digest, size = hashlib.sha256(), 0
    with _Watchdog(seconds) as watchdog:
        try:
            plain, handlers = _credentials(url)
            with watchdog.opener(*handlers).open(plain, timeout=min(READ_TIMEOUT_S, seconds)) as resp:
                length = resp.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > cap:
                    raise _too_large(shown, cap)
                while chunk := resp.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > cap:
                        raise _too_large(shown, cap)
                    digest.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as err:
            raise DownloadError(f"cannot download {shown}: HTTP {err.code} {one_line(str(err.reason))}") from None
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError is an OSError
            if watchdog.expired:
                raise too_late from None
            raise DownloadError(f"cannot download {shown}: {one_line(getattr(err, 'reason', None) or err)}") from None
        if watchdog.expired:  # the connection was cut where the body has no length: the end is not the end
            raise too_late
    return digest.hexdigest()


def _too_large(shown: str, cap: int) -> ModelTooLarge:
    return ModelTooLarge(f"cannot download {shown}: it is over {cap} bytes, the most a model may have "
                         "(the limit, $TVMQ_MAX_MODEL_BYTES)")


def _credentials(url: str) -> tuple[str, list]:
    """``url`` without its ``user:password@``, and the handler that sends them as basic
    authentication (urllib would take them for part of the host name)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, []
    plain = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    manager = urllib.request.HTTPPasswordMgrWithPriorAuth()
    manager.add_password(None, plain, unquote(parts.username or ""), unquote(parts.password or ""),
                         is_authenticated=True)
    return plain, [urllib.request.HTTPBasicAuthHandler(manager)]


class _Watchdog:
    """Shuts down every connection its opener makes once ``seconds`` have passed: a read blocked
    on a server that sends a byte now and then returns at once."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def opener(self, *handlers) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies, redirects, ``handlers``) whose connections this watchdog watches."""
        watchdog = self

        class HTTPConnection(http.client.HTTPConnection):
            def connect(self):
                super().connect()
                watchdog.watch(self.sock)

        class HTTPSConnection(http.client.HTTPSConnection):
            def connect(self):
                super().connect()
                watchdog.watch(self.sock)

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(HTTPConnection, req)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(HTTPSConnection, req, context=self._context)

        return urllib.request.build_opener(HTTPHandler, HTTPSHandler, *handlers)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: wakes a TLS read too


__all__ = ["CHUNK_BYTES", "READ_TIMEOUT_S", "cache_dir", "download", "file_name"]
