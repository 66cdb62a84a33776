"""The current span follows awaits, tasks, anyio task groups and threads (via bind_context)."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
from sdk_support import LoggerFactory

import spanlog
from spanlog.testing import capture_rows


def parents(rows: list[dict[str, Any]]) -> dict[str, list[str] | None]:
    """Span name → its parents' names."""
    names = {row["span_id"]: row["span_attributes"]["name"] for row in rows}
    return {row["span_attributes"]["name"]: (None if row["span_parents"] is None else
                                             [names[p] for p in row["span_parents"]])
            for row in rows}


async def test_gather_create_task_and_to_thread_inherit_the_span() -> None:
    """Spans started in gathered coroutines, created tasks and asyncio.to_thread nest under
    the span that was current when they were started."""

    def in_thread() -> None:
        with spanlog.start_span(name="thread"):
            pass

    async def in_task(name: str) -> None:
        await asyncio.sleep(0)
        with spanlog.start_span(name=name):
            await asyncio.sleep(0)

    with capture_rows() as rows:
        async with spanlog.start_span(name="root"):
            await asyncio.gather(in_task("gathered1"), in_task("gathered2"))
            await asyncio.create_task(in_task("task"))
            await asyncio.to_thread(in_thread)
    assert parents(rows) == {"root": None, "gathered1": ["root"], "gathered2": ["root"],
                             "task": ["root"], "thread": ["root"]}


async def test_anyio_task_group_inherits_the_span() -> None:
    """Children started in an anyio task group nest under the current span."""

    async def child(name: str) -> None:
        with spanlog.start_span(name=name):
            await anyio.sleep(0)

    with capture_rows() as rows:
        with spanlog.start_span(name="root"):
            async with anyio.create_task_group() as group:
                group.start_soon(child, "a")
                group.start_soon(child, "b")
    assert parents(rows) == {"root": None, "a": ["root"], "b": ["root"]}


def test_plain_threads_and_executors_need_bind_context() -> None:
    """A plain thread starts a new trace; bind_context carries the span into threads and
    executors, also for several calls at once."""

    def work(name: str) -> None:
        with spanlog.start_span(name=name):
            pass

    with capture_rows() as rows:
        with spanlog.start_span(name="root"):
            unbound = threading.Thread(target=work, args=("unbound",))
            bound = threading.Thread(target=spanlog.bind_context(work), args=("bound",))
            unbound.start()
            bound.start()
            unbound.join()
            bound.join()
            task = spanlog.bind_context(work)
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(task, ["pool1", "pool2", "pool3", "pool4"]))
    tree = parents(rows)
    assert tree["unbound"] is None
    assert tree["bound"] == ["root"]
    assert all(tree[f"pool{i}"] == ["root"] for i in range(1, 5))


async def test_concurrent_requests_land_in_their_own_traces(make_logger: LoggerFactory,
                                                            collector: Any,
                                                            project: str) -> None:
    """100 concurrent async requests with nested spans: each trace holds exactly its own
    three spans, correctly parented, in the collector."""
    make_logger()

    @spanlog.traced(type="tool")
    async def lookup(request_id: int) -> int:
        await asyncio.sleep(random.random() / 100)
        spanlog.current_span().log(metadata={"request": request_id})
        return request_id

    @spanlog.traced(type="llm")
    async def generate(request_id: int) -> str:
        await asyncio.sleep(random.random() / 100)
        spanlog.current_span().log(metadata={"request": request_id})
        return f"answer {request_id}"

    @spanlog.traced(type="task")
    async def handle(request_id: int) -> str:
        spanlog.current_span().log(metadata={"request": request_id})
        await lookup(request_id)
        return await generate(request_id)

    answers = await asyncio.gather(*(handle(i) for i in range(100)))
    assert answers == [f"answer {i}" for i in range(100)]
    assert await spanlog.aflush(timeout=10)
    rows = collector.wait_for_rows(300, project=project)
    assert len(rows) == 300
    traces: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        traces.setdefault(row["root_span_id"], []).append(row)
    assert len(traces) == 100
    for spans in traces.values():
        requests = {row["metadata"]["request"] for row in spans}
        assert len(requests) == 1, spans
        tree = parents(spans)
        assert tree == {"handle": None, "lookup": ["handle"], "generate": ["handle"]}
        top = next(r for r in spans if r["span_attributes"]["name"] == "handle")
        assert top["output"] == f"answer {requests.pop()}"
