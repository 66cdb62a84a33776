"""OpenTelemetry spans through spanlog's delivery, and one trace across both (docs/otel.md).

::

    from opentelemetry.sdk.trace import TracerProvider
    from spanlog.otel import SpanProcessor

    spanlog.init_logger(project="my-app")
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())

Every OpenTelemetry span that ends becomes a row of the logger (``logger=``, else the current
one), converted by the mapping the collector's OTLP endpoint uses
(:func:`spanlog._otel_rows.span_to_row`): LLM spans of any instrumentation become ``llm``
rows. The end of a local root span (no parent, or a remote one) ends a trace, so spanlog's
flush rules apply to it (``docs/design.md``): the waitUntil hook in scope, the flush before
returning on AWS Lambda, or the background thread. OpenTelemetry's own
``BatchSpanProcessor`` has none of that and loses spans where a platform freezes the process.

Creating a processor also bridges the two libraries' current spans: a spanlog span started
while an OpenTelemetry span is current becomes its child, and an OpenTelemetry span started
while a spanlog span is current becomes the spanlog span's child, with the same ids on both
sides. Needs ``opentelemetry-sdk`` (``python3 -m pip install -e '.[otel]'``).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace import SpanProcessor as _OtelSpanProcessor
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("spanlog.otel needs the OpenTelemetry SDK: "
                      "python3 -m pip install -e '.[otel]' (or pip install opentelemetry-sdk)"
                      ) from exc

from . import _context, _log, _logger
from ._logger import Logger, current_logger
from ._otel_rows import OtelEvent, OtelLink, OtelSpan, OtelSpanError, span_to_row
from ._propagation import RemoteParent
from ._span import Span

__all__ = ["SpanProcessor"]

_GUARD = _log.guard("sending an OpenTelemetry span")
_warned_no_logger = False


class SpanProcessor(_OtelSpanProcessor):
    """Sends every ended OpenTelemetry span through a spanlog logger.

    ``logger``: the logger to use; default, the current one at each span's end. It never
    raises into the instrumented code and never waits for the network, except where the flush
    rules say a trace's end must (``async_flush=False``); a span that cannot be converted is
    counted in ``stats()["dropped"]``.
    """

    def __init__(self, logger: Logger | None = None) -> None:
        self._logger = logger
        install_bridge()

    def _target(self) -> Logger | None:
        logger = self._logger or current_logger()
        if logger is None:
            global _warned_no_logger
            if not _warned_no_logger:
                _warned_no_logger = True
                _log.warning("spanlog: an OpenTelemetry span ended with no spanlog logger to "
                             "send it; call spanlog.init_logger() or pass logger=")
        return logger

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """Nothing: a span is sent when it ends."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span's values; at the end of a local root span, apply the flush rules."""
        try:  # the never-raise guard as try/except: free until something raises
            logger = self._logger or _logger._current_logger or self._target()  # no call
            if logger is None:
                return
            # The row is made on the flush thread, so the instrumented code pays for reading
            # the span's values, not for the mapping (see _Ended for why not the span itself).
            values = ended(span, logger)
            logger._push(values)  # type: ignore[arg-type]  # mypy: a tuple with __call__
            if values.local_root:
                logger._trace_end()
        except Exception:
            _GUARD.failed()

    def shutdown(self) -> None:
        """Deliver what is buffered (the provider is shutting down)."""
        self.force_flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver everything buffered within ``timeout_millis``; whether all of it arrived."""
        logger = self._logger or current_logger()
        if logger is None:
            return True
        ok = False
        with _GUARD:
            ok = logger.flush(timeout=timeout_millis / 1000)
        return ok


_COPIED_ATTRIBUTES = 8


class _Ended(NamedTuple):
    """An ended span's values, read when it ends; called on the flush thread, it makes the row
    (see :func:`spanlog._buffer.merge_pieces`).

    The span itself is not kept: it holds a dozen objects of the OpenTelemetry SDK (contexts,
    bounded lists and their locks), and while they wait for the flush thread every garbage
    collection walks them, mostly on the caller's thread, which allocates the most. The
    values kept are plain, or immutable objects the span shares (its status, by default one
    object for every span; its resource and scope) or its own collections (it has ended:
    they no longer change, and span_to_row copies what it keeps). A tuple, made in C by
    ``_new`` where a class with an ``__init__`` costs the caller a Python call and an
    attribute store per value.
    """

    logger: Logger | None
    local_root: bool
    name: str
    trace_id: int | None
    span_id: int | None
    parent_id: int | None
    start: int | None
    end: int | None
    kind: Any
    status: Any
    attributes: Any
    events: tuple[Any, ...]
    links: tuple[Any, ...]
    resource: Any
    scope: Any

    def __call__(self) -> dict[str, Any] | None:
        try:
            return span_to_row(self.plain())
        except OtelSpanError as exc:
            if self.logger is not None:
                self.logger._buffer.drop(1)
            _log.warning("spanlog: dropped an OpenTelemetry span that cannot be a row: %s", exc)
            return None

    def plain(self) -> OtelSpan:
        """The values as the shared mapping takes them."""
        if self.trace_id is None or self.span_id is None:
            raise OtelSpanError("span: no span context")
        scope, status = self.scope, self.status
        return OtelSpan(
            name=self.name,
            trace_id=self.trace_id.to_bytes(16, "big"),
            span_id=self.span_id.to_bytes(8, "big"),
            parent_span_id=(self.parent_id.to_bytes(8, "big") if self.parent_id is not None
                            else None),
            start_time_unix_nano=self.start or 0,
            end_time_unix_nano=self.end or self.start or 0,
            kind=self.kind.name,
            status_code=status.status_code.name if status is not None else "UNSET",
            status_message=(status.description or "") if status is not None else "",
            attributes=self.attributes or {},
            events=[OtelEvent(event.name, event.timestamp, event.attributes or {})
                    for event in self.events],
            links=[OtelLink(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}",
                            link.attributes or {}) for link in self.links],
            resource_attributes=_resource_attributes(self.resource),
            scope_name=scope.name if scope is not None else "",
            scope_version=(scope.version or "") if scope is not None else "",
        )


_new = tuple.__new__

# A SpanContext is a tuple (trace_id, span_id, is_remote, ...) whose properties are a Python
# call each: ended() takes its items by index, as long as this holds.
_probe = otel_trace.SpanContext(trace_id=1, span_id=2, is_remote=True)
_CONTEXT_IS_A_TUPLE = isinstance(_probe, tuple) and _probe[:3] == (1, 2, True)


def ended(span: ReadableSpan, logger: Logger | None) -> _Ended:
    """The values of an ended span: from the OpenTelemetry SDK's span's own fields where they
    are as this knows them, else from its properties (:func:`read_properties`).

    A field is an attribute read, where a property is a Python call and copies the span's
    attributes, events and links through Python-level mappings and lists under a lock. The
    span has ended: they no longer change, and its attributes are kept as the plain dict the
    SDK's mapping holds (only a dict handed to the span directly is copied)."""
    if _CONTEXT_IS_A_TUPLE and isinstance(span, ReadableSpan):
        sdk: Any = span  # its private fields, which the type does not declare
        try:
            context, parent, attributes = sdk._context, sdk._parent, sdk._attributes
            events, links = sdk._events._dq, sdk._links._dq
            if parent is None:
                local_root, parent_id = True, None
            else:
                local_root, parent_id = parent[2], parent[1]
            return _new(_Ended, (
                logger, local_root, sdk._name, context[0], context[1], parent_id,
                sdk._start_time, sdk._end_time, sdk._kind, sdk._status,
                dict(attributes) if type(attributes) is dict else attributes._dict,
                tuple(events) if events else (), tuple(links) if links else (),
                sdk._resource, sdk._instrumentation_scope))
        except (AttributeError, TypeError, IndexError):  # not the SDK's span as we know it
            pass
    return read_properties(span, logger)


def read_properties(span: ReadableSpan, logger: Logger | None) -> _Ended:
    """The values from the span's public properties: any span."""
    attributes = span.attributes
    # A few attributes are copied: a dict of plain values is not tracked by the garbage
    # collector, while the SDK's mapping and its proxy are; a copy costs ~0.2 us an
    # attribute (the SDK's mapping is read in Python), so a large mapping is kept as it is.
    if attributes is not None and len(attributes) <= _COPIED_ATTRIBUTES:
        attributes = dict(attributes)
    context, parent = span.context, span.parent
    return _Ended(logger, parent is None or parent.is_remote, span.name,
                  None if context is None else context.trace_id,
                  None if context is None else context.span_id,
                  None if parent is None else parent.span_id, span.start_time, span.end_time,
                  span.kind, span.status, attributes, tuple(span.events), tuple(span.links),
                  span.resource, span.instrumentation_scope)


# The resource of the last span converted, and its attributes as a dict: a provider's spans
# share one resource, whose attributes (immutable, read through Python-level methods) would
# otherwise be read again for every span. One tuple, so threads never see a torn pair.
_last_resource: tuple[Any, dict[str, Any]] = (None, {})


def _resource_attributes(resource: Any) -> dict[str, Any]:
    global _last_resource
    last, attributes = _last_resource
    if resource is not last:
        attributes = dict(resource.attributes) if resource is not None else {}
        _last_resource = (resource, attributes)
    return attributes


def plain_span(span: ReadableSpan) -> OtelSpan:
    """The plain values of an OpenTelemetry SDK span, as the shared mapping takes them."""
    return ended(span, None).plain()


class _OtelBridge(_context.Bridge):
    """Keeps OpenTelemetry's current span in step with spanlog's (docs/otel.md)."""

    def parent(self, span: Span | None) -> Any:
        context = otel_trace.get_current_span().get_span_context()
        if not context.is_valid:
            return span
        if span is not None and span.span_id == f"{context.span_id:016x}":
            return span  # spanlog's current span is the innermost (it is bridged)
        return RemoteParent(f"{context.span_id:016x}", f"{context.trace_id:032x}", None, None)

    def enter(self, span: Span) -> Any:
        try:
            trace_id, span_id = int(span.root_span_id, 16), int(span.span_id, 16)
        except ValueError:  # ids from another system's export: OTel cannot carry them
            return None
        context = otel_trace.SpanContext(
            trace_id=trace_id, span_id=span_id, is_remote=False,
            trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED))
        return otel_context.attach(
            otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(context)))

    def leave(self, token: Any) -> None:
        with _log.guard("leaving a span's OpenTelemetry context"):
            otel_context.detach(token)


_install_lock = threading.Lock()


def install_bridge() -> None:
    """Bridge spanlog's and OpenTelemetry's current spans (idempotent)."""
    with _install_lock:
        if _context.bridge is None:
            _context.bridge = _OtelBridge()
