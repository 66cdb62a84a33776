"""Rows at the edges of a process: interpreter exit, os.fork, multiprocessing, trio.

Everything here is real: scripts run by a fresh interpreter against the test collector (or a
misbehaving proxy in front of it), real forks, real multiprocessing start methods, real trio.
A script that must wait for the test (say, until the proxy holds its request) reads one line
from stdin first; every wait is bounded and a script that hangs is killed.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_support import ControlledProxy, LoggerFactory

import spanlog

# Real processes, forks and exits, each a fresh interpreter: seconds per test.
pytestmark = pytest.mark.slow

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


# --- helpers -----------------------------------------------------------------------------


class Run:
    """How a script ended: exit code, output, seconds from the go signal to its exit."""

    def __init__(self, returncode: int, stdout: str, stderr: str, elapsed: float) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return (f"Run(returncode={self.returncode}, elapsed={self.elapsed:.2f}, "
                f"stdout={self.stdout[-2000:]!r}, stderr={self.stderr[-4000:]!r})")


def script_env(url: str, api_key: str, project: str, **settings: str) -> dict[str, str]:
    """The environment of a script: this test run's spanlog on the path (so that a script
    and its children test the same code as pytest does), the SPANLOG_* given, nothing else
    that changes how spanlog delivers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SPANLOG_") and k not in ("AWS_LAMBDA_FUNCTION_NAME", "VERCEL")}
    src = str(Path(spanlog.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.update(SPANLOG_API_URL=url, SPANLOG_API_KEY=api_key, SPANLOG_PROJECT=project,
               **settings)
    return env


def run_script(path: Path, code: str, env: dict[str, str], *args: str,
               ready: Callable[[], None] | None = None, timeout: float = 30) -> Run:
    """Run ``code`` as the file ``path`` (an importable ``__main__``, as spawn needs); once
    ``ready()`` returns, write a go line to its stdin; if it outlives ``timeout``, kill it
    and every process it started (its own session)."""
    path.write_text(textwrap.dedent(code))
    proc = subprocess.Popen([sys.executable, str(path), *args], cwd=path.parent, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if ready is not None:
            ready()
        started = time.monotonic()
        out, err = proc.communicate("go\n", timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (AttributeError, OSError):  # no process groups here, or already gone
            proc.kill()
        out, err = proc.communicate(timeout=10)
        print(f"script output:\n{out}\n{err}", file=sys.stderr)
        raise
    return Run(proc.returncode, out, err, time.monotonic() - started)


def names(rows: list[dict[str, Any]]) -> list[str]:
    """The sorted span names of ``rows``."""
    return sorted(row["span_attributes"]["name"] for row in rows)


def assert_clean(run: Run) -> None:
    """The script exited 0 and printed no traceback (its own or a child's)."""
    assert run.returncode == 0 and "Traceback" not in run.stderr, run


def posted(proxy: ControlledProxy) -> list[list[str]]:
    """The span names in each ``POST /logs3`` body the proxy saw, in order."""
    return [names(seen.rows) for seen in proxy.logs3()]


def saw_posts(proxy: ControlledProxy, count: int) -> Callable[[], None]:
    """A ``ready`` for run_script: the proxy has received ``count`` POST /logs3 bodies."""
    return lambda: proxy.wait_for(lambda: len(proxy.logs3()) >= count, timeout=15)


# --- 1. interpreter exit -----------------------------------------------------------------

# A trace of three spans, then wait for the go line, then a plain exit: no flush anywhere.
ONE_TRACE_THEN_EXIT = """
    import sys
    import spanlog

    logger = spanlog.init_logger()
    with logger.start_span(name="last"):
        with logger.start_span(name="tool"):
            pass
        with logger.start_span(name="llm"):
            pass
    sys.stdin.readline()  # the test says go once the proxy has the rows
"""


def test_asyncio_run_without_flush_stores_every_row(collector: Any, project: str,
                                                    tmp_path: Path) -> None:
    """Under asyncio.run, no flush, a slow collector: all 600 rows of 200 traces stored by exit."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(*[("hold", 0.2)] * 100)
        run = run_script(tmp_path / "many.py", """
            import asyncio
            import spanlog

            logger = spanlog.init_logger()

            @spanlog.traced
            async def step(i):
                return await asyncio.to_thread(str, i)  # blocking work, as apps do

            async def handle(i):
                async with logger.start_span(name="request"):
                    await step(i)
                    async with logger.start_span(name="tool"):
                        await asyncio.sleep(0.001)

            async def main():
                for i in range(200):
                    await handle(i)

            asyncio.run(main())
        """, script_env(proxy.url, collector.api_key, project))
    assert_clean(run)
    rows = collector.fetch(project=project)
    assert len(rows) == 600, (f"{len(rows)} rows stored; proxy saw {len(proxy.logs3())} "
                              f"POST(s), {proxy.abandoned} abandoned by their sender", run)
    assert names(rows) == sorted(["request", "step", "tool"] * 200)


def test_row_waiting_to_retry_after_a_503_is_delivered_at_exit(
        collector: Any, project: str, tmp_path: Path) -> None:
    """Rows the flush thread holds while backing off after a 503 are retried at exit; exit 0."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("status", 503))
        env = script_env(proxy.url, collector.api_key, project,
                         SPANLOG_RETRY_BACKOFF="3")  # the thread backs off 1.5-3 s
        run = run_script(tmp_path / "retry.py", ONE_TRACE_THEN_EXIT, env,
                         ready=saw_posts(proxy, 1))
        posts = len(proxy.logs3())
    assert_clean(run)
    assert names(collector.fetch(project=project)) == ["last", "llm", "tool"], (posts, run)
    assert posts >= 2


def test_rows_in_flight_at_exit_are_delivered(collector: Any, project: str,
                                              tmp_path: Path) -> None:
    """Rows on the wire when the interpreter exits are delivered, not abandoned with the thread."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("hold", 1.0))  # answered after 1 s, if the sender is still there
        run = run_script(tmp_path / "inflight.py", ONE_TRACE_THEN_EXIT,
                         script_env(proxy.url, collector.api_key, project),
                         ready=saw_posts(proxy, 1))
        # Let the held request end one way or the other, for the message below.
        proxy.wait_for(lambda: proxy.abandoned + proxy.forwarded >= 1, timeout=5)
        abandoned = proxy.abandoned
    assert_clean(run)
    assert names(collector.fetch(project=project)) == ["last", "llm", "tool"], \
        (f"{abandoned} request(s) abandoned by the exiting process", run)


def test_exit_gives_up_on_rows_in_flight_after_exit_timeout(
        collector: Any, project: str, tmp_path: Path) -> None:
    """Rows stuck in flight hold exit up to exit_timeout, then one stderr line says how many."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(*[("hold", 60.0)] * 20)  # every request, resent or not, hangs
        env = script_env(proxy.url, collector.api_key, project, SPANLOG_EXIT_TIMEOUT="1")
        run = run_script(tmp_path / "stuck.py", ONE_TRACE_THEN_EXIT, env,
                         ready=saw_posts(proxy, 1))
    assert_clean(run)
    assert run.elapsed < 1 + 3, run
    lost = [line for line in run.stderr.splitlines() if "not delivered" in line]
    assert len(lost) == 1, run
    assert re.search(r"\b3\b", lost[0]), lost


# --- 2. os.fork ----------------------------------------------------------------------------

# The parent ends a trace; once the test says go (its flush thread is then mid-request or
# backing off), it forks. The child ends a trace of its own and exits the normal way; the
# parent reaps it within a deadline (killing it if it hangs), then flushes.
FORK_WHILE_THE_THREAD_IS_BUSY = """
    import os
    import sys
    import time
    import warnings
    import spanlog

    logger = spanlog.init_logger()
    with logger.start_span(name="parent"):
        pass
    sys.stdin.readline()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:
        with spanlog.start_span(name="child"):
            pass
        sys.exit(0)  # the interpreter's exit path: nothing flushes explicitly
    deadline = time.monotonic() + 15
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("child hung", flush=True)
            sys.exit(3)
        time.sleep(0.01)  # polling the child's exit, bounded by the deadline
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    print("parent flush", logger.flush(timeout=10), flush=True)
"""


def _fork_while_busy(collector: Any, project: str, tmp_path: Path,
                     action: tuple[Any, ...], parent_posts: int) -> None:
    with ControlledProxy(collector.url) as proxy:
        proxy.then(action)
        run = run_script(tmp_path / "fork.py", FORK_WHILE_THE_THREAD_IS_BUSY,
                         script_env(proxy.url, collector.api_key, project),
                         ready=saw_posts(proxy, 1), timeout=40)
        bodies = posted(proxy)
    assert_clean(run)
    assert run.stdout.split("\n")[:2] == ["child exit 0", "parent flush True"], run
    assert names(collector.fetch(project=project)) == ["child", "parent"], run
    # The parent's own attempts only: a child that resent the row would add one.
    assert sum("parent" in body for body in bodies) == parent_posts, bodies


@needs_fork
def test_fork_while_the_flush_thread_waits_for_a_response(
        collector: Any, project: str, tmp_path: Path) -> None:
    """Fork while the flush thread awaits a response: the child ends and sends only its own row."""
    _fork_while_busy(collector, project, tmp_path, ("delay", 2.0), parent_posts=1)


@needs_fork
def test_fork_while_the_flush_thread_backs_off(collector: Any, project: str,
                                               tmp_path: Path) -> None:
    """Fork while the flush thread backs off after a 503: the child ends, sends only its own row."""
    _fork_while_busy(collector, project, tmp_path, ("status", 503, {"Retry-After": "1"}),
                     parent_posts=2)


@needs_fork
def test_fork_while_the_flush_thread_reads_a_trickled_response_body(
        collector: Any, project: str, tmp_path: Path) -> None:
    """Fork while the flush thread is blocked reading a response body (head sent, body one
    byte a second): the child takes no lock of that read, ends, and sends only its row."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("trickle", 1.0))
        env = script_env(proxy.url, collector.api_key, project, SPANLOG_REQUEST_TIMEOUT="2")
        run = run_script(tmp_path / "fork.py", FORK_WHILE_THE_THREAD_IS_BUSY, env,
                         ready=saw_posts(proxy, 1), timeout=40)
        bodies = posted(proxy)
    assert_clean(run)
    assert run.stdout.split("\n")[:2] == ["child exit 0", "parent flush True"], run
    assert names(collector.fetch(project=project)) == ["child", "parent"], run
    assert sum("child" in body for body in bodies) == 1, bodies


def test_a_trickled_answer_cannot_hold_a_flush_past_its_timeout(
        collector: Any, make_logger: LoggerFactory) -> None:
    """flush(timeout=2) against a collector that answers a byte a second returns by then."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(("trickle", 1.0))
        logger = make_logger(api_url=proxy.url, async_flush=True, flush_linger=30)
        logger.log(input="slow")
        started = time.monotonic()
        assert logger.flush(timeout=2) is False
        assert time.monotonic() - started < 3
        assert logger.stats()["queued"] == 1  # kept for the next flush, not lost
        assert logger.flush(timeout=10) is True  # the proxy forwards normally again


def test_a_trickled_answer_cannot_hold_the_exit_past_exit_timeout(
        collector: Any, project: str, tmp_path: Path) -> None:
    """At exit, a collector trickling its answers holds the process exit_timeout at most,
    and the rows not acknowledged are reported in one line."""
    with ControlledProxy(collector.url) as proxy:
        proxy.then(*[("trickle", 1.0)] * 20)
        env = script_env(proxy.url, collector.api_key, project, SPANLOG_EXIT_TIMEOUT="1")
        run = run_script(tmp_path / "trickle.py", ONE_TRACE_THEN_EXIT, env,
                         ready=saw_posts(proxy, 1), timeout=30)
    assert run.returncode == 0, run
    assert run.elapsed < 1 + 3, run
    lost = [line for line in run.stderr.splitlines() if "not delivered" in line]
    assert len(lost) == 1 and "3 row(s)" in lost[0], run


# --- 3. multiprocessing -------------------------------------------------------------------

MULTIPROCESSING = """
    import json
    import multiprocessing
    import sys
    import spanlog

    spanlog.init_logger()  # at import: a spawned child makes its own logger here

    @spanlog.traced
    def work(i):
        with spanlog.start_span(name="step"):
            pass
        return i

    def in_child():
        with spanlog.start_span(name="in-child"):
            pass

    if __name__ == "__main__":
        method, mode = sys.argv[1:]
        ctx = multiprocessing.get_context(method)
        if mode == "process":
            procs = [ctx.Process(target=work, args=(i,)) for i in range(2)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(30)
            print(json.dumps([p.exitcode for p in procs]))
        elif mode == "pool":
            with ctx.Pool(2) as pool:
                print(json.dumps(pool.map(work, range(6))))
                pool.close()
                pool.join()
        else:  # a child forked inside a span of the parent
            with spanlog.start_span(name="parent") as parent:
                p = ctx.Process(target=in_child)
                p.start()
                p.join(30)
            print(json.dumps({"exitcode": p.exitcode, "span_id": parent.span_id,
                              "root_span_id": parent.root_span_id}))
"""


def _start_methods() -> Iterator[Any]:
    available = multiprocessing.get_all_start_methods()
    for method in ("fork", "forkserver", "spawn"):
        yield pytest.param(method, marks=pytest.mark.skipif(
            method not in available, reason=f"no {method} start method here"))


@pytest.mark.parametrize("method", list(_start_methods()))
def test_traced_process_target_is_delivered_without_flush(
        collector: Any, project: str, tmp_path: Path, method: str) -> None:
    """Spans of a @traced multiprocessing target are delivered when it returns, with no flush."""
    run = run_script(tmp_path / "mp_process.py", MULTIPROCESSING,
                     script_env(collector.url, collector.api_key, project), method, "process")
    assert_clean(run)
    assert json.loads(run.stdout) == [0, 0], run
    rows = collector.fetch(project=project)
    assert names(rows) == ["step", "step", "work", "work"], run


@pytest.mark.parametrize("method", list(_start_methods()))
def test_pool_closed_and_joined_delivers_every_trace(
        collector: Any, project: str, tmp_path: Path, method: str) -> None:
    """A Pool closed and joined after map() has every worker's trace stored."""
    run = run_script(tmp_path / "mp_pool.py", MULTIPROCESSING,
                     script_env(collector.url, collector.api_key, project), method, "pool")
    assert_clean(run)
    assert json.loads(run.stdout) == list(range(6)), run
    rows = collector.fetch(project=project)
    assert names(rows) == ["step"] * 6 + ["work"] * 6, run
    assert len({row["root_span_id"] for row in rows}) == 6


@needs_fork
def test_fork_child_span_under_the_parents_open_span(collector: Any, project: str,
                                                     tmp_path: Path) -> None:
    """A fork child's span nests under the parent's open span; the parent's row is sent once."""
    with ControlledProxy(collector.url) as proxy:
        run = run_script(tmp_path / "mp_parent.py", MULTIPROCESSING,
                         script_env(proxy.url, collector.api_key, project), "fork", "nested")
        bodies = posted(proxy)
    assert_clean(run)
    parent = json.loads(run.stdout)
    assert parent["exitcode"] == 0, run
    rows = {row["span_attributes"]["name"]: row for row in collector.fetch(project=project)}
    assert sorted(rows) == ["in-child", "parent"], run
    assert rows["in-child"]["span_parents"] == [parent["span_id"]]
    assert rows["in-child"]["root_span_id"] == parent["root_span_id"]
    assert rows["parent"]["span_id"] == parent["span_id"]
    assert sum("parent" in body for body in bodies) == 1, bodies


# --- 4. trio -------------------------------------------------------------------------------


def _run_trio(runner: str, main: Callable[[], Any]) -> Any:
    trio = pytest.importorskip("trio")  # not a dependency of spanlog's dev extra
    if runner == "trio":
        return trio.run(main)
    import anyio

    return anyio.run(main, backend="trio")


TRIO_RUNNERS = ["trio", "anyio-trio"]


async def _traces(count: int) -> None:
    for i in range(count):
        async with spanlog.start_span(name=f"root{i}"):
            async with spanlog.start_span(name="child"):
                pass


@pytest.mark.parametrize("runner", TRIO_RUNNERS)
def test_aflush_under_trio_delivers(collector: Any, make_logger: LoggerFactory,
                                    project: str, runner: str) -> None:
    """Under trio, `await spanlog.aflush()` returns True with every row stored and no ERROR."""
    make_logger(flush_linger=60)  # the background thread would wait a minute: aflush sends

    async def main() -> bool:
        await _traces(3)
        return await spanlog.aflush(timeout=10)

    assert _run_trio(runner, main) is True
    assert names(collector.fetch(project=project)) == ["child"] * 3 + ["root0", "root1",
                                                                       "root2"]


@pytest.mark.parametrize("runner", TRIO_RUNNERS)
def test_trace_end_flush_under_trio_is_done_when_the_block_exits(
        collector: Any, make_logger: LoggerFactory, project: str, runner: str) -> None:
    """Under trio with async_flush=False, a trace is stored once its root `async with` exits."""
    make_logger(async_flush=False)

    async def main() -> list[str]:
        await _traces(1)
        return names(collector.fetch(project=project))  # blocking, at once: no waiting

    assert _run_trio(runner, main) == ["child", "root0"]


@pytest.mark.parametrize("runner", TRIO_RUNNERS)
def test_background_delivery_under_trio(collector: Any, make_logger: LoggerFactory,
                                        project: str, runner: str) -> None:
    """Under trio, the default background delivery stores the rows without a flush call."""
    make_logger()
    _run_trio(runner, functools.partial(_traces, 5))
    rows = collector.wait_for_rows(10, project=project)
    assert names(rows) == ["child"] * 5 + [f"root{i}" for i in range(5)]
