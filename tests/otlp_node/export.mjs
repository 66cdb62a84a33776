// Exports one GenAI trace with the OpenTelemetry JS SDK's OTLP/HTTP exporter (OTLP/JSON) to
// SPANLOG_OTLP_URL, with the headers in SPANLOG_OTLP_HEADERS (a JSON object); prints the
// exported span ids and the export result as one JSON line (tests/server/test_otlp.py).
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { context, trace, SpanKind } from "@opentelemetry/api";

const memory = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-app" }),
  spanProcessors: [new SimpleSpanProcessor(memory)],
});
const tracer = provider.getTracer("node.test", "0.1.0");

const root = tracer.startSpan("invoke_agent planner", {
  attributes: { "gen_ai.operation.name": "invoke_agent" },
});
const chat = tracer.startSpan(
  "chat claude",
  {
    kind: SpanKind.CLIENT,
    attributes: {
      "gen_ai.operation.name": "chat",
      "gen_ai.request.model": "claude-sonnet",
      "gen_ai.usage.input_tokens": 9,
      "gen_ai.usage.output_tokens": 2,
      "gen_ai.input.messages": JSON.stringify([
        { role: "user", parts: [{ type: "text", content: "hi node" }] },
      ]),
      "gen_ai.output.messages": JSON.stringify([
        { role: "assistant", parts: [{ type: "text", content: "hello" }] },
      ]),
      "app.tags": ["a", "b"],
      "app.count": 42,
    },
  },
  trace.setSpan(context.active(), root),
);
chat.end();
root.end();
await provider.forceFlush();
const spans = memory.getFinishedSpans();

const exporter = new OTLPTraceExporter({
  url: process.env.SPANLOG_OTLP_URL,
  headers: JSON.parse(process.env.SPANLOG_OTLP_HEADERS || "{}"),
});
const result = await new Promise((resolve) => exporter.export(spans, resolve));
await exporter.shutdown();
console.log(
  JSON.stringify({
    code: result.code,
    error: result.error ? String(result.error) : null,
    spans: spans.map((s) => ({
      name: s.name,
      trace_id: s.spanContext().traceId,
      span_id: s.spanContext().spanId,
    })),
  }),
);
