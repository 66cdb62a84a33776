"""Which async library is running, and awaiting blocking work on a thread from either.

spanlog's async code must never need an asyncio loop (``docs/design.md``, async code): an
awaited flush runs the blocking flush on a worker thread and awaits it through the library
that is running, asyncio or trio (anyio runs on one of the two). Nothing here imports an
async library; each is read from ``sys.modules`` since one that is running is imported.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

_get_running_loop: Callable[[], Any] | None = None  # asyncio's, once asyncio is imported


def running_loop() -> Any:
    """The asyncio event loop running in this thread, or None (asyncio is not imported for
    the question: a process that never imported it runs no asyncio loop)."""
    global _get_running_loop
    get = _get_running_loop
    if get is None:
        asyncio = sys.modules.get("asyncio")
        if asyncio is None:
            return None
        get = _get_running_loop = asyncio.events._get_running_loop
    return get()


def current_library() -> str | None:
    """``"asyncio"`` or ``"trio"`` when called from a task of that library, else None."""
    if running_loop() is not None:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return None
        return "trio"
    return None


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` on a worker thread and await its result without blocking the
    running loop; RuntimeError when neither asyncio nor trio runs this task.

    Cancelling the await does not stop ``func``: the flush it runs still completes (its rows
    are not lost) and the next flush waits for it.
    """
    library = current_library()
    if library == "asyncio":
        return await _asyncio_thread(running_loop(), func, args)
    if library == "trio":
        trio = sys.modules["trio"]
        return await trio.to_thread.run_sync(func, *args)
    raise RuntimeError("spanlog's async API needs asyncio or trio (anyio runs on either)")


async def _asyncio_thread(loop: Any, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    # A daemon thread of its own rather than the loop's default executor: that one may be
    # busy with the application's blocking work, or already shut down (a waitUntil flush
    # running late), and its threads are joined at exit with no bound.
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def run() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (func(*args), None)
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
            pass

    threading.Thread(target=run, name="spanlog-aflush", daemon=True).start()
    return await future
