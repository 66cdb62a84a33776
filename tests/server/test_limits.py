"""Limits that hold whatever a client sends (docs/collector.md, "What it guarantees"):
memory per request, JSON nesting, and the JSON error of every refused body."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from spanlog_server_http import call, start_serve

from spanlog.server.http._context import BUDGET
from spanlog.server.http._runner import BackgroundCollector


def _rss_kib(pid: int) -> int:
    """Peak resident memory of ``pid`` and of its children (the ingest workers), in KiB."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


@pytest.mark.slow  # a `spanlog serve` process, three 30 MiB bodies: 2 to 10 s a case
@pytest.mark.parametrize(("item", "workers"), [(b"{}", "0"), (b'{"a":0}', "0"),
                                              (b'{"a":0}', "1")])
def test_a_row_bomb_is_refused_before_decoding_in_bounded_memory(tmp_path: Path, item: bytes,
                                                                 workers: str) -> None:
    # 30 MiB of tiny rows gzip to about 30 KiB; decoding them all takes hundreds of MB. The
    # body is refused by its count of objects and arrays, made before any decoding.
    raw = b'{"rows":[' + b",".join([item] * (30 * 1024 * 1024 // (len(item) + 1))) + b"]}"
    body = gzip.compress(raw, 9)
    proc, url, _ = start_serve(str(tmp_path / "bomb.sqlite3"), "--workers", workers)
    try:
        before = _rss_kib(proc.pid)
        peak = before
        for _ in range(3):
            status, answer = call(url, "POST", "/logs3", raw=body, timeout=30,
                                  headers={"Content-Encoding": "gzip"})
            assert status == 413, (status, answer)
            assert "JSON objects and arrays is over the limit of 1,000,000" in answer["error"]
            peak = max(peak, _rss_kib(proc.pid))
        assert peak - before < 400 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
        assert call(url, "GET", "/version")[0] == 200
    finally:
        proc.terminate()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def _nested(depth: int) -> str:
    """JSON text of ``depth`` nested objects (json.dumps would hit Python's recursion limit)."""
    return '{"a":' * (depth - 1) + '"leaf"' + "}" * (depth - 1)


def _row(depth: int, index: int = 0, merge: bool = False) -> bytes:
    rows = ['{"id":"ok","project_name":"p"}'] * index
    merging = '"_is_merge":true,' if merge else ""
    rows.append('{"id":"r","project_name":"p",' + merging + '"metadata":' + _nested(depth)
                + "}")
    return ('{"rows":[' + ",".join(rows) + "]}").encode()


@pytest.mark.parametrize("depth", [65, 500, 1000, 1021])
# With a worker: a worker process started for each case (1 to 2 s).
@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_deep_json_is_refused_naming_row_and_field(tmp_path: Path, depth: int,
                                                   workers: int) -> None:
    from spanlog.server.http._context import Settings
    with BackgroundCollector(str(tmp_path / "deep.sqlite3"),
                             settings=Settings(ingest_workers=workers)) as server:
        status, answer = call(server.url, "POST", "/logs3", raw=_row(depth, 1))
        assert status == 400, (status, answer)
        assert "rows[1].metadata" in answer["error"] and "64" in answer["error"], answer
        # A merge of the same depth goes the same way, and nothing was stored.
        status, answer = call(server.url, "POST", "/logs3", raw=_row(depth, 0, True))
        assert status == 400 and "rows[0].metadata" in answer["error"], answer
        assert call(server.url, "GET", "/v1/project")[1]["objects"] == []


def test_nesting_up_to_the_limit_is_stored(tmp_path: Path) -> None:
    with BackgroundCollector(str(tmp_path / "ok.sqlite3")) as server:
        # body > rows > row > metadata: the metadata itself may nest 60 levels.
        for merge in (False, True):
            status, answer = call(server.url, "POST", "/logs3", raw=_row(60, 0, merge))
            assert status == 200, answer
        status, answer = call(server.url, "POST", "/logs3", raw=_row(2000))
        assert status == 400 and "64" in answer["error"], answer


def test_overflow_reservations_are_capped_per_organization(tmp_path: Path) -> None:
    with BackgroundCollector(str(tmp_path / "o.sqlite3")) as server:
        answers = [call(server.url, "POST", "/logs3/overflow", {"size_bytes": 1000})
                   for _ in range(20)]
        assert [status for status, _ in answers[:16]] == [200] * 16
        status, answer = answers[16]
        assert status == 503 and "overflow uploads" in answer["error"], answer
        # Bytes, too: four of the largest uploads at most.
        with BackgroundCollector(str(tmp_path / "p.sqlite3")) as other:
            big = 256 * 1024 * 1024
            statuses = [call(other.url, "POST", "/logs3/overflow", {"size_bytes": big})[0]
                        for _ in range(5)]
            assert statuses == [200, 200, 200, 200, 503]


def test_bodies_held_at_once_are_bounded(tmp_path: Path) -> None:
    from spanlog.server.http._context import Settings
    settings = Settings(max_body_bytes=1000, max_bodies_bytes=1500)
    with BackgroundCollector(str(tmp_path / "b.sqlite3"), settings=settings) as server:
        host, port = "127.0.0.1", server.port
        # A client that sends 900 bytes of a body and stops holds them.
        slow = socket.create_connection((host, port))
        slow.sendall(b"POST /logs3 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
                     b"\r\n" + b" " * 900)
        budget = server.app[BUDGET]
        _until(lambda: budget.used == 900, "the 900 bytes to be held")
        try:
            raw = json.dumps({"rows": [{"id": "x" * 800, "project_name": "p"}]}).encode()
            status, answer = call(server.url, "POST", "/logs3", raw=raw)
            assert status == 503 and "busy" in answer["error"], answer
        finally:
            slow.close()
        _until(lambda: budget.used == 0, "the closed connection's bytes to be given back")
        assert call(server.url, "POST", "/logs3", raw=raw)[0] == 200


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` (every 10 ms) until it holds; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
