"""Reading a request body: size limits (compressed and decompressed), gzip, JSON.

aiohttp decompresses ``Content-Encoding: gzip`` bodies as it streams them, a bounded chunk at
a time; reading that stream with our own cap means a gzip bomb costs at most the cap in
memory before it is refused with 413. Bodies need no ``Content-Type``: the SDKs of the seed
platform post JSON without one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from spanlog.server.rows._json import JSONDecodeError, loads

DEFAULT_MAX_BODY = 32 * 1024 * 1024


class BodyTooLarge(ValueError):
    """The body is over the advertised limit (HTTP 413)."""


class BadBody(ValueError):
    """The body is not valid JSON of the expected shape (HTTP 400)."""


def _reason(exc: BaseException) -> str:
    # The innermost cause is the decoder's own words ("incorrect header check").
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return lines[-1].strip() if lines else type(exc).__name__


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The request's JSON body, at most ``max_bytes`` after decompression."""
    return parse_json(await read_bytes(request, max_bytes))


async def read_bytes(request: web.Request, max_bytes: int) -> bytes:
    """The request's body, decompressed, at most ``max_bytes`` (:class:`BodyTooLarge`)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise BodyTooLarge(f"body: {length} bytes is over the limit of {max_bytes} bytes "
                           "(see logs3_payload_max_bytes in GET /version)")
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = await request.content.readany()
        except RequestPayloadError as exc:
            # A corrupt compressed body: aiohttp's decoder gave up. Mark the stream finished
            # so the server does not try to drain (and log) the undecodable rest.
            request.content.feed_eof()
            encoding = request.headers.get("Content-Encoding", "")
            raise BadBody(f"body: cannot decode Content-Encoding {encoding!r}: "
                          f"{_reason(exc)}") from None
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            encoding = request.headers.get("Content-Encoding", "")
            what = "decompressed body" if encoding and encoding != "identity" else "body"
            raise BodyTooLarge(f"{what}: over the limit of {max_bytes} bytes "
                               "(see logs3_payload_max_bytes in GET /version)")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """``raw`` decoded as UTF-8 JSON (RFC 8259: no NaN, no number beyond a double's range, no
    lone surrogate), or :class:`BadBody` saying where."""
    if not raw.strip():
        raise BadBody("body: empty, expected a JSON object")
    try:
        return loads(raw)
    except JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise BadBody(f"body: not UTF-8 at byte {bad.start}") from None
        for constant in (b"-Infinity", b"Infinity", b"NaN"):
            # orjson points at the "I" of "-Infinity".
            if raw.startswith(constant, exc.pos) or raw.startswith(constant, max(exc.pos - 1, 0)):
                raise BadBody(f"body: {constant.decode()} at line {exc.lineno} column "
                              f"{exc.colno} is not valid JSON") from None
        raise BadBody(f"body: invalid JSON at line {exc.lineno} column {exc.colno}: "
                      f"{exc.msg}") from None


async def read_object(request: web.Request, max_bytes: int,
                      required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body as a JSON object that has every field in ``required``."""
    return check_object(await read_json(request, max_bytes), required)


def check_object(body: Any, required: tuple[str, ...] = (), source: str = "body") -> dict[str, Any]:
    """``body`` if it is a JSON object with every field in ``required``, else :class:`BadBody`
    naming ``source``."""
    if not isinstance(body, dict):
        raise BadBody(f"{source}: must be a JSON object, got {type(body).__name__}")
    for field in required:
        if field not in body:
            raise BadBody(f"{source}: missing field {field!r}")
    return body
