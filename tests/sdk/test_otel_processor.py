"""OpenTelemetry spans through spanlog's processor: rows, flush rules and mixed traces."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from sdk_support import LoggerFactory

import spanlog
from spanlog import _context
from spanlog.otel import SpanProcessor


@pytest.fixture
def tracer() -> Iterator[otel_trace.Tracer]:
    """A tracer of a provider of its own whose spans go through spanlog's processor."""
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    yield provider.get_tracer("spanlog-tests")
    provider.shutdown()
    _context.bridge = None  # the other tests run without the bridge


def _by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["span_attributes"]["name"]: row for row in rows}


def test_an_llm_span_becomes_an_llm_row_and_a_root_ends_the_trace(
        collector: Any, make_logger: LoggerFactory, project: str,
        tracer: otel_trace.Tracer) -> None:
    """With async_flush=False the trace is stored when the OTel root span ends (no flush
    call); its GenAI child is an llm row with model, tokens and messages."""
    make_logger(async_flush=False)
    with tracer.start_as_current_span("handle") as root:
        with tracer.start_as_current_span("chat gpt-test") as call:
            call.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-test",
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
                "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hi",
                "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "hello",
                "app.route": "/chat"})
    rows = _by_name(collector.fetch(project=project))
    assert set(rows) == {"handle", "chat gpt-test"}
    llm = rows["chat gpt-test"]
    assert llm["span_attributes"]["type"] == "llm"
    assert llm["metadata"]["model"] == "gpt-test"
    assert llm["metrics"]["prompt_tokens"] == 12 and llm["metrics"]["completion_tokens"] == 3
    assert llm["input"] == [{"role": "user", "content": "hi"}]
    assert llm["root_span_id"] == f"{root.get_span_context().trace_id:032x}"
    assert llm["span_parents"] == [f"{root.get_span_context().span_id:016x}"]
    assert llm["span_id"] == f"{call.get_span_context().span_id:016x}"


def test_spanlog_spans_and_otel_spans_nest_both_ways(
        collector: Any, make_logger: LoggerFactory, project: str,
        tracer: otel_trace.Tracer) -> None:
    """A spanlog root > an OTel child > a @traced grandchild > an OTel great-grandchild form
    one trace, each the child of the one around it."""
    logger = make_logger(async_flush=False)

    @spanlog.traced
    def step() -> None:
        with tracer.start_as_current_span("otel-leaf"):
            pass

    with logger.start_span(name="spanlog-root") as root:
        with tracer.start_as_current_span("otel-middle"):
            step()
    rows = _by_name(collector.fetch(project=project))
    assert set(rows) == {"spanlog-root", "otel-middle", "step", "otel-leaf"}
    assert {row["root_span_id"] for row in rows.values()} == {root.root_span_id}
    assert rows["otel-middle"]["span_parents"] == [root.span_id]
    assert rows["step"]["span_parents"] == [rows["otel-middle"]["span_id"]]
    assert rows["otel-leaf"]["span_parents"] == [rows["step"]["span_id"]]


def test_an_otel_root_around_spanlog_spans_in_async_code(
        collector: Any, make_logger: LoggerFactory, project: str,
        tracer: otel_trace.Tracer) -> None:
    """In async code (tasks included) an OTel root's spanlog children join its trace."""
    logger = make_logger()

    async def main() -> str:
        with tracer.start_as_current_span("otel-root") as root:
            async def child(i: int) -> None:
                async with spanlog.start_span(name=f"child-{i}"):
                    await asyncio.sleep(0)
            await asyncio.gather(child(0), child(1))
        assert await logger.aflush(timeout=10)
        return f"{root.get_span_context().span_id:016x}"

    root_id = asyncio.run(main())
    rows = _by_name(collector.wait_for_rows(3, project=project))
    assert rows["child-0"]["span_parents"] == [root_id]
    assert rows["child-1"]["span_parents"] == [root_id]
    assert rows["child-0"]["root_span_id"] == rows["otel-root"]["root_span_id"]


def test_force_flush_and_shutdown_deliver_what_is_buffered(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """force_flush() delivers within its timeout and says so; shutdown() delivers too."""
    make_logger(flush_linger=60)
    provider = TracerProvider()
    processor = SpanProcessor()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    try:
        with tracer.start_as_current_span("first"):
            pass
        assert processor.force_flush(10_000) is True
        assert [r["span_attributes"]["name"] for r in collector.fetch(project=project)] == [
            "first"]
        with tracer.start_as_current_span("second"):
            pass
        provider.shutdown()
        assert len(collector.fetch(project=project)) == 2
    finally:
        _context.bridge = None


def test_traceparent_continues_a_trace_across_the_two_libraries(
        collector: Any, make_logger: LoggerFactory, project: str,
        tracer: otel_trace.Tracer) -> None:
    """A traceparent injected by OTel's propagator inside a spanlog span names that span, and
    one injected by spanlog inside an OTel span names the OTel span; each side continues the
    other's trace from it (an OTel service calling a spanlog one and back)."""
    from opentelemetry import propagate

    logger = make_logger(async_flush=False)
    with logger.start_span(name="spanlog-caller") as caller:
        outgoing: dict[str, str] = {}
        propagate.inject(outgoing)
    assert outgoing["traceparent"] == f"00-{caller.root_span_id}-{caller.span_id}-01"
    with tracer.start_as_current_span("otel-callee", context=propagate.extract(outgoing)) as s:
        back = spanlog.inject_traceparent()
    assert back["traceparent"].split("-")[1:3] == [caller.root_span_id,
                                                   f"{s.get_span_context().span_id:016x}"]
    with logger.start_span(name="spanlog-callee",
                           parent=spanlog.extract_traceparent(back)) as callee:
        pass
    rows = _by_name(collector.fetch(project=project))
    assert rows["otel-callee"]["span_parents"] == [caller.span_id]
    assert rows["spanlog-callee"]["span_parents"] == [rows["otel-callee"]["span_id"]]
    assert {row["root_span_id"] for row in rows.values()} == {caller.root_span_id}
    assert callee.root_span_id == caller.root_span_id


def test_spans_in_a_thread_nest_through_bind_context(
        collector: Any, make_logger: LoggerFactory, project: str,
        tracer: otel_trace.Tracer) -> None:
    """bind_context carries both libraries' current spans into a plain thread."""
    import threading

    logger = make_logger(async_flush=False)

    def work() -> None:
        with tracer.start_as_current_span("otel-in-thread"):
            with spanlog.start_span(name="spanlog-in-thread"):
                pass

    with logger.start_span(name="root") as root:
        thread = threading.Thread(target=spanlog.bind_context(work))
        thread.start()
        thread.join(10)
    rows = _by_name(collector.fetch(project=project))
    assert rows["otel-in-thread"]["span_parents"] == [root.span_id]
    assert rows["spanlog-in-thread"]["span_parents"] == [rows["otel-in-thread"]["span_id"]]


def test_the_processor_converts_a_span_as_the_collectors_otlp_endpoint_does() -> None:
    """An ended SDK span's events, links, status, resource and scope give the same row from
    plain_span as from the OTLP protobuf the OTel exporter would send for it."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, Status, StatusCode

    from spanlog._otel_rows import OtelSpan, span_to_row
    from spanlog.otel import plain_span
    from spanlog.server.http._otlp import _spans_from_protobuf

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "convert"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("convert-tests", "2.0")
    with tracer.start_as_current_span("other") as other:
        pass
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("chat", links=[Link(other.get_span_context(), {
                "why": "retry"})], attributes={"gen_ai.operation.name": "chat",
                                               "gen_ai.request.model": "m", "tags": ("a", "b"),
                                               "ratio": 0.5}) as span:
            span.add_event("gen_ai.user.message", {"content": "hi"})
            span.record_exception(ValueError("bad value"))
            span.set_status(Status(StatusCode.ERROR, "failed"))
    provider.shutdown()
    ended = [s for s in memory.get_finished_spans() if s.name == "chat"]
    [(_, [decoded])] = _spans_from_protobuf(encode_spans(ended).SerializeToString())
    mine, sent = span_to_row(plain_span(ended[0])), span_to_row(OtelSpan(*decoded))
    for otel_only in ("flags", "trace_state"):  # what OTLP carries and the SDK span keeps apart
        sent["metadata"]["otel"].pop(otel_only, None)
    assert mine == sent
    assert mine["error"].startswith("failed") and "bad value" in mine["error"]
    assert mine["input"] == [{"role": "user", "content": "hi"}]
    assert mine["metadata"]["links"][0]["attributes"] == {"why": "retry"}
    assert mine["metadata"]["attributes"]["tags"] == ["a", "b"]
    assert mine["metadata"]["resource"]["service.name"] == "convert"


def test_a_span_that_cannot_be_a_row_is_counted_and_the_others_delivered(
        collector: Any, make_logger: LoggerFactory, project: str) -> None:
    """A span ending before it starts is counted in stats()["dropped"] when the flush makes
    the rows; the span beside it is stored and nothing reaches the instrumented code."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext

    logger = make_logger(flush_linger=60)
    processor = SpanProcessor(logger=logger)
    try:
        for name, start, end in (("backwards", 2_000, 1_000), ("fine", 1_000, 2_000)):
            context = SpanContext(trace_id=int(uuid.uuid4().hex, 16), span_id=0xab,
                                  is_remote=False)
            processor.on_end(ReadableSpan(name=name, context=context, start_time=start,
                                          end_time=end))
        assert processor.force_flush(10_000) is True
        assert [r["span_attributes"]["name"] for r in collector.fetch(project=project)] == [
            "fine"]
        assert logger.stats()["dropped"] == 1
    finally:
        _context.bridge = None


def test_the_processor_keeps_the_values_of_an_ended_span_not_the_span(
        make_logger: LoggerFactory, tracer: otel_trace.Tracer) -> None:
    """Until the flush the buffer holds what the row needs, not the OTel SDK's span (which
    would keep its contexts, status and bounded lists alive for the garbage collector)."""
    from opentelemetry.sdk.trace import ReadableSpan

    logger = make_logger(flush_linger=60)
    ended: list[weakref.ref[ReadableSpan]] = []
    original = SpanProcessor.on_end

    def on_end(self: SpanProcessor, span: ReadableSpan) -> None:
        ended.append(weakref.ref(span))
        original(self, span)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SpanProcessor, "on_end", on_end)
        with tracer.start_as_current_span("root"):
            with tracer.start_as_current_span("child") as child:
                child.set_attribute("k", "v")
    assert len(ended) == 2 and all(ref() is None for ref in ended)
    assert logger.stats()["queued"] == 2


def test_reading_an_sdk_spans_fields_gives_what_its_properties_give() -> None:
    """The processor reads an ended SDK span's own fields (cheaper than its properties); for
    every kind of span the row is the one its public properties give."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, Status, StatusCode

    from spanlog import otel
    from spanlog._otel_rows import span_to_row

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("fields", "1.0")
    with tracer.start_as_current_span("other") as other:
        pass
    with tracer.start_as_current_span("root", attributes={f"k{i}": i for i in range(12)}):
        with tracer.start_as_current_span("child", links=[Link(other.get_span_context())],
                                          attributes={"gen_ai.request.model": "m"}) as span:
            span.add_event("gen_ai.user.message", {"content": "hi"})
            span.set_status(Status(StatusCode.ERROR, "failed"))
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert len(spans) == 3
    for span in spans:
        slow = otel.read_properties(span, None)
        with pytest.MonkeyPatch.context() as patch:  # the fields must do, not the fallback
            patch.setattr(otel, "read_properties", None)
            fast = otel.ended(span, None)
        assert span_to_row(fast.plain()) == span_to_row(slow.plain()), span.name
        assert fast.local_root == slow.local_root == (span.parent is None)
