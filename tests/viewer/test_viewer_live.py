"""The live-updates stream (server-sent events) and the viewer's routes, over real sockets."""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from spanlog.server.http._app import create_app
from spanlog.server.http._auth import create_key
from spanlog.server.http._viewer import LIVE_STREAMS, STATIC_DIR, setup_viewer
from spanlog.server.store._records import DEFAULT_ORG
from spanlog.server.store.sqlite._store import SqliteStore

DEADLINE = 10.0


class Running:
    """A collector app with the viewer on a free loopback port, and a client session."""

    def __init__(self, runner: web.AppRunner, url: str, session: aiohttp.ClientSession,
                 store: SqliteStore) -> None:
        self.runner = runner
        self.url = url
        self.session = session
        self.store = store

    @property
    def streams(self) -> Any:
        return self.runner.app[LIVE_STREAMS]

    async def project_id(self, name: str, headers: dict[str, str] | None = None) -> str:
        async with self.session.post(self.url + "/v1/project", json={"name": name},
                                     headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            return str((await resp.json())["id"])

    async def log(self, project_id: str, text: str) -> None:
        row = {"id": text, "span_id": "a" * 16, "root_span_id": "b" * 32,
               "project_id": project_id, "log_id": "g", "input": text,
               "span_attributes": {"name": "t", "type": "task"}}
        async with self.session.post(self.url + "/logs3",
                                     json={"rows": [row], "api_version": 2}) as resp:
            assert resp.status == 200, await resp.text()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """An open (loopback, keyless) collector serving the viewer; streams poll every 20ms."""
    store = SqliteStore(str(tmp_path / "spanlog.sqlite3"))
    app = create_app(store)
    if LIVE_STREAMS not in app:
        setup_viewer(app)
    app[LIVE_STREAMS].poll_interval = 0.02
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    session = aiohttp.ClientSession()
    try:
        yield Running(runner, url, session, store)
    finally:
        await session.close()
        await runner.cleanup()


async def next_event(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next ``xact`` event of an SSE response (keepalive comments skipped)."""
    async with asyncio.timeout(DEADLINE):
        block: list[str] = []
        while True:
            line = (await resp.content.readline()).decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line:
                block.append(line)
                continue
            if any(part.startswith("event: xact") for part in block):
                data = next(part for part in block if part.startswith("data:"))
                return dict(json.loads(data[5:]))
            block = []


async def until(condition: Any, what: str) -> None:
    """Poll ``condition()`` until true, failing after the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # polling interval between checks of the condition


async def test_stream_reports_latest_xact_now_and_when_it_moves(running: Running) -> None:
    """The first event is the project's latest xact; each later write sends a larger one."""
    pid = await running.project_id("live")
    await running.log(pid, "first")
    async with running.session.get(f"{running.url}/v1/project_logs/{pid}/live") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await next_event(resp)
        assert first["xact_id"] is not None
        await running.log(pid, "second")
        second = await next_event(resp)
        assert int(second["xact_id"]) > int(first["xact_id"])
        # Writes to another project are not this stream's news.
        other = await running.project_id("elsewhere")
        await running.log(other, "noise")
        await running.log(pid, "third")
        third = await next_event(resp)
        assert int(third["xact_id"]) > int(second["xact_id"])
        async with running.session.post(f"{running.url}/v1/project_logs/{pid}/fetch",
                                        json={"limit": 1}) as fetched:
            newest = (await fetched.json())["events"][0]
        assert newest["input"] == "third" and newest["_xact_id"] == third["xact_id"]


async def test_stream_of_an_empty_project_starts_with_null(running: Running) -> None:
    """A project without rows reports null first, then its first write."""
    pid = await running.project_id("empty")
    async with running.session.get(f"{running.url}/v1/project_logs/{pid}/live") as resp:
        assert await next_event(resp) == {"xact_id": None}
        await running.log(pid, "hello")
        assert (await next_event(resp))["xact_id"] is not None


async def test_stream_ends_when_the_client_goes_away(running: Running) -> None:
    """Closing the page's connection ends the server's polling loop."""
    pid = await running.project_id("leaving")
    resp = await running.session.get(f"{running.url}/v1/project_logs/{pid}/live")
    await next_event(resp)
    await until(lambda: running.streams.open == 1, "the stream to be open")
    resp.close()
    await until(lambda: running.streams.open == 0, "the server to notice the client left")


async def test_shutdown_ends_open_streams_promptly(tmp_path: Path) -> None:
    """Stopping the collector ends live streams at once instead of waiting them out."""
    store = SqliteStore(str(tmp_path / "spanlog.sqlite3"))
    app = create_app(store)
    if LIVE_STREAMS not in app:
        setup_viewer(app)
    # Were the streams waited out, cleanup would wait this long for their handlers: a hang
    # that DEADLINE bounds.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=3600)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/project", json={"name": "p"}) as resp:
            pid = (await resp.json())["id"]
        async with session.get(f"{url}/v1/project_logs/{pid}/live") as resp:
            await next_event(resp)
            async with asyncio.timeout(DEADLINE):
                await runner.cleanup()
                assert await resp.content.read() == b""  # the server closed the stream


async def test_stream_checks_the_key_and_the_project(running: Running) -> None:
    """Once keys exist the stream needs a valid one; unknown projects are a 404, as JSON."""
    pid = await running.project_id("guarded")
    _, token = await create_key(running.store, DEFAULT_ORG, name="t")
    live = f"{running.url}/v1/project_logs/{pid}/live"
    async with running.session.get(live) as resp:
        assert resp.status == 401
        assert "Authorization" in (await resp.json())["error"]
    async with running.session.get(live, headers={"Authorization": "Bearer nope"}) as resp:
        assert resp.status == 401
    auth = {"Authorization": f"Bearer {token}"}
    async with running.session.get(f"{running.url}/v1/project_logs/missing/live",
                                   headers=auth) as resp:
        assert resp.status == 404
        assert "missing" in (await resp.json())["error"]
    async with running.session.get(live, headers=auth) as resp:
        assert resp.status == 200
        assert await next_event(resp) == {"xact_id": None}


async def test_pages_and_assets_are_served_safely(running: Running) -> None:
    """Every view URL serves the page (with a strict CSP); assets get JavaScript/CSS types."""
    for path in ("/", "/projects/abc", "/projects/abc/traces/def", "/projects/abc/monitor"):
        async with running.session.get(running.url + path) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/html")
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert '<script type="module" src="/static/app.js">' in await resp.text()
    async with running.session.get(running.url + "/static/app.js") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/javascript")
    async with running.session.get(running.url + "/static/style.css") as resp:
        assert resp.headers["Content-Type"].startswith("text/css")
    async with running.session.get(running.url + "/static/vendor/uplot/uPlot.min.css") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/css")
    for bad in ("/static/..%2F_app.py", "/static/.hidden.js", "/static/nope.js",
                "/static/_app.py", "/static/vendor/uplot/..%2F..%2F_viewer.py",
                "/static/vendor/uplot/LICENSE", "/static/vendor/uplot/README.md",
                "/static/vendor/..%2Fapp.js", "/static/a/b/c.js", "/static/vendor/uplot/.x.js"):
        async with running.session.get(running.url + bad) as resp:
            assert resp.status == 404, bad


async def test_every_module_the_page_imports_is_served(running: Running) -> None:
    """No build step: each ES module import resolves to a served file, and none is remote."""
    pending, seen = ["app.js"], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        async with running.session.get(f"{running.url}/static/{name}") as resp:
            assert resp.status == 200, f"{name} is imported but not served"
            text = await resp.text()
        for target in re.findall(r'from "\./([\w/.-]+\.js)";', text):
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
    assert {"api.js", "logs.js", "trace.js", "json.js", "live.js", "summary.js", "monitor.js",
            "vendor/uplot/uPlot.esm.js"} <= seen
    for path in STATIC_DIR.rglob("*"):
        if path.suffix not in {".html", ".js", ".css", ".svg"}:
            continue  # not served (a vendored library's LICENSE and README)
        # (the SVG namespace is a name, not a request)
        lines = path.read_text(errors="replace").replace("http://www.w3.org/2000/svg", "")
        for line in lines.splitlines():
            # A vendored library cites its sources in comments; a comment loads nothing.
            if "vendor" in path.parts and re.match(r"\s*(//|\*)", line):
                continue
            assert not re.search(r"https?://", line), (
                f"{path.name} refers to the network; the viewer must work offline: {line}")
