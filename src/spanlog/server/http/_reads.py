"""What the read endpoints share (fetch, export, sessions): the fetch arguments of a request,
checked, and a store read that stops when its client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from spanlog.server.http._time import parse_range
from spanlog.server.store._errors import BadRequest, Unavailable

T = TypeVar("T")

# How often a handler waiting on a read checks that its client is still there.
_GONE_CHECK = 0.25


def client_gone(request: web.Request) -> bool:
    """Whether the client of ``request`` has disconnected."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def unless_gone(request: web.Request, read: Awaitable[T]) -> T:
    """Await a store read, cancelling it if the client disconnects meanwhile: the store then
    stops the query, so nobody's abandoned work holds a reader (docs/collector.md).

    The read runs in the handler's own task, watched by a timer that re-arms itself every
    :data:`_GONE_CHECK` seconds: a read that ends before the first check costs one timer,
    not a task of its own and the loop turns of waiting on it.
    """
    task = asyncio.current_task()
    assert task is not None  # a request handler always runs in a task
    loop = asyncio.get_running_loop()
    gone = False
    timer: asyncio.TimerHandle

    def check() -> None:
        nonlocal gone, timer
        if client_gone(request):
            gone = True
            task.cancel()
        else:
            timer = loop.call_later(_GONE_CHECK, check)

    timer = loop.call_later(_GONE_CHECK, check)
    try:
        return await read
    except asyncio.CancelledError:
        if not gone:
            raise
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        raise Unavailable("the client disconnected") from None
    finally:
        timer.cancel()


def roots_only_arg(source: dict[str, Any]) -> bool:
    """``roots_only`` of a request: a JSON boolean, or ``true``/``false``/``1``/``0`` from a
    query string."""
    roots = source.get("roots_only", False)
    if isinstance(roots, str):  # from a GET query string
        roots = {"1": True, "true": True, "0": False, "false": False}.get(roots.lower(), roots)
    if not isinstance(roots, bool):
        raise BadRequest("roots_only: must be true or false")
    return roots


def filter_arg(source: dict[str, Any]) -> str | None:
    """``filter`` of a request (a filter expression, docs/protocol.md), or None."""
    text = source.get("filter")
    if text is not None and not isinstance(text, str):
        raise BadRequest("filter: must be a string expression such as "
                         "\"metadata.user_id = '1234'\"")
    return text


def fetch_args(source: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``Store.fetch`` from a fetch request's fields."""
    args: dict[str, Any] = {"filter": filter_arg(source)}
    limit = source.get("limit", 50)
    if isinstance(limit, str):
        try:
            limit = int(limit)
        except ValueError:
            raise BadRequest(f"limit: must be an integer, got {limit!r}") from None
    args["limit"] = limit
    cursor = source.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadRequest("cursor: must be a string returned by a previous fetch")
    args["cursor"] = cursor
    args["roots_only"] = roots_only_arg(source)
    args["since"], args["until"] = parse_range(source)
    return args
