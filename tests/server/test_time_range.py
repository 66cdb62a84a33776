"""``since``/``until`` on fetch over HTTP: the forms a time takes, and clear errors."""

from __future__ import annotations

import time
import urllib.parse
import uuid

import pytest
from spanlog_server_http import call

from spanlog.server.http._time import parse_time
from spanlog.server.store._errors import BadRequest


def test_time_forms() -> None:
    """Unix seconds (number or text), ISO-8601 with or without a zone (UTC), and spans of
    time back from now."""
    assert parse_time(1700000000, "since") == 1700000000.0
    assert parse_time("1700000000.5", "since") == 1700000000.5
    assert parse_time("2024-01-01T00:00:00Z", "since") == 1704067200.0
    assert parse_time("2024-01-01T01:00:00+01:00", "since") == 1704067200.0
    assert parse_time("2024-01-01 00:00:00", "since") == 1704067200.0
    assert parse_time("15m", "since", now=10_000.0) == 10_000.0 - 900
    assert parse_time("24h", "since", now=100_000.0) == 100_000.0 - 86_400
    assert parse_time("7d", "since", now=1e6) == 1e6 - 7 * 86_400
    assert parse_time(None, "since") is None


@pytest.mark.parametrize(("value", "message"), [
    ("yesterday", "since: 'yesterday' is no time"),
    (True, "since: must be a time"),
    ([1], "since: must be a time"),
    ("1e400", "since: '1e400' is out of range"),
    ("nan", "since: 'nan' is out of range"),
    ("3y", "since: '3y' is no time"),
])
def test_bad_times_are_named(value: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("(", r"\(")):
        parse_time(value, "since")


def test_fetch_in_a_range_over_http(collector) -> None:
    """POST body and GET query string alike; bad ranges are 400s that say what is wrong."""
    pid = collector.project_id(f"range-{uuid.uuid4().hex[:8]}")
    now = time.time()
    rows = [{"project_id": pid, "id": f"r{i}", "span_id": f"{i:016x}",
             "root_span_id": f"{i:032x}", "metrics": {"start": now - age}}
            for i, age in enumerate([30, 600, 7200, 3 * 86400])]
    status, body = call(collector.url, "POST", "/logs3", {"rows": rows},
                        token=collector.api_key)
    assert status == 200, body

    def fetch(**query: object) -> list[str]:
        status, page = call(collector.url, "POST", f"/v1/project_logs/{pid}/fetch", query,
                            token=collector.api_key)
        assert status == 200, page
        return [row["id"] for row in page["events"]]

    assert fetch(since="5m") == ["r0"]
    assert fetch(since="1h") == ["r1", "r0"]
    assert fetch(since="1d", until="5m") == ["r2", "r1"]
    assert fetch(since=now - 4 * 86400, until=now - 86400) == ["r3"]
    query = urllib.parse.urlencode({"since": "1h", "roots_only": "true"})
    status, page = call(collector.url, "GET", f"/v1/project_logs/{pid}/fetch?{query}",
                        token=collector.api_key)
    assert status == 200 and [r["id"] for r in page["events"]] == ["r1", "r0"]
    for body, message in [({"since": "soon"}, "since: 'soon' is no time"),
                          ({"since": "1h", "until": "2h"}, "until: must be after since")]:
        status, answer = call(collector.url, "POST", f"/v1/project_logs/{pid}/fetch", body,
                              token=collector.api_key)
        assert status == 400 and answer["error"].startswith(message), answer


def test_aggregate_over_http(collector) -> None:
    """The aggregate endpoint by POST and GET, with relative times, and its errors."""
    pid = collector.project_id(f"aggregate-{uuid.uuid4().hex[:8]}")
    now = time.time()
    rows = [{"project_id": pid, "id": f"r{i}", "span_id": f"{i:016x}",
             "root_span_id": f"{i:032x}", "span_attributes": {"type": "llm"},
             "metadata": {"model": "m"},
             "metrics": {"start": now - 60 * i, "end": now - 60 * i + 2, "tokens": 5}}
            for i in range(3)]
    status, body = call(collector.url, "POST", "/logs3", {"rows": rows},
                        token=collector.api_key)
    assert status == 200, body
    path = f"/v1/project_logs/{pid}/aggregate"
    status, result = call(collector.url, "POST", path,
                          {"since": "1h", "bucket": 600, "split_by": "model"},
                          token=collector.api_key)
    assert status == 200, result
    # An hour in 10-minute buckets aligned to the clock: 6, or 7 with two partial ones.
    assert result["buckets"][0] == result["since"] and result["split_by"] == "model"
    assert len(result["buckets"]) == 7 if result["since"] % 600 else 6
    (series,) = result["series"]
    assert series["group"] == "m" and sum(series["llm_calls"]) == 3
    assert result["summary"]["tokens"] == 15
    assert result["summary"]["latency_p50"] == pytest.approx(2.0, rel=0.12)
    query = urllib.parse.urlencode({"since": "2h", "until": "1h"})
    status, result = call(collector.url, "GET", f"{path}?{query}", token=collector.api_key)
    assert status == 200 and result["summary"]["traces"] == 0
    for query_body, message in [({"bucket": "soon"}, "bucket: must be a number"),
                                ({"split_by": "user"}, "split_by: must be one of"),
                                ({"since": "1d", "bucket": 1}, "bucket: 1 s makes 8640"),
                                ({"filter": "input LIKE"}, "filter:")]:
        status, answer = call(collector.url, "GET",
                              f"{path}?{urllib.parse.urlencode(query_body)}",
                              token=collector.api_key)
        assert status == 400 and answer["error"].startswith(message), answer
