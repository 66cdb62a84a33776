"""Inputs that used to fail with a 500 get the 4xx that says what is wrong (docs/collector.md,
"What it guarantees"), and a corrupt gzip body or an unknown encoding is named as such."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from spanlog_server_http import call

from spanlog.server.http._runner import BackgroundCollector

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> BackgroundCollector:
    path = tmp_path_factory.mktemp("refusals") / "r.sqlite3"
    with BackgroundCollector(str(path)) as s:
        rows = [{"id": "a", "project_name": "p", "metadata": {'k"q': "value"}}]
        assert call(s.url, "POST", "/logs3", {"rows": rows}, headers=JSON)[0] == 200
        yield s


def _fetch(server: BackgroundCollector, body: dict[str, object]) -> tuple[int, object]:
    pid = call(server.url, "POST", "/v1/project", {"name": "p"}, headers=JSON)[1]["id"]
    return call(server.url, "POST", f"/v1/project_logs/{pid}/fetch", body, headers=JSON)


@pytest.mark.parametrize("cursor", [str(2**63), str(2**64), "9" * 40])
def test_a_cursor_beyond_64_bits_is_400(server: BackgroundCollector, cursor: str) -> None:
    status, answer = _fetch(server, {"cursor": cursor})
    assert status == 400 and "cursor" in answer["error"], answer  # type: ignore[index]


@pytest.mark.parametrize("expr", ["metadata.`k\"q` LIKE '%val%'",
                                  "metadata.`k\"q` IS NULL",
                                  "metadata.`k\"q` > 'a'"])
def test_a_key_with_a_double_quote_is_a_4xx_or_works(server: BackgroundCollector,
                                                      expr: str) -> None:
    status, answer = _fetch(server, {"filter": expr})
    assert status in (200, 400), (status, answer)
    if status == 400:
        assert "double quote" in answer["error"], answer  # type: ignore[index]


def test_a_corrupt_gzip_body_is_named(server: BackgroundCollector) -> None:
    body = gzip.compress(b'{"rows": []}')
    for broken in (body[:-8] + b"garbage!", b"not gzip at all", body[:10]):
        status, answer = call(server.url, "POST", "/logs3", raw=broken,
                              headers={**JSON, "Content-Encoding": "gzip"})
        assert status == 400, (status, answer)
        assert "gzip" in answer["error"] and "empty" not in answer["error"], answer


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "x-unknown"])
def test_an_unsupported_encoding_is_415_in_json(server: BackgroundCollector,
                                                encoding: str) -> None:
    status, answer = call(server.url, "POST", "/logs3", raw=b"\x00\x01\x02binary",
                          headers={**JSON, "Content-Encoding": encoding})
    assert status == 415, (status, answer)
    assert isinstance(answer, dict) and encoding in answer["error"], answer


def test_a_failed_batch_creates_no_project(server: BackgroundCollector) -> None:
    rows = [{"id": "ok", "project_name": "never-created"},
            {"id": "bad", "project_name": "never-created-2", "scores": {"x": 5}}]
    assert call(server.url, "POST", "/logs3", {"rows": rows}, headers=JSON)[0] == 400
    rows[1] = {"id": "bad", "project_id": "no-such-project"}
    assert call(server.url, "POST", "/logs3", {"rows": rows}, headers=JSON)[0] == 404
    names = [p["name"] for p in call(server.url, "GET", "/v1/project")[1]["objects"]]
    assert "never-created" not in names and "never-created-2" not in names


def test_comment_only_feedback_needs_object_metadata(server: BackgroundCollector) -> None:
    pid = call(server.url, "POST", "/v1/project", {"name": "p"}, headers=JSON)[1]["id"]
    for metadata in ("text", 3, ["x"]):
        status, answer = call(server.url, "POST", f"/v1/project_logs/{pid}/feedback",
                              {"feedback": [{"id": "a", "comment": "hi",
                                             "metadata": metadata}]}, headers=JSON)
        assert status == 400 and "metadata" in answer["error"], (metadata, status, answer)


def test_a_full_disk_is_507_and_reads_go_on(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("full") / "full.sqlite3"
    with BackgroundCollector(str(path)) as s:
        rows = [{"id": "a", "project_name": "p", "input": "x"}]
        assert call(s.url, "POST", "/logs3", {"rows": rows}, headers=JSON)[0] == 200

        async def fill() -> None:  # the file may not grow any more: SQLite's "disk is full"
            def job(txn: Any) -> None:
                pages = txn.conn.execute("PRAGMA page_count").fetchone()[0]
                txn.conn.execute(f"PRAGMA max_page_count = {pages}")
            await s.store._write(job)  # type: ignore[attr-defined]

        s.call(fill)
        big = [{"id": f"b{i}", "project_name": "p", "input": "y" * 20000} for i in range(50)]
        status, answer = call(s.url, "POST", "/logs3", {"rows": big}, headers=JSON)
        assert status == 507 and "disk" in answer["error"] and "full" in answer["error"], answer
        pid = call(s.url, "POST", "/v1/project", {"name": "p"}, headers=JSON)
        assert pid[0] == 200
        status, page = call(s.url, "POST", f"/v1/project_logs/{pid[1]['id']}/fetch", {},
                            headers=JSON)
        assert status == 200 and [r["id"] for r in page["events"]] == ["a"]


def test_nul_characters_are_refused_naming_where(server: BackgroundCollector) -> None:
    raw = b'{"rows":[{"id":"n1","project_name":"p"},' \
          b'{"id":"n2","project_name":"p","input":{"q":"a\\u0000b"}}]}'
    status, answer = call(server.url, "POST", "/logs3", raw=raw, headers=JSON)
    assert status == 400 and "rows[1].input" in answer["error"], answer
    assert "NUL" in answer["error"]
    # An escaped backslash before "u0000" is plain text, stored as it is.
    raw = b'{"rows":[{"id":"n3","project_name":"p","input":"a\\\\u0000b"}]}'
    assert call(server.url, "POST", "/logs3", raw=raw, headers=JSON)[0] == 200
    status, answer = _fetch(server, {"filter": "input = 'a\u0000b'"})
    assert status == 400 and "NUL" in answer["error"], answer  # type: ignore[index]
