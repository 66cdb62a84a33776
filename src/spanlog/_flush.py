"""When rows leave the process: the flush rules of ``docs/design.md``, in their order.

At the end of each trace :meth:`Flusher.on_trace_end` decides:

1. a waitUntil hook is in scope (:func:`spanlog._hooks.find_wait_until`) → hand it a fresh
   flush coroutine and return at once;
2. ``async_flush=False`` → the caller flushes now, within ``flush_timeout``: blocking in sync
   code; in async code awaited while a worker thread sends (:func:`spanlog._asynclib.in_thread`),
   so the event loop (asyncio or trio) keeps running;
3. otherwise → background: the logger's :class:`~spanlog._sender.Sender` thread delivers,
   lingering ``flush_linger`` so that traces travel together. Where there are no threads
   (Pyodide), a task on the running asyncio loop does it through an async transport.

All sending goes through one lock per logger (one flush at a time keeps the pieces of a row
in order) and through the blocking :class:`~spanlog._transport.Transport`, except on hosts
with no threads or when the user configured an ``async_transport``: there awaited flushes
run on the event loop. The exit and fork rules are in :mod:`spanlog._process`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from . import _hooks, _log, _process, _serialize
from ._asynclib import in_thread, running_loop
from ._buffer import Buffer
from ._config import Config
from ._delivery import Delivery, backoff, run_async, run_sync
from ._transport import Transport

_LOCK_POLL = 0.005
_warned_loop_flush = False
_HOOK_GUARD = _log.guard("handing the flush to the waitUntil hook")
_FLUSH_GUARD = _log.guard("flush")


class Flusher:
    """Decides and runs the flushes of one logger."""

    def __init__(self, config: Config, buffer: Buffer, delivery: Delivery) -> None:
        self.config = config
        self.buffer = buffer
        self.delivery = delivery
        self._transport: Any = config.transport
        self.capture: Any = None  # spanlog.testing.capture_rows(): its in-memory transport
        self._async_owner: int | None = None  # thread whose event loop holds delivery.lock
        self._loop_task: Any = None
        self._lost_in_flight = 0  # rows in flight already counted lost at exit
        self.sender = _sender(self)
        _process.track(self)

    # --- the decision at the end of a trace -------------------------------------------------

    def on_trace_end(self) -> bool:
        """Start what the end of a trace calls for; True asks the caller to flush now.

        This runs on the caller's thread once per trace, so the common outcome (a background
        flush is already pending) costs a few attribute reads.
        """
        if not _serialize.loop_seen and running_loop() is not None:
            _serialize.note_event_loop()  # delivery gives way from now on (trio: _atrace_end)
        if self.capture is not None:
            self.flush(None)
            return False
        hook = _hooks.find_wait_until()
        if hook is not None:
            with _HOOK_GUARD:
                hook(self.flush_coroutine())
                return False
        if not self.config.async_flush:
            return True
        sender = self.sender
        if not sender.pending and not sender.kick():  # pending: the thread will flush anyway
            self._kick_loop_task()
        return False

    # --- explicit flushes -----------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        """Deliver everything buffered, blocking; whether all of it arrived.

        When a flush running on this thread's own event loop (the async-transport path)
        holds the lock, waiting for it would deadlock the loop: nothing is sent from here,
        a hint is logged once, and the answer is False.
        """
        lock = self.delivery.lock
        if self._async_owner == threading.get_ident() and lock.locked():
            return self._flush_beside_own_loop()
        if not lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        try:
            failed = self.delivery.stats.failed
            deadline = None if timeout is None else time.monotonic() + timeout
            ok = False
            with _FLUSH_GUARD:
                ok = run_sync(self.delivery.plan(deadline), self.capture or self._sync_transport())
        finally:
            lock.release()
        return ok and self.delivery.stats.failed == failed

    def _flush_beside_own_loop(self) -> bool:
        loop = running_loop()
        if loop is not None and self.buffer.rows:
            self._kick_loop_task()  # delivers the rest once the loop's flush is done
        global _warned_loop_flush
        if not _warned_loop_flush:
            _warned_loop_flush = True
            _log.warning("spanlog: flush() was called on the event loop's thread while a "
                         "flush on that loop was sending rows; it returned False without "
                         "waiting (that would block the loop for good). In async code use "
                         "`await spanlog.aflush()`, and end spans with `async with` or "
                         "`await span.aend()`")
        return False

    async def aflush(self, timeout: float | None) -> bool:
        """Deliver everything buffered without blocking the event loop (asyncio or trio)."""
        if self.capture is not None:
            return self.flush(timeout)
        factory = self._async_factory()
        if factory is None:
            return bool(await in_thread(self.flush, timeout))
        return await self._aflush_on_loop(factory, timeout)

    def flush_coroutine(self) -> Coroutine[Any, Any, bool]:
        """A fresh coroutine delivering everything buffered (for a waitUntil hook).

        It may run on any event loop, and it never raises: the platform that runs it cannot
        do anything useful with an error.
        """
        return self._guarded_aflush(self.config.flush_timeout)

    async def _guarded_aflush(self, timeout: float) -> bool:
        with _FLUSH_GUARD:
            return await self.aflush(timeout)
        return False

    # --- the async-transport path: on the loop, for hosts without threads ------------------

    def _async_factory(self) -> Callable[[], Any] | None:
        """The async transport to flush with on the loop, or None to use a thread."""
        if self.config.async_transport is not None:
            return self.config.async_transport
        if self.sender.no_threads or _no_threads_here():
            from ._fetch_transport import FetchTransport

            return FetchTransport
        return None

    async def _aflush_on_loop(self, factory: Callable[[], Any], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not await self._acquire(deadline):
            return False
        failed = self.delivery.stats.failed
        ok = False
        try:
            with _FLUSH_GUARD:
                transport = factory()
                try:
                    ok = await run_async(self.delivery.plan(deadline), transport)
                finally:
                    await transport.aclose()
        finally:
            self._release()
        return ok and self.delivery.stats.failed == failed

    async def _acquire(self, deadline: float | None) -> bool:
        import asyncio

        lock = self.delivery.lock
        # Another flush (a thread's, or one on another loop) holds the lock: poll it, since
        # awaiting a threading.Lock is not possible.
        while not lock.acquire(blocking=False):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_LOCK_POLL)
        self._async_owner = threading.get_ident()
        return True

    def _release(self) -> None:
        self._async_owner = None
        self.delivery.lock.release()

    def _kick_loop_task(self) -> None:
        """Background delivery by a task on the running loop (no threads here)."""
        loop = running_loop()
        task = self._loop_task
        if loop is None or (task is not None and not task.done() and task.get_loop() is loop):
            return  # no loop: rows wait for an explicit or exit flush
        import contextvars

        # An empty context: the task must not keep the span that ended the trace current.
        self._loop_task = contextvars.Context().run(loop.create_task, self._loop_flush())

    async def _loop_flush(self) -> None:
        import asyncio

        factory = self._async_factory() or Transport
        failures = 0
        with _log.guard("background flush"):
            while True:
                await asyncio.sleep(backoff(self.config, failures - 1) if failures
                                    else self.config.flush_linger)
                ok = await self._aflush_on_loop(factory, None)
                if not self.buffer.rows:
                    break
                failures = 0 if ok else failures + 1

    # --- background: the sender thread ------------------------------------------------------

    def _background_flush(self, stop: threading.Event) -> bool:
        """One flush on the sender thread; whether rows are left for it to retry."""
        lock = self.delivery.lock
        while not lock.acquire(timeout=0.5):
            if stop.is_set():
                return False
        try:
            ok = run_sync(self.delivery.plan(None), self._sync_transport(), stop)
        finally:
            lock.release()
        return not ok and bool(self.buffer.rows)

    def _sync_transport(self) -> Any:
        if self._transport is None:
            self._transport = Transport()
        return self._transport

    # --- lifecycle --------------------------------------------------------------------------

    def close(self, timeout: float | None) -> bool:
        """Flush, stop the background thread and close the kept-alive connection."""
        ok = self.flush(timeout)
        self.sender.stop(join_timeout=1.0)
        transport = self._transport
        if transport is not None and transport is not self.config.transport:
            # Two closes may race (a release and the user's own close): closing twice is fine.
            self._transport = None
            transport.close()
        return ok

    def release(self, on_done: Callable[[bool], None]) -> None:
        """Deliver what is buffered, then stop the flush thread and close the kept-alive
        connection, all on a thread of its own: the caller does not wait for the network.

        For a logger that ``init_logger`` just replaced as current; it keeps working if it
        is used again (a thread and a connection start anew when needed). ``on_done`` gets
        whether everything was delivered. Without threads (Pyodide) nothing is started:
        the rows wait for an explicit or exit flush, and ``on_done`` is not called.
        """
        if (not self.buffer.rows and not self.delivery.in_flight and self._transport is None
                and not self.sender.alive):
            on_done(True)
            return

        def run() -> None:
            ok = False
            with _log.guard("releasing a replaced logger"):
                ok = self.close(None)
                if self.buffer.rows:
                    # Not delivered (the collector is down: retries ran out), or logged while
                    # it closed (the logger is still in use): the usual background thread
                    # takes them at once and retries until they are delivered.
                    self.sender.kick(hurry=True)
            on_done(ok)

        releaser = threading.Thread(target=run, name="spanlog-release", daemon=True)
        try:
            releaser.start()
        except RuntimeError:  # no threads here
            pass

    def at_exit(self, deadline: float) -> None:
        """The flush at exit: every row, including those the sender thread had taken, is
        delivered by ``deadline`` (monotonic) or counted failed and reported once."""
        self.delivery.cutoff = deadline  # bounds the request in flight on any thread
        self.sender.stop()  # its waits end; its flush gives its rows back at the next step
        config = self.config
        while self.buffer.rows or self.delivery.in_flight:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.flush(left) or not self.buffer.rows:
                continue  # delivered, or rejected (counted): anything still in flight?
            pause = backoff(config, 0)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)  # a collector that refuses at once: do not spin
        # Counted once, even though the other exit hook runs this again: the buffer is
        # emptied, and rows still in flight on a stuck thread are remembered.
        in_flight = self.delivery.in_flight
        lost = len(self.buffer.rows) + max(0, in_flight - self._lost_in_flight)
        self._lost_in_flight = in_flight
        if lost:
            self.buffer.drain()
            stats = self.delivery.stats
            reason = stats.last_error or "no answer in time"
            stats.failed += lost
            stats.last_error = f"{lost} row(s) not delivered at exit: {reason}"
            _log.warning("spanlog: %d row(s) not delivered at exit within exit_timeout=%gs "
                         "(collector %s): %s", lost, config.exit_timeout, config.api_url,
                         reason)

    def after_fork_in_child(self) -> None:
        """Start over in a forked child: no thread, fresh locks, none of the parent's rows,
        and the parent's connections dropped without taking their locks."""
        self.buffer.reset()
        self.delivery.reset_after_fork()
        self.sender.reset_after_fork()
        self._async_owner = None
        self._loop_task = None
        self._lost_in_flight = 0
        transport = self._transport
        if transport is not None and transport is not self.config.transport:
            self._transport = None
            transport.discard()


def _sender(flusher: Flusher) -> Any:
    from ._sender import Sender

    config = flusher.config
    return Sender(flusher._background_flush, config.flush_linger,
                  lambda attempt: backoff(config, attempt))


def _no_threads_here() -> bool:
    import sys

    return sys.platform == "emscripten"  # Pyodide (Cloudflare Python Workers): fetch only
