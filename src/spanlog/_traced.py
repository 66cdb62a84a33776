"""``@traced``: a span around each call of a function, its arguments in, its result out.

There is one context manager, the :class:`~spanlog._span.Span` itself (``with`` for sync
code, ``async with`` for async code, so that ``async_flush=False`` awaits its flush); each
wrapper below is a few lines around it. Generators differ only in that the span is made
current around each step instead of across ``yield``: otherwise the span would leak into
the consumer's code between items.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeVar, overload

from . import _context, _logger
from ._context import current
from ._event import check_span_type
from ._serialize import snapshot, snapshot_values
from ._span import NOOP_SPAN, NoopSpan, Span, function_context

F = TypeVar("F", bound=Callable[..., Any])

# Code flags (the inspect module is a costly import: read them directly).
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08
_CO_GENERATOR, _CO_COROUTINE, _CO_ASYNC_GENERATOR = 0x20, 0x80, 0x200


class _Call:
    """What a traced function knows once: its span name, type, context and parameters."""

    __slots__ = ("_fast", "_keywords", "_names", "_skip", "_slow", "_varargs", "_varkw",
                 "attributes", "context", "io", "name")

    def __init__(self, fn: Callable[..., Any], name: str, span_type: str | None,
                 io: bool) -> None:
        self.name = name
        self.attributes = {"name": name, "type": span_type} if span_type else {"name": name}
        self.io = io
        self.context = function_context(fn)
        code = getattr(fn, "__code__", None)
        self._slow: Any = None
        self._names: tuple[str, ...] = ()
        self._keywords: frozenset[str] = frozenset()
        self._skip = 0
        self._fast = False  # positional calls bind by zip alone
        self._varargs: str | None = None
        self._varkw: str | None = None
        if code is None or hasattr(fn, "__wrapped__") or hasattr(fn, "__signature__"):
            self._slow = fn  # bind through inspect.signature, lazily
            return
        count = code.co_argcount
        names = code.co_varnames
        self._names = names[:count]
        # A method's instance (or class) is not an input worth logging: its repr is noise.
        self._skip = 1 if count and names[0] in ("self", "cls") else 0
        extra = count + code.co_kwonlyargcount
        self._keywords = frozenset(names[code.co_posonlyargcount:extra])
        if code.co_flags & _CO_VARARGS:
            self._varargs = names[extra]
            extra += 1
        if code.co_flags & _CO_VARKEYWORDS:
            self._varkw = names[extra]
        self._fast = not self._skip

    def open(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | NoopSpan:
        """A new span for one call (not yet current), its input logged."""
        parent: Any = current.get()
        if _context.bridge is not None:
            parent = _context.bridge.parent(parent)
        if type(parent) is Span:
            span = Span(parent._logger, self.attributes, parent, self.context)
        else:  # none, or a span of another tracing library (bridged)
            logger = _logger._current_logger
            if logger is None:
                return NOOP_SPAN
            span = Span(logger, self.attributes, parent, self.context)
        if self.io:
            names = self._names
            if not kwargs and len(args) <= len(names) and self._fast:  # bind(), inlined
                bound = dict(zip(names, args, strict=False))
            else:
                bound = self.bind(args, kwargs)
            span._row["input"] = snapshot_values(bound)
        return span

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, like ``Signature.bind(...).arguments``."""
        names = self._names
        if not kwargs and len(args) <= len(names) and self._slow is None:
            bound = dict(zip(names, args, strict=False))
        elif self._slow is not None:
            return _bind_slow(self._slow, args, kwargs)
        else:
            bound = self._bind_more(args, kwargs)
        if self._skip:
            bound.pop(names[0], None)
        return bound

    def _bind_more(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self._names
        bound = dict(zip(names, args, strict=False))
        if len(args) > len(names):
            bound[self._varargs or "args"] = args[len(names):]
        extra: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in self._keywords or self._varkw is None:
                bound[key] = value
            else:
                extra[key] = value
        if extra:
            bound[self._varkw or "kwargs"] = extra
        return bound

    def output(self, span: Span | NoopSpan, value: Any) -> Any:
        """Log ``value`` as the span's output (if tracing I/O) and return it."""
        if self.io and type(span) is Span:
            span._row["output"] = snapshot(value)
        return value


def _bind_slow(fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> dict[str, Any]:
    import inspect

    try:
        return dict(inspect.signature(fn).bind(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        return {"args": list(args), "kwargs": kwargs}


class _Items:
    """The items a traced generator yields, kept up to the logger's bound."""

    __slots__ = ("items", "limit")

    def __init__(self, span: Span | NoopSpan) -> None:
        self.items: list[Any] = []
        self.limit = span._logger.config.max_generator_items if type(span) is Span else 0

    def add(self, item: Any) -> None:
        if len(self.items) < self.limit:
            self.items.append(snapshot(item))


def _wrap(fn: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    flags = getattr(getattr(fn, "__code__", None), "co_flags", 0)
    if not flags and call._slow is not None:
        import inspect

        flags = (_CO_ASYNC_GENERATOR if inspect.isasyncgenfunction(fn) else
                 _CO_GENERATOR if inspect.isgeneratorfunction(fn) else
                 _CO_COROUTINE if inspect.iscoroutinefunction(fn) else 0)

    if flags & _CO_ASYNC_GENERATOR:
        async def traced_async_gen(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            span = call.open(args, kwargs)
            kept = _Items(span)
            async with _Steps(span) as steps:
                gen = steps.run(fn, *args, **kwargs)
                try:
                    while True:
                        try:
                            item = await steps.arun(gen.__anext__)
                        except StopAsyncIteration:
                            break
                        kept.add(item)
                        yield item
                finally:
                    call.output(span, kept.items)
                    await steps.arun(gen.aclose)
        return functools.wraps(fn)(traced_async_gen)

    if flags & _CO_GENERATOR:
        def traced_gen(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            span = call.open(args, kwargs)
            kept = _Items(span)
            with _Steps(span) as steps:
                gen = steps.run(fn, *args, **kwargs)
                sent = None
                try:
                    while True:
                        try:
                            item = steps.run(gen.send, sent)
                        except StopIteration as stop:
                            return stop.value
                        kept.add(item)
                        sent = yield item
                finally:
                    call.output(span, kept.items)
                    steps.run(gen.close)
        return functools.wraps(fn)(traced_gen)

    if flags & _CO_COROUTINE:
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            async with call.open(args, kwargs) as span:
                return call.output(span, await fn(*args, **kwargs))
        return functools.wraps(fn)(traced_async)

    def traced_sync(*args: Any, **kwargs: Any) -> Any:
        with call.open(args, kwargs) as span:
            return call.output(span, fn(*args, **kwargs))
    return functools.wraps(fn)(traced_sync)


class _Steps:
    """A generator's span: current only while the generator body runs, ended at the end."""

    __slots__ = ("span",)

    def __init__(self, span: Span | NoopSpan) -> None:
        self.span = span

    def run(self, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if type(self.span) is not Span:
            return step(*args, **kwargs)
        token = current.set(self.span)
        try:
            return step(*args, **kwargs)
        finally:
            current.reset(token)

    async def arun(self, step: Callable[[], Any]) -> Any:
        if type(self.span) is not Span:
            return await step()
        token = current.set(self.span)
        try:
            return await step()
        finally:
            current.reset(token)

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span = self.span
        if type(span) is Span:
            span.__exit__(exc_type, exc, tb)  # records the error, ends, flushes

    async def __aenter__(self) -> _Steps:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span = self.span
        if type(span) is Span:
            await span.__aexit__(exc_type, exc, tb)


@overload
def traced(fn: F, /) -> F: ...


@overload
def traced(fn: str | None = None, /, *, name: str | None = None, type: str | None = "function",
           notrace_io: bool = False) -> Callable[[F], F]: ...


def traced(fn: Any = None, /, *, name: str | None = None, type: str | None = "function",
           notrace_io: bool = False) -> Any:
    """Trace every call of the decorated function as a span.

    Use it bare (``@traced``) or with options (``@traced(name=..., type=...,
    notrace_io=True)``); it works on sync and async functions, generators and async
    generators. The span's input is the call's arguments by name, its output the return
    value (the yielded items, up to ``max_generator_items``, for generators); an exception
    is recorded in ``error`` with its traceback and re-raised unchanged. Without an
    initialized logger the function just runs.
    """
    if isinstance(fn, str):
        name, fn = fn, None
    span_type = check_span_type(type, "traced()")

    def decorate(f: F) -> F:
        if not callable(f):
            raise TypeError(f"traced() decorates functions, got {f!r}")
        span_name = name or getattr(f, "__name__", None) or "traced"
        return _wrap(f, _Call(f, span_name, span_type, not notrace_io))  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate
