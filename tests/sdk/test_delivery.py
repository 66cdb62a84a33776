"""Delivery to the real collector: batching, gzip, retries, rejections, outages, full buffer."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sdk_support import ControlledProxy, LoggerFactory

import spanlog
from spanlog.server.http._runner import BackgroundCollector


def log_spans(logger: spanlog.Logger, n: int, prefix: str = "s") -> list[str]:
    """Log ``n`` one-span traces; their row ids."""
    ids = []
    for i in range(n):
        with logger.start_span(name=f"{prefix}{i}", input={"i": i}) as span:
            ids.append(span.id)
    return ids


def stored_ids(collector: Any, project: str) -> list[str]:
    return [row["id"] for row in collector.fetch(project=project)]


def test_init_is_lazy_and_a_cold_flush_is_one_request(collector: Any,
                                                      make_logger: LoggerFactory,
                                                      project: str) -> None:
    """init_logger sends nothing; the first flush is a single POST /logs3 carrying the
    project name, gzip-compressed, with the API key."""
    with ControlledProxy(collector.url) as proxy:
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        assert proxy.seen == []
        ids = log_spans(logger, 3)
        assert proxy.seen == []  # still lingering
        assert logger.flush(timeout=10)
        assert [(s.method, s.path) for s in proxy.seen] == [("POST", "/logs3")]
        request = proxy.seen[0]
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["authorization"] == f"Bearer {collector.api_key}"
        body = json.loads(request.raw)
        assert body["api_version"] == 2
        assert {row["project_name"] for row in body["rows"]} == {project}
    assert sorted(stored_ids(collector, project)) == sorted(ids)


def test_batches_split_by_row_count(collector: Any, make_logger: LoggerFactory,
                                    project: str) -> None:
    """batch_max_rows caps the rows per request; every row arrives once."""
    with ControlledProxy(collector.url) as proxy:
        logger = make_logger(api_url=proxy.url, batch_max_rows=10, flush_linger=60)
        ids = log_spans(logger, 35)
        assert logger.flush(timeout=10)
        sizes = [len(s.rows) for s in proxy.logs3()]
    assert sizes == [10, 10, 10, 5]
    assert sorted(stored_ids(collector, project)) == sorted(ids)
    assert logger.stats()["sent"] == 35 and logger.stats()["requests"] == 4


@pytest.mark.parametrize("loop_seen", [False, True], ids=["no event loop", "an event loop"])
def test_batches_split_by_the_advertised_byte_limit(collector: Any,
                                                     make_logger: LoggerFactory,
                                                     project: str, loop_seen: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """After a 413 the SDK reads logs3_payload_max_bytes from GET /version and splits its
    batches to fit; nothing is lost. Rows are encoded in groups either way (by count alone
    without an event loop, by count and text with one): a group over the limit is split
    row by row."""
    from spanlog import _serialize

    monkeypatch.setattr(_serialize, "loop_seen", loop_seen)
    limit = 3000
    with ControlledProxy(collector.url, version={"logs3_payload_max_bytes": limit}) as proxy:
        proxy.then(("status", 413))
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        ids = log_spans(logger, 40)
        assert logger.flush(timeout=10)
        bodies = [s.raw for s in proxy.logs3()[1:]]
        assert any(s.path == "/version" for s in proxy.seen)
    assert len(bodies) > 1 and all(len(body) <= limit for body in bodies)
    assert sorted(stored_ids(collector, project)) == sorted(ids)


def test_429_with_retry_after_is_honoured(collector: Any, make_logger: LoggerFactory,
                                          project: str) -> None:
    """A 429 with Retry-After is retried no sooner than asked, and the rows land once."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("status", 429, {"Retry-After": "0.3"}))
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        ids = log_spans(logger, 2)
        assert logger.flush(timeout=10)
        first, second = proxy.logs3()
    assert second.at - first.at >= 0.3
    assert logger.stats()["retried"] == 1 and logger.stats()["failed"] == 0
    assert sorted(stored_ids(collector, project)) == sorted(ids)


def test_server_errors_and_resets_are_retried_with_backoff(collector: Any,
                                                           make_logger: LoggerFactory,
                                                           project: str) -> None:
    """503, 500 and a dropped connection are retried; then the rows are stored once."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("reset",), ("status", 503), ("status", 500))
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        ids = log_spans(logger, 3)
        assert logger.flush(timeout=10)
        assert len(proxy.logs3()) == 4
    assert logger.stats()["retried"] == 3
    assert sorted(stored_ids(collector, project)) == sorted(ids)


def test_a_slow_collector_times_out_and_the_retry_stores_nothing_twice(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """A request that times out (but was stored late) is retried; rows are not duplicated."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("delay", 0.5))
        logger = make_logger(api_url=proxy.url, flush_linger=60, request_timeout=0.1)
        ids = log_spans(logger, 3)
        assert logger.flush(timeout=10)
        # Both requests reached the collector: the late one and its retry.
        proxy.wait_for(lambda: proxy.forwarded >= 2)
    assert sorted(stored_ids(collector, project)) == sorted(ids)


def test_4xx_is_reported_not_retried(collector: Any, make_logger: LoggerFactory,
                                     project: str, expect_spanlog_errors: Any) -> None:
    """A 403 is not retried: the rows count as failed, flush says False, an error is logged,
    and nothing raises into the caller."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("status", 403, {}, '{"error": "this key may not write here"}'))
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        log_spans(logger, 2)
        assert logger.flush(timeout=10) is False
        assert len(proxy.logs3()) == 1
    stats = logger.stats()
    assert stats["failed"] == 2 and stats["retried"] == 0 and stats["queued"] == 0
    assert any("403" in m and "may not write" in m for m in expect_spanlog_errors.messages)


def test_a_bad_row_does_not_sink_its_batch(collector: Any, make_logger: LoggerFactory,
                                           project: str, expect_spanlog_errors: Any) -> None:
    """On 400 the batch is halved until the bad row is alone: the others are stored."""
    with ControlledProxy(collector.url) as proxy:
        # whole batch of 4: 400; first half: 400; its first row: ok; its second row: 400.
        proxy.then(("status", 400), ("status", 400), ("forward",), ("status", 400))
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        ids = log_spans(logger, 4)
        assert logger.flush(timeout=10) is False
    assert sorted(stored_ids(collector, project)) == sorted([ids[0], ids[2], ids[3]])
    assert logger.stats()["failed"] == 1 and logger.stats()["sent"] == 3
    assert len(expect_spanlog_errors.messages) == 1


def test_garbage_responses_never_raise(collector: Any, make_logger: LoggerFactory,
                                       project: str) -> None:
    """A 200 with a non-JSON body counts as delivered; a garbage /version falls back to a
    default limit; the caller never sees an exception."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("status", 413), ("garbage",))
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        ids = log_spans(logger, 4)
        assert logger.flush(timeout=10)
    assert sorted(stored_ids(collector, project)) == sorted(ids)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fetch_all(url: str, project: str) -> list[dict[str, Any]]:
    def call(path: str, body: Any) -> Any:
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    pid = call("/v1/project", {"name": project})["id"]
    return list(call(f"/v1/project_logs/{pid}/fetch", {"limit": 1000})["events"])


def test_collector_down_then_back_loses_and_duplicates_nothing(
        tmp_path: Path, make_logger: LoggerFactory, project: str) -> None:
    """Rows logged while the collector is down wait in the buffer; once it is back every
    row is stored exactly once."""
    port = _free_port()
    db = str(tmp_path / "outage.sqlite3")
    first = BackgroundCollector(db, port=port).start()
    logger = make_logger(api_url=first.url, api_key=None, flush_linger=60, max_retries=1)
    before = log_spans(logger, 3, "before")
    assert logger.flush(timeout=10)
    first.stop()

    during = log_spans(logger, 5, "during")
    assert logger.flush(timeout=2) is False  # down: connection refused, rows kept
    stats = logger.stats()
    assert stats["queued"] == 5 and stats["failed"] == 0 and stats["dropped"] == 0

    second = BackgroundCollector(db, port=port).start()
    try:
        after = log_spans(logger, 2, "after")
        assert logger.flush(timeout=10)
        rows = _fetch_all(second.url, project)
    finally:
        second.stop()
    ids = [row["id"] for row in rows]
    assert sorted(ids) == sorted(before + during + after)
    assert len(ids) == len(set(ids))


def test_background_flush_recovers_from_an_outage(collector: Any, make_logger: LoggerFactory,
                                                  project: str) -> None:
    """The background thread keeps retrying after a failed cycle and delivers later."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(*[("reset",)] * 4)
        logger = make_logger(api_url=proxy.url, max_retries=1)
        ids = log_spans(logger, 3)
        rows = collector.wait_for_rows(3, project=project)
    assert sorted(row["id"] for row in rows) == sorted(ids)
    assert logger.stats()["retried"] >= 2


def test_full_buffer_drops_new_rows_with_an_exact_count(
        collector: Any, make_logger: LoggerFactory, project: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A full buffer refuses new rows, counts each one, warns once; the rest is delivered."""
    logger = make_logger(max_queue_rows=10, flush_linger=60)
    with caplog.at_level(logging.WARNING, logger="spanlog"):
        ids = log_spans(logger, 25)
    assert logger.stats()["dropped"] == 15 and spanlog.stats()["dropped"] >= 15
    warnings = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(warnings) == 1
    assert logger.flush(timeout=10)
    assert sorted(stored_ids(collector, project)) == sorted(ids[:10])


def test_nan_infinity_and_odd_values_are_delivered(collector: Any, make_logger: LoggerFactory,
                                                    project: str) -> None:
    """Non-finite floats and non-JSON objects reach the collector as JSON-safe values."""
    logger = make_logger(flush_linger=60)
    with logger.start_span(name="odd", input={"nan": float("nan"), "inf": float("inf"),
                                              "set": {2, 1}, "bytes": b"hi"},
                           metrics={"latency": float("-inf")}):
        pass
    assert logger.flush(timeout=10)
    (row,) = collector.fetch(project=project)
    assert row["input"] == {"nan": "NaN", "inf": "Infinity", "set": [1, 2], "bytes": "hi"}
    assert row["metrics"]["latency"] is None


def test_a_broken_transport_never_raises_into_user_code() -> None:
    """A transport that raises anything, or returns nonsense, costs retries, not crashes."""

    class Broken:
        calls = 0

        def post(self, url: str, body: bytes, headers: Any, timeout: float) -> Any:
            Broken.calls += 1
            if Broken.calls % 2:
                raise ZeroDivisionError("transport bug")
            return "not a response"

        def close(self) -> None:
            pass

    logger = spanlog.init_logger(transport=Broken(), max_retries=2, retry_backoff=0.001,
                                 async_flush=False, set_current=False)
    try:
        with logger.start_span(name="survives") as span:
            span.log(output=1)
        assert logger.flush(timeout=5) is False
        stats = logger.stats()
        # Two flushes (the trace end's, then ours), each 1 try + 2 retries, rows kept.
        assert Broken.calls == 6 and stats["retried"] == 4
        assert stats["queued"] == 1 and stats["sent"] == 0 and stats["failed"] == 0
    finally:
        logger.close(timeout=0)


def test_a_span_with_a_lone_surrogate_is_stored_not_rejected(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """A string holding half of a surrogate pair (refused by the collector's JSON parser)
    is sent with U+FFFD in its place: the span is stored, nothing counts as failed."""
    logger = make_logger(async_flush=False)
    with logger.start_span(name="bad\udc80text", input={"q": "x\ud83dy"}):
        pass
    assert logger.stats()["failed"] == 0 and logger.stats()["sent"] == 1
    [row] = collector.fetch(project=project)
    assert row["span_attributes"]["name"] == "bad\ufffdtext"
    assert row["input"] == {"q": "x\ufffdy"}


@pytest.mark.parametrize("shape", ["one long string", "many shorter strings"])
def test_a_flush_on_the_loop_gives_it_a_turn_between_slices_of_a_long_row(
        monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """With an async transport the flush runs on the event loop (as under Pyodide, which has
    no threads): encoding a row with long text (one string twice the slicing threshold, or
    eight strings each under it) and gzipping the body let the loop run between slices,
    and the row still arrives whole."""
    import asyncio
    import gzip

    from spanlog import _delivery, _serialize
    from spanlog._transport import Response

    monkeypatch.setattr(_serialize, "_PACE_EVERY", -1.0)  # give way at every slice
    text: Any = "abcdefg\u00e9" * (_serialize.LONG_TEXT // 4)  # twice the slicing threshold
    if shape == "many shorter strings":
        text = {f"part {n}": "abcdefg\u00e9" * (_serialize.LONG_TEXT // 24) for n in range(8)}
    ticks = 0
    posted: list[tuple[int, bytes]] = []

    class Fetch:
        async def post(self, url: str, body: bytes, headers: Any, timeout: float) -> Response:
            posted.append((ticks, body))
            return Response(200, {}, b"{}")

        async def aclose(self) -> None:
            pass

    logger = spanlog.init_logger(async_transport=Fetch, api_url="http://127.0.0.1:9",
                                 flush_linger=60, set_current=False)

    async def main() -> int:
        nonlocal ticks
        running = True

        async def ticker() -> None:
            nonlocal ticks
            while running:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        with logger.start_span(name="long", input=text):
            pass
        before = ticks
        assert await logger.aflush(timeout=30)
        running = False
        await task
        return before

    try:
        before = asyncio.run(main())
    finally:
        logger.close(timeout=0)
    at, body = posted[0]
    raw = gzip.decompress(body)
    # A turn at least per slice of text encoded and per slice of the body compressed.
    chars = len(text) if isinstance(text, str) else sum(map(len, text.values()))
    turns = chars // _serialize._SLICE_STEP + len(raw) // _delivery._GZIP_SLICE
    assert at - before >= turns, (at, before, turns)
    assert json.loads(raw)["rows"][0]["input"] == text
