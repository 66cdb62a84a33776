"""Ingest worker processes: decoding, validating and preparing request rows off the GIL.

One collector process serves HTTP on one event loop and writes SQLite on one thread, and
both need the GIL: per ingested row the event loop spent about 60 CPU-µs in Python (JSON
decoding, validation, encoding, the index walk) and the writer about 15, so ingest stopped at
what one core could do while the other idled in part. With workers, the event loop reads a
request's bytes and hands them to a worker process, which runs
:func:`~spanlog.server.http._ingest.decode_rows` (for an OTLP export,
:func:`~spanlog.server.http._otlp.decode_spans`) with the store's ``prepare_rows``; what comes back
is a few strings and small tuples per row (the stored JSON text, its digest, the index leaves
grouped per value), far cheaper to unpickle than the rows' dicts, and a request of new rows
goes into SQLite from that text without ever being decoded in the serving process.

Nothing is stored by a worker: a worker that dies only fails the requests it was decoding,
which are then decoded in the serving process while a new pool starts, so they still succeed.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from spanlog.server.http._ingest import RowBatch, decode_rows
from spanlog.server.http._tuning import GC_THRESHOLDS
from spanlog.server.store._engine import PrepareRows

log = logging.getLogger("spanlog.server")

T = TypeVar("T")
WORKER_NICENESS = 10
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker_started(parent: int) -> None:
    _exit_with(parent)
    # Ctrl-C on `spanlog serve` reaches the whole process group: the serving process shuts
    # the pool down; workers must not die mid-request with a traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Below the serving process in CPU priority: its SQLite writer thread sets the pace of
    # ingest, and on a machine with few cores the workers would otherwise take turns with
    # it. Interleaved runs of `bench/collector.py ingest` (200,000 rows, 2 cores, 2
    # workers): 10,293 / 10,572 / 13,124 rows/s at nice 10 against 9,676 / 10,149 / 10,982.
    os.nice(WORKER_NICENESS)
    # As in the serving process (see _tuning.tune_process): decoding allocates ~100
    # containers per row, none of them in cycles.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _exit_with(parent: int) -> None:
    """End this worker when the serving process ``parent`` dies, however it dies.

    A worker holds both ends of its task pipe (multiprocessing passes a queue whole), so a
    serving process killed with SIGKILL would leave it waiting forever. On Linux the kernel
    kills it (``PR_SET_PDEATHSIG``); elsewhere a thread checks the parent once a second.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)  # a periodic check: nothing signals a parent's death here
            os._exit(0)

        threading.Thread(target=watch, name="spanlog-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # it died before the watch began
        os._exit(0)


def worker_count(asked: int | None, prepare_rows: PrepareRows | None,
                 option: str = "ingest workers") -> int:
    """How many worker processes to run: ``asked``, or (None) one per CPU core, none on a
    single core or for a store without ``prepare_rows``. ValueError naming ``option`` when
    ``asked`` cannot be had."""
    if asked is None:
        if prepare_rows is None:
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        return cores if cores > 1 else 0
    if asked < 0:
        raise ValueError(f"{option}: must be 0 or more, got {asked}")
    if asked and prepare_rows is None:
        # Rows would cross the process boundary as dicts, which costs about what decoding
        # them does: no gain for such an engine.
        raise ValueError(f"{option}: only the SQLite engine uses ingest workers; with "
                         "--postgres, run more `spanlog serve` processes instead")
    return asked


def _ready() -> None:
    """A no-op task: returns once a worker process has started and imported this module."""


class IngestWorkers:
    """Where request rows are decoded: ``count`` worker processes, or (0) the event loop."""

    def __init__(self, count: int, prepare_rows: PrepareRows | None) -> None:
        self.count = worker_count(count, prepare_rows)
        self._prepare_rows = prepare_rows
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the serving process has threads (the SQLite writer and readers)
        # whose locks a forked child would inherit held.
        return ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_started, initargs=(os.getpid(),))

    async def start(self) -> None:
        """Start the worker processes and wait until each has imported the collector."""
        if not self.count:
            return
        self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        # A task each (concurrently): the pool starts processes as work arrives.
        await asyncio.gather(*(loop.run_in_executor(self._pool, _ready)
                               for _ in range(self.count)))

    async def decode(self, raw: bytes, field: str, project_id: str | None = None,
                     source: str = "body") -> RowBatch:
        """:func:`decode_rows` of ``raw``, in a worker process when there are any."""
        return await self.run(decode_rows, raw, field, project_id, source=source)

    async def run(self, decode: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``decode(*args, **kwargs)``, a pure function of a request's body, in a worker
        process when there are any: there it also gets ``prepare_rows=`` the store's."""
        pool = self._pool
        if pool is None:
            # In the serving process the rows stay dicts; the store prepares them itself.
            return decode(*args, **kwargs)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, functools.partial(
                decode, *args, prepare_rows=self._prepare_rows, **kwargs))
        except BrokenProcessPool:
            # A worker died (killed, out of memory): every request it held lands here. Start
            # a new pool once, and decode this request here rather than fail it.
            if self._pool is pool:
                log.warning("spanlog: an ingest worker process died; starting new ones")
                self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            return decode(*args, **kwargs)

    def pids(self) -> list[int]:
        """The worker processes' ids (empty without workers)."""
        pool = self._pool
        # The executor keeps its processes in a private dict; nothing public lists them.
        processes = getattr(pool, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        """Stop the worker processes (requests still decoding there fail)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
