"""Wrapping any LLM client: @traced(type="llm") + log_llm, llm_span, usage_metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from openai.types import CompletionUsage
from openai_rows import all_rows, allm_rows, llm_rows

import spanlog
from spanlog import llm_span, log_llm, usage_metrics


@dataclass
class EchoReply:
    text: str
    usage: dict[str, int] = field(default_factory=dict)


class EchoClient:
    """Stands in for a provider SDK spanlog knows nothing about (Anthropic-style usage)."""

    def generate(self, model: str, prompt: str) -> EchoReply:
        text = prompt.upper()
        return EchoReply(text, {"input_tokens": len(prompt.split()),
                                "output_tokens": len(text.split()),
                                "cache_read_input_tokens": 1})

    def stream(self, prompt: str) -> Iterator[str]:
        yield from prompt.upper().split()


echo = EchoClient()


# The README's worked example, verbatim: a client wrapped in under ten lines.
@spanlog.traced(type="llm", name="echo.generate")
def generate(prompt: str, model: str = "echo-1") -> str:
    reply = echo.generate(model=model, prompt=prompt)
    log_llm(model=model, provider="echo", input=prompt, output=reply.text, usage=reply.usage)
    return reply.text


def test_traced_llm_function_with_log_llm(collector: Any, project: str) -> None:
    """@traced(type="llm") plus log_llm gives an llm span with model, provider and tokens."""
    assert generate("hello big world") == "HELLO BIG WORLD"
    [row] = llm_rows(collector, project, 1)
    assert row["span_attributes"] == {"name": "echo.generate", "type": "llm"}
    assert row["input"] == "hello big world"
    assert row["output"] == "HELLO BIG WORLD"
    assert row["metadata"]["model"] == "echo-1" and row["metadata"]["provider"] == "echo"
    metrics = row["metrics"]
    # Anthropic-style usage: the cache read counts in the prompt (3 + 1).
    assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"]) == (4, 3, 7)
    assert metrics["prompt_cached_tokens"] == 1


def test_llm_span_measures_a_stream(collector: Any, project: str) -> None:
    """llm_span as `with`: first token time, output and tokens, under the current span."""

    @spanlog.traced
    def chat(prompt: str) -> str:
        with llm_span("echo.stream", model="echo-1", provider="echo", input=prompt,
                      metadata={"temperature": 0}) as call:
            pieces = []
            for piece in echo.stream(prompt):
                call.first_token()
                pieces.append(piece)
            call.log(output=" ".join(pieces), prompt_tokens=2, completion_tokens=len(pieces))
        return " ".join(pieces)

    assert chat("a b c") == "A B C"
    rows = all_rows(collector, project, 2)
    parent, call = rows
    assert call["span_parents"] == [parent["span_id"]]
    assert call["span_attributes"]["type"] == "llm"
    assert call["metadata"] == {"provider": "echo", "model": "echo-1", "temperature": 0}
    assert call["output"] == "A B C"
    metrics = call["metrics"]
    assert metrics["tokens"] == 5
    assert 0 < metrics["time_to_first_token"] <= metrics["end"] - metrics["start"] + 1e-3


def test_llm_span_records_an_error_and_lets_it_through(collector: Any, project: str) -> None:
    """An exception inside `with llm_span(...)` is recorded, the span ends, it propagates."""
    with pytest.raises(ConnectionError, match="provider down"):
        with llm_span("flaky", model="x"):
            raise ConnectionError("provider down")
    [row] = llm_rows(collector, project, 1)
    assert "ConnectionError" in row["error"] and "provider down" in row["error"]
    assert "end" in row["metrics"]


async def test_llm_span_async_and_plain_object(collector: Any, project: str) -> None:
    """llm_span works as `async with` and as a plain object ended later, once."""
    async with llm_span("async-call", input="q") as call:
        call.first_token()
        call.log(output="a", usage={"prompt_tokens": 1, "completion_tokens": 1})
    later = llm_span("later", input="q2")
    later.log(output="b")
    later.end()
    later.end()
    assert later.ended
    rows = await allm_rows(collector, project, 2)
    assert [(r["span_attributes"]["name"], r["output"]) for r in rows] == [("async-call", "a"),
                                                                          ("later", "b")]
    assert rows[0]["metrics"]["tokens"] == 2


def test_log_llm_outside_any_span_does_nothing(collector: Any, project: str) -> None:
    """log_llm with no current span neither raises nor logs."""
    log_llm(model="m", prompt_tokens=1)
    assert spanlog.flush(timeout=10)
    assert collector.fetch(project) == []


def test_usage_metrics_normalises_provider_spellings() -> None:
    """OpenAI chat, Responses, Anthropic and Gemini usage all map to the same metric names."""
    chat = CompletionUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15,
                           prompt_tokens_details={"cached_tokens": 4},
                           completion_tokens_details={"reasoning_tokens": 2})
    assert usage_metrics(chat) == {"prompt_tokens": 10, "completion_tokens": 5, "tokens": 15,
                                   "prompt_cached_tokens": 4, "completion_reasoning_tokens": 2}
    responses = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10,
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens_details": {"reasoning_tokens": 1}}
    assert usage_metrics(responses) == {"prompt_tokens": 7, "completion_tokens": 3,
                                        "tokens": 10, "prompt_cached_tokens": 0,
                                        "completion_reasoning_tokens": 1}
    # Anthropic's input_tokens leaves its cache reads and writes out: prompt_tokens counts
    # them in, as every other provider's prompt count does.
    anthropic = {"input_tokens": 12, "output_tokens": 8, "cache_read_input_tokens": 6,
                 "cache_creation_input_tokens": 2, "service_tier": "standard"}
    assert usage_metrics(anthropic) == {"prompt_tokens": 20, "completion_tokens": 8,
                                        "tokens": 28, "prompt_cached_tokens": 6,
                                        "prompt_cache_creation_tokens": 2}
    gemini = {"prompt_token_count": 3, "candidates_token_count": 4, "total_token_count": 7}
    assert usage_metrics(gemini) == {"prompt_tokens": 3, "completion_tokens": 4, "tokens": 7}
    assert usage_metrics(None) == {}
