"""Which span is current: one ``ContextVar``, and a helper to carry it into plain threads.

A ``ContextVar`` follows ``await``, ``asyncio.gather``/``create_task``, anyio task groups and
``asyncio.to_thread`` by itself, because each of those copies the caller's context. Plain
``threading.Thread`` targets and ``executor.submit`` calls start from an empty context, so
:func:`bind_context` captures the caller's context and runs the function inside a copy of it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._span import Span

P = ParamSpec("P")
R = TypeVar("R")

current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "spanlog_current_span", default=None)


class Bridge:
    """Another tracing library's current span, kept in step with spanlog's (the
    OpenTelemetry bridge of :mod:`spanlog.otel` is the one there is)."""

    def parent(self, span: Span | None) -> Any:
        """The parent for a new span: spanlog's current ``span``, or the other library's
        current span when that one is the innermost (a :class:`RemoteParent` of its ids)."""
        raise NotImplementedError

    def enter(self, span: Span) -> Any:
        """``span`` became current: make it the other library's current span; a token."""
        raise NotImplementedError

    def leave(self, token: Any) -> None:
        """Undo :meth:`enter`."""
        raise NotImplementedError


# None unless a bridge was installed: then every span start and ``with`` asks it (one global
# read on the hot path when there is none).
bridge: Bridge | None = None


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` wrapped to run in the context (and so under the span) current right now.

    Use it to hand work to a plain thread or an executor::

        with spanlog.start_span(name="fan-out"):
            pool.submit(spanlog.bind_context(work), item)
            threading.Thread(target=spanlog.bind_context(work), args=(item,)).start()

    Each call runs in its own copy of the captured context, so the wrapped function may be
    called from several threads at once.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_context

