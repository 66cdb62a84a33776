"""The transport seam: move request bytes to the collector, bring response bytes back.

A transport knows nothing about rows, batching or retries (that is :mod:`spanlog._delivery`).
:class:`Transport` is the blocking one every flush uses where threads exist: a small
HTTP/1.1 client on a plain socket (``ssl`` for https), one kept-alive connection per host.
It is written here rather than taken from ``http.client`` for two rules of
``docs/design.md``:

- **Every request has an overall deadline** that holds whatever the peer does: each socket
  operation waits at most for what is left of ``timeout``, so a collector that trickles its
  answer a byte at a time cannot hold a flush (or the interpreter's exit) past it.
- **A forked child can drop the parent's connections without taking a lock**
  (:meth:`Transport.discard`): there is no buffered reader whose lock a parent's thread may
  have held at the moment of the fork, only file descriptors to close.

Pyodide's ``fetch`` (:mod:`spanlog._fetch_transport`) and user-supplied transports plug in
with the same methods.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from urllib.parse import urlsplit

# A response bigger than this is not a collector's answer to a flush (they are a few hundred
# bytes); reading on would only let a broken peer fill the memory of the user's process.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_MAX_HEAD_BYTES = 64 * 1024
_CHUNK = 65536


class Response:
    """What came back: status code, headers (lower-case names) and the body bytes."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body={self.body[:200]!r})"


class TransportError(Exception):
    """The request did not complete: connection refused or reset, timeout, bad response."""


class _Stale(Exception):
    """A kept-alive connection turned out closed before any byte of the answer came."""


class Transport:
    """Blocking HTTP/1.1 keeping one connection alive per host; safe to share between
    threads (requests are serialized).

    A request on a connection the server closed while idle is retried once on a fresh
    connection, since that failure says nothing about the collector.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], _Connection] = {}
        self._busy: _Connection | None = None  # the connection a request is using now

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout: float) -> Response:
        """POST ``body`` to ``url``; the whole exchange takes at most ``timeout`` seconds."""
        return self.request("POST", url, body, headers, timeout)

    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Response:
        """GET ``url`` within ``timeout`` seconds."""
        return self.request("GET", url, None, headers, timeout)

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> Response:
        """Send one request and read the whole response before ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"unsupported URL {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        head = _request_head(method, target, host, headers, len(body or b""))
        payload = head + body if body else head
        with self._lock:
            for attempt in (0, 1):
                conn = self._idle.pop(key, None)
                fresh = conn is None
                try:
                    if conn is None:
                        conn = _Connection.open(parts.scheme, parts.hostname, port, deadline)
                    self._busy = conn
                    response, keep = conn.exchange(payload, method, deadline, fresh)
                except _Stale:
                    if conn is not None:
                        conn.close()
                    if attempt:
                        raise TransportError(f"{method} {url}: connection closed") from None
                    continue  # a kept-alive connection the server closed while idle
                except (OSError, ValueError) as exc:
                    if conn is not None:
                        conn.close()
                    if isinstance(exc, TimeoutError | socket.timeout):
                        raise TransportError(f"{method} {url}: no complete answer within "
                                             f"{timeout:g}s") from None
                    raise TransportError(f"{method} {url}: {exc!r}") from exc
                finally:
                    self._busy = None
                if keep:
                    self._idle[key] = conn
                else:
                    conn.close()
                return response
        raise TransportError(f"{method} {url}: connection closed")  # pragma: no cover

    def close(self) -> None:
        """Close every kept-alive connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conn in idle.values():
            conn.close()

    def discard(self) -> None:
        """Forget every connection without taking a lock (a forked child: the parent's
        thread may have held it at the fork). Only the child's copies of the descriptors
        are closed; the parent's connections are untouched."""
        connections = [*self._idle.values(), self._busy]
        self._idle = {}
        self._busy = None
        self._lock = threading.Lock()
        for conn in connections:
            if conn is not None:
                conn.discard()


class _Connection:
    """One socket and the bytes read past the end of the last response."""

    __slots__ = ("__weakref__", "extra", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.extra = b""
        # A logger dropped without close() leaves its kept-alive connection behind: it is
        # closed quietly when collected. A weakref callback, not __del__: in a cycle the
        # garbage collector may finalize the socket first, and the socket would warn.
        weakref.finalize(self, sock.close).atexit = False

    @classmethod
    def open(cls, scheme: str, host: str, port: int, deadline: float) -> _Connection:
        sock = socket.create_connection((host, port), timeout=_left(deadline))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                import ssl

                sock.settimeout(_left(deadline))
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def exchange(self, payload: bytes, method: str, deadline: float,
                 fresh: bool) -> tuple[Response, bool]:
        """Send a request; its response and whether the connection may be kept."""
        sock = self.sock
        try:
            sock.settimeout(_left(deadline))
            sock.sendall(payload)  # the timeout bounds the whole sendall
            if not fresh and not self.extra and not self._fill(deadline):
                raise _Stale  # closed while idle: not one byte of an answer
            head = self._read_until(b"\r\n\r\n", deadline, _MAX_HEAD_BYTES)
        except (BrokenPipeError, ConnectionResetError):
            if fresh:
                raise
            raise _Stale from None
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
            raise ValueError(f"not an HTTP response: {lines[0][:100]!r}")
        status = int(status_line[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return self.exchange(b"", method, deadline, True)
        keep = (status_line[0] == "HTTP/1.1"
                and headers.get("connection", "").lower() != "close")
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked(deadline)
        elif "content-length" in headers:
            size = int(headers["content-length"])
            if size < 0 or size > MAX_RESPONSE_BYTES:
                raise ValueError(f"response body of {size} bytes")
            body = self._read_exactly(size, deadline)
        else:  # the body runs to the end of the connection
            while self._fill(deadline):
                if len(self.extra) > MAX_RESPONSE_BYTES:
                    raise ValueError(f"response body over {MAX_RESPONSE_BYTES} bytes")
            body, self.extra, keep = self.extra, b"", False
        return Response(status, headers, body), keep

    def _fill(self, deadline: float) -> bool:
        """Read what the peer sent next into ``extra``; False at the end of the stream."""
        self.sock.settimeout(_left(deadline))
        more = self.sock.recv(_CHUNK)
        self.extra += more
        return bool(more)

    def _read_until(self, marker: bytes, deadline: float, most: int) -> bytes:
        """The bytes before ``marker`` (consumed with it)."""
        while True:
            at = self.extra.find(marker)
            if at >= 0:
                data, self.extra = self.extra[:at], self.extra[at + len(marker):]
                return data
            if len(self.extra) > most:
                raise ValueError("response line or head too long")
            if not self._fill(deadline):
                raise ConnectionResetError("connection closed before a complete answer")

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        while len(self.extra) < size:
            if not self._fill(deadline):
                raise ConnectionResetError("connection closed mid-body")
        data, self.extra = self.extra[:size], self.extra[size:]
        return data

    def _read_chunked(self, deadline: float) -> bytes:
        body = bytearray()
        while True:
            size = int(self._read_until(b"\r\n", deadline, 1024).split(b";")[0], 16)
            if size == 0:
                while self._read_until(b"\r\n", deadline, _MAX_HEAD_BYTES):
                    pass  # trailers, up to the blank line
                return bytes(body)
            if len(body) + size > MAX_RESPONSE_BYTES:
                raise ValueError(f"response body over {MAX_RESPONSE_BYTES} bytes")
            body += self._read_exactly(size + 2, deadline)[:size]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


    def discard(self) -> None:
        """Close this process's descriptor only (no shutdown, which would end the parent's
        connection too, and nothing that takes a lock)."""
        try:
            os.close(self.sock.detach())
        except OSError:
            pass


def _left(deadline: float) -> float:
    """Seconds left before ``deadline``; a timeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _request_head(method: str, target: str, host: str, headers: Mapping[str, str],
                  length: int) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    if method != "GET" or length:
        lines.append(f"Content-Length: {length}")
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise TransportError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
