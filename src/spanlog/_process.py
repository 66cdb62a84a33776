"""What happens to every logger when the process exits or forks (``docs/design.md``).

**Exit.** Two hooks run the same exit flush, so that every way a Python process ends
cleanly is covered:

- ``threading._register_atexit``: called by ``threading._shutdown()``, which runs both at
  interpreter exit (before non-daemon threads are joined) and at the end of a
  ``multiprocessing`` child of any start method, which then leaves through ``os._exit()``
  and so never runs ``atexit``;
- ``atexit``: at interpreter exit, after non-daemon threads ended (their rows too).

One budget covers both: ``exit_timeout`` (the largest of the loggers') from the first hook
that runs. Each logger's flush at exit (:meth:`spanlog._flush.Flusher.at_exit`) takes every
row, including rows the background thread had taken (in flight, or waiting to retry), and
what is still undelivered when the budget runs out is counted in ``stats()["failed"]`` and
reported in one warning. A process killed by a signal, or leaving through ``os._exit()``
itself, runs neither hook.

**Fork.** In the child, before anything else runs: every logger starts over (empty buffer,
fresh locks and counters, no thread) and drops its inherited connections by closing the
child's copies of their descriptors, taking no lock that a parent's thread may have held at
the moment of the fork. Spans that were open at the fork belong to the parent
(:func:`spanlog._span.after_fork`): the child never sends them, and a span it starts under
one of them is the local root of its part of the trace.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from . import _log, _span

if TYPE_CHECKING:
    from ._flush import Flusher

_flushers: weakref.WeakSet[Flusher] = weakref.WeakSet()
_exit_deadline: float | None = None
_registered = False


def track(flusher: Flusher) -> None:
    """Include ``flusher`` in the exit flush and the fork reset (hooks registered once)."""
    _flushers.add(flusher)
    global _registered
    if _registered:
        return
    _registered = True
    atexit.register(at_exit)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(at_exit)
        except RuntimeError:  # already shutting down: atexit still covers the main process
            pass
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork_in_child)


def at_exit() -> None:
    """Flush every logger within one shared exit budget."""
    global _exit_deadline
    flushers = list(_flushers)
    if not flushers:
        return
    if _exit_deadline is None:
        _exit_deadline = time.monotonic() + max(f.config.exit_timeout for f in flushers)
    for flusher in flushers:
        with _log.guard("flush at exit"):
            flusher.at_exit(_exit_deadline)


def after_fork_in_child() -> None:
    """Start every logger over in a forked child (see the module docstring)."""
    global _exit_deadline
    _exit_deadline = None
    _span.after_fork()
    for flusher in list(_flushers):
        flusher.after_fork_in_child()
