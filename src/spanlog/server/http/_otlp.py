"""OTLP/HTTP trace ingest: ``POST /otel/v1/traces`` and ``POST /v1/traces`` (docs/otel.md).

An OpenTelemetry exporter posts an ``ExportTraceServiceRequest``, as protobuf
(``application/x-protobuf``, decoded by the ``opentelemetry-proto`` package) or as OTLP/JSON
(``application/json``: hex ids, int64 as strings or numbers, enums as numbers or names),
optionally gzip-compressed. Each span is decoded into an :class:`~spanlog._otel_rows.OtelSpan`
and becomes a row through :func:`~spanlog._otel_rows.span_to_row`, the mapping the SDK shares.
The request's key and scope apply as on ``/logs3``; the project is the ``x-bt-parent`` header's
(``project_name:<name>`` or ``project_id:<id>``), else ``Global``, unless a span names its own
(``braintrust.parent``).

A span that cannot be a row is counted into the response's ``partial_success``
(``rejected_spans`` and an ``error_message`` naming the first few) while the rest of the batch
is stored; a body that cannot be decoded at all is a 400 that says why. Every failure on these
paths (4xx, 5xx) carries a ``google.rpc.Status``, as OTLP/HTTP says (:func:`failure`). gRPC is
not served.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from spanlog._otel_rows import (
    OtelEvent,
    OtelLink,
    OtelSpan,
    OtelSpanError,
    row_of_fields,
    span_to_row,
)
from spanlog.server.http._body import BadBody, parse_json, read_bytes
from spanlog.server.http._context import BUDGET, SETTINGS, STORE, WORKERS, request_access
from spanlog.server.http._ingest import RowBatch, bind_rows
from spanlog.server.rows._validate import MAX_ID_LENGTH, InvalidRow
from spanlog.server.store._engine import PrepareRows
from spanlog.server.store._errors import BadRequest

PATHS = ("/otel/v1/traces", "/v1/traces")
DEFAULT_PROJECT = "Global"
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPE = "application/json"
# How many rejected spans the error message names, so a batch of bad spans stays readable.
_MESSAGES_SHOWN = 5
# Deepest AnyValue nesting read from OTLP/JSON (span_to_row keeps 64 levels, docs/otel.md).
_MAX_DEPTH = 64


class _Rejected(Exception):
    """One span that cannot be stored (counted into ``partial_success``)."""


# A request's spans as decoded, by scope: each ``scopeSpans`` entry's place in the request
# (``resourceSpans[0].scopeSpans[1]``) and its spans in order: from protobuf each the tuple
# of an OtelSpan's fields, from OTLP/JSON an OtelSpan or _Rejected.
# A span's own place (``...scopeSpans[1].spans[3]``) is written only for a span refused
# (spans_to_batch): formatting it for every span cost more than a field read.
Scopes = list[tuple[str, list[Any]]]


# ---- project ---------------------------------------------------------------------------------

def parent_route(header: str | None) -> tuple[str | None, str | None]:
    """``(project_id, project_name)`` from an ``x-bt-parent`` header (``Global`` without one)."""
    if header is None or not header.strip():
        return None, DEFAULT_PROJECT
    kind, _, value = header.strip().partition(":")
    value = value.strip()
    if kind == "project_name" and value:
        return None, value
    if kind == "project_id" and value:
        return value, None
    raise BadRequest(f"x-bt-parent: {header!r} must be 'project_name:<name>' or "
                     "'project_id:<id>'")


# ---- protobuf --------------------------------------------------------------------------------

def _pb_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(v) for v in value.array_value.values[:]]
    if which == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    return getattr(value, which)


def _pb_attributes(attributes: Any) -> dict[str, Any]:
    return _pb_plain_attributes(attributes)[0]


def _pb_plain_attributes(attributes: Any) -> tuple[dict[str, Any], bool]:
    """The attributes, and whether all of them are plain in OtelSpan.plain's words (no
    bytes, list, map, nor a float that is not finite: protobuf's ints are int64)."""
    out: dict[str, Any] = {}
    plain = True
    for kv in attributes[:]:  # a slice: see _spans_from_protobuf
        value = kv.value
        # Most attributes are strings: a string_value that is not empty is the one set (the
        # others read as empty), found without WhichOneof.
        text = value.string_value
        if text:
            out[kv.key] = text
            continue
        which = value.WhichOneof("value")
        if which in _PB_PLAIN:  # a scalar read inline: the rest are mostly numbers
            item = out[kv.key] = getattr(value, which)
            if which == "double_value" and item - item != 0.0:  # inf - inf is NaN
                plain = False
        else:
            out[kv.key] = _pb_value(value)
            plain = plain and which is None
    return out, plain


_PB_PLAIN = frozenset({"string_value", "bool_value", "int_value", "double_value"})


def _spans_from_protobuf(raw: bytes) -> Scopes:
    """The spans of a protobuf request, each the tuple of an OtelSpan's fields (``OtelSpan(
    *span)`` makes one)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise BadBody(f"body: not an OTLP ExportTraceServiceRequest in protobuf: {exc}") \
            from None
    out: Scopes = []
    # Repeated fields are read as slices (one list made in C): iterating a upb repeated field
    # goes through the sequence protocol, an index object per item and an IndexError to end.
    for r, resource_spans in enumerate(request.resource_spans[:]):
        resource, resource_plain = _pb_plain_attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans[:]):
            scope = scope_spans.scope
            scope_name, scope_version = scope.name, scope.version
            scope_attributes, plain = _pb_plain_attributes(scope.attributes)
            plain = plain and resource_plain
            spans: list[Any] = []
            out.append((f"resourceSpans[{r}].scopeSpans[{s}]", spans))
            # A span is the tuple of its fields in OtelSpan's order (cheaper to make and to
            # read than an OtelSpan; spans_to_batch maps it with row_of_fields), each field
            # read once: the upb message builds a new Python object for every field read. A
            # span without events or links (most) gets the empty tuple, not a new list; with
            # plain attributes too, it is plain (OtelSpan.plain).
            for span in scope_spans.spans[:]:
                status = span.status
                events, links = span.events, span.links
                attributes, plain_attributes = _pb_plain_attributes(span.attributes)
                spans.append((
                    span.name, span.trace_id, span.span_id, span.start_time_unix_nano,
                    span.end_time_unix_nano, span.parent_span_id, span.kind, status.code,
                    status.message, attributes,
                    [OtelEvent(e.name, e.time_unix_nano, _pb_attributes(e.attributes),
                               e.dropped_attributes_count) for e in events[:]] if events else (),
                    [OtelLink(k.trace_id, k.span_id, _pb_attributes(k.attributes),
                              k.trace_state, k.dropped_attributes_count)
                     for k in links[:]] if links else (),
                    resource, scope_name, scope_version, scope_attributes, span.trace_state,
                    span.flags or None, span.dropped_attributes_count,
                    span.dropped_events_count, span.dropped_links_count,
                    plain and plain_attributes and not events and not links))
    return out


# ---- OTLP/JSON -------------------------------------------------------------------------------
# The protobuf JSON mapping with OTLP's exceptions (ids as hex, enums as numbers or names);
# field names in lowerCamelCase, the snake_case originals accepted as well, as proto3's JSON
# parsers do.

def _field(obj: Mapping[str, Any], camel: str) -> Any:
    value = obj.get(camel)
    if value is None:
        value = obj.get(_snake(camel))
    return value


@functools.cache  # the field names this module reads: a few dozen
def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


# The readers below name what is wrong at ``where`` + ``field`` (``spans[3]``, ``.name``):
# the two are joined only for a message, not for every field of every span.

def _object(value: Any, where: str, field: str = "") -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OtelSpanError(f"{where}{field}: must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str, field: str = "") -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtelSpanError(f"{where}{field}: must be a list, got {type(value).__name__}")
    return value


def _int(value: Any, where: str, field: str = "") -> int:
    """An int64/uint32/fixed64 field: a JSON number or a decimal string."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise OtelSpanError(f"{where}{field}: {value!r} is not an integer")


def _double(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if value in special:
            return special[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise OtelSpanError(f"{where}: {value!r} is not a number")


def _text(value: Any, where: str, field: str = "") -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OtelSpanError(f"{where}{field}: must be a string, got {type(value).__name__}")
    return value


def _enum(value: Any, where: str, field: str = "") -> int | str:
    """An enum field: its number or its name (span_to_row checks which names exist)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return value
    return _int(value, where, field)


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    """An ``AnyValue`` in OTLP/JSON as a plain value."""
    if depth > _MAX_DEPTH:
        raise OtelSpanError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    value = _object(value, where)
    if not value:
        return None
    if len(value) != 1:
        raise OtelSpanError(f"{where}: an AnyValue has one field, got {sorted(value)}")
    (name, item), = value.items()
    here = f"{where}.{name}"
    if name in ("stringValue", "string_value"):
        return _text(item, here)
    if name in ("boolValue", "bool_value"):
        if not isinstance(item, bool):
            raise OtelSpanError(f"{here}: must be true or false")
        return item
    if name in ("intValue", "int_value"):
        return _int(item, here)
    if name in ("doubleValue", "double_value"):
        return _double(item, here)
    if name in ("bytesValue", "bytes_value"):
        try:
            return base64.b64decode(_text(item, here), validate=True)
        except ValueError:
            raise OtelSpanError(f"{here}: not base64") from None
    if name in ("arrayValue", "array_value"):
        values = _list(_object(item, here).get("values"), f"{here}.values")
        return [_json_value(v, f"{here}.values[{i}]", depth + 1)
                for i, v in enumerate(values)]
    if name in ("kvlistValue", "kvlist_value"):
        return _json_attributes(_object(item, here).get("values"), here, ".values", depth + 1)
    raise OtelSpanError(f"{where}: unknown AnyValue field {name!r}")


# The scalar AnyValue fields, as _json_scalar reads them.
_JSON_SCALARS = {"stringValue": str, "string_value": str, "boolValue": bool, "bool_value": bool,
                 "intValue": int, "int_value": int, "doubleValue": float, "double_value": float}
_NOT_SCALAR = object()


def _json_scalar(value: Any) -> Any:
    """What :func:`_json_value` reads from an AnyValue that is a string, a boolean or a number
    spelled as exporters spell them, else ``_NOT_SCALAR`` (for _json_value, which names what
    is wrong): most attributes, read without building their ``where``."""
    if type(value) is not dict or len(value) != 1:
        return _NOT_SCALAR
    (name, item), = value.items()
    kind = _JSON_SCALARS.get(name)
    if kind is str or kind is bool:
        return item if type(item) is kind else _NOT_SCALAR
    if kind is int:
        if type(item) is int:
            return item
        if type(item) is str:  # int64 as the protobuf JSON mapping writes it
            try:
                return int(item.strip())  # as _int reads it
            except ValueError:
                pass
    elif kind is float and (type(item) is float or type(item) is int):
        return float(item)
    return _NOT_SCALAR


def _json_attributes(value: Any, where: str, field: str = "", depth: int = 0,
                     ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, kv in enumerate(_list(value, where, field)):
        if type(kv) is dict and type(key := kv.get("key")) is str:
            item = _json_scalar(kv.get("value"))
            if item is not _NOT_SCALAR:
                out[key] = item
                continue
        here = f"{where}{field}[{i}]"
        kv = _object(kv, here)
        key = _text(kv.get("key"), here, ".key")
        out[key] = _json_value(kv.get("value"), f"{here}.value", depth)
    return out


def _json_span(span: Any, where: str, resource: dict[str, Any],
               scope: Mapping[str, Any], scope_attributes: dict[str, Any]) -> OtelSpan:
    span = _object(span, where)
    status = _object(span.get("status"), where, ".status")
    events = []
    for i, event in enumerate(_list(span.get("events"), where, ".events")):
        here = f"{where}.events[{i}]"
        event = _object(event, here)
        events.append(OtelEvent(
            _text(event.get("name"), here, ".name"),
            _int(_field(event, "timeUnixNano"), here, ".timeUnixNano"),
            _json_attributes(event.get("attributes"), here, ".attributes"),
            _int(_field(event, "droppedAttributesCount"), here, ".droppedAttributesCount")))
    links = []
    for i, link in enumerate(_list(span.get("links"), where, ".links")):
        here = f"{where}.links[{i}]"
        link = _object(link, here)
        links.append(OtelLink(
            _text(_field(link, "traceId"), here, ".traceId"),
            _text(_field(link, "spanId"), here, ".spanId"),
            _json_attributes(link.get("attributes"), here, ".attributes"),
            _text(_field(link, "traceState"), here, ".traceState"),
            _int(_field(link, "droppedAttributesCount"), here, ".droppedAttributesCount")))
    flags = _field(span, "flags")
    return OtelSpan(
        name=_text(span.get("name"), where, ".name"),
        trace_id=_text(_field(span, "traceId"), where, ".traceId"),
        span_id=_text(_field(span, "spanId"), where, ".spanId"),
        parent_span_id=_text(_field(span, "parentSpanId"), where, ".parentSpanId"),
        start_time_unix_nano=_int(_field(span, "startTimeUnixNano"), where, ".startTimeUnixNano"),
        end_time_unix_nano=_int(_field(span, "endTimeUnixNano"), where, ".endTimeUnixNano"),
        kind=_enum(span.get("kind"), where, ".kind"),
        status_code=_enum(status.get("code"), where, ".status.code"),
        status_message=_text(status.get("message"), where, ".status.message"),
        attributes=_json_attributes(span.get("attributes"), where, ".attributes"),
        events=events, links=links, resource_attributes=resource,
        scope_name=_text(scope.get("name"), "scope.name"),
        scope_version=_text(scope.get("version"), "scope.version"),
        scope_attributes=scope_attributes,
        trace_state=_text(_field(span, "traceState"), where, ".traceState"),
        flags=_int(flags, where, ".flags") or None if flags is not None else None,
        dropped_attributes_count=_int(_field(span, "droppedAttributesCount"),
                                      where, ".droppedAttributesCount"),
        dropped_events_count=_int(_field(span, "droppedEventsCount"), where, ".droppedEventsCount"),
        dropped_links_count=_int(_field(span, "droppedLinksCount"), where, ".droppedLinksCount"))


def _spans_from_json(raw: bytes) -> Scopes:
    """The spans of an OTLP/JSON request, each an OtelSpan or _Rejected; the request's
    structure (down to each span) must hold, a span's own content may be rejected alone."""
    body = parse_json(raw)
    try:
        resource_list = _list(_field(_object(body, "body"), "resourceSpans"),
                              "body.resourceSpans")
    except OtelSpanError as exc:
        raise BadBody(str(exc)) from None
    out: Scopes = []
    for r, resource_spans in enumerate(resource_list):
        base = f"resourceSpans[{r}]"
        try:
            resource_spans = _object(resource_spans, base)
            resource = _json_attributes(
                _object(resource_spans.get("resource"), f"{base}.resource").get("attributes"),
                f"{base}.resource.attributes")
            scope_list = _list(_field(resource_spans, "scopeSpans"), f"{base}.scopeSpans")
        except OtelSpanError as exc:
            raise BadBody(f"body.{exc}") from None
        for s, scope_spans in enumerate(scope_list):
            here = f"{base}.scopeSpans[{s}]"
            try:
                scope_spans = _object(scope_spans, here)
                scope = _object(scope_spans.get("scope"), f"{here}.scope")
                scope_attributes = _json_attributes(scope.get("attributes"),
                                                    f"{here}.scope.attributes")
                spans = _list(scope_spans.get("spans"), f"{here}.spans")
            except OtelSpanError as exc:
                raise BadBody(f"body.{exc}") from None
            decoded: list[Any] = []
            out.append((here, decoded))
            for i, span in enumerate(spans):
                where = f"{here}.spans[{i}]"
                try:
                    decoded.append(_json_span(span, where, resource, scope, scope_attributes))
                except OtelSpanError as exc:
                    decoded.append(_Rejected(str(exc)))
    return out


# ---- spans to rows ---------------------------------------------------------------------------
# A row span_to_row made is not checked with validate_row, the check of a /logs3 row of any
# shape: its fields are built to docs/otel.md's shape (hex ids, a UUID, an ISO time, metrics
# and scores that are finite numbers, tags that are strings, a span type the collector
# knows). What comes from the client as it was sent is the project: the x-bt-parent header's
# or a span's braintrust.parent, checked here as validate_row would (tests/test_otel_rows_golden.py
# runs validate_row over the whole corpus to hold the rest).

def _too_long(project_id: str | None, project_name: str | None) -> str | None:
    """What is wrong with a project no row may name (as validate_row words it), else None."""
    for field, value in (("project_id", project_id), ("project_name", project_name)):
        if value is not None and len(value) > MAX_ID_LENGTH:
            return f"{field}: longer than {MAX_ID_LENGTH} characters"
    return None


def _project(where: str, row: dict[str, Any], project_id: str | None,
             project_name: str | None) -> tuple[str | None, str | None]:
    """The row's ``(project_id, project_name)``, taken out of it: the span's own, else the
    request's. InvalidRow for one no row may name."""
    own_id, own_name = row.pop("project_id", None), row.pop("project_name", None)
    if own_id is not None or own_name is not None:
        project_id, project_name = own_id, own_name
    wrong = _too_long(project_id, project_name)
    if wrong is not None:
        raise InvalidRow(f"{where}.{wrong}")
    return project_id, project_name


def spans_to_batch(scopes: Scopes, project_id: str | None,
                   project_name: str | None) -> tuple[RowBatch, list[str]]:
    """The storable rows of the spans of ``scopes`` and, for each span that cannot be stored,
    why (naming its place, ``resourceSpans[0].scopeSpans[1].spans[3]``)."""
    ids: list[str] = []
    rows: list[dict[str, Any] | None] = []
    rejected: list[str] = []
    # Most rows name no project of their own (span_to_row adds one only for a span's
    # braintrust.parent): they take the request's, checked once here rather than per row,
    # and bound once (RowBatch.route). The others' routes, by their row's index.
    route = project_id, project_name
    wrong = _too_long(project_id, project_name)
    own: dict[int, tuple[str | None, str | None]] = {}
    for place, spans in scopes:
        for i, span in enumerate(spans):
            try:
                if type(span) is tuple:  # protobuf's (_spans_from_protobuf)
                    row = row_of_fields(*span)
                elif isinstance(span, _Rejected):
                    raise span
                else:
                    row = span_to_row(span)
                if "project_id" in row or "project_name" in row:
                    own[len(rows)] = _project(f"{place}.spans[{i}]", row, project_id,
                                              project_name)
                elif wrong is not None:
                    raise InvalidRow(f"{place}.spans[{i}].{wrong}")
            # ValueError and the rest: never a 500 for one span.
            except (_Rejected, ValueError, TypeError, RecursionError) as exc:
                rejected.append(_refusal(f"{place}.spans[{i}]", exc))
                continue
            ids.append(row["id"])
            rows.append(row)
    if not own:
        return RowBatch([], ids, rows, route=route), rejected
    return RowBatch([own.get(n, route) for n in range(len(rows))], ids, rows), rejected


def _refusal(where: str, exc: Exception) -> str:
    """Why the span at ``where`` cannot be stored, as partial_success names it."""
    if isinstance(exc, _Rejected):  # OTLP/JSON decoding names the place, in most cases
        return str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
    if isinstance(exc, OtelSpanError):  # span_to_row names the field
        return f"{where}.{exc}"
    if isinstance(exc, InvalidRow):  # spans_to_batch names the place
        return str(exc)
    return f"{where}: {exc}"


def decode_spans(raw: bytes, protobuf: bool, project_id: str | None,
                 project_name: str | None, prepare_rows: PrepareRows | None = None,
                 ) -> tuple[RowBatch, list[str]]:
    """The rows of an OTLP request's spans and why each refused one was refused: the CPU
    work of a request, pure, so an ingest worker process runs it (with the store's
    ``prepare_rows``) as it does /logs3 bodies (see ``_workers``). BadBody for a body that
    cannot be decoded at all."""
    if not raw:
        scopes: Scopes = []  # an empty request is valid OTLP: no spans
    else:
        scopes = _spans_from_protobuf(raw) if protobuf else _spans_from_json(raw)
    batch, rejected = spans_to_batch(scopes, project_id, project_name)
    if prepare_rows is not None and batch.rows:
        batch.rows, batch.prepared = prepare_rows(batch.rows)  # type: ignore[arg-type]
    return batch, rejected


def _response(protobuf: bool, rejected: list[str]) -> web.Response:
    message = ""
    if rejected:
        shown = "; ".join(rejected[:_MESSAGES_SHOWN])
        more = len(rejected) - _MESSAGES_SHOWN
        message = f"{len(rejected)} span(s) rejected: {shown}" + (
            f"; and {more} more" if more > 0 else "")
    if protobuf:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        reply = ExportTraceServiceResponse()
        if rejected:
            reply.partial_success.rejected_spans = len(rejected)
            reply.partial_success.error_message = message
        return web.Response(body=reply.SerializeToString(),
                            content_type="application/x-protobuf")
    body: dict[str, Any] = {}
    if rejected:  # int64 as a string, as the protobuf JSON mapping writes it
        body["partialSuccess"] = {"rejectedSpans": str(len(rejected)), "errorMessage": message}
    return web.json_response(body)


async def export_traces(request: web.Request) -> web.Response:
    """``POST /otel/v1/traces`` and ``POST /v1/traces``: store an OTLP export's spans."""
    access = await request_access(request)
    content_type = request.content_type.lower()
    if content_type in PROTOBUF_TYPES:
        protobuf = True
    elif content_type == JSON_TYPE:
        protobuf = False
    else:
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Type {content_type!r}: OTLP/HTTP takes application/x-protobuf or "
                 "application/json (gRPC is not served)")
    project_id, project_name = parent_route(request.headers.get("x-bt-parent"))
    raw = await read_bytes(request, request.app[SETTINGS].max_body_bytes, request.app[BUDGET])
    batch, rejected = await request.app[WORKERS].run(decode_spans, raw, protobuf, project_id,
                                                     project_name)
    if batch.ids:
        store = request.app[STORE]
        pieces = await bind_rows(store, access, batch, where="spans")
        await store.write(pieces, batch.prepared)
    return _response(protobuf, rejected)


# google.rpc.Code of each HTTP status (gRPC's own mapping). OTLP/HTTP does not use
# Status.code: clients only record it, for troubleshooting.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 408: 4, 413: 8, 415: 3, 429: 8,
              500: 13, 503: 14, 507: 8}
_RPC_UNKNOWN = 2


def failure(request: web.Request, status: int, message: str,
            headers: dict[str, str] | None = None) -> web.Response:
    """A failure answer of the OTLP paths: a ``google.rpc.Status`` carrying ``message``, in
    the request's encoding (OTLP/HTTP, "Failures"): protobuf for a protobuf request, else
    JSON (the proto3 JSON form, ``{"code": 3, "message": "..."}``)."""
    code = _RPC_CODES.get(status, _RPC_UNKNOWN)
    if request.content_type.lower() in PROTOBUF_TYPES:
        from google.rpc.status_pb2 import Status

        return web.Response(body=Status(code=code, message=message).SerializeToString(),
                            status=status, headers=headers,
                            content_type="application/x-protobuf")
    return web.json_response({"code": code, "message": message}, status=status,
                             headers=headers)


def setup_otlp(app: web.Application) -> None:
    """Register the OTLP/HTTP trace routes on the collector ``app``."""
    for path in PATHS:
        app.router.add_post(path, export_traces)
