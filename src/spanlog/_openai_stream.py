"""Streams of a wrapped OpenAI client: same interface as the client's, plus an llm span.

A streamed call's span outlives the call that started it: it ends when the stream is
exhausted, fails, is closed (directly, by ``with``, or by the helper stream or stream manager
around it), or is garbage-collected half read (``weakref.finalize``), whichever comes first,
and only once. Its output is aggregated from the chunks seen so far, in the same shape as the
non-streamed call logs, so a stream abandoned half way still shows what it produced.

Every wrapper here is an :class:`ObjectProxy`: attribute access goes to the wrapped object
and ``isinstance`` sees the wrapped object's class, so code that checks
``isinstance(stream, openai.Stream)`` keeps working.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

from spanlog._llm import LLMSpan
from spanlog._log import guard


class ObjectProxy:
    """Delegate everything to ``target``; report the target's class to ``isinstance``."""

    __slots__ = ("__weakref__", "_target")

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._target, name)

    # isinstance() falls back to __class__ when type() does not match, as wrapt's proxies do.
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._target)

    def __dir__(self) -> list[str]:
        return dir(self._target)

    def __repr__(self) -> str:
        return repr(self._target)


def dump(value: Any) -> Any:
    """A JSON-ready copy of an openai object (pydantic model), list of them, or plain value."""
    dumper = getattr(value, "model_dump", None)
    if callable(dumper):
        # exclude_unset keeps what the API sent, not every optional field as null;
        # warnings=False because openai builds its models without validation.
        return dumper(mode="json", exclude_unset=True, warnings=False)
    if isinstance(value, (list, tuple)):
        return [dump(item) for item in value]
    return value


class ChatChunks:
    """Folds chat completion chunks into the ``choices`` a non-streamed call returns."""

    __slots__ = ("choices", "usage")

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None

    def add(self, chunk: Any) -> bool:
        """Take one chunk; every chunk counts as a token arriving."""
        usage = getattr(chunk, "usage", None)
        if usage is not None:  # the final chunk of stream_options={"include_usage": True}
            self.usage = usage
        for choice in getattr(chunk, "choices", None) or ():
            state = self.choices.get(choice.index)
            if state is None:
                state = self.choices[choice.index] = {
                    "role": None, "content": [], "refusal": [], "tool_calls": {},
                    "finish_reason": None}
            delta = choice.delta
            if delta is not None:
                if delta.role:
                    state["role"] = delta.role
                if delta.content:
                    state["content"].append(delta.content)
                if getattr(delta, "refusal", None):
                    state["refusal"].append(delta.refusal)
                for call in delta.tool_calls or ():
                    self._add_tool_call(state["tool_calls"], call)
            if choice.finish_reason:
                state["finish_reason"] = choice.finish_reason
        return True

    @staticmethod
    def _add_tool_call(calls: dict[int, dict[str, Any]], call: Any) -> None:
        entry = calls.get(call.index)
        if entry is None:
            entry = calls[call.index] = {"id": None, "type": "function", "name": [],
                                         "arguments": []}
        if call.id:
            entry["id"] = call.id
        if call.type:
            entry["type"] = call.type
        function = call.function
        if function is not None:
            if function.name:
                entry["name"].append(function.name)
            if function.arguments:
                entry["arguments"].append(function.arguments)

    def output(self) -> list[dict[str, Any]]:
        """The choices so far, shaped like ``ChatCompletion.choices``."""
        out = []
        for index in sorted(self.choices):
            state = self.choices[index]
            message: dict[str, Any] = {"role": state["role"] or "assistant",
                                       "content": "".join(state["content"]) or None}
            if state["refusal"]:
                message["refusal"] = "".join(state["refusal"])
            if state["tool_calls"]:
                message["tool_calls"] = [
                    {"id": c["id"], "type": c["type"],
                     "function": {"name": "".join(c["name"]),
                                  "arguments": "".join(c["arguments"])}}
                    for _, c in sorted(state["tool_calls"].items())]
            out.append({"index": index, "message": message,
                        "finish_reason": state["finish_reason"]})
        return out

    def error(self) -> str | None:
        """Chat streams report errors by raising; nothing to add here."""
        return None


# Responses API events that arrive before the model has produced anything.
_NOT_YET_OUTPUT = frozenset({"response.created", "response.in_progress", "response.queued"})
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponseEvents:
    """Folds Responses API stream events into the ``output`` items a non-streamed call has."""

    __slots__ = ("_error", "final", "items", "text")

    def __init__(self) -> None:
        self.final: Any = None
        self.items: dict[int, Any] = {}
        self.text: dict[int, list[str]] = {}
        self._error: str | None = None

    @property
    def usage(self) -> Any:
        return getattr(self.final, "usage", None)

    def add(self, event: Any) -> bool:
        """Take one event; say whether it carries output (time to first token counts those)."""
        kind = getattr(event, "type", None)
        if kind in _NOT_YET_OUTPUT:
            return False
        if kind in _FINAL:
            self.final = event.response
        elif kind == "response.output_item.done":
            self.items[event.output_index] = event.item
        elif kind == "response.output_text.delta":
            self.text.setdefault(event.output_index, []).append(event.delta)
        elif kind == "error":
            self._error = f"{getattr(event, 'code', None)}: {getattr(event, 'message', None)}"
        return True

    def output(self) -> list[Any]:
        """The output items so far, shaped like ``Response.output``."""
        final_items = getattr(self.final, "output", None)
        if final_items is not None:
            return [dump(item) for item in final_items]
        out: dict[int, Any] = {index: dump(item) for index, item in self.items.items()}
        for index, pieces in self.text.items():
            if index not in out:  # a message cut off before its output_item.done
                out[index] = {"type": "message", "role": "assistant", "status": "incomplete",
                              "content": [{"type": "output_text", "text": "".join(pieces)}]}
        return [out[index] for index in sorted(out)]

    def error(self) -> str | None:
        """The stream's error event, or the failed response's error, if any."""
        failure = getattr(self.final, "error", None)
        if failure is not None:
            return f"{getattr(failure, 'code', None)}: {getattr(failure, 'message', None)}"
        return self._error


Chunks = ChatChunks | ResponseEvents


def _record(call: LLMSpan, chunks: Chunks, error: BaseException | None) -> bool:
    """Log the aggregated output on the span; say whether it is still to be ended."""
    if call.ended:
        return False
    with guard("aggregating a stream's output"):
        if error is not None:
            call.fail(error)
        else:
            reported = chunks.error()
            if reported is not None:
                call.log(error=reported)
        call.log(output=chunks.output(), usage=chunks.usage)
    return True


def _end_call(call: LLMSpan, chunks: Chunks, error: BaseException | None) -> None:
    """Log the aggregated output and end the span (a finalizer: must not reference the proxy)."""
    if _record(call, chunks, error):
        call.end()


class _StreamSpan(ObjectProxy):
    """What the sync and async traced streams share: the span and how it ends."""

    __slots__ = ("_call", "_chunks", "_finalizer")

    def __init__(self, stream: Any, call: LLMSpan, chunks: Chunks) -> None:
        super().__init__(stream)
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "_chunks", chunks)
        # Ends the span of a stream dropped half read; detached once the span ends otherwise.
        object.__setattr__(self, "_finalizer", weakref.finalize(self, _end_call, call, chunks,
                                                                None))

    def end_span(self, error: BaseException | None = None) -> None:
        """End the span now with what was aggregated (idempotent)."""
        self._finalizer.detach()
        _end_call(self._call, self._chunks, error)

    async def aend_span(self, error: BaseException | None = None) -> None:
        """:meth:`end_span` for async code (a flush due at trace end is awaited)."""
        self._finalizer.detach()
        if _record(self._call, self._chunks, error):
            await self._call.aend()

    def _take(self, item: Any) -> None:
        with guard("reading a stream chunk"):
            if self._chunks.add(item):
                self._call.first_token()


class TracedStream(_StreamSpan):
    """A wrapped client's ``openai.Stream``: iterate, ``with``, ``close()``, ``.response``."""

    __slots__ = ()

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        try:
            item = self._target.__next__()
        except StopIteration:
            self.end_span()
            raise
        except BaseException as exc:
            self.end_span(exc if isinstance(exc, Exception) else None)
            raise
        self._take(item)
        return item

    def close(self) -> None:
        """Close the response and end the span."""
        try:
            self._target.close()
        finally:
            self.end_span()

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncTracedStream(_StreamSpan):
    """A wrapped client's ``openai.AsyncStream``: ``async for``, ``async with``, ``close()``."""

    __slots__ = ()

    def __aiter__(self) -> AsyncTracedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._target.__anext__()
        except StopAsyncIteration:
            await self.aend_span()
            raise
        except Exception as exc:
            await self.aend_span(exc)
            raise
        except BaseException:  # cancelled: end the span without awaiting anything more
            self.end_span()
            raise
        self._take(item)
        return item

    async def close(self) -> None:
        """Close the response and end the span."""
        try:
            await self._target.close()
        finally:
            await self.aend_span()

    async def aclose(self) -> None:
        """Alias of :meth:`close`, as on ``openai.AsyncStream``."""
        await self.close()

    async def __aenter__(self) -> AsyncTracedStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class _HelperSpan(ObjectProxy):
    """A ``.stream()`` helper stream and the traced raw stream it reads."""

    __slots__ = ("_raw",)

    def __init__(self, helper: Any, raw: _StreamSpan | None) -> None:
        super().__init__(helper)
        object.__setattr__(self, "_raw", raw)

    def _end(self) -> None:
        if self._raw is not None:
            self._raw.end_span()

    async def _aend(self) -> None:
        if self._raw is not None:
            await self._raw.aend_span()


class HelperStream(_HelperSpan):
    """The stream a ``.stream()`` manager yields (``ChatCompletionStream``, ``ResponseStream``).

    Its events and ``get_final_*`` helpers come from the helper itself, which reads the traced
    raw stream underneath; this proxy only makes ``close()`` end the span at once.
    """

    __slots__ = ()

    def __iter__(self) -> Any:
        return self._target.__iter__()

    def __next__(self) -> Any:
        return self._target.__next__()

    def close(self) -> None:
        """Close the response and end the span."""
        try:
            self._target.close()
        finally:
            self._end()

    def until_done(self) -> HelperStream:
        """Read the stream to its end."""
        self._target.until_done()
        return self

    def __enter__(self) -> HelperStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncHelperStream(_HelperSpan):
    """The async twin of :class:`HelperStream`."""

    __slots__ = ()

    def __aiter__(self) -> Any:
        return self._target.__aiter__()

    async def __anext__(self) -> Any:
        return await self._target.__anext__()

    async def close(self) -> None:
        """Close the response and end the span."""
        try:
            await self._target.close()
        finally:
            await self._aend()

    async def until_done(self) -> AsyncHelperStream:
        """Read the stream to its end."""
        await self._target.until_done()
        return self

    async def __aenter__(self) -> AsyncHelperStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class StreamManager(ObjectProxy):
    """What ``.stream()`` returns: entering it yields a :class:`HelperStream`.

    ``started`` is filled by the traced ``create`` the manager calls on entry, so exiting can
    end that exact span even when the helper was closed behind our back.
    """

    __slots__ = ("_helper_type", "_started")

    def __init__(self, manager: Any, started: list[_StreamSpan],
                 helper_type: Callable[[Any, _StreamSpan | None], _HelperSpan]) -> None:
        super().__init__(manager)
        object.__setattr__(self, "_started", started)
        object.__setattr__(self, "_helper_type", helper_type)

    def _wrap(self, helper: Any) -> _HelperSpan:
        make: Callable[[Any, _StreamSpan | None], _HelperSpan] = self._helper_type
        return make(helper, self._started[-1] if self._started else None)

    def _end(self) -> None:
        for stream in self._started:
            stream.end_span()

    def __enter__(self) -> _HelperSpan:
        return self._wrap(self._target.__enter__())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._target.__exit__(exc_type, exc, tb)
        finally:
            self._end()

    async def __aenter__(self) -> _HelperSpan:
        return self._wrap(await self._target.__aenter__())

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self._target.__aexit__(exc_type, exc, tb)
        finally:
            for stream in self._started:
                await stream.aend_span()
