"""The web viewer: its pages, its static assets and the live-updates stream.

The viewer is plain HTML, CSS and ES modules under ``static/`` (no build step, nothing
fetched from outside the collector); the browser reads logs only through the collector's
HTTP API. This module adds to the collector's app:

- ``GET /``, ``GET /projects/{project_id}``, ``GET /projects/{project_id}/traces/{root}``,
  ``GET /projects/{project_id}/sessions[/{session_id}]``: the single page (the script routes
  on the path, so every view has a shareable URL);
- ``GET /static/{name}``: the assets;
- ``GET /v1/project_logs/{project_id}/live``: server-sent events telling the page the
  project's latest transaction id whenever it moves;
- ``GET /projects/{project_id}/monitor``: the single page too (the monitor's charts);
- ``GET /static/vendor/{library}/{name}``: third-party code copied in unchanged, each
  library with its license and a README naming its version and source.

The live stream polls the store for each connection rather than listening to this process's
writes, so a page sees rows written through any collector sharing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from spanlog.server.http._context import latest_xact

STATIC_DIR = Path(__file__).parent / "static"

# How often each live connection asks the store for the project's latest transaction id:
# short enough that new logs feel instant, long enough to cost nothing on an idle page.
POLL_INTERVAL = 0.5
# A comment line every so often keeps proxies from timing the stream out, and lets us notice
# a client that went away without closing its socket.
KEEPALIVE_INTERVAL = 15.0

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Assets live flat in one directory, vendored libraries one level down in vendor/<library>/;
# anything else (a leading dot, "..", other slashes) is refused before it can reach the file
# system: every dot must sit between two name characters.
_ASSET_NAME = re.compile(
    r"^(?:vendor/[a-z0-9-]+/)?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.(?:html|js|css|svg|png)$")

# The page loads nothing from anywhere but the collector; saying so also guards against
# logged content that somehow ends up interpreted as markup.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_NO_CACHE = {"Cache-Control": "no-cache"}

log = logging.getLogger("spanlog.server")

# (request, project_id) -> latest transaction id of the project (None when it has no rows).
# Raises (as the collector's API handlers do) when the caller may not read the project.
LatestXact = Callable[[web.Request, str], Awaitable[str | None]]


class _LiveStreams:
    """The open live connections of one app, and the signal that ends them at shutdown."""

    def __init__(self, latest: LatestXact, poll_interval: float,
                 keepalive_interval: float) -> None:
        self.latest = latest
        self.poll_interval = poll_interval
        self.keepalive_interval = keepalive_interval
        self.closing = asyncio.Event()
        self.open = 0

    async def shutdown(self, app: web.Application) -> None:
        """Tell every stream to finish (aiohttp's ``on_shutdown`` hook)."""
        self.closing.set()


LIVE_STREAMS = web.AppKey("spanlog_viewer_live", _LiveStreams)


async def _page(request: web.Request) -> web.FileResponse:
    """The viewer's single page; the script reads the path to pick the view."""
    return web.FileResponse(STATIC_DIR / "index.html", headers={
        **_NO_CACHE, "Content-Type": _CONTENT_TYPES[".html"], "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


async def _asset(request: web.Request) -> web.FileResponse:
    """One file from ``static/``, by name."""
    name = request.match_info["name"]
    if "library" in request.match_info:
        name = f"vendor/{request.match_info['library']}/{name}"
    if not _ASSET_NAME.fullmatch(name):
        raise web.HTTPNotFound(text=json.dumps({"error": f"no asset {name!r}"}),
                               content_type="application/json")
    path = STATIC_DIR / name
    if not path.is_file():
        raise web.HTTPNotFound(text=json.dumps({"error": f"no asset {name!r}"}),
                               content_type="application/json")
    # no-cache still lets the browser revalidate by Last-Modified: cheap, and an upgraded
    # collector never serves a stale mix of modules.
    return web.FileResponse(path, headers={
        **_NO_CACHE, "Content-Type": _CONTENT_TYPES[path.suffix],
        "X-Content-Type-Options": "nosniff"})


def _event(xact: str | None) -> bytes:
    return f"event: xact\ndata: {json.dumps({'xact_id': xact})}\n\n".encode()


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the project's latest transaction id, now and whenever it moves."""
    streams = request.app[LIVE_STREAMS]
    project_id = request.match_info["project_id"]
    # Checks access (and that the project exists) before the stream starts, so errors are
    # ordinary JSON error responses.
    latest = await streams.latest(request, project_id)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    streams.open += 1
    try:
        await response.write(_event(latest))
        last_write = time.monotonic()
        while not streams.closing.is_set() and not _gone(request):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(streams.closing.wait(), streams.poll_interval)
            if streams.closing.is_set() or _gone(request):
                break
            try:
                now_latest = await streams.latest(request, project_id)
            except Exception as exc:
                # A revoked key, a deleted project or a store shutting down: end this stream;
                # the page reconnects and then gets a proper error response.
                log.debug("spanlog viewer: live stream for %s ends: %r", project_id, exc)
                break
            if now_latest != latest:
                latest = now_latest
                await response.write(_event(latest))
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= streams.keepalive_interval:
                await response.write(b": keepalive\n\n")
                last_write = time.monotonic()
    except ConnectionResetError:
        pass  # the page closed or navigated away (aiohttp raises a subclass of it)
    finally:
        streams.open -= 1
    return response


def setup_viewer(app: web.Application, *, latest: LatestXact | None = None,
                 poll_interval: float = POLL_INTERVAL,
                 keepalive_interval: float = KEEPALIVE_INTERVAL) -> None:
    """Add the web viewer to the collector's ``app``: pages, assets and the live stream.

    ``latest`` finds a project's latest transaction id for a request after checking the
    caller may read the project; by default it asks the collector's store and auth.
    """
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
    if keepalive_interval <= 0:
        raise ValueError(f"keepalive_interval must be > 0 seconds, got {keepalive_interval!r}")
    streams = _LiveStreams(latest or latest_xact, poll_interval, keepalive_interval)
    app[LIVE_STREAMS] = streams
    app.on_shutdown.append(streams.shutdown)
    app.router.add_get("/", _page)
    app.router.add_get("/projects/{project_id}", _page)
    app.router.add_get("/projects/{project_id}/traces/{root_span_id}", _page)
    app.router.add_get("/projects/{project_id}/sessions", _page)
    app.router.add_get("/projects/{project_id}/sessions/{session_id}", _page)
    app.router.add_get("/static/{name}", _asset)
    app.router.add_get("/v1/project_logs/{project_id}/live", _live)
    app.router.add_get("/projects/{project_id}/monitor", _page)
    app.router.add_get("/static/vendor/{library}/{name}", _asset)
