"""What a span costs the SDK in CPU instructions, counted by valgrind: immune to machine load.

``bench/overhead.py`` times the same work in CPU seconds, which move by tens of percent on a
shared machine. This benchmark runs the workload under ``valgrind --tool=callgrind``, which
counts the instructions the process executes (the program runs 20-50 times slower, the count
does not depend on what else the machine does), so that two checkouts can be compared to
a percent on any machine:

    python3 bench/instructions.py [--shapes flat,nested] [--calls 2500]
                                  [--sdks spanlog,otel-otlp,otel-spanlog] [SRC ...]

Each ``SRC`` is a checkout (its ``src`` goes on ``PYTHONPATH``; default: this one). The
workload is ``bench/overhead.py``'s, with its setup of each of ``--sdks`` (default spanlog;
``otel-otlp`` is OpenTelemetry's ``BatchSpanProcessor`` with its OTLP exporter,
``otel-spanlog`` the same spans through ``spanlog.otel.SpanProcessor``): ``flat`` is one
traced call per span, ``nested`` a traced call with three traced children. Each figure is
the difference between a run of ``--calls`` calls and one of a fifth as many, divided by the
spans in between, so start-up and imports cancel out:

- ``caller``: the main thread's instructions in a run that stops (``os._exit``) right after
  the calls, before any delivery (``SPANLOG_FLUSH_LINGER`` is set to 30 s so that spanlog's
  flush thread does not start first; a batch processor's own thread is not counted): what
  creating the spans costs the application's thread;
- ``delivery``: every thread of the same run followed by the SDK's flush to a local
  collector, minus the caller figure: merging, encoding, compressing and sending, whichever
  thread does it.

With ``--loop``, one trace first ends in ``asyncio.run``, as in an async application: from
then on delivery keeps an event loop responsive (it counts each row's text to find the
rows it must encode a piece at a time, and gives way between pieces).

The collector (``python -m spanlog.server``, a temporary SQLite file, a free loopback port)
runs natively in its own process and is not counted. Needs ``valgrind`` (Debian package
``valgrind``). Not a pass/fail test: it prints what it measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import _callgrind
from collector import start_collector, stop_collector

HERE = os.path.dirname(os.path.abspath(__file__))

WORKLOAD = r'''
import os, sys, uuid

url, calls, shape, sdk = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path.insert(0, sys.argv[5])  # bench/
import overhead

setup = {"spanlog": overhead.setup_spanlog, "otel-otlp": overhead.setup_otel_otlp,
         "otel-spanlog": overhead.setup_otel_spanlog}[sdk]
traced, flush, stats = setup(url, "instructions-" + uuid.uuid4().hex[:8])
overhead.leaf_fn = traced(overhead.leaf)
top = overhead.leaf_fn if shape == "flat" else traced(overhead.root)
if os.environ.get("SPANLOG_BENCH_LOOP"):  # as in an async application: a trace on a loop
    import asyncio

    async def on_a_loop():
        top({"x": 0, "name": "on a loop"})

    asyncio.run(on_a_loop())
top({"x": 0, "name": "warm-up"})  # the first span and delivery: loads what loads lazily
flush()
for i in range(calls):
    top({"x": i, "name": "item"})
if os.environ.get("SPANLOG_BENCH_NO_FLUSH"):
    os._exit(0)
if not flush():
    sys.exit(f"flush failed: {stats()}")
'''


SDKS = ("spanlog", "otel-otlp", "otel-spanlog")


def instructions(src: str, url: str, calls: int, shape: str, sdk: str, flush: bool,
                 loop: bool = False) -> int:
    """Instructions one run of the workload executed: with ``flush`` every thread of the
    process, else its main thread."""
    with tempfile.TemporaryDirectory(prefix="spanlog-instructions-") as tmp:
        script = os.path.join(tmp, "workload.py")
        with open(script, "w") as fh:
            fh.write(WORKLOAD)
        env = dict(os.environ, PYTHONPATH=os.path.join(src, "src"), SPANLOG_FLUSH_LINGER="30",
                   PYTHONHASHSEED="0")  # the same dict layouts in every run
        if not flush:
            env["SPANLOG_BENCH_NO_FLUSH"] = "1"
        if loop:
            env["SPANLOG_BENCH_LOOP"] = "1"
        run = subprocess.run(_callgrind.command(tmp, script, url, str(calls), shape, sdk,
                                                HERE), env=env,
                             capture_output=True, text=True, timeout=3600, check=False)
        if run.returncode:
            raise RuntimeError(f"{src} {sdk} {shape} {calls}: exit {run.returncode}\n"
                               f"{run.stderr[-2000:]}")
        return _callgrind.total(tmp, src) if flush else _callgrind.main_thread(tmp, src)


def measure(src: str, url: str, calls: int, shape: str, sdk: str,
            loop: bool) -> dict[str, Any]:
    few = max(1, calls // 5)
    spans = (calls - few) * (1 if shape == "flat" else 4)
    caller = (instructions(src, url, calls, shape, sdk, False, loop)
              - instructions(src, url, few, shape, sdk, False, loop)) / spans
    total = (instructions(src, url, calls, shape, sdk, True, loop)
             - instructions(src, url, few, shape, sdk, True, loop)) / spans
    return {"src": src, "shape": shape, "sdk": sdk, "caller": round(caller),
            "delivery": round(total - caller), "total": round(total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="flat,nested")
    parser.add_argument("--calls", type=int, default=2500)
    parser.add_argument("--sdks", default="spanlog", help=f"of {', '.join(SDKS)}")
    parser.add_argument("--loop", action="store_true",
                        help="end one trace in asyncio.run first, as an async application "
                             "does: delivery then keeps an event loop responsive")
    parser.add_argument("src", nargs="*", default=[os.path.dirname(HERE)],
                        help="checkouts to compare (default: this one)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: install it (Debian: apt-get install valgrind)")
    shapes = [s for s in args.shapes.split(",") if s]
    for shape in shapes:
        if shape not in ("flat", "nested"):
            parser.error(f"unknown shape {shape!r}; known: flat, nested")
    sdks = [s for s in args.sdks.split(",") if s]
    for sdk in sdks:
        if sdk not in SDKS:
            parser.error(f"unknown SDK {sdk!r}; known: {', '.join(SDKS)}")
    if args.calls < 5:
        parser.error("--calls: at least 5")
    print(f"instructions per span (callgrind), {args.calls} calls minus {args.calls // 5}"
          f"{', after a trace on an event loop' if args.loop else ''}; caller = creating the "
          "spans, delivery = merging, encoding, compressing, sending",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="spanlog-instructions-db-") as tmp:
        proc, url = start_collector(os.path.join(tmp, "bench.sqlite3"))
        try:
            for shape in shapes:
                for sdk in sdks:
                    for src in args.src:
                        r = measure(src, url, args.calls, shape, sdk, args.loop)
                        print(f"  {shape:6} {sdk:12} {src:30} caller {r['caller']:>8,}  "
                              f"delivery {r['delivery']:>8,}  total {r['total']:>8,}",
                              flush=True)
        finally:
            stop_collector(proc)


if __name__ == "__main__":
    main()
