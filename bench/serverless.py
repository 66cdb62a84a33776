"""What spanlog adds to a serverless response, measured in the real runtimes (issue 4).

1. Vercel (waitUntil path): HTTP response latency of an ASGI function under the real
   ``vercel_runtime.vc_init`` logging a 10-span trace per request, versus the same function
   with spanlog off. Goal: under 0.5 ms median added. Also the in-process cost of the same
   trace ending into a waitUntil hook (no HTTP noise).
2. AWS Lambda (sync flush): invocation latency under ``awslambdaric`` against a local Runtime
   API, the trace delivered to a loopback collector before the handler returns, versus off.
   Goal: under 5 ms median added.
3. Cold start: ``import spanlog`` and ``import spanlog`` + ``init_logger`` in a fresh
   interpreter.

Run: ``python bench/serverless.py`` (``--requests N``, ``--only vercel|lambda|cold|hook``).
It uses the runtimes the tests install (``tests/runtimes/runtimes_setup.py``). Requests to
the two variants alternate so that machine noise falls on both alike. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtimes"))

import runtimes_setup  # noqa: E402
from harness_common import free_port, http_request, wait_for  # noqa: E402
from harness_lambda import LambdaFunction  # noqa: E402
from harness_vercel import VercelFunction  # noqa: E402

SPANS = 10

# One app for both runtimes: a 10-span trace per request when BENCH_SPANLOG=1, nothing when 0.
APP = textwrap.dedent('''
    import json, os
    import spanlog

    ENABLED = os.environ["BENCH_SPANLOG"] == "1"
    if ENABLED:
        spanlog.init_logger(project="bench-serverless")

    def trace():
        if not ENABLED:
            return {"ok": True}
        with spanlog.start_span(name="request", type="task") as root:
            for i in range(CHILDREN):
                with spanlog.start_span(name=f"step-{i}", type="function") as span:
                    span.log(input={"i": i}, output={"ok": True}, metadata={"n": i})
            root.log(input="question", output="answer")
        return {"ok": True, "id": root.id}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body"):
            pass
        body = json.dumps(trace()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def atrace():
        async with spanlog.start_span(name="request", type="task") as root:
            for i in range(CHILDREN):
                async with spanlog.start_span(name=f"step-{i}", type="function") as span:
                    span.log(input={"i": i}, output={"ok": True}, metadata={"n": i})
            root.log(input="question", output="answer")
        return {"ok": True, "id": root.id}

    def handler(event, context):
        return trace()

    def handler_async(event, context):  # async code run per invocation, as Lambda users do
        import asyncio
        return asyncio.run(atrace()) if ENABLED else {"ok": True}
''').replace("CHILDREN", str(SPANS - 1))


def summary(samples: list[float]) -> str:
    """Median and p90 in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered) * 1000:7.3f} ms  p90 {p90 * 1000:7.3f} ms"


def report(title: str, on: list[float], off: list[float], goal_ms: float) -> None:
    """Print both variants and the added median latency against its goal."""
    added = (statistics.median(on) - statistics.median(off)) * 1000
    print(f"\n{title} ({len(on)} requests each)")
    print(f"  spanlog off: {summary(off)}")
    print(f"  spanlog on:  {summary(on)}")
    verdict = "within" if added < goal_ms else "OVER"
    print(f"  added median: {added:+.3f} ms  ({verdict} the {goal_ms:g} ms goal)")


class Collector:
    """``spanlog serve`` on a free loopback port, in its own process as in production (a
    collector sharing this process's GIL would slow both sides down)."""

    def __init__(self, workdir: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self._log = open(workdir / "collector.log", "wb")  # closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "spanlog.cli", "serve", "--port", port,
             "--db", str(workdir / "bench.sqlite3"), "--log-level", "warning"],
            stdout=self._log, stderr=subprocess.STDOUT)

        def up() -> bool:
            try:
                return http_request(self.url + "/version", timeout=1.0)[0] == 200
            except OSError:
                return self._proc.poll() is not None
        wait_for(up, 30.0, "the collector to listen")
        if self._proc.poll() is not None:
            raise RuntimeError(f"spanlog serve exited: {(workdir / 'collector.log').read_text()}")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=30)
        self._log.close()


def bench_vercel(requests: int, workdir: Path, collector_url: str) -> None:
    app_file = workdir / "bench_app.py"
    app_file.write_text(APP)
    python = runtimes_setup.vercel_python()
    variants = {
        "on": {"BENCH_SPANLOG": "1"},
        "off": {"BENCH_SPANLOG": "0"},
        # The same trace with its flush held back for the whole run: what the response path
        # alone costs, without the flush that follows each response competing for the CPU
        # with this client (on a platform the client is elsewhere; here they share 2 cores).
        "deferred": {"BENCH_SPANLOG": "1", "SPANLOG_WAIT_UNTIL": "off",
                     "SPANLOG_FLUSH_LINGER": "3600"},
    }
    functions = {
        name: VercelFunction(python, app_file, "app", {**env, "SPANLOG_API_URL": collector_url},
                             workdir, freeze_on_end=False)
        for name, env in variants.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for number in range(requests + 20):
            for name, function in functions.items():
                status, _, elapsed, invocation = function.invoke("/", {"q": number})
                assert status == 200, function.describe()
                function.wait_end(invocation)  # its flush is done before the next request
                if number >= 20:  # the first requests warm imports and connections
                    samples[name].append(elapsed)
    finally:
        for function in functions.values():
            function.close()
    report(f"Vercel ASGI under vc_init, {SPANS}-span trace flushed via wait_until",
           samples["on"], samples["off"], 0.5)
    deferred = samples["deferred"]
    added = (statistics.median(deferred) - statistics.median(samples["off"])) * 1000
    print(f"  spanlog on, flush deferred: {summary(deferred)}  (response path alone: "
          f"{added:+.3f} ms)")


def bench_hook(requests: int, collector_url: str) -> None:
    """The response-path cost alone: a 10-span trace ending into a waitUntil hook."""
    import spanlog
    from spanlog._hooks import wait_until_scope

    logger = spanlog.init_logger(project="bench-serverless", api_url=collector_url,
                                 set_current=False)
    handed: list[Coroutine[Any, Any, Any]] = []

    def trace() -> None:
        with logger.start_span(name="request", type="task") as root:
            for i in range(SPANS - 1):
                with logger.start_span(name=f"step-{i}", type="function") as span:
                    span.log(input={"i": i}, output={"ok": True}, metadata={"n": i})
            root.log(input="question", output="answer")

    def nothing() -> None:
        pass

    def timed(work: Callable[[], None]) -> float:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started

    on: list[float] = []
    off: list[float] = []
    with wait_until_scope(handed.append):
        for number in range(requests + 50):
            sample_on, sample_off = timed(trace), timed(nothing)
            if number >= 50:
                on.append(sample_on)
                off.append(sample_off)
            # The platform runs the flush after the response, off the measured path.
            asyncio.run(handed.pop())
    logger.close()
    report(f"In process: {SPANS}-span trace ending into a waitUntil hook", on, off, 0.5)


def bench_lambda(requests: int, workdir: Path, collector_url: str) -> None:
    task_root = workdir / "lambda"
    task_root.mkdir(exist_ok=True)
    (task_root / "bench_app.py").write_text(APP)
    variants = {"on": ("bench_app.handler", "1"), "off": ("bench_app.handler", "0"),
                "async on": ("bench_app.handler_async", "1"),
                "async off": ("bench_app.handler_async", "0")}
    # PYTHONPATH set for this run (to measure another checkout) reaches the function too.
    path = {"PYTHONPATH": f"{task_root}{os.pathsep}{os.environ['PYTHONPATH']}"
            } if os.environ.get("PYTHONPATH") else {}
    functions = {
        name: LambdaFunction(task_root, handler,
                             {"BENCH_SPANLOG": flag, "SPANLOG_API_URL": collector_url, **path},
                             workdir, freeze=False)
        for name, (handler, flag) in variants.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    first: dict[str, float] = {}
    try:
        for number in range(requests + 20):
            for name, function in functions.items():
                kind, payload, elapsed = function.invoke({"q": number})
                assert kind == "response", payload
                if number == 0:
                    first[name] = elapsed  # the cold invocation: first trace and connection
                elif number >= 20:
                    samples[name].append(elapsed)
    finally:
        for function in functions.values():
            function.close()
    report(f"AWS Lambda under awslambdaric, {SPANS}-span trace flushed before returning",
           samples["on"], samples["off"], 5.0)
    report("The same from async code (asyncio.run per invocation, async with spans)",
           samples["async on"], samples["async off"], 5.0)
    print("  first invocation of each (ms): " + ", ".join(
        f"{name} {seconds * 1000:.1f}" for name, seconds in first.items()))


def bench_cold(runs: int) -> None:
    probes = {
        "python -c pass (interpreter alone)": "pass",
        "import spanlog": "import spanlog",
        "import spanlog + init_logger": "import spanlog; spanlog.init_logger(project='cold')",
    }
    print(f"\nCold start in a fresh interpreter ({runs} runs each, wall time of the process)")
    for label, code in probes.items():
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
            samples.append(time.perf_counter() - started)
        print(f"  {label:40s} {summary(samples)}")
    code = ("import time; t = time.perf_counter(); import spanlog; "
            "spanlog.init_logger(project='cold'); print(time.perf_counter() - t)")
    inside = [float(subprocess.run([sys.executable, "-c", code], check=True, text=True,
                                   capture_output=True).stdout) for _ in range(runs)]
    print(f"  {'measured inside: import + init_logger':40s} {summary(inside)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--only", choices=["vercel", "hook", "lambda", "cold"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spanlog-bench-") as tmp:
        workdir = Path(tmp)
        collector = Collector(workdir)
        try:
            if args.only in (None, "hook"):
                bench_hook(args.requests, collector.url)
            if args.only in (None, "vercel"):
                bench_vercel(args.requests, workdir, collector.url)
            if args.only in (None, "lambda"):
                bench_lambda(args.requests, workdir, collector.url)
        finally:
            collector.stop()
        if args.only in (None, "cold"):
            bench_cold(20)


if __name__ == "__main__":
    main()
