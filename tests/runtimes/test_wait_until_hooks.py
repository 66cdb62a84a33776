"""spanlog's waitUntil hooks: the user-given scope, Vercel's runtime hook, the off switch."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import spanlog
from spanlog._hooks import find_wait_until, wait_until_scope


class Collected:
    """A waitUntil hook that keeps what it is handed, as a platform would."""

    def __init__(self) -> None:
        self.coroutines: list[Coroutine[Any, Any, Any]] = []

    def __call__(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self.coroutines.append(coroutine)

    def close(self) -> None:
        for coroutine in self.coroutines:
            coroutine.close()


@pytest.fixture(autouse=True)
def _hooks_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPANLOG_WAIT_UNTIL", raising=False)


def test_no_hook_outside_a_scope() -> None:
    """With no scope and no platform runtime there is no hook (and vercel is not imported)."""
    assert "vercel.cache.context" not in sys.modules
    assert find_wait_until() is None


def test_scopes_nest_and_restore() -> None:
    """The innermost scope's hook is in force, and leaving a scope restores the outer one."""
    outer, inner = Collected(), Collected()
    with wait_until_scope(outer) as entered:
        assert entered is outer and find_wait_until() is outer
        with wait_until_scope(inner):
            assert find_wait_until() is inner
        assert find_wait_until() is outer
    assert find_wait_until() is None


def test_scope_takes_a_platform_ctx() -> None:
    """An object with waitUntil (Workers ctx) or wait_until is bound to that method."""
    class WorkersCtx:
        def __init__(self) -> None:
            self.handed: list[object] = []

        def waitUntil(self, awaitable: object) -> None:  # the JavaScript name
            self.handed.append(awaitable)

    class SnakeCtx:
        def wait_until(self, awaitable: object) -> None:
            pass

    ctx = WorkersCtx()
    with wait_until_scope(ctx):
        hook = find_wait_until()
        assert hook is not None
        hook(None)  # type: ignore[arg-type]
    assert ctx.handed == [None]
    snake = SnakeCtx()
    assert wait_until_scope(snake).hook == snake.wait_until


def test_scope_rejects_what_is_not_a_hook() -> None:
    """Something neither callable nor a ctx fails at once, saying what was given."""
    with pytest.raises(TypeError, match="waitUntil.*got int"):
        wait_until_scope(42)


def test_decorator_scopes_each_call() -> None:
    """As a decorator the scope covers each call of a sync or async function, and concurrent
    calls with different hooks each see their own."""
    first, second = Collected(), Collected()

    @wait_until_scope(first)
    def sync_call() -> object:
        return find_wait_until()

    def scoped(hook: Collected) -> Any:
        @wait_until_scope(hook)
        async def seen(pause: float) -> object:
            await asyncio.sleep(pause)
            return find_wait_until()
        return seen

    assert sync_call() is first
    assert find_wait_until() is None

    async def both() -> list[object]:
        return list(await asyncio.gather(scoped(first)(0.01), scoped(second)(0)))

    assert asyncio.run(both()) == [first, second]
    assert sync_call.__name__ == "sync_call"


def test_decorator_refuses_generator_functions() -> None:
    """A generator's body runs after the call returns, so decorating one is an error."""
    def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator function"):
        wait_until_scope(Collected())(numbers)


def test_off_switch_disables_every_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPANLOG_WAIT_UNTIL=off makes spanlog ignore even an explicit scope."""
    monkeypatch.setenv("SPANLOG_WAIT_UNTIL", "off")
    with wait_until_scope(Collected()):
        assert find_wait_until() is None


def test_trace_end_hands_the_hook_a_fresh_flush(collector: Any) -> None:
    """Each trace ending in a scope hands the hook its own coroutine and sends nothing itself;
    running the coroutines later delivers every row."""
    project = f"hooks-{uuid.uuid4().hex[:8]}"
    logger = spanlog.init_logger(project=project, api_url=collector.url,
                                 api_key=collector.api_key, set_current=False)
    hook = Collected()
    try:
        with wait_until_scope(hook):
            for name in ("one", "two"):
                with logger.start_span(name=name) as span:
                    span.log(input=name)
        assert len(hook.coroutines) == 2 and hook.coroutines[0] is not hook.coroutines[1]
        assert collector.fetch(project=project) == []

        async def run_all() -> list[Any]:
            return list(await asyncio.gather(*hook.coroutines))

        assert asyncio.run(run_all()) == [True, True]
        hook.coroutines.clear()
        stored = collector.fetch(project=project)
        assert sorted(row["input"] for row in stored) == ["one", "two"]
    finally:
        hook.close()


_VERCEL_PROBE = """
import asyncio, contextvars, json, sys
from spanlog._hooks import find_wait_until
from vercel_runtime import wait_until as runtime

out = {"before": find_wait_until() is None}
collector = runtime.begin_wait_until()          # what vc_init does as a request starts
hook = find_wait_until()
out["during"] = hook is not None and hook == collector.wait_until
later = contextvars.copy_context()              # a task that outlives the request
ran = []

async def work():
    ran.append(True)

hook(work())
asyncio.run(runtime.finish_wait_until_async(collector))  # the drain before `end`
out["drained"] = ran == [True]
out["after"] = find_wait_until() is None
out["outlived"] = later.run(find_wait_until) is None
from vercel.cache.context import set_context
set_context(wait_until=runtime._discard_wait_until)  # left by an older vercel-cache
out["discard"] = find_wait_until() is None
print(json.dumps(out))
"""


def test_vercel_runtime_hook_is_used_only_while_installed(vercel_python: Path) -> None:
    """Under the real vercel-runtime the hook is found during a request and not before, after,
    from a task that outlived the request, or when only the discarding stand-in is left."""
    done = subprocess.run([str(vercel_python), "-c", _VERCEL_PROBE], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "before": True, "during": True, "drained": True, "after": True, "outlived": True,
        "discard": True}


def test_looking_for_a_hook_imports_nothing() -> None:
    """find_wait_until never imports a platform package (a cold start pays nothing)."""
    code = ("import sys; from spanlog._hooks import find_wait_until; find_wait_until(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('vercel', 'vercel_runtime', 'workers', 'js', 'aiohttp')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
