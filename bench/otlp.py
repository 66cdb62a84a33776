"""OTLP ingest benchmark: spans/s and collector CPU per span, OTLP/HTTP beside /logs3.

The same GenAI traces (an agent span, two chat spans with messages and token counts, a tool
call and a retrieval: 5 spans) are sent to a ``spanlog serve`` subprocess in each of these
ways (``--paths``), each time to a fresh database:

- ``otlp``, ``otlp-gzip``: by the OpenTelemetry Python SDK's own OTLP/HTTP exporter
  (protobuf, without and with gzip), ``--concurrency`` exporters on threads, each
  ``export()`` one batch of ``--batch`` spans (the BatchSpanProcessor's default size is 512)
  to ``/otel/v1/traces``;
- ``otlp-json``: the same exports as OTLP/JSON (hex ids, as the OTLP/JSON encoding has them),
  encoded before timing, to ``/otel/v1/traces``;
- ``otlp-encoded``: the exporter's protobuf bodies, encoded before timing like ``logs3``'s:
  the server's cost without the exporter encoding spans on the same cores (on a small
  machine that competes with the collector and inflates its CPU time);
- ``logs3``: the rows ``span_to_row`` makes of the same spans, as JSON ``/logs3`` bodies of
  the same size, encoded before timing (what spanlog's SDK would send).

Not a pass/fail test: it prints what it measured (docs/benchmarks.md).

    python3 bench/otlp.py --spans 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import collector as base  # noqa: E402  (bench/collector.py: collector process, CPU, posting)

PROJECT = "bench-otlp"
PROMPT = ("You are a support agent. Answer within policy, cite the order number, and keep "
          "the reply under 100 words. ")


def make_spans(n: int) -> list[Any]:
    """``n`` finished OTel SDK spans (rounded up to whole 5-span traces)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(
        {"service.name": "support-bot", "deployment.environment": "production"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench.otlp", "1.0")
    for i in range((n + 4) // 5):
        question = (f"Where is my order {i:08d}? It was due three days ago and the "
                    "tracking page is empty.")
        with tracer.start_as_current_span("invoke_agent support", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
                "user.id": f"user-{i % 5000:05d}"}):
            for turn in range(2):
                answer = f"Order {i:08d} left the warehouse on day {turn}; tracking updates soon."
                with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT,
                                                  attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o", "gen_ai.request.temperature": 0.2,
                        "gen_ai.response.model": "gpt-4o-2024-08-06",
                        "gen_ai.usage.input_tokens": 120 + turn,
                        "gen_ai.usage.output_tokens": 30,
                        "gen_ai.system_instructions": json.dumps(
                            [{"type": "text", "content": PROMPT}]),
                        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                            {"type": "text", "content": question}]}]),
                        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                            {"type": "text", "content": answer}], "finish_reason": "stop"}])}):
                    pass
            with tracer.start_as_current_span("execute_tool lookup_order", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
                    "gen_ai.tool.call.arguments": json.dumps({"order": f"{i:08d}"}),
                    "gen_ai.tool.call.result": json.dumps({"status": "shipped"})}):
                pass
            with tracer.start_as_current_span("retrieval policies", attributes={
                    "gen_ai.operation.name": "retrieval", "db.system": "sqlite"}):
                pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def _measure(send: Any) -> tuple[float, float, str]:
    """Run ``send(url)`` against a fresh collector: seconds, server CPU seconds, its DB."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = base.start_collector(os.path.join(tmp, "otlp.sqlite3"))
        try:
            send(url, warm=True)
            cpu_before = base._tree_cpu_seconds(proc.pid)
            started = time.perf_counter()
            send(url, warm=False)
            elapsed = time.perf_counter() - started
            cpu = base._tree_cpu_seconds(proc.pid) - cpu_before
        finally:
            base.stop_collector(proc)
    return elapsed, cpu, base._load()


def bench_otlp(batches: list[list[Any]], concurrency: int, gzip: bool) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    def send(url: str, warm: bool) -> None:
        todo = batches[:1] if warm else batches[1:]
        exporters = [OTLPSpanExporter(
            endpoint=f"{url}/otel/v1/traces", timeout=60,
            headers={"x-bt-parent": f"project_name:{PROJECT}"},
            compression=Compression.Gzip if gzip else Compression.NoCompression)
            for _ in range(concurrency)]

        def run(k: int) -> None:
            for batch in todo[k::concurrency]:
                if exporters[k].export(batch) != SpanExportResult.SUCCESS:
                    raise RuntimeError("export failed")

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(run, range(concurrency)))

    elapsed, cpu, load = _measure(send)
    done = sum(len(b) for b in batches[1:])
    return {"path": "/otel/v1/traces (OTel SDK exporter, protobuf"
            + (", gzip)" if gzip else ")"), "spans": done, "seconds": round(elapsed, 2),
            "spans_per_s": round(done / elapsed),
            "server_cpu_us_per_span": round(cpu / done * 1e6), "loadavg": load}


def _otlp_json(batch: list[Any]) -> bytes:
    """An export of ``batch`` as OTLP/JSON: protobuf's JSON mapping with hex ids."""
    import base64

    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    body = json_format.MessageToDict(encode_spans(batch))
    for resource_spans in body["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for item in (span, *span.get("links", ())):
                    for field in ("traceId", "spanId", "parentSpanId"):
                        if field in item:
                            item[field] = base64.b64decode(item[field]).hex()
    return json.dumps(body).encode()


def bench_otlp_json(batches: list[list[Any]], concurrency: int,
                    protobuf: bool = False) -> dict[str, Any]:
    """OTLP/JSON bodies, or with ``protobuf`` the exporter's protobuf bodies, encoded before
    timing: the server's cost alone, without the exporter's encoding on the same cores."""
    if protobuf:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        bodies = [encode_spans(batch).SerializeToString() for batch in batches]
        headers = {"Content-Type": "application/x-protobuf",
                   "x-bt-parent": f"project_name:{PROJECT}"}
        return _bench_bodies(bodies, headers, batches, concurrency,
                             "/otel/v1/traces (protobuf, encoded before timing)")
    bodies = [_otlp_json(batch) for batch in batches]
    headers = {"Content-Type": "application/json", "x-bt-parent": f"project_name:{PROJECT}"}
    return _bench_bodies(bodies, headers, batches, concurrency,
                         "/otel/v1/traces (OTLP/JSON, encoded before timing)")


def _bench_bodies(bodies: list[bytes], headers: dict[str, str], batches: list[list[Any]],
                  concurrency: int, path: str) -> dict[str, Any]:

    def send(url: str, warm: bool) -> None:
        asyncio.run(base._post_all(url, bodies[:1] if warm else bodies[1:], concurrency,
                                   path="/otel/v1/traces", headers=headers))

    elapsed, cpu, load = _measure(send)
    done = sum(len(b) for b in batches[1:])
    return {"path": path, "spans": done,
            "seconds": round(elapsed, 2), "spans_per_s": round(done / elapsed),
            "server_cpu_us_per_span": round(cpu / done * 1e6), "loadavg": load}


def bench_logs3(batches: list[list[Any]], concurrency: int) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from spanlog.server.http._otlp import _spans_from_protobuf, spans_to_batch

    bodies = []
    for batch in batches:
        spans = _spans_from_protobuf(encode_spans(batch).SerializeToString())
        rows = [span_row for span_row in spans_to_batch(spans, None, PROJECT)[0].rows]
        bodies.append(json.dumps({"rows": [{**r, "project_name": PROJECT} for r in rows],
                                  "api_version": 2}).encode())

    def send(url: str, warm: bool) -> None:
        asyncio.run(base._post_all(url, bodies[:1] if warm else bodies[1:], concurrency))

    elapsed, cpu, load = _measure(send)
    done = sum(len(b) for b in batches[1:])
    return {"path": "/logs3 (the same spans as rows, JSON)", "spans": done,
            "seconds": round(elapsed, 2), "spans_per_s": round(done / elapsed),
            "server_cpu_us_per_span": round(cpu / done * 1e6), "loadavg": load,
            "avg_row_bytes": round(sum(len(b) for b in bodies) / sum(map(len, batches)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--paths", default="otlp,otlp-gzip,otlp-json,logs3",
                        help="which of otlp, otlp-gzip, otlp-json, otlp-encoded, logs3 to "
                             "run, in order (default: all but otlp-encoded)")
    args = parser.parse_args()
    spans = make_spans(args.spans)
    batches = [spans[i:i + args.batch] for i in range(0, len(spans), args.batch)]
    runs = {"otlp": lambda: bench_otlp(batches, args.concurrency, gzip=False),
            "otlp-gzip": lambda: bench_otlp(batches, args.concurrency, gzip=True),
            "otlp-json": lambda: bench_otlp_json(batches, args.concurrency),
            "otlp-encoded": lambda: bench_otlp_json(batches, args.concurrency, protobuf=True),
            "logs3": lambda: bench_logs3(batches, args.concurrency)}
    for name in args.paths.split(","):
        print(json.dumps(runs[name]()), flush=True)


if __name__ == "__main__":
    main()
