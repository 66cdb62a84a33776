"""Shared fixtures: a real collector on a local port for every suite that needs one, and
spanlog's internal errors turned into test failures in every suite."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spanlog.server.http._auth import create_key
from spanlog.server.http._runner import BackgroundCollector
from spanlog.server.store._records import DEFAULT_ORG

# Suites that start a browser, a serverless runtime, PostgreSQL or Node: all of them slow.
_SLOW_SUITES = frozenset({"viewer", "runtimes", "store"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of the slow suites ``slow`` (``pytest -m "not slow"`` skips them)."""
    here = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(here).parts
        if parts and parts[0] in _SLOW_SUITES:
            item.add_marker(pytest.mark.slow)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ExpectedErrors:
    """The ERROR records the ``spanlog`` logger emitted during a test that expects some."""

    def __init__(self, handler: _Errors) -> None:
        self._handler = handler

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self._handler.records]


@pytest.fixture(autouse=True)
def spanlog_errors(request: pytest.FixtureRequest) -> Iterator[_Errors]:
    """Fail any test in which spanlog logged an ERROR (the SDK and the collector never raise
    them into their callers, so this is how their bugs show), unless the test asked for
    ``expect_spanlog_errors``."""
    handler = _Errors()
    log = logging.getLogger("spanlog")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
    if "expect_spanlog_errors" not in request.fixturenames and handler.records:
        messages = [handler.format(r) for r in handler.records]
        pytest.fail(f"spanlog logged internal errors: {messages}")


@pytest.fixture
def expect_spanlog_errors(spanlog_errors: _Errors) -> ExpectedErrors:
    """Allow (and expose) ERROR records of the ``spanlog`` logger in this test."""
    return ExpectedErrors(spanlog_errors)


class CollectorHandle:
    """A running collector and small blocking helpers to read what it stored."""

    def __init__(self, server: BackgroundCollector, api_key: str) -> None:
        self.server = server
        self.url = server.url
        self.api_key = api_key
        self._project_ids: dict[str, str] = {}

    def request(self, method: str, path: str, body: Any = None,
                timeout: float = 10.0) -> Any:
        """Call the collector's API with this handle's key; return the decoded JSON reply."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.api_key}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            exc.close()
            raise AssertionError(f"{method} {path} -> {exc.code}: {detail}") from None

    def project_id(self, name: str) -> str:
        """The id of project ``name`` (created if missing)."""
        if name not in self._project_ids:
            self._project_ids[name] = self.request("POST", "/v1/project", {"name": name})["id"]
        return self._project_ids[name]

    def fetch(self, project: str = "Global", filter: str | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
        """Rows of ``project`` via the fetch API, most recently updated first."""
        body: dict[str, Any] = {"limit": min(limit, 1000)}
        if filter is not None:
            body["filter"] = filter
        pid = self.project_id(project)
        rows: list[dict[str, Any]] = []
        while len(rows) < limit:
            page = self.request("POST", f"/v1/project_logs/{pid}/fetch", body)
            rows.extend(page["events"])
            if not page.get("cursor"):
                break
            body["cursor"] = page["cursor"]
        return rows[:limit]

    def wait_for_rows(self, n: int, project: str = "Global", filter: str | None = None,
                      timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll fetch until at least ``n`` rows match; AssertionError with what it saw."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            rows = self.fetch(project, filter, limit=max(n, 1000))
            if len(rows) >= n:
                return rows
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected at least {n} rows in project {project!r}"
                    f"{f' matching {filter!r}' if filter else ''} within {timeout}s, "
                    f"saw {len(rows)}: {json.dumps(rows, default=str)[:2000]}")
            time.sleep(delay)  # polling interval between condition checks, not a wait
            delay = min(delay * 2, 0.1)

    def trace(self, project: str, root_span_id: str) -> list[dict[str, Any]]:
        """Every span of one trace, each with ``scores_avg``."""
        pid = self.project_id(project)
        quoted = urllib.parse.quote(root_span_id, safe="")
        return list(self.request("GET", f"/v1/project_logs/{pid}/trace/{quoted}")["spans"])


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorHandle]:
    """A collector on 127.0.0.1 (fresh SQLite file, one full-access key) for the session."""
    db = Path(tmp_path_factory.mktemp("collector")) / "spanlog.sqlite3"
    server = BackgroundCollector(str(db)).start()
    try:
        _, token = server.call(lambda: create_key(server.store, DEFAULT_ORG, name="tests"))
        yield CollectorHandle(server, token)
    finally:
        server.stop()


@pytest.fixture(scope="session")  # a class: module fixtures may use it too
def handle_of() -> type[CollectorHandle]:
    """Wrap a collector a test started itself: ``handle_of(server, token)``."""
    return CollectorHandle
