"""The OpenTelemetry span -> spanlog row mapping (spanlog._otel_rows, docs/otel.md).

The attribute sets below are built from what the instrumentations emit per their specs: the
OpenTelemetry GenAI semantic conventions (gen-ai-spans.md, gen-ai-events.md and the input /
output messages JSON schemas), OpenInference (spec/semantic_conventions.md, llm_spans.md),
the Vercel AI SDK (docs/03-ai-sdk-core/60-telemetry.mdx and its v5 attribute names),
OpenLLMetry (semconv_ai) and braintrust's OTel attribute reference.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanlog import _otel_rows
from spanlog._ids import row_id_for
from spanlog._merge import merge_into
from spanlog._otel_rows import (
    RESERVED_METADATA_KEYS,
    OtelEvent,
    OtelLink,
    OtelSpan,
    OtelSpanError,
    span_to_row,
)
from spanlog.server.query import evaluate, parse
from spanlog.server.rows._apply import apply_piece
from spanlog.server.rows._json import dumps
from spanlog.server.rows._validate import SPAN_TYPES, validate_row

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
PARENT = "00f067aa0ba902b7"
T0 = 1_717_171_717_123_456_789  # 2024-05-31T16:08:37.123456789Z
T1 = T0 + 1_250_000_000


def make(attributes: dict[str, Any] | None = None, **fields: Any) -> OtelSpan:
    """A finished span with valid ids and times, overridden by ``fields``."""
    base: dict[str, Any] = {
        "name": "span", "trace_id": bytes.fromhex(TRACE), "span_id": bytes.fromhex(SPAN),
        "parent_span_id": bytes.fromhex(PARENT), "start_time_unix_nano": T0,
        "end_time_unix_nano": T1, "attributes": attributes or {},
    }
    base.update(fields)
    return OtelSpan(**base)


def stored_shape(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as the collector checks it, with the project the caller adds."""
    return validate_row("rows[0]", {"project_name": "otel", **row})


def matches(expression: str, row: dict[str, Any]) -> bool:
    return evaluate(parse(expression), json.loads(dumps(row)))


def moved(row: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = row["metadata"]["otel"].get("moved", {})
    return result


def kept(row: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = row["metadata"].get("attributes", {})
    return result


# ---- realistic spans, one per convention ------------------------------------------------------

# OTel GenAI, current conventions (v1.37+): structured messages with parts, usage details.
GENAI_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.request.max_tokens": 200,
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-9J3uIL87gldCFtiIbyaOvTeYBRA3l",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.conversation.id": "conv_5j66UpCpwteGg4YSxUnt7lPY",
    "gen_ai.usage.input_tokens": 97,
    "gen_ai.usage.output_tokens": 52,
    "gen_ai.usage.cache_read.input_tokens": 64,
    "gen_ai.usage.reasoning.output_tokens": 12,
    "server.address": "api.openai.com",
    "server.port": 443,
    "gen_ai.system_instructions": [{"type": "text", "content": "You are a weather bot."}],
    "gen_ai.input.messages": [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {"role": "assistant", "parts": [
            {"type": "tool_call", "id": "call_VSPygqKTWdrhaFErNvMV18Yl", "name": "get_weather",
             "arguments": {"location": "Paris"}}]},
        {"role": "tool", "parts": [
            {"type": "tool_call_response", "id": "call_VSPygqKTWdrhaFErNvMV18Yl",
             "response": "rainy, 57°F"}]},
    ],
    "gen_ai.output.messages": [
        {"role": "assistant", "parts": [
            {"type": "text", "content": "The weather in Paris is rainy, 57°F."}],
         "finish_reason": "stop"},
    ],
}

# OpenLLMetry (traceloop) and the GenAI conventions up to v1.36: indexed prompt/completion.
OPENLLMETRY_CHAT = {
    "llm.request.type": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "You are a helpful assistant.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": "What is the weather in Rome?",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.finish_reason": "tool_calls",
    "gen_ai.completion.0.tool_calls.0.id": "call_1",
    "gen_ai.completion.0.tool_calls.0.name": "get_weather",
    "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Rome"}',
    "gen_ai.usage.prompt_tokens": 31,
    "gen_ai.usage.completion_tokens": 17,
    "llm.usage.total_tokens": 48,
    "llm.is_streaming": False,
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
}

# OpenInference (openinference-instrumentation-openai on chat.completions.create).
OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "azure",
    "llm.model_name": "gpt-3.5-turbo-0613",
    "llm.invocation_parameters": '{"model": "gpt-3.5-turbo-0613", "temperature": 0.1}',
    "input.value": '{"messages": [{"role": "user", "content": "what is 23 times 87"}]}',
    "input.mime_type": "application/json",
    "output.value": '{"tool_calls": [{"id": "call_Re47", "type": "function"}]}',
    "output.mime_type": "application/json",
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "You are a Shakespearean writing assistant.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.content": "what is 23 times 87",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_Re47",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "multiply",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments":
        '{\n  "a": 23,\n  "b": 87\n}',
    "llm.tools.0.tool.json_schema": '{"type": "function", "function": {"name": "multiply"}}',
    "llm.token_count.prompt": 229,
    "llm.token_count.completion": 21,
    "llm.token_count.total": 250,
    "llm.token_count.prompt_details.cache_read": 128,
    "llm.token_count.completion_details.reasoning": 7,
    "llm.cost.total": 0.0066,
    "session.id": "session-42",
    "user.id": "user-7",
    "metadata": '{"customer": "acme", "experiment": "b"}',
    "tag.tags": ["prod", "shakespeare"],
}

# The Vercel AI SDK v5: a provider call inside streamText, with tool use in the history.
VERCEL_DO_STREAM = {
    "operation.name": "ai.streamText.doStream weather-bot",
    "resource.name": "weather-bot",
    "ai.operationId": "ai.streamText.doStream",
    "ai.model.provider": "openai.chat",
    "ai.model.id": "gpt-4o-mini",
    "ai.settings.maxRetries": 2,
    "ai.telemetry.functionId": "weather-bot",
    "ai.telemetry.metadata.userId": "user-123",
    "ai.telemetry.metadata.plan": "pro",
    "ai.prompt.messages": json.dumps([
        {"role": "system", "content": "You answer weather questions."},
        {"role": "user", "content": [{"type": "text", "text": "And in Rome?"}]},
        {"role": "assistant", "content": [
            {"type": "tool-call", "toolCallId": "call_1", "toolName": "weather",
             "input": {"city": "Paris"}}]},
        {"role": "tool", "content": [
            {"type": "tool-result", "toolCallId": "call_1", "toolName": "weather",
             "output": {"type": "json", "value": {"temp": 14}}}]},
    ]),
    "ai.prompt.tools": ['{"type":"function","name":"weather","inputSchema":{"type":"object"}}'],
    "ai.prompt.toolChoice": '{"type":"auto"}',
    "gen_ai.system": "openai.chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.temperature": 0,
    "ai.response.msToFirstChunk": 412.5,
    "ai.response.msToFinish": 903.1,
    "ai.response.finishReason": "tool-calls",
    "ai.response.text": "",
    "ai.response.toolCalls": json.dumps([
        {"toolCallId": "call_2", "toolName": "weather", "input": '{"city":"Rome"}'}]),
    "ai.response.id": "chatcmpl-AB12",
    "ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.finish_reasons": ["tool-calls"],
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "ai.usage.inputTokens": 50,
    "ai.usage.outputTokens": 20,
    "ai.usage.totalTokens": 70,
    "gen_ai.usage.input_tokens": 50,
    "gen_ai.usage.output_tokens": 20,
}

# braintrust's own attributes, as its SDKs (Go, Java, Ruby) set them.
BRAINTRUST_EVAL = {
    "braintrust.parent": "project_name:support-bot",
    "braintrust.span_attributes": '{"type": "eval", "name": "eval case 3"}',
    "braintrust.input_json": json.dumps([{"role": "user", "content": "Where is order A-1187?"}]),
    "braintrust.output_json": json.dumps([{"role": "assistant", "content": "It shipped."}]),
    "braintrust.expected_json": json.dumps({"tool": "lookup_order"}),
    "braintrust.metadata": '{"model": "gpt-4o-mini-2024-07-18", "dataset": "orders"}',
    "braintrust.metrics": '{"prompt_tokens": 412, "completion_tokens": 27, "tokens": 439}',
    "braintrust.scores": '{"correctness": 1.0, "tone": 0.5}',
    "braintrust.tags": ["nightly"],
}

EXAMPLES = {
    "genai": GENAI_CHAT, "openllmetry": OPENLLMETRY_CHAT, "openinference": OPENINFERENCE_LLM,
    "vercel": VERCEL_DO_STREAM, "braintrust": BRAINTRUST_EVAL,
}


# ---- identity ---------------------------------------------------------------------------------

def test_ids_times_and_created_come_from_the_span() -> None:
    """span_id, root_span_id and span_parents are the OTel ids in hex; times are Unix seconds."""
    row = span_to_row(make(name="GET /chat"))
    assert row["span_id"] == SPAN and row["root_span_id"] == TRACE
    assert row["span_parents"] == [PARENT]
    assert row["span_attributes"] == {"name": "GET /chat"}
    assert row["metrics"]["start"] == pytest.approx(T0 / 1e9, abs=1e-6)
    assert row["metrics"]["end"] == pytest.approx(T1 / 1e9, abs=1e-6)
    assert row["created"] == "2024-05-31T16:08:37.123456+00:00"
    assert row["_is_merge"] is False
    assert "log_id" not in row and "project_id" not in row and "project_name" not in row


def test_hex_string_ids_are_accepted_and_lowercased() -> None:
    """OTLP/JSON sends ids as hex strings; they become the same lowercase ids as bytes do."""
    row = span_to_row(make(trace_id=TRACE.upper(), span_id=SPAN.upper(), parent_span_id=PARENT))
    assert row == span_to_row(make())


@pytest.mark.parametrize("parent", [None, b"", "", bytes(8), "0" * 16])
def test_a_span_without_a_parent_is_a_root(parent: Any) -> None:
    """No parent (absent, empty, or W3C's all-zero id) gives span_parents null."""
    assert span_to_row(make(parent_span_id=parent))["span_parents"] is None


def test_row_id_is_derived_so_a_retried_export_is_the_same_row() -> None:
    """The row id is row_id_for(trace, span): a re-sent span gives the same row, byte for byte."""
    first, again = span_to_row(make(GENAI_CHAT)), span_to_row(make(GENAI_CHAT))
    assert first["id"] == row_id_for(TRACE, SPAN)
    assert dumps(first) == dumps(again)
    other = span_to_row(make(GENAI_CHAT, span_id=bytes.fromhex("c7ad6b7169203331")))
    assert other["id"] != first["id"]


def test_a_retry_changes_nothing_in_the_store_even_after_feedback() -> None:
    """The collector sees a re-sent span as a retry: feedback merged in between survives."""
    row = span_to_row(make(GENAI_CHAT))
    stored = apply_piece(None, row)
    assert stored is not None
    feedback = {"id": row["id"], "scores": {"helpful": 1}, "_is_merge": True}
    with_feedback = apply_piece(stored, feedback)
    assert with_feedback is not None
    assert apply_piece(with_feedback, row) is None
    assert with_feedback.data["scores"] == {"helpful": 1}
    assert with_feedback.data["input"] == row["input"]


def test_feedback_that_overtook_the_span_is_kept() -> None:
    """Feedback logged before the span arrives stays on the row when the span lands."""
    row = span_to_row(make(GENAI_CHAT))
    early = apply_piece(None, {"id": row["id"], "scores": {"helpful": 0}, "_is_merge": True})
    assert early is not None
    landed = apply_piece(early, row)
    assert landed is not None
    assert landed.data["scores"] == {"helpful": 0}
    assert landed.data["span_id"] == SPAN and landed.data["output"] == row["output"]
    assert merge_into(None, row)["id"] == row["id"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_row_passes_the_collectors_validation(name: str) -> None:
    """Each convention's row is a valid piece for the collector once a project is added."""
    row = span_to_row(make(EXAMPLES[name], status_code="ERROR", status_message="failed"))
    stored_shape(row)
    assert row["span_attributes"]["type"] in SPAN_TYPES
    json.dumps(row, allow_nan=False)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_attribute_of_every_example_is_kept_or_moved(name: str) -> None:
    """Each attribute is either in metadata.attributes, as sent, or listed as moved."""
    attributes = EXAMPLES[name]
    row = span_to_row(make(attributes))
    assert set(kept(row)) | set(moved(row)) == set(attributes)
    assert not set(kept(row)) & set(moved(row))
    for key, value in kept(row).items():
        assert value == attributes[key]


# ---- bad spans --------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"trace_id": b""}, "trace_id: 0 bytes, expected 16"),
    ({"trace_id": bytes(16)}, "trace_id: all zeros"),
    ({"trace_id": "0" * 32}, "trace_id: all zeros"),
    ({"trace_id": bytes(range(1, 16))}, "trace_id: 15 bytes, expected 16"),
    ({"trace_id": "zz" * 16}, "trace_id: 'zzzz"),
    ({"trace_id": 12345}, "trace_id: must be bytes or a hex string, got int"),
    ({"span_id": b"\x01\x02\x03\x04"}, "span_id: 4 bytes, expected 8"),
    ({"span_id": "abc"}, "span_id: 3 hex characters, expected 16"),
    ({"span_id": bytes(8)}, "span_id: all zeros"),
    ({"parent_span_id": b"\x01" * 5}, "parent_span_id: 5 bytes, expected 8"),
    ({"parent_span_id": bytes(4)}, "parent_span_id: 4 bytes, expected 8"),
    ({"start_time_unix_nano": 0}, "start_time_unix_nano: 0"),
    ({"end_time_unix_nano": 0}, "end_time_unix_nano: 0"),
    ({"end_time_unix_nano": T0 - 1}, f"end_time_unix_nano: {T0 - 1} is before"),
    ({"start_time_unix_nano": 1.5e18}, "start_time_unix_nano: must be an integer"),
    ({"end_time_unix_nano": 10**21}, "after the year 9999"),
    ({"kind": "SPAN_KIND_SIDEWAYS"}, "kind: 'SPAN_KIND_SIDEWAYS' is not one of"),
    ({"status_code": 7}, "status_code: 7 is not one of UNSET, OK, ERROR"),
    ({"name": None}, "name: must be a string"),
    ({"attributes": {"when": object()}}, "attributes['when']: unsupported value of type object"),
    ({"attributes": {3: "x"}}, "attributes: key 3 is not a string"),
    ({"attributes": ["not", "a", "mapping"]}, "attributes: must be a mapping"),
    ({"resource_attributes": {"k": {1: 2}}}, "resource_attributes['k']: key 1 is not a string"),
    ({"events": [OtelEvent("x", -1)]}, "events[0].time_unix_nano: must be a non-negative"),
    ({"links": [OtelLink(trace_id=None, span_id=SPAN)]},  # type: ignore[arg-type]
     "links[0].trace_id: must be bytes or a hex string"),
    ({"events": [OtelEvent(None, T0)]}, "events[0].name: must be a string"),  # type: ignore[arg-type]
    ({"scope_name": b"otel"}, "scope_name: must be a string, got bytes"),
    ({"dropped_events_count": -1}, "dropped_events_count: must be a non-negative integer"),
    ({"flags": "sampled"}, "flags: must be a non-negative integer, got 'sampled'"),
])
def test_a_bad_span_raises_an_error_that_names_the_problem(fields: dict[str, Any],
                                                           message: str) -> None:
    """Bad ids, times, enums and values raise OtelSpanError (a ValueError) saying what is wrong."""
    with pytest.raises(OtelSpanError) as caught:
        span_to_row(make(**fields))
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_deeply_nested_values_are_refused_not_a_recursion_error() -> None:
    """A value nested beyond 64 levels is an OtelSpanError, never a crash."""
    value: Any = "leaf"
    for _ in range(200):
        value = [value]
    with pytest.raises(OtelSpanError, match="nested more than 64 levels"):
        span_to_row(make({"deep": value}))


UNSTORABLE_JSON = {
    "too deep": "[" * 65 + "]" * 65,
    "a NUL": '{"a": "x\\u0000y"}',
    "a lone surrogate": '["\\ud800"]',
    "a number beyond a double": '{"a": 1e400}',
    "NaN": '{"a": NaN}',
}


@pytest.mark.parametrize("name", sorted(UNSTORABLE_JSON))
def test_json_a_row_cannot_hold_stays_the_string_sent(name: str) -> None:
    """A JSON string attribute is decoded only into what a stored row can hold (64 levels,
    finite numbers, no NUL, no lone surrogate); otherwise the string is the value, as sent."""
    text = UNSTORABLE_JSON[name]
    row = span_to_row(make({"gen_ai.operation.name": "execute_tool",
                            "gen_ai.tool.call.arguments": text,
                            "braintrust.output_json": text, "braintrust.metadata": text}))
    assert row["input"] == text and "output" not in row
    assert kept(row) == {"gen_ai.operation.name": "execute_tool",
                         "braintrust.output_json": text, "braintrust.metadata": text}
    stored_shape(row)


def test_json_a_row_can_hold_is_decoded() -> None:
    """Escapes, floats and 64 levels of nesting are JSON a row holds: decoded."""
    deepest = "[" * 64 + "]" * 64
    escaped = '{"caf\\u00e9": [1.5, -0.0, "\\ud83d\\ude00"]}'
    row = span_to_row(make({"braintrust.input_json": deepest,
                            "braintrust.output_json": escaped}))
    assert row["input"] == json.loads(deepest)
    assert row["output"] == {"caf\u00e9": [1.5, -0.0, "\U0001f600"]}


# ---- errors -----------------------------------------------------------------------------------

EXCEPTION = OtelEvent("exception", T0 + 1_000_000_000, {
    "exception.type": "openai.RateLimitError",
    "exception.message": "Error code: 429 - rate limit reached",
    "exception.stacktrace": 'Traceback (most recent call last):\n  File "app.py", line 9, in '
                            "answer\nopenai.RateLimitError: Error code: 429",
    "exception.escaped": True,
})


def test_error_status_records_the_message_and_the_exception_event() -> None:
    """ERROR status: error holds the status message and the exception's type, message, stack."""
    row = span_to_row(make(GENAI_CHAT, status_code="STATUS_CODE_ERROR",
                           status_message="upstream refused", events=[EXCEPTION]))
    assert row["error"] == (
        "upstream refused\n\nopenai.RateLimitError: Error code: 429 - rate limit reached\n"
        'Traceback (most recent call last):\n  File "app.py", line 9, in answer\n'
        "openai.RateLimitError: Error code: 429")
    [event] = row["metadata"]["events"]
    assert event["name"] == "exception"
    assert event["attributes"] == {"exception.escaped": True}
    assert event["moved"] == {"exception.type": "error", "exception.message": "error",
                              "exception.stacktrace": "error"}
    assert event["time"] == pytest.approx((T0 + 1_000_000_000) / 1e9)
    assert row["metadata"]["otel"]["status"] == {"code": "ERROR", "message": "upstream refused"}


def test_a_status_message_that_repeats_the_exception_is_not_written_twice() -> None:
    """A status message equal to the exception's "Type: message" is not written twice."""
    status = "openai.RateLimitError: Error code: 429 - rate limit reached"
    row = span_to_row(make(status_code=2, status_message=status, events=[EXCEPTION]))
    assert row["error"].startswith(status + "\nTraceback")
    assert row["error"].count(status) == 1


@pytest.mark.parametrize(("attributes", "message", "error"), [
    ({}, "deadline exceeded", "deadline exceeded"),
    ({"error.type": "timeout"}, "", "timeout"),
    ({}, "", "ERROR"),
])
def test_error_status_without_an_exception_event(attributes: dict[str, Any], message: str,
                                                 error: str) -> None:
    """Without an exception event, error is the status message, else error.type, else ERROR."""
    row = span_to_row(make(attributes, status_code="ERROR", status_message=message))
    assert row["error"] == error
    assert matches("error IS NOT NULL", row)


def test_a_recorded_exception_without_error_status_is_not_an_error() -> None:
    """An exception event on an OK or UNSET span (handled) stays an event; no error."""
    for status in ("OK", "UNSET"):
        row = span_to_row(make(status_code=status, events=[EXCEPTION]))
        assert "error" not in row
        [event] = row["metadata"]["events"]
        assert event["attributes"] == dict(EXCEPTION.attributes) and "moved" not in event


# ---- OpenTelemetry GenAI ---------------------------------------------------------------------

def test_genai_chat_span_becomes_an_llm_row() -> None:
    """GenAI chat span: parts messages, usage, model and provider make an llm row."""
    row = span_to_row(make(GENAI_CHAT, name="chat gpt-4o", kind="SPAN_KIND_CLIENT"))
    assert row["span_attributes"] == {"name": "chat gpt-4o", "type": "llm"}
    assert row["input"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_VSPygqKTWdrhaFErNvMV18Yl", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_VSPygqKTWdrhaFErNvMV18Yl",
         "content": "rainy, 57°F"},
    ]
    assert row["output"] == [{"role": "assistant", "content": "The weather in Paris is rainy, "
                              "57°F.", "finish_reason": "stop"}]
    metrics = row["metrics"]
    assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"]) == (
        97, 52, 149)
    assert metrics["prompt_cached_tokens"] == 64
    assert metrics["completion_reasoning_tokens"] == 12
    metadata = row["metadata"]
    assert metadata["model"] == "gpt-4o" and metadata["provider"] == "openai"
    assert metadata["temperature"] == 0.2 and metadata["max_tokens"] == 200
    assert moved(row) == {"gen_ai.input.messages": "input", "gen_ai.output.messages": "output",
                          "gen_ai.system_instructions": "input"}
    assert kept(row)["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert kept(row)["gen_ai.usage.input_tokens"] == 97
    assert metadata["otel"]["kind"] == "CLIENT"
    assert metadata["otel"]["conventions"] == ["genai"]


def test_genai_messages_sent_as_json_strings() -> None:
    """The same messages recorded as JSON strings (the spec allows it) map the same way."""
    as_text = dict(GENAI_CHAT)
    for key in ("gen_ai.input.messages", "gen_ai.output.messages",
                "gen_ai.system_instructions"):
        as_text[key] = json.dumps(GENAI_CHAT[key])
    row, structured = span_to_row(make(as_text)), span_to_row(make(GENAI_CHAT))
    assert row["input"] == structured["input"] and row["output"] == structured["output"]


def test_repeated_system_instructions_map_as_the_first_time_and_share_nothing() -> None:
    """The last gen_ai.system_instructions string's messages are kept (an application sends
    the same with every call): the next span with it gets equal messages that share no dict
    with the first row, and other instructions, or parts with a list inside, map afresh."""
    def row_of(instructions: str) -> dict[str, Any]:
        return span_to_row(make({"gen_ai.operation.name": "chat",
                                 "gen_ai.system_instructions": instructions}))

    plain = json.dumps([{"type": "text", "content": "Be brief."}])
    first = row_of(plain)
    assert first["input"] == [{"role": "system", "content": "Be brief."}]
    first["input"][0]["content"] = "changed by whoever holds the row"
    again = row_of(plain)
    assert again["input"] == [{"role": "system", "content": "Be brief."}]
    assert again["input"][0] is not row_of(plain)["input"][0]
    other = json.dumps([{"type": "text", "content": "Be thorough."}])
    assert row_of(other)["input"] == [{"role": "system", "content": "Be thorough."}]
    assert row_of(plain)["input"] == [{"role": "system", "content": "Be brief."}]
    nested = json.dumps([{"type": "text", "content": "A"}, {"type": "image", "tags": ["x"]}])
    for _ in range(2):
        row = row_of(nested)
        assert row["input"] == [{"role": "system", "content": [
            {"type": "text", "text": "A"}, {"type": "image", "tags": ["x"]}]}]
        row["input"][0]["content"][1]["tags"].append("changed")
    assert row_of("not JSON")["input"] == [{"role": "system", "content": "not JSON"}]
    assert row_of("not JSON")["input"] == [{"role": "system", "content": "not JSON"}]


def test_genai_parts_without_an_openai_spelling_are_kept_as_sent() -> None:
    """Several parts (text plus an image, reasoning) keep the list of parts as content."""
    image = {"type": "uri", "modality": "image", "mime_type": "image/png",
             "uri": "https://example.com/cat.png"}
    thinking = {"type": "reasoning", "content": "The user wants a caption."}
    row = span_to_row(make({
        "gen_ai.operation.name": "chat",
        "gen_ai.input.messages": json.dumps([{"role": "user", "name": "ana", "parts": [
            {"type": "text", "content": "Caption this:"}, image]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                               "parts": [thinking,
                                                         {"type": "text", "content": "A cat."}]}]),
    }))
    assert row["input"] == [{"role": "user", "name": "ana", "content": [
        {"type": "text", "text": "Caption this:"}, image]}]
    assert row["output"] == [{"role": "assistant", "finish_reason": "stop", "content": [
        thinking, {"type": "text", "text": "A cat."}]}]


@pytest.mark.parametrize("message", [
    {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
    {"role": "assistant", "parts": [{"type": "text", "content": "Hi"}], "finish_reason": "stop"},
    {"parts": [{"type": "text", "content": "no role"}], "name": "ana"},
    {"parts": [{"type": "text"}]},
    {"role": "user", "content": "shadowed", "parts": [{"type": "text", "content": "Hi"}]},
    {"role": "user", "parts": [{"type": "text", "content": None, "extra": 1}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": 3}]},
    {"role": "user", "parts": []},
    {"role": "user", "parts": "not a list"},
    "not a message",
])
def test_a_one_text_part_genai_message_reads_as_the_general_way_reads_it(message: Any) -> None:
    """_genai_message reads a message of one text part directly: the same as
    _message_of_parts makes of it (and of every other message, which it is given)."""
    general = _otel_rows._message_of_parts(message, "parts", _otel_rows._genai_part)
    assert _otel_rows._genai_message(message) == general
    assert [list(m) for m in _otel_rows._genai_message(message) if isinstance(m, dict)] \
        == [list(m) for m in general if isinstance(m, dict)]  # and the keys' order


def test_openllmetry_indexed_prompt_and_completion() -> None:
    """Indexed gen_ai.prompt.N / gen_ai.completion.N (OpenLLMetry) become messages and tokens."""
    row = span_to_row(make(OPENLLMETRY_CHAT, name="openai.chat"))
    assert row["span_attributes"]["type"] == "llm"
    assert row["input"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the weather in Rome?"}]
    assert row["output"] == [{"role": "assistant", "finish_reason": "tool_calls", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}]
    assert row["metrics"]["prompt_tokens"] == 31
    assert row["metrics"]["completion_tokens"] == 17
    assert row["metrics"]["tokens"] == 48
    assert row["metadata"]["provider"] == "openai"
    assert row["metadata"]["model"] == "gpt-4o-mini"
    assert set(moved(row)) == {k for k in OPENLLMETRY_CHAT
                               if k.startswith(("gen_ai.prompt.", "gen_ai.completion."))}
    assert row["metadata"]["otel"]["conventions"] == ["genai", "openllmetry"]


def test_gen_ai_prompt_name_is_not_mistaken_for_a_message() -> None:
    """gen_ai.prompt.name (a prompt template's name) is not an indexed message: it stays."""
    row = span_to_row(make({"gen_ai.operation.name": "chat", "gen_ai.prompt.name": "greet",
                            "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hi"}))
    assert row["input"] == [{"role": "user", "content": "hi"}]
    assert kept(row) == {"gen_ai.operation.name": "chat", "gen_ai.prompt.name": "greet"}


def test_genai_message_events() -> None:
    """gen_ai.*.message events are the input, gen_ai.choice events the output."""
    events = [
        OtelEvent("gen_ai.system.message", T0, {"gen_ai.system": "openai",
                                                "content": "You are terse."}),
        OtelEvent("gen_ai.user.message", T0, {
            "gen_ai.system": "openai",
            "gen_ai.event.content": '{"content": "What is 2+2?", "role": "user"}'}),
        OtelEvent("gen_ai.assistant.message", T0, {"tool_calls": json.dumps([
            {"id": "call_9", "type": "function",
             "function": {"name": "add", "arguments": '{"a":2,"b":2}'}}])}),
        OtelEvent("gen_ai.tool.message", T0, {"id": "call_9", "content": "4"}),
        OtelEvent("gen_ai.choice", T1, {"gen_ai.system": "openai", "gen_ai.event.content":
                                        '{"index": 0, "finish_reason": "stop", '
                                        '"message": {"content": "4"}}'}),
    ]
    row = span_to_row(make({"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                            "gen_ai.request.model": "gpt-4"}, events=events))
    assert row["input"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_9", "type": "function",
             "function": {"name": "add", "arguments": '{"a":2,"b":2}'}}]},
        {"role": "tool", "content": "4", "tool_call_id": "call_9"},
    ]
    assert row["output"] == [{"role": "assistant", "content": "4", "finish_reason": "stop",
                              "index": 0}]
    recorded = row["metadata"]["events"]
    assert [e["name"] for e in recorded] == [e.name for e in events]
    assert recorded[1]["attributes"] == {"gen_ai.system": "openai"}
    assert recorded[1]["moved"] == {"gen_ai.event.content": "input"}
    assert recorded[4]["moved"] == {"gen_ai.event.content": "output"}


def test_events_without_content_leave_input_empty() -> None:
    """With content capture off, message events carry no content: no input, events intact."""
    row = span_to_row(make({"gen_ai.operation.name": "chat"}, events=[
        OtelEvent("gen_ai.user.message", T0, {"gen_ai.system": "openai"}),
        OtelEvent("gen_ai.choice", T1, {"index": 0, "finish_reason": "stop"})]))
    assert "input" not in row and "output" not in row
    assert all("moved" not in e for e in row["metadata"]["events"])


def test_genai_messages_on_the_operation_details_event() -> None:
    """Messages on a gen_ai.client.inference.operation.details event are used."""
    details = OtelEvent("gen_ai.client.inference.operation.details", T1, {
        "gen_ai.operation.name": "chat",
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}],
        "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "stop",
                                    "parts": [{"type": "text", "content": "Hello!"}]}],
    })
    row = span_to_row(make({"gen_ai.operation.name": "chat"}, events=[details]))
    assert row["input"] == [{"role": "user", "content": "Hi"}]
    assert row["output"] == [{"role": "assistant", "content": "Hello!", "finish_reason": "stop"}]
    [event] = row["metadata"]["events"]
    assert event["attributes"] == {"gen_ai.operation.name": "chat"}


def test_genai_execute_tool_span_is_a_tool_row() -> None:
    """execute_tool is a tool row with the call's arguments as input and result as output."""
    row = span_to_row(make({
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.id": "call_mszuSIzqtI65i1wAUOE8w5H4",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.arguments": '{"location": "San Francisco?", "date": "2025-10-01"}',
        "gen_ai.tool.call.result": {"temperature_range": {"high": 75, "low": 60},
                                    "conditions": "sunny"},
    }, name="execute_tool get_weather", kind="INTERNAL"))
    assert row["span_attributes"] == {"name": "execute_tool get_weather", "type": "tool"}
    assert row["input"] == {"location": "San Francisco?", "date": "2025-10-01"}
    assert row["output"] == {"temperature_range": {"high": 75, "low": 60}, "conditions": "sunny"}
    assert kept(row)["gen_ai.tool.name"] == "get_weather"


@pytest.mark.parametrize(("operation", "kind"), [
    ("invoke_agent", "task"), ("create_agent", "task"), ("invoke_workflow", "task"),
    ("retrieval", "function"), ("embeddings", "llm"), ("text_completion", "llm"),
    ("generate_content", "llm"),
])
def test_genai_operations_map_to_span_types(operation: str, kind: str) -> None:
    """Each well-known gen_ai.operation.name has its span type."""
    row = span_to_row(make({"gen_ai.operation.name": operation}))
    assert row["span_attributes"]["type"] == kind


def test_time_to_first_chunk_is_time_to_first_token() -> None:
    """gen_ai.response.time_to_first_chunk (seconds) is metrics.time_to_first_token."""
    row = span_to_row(make({"gen_ai.operation.name": "chat",
                            "gen_ai.response.time_to_first_chunk": 0.42}))
    assert row["metrics"]["time_to_first_token"] == 0.42


# ---- OpenInference ----------------------------------------------------------------------------

def test_openinference_llm_span() -> None:
    """OpenInference LLM span: messages, tokens, model, metadata and tags map; input.value stays."""
    row = span_to_row(make(OPENINFERENCE_LLM, name="ChatCompletion"))
    assert row["span_attributes"] == {"name": "ChatCompletion", "type": "llm"}
    assert row["input"] == [
        {"role": "system", "content": "You are a Shakespearean writing assistant."},
        {"role": "user", "content": "what is 23 times 87"}]
    assert row["output"] == [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_Re47", "type": "function",
         "function": {"name": "multiply", "arguments": '{\n  "a": 23,\n  "b": 87\n}'}}]}]
    metrics = row["metrics"]
    assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"]) == (
        229, 21, 250)
    assert metrics["prompt_cached_tokens"] == 128
    assert metrics["completion_reasoning_tokens"] == 7
    assert metrics["estimated_cost"] == 0.0066
    metadata = row["metadata"]
    assert metadata["model"] == "gpt-3.5-turbo-0613" and metadata["provider"] == "azure"
    assert metadata["customer"] == "acme" and metadata["experiment"] == "b"
    assert row["tags"] == ["prod", "shakespeare"]
    assert kept(row)["input.value"] == OPENINFERENCE_LLM["input.value"]
    assert kept(row)["session.id"] == "session-42"
    assert moved(row)["metadata"] == "metadata" and moved(row)["tag.tags"] == "tags"
    assert metadata["otel"]["conventions"] == ["openinference"]


def test_openinference_multimodal_contents() -> None:
    """message.contents (text and image items) become OpenAI content parts."""
    row = span_to_row(make({
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.contents.0.message_content.type": "text",
        "llm.input_messages.0.message.contents.0.message_content.text": "What is in this image?",
        "llm.input_messages.0.message.contents.1.message_content.type": "image",
        "llm.input_messages.0.message.contents.1.message_content.image.image.url":
            "https://example.com/dog.jpg",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.contents.0.message_content.type": "text",
        "llm.output_messages.0.message.contents.0.message_content.text": "A dog.",
    }))
    assert row["input"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}}]}]
    assert row["output"] == [{"role": "assistant", "content": "A dog."}]


def test_openinference_chain_span_uses_input_and_output_values() -> None:
    """A CHAIN span's input.value is decoded when its mime type is JSON; plain text stays."""
    row = span_to_row(make({
        "openinference.span.kind": "CHAIN",
        "input.value": '{"question": "What is OpenInference?"}',
        "input.mime_type": "application/json",
        "output.value": "A set of conventions.",
        "output.mime_type": "text/plain",
    }))
    assert row["span_attributes"]["type"] == "task"
    assert row["input"] == {"question": "What is OpenInference?"}
    assert row["output"] == "A set of conventions."
    assert kept(row) == {"openinference.span.kind": "CHAIN", "input.mime_type": "application/json",
                         "output.mime_type": "text/plain"}


def test_openinference_tool_span() -> None:
    """An OpenInference TOOL span is type tool, with the call's arguments as input."""
    row = span_to_row(make({
        "openinference.span.kind": "TOOL",
        "tool.name": "multiply",
        "tool.description": "Multiply two numbers",
        "tool.parameters": '{"type": "object", "properties": {"a": {}, "b": {}}}',
        "input.value": '{"a": 23, "b": 87}',
        "input.mime_type": "application/json",
        "output.value": "2001",
    }))
    assert row["span_attributes"]["type"] == "tool"
    assert row["input"] == {"a": 23, "b": 87} and row["output"] == "2001"
    assert kept(row)["tool.name"] == "multiply"


@pytest.mark.parametrize(("kind", "span_type"), [
    ("LLM", "llm"), ("EMBEDDING", "llm"), ("TOOL", "tool"), ("CHAIN", "task"),
    ("AGENT", "task"), ("RETRIEVER", "function"), ("RERANKER", "function"),
    ("GUARDRAIL", "function"), ("PROMPT", "function"), ("EVALUATOR", "score"),
])
def test_openinference_span_kinds_map_to_span_types(kind: str, span_type: str) -> None:
    """Each openinference.span.kind has its span type."""
    row = span_to_row(make({"openinference.span.kind": kind}))
    assert row["span_attributes"]["type"] == span_type


def test_openinference_legacy_completions() -> None:
    """llm.prompts.N.prompt.text and llm.choices.N.completion.text (completions API)."""
    row = span_to_row(make({
        "openinference.span.kind": "LLM",
        "llm.prompts.0.prompt.text": "Say this is a test",
        "llm.choices.0.completion.text": "This is a test.",
        "llm.choices.1.completion.text": "This is indeed a test.",
    }))
    assert row["input"] == "Say this is a test"
    assert row["output"] == ["This is a test.", "This is indeed a test."]


# ---- Vercel AI SDK ----------------------------------------------------------------------------

def test_vercel_provider_call_span() -> None:
    """AI SDK doStream span: tool parts, tool calls, v5 usage, first chunk, telemetry metadata."""
    row = span_to_row(make(VERCEL_DO_STREAM, name="ai.streamText.doStream"))
    assert row["span_attributes"]["type"] == "llm"
    assert row["input"] == [
        {"role": "system", "content": "You answer weather questions."},
        {"role": "user", "content": "And in Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "weather",
         "content": {"type": "json", "value": {"temp": 14}}},
    ]
    assert row["output"] == [{"role": "assistant", "content": "", "finish_reason": "tool-calls",
                              "tool_calls": [{"id": "call_2", "type": "function", "function": {
                                  "name": "weather", "arguments": '{"city":"Rome"}'}}]}]
    metrics = row["metrics"]
    assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"]) == (
        50, 20, 70)
    assert metrics["time_to_first_token"] == pytest.approx(0.4125)
    metadata = row["metadata"]
    assert metadata["model"] == "gpt-4o-mini" and metadata["provider"] == "openai.chat"
    assert metadata["userId"] == "user-123" and metadata["plan"] == "pro"
    assert moved(row) == {"ai.prompt.messages": "input", "ai.response.text": "output",
                          "ai.response.toolCalls": "output",
                          "ai.telemetry.metadata.plan": "metadata",
                          "ai.telemetry.metadata.userId": "metadata"}
    assert metadata["otel"]["conventions"] == ["genai", "vercel-ai"]


def test_vercel_generate_text_span_with_v4_usage() -> None:
    """AI SDK generateText span: ai.prompt, ai.response.text and v4 usage names map."""
    row = span_to_row(make({
        "operation.name": "ai.generateText",
        "ai.operationId": "ai.generateText",
        "ai.model.id": "claude-3-5-sonnet-latest",
        "ai.model.provider": "anthropic.messages",
        "ai.prompt": '{"system": "Be brief.", "prompt": "Write a haiku about tracing."}',
        "ai.response.text": "Spans nest like branches",
        "ai.response.finishReason": "stop",
        "ai.usage.promptTokens": 21,
        "ai.usage.completionTokens": 9,
        "ai.settings.maxOutputTokens": 100,
    }, name="ai.generateText"))
    assert row["span_attributes"]["type"] == "llm"
    assert row["input"] == [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Write a haiku about tracing."}]
    assert row["output"] == [{"role": "assistant", "content": "Spans nest like branches",
                              "finish_reason": "stop"}]
    assert row["metrics"]["tokens"] == 30
    assert row["metadata"]["model"] == "claude-3-5-sonnet-latest"
    assert row["metadata"]["provider"] == "anthropic.messages"


def test_vercel_tool_call_span() -> None:
    """ai.toolCall is type tool; ai.toolCall.args and .result are decoded input and output."""
    row = span_to_row(make({
        "operation.name": "ai.toolCall",
        "ai.operationId": "ai.toolCall",
        "ai.toolCall.name": "weather",
        "ai.toolCall.id": "call_2",
        "ai.toolCall.args": '{"city":"Rome"}',
        "ai.toolCall.result": '{"temp":19,"sky":"clear"}',
    }, name="ai.toolCall"))
    assert row["span_attributes"]["type"] == "tool"
    assert row["input"] == {"city": "Rome"} and row["output"] == {"temp": 19, "sky": "clear"}
    assert kept(row)["ai.toolCall.name"] == "weather"


def test_vercel_generate_object_output_is_the_object() -> None:
    """ai.generateObject: ai.response.object is decoded into output."""
    row = span_to_row(make({
        "ai.operationId": "ai.generateObject",
        "ai.prompt": '{"prompt": "A lasagna recipe."}',
        "ai.response.object": '{"recipe": {"name": "Lasagna", "steps": ["boil", "bake"]}}',
        "ai.schema.name": "Recipe",
    }))
    assert row["input"] == [{"role": "user", "content": "A lasagna recipe."}]
    assert row["output"] == {"recipe": {"name": "Lasagna", "steps": ["boil", "bake"]}}


# ---- braintrust -------------------------------------------------------------------------------

def test_braintrust_json_attributes_set_the_fields_directly() -> None:
    """braintrust.* JSON attributes set every row field; braintrust.parent names the project."""
    row = span_to_row(make(BRAINTRUST_EVAL, name="eval"))
    assert row["span_attributes"] == {"name": "eval case 3", "type": "eval"}
    assert row["input"] == [{"role": "user", "content": "Where is order A-1187?"}]
    assert row["output"] == [{"role": "assistant", "content": "It shipped."}]
    assert row["expected"] == {"tool": "lookup_order"}
    assert row["metadata"]["model"] == "gpt-4o-mini-2024-07-18"
    assert row["metadata"]["dataset"] == "orders"
    assert row["metrics"]["prompt_tokens"] == 412 and row["metrics"]["tokens"] == 439
    assert row["scores"] == {"correctness": 1.0, "tone": 0.5}
    assert row["tags"] == ["nightly"]
    assert row["project_name"] == "support-bot"
    assert kept(row) == {"braintrust.parent": "project_name:support-bot"}


def test_braintrust_flattened_attributes() -> None:
    """Flattened braintrust.input.N.*, .metadata.*, .metrics.*, .scores.* set the same fields."""
    row = span_to_row(make({
        "braintrust.input.0.role": "system",
        "braintrust.input.0.content": "You are a helpful assistant.",
        "braintrust.input.1.role": "user",
        "braintrust.input.1.content": "What is the capital of Libya?",
        "braintrust.output.0.role": "assistant",
        "braintrust.output.0.content": "The capital of Libya is Tripoli.",
        "braintrust.metadata.model": "gpt-4o-mini",
        "braintrust.metadata.country": "Libya",
        "braintrust.metrics.prompt_tokens": 10,
        "braintrust.metrics.completion_tokens": 20,
        "braintrust.scores.accuracy": 1,
        "braintrust.span_attributes.type": "llm",
        "braintrust.parent": "project_id:4f9c0d3e-aaaa-bbbb-cccc-1234567890ab",
    }))
    assert row["input"] == [{"role": "system", "content": "You are a helpful assistant."},
                            {"role": "user", "content": "What is the capital of Libya?"}]
    assert row["output"] == [{"role": "assistant", "content": "The capital of Libya is Tripoli."}]
    assert row["metadata"]["model"] == "gpt-4o-mini" and row["metadata"]["country"] == "Libya"
    assert row["metrics"]["tokens"] == 30
    assert row["scores"] == {"accuracy": 1}
    assert row["span_attributes"]["type"] == "llm"
    assert row["project_id"] == "4f9c0d3e-aaaa-bbbb-cccc-1234567890ab"


def test_braintrust_plain_input_and_output_are_taken_as_sent() -> None:
    """braintrust.input/output/expected are taken as sent, even a string that looks like JSON."""
    row = span_to_row(make({"braintrust.input": "4", "braintrust.output": "5",
                            "braintrust.expected": "4"}))
    assert (row["input"], row["output"], row["expected"]) == ("4", "5", "4")


def test_a_null_value_is_a_value() -> None:
    """A null braintrust.input gives input null: the attribute is moved, not lost."""
    row = span_to_row(make({"braintrust.input": None, "braintrust.output_json": "null"}))
    assert row["input"] is None and row["output"] is None
    assert moved(row) == {"braintrust.input": "input", "braintrust.output_json": "output"}


def test_braintrust_json_that_does_not_parse_stays_in_metadata() -> None:
    """A braintrust.input_json that is not JSON is not the input and stays in metadata."""
    row = span_to_row(make({"braintrust.input_json": "{'role': 'user'}"}))
    assert "input" not in row
    assert kept(row) == {"braintrust.input_json": "{'role': 'user'}"}


def test_scores_and_metrics_the_collector_would_refuse_stay_in_metadata() -> None:
    """Scores and metrics the collector would refuse are not applied; their attributes stay."""
    row = span_to_row(make({
        "braintrust.scores": '{"accuracy": 1.5, "tone": 0.5}',
        "braintrust.scores.relevance": "high",
        "braintrust.metrics": '{"prompt_tokens": 3, "start": 1}',
        "braintrust.metrics.note": "n/a",
        "braintrust.span_attributes": '{"type": "automation"}',
    }))
    stored_shape(row)
    assert row["scores"] == {"tone": 0.5}
    assert row["metrics"]["prompt_tokens"] == 3 and row["metrics"]["start"] == T0 / 1e9
    assert "type" not in row["span_attributes"]
    assert set(kept(row)) == {"braintrust.scores", "braintrust.scores.relevance",
                              "braintrust.metrics", "braintrust.metrics.note",
                              "braintrust.span_attributes"}


def test_an_int_beyond_a_double_is_kept_as_its_digits() -> None:
    """An int a double cannot hold (OTLP/JSON and the SDK take any int; the collector refuses
    such a number, docs/collector.md) is no metric or score: an attribute keeps its decimal
    string, as proto3's JSON mapping writes an int64, and JSON holding one is not decoded."""
    huge = 10 ** 400
    limit = 2 ** 1024 - 2 ** 970  # the first int float() refuses
    row = span_to_row(make({
        "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": huge,
        "gen_ai.usage.output_tokens": 2, "edge": limit - 1, "over": -limit,
        "nested": [1, {"n": huge}],
        "braintrust.scores": json.dumps({"a": 1, "b": 1}).replace("1}", f"{huge}}}"),
        "gen_ai.tool.call.arguments": f'{{"n": {huge}}}'}))
    stored_shape(row)
    assert row["metrics"]["completion_tokens"] == 2
    assert "prompt_tokens" not in row["metrics"] and "tokens" not in row["metrics"]
    assert "scores" not in row and row["input"] == f'{{"n": {huge}}}'  # as sent
    assert kept(row)["gen_ai.usage.input_tokens"] == str(huge)
    assert kept(row)["edge"] == limit - 1 and kept(row)["over"] == str(-limit)
    assert kept(row)["nested"] == [1, {"n": str(huge)}]


@pytest.mark.parametrize("fields, message", [
    ({"dropped_links_count": 2**32}, "dropped_links_count: 4294967296 is over 4294967295"),
    ({"flags": 2**40}, "flags: 1099511627776 is over 4294967295"),
    ({"events": [OtelEvent("e", 10**30)]}, "events[0].time_unix_nano: 10000000000000000000"),
])
def test_counts_and_event_times_beyond_otlps_range_refuse_the_span(
        fields: dict[str, Any], message: str) -> None:
    """A uint32 count or flags over its range, an event time past the year 9999: the span is
    refused naming the field (a row could not hold the value, or its time as a float)."""
    with pytest.raises(OtelSpanError, match=re.escape(message)):
        span_to_row(dataclasses.replace(make({}), **fields))


def test_braintrust_attributes_win_over_other_conventions() -> None:
    """braintrust.input_json wins over gen_ai.input.messages, which stays in metadata."""
    attributes = {**GENAI_CHAT, "braintrust.input_json": '"the real input"'}
    row = span_to_row(make(attributes))
    assert row["input"] == "the real input"
    assert kept(row)["gen_ai.input.messages"] == GENAI_CHAT["gen_ai.input.messages"]
    assert kept(row)["gen_ai.system_instructions"] == GENAI_CHAT["gen_ai.system_instructions"]
    assert moved(row)["braintrust.input_json"] == "input"


def test_user_metadata_never_takes_the_reserved_keys() -> None:
    """User metadata keys named like a layout key are not promoted; their attribute stays."""
    row = span_to_row(make({"braintrust.metadata": '{"otel": 1, "region": "eu"}',
                            "ai.telemetry.metadata.attributes": "mine"},
                           resource_attributes={"service.name": "checkout"}))
    metadata = row["metadata"]
    assert metadata["region"] == "eu"
    assert metadata["resource"] == {"service.name": "checkout"}
    assert set(kept(row)) == {"braintrust.metadata", "ai.telemetry.metadata.attributes"}
    assert RESERVED_METADATA_KEYS == {"attributes", "resource", "events", "links", "otel"}


# ---- the metadata layout ----------------------------------------------------------------------

def plain_http_span() -> OtelSpan:
    return make(
        {"http.request.method": "POST", "http.route": "/chat", "http.response.status_code": 200,
         "url.scheme": "https", "app.retries": 2, "app.ratio": 0.25, "app.cached": True,
         "app.regions": ["eu-west-1", "us-east-1"], "app.shape": {"w": 2, "h": [1, 2]},
         "app.blob": b"\x00\xff", "app.nan": math.nan, "app.inf": -math.inf, "app.none": None},
        name="POST /chat", kind="SPAN_KIND_SERVER", status_code="OK",
        resource_attributes={"service.name": "checkout", "service.version": "1.4.2",
                             "deployment.environment.name": "prod"},
        scope_name="opentelemetry.instrumentation.fastapi", scope_version="0.48b0",
        scope_attributes={"library.flavor": "asgi"},
        events=[OtelEvent("cache.miss", T0 + 5, {"cache.key": "user:7"})],
        links=[OtelLink(trace_id=bytes.fromhex("1" * 32), span_id="ABCDEF0123456789",
                        attributes={"link.reason": "batch"}, trace_state="vendor=1")],
        trace_state="rojo=00f067aa0ba902b7", flags=1,
        dropped_attributes_count=3, dropped_events_count=1)


def test_a_span_of_no_ai_convention_keeps_everything_in_metadata() -> None:
    """A plain HTTP span has no type and keeps attributes, resource, events, links, otel."""
    row = span_to_row(plain_http_span())
    assert row["span_attributes"] == {"name": "POST /chat"}
    assert not {"input", "output", "error", "scores", "tags"} & set(row)
    metadata = row["metadata"]
    assert set(metadata) == {"attributes", "resource", "events", "links", "otel"}
    assert metadata["resource"]["service.name"] == "checkout"
    assert metadata["events"] == [{"name": "cache.miss", "time": (T0 + 5) / 1e9,
                                   "attributes": {"cache.key": "user:7"}}]
    assert metadata["links"] == [{"trace_id": "1" * 32, "span_id": "abcdef0123456789",
                                  "trace_state": "vendor=1",
                                  "attributes": {"link.reason": "batch"}}]
    assert metadata["otel"] == {
        "kind": "SERVER", "status": {"code": "OK"},
        "scope": {"name": "opentelemetry.instrumentation.fastapi", "version": "0.48b0",
                  "attributes": {"library.flavor": "asgi"}},
        "trace_state": "rojo=00f067aa0ba902b7", "flags": 1,
        "dropped": {"attributes": 3, "events": 1}}
    stored_shape(row)


def test_every_attribute_the_conventions_read_is_under_a_mapped_root() -> None:
    """A span skips the conventions when no attribute is under _MAPPED_ROOTS (or in
    _MAPPED_KEYS): every dotted attribute name in the module's code must be under one, except
    the exception event's and error.type, which span_to_row reads itself."""
    source = Path(_otel_rows.__file__).read_text()
    names = {node.value for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and re.fullmatch(r"[a-z_]+\.([A-Za-z_0-9]+\.?)*", node.value)}
    roots = {name.split(".")[0] for name in names} - {"exception", "error"}
    assert len(names) > 100 and roots <= _otel_rows._MAPPED_ROOTS
    row = span_to_row(make({"metadata": '{"customer": "acme"}'}))  # the one undotted key
    assert row["metadata"]["customer"] == "acme" and "metadata" in _otel_rows._MAPPED_KEYS


def test_a_resource_shared_by_spans_is_cleaned_as_it_is_at_each_span() -> None:
    """Spans share their resource's dict (an OTLP export's, an SDK provider's): each row gets
    its own copy of the resource as that dict holds it when the span is mapped."""
    resource: dict[str, Any] = {"service.name": "api", "host.name": "a"}
    first, second = (span_to_row(make(resource_attributes=resource)) for _ in range(2))
    assert first["metadata"]["resource"] == second["metadata"]["resource"] == resource
    assert first["metadata"]["resource"] is not second["metadata"]["resource"]
    first["metadata"]["resource"]["host.name"] = "changed by a caller"
    resource["service.name"] = "web"
    assert span_to_row(make(resource_attributes=resource))["metadata"]["resource"] == {
        "service.name": "web", "host.name": "a"}
    resource["service.name"] = float("nan")
    resource["host.cores"] = 4
    for _ in range(2):
        assert span_to_row(make(resource_attributes=resource))["metadata"]["resource"] == {
            "service.name": "NaN", "host.name": "a", "host.cores": 4}
    resource.clear()
    assert "resource" not in span_to_row(make(resource_attributes=resource))["metadata"]


def test_attribute_values_are_typed_as_sent() -> None:
    """Kept values keep their JSON type; bytes become base64 and NaN/Infinity strings."""
    attributes = kept(span_to_row(plain_http_span()))
    assert attributes["app.retries"] == 2 and isinstance(attributes["app.retries"], int)
    assert attributes["app.ratio"] == 0.25 and attributes["app.cached"] is True
    assert attributes["app.regions"] == ["eu-west-1", "us-east-1"]
    assert attributes["app.shape"] == {"w": 2, "h": [1, 2]}
    assert attributes["app.blob"] == "AP8="
    assert attributes["app.nan"] == "NaN" and attributes["app.inf"] == "-Infinity"
    assert attributes["app.none"] is None


@pytest.mark.parametrize("expression", [
    "metadata.attributes.\"http.route\" = '/chat'",
    "metadata.attributes.`http.response.status_code` = 200",
    "metadata.attributes.\"app.cached\" = true",
    "metadata.attributes.\"app.regions\" INCLUDES 'eu-west-1'",
    "metadata.attributes.\"app.shape\".h[1] = 2",
    "metadata.resource.\"service.name\" = 'checkout'",
    "metadata.resource.\"deployment.environment.name\" = 'prod'",
    "metadata.otel.kind = 'SERVER'",
    "metadata.otel.status.code = 'OK'",
    "metadata.otel.scope.name = 'opentelemetry.instrumentation.fastapi'",
    "metadata.events[0].name = 'cache.miss'",
    "metadata.events[0].attributes.\"cache.key\" = 'user:7'",
    "metadata.links[0].span_id = 'abcdef0123456789'",
    "span_attributes.name = 'POST /chat' AND span_attributes.type IS NULL",
])
def test_the_layout_is_searchable_with_the_filter_language(expression: str) -> None:
    """Every kept value can be filtered on, a dotted attribute key being one quoted segment."""
    assert matches(expression, span_to_row(plain_http_span()))


def test_llm_rows_filter_like_spanlogs_own_llm_spans() -> None:
    """An OTel llm row filters like a wrap_openai span: type, model, tokens, tags."""
    row = span_to_row(make(OPENINFERENCE_LLM))
    assert matches("span_attributes.type = 'llm' AND metadata.model = 'gpt-3.5-turbo-0613' "
                   "AND metrics.tokens > 200 AND tags INCLUDES 'prod' "
                   "AND metadata.otel.conventions INCLUDES 'openinference' "
                   "AND metadata.otel.moved.\"llm.input_messages.0.message.role\" = 'input'",
                   row)


# ---- properties -------------------------------------------------------------------------------

_KEYS = st.sampled_from(sorted({*GENAI_CHAT, *OPENLLMETRY_CHAT, *OPENINFERENCE_LLM,
                                *VERCEL_DO_STREAM, *BRAINTRUST_EVAL, "braintrust.input",
                                "braintrust.output", "braintrust.expected",
                                "braintrust.scores.a", "braintrust.metrics.x",
                                "braintrust.span_attributes.name", "gen_ai.tool.call.arguments",
                                "gen_ai.tool.call.result", "ai.toolCall.args", "ai.prompt",
                                "ai.response.object", "llm.prompts.0.prompt.text",
                                "gen_ai.prompt", "gen_ai.completion", "traceloop.entity.input",
                                "gen_ai.operation.name", "openinference.span.kind",
                                "gen_ai.request.attributes", "gen_ai.request.otel",
                                "braintrust.metadata.events", "llm.input_messages.0.message",
                                "gen_ai.prompt.0", "gen_ai.prompt.1.tool_calls.0.name"}))
_SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats()
            | st.text(max_size=20) | st.binary(max_size=8))
_JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-1000, 1000)
                        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(
                            ["role", "content", "parts", "type", "text", "id", "name",
                             "arguments", "response", "system", "prompt", "messages",
                             "toolCallId", "toolName", "input", "output", "model", "a"]),
                            inner, max_size=4),
                        max_leaves=12)
_VALUES = (_SCALARS | st.lists(_SCALARS, max_size=3) | _JSONISH
           | _JSONISH.map(lambda v: json.dumps(v)))
_ATTRIBUTES = st.dictionaries(_KEYS | st.text(max_size=12), _VALUES, max_size=12)
_EVENTS = st.lists(st.builds(
    OtelEvent, st.sampled_from(["exception", "gen_ai.user.message", "gen_ai.choice",
                                "gen_ai.tool.message", "gen_ai.client.inference.operation"
                                ".details", "log"]),
    st.integers(0, T1), st.dictionaries(
        st.sampled_from(["content", "message", "role", "id", "index", "tool_calls",
                         "gen_ai.event.content", "exception.type", "exception.message",
                         "exception.stacktrace", "gen_ai.input.messages"]), _VALUES,
        max_size=4)), max_size=3)


@pytest.mark.slow  # a property test of 300 examples: about 3 s
@settings(max_examples=300, deadline=None)
@given(_ATTRIBUTES, _EVENTS, st.sampled_from(["OK", "ERROR", "UNSET"]))
def test_no_attribute_is_ever_lost(attributes: dict[str, Any], events: list[OtelEvent],
                                   status: str) -> None:
    """Any attribute or event attribute is kept or moved, never lost, and the row is valid."""
    span = make(attributes, events=events, status_code=status)
    row = span_to_row(span)
    assert set(kept(row)) | set(moved(row)) == set(attributes)
    assert not set(kept(row)) & set(moved(row))
    for sent, recorded in zip(events, row["metadata"].get("events", []), strict=True):
        assert (set(recorded.get("attributes", {})) | set(recorded.get("moved", {}))
                == set(sent.attributes))
    metadata = row["metadata"]
    assert metadata.get("attributes", {}) == kept(row)
    assert all(isinstance(metadata.get(k, {}), dict) for k in ("attributes", "resource"))
    assert isinstance(metadata["otel"], dict) and metadata["otel"]["status"]["code"] == status
    stored_shape(row)
    dumps(row)
    json.dumps(row, allow_nan=False)
    assert span_to_row(dataclasses.replace(span)) == row


@settings(max_examples=200, deadline=None)
@given(_ATTRIBUTES)
def test_kept_values_equal_what_was_sent(attributes: dict[str, Any]) -> None:
    """A kept attribute equals the sent value (bytes as base64, NaN/Infinity as strings)."""
    row = span_to_row(make(attributes))
    for key, value in kept(row).items():
        assert value == _expected_json(attributes[key])


def _expected_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_expected_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _expected_json(v) for k, v in value.items()}
    return value
