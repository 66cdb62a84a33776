"""When rows leave: trace-end flush, background thread or task, waitUntil, exit, fork."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Coroutine
from typing import Any

import pytest
from sdk_support import ControlledProxy, LoggerFactory, flush_threads

import spanlog
from spanlog import _hooks


def test_sync_handler_with_async_flush_false_is_stored_before_return(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """async_flush=False: when a sync traced handler returns, its trace is already stored,
    and no background thread was started."""
    make_logger(async_flush=False)

    @spanlog.traced
    def handler(question: str) -> str:
        with spanlog.start_span(name="retrieve"):
            pass
        return question.upper()

    threads_before = len(flush_threads())
    assert handler("hi") == "HI"
    rows = collector.fetch(project=project)  # no waiting: already there
    assert sorted(row["span_attributes"]["name"] for row in rows) == ["handler", "retrieve"]
    assert len(flush_threads()) == threads_before


async def test_async_handler_with_async_flush_false_awaits_delivery(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """async_flush=False in async code: the flush is awaited before the handler returns,
    without blocking the loop (another task keeps running meanwhile)."""
    make_logger(async_flush=False)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    @spanlog.traced
    async def handler() -> str:
        await asyncio.sleep(0)
        return "ok"

    tick_task = asyncio.create_task(ticker())
    try:
        assert await handler() == "ok"
    finally:
        tick_task.cancel()
    rows = await asyncio.to_thread(collector.fetch, project)
    assert [row["span_attributes"]["name"] for row in rows] == ["handler"]
    assert ticks > 1


def test_lambda_defaults_to_flushing_before_return(
        collector: Any, make_logger: LoggerFactory, project: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On AWS Lambda (AWS_LAMBDA_FUNCTION_NAME set) async_flush defaults to False."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function")
    logger = make_logger()
    assert logger.config.async_flush is False
    logger.log(input="event", output="response")
    assert len(collector.fetch(project=project)) == 1


def test_vercel_without_a_hook_flushes_before_return_and_a_hook_still_wins(
        collector: Any, make_logger: LoggerFactory, project: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On Vercel (VERCEL=1) with no waitUntil hook the trace is stored before the span's end
    returns; with a hook in scope the hook gets the flush and nothing is sent inline."""
    monkeypatch.setenv("VERCEL", "1")
    with ControlledProxy(collector.url) as proxy:
        logger = make_logger(api_url=proxy.url, flush_linger=60)
        assert logger.config.async_flush is False
        with logger.start_span(name="no-hook"):
            pass
        assert [row["span_attributes"]["name"] for row in collector.fetch(project=project)] \
            == ["no-hook"]
        handed: list[Coroutine[Any, Any, Any]] = []
        sent = len(proxy.logs3())
        with spanlog.wait_until_scope(handed.append), logger.start_span(name="hooked"):
            pass
        assert len(handed) == 1 and len(proxy.logs3()) == sent
        assert asyncio.run(handed[0]) is True
    names = sorted(row["span_attributes"]["name"] for row in collector.fetch(project=project))
    assert names == ["hooked", "no-hook"]


def test_background_thread_delivers_sync_traces(collector: Any, make_logger: LoggerFactory,
                                                project: str) -> None:
    """async_flush=True in sync code: a daemon thread delivers without an explicit flush."""
    make_logger()

    @spanlog.traced
    def handler(i: int) -> int:
        return i

    for i in range(20):
        handler(i)
    assert len(collector.wait_for_rows(20, project=project)) == 20
    threads = flush_threads()
    assert threads and all(t.daemon for t in threads)


async def test_background_delivery_in_async_code_runs_on_the_thread_not_the_loop(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """async_flush=True in async code: the daemon flush thread delivers; no task of spanlog's
    runs on the application's loop."""
    make_logger()

    @spanlog.traced
    async def handler(i: int) -> int:
        await asyncio.sleep(0)
        return i

    await asyncio.gather(*(handler(i) for i in range(20)))
    assert asyncio.all_tasks() == {asyncio.current_task()}
    rows = await asyncio.to_thread(collector.wait_for_rows, 20, project)
    assert len(rows) == 20
    assert flush_threads()


def test_import_and_init_load_only_the_standard_library_and_start_no_thread() -> None:
    """import spanlog and init_logger import nothing outside the standard library (no
    aiohttp, pydantic, anyio, openai) and start no thread."""
    code = textwrap.dedent("""
        import sys, threading
        before = set(sys.modules)
        import spanlog
        spanlog.init_logger(project="x", api_url="http://127.0.0.1:9")
        new = {m.split(".")[0] for m in set(sys.modules) - before}
        print(threading.active_count(), sorted(new - set(sys.stdlib_module_names) - {"spanlog"}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["1", "[]"], out


def test_waituntil_hook_gets_a_fresh_coroutine_per_trace(
        collector: Any, make_logger: LoggerFactory, project: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a waitUntil hook in scope, each trace end hands it a new flush coroutine and
    sends nothing itself; running the coroutines on another loop delivers the rows."""
    handed: list[Coroutine[Any, Any, Any]] = []
    monkeypatch.setattr(_hooks, "find_wait_until", lambda: handed.append)
    with ControlledProxy(collector.url) as proxy:
        logger = make_logger(api_url=proxy.url, async_flush=False)
        for name in ("a", "b"):
            with logger.start_span(name=name):
                pass
        assert len(handed) == 2 and handed[0] is not handed[1]
        assert proxy.logs3() == []

        async def run() -> list[Any]:
            return list(await asyncio.gather(*handed))

        assert asyncio.run(run()) == [True, True]
    names = sorted(row["span_attributes"]["name"] for row in collector.fetch(project=project))
    assert names == ["a", "b"]


def test_without_threads_rows_wait_for_an_explicit_flush(
        collector: Any, make_logger: LoggerFactory, project: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Where threads cannot start (Pyodide), ending a trace warns instead of failing and an
    explicit flush still delivers."""

    def no_threads(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    logger = make_logger()
    monkeypatch.setattr(threading.Thread, "start", no_threads)
    with logger.start_span(name="no-thread"):
        pass
    monkeypatch.undo()
    assert any("cannot start a flush thread" in r.getMessage() for r in caplog.records)
    assert logger.flush(timeout=10)
    assert len(collector.fetch(project=project)) == 1


def _run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_rows_are_flushed_at_interpreter_exit(collector: Any, project: str) -> None:
    """A process that exits without flushing still delivers its buffered rows."""
    out = _run_script(f"""
        import spanlog
        spanlog.init_logger(project={project!r}, api_url={collector.url!r},
                            api_key={collector.api_key!r}, flush_linger=60)
        for i in range(5):
            with spanlog.start_span(name=f"exit{{i}}"):
                pass
    """)
    assert out.returncode == 0, out.stderr
    assert len(collector.fetch(project=project)) == 5


def test_exit_flush_is_bounded_in_time() -> None:
    """Against a collector that accepts connections and never answers, the exit flush
    gives up after exit_timeout and says how many rows were lost."""
    with socket_that_never_answers() as url:
        started = time.monotonic()
        out = _run_script(f"""
            import spanlog
            spanlog.init_logger(api_url={url!r}, flush_linger=60, exit_timeout=0.5)
            with spanlog.start_span(name="stuck"):
                pass
        """)
        elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "1 row(s) not delivered at exit" in out.stderr
    assert elapsed < 10


class socket_that_never_answers:
    """A listening socket whose connections are accepted by the kernel and never served."""

    def __enter__(self) -> str:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_logs_and_flushes(collector: Any, make_logger: LoggerFactory,
                                       project: str) -> None:
    """A forked child gets a working logger (no inherited dead thread, no hang) and does not
    resend the rows its parent had buffered."""
    logger = make_logger(flush_linger=60)
    with logger.start_span(name="warm-up"):  # starts the parent's flush thread
        pass
    assert logger.flush(timeout=10)
    with logger.start_span(name="parent-before-fork"):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for i in range(3):
                with logger.start_span(name=f"child{i}"):
                    pass
            code = 0 if logger.flush(timeout=10) and logger.stats()["sent"] == 3 else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "forked child hung"
        time.sleep(0.01)  # polling the child's exit, bounded by the deadline
    assert os.waitstatus_to_exitcode(status) == 0
    assert logger.flush(timeout=10)
    names = sorted(row["span_attributes"]["name"] for row in collector.fetch(project=project))
    assert names == ["child0", "child1", "child2", "parent-before-fork", "warm-up"]


def test_rows_left_by_a_finished_event_loop_are_delivered_by_a_thread(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """When asyncio.run ends while its background flush task still lingers, the task is
    cancelled and a thread delivers the rows instead of leaving them to the next trace."""
    make_logger(flush_linger=0.5)

    @spanlog.traced
    async def handler() -> str:
        return "ok"

    assert asyncio.run(handler()) == "ok"
    rows = collector.wait_for_rows(1, project=project)
    assert [row["span_attributes"]["name"] for row in rows] == ["handler"]
