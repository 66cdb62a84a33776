"""Both engines give back the same JSON number text for what was written (docs/protocol.md):
PostgreSQL's jsonb keeps a number's value and scale but not its text, so without care a float
from 1e16 up came back as an integer (1e308 as 309 digits) and a float below 1e-4 as
0.0000001 where SQLite gives 1e-07. Checked over HTTP against a collector of each engine."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_cluster import Cluster, new_schema
from pg_serve import start_serve, stop

from spanlog.server.commands._migrate import migrate
from spanlog.server.http._runner import BackgroundCollector

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from spanlog_server_http import call

JSON = {"Content-Type": "application/json"}
# Tricky numbers, as a client may send them (each becomes what json.dumps writes).
NUMBERS = ["1e308", "-1e308", "1E+308", "1.7976931348623157e308", "1.5e300", "1e16", "1e22",
           "12345678901234567e3", "1e15", "1e-7", "-1e-7", "2.5e-05", "1e-4", "5e-324",
           "2.2250738585072014e-308", "0.1", "123.456", "1.0", "0", "-0.5",
           str(2**53 + 1), str(2**64 + 7), "123456789012345678901234567890",
           "-98765432109876543210987654321"]


def _numbers_text(raw: bytes) -> Any:
    """The JSON in ``raw`` with each number replaced by its exact text and kind."""
    return json.loads(raw, parse_float=lambda t: ("float", t), parse_int=lambda t: ("int", t))


def _get(url: str, method: str, path: str, body: Any = None) -> Any:
    import urllib.request

    req = urllib.request.Request(url + path, method=method, headers=JSON,
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        return _numbers_text(resp.read())


def _write(url: str) -> None:
    """Store one row holding every number through the collector at ``url``."""
    pairs = ",".join(f'"n{i}":{text}' for i, text in enumerate(NUMBERS))
    raw = ('{"rows":[{"id":"r","project_name":"num","root_span_id":"t","span_id":"s",'
           f'"metadata":{{{pairs}}},"output":[{", ".join(NUMBERS)}]}}]}}').encode()
    status, answer = call(url, "POST", "/logs3", raw=raw, headers=JSON)
    assert status == 200, answer
    # A merge reads the stored row back and writes it again: the numbers survive that too.
    merge = {"id": "r", "project_name": "num", "_is_merge": True, "tags": ["merged"]}
    assert call(url, "POST", "/logs3", {"rows": [merge]}, headers=JSON)[0] == 200


def _answers(url: str) -> dict[str, Any]:
    """What the collector at ``url`` gives back for the row of :func:`_write`."""
    pid = call(url, "POST", "/v1/project", {"name": "num"}, headers=JSON)[1]["id"]
    base = f"/v1/project_logs/{pid}"
    out: dict[str, Any] = {}
    for name, body in [("fetch", {}), ("roots_only", {"roots_only": True})]:
        (row,) = _get(url, "POST", base + "/fetch", body)["events"]
        assert row["tags"] == ["merged"], row["tags"]
        out[name] = (row["metadata"], row["output"])
    (span,) = _get(url, "GET", base + "/trace/t")["spans"]
    out["trace"] = (span["metadata"], span["output"])
    # Filters that read a number's text (LIKE) or its value find the row on both engines.
    for i, text in enumerate(NUMBERS):
        value = json.loads(text)
        stored = json.dumps(value)
        filters = [f"metadata.n{i} LIKE '{stored}'"]
        if isinstance(value, float) or abs(value) < 2**63:  # filters take 64-bit integers
            filters.append(f"metadata.n{i} = {stored}")
        for filter_ in filters:
            found = _get(url, "POST", base + "/fetch", {"filter": filter_})["events"]
            out[filter_] = len(found)
    return out


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[BackgroundCollector]:
    with BackgroundCollector(str(tmp_path / "n.sqlite3")) as server:
        yield server


async def test_both_engines_give_back_the_same_number_text(
        pg_cluster: Cluster, sqlite_server: BackgroundCollector) -> None:
    expected = {f"n{i}": (("float" if isinstance(json.loads(t), float) else "int"),
                          json.dumps(json.loads(t))) for i, t in enumerate(NUMBERS)}
    _write(sqlite_server.url)
    sqlite = _answers(sqlite_server.url)
    assert sqlite["fetch"][0] == expected  # what SQLite stores: json.dumps's text
    written, migrated = await new_schema(pg_cluster), await new_schema(pg_cluster)
    # Written through a PostgreSQL collector, and copied by `spanlog migrate`.
    await migrate(sqlite_server.db_path, migrated)
    for url in (written, migrated):
        proc, base, _ = start_serve(url)
        try:
            if url == written:
                _write(base)
            postgres = _answers(base)
        finally:
            assert stop(proc) == 0
        for name, answer in sqlite.items():
            assert postgres[name] == answer, (url == written, name)
