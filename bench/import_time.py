"""What ``import spanlog`` and a first trace cost a fresh interpreter, beside braintrust and
OpenTelemetry.

1. ``python -X importtime -c "import X"``, each run a fresh interpreter, for spanlog,
   braintrust and (if installed) ``opentelemetry.trace``: the cumulative microseconds of
   everything that statement imported (the top-level import lines after ``site``; for
   spanlog that is the ``spanlog`` line), best and median of the runs, how many modules it
   loaded, and the ten modules with the largest self time among them (median over the runs)
   with their cumulative time, i.e. where the import time goes.
2. Wall time of a fresh interpreter, measured inside it with ``time.perf_counter()`` from
   before ``import spanlog`` (interpreter startup excluded) and as the whole process's wall
   time (startup and exit included), best and median of the runs:

   - ``import spanlog``;
   - ``import spanlog; spanlog.init_logger(...)``;
   - ``import spanlog; init_logger(...)``, one trace of 10 spans (``with
     spanlog.start_span``), ``spanlog.flush()`` against a loopback collector
     (``python -m spanlog.server``, its own process, a temporary SQLite file);

   with ``python -c pass`` for the interpreter alone.

Goal (the issue): ``import spanlog`` <= 15 ms.

    PYTHONPATH=src python3 bench/import_time.py [--runs 5] [--json results.json]

Bytecode: spanlog is first compiled into its ``__pycache__`` (``python -m compileall``, as
``pip install`` does) and ``PYTHONDONTWRITEBYTECODE`` is dropped for the measured processes,
so that spanlog loads from bytecode as the installed braintrust and OpenTelemetry do; with
that variable set and no bytecode (an editable install in such an environment) every process
compiles spanlog's source, which is shown as well, for comparison. Every probe first runs
once uncounted (files in the OS cache): the figures are a fresh interpreter's on a warm
machine, not a cold disk. ``-X importtime`` adds a little overhead to every import. It
measures whichever ``spanlog`` is importable (``PYTHONPATH`` is passed on). Numbers move with
machine load: run it more than once on a shared machine. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

from _collector_process import compile_spanlog, start_collector, stop_collector

GOAL_MS = 15.0
TOP = 10
SPANS = 10

# -- 1. -X importtime ----------------------------------------------------------------------

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """The lines of the statement's imports: (self us, cumulative us, depth, module).

    Everything printed after the ``site`` line (the interpreter's startup) belongs to the
    ``-c`` statement."""
    lines = []
    for text in stderr.splitlines():
        match = _LINE.match(text)
        if match:
            depth = len(match.group(3)) // 2
            lines.append((int(match.group(1)), int(match.group(2)), depth, match.group(4)))
    starts = [i for i, line in enumerate(lines) if line[2] == 0 and line[3] == "site"]
    return lines[starts[-1] + 1:] if starts else lines


def importtime(module: str, runs: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``runs`` fresh ``python -X importtime -c "import module"``; the figures."""
    totals: list[float] = []
    selves: dict[str, list[int]] = {}
    cumulative: dict[str, list[int]] = {}
    counts: list[int] = []
    for number in range(runs + 1):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                             capture_output=True, text=True, check=True, env=env).stderr
        if number == 0:
            continue  # uncounted: writes bytecode caches, fills the OS file cache
        lines = parse_importtime(err)
        totals.append(sum(cum for _, cum, depth, _ in lines if depth == 0))
        counts.append(len(lines))
        for own, cum, _, name in lines:
            selves.setdefault(name, []).append(own)
            cumulative.setdefault(name, []).append(cum)
    top = sorted(selves, key=lambda name: statistics.median(selves[name]), reverse=True)[:TOP]
    return {"module": module, "best_us": min(totals), "median_us": statistics.median(totals),
            "runs_us": totals, "modules": statistics.median(counts),
            "top_self": [(name, statistics.median(selves[name]),
                          statistics.median(cumulative[name]), len(selves[name]))
                         for name in top]}


def print_importtime(result: dict[str, Any], runs: int, label: str = "",
                     top: int = TOP) -> None:
    goal = ""
    if result["module"] == "spanlog" and not label:
        goal = (f"   goal <= {GOAL_MS:g} ms: "
                f"{'ok' if result['best_us'] / 1000 <= GOAL_MS else 'OVER'} (best)")
    print(f"\nimport {result['module']}{label}: best {result['best_us'] / 1000:.1f} ms, median "
          f"{result['median_us'] / 1000:.1f} ms over {runs} runs, "
          f"{result['modules']:.0f} modules loaded{goal}")
    print("  runs (ms): " + ", ".join(f"{us / 1000:.1f}" for us in result["runs_us"]))
    print(f"  top {top} by self time (median us): {'self':>8} {'cumulative':>11}")
    for name, own, cum, seen in result["top_self"][:top]:
        note = "" if seen == runs else f"  (in {seen} of {runs} runs)"
        print(f"    {name:<40} {own:8.0f} {cum:11.0f}{note}")


# -- 2. wall time in a fresh interpreter ---------------------------------------------------

PROBES = {
    "import spanlog": "import spanlog",
    "import spanlog + init_logger": textwrap.dedent("""
        import spanlog
        spanlog.init_logger(project="import-time", api_url=URL)
    """),
    "import + init_logger + first trace + flush()": textwrap.dedent("""
        import spanlog
        spanlog.init_logger(project="import-time", api_url=URL)
        with spanlog.start_span(name="request", type="task") as root:
            for i in range(SPANS - 1):
                with spanlog.start_span(name=f"step-{i}", type="function") as span:
                    span.log(input={"i": i}, output={"ok": True}, metadata={"n": i})
            root.log(input="question", output="answer")
        OK = spanlog.flush(timeout=30)
    """),
}

TIMED = textwrap.dedent("""
    import time
    STARTED = time.perf_counter()
    OK = True
    {body}
    ELAPSED = time.perf_counter() - STARTED
    print(ELAPSED, OK)
""")


def wall(code: str, runs: int, url: str) -> dict[str, Any]:
    """Run ``code`` in ``runs`` fresh interpreters (after one uncounted run): the seconds
    measured inside, the process's wall seconds, and how many flushes returned True."""
    program = TIMED.format(body=code.replace("URL", repr(url))
                           .replace("SPANS", str(SPANS)))
    inside: list[float] = []
    process: list[float] = []
    ok = 0
    for number in range(runs + 1):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                             check=True, timeout=120)
        elapsed = time.perf_counter() - started
        if number == 0:
            continue
        seconds, flushed = out.stdout.split()
        inside.append(float(seconds))
        process.append(elapsed)
        ok += flushed == "True"
    return {"inside": inside, "process": process, "ok": ok}


def interpreter_alone(runs: int) -> list[float]:
    samples = []
    for number in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        if number:
            samples.append(time.perf_counter() - started)
    return samples


def ms(samples: list[float]) -> str:
    return (f"best {min(samples) * 1000:7.1f} ms  median "
            f"{statistics.median(samples) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per figure")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    runs = max(1, args.runs)

    import spanlog

    print(f"spanlog {spanlog.__version__} from {os.path.dirname(spanlog.__file__)}; "
          f"python {sys.version.split()[0]}; {os.cpu_count()} cores; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    where = os.path.dirname(spanlog.__file__)
    print(compile_spanlog(where))
    print(f"goal: import spanlog <= {GOAL_MS:g} ms")
    modules = ["spanlog", "braintrust"]
    try:
        otel = importlib.util.find_spec("opentelemetry.trace") is not None
    except ModuleNotFoundError:
        otel = False
    if otel:
        modules.append("opentelemetry.trace")
    results: dict[str, Any] = {"import": {}, "wall": {}}
    for module in modules:
        try:
            result = importtime(module, runs)
        except subprocess.CalledProcessError as exc:
            print(f"\nimport {module}: failed ({exc.stderr.strip().splitlines()[-1:]})")
            continue
        results["import"][module] = result
        print_importtime(result, runs)
    if not otel:
        print("\nimport opentelemetry.trace: not installed")
    with tempfile.TemporaryDirectory(prefix="spanlog-source-") as tmp:
        # A copy of the package without bytecode, first on the path, never compiled to disk:
        # what every fresh process pays when spanlog runs from source with
        # PYTHONDONTWRITEBYTECODE=1 (an editable install in such an environment).
        shutil.copytree(where, os.path.join(tmp, "spanlog"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")]))}
        source = importtime("spanlog", runs, env)
    results["import"]["spanlog (from source, no bytecode)"] = source
    print_importtime(source, runs, " from source, no bytecode (for comparison)", 3)

    print(f"\nFresh interpreter, {runs} runs each: measured inside (from before the import) "
          "| whole process")
    alone = interpreter_alone(runs)
    results["wall"]["python -c pass"] = {"process": alone}
    print(f"  {'python -c pass':<46} {'':>37} | {ms(alone)}")
    with tempfile.TemporaryDirectory(prefix="spanlog-import-time-") as tmp:
        proc, url, log = start_collector(tmp)
        try:
            for label, code in PROBES.items():
                figures = wall(code, runs, url)
                results["wall"][label] = figures
                flushed = (f"  (flush True {figures['ok']}/{runs})" if "flush" in label
                           else "")
                print(f"  {label:<46} {ms(figures['inside'])} | {ms(figures['process'])}"
                      f"{flushed}", flush=True)
        finally:
            stop_collector(proc, log)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
