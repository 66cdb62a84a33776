"""The collector's HTTP API: endpoints, errors, body handling (PROTOCOL.md)."""

from __future__ import annotations

import gzip
import http.client
import json
import uuid
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.server.http._context import Settings


def _row(project_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "project_id": project_id, "log_id": "g", **fields}


def test_version_advertises_payload_limit(collector):
    """GET /version tells clients how big a request may be."""
    status, body = call(collector.url, "GET", "/version")
    assert status == 200
    assert body["logs3_payload_max_bytes"] == 32 * 1024 * 1024
    assert isinstance(body["version"], str)


def test_login_returns_org_and_own_url(collector):
    """Login returns the key's organization and the collector's own base URL as api_url."""
    status, body = call(collector.url, "POST", "/api/apikey/login", token=collector.api_key)
    assert status == 200
    [org] = body["org_info"]
    assert org["name"] == "default" and org["api_url"] == collector.url


def test_project_get_or_create_is_idempotent(collector):
    """POST /v1/project twice with one name gives one project, readable by id and listed."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    _, first = call(collector.url, "POST", "/v1/project", {"name": name}, token=collector.api_key)
    _, second = call(collector.url, "POST", "/v1/project", {"name": name, "org_name": "default"},
                     token=collector.api_key)
    assert first == second and first["name"] == name
    status, got = call(collector.url, "GET", f"/v1/project/{first['id']}", token=collector.api_key)
    assert status == 200 and got == first
    _, listed = call(collector.url, "GET", "/v1/project", token=collector.api_key)
    assert first in listed["objects"]


def test_logs3_row_is_fetched_with_server_fields(collector):
    """A logs3 row comes back with _xact_id, project_id and log_id, newest first."""
    pid = collector.project_id("api-fetch")
    a, b = _row(pid, input="a"), _row(pid, input="b")
    call(collector.url, "POST", "/logs3", {"rows": [a], "api_version": 2}, token=collector.api_key)
    call(collector.url, "POST", "/logs3", {"rows": [b], "api_version": 2}, token=collector.api_key)
    rows = collector.fetch("api-fetch")
    assert [r["id"] for r in rows[:2]] == [b["id"], a["id"]]
    assert int(rows[0]["_xact_id"]) > int(rows[1]["_xact_id"])
    assert rows[0]["project_id"] == pid and rows[0]["log_id"] == "g"
    assert rows[0]["created"]


def test_server_fields_sent_by_a_client_are_dropped(collector):
    """_xact_id, org_id and is_root are the collector's to set: a client's values for them
    are ignored, and the row is stored with the collector's own."""
    pid = collector.project_id("api-server-fields")
    row = {**_row(pid, input="x"), "_xact_id": "1", "org_id": "someone-else", "is_root": False}
    status, _ = call(collector.url, "POST", "/logs3", {"rows": [row], "api_version": 2},
                     token=collector.api_key)
    assert status == 200
    [stored] = collector.fetch("api-server-fields")
    assert stored["id"] == row["id"] and stored["input"] == "x"
    assert int(stored["_xact_id"]) > 1
    assert stored.get("org_id") != "someone-else"
    assert stored.get("is_root") is not False


def test_insert_endpoint_uses_project_from_path(collector):
    """/insert stores events without project_id into the project of the URL."""
    pid = collector.project_id("api-insert")
    status, body = call(collector.url, "POST", f"/v1/project_logs/{pid}/insert",
                        {"events": [{"id": "ins-1", "output": 1}]}, token=collector.api_key)
    assert status == 200 and body == {"row_ids": ["ins-1"]}
    assert [r["id"] for r in collector.fetch("api-insert")] == ["ins-1"]


def test_project_name_row_creates_project(collector):
    """A row with project_name (the ext shortcut) lands in that project, created on demand."""
    name = f"by-name-{uuid.uuid4().hex[:8]}"
    status, _ = call(collector.url, "POST", "/logs3",
                     {"rows": [{"id": "n1", "project_name": name}]}, token=collector.api_key)
    assert status == 200
    assert [r["id"] for r in collector.fetch(name)] == ["n1"]


@pytest.mark.parametrize(("bad", "where"), [
    ({"scores": {"acc": 1.5}}, "rows[1].scores.acc"),
    ({"scores": {"acc": "high"}}, "rows[1].scores.acc"),
    ({"scores": {"acc": True}}, "rows[1].scores.acc"),
    ({"tags": ["ok", 3]}, "rows[1].tags[1]"),
    ({"tags": "prod"}, "rows[1].tags"),
    ({"metadata": [1, 2]}, "rows[1].metadata"),
    ({"span_attributes": {"type": "banana"}}, "rows[1].span_attributes.type"),
    ({"surprise": 1}, "rows[1]: unknown field 'surprise'"),
    ({"id": None}, "rows[1].id"),
    ({"id": 7}, "rows[1].id"),
    ({"metrics": {"start": "noon"}}, "rows[1].metrics.start"),
    ({"span_parents": "abc"}, "rows[1].span_parents"),
    ({"experiment_id": "e1"}, "rows[1].experiment_id"),
])
def test_bad_row_rejects_whole_batch(collector, bad, where):
    """One bad row: 400 naming row index and field, and the good row before it is not stored."""
    pid = collector.project_id("api-bad")
    good = _row(pid, input="fine")
    status, body = call(collector.url, "POST", "/logs3",
                        {"rows": [good, {**_row(pid), **bad}]}, token=collector.api_key)
    assert status == 400
    assert where in body["error"]
    assert collector.fetch("api-bad", f"id = '{good['id']}'") == []


def test_row_without_project_is_400(collector):
    """A row with neither project_id nor project_name is refused, saying what is missing."""
    status, body = call(collector.url, "POST", "/logs3", {"rows": [{"id": "x"}]},
                        token=collector.api_key)
    assert status == 400 and "rows[0]: needs project_id or project_name" in body["error"]


@pytest.mark.parametrize(("raw", "expect"), [
    (b'{"rows": [', "invalid JSON at line 1 column 11"),
    (b'[1, 2]', "must be a JSON object"),
    (b'{"rows": {"a": 1}}', "body.rows"),
    (b'{"api_version": 2}', "missing field 'rows'"),
    (b'{"rows": [{"id": "a", "project_name": "p", "input": NaN}]}', "NaN"),
    (b'', "empty"),
    (b'\xff\xfe', "not UTF-8"),
    (b'{"rows": [{"id": "a", "project_name": "p", "metrics": {"x": 1e400}}]}',
     "line 1 column 61: number is infinity"),
    (b'{"rows": [{"id": "a", "project_name": "p", "input": "\\ud800"}]}',
     "line 1 column 54: no low surrogate"),
    (b'{"rows": [{"id": "a", "project_name": "p", "input": -Infinity}]}', "-Infinity at line 1"),
])
def test_malformed_body_is_400(collector, raw, expect):
    """Malformed bodies get 400 with a message saying what and where."""
    status, body = call(collector.url, "POST", "/logs3", raw=raw, token=collector.api_key)
    assert status == 400
    assert expect in body["error"]


def test_numbers_come_back_exactly_as_sent(collector):
    """Integers beyond 64 bits keep every digit; small floats are stored as json writes them."""
    pid = collector.project_id("api-numbers")
    values = {"big": 123456789012345678901234567890, "neg": -9223372036854775809,
              "tiny": 2.5e-07, "small": 1e-05, "float": 0.1, "huge": 1e300}
    row = _row(pid, id="numbers", metadata=values)
    status, body = call(collector.url, "POST", "/logs3", {"rows": [row]},
                        token=collector.api_key)
    assert status == 200, body
    [stored] = collector.fetch("api-numbers", "id = 'numbers'")
    assert stored["metadata"] == values
    assert all(type(stored["metadata"][k]) is type(v) for k, v in values.items())
    # The stored text is Python's (LIKE matches number tokens as json.dumps writes them).
    assert [r["id"] for r in collector.fetch("api-numbers", "metadata.tiny LIKE '%e-07'")] \
        == ["numbers"]


def test_body_without_content_type_is_accepted(collector):
    """A JSON body posted with no Content-Type header at all is still parsed."""
    pid = collector.project_id("api-nocontenttype")
    raw = json.dumps({"rows": [_row(pid, id="nct")]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", int(collector.url.rsplit(":", 1)[1]),
                                      timeout=10)
    try:
        conn.putrequest("POST", "/logs3", skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {collector.api_key}")
        conn.putheader("Content-Length", str(len(raw)))
        conn.endheaders(raw)
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        conn.close()
    assert [r["id"] for r in collector.fetch("api-nocontenttype")] == ["nct"]


def test_gzip_body_is_accepted(collector):
    """A Content-Encoding: gzip body is decompressed and stored."""
    pid = collector.project_id("api-gzip")
    raw = gzip.compress(json.dumps({"rows": [_row(pid, id="gz", input="x" * 5000)]}).encode())
    status, _ = call(collector.url, "POST", "/logs3", raw=raw, token=collector.api_key,
                     headers={"Content-Encoding": "gzip"})
    assert status == 200
    assert collector.fetch("api-gzip")[0]["input"] == "x" * 5000


def test_body_over_limit_is_413(make_collector):
    """A body over the advertised limit gets 413 with a JSON error, and nothing is stored."""
    server = make_collector(settings=Settings(max_body_bytes=10_000))
    status, body = call(server.url, "POST", "/logs3",
                        {"rows": [{"id": "big", "project_name": "p", "input": "x" * 20_000}]})
    assert status == 413 and "over the limit of 10000 bytes" in body["error"]
    _, version = call(server.url, "GET", "/version")
    assert version["logs3_payload_max_bytes"] == 10_000
    _, project = call(server.url, "POST", "/v1/project", {"name": "p"})
    _, page = call(server.url, "POST", f"/v1/project_logs/{project['id']}/fetch", {})
    assert page["events"] == []


def test_gzip_bomb_is_413(make_collector):
    """A small gzip body that inflates past the limit is refused with 413, not inflated."""
    server = make_collector(settings=Settings(max_body_bytes=1_000_000))
    bomb = gzip.compress(b'{"rows": ["' + b"A" * 30_000_000 + b'"]}', compresslevel=9)
    assert len(bomb) < 1_000_000
    status, body = call(server.url, "POST", "/logs3", raw=bomb,
                        headers={"Content-Encoding": "gzip"}, timeout=30)
    assert status == 413 and "decompressed body" in body["error"]


def test_unknown_project_is_404(collector):
    """Fetching or logging into a project id that does not exist is 404."""
    status, body = call(collector.url, "POST", f"/v1/project_logs/{uuid.uuid4()}/fetch", {},
                        token=collector.api_key)
    assert status == 404 and "not found" in body["error"]
    status, body = call(collector.url, "POST", "/logs3",
                        {"rows": [{"id": "a", "project_id": "nope"}]}, token=collector.api_key)
    assert status == 404 and "rows[0].project_id" in body["error"]


def test_unknown_endpoint_is_json_404(collector):
    """An unknown path gets a JSON 404 naming it; a wrong method gets 405."""
    status, body = call(collector.url, "GET", "/no/such/thing")
    assert status == 404 and "/no/such/thing" in body["error"]
    status, body = call(collector.url, "GET", "/logs3")
    assert status == 405 and "error" in body


@pytest.mark.parametrize(("token", "expect"), [
    (None, "missing Authorization"),
    ("not-a-key", "invalid API key"),
])
def test_bad_key_is_401(collector, token, expect):
    """Without a valid key the keyed collector answers 401 with a JSON error."""
    status, body = call(collector.url, "POST", "/logs3", {"rows": []}, token=token)
    assert status == 401 and expect in body["error"]


def test_bad_filter_is_400_with_position(collector):
    """A filter that does not parse is a 400 quoting the position."""
    pid = collector.project_id("api-filter")
    status, body = call(collector.url, "POST", f"/v1/project_logs/{pid}/fetch",
                        {"filter": "metadata.x = = 3"}, token=collector.api_key)
    assert status == 400 and body["error"].startswith("filter:")
    assert "position 13" in body["error"]


@pytest.mark.parametrize(("args", "expect"), [
    ({"cursor": "abc"}, "cursor"),
    ({"limit": 0}, "limit"),
    ({"limit": 5000}, "limit"),
    ({"filter": 5}, "filter"),
    ({"roots_only": "maybe"}, "roots_only"),
])
def test_bad_fetch_arguments_are_400(collector, args, expect):
    """Bad fetch arguments are 400 errors naming the argument."""
    pid = collector.project_id("api-filter")
    status, body = call(collector.url, "POST", f"/v1/project_logs/{pid}/fetch", args,
                        token=collector.api_key)
    assert status == 400 and body["error"].startswith(expect)


def test_overflow_upload_round_trip_and_errors(collector):
    """The overflow path stores an uploaded batch once; unknown or reused keys are refused."""
    pid = collector.project_id("api-overflow")
    payload = json.dumps({"rows": [_row(pid, id="ovf", input="y" * 1000)]}).encode()
    status, grant = call(collector.url, "POST", "/logs3/overflow",
                         {"content_type": "application/json", "size_bytes": len(payload),
                          "rows": []}, token=collector.api_key)
    assert status == 200 and grant["method"] == "PUT"
    assert grant["signedUrl"].startswith(collector.url + "/logs3/overflow/")
    path = grant["signedUrl"][len(collector.url):]
    assert call(collector.url, "PUT", path, raw=payload + b"extra")[0] == 413
    assert call(collector.url, "PUT", path, raw=payload)[0] == 404  # discarded by the 413
    _, grant = call(collector.url, "POST", "/logs3/overflow", {"size_bytes": len(payload)},
                    token=collector.api_key)
    path = grant["signedUrl"][len(collector.url):]
    assert call(collector.url, "PUT", path, raw=payload)[0] == 200
    reference = {"rows": {"type": "logs3_overflow", "key": grant["key"]}, "api_version": 2}
    assert call(collector.url, "POST", "/logs3", reference, token=collector.api_key)[0] == 200
    assert [r["id"] for r in collector.fetch("api-overflow")] == ["ovf"]
    status, body = call(collector.url, "POST", "/logs3", reference, token=collector.api_key)
    assert status == 400 and "no completed overflow upload" in body["error"]
    status, body = call(collector.url, "POST", "/logs3/overflow", {"size_bytes": 2**40},
                        token=collector.api_key)
    assert status == 413 and "overflow upload limit" in body["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_corrupt_compressed_body_is_400(collector, encoding):
    """A body that does not decode under its Content-Encoding is a JSON 400 saying so."""
    status, body = call(collector.url, "POST", "/logs3", raw=b'{"rows": []}',
                        token=collector.api_key, headers={"Content-Encoding": encoding})
    assert status == 400
    assert f"cannot decode Content-Encoding '{encoding}'" in body["error"]


def test_overloaded_writer_answers_503_with_retry_after(make_collector, monkeypatch):
    """When too many rows wait to be written, new writes get 503 with Retry-After."""
    from spanlog.server.store.sqlite import _writer as _sqlite_writer

    server = make_collector()
    assert call(server.url, "POST", "/v1/project", {"name": "p"})[0] == 200
    monkeypatch.setattr(_sqlite_writer, "MAX_PENDING_PIECES", -1)
    status, body = call(server.url, "POST", "/logs3",
                        {"rows": [{"id": "a", "project_name": "p"}]})
    assert status == 503 and "overloaded" in body["error"]
