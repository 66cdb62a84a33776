"""When rows leave the process: the flush modes of DESIGN.md, in their order.

At the end of each trace :meth:`Flusher.on_trace_end` decides:

1. a waitUntil hook is in scope (:func:`spanlog._hooks.find_wait_until`) → hand it a fresh
   flush coroutine and return at once;
2. ``async_flush=False`` → the caller flushes now (awaited in async code, blocking with the
   stdlib transport in sync code), within ``flush_timeout``;
3. otherwise → background: a task on the running event loop, or else a daemon thread, each
   lingering ``flush_linger`` seconds so that the rows of many traces travel together.

Also here: ``flush``/``aflush`` (one flush at a time per logger, so the pieces of a row stay
in order; a blocking ``flush`` on an event loop's thread never waits for that loop's own
flush), the hand-over to a thread of rows left by a loop that ended, the background release
of a logger that ``init_logger`` replaced, the bounded flush at interpreter exit, and the
reset of a forked child. No thread
is started until sync code first needs a background flush, and starting one is allowed to
fail (Pyodide has no threads): rows then wait for an explicit or exit flush.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from . import _hooks, _log
from ._buffer import Buffer
from ._config import Config
from ._delivery import Delivery, Stats, run_async, run_sync
from ._transport import Transport

HANDLED, FLUSH_NOW, BACKGROUND = 0, 1, 2

_flushers: weakref.WeakSet[Flusher] = weakref.WeakSet()
_LOCK_POLL = 0.005
_warned_loop_flush = False


def running_loop() -> Any:
    """The event loop running in this thread, or None (never imports asyncio)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    return asyncio.events._get_running_loop()


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
        self._thread: threading.Thread | None = None
        self._thread_pending = False
        self._no_threads = False
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stop = threading.Event()
        _flushers.add(self)
        _register_process_hooks()

    # --- the decision at the end of a trace -------------------------------------------------

    def on_trace_end(self) -> int:
        """Start what the end of a trace calls for; FLUSH_NOW asks the caller to flush.

        This runs on the caller's thread once per trace, so the common outcome (a background
        flush is already pending) costs a few attribute reads.
        """
        if self.capture is not None:
            self.flush(None)
            return HANDLED
        try:
            hook = _hooks.find_wait_until()
            if hook is not None:
                hook(self.flush_coroutine())
                return HANDLED
        except Exception:
            _log.exception("spanlog: the waitUntil hook failed; flushing the usual way")
        if not self.config.async_flush:
            return FLUSH_NOW
        loop = running_loop()
        if loop is not None:
            task = self._loop_task
            if task is None or task.done() or task.get_loop() is not loop:
                self._start_loop_task(loop)
        elif not self._thread_pending:
            self._kick_thread()
        return HANDLED

    def _kick_thread(self, hurry: bool = False) -> None:
        """Make sure the flush thread runs soon (started on first use); ``hurry``: at once,
        without its linger."""
        if not self._thread_pending:
            self._thread_pending = True
            if self._thread is None or not self._thread.is_alive():
                self._start_thread()
            self._wake.set()
        if hurry:
            self._hurry.set()

    # --- explicit flushes -----------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        """Deliver everything buffered, blocking; whether all of it arrived.

        On a thread running an event loop this blocks the loop while it sends (through the
        blocking transport), except when a flush on that same loop is sending rows: it can
        only finish once the loop runs again, so waiting for it would deadlock. Then nothing
        is sent from here, a task on the loop is made sure to deliver the rest after it, a
        hint to ``await aflush()`` is logged once, and the answer is False.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        lock = self.delivery.lock
        if self._async_owner == threading.get_ident() and lock.locked():
            return self._flush_beside_own_loop(deadline)
        if not lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        return self._flush_locked(deadline, lock_held=True)

    def _flush_beside_own_loop(self, deadline: float | None) -> bool:
        """flush() on a thread whose own event loop holds the delivery lock mid-flush."""
        loop = running_loop()
        if loop is None:
            # That loop is stopped (abandoned mid-flush, as at interpreter exit) and may never
            # run again: send what is buffered alongside. The rows it holds are not delivered.
            ok = self._flush_locked(deadline, lock_held=False)
            return ok and self.delivery.in_flight == 0
        # The flush holding the lock has rows on the wire and cannot finish while this thread
        # blocks; sending the rest alongside could overtake it (a merge piece stored before
        # its row would then be replaced by it). So: not delivered, and a task on this loop
        # takes what is buffered once that flush is done.
        task = self._loop_task
        if self.buffer.rows and (task is None or task.done() or task.get_loop() is not loop):
            self._start_loop_task(loop)
        global _warned_loop_flush
        if not _warned_loop_flush:
            _warned_loop_flush = True
            _log.warning("spanlog: flush() was called on the event loop's thread while a "
                         "flush on that loop was sending rows; it returned False without "
                         "waiting (that would block the loop for good). In async code use "
                         "`await spanlog.aflush()`, and end spans with `async with` or "
                         "`await span.aend()`")
        return False

    def _flush_locked(self, deadline: float | None, lock_held: bool) -> bool:
        failed = self.delivery.stats.failed
        try:
            transport = self.capture or self._sync_transport()
            ok = run_sync(self.delivery.plan(deadline), transport)
        except Exception:
            _log.exception("spanlog: flush failed")
            ok = False
        finally:
            if lock_held:
                self.delivery.lock.release()
        return ok and self.delivery.stats.failed == failed

    async def aflush(self, timeout: float | None) -> bool:
        """Deliver everything buffered without blocking the event loop."""
        import asyncio

        if self.capture is not None:
            return self.flush(timeout)
        factory = self._async_factory()
        if factory is None:
            if self._no_threads:
                _log.error("spanlog: no async transport (pip install 'spanlog[async]') and "
                          "no threads to flush with")
                return False
            return await asyncio.to_thread(self.flush, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        if not await self._acquire(deadline):
            return False
        failed = self.delivery.stats.failed
        try:
            transport = factory()
            try:
                ok = await run_async(self.delivery.plan(deadline), transport)
            finally:
                await transport.aclose()
        except Exception:
            _log.exception("spanlog: flush failed")
            ok = False
        finally:
            self._release()
        return ok and self.delivery.stats.failed == failed

    def flush_coroutine(self) -> Coroutine[Any, Any, bool]:
        """A fresh coroutine delivering everything buffered (for a waitUntil hook).

        It creates its transport inside itself, so it may run on any event loop, and it
        never raises: the platform that runs it cannot do anything useful with an error.
        """
        return self._guarded_aflush(self.config.flush_timeout)

    async def _guarded_aflush(self, timeout: float) -> bool:
        try:
            return await self.aflush(timeout)
        except Exception:
            _log.exception("spanlog: flush failed")
            return False

    async def _acquire(self, deadline: float | None) -> bool:
        import asyncio

        lock = self.delivery.lock
        # Another flush (the background thread, or a flush on another loop) holds the lock:
        # poll it, since awaiting a threading.Lock is not possible.
        while not lock.acquire(blocking=False):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_LOCK_POLL)
        self._async_owner = threading.get_ident()
        return True

    def _release(self) -> None:
        self._async_owner = None
        self.delivery.lock.release()

    # --- background: a task on the running loop -------------------------------------------

    def _start_loop_task(self, loop: Any) -> None:
        import contextvars

        # An empty context: the task must not keep the span that ended the trace current.
        task = contextvars.Context().run(loop.create_task, self._loop_flush())
        task.add_done_callback(self._loop_task_done)
        self._loop_task = task

    def _loop_task_done(self, task: Any) -> None:
        # Cancelled (the loop is shutting down, as at the end of asyncio.run) with rows still
        # buffered: a thread delivers them now (they lingered on the loop already) rather
        # than leaving them until the next trace or the exit.
        if task.cancelled() and self.buffer.rows:
            self._kick_thread(hurry=True)

    async def _loop_flush(self) -> None:
        import asyncio

        factory = self._async_factory()
        transport = None
        me = asyncio.current_task()
        backoff = 0.0
        try:
            while True:
                await asyncio.sleep(backoff or self.config.flush_linger)
                if factory is None:
                    ok = await asyncio.to_thread(self.flush, None)
                else:
                    await self._acquire(None)
                    try:
                        if transport is None:
                            transport = factory()
                        ok = await run_async(self.delivery.plan(None), transport)
                    finally:
                        self._release()
                if not self.buffer.rows:
                    break
                backoff = 0.0 if ok else min(self.config.retry_backoff_max,
                                             max(backoff * 2, self.config.retry_backoff))
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("spanlog: background flush failed")
        finally:
            if self._loop_task is me:  # before any await: a kick from now on starts anew
                self._loop_task = None
            if transport is not None:
                await transport.aclose()

    # --- background: a daemon thread for sync code ------------------------------------------

    def _start_thread(self) -> None:
        if self._no_threads:
            return
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stop = threading.Event()
        thread = threading.Thread(target=self._thread_main,
                                  args=(self._wake, self._hurry, self._stop),
                                  name="spanlog-flush", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no threads here (Pyodide): rows wait for flush() or exit
            self._no_threads = True
            _log.warning("spanlog: cannot start a flush thread here; call spanlog.flush() "
                        "or use async_flush=False")
            return
        self._thread = thread

    def _thread_main(self, wake: threading.Event, hurry: threading.Event,
                     stop: threading.Event) -> None:
        backoff = 0.0
        while True:
            wake.wait()
            if backoff:
                stop.wait(backoff)
            else:
                hurry.wait(self.config.flush_linger)  # stop sets hurry too
            if stop.is_set():
                return
            # Clear before draining: a trace ending from here on wakes us again.
            wake.clear()
            hurry.clear()
            self._thread_pending = False
            ok = False
            try:
                lock = self.delivery.lock
                while not lock.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                try:
                    ok = run_sync(self.delivery.plan(None), self._sync_transport(), stop)
                finally:
                    lock.release()
            except Exception:
                _log.exception("spanlog: background flush failed")
            if not ok and self.buffer.rows and not stop.is_set():
                backoff = min(self.config.retry_backoff_max,
                              max(backoff * 2, self.config.retry_backoff))
                self._thread_pending = True
                wake.set()
            else:
                backoff = 0.0

    def _stop_thread(self) -> None:
        self._stop.set()
        self._hurry.set()
        self._wake.set()

    # --- transports -------------------------------------------------------------------------

    def _sync_transport(self) -> Any:
        if self._transport is None:
            self._transport = Transport()
        return self._transport

    def _async_factory(self) -> Any:
        if self.config.async_transport is not None:
            return self.config.async_transport
        if sys.platform == "emscripten":  # Pyodide (Cloudflare Python Workers): fetch only
            from ._fetch_transport import FetchTransport

            return FetchTransport
        try:
            from ._aiohttp_transport import AiohttpTransport
        except ImportError:
            return None
        return AiohttpTransport

    # --- lifecycle --------------------------------------------------------------------------

    def close(self, timeout: float | None) -> bool:
        """Flush, stop the background thread and close the kept-alive connection."""
        ok = self.flush(timeout)
        self._stop_thread()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        self._thread = None
        self._thread_pending = False
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
        thread = self._thread
        if (not self.buffer.rows and not self.delivery.in_flight and self._transport is None
                and (thread is None or not thread.is_alive())):
            on_done(True)
            return

        def run() -> None:
            ok = False
            try:
                ok = self.close(None)
                if self.buffer.rows:
                    # Not delivered (the collector is down: retries ran out), or logged while
                    # it closed (the logger is still in use, and those rows may have woken the
                    # thread just stopped): the usual background thread takes them at once
                    # and retries until they are delivered, keeping a connection again.
                    self._kick_thread(hurry=True)
            except Exception:
                _log.exception("spanlog: releasing a replaced logger failed")
            finally:
                on_done(ok)

        releaser = threading.Thread(target=run, name="spanlog-release", daemon=True)
        try:
            releaser.start()
        except RuntimeError:  # no threads here
            pass

    def at_exit(self, deadline: float) -> None:
        """The flush at interpreter exit, given up at ``deadline`` (monotonic)."""
        self._stop_thread()  # the thread gives up its sleeps and releases the lock
        if not self.buffer.rows:
            return
        if not self.flush(max(0.0, deadline - time.monotonic())):
            lost = len(self.buffer.rows)
            if lost:
                self.delivery.stats.failed += lost
                _log.warning("spanlog: %d row(s) not delivered at exit (collector %s)",
                            lost, self.config.api_url)

    def after_fork_in_child(self) -> None:
        """Start over in a forked child: no thread, fresh locks, none of the parent's rows."""
        self.buffer.reset()
        self.delivery.lock = threading.Lock()
        self.delivery.in_flight = 0
        self.delivery.stats = Stats()
        self._async_owner = None
        self._loop_task = None
        self._thread = None
        self._thread_pending = False
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stop = threading.Event()
        transport = self._transport
        if transport is not None and transport is not self.config.transport:
            forget = getattr(transport, "forget", None)
            if forget is not None:
                forget()  # close the child's copies of the parent's sockets
            self._transport = None


def _at_exit() -> None:
    flushers = list(_flushers)
    if not flushers:
        return
    # One budget for the whole exit, however many loggers there are.
    deadline = time.monotonic() + max(f.config.exit_timeout for f in flushers)
    for flusher in flushers:
        try:
            flusher.at_exit(deadline)
        except Exception:
            _log.exception("spanlog: flush at exit failed")


def _after_fork_in_child() -> None:
    for flusher in list(_flushers):
        flusher.after_fork_in_child()


_registered = False


def _register_process_hooks() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
