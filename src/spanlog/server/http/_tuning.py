"""Tuning the interpreter of a process that only serves the collector: ``spanlog serve``
(:func:`tune_process`) and its ingest workers (``_workers.py``), which use the same garbage
collector thresholds."""

from __future__ import annotations

import gc
import sys

# Garbage collector thresholds for a process that only serves the collector (see tune_process).
GC_THRESHOLDS = (200_000, 20, 100)
# How long a thread waiting for the GIL lets the running one go on (Python's default: 5 ms).
SWITCH_INTERVAL_SECONDS = 0.0005


def tune_process() -> None:
    """Tune the interpreter of a dedicated collector process (``spanlog serve``) for ingest.

    - Garbage collection: decoding a request allocates about a hundred containers per row,
      so with Python's default thresholds (700, 10, 10) the cyclic collector runs every few
      rows and keeps re-walking the batches in flight: measured at ~40% of ingest CPU. Rows
      hold no reference cycles; what does (aiohttp internals) is still collected, in bigger,
      rarer passes. The first threshold counts allocations net of frees, and rows are freed
      once written, so at 200,000 a pass is rare: the benchmark's 200,000 rows (8 requests
      of 500 in flight) took 1 collection and 0.02 s of GC, against 65-74 and 1.4-1.9 s at
      50,000. ``gc.freeze`` moves the objects of startup out of every future pass.
    - GIL hand-over: the SQLite writer thread gives the GIL up during every SQLite step and
      must win it back from the event loop, which parses the next requests meanwhile; with
      the default 5 ms interval the writer (the ingest bottleneck) spent about half its time
      waiting. A shorter interval hands it back sooner, at the cost of a few more switches.

    Not applied to ``_runner.BackgroundCollector``, which lives in someone else's process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
