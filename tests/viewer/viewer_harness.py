"""Test harness for the viewer: a collector that serves it, API calls, and Chromium pages."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

CHROMIUM = os.environ.get("SPANLOG_CHROMIUM", "/usr/bin/chromium")
# Flags for a sandboxless container with no network but loopback: nothing may phone home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 10_000


class ViewerServer:
    """A collector app with the viewer on 127.0.0.1, on its own loop in a thread."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.url = ""
        self.api_key = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> ViewerServer:
        self._thread = threading.Thread(target=self._main, name="viewer-collector", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("viewer collector did not start within 30s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(30)
            assert not self._thread.is_alive(), "viewer collector did not stop within 30s"

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        from aiohttp import web

        from spanlog.server.http._app import create_app
        from spanlog.server.http._auth import create_key
        from spanlog.server.http._viewer import LIVE_STREAMS, setup_viewer
        from spanlog.server.store._records import DEFAULT_ORG
        from spanlog.server.store.sqlite._store import SqliteStore

        self._stopping = asyncio.Event()
        store = SqliteStore(self.db_path)
        app = create_app(store)
        if LIVE_STREAMS not in app:  # until the collector's app factory adds it itself
            setup_viewer(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            _, self.api_key = await create_key(store, DEFAULT_ORG, name="viewer-tests")
            self._loop = loop
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()


@dataclass
class Collector:
    """What the viewer tests need of a collector: its URL, a key, and API calls."""

    url: str
    api_key: str
    _projects: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API with the key; AssertionError with the body on an error status."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode()
            exc.close()
            raise AssertionError(f"{method} {path} -> {exc.code}: {detail}") from None

    def error_of(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        """The status and ``error`` message of a request that must fail."""
        try:
            self.request(method, path, body)
        except AssertionError as exc:
            status, _, detail = str(exc).partition(" -> ")[2].partition(": ")
            return int(status), json.loads(detail)["error"]
        raise AssertionError(f"{method} {path} unexpectedly succeeded")

    def project_id(self, name: str) -> str:
        if name not in self._projects:
            self._projects[name] = self.request("POST", "/v1/project", {"name": name})["id"]
        return self._projects[name]

    def fetch(self, project_id: str, filter: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"limit": 1000}
        if filter:
            body["filter"] = filter
        return list(self.request("POST", f"/v1/project_logs/{project_id}/fetch", body)["events"])

    def trace(self, project_id: str, root_span_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET",
                                 f"/v1/project_logs/{project_id}/trace/{root_span_id}")["spans"])


class PageProblems:
    """What went wrong inside the page: uncaught errors, console errors, outside requests."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []

    def check(self) -> None:
        assert not self.outside, f"the page reached outside the collector: {self.outside}"
        assert not self.errors, f"errors in the page: {self.errors}"


def open_context(browser: Any, collector: Collector, *,
                 with_key: bool = True) -> tuple[Any, PageProblems]:
    """A browser context that knows the API key (unless told not to) and records problems."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    problems = PageProblems()
    if with_key:
        # Runs in every document, about:blank too, where storage is off limits.
        context.add_init_script(
            f"try {{ localStorage.setItem('spanlog.apiKey', {json.dumps(collector.api_key)}); }}"
            " catch (e) {}")

    def guard(route: Any) -> None:
        if route.request.url.startswith(collector.url + "/"):
            route.continue_()
        else:
            problems.outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return context, problems


def watch(page: Any, problems: PageProblems) -> Any:
    """Record the page's uncaught exceptions and console errors (not HTTP error statuses)."""
    page.on("pageerror", lambda exc: problems.errors.append(f"pageerror: {exc}"))

    def console(msg: Any) -> None:
        # A 400 or 401 answered on purpose also logs "Failed to load resource".
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            problems.errors.append(f"console: {msg.text}")

    page.on("console", console)
    return page
