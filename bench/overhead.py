"""What tracing costs per span: spanlog against braintrust and OpenTelemetry's SDK.

One invocation starts a local collector (``python -m spanlog.server``, its own process, so
its CPU is not counted), then runs the same workload in a fresh process per SDK and shape:

- ``flat``: N calls of a traced function taking and returning a small dict (N spans);
- ``nested``: N calls of a traced function that calls three traced children (4N spans).

Per run it prints the caller thread's CPU per span (``time.thread_time`` around the calls)
and the part of it spent in garbage collections (``gc.callbacks``, with their count), the
whole process's CPU per span until the collector has everything (``time.process_time``
until the SDK's flush returns: background threads, encoding and I/O included), delivered
spans per second (spans / wall time from the first call until delivery), the spans the
collector stored, and the process's peak RSS. Every SDK delivers to the same collector:

- spanlog: ``@spanlog.traced``, default settings (background thread, gzip);
- braintrust 0.48.x: ``@braintrust.traced``, ``init_logger(app_url=<collector>)``, unmodified;
- OpenTelemetry SDK: ``start_as_current_span`` with input/output as JSON string attributes,
  a ``BatchSpanProcessor`` (queue raised to hold the whole run, 1000-span batches, 50 ms
  delay) and an exporter that posts the spans to the collector's ``/logs3`` as rows;
- ``otel-otlp``: the same, with the OTel SDK's own OTLP/HTTP exporter (protobuf) to the
  collector's ``/otel/v1/traces`` in place of the ``/logs3`` one;
- ``otel-spanlog``: the same OpenTelemetry spans through ``spanlog.otel.SpanProcessor``.

It ends with ``python -X importtime -c "import X"`` for spanlog and braintrust.

    python3 bench/overhead.py [--calls 20000]
                              [--sdks spanlog,braintrust,otel,otel-otlp,otel-spanlog]
                              [--shapes flat,nested] [--json results.json]

Numbers move with machine load; run it on a quiet machine and compare within one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from typing import Any

SDKS = ("spanlog", "braintrust", "otel", "otel-otlp", "otel-spanlog")
SHAPES = ("flat", "nested")


# --- the workload, the same for every SDK ------------------------------------------------------


def leaf(d: dict[str, Any]) -> dict[str, Any]:
    return {"out": d["x"] + 1, "label": d["name"]}


def root(d: dict[str, Any]) -> dict[str, Any]:
    leaf_fn(d)
    leaf_fn(d)
    leaf_fn(d)
    return {"ok": True, "x": d["x"]}


leaf_fn = leaf  # replaced by the traced version in the worker


# --- per-SDK setup (runs in the worker process) ----------------------------------------------


def setup_spanlog(url: str, project: str) -> tuple[Any, Any, Any]:
    import spanlog

    spanlog.init_logger(project=project, api_url=url)
    return spanlog.traced, lambda: spanlog.flush(timeout=120), spanlog.stats


def setup_braintrust(url: str, project: str) -> tuple[Any, Any, Any]:
    import braintrust

    logger = braintrust.init_logger(project=project, api_key="bench", app_url=url,
                                    async_flush=True)
    return braintrust.traced, logger.flush, lambda: {}


def setup_otel(url: str, project: str) -> tuple[Any, Any, Any]:
    import gzip
    import http.client
    from urllib.parse import urlsplit

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    parts = urlsplit(url)

    class CollectorExporter(SpanExporter):
        """Posts finished spans to the collector as logs3 rows (one request per batch)."""

        def __init__(self) -> None:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

        def export(self, spans: Any) -> SpanExportResult:
            rows = []
            for s in spans:
                ctx = s.get_span_context()
                attrs = s.attributes or {}
                rows.append({
                    "id": str(uuid.UUID(int=(ctx.trace_id >> 64 << 64) | ctx.span_id)),
                    "span_id": f"{ctx.span_id:016x}",
                    "root_span_id": f"{ctx.trace_id:032x}",
                    "span_parents": [f"{s.parent.span_id:016x}"] if s.parent else None,
                    "span_attributes": {"name": s.name, "type": "function"},
                    "metrics": {"start": s.start_time / 1e9, "end": s.end_time / 1e9},
                    "input": json.loads(attrs.get("input", "null")),
                    "output": json.loads(attrs.get("output", "null")),
                    "project_name": project, "log_id": "g",
                })
            body = gzip.compress(json.dumps({"rows": rows, "api_version": 2}).encode(), 1)
            self.conn.request("POST", "/logs3", body=body, headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"})
            resp = self.conn.getresponse()
            resp.read()
            return SpanExportResult.SUCCESS if resp.status == 200 else SpanExportResult.FAILURE

        def shutdown(self) -> None:
            self.conn.close()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(
        CollectorExporter(), max_queue_size=500_000, max_export_batch_size=1000,
        schedule_delay_millis=50))
    return otel_traced(provider), lambda: provider.force_flush(120_000), lambda: {}


def setup_otel_otlp(url: str, project: str) -> tuple[Any, Any, Any]:
    """The OTel SDK's BatchSpanProcessor and OTLP/HTTP exporter, as an OTel user has them."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(endpoint=url + "/otel/v1/traces",
                                headers={"x-bt-parent": f"project_name:{project}"})
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=500_000, max_export_batch_size=1000,
        schedule_delay_millis=50))
    return otel_traced(provider), lambda: provider.force_flush(120_000), lambda: {}


def setup_otel_spanlog(url: str, project: str) -> tuple[Any, Any, Any]:
    """The same OTel spans, through spanlog's span processor instead of the batch one."""
    from opentelemetry.sdk.trace import TracerProvider

    import spanlog
    from spanlog.otel import SpanProcessor

    spanlog.init_logger(project=project, api_url=url)
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    return otel_traced(provider), lambda: provider.force_flush(120_000), spanlog.stats


def otel_traced(provider: Any) -> Any:
    """A decorator making an OTel span of each call, input and output as JSON attributes."""
    import functools
    import inspect

    tracer = provider.get_tracer("bench")

    def traced(fn: Any) -> Any:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span(fn.__name__) as span:
                bound = signature.bind(*args, **kwargs).arguments
                span.set_attribute("input", json.dumps(bound))
                out = fn(*args, **kwargs)
                span.set_attribute("output", json.dumps(out))
                return out
        return wrapper

    return traced


class CallerGC:
    """The garbage collections run on this thread while ``on``: how many, and their CPU time.

    A collection runs on the thread whose allocation triggers it, whatever thread made the
    garbage, so an SDK that keeps many objects alive costs the caller here.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.on = False
        self.count = 0
        self.cpu = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on or threading.get_ident() != self.thread:
            return
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.count += 1
            self.cpu += time.thread_time() - self._started


def worker(sdk: str, shape: str, calls: int, url: str, project: str) -> dict[str, Any]:
    """Run one measurement in this process and return its figures."""
    import resource

    global leaf_fn
    traced, flush, stats = {"spanlog": setup_spanlog, "braintrust": setup_braintrust,
                            "otel": setup_otel, "otel-otlp": setup_otel_otlp,
                            "otel-spanlog": setup_otel_spanlog,
                            }[sdk](url, project)
    leaf_fn = traced(leaf)
    top = leaf_fn if shape == "flat" else traced(root)
    spans = calls * (1 if shape == "flat" else 4)
    caller_gc = CallerGC()
    gc.callbacks.append(caller_gc)
    caller_gc.on = True
    wall0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
    for i in range(calls):
        top({"x": i, "name": "item"})
    thread1 = time.thread_time()
    caller_gc.on = False
    flush()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    return {"sdk": sdk, "shape": shape, "spans": spans,
            "caller_us_per_span": (thread1 - thread0) / spans * 1e6,
            "caller_gc_us_per_span": caller_gc.cpu / spans * 1e6,
            "caller_gc_collections": caller_gc.count,
            "process_us_per_span": (cpu1 - cpu0) / spans * 1e6,
            "spans_per_s": spans / (wall1 - wall0),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "sdk_stats": stats()}


# --- the driver ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(url + path, method="GET" if body is None else "POST",
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def stored(url: str, project: str) -> int:
    """How many rows the collector holds for ``project``."""
    pid = call(url, "/v1/project", {"name": project})["id"]
    body: dict[str, Any] = {"limit": 1000}
    count = 0
    while True:
        page = call(url, f"/v1/project_logs/{pid}/fetch", body)
        count += len(page["events"])
        if not page.get("cursor") or not page["events"]:
            return count
        body["cursor"] = page["cursor"]


def import_time(module: str, runs: int = 5) -> float:
    """Best-of-``runs`` cumulative import time of ``module`` in ms (``-X importtime``)."""
    best = float("inf")
    for _ in range(runs):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                             capture_output=True, text=True, check=True).stderr
        total = [line for line in err.splitlines() if line.rstrip().endswith(f"| {module}")]
        best = min(best, int(total[-1].split("|")[1]) / 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--sdks", default=",".join(SDKS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", nargs=5, metavar=("SDK", "SHAPE", "CALLS", "URL", "PROJ"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sdk, shape, calls, url, project = args.worker
        print(json.dumps(worker(sdk, shape, int(calls), url, project)))
        return

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, "-m", "spanlog.server", "--port", str(port), "--db",
             os.path.join(tmp, "bench.sqlite3"), "--log-level", "warning"])
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    call(url, "/version")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)  # polling the collector's startup, bounded above
            results = []
            for shape in args.shapes.split(","):
                for sdk in args.sdks.split(","):
                    project = f"bench-{sdk}-{shape}-{uuid.uuid4().hex[:6]}"
                    out = subprocess.run(
                        [sys.executable, __file__, "--worker", sdk, shape, str(args.calls),
                         url, project], capture_output=True, text=True, check=False)
                    if out.returncode:
                        print(f"{sdk}/{shape} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
                        continue
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    result["stored"] = stored(url, project)
                    results.append(result)
                    print(f"{sdk:>10} {shape:>6}: caller {result['caller_us_per_span']:7.2f} "
                          f"us/span (GC {result['caller_gc_us_per_span']:5.2f} us, "
                          f"{result['caller_gc_collections']} collections) | process "
                          f"{result['process_us_per_span']:7.2f} us/span | "
                          f"{result['spans_per_s']:9.0f} spans/s | stored "
                          f"{result['stored']}/{result['spans']} | peak RSS "
                          f"{result['peak_rss_mb']:.0f} MB", flush=True)
        finally:
            server.terminate()
            server.wait(30)
    imports = {m: import_time(m) for m in ("spanlog", "braintrust")}
    print("import time (best of 5, -X importtime): "
          + ", ".join(f"{m} {ms:.1f} ms" for m, ms in imports.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"calls": args.calls, "runs": results, "import_ms": imports}, fh,
                      indent=2)


if __name__ == "__main__":
    main()
