"""Reading a request body: size limits (compressed and decompressed), gzip, JSON.

``Content-Encoding: gzip`` (or deflate) bodies are decompressed here as they stream in
(aiohttp's own decoding is off), never more than the cap past what was read: a gzip bomb
costs at most the cap in memory before it is refused with 413, and a corrupt or unknown
encoding gets a JSON error that says so. Bodies need no ``Content-Type``: the SDKs of the seed
platform post JSON without one.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from typing import Any, NoReturn

from aiohttp import web

from spanlog.server.http._guard import BODY_GRACE, BODY_MIN_RATE
from spanlog.server.rows._json import JSONDecodeError, loads
from spanlog.server.store._errors import Unavailable

DEFAULT_MAX_BODY = 32 * 1024 * 1024
# What one body may hold (docs/collector.md, "What it guarantees"). Decoded JSON takes far
# more memory than its text (a 7-byte `{"a":0}` is a 150-byte dict), so a body is counted
# before it is decoded: its objects and arrays, and how deep they nest. The body itself is
# the first level, a row of /logs3 the third.
MAX_CONTAINERS = 1_000_000
MAX_DEPTH = 64


class BodyBudget:
    """The bytes of request bodies held in memory at once, across requests (docs/collector.md,
    "What it guarantees"): a body that would go over waits for none, it is answered 503 with
    ``Retry-After``. What a request took is given back when it is answered (``errors_as_json``
    in ``_app``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, request: web.Request, size: int) -> None:
        """Count ``size`` more bytes held for ``request`` (:class:`Unavailable` if over)."""
        if self.used + size > self.limit:
            raise Unavailable(f"busy: {self.used} bytes of request bodies are being decoded, "
                              f"the limit is {self.limit}; retry shortly", retry_after=1.0)
        self.used += size
        request[_HELD] = request.get(_HELD, 0) + size

    def release(self, request: web.Request) -> None:
        """Give back every byte ``request`` took."""
        self.used -= request.pop(_HELD, 0)


_HELD = web.RequestKey("spanlog_body_bytes_held", int)


class BodyTimeout(ValueError):
    """The body arrives too slowly (HTTP 408, and the connection is closed)."""


class BodyTooLarge(ValueError):
    """The body is over the advertised limit (HTTP 413)."""


class BadBody(ValueError):
    """The body is not valid JSON of the expected shape (HTTP 400)."""


async def read_json(request: web.Request, max_bytes: int,
                    budget: BodyBudget | None = None) -> Any:
    """The request's JSON body, at most ``max_bytes`` after decompression."""
    return parse_json(await read_bytes(request, max_bytes, budget))


class UnsupportedEncoding(ValueError):
    """A ``Content-Encoding`` the collector cannot decode (HTTP 415)."""


# What aiohttp is told not to decode (the runner's auto_decompress=False): this module
# decodes, so that every refusal is a JSON error that names the encoding.
_ENCODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16,
              "deflate": zlib.MAX_WBITS}


def decoder_for(request: web.Request) -> tuple[str, Any]:
    """The request's Content-Encoding and a zlib decompressor for it (None: identity)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return encoding, None
    if encoding not in _ENCODINGS:
        raise UnsupportedEncoding(f"body: Content-Encoding {encoding!r} is not supported "
                                  "(send gzip, deflate or none)")
    return encoding, zlib.decompressobj(_ENCODINGS[encoding])


class BodyReader:
    """Reads a request's body as it arrives, as sent (compressed or not), with the body
    deadline of docs/collector.md, "What it guarantees": once ``BODY_GRACE`` seconds have
    passed, the body must have come at ``BODY_MIN_RATE`` bytes/s on average, else
    :class:`BodyTimeout`; so a client trickling bytes cannot hold the request."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._content = request.content
        self._received = 0
        self._started = asyncio.get_running_loop().time()

    async def read(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end."""
        content = self._content
        loop = asyncio.get_running_loop()
        try:
            data = content.read_nowait()  # what already arrived: most bodies need no timer
            if not data and not content.at_eof():
                left = (self._started + BODY_GRACE + self._received / BODY_MIN_RATE
                        - loop.time())
                # wait_for, not asyncio.timeout: the collector runs on Python 3.10 too.
                data = await asyncio.wait_for(content.readany(), max(left, 0.0))
        except asyncio.TimeoutError:
            raise BodyTimeout(f"body: {self._received} bytes in "
                              f"{loop.time() - self._started:.0f} s, slower than "
                              f"{BODY_MIN_RATE // 1024} KiB/s after the first "
                              f"{BODY_GRACE:.0f} s (see docs/collector.md)") from None
        except ConnectionResetError:  # the client left; nobody reads the answer
            raise BadBody("body: the connection closed before the body was complete") \
                from None
        except RuntimeError:
            # aiohttp's "Connection closed." once the client has gone mid-body.
            transport = self._request.transport
            if transport is not None and not transport.is_closing():
                raise
            raise BadBody("body: the connection closed before the body was complete") \
                from None
        self._received += len(data)
        return data


async def read_bytes(request: web.Request, max_bytes: int,
                     budget: BodyBudget | None = None) -> bytes:
    """The request's body, decompressed, at most ``max_bytes`` (:class:`BodyTooLarge`),
    counted in ``budget`` as it arrives."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise BodyTooLarge(f"body: {length} bytes is over the limit of {max_bytes} bytes "
                           "(see logs3_payload_max_bytes in GET /version)")
    encoding, decoder = decoder_for(request)
    what = "decompressed body" if decoder is not None else "body"
    chunks: list[bytes] = []
    total = 0
    body = BodyReader(request)
    while True:
        data = await body.read()
        if decoder is None:
            chunk = data
        elif not data:
            if not decoder.eof:
                raise BadBody(f"body: cannot decode Content-Encoding {encoding!r}: the "
                              f"compressed data ends early (truncated, or not {encoding})")
            chunk = b""
        else:
            chunk = inflate(decoder, encoding, data, max_bytes - total)
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLarge(f"{what}: over the limit of {max_bytes} bytes "
                               "(see logs3_payload_max_bytes in GET /version)")
        if budget is not None:
            budget.take(request, len(chunk))
        chunks.append(chunk)
        if not data:
            return b"".join(chunks)


def inflate(decoder: Any, encoding: str, data: bytes, room: int) -> bytes:
    """``data`` decompressed, at most ``room + 1`` bytes of it (more is refused by the
    caller, so a gzip bomb never inflates past the limit)."""
    try:
        if decoder.eof:
            if data.strip(b"\0"):
                raise BadBody(f"body: cannot decode Content-Encoding {encoding!r}: data "
                              "after the end of the compressed stream")
            return b""
        out: bytes = decoder.decompress(data, room + 1)
    except zlib.error as exc:
        raise BadBody(f"body: cannot decode Content-Encoding {encoding!r}: corrupt "
                      f"compressed data ({exc})") from None
    if decoder.unconsumed_tail:
        return out + b"\0"  # over the limit: one byte past it is enough to say so
    return out


# Every byte but the JSON brackets and quotes, for bytes.translate to delete.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


_STRING = re.compile(rb'"[^"]*"')


def _structure(raw: bytes, escaped: bool) -> bytes:
    """The brackets of the JSON text ``raw`` outside its strings, in order (byte operations
    in C: no Python loop over the body); ``escaped``: whether ``raw`` holds a backslash."""
    if escaped:
        # Escaped backslashes first, then escaped quotes: what is left of `"` ends strings.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = raw.translate(None, _NOT_STRUCTURE)
    pairs = marks.count(b'""')
    if 2 * pairs == marks.count(b'"'):
        # Every quote is in a pair (no string holds a bracket): what removing the pairs
        # leaves, at a third of the cost of replace.
        return marks.translate(None, b'"')
    # Removing two adjacent quotes keeps every other mark inside or outside a string.
    marks = marks.replace(b'""', b"")
    if marks.find(b'"') >= 0:  # strings with brackets in them
        marks = _STRING.sub(b"", marks)
    return marks


def _maybe_too_deep(marks: bytes) -> bool:
    """False when the brackets ``marks`` nest at most :data:`MAX_DEPTH` levels; True when
    they may nest deeper (one pass removes one or two innermost levels)."""
    for _ in range(MAX_DEPTH // 2):
        if not marks:
            return False
        marks = marks.replace(b"[]", b"").replace(b"{}", b"")
    return bool(marks)


def _too_deep_path(value: Any, depth: int = 1) -> list[str | int] | None:
    """The path to the first object or array below :data:`MAX_DEPTH` levels in ``value``."""
    if depth > MAX_DEPTH:
        return []
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, (dict, list)):
            path = _too_deep_path(item, depth + 1)
            if path is not None:
                return [key, *path]
    return None


def _where(path: list[str | int]) -> str:
    """``rows[3].metadata`` for the path ``["rows", 3, "metadata", ...]``: the row and field."""
    text = "body"
    for i, key in enumerate(path[:3]):
        if isinstance(key, int):
            text += f"[{key}]"
        else:
            text = key if i == 0 else f"{text}.{key}"
    return text


def _too_deep(where: str) -> BadBody:
    return BadBody(f"{where}: nests deeper than {MAX_DEPTH} levels of objects and arrays "
                   "(the limit per request body, see docs/collector.md)")


def parse_json(raw: bytes) -> Any:
    """``raw`` decoded as UTF-8 JSON (RFC 8259: no NaN, no number beyond a double's range, no
    lone surrogate), or :class:`BadBody` saying where.

    A body with more than :data:`MAX_CONTAINERS` objects and arrays is refused
    (:class:`BodyTooLarge`) before it is decoded; one nesting deeper than :data:`MAX_DEPTH`
    levels is refused naming where (the stores and the merge recurse into values).
    """
    if not raw.strip():
        raise BadBody("body: empty, expected a JSON object")
    # One pass over the body (translate) leaves its brackets; they are counted and nested
    # there, a few percent of its size (counting brackets in the body first would be two
    # more passes over all of it).
    escaped = raw.find(b"\\") >= 0  # find, not `in`: see rows/_json.py
    marks = _structure(raw, escaped)
    containers = marks.count(b"{") + marks.count(b"[")
    if containers > MAX_CONTAINERS:
        raise BodyTooLarge(f"body: {containers} JSON objects and arrays is over the "
                           f"limit of {MAX_CONTAINERS:,} per request (see "
                           "docs/collector.md); send fewer rows per request")
    deep = containers > MAX_DEPTH and _maybe_too_deep(marks)
    try:
        value = loads(raw)
    except JSONDecodeError as exc:
        if deep:
            raise _too_deep("body") from None
        _explain(raw, exc)
    except RecursionError:  # the standard library's decoder (long integers), deeply nested
        raise _too_deep("body") from None
    if deep and isinstance(value, (dict, list)):
        path = _too_deep_path(value)
        if path is not None:
            raise _too_deep(_where(path))
    if escaped and raw.find(b"\\u0000") >= 0:
        # U+0000: PostgreSQL cannot store it, so neither engine does (docs/collector.md).
        nul_path = _nul_path(value)
        if nul_path is not None:
            raise BadBody(f"{_where(nul_path)}: contains a NUL character (U+0000), which "
                          "the collector does not store")
    return value


def _nul_path(value: Any) -> list[str | int] | None:
    """The path to the first string (or key) holding U+0000 in ``value``, or None."""
    if isinstance(value, str):
        return [] if "\0" in value else None
    items: Any = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        if isinstance(key, str) and "\0" in key:
            return [key]
        path = _nul_path(item)
        if path is not None:
            return [key, *path]
    return None


def _explain(raw: bytes, exc: JSONDecodeError) -> NoReturn:
    """Raise :class:`BadBody` saying why ``raw`` is not JSON (orjson's ``exc``)."""
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
                      required: tuple[str, ...] = (),
                      budget: BodyBudget | None = None) -> dict[str, Any]:
    """The body as a JSON object that has every field in ``required``."""
    return check_object(await read_json(request, max_bytes, budget), required)


def check_object(body: Any, required: tuple[str, ...] = (), source: str = "body") -> dict[str, Any]:
    """``body`` if it is a JSON object with every field in ``required``, else :class:`BadBody`
    naming ``source``."""
    if not isinstance(body, dict):
        raise BadBody(f"{source}: must be a JSON object, got {type(body).__name__}")
    for field in required:
        if field not in body:
            raise BadBody(f"{source}: missing field {field!r}")
    return body
