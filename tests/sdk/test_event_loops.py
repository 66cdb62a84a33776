"""Flushing around event loops: awaited span ends, blocking flush() on a loop's thread, and
rows left behind by a loop that ends (``asyncio.run`` once per invocation)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sdk_support import AiohttpTransport, ControlledProxy, LoggerFactory

import spanlog
from spanlog import _flush


class Ticker:
    """A task that counts its turns on the loop: if they stop, something blocked the loop."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


async def _poll(condition: Any, timeout: float = 10.0) -> None:
    """Let the loop run until ``condition()`` holds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)  # polling interval: the loop must run to make progress


async def _finish_other_tasks() -> None:
    """Wait (bounded) for the loop's other tasks, such as a background flush closing its
    session, so that a loop closed by hand leaves nothing pending."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    if others:
        await asyncio.wait_for(asyncio.gather(*others), 10)


async def test_aend_awaits_the_trace_end_flush_without_blocking_the_loop(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """span.aend() with async_flush=False returns once the trace is stored, and other tasks
    run while it waits (a blocking end would stall them for the slow request)."""
    with ControlledProxy(collector.url) as proxy:
        logger = make_logger(api_url=proxy.url, async_flush=False)
        proxy.then(("delay", 0.3))
        span = logger.start_span(name="plain", input="q")
        async with Ticker() as ticker:
            before = ticker.ticks
            end = await span.aend()
            during = ticker.ticks - before
        assert during > 10, f"the loop was blocked during aend() ({during} ticks)"
        rows = await asyncio.to_thread(collector.fetch, project)
        assert [row["span_attributes"]["name"] for row in rows] == ["plain"]
        assert rows[0]["metrics"]["end"] == pytest.approx(end)
        assert await span.aend() == end  # once only; later calls give the first end time
        assert len(proxy.logs3()) == 1


async def test_aend_of_a_child_and_of_nothing(collector: Any, make_logger: LoggerFactory,
                                              project: str) -> None:
    """aend() on a child does not flush (its trace is still open); the no-op span has an
    aend() too; an llm_span ended with aend() is delivered with its trace."""
    logger = make_logger(async_flush=False)
    root = logger.start_span(name="root")
    child = root.start_span(name="child")
    await child.aend(end_time=123.0)
    assert logger.stats()["queued"] == 1 and logger.stats()["requests"] == 0
    with root:
        call = spanlog.llm_span("model", model="m")
        await call.aend()
    rows = await asyncio.to_thread(collector.fetch, project)
    assert sorted(row["span_attributes"]["name"] for row in rows) == ["child", "model", "root"]
    assert await spanlog.NoopSpan().aend(end_time=5.0) == 5.0


async def test_blocking_flush_on_the_loop_thread_waits_for_the_background_thread(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """flush() on the loop's thread while the background thread has a row on the wire waits
    for it (the loop is not what sends) and then delivers what was logged meanwhile."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("delay", 0.5))
        logger = make_logger(api_url=proxy.url)

        @spanlog.traced
        async def handler(i: int) -> int:
            return i

        await handler(0)
        await _poll(lambda: proxy.logs3() and logger.stats()["in_flight"] == 1)
        logger.log(input="meanwhile")
        assert logger.flush(timeout=10) is True
        assert logger.stats()["in_flight"] == 0 and logger.stats()["queued"] == 0
    rows = await asyncio.to_thread(collector.fetch, project)
    assert len(rows) == 2


async def test_blocking_flush_beside_the_loops_own_flush_returns_false_with_a_hint(
        collector: Any, make_logger: LoggerFactory, project: str,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an async transport, an awaited flush sends on the loop: flush() on that thread
    meanwhile returns False at once with a hint to use aflush() (waiting would deadlock the
    loop); the rows logged meanwhile follow, and aflush() then delivers everything."""
    monkeypatch.setattr(_flush, "_warned_loop_flush", False)
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("delay", 1.0))
        logger = make_logger(api_url=proxy.url, async_transport=AiohttpTransport)
        logger.log(input="first")
        task = asyncio.create_task(logger.aflush(timeout=10))
        await _poll(lambda: proxy.logs3() and logger.stats()["in_flight"] == 1)
        logger.log(input="meanwhile")
        started = time.monotonic()
        assert logger.flush(timeout=5) is False
        assert time.monotonic() - started < 0.5
        assert any("await spanlog.aflush()" in r.getMessage() for r in caplog.records)
        assert await task is True
        assert await logger.aflush(timeout=10) is True
        await _finish_other_tasks()
    rows = await asyncio.to_thread(collector.fetch, project)
    assert sorted(row["input"] for row in rows) == ["first", "meanwhile"]


def test_rows_of_each_asyncio_run_are_delivered_after_its_loop_ends(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """With async_flush=True and one asyncio.run per invocation, each run's rows are
    delivered by the flush thread, which does not depend on the loop that logged them."""
    make_logger(async_flush=True)

    @spanlog.traced
    async def invocation(i: int) -> int:
        await asyncio.sleep(0)
        return i

    for i in range(2):
        assert asyncio.run(invocation(i)) == i
        rows = collector.wait_for_rows(i + 1, project=project, timeout=10)
        assert sorted(row["input"]["i"] for row in rows) == list(range(i + 1))
