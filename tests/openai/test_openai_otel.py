"""A real OpenTelemetry instrumentation of the openai client, through spanlog's processor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai_rows import llm_rows
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from spanlog import _context
from spanlog.otel import SpanProcessor


@pytest.fixture
def instrumented() -> Iterator[None]:
    """OpenInference's openai instrumentation, its spans into spanlog's processor."""
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
        _context.bridge = None


def test_an_instrumented_chat_call_is_an_llm_row(
        instrumented: None, client: openai.OpenAI, collector: Any, project: str) -> None:
    """openinference-instrumentation-openai's span of a chat call arrives as an llm row with
    the model, the token counts and the prompt."""
    reply = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "hello there"}])
    assert reply.choices[0].message.content == "echo: hello there"
    [row] = llm_rows(collector, project, 1)
    assert row["metadata"]["model"] == "gpt-fake"
    usage = reply.usage
    assert usage is not None
    assert row["metrics"]["prompt_tokens"] == usage.prompt_tokens
    assert row["metrics"]["completion_tokens"] == usage.completion_tokens
    assert row["input"] == [{"role": "user", "content": "hello there"}]
    assert row["output"] == [{"role": "assistant", "content": "echo: hello there"}]
    assert "openinference" in str(row["metadata"]["otel"]["scope"])
