"""wrap_openai on the sync client: chat completions, plain, streamed, parsed, raw, failing."""

from __future__ import annotations

import gc
from typing import Any

import openai
import pytest
from fake_server import FakeOpenAI
from openai_rows import all_rows, llm_rows
from pydantic import BaseModel

import spanlog
from spanlog import wrap_openai

HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
WEATHER_TOOL = {"type": "function",
                "function": {"name": "get_weather",
                             "parameters": {"type": "object", "properties": {}}}}


class City(BaseModel):
    city: str
    n: int


def test_create_is_an_llm_span_with_input_output_metadata_metrics(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """A plain create logs messages, choices, model and parameters, tokens and timing."""
    wrapped = wrap_openai(client)
    reply = wrapped.chat.completions.create(model="gpt-fake", messages=HELLO,
                                            temperature=0.25, max_tokens=50)
    assert reply.choices[0].message.content == "echo: hello there"
    [row] = llm_rows(collector, project, 1)
    assert row["span_attributes"]["name"] == "Chat Completion"
    assert row["input"] == HELLO
    assert row["output"][0]["message"]["content"] == "echo: hello there"
    assert row["output"][0]["finish_reason"] == "stop"
    assert row["metadata"] == {"provider": "openai", "model": "gpt-fake",
                               "temperature": 0.25, "max_tokens": 50}
    metrics = row["metrics"]
    assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"]) == (4, 3, 7)
    assert metrics["prompt_cached_tokens"] == 2
    assert metrics["completion_reasoning_tokens"] == 1
    assert 0 < metrics["time_to_first_token"] <= metrics["end"] - metrics["start"] + 1e-3
    assert row["span_parents"] is None  # no current span: the call is its own trace


def test_calls_nest_under_the_traced_function(client: openai.OpenAI, collector: Any,
                                              project: str) -> None:
    """Calls inside a @traced function are its children, in its trace."""
    wrapped = wrap_openai(client)

    @spanlog.traced
    def answer(question: str) -> str:
        first = wrapped.chat.completions.create(
            model="m", messages=[{"role": "user", "content": question}])
        second = wrapped.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "again"}])
        return f"{first.choices[0].message.content} / {second.choices[0].message.content}"

    assert answer("why") == "echo: why / echo: again"
    rows = all_rows(collector, project, 3)
    [parent] = [r for r in rows if r["span_attributes"]["type"] != "llm"]
    calls = [r for r in rows if r["span_attributes"]["type"] == "llm"]
    assert parent["span_attributes"]["name"] == "answer"
    for call in calls:
        assert call["span_parents"] == [parent["span_id"]]
        assert call["root_span_id"] == parent["root_span_id"]
    assert [c["input"][0]["content"] for c in calls] == ["why", "again"]


def test_unwrapped_client_logs_nothing(client: openai.OpenAI, collector: Any,
                                       project: str) -> None:
    """The same client used unwrapped, next to a wrapped one, adds no span."""
    wrapped = wrap_openai(client)

    @spanlog.traced
    def both() -> None:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        wrapped.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}])
        client.embeddings.create(model="e", input="c")

    both()
    rows = all_rows(collector, project, 2)
    assert [r["span_attributes"]["type"] for r in rows] == ["function", "llm"]
    assert rows[1]["input"] == [{"role": "user", "content": "b"}]


def test_stream_with_usage_aggregates_chunks_and_times_first_token(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """A stream logs the joined content, the usage chunk's tokens and the first chunk's time."""
    wrapped = wrap_openai(client)
    stream = wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "one two three four"}], stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-first-delay": "0.1", "x-fake-chunk-delay": "0.04"})
    assert isinstance(stream, openai.Stream)
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    assert "".join(p or "" for p in pieces) == "echo: one two three four"
    [row] = llm_rows(collector, project, 1)
    assert row["output"] == [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant",
                                          "content": "echo: one two three four"}}]
    assert row["metadata"]["stream"] is True
    metrics = row["metrics"]
    assert (metrics["prompt_tokens"], metrics["completion_tokens"], metrics["tokens"]) == (4, 5, 9)
    # 8 chunks 40 ms apart: the first token is timed at the first chunk, not at the end.
    duration = metrics["end"] - metrics["start"]
    assert metrics["time_to_first_token"] >= 0.1
    assert duration - metrics["time_to_first_token"] >= 0.2


def test_stream_without_usage_chunk_has_output_but_no_token_counts(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """Without stream_options.include_usage the span has output and timing, no tokens."""
    wrapped = wrap_openai(client)
    with wrapped.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True) as stream:
        for _ in stream:
            pass
    [row] = llm_rows(collector, project, 1)
    assert row["output"][0]["message"]["content"] == "echo: hi"
    assert "tokens" not in row["metrics"]
    assert row["metrics"]["time_to_first_token"] > 0


def test_stream_of_tool_calls_joins_the_argument_pieces(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """Streamed tool calls come out whole: id, name, joined arguments, finish_reason."""
    wrapped = wrap_openai(client)
    stream = wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL], stream=True)
    chunks = list(stream)
    assert len(chunks) > 3
    [row] = llm_rows(collector, project, 1)
    [choice] = row["output"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather",
                                "arguments": '{"query": "weather in Paris?"}'}
    assert call["id"].startswith("call_")
    assert row["metadata"]["tools"] == [WEATHER_TOOL]


def test_stream_of_several_choices_keeps_them_apart(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """With n=2 each streamed choice is aggregated under its own index."""
    wrapped = wrap_openai(client)
    for _ in wrapped.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "twice"}], n=2, stream=True):
        pass
    [row] = llm_rows(collector, project, 1)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in row["output"]] \
        == [(0, "echo: twice", "stop"), (1, "echo: twice", "stop")]


def test_stream_closed_half_way_ends_its_span_at_close(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """close() on a half-read stream ends the span with the output read so far."""
    wrapped = wrap_openai(client)
    stream = wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a b c d e f g"}], stream=True)
    next(stream), next(stream), next(stream)
    stream.close()
    [row] = llm_rows(collector, project, 1)  # the stream object is still alive here
    assert "end" in row["metrics"]
    assert row["output"][0]["message"]["content"] == "echo: a "
    assert row["output"][0]["finish_reason"] is None
    assert stream.response.is_closed


def test_stream_abandoned_half_way_ends_its_span_when_collected(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """A stream dropped half read ends its span when garbage-collected."""
    wrapped = wrap_openai(client)
    stream = wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a b c d e f g"}], stream=True)
    next(stream), next(stream)
    del stream
    gc.collect()
    [row] = llm_rows(collector, project, 1)
    assert "end" in row["metrics"]
    assert row["output"][0]["message"]["content"] == "echo: "


def test_error_in_the_middle_of_a_stream_is_recorded(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """An error event mid-stream is raised to the caller and recorded with the partial output."""
    wrapped = wrap_openai(client)
    stream = wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a b c d"}], stream=True,
        extra_headers={"x-fake-stream-error-after": "3"})
    with pytest.raises(openai.APIError, match="fake stream error"):
        for _ in stream:
            pass
    [row] = llm_rows(collector, project, 1)
    assert "fake stream error" in row["error"]
    assert row["output"][0]["message"]["content"] == "echo: a "


def test_parse_logs_the_parsed_message_and_the_schema(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """chat.completions.parse and beta.chat.completions.parse are spans with parsed output."""
    wrapped = wrap_openai(client)
    messages = [{"role": "user", "content": 'say:{"city": "Paris", "n": 3}'}]
    parsed = wrapped.chat.completions.parse(model="m", messages=messages, response_format=City)
    assert parsed.choices[0].message.parsed == City(city="Paris", n=3)
    beta = wrapped.beta.chat.completions.parse(model="m", messages=messages,
                                               response_format=City)
    assert beta.choices[0].message.parsed == City(city="Paris", n=3)
    rows = llm_rows(collector, project, 2)
    for row in rows:
        assert row["output"][0]["message"]["parsed"] == {"city": "Paris", "n": 3}
        assert row["metadata"]["response_format"]["name"] == "City"
        assert row["metrics"]["tokens"] == 8


def test_stream_helper_keeps_its_events_and_final_completion(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """chat.completions.stream() still yields typed events and parses; one span per stream."""
    wrapped = wrap_openai(client)
    messages = [{"role": "user", "content": 'say:{"city": "Oslo", "n": 1}'}]
    with wrapped.chat.completions.stream(model="m", messages=messages,
                                         response_format=City) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert {"chunk", "content.delta", "content.done"} <= kinds
    assert final.choices[0].message.parsed == City(city="Oslo", n=1)
    [row] = llm_rows(collector, project, 1)
    assert row["output"][0]["message"]["content"] == '{"city": "Oslo", "n": 1}'
    assert row["metadata"]["stream"] is True


def test_stream_helper_closed_early_ends_the_span(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """Closing the helper stream inside its with-block ends the span at once."""
    wrapped = wrap_openai(client)
    with wrapped.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "a b c d e"}]) as stream:
        for event in stream:
            if event.type == "content.delta" and event.delta:
                break
        stream.close()
        [row] = llm_rows(collector, project, 1)
        assert "end" in row["metrics"]
        assert row["output"][0]["message"]["content"] == "echo: "


def test_with_raw_response_keeps_headers_and_logs_the_parsed_body(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """with_raw_response (on the resource and on the client) is traced, plain and streamed."""
    wrapped = wrap_openai(client)
    raw = wrapped.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "raw"}])
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().choices[0].message.content == "echo: raw"
    raw_stream = wrapped.with_raw_response.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "raw stream"}], stream=True)
    assert raw_stream.http_response.status_code == 200
    text = "".join(c.choices[0].delta.content or "" for c in raw_stream.parse() if c.choices)
    assert text == "echo: raw stream"
    rows = llm_rows(collector, project, 2)
    assert [r["output"][0]["message"]["content"] for r in rows] == ["echo: raw",
                                                                     "echo: raw stream"]
    assert rows[0]["metrics"]["tokens"] == 3


@pytest.mark.parametrize(("status", "error"), [(429, openai.RateLimitError),
                                                (500, openai.InternalServerError)])
def test_api_errors_are_recorded_and_reraised_unchanged(
        client: openai.OpenAI, collector: Any, project: str, status: int,
        error: type[openai.APIStatusError]) -> None:
    """429 and 500 raise the client's own exception, untouched, and the span records it."""
    wrapped = wrap_openai(client)
    with pytest.raises(error) as caught:
        wrapped.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                        extra_headers={"x-fake-status": str(status)})
    assert type(caught.value) is error and caught.value.status_code == status
    # Raised from inside openai, not re-created by the wrapper.
    assert "openai" in str(caught.traceback[-1].path)
    [row] = llm_rows(collector, project, 1)
    assert error.__name__ in row["error"]
    assert f"fake server error {status}" in row["error"]
    assert "output" not in row or row["output"] is None


def test_retried_call_is_one_span(fake_openai: FakeOpenAI, collector: Any,
                                  project: str) -> None:
    """With the client's retries, two 500s then a success make one span, not three."""
    fake_openai.clear()
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="test", max_retries=2) as raw:
        wrapped = wrap_openai(raw)
        reply = wrapped.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "retry me"}],
            extra_headers={"x-fake-status": "500", "x-fake-fail-attempts": "2"})
    assert reply.choices[0].message.content == "echo: retry me"
    assert len(fake_openai.bodies("/v1/chat/completions")) == 3
    [row] = llm_rows(collector, project, 1)
    assert row.get("error") is None
    assert row["output"][0]["message"]["content"] == "echo: retry me"


def test_generator_of_messages_is_sent_and_logged(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """Messages given as a generator reach the API and the log (logging does not eat them)."""
    wrapped = wrap_openai(client)
    messages = ({"role": "user", "content": word} for word in ["first", "last"])
    reply = wrapped.chat.completions.create(model="m", messages=messages)
    assert reply.choices[0].message.content == "echo: last"
    [row] = llm_rows(collector, project, 1)
    assert [m["content"] for m in row["input"]] == ["first", "last"]


def test_logged_input_is_a_snapshot_of_the_messages(
        client: openai.OpenAI, collector: Any, project: str) -> None:
    """Appending to the messages list after the call does not change the logged input."""
    wrapped = wrap_openai(client)
    messages: list[Any] = [{"role": "user", "content": "q1"}]
    reply = wrapped.chat.completions.create(model="m", messages=messages)
    messages.append(reply.choices[0].message)  # the usual chat loop
    messages.append({"role": "user", "content": "q2"})
    [row] = llm_rows(collector, project, 1)
    assert row["input"] == [{"role": "user", "content": "q1"}]
