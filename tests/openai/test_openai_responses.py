"""wrap_openai on the Responses API and embeddings (sync client)."""

from __future__ import annotations

import gc
from typing import Any

import openai
from openai_rows import llm_rows
from pydantic import BaseModel

from spanlog import wrap_openai

LOOKUP_TOOL = {"type": "function", "name": "lookup", "strict": False,
               "parameters": {"type": "object", "properties": {}}}


class City(BaseModel):
    city: str
    n: int


def test_responses_create_logs_input_output_items_and_usage(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """responses.create logs the input, the output items and input/output token counts."""
    wrapped = wrap_openai(client)
    reply = wrapped.responses.create(model="m", input="hi you", instructions="be nice")
    assert reply.output_text == "echo: hi you"
    [row] = llm_rows(collector, project, 1)
    assert row["span_attributes"]["name"] == "Response"
    assert row["input"] == "hi you"
    assert row["metadata"] == {"provider": "openai", "model": "m", "instructions": "be nice"}
    [item] = row["output"]
    assert item["type"] == "message"
    assert item["content"][0]["text"] == "echo: hi you"
    metrics = row["metrics"]
    assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"]) == (2, 3, 5)
    assert metrics["prompt_cached_tokens"] == 1
    assert metrics["completion_reasoning_tokens"] == 1


def test_responses_stream_logs_the_completed_response(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """responses.create(stream=True) yields the events and logs the final output and usage."""
    wrapped = wrap_openai(client)
    items = [{"role": "user", "content": "x y z"}]
    stream = wrapped.responses.create(model="m", input=items, stream=True,
                                      extra_headers={"x-fake-first-delay": "0.05"})
    kinds = [event.type for event in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    [row] = llm_rows(collector, project, 1)
    assert row["input"] == items
    assert row["output"][0]["content"][0]["text"] == "echo: x y z"
    assert row["metrics"]["tokens"] == 7
    assert row["metrics"]["time_to_first_token"] >= 0.05


def test_responses_stream_helper_parses_and_logs_function_calls(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """responses.stream() keeps get_final_response and text_format; function calls are logged."""
    wrapped = wrap_openai(client)
    with wrapped.responses.stream(model="m", input='say:{"city": "Rome", "n": 1}',
                                  text_format=City) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == '{"city": "Rome", "n": 1}'
    assert final.output_parsed == City(city="Rome", n=1)
    with wrapped.responses.stream(model="m", input="find it", tools=[LOOKUP_TOOL]) as stream:
        call = stream.get_final_response().output[0]
    assert call.type == "function_call" and call.name == "lookup"
    rows = llm_rows(collector, project, 2)
    assert rows[0]["output"][0]["content"][0]["text"] == '{"city": "Rome", "n": 1}'
    assert rows[0]["metadata"]["text"]["format"]["name"] == "City"
    assert rows[1]["output"][0]["type"] == "function_call"
    assert rows[1]["output"][0]["arguments"] == '{"query": "find it"}'


def test_responses_stream_abandoned_logs_the_partial_text(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """A Responses stream dropped half way logs the text that had arrived."""
    wrapped = wrap_openai(client)
    stream = wrapped.responses.create(model="m", input="a b c d e f", stream=True)
    for event in stream:
        if event.type == "response.output_text.delta" and event.delta == "a ":
            break
    del stream, event
    gc.collect()
    [row] = llm_rows(collector, project, 1)
    assert "end" in row["metrics"]
    assert row["output"] == [{"type": "message", "role": "assistant", "status": "incomplete",
                              "content": [{"type": "output_text", "text": "echo: a "}]}]


def test_responses_parse_logs_the_parsed_output(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """responses.parse is a span whose output carries the parsed object."""
    wrapped = wrap_openai(client)
    parsed = wrapped.responses.parse(model="m", input='say:{"city": "Lima", "n": 2}',
                                     text_format=City)
    assert parsed.output_parsed == City(city="Lima", n=2)
    [row] = llm_rows(collector, project, 1)
    assert row["output"][0]["content"][0]["parsed"] == {"city": "Lima", "n": 2}
    assert row["metadata"]["text_format"]["name"] == "City"


def test_embeddings_log_count_dimensions_and_tokens(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """embeddings.create logs its input, how many vectors of what size, and prompt tokens."""
    wrapped = wrap_openai(client)
    result = wrapped.embeddings.create(model="emb", input=["a b", "c"], dimensions=4)
    assert [len(d.embedding) for d in result.data] == [4, 4]
    raw = wrapped.embeddings.with_raw_response.create(model="emb", input="d e f")
    assert len(raw.parse().data) == 1
    rows = llm_rows(collector, project, 2)
    assert rows[0]["span_attributes"]["name"] == "Embedding"
    assert rows[0]["input"] == ["a b", "c"]
    assert rows[0]["output"] == {"embeddings": 2, "dimensions": 4}
    assert rows[0]["metadata"] == {"provider": "openai", "model": "emb", "dimensions": 4}
    assert (rows[0]["metrics"]["prompt_tokens"], rows[0]["metrics"]["tokens"]) == (3, 3)
    assert rows[1]["output"] == {"embeddings": 1, "dimensions": 8}
