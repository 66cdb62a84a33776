"""``GET /v1/project_logs/{id}/export`` (docs/protocol.md, "Export"): every matching row as
JSON Lines or CSV, streamed, with the filter, range and roots_only of fetch."""

from __future__ import annotations

import csv
import io
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.server.http._export import EXPORT_PAGE, attachment, csv_columns

NASTY = 'He said "hi", then\nleft; naïve — 日本語, emoji 🙂, tab\tand \r\n CRLF'


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, dict(exc.headers), exc.read()
        finally:
            exc.close()


def _log(collector: Any, pid: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row.setdefault("project_id", pid)
    status, body = call(collector.url, "POST", "/logs3", {"rows": rows},
                        token=collector.api_key)
    assert status == 200, body


def _project(collector: Any) -> str:
    pid: str = collector.project_id(f"export-{uuid.uuid4().hex[:8]}")
    return pid


def _export(collector: Any, pid: str, **query: Any) -> tuple[dict[str, str], bytes]:
    path = f"/v1/project_logs/{pid}/export?{urllib.parse.urlencode(query)}"
    status, headers, body = _get(collector.url + path, collector.api_key)
    assert status == 200, body
    return headers, body


def _trace(i: int, now: float, **root: Any) -> list[dict[str, Any]]:
    trace = f"{i:032x}"
    return [{"id": f"root{i}", "span_id": f"r{i}", "root_span_id": trace,
             "span_attributes": {"name": "answer", "type": "task"},
             "metrics": {"start": now - 60 * i, "end": now - 60 * i + 1}, **root},
            {"id": f"llm{i}", "span_id": f"l{i}", "root_span_id": trace,
             "span_parents": [f"r{i}"], "span_attributes": {"name": "chat", "type": "llm"},
             "metadata": {"model": "gpt-4o-mini"},
             "metrics": {"start": now - 60 * i, "end": now - 60 * i + 1,
                         "prompt_tokens": 10, "completion_tokens": 5}}]


def test_jsonl_holds_every_matching_row_across_pages(collector: Any) -> None:
    """More rows than one store read: every one exactly once, newest first, each line the
    row fetch returns, and the filter and time range are applied."""
    pid = _project(collector)
    now = time.time()
    rows = [{"id": f"r{i}", "span_id": f"s{i}", "root_span_id": f"t{i}", "input": i,
             "metadata": {"env": "prod" if i % 3 else "dev"},
             "metrics": {"start": now - i}} for i in range(EXPORT_PAGE * 2 + 7)]
    for start in range(0, len(rows), 500):
        _log(collector, pid, rows[start:start + 500])
    headers, body = _export(collector, pid, format="jsonl")
    assert headers["Content-Type"].startswith("application/x-ndjson")
    assert headers["Content-Disposition"].startswith('attachment; filename="spanlog-export-')
    assert body.endswith(b"\n")
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(r["id"] for r in rows)
    xacts = [int(r["_xact_id"]) for r in lines]
    assert xacts == sorted(xacts, reverse=True)
    fetched = collector.fetch(collector_name(collector, pid), limit=3)
    assert lines[:3] == fetched
    _, body = _export(collector, pid, filter="metadata.env = 'dev'", since=str(now - 400.5),
                      until=str(now - 99.5))
    ids = {json.loads(line)["id"] for line in body.decode().splitlines()}
    assert ids == {f"r{i}" for i in range(100, 401) if i % 3 == 0}


def collector_name(collector: Any, pid: str) -> str:
    return next(name for name, known in collector._project_ids.items() if known == pid)


def test_csv_columns_and_escaping(collector: Any) -> None:
    """CSV: a header of the documented columns, nested values as JSON text, and quotes,
    commas, newlines and non-ASCII text surviving a round trip through a CSV reader."""
    pid = _project(collector)
    _log(collector, pid, [{
        "id": "nasty", "span_id": "s", "root_span_id": "t", "input": NASTY,
        "output": {"text": NASTY, "n": [1, 2]}, "error": None, "tags": ["a,b", 'q"q'],
        "scores": {"ok": 1}, "metadata": {"k": NASTY, "flag": True},
        "span_attributes": {"name": "na,me", "type": "llm"},
        "metrics": {"start": 1700000000.5, "end": 1700000001.25}}])
    headers, body = _export(collector, pid, format="csv")
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"].endswith(".csv")
    table = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert table[0] == [name for name, _ in csv_columns(False)]
    assert len(table) == 2
    row = dict(zip(table[0], table[1], strict=True))
    assert row["input"] == NASTY
    assert json.loads(row["output"]) == {"text": NASTY, "n": [1, 2]}
    assert json.loads(row["tags"]) == ["a,b", 'q"q']
    assert json.loads(row["metadata"]) == {"k": NASTY, "flag": True}
    assert (row["name"], row["type"], row["error"]) == ("na,me", "llm", "")
    assert (float(row["start"]), float(row["end"])) == (1700000000.5, 1700000001.25)
    assert row["id"] == "nasty" and row["root_span_id"] == "t"


def test_roots_only_csv_carries_trace_totals(collector: Any) -> None:
    """roots_only: one line per trace with its score averages and totals as columns."""
    pid = _project(collector)
    now = time.time()
    _log(collector, pid, _trace(1, now, scores={"q": 0.5}) + _trace(2, now))
    _, body = _export(collector, pid, format="csv", roots_only="true")
    table = list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))
    assert [r["id"] for r in table] == ["root2", "root1"]
    assert table[1]["trace_spans"] == "2" and table[1]["trace_tokens"] == "15"
    assert table[1]["trace_llm_calls"] == "1" and table[1]["trace_errors"] == "0"
    assert json.loads(table[1]["scores_avg"]) == {"q": 0.5}
    _, body = _export(collector, pid, roots_only="1")
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["trace_totals"]["tokens"] for r in lines] == [15, 15]


def test_an_empty_export_is_a_header_or_nothing(collector: Any) -> None:
    pid = _project(collector)
    _, body = _export(collector, pid, format="csv")
    assert body.decode().splitlines() == [",".join(n for n, _ in csv_columns(False))]
    assert _export(collector, pid)[1] == b""


@pytest.mark.parametrize(("query", "message"), [
    ({"format": "xml"}, "format: must be one of jsonl, csv, got 'xml'"),
    ({"filter": "metadata.x = "}, "filter:"),
    ({"since": "soon"}, "since: 'soon' is no time"),
    ({"roots_only": "maybe"}, "roots_only: must be true or false"),
    ({"limit": "5"}, "limit: an export has no limit"),
])
def test_bad_requests_say_what_is_wrong(collector: Any, query: dict[str, str],
                                        message: str) -> None:
    pid = _project(collector)
    path = f"/v1/project_logs/{pid}/export?{urllib.parse.urlencode(query)}"
    status, answer = call(collector.url, "GET", path, token=collector.api_key)
    assert status == 400 and answer["error"].startswith(message), answer


def test_export_needs_a_key_that_may_read_the_project(collector: Any) -> None:
    pid = _project(collector)
    status, answer = call(collector.url, "GET", f"/v1/project_logs/{pid}/export")
    assert status == 401, answer
    status, answer = call(collector.url, "GET", f"/v1/project_logs/{pid}/export",
                          token="sk-not-a-key")
    assert status == 401, answer
    status, answer = call(collector.url, "GET", f"/v1/project_logs/{uuid.uuid4()}/export",
                          token=collector.api_key)
    assert status == 404, answer


def test_a_client_that_leaves_stops_the_export(collector: Any) -> None:
    """A client reading only the first bytes and closing: the collector keeps serving."""
    pid = _project(collector)
    _log(collector, pid, [{"id": f"r{i}", "input": "x" * 2000} for i in range(1500)])
    host, port = collector.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /v1/project_logs/{pid}/export HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {collector.api_key}\r\n\r\n".encode())
        assert b"200 OK" in sock.recv(4096)
    assert len(collector.fetch(collector_name(collector, pid), limit=5)) == 5
    _, body = _export(collector, pid)
    assert body.count(b"\n") == 1500


def test_attachment_names() -> None:
    disposition = attachment("Chat bot/é", "csv", now=0)
    assert disposition == ('attachment; filename="spanlog-Chat_bot-19700101T000000Z.csv"; '
                           "filename*=UTF-8''spanlog-Chat%20bot%2F%C3%A9-19700101T000000Z.csv")
