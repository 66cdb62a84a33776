"""@traced on sync and async functions, generators and async generators."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import spanlog
from spanlog.testing import capture_rows


def test_bare_decorator_logs_bound_arguments_and_result() -> None:
    """@traced: name from the function, type function, input by parameter name, output."""

    @spanlog.traced
    def add(a: int, b: int = 2, *rest: int, scale: int = 1, **extra: Any) -> dict[str, int]:
        return {"sum": (a + b + sum(rest)) * scale}

    with capture_rows() as rows:
        assert add(1) == {"sum": 3}
        add(1, 2, 3, 4, scale=2, tag="x")
        add(a=5, b=6)
    first, second, third = rows
    assert first["span_attributes"] == {"name": "add", "type": "function"}
    assert first["input"] == {"a": 1} and first["output"] == {"sum": 3}
    assert second["input"] == {"a": 1, "b": 2, "rest": [3, 4], "scale": 2,
                               "extra": {"tag": "x"}}
    assert third["input"] == {"a": 5, "b": 6}
    assert first["context"]["caller_functionname"] == "add"


def test_decorator_options() -> None:
    """@traced(name=, type=, notrace_io=True) renames, retypes and skips input/output."""

    @spanlog.traced(name="retrieve", type="tool", notrace_io=True)
    def search(query: str) -> list[str]:
        return [query]

    @spanlog.traced("positional-name")
    def other() -> int:
        return 1

    with capture_rows() as rows:
        search("secret")
        other()
    first, second = rows
    assert first["span_attributes"] == {"name": "retrieve", "type": "tool"}
    assert "input" not in first and "output" not in first
    assert second["span_attributes"]["name"] == "positional-name"


def test_nested_traced_calls_form_one_trace() -> None:
    """Traced functions called from traced functions become child spans of the same trace."""

    @spanlog.traced
    def leaf(n: int) -> int:
        spanlog.current_span().log(metadata={"n": n})
        return n

    @spanlog.traced
    def parent() -> int:
        return leaf(1) + leaf(2)

    with capture_rows() as rows:
        parent()
    top = next(r for r in rows if r["span_attributes"]["name"] == "parent")
    leaves = [r for r in rows if r["span_attributes"]["name"] == "leaf"]
    assert len(leaves) == 2
    assert all(r["span_parents"] == [top["span_id"]] for r in leaves)
    assert all(r["root_span_id"] == top["root_span_id"] for r in leaves)
    assert sorted(r["metadata"]["n"] for r in leaves) == [1, 2]


def test_exception_is_recorded_and_reraised_unchanged() -> None:
    """An exception is logged in `error` with its traceback and re-raised as the same object."""
    err = ValueError("bad input")

    @spanlog.traced
    def fails() -> None:
        raise err

    with capture_rows() as rows:
        with pytest.raises(ValueError) as caught:
            fails()
    assert caught.value is err
    assert "ValueError: bad input" in rows[0]["error"]
    assert "in fails" in rows[0]["error"]


async def test_async_function() -> None:
    """Async functions: the span covers the awaited body, children nest under it."""

    @spanlog.traced
    async def child(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @spanlog.traced
    async def handler(x: int) -> int:
        return await child(x) + await child(x + 1)

    with capture_rows() as rows:
        assert await handler(1) == 6
    top = next(r for r in rows if r["span_attributes"]["name"] == "handler")
    kids = [r for r in rows if r["span_attributes"]["name"] == "child"]
    assert [k["span_parents"] for k in kids] == [[top["span_id"]]] * 2
    assert top["input"] == {"x": 1} and top["output"] == 6


async def test_async_exception_is_reraised() -> None:
    """An async traced function's exception is recorded and propagates unchanged."""

    @spanlog.traced
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    with capture_rows() as rows:
        with pytest.raises(KeyError):
            await fails()
    assert "KeyError: 'missing'" in rows[0]["error"]


def test_generator_output_is_the_yielded_items_and_span_is_not_leaked() -> None:
    """A traced generator logs its items as output; between items the consumer's own span
    stays current."""
    seen_inside: list[str] = []

    @spanlog.traced
    def numbers(n: int) -> Iterator[dict[str, int]]:
        for i in range(n):
            seen_inside.append(spanlog.current_span().name)
            yield {"i": i}

    with capture_rows() as rows:
        with spanlog.start_span(name="consumer") as consumer:
            for _ in numbers(3):
                assert spanlog.current_span() is consumer
    gen_row = next(r for r in rows if r["span_attributes"]["name"] == "numbers")
    assert gen_row["output"] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert seen_inside == ["numbers"] * 3
    assert gen_row["span_parents"] == [consumer.span_id]


def test_generator_output_is_bounded() -> None:
    """Only the first max_generator_items items are kept as output."""
    spanlog.init_logger(project="bounded", max_generator_items=5)

    @spanlog.traced
    def many() -> Iterator[int]:
        yield from range(100)

    with capture_rows() as rows:
        assert sum(many()) == sum(range(100))
    assert rows[0]["output"] == [0, 1, 2, 3, 4]


def test_generator_closed_early_and_send_and_return_value() -> None:
    """A generator closed early still ends its span; send() values reach the body; the
    return value comes back through StopIteration."""
    received: list[Any] = []

    @spanlog.traced
    def echo() -> Any:
        value = yield "first"
        received.append(value)
        yield "second"
        return "done"

    with capture_rows() as rows:
        gen = echo()
        assert next(gen) == "first"
        assert gen.send("hello") == "second"
        with pytest.raises(StopIteration) as stop:
            next(gen)
        assert stop.value.value == "done"
        closed = echo()
        next(closed)
        closed.close()
    assert received == ["hello"]
    assert [r["output"] for r in rows] == [["first", "second"], ["first"]]
    assert all("error" not in r for r in rows)


def test_generator_exception_is_recorded() -> None:
    """An exception inside a traced generator is logged with the items so far."""

    @spanlog.traced
    def breaks() -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-stream")

    with capture_rows() as rows:
        with pytest.raises(RuntimeError, match="mid-stream"):
            list(breaks())
    assert rows[0]["output"] == [1]
    assert "RuntimeError: mid-stream" in rows[0]["error"]


async def test_async_generator() -> None:
    """Async generators: items logged as output, span current inside the body only."""

    @spanlog.traced
    async def stream(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(0)
            with spanlog.start_span(name=f"chunk{i}"):
                pass
            yield f"tok{i}"

    with capture_rows() as rows:
        got = [tok async for tok in stream(3)]
        assert isinstance(spanlog.current_span(), spanlog.NoopSpan)
    assert got == ["tok0", "tok1", "tok2"]
    top = next(r for r in rows if r["span_attributes"]["name"] == "stream")
    assert top["output"] == got
    chunks = [r for r in rows if r["span_attributes"]["name"].startswith("chunk")]
    assert len(chunks) == 3 and all(c["span_parents"] == [top["span_id"]] for c in chunks)


async def test_async_generator_closed_early() -> None:
    """An async generator abandoned after one item is closed and its span ended."""

    @spanlog.traced
    async def stream() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    with capture_rows() as rows:
        gen = stream()
        async for item in gen:
            assert item == 0
            break
        await gen.aclose()  # type: ignore[attr-defined]
    assert rows[0]["output"] == [0]


def test_wrapped_functions_keep_their_metadata_and_signature_binding() -> None:
    """functools.wraps-decorated functions bind arguments by the inner signature."""

    def passthrough(fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)
        return inner

    @spanlog.traced
    @passthrough
    def greet(name: str, punctuation: str = "!") -> str:
        """Say hello."""
        return f"hello {name}{punctuation}"

    assert greet.__name__ == "greet" and greet.__doc__ == "Say hello."
    with capture_rows() as rows:
        greet("bob", punctuation="?")
    assert rows[0]["input"] == {"name": "bob", "punctuation": "?"}


def test_methods_do_not_log_their_instance() -> None:
    """For methods the input is the arguments after self/cls."""

    class Bot:
        @spanlog.traced
        def answer(self, question: str) -> str:
            return question[::-1]

        @classmethod
        @spanlog.traced
        def make(cls, name: str) -> str:
            return name

    with capture_rows() as rows:
        Bot().answer("abc")
        Bot.make("x")
    assert [row["input"] for row in rows] == [{"question": "abc"}, {"name": "x"}]
