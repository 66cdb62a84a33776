"""A Worker that exercises spanlog's FetchTransport in Pyodide and reports what happened."""

from __future__ import annotations

import time
from typing import Any

from workers import Response, WorkerEntrypoint

from spanlog._fetch_transport import FetchTransport
from spanlog._transport import TransportError


async def _outcome(transport: FetchTransport, url: str, timeout: float) -> str:
    try:
        reply = await transport.post(url, b"{}", {"Content-Type": "application/json"}, timeout)
    except TransportError as exc:
        return f"TransportError: {exc}"
    return f"status {reply.status}"


class Default(WorkerEntrypoint):
    async def fetch(self, request: Any) -> Response:
        spec = await request.json()
        transport = FetchTransport()
        reply = await transport.post(
            spec["collector"] + "/v1/project", b'{"name": "transport-probe"}',
            {"Authorization": f"Bearer {spec['api_key']}", "Content-Type": "application/json"},
            5.0)
        version = await transport.get(spec["collector"] + "/version",
                                      {"Authorization": f"Bearer {spec['api_key']}"}, 5.0)
        started = time.monotonic()
        timeout = await _outcome(transport, spec["black_hole"], 0.5)
        report = {
            "project": {"status": reply.status, "body": reply.body.decode(),
                        "content_type": reply.headers.get("content-type", "")},
            "version": {"status": version.status, "body": version.body.decode()},
            "refused": await _outcome(transport, spec["refused"], 5.0),
            "timeout": timeout,
            "timeout_seconds": time.monotonic() - started,
        }
        await transport.aclose()
        report["closed"] = await _outcome(transport, spec["collector"] + "/v1/project", 5.0)
        return Response.from_json(report)
