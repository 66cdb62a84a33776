"""wrap_openai on the async client: awaits, async streams, concurrent traces."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import openai
import pytest
from openai_rows import aall_rows, allm_rows

import spanlog
from spanlog import wrap_openai


async def test_async_create_is_an_llm_span(aclient: openai.AsyncOpenAI, collector: Any,
                                           project: str) -> None:
    """An awaited create logs like the sync one."""
    wrapped = wrap_openai(aclient)
    assert isinstance(wrapped, openai.AsyncOpenAI)
    reply = await wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "async hi"}])
    assert reply.choices[0].message.content == "echo: async hi"
    [row] = await allm_rows(collector, project, 1)
    assert row["output"][0]["message"]["content"] == "echo: async hi"
    assert row["metrics"]["tokens"] == 5


async def test_concurrent_calls_land_in_their_own_traces(
        aclient: openai.AsyncOpenAI, collector: Any, project: str) -> None:
    """Handlers running concurrently each get their llm span in their own trace."""
    wrapped = wrap_openai(aclient)

    @spanlog.traced
    async def handle(question: str) -> str:
        reply = await wrapped.chat.completions.create(
            model="m", messages=[{"role": "user", "content": question}],
            extra_headers={"x-fake-first-delay": "0.05"})
        stream = await wrapped.chat.completions.create(
            model="m", messages=[{"role": "user", "content": question}], stream=True,
            extra_headers={"x-fake-chunk-delay": "0.005"})
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream])
        return f"{reply.choices[0].message.content}|{streamed}"

    questions = [f"question {i}" for i in range(6)]
    answers = await asyncio.gather(*(handle(q) for q in questions))
    assert answers == [f"echo: {q}|echo: {q}" for q in questions]
    rows = await aall_rows(collector, project, 18)
    roots = {r["root_span_id"]: r for r in rows if r["span_parents"] is None}
    assert len(roots) == 6
    for root in roots.values():
        question = root["input"]["question"]
        calls = [r for r in rows if r["span_parents"] == [root["span_id"]]]
        assert len(calls) == 2
        for call in calls:
            assert call["root_span_id"] == root["root_span_id"]
            assert call["input"] == [{"role": "user", "content": question}]
            assert call["output"][0]["message"]["content"] == f"echo: {question}"


async def test_async_stream_keeps_its_interface(aclient: openai.AsyncOpenAI, collector: Any,
                                                project: str) -> None:
    """async for, async with and .response work on a wrapped async stream."""
    wrapped = wrap_openai(aclient)
    stream = await wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True,
        stream_options={"include_usage": True})
    assert isinstance(stream, openai.AsyncStream)
    assert stream.response.status_code == 200
    async with stream:
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: go"
    [row] = await allm_rows(collector, project, 1)
    assert row["output"][0]["message"]["content"] == "echo: go"
    assert row["metrics"]["tokens"] == 3


async def test_async_stream_closed_half_way(aclient: openai.AsyncOpenAI, collector: Any,
                                            project: str) -> None:
    """await stream.close() half way ends the span with the partial output."""
    wrapped = wrap_openai(aclient)
    stream = await wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a b c d e"}], stream=True)
    await stream.__anext__()
    await stream.__anext__()
    await stream.close()
    [row] = await allm_rows(collector, project, 1)
    assert "end" in row["metrics"]
    assert row["output"][0]["message"]["content"] == "echo: "


async def test_async_stream_abandoned_ends_when_collected(
        aclient: openai.AsyncOpenAI, collector: Any, project: str) -> None:
    """An async stream dropped half read ends its span when collected."""
    wrapped = wrap_openai(aclient)
    stream = await wrapped.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a b c d e"}], stream=True)
    await stream.__anext__()
    response = stream.response
    del stream
    gc.collect()
    await response.aclose()  # what the dropped stream never did: release the connection
    [row] = await allm_rows(collector, project, 1)
    assert "end" in row["metrics"]
    assert row["output"][0]["message"]["content"] is None


async def test_async_helpers_responses_and_chat_streams(
        aclient: openai.AsyncOpenAI, collector: Any, project: str) -> None:
    """The async .stream() helpers work wrapped and log one span each."""
    wrapped = wrap_openai(aclient)
    async with wrapped.responses.stream(model="m", input="yo") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "echo: yo"
    async with wrapped.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hey"}]) as chat:
        kinds = [event.type async for event in chat]
    assert "content.done" in kinds
    rows = await allm_rows(collector, project, 2)
    assert rows[0]["output"][0]["content"][0]["text"] == "echo: yo"
    assert rows[1]["output"][0]["message"]["content"] == "echo: hey"


async def test_async_errors_and_embeddings(aclient: openai.AsyncOpenAI, collector: Any,
                                           project: str) -> None:
    """Async API errors are recorded and re-raised; embeddings and raw responses are logged."""
    wrapped = wrap_openai(aclient)
    with pytest.raises(openai.RateLimitError):
        await wrapped.responses.create(model="m", input="x",
                                       extra_headers={"x-fake-status": "429"})
    result = await wrapped.embeddings.create(model="emb", input="q r")
    assert len(result.data) == 1
    raw = await wrapped.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "raw"}])
    assert raw.parse().choices[0].message.content == "echo: raw"
    rows = await allm_rows(collector, project, 3)
    assert "RateLimitError" in rows[0]["error"]
    assert rows[1]["output"] == {"embeddings": 1, "dimensions": 8}
    assert rows[2]["output"][0]["message"]["content"] == "echo: raw"


async def test_without_async_flush_a_call_is_delivered_when_it_returns(
        aclient: openai.AsyncOpenAI, collector: Any, project: str) -> None:
    """With async_flush=False a root llm span is stored by the time the call (or stream) ends."""
    logger = spanlog.init_logger(project=project, api_url=collector.url,
                                 api_key=collector.api_key, async_flush=False)
    try:
        wrapped = wrap_openai(aclient)
        await wrapped.chat.completions.create(model="m",
                                              messages=[{"role": "user", "content": "now"}])
        rows = await asyncio.to_thread(collector.fetch, project)  # no flush() in between
        assert [r["output"][0]["message"]["content"] for r in rows] == ["echo: now"]
        stream = await wrapped.responses.create(model="m", input="streamed", stream=True)
        async for _ in stream:
            pass
        rows = await asyncio.to_thread(collector.fetch, project)
        assert len(rows) == 2
    finally:
        logger.close(timeout=10)
