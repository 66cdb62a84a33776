"""Test harness for the viewer: API calls to the collector that serves it, and Chromium pages."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from spanlog.server.http._auth import create_key
from spanlog.server.http._runner import BackgroundCollector
from spanlog.server.store._records import DEFAULT_ORG

CHROMIUM = os.environ.get("SPANLOG_CHROMIUM", "/usr/bin/chromium")
# Flags for a sandboxless container with no network but loopback: nothing may phone home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 10_000


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


@contextmanager
def serve_viewer(db_path: str) -> Iterator[Collector]:
    """A collector (which serves the viewer) on a free 127.0.0.1 port, with one key."""
    server = BackgroundCollector(db_path).start()
    try:
        _, token = server.call(lambda: create_key(server.store, DEFAULT_ORG, name="viewer"))
        yield Collector(server.url, token)
    finally:
        server.stop()


class PageProblems:
    """What went wrong inside the page: uncaught errors, console errors, outside requests."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []

    def check(self) -> None:
        assert not self.outside, f"the page reached outside the collector: {self.outside}"
        assert not self.errors, f"errors in the page: {self.errors}"


def open_context(browser: Any, collector: Collector, *, with_key: bool = True,
                 timezone_id: str | None = None) -> tuple[Any, PageProblems]:
    """A browser context that knows the API key (unless told not to) and records problems;
    ``timezone_id`` (e.g. "America/New_York") sets the browser's local time zone."""
    context = browser.new_context(viewport={"width": 1400, "height": 900},
                                  timezone_id=timezone_id)
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
