"""An AsyncTransport over the JavaScript ``fetch`` of Pyodide hosts (Cloudflare Python Workers).

Workers have neither sockets nor threads for Python; the only way out is the platform's
``fetch``, reached through Pyodide's ``js`` module. Like every transport, this one only moves
bytes: batching, retries and merging stay in the buffer. Importing this module is safe
anywhere; ``js`` is imported when a request is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ._transport import Response, TransportError


class FetchTransport:
    """POST through JavaScript ``fetch``: the transport spanlog uses under Pyodide.

    ``fetch`` defaults to the global ``fetch`` of the host; pass another JavaScript function
    of the same shape (a Workers service binding's ``fetch``, say) to send through it.
    """

    def __init__(self, fetch: Any = None) -> None:
        self._fetch = fetch
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout: float) -> Response:
        """Send ``body`` to ``url``; the response, or :class:`TransportError` if none came."""
        return await self.request("POST", url, body, headers, timeout)

    async def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Response:
        """GET ``url`` (the delivery asks ``/version`` for the collector's body limit before
        sending a body over 1 MB: without this, such a row would be refused unsent)."""
        return await self.request("GET", url, None, headers, timeout)

    async def request(self, method: str, url: str, body: bytes | None,
                      headers: Mapping[str, str], timeout: float) -> Response:
        """One request; the response, or :class:`TransportError` if none came."""
        if self._closed:
            raise TransportError(f"{method} {url}: the fetch transport is closed")
        try:
            import js  # type: ignore[import-not-found]  # Pyodide only
            from pyodide.ffi import (  # type: ignore[import-not-found]  # Pyodide only
                JsException,
                to_js,
            )
        except ImportError as exc:  # not under Pyodide: a configuration mistake, say so
            raise TransportError(
                f"{method} {url}: FetchTransport needs Pyodide (the `js` module): {exc}"
            ) from None
        fetch = self._fetch if self._fetch is not None else js.fetch
        options: dict[str, Any] = {"method": method, "headers": dict(headers)}
        if body is not None:
            # to_js copies the bytes into a Uint8Array owned by JavaScript.
            options["body"] = to_js(body)
        abort_timeout = getattr(getattr(js, "AbortSignal", None), "timeout", None)
        if abort_timeout is not None:
            # The platform cancels the request itself, so no socket outlives the timeout.
            options["signal"] = abort_timeout(max(1, int(timeout * 1000)))
        try:
            return await asyncio.wait_for(
                self._exchange(fetch, url, to_js(options, dict_converter=js.Object.fromEntries)),
                # A second, slightly later bound for hosts without AbortSignal.timeout.
                timeout + 1.0)
        except JsException as exc:
            raise TransportError(f"{method} {url} failed: {exc}") from None
        except asyncio.TimeoutError:
            raise TransportError(f"{method} {url}: no response within {timeout:g}s") from None

    @staticmethod
    async def _exchange(fetch: Any, url: str, options: Any) -> Response:
        reply = await fetch(url, options)
        data = (await reply.arrayBuffer()).to_bytes()
        # Header names come back lower-cased from the JS Headers object.
        response_headers = {str(name): str(value) for name, value in reply.headers.entries()}
        return Response(status=int(reply.status), headers=response_headers, body=bytes(data))

    async def aclose(self) -> None:
        """Refuse further requests (fetch holds no connection of ours to close)."""
        self._closed = True
