"""The async transport on aiohttp, imported only when async code first flushes.

An ``aiohttp.ClientSession`` belongs to the event loop it was created on, so a session is
created lazily inside the first ``post`` (that is, inside the coroutine that uses it: a
waitUntil hook may run the coroutine on a loop of its own) and closed by :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ._transport import Response, TransportError

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("spanlog's async transport needs aiohttp: "
                      "pip install 'spanlog[async]'") from exc


class AiohttpTransport:
    """:class:`~spanlog._transport.AsyncTransport` on an ``aiohttp.ClientSession``."""

    def __init__(self) -> None:
        self._session: Any = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout: float) -> Response:
        """POST ``body`` to ``url``."""
        return await self.request("POST", url, body, headers, timeout)

    async def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Response:
        """GET ``url``."""
        return await self.request("GET", url, None, headers, timeout)

    async def request(self, method: str, url: str, body: bytes | None,
                      headers: Mapping[str, str], timeout: float) -> Response:
        """Send one request and read the whole response."""
        if self._session is None:
            # auto_decompress off: a transport moves bytes, it does not interpret them.
            self._session = aiohttp.ClientSession(auto_decompress=False)
        try:
            async with self._session.request(
                    method, url, data=body, headers=dict(headers),
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                data = await resp.read()
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                                data)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransportError(f"{method} {url}: {exc!r}") from exc

    async def aclose(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
