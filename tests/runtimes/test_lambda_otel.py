"""OpenTelemetry-only handlers under the real Lambda runtime client, frozen at the next poll:
spanlog's span processor delivers every span before the freeze; OTel's BatchSpanProcessor,
the negative control, does not."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness_common import LINK_DELAY, SlowLink, wait_for
from harness_lambda import LambdaFunction

HANDLER = textwrap.dedent('''
    import json
    import os
    import urllib.request

    import spanlog
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from spanlog._otel_rows import span_to_row
    from spanlog.otel import SpanProcessor, plain_span

    class Logs3Exporter(SpanExporter):
        """OTel's own path: a batch exporter posting the same rows to the collector."""

        def export(self, spans):
            rows = [{**span_to_row(plain_span(s)), "project_name": os.environ["SPANLOG_PROJECT"]}
                    for s in spans]
            request = urllib.request.Request(
                os.environ["SPANLOG_API_URL"] + "/logs3", method="POST",
                data=json.dumps({"rows": rows, "api_version": 2}).encode(),
                headers={"Authorization": "Bearer " + os.environ["SPANLOG_API_KEY"],
                         "Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).close()
            return SpanExportResult.SUCCESS

    spanlog.init_logger()
    provider = TracerProvider()
    if os.environ["OTEL_MODE"] == "spanlog":
        provider.add_span_processor(SpanProcessor())
    else:
        provider.add_span_processor(BatchSpanProcessor(Logs3Exporter(), schedule_delay_millis=50))
    tracer = provider.get_tracer("handler")

    def handler(event, context):
        with tracer.start_as_current_span("lambda.invocation"):
            with tracer.start_as_current_span("chat m") as call:
                call.set_attributes({"gen_ai.operation.name": "chat",
                                     "gen_ai.request.model": "m",
                                     "gen_ai.usage.input_tokens": 3,
                                     "gen_ai.usage.output_tokens": 1})
        return {"ok": True}
''')

Start = Callable[[str], tuple[LambdaFunction, str]]


@pytest.fixture
def start_function(collector: Any, slow_link: SlowLink, tmp_path: Path) -> Iterator[Start]:
    """Start the OTel handler under awslambdaric, logging through the slow link."""
    (tmp_path / "otel_handler.py").write_text(HANDLER)
    started: list[LambdaFunction] = []

    def start(mode: str) -> tuple[LambdaFunction, str]:
        project = f"lambda-otel-{mode}-{uuid.uuid4().hex[:8]}"
        env = {"SPANLOG_API_URL": slow_link.url, "SPANLOG_API_KEY": collector.api_key,
               "SPANLOG_PROJECT": project, "OTEL_MODE": mode}
        function = LambdaFunction(tmp_path, "otel_handler.handler", env, tmp_path)
        started.append(function)
        return function, project

    try:
        yield start
    finally:
        for function in started:
            function.close()


def test_otel_spans_through_spanlog_are_stored_before_the_freeze(
        start_function: Start, collector: Any) -> None:
    """Each invocation's OTel spans are in the collector when the runtime freezes, the LLM
    span as an llm row."""
    function, project = start_function("spanlog")
    for number in range(2):
        kind, reply, _ = function.invoke({"n": number})
        assert kind == "response", f"{reply}\n{function.process.output()}"
        rows = collector.fetch(project=project)
        assert len(rows) == 2 * (number + 1), function.process.output()
    llm = [row for row in rows if row["span_attributes"]["name"] == "chat m"]
    assert llm[0]["span_attributes"]["type"] == "llm"
    assert llm[0]["metadata"]["model"] == "m" and llm[0]["metrics"]["prompt_tokens"] == 3


def test_control_otel_batch_span_processor_loses_the_trace_at_the_freeze(
        start_function: Start, collector: Any) -> None:
    """Negative control: OTel's BatchSpanProcessor exports on its own thread, which the
    freeze stops first: nothing of the invocation is stored."""
    function, project = start_function("batch")
    kind, reply, _ = function.invoke({"n": 0})
    assert kind == "response", f"{reply}\n{function.process.output()}"
    assert collector.fetch(project=project) == [], "the batch processor delivered in time"
    # Thawed, the same process delivers them: the freeze alone was what lost them.
    function.process.thaw()
    wait_for(lambda: len(collector.fetch(project=project)) >= 2, 10 + 4 * LINK_DELAY,
             "the batch processor's export after a thaw")
