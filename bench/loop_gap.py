"""How long spanlog stalls an asyncio event loop: the longest and p99 gap of a 1 ms ticker.

A ticker task (``await asyncio.sleep(0.001)`` in a loop, recording ``time.perf_counter()``
between wake-ups) runs on the event loop while a workload logs through spanlog; a gap much
longer than a tick is a stretch in which nothing else on the loop could run. Each
measurement runs in a fresh interpreter (a subprocess) that imports spanlog and calls
``spanlog.init_logger(...)`` at startup, then inside ``asyncio.run``:

1. baseline: the same ticker with spanlog initialized but idle, for the phase's window;
2. the phase: the ticker again, same window (longer only if the workload needs it), while
   the workload runs and then waits, bounded, until ``logger.stats()["sent"]`` says the
   collector acknowledged every row (polled every 2 ms, a few microseconds each).

Phases (traces of 10 spans opened with ``async with logger.start_span``, ~1 KB rows):

- ``first``: the very first trace of the process: nothing of spanlog's delivery path (the
  flush thread, the encoder, the connection) has run yet;
- ``steady``: 200 traces, one every ~5 ms;
- ``burst``: 4,000 rows: 400 traces back to back, yielding to the loop only between traces
  (as a server handling requests would), so what shows is the delivery of 4,000 rows at
  once rather than the caller's own loop;
- ``big``: one trace whose root has a 5 MB string (random words; gzip -1 keeps ~23%) in
  ``input``: gaps while it is encoded, compressed and sent.

``steady``, ``burst`` and ``big`` first deliver one warm-up trace before the baseline, so
they measure their own cost, not the first trace's (``--cold`` skips the warm-up). Each
phase runs in both modes: ``background`` (the default, ``async_flush=True``: delivery by a
flush thread) and ``sync`` (``async_flush=False``: the flush awaited at each trace end).

The collector (``python -m spanlog.server --workers 0``, a temporary SQLite file, a free
loopback port) runs in its own process so that its CPU does not share the worker's GIL; with
no ingest worker processes it keeps to about one core of a 2-core machine. Before each run
the driver waits (bounded) until the collector is idle, and afterwards checks that it stored
every row. Reported per run, in milliseconds:

- ``max``/``p99``: the phase's longest and 99th-percentile gap;
- ``caused max`` = max - the baseline's median tick (how much longer than a normal tick the
  worst stall was), ``caused p99`` = p99 - the baseline's p99;
- ``base max``/``base p99``: the idle ticker's own worst gaps, i.e. the machine's noise:
  a caused max below ``base max`` may be noise, not spanlog;
- ``>2ms``: gaps exceeding the baseline median by more than 2 ms; ``at``: when the worst gap
  began, in ms after the workload started (``*``: outside the workload and its delivery);
- ``step cpu``/``step wall``: the phase's longest loop step (one callback or task step, see
  :class:`Steps`) in the loop thread's CPU time and in wall time; ``base step``: the idle
  baseline's longest step in wall time.

Goal: the longest loop gap caused by spanlog <= 2 ms for normal traces, the very first
included (``first``, ``steady``, and here also ``burst``, which is 400 normal traces); <= 5 ms
while a 5 MB row is being sent (``big``).

Which figure shows what spanlog caused: on a small virtual machine the idle ticker alone
has gaps of several milliseconds (``base max``), so a gap cannot be pinned on spanlog. A
stall that spanlog causes is one of two things: its code running on the loop thread, or its
flush thread holding the GIL while the loop wants it. The first is the longest step in CPU
time (``step cpu``, which the verdict uses: every step of the workload is spanlog calls). The
second would move with the interpreter's switch interval: ``--switch-interval 0.0005``
against the default 0.005 shows whether it does. The gaps stay in the table as the
wall-clock view.

    PYTHONPATH=src python3 bench/loop_gap.py [--repeat 2] [--phases first,steady,burst,big]
                           [--modes background,sync] [--cold] [--switch-interval S]
                           [--json results.json]

It measures whichever ``spanlog`` is importable (``PYTHONPATH`` is passed on to the worker
and collector processes). That package is first compiled into its ``__pycache__`` (``python
-m compileall``, as ``pip install`` does) and ``PYTHONDONTWRITEBYTECODE`` is dropped for the
workers, so that a module spanlog imports lazily is not compiled from source inside a
phase. Numbers move with machine load: compare within one run, and run it more than once on
a shared machine. Not a pass/fail test: it prints what it measured.
"""

# The worker half of this file imports only what an application on an event loop would
# (asyncio, os, sys, time) before its measurements, so that whatever spanlog imports lazily
# is still cold when a phase starts; the driver's imports live inside its functions.

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _collector_process import compile_spanlog, start_collector, stop_collector
from collector import _tree_cpu_seconds as tree_cpu_seconds

PHASES = ("first", "steady", "burst", "big")
MODES = ("background", "sync")
# The phase windows in seconds (the baseline runs as long); a phase whose workload takes
# longer extends its window until the workload is done.
WINDOWS = {"first": 1.0, "steady": 2.5, "burst": 2.5, "big": 4.0}
GOALS_MS = {"first": 2.0, "steady": 2.0, "burst": 2.0, "big": 5.0}
TICK = 0.001
LEAD = 0.02  # the ticker runs this long before the workload starts
SPANS = 10
STEADY_TRACES = 200
STEADY_EVERY = 0.005
BURST_TRACES = 400
POLL = 0.002
SWITCH_VARIABLE = "SPANLOG_BENCH_SWITCH_INTERVAL"  # --switch-interval, passed to the workers

QUERY = ("How do I change the shipping address on an order that has already been confirmed "
         "but not yet dispatched from the warehouse, and will it delay the delivery?")
ANSWER = ("You can change the address from the order page until the parcel is handed to the "
          "carrier. Open Orders, choose the order, select Edit address and confirm; the "
          "delivery date stays the same unless the new address is in another region.")


# --- the worker: one measurement in a fresh interpreter -----------------------------------


class Steps:
    """The loop's callback steps while recording: the longest in wall time and in the loop
    thread's CPU time (``time.thread_time``).

    Every callback and task step of an asyncio loop runs through ``Handle._run``; timing it
    shows how long each stretch of code held the loop. Wall time includes the stretches in
    which the operating system ran something else; thread CPU time does not, so the longest
    step in CPU is what the code on the loop (here: the workload's spanlog calls) cost, free
    of the machine's scheduling noise.
    """

    def __init__(self) -> None:
        self.on = False
        self.wall = 0.0
        self.cpu = 0.0
        self.count = 0

    def install(self) -> None:
        run = asyncio.events.Handle._run
        steps = self
        clock, cpu_clock = time.perf_counter, time.thread_time

        def timed(handle: asyncio.events.Handle) -> None:
            if not steps.on:
                run(handle)
                return
            wall, cpu = clock(), cpu_clock()
            run(handle)
            wall, cpu = clock() - wall, cpu_clock() - cpu
            steps.count += 1
            if wall > steps.wall:
                steps.wall = wall
            if cpu > steps.cpu:
                steps.cpu = cpu

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def start(self) -> None:
        self.wall = self.cpu = 0.0
        self.count = 0
        self.on = True

    def stop(self) -> dict[str, Any]:
        self.on = False
        return {"step_wall_ms": self.wall * 1000, "step_cpu_ms": self.cpu * 1000,
                "steps": self.count}


STEPS = Steps()


async def trace(logger: Any, root_input: Any = QUERY) -> None:
    """One trace of SPANS spans, every span with ``async with``."""
    async with logger.start_span(name="request", type="task") as root:
        for i in range(SPANS - 1):
            async with logger.start_span(name=f"step-{i}", type="function") as span:
                span.log(input={"i": i, "query": QUERY}, output={"text": ANSWER},
                         metadata={"n": i, "user_id": "user-000042", "env": "production"})
        root.log(input=root_input, output=ANSWER, metadata={"route": "/chat"})


async def wait_sent(logger: Any, rows: int, bound: float) -> bool:
    """Poll the logger's counters until ``rows`` rows were acknowledged, at most ``bound`` s."""
    deadline = time.monotonic() + bound
    while logger.stats()["sent"] < rows:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return True


def big_text(size: int) -> str:
    """``size`` characters of words in random order (gzip -1 keeps about a quarter); random
    from ``os.urandom`` so that the worker imports nothing spanlog might import lazily."""
    words = ("the order refund shipping account password invoice delivery late damaged "
             "replace cancel subscription upgrade plan billing card charge twice address "
             "change email login error page checkout discount code warranty return label "
             "tracking number customer support agent policy days within eligible").split()
    count = len(words)
    text = " ".join([words[b % count] for b in os.urandom(size // 5 + 16)])
    while len(text) < size:
        text += text
    return text[:size]


async def window(seconds: float, workload: Callable[[], Awaitable[dict[str, Any]]] | None,
                 cap: float) -> dict[str, Any]:
    """Run the ticker for ``seconds`` (longer, up to ``seconds + cap``, while ``workload``
    runs); return its gaps and what the workload reported."""
    gaps: list[float] = []
    ends: list[float] = []
    finished = False
    started = time.perf_counter()

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            gaps.append(now - last)
            ends.append(now)
            last = now
            elapsed = now - started
            if (finished and elapsed >= seconds) or elapsed >= seconds + cap:
                return

    STEPS.start()
    task = asyncio.create_task(ticker())
    await asyncio.sleep(LEAD)
    work_start = time.perf_counter()
    result: dict[str, Any] = {}
    try:
        if workload is not None:
            result = await workload()
    finally:
        finished = True
        work_end = time.perf_counter()
        await task
    steps = STEPS.stop()
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return {"gaps": gaps, "seconds": time.perf_counter() - started,
            "work_seconds": work_end - work_start,
            "worst_at_ms": (ends[worst] - gaps[worst] - work_start) * 1000, **steps, **result}


def stats_of(gaps: list[float]) -> dict[str, Any]:
    ordered = sorted(gaps)
    n = len(ordered)
    return {"ticks": n, "max_ms": ordered[-1] * 1000,
            "p99_ms": ordered[min(n - 1, int(0.99 * n))] * 1000,
            "median_ms": ordered[n // 2] * 1000,
            "top_ms": [round(g * 1000, 2) for g in ordered[-5:][::-1]]}


def worker(phase: str, mode: str, url: str, project: str, seconds: float, cold: bool,
           bound: float, big_bytes: int) -> dict[str, Any]:
    """One phase in this (fresh) process; returns the ticker's figures."""
    import spanlog

    if os.environ.get(SWITCH_VARIABLE):
        sys.setswitchinterval(float(os.environ[SWITCH_VARIABLE]))
    logger = spanlog.init_logger(project=project, api_url=url,
                                 async_flush=(mode == "background"))
    text = big_text(big_bytes) if phase == "big" else ""
    expected = 0

    async def first() -> dict[str, Any]:
        await trace(logger)
        return {"delivered": await wait_sent(logger, expected, bound)}

    async def steady() -> dict[str, Any]:
        for _ in range(STEADY_TRACES):
            await trace(logger)
            await asyncio.sleep(STEADY_EVERY)
        return {"delivered": await wait_sent(logger, expected, bound)}

    async def burst() -> dict[str, Any]:
        for _ in range(BURST_TRACES):
            await trace(logger)
            await asyncio.sleep(0)
        return {"delivered": await wait_sent(logger, expected, bound)}

    async def big() -> dict[str, Any]:
        await trace(logger, root_input=text)
        return {"delivered": await wait_sent(logger, expected, bound)}

    workloads = {"first": (first, SPANS), "steady": (steady, SPANS * STEADY_TRACES),
                 "burst": (burst, SPANS * BURST_TRACES), "big": (big, SPANS)}

    async def main() -> dict[str, Any]:
        nonlocal expected
        warm = None
        if phase != "first" and not cold:
            await trace(logger)
            expected = SPANS
            warm = await wait_sent(logger, expected, bound)
        base = await window(seconds, None, 0.0)
        workload, rows = workloads[phase]
        expected += rows
        measured = await window(seconds, workload, bound + 30.0)
        return {"base": base, "phase": measured, "warm_delivered": warm}

    STEPS.install()
    out = asyncio.run(main())
    base, measured = out["base"], out["phase"]
    gaps = measured.pop("gaps")
    b, p = stats_of(base.pop("gaps")), stats_of(gaps)
    limit = (b["median_ms"] + 2.0) / 1000
    p["over_2ms"] = sum(1 for gap in gaps if gap > limit)
    return {"phase_name": phase, "mode": mode, "base": {**b, **base}, "phase": {**p, **measured},
            "warm_delivered": out["warm_delivered"], "rows": expected,
            "stats": logger.stats()}


# --- the driver ------------------------------------------------------------------------------


def wait_quiet(pid: int, bound: float = 15.0) -> None:
    """Wait (at most ``bound`` s) until the collector used < 20 ms of CPU in 250 ms, so that
    its work on the previous run's rows does not fall into the next baseline."""
    if not os.path.isdir("/proc"):
        return
    deadline = time.monotonic() + bound
    before = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)  # sampling interval of the collector's CPU time, bounded above
        now = tree_cpu_seconds(pid)
        if now - before < 0.02:
            return
        before = now


def stored(url: str, project: str) -> int:
    """How many rows the collector holds for ``project`` (fetch API, paged)."""
    import json
    import urllib.request

    def call(path: str, body: Any) -> Any:
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    pid = call("/v1/project", {"name": project})["id"]
    body: dict[str, Any] = {"limit": 1000}
    count = 0
    for _ in range(1000):  # bounded: 1,000 pages
        page = call(f"/v1/project_logs/{pid}/fetch", body)
        count += len(page["events"])
        if not page.get("cursor") or not page["events"]:
            break
        body["cursor"] = page["cursor"]
    return count


def run_worker(phase: str, mode: str, url: str, cold: bool, bound: float,
               big_bytes: int, switch_interval: float | None) -> dict[str, Any] | None:
    import json
    import subprocess
    import uuid

    project = f"gap-{phase}-{mode}-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, __file__, "--worker", phase, mode, url, project,
               str(WINDOWS[phase]), "1" if cold else "0", str(bound), str(big_bytes)]
    env = dict(os.environ)
    if switch_interval is not None:
        env[SWITCH_VARIABLE] = str(switch_interval)
    out = subprocess.run(command, capture_output=True, text=True, check=False, env=env,
                         timeout=WINDOWS[phase] * 2 + bound * 3 + 120)
    if out.returncode:
        print(f"{phase}/{mode} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["stored"] = stored(url, project)
    result["stderr"] = out.stderr.strip()[-500:]
    return result


HEADER = (f"{'phase':<7} {'mode':<10} {'run':>3} {'max':>7} {'p99':>6} {'caused':>7} "
          f"{'caused':>7} {'base':>6} {'base':>6} {'>2ms':>5} {'at':>8} {'step':>6} "
          f"{'step':>6} {'base':>6} {'rows':>11} {'goal':>12}")
HEADER2 = (f"{'':<7} {'':<10} {'':>3} {'gap ms':>7} {'gap ms':>6} {'max':>7} {'p99':>7} "
           f"{'max':>6} {'p99':>6} {'':>5} {'ms':>8} {'cpu':>6} {'wall':>6} {'step':>6} "
           f"{'stored':>11} {'(step cpu)':>12}")


def row_of(result: dict[str, Any], run: int) -> str:
    base, phase = result["base"], result["phase"]
    caused_max = phase["max_ms"] - base["median_ms"]
    caused_p99 = phase["p99_ms"] - base["p99_ms"]
    goal = GOALS_MS[result["phase_name"]]
    verdict = f"<={goal:g}: {'ok' if phase['step_cpu_ms'] <= goal else 'OVER'}"
    rows = f"{result['stored']}/{result['rows']}"
    at = f"{phase['worst_at_ms']:.1f}"
    if not -LEAD * 1000 <= phase["worst_at_ms"] <= phase["work_seconds"] * 1000 + 100:
        at += "*"
    if not phase.get("delivered"):
        rows += "!"
    return (f"{result['phase_name']:<7} {result['mode']:<10} {run:>3} {phase['max_ms']:7.2f} "
            f"{phase['p99_ms']:6.2f} {caused_max:7.2f} {caused_p99:7.2f} {base['max_ms']:6.2f} "
            f"{base['p99_ms']:6.2f} {phase['over_2ms']:>5} {at:>8} "
            f"{phase['step_cpu_ms']:6.2f} {phase['step_wall_ms']:6.2f} "
            f"{base['step_wall_ms']:6.2f} {rows:>11} {verdict:>12}")


def main() -> None:
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of every phase and mode")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--cold", action="store_true",
                        help="no warm-up trace before steady, burst and big")
    parser.add_argument("--wait", type=float, default=30.0,
                        help="seconds a phase waits at most for its rows to be delivered")
    parser.add_argument("--big-mb", type=float, default=5.0, help="the big phase's string")
    parser.add_argument("--collector-workers", type=int, default=0,
                        help="the collector's --workers (default 0: decoding on its own loop, "
                        "so that it keeps to about one of the machine's cores)")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="the workers' sys.setswitchinterval (default: Python's 5 ms); "
                        "if the gaps do not move with it, they are not the flush thread "
                        "holding the GIL")
    parser.add_argument("--json", help="also write every run's figures to this file")
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    for name in phases:
        if name not in PHASES:
            parser.error(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
    for name in modes:
        if name not in MODES:
            parser.error(f"unknown mode {name!r}; known: {', '.join(MODES)}")
    big_bytes = int(args.big_mb * 1024 * 1024)

    import spanlog

    print(f"spanlog {spanlog.__version__} from {os.path.dirname(spanlog.__file__)}; "
          f"python {sys.version.split()[0]}; {os.cpu_count()} cores; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(compile_spanlog(os.path.dirname(spanlog.__file__)))
    print(f"ticker: asyncio.sleep({TICK}) in a loop; windows (s): "
          + ", ".join(f"{p} {WINDOWS[p]:g}" for p in phases)
          + f"; traces of {SPANS} spans; big input {args.big_mb:g} MB"
          + ("; cold (no warm-up)" if args.cold else "")
          + (f"; switch interval {args.switch_interval:g} s" if args.switch_interval else ""))
    print("goal: longest loop gap caused by spanlog <= 2 ms for normal traces including the "
          "very first; <= 5 ms while a 5 MB row is being sent")
    print("caused max = max gap - baseline median tick; caused p99 = p99 - baseline p99; "
          "step cpu/wall = the longest loop step (callback or task step) of the phase in the "
          "loop thread's CPU time / in wall time, base step = the idle baseline's longest "
          "step in wall time; the goal is judged on step cpu (see the docstring); "
          "'!' after rows: not all acknowledged within --wait; "
          "'*' after at: the worst gap fell outside the workload (noise, or spanlog's "
          "clean-up)\n")
    print(HEADER)
    print(HEADER2, flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="spanlog-loop-gap-") as tmp:
        proc, url, log = start_collector(tmp, "--workers", str(args.collector_workers))
        try:
            for run in range(1, args.repeat + 1):
                for phase in phases:
                    for mode in modes:
                        wait_quiet(proc.pid)
                        result = run_worker(phase, mode, url, args.cold, args.wait, big_bytes,
                                            args.switch_interval)
                        if result is None:
                            continue
                        result["run"] = run
                        results.append(result)
                        print(row_of(result, run), flush=True)
                        if result["stderr"]:
                            print(f"    worker stderr: {result['stderr']!r}")
        finally:
            stop_collector(proc, log)
    print("\nworst five gaps (ms) per run:")
    for result in results:
        print(f"  {result['phase_name']:<7} {result['mode']:<10} {result['run']:>3}: phase "
              f"{result['phase']['top_ms']}  baseline {result['base']['top_ms']}  "
              f"(window {result['phase']['seconds']:.2f} s, baseline "
              f"{result['base']['seconds']:.2f} s, workload {result['phase']['work_seconds']:.2f}"
              f" s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    if len(sys.argv) == 10 and sys.argv[1] == "--worker":
        _, _, w_phase, w_mode, w_url, w_project, w_seconds, w_cold, w_bound, w_big = sys.argv
        figures = worker(w_phase, w_mode, w_url, w_project, float(w_seconds), w_cold == "1",
                         float(w_bound), int(w_big))
        import json

        print(json.dumps(figures))
    else:
        main()
