"""How long spanlog stalls the event loop under Pyodide: the gaps of a 1 ms ticker in real
Pyodide under Node while spanlog delivers to a real collector.

Under Pyodide there are no threads: spanlog's background delivery is a task on the asyncio
loop (``Flusher._kick_loop_task`` in src/spanlog/_flush.py), which runs the same plan
(src/spanlog/_delivery.py: merge, encode, gzip, POST) through ``run_async`` and sends with
``FetchTransport`` (src/spanlog/_fetch_transport.py, JS ``fetch``). Pyodide's asyncio loop
(``pyodide.webloop``) has no loop of its own: every callback and task step is a JS task
(``setTimeout``, or an immediate callback for a zero delay) on the one JS thread. So whatever
spanlog runs between two ``await``\\s holds that thread: no JS callback, no other request, no
I/O completion runs meanwhile.

Method. Each measurement is a fresh Node process (``bench/pyodide_loop_gap.mjs``) that loads
the npm ``pyodide`` that tests/runtimes/cloudflare installs (the version workerd uses; this
script runs ``npm ci`` there, as tests/runtimes/runtimes_setup.py does, if it is missing),
copies the ``spanlog`` package this interpreter imports into Pyodide's file system, compiles
it to bytecode there (``--source``: not), imports it and calls ``spanlog.init_logger(...)``
(defaults: ``async_flush=True``, so delivery is the loop task). Node's ``fetch`` is warmed
by one request first: Node loads it (undici) on its first call, ~35 ms on the calling thread,
which would land in the first flush's step although it is Node's cost, not spanlog's (workerd's
``fetch`` is built in; ``--cold-fetch`` leaves it cold). Then, as bench/loop_gap.py does:

1. baseline: the ticker, spanlog initialized but idle, for the phase's window; the Python
   half runs an ``await asyncio.sleep(0.001)`` loop meanwhile, so that the baseline has
   Python loop steps too (``base step``: how long a step that does nothing appears to take
   here, the floor of the step figures);
2. the phase: the ticker again, same window (longer if the workload needs it), while the
   workload runs and then waits, bounded, until ``logger.stats()`` says every row was
   acknowledged (or refused: ``sent + failed``), polled every 2 ms.

The ticker is a JS ``setTimeout(tick, 1)`` chain in the same Node thread, recording
``performance.now()``: not an ``asyncio.sleep(0.001)`` ticker in Python. Both are timers on
the same JS event loop (the webloop's ``call_later`` is a ``setTimeout``), so they see the
same stalls; the JS one costs no Python per tick (nothing of the ticker lands in the Python
step figures), and what it measures is exactly what a Worker cares about: how long any other
JS callback (another request, a fetch completing) had to wait. Node clamps a 1 ms timeout to
about 1.1 ms, so an idle gap is ~1.1 ms, not 1.0.

Next to the gaps, the Python half wraps ``asyncio.Handle._run`` (every webloop callback and
task step goes through it) and reports the longest step and what ran in it: that is
spanlog's own code holding the thread (every Python step of the workload is spanlog's or the
workload's few calls), free of what Node does around it. On a loaded machine a step's wall
time mostly says how long the operating system ran something else, so each step is also
timed in CPU: Node 20 has no per-thread CPU clock, so this is the smaller of the step's wall
time and Node's process CPU time (``process.cpuUsage()``, which also counts V8's helper
threads: garbage collection, compiling hot WebAssembly), an upper bound of what the step
cost the JS thread. The goal is judged on it (``step cpu``), as bench/loop_gap.py judges on
its step CPU time; the gaps (``caused max`` = max gap - baseline median) are the wall-clock
view, the machine's noise and JS work included (Node sending the body).

The Python half also times the collections of Python's garbage collector (``gc.callbacks``),
which run inside whatever step allocates: printed below the table with the longest steps.

Phases (traces of 10 spans opened with ``async with logger.start_span``, ~1 KB rows):

- ``first``: the very first trace of the process: nothing of spanlog's delivery path has run
  (the failed thread start and its one warning, the fetch transport's import, and every
  code path of the delivery's first run; Pyodide itself has ``json``, ``zlib`` and
  ``logging`` imported already);
- ``steady``: 200 traces, one every ~5 ms;
- ``big``: one trace whose root has a 5 MB string (random words) in ``input``.

``steady`` and ``big`` first deliver one warm-up trace, before the baseline. ``--profile``
also times pieces of the delivery inside Pyodide (``merge_pieces``, ``Delivery._prepare``,
``encode_row`` or ``encode_json`` and ``_serialize._encode`` (a row, a slice), ``_body``,
gzip, ``to_js``) and prints their calls, longest and total times (CPU as above, and wall);
those wrappers add a little to every step, so read the steps of a run without it.

The collector (``python -m spanlog.server --workers 0``, a temporary SQLite file, a free
loopback port) runs in its own process; before each run the driver waits (bounded) until it
is idle, and afterwards counts the rows it stored. Columns, in milliseconds:

- ``max``/``p99``: the phase's longest and 99th-percentile gap; ``base max``/``base p99``:
  the idle ticker's (the machine's noise); ``caused max`` = max - the baseline's median gap;
- ``>2ms``: gaps over the baseline median by more than 2 ms; ``at``: when the worst gap began,
  in ms after the workload started (``*``: outside the workload and its delivery);
- ``step cpu``/``step wall``: the phase's longest Python loop step in CPU (the goal's
  figure, see above) and the longest in wall time; ``base step``: the baseline's longest
  step in CPU;
- ``rows``: stored by the collector / logged, the warm-up trace included (``!``: not all
  acknowledged within ``--wait``, or refused).

Caveats: Node is not workerd (V8 both, but the platform's fetch, its scheduling and its CPU
limits differ); a Workers isolate may have its spanlog imported in a memory snapshot rather
than compiled at the first trace. Pyodide runs Python several times slower than CPython, so
the same slice of work costs more here. Numbers move with machine load: run it more than
once. Not a pass/fail test: it prints what it measured.

    PYTHONPATH=src python3 bench/pyodide_loop_gap.py [--repeat 2] [--phases first,steady,big]
                           [--big-mb 5] [--profile] [--source] [--cold-fetch]
                           [--json results.json]
"""

# This file is also imported inside Pyodide (by pyodide_loop_gap.mjs) for its Pyodide half:
# at the top level it imports only what an application would (asyncio, os, time), so that
# whatever spanlog imports lazily is still cold when a phase starts; the driver's imports
# live inside its functions.

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

PHASES = ("first", "steady", "big")
WINDOWS = {"first": 1.0, "steady": 2.5, "big": 4.0}  # seconds; the baseline runs as long
GOALS_MS = {"first": 2.0, "steady": 2.0, "big": 5.0}
LEAD_MS = 20  # the ticker runs this long before the workload starts
SPANS = 10
STEADY_TRACES = 200
STEADY_EVERY = 0.005
POLL = 0.002

QUERY = ("How do I change the shipping address on an order that has already been confirmed "
         "but not yet dispatched from the warehouse, and will it delay the delivery?")
ANSWER = ("You can change the address from the order page until the parcel is handed to the "
          "carrier. Open Orders, choose the order, select Edit address and confirm; the "
          "delivery date stays the same unless the new address is in another region.")


# --- the Pyodide half: called by pyodide_loop_gap.mjs -------------------------------------


class Steps:
    """The loop's callback and task steps while recording: the longest in CPU time (the
    smaller of Node's process CPU and wall time: an upper bound of the JS thread's CPU) and in
    wall time, and the few longest (in CPU) with what ran in them."""

    def __init__(self) -> None:
        self.on = False
        self.longest: list[tuple[float, float, str]] = []
        self.wall = 0.0
        self.count = 0
        self.gc: list[tuple[float, int]] = []  # Python's collections: wall seconds, generation
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc.append((time.perf_counter() - self._gc_started, info["generation"]))

    def install(self) -> None:
        run = asyncio.events.Handle._run
        steps = self
        clock, cpu_clock = time.perf_counter, _cpu

        def timed(handle: asyncio.events.Handle) -> None:
            if not steps.on:
                run(handle)
                return
            wall, cpu = clock(), cpu_clock()
            run(handle)
            wall, cpu = clock() - wall, cpu_clock() - cpu
            cpu = min(cpu, wall)  # process CPU counts V8's helper threads too
            steps.count += 1
            if wall > steps.wall:
                steps.wall = wall
            longest = steps.longest
            if len(longest) < 5 or cpu > longest[-1][0]:
                longest.append((cpu, wall, _what(handle)))
                longest.sort(key=lambda item: -item[0])
                del longest[5:]

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        import gc

        gc.callbacks.append(self._on_gc)

    def start(self) -> None:
        self.longest = []
        self.wall = 0.0
        self.count = 0
        self.gc = []
        self.on = True

    def stop(self) -> dict[str, Any]:
        self.on = False
        return {"step_cpu_ms": self.longest[0][0] * 1000 if self.longest else 0.0,
                "step_wall_ms": self.wall * 1000, "steps": self.count,
                "top_steps": [[round(cpu * 1000, 2), round(wall * 1000, 2), what]
                              for cpu, wall, what in self.longest],
                "gc": [len(self.gc), [[round(wall * 1000, 2), generation] for wall, generation
                                      in sorted(self.gc)[-3:][::-1]]]}


def _what(handle: asyncio.events.Handle) -> str:
    """What a step ran: the coroutine of its task, else the callback."""
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    get_coro = getattr(task, "get_coro", None)
    if get_coro is not None:
        coro = get_coro()
        return f"task {getattr(coro, '__qualname__', repr(coro))}"
    return repr(handle)[:120]


def _no_cpu_clock() -> float:
    return 0.0


_cpu: Any = _no_cpu_clock  # Node's process CPU time in seconds, given by pyodide_setup
STEPS = Steps()
_state: dict[str, Any] = {}
_pieces: dict[str, list[float]] = {}


async def trace(logger: Any, root_input: Any = QUERY) -> None:
    """One trace of SPANS spans, every span with ``async with``."""
    async with logger.start_span(name="request", type="task") as root:
        for i in range(SPANS - 1):
            async with logger.start_span(name=f"step-{i}", type="function") as span:
                span.log(input={"i": i, "query": QUERY}, output={"text": ANSWER},
                         metadata={"n": i, "user_id": "user-000042", "env": "production"})
        root.log(input=root_input, output=ANSWER, metadata={"route": "/chat"})


def big_text(size: int) -> str:
    """``size`` characters of words in random order (as bench/loop_gap.py makes them)."""
    words = ("the order refund shipping account password invoice delivery late damaged "
             "replace cancel subscription upgrade plan billing card charge twice address "
             "change email login error page checkout discount code warranty return label "
             "tracking number customer support agent policy days within eligible").split()
    count = len(words)
    text = " ".join([words[b % count] for b in os.urandom(size // 5 + 16)])
    while len(text) < size:
        text += text
    return text[:size]


def _timed(name: str, function: Any) -> Any:
    clock, cpu_clock = time.perf_counter, _cpu

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, cpu = clock(), cpu_clock()
        try:
            return function(*args, **kwargs)
        finally:
            wall = clock() - start
            _pieces.setdefault(name, []).append((min(cpu_clock() - cpu, wall), wall))

    return wrapper


def _install_profile() -> None:
    """Time pieces of the delivery (``--profile``): what a long step is made of."""
    import zlib

    import pyodide.ffi  # type: ignore[import-not-found]  # Pyodide only

    from spanlog import _delivery, _serialize

    # Whichever of these the measured checkout has (encode_row: before the plan yielded
    # between slices; encode_json and _serialize._encode, per row and per slice after).
    for name in ("merge_pieces", "encode_row", "encode_json", "_body"):
        if hasattr(_delivery, name):
            setattr(_delivery, name, _timed(name, getattr(_delivery, name)))
    _serialize._encode = _timed("_serialize._encode", _serialize._encode)
    _delivery.Delivery._prepare = _timed(  # type: ignore[method-assign]
        "Delivery._prepare", _delivery.Delivery._prepare)
    pyodide.ffi.to_js = _timed("to_js", pyodide.ffi.to_js)

    class TimedPacker:
        def __init__(self, packer: Any) -> None:
            self.compress = _timed("gzip compress", packer.compress)
            self.flush = _timed("gzip flush", packer.flush)

    class TimedZlib:
        DEFLATED = zlib.DEFLATED

        @staticmethod
        def compressobj(*args: Any) -> TimedPacker:
            return TimedPacker(zlib.compressobj(*args))

    _delivery.zlib = TimedZlib  # type: ignore[assignment]


def pyodide_setup(url: str, project: str, big_bytes: int, profile: bool,
                  cpu_seconds: Any) -> None:
    """Import spanlog and make its logger, before any measurement; ``cpu_seconds``: a JS
    function giving Node's process CPU time in seconds."""
    global _cpu
    import spanlog

    _cpu = cpu_seconds
    _state["logger"] = spanlog.init_logger(project=project, api_url=url)
    _state["text"] = big_text(big_bytes) if big_bytes else ""
    STEPS.install()
    if profile:
        _install_profile()


async def pyodide_phase(name: str, bound: float, seconds: float) -> dict[str, Any]:
    """Run one workload and wait (at most ``bound`` s) until its rows were acknowledged;
    ``idle``: no workload, an ``asyncio.sleep(0.001)`` loop for ``seconds``."""
    logger = _state["logger"]
    before = logger.stats()
    _pieces.clear()
    STEPS.start()
    rows = 0
    if name == "idle":
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await asyncio.sleep(0.001)
    elif name == "steady":
        for _ in range(STEADY_TRACES):
            await trace(logger)
            await asyncio.sleep(STEADY_EVERY)
        rows = SPANS * STEADY_TRACES
    elif name == "big":
        await trace(logger, root_input=_state["text"])
        rows = SPANS
    elif name in ("first", "warm"):
        await trace(logger)
        rows = SPANS
    goal = before["sent"] + before["failed"] + rows
    deadline = time.monotonic() + bound
    while True:
        stats = logger.stats()
        if stats["sent"] + stats["failed"] >= goal or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL)
    steps = STEPS.stop()
    return {"rows": rows, "sent": stats["sent"] - before["sent"],
            "failed": stats["failed"] - before["failed"],
            "last_error": str(stats.get("last_error") or "")[:300],
            "pieces": {piece: [len(times),
                               [round(t[0] * 1000, 2) for t in sorted(times)[-3:][::-1]],
                               round(sum(t[0] for t in times) * 1000, 2),
                               round(sum(t[1] for t in times) * 1000, 2)]
                       for piece, times in _pieces.items()},
            **steps}


# --- the driver (CPython) ------------------------------------------------------------------


def stats_of(gaps: list[float]) -> dict[str, Any]:
    ordered = sorted(gaps)
    n = len(ordered)
    return {"ticks": n, "max_ms": ordered[-1], "p99_ms": ordered[min(n - 1, int(0.99 * n))],
            "median_ms": ordered[n // 2], "top_ms": [round(g, 2) for g in ordered[-5:][::-1]]}


def run_node(phase: str, url: str, pyodide_dir: str, spanlog_dir: str, bound: float,
             big_bytes: int, profile: bool, compile_: bool, warm_fetch: bool,
             workdir: str) -> dict[str, Any]:
    import json
    import subprocess
    import uuid

    from loop_gap import stored

    project = f"pyodide-gap-{phase}-{uuid.uuid4().hex[:8]}"
    here = os.path.dirname(os.path.abspath(__file__))
    config = {"pyodideDir": pyodide_dir, "spanlogPackage": spanlog_dir,
              "benchFile": os.path.abspath(__file__), "url": url, "project": project,
              "phase": phase, "seconds": WINDOWS[phase], "bound": bound, "leadMs": LEAD_MS,
              "bigBytes": big_bytes if phase == "big" else 0, "profile": profile,
              "compile": compile_, "warmFetch": warm_fetch}
    path = os.path.join(workdir, f"{project}.json")
    with open(path, "w") as fh:
        json.dump(config, fh)
    out = subprocess.run(["node", os.path.join(here, "pyodide_loop_gap.mjs"), path],
                         capture_output=True, text=True, check=False,
                         timeout=WINDOWS[phase] * 2 + bound * 2 + 180)
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        raise RuntimeError(f"{phase}: node exited {out.returncode}:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["stored"] = stored(url, project)
    result["stderr"] = out.stderr.strip()[-500:]
    return result


HEADER = (f"{'phase':<7} {'run':>3} {'max':>7} {'p99':>6} {'caused':>7} {'base':>6} "
          f"{'base':>6} {'>2ms':>5} {'at':>8} {'step':>6} {'step':>6} {'base':>6} {'rows':>9} "
          f"{'goal':>11}")
HEADER2 = (f"{'':<7} {'':>3} {'gap ms':>7} {'gap ms':>6} {'max':>7} {'max':>6} {'p99':>6} "
           f"{'':>5} {'ms':>8} {'cpu':>6} {'wall':>6} {'step':>6} {'stored':>9} "
           f"{'(step cpu)':>11}")


def row_of(phase: str, run: int, result: dict[str, Any]) -> str:
    base, measured = stats_of(result["base"]["gaps"]), stats_of(result["phase"]["gaps"])
    gaps, ends = result["phase"]["gaps"], result["phase"]["ends"]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    over = sum(1 for gap in gaps if gap > base["median_ms"] + 2.0)
    step = result["phase"]["step_cpu_ms"]
    goal = GOALS_MS[phase]
    warm = result["warm"]["rows"] if result.get("warm") else 0
    rows = f"{result['stored']}/{warm + result['phase']['rows']}"
    if result["phase"]["sent"] < result["phase"]["rows"]:
        rows += "!"
    at = f"{ends[worst] - gaps[worst]:.1f}"
    if not -LEAD_MS <= ends[worst] - gaps[worst] <= result["phase"]["workMs"]:
        at += "*"
    return (f"{phase:<7} {run:>3} {measured['max_ms']:7.2f} {measured['p99_ms']:6.2f} "
            f"{measured['max_ms'] - base['median_ms']:7.2f} {base['max_ms']:6.2f} "
            f"{base['p99_ms']:6.2f} {over:>5} {at:>8} {step:6.2f} "
            f"{result['phase']['step_wall_ms']:6.2f} {result['base']['step_cpu_ms']:6.2f} "
            f"{rows:>9} {f'<={goal:g}: ' + ('ok' if step <= goal else 'OVER'):>11}")


def main() -> None:
    import argparse
    import json
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from _collector_process import start_collector, stop_collector
    from loop_gap import wait_quiet

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of every phase")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--wait", type=float, default=30.0,
                        help="seconds a phase waits at most for its rows to be delivered")
    parser.add_argument("--big-mb", type=float, default=5.0, help="the big phase's string")
    parser.add_argument("--profile", action="store_true",
                        help="also time pieces of the delivery inside Pyodide")
    parser.add_argument("--source", action="store_true",
                        help="do not compile spanlog to bytecode in Pyodide first")
    parser.add_argument("--cold-fetch", action="store_true",
                        help="do not warm Node's fetch before measuring (its first call loads "
                        "undici, ~35 ms, inside the first flush's step)")
    parser.add_argument("--json", help="also write every run's figures to this file")
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    for name in phases:
        if name not in PHASES:
            parser.error(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
    if shutil.which("node") is None:
        sys.exit("node is not on PATH (Node.js 20 runs Pyodide here)")
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests" / "runtimes"))
    from runtimes_setup import pyodide_package  # npm ci from the lockfile if missing

    pyodide_dir = str(pyodide_package())
    import spanlog

    spanlog_dir = os.path.dirname(spanlog.__file__)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"spanlog {spanlog.__version__} from {spanlog_dir}; node {node}; pyodide from "
          f"{pyodide_dir}; {os.cpu_count()} cores; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("ticker: a JS setTimeout(tick, 1) chain on Pyodide's thread; windows (s): "
          + ", ".join(f"{p} {WINDOWS[p]:g}" for p in phases)
          + f"; traces of {SPANS} spans; big input {args.big_mb:g} MB; spanlog "
          + ("from source" if args.source else "compiled to bytecode in Pyodide")
          + ("; Node's fetch cold" if args.cold_fetch else "; Node's fetch warmed first")
          + ("; --profile (pieces timed: steps read a little long)" if args.profile else ""))
    print("goal: longest loop gap caused by spanlog <= 2 ms for normal traces including the "
          "very first; <= 5 ms while a 5 MB row is being sent")
    print("caused max = max gap - baseline median gap; step cpu / wall = the phase's longest "
          "Python loop step in CPU (min of Node's process CPU and wall: the goal's figure, see "
          "the docstring) / in wall time; base step = the idle baseline's longest step in CPU "
          "(a Python asyncio.sleep(0.001) loop: the floor); at = when the worst gap began, ms "
          "after the workload started ('*': outside the workload and its delivery); '!' after "
          "rows: not all acknowledged within --wait, or refused\n")
    print(HEADER)
    print(HEADER2, flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="spanlog-pyodide-gap-") as tmp:
        proc, url, log = start_collector(tmp, "--workers", "0")
        try:
            for run in range(1, args.repeat + 1):
                for phase in phases:
                    wait_quiet(proc.pid)
                    try:
                        result = run_node(phase, url, pyodide_dir, spanlog_dir, args.wait,
                                          int(args.big_mb * 1024 * 1024), args.profile,
                                          not args.source, not args.cold_fetch, tmp)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"{phase} run {run} failed: {exc}", file=sys.stderr)
                        continue
                    result.update(phase_name=phase, run=run)
                    results.append(result)
                    print(row_of(phase, run, result), flush=True)
                    if result["phase"]["last_error"]:
                        print(f"    last error: {result['phase']['last_error']}")
        finally:
            stop_collector(proc, log)
    print("\nper run: worst five gaps (ms) of the phase / of the baseline; the longest Python "
          "steps (ms cpu / wall, what ran)"
          + ("; pieces: calls, longest three (ms cpu), total ms cpu / wall" if args.profile
             else ""))
    for result in results:
        phase = result["phase"]
        print(f"  {result['phase_name']:<7} {result['run']:>3}: "
              f"{stats_of(phase['gaps'])['top_ms']} / {stats_of(result['base']['gaps'])['top_ms']}"
              f" (workload {phase['workMs']:.0f} ms, Pyodide loaded in "
              f"{result['loadMs']:.0f} ms)")
        for cpu, wall, what in phase["top_steps"][:3]:
            print(f"      {cpu:7.2f} / {wall:7.2f}  {what}")
        collections, longest = phase["gc"]
        print(f"      Python's garbage collector: {collections} collections, longest (ms wall, "
              f"generation): {longest}")
        for piece, (calls, longest, cpu, wall) in phase["pieces"].items():
            print(f"      {piece:<18} {calls:>5} calls, longest {longest}, total {cpu:.2f} / "
                  f"{wall:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
