"""Deliver buffered rows: merge, batch, encode, gzip, POST ``/logs3``, retry, requeue.

The logic is written once, as a generator (:meth:`Delivery.plan`) that *yields* what it needs
done (``post``, ``get``, ``sleep``; ``pace``: give way) and receives the outcome;
:func:`run_sync` and :func:`run_async` are the two small drivers that do the I/O with a
blocking or an async transport. Rows that could not be delivered (retries used up, deadline
reached, flush cancelled) go back to the front of the buffer for the next flush, so an outage
costs memory, not rows; a collector that rejects rows (4xx other than 429) gets them counted
as failed.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Generator
from typing import Any

from . import _log, _serialize
from ._buffer import Buffer, merge_pieces
from ._config import Config
from ._merge import IS_MERGE
from ._serialize import encode_json, encode_slices, gave_way, iso_utc, pace, pace_due, text_size
from ._transport import Response, TransportError

USER_AGENT = "spanlog-python"

# Without an advertised limit, bodies up to this size are sent without asking GET /version
# first, so a cold start needs a single request; bigger ones ask once.
_UNASKED_LIMIT = 1024 * 1024
_FALLBACK_LIMIT = 1024 * 1024
_MAX_RETRY_AFTER = 60.0
_ENVELOPE = len(b'{"rows":,"api_version":2}')

ABORT = object()  # sent into a plan when the flush is being stopped (interpreter exit)
# Yielded by a plan when it has worked ~0.5 ms without giving way (encoding or compressing a
# very long row): run_sync gives up the GIL (pace), run_async lets its event loop run, which
# is what keeps a loop without threads (Pyodide) from waiting for a whole 5 MB row.
PACE = ("pace",)
# Rows encoded in one call of the C encoder (_encode_rows): at most _GROUP rows, and with an
# event loop to keep responsive, at most _PART_TEXT characters of their strings.
_GROUP = 64
_PART_TEXT = 64 * 1024
_GZIP_SLICE = 32 * 1024  # a body longer than this is compressed a slice at a time

Step = tuple[Any, ...]
Plan = Generator[Step, Any, bool]


class Stats:
    """Delivery counters of one logger (``spanlog.stats()`` adds the buffer's)."""

    __slots__ = ("bytes_sent", "failed", "last_error", "requests", "retried", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.requests = 0
        self.bytes_sent = 0
        self.last_error: str | None = None


class _Later(Exception):
    """The rest of this flush must wait for a later one (retries used up, deadline, stop)."""


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Delivery:
    """Sends the rows of one logger's buffer to its collector."""

    def __init__(self, config: Config, buffer: Buffer, project: dict[str, str]) -> None:
        self.config = config
        self.buffer = buffer
        self.project = project
        self.stats = Stats()
        self.lock = threading.Lock()  # one flush at a time keeps pieces of a row in order
        self.limit: int | None = config.max_payload_bytes
        self.in_flight = 0
        # Set at interpreter exit: no request or retry of any flush, on any thread, goes on
        # past it (docs/design.md, exit).
        self.cutoff: float | None = None
        self._logs3 = config.api_url + "/logs3"
        self._version = config.api_url + "/version"
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.get_headers = {k: v for k, v in headers.items() if k != "Content-Type"}
        if config.gzip_level:
            headers["Content-Encoding"] = "gzip"
        self.headers = headers

    def reset_after_fork(self) -> None:
        """Start over in a forked child: fresh lock and counters, nothing in flight (what
        the parent had taken is the parent's to deliver)."""
        self.lock = threading.Lock()
        self.in_flight = 0
        self.stats = Stats()
        self.cutoff = None

    # --- the plan ---------------------------------------------------------------------

    def plan(self, deadline: float | None) -> Plan:
        """Deliver everything buffered now; the result says whether all of it arrived."""
        pieces = self.buffer.drain()
        if not pieces:
            return True
        rows = merge_pieces(pieces)
        # What the pieces held (an OpenTelemetry span's values, say) is in the rows now: let it
        # go before the sending, not after, so that no garbage collection walks it meanwhile.
        del pieces
        self._prepare(rows)
        self.in_flight += len(rows)
        batches: list[tuple[list[dict[str, Any]], bytes]] = []  # fitted, not yet sent
        fitted = 0  # rows[:fitted] are in `batches`, sent or settled
        try:
            size = self.config.batch_max_rows
            while fitted < len(rows) or batches:
                if not batches:
                    chunk = rows[fitted:fitted + size]
                    batches = yield from self._fit(chunk, deadline)
                    fitted += len(chunk)
                    continue
                yield from self._send(*batches[0], deadline)
                batches.pop(0)
            return True
        except _Later:
            return False
        finally:
            self.in_flight -= len(rows)
            left = [row for batch, _ in batches for row in batch] + rows[fitted:]
            if left:
                self.buffer.requeue(left)

    def _prepare(self, rows: list[dict[str, Any]]) -> None:
        project = self.project
        now = None
        for at in range(0, len(rows), 64):
            pace()  # between every 64 rows
            for row in rows[at:at + 64]:
                if "project_id" not in row and "project_name" not in row:
                    row.update(project)
                row["log_id"] = "g"
                if "created" not in row and not row.get(IS_MERGE):
                    metrics = row.get("metrics")
                    start = metrics.get("start") if type(metrics) is dict else None
                    if not isinstance(start, (int, float)):
                        start = now = now or time.time()
                    row["created"] = iso_utc(start)

    def _fit(self, chunk: list[dict[str, Any]],
             deadline: float | None) -> Generator[Step, Any, list[tuple[list[Any], bytes]]]:
        """Split ``chunk`` into batches whose bodies fit the collector's limit."""
        encoded = yield from _encode_rows(chunk)
        size = _ENVELOPE + sum(len(part) + 1 for part in encoded)
        if size <= (self.limit or _UNASKED_LIMIT):
            return [(chunk, _body(encoded))]
        if self.limit is None:
            yield from self._ask_limit(deadline)
            if size <= (self.limit or _FALLBACK_LIMIT):
                return [(chunk, _body(encoded))]
        limit = (self.limit or _FALLBACK_LIMIT) - _ENVELOPE
        encoded = yield from _encode_rows(chunk, 1)  # over the limit: split it row by row
        batches: list[tuple[list[Any], bytes]] = []
        batch: list[dict[str, Any]] = []
        parts: list[bytes] = []
        used = 0
        for row, part in zip(chunk, encoded, strict=True):
            if len(part) + 1 > limit:
                self._fail([row], f"row {row.get('id')} is {len(part)} bytes, over the "
                           f"collector's limit of {self.limit or _FALLBACK_LIMIT} bytes")
                continue
            if batch and used + len(part) + 1 > limit:
                batches.append((batch, _body(parts)))
                batch, parts, used = [], [], 0
            batch.append(row)
            parts.append(part)
            used += len(part) + 1
        if batch:
            batches.append((batch, _body(parts)))
        return batches

    def _ask_limit(self, deadline: float | None) -> Generator[Step, Any, None]:
        timeout = self._timeout(deadline)
        result = yield ("get", self._version, self.get_headers, timeout)
        if result is ABORT:
            raise _Later
        limit = None
        if isinstance(result, Response) and result.status == 200:
            import json

            try:
                info = json.loads(result.body)
                advertised = info.get("logs3_payload_max_bytes")
                if isinstance(advertised, (int, float)) and advertised > 0:
                    limit = int(advertised)
            except (ValueError, AttributeError):
                pass
        if limit is None:
            _log.debug("spanlog: collector advertised no payload limit (%r); using %d bytes",
                      result, _FALLBACK_LIMIT)
        self.limit = limit or _FALLBACK_LIMIT

    def _send(self, batch: list[dict[str, Any]], body: bytes,
              deadline: float | None) -> Generator[Step, Any, None]:
        """Deliver one batch, retrying; rejected rows are counted failed, not raised."""
        payload = body
        if self.config.gzip_level:
            packer = zlib.compressobj(self.config.gzip_level, zlib.DEFLATED, 31)
            if len(body) <= _GZIP_SLICE:
                payload = packer.compress(body) + packer.flush()
            else:
                view = memoryview(body)
                packed = []
                for at in range(0, len(body), _GZIP_SLICE):
                    if pace_due():
                        yield PACE
                    packed.append(packer.compress(view[at:at + _GZIP_SLICE]))
                packed.append(packer.flush())
                payload = b"".join(packed)
        attempt = 0
        while True:
            result = yield ("post", self._logs3, payload, self.headers, self._timeout(deadline))
            if result is ABORT:
                raise _Later
            self.stats.requests += 1
            if isinstance(result, Response):
                status = result.status
                if 200 <= status < 300:
                    self.stats.sent += len(batch)
                    self.stats.bytes_sent += len(payload)
                    return
                if status == 413 and len(batch) > 1:
                    # Over the limit: learn the advertised one and refit; if that does not
                    # split the batch, halve it.
                    yield from self._ask_limit(deadline)
                    parts = yield from self._fit(batch, deadline)
                    if len(parts) == 1 and len(parts[0][0]) == len(batch):
                        half = len(batch) // 2
                        parts = []
                        for piece in (batch[:half], batch[half:]):
                            parts.append((piece, _body((yield from _encode_rows(piece)))))
                    for part, part_body in parts:
                        yield from self._send(part, part_body, deadline)
                    return
                if status == 400 and len(batch) > 1:
                    # A batch is all or nothing: halve it so that one bad row does not
                    # take its neighbours down with it.
                    half = len(batch) // 2
                    for piece in (batch[:half], batch[half:]):
                        piece_body = _body((yield from _encode_rows(piece)))
                        yield from self._send(piece, piece_body, deadline)
                    return
                if status != 429 and status != 408 and status < 500:
                    self._fail(batch, f"collector rejected {len(batch)} row(s) with HTTP "
                               f"{status}: {result.body[:500].decode('utf-8', 'replace')}")
                    return
                error = f"HTTP {status}"
                wait = retry_after_seconds(result.headers.get("retry-after"))
            else:
                error = str(result)
                wait = None
            if attempt >= self.config.max_retries:
                self.stats.last_error = error
                if self.cutoff is not None:
                    raise _Later  # at exit: the exit flush tries again, and reports once
                _log.warning("spanlog: could not deliver %d row(s) after %d attempt(s) (%s); "
                            "keeping them for the next flush", len(batch), attempt + 1, error)
                raise _Later
            wait = backoff(self.config, attempt) if wait is None else min(wait, _MAX_RETRY_AFTER)
            deadline = self._deadline(deadline)
            if deadline is not None and time.monotonic() + wait >= deadline:
                self.stats.last_error = error
                raise _Later
            attempt += 1
            self.stats.retried += 1
            if (yield ("sleep", wait)) is ABORT:
                raise _Later

    def _fail(self, rows: list[dict[str, Any]], message: str) -> None:
        self.stats.failed += len(rows)
        self.stats.last_error = message
        _log.error("spanlog: %s", message)

    def _deadline(self, deadline: float | None) -> float | None:
        """``deadline`` or the exit's cutoff, whichever comes first."""
        cutoff = self.cutoff
        if cutoff is None:
            return deadline
        return cutoff if deadline is None else min(deadline, cutoff)

    def _timeout(self, deadline: float | None) -> float:
        timeout = self.config.request_timeout
        deadline = self._deadline(deadline)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Later
            timeout = min(timeout, remaining)
        return timeout


def _encode_rows(rows: list[dict[str, Any]],
                 group: int = _GROUP) -> Generator[Step, Any, list[bytes]]:
    """The JSON of ``rows`` as parts to join with commas, up to ``group`` rows to a part (one
    call of the C encoder), yielding PACE between parts whenever it is due.

    Without an event loop in the process there is nothing to keep responsive: rows are
    encoded ``group`` at a time, unread. With one (:data:`spanlog._serialize.loop_seen`; the
    delivery plan itself may run on it), each row's strings are counted first, a part holds
    at most _PART_TEXT characters of them, and a row with more than LONG_TEXT is encoded alone,
    a piece at a time (:func:`spanlog._serialize.encode_slices`), with PACE between pieces.
    """
    encoded = []
    if not _serialize.loop_seen:
        for at in range(0, len(rows), group):
            encoded.append(_items(rows[at:at + group]))
            if pace_due():
                yield PACE
        return encoded
    part: list[dict[str, Any]] = []
    text = 0
    for row in rows:
        size = text_size(row)
        if size > _serialize.LONG_TEXT:
            pieces: list[bytes] = []
            for _ in encode_slices(row, pieces):
                yield PACE
            encoded.append(b"".join(pieces))
        else:
            part.append(row)
            text += size
            if text < _PART_TEXT and len(part) < group:
                continue
            encoded.append(_items(part))
            part, text = [], 0
        if pace_due():
            yield PACE
    if part:
        encoded.append(_items(part))
    return encoded


def _items(rows: list[dict[str, Any]]) -> bytes:
    """The JSON of ``rows`` as the items of a list, without its brackets: one encoder call."""
    return encode_json(rows)[1:-1]


def _body(encoded_rows: list[bytes]) -> bytes:
    # One join around the other: two copies of a 5 MB row's bytes rather than three.
    return b"".join((b'{"rows":[', b",".join(encoded_rows), b'],"api_version":2}'))


def backoff(config: Config, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt + 1``: exponential from
    ``retry_backoff`` up to ``retry_backoff_max``, with jitter (half to all of it)."""
    delay = min(config.retry_backoff_max, config.retry_backoff * 2.0 ** min(attempt, 30))
    return delay * (0.5 + random.random() / 2)


# --- drivers --------------------------------------------------------------------------------


def run_sync(plan: Plan, transport: Any, stop: threading.Event | None = None) -> bool:
    """Drive ``plan`` with a blocking transport; ``stop`` cuts sleeps short."""
    try:
        step = next(plan)
        while True:
            kind = step[0]
            result: Any = None
            if kind == "pace":
                pace()
            elif kind == "sleep":
                if stop is not None:
                    result = ABORT if stop.wait(step[1]) else None
                else:
                    time.sleep(step[1])
            elif stop is not None and stop.is_set():
                result = ABORT
            else:
                try:
                    if kind == "post":
                        result = transport.post(*step[1:])
                    else:
                        result = _get(transport, *step[1:])
                except Exception as exc:
                    result = _failure(transport, exc)
            step = plan.send(result)
    except StopIteration as done:
        return bool(done.value)
    finally:
        plan.close()


async def run_async(plan: Plan, transport: Any) -> bool:
    """Drive ``plan`` with an async transport (cancellation requeues what is left)."""
    import asyncio

    _serialize.note_event_loop()  # this loop waits for each step: encoding gives way
    try:
        step = next(plan)
        while True:
            kind = step[0]
            result: Any = None
            if kind == "pace":
                await asyncio.sleep(0)  # the loop runs between slices of encoding and gzip
                gave_way()
            elif kind == "sleep":
                await asyncio.sleep(step[1])
            else:
                await asyncio.sleep(0)  # the loop runs between the slices of a flush
                try:
                    if kind == "post":
                        result = await transport.post(*step[1:])
                    else:
                        getter = getattr(transport, "get", None)
                        result = (await getter(*step[1:]) if getter is not None
                                  else TransportError("transport has no get()"))
                except Exception as exc:
                    result = _failure(transport, exc)
            step = plan.send(result)
    except StopIteration as done:
        return bool(done.value)
    finally:
        plan.close()


def _failure(transport: Any, exc: Exception) -> TransportError:
    """What a request that raised ``exc`` tells the plan (either driver): a TransportError as
    it is; anything else is a third-party transport's own bug, retried like one."""
    if isinstance(exc, TransportError):
        return exc
    return TransportError(f"{type(transport).__name__}: {exc!r}")


def _get(transport: Any, url: str, headers: Any, timeout: float) -> Any:
    getter = getattr(transport, "get", None)
    if getter is None:
        return TransportError("transport has no get()")
    return getter(url, headers, timeout)
