"""One slow filter never stalls the collector (docs/collector.md, "What it guarantees"):
LIKE patterns have a cost limit, a read has a time budget, a disconnected client's read is
stopped, auth and ingest never wait behind reads, and SIGTERM ends a collector at once."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from spanlog_server_http import call, start_serve, until, until_logged

from spanlog.server.http._context import Settings
from spanlog.server.http._runner import BackgroundCollector
from spanlog.server.store.sqlite import _store as sqlite_store
from spanlog.server.store.sqlite._store import READS_PER_PROJECT

# The filter that took ~55 s over 3,000 rows of ~7 KB before patterns had a cost limit.
WILD = " OR ".join(["input ILIKE '%a%a%a%a%a%z'"] * 100)
# Within every limit, and still seconds of work over such rows: what the time budget is for.
SLOW = " OR ".join(["input ILIKE '%a%a%z'"] * 8)


def _load(url: str, project: str, rows: int = 3_000) -> str:
    """``rows`` rows of ~7 KB each into ``project``; its id."""
    status, body = call(url, "POST", "/v1/project", {"name": project})
    assert status == 200, body
    pid = str(body["id"])
    for start in range(0, rows, 500):
        batch = [{"id": f"r{i}", "project_id": pid, "input": "a" * 7_000}
                 for i in range(start, min(rows, start + 500))]
        status, body = call(url, "POST", "/logs3", {"rows": batch}, timeout=60)
        assert status == 200, body
    return pid


def _fetch(url: str, pid: str, filter: str, timeout: float = 60,
           token: str | None = None) -> tuple[int, Any]:
    return call(url, "POST", f"/v1/project_logs/{pid}/fetch", {"filter": filter},
                timeout=timeout, token=token)


def _in_background(fn: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def _answer(fetch: Callable[[], tuple[int, Any]]) -> tuple[int | str, Any]:
    """What a fetch got: its status and body, or ("gone", the error) when the connection
    ended without an answer."""
    try:
        return fetch()
    except OSError as exc:  # urllib's URLError, a reset or a closed connection
        return "gone", repr(exc)


def _send_fetch(url: str, pid: str, filter: str) -> socket.socket:
    """Send a fetch without reading its answer; the open connection (close it to hang up)."""
    parts = urllib.parse.urlsplit(url)
    body = json.dumps({"filter": filter}).encode()
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(f"POST /v1/project_logs/{pid}/fetch HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + body)
    return sock


@pytest.fixture
def slow_collector(tmp_path: Path) -> Any:
    def make(budget: float) -> BackgroundCollector:
        settings = Settings()
        settings.query_timeout = budget
        server = BackgroundCollector(str(tmp_path / f"budget-{budget}.sqlite3"),
                                     settings=settings).start()
        started.append(server)
        return server
    started: list[BackgroundCollector] = []
    yield make
    for server in started:
        server.stop()


def test_like_patterns_have_a_cost_limit(collector):
    """Too many '%' in one pattern, or in the whole filter: 400 naming the position, before
    anything runs."""
    pid = collector.project_id("wildcards")
    key = collector.api_key
    status, body = _fetch(collector.url, pid, WILD, timeout=10, token=key)
    assert status == 400
    assert "at position 12" in body["error"] and "6 '%' wildcards" in body["error"]
    status, body = _fetch(collector.url, pid, " OR ".join(["input LIKE '%a%b%'"] * 9),
                          token=key)
    assert status == 400
    assert "over the limit of 24 per filter" in body["error"]
    assert "at position 187" in body["error"]
    status, body = _fetch(collector.url, pid, "input LIKE '%%%%a%%%%b%%%_%' OR "
                          + " OR ".join(["input LIKE '%refund%'"] * 10), token=key)
    assert status == 200, body  # a run of '%' counts once, '\\%' is no wildcard


@pytest.mark.slow
def test_a_slow_read_is_stopped_at_its_time_budget(slow_collector):
    """A filter within the limits that runs past --query-timeout answers 400 saying so."""
    server = slow_collector(0.5)
    pid = _load(server.url, "slow")
    # The 400 comes only from the budget stopping the query mid-run (SQLite's progress
    # handler); a read that ran to its end would answer 200.
    status, body = _fetch(server.url, pid, SLOW)
    assert status == 400, body
    assert "took longer than 0.5 s" in body["error"] and "--query-timeout" in body["error"]
    assert server.store.reads_running == 0  # the stopped read holds no reader
    # The reader is fine afterwards: a narrow read of the same project answers.
    status, body = _fetch(server.url, pid, "id = 'r7'")
    assert status == 200 and [r["id"] for r in body["events"]] == ["r7"]
    status, body = call(server.url, "POST", f"/v1/project_logs/{pid}/fetch",
                        {"filter": SLOW, "roots_only": True}, timeout=60)
    assert status == 400, body


@pytest.mark.slow
def test_auth_ingest_and_other_projects_never_wait_behind_slow_reads(slow_collector):
    """Eight slow fetches of one project at once: /ping, ingest and another project's fetch
    still answer at once."""
    server = slow_collector(30.0)
    pid = _load(server.url, "slow", rows=6_000)  # each SLOW read: seconds of work
    _, other = call(server.url, "POST", "/v1/project", {"name": "other"})
    answers: list[Any] = []
    slow = [_in_background(lambda: answers.append(_answer(
        lambda: _fetch(server.url, pid, SLOW, timeout=120)))) for _ in range(8)]
    # The project's turns are taken: READS_PER_PROJECT of its fetches run, the others wait.
    until(lambda: server.store.reads_running == READS_PER_PROJECT, "the slow fetches to run")
    for _ in range(3):
        # Each answers while the slow fetches still run or wait their turn (not one has
        # answered, as many still run): nothing waited for a slow read to end. The timeouts
        # only bound a hang.
        status, _ = call(server.url, "GET", "/ping", timeout=30)
        assert status == 200
        assert not answers and server.store.reads_running == READS_PER_PROJECT, answers
        status, _ = call(server.url, "POST", "/logs3", {"rows": [
            {"id": "late", "project_id": other["id"], "input": "x"}]}, timeout=30)
        assert status == 200
        assert not answers and server.store.reads_running == READS_PER_PROJECT, answers
        status, body = _fetch(server.url, other["id"], "input = 'x'", timeout=30)
        assert status == 200 and body["events"]
        assert not answers and server.store.reads_running == READS_PER_PROJECT, answers
    for thread in slow:
        thread.join(120)
    assert len(answers) == 8 and all(status in (200, 400) for status, _ in answers), answers


@pytest.mark.slow
def test_a_disconnected_clients_read_is_stopped(slow_collector, monkeypatch):
    """Fetches whose clients hung up stop running: the project's next fetch gets a reader
    at once instead of waiting for the abandoned ones."""
    server = slow_collector(60.0)
    pid = _load(server.url, "slow", rows=6_000)  # each SLOW read: seconds of work
    ended: list[str] = []  # how each read of the slow filter ended
    real_fetch_page = sqlite_store.fetch_page

    def watched(conn: sqlite3.Connection, **kwargs: Any) -> Any:
        if kwargs["filter_text"] != SLOW:
            return real_fetch_page(conn, **kwargs)
        try:
            page = real_fetch_page(conn, **kwargs)
        except sqlite3.OperationalError as exc:
            ended.append("stopped" if "interrupt" in str(exc) else repr(exc))
            raise
        ended.append("ran to its end")
        return page

    monkeypatch.setattr(sqlite_store, "fetch_page", watched)
    clients = [_send_fetch(server.url, pid, SLOW) for _ in range(4)]
    try:
        until(lambda: server.store.reads_running == READS_PER_PROJECT,
              "the slow fetches to run")
    finally:
        for sock in clients:
            sock.close()
    # Every abandoned read ends (the ones waiting their turn never start), each stopped
    # mid-run: none ran to its end, as it would if nobody stopped it.
    until(lambda: server.store.reads_running == 0 and len(ended) >= READS_PER_PROJECT,
          "the abandoned reads to end")
    assert set(ended) == {"stopped"}, ended
    status, body = _fetch(server.url, pid, "id = 'r1'", timeout=30)
    assert status == 200 and [r["id"] for r in body["events"]] == ["r1"]
    assert set(ended) == {"stopped"}, ended


@pytest.mark.slow
def test_sigterm_ends_the_collector_within_seconds_whatever_reads_run(tmp_path: Path):
    """`spanlog serve` stops on SIGTERM within a few seconds while slow fetches run."""
    proc, url, _ = start_serve(str(tmp_path / "term.sqlite3"), "--query-timeout", "60",
                               "--workers", "0", "--log-level", "debug",
                               stderr=subprocess.PIPE)
    try:
        pid = _load(url, "slow")
        answers: list[Any] = []
        fetches = [_in_background(lambda: answers.append(_answer(
            lambda: _fetch(url, pid, SLOW, timeout=120)))) for _ in range(4)]
        # The project's turns are taken (the store logs each read it starts at DEBUG).
        until_logged(proc, rf"a read started \({READS_PER_PROJECT} running\)")
        assert not answers, answers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # a bound on a hang; it ends cleanly
        for thread in fetches:
            thread.join(30)
        # It ended before any slow read could run to its end: each fetch answered 503 or
        # lost its connection, none got rows (200) or the budget's 400.
        assert len(answers) == 4, answers
        assert all(status in (503, "gone") for status, _ in answers), answers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
