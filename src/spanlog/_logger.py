"""The logger: one project's rows, its buffer and its flusher; and the module-level API.

``init_logger`` is lazy: it reads the configuration and builds the buffer, but opens no
connection and starts no thread; the first flush does. Rows carry ``project_name`` (the
collector resolves it, docs/protocol.md **ext**) unless a ``project_id`` was given, so a cold
start needs one request.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _context, _log, _serialize
from ._context import current
from ._event import (
    FEEDBACK_SOURCES,
    check_metadata,
    check_scores,
    check_tags,
    event_piece,
)
from ._ids import new_row_id, new_span_id, new_trace_id, row_id_for
from ._merge import IS_MERGE
from ._serialize import iso_utc, snapshot
from ._span import (
    NOOP_SPAN,
    SKIP_SPANLOG,
    NoopSpan,
    Span,
    _open,
    caller_context,
    finish_row,
    resolve_parent,
)

if TYPE_CHECKING:
    from ._config import Config

_loggers: weakref.WeakSet[Logger] = weakref.WeakSet()
_TRACE_END_GUARD = _log.guard("flush at the end of a trace")
_current_logger: Logger | None = None
_STAT_KEYS = ("queued", "in_flight", "sent", "dropped", "retried", "failed", "requests",
              "bytes_sent")


class Logger:
    """Logs the rows of one project to one collector. Create it with :func:`init_logger`."""

    def __init__(self, config: Config) -> None:
        # The delivery machinery loads with the first logger, not with ``import spanlog``:
        # a cold start that imports spanlog pays for it once, at init_logger, before any
        # request (and never on an event loop's thread in the middle of one).
        from ._buffer import Buffer
        from ._delivery import Delivery
        from ._flush import Flusher

        self.config = config
        self.project = config.project
        self.project_id = config.project_id
        self._project_fields = ({"project_id": config.project_id} if config.project_id
                                else {"project_name": config.project})
        self._buffer = Buffer(config.max_queue_rows)
        self._delivery = Delivery(config, self._buffer, self._project_fields)
        self._flusher = Flusher(config, self._buffer, self._delivery)
        self._push = self._buffer.push
        _loggers.add(self)

    def __repr__(self) -> str:
        return f"<spanlog.Logger project={self.project!r} api_url={self.config.api_url!r}>"

    # --- logging ----------------------------------------------------------------------------

    def start_span(self, name: str | None = None, type: str | None = None,
                   parent: Any = None, **event: Any) -> Span:
        """Start a span: a child of ``parent`` (a Span, an exported string or a traceparent),
        else of the current span of this logger, else the root of a new trace.

        Use it with ``with``/``async with`` (it becomes the current span) or call
        ``span.end()``. ``event`` may hold the fields of :meth:`Span.log` plus ``id``,
        ``start_time`` and ``span_attributes``.
        """
        resolved = resolve_parent(parent)
        if resolved is None and parent is None:
            active = _implicit_parent()
            if not isinstance(active, Span) or active._logger is self:
                resolved = active
        return _open(self, name, type, resolved, event, 2)

    def log(self, *, id: str | None = None, **event: Any) -> str:
        """Log one complete row (a root span of its own) and return its row id.

        ``event``: input, output, expected, error, scores (numbers in [0, 1] or None),
        metadata (dict with string keys), metrics, tags (strings). Raises ``ValueError``
        naming the field that is wrong.
        """
        piece = event_piece(event, "Logger.log()")
        now = time.time()
        span_id, trace_id = new_span_id(), new_trace_id()
        if id is not None and (not isinstance(id, str) or not id):
            raise ValueError(f"Logger.log(): id must be a non-empty string, got {id!r}")
        row_id = id or row_id_for(trace_id, span_id)
        row = {"id": row_id, "span_id": span_id, "root_span_id": trace_id,
               "span_parents": None, "span_attributes": {"name": "root", "type": "task"},
               "metrics": {"start": now, "end": now}, "context": caller_context(2),
               IS_MERGE: False}
        self._push(finish_row(row, piece))
        self._trace_end()
        return row_id

    def log_feedback(self, id: str, scores: Mapping[str, Any] | None = None,
                     expected: Any = None, tags: Sequence[str] | None = None,
                     comment: str | None = None, metadata: Mapping[str, Any] | None = None,
                     source: str | None = None) -> None:
        """Attach feedback to the row ``id``: scores, expected, tags merge into it; a
        ``comment`` becomes its own row pointing at it (docs/protocol.md, feedback).

        ``metadata`` describes the feedback (who gave it) and is stored as audit metadata;
        ``source`` is one of external (default), app, api.
        """
        where = "log_feedback()"
        if not isinstance(id, str) or not id:
            raise ValueError(f"{where}: id must be the row id of a span, got {id!r}")
        source = "external" if source is None else source
        if source not in FEEDBACK_SOURCES:
            raise ValueError(f"{where}: source must be one of {', '.join(FEEDBACK_SOURCES)}, "
                             f"got {source!r}")
        if scores is None and expected is None and tags is None and comment is None:
            raise ValueError(f"{where}: give at least one of scores, expected, tags, comment")
        if comment is not None and not isinstance(comment, str):
            raise ValueError(f"{where}: comment must be a string, got {type(comment).__name__}")
        update: dict[str, Any] = {}
        if scores is not None:
            update["scores"] = check_scores(scores, where)
        if expected is not None:
            update["expected"] = snapshot(expected)
        if tags is not None:
            update["tags"] = check_tags(tags, where)
        audit = check_metadata(metadata, where)
        if update:
            self._push({"id": id, **update, "_audit_source": source,
                        "_audit_metadata": audit, IS_MERGE: True})
        if comment is not None:
            self._push({"id": new_row_id(), "created": iso_utc(time.time()),
                        "origin": {"id": id}, "comment": {"text": comment},
                        "_audit_source": source, "_audit_metadata": audit, IS_MERGE: False})
        self._trace_end()

    def submit_scores(self, scores: Mapping[str, Any], parent: Any = None,
                      name: str = "score", metadata: Mapping[str, Any] | None = None) -> str:
        """Record one submission of ``scores`` as a child span of ``parent`` (a Span or an
        exported string; default the current span) and return the child's row id.

        Many users rating one answer each submit; the trace view shows their average on
        the parent (``scores_avg``), where feedback on the span itself would overwrite.
        """
        resolved = resolve_parent(parent)
        if resolved is None:
            active = current.get()
            if active is None:
                raise ValueError("submit_scores(): give parent= (a Span or span.export()); "
                                 "no span is current")
            resolved = active
        child = _open(self, name, "score", resolved, {"scores": scores, "metadata": metadata},
                      2)
        child.end()
        return child.id

    # --- flushing ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now, blocking; True if all of it was delivered.

        True only when every row buffered or being sent at the call has reached the
        collector. On an event loop's thread prefer ``await aflush()``: this blocks the loop
        while it sends, and when a flush on that same loop is sending rows it cannot wait for
        it (that would deadlock the loop), so it returns False at once and logs a hint.
        """
        return self._flusher.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now without blocking the event loop; True if all of
        it was delivered."""
        return await self._flusher.aflush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread and close connections."""
        return self._flusher.close(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters of this logger; see :func:`spanlog.stats`."""
        delivery = self._delivery
        stats = delivery.stats
        return {"queued": len(self._buffer.rows), "in_flight": delivery.in_flight,
                "sent": stats.sent, "dropped": self._buffer.dropped, "retried": stats.retried,
                "failed": stats.failed, "requests": stats.requests,
                "bytes_sent": stats.bytes_sent, "last_error": stats.last_error}

    def _trace_end(self) -> None:
        try:
            if self._flusher.on_trace_end():
                self._flusher.flush(self.config.flush_timeout)
        except Exception:
            _TRACE_END_GUARD.failed()

    async def _atrace_end(self) -> None:
        _serialize.note_event_loop()  # a trace ended on an event loop (asyncio or trio)
        with _TRACE_END_GUARD:
            if self._flusher.on_trace_end():
                await self._flusher.aflush(self.config.flush_timeout)


# --- the module-level API --------------------------------------------------------------------


def init_logger(project: str | None = None, project_id: str | None = None,
                api_key: str | None = None, api_url: str | None = None,
                async_flush: bool | None = None, set_current: bool = True,
                **more: Any) -> Logger:
    """Create a logger (lazily: no network until the first flush) and make it current.

    Every argument left as None comes from its ``SPANLOG_*`` environment variable, else its
    default (project ``Global``, collector ``http://127.0.0.1:8700``); ``more`` takes the
    other settings of the configuration table in docs/sdk.md. Raises ``ValueError`` for a bad
    value, naming the argument or variable.
    """
    from ._config import load_config

    config = load_config({"project": project, "project_id": project_id, "api_key": api_key,
                          "api_url": api_url, "async_flush": async_flush, **more})
    logger = Logger(config)
    if set_current:
        set_current_logger(logger)
    return logger


def current_logger() -> Logger | None:
    """The logger made current by :func:`init_logger`, or None."""
    return _current_logger


def set_current_logger(logger: Logger | None) -> None:
    """Make ``logger`` the one module-level calls use (None: none).

    The logger it replaces delivers what it holds and releases its connection and thread in
    the background (:meth:`Flusher.release`); it stays usable.
    """
    global _current_logger
    previous, _current_logger = _current_logger, logger
    if previous is not None and previous is not logger:
        _release(previous)


# Replaced loggers with rows not yet delivered, held so that dropping the last reference to
# one cannot lose its rows: a release, an explicit flush or the exit flush delivers them.
_releasing: set[Logger] = set()


def _release(logger: Logger) -> None:
    for held in list(_releasing):  # forget those whose rows have all gone meanwhile
        if not held._buffer.rows and not held._delivery.in_flight:
            _releasing.discard(held)
    if logger._buffer.rows or logger._delivery.in_flight:
        _releasing.add(logger)

    def done(ok: bool) -> None:
        if ok and not logger._buffer.rows:
            _releasing.discard(logger)

    with _log.guard("releasing a replaced logger"):
        logger._flusher.release(done)


def _implicit_parent() -> Any:
    """The parent of a span started without ``parent=``: the current span, or the current
    span of another tracing library when a bridge (spanlog.otel) says that one is innermost."""
    active = current.get()
    bridge = _context.bridge
    return active if bridge is None else bridge.parent(active)


def current_span() -> Span | NoopSpan:
    """The span current in this context, or a no-op span (never None)."""
    span = current.get()
    return NOOP_SPAN if span is None else span


def start_span(name: str | None = None, type: str | None = None, parent: Any = None,
               **event: Any) -> Span | NoopSpan:
    """Start a span under ``parent``, else the current span, else the current logger.

    Returns a no-op span when no logger was initialized. See :meth:`Logger.start_span`.
    """
    return open_span(name, type, parent, event, 3)


def open_span(name: str | None, span_type: str | None, parent: Any, event: dict[str, Any],
              depth: int, skip: str | tuple[str, ...] = SKIP_SPANLOG) -> Span | NoopSpan:
    """:func:`start_span` for spanlog's own callers: the caller recorded in the row is found
    from ``depth`` frames up, passing over modules named by ``skip`` (see
    :func:`spanlog._span.caller_context`)."""
    resolved = resolve_parent(parent)
    if isinstance(resolved, Span):
        return _open(resolved._logger, name, span_type, resolved, event, depth, skip)
    if resolved is None and parent is None:
        active = _implicit_parent()
        if type(active) is Span:
            return _open(active._logger, name, span_type, active, event, depth, skip)
        resolved = active
    logger = _current_logger
    if logger is None:
        return NOOP_SPAN
    return _open(logger, name, span_type, resolved, event, depth, skip)


def log(**event: Any) -> str:
    """Log one complete row on the current logger (see :meth:`Logger.log`); its row id."""
    logger = _current_logger
    if logger is None:
        _warn_no_logger("log")
        return ""
    return logger.log(**event)


def log_feedback(id: str, scores: Mapping[str, Any] | None = None, expected: Any = None,
                 tags: Sequence[str] | None = None, comment: str | None = None,
                 metadata: Mapping[str, Any] | None = None, source: str | None = None) -> None:
    """Log feedback on a row of the current logger (see :meth:`Logger.log_feedback`)."""
    logger = _current_logger
    if logger is None:
        _warn_no_logger("log_feedback")
        return
    logger.log_feedback(id=id, scores=scores, expected=expected, tags=tags, comment=comment,
                        metadata=metadata, source=source)


def submit_scores(scores: Mapping[str, Any], parent: Any = None, name: str = "score",
                  metadata: Mapping[str, Any] | None = None) -> str:
    """Record one score submission as a child span (see :meth:`Logger.submit_scores`)."""
    resolved = resolve_parent(parent)
    logger = resolved._logger if isinstance(resolved, Span) else None
    if logger is None and resolved is None:
        active = current.get()
        logger = active._logger if active is not None else None
    logger = logger or _current_logger
    if logger is None:
        _warn_no_logger("submit_scores")
        return ""
    return logger.submit_scores(scores, parent=resolved, name=name, metadata=metadata)


def flush(timeout: float | None = None) -> bool:
    """Flush every logger, blocking; True if everything buffered was delivered.

    In async code use ``await aflush()``; see :meth:`Logger.flush` for what this does on an
    event loop's thread.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for logger in list(_loggers):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = logger.flush(left) and ok
    return ok


async def aflush(timeout: float | None = None) -> bool:
    """Flush every logger without blocking the event loop; True if all was delivered."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for logger in list(_loggers):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = await logger.aflush(left) and ok
    return ok


def stats() -> dict[str, Any]:
    """Counters summed over every logger of this process.

    ``queued`` rows waiting in buffers, ``in_flight`` rows being sent, ``sent`` rows the
    collector stored, ``dropped`` rows refused by a full buffer, ``retried`` requests sent
    again, ``failed`` rows rejected by the collector or still undelivered at exit,
    ``requests`` and ``bytes_sent`` (compressed), and ``last_error`` (a string or None).
    """
    total: dict[str, Any] = dict.fromkeys(_STAT_KEYS, 0)
    total["last_error"] = None
    for logger in list(_loggers):
        one = logger.stats()
        for key in _STAT_KEYS:
            total[key] += one[key]
        total["last_error"] = one["last_error"] or total["last_error"]
    return total


_warned: set[str] = set()


def _warn_no_logger(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        _log.warning("spanlog.%s(): no logger; call spanlog.init_logger() first", what)
