"""The caller a wrapped call records (row ``context``) is the user's line, never openai's."""

from __future__ import annotations

import inspect
from typing import Any

import openai
import pytest
from openai_rows import allm_rows, llm_rows

import spanlog
from spanlog import wrap_openai


def _line_of(marker: str) -> int:
    """The line of this file holding ``marker`` (in a comment at the end of the line)."""
    lines = inspect.getsource(inspect.getmodule(_line_of)).splitlines()  # type: ignore[arg-type]
    [number] = [i + 1 for i, line in enumerate(lines) if line.endswith(f"# {marker}")]
    return number


def _assert_caller(row: dict[str, Any], function: str, marker: str) -> None:
    context = row["context"]
    assert context["caller_filename"] == __file__, context
    assert context["caller_functionname"] == function, context
    assert context["caller_lineno"] == _line_of(marker), context


def test_raw_response_calls_record_the_users_line(client: openai.OpenAI, collector: Any,
                                                  project: str) -> None:
    """with_raw_response (on the resource and on the client) records the caller in the
    test, not in openai's _legacy_response.py; a plain call does the same."""
    wrapped = wrap_openai(client)
    function = "test_raw_response_calls_record_the_users_line"
    wrapped.chat.completions.with_raw_response.create(  # raw-resource
        model="m", messages=[{"role": "user", "content": "a"}])
    wrapped.with_raw_response.chat.completions.create(  # raw-client
        model="m", messages=[{"role": "user", "content": "b"}])
    wrapped.chat.completions.create(model="m", messages=[{"role": "user", "content": "c"}])  # plain
    rows = llm_rows(collector, project, 3)
    for row, marker in zip(rows, ("raw-resource", "raw-client", "plain"), strict=True):
        _assert_caller(row, function, marker)


async def test_async_raw_response_records_the_users_line(aclient: openai.AsyncOpenAI,
                                                         collector: Any, project: str) -> None:
    """The async client's with_raw_response records the awaiting user line as the caller."""
    wrapped = wrap_openai(aclient)
    await wrapped.embeddings.with_raw_response.create(model="emb", input="x")  # async-raw
    [row] = await allm_rows(collector, project, 1)
    _assert_caller(row, "test_async_raw_response_records_the_users_line", "async-raw")


def test_llm_span_skip_modules_are_checked() -> None:
    """llm_span(skip_modules=...) takes module-name prefixes; anything else is a ValueError
    naming the argument."""
    with pytest.raises(ValueError, match="skip_modules"):
        spanlog.llm_span(skip_modules=("",))
