"""Connections that hold the collector without sending a request (docs/collector.md, "What
it guarantees"): header and body deadlines, and a cap on connections that keeps room for
clients that do send.

aiohttp's server has no read deadline: a client that sends a byte every few seconds
("slowloris") keeps a connection, and its memory, for as long as it likes. Here each
connection is checked once a second: a request's headers must be complete
:data:`HEADER_TIMEOUT` seconds after its first byte. Bodies have their own deadline, kept
where they are read (``_body.read_bytes``). Beyond ``max_connections``, a new connection
closes the connection that has waited longest for its headers or sat idle longest; one that
is running a request is never closed for room.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

HEADER_TIMEOUT = 10.0
# A body must arrive at this average rate once BODY_GRACE seconds have passed.
BODY_GRACE = 10.0
BODY_MIN_RATE = 16 * 1024
DEFAULT_MAX_CONNECTIONS = 512
KEEPALIVE_TIMEOUT = 75.0
_CHECK_EVERY = 1.0


class _Connection(RequestHandler):
    """aiohttp's connection handler, with the deadlines of this module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since: float | None = None  # first byte of a request not yet handled
        self.idle_since = 0.0
        self.in_request = False
        self._check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self.idle_since = loop.time()
        super().connection_made(transport)
        self._check = loop.call_later(_CHECK_EVERY, self._deadline)

    def data_received(self, data: bytes) -> None:
        if not self.in_request and self.waiting_since is None and data:
            self.waiting_since = asyncio.get_running_loop().time()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._check is not None:
            self._check.cancel()
            self._check = None
        super().connection_lost(exc)

    def request_started(self) -> None:
        """The headers of a request arrived: its handler runs."""
        self.in_request = True
        self.waiting_since = None

    def request_done(self) -> None:
        """The request was answered: the connection waits for the next one."""
        self.in_request = False
        self.waiting_since = None
        self.idle_since = asyncio.get_running_loop().time()

    def drop(self) -> None:
        """Close the connection now."""
        if self.transport is not None:
            self.transport.close()

    def _deadline(self) -> None:
        loop = asyncio.get_running_loop()
        since = self.waiting_since
        if since is not None and not self.in_request and loop.time() - since > HEADER_TIMEOUT:
            self.drop()
            return
        self._check = loop.call_later(_CHECK_EVERY, self._deadline)


class GuardedServer(Server):
    """aiohttp's server with at most ``max_connections`` connections of :class:`_Connection`."""

    max_connections = DEFAULT_MAX_CONNECTIONS

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self.connections) <= self.max_connections:
            return
        # Make room: the connection waiting longest for its headers, else the longest idle.
        idle = [c for c in self.connections
                if isinstance(c, _Connection) and not c.in_request and c is not handler]
        if not idle:
            transport.close()
            return
        victim = min(idle, key=lambda c: (c.waiting_since is None,
                                          c.waiting_since or c.idle_since))
        victim.drop()


def guard(runner: web.AppRunner, max_connections: int) -> None:
    """Apply this module's deadlines and cap to ``runner`` (after ``setup()``)."""
    server = runner.server
    assert server is not None
    server.__class__ = GuardedServer
    server.max_connections = max_connections  # type: ignore[attr-defined]


def request_started(request: web.Request) -> None:
    """Mark ``request``'s connection busy (its headers are in)."""
    if isinstance(request.protocol, _Connection):
        request.protocol.request_started()


def request_done(request: web.Request) -> None:
    """Mark ``request``'s connection idle again."""
    if isinstance(request.protocol, _Connection):
        request.protocol.request_done()
