"""SDK test support: a proxy in front of the real collector that tests can make misbehave.

It runs aiohttp on its own thread and event loop (so that a blocking SDK flush in the test's
thread or loop cannot starve it), records every request it sees, and answers each request
either by forwarding it to the collector or by the next scripted misbehaviour:
``("status", 429, {"Retry-After": "1"}, body)``, ``("reset",)`` (close the connection without
an answer), ``("garbage",)`` (200 with a body that is not JSON, without forwarding) or
``("delay", seconds)`` (forward, but only after a pause), ``("trickle", seconds)`` (forward,
then send the answer's head at once and its body one byte per ``seconds``) or
``("hold", seconds)`` (the same as delay,
but forward only if the client is still connected then: a request whose sender died while it
waited is dropped, as if it had never completed, and counted in ``abandoned``) or
``("gate", event, seconds)`` (forward once the test sets the ``threading.Event``; a gate
still shut after ``seconds``, a bound on a hang, forwards anyway and counts in
``gates_forced``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

import spanlog
from spanlog._transport import Response, TransportError


class Seen:
    """One request the proxy received."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes,
                 at: float) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.at = at

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows of a ``/logs3`` body (gunzipped)."""
        return list(json.loads(self.raw)["rows"])

    @property
    def raw(self) -> bytes:
        """The body as sent before compression (aiohttp's server may already have unzipped
        it; the ``content-encoding`` header still says how it travelled)."""
        return gzip.decompress(self.body) if self.body[:2] == b"\x1f\x8b" else self.body


class ControlledProxy:
    """A misbehaving front for ``upstream``; use as a context manager."""

    def __init__(self, upstream: str, version: dict[str, Any] | None = None) -> None:
        self.upstream = upstream
        self.version = version  # answer GET /version with this instead of forwarding
        self.script: list[tuple[Any, ...]] = []
        self.seen: list[Seen] = []
        self.forwarded = 0  # requests whose upstream answer came back (even if too late)
        self.abandoned = 0  # held requests dropped because their client had gone
        self.gated = 0  # requests waiting at a gate now
        self.gates_forced = 0  # gates that opened at their bound, not by the test
        self.lock = threading.Lock()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def then(self, *actions: tuple[Any, ...]) -> ControlledProxy:
        """Answer the next requests with ``actions``, in order; then forward again."""
        with self.lock:
            self.script.extend(actions)
        return self

    def logs3(self) -> list[Seen]:
        """The ``POST /logs3`` requests seen so far."""
        with self.lock:
            return [s for s in self.seen if s.path == "/logs3"]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``condition`` until true; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; seen "
                                     f"{[(s.method, s.path) for s in self.seen]}")
            time.sleep(0.005)  # polling interval between condition checks

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path,
                    {k.lower(): v for k, v in request.headers.items()}, body, time.monotonic())
        with self.lock:
            self.seen.append(seen)
            action = self.script.pop(0) if self.script else None
        if request.path == "/version" and self.version is not None and action is None:
            return web.json_response(self.version)
        if action is not None:
            if action[0] == "status":
                _, status, headers, text = (*action, {}, "")[:4]
                return web.Response(status=status, headers=headers,
                                    text=text or json.dumps({"error": f"scripted {status}"}))
            if action[0] == "garbage":
                return web.Response(status=200, body=b"\x00not json{")
            if action[0] == "delay":  # answer late, but answer (forwarded)
                await asyncio.sleep(action[1])
                action = None
            elif action[0] == "gate":  # answer once the test says so
                _, gate, bound = action
                with self.lock:
                    self.gated += 1
                opened = await asyncio.to_thread(gate.wait, bound)
                with self.lock:
                    self.gated -= 1
                    self.gates_forced += not opened
                action = None
            elif action[0] == "hold":  # answer late, and only to a client still there
                assert self._stop is not None
                try:  # cut short when the proxy stops, so that its exit does not wait
                    await asyncio.wait_for(self._stop.wait(), action[1])
                except asyncio.TimeoutError:
                    pass
                transport = request.transport
                if self._stop.is_set() or transport is None or transport.is_closing():
                    with self.lock:
                        self.abandoned += 1
                    return web.Response(status=503)  # nobody reads it
                action = None
            elif action[0] == "reset":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never reaches the client
        trickle = action[1] if action is not None and action[0] == "trickle" else None
        # aiohttp's server has decompressed the body already: forward it plain.
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type")}
        assert self._session is not None
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         data=body, headers=headers) as resp:
            data = await resp.read()
            with self.lock:
                self.forwarded += 1
            if trickle is not None:
                return await self._trickle(request, resp.status, data, trickle)
            return web.Response(status=resp.status, body=data,
                                content_type=resp.content_type)

    async def _trickle(self, request: web.Request, status: int, data: bytes,
                       every: float) -> web.StreamResponse:
        """Answer with the head at once, then the body a byte at a time (cut short when the
        proxy stops)."""
        assert self._stop is not None
        answer = web.StreamResponse(status=status, headers={
            "Content-Type": "application/json", "Content-Length": str(len(data))})
        await answer.prepare(request)
        for byte in data:
            await answer.write(bytes([byte]))
            try:
                await asyncio.wait_for(self._stop.wait(), every)
                return answer  # stopping: leave the body unfinished
            except asyncio.TimeoutError:
                pass
            except ConnectionError:
                return answer
        await answer.write_eof()
        return answer

    def __enter__(self) -> ControlledProxy:
        self._thread = threading.Thread(target=self._main, daemon=True, name="test-proxy")
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("proxy did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await self._session.close()


LoggerFactory = Callable[..., spanlog.Logger]


class AiohttpTransport:
    """An ``async_transport`` for tests of the on-loop flush path (the one Pyodide's fetch
    takes), on an ``aiohttp.ClientSession`` created inside the flush that uses it."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Any, timeout: float) -> Response:
        """POST ``body``; TransportError when no answer comes."""
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        try:
            async with self._session.post(url, data=body, headers=dict(headers),
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                data = await resp.read()
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                                data)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransportError(repr(exc)) from exc

    async def aclose(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()


def flush_threads() -> list[threading.Thread]:
    """The background flush threads alive now."""
    return [t for t in threading.enumerate() if t.name == "spanlog-flush" and t.is_alive()]
