"""The transport seam: move request bytes to the collector, bring response bytes back.

A transport knows nothing about rows, batching or retries (that is :mod:`spanlog._delivery`).
:class:`Transport` is the blocking standard-library one (``http.client``, one keep-alive
connection per host) used by sync code and the background thread. The async twin lives in
:mod:`spanlog._aiohttp_transport` so that ``import spanlog`` never imports aiohttp. Tests and
other platforms (Pyodide's ``fetch``) plug in their own object with the same methods.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit


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


@runtime_checkable
class SyncTransport(Protocol):
    """What the delivery code needs from a blocking transport."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout: float) -> Response:
        """Send ``body`` and return the response; raise :class:`TransportError` on failure."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class AsyncTransport(Protocol):
    """The async twin of :class:`SyncTransport` (create it inside the loop that uses it)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout: float) -> Response:
        """Send ``body`` and return the response; raise :class:`TransportError` on failure."""

    async def aclose(self) -> None:
        """Release connections."""


class Transport:
    """A blocking transport on ``http.client`` keeping one connection alive per host.

    Safe to share between threads (requests are serialized). A request on a connection the
    server closed while idle is retried once on a fresh connection, since that failure says
    nothing about the collector.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[tuple[str, str, int], object] = {}

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout: float) -> Response:
        """POST ``body`` to ``url``."""
        return self.request("POST", url, body, headers, timeout)

    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Response:
        """GET ``url``."""
        return self.request("GET", url, None, headers, timeout)

    def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
                timeout: float) -> Response:
        """Send one request and read the whole response."""
        import http.client

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"unsupported URL {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        with self._lock:
            for attempt in (0, 1):
                conn = self._connections.get(key)
                fresh = conn is None
                if conn is None:
                    cls = (http.client.HTTPSConnection if parts.scheme == "https"
                           else http.client.HTTPConnection)
                    conn = cls(parts.hostname, port, timeout=timeout)
                    self._connections[key] = conn
                assert isinstance(conn, http.client.HTTPConnection)
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                try:
                    conn.request(method, target, body=body, headers=dict(headers))
                    resp = conn.getresponse()
                    data = resp.read()
                    status = resp.status
                    resp_headers = {k.lower(): v for k, v in resp.getheaders()}
                    if resp.will_close:
                        self._drop(key)
                    return Response(status, resp_headers, data)
                except (http.client.RemoteDisconnected, BrokenPipeError,
                        ConnectionResetError) as exc:
                    self._drop(key)
                    if fresh or attempt:
                        raise TransportError(f"{method} {url}: {exc!r}") from exc
                    # A kept-alive connection the server closed while idle: retry once.
                except (OSError, http.client.HTTPException) as exc:
                    self._drop(key)
                    raise TransportError(f"{method} {url}: {exc!r}") from exc
        raise TransportError(f"{method} {url}: connection closed")  # pragma: no cover

    def _drop(self, key: tuple[str, str, int]) -> None:
        conn = self._connections.pop(key, None)
        close = getattr(conn, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        """Close every kept-alive connection."""
        with self._lock:
            for key in list(self._connections):
                self._drop(key)

    def forget(self) -> None:
        """Close connections without taking the lock (a forked child: the lock may be held)."""
        for conn in self._connections.values():
            close = getattr(conn, "close", None)
            if close is not None:
                close()
        self._connections = {}
        self._lock = threading.Lock()
