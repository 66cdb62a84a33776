"""A fixed, varied corpus of OpenTelemetry spans for the golden test of span_to_row
(tests/test_otel_rows_golden.py): each convention's realistic spans, errors with exception
events, plain non-LLM spans, bad spans, and a seeded random mix of every attribute the mapping
reads, with values of the right shape and of the wrong one.

Deterministic: the same spans on every run and every Python version (``random.Random`` with
a fixed seed, only its ``random``/``randrange``-based methods).
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from spanlog._otel_rows import OtelEvent, OtelLink, OtelSpan

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
PARENT = bytes.fromhex("00f067aa0ba902b7")
T0 = 1_717_171_717_123_456_789

PROMPT = [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
          {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1",
                                           "name": "weather", "arguments": {"city": "Paris"}}]},
          {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                      "response": "rainy"}]},
          {"role": "user", "parts": [{"type": "text", "content": "And Rome?"},
                                     {"type": "image", "url": "https://x/y.png"}]}]
COMPLETION = [{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}],
               "finish_reason": "stop"}]
AI_MESSAGES = [
    {"role": "system", "content": "You answer weather questions."},
    {"role": "user", "content": [{"type": "text", "text": "And in Rome?"},
                                 {"type": "image", "image": "data:..."}]},
    {"role": "assistant", "content": [{"type": "tool-call", "toolCallId": "c1",
                                       "toolName": "weather", "input": {"city": "Paris"}},
                                      {"type": "text", "text": "checking", "extra": 1}]},
    {"role": "tool", "content": [{"type": "tool-result", "toolCallId": "c1",
                                  "toolName": "weather", "output": {"temp": 14}}]},
]

# Every attribute the mapping reads, with values of the shapes it looks for.
SHAPED: dict[str, list[Any]] = {
    "gen_ai.operation.name": ["chat", "text_completion", "embeddings", "execute_tool",
                              "invoke_agent", "retrieval", "other"],
    "gen_ai.provider.name": ["openai"], "gen_ai.system": ["anthropic", "openai.chat"],
    "gen_ai.request.model": ["gpt-4o", 3], "gen_ai.response.model": ["gpt-4o-2024-08-06"],
    "gen_ai.request.temperature": [0.2], "gen_ai.request.max_tokens": [200],
    "gen_ai.request.top_p": [1.0], "gen_ai.request.nested.key": ["x"],
    "gen_ai.usage.input_tokens": [97, -1, 2.5], "gen_ai.usage.output_tokens": [52],
    "gen_ai.usage.prompt_tokens": [31], "gen_ai.usage.completion_tokens": [17],
    "gen_ai.usage.total_tokens": [149], "gen_ai.usage.cache_read.input_tokens": [64],
    "gen_ai.usage.cache_creation.input_tokens": [8],
    "gen_ai.usage.reasoning.output_tokens": [12, math.nan],
    "gen_ai.response.time_to_first_chunk": [0.4],
    "gen_ai.system_instructions": [[{"type": "text", "content": "Be brief."}],
                                   json.dumps([{"type": "text", "content": "Be brief."}]),
                                   "Be brief as a plain string."],
    "gen_ai.input.messages": [PROMPT, json.dumps(PROMPT), "not json", [1, "x"]],
    "gen_ai.output.messages": [COMPLETION, json.dumps(COMPLETION), {"a": 1}],
    "gen_ai.prompt.0.role": ["system"], "gen_ai.prompt.0.content": ["You are helpful."],
    "gen_ai.prompt.1.role": ["user"], "gen_ai.prompt.1.content": ["Hi"],
    "gen_ai.prompt.1.tool_calls.0.name": ["f"], "gen_ai.prompt.1.tool_calls.0.id": ["c"],
    "gen_ai.prompt.1.tool_calls.0.arguments": ['{"a": 1}'],
    "gen_ai.prompt.name": ["greet"], "gen_ai.prompt.0": ["collides"],
    "gen_ai.completion.0.role": ["assistant"], "gen_ai.completion.0.content": ["Hello"],
    "gen_ai.completion.0.finish_reason": ["stop"],
    "gen_ai.prompt": ["a prompt", '{"x": 1}'], "gen_ai.completion": ["a completion"],
    "gen_ai.prompt_json": ['[{"role": "user", "content": "q"}]', "nope"],
    "gen_ai.completion_json": ['{"text": "a"}'],
    "gen_ai.tool.name": ["weather"], "gen_ai.tool.call.arguments": ['{"city": "Rome"}', "x"],
    "gen_ai.tool.call.result": ['{"temp": 14}', "[1, 2]"],
    "llm.request.type": ["chat", "completion", "rerank", "other"],
    "llm.usage.total_tokens": [48], "llm.is_streaming": [False],
    "traceloop.span.kind": ["workflow", "tool", "task"],
    "traceloop.entity.input": ['{"args": [1]}', "plain"],
    "traceloop.entity.output": ['{"ok": true}'],
    "openinference.span.kind": ["LLM", "llm", "TOOL", "CHAIN", "EVALUATOR", "UNKNOWN"],
    "llm.system": ["openai"], "llm.provider": ["azure"], "llm.model_name": ["gpt-3.5"],
    "llm.request.model_name": ["m1"], "llm.response.model_name": ["m2"],
    "embedding.model_name": ["text-embedding-3"],
    "input.value": ['{"messages": [1]}', "plain input"],
    "input.mime_type": ["application/json", "text/plain", "application/json; charset=utf-8"],
    "output.value": ['{"answer": 42}', "plain output", "{broken"],
    "output.mime_type": ["application/json", "text/plain"],
    "llm.input_messages.0.message.role": ["system"],
    "llm.input_messages.0.message.content": ["You are a poet."],
    "llm.input_messages.1.message.role": ["user"],
    "llm.input_messages.1.message.contents.0.message_content.type": ["text"],
    "llm.input_messages.1.message.contents.0.message_content.text": ["Look:"],
    "llm.input_messages.1.message.contents.1.message_content.type": ["image"],
    "llm.input_messages.1.message.contents.1.message_content.image.image.url": ["u"],
    "llm.output_messages.0.message.role": ["assistant"],
    "llm.output_messages.0.message.content": ["Roses"],
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": ["c9"],
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": ["mul"],
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": ['{"a":2}'],
    "llm.output_messages.0.message.function_call_name": ["fn"],
    "llm.prompts.0.prompt.text": ["Once upon"], "llm.choices.0.completion.text": ["a time"],
    "llm.token_count.prompt": [229], "llm.token_count.completion": [21],
    "llm.token_count.total": [250], "llm.token_count.prompt_details.cache_read": [128],
    "llm.token_count.prompt_details.cache_write": [4],
    "llm.token_count.prompt_details.audio": [3],
    "llm.token_count.completion_details.reasoning": [7],
    "llm.token_count.completion_details.audio": [2], "llm.cost.total": [0.0066],
    "llm.invocation_parameters": ['{"temperature": 0.1}'],
    "metadata": ['{"customer": "acme", "otel": 1}', '{"customer": "acme"}', "[1]"],
    "tag.tags": [["prod", "x"], ["a", 1]], "session.id": ["s-1"], "user.id": ["u-7"],
    "ai.operationId": ["ai.streamText.doStream", "ai.generateText", "ai.toolCall",
                       "ai.embed.doEmbed", "ai.other"],
    "ai.model.provider": ["openai.chat"], "ai.model.id": ["gpt-4o-mini"],
    "ai.telemetry.functionId": ["bot"], "ai.telemetry.metadata.userId": ["user-123"],
    "ai.telemetry.metadata.attributes": ["reserved"],
    "ai.prompt.messages": [json.dumps(AI_MESSAGES), "[", json.dumps([{"role": "user",
                                                                      "content": "hi"}])],
    "ai.prompt": [json.dumps({"system": "S", "prompt": "P"}),
                  json.dumps({"messages": AI_MESSAGES}),
                  json.dumps({"prompt": [{"role": "user", "content": "q"}]}),
                  json.dumps({"other": 1}), json.dumps({"messages": "x"})],
    "ai.response.text": ["Sunny", ""], "ai.response.finishReason": ["stop"],
    "ai.response.toolCalls": [json.dumps([{"toolCallId": "c2", "toolName": "weather",
                                           "args": '{"city":"Rome"}'}]), "[1]"],
    "ai.response.object": ['{"name": "x"}'], "ai.response.msToFirstChunk": [412.5],
    "ai.stream.msToFirstChunk": [100], "ai.response.model": ["gpt-4o-mini-2024"],
    "ai.usage.inputTokens": [50], "ai.usage.outputTokens": [20], "ai.usage.totalTokens": [70],
    "ai.usage.promptTokens": [5], "ai.usage.completionTokens": [6], "ai.usage.tokens": [11],
    "ai.usage.cachedInputTokens": [9], "ai.usage.reasoningTokens": [4],
    "ai.usage.inputTokenDetails.cacheReadTokens": [1],
    "ai.usage.inputTokenDetails.cacheWriteTokens": [2],
    "ai.usage.outputTokenDetails.reasoningTokens": [3],
    "ai.toolCall.name": ["weather"], "ai.toolCall.args": ['{"city": "Oslo"}'],
    "ai.toolCall.input": ['{"q": 1}'], "ai.toolCall.result": ['"cold"'],
    "ai.toolCall.output": ['{"t": -3}'],
    "braintrust.parent": ["project_name:support", "project_id:p-1", "experiment_id:e",
                          "project_name:"],
    "braintrust.span_attributes": ['{"type": "eval", "name": "case 3"}',
                                   '{"type": "bogus"}', "oops"],
    "braintrust.span_attributes.type": ["score", "nope"],
    "braintrust.span_attributes.name": ["renamed", 5],
    "braintrust.input_json": ['[{"role": "user", "content": "q"}]', "not json"],
    "braintrust.output_json": ['{"a": 1}'], "braintrust.expected_json": ['{"tool": "x"}'],
    "braintrust.input": ["raw input", None], "braintrust.output": [["raw", "output"]],
    "braintrust.expected": ["exp"], "braintrust.input.0": ["i0"], "braintrust.output.0": [1],
    "braintrust.metadata": ['{"model": "m", "dataset": "d"}', '{"events": 1, "k": 2}'],
    "braintrust.metadata.run": ["nightly"], "braintrust.metadata.links": ["reserved"],
    "braintrust.metrics": ['{"prompt_tokens": 412, "completion_tokens": 27}',
                           '{"start": 1, "tokens": "x"}'],
    "braintrust.metrics.tokens": [439], "braintrust.metrics.bad": ["x"],
    "braintrust.scores": ['{"correctness": 1.0, "tone": 0.5}', '{"too_big": 2}'],
    "braintrust.scores.helpful": [1, None, 1.5], "braintrust.tags": [["nightly"], "x"],
    "error.type": ["timeout", 5],
}
# Values of any shape, for any key (of the mapping's or not).
ANY_VALUES: list[Any] = [
    None, True, 0, -7, 2**63 - 1, 0.5, math.inf, -math.inf, math.nan, "", "text", "{}",
    "[]", '{"role": "user"}', b"\x00\xff", ["a", "b"], [1, 2.5], [True, None],
    {"nested": {"k": [1, {"x": b"\x01"}]}}, [{"type": "text", "content": "c"}],
]
OTHER_KEYS = ["http.route", "http.response.status_code", "db.system", "app.flag", "service",
              "gen_ai.agent.name", "llm", "ai.", "braintrust.", "input", "output"]
EVENT_NAMES = ["exception", "gen_ai.system.message", "gen_ai.user.message",
               "gen_ai.assistant.message", "gen_ai.tool.message", "gen_ai.choice",
               "gen_ai.client.inference.operation.details", "log"]
EVENT_ATTRIBUTES: dict[str, list[Any]] = {
    "content": ["hello", '{"text": "t"}', None], "role": ["user", ""], "id": ["call_9"],
    "index": [0, 1, "2"], "finish_reason": ["stop"], "message": ['{"content": "4"}', "m", {}],
    "tool_calls": ['[{"id": "c", "type": "function"}]'],
    "gen_ai.event.content": ['{"content": "What?", "role": "user"}', '"str"', "[1]"],
    "exception.type": ["ValueError"], "exception.message": ["bad value", None],
    "exception.stacktrace": ["Traceback ...\nValueError: bad value", ""],
    "exception.escaped": [True], "gen_ai.input.messages": [PROMPT, "x"],
    "gen_ai.output.messages": [COMPLETION], "gen_ai.system_instructions": ["Be kind."],
    "gen_ai.system": ["openai"],
}


def _span_id(n: int) -> bytes:
    return (n + 1).to_bytes(8, "big")


def _span(n: int, attributes: dict[str, Any], **fields: Any) -> OtelSpan:
    base: dict[str, Any] = {
        "name": f"span {n}", "trace_id": TRACE, "span_id": _span_id(n),
        "parent_span_id": PARENT, "start_time_unix_nano": T0 + n * 1_000_003,
        "end_time_unix_nano": T0 + n * 1_000_003 + 250_000_000, "attributes": attributes}
    base.update(fields)
    return OtelSpan(**base)


def _random_value(rng: random.Random, key: str) -> Any:
    shaped = SHAPED.get(key)
    if shaped is not None and rng.random() < 0.85:
        return shaped[rng.randrange(len(shaped))]
    return ANY_VALUES[rng.randrange(len(ANY_VALUES))]


def _random_span(rng: random.Random, n: int) -> OtelSpan:
    keys = sorted(SHAPED)
    prefixes = sorted({k.split(".")[0] for k in keys})
    family = prefixes[rng.randrange(len(prefixes))]
    # Mostly one convention's keys per span (as instrumentations send them), some strays.
    related = [k for k in keys if k.startswith(family)]
    attributes: dict[str, Any] = {}
    for _ in range(rng.randrange(1, 14)):
        roll = rng.random()
        if roll < 0.7:
            key = related[rng.randrange(len(related))]
        elif roll < 0.9:
            key = keys[rng.randrange(len(keys))]
        else:
            key = OTHER_KEYS[rng.randrange(len(OTHER_KEYS))]
        attributes[key] = _random_value(rng, key)
    events = []
    for e in range(rng.randrange(0, 4) if rng.random() < 0.4 else 0):
        name = EVENT_NAMES[rng.randrange(len(EVENT_NAMES))]
        event_attributes = {}
        names = sorted(EVENT_ATTRIBUTES)
        for _ in range(rng.randrange(0, 5)):
            key = names[rng.randrange(len(names))]
            values = EVENT_ATTRIBUTES[key]
            event_attributes[key] = values[rng.randrange(len(values))]
        events.append(OtelEvent(name, T0 + e, event_attributes, rng.randrange(0, 2)))
    status = ("UNSET", "OK", "ERROR")[rng.randrange(3)]
    return _span(n, attributes, events=events, status_code=status,
                 status_message="failed" if status == "ERROR" and rng.random() < 0.5 else "",
                 kind=rng.randrange(6), parent_span_id=PARENT if rng.random() < 0.7 else b"")


def corpus() -> dict[str, OtelSpan]:
    """The named spans of the golden test."""
    spans: dict[str, OtelSpan] = {}
    exception = OtelEvent("exception", T0 + 9, {
        "exception.type": "openai.RateLimitError", "exception.message": "429 rate limit",
        "exception.stacktrace": "Traceback (most recent call last):\n  ...",
        "exception.escaped": True})
    spans["genai-current"] = _span(1, {k: SHAPED[k][0] for k in SHAPED
                                       if k.startswith("gen_ai.") and ".prompt" not in k
                                       and ".completion" not in k})
    spans["genai-old-indexed"] = _span(2, {k: SHAPED[k][0] for k in SHAPED if k.startswith(
        ("gen_ai.prompt.", "gen_ai.completion.", "gen_ai.usage.prompt", "llm."))
        and not k.startswith(("llm.input", "llm.output", "llm.token", "llm.prompts",
                              "llm.choices"))} | {"gen_ai.system": "openai"})
    spans["genai-events"] = _span(3, {"gen_ai.operation.name": "chat"}, events=[
        OtelEvent(name, T0 + i, {k: v[0] for k, v in EVENT_ATTRIBUTES.items()
                                 if not k.startswith("exception")})
        for i, name in enumerate(EVENT_NAMES[1:])])
    spans["openinference"] = _span(4, {k: SHAPED[k][0] for k in SHAPED if k.startswith(
        ("openinference", "llm.", "input.", "output.", "metadata", "tag.", "session.",
         "user.", "embedding."))})
    spans["vercel"] = _span(5, {k: SHAPED[k][0] for k in SHAPED if k.startswith("ai.")})
    spans["vercel-prompt"] = _span(6, {"ai.operationId": "ai.generateText",
                                       "ai.prompt": SHAPED["ai.prompt"][1],
                                       "ai.response.text": "Sunny"})
    spans["braintrust"] = _span(7, {k: SHAPED[k][0] for k in SHAPED
                                    if k.startswith("braintrust.")})
    spans["error-exception"] = _span(8, {"gen_ai.operation.name": "chat"},
                                     status_code="STATUS_CODE_ERROR",
                                     status_message="upstream refused", events=[exception])
    for i, repeated in enumerate(("429 rate limit", "openai.RateLimitError: 429 rate limit")):
        spans[f"error-repeated-{i}"] = _span(12 + i, {}, status_code="ERROR",
                                             status_message=repeated, events=[exception])
    spans["error-plain"] = _span(9, {"error.type": "timeout"}, status_code=2)
    spans["plain-http"] = _span(
        10, {"http.request.method": "POST", "http.route": "/chat", "app.blob": b"\x00\xff",
             "app.nan": math.nan, "app.shape": {"w": 2, "h": [1, 2]}, "app.none": None},
        name="POST /chat", kind="SPAN_KIND_SERVER", status_code="OK",
        resource_attributes={"service.name": "checkout", "deployment.environment": "prod"},
        scope_name="fastapi",
        scope_version="0.48b0", scope_attributes={"flavor": "asgi"},
        events=[OtelEvent("cache.miss", T0 + 5, {"cache.key": "user:7"}, 2)],
        links=[OtelLink(TRACE, "ABCDEF0123456789", {"reason": "batch"}, "vendor=1", 1),
               OtelLink("not-hex", b"\x01" * 8)],
        trace_state="rojo=1", flags=1, dropped_attributes_count=3, dropped_events_count=1,
        dropped_links_count=2)
    spans["plain-root-hex"] = _span(11, {"input": '{"x": 1}', "output": '{"out": 2}'},
                                    trace_id=TRACE.hex().upper(), span_id=_span_id(11).hex(),
                                    parent_span_id=None)
    bad: dict[str, dict[str, Any]] = {
        "bad-trace-id": {"trace_id": b"\x01"}, "bad-zero-span": {"span_id": bytes(8)},
        "bad-times": {"end_time_unix_nano": T0 - 1}, "bad-kind": {"kind": "SIDEWAYS"},
        "bad-value": {"attributes": {"when": object()}},
        "bad-deep": {"attributes": {"deep": json.loads("[" * 70 + "]" * 70)}},
        "bad-event": {"events": [OtelEvent("x", -1)]},
        "bad-link": {"links": [OtelLink(None, b"x")]},  # type: ignore[arg-type]
    }
    for i, (name, fields) in enumerate(bad.items()):
        spans[name] = _span(20 + i, fields.pop("attributes", {}), **fields)
    rng = random.Random(20261207)
    for n in range(200):
        spans[f"random-{n:03d}"] = _random_span(rng, 100 + n)
    return spans
