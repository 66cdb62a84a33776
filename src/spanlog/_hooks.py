"""Where a trace's flush is handed to the platform (waitUntil hooks); see docs/design.md, flushing.

At the end of each trace the SDK core calls :func:`find_wait_until`. A non-None result takes a
fresh flush coroutine, returns at once, and the platform keeps the invocation alive until the
coroutine completes. The hook in scope is, in this order:

1. none at all when ``SPANLOG_WAIT_UNTIL`` is ``off`` (the background flush then applies);
2. the one a user handed spanlog with :class:`wait_until_scope` (any platform; on Cloudflare
   Python Workers ``with spanlog.wait_until_scope(self.ctx):``);
3. the per-request hook that Vercel's Python runtime installs, when one is installed.

Nothing here imports a platform package: Vercel's hook is read only when the runtime has
already imported ``vercel.cache.context``, so a cold start pays nothing for it.
"""

from __future__ import annotations

import contextvars
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, cast

WaitUntil = Callable[[Coroutine[Any, Any, Any]], None]

F = TypeVar("F", bound=Callable[..., Any])

DISABLE_ENV = "SPANLOG_WAIT_UNTIL"
_OFF = frozenset({"0", "off", "false", "no"})

# The hook a user put in scope; a ContextVar so it follows awaits and tasks and never leaks
# from one request (context) into another.
_scoped: contextvars.ContextVar[WaitUntil | None] = contextvars.ContextVar(
    "spanlog_wait_until", default=None)

# vercel-runtime leaves this stateless stand-in behind after an invocation when it runs with a
# vercel-cache too old to clear the hook; it only closes what it is given.
_VERCEL_DISCARD = "_discard_wait_until"
_VERCEL_CONTEXT = "vercel.cache.context"


def find_wait_until() -> WaitUntil | None:
    """The waitUntil hook in scope for the current request, or None when there is none."""
    hook = _scoped.get()
    if hook is None:
        # Where Vercel's runtime has not imported its hook's module: one dict lookup, no call.
        context = sys.modules.get(_VERCEL_CONTEXT)
        if context is None:
            return None
        hook = _vercel_hook(context)
        if hook is None:
            return None
    # Read the off switch only when a hook was found: this runs at the end of every trace.
    if os.environ.get(DISABLE_ENV, "").strip().lower() in _OFF:
        return None
    return hook


def _vercel_hook(context: Any) -> WaitUntil | None:
    """The hook Vercel's runtime installed for this request (``context``: its module
    ``vercel.cache.context``), if it installed one.

    ``vercel.functions.wait_until`` reads it from ``vercel.cache.context``; with no hook
    installed that function silently closes the coroutine, so it is never called blindly:
    spanlog reads the hook itself and falls back when there is none.
    """
    try:
        hook = context.get_context().wait_until
    except Exception:  # a vercel-cache whose shape we do not know: no hook, fall back
        return None
    if hook is None or getattr(hook, "__name__", "") == _VERCEL_DISCARD:
        return None
    # The collector of an invocation that already ended refuses new work (it closes the
    # coroutine and raises); a task that outlived its request can still see it.
    if getattr(getattr(hook, "__self__", None), "_closed", False):
        return None
    return cast(WaitUntil, hook)


def as_wait_until(hook: object) -> WaitUntil:
    """Turn what a user hands spanlog into a hook: a callable, or an object with a
    ``waitUntil`` (Cloudflare's ``ctx``, JavaScript style) or ``wait_until`` method."""
    for name in ("waitUntil", "wait_until"):
        method = getattr(hook, name, None)
        if method is not None and callable(method):
            return cast(WaitUntil, method)
    if callable(hook):
        return cast(WaitUntil, hook)
    raise TypeError(
        "wait_until_scope() needs a callable that takes a coroutine, or an object with a "
        f"waitUntil/wait_until method (such as a Workers ctx), got {type(hook).__name__}")


class wait_until_scope:  # lower case: used like a function, `with wait_until_scope(...)`
    """Hand spanlog a waitUntil-style hook for a block of code or a function.

    Every trace that ends inside the scope is delivered by a flush coroutine handed to
    ``hook`` (which must keep the invocation alive until it completes), and the response is
    not held up. ``hook`` is a callable taking a coroutine, or an object with a ``waitUntil``
    or ``wait_until`` method::

        with spanlog.wait_until_scope(self.ctx):          # Cloudflare Python Workers
            ...

        @spanlog.wait_until_scope(platform.wait_until)    # a decorator works too
        async def handle(request): ...

    Scopes nest; the innermost wins. Decorating works for plain and ``async`` functions.
    """

    def __init__(self, hook: object) -> None:
        self.hook = as_wait_until(hook)
        self._tokens: list[contextvars.Token[WaitUntil | None]] = []

    def __enter__(self) -> WaitUntil:
        self._tokens.append(_scoped.set(self.hook))
        return self.hook

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _scoped.reset(self._tokens.pop())

    def __call__(self, func: F) -> F:
        """Decorate ``func`` so that each call runs inside a fresh scope with this hook."""
        import inspect  # only when decorating: it costs a cold start milliseconds

        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"wait_until_scope cannot decorate the generator function {func.__qualname__}:"
                " its body runs after the call returns; use `with wait_until_scope(...)` "
                "inside it")
        hook = self.hook
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with wait_until_scope(hook):
                    return await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)
            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with wait_until_scope(hook):
                return func(*args, **kwargs)
        return cast(F, run)
