"""Continue a trace in another process: exported span handles and W3C ``traceparent``.

``span.export()`` gives an opaque string naming the span, its trace and its project; the
other process passes it as ``parent=`` and its spans join the same trace in the same project.
For HTTP between services, :func:`inject_traceparent` writes a W3C ``traceparent`` header
and :func:`extract_traceparent` reads it back into a value ``parent=`` accepts; our
``root_span_id`` (32 hex) and ``span_id`` (16 hex) are exactly W3C's trace id and parent id.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._span import Span

_EXPORT_PREFIX = "sl1:"
_HEX_DIGITS = frozenset("0123456789abcdef")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX_DIGITS.issuperset(text)


def _split_traceparent(text: str) -> tuple[str, str, str, str] | None:
    """The four fields of a W3C ``traceparent`` (lower case), or None if it is not one."""
    parts = text.split("-")
    if len(parts) != 4 or not all(_is_hex(part, size)
                                   for part, size in zip(parts, (2, 32, 16, 2), strict=True)):
        return None
    return parts[0], parts[1], parts[2], parts[3]


class RemoteParent:
    """A span that lives in another process, named by an export string or a traceparent."""

    __slots__ = ("project", "root_span_id", "row_id", "span_id")

    def __init__(self, span_id: str, root_span_id: str, row_id: str | None,
                 project: dict[str, str] | None) -> None:
        self.span_id = span_id
        self.root_span_id = root_span_id
        self.row_id = row_id
        self.project = project


def export_parent(span_id: str, root_span_id: str, row_id: str,
                  project: Mapping[str, str]) -> str:
    """The string ``span.export()`` returns for these ids and project fields."""
    import base64
    import json

    payload = {"s": span_id, "t": root_span_id, "r": row_id, **project}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return _EXPORT_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_parent(value: str, where: str = "parent") -> RemoteParent:
    """The parent named by an exported span string or a ``traceparent`` value.

    Raises ``ValueError`` saying what is wrong with ``value``.
    """
    text = value.strip()
    if text.startswith(_EXPORT_PREFIX):
        import base64
        import json

        body = text[len(_EXPORT_PREFIX):]
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            raise ValueError(f"{where}: {value[:80]!r} is not a span exported by "
                             "span.export() (undecodable)") from None
        if not isinstance(payload, dict):
            raise ValueError(f"{where}: {value[:80]!r} is not a span exported by span.export()")
        span_id, trace_id = payload.get("s"), payload.get("t")
        if not (isinstance(span_id, str) and isinstance(trace_id, str) and span_id
                and trace_id):
            raise ValueError(f"{where}: exported span {value[:80]!r} lacks its span ids")
        project = {k: v for k, v in payload.items()
                   if k in ("project_id", "project_name") and isinstance(v, str)}
        row_id = payload.get("r")
        return RemoteParent(span_id, trace_id, row_id if isinstance(row_id, str) else None,
                            project or None)
    fields = _split_traceparent(text.lower())
    if fields:
        version, trace_id, span_id, _flags = fields
        if version == "ff" or set(trace_id) == {"0"} or set(span_id) == {"0"}:
            raise ValueError(f"{where}: traceparent {value!r} is invalid (W3C forbids "
                             "version ff and all-zero ids)")
        return RemoteParent(span_id, trace_id, None, None)
    raise ValueError(f"{where}: expected a Span, a string from span.export() or a W3C "
                     f"traceparent, got {value[:80]!r}")


def traceparent_of(span_id: str, root_span_id: str) -> str | None:
    """The W3C ``traceparent`` value for a span, or None if its ids are not W3C-shaped."""
    if _is_hex(root_span_id, 32) and _is_hex(span_id, 16):
        return f"00-{root_span_id}-{span_id}-01"
    return None


def inject_traceparent(carrier: MutableMapping[str, str] | None = None,
                       span: Span | None = None) -> MutableMapping[str, str]:
    """Add a W3C ``traceparent`` header for ``span`` (default: the current span, or the
    current OpenTelemetry span when :mod:`spanlog.otel` bridges the two and it is innermost).

    Returns ``carrier`` (a new dict when None is given), unchanged when there is no span.
    """
    from . import _context

    headers: MutableMapping[str, str] = {} if carrier is None else carrier
    target: Any = span
    if target is None:  # the innermost span, spanlog's or (bridged) OpenTelemetry's
        target = _context.current.get()
        if _context.bridge is not None:
            target = _context.bridge.parent(target)
    if target is None:
        return headers
    value = traceparent_of(target.span_id, target.root_span_id)
    if value:
        headers["traceparent"] = value
    return headers


def extract_traceparent(carrier: Mapping[str, Any]) -> str | None:
    """The incoming ``traceparent`` header of ``carrier``, ready to pass as ``parent=``.

    Header names match case-insensitively; a missing or malformed header gives None, so a
    request without trace context simply starts a new trace.
    """
    value: Any = None
    for key, item in carrier.items():
        if isinstance(key, str) and key.lower() == "traceparent":
            value = item
            break
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    try:
        parse_parent(value)
    except ValueError:
        return None
    return value.strip().lower()
