"""The background delivery thread of one logger (``docs/design.md``, rule 3).

A :class:`Sender` owns one daemon thread, started on the first :meth:`Sender.kick`. Kicked,
it lingers ``flush_linger`` so that the rows of many traces travel together, then runs the
flush it was given; when that leaves rows behind (the collector is down) it waits a backoff
and tries again, until everything is delivered or it is stopped. :meth:`Sender.stop` cuts
the linger and the backoff short and makes the flush in progress give up at its next step,
so that an exit or a close can take over at once.

Starting a thread is allowed to fail (Pyodide has none): :meth:`kick` then answers False
and the rows wait for another way out (a loop task, an explicit or exit flush).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import _log

# What the thread runs: the flush, given the stop event (its sleeps and steps end when it is
# set); whether rows are left that a retry should take.
FlushOnce = Callable[[threading.Event], bool]

_GUARD = _log.guard("background flush")


class Sender:
    """Runs a logger's background flushes on a daemon thread of its own."""

    def __init__(self, flush_once: FlushOnce, linger: float,
                 backoff: Callable[[int], float]) -> None:
        self._flush_once = flush_once
        self._linger = linger
        self._backoff = backoff
        self._thread: threading.Thread | None = None
        self.pending = False  # a kick is waiting for the thread: later kicks cost nothing
        self.no_threads = False
        self._new_events()

    def _new_events(self) -> None:
        self._wake = threading.Event()
        self._hurry = threading.Event()
        self._stop = threading.Event()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def kick(self, hurry: bool = False) -> bool:
        """Have the thread flush soon (at once with ``hurry``); False without threads."""
        if not self.pending:
            if self.no_threads:
                return False
            self.pending = True
            if not self.alive and not self._start():
                self.pending = False
                return False
            self._wake.set()
        if hurry:
            self._hurry.set()
        return True

    def _start(self) -> bool:
        if self._stop.is_set():  # stopped before (a close, a release): start afresh
            self._new_events()
        thread = threading.Thread(target=self._main, args=(self._wake, self._hurry, self._stop),
                                  name="spanlog-flush", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no threads here (Pyodide)
            self.no_threads = True
            _log.warning("spanlog: cannot start a flush thread here; rows wait for a "
                         "waitUntil hook, spanlog.flush() or async_flush=False")
            return False
        self._thread = thread
        return True

    def _main(self, wake: threading.Event, hurry: threading.Event,
              stop: threading.Event) -> None:
        failures = 0
        while True:
            wake.wait()
            if failures:
                stop.wait(self._backoff(failures - 1))
            else:
                hurry.wait(self._linger)  # stop sets hurry too
            if stop.is_set():
                return
            # Cleared before flushing: a trace that ends from here on wakes the thread again.
            wake.clear()
            hurry.clear()
            self.pending = False
            left = True
            with _GUARD:
                left = self._flush_once(stop)
            if left and not stop.is_set():
                failures += 1
                self.pending = True
                wake.set()
            else:
                failures = 0

    def stop(self, join_timeout: float = 0.0) -> None:
        """Stop the thread: its waits end and the flush in progress gives up at its next
        step (its rows go back to the buffer). Waits up to ``join_timeout`` for it."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        thread = self._thread
        if join_timeout > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)
        self._thread = None
        self.pending = False

    def reset_after_fork(self) -> None:
        """In a forked child: no thread (it was not copied), fresh events, nothing pending."""
        self._thread = None
        self.pending = False
        self._new_events()
