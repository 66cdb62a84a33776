"""``wrap_openai``: every call of one OpenAI client becomes an ``llm`` span.

The client is wrapped, not patched (the seed document: "we intentionally do not monkey patch
the libraries"): :func:`wrap_openai` returns a proxy that delegates to the client and swaps
in traced versions of ``chat.completions.create / parse / stream``, ``responses.create /
parse / stream``, ``embeddings.create`` and their ``with_raw_response`` twins, also under
``beta.chat``. The same client used unwrapped, or any other client, logs nothing.

The proxy reports the client's class to ``isinstance`` (``isinstance(wrapped, openai.OpenAI)``
is true) while ``type(wrapped)`` is the proxy; ``copy()`` / ``with_options()`` return wrapped
clients. ``with_streaming_response`` calls pass through untraced.

``openai`` is imported only inside :func:`wrap_openai`, never when spanlog is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from spanlog._llm import LLMSpan
from spanlog._log import guard
from spanlog._openai_stream import (
    AsyncHelperStream,
    AsyncTracedStream,
    ChatChunks,
    HelperStream,
    ObjectProxy,
    ResponseEvents,
    StreamManager,
    TracedStream,
    _StreamSpan,
    dump,
)

__all__ = ["wrap_openai"]


_C = TypeVar("_C")

# Transport settings rather than model parameters, and extra_headers may carry credentials.
_NOT_METADATA = frozenset({"extra_headers", "extra_query", "timeout"})

# openai's own frames between the user's call and the wrapper (``with_raw_response`` calls
# the wrapped method from openai._legacy_response) are not the caller a row should name.
_OPENAI_MODULES = ("openai.",)

# Argument types that cannot be one-shot iterators (checked first: isinstance on an ABC is slow).
_PLAIN = frozenset({str, int, float, bool, list, dict, tuple, type(None)})


class _Endpoint:
    """How calls of one API method become spans: name, input field, output, stream chunks."""

    __slots__ = ("chunks", "input_key", "name", "output")

    def __init__(self, name: str, input_key: str, output: Callable[[Any], Any],
                 chunks: Callable[[], ChatChunks | ResponseEvents] | None) -> None:
        self.name = name
        self.input_key = input_key
        self.output = output
        self.chunks = chunks


def _embedding_output(result: Any) -> dict[str, Any]:
    # Vectors are bulky and unreadable in a trace: log their count and size instead.
    data = getattr(result, "data", None) or []
    first = getattr(data[0], "embedding", None) if data else None
    return {"embeddings": len(data),
            "dimensions": len(first) if isinstance(first, list) else None}


_CHAT = _Endpoint("Chat Completion", "messages", lambda r: dump(r.choices), ChatChunks)
_RESPONSES = _Endpoint("Response", "input", lambda r: dump(r.output), ResponseEvents)
_EMBEDDINGS = _Endpoint("Embedding", "input", _embedding_output, None)


class _Wrapping:
    """What every proxy of one wrapped client shares: provider, sync or async, sentinels."""

    __slots__ = ("is_async", "provider", "unset")

    def __init__(self, provider: str, is_async: bool, unset: tuple[type, ...]) -> None:
        self.provider = provider
        self.is_async = is_async
        self.unset = unset  # openai's NotGiven / Omit: arguments the caller did not give

    @staticmethod
    def describe(value: Any) -> Any:
        """A request value as logged; the SDK snapshots it (a deep, JSON-safe copy)."""
        if isinstance(value, type):  # response_format=MyModel / text_format=MyModel
            described: dict[str, Any] = {"type": "json_schema", "name": value.__name__}
            schema = getattr(value, "model_json_schema", None)
            if callable(schema):
                described["schema"] = schema()
            return described
        return value

    def start(self, endpoint: _Endpoint, kwargs: dict[str, Any]) -> LLMSpan | None:
        """Open the call's span; None when logging itself fails (the call still runs)."""
        for key, value in kwargs.items():
            # A generator of messages would be used up by logging it: send a list instead.
            if type(value) not in _PLAIN and isinstance(value, Iterator):
                kwargs[key] = list(value)
        with guard("starting an llm span"):
            # None means "not set" for every parameter (openai's helpers pass extra_body=None).
            metadata = {key: self.describe(value) for key, value in kwargs.items()
                        if key != endpoint.input_key and key not in _NOT_METADATA
                        and value is not None and not isinstance(value, self.unset)}
            return LLMSpan(endpoint.name, input=kwargs.get(endpoint.input_key),
                           provider=self.provider, metadata=metadata,
                           skip_modules=_OPENAI_MODULES)
        return None

    def finish(self, endpoint: _Endpoint, span: LLMSpan, result: Any,
               kwargs: dict[str, Any]) -> tuple[Any, bool]:
        """Log ``result`` on ``span``: what the caller gets (a traced stream if it streams),
        and whether the span is to be ended now (a stream ends it later)."""
        streaming = kwargs.get("stream") is True
        with guard("logging an openai response"):
            if _wants_raw_response(kwargs):
                # with_raw_response: parse() caches, so parsing here costs the caller nothing.
                parsed = result.parse()
                if streaming and endpoint.chunks is not None:
                    return _RawResponse(result, self._traced_stream(endpoint, span, parsed)), False
                self._log_result(endpoint, span, parsed)
            elif streaming and endpoint.chunks is not None:
                return self._traced_stream(endpoint, span, result), False
            else:
                self._log_result(endpoint, span, result)
        return result, True

    @staticmethod
    def _log_result(endpoint: _Endpoint, span: LLMSpan, result: Any) -> None:
        span.first_token()  # a whole response: its first token came with it
        span.log(output=endpoint.output(result), usage=getattr(result, "usage", None))

    def _traced_stream(self, endpoint: _Endpoint, span: LLMSpan, stream: Any) -> _StreamSpan:
        assert endpoint.chunks is not None
        kind = AsyncTracedStream if self.is_async else TracedStream
        return kind(stream, span, endpoint.chunks())

    def call(self, endpoint: _Endpoint, method: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
        """Run one API call inside its span, sync or async like the client."""
        if self.is_async:
            return self._acall(endpoint, method, args, kwargs)
        span = self.start(endpoint, kwargs)
        if span is None:
            return method(*args, **kwargs)
        try:
            result = method(*args, **kwargs)
        except BaseException as exc:
            # The API error is recorded, then re-raised unchanged (the same object);
            # an interrupt ends the span without being called an error.
            if isinstance(exc, Exception):
                span.fail(exc)
            span.end()
            raise
        value, end_now = self.finish(endpoint, span, result, kwargs)
        if end_now:
            span.end()
        return value

    async def _acall(self, endpoint: _Endpoint, method: Callable[..., Any],
                     args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        span = self.start(endpoint, kwargs)
        if span is None:
            return await method(*args, **kwargs)
        try:
            result = await method(*args, **kwargs)
        except Exception as exc:
            span.fail(exc)
            await span.aend()
            raise
        except BaseException:  # cancelled: end without awaiting anything more
            span.end()
            raise
        value, end_now = self.finish(endpoint, span, result, kwargs)
        if end_now:
            await span.aend()
        return value


# What openai's `with_raw_response` wrappers add to a call's extra_headers so that the call
# returns the raw response instead of the parsed body (openai._constants.RAW_RESPONSE_HEADER).
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def _wants_raw_response(kwargs: dict[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    return headers is not None and headers.get(_RAW_RESPONSE_HEADER) == "true"


class _RawResponse(ObjectProxy):
    """``with_raw_response.create(stream=True)``: ``parse()`` returns the traced stream."""

    __slots__ = ("_stream",)

    def __init__(self, raw: Any, stream: _StreamSpan) -> None:
        super().__init__(raw)
        object.__setattr__(self, "_stream", stream)

    def parse(self, *, to: Any = None) -> Any:
        """The traced stream (or, with ``to=``, what the raw response parses into)."""
        if to is None:
            return self._stream
        return self._target.parse(to=to)


class _Resource(ObjectProxy):
    """A wrapped API resource: its children and ``with_raw_response`` stay wrapped."""

    __slots__ = ("_children", "_wrapping")

    def __init__(self, target: Any, wrapping: _Wrapping) -> None:
        super().__init__(target)
        object.__setattr__(self, "_wrapping", wrapping)
        object.__setattr__(self, "_children", {})

    def _child(self, name: str, make: Callable[[], Any]) -> Any:
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = make()
        return child

    @property
    def with_raw_response(self) -> Any:
        """openai's raw-response view, built over this proxy so its calls stay traced."""
        # e.g. CompletionsWithRawResponse(proxy) wraps proxy.create, our traced create.
        return self._child("with_raw_response",
                           lambda: type(self._target.with_raw_response)(self))


class _StreamSource(ObjectProxy):
    """Stands in for a resource inside openai's ``.stream()`` helpers.

    The helpers open their stream with ``resource.create(stream=True)``; through this proxy
    that is the traced ``create``, and the traced stream is remembered so the stream manager
    can end its span on exit.
    """

    __slots__ = ("_is_async", "_started")

    def __init__(self, resource: _Resource, started: list[_StreamSpan], is_async: bool) -> None:
        super().__init__(resource)
        object.__setattr__(self, "_started", started)
        object.__setattr__(self, "_is_async", is_async)

    def _remember(self, stream: Any) -> Any:
        if isinstance(stream, _StreamSpan):
            self._started.append(stream)
        return stream

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """The traced create; the stream it opens is remembered."""
        if self._is_async:
            return self._acreate(args, kwargs)
        return self._remember(self._target.create(*args, **kwargs))

    async def _acreate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._remember(await self._target.create(*args, **kwargs))


class _Streaming(_Resource):
    """A resource with ``create`` / ``parse`` / ``stream`` (chat completions, responses)."""

    __slots__ = ()
    _endpoint: _Endpoint

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """The client's ``create``, logged as an llm span."""
        return self._wrapping.call(self._endpoint, self._target.create, args, kwargs)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        """The client's ``parse``, logged as an llm span."""
        return self._wrapping.call(self._endpoint, self._target.parse, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        """The client's ``stream`` helper; the stream it opens is logged as an llm span."""
        started: list[_StreamSpan] = []
        is_async = self._wrapping.is_async
        source = _StreamSource(self, started, is_async)
        # Run openai's own helper with the source as `self`: it builds the same manager and
        # helper stream as always, over our traced create.
        manager = type(self._target).stream(source, *args, **kwargs)
        return StreamManager(manager, started, AsyncHelperStream if is_async else HelperStream)


class _Completions(_Streaming):
    __slots__ = ()
    _endpoint = _CHAT


class _Responses(_Streaming):
    __slots__ = ()
    _endpoint = _RESPONSES


class _Embeddings(_Resource):
    __slots__ = ()

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """The client's ``embeddings.create``, logged as an llm span."""
        return self._wrapping.call(_EMBEDDINGS, self._target.create, args, kwargs)


class _Chat(_Resource):
    __slots__ = ()

    @property
    def completions(self) -> Any:
        """``chat.completions``, wrapped."""
        return self._child("completions",
                           lambda: _Completions(self._target.completions, self._wrapping))


class _Beta(_Resource):
    __slots__ = ()

    @property
    def chat(self) -> Any:
        """``beta.chat`` (the same chat API), wrapped."""
        return self._child("chat", lambda: _Chat(self._target.chat, self._wrapping))


class _Client(_Resource):
    """A wrapped ``OpenAI`` / ``AsyncOpenAI`` client."""

    __slots__ = ()

    @property
    def chat(self) -> Any:
        """``client.chat``, wrapped."""
        return self._child("chat", lambda: _Chat(self._target.chat, self._wrapping))

    @property
    def responses(self) -> Any:
        """``client.responses``, wrapped."""
        return self._child("responses",
                           lambda: _Responses(self._target.responses, self._wrapping))

    @property
    def embeddings(self) -> Any:
        """``client.embeddings``, wrapped."""
        return self._child("embeddings",
                           lambda: _Embeddings(self._target.embeddings, self._wrapping))

    @property
    def beta(self) -> Any:
        """``client.beta``, with ``beta.chat`` wrapped."""
        return self._child("beta", lambda: _Beta(self._target.beta, self._wrapping))

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        """The client's ``copy`` / ``with_options``, still wrapped."""
        return _Client(self._target.copy(*args, **kwargs), self._wrapping)

    with_options = copy

    def __enter__(self) -> _Client:
        self._target.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._target.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> _Client:
        await self._target.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._target.__aexit__(exc_type, exc, tb)


def wrap_openai(client: _C) -> _C:
    """Return ``client`` wrapped so that each model call it makes is logged as an llm span.

    Works for ``openai.OpenAI``, ``openai.AsyncOpenAI`` and the Azure variants. Each call of
    ``chat.completions.create`` / ``parse`` / ``stream``, ``responses.create`` / ``parse`` /
    ``stream``, ``embeddings.create`` (and the same under ``with_raw_response``) becomes a
    span under the current span, with the messages as ``input``, the choices or output items
    as ``output``, the request parameters, model and provider as ``metadata``, and token
    counts and ``time_to_first_token`` as ``metrics``. Errors are recorded and re-raised
    unchanged. Streams keep their interface and end their span when exhausted, closed or
    dropped. Only the returned object logs; ``client`` itself is left untouched.
    """
    if isinstance(client, _Client):
        return client
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - a client exists, so openai does too
        raise ImportError("wrap_openai needs the openai package: "
                          "python3 -m pip install -e '.[openai]' (or pip install openai)") from exc
    if isinstance(client, openai.AsyncOpenAI):
        is_async = True
    elif isinstance(client, openai.OpenAI):
        is_async = False
    else:
        raise TypeError("wrap_openai(client): expected an openai.OpenAI or openai.AsyncOpenAI "
                        f"client (or an Azure variant), got {type(client).__name__}")
    azure = (openai.AzureOpenAI, openai.AsyncAzureOpenAI)
    provider = "azure" if isinstance(client, azure) else "openai"
    wrapping = _Wrapping(provider, is_async, (openai.NotGiven, openai.Omit))
    return _Client(client, wrapping)  # type: ignore[return-value]
