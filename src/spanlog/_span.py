"""Spans: what one unit of work logs, from its start to its end.

A span keeps what is logged on it while it runs and, when it ends, pushes **one** complete
row into its logger's buffer: the caller's thread pays for a handful of attribute writes, a
snapshot of the user's values and one ``deque.append`` per span. What is logged after the end
(``span.log``, feedback) travels as merge pieces on the same row id (docs/protocol.md).

Fields a span leaves to the flusher: ``id`` (derived from the span ids unless the user gave
one, see :func:`spanlog._ids.row_id_for`), ``created`` (from ``metrics.start``), the project
and ``log_id``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _context
from ._context import current
from ._event import check_span_type, event_piece, format_error
from ._ids import getrandbits, row_id_for
from ._merge import IS_MERGE, merge_into
from ._propagation import RemoteParent, export_parent, parse_parent
from ._version import __version__

if TYPE_CHECKING:
    from ._logger import Logger

_time = time.time
_ORIGIN = {"name": "spanlog", "version": __version__}
_START_OPTIONS = frozenset({"start_time", "id"})
_contexts: dict[tuple[Any, int], dict[str, Any]] = {}

# Bumped in a forked child (:func:`after_fork`): a span made before holds an older value,
# so the child knows it for one of the parent's, open or not.
_generation = 0


def after_fork() -> None:
    """In a forked child: spans open at the fork are the parent's to end and send."""
    global _generation
    _generation += 1

# Module-name prefixes passed over when recording a span's caller: spanlog's own frames. A
# client wrapper adds its client library's (wrap_openai: "openai."), whose frames sit between
# the user's call and the wrapper under ``with_raw_response``.
SKIP_SPANLOG = "spanlog."


def skip_prefixes(modules: tuple[str, ...] | list[str] = ()) -> str | tuple[str, ...]:
    """What :func:`caller_context` takes as ``skip``: spanlog's prefix plus ``modules``
    (module-name prefixes such as ``"openai."``), computed once by the caller."""
    for module in modules:
        if not isinstance(module, str) or not module:
            raise ValueError(f"skip_modules must be module-name prefixes (non-empty strings), "
                             f"got {module!r}")
    return (SKIP_SPANLOG, *modules) if modules else SKIP_SPANLOG


def caller_context(depth: int, skip: str | tuple[str, ...] = SKIP_SPANLOG) -> dict[str, Any]:
    """The row ``context`` of the first caller ``depth`` or more frames up whose module
    name starts with none of the ``skip`` prefixes (default: spanlog's own modules).

    Cached per call site: the same dict object serves every row logged from one line.
    """
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return {"span_origin": _ORIGIN}
    # One str.startswith per frame whatever ``skip`` holds (it takes a tuple as it is).
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(skip):
        frame = frame.f_back
    key = (frame.f_code, frame.f_lineno)
    context = _contexts.get(key)
    if context is None:
        if len(_contexts) > 4096:
            _contexts.clear()
        code = frame.f_code
        context = _contexts[key] = {
            "caller_functionname": code.co_name,
            "caller_filename": code.co_filename,
            "caller_lineno": frame.f_lineno,
            "span_origin": _ORIGIN,
        }
    return context


def function_context(fn: Any) -> dict[str, Any]:
    """The row ``context`` of a decorated function: where it is defined."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return {"caller_functionname": getattr(fn, "__qualname__", repr(fn)),
                "span_origin": _ORIGIN}
    return {"caller_functionname": code.co_name, "caller_filename": code.co_filename,
            "caller_lineno": code.co_firstlineno, "span_origin": _ORIGIN}


def finish_row(row: dict[str, Any], fields: dict[str, Any] | None) -> dict[str, Any]:
    """Put the user's ``fields`` into ``row``: their metrics and attributes merge with ours."""
    if fields:
        metrics = fields.pop("metrics", None)
        attributes = fields.pop("span_attributes", None)
        row.update(fields)
        if metrics:
            base = row.get("metrics")
            row["metrics"] = {**base, **metrics} if base else metrics
        if attributes:
            base = row.get("span_attributes")
            row["span_attributes"] = {**base, **attributes} if base else attributes
    return row


class Span:
    """One unit of work in a trace; use it with ``with``/``async with`` or end it yourself.

    Attributes ``span_id`` (16 hex), ``root_span_id`` (32 hex, shared by the trace) and
    ``span_parents`` identify it; :attr:`id` is its row id.
    """

    __slots__ = ("_as_parent", "_bridged", "_end", "_generation", "_logger", "_project", "_root",
                 "_row", "_row_id", "_start", "_token", "root_span_id", "span_id",
                 "span_parents")

    def __init__(self, logger: Logger, attributes: dict[str, Any],
                 parent: Span | RemoteParent | None, context: dict[str, Any],
                 start: float | None = None) -> None:
        # The hot path of every traced call: plain attribute writes, one dict for the row.
        # ``attributes`` and ``context`` are shared between spans and never modified.
        self._logger = logger
        generation = self._generation = _generation
        span_id = self.span_id = f"{getrandbits(64):016x}"
        project = None
        if parent is None:
            root_span_id = self.root_span_id = f"{getrandbits(128):032x}"
            parents = None
            self._root: Span = self
        else:
            root_span_id = self.root_span_id = parent.root_span_id
            if type(parent) is Span:
                parents = parent._as_parent
                if parents is None:
                    parents = parent._as_parent = [parent.span_id]  # shared by siblings
                # Under a span of the parent process (made before a fork), this span is
                # the local root: the trace ends here when it ends.
                self._root = parent._root if parent._generation == generation else self
                project = parent._project
            else:  # a span of another process: this one is the local root of the trace
                parents = [parent.span_id]
                self._root = self
                project = parent.project  # type: ignore[union-attr]
        self.span_parents: list[str] | None = parents
        self._project: dict[str, str] | None = project
        self._as_parent: list[str] | None = None
        row: dict[str, Any] = {"span_id": span_id, "root_span_id": root_span_id,
                               "span_parents": parents, "span_attributes": attributes,
                               "context": context, IS_MERGE: False}
        self._row = row
        if project:
            row.update(project)
        self._start = _time() if start is None else start
        self._end: float | None = None
        self._row_id: str | None = None
        self._token: Any = None
        self._bridged: Any = None

    @property
    def id(self) -> str:
        """The row id of this span (what ``log_feedback(id=...)`` takes)."""
        row_id = self._row_id
        if row_id is None:
            row_id = self._row_id = row_id_for(self.root_span_id, self.span_id)
        return row_id

    @property
    def name(self) -> str:
        """The span's name (``span_attributes.name``)."""
        return str(self._row["span_attributes"].get("name", ""))

    def log(self, **event: Any) -> None:
        """Log fields on this span: input, output, expected, error, scores, metadata,
        metrics, tags (and span_attributes).

        Values are snapshotted now. Objects merge key by key with what was logged before,
        tags add up, anything else replaces. Raises ``ValueError`` for a bad field.
        """
        piece = event_piece(event, "span.log()")
        if not piece:
            return
        if self._end is None:
            piece[IS_MERGE] = True
            row = self._row = merge_into(self._row, piece)
            row[IS_MERGE] = False
            return
        # Already ended: the row may be on its way; send a merge piece after it.
        row = {"id": self.id, "span_id": self.span_id, "root_span_id": self.root_span_id,
               IS_MERGE: True}
        if self._project:
            row.update(self._project)
        row.update(piece)
        self._logger._push(row)
        self._logger._trace_end()

    def log_feedback(self, **feedback: Any) -> None:
        """Log feedback on this span; see :meth:`spanlog.Logger.log_feedback`."""
        self._logger.log_feedback(id=self.id, **feedback)

    def submit_scores(self, scores: Mapping[str, Any], name: str = "score",
                      metadata: Mapping[str, Any] | None = None) -> str:
        """Record one submission of ``scores`` as its own child span; returns its row id.

        Each submission stays separate and the trace view averages them into this span
        (``scores_avg``), where logging scores on the span itself would overwrite them.
        """
        child = self.start_span(name=name, type="score", scores=scores, metadata=metadata)
        child.end()
        return child.id

    def start_span(self, name: str | None = None, type: str | None = None,
                   **event: Any) -> Span:
        """Start a child span of this one (not made current; use ``with`` for that)."""
        return _open(self._logger, name, type, self, event, 2)

    def end(self, end_time: float | None = None) -> float:
        """End the span (once; later calls return the first end time) and queue its row."""
        end = self._end
        if end is not None:
            return end
        end = self._end = _time() if end_time is None else end_time
        if self._close(end):
            self._logger._trace_end()
        return end

    async def aend(self, end_time: float | None = None) -> float:
        """End the span like :meth:`end`, for async code: when this ends the trace and
        ``async_flush=False``, the flush is awaited instead of blocking the event loop."""
        end = self._end
        if end is not None:
            return end
        end = self._end = _time() if end_time is None else end_time
        if self._close(end):
            await self._logger._atrace_end()
        return end

    def _close(self, end: float) -> bool:
        """Queue the finished row; True when this ends the trace in this process."""
        if self._generation != _generation:
            return False  # a span of the parent process, ended in a forked child: not ours
        row = self._row
        metrics = row.get("metrics")
        row["metrics"] = ({"start": self._start, "end": end} if metrics is None
                          else {"start": self._start, "end": end, **metrics})
        if self._row_id is not None:
            row["id"] = self._row_id
        buffer = self._logger._buffer  # Buffer.push, inlined: this runs for every span
        if len(buffer.rows) < buffer.max_rows:
            buffer.rows.append(row)
        else:
            buffer.drop(1)
        root = self._root
        return root is self or root._end is not None  # no span of the trace is open here

    def export(self) -> str:
        """A string naming this span, for ``parent=`` in another process."""
        project = self._project or self._logger._project_fields
        return export_parent(self.span_id, self.root_span_id, self.id, project)

    def _record_error(self, error: BaseException) -> None:
        self._row["error"] = format_error(error)

    def __enter__(self) -> Span:
        self._token = current.set(self)
        if _context.bridge is not None:
            self._bridged = _context.bridge.enter(self)
        return self

    def _leave(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        """Leaving a ``with`` block: record its error and stop being the current span."""
        if exc is not None and exc_type is not GeneratorExit:
            self._record_error(exc)
        token = self._token
        if token is not None:
            self._token = None
            try:
                current.reset(token)
            except ValueError:  # entered in another context (a task): nothing to undo here
                pass
        bridged = self._bridged
        if bridged is not None:
            self._bridged = None
            _context.bridge.leave(bridged)  # type: ignore[union-attr]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._leave(exc_type, exc)
        if self._end is None:  # end(), inlined
            end = self._end = _time()
            if self._close(end):
                self._logger._trace_end()

    async def __aenter__(self) -> Span:
        self._token = current.set(self)
        if _context.bridge is not None:
            self._bridged = _context.bridge.enter(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._leave(exc_type, exc)
        if self._end is None:
            await self.aend()  # async_flush=False: the trace-end flush is awaited, not blocking

    def __repr__(self) -> str:
        return f"<Span {self.name!r} span_id={self.span_id} root_span_id={self.root_span_id}>"


class NoopSpan:
    """The span returned when nothing is being logged: every method does nothing."""

    __slots__ = ()
    id = ""
    span_id = ""
    root_span_id = ""
    span_parents = None
    name = ""

    def log(self, **event: Any) -> None:
        """Do nothing."""

    def log_feedback(self, **feedback: Any) -> None:
        """Do nothing."""

    def submit_scores(self, scores: Mapping[str, Any], name: str = "score",
                      metadata: Mapping[str, Any] | None = None) -> str:
        """Do nothing; returns an empty id."""
        return ""

    def start_span(self, name: str | None = None, type: str | None = None,
                   **event: Any) -> NoopSpan:
        """Another no-op span."""
        return self

    def end(self, end_time: float | None = None) -> float:
        """Return the end time it would have had."""
        return _time() if end_time is None else end_time

    async def aend(self, end_time: float | None = None) -> float:
        """Return the end time it would have had."""
        return _time() if end_time is None else end_time

    def export(self) -> str:
        """An empty string (``parent=""`` starts a new trace)."""
        return ""

    def __enter__(self) -> NoopSpan:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> NoopSpan:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<NoopSpan>"


NOOP_SPAN = NoopSpan()


def _open(logger: Logger, name: str | None, span_type: str | None,
          parent: Span | RemoteParent | None, event: dict[str, Any], depth: int,
          skip: str | tuple[str, ...] = SKIP_SPANLOG) -> Span:
    """Create a span from the public arguments (validated; ``depth`` and ``skip`` locate
    the caller, see :func:`caller_context`)."""
    options = {key: event.pop(key) for key in _START_OPTIONS & event.keys()}
    span_type = check_span_type(span_type, "start_span()")
    context = caller_context(depth + 1, skip)
    if name is None:
        function = context.get("caller_functionname")
        name = "root" if parent is None or function in (None, "<module>") else str(function)
    elif not isinstance(name, str):
        raise ValueError(f"start_span(): name must be a string, got {name!r}")
    if span_type is None and parent is None:
        span_type = "task"
    start = options.get("start_time")
    if start is not None and (isinstance(start, bool) or not isinstance(start, (int, float))):
        raise ValueError(f"start_span(): start_time must be epoch seconds, got {start!r}")
    row_id = options.get("id")
    if row_id is not None and (not isinstance(row_id, str) or not row_id):
        raise ValueError(f"start_span(): id must be a non-empty string, got {row_id!r}")
    piece = event_piece(event, "start_span()") if event else None
    attributes = {"name": name, "type": span_type} if span_type else {"name": name}
    span = Span(logger, attributes, parent, context, start)
    if row_id is not None:
        span._row_id = row_id
    if piece:
        finish_row(span._row, piece)  # metrics/attributes merge; the row has none yet
    return span


def resolve_parent(parent: Any) -> Span | RemoteParent | None:
    """``parent=`` as a span object, a remote parent, or None for a new trace."""
    if parent is None or parent == "" or isinstance(parent, NoopSpan):
        return None
    if isinstance(parent, (Span, RemoteParent)):
        return parent
    if isinstance(parent, str):
        return parse_parent(parent, "start_span(parent=...)")
    raise ValueError("start_span(): parent must be a Span, a string from span.export() or a "
                     f"traceparent, got {type(parent).__name__}")
