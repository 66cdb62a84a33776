"""One OpenTelemetry span as one spanlog row: the mapping the collector and the SDK share.

The collector's OTLP/HTTP endpoint and the SDK's OTel span processor both call
:func:`span_to_row`, so a span looks the same whichever way it arrives. It is a pure function
over plain values (:class:`OtelSpan`, decoded from OTLP by the caller), standard library only,
like :mod:`spanlog._merge`. docs/otel.md is the reference: every attribute that is read, the
row field it fills, and the metadata layout.

The rules, in short:

- identity: ``span_id`` and ``root_span_id`` are the OTel ids in lowercase hex, the parent
  becomes ``span_parents``, and ``id`` is derived from the two ids
  (:func:`spanlog._ids.row_id_for`), so an exporter's retry lands on the same row;
- the AI conventions (OpenTelemetry GenAI, OpenInference, the Vercel AI SDK, braintrust's own
  ``braintrust.*``) fill ``input``, ``output``, ``expected``, ``scores``, ``tags``,
  ``span_attributes.type``, ``metadata.model``/``provider`` and the token metrics;
- nothing is dropped: every attribute the mapping did not *move* into a row field stays,
  typed as sent, in ``metadata.attributes``; resource attributes, events, links, kind, status
  and scope are kept under ``metadata`` too;
- a span that cannot be a row (bad ids, no times, end before start, values JSON cannot hold)
  raises :class:`OtelSpanError`, naming what is wrong, for the caller to count into OTLP's
  ``partial_success``.

It runs once per span on the SDK's flush thread and in the collector's ingest, so what a
span's attribute keys and event names tell (which sources to ask, which metrics, which
conventions) is worked out once per distinct set of them (:class:`_Shape`), and the
conventions are skipped for a span with none of their attributes.
tests/test_otel_rows_golden.py pins its output.
"""

from __future__ import annotations

import base64
import json
import json.scanner
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._ids import row_id_for
from ._merge import IS_MERGE

__all__ = ["OtelEvent", "OtelLink", "OtelSpan", "OtelSpanError", "RESERVED_METADATA_KEYS",
           "row_of_fields", "span_to_row"]


class OtelSpanError(ValueError):
    """A span that cannot become a row; ``str()`` names the field and what is wrong with it."""


# Not frozen: a frozen dataclass's __init__ costs about three times as much, paid once per
# span on the SDK's flush thread and in the collector's ingest (nothing changes them).
@dataclass
class OtelEvent:
    """A span event: a name, a time (Unix nanoseconds) and attributes."""

    name: str
    time_unix_nano: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    dropped_attributes_count: int = 0


@dataclass
class OtelLink:
    """A link to another span: its ids (bytes or hex), trace state and attributes."""

    trace_id: bytes | str
    span_id: bytes | str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    trace_state: str = ""
    dropped_attributes_count: int = 0


@dataclass
class OtelSpan:
    """One finished OTel span as plain values, however it was decoded.

    Ids are bytes (OTLP protobuf: 16 and 8 bytes) or hex strings (OTLP/JSON); an empty or
    absent ``parent_span_id`` means a root span. Times are Unix nanoseconds. ``kind`` and
    ``status_code`` take the OTLP enum as a number (``3``), its name (``"SPAN_KIND_CLIENT"``)
    or the short name (``"CLIENT"``). Attribute values are what OTLP's ``AnyValue`` decodes to:
    str, bool, int, float, bytes, None, and lists and str-keyed dicts of them.
    """

    name: str
    trace_id: bytes | str
    span_id: bytes | str
    start_time_unix_nano: int
    end_time_unix_nano: int
    parent_span_id: bytes | str | None = None
    kind: int | str = "INTERNAL"
    status_code: int | str = "UNSET"
    status_message: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[OtelEvent] = ()
    links: Sequence[OtelLink] = ()
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    scope_attributes: Mapping[str, Any] = field(default_factory=dict)
    trace_state: str = ""
    flags: int | None = None
    dropped_attributes_count: int = 0
    dropped_events_count: int = 0
    dropped_links_count: int = 0
    # The decoder's word that the attributes, resource and scope attributes are dicts of
    # str keys and values a row holds as they are (str, bool, None, an int within a double's
    # range, a finite float), that the attributes dict is this span's alone, and that the
    # span has no events or links: span_to_row then takes them without the check (and the
    # copy) _clean_attributes makes of each value, and the row keeps the attributes dict.
    plain: bool = False


# The keys of a row's ``metadata`` that hold the span as sent; user metadata (from
# braintrust.metadata, OpenInference ``metadata``, ai.telemetry.metadata.*) never takes them.
RESERVED_METADATA_KEYS = frozenset({"attributes", "resource", "events", "links", "otel"})

# docs/protocol.md's span types: the ones a ``braintrust.span_attributes`` may set.
_SPAN_TYPES = frozenset({"llm", "score", "function", "eval", "task", "tool"})

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUSES = ("UNSET", "OK", "ERROR")
_MAX_NANOS = 253_402_300_800 * 1_000_000_000  # 10000-01-01T00:00:00Z: ISO-8601 has 4 digits
_MAX_DEPTH = 64
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)  # W3C's invalid ids
_UINT32 = 1 << 32


# ---- plain values ---------------------------------------------------------------------------

def _clean(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as a stored row can hold it: bytes become base64, non-finite floats the
    strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` and an int beyond a double's range its
    decimal string (all as proto3's JSON mapping writes them)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        # Beyond a double's range the collector refuses a number (docs/collector.md): its
        # decimal digits, as proto3's JSON mapping writes an int64.
        return value if -_BIG_INT < value < _BIG_INT else str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth >= _MAX_DEPTH:
        raise OtelSpanError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise OtelSpanError(f"{where}: key {key!r} is not a string")
            out[key] = _clean(item, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_clean(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise OtelSpanError(f"{where}: unsupported value of type {type(value).__name__}")


# Values _clean returns as they are: most attribute values, checked without a call (and ints
# within _BIG_INT, finite floats).
_PLAIN = frozenset({str, bool, type(None)})
# Ints from here on (in magnitude) are beyond a double's range, which the collector refuses
# (docs/collector.md), as json.loads("1e400") does: the largest double is 2**1024 - 2**971.
_BIG_INT = 2**1024 - 2**970


def _clean_attributes(attributes: Any, where: str) -> dict[str, Any]:
    if attributes is None:
        return {}
    if type(attributes) is not dict and not isinstance(attributes, Mapping):  # ABC: slow
        raise OtelSpanError(f"{where}: must be a mapping of key to value, got "
                            f"{type(attributes).__name__}")
    cleaned: dict[str, Any] = {}
    for key, value in attributes.items():
        if type(key) is not str and not isinstance(key, str):
            raise OtelSpanError(f"{where}: key {key!r} is not a string")
        kind = type(value)
        if kind in _PLAIN or (kind is int and -_BIG_INT < value < _BIG_INT) \
                or (kind is float and value - value == 0.0):  # finite: inf - inf is NaN
            cleaned[key] = value
        else:
            cleaned[key] = _clean(value, f"{where}[{key!r}]", 1)
    return cleaned


# The resource attributes of the last span, as sent and cleaned: the spans of an OTLP export
# share one dict (src/spanlog/server/http/_otlp.py), and so do an SDK provider's
# (src/spanlog/otel.py). Kept only for a dict of strings, so that one equal to the cleaned
# copy is unchanged. One tuple: threads never see a torn pair.
_last_resource: tuple[Any, dict[str, Any]] = (None, {})


def _clean_resource(attributes: Any) -> dict[str, Any]:
    global _last_resource
    sent, cleaned = _last_resource
    if attributes is not sent or attributes != cleaned:
        cleaned = _clean_attributes(attributes, "resource_attributes")
        if type(attributes) is dict and all(type(v) is str for v in cleaned.values()):
            _last_resource = (attributes, cleaned)
    return cleaned.copy()


def _number(value: Any) -> bool:
    """Whether ``value`` is a number a metric or score can be: an int or a finite float, not
    a bool, nor an int beyond a double's range."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # math.isfinite(10**400)
        return False


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -_BIG_INT < value < _BIG_INT:  # 1 followed by 400 zeros: beyond a double
        raise ValueError(text)
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: beyond a double
        raise ValueError(text)
    return value


# One decoder for every call (json.loads with an argument builds a new one each time).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite,
                            parse_int=_bounded_int)
# Its scanner in C, called without the two Python calls of decode(): most attributes hold
# exactly one JSON value, no whitespace around it.
_SCAN = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
# A NUL or a lone surrogate: what no stored row holds (the collector refuses a body with
# either, docs/collector.md). JSON text holds a NUL only as a \u escape, and a lone surrogate
# too unless the text itself (the attribute as sent) holds one.
_UNSTORABLE = re.compile("[\0\ud800-\udfff]")


def _storable(value: Any, depth: int = 0) -> bool:
    """Whether decoded JSON ``value`` nests at most :data:`_MAX_DEPTH` levels of objects and
    arrays and holds no :data:`_UNSTORABLE` character in a string or key."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if not isinstance(value, (dict, list)):
        return True
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v, depth + 1) for k, v in value.items())
    return all(_storable(item, depth + 1) for item in value)


def _parse_json(value: Any) -> tuple[bool, Any]:
    """``(True, decoded)`` for a string holding JSON that a row can hold (no NaN or infinite
    number, no NUL or lone surrogate, at most 64 levels deep), else ``(False, None)``: such
    a string is kept as it was sent."""
    if not isinstance(value, str):
        return False, None
    try:
        decoded, end = _SCAN(value, 0)
    except StopIteration:  # no JSON value at the start (whitespace, or not JSON)
        end = -1
    except (ValueError, RecursionError):
        return False, None
    if end != len(value):  # whitespace around the value, or more after it: the full rules
        try:
            decoded = _DECODER.decode(value)
        except (ValueError, RecursionError):
            return False, None
    # Two searches in C first: only a \u escape decodes to an unstorable character, only
    # more than 64 brackets nest too deep (and 65 pairs of them take 130 characters).
    if ("\\u" in value or (len(value) > 2 * _MAX_DEPTH
                            and value.count("[") + value.count("{") > _MAX_DEPTH)) \
            and not _storable(decoded):
        return False, None
    return True, decoded


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(
        value, ensure_ascii=False, separators=(",", ":"))


# ---- ids, times, enums ----------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]*")


def _hex_id(value: Any, size: int, where: str) -> str:
    """``value`` (``size`` bytes, or ``2 * size`` hex chars) as lowercase hex."""
    if type(value) is bytes and len(value) == size and value.strip(b"\0"):
        return value.hex()  # protobuf's: the common case
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != size:
            raise OtelSpanError(f"{where}: {len(raw)} bytes, expected {size}")
        text = raw.hex()
    elif isinstance(value, str):
        if len(value) != 2 * size:
            raise OtelSpanError(f"{where}: {len(value)} hex characters, expected {2 * size}")
        if not _HEX.fullmatch(value):
            raise OtelSpanError(f"{where}: {value!r} is not hexadecimal")
        text = value.lower()
    else:
        raise OtelSpanError(f"{where}: must be bytes or a hex string, got "
                            f"{type(value).__name__}")
    if text.strip("0") == "":
        raise OtelSpanError(f"{where}: all zeros, which OpenTelemetry defines as invalid")
    return text


def _parent_id(value: Any) -> str | None:
    """The parent's hex id, or None for a root: no parent, an empty one, or W3C's all-zero
    "no parent" id (of the right size: a wrong size is an error)."""
    if type(value) is bytes and len(value) == 8:  # protobuf's: the common case
        return value.hex() if value.strip(b"\0") else None
    if value is None or (isinstance(value, (bytes, bytearray, memoryview, str))
                         and len(value) == 0):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)) and bytes(value) == bytes(8):
        return None
    if isinstance(value, str) and value == "0" * 16:
        return None
    return _hex_id(value, 8, "parent_span_id")


def _nanos(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise OtelSpanError(f"{where}: must be an integer (Unix nanoseconds), got "
                            f"{type(value).__name__}")
    if value <= 0:
        raise OtelSpanError(f"{where}: {value}, the span has no such time")
    if value >= _MAX_NANOS:
        raise OtelSpanError(f"{where}: {value} is after the year 9999")
    return value


def _enum(value: Any, names: tuple[str, ...], prefix: str, where: str) -> str:
    if type(value) is int and 0 <= value < len(names):  # protobuf's: the common case
        return names[value]
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return names[value]
    elif isinstance(value, str):
        name = value.upper()
        name = name[len(prefix):] if name.startswith(prefix) else name
        if name in names:
            return name
    raise OtelSpanError(f"{where}: {value!r} is not one of {', '.join(names)}")


def _count(value: Any, where: str) -> int:
    """A dropped count or the trace flags: OTLP's uint32."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise OtelSpanError(f"{where}: must be a non-negative integer, got {value!r}")
    if value >= _UINT32:
        raise OtelSpanError(f"{where}: {value} is over {_UINT32 - 1} (a uint32 in OTLP)")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise OtelSpanError(f"{where}: must be a string, got {type(value).__name__}")
    return value


def _seconds(nanos: int) -> float:
    return nanos / 1e9


_last_second = (0, "1970-01-01T00:00:00")  # spans come in bursts: most share their second


def _iso(nanos: int) -> str:
    """Unix nanoseconds as ``created`` is written (ISO-8601 UTC, microseconds, ``+00:00``)."""
    global _last_second
    whole, rest = divmod(nanos, 1_000_000_000)
    second, text = _last_second  # one tuple: threads may race here, never see a torn pair
    if second != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _last_second = (whole, text)
    return f"{text}.{rest // 1000:06d}+00:00"


# ---- reading attributes ---------------------------------------------------------------------

# The prefixes the mapping lists attributes under (``prefix.<rest>``): _Attributes groups the
# keys under them in one pass, so a lookup by prefix never scans all the attributes.
_PREFIXES = frozenset({
    "braintrust.input.", "braintrust.output.", "braintrust.metadata.", "braintrust.metrics.",
    "braintrust.scores.", "braintrust.span_attributes.", "gen_ai.prompt.", "gen_ai.completion.",
    "gen_ai.request.", "gen_ai.usage.", "llm.input_messages.", "llm.output_messages.",
    "llm.prompts.", "llm.choices.", "ai.telemetry.metadata.",
})
_PREFIX_ROOTS = frozenset(prefix.split(".")[0] for prefix in _PREFIXES)
# The dotted heads that lead to a prefix without being one ("ai.telemetry.").
_PREFIX_PARENTS = frozenset(prefix[:i + 1] for prefix in _PREFIXES
                            for i in range(len(prefix) - 1) if prefix[i] == ".") - _PREFIXES
# The first part of every dotted attribute the conventions read, and the undotted ones they
# read (tests/test_otel_rows.py checks this module's keys against both): a span with none of
# them is spared the mapping.
_MAPPED_ROOTS = frozenset({"gen_ai", "llm", "openinference", "embedding", "input", "output",
                           "tag", "ai", "traceloop", "braintrust"})
_MAPPED_KEYS = frozenset({"metadata"})


# What the mapping makes of an attribute key (or event name): None when the conventions do
# not read it (not under _MAPPED_ROOTS nor in _MAPPED_KEYS), else the heads of _PREFIXES it
# is under and the conventions (_CONVENTION_MARKS) it marks. Worked out once per distinct key:
# a span's keys are mostly those of the spans before it.
_KeyFacts = tuple[tuple[str, ...], tuple[str, ...]]
_KEY_FACTS: dict[str, _KeyFacts | None] = {}
_KEY_FACTS_KEPT = 4096  # distinct keys remembered: a client may send any number of them


def _key_facts(key: str) -> _KeyFacts | None:
    try:
        return _KEY_FACTS[key]
    except KeyError:
        pass
    facts = _work_out_key_facts(key)
    if len(_KEY_FACTS) >= _KEY_FACTS_KEPT:
        _KEY_FACTS.clear()
    _KEY_FACTS[key] = facts
    return facts


def _work_out_key_facts(key: str) -> _KeyFacts | None:
    dot = key.find(".")
    if dot < 0:
        return ((), ()) if key in _MAPPED_KEYS else None
    root = key[:dot]
    if root not in _MAPPED_ROOTS:
        return None
    heads = []
    if root in _PREFIX_ROOTS:
        while (dot := key.find(".", dot + 1)) >= 0:
            head = key[:dot + 1]
            if head in _PREFIXES:
                heads.append(head)
            if head not in _PREFIX_PARENTS:
                break
    marks = tuple(name for name, mark in _MARKS_BY_ROOT.get(root, ()) if key.startswith(mark))
    return tuple(heads), marks


class _Shape:
    """What a span's attribute keys and event names tell the mapping, before any value is
    read: worked out once per distinct shape (:func:`_shape`), as an instrumentation's spans
    come in a few shapes. Read only, shared by the spans of a shape.

    ``mapped`` lists the keys the conventions may read and ``groups`` the keys under each of
    :data:`_PREFIXES` (with its trailing dot) that has any, both in the attributes' order;
    ``marks`` the conventions (:data:`_CONVENTION_MARKS`) the keys mark and ``conventions``
    those the keys and event names mark, in _CONVENTION_MARKS's order; ``convention_read``
    whether the conventions read anything of the span (not, for most spans of an application:
    HTTP, database, its own functions); ``present`` what the span has in the words of a
    :data:`Source`'s needs; ``reads`` the sources of ``input``, ``output`` and ``expected``
    that may find something, in order (not a field none of them may fill); ``metrics`` the
    ``(metric, key)`` of _METRICS the span has, in _METRICS's order (the first number of a
    metric wins); ``model`` the keys of _MODEL and of _PROVIDER it has, in their order (the
    first string wins), for each of the two it has any of; ``request`` the ``(key, name)`` of
    its ``gen_ai.request.<name>`` parameters (a name of one part, not ``model`` nor one of
    :data:`RESERVED_METADATA_KEYS`); ``first_token`` the keys of _FIRST_TOKEN it has;
    ``type_only`` whether the conventions can give the span nothing but its type.
    """

    def __init__(self, keys: tuple[str, ...], event_names: tuple[str, ...]) -> None:
        self.mapped: list[str] = []
        self.groups: dict[str, list[str]] = {}
        marks: set[str] = set()
        for key in keys:
            facts = _key_facts(key)
            if facts is not None:
                self.mapped.append(key)
                for head in facts[0]:
                    self.groups.setdefault(head, []).append(key)
                marks.update(facts[1])
        self.marks = frozenset(marks)
        for name in event_names:
            facts = _key_facts(name)
            if facts is not None:
                marks.update(facts[1])
        self.conventions = [name for name, _ in _CONVENTION_MARKS if name in marks]
        self.convention_read = bool(self.mapped) or not _MAPPED_EVENTS.isdisjoint(event_names)
        self.present = frozenset({*self.mapped, *self.groups, *map(_event, event_names)})
        reads = [(name, sources.asked(self.present)) for name, sources in (
            ("input", _INPUT_SOURCES), ("output", _OUTPUT_SOURCES),
            ("expected", _EXPECTED_SOURCES))]
        self.reads = [(name, asked) for name, asked in reads if asked]
        self.metrics = [(name, key) for _, name, key in
                        sorted(_METRIC_OF[key] for key in self.present & _METRIC_KEYS)]
        model = [(name, [key for key in keys if key in self.present])
                 for name, keys in (("model", _MODEL), ("provider", _PROVIDER))]
        self.model = [(name, keys) for name, keys in model if keys]
        self.request = [(key, name) for key in self.groups.get("gen_ai.request.", ())
                        if (name := key[len("gen_ai.request."):]) and "." not in name
                        and name != "model" and name not in RESERVED_METADATA_KEYS]
        self.first_token = [(key, divisor) for key, divisor in _FIRST_TOKEN
                            if key in self.present]
        # An agent or retrieval span, or one of no convention: _Mapper.fields would find
        # every field but the type empty.
        self.type_only = not (
            "braintrust" in self.marks or self.metrics or self.first_token or self.reads
            or any(keys for _, keys in self.model) or self.request or "tag.tags" in self.present
            or not self.present.isdisjoint(_USER_METADATA))


_SHAPES: dict[tuple[tuple[str, ...], tuple[str, ...]], _Shape] = {}
_SHAPES_KEPT = 1024  # distinct shapes remembered: a client may send any number of them
_SHAPE_CHARS_KEPT = 8192  # a shape with longer keys (all told) is not: the cache stays small


def _shape(keys: tuple[str, ...], event_names: tuple[str, ...]) -> _Shape:
    try:
        return _SHAPES[keys, event_names]
    except KeyError:
        pass
    shape = _Shape(keys, event_names)
    if sum(map(len, keys)) + sum(map(len, event_names)) <= _SHAPE_CHARS_KEPT:
        if len(_SHAPES) >= _SHAPES_KEPT:
            _SHAPES.clear()
        _SHAPES[keys, event_names] = shape
    return shape


class _Attributes:
    """A span's attributes, their :class:`_Shape`, and which of them were *moved* into a row
    field (and where).

    A moved attribute leaves ``metadata.attributes``; an attribute only *read* (a model name,
    a token count) stays there as well. An attribute is moved only when all of its value
    landed in the row.
    """

    def __init__(self, values: dict[str, Any], shape: _Shape) -> None:
        self.values = values
        self.get: Callable[[str], Any] = values.get
        self.moved: dict[str, str] = {}
        self.shape = shape
        self.groups = shape.groups

    def move(self, keys: Iterable[str], target: str) -> None:
        for key in keys:
            self.moved.setdefault(key, target)

    def indexed(self, prefix: str) -> tuple[list[Any], list[str]]:
        """The list flattened under ``prefix.<n>.<path>`` (OpenInference's and OpenLLMetry's
        way of sending lists of objects), rebuilt, and the keys it was built from."""
        head = prefix + "."
        assert head in _PREFIXES, head
        entries = []
        for key in self.groups.get(head, ()):
            rest = key[len(head):].split(".")
            if len(rest) >= 2 and _is_index(rest[0]):
                entries.append((key, rest, self.values[key]))
        if not entries:
            return [], []
        items, used = _unflatten(entries)
        return (items if isinstance(items, list) else []), used

    def prefixed(self, prefix: str) -> list[tuple[str, str, Any]]:
        """``(key, rest, value)`` for every attribute named ``prefix.<rest>``."""
        head = prefix + "."
        assert head in _PREFIXES, head
        keys = self.groups.get(head)
        if keys is None:
            return []
        values = self.values
        return [(key, key[len(head):], values[key]) for key in keys if len(key) > len(head)]


class _Node(dict):  # type: ignore[type-arg]
    """An object built by :func:`_unflatten` (a plain dict is an attribute's own value)."""


def _unflatten(entries: list[tuple[str, list[str], Any]]) -> tuple[Any, list[str]]:
    """Nested objects from ``(key, path, value)``; a key whose path collides with another's
    (a value where an object is, or the reverse) is left out of the tree and of ``used``."""
    tree = _Node()
    used: list[str] = []
    for key, path, value in entries:
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, _Node())
            if not isinstance(child, _Node):
                break
            node = child
        else:
            if path[-1] not in node:
                node[path[-1]] = value
                used.append(key)
    return _as_list(tree), used


def _is_index(part: str) -> bool:
    return part.isascii() and part.isdigit()


def _as_list(node: Any) -> Any:
    """Built objects whose keys are all digits become lists (in index order), recursively."""
    if not isinstance(node, _Node):
        return node
    items = {k: _as_list(v) for k, v in node.items()}
    if items and all(_is_index(k) for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


# ---- messages -------------------------------------------------------------------------------
# Every convention's messages end as OpenAI chat messages ({role, content, tool_calls, ...},
# docs/protocol.md's and wrap_openai's shape); what has no OpenAI spelling is kept as sent.

def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if arguments is not None:
        function["arguments"] = _json_text(arguments)
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": function}
    if call_id is None:
        del call["id"]
    return call


def _assemble(role: Any, texts: list[Any], parts: list[Any], plain: bool,
              tool_calls: list[dict[str, Any]], tool_results: list[dict[str, Any]],
              extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One message (and one ``tool`` message per tool result) from a message's pieces:
    a single text part becomes ``content`` as a string, several parts a list of parts."""
    messages: list[dict[str, Any]] = []
    if texts or parts or tool_calls or not tool_results:
        content: Any
        if plain and len(texts) == 1:
            content = texts[0]
        elif parts:
            content = parts
        else:
            content = None
        message: dict[str, Any] = {"role": role, "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        for key, value in extra.items():
            message.setdefault(key, value)
        messages.append(message)
    for result in tool_results:
        for key, value in extra.items():
            result.setdefault(key, value)
        messages.append(result)
    return messages


def _message_of_parts(message: Any, key: str,
                      read_part: Callable[[Any, Any], tuple[str, Any]]) -> list[Any]:
    """A message whose content is a list of parts under ``key``, as spanlog's messages:
    ``read_part(part, role)`` says what each part is, in the convention's own words:
    ``("text", (text, plain))``, ``("call", tool call)``, ``("result", tool message)`` or
    ``("other", None)`` (kept as it is)."""
    if not isinstance(message, dict) or not isinstance(message.get(key), list):
        return [message]
    role = message.get("role")
    texts: list[Any] = []
    parts: list[Any] = []
    plain = True
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for part in message[key]:
        kind, value = read_part(part, role)
        if kind == "text":
            text, exact = value
            texts.append(text)
            parts.append({"type": "text", "text": text})
            plain = plain and exact
        elif kind == "call":
            calls.append(value)
        elif kind == "result":
            results.append(value)
        else:
            plain = False
            parts.append(part)
    extra = {k: v for k, v in message.items() if k not in ("role", key)}
    return _assemble(role, texts, parts, plain, calls, results, extra)


def _genai_part(part: Any, role: Any) -> tuple[str, Any]:
    """A part of an OTel GenAI message (gen-ai-input/output-messages.json)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return "text", (part.get("content"), True)
    if kind == "tool_call":
        return "call", _tool_call(part.get("id"), part.get("name"), part.get("arguments"))
    if kind == "tool_call_response":
        result = part["response"] if "response" in part else part.get("result")
        return "result", {"role": role or "tool", "tool_call_id": part.get("id"),
                          "content": result}
    return "other", None


def _genai_message(message: Any) -> list[Any]:
    """An OTel GenAI message (``{role, parts: [...]}``, gen-ai-input/output-messages.json)."""
    if type(message) is dict:
        parts = message.get("parts")
        if type(parts) is list and len(parts) == 1:
            part = parts[0]
            if type(part) is dict and part.get("type") == "text":
                # Most messages: one text part. What _message_of_parts makes of it, directly.
                out = {"role": message.get("role"), "content": part.get("content")}
                if len(message) > 2 or "role" not in message:
                    for key, value in message.items():
                        if key != "role" and key != "parts":
                            out.setdefault(key, value)
                return [out]
    return _message_of_parts(message, "parts", _genai_part)


def _genai_messages(value: Any) -> list[Any] | None:
    if isinstance(value, str):
        ok, value = _parse_json(value)
        if not ok:
            return None
    if not isinstance(value, list):
        return None
    return [m for item in value for m in _genai_message(item)]


# The last ``gen_ai.system_instructions`` string and its messages: an application sends the
# same instructions with every call. Kept only when the messages hold no list or map (so a copy
# of each message shares nothing a row could change), and copied out. One tuple: threads never
# see a torn pair.
_last_instructions: tuple[str | None, list[dict[str, Any]]] = (None, [])
_FLAT = frozenset({str, int, float, bool, type(None)})


def _genai_instructions(value: Any) -> list[Any] | None:
    """``gen_ai.system_instructions`` (a list of parts) as one system message."""
    global _last_instructions
    if isinstance(value, str):
        text, messages = _last_instructions
        if value == text:
            return [dict(message) for message in messages]
        ok, parsed = _parse_json(value)
        parts = parsed if ok and isinstance(parsed, list) else [{"type": "text", "content": value}]
        messages = _genai_message({"role": "system", "parts": parts})
        if all(type(message) is dict and _FLAT.issuperset(map(type, message.values()))
               for message in messages):
            _last_instructions = (value, [dict(message) for message in messages])
        return messages
    if not isinstance(value, list):
        return None
    return _genai_message({"role": "system", "parts": value})


def _oi_content(item: Any) -> Any:
    content = item.get("message_content") if isinstance(item, dict) else None
    if not isinstance(content, dict):
        return item
    if content.get("type") == "text" and set(content) <= {"type", "text"}:
        return {"type": "text", "text": content.get("text")}
    image = content.get("image")
    if (content.get("type") == "image" and isinstance(image, dict)
            and isinstance(image.get("image"), dict) and set(content) <= {"type", "image"}):
        return {"type": "image_url", "image_url": {"url": image["image"].get("url")}}
    return content


def _oi_message(item: Any) -> Any:
    """An OpenInference message (``message.role``, ``message.content``, ``message.contents``,
    ``message.tool_calls``, ... rebuilt from its flattened attributes)."""
    message = item.get("message") if isinstance(item, dict) and len(item) == 1 else None
    if not isinstance(message, dict):
        return item
    out: dict[str, Any] = {"role": message.get("role")}
    contents = message.get("contents")
    if "content" in message:
        out["content"] = message["content"]
    elif isinstance(contents, list):
        converted = [_oi_content(c) for c in contents]
        texts = [c.get("text") for c in converted if isinstance(c, dict) and c.get("type") == "text"
                 and set(c) == {"type", "text"}]
        out["content"] = texts[0] if len(converted) == 1 and len(texts) == 1 else converted
    else:
        out["content"] = None
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        converted_calls = []
        for call in calls:
            body = call.get("tool_call") if isinstance(call, dict) and len(call) == 1 else None
            function = body.get("function") if isinstance(body, dict) else None
            if not isinstance(body, dict) or not isinstance(function, dict):
                converted_calls.append(call)
                continue
            converted_call = _tool_call(body.get("id"), function.get("name"),
                                        function.get("arguments"))
            for key, value in body.items():
                if key not in ("id", "function"):
                    converted_call.setdefault(key, value)
            converted_calls.append(converted_call)
        out["tool_calls"] = converted_calls
    if "function_call_name" in message or "function_call_arguments_json" in message:
        out["function_call"] = {"name": message.get("function_call_name"),
                                "arguments": message.get("function_call_arguments_json")}
    for key, value in message.items():
        if key not in ("role", "content", "contents", "tool_calls", "function_call_name",
                       "function_call_arguments_json"):
            out.setdefault(key, value)
    return out


def _ai_part(part: Any, role: Any) -> tuple[str, Any]:
    """A part of a Vercel AI SDK message (``text``, ``tool-call``, ``tool-result``, ...)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return "text", (part.get("text"), set(part) <= {"type", "text"})
    if kind == "tool-call":
        arguments = part["input"] if "input" in part else part.get("args")
        return "call", _tool_call(part.get("toolCallId"), part.get("toolName"), arguments)
    if kind == "tool-result":
        result = part["output"] if "output" in part else part.get("result")
        return "result", {"role": "tool", "tool_call_id": part.get("toolCallId"),
                          "name": part.get("toolName"), "content": result}
    return "other", None


def _ai_message(message: Any) -> list[Any]:
    """A Vercel AI SDK message: ``content`` a string or parts (``text``, ``tool-call``,
    ``tool-result``, ``image``, ``file``, ``reasoning``)."""
    return _message_of_parts(message, "content", _ai_part)


def _ai_messages(value: Any) -> list[Any] | None:
    ok, parsed = _parse_json(value)
    if not ok or not isinstance(parsed, list):
        return None
    return [m for item in parsed for m in _ai_message(item)]


def _ai_prompt(value: Any) -> list[Any] | None:
    """``ai.prompt``: ``{"system"?, "prompt"?, "messages"?}`` as a JSON string."""
    ok, parsed = _parse_json(value)
    if (not ok or not isinstance(parsed, dict) or not parsed
            or not set(parsed) <= {"system", "prompt", "messages"}):
        return None
    messages: list[Any] = []
    system = parsed.get("system")
    if system is not None:
        messages.append({"role": "system", "content": system})
    prompt = parsed.get("prompt")
    if isinstance(prompt, list):
        messages.extend(m for item in prompt for m in _ai_message(item))
    elif prompt is not None:
        messages.append({"role": "user", "content": prompt})
    listed = parsed.get("messages")
    if isinstance(listed, list):
        messages.extend(m for item in listed for m in _ai_message(item))
    elif listed is not None:
        return None
    return messages


def _ai_tool_calls(value: Any) -> list[dict[str, Any]] | None:
    ok, parsed = _parse_json(value)
    if not ok or not isinstance(parsed, list):
        return None
    calls = []
    for call in parsed:
        if not isinstance(call, dict):
            return None
        arguments = call["input"] if "input" in call else call.get("args")
        calls.append(_tool_call(call.get("toolCallId"), call.get("toolName"), arguments))
    return calls


def _openllmetry_message(item: Any) -> Any:
    """``gen_ai.prompt.<n>.*`` / ``gen_ai.completion.<n>.*`` (OpenLLMetry): role, content,
    tool_calls.<m>.{id, name, arguments}, tool_call_id, finish_reason."""
    if not isinstance(item, dict):
        return item
    out = dict(item)
    calls = item.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [
            _tool_call(c.get("id"), c.get("name"), c.get("arguments"))
            if isinstance(c, dict) and set(c) <= {"id", "name", "arguments"} else c
            for c in calls]
    return out


def _maybe_json(value: Any) -> Any:
    """A string that holds a JSON object or array, decoded; anything else as it is."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        ok, parsed = _parse_json(value)
        if ok:
            return parsed
    return value


def _mime_value(value: Any, mime: Any) -> Any:
    """OpenInference's ``input.value``/``output.value``: decoded when its mime type is JSON."""
    if isinstance(mime, str) and mime.split(";")[0].strip().lower() == "application/json":
        ok, parsed = _parse_json(value)
        if ok:
            return parsed
    return value


# ---- span events ----------------------------------------------------------------------------

_MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                   "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}
_CHOICE_EVENT = "gen_ai.choice"
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
# The span events the conventions read.
_MAPPED_EVENTS = frozenset({*_MESSAGE_EVENTS, _CHOICE_EVENT, _DETAILS_EVENT})
_EVENT_BODY_KEYS = ("gen_ai.event.content", "content", "role", "tool_calls", "id", "message",
                    "index", "finish_reason")


class _Event:
    """A span event on its way into ``metadata.events``, with what was moved out of it."""

    def __init__(self, event: OtelEvent, index: int) -> None:
        where = f"events[{index}]"
        self.name = _text(event.name, f"{where}.name")
        self.nanos = event.time_unix_nano
        if not isinstance(self.nanos, int) or isinstance(self.nanos, bool) or self.nanos < 0:
            raise OtelSpanError(f"{where}.time_unix_nano: must be a non-negative integer")
        if self.nanos >= _MAX_NANOS:
            raise OtelSpanError(f"{where}.time_unix_nano: {self.nanos} is after the year 9999")
        self.attributes = _clean_attributes(event.attributes, f"{where}.attributes")
        self.dropped = _count(event.dropped_attributes_count, f"{where}.dropped_attributes_count")
        self.moved: dict[str, str] = {}

    def body(self) -> tuple[dict[str, Any], list[str]]:
        """The GenAI event body: its attributes, with ``gen_ai.event.content`` (a JSON
        object, as the Azure SDKs send the body) spread over them."""
        body: dict[str, Any] = {}
        keys = []
        for key in _EVENT_BODY_KEYS:
            if key in self.attributes:
                keys.append(key)
                body[key] = self.attributes[key]
        content = body.pop("gen_ai.event.content", None)
        if content is not None:
            decoded = _maybe_json(content)
            if isinstance(decoded, dict):
                body = {**body, **decoded}
            else:
                body.setdefault("content", decoded)
        return body, keys

    def move(self, keys: Iterable[str], target: str) -> None:
        for key in keys:
            self.moved.setdefault(key, target)

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "time": _seconds(self.nanos)}
        attributes = {k: v for k, v in self.attributes.items() if k not in self.moved}
        if attributes:
            out["attributes"] = attributes
        if self.moved:
            out["moved"] = dict(self.moved)
        if self.dropped:
            out["dropped_attributes_count"] = self.dropped
        return out


def _event_message(event: _Event) -> tuple[dict[str, Any] | None, list[str]]:
    body, keys = event.body()
    if not any(k in body for k in ("content", "message", "tool_calls")):
        return None, []
    if event.name == _CHOICE_EVENT:
        raw = _maybe_json(body.get("message"))
        message = dict(raw) if isinstance(raw, dict) else ({} if raw is None else {"content": raw})
        out: dict[str, Any] = {
            "role": message.pop("role", body.get("role") or "assistant"),
            "content": message.pop("content", _maybe_json(body.get("content")))}
        calls = message.pop("tool_calls", body.get("tool_calls"))
        if calls is not None:
            out["tool_calls"] = _maybe_json(calls)
        out.update(message)
        for key, value in body.items():
            if key not in ("message", "role", "content", "tool_calls"):
                out.setdefault(key, value)
        return out, keys
    out = {"role": body.get("role") or _MESSAGE_EVENTS[event.name],
           "content": _maybe_json(body.get("content"))}
    if "tool_calls" in body:
        out["tool_calls"] = _maybe_json(body["tool_calls"])
    rest = {k: v for k, v in body.items() if k not in ("role", "content", "tool_calls")}
    if event.name == "gen_ai.tool.message" and "id" in rest:
        out["tool_call_id"] = rest.pop("id")
    for key, value in rest.items():
        out.setdefault(key, value)
    return out, keys


def _events_messages(events: list[_Event], names: Iterable[str], target: str,
                     ) -> list[dict[str, Any]] | None:
    wanted = set(names)
    messages = []
    for event in events:
        if event.name in wanted:
            message, keys = _event_message(event)
            if message is not None:
                messages.append(message)
                event.move(keys, target)
    if target == "output":
        messages.sort(key=_choice_index)
    return messages or None


def _choice_index(message: dict[str, Any]) -> float:
    index: Any = message.get("index")
    return float(index) if _number(index) else 0.0


def _error_text(status_message: str, events: list[_Event]) -> str:
    """The status message and every ``exception`` event: ``type: message`` then the stack."""
    blocks = []
    headers = set()
    for event in events:
        if event.name != "exception":
            continue
        attrs = event.attributes
        kind, message = attrs.get("exception.type"), attrs.get("exception.message")
        stack = attrs.get("exception.stacktrace")
        header = ": ".join(str(p) for p in (kind, message) if p is not None)
        headers.add(header)
        if message is not None:
            headers.add(str(message))
        blocks.append("\n".join(str(p) for p in (header, stack) if p not in (None, "")))
        event.move([k for k in ("exception.type", "exception.message", "exception.stacktrace")
                    if k in attrs], "error")
    if status_message and status_message not in headers:
        blocks.insert(0, status_message)
    return "\n\n".join(b for b in blocks if b)


# ---- the conventions ------------------------------------------------------------------------

_GENAI_OPERATIONS = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "embeddings": "llm",
    "execute_tool": "tool",
    "invoke_agent": "task", "create_agent": "task", "invoke_workflow": "task",
    "retrieval": "function",
}
_OPENINFERENCE_KINDS = {
    "LLM": "llm", "EMBEDDING": "llm", "TOOL": "tool", "CHAIN": "task", "AGENT": "task",
    "RETRIEVER": "function", "RERANKER": "function", "GUARDRAIL": "function",
    "PROMPT": "function", "EVALUATOR": "score",
}
_AI_SDK_LLM = re.compile(
    r"ai\.(generateText|streamText|generateObject|streamObject|embed|embedMany)"
    r"(\.(doGenerate|doStream|doEmbed))?")
_OPENLLMETRY_KINDS = {"workflow": "task", "task": "task", "agent": "task", "tool": "tool"}
_OPENLLMETRY_REQUESTS = {"chat": "llm", "completion": "llm", "embedding": "llm",
                         "rerank": "llm"}

# Row metric <- attributes, first present wins (braintrust.metrics.* is applied over these).
_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prompt_tokens", ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                       "llm.token_count.prompt", "ai.usage.inputTokens",
                       "ai.usage.promptTokens")),
    ("completion_tokens", ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                           "llm.token_count.completion", "ai.usage.outputTokens",
                           "ai.usage.completionTokens")),
    ("tokens", ("gen_ai.usage.total_tokens", "llm.token_count.total", "ai.usage.totalTokens",
                "llm.usage.total_tokens", "ai.usage.tokens")),
    ("prompt_cached_tokens", ("gen_ai.usage.cache_read.input_tokens",
                              "llm.token_count.prompt_details.cache_read",
                              "ai.usage.inputTokenDetails.cacheReadTokens",
                              "ai.usage.cachedInputTokens")),
    ("prompt_cache_creation_tokens", ("gen_ai.usage.cache_creation.input_tokens",
                                      "llm.token_count.prompt_details.cache_write",
                                      "ai.usage.inputTokenDetails.cacheWriteTokens")),
    ("prompt_audio_tokens", ("llm.token_count.prompt_details.audio",)),
    ("completion_reasoning_tokens", ("gen_ai.usage.reasoning.output_tokens",
                                     "llm.token_count.completion_details.reasoning",
                                     "ai.usage.outputTokenDetails.reasoningTokens",
                                     "ai.usage.reasoningTokens")),
    ("completion_audio_tokens", ("llm.token_count.completion_details.audio",)),
    ("estimated_cost", ("llm.cost.total",)),
)
_METRIC_KEYS = frozenset(key for _, keys in _METRICS for key in keys)
# A metric key's place in _METRICS (the metric's, then the key's among its keys), metric, key.
_METRIC_OF = {key: (i * 100 + j, name, key) for i, (name, keys) in enumerate(_METRICS)
              for j, key in enumerate(keys)}
# What _Mapper.user_metadata reads besides braintrust.metadata (in _Mapper.present's words).
_USER_METADATA = frozenset({"metadata", "ai.telemetry.metadata."})
# Seconds to first token <- (attribute, divisor to seconds).
_FIRST_TOKEN = (("gen_ai.response.time_to_first_chunk", 1), ("ai.response.msToFirstChunk", 1000),
                ("ai.stream.msToFirstChunk", 1000))
_MODEL = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name",
          "llm.request.model_name", "llm.response.model_name", "embedding.model_name",
          "ai.model.id", "ai.response.model")
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system",
             "ai.model.provider")

# Attribute names (prefixes) that tell a convention apart, for metadata.otel.conventions.
_CONVENTION_MARKS = (
    ("genai", ("gen_ai.",)),
    ("openinference", ("openinference.span.kind", "llm.input_messages.", "llm.output_messages.",
                       "llm.token_count.", "llm.model_name", "input.value", "output.value")),
    ("vercel-ai", ("ai.",)),
    ("braintrust", ("braintrust.",)),
    ("openllmetry", ("traceloop.", "llm.request.type", "llm.usage.total_tokens")),
)


def _by_root(marks: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, list[tuple[str, str]]]:
    """``(convention, mark)`` pairs by the mark's first dotted part."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, names in marks:
        for mark in names:
            out.setdefault(mark.partition(".")[0], []).append((name, mark))
    return out


_MARKS_BY_ROOT = _by_root(_CONVENTION_MARKS)  # every root of them is under _MAPPED_ROOTS

# Where a row field may come from: what the source needs (any one of these attribute keys,
# prefixes ending in a dot, or ``event:<name>`` for a span event) and how it reads the value
# (None when the span has none). The needs only spare calls: without them a source finds
# nothing, so it is not asked.
Source = tuple[tuple[str, ...], Callable[["_Mapper"], Any]]


def _lookup(table: Mapping[str, str], value: Any) -> str | None:
    return table.get(value) if isinstance(value, str) else None


def _is_span_type(value: Any) -> bool:
    return isinstance(value, str) and value in _SPAN_TYPES


# What the conventions put in a row (:meth:`_Mapper.fields`): span_attributes (the type and
# declared ones), metrics, found (input, output, expected), scores, tags, project, metadata
# (model and the user's). A tuple: built once per span.
_Fields = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any], Mapping[str, Any],
                list[str], Mapping[str, str], dict[str, Any]]
# For a span of none of the conventions; never changed.
_NOTHING: Mapping[str, Any] = {}


class _Mapper:
    """Everything :func:`span_to_row` works out from one span's attributes and events."""

    def __init__(self, attrs: _Attributes, events: list[_Event]) -> None:
        self.a = attrs
        self.events = events
        self.present = attrs.shape.present

    # -- helpers: each source returns a value, or None when it does not apply --------------

    def _take(self, key: str, target: str, convert: Callable[[Any], Any] = lambda v: v) -> Any:
        if key not in self.a.values:
            return None
        value = convert(self.a.values[key])
        if value is not None:
            self.a.moved.setdefault(key, target)
        return value

    def _json_attr(self, key: str, target: str) -> Any:
        ok, value = _parse_json(self.a.get(key))
        if not ok:
            return None
        self.a.move([key], target)
        return _found(value)

    def _indexed(self, prefix: str, target: str,
                 convert: Callable[[list[Any]], list[Any]]) -> list[Any] | None:
        items, keys = self.a.indexed(prefix)
        if not items or not isinstance(items, list):
            return None
        self.a.move(keys, target)
        return convert(items)

    def fields(self) -> _Fields:
        """Everything the conventions put in the row (in this order: a key moved by two
        readers is listed under the first one's field)."""
        # braintrust.* attributes (the readers of braintrust's own convention) are rare.
        braintrust = "braintrust" in self.a.shape.marks
        declared = self.span_attributes() if braintrust else _NOTHING
        span_type = self.span_type(declared.get("type"))
        span_attributes = {} if span_type is None else {"type": span_type}
        span_attributes.update(declared)
        shape = self.a.shape
        metrics = self.metrics(braintrust) if braintrust or shape.metrics or shape.first_token \
            else {}
        found = {}
        for name, reads in shape.reads:
            for read in reads:  # the first source that finds a value fills the field
                value = read(self)
                if value is not None:
                    found[name] = value.value if type(value) is _Present else value
                    break
        scores = self.scores() if braintrust else _NOTHING
        tags = self.tags() if braintrust or "tag.tags" in self.a.values else []
        project = self.project() if braintrust else _NOTHING
        metadata = self.model_metadata() if shape.model or shape.request else {}
        if braintrust or not self.present.isdisjoint(_USER_METADATA):
            metadata.update(self.user_metadata())
        return span_attributes, metrics, found, scores, tags, project, metadata

    # -- span type ---------------------------------------------------------------------------

    def span_type(self, declared: Any) -> str | None:
        if declared is not None and _is_span_type(declared):
            return str(declared)
        get = self.a.get
        operation = get("gen_ai.operation.name")
        if isinstance(operation, str) and (found := _GENAI_OPERATIONS.get(operation)):
            return found
        kind = get("openinference.span.kind")
        found = _lookup(_OPENINFERENCE_KINDS, kind.upper() if isinstance(kind, str) else None)
        if found:
            return found
        operation_id = get("ai.operationId")
        if operation_id == "ai.toolCall":
            return "tool"
        if isinstance(operation_id, str) and _AI_SDK_LLM.fullmatch(operation_id):
            return "llm"
        found = _lookup(_OPENLLMETRY_KINDS, get("traceloop.span.kind"))
        if found:
            return found
        found = _lookup(_OPENLLMETRY_REQUESTS, get("llm.request.type"))
        if found:
            return found
        if get("gen_ai.tool.name") is not None and "gen_ai.operation.name" not in self.a.values:
            return "tool"
        if (any(get(k) is not None for k in ("gen_ai.request.model", "gen_ai.response.model"))
                or "gen_ai.usage." in self.a.groups
                or self.a.indexed("gen_ai.prompt")[0]):
            return "llm"
        return None

    # -- metadata, metrics, scores, tags -------------------------------------------------

    def model_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        get = self.a.get
        for name, keys in self.a.shape.model:
            for key in keys:
                value = get(key)
                if isinstance(value, str):
                    out[name] = value
                    break
        for key, name in self.a.shape.request:
            out.setdefault(name, get(key))
        return out

    def user_metadata(self) -> dict[str, Any]:
        """braintrust.metadata (JSON) and braintrust.metadata.*, OpenInference's ``metadata``
        (JSON), ai.telemetry.metadata.*: later ones win; reserved keys are never taken."""
        out: dict[str, Any] = {}

        def merge(keys: list[str], values: Mapping[str, Any]) -> None:
            fits = {k: v for k, v in values.items() if k not in RESERVED_METADATA_KEYS}
            out.update(fits)
            if len(fits) == len(values):
                self.a.move(keys, "metadata")

        for key in ("metadata", "braintrust.metadata"):
            ok, value = _parse_json(self.a.get(key))
            if ok and isinstance(value, dict):
                merge([key], value)
        for prefix in ("ai.telemetry.metadata", "braintrust.metadata"):
            for key, rest, value in self.a.prefixed(prefix):
                merge([key], {rest: value})
        return out

    def metrics(self, braintrust: bool) -> dict[str, Any]:
        """The token counts and time to first token; ``braintrust.metrics`` over them when
        the span has ``braintrust`` attributes."""
        out: dict[str, Any] = {}
        get = self.a.get
        for name, key in self.a.shape.metrics:
            if name not in out:
                value = get(key)
                # An int here is within a double's range (_clean_attributes): a number.
                if value is not None and (type(value) is int or _number(value)):
                    out[name] = value
        if "ai.usage.tokens" in self.a.values and _number(out.get("tokens")):
            out.setdefault("prompt_tokens", out["tokens"])  # embeddings: input tokens only
        for key, divisor in self.a.shape.first_token:
            value = get(key)
            if value is not None and _number(value):
                out["time_to_first_token"] = value / divisor
                break
        if braintrust:
            out.update(self._numbers("braintrust.metrics", "metrics",
                                     lambda k, v: _number(v) and k not in ("start", "end")))
        if "tokens" not in out and "prompt_tokens" in out and "completion_tokens" in out:
            out["tokens"] = out["prompt_tokens"] + out["completion_tokens"]
        return out

    def scores(self) -> dict[str, Any]:
        return self._numbers("braintrust.scores", "scores",
                             lambda k, v: v is None or (_number(v) and 0 <= v <= 1))

    def _numbers(self, prefix: str, target: str,
                 accept: Callable[[str, Any], bool]) -> dict[str, Any]:
        """A ``{name: number}`` sent as one JSON attribute ``prefix`` and/or as
        ``prefix.<name>`` attributes; what ``accept`` refuses stays where it was."""
        out: dict[str, Any] = {}
        ok, value = _parse_json(self.a.get(prefix))
        if ok and isinstance(value, dict):
            fits = {k: v for k, v in value.items() if accept(k, v)}
            out.update(fits)
            if len(fits) == len(value):
                self.a.move([prefix], target)
        for key, name, number in self.a.prefixed(prefix):
            if accept(name, number):
                out[name] = number
                self.a.move([key], target)
        return out

    def tags(self) -> list[str]:
        out: list[str] = []
        for key in ("braintrust.tags", "tag.tags"):
            value = self.a.get(key)
            if isinstance(value, list) and all(isinstance(t, str) for t in value):
                out.extend(t for t in value if t not in out)
                self.a.move([key], "tags")
        return out

    def span_attributes(self) -> dict[str, Any]:
        """``braintrust.span_attributes`` (JSON) and ``braintrust.span_attributes.*``."""
        out: dict[str, Any] = {}

        def fits(key: str, value: Any) -> bool:
            return ((key != "type" or _is_span_type(value))
                    and (key != "name" or isinstance(value, str)))

        ok, value = _parse_json(self.a.get("braintrust.span_attributes"))
        if ok and isinstance(value, dict):
            accepted = {k: v for k, v in value.items() if fits(k, v)}
            out.update(accepted)
            if len(accepted) == len(value):
                self.a.move(["braintrust.span_attributes"], "span_attributes")
        for key, name, item in self.a.prefixed("braintrust.span_attributes"):
            if fits(name, item):
                out[name] = item
                self.a.move([key], "span_attributes")
        return out

    def project(self) -> dict[str, str]:
        """``braintrust.parent``'s ``project_name:<name>`` or ``project_id:<id>``."""
        parent = self.a.get("braintrust.parent")
        if isinstance(parent, str):
            kind, _, value = parent.partition(":")
            if kind in ("project_name", "project_id") and value:
                return {kind: value}
        return {}


class _Present:
    """A value that was found, even when it is None (``braintrust.input: null``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_NULL = _Present(None)  # a found None, shared (read only)


def _found(value: Any) -> Any:
    """``value``, found: a source's return for a value that may be None."""
    return _NULL if value is None else value


def _details_event(m: _Mapper, key: str, target: str,
                   convert: Callable[[Any], list[Any] | None]) -> list[Any] | None:
    """``gen_ai.input.messages`` & co. recorded on a ``gen_ai.client.inference.operation.
    details`` event instead of the span."""
    for event in m.events:
        if event.name == _DETAILS_EVENT and key in event.attributes:
            value = convert(event.attributes[key])
            if value is not None:
                event.move([key], target)
                return value
    return None


def _genai_input(m: _Mapper) -> list[Any] | None:
    messages = m._take("gen_ai.input.messages", "input", _genai_messages)
    instructions = m._take("gen_ai.system_instructions", "input", _genai_instructions)
    if messages is None and instructions is None:
        return None
    return (instructions or []) + (messages or [])


def _genai_event_input(m: _Mapper) -> list[Any] | None:
    messages = _details_event(m, "gen_ai.input.messages", "input", _genai_messages)
    instructions = _details_event(m, "gen_ai.system_instructions", "input", _genai_instructions)
    if messages is None and instructions is None:
        return None
    return (instructions or []) + (messages or [])


def _ai_output(m: _Mapper) -> Any:
    text_key, calls_key = "ai.response.text", "ai.response.toolCalls"
    text = m.a.get(text_key)
    calls = _ai_tool_calls(m.a.get(calls_key))
    if text is None and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    if calls is not None:
        m.a.move([calls_key], "output")
    reason = m.a.get("ai.response.finishReason")
    if reason is not None:
        message["finish_reason"] = reason
    if text is not None:
        m.a.move([text_key], "output")
    return [message]


def _completion_text(item: Any) -> Any:
    """``{"prompt": {"text": t}}`` or ``{"completion": {"text": t}}`` as ``t``."""
    if isinstance(item, dict) and len(item) == 1:
        body = next(iter(item.values()))
        if isinstance(body, dict) and set(body) == {"text"}:
            return body["text"]
    return item


def _completions(items: list[Any]) -> Any:
    """OpenInference ``llm.prompts``/``llm.choices`` (legacy completions API): the one text,
    or the list of them."""
    texts = [_completion_text(item) for item in items]
    return texts[0] if len(texts) == 1 else texts


def _event(name: str) -> str:
    """How a Source names the span event ``name`` in its needs."""
    return "event:" + name


def _json(key: str, target: str) -> Source:
    """A JSON string attribute, decoded (not there when it is not JSON)."""
    return (key,), lambda m: m._json_attr(key, target)


def _attr(key: str, target: str, convert: Callable[[Any], Any]) -> Source:
    """An attribute's value through ``convert`` (None: not taken)."""
    return (key,), lambda m: m._take(key, target, convert)


def _listed(prefix: str, target: str, convert: Callable[[list[Any]], Any]) -> Source:
    """The list flattened under ``prefix.<n>.*``, through ``convert``."""
    return (prefix + ".",), lambda m: m._indexed(prefix, target, convert)


def _oi_value(key: str, mime_key: str, target: str) -> Source:
    return (key,), lambda m: m._take(
        key, target, lambda v: _found(_mime_value(v, m.a.get(mime_key))))


def _parsed(key: str, target: str) -> Source:
    """A JSON string attribute, decoded; a string that is not JSON as it is."""
    return _attr(key, target, lambda v: _found(_maybe_json(v)))


def _oi_messages(items: list[Any]) -> list[Any]:
    return [_oi_message(item) for item in items]


def _openllmetry_messages(items: list[Any]) -> list[Any]:
    return [_openllmetry_message(item) for item in items]


def _as_sent(items: list[Any]) -> list[Any]:
    return items


class _Sources:
    """A row field's sources, in order, and which of them a span's attributes and events
    (``present``, in the words of their needs) let find anything."""

    def __init__(self, *sources: Source) -> None:
        self.needs = frozenset(need for needs, _ in sources for need in needs)
        self.reads = [read for _, read in sources]
        self.by_need: dict[str, list[int]] = {}
        for i, (needs, _) in enumerate(sources):
            for need in needs:
                self.by_need.setdefault(need, []).append(i)

    def asked(self, present: frozenset[str]) -> list[Callable[[_Mapper], Any]]:
        found = self.needs.intersection(present)
        if not found:
            return []
        return [self.reads[i] for i in sorted({i for need in found for i in self.by_need[need]})]


_INPUT_SOURCES = _Sources(
    _json("braintrust.input_json", "input"),
    _attr("braintrust.input", "input", _Present),
    _listed("braintrust.input", "input", _as_sent),
    (("gen_ai.input.messages", "gen_ai.system_instructions"), _genai_input),
    _listed("llm.input_messages", "input", _oi_messages),
    _attr("ai.prompt.messages", "input", _ai_messages),
    _attr("ai.prompt", "input", _ai_prompt),
    _listed("gen_ai.prompt", "input", _openllmetry_messages),
    _json("gen_ai.prompt_json", "input"),
    _attr("gen_ai.prompt", "input", _Present),
    ((_event(_DETAILS_EVENT),), _genai_event_input),
    (tuple(map(_event, _MESSAGE_EVENTS)),
     lambda m: _events_messages(m.events, _MESSAGE_EVENTS, "input")),
    _listed("llm.prompts", "input", _completions),
    _parsed("gen_ai.tool.call.arguments", "input"),
    _parsed("ai.toolCall.args", "input"),
    _parsed("ai.toolCall.input", "input"),
    _oi_value("input.value", "input.mime_type", "input"),
    _parsed("traceloop.entity.input", "input"),
)

_OUTPUT_SOURCES = _Sources(
    _json("braintrust.output_json", "output"),
    _attr("braintrust.output", "output", _Present),
    _listed("braintrust.output", "output", _as_sent),
    _attr("gen_ai.output.messages", "output", _genai_messages),
    _listed("llm.output_messages", "output", _oi_messages),
    _parsed("ai.response.object", "output"),
    (("ai.response.text", "ai.response.toolCalls"), _ai_output),
    _listed("gen_ai.completion", "output", _openllmetry_messages),
    _json("gen_ai.completion_json", "output"),
    _attr("gen_ai.completion", "output", _Present),
    ((_event(_DETAILS_EVENT),),
     lambda m: _details_event(m, "gen_ai.output.messages", "output", _genai_messages)),
    ((_event(_CHOICE_EVENT),), lambda m: _events_messages(m.events, (_CHOICE_EVENT,), "output")),
    _listed("llm.choices", "output", _completions),
    _parsed("gen_ai.tool.call.result", "output"),
    _parsed("ai.toolCall.result", "output"),
    _parsed("ai.toolCall.output", "output"),
    _oi_value("output.value", "output.mime_type", "output"),
    _parsed("traceloop.entity.output", "output"),
)

_EXPECTED_SOURCES = _Sources(
    _json("braintrust.expected_json", "expected"),
    _attr("braintrust.expected", "expected", _Present),
)


# ---- the row --------------------------------------------------------------------------------

def span_to_row(span: OtelSpan) -> dict[str, Any]:
    """The spanlog row for one finished OTel span (docs/otel.md has the whole mapping).

    The row is a complete first write (``_is_merge: false``, as a spanlog span's own row) whose
    ``id`` derives from the span's ids: sending the same span again is a retry the store
    recognizes (docs/protocol.md), and feedback logged on it before or after is kept. It
    carries ``project_name``/``project_id`` only when the span names its project
    (``braintrust.parent``); ``log_id`` and otherwise the project are the caller's to add.
    Raises :class:`OtelSpanError` for a span that cannot be a row.
    """
    return row_of_fields(
        span.name, span.trace_id, span.span_id, span.start_time_unix_nano,
        span.end_time_unix_nano, span.parent_span_id, span.kind, span.status_code,
        span.status_message, span.attributes, span.events, span.links,
        span.resource_attributes, span.scope_name, span.scope_version, span.scope_attributes,
        span.trace_state, span.flags, span.dropped_attributes_count, span.dropped_events_count,
        span.dropped_links_count, span.plain)


def row_of_fields(name: Any, trace_id: Any, span_id: Any, start: Any, end: Any, parent: Any,
                  kind: Any, status: Any, status_message: Any, attributes: Any,
                  span_events: Any, span_links: Any, resource_attributes: Any, scope_name: Any,
                  scope_version: Any, scope_attributes: Any, trace_state: Any, flags: Any,
                  dropped_a: Any, dropped_e: Any, dropped_l: Any,
                  plain: bool) -> dict[str, Any]:
    """:func:`span_to_row` of a span given as its fields, in OtelSpan's order: the protobuf
    decoder (server/http/_otlp.py) passes a tuple of them, which costs less than an
    OtelSpan to make and to read."""
    # The checkers are called only for a value of another type than the common one, which
    # they may refuse: protobuf's spans (bytes ids, int times and enums) pass inline.
    if type(name) is not str:
        _text(name, "name")
    if type(trace_id) is bytes and len(trace_id) == 16 and trace_id != _ZERO_TRACE:
        trace_id = trace_id.hex()
    else:
        trace_id = _hex_id(trace_id, 16, "trace_id")
    if type(span_id) is bytes and len(span_id) == 8 and span_id != _ZERO_SPAN:
        span_id = span_id.hex()
    else:
        span_id = _hex_id(span_id, 8, "span_id")
    if type(parent) is bytes and len(parent) == 8:
        parent = parent.hex() if parent != _ZERO_SPAN else None
    else:
        parent = _parent_id(parent)
    if type(start) is not int or not 0 < start < _MAX_NANOS:
        _nanos(start, "start_time_unix_nano")
    if type(end) is not int or not 0 < end < _MAX_NANOS:
        _nanos(end, "end_time_unix_nano")
    if end < start:
        raise OtelSpanError(f"end_time_unix_nano: {end} is before start_time_unix_nano {start}")
    kind = _KINDS[kind] if type(kind) is int and 0 <= kind < 6 else \
        _enum(kind, _KINDS, "SPAN_KIND_", "kind")
    status = _STATUSES[status] if type(status) is int and 0 <= status < 3 else \
        _enum(status, _STATUSES, "STATUS_CODE_", "status_code")
    if not (type(status_message) is str and type(scope_name) is str
            and type(scope_version) is str and type(trace_state) is str):
        for field_name, text in (("status_message", status_message), ("scope_name", scope_name),
                                 ("scope_version", scope_version), ("trace_state", trace_state)):
            _text(text, field_name)
    if not (type(dropped_a) is int and type(dropped_e) is int and type(dropped_l) is int
            and 0 <= dropped_a < _UINT32 and 0 <= dropped_e < _UINT32
            and 0 <= dropped_l < _UINT32):
        _count(dropped_a, "dropped_attributes_count")
        _count(dropped_e, "dropped_events_count")
        _count(dropped_l, "dropped_links_count")
    if flags is not None and (type(flags) is not int or not 0 <= flags < _UINT32):
        _count(flags, "flags")

    if plain:  # nothing to clean, no events nor links (OtelSpan.plain)
        values: dict[str, Any] = attributes  # a dict (OtelSpan.plain)
        resource = dict(resource_attributes)
        events: list[_Event] = []
        links: list[dict[str, Any]] = []
        attrs = _Attributes(values, _shape(tuple(values), ()))
    else:
        values = _clean_attributes(attributes, "attributes")
        events = [_Event(event, i) for i, event in enumerate(span_events)] if span_events \
            else []
        attrs = _Attributes(values, _shape(tuple(values),
                                           tuple(e.name for e in events) if events else ()))
        resource = _clean_resource(resource_attributes)
        if scope_attributes:  # mostly empty, and then never in the row
            scope_attributes = _clean_attributes(scope_attributes, "scope_attributes")
        links = [_link(link, i) for i, link in enumerate(span_links)] if span_links else []
    tags: list[str]
    metadata: dict[str, Any]
    if attrs.shape.type_only:
        span_type = _Mapper(attrs, events).span_type(None) if attrs.shape.convention_read \
            else None  # most spans of an application: HTTP, database, its own functions
        declared = {"type": span_type} if span_type is not None else _NOTHING
        found_metrics = found = scores = project = _NOTHING
        tags, metadata = [], {}
    else:
        declared, found_metrics, found, scores, tags, project, metadata = \
            _Mapper(attrs, events).fields()

    row: dict[str, Any] = {
        "id": row_id_for(trace_id, span_id),
        "span_id": span_id,
        "root_span_id": trace_id,
        "span_parents": [parent] if parent else None,
        "created": _iso(start),
        IS_MERGE: False,
        "span_attributes": {"name": name, **declared},
        "metrics": {"start": start / 1e9, "end": end / 1e9, **found_metrics},  # _seconds
        **found,
    }
    if status == "ERROR":
        error = _error_text(status_message, events)
        if not error and isinstance(attrs.get("error.type"), str):
            error = attrs.get("error.type")
        row["error"] = error or "ERROR"
    if scores:
        row["scores"] = scores
    if tags:
        row["tags"] = tags
    if project:
        row.update(project)

    moved = attrs.moved
    # A plain span's attributes are its own (OtelSpan.plain): they become the kept ones,
    # the few moved keys taken out; others are copied (in C).
    kept = values if plain else dict(values)
    for key in moved:
        kept.pop(key, None)
    if kept:
        metadata["attributes"] = kept
    if resource:
        metadata["resource"] = resource
    if events:
        metadata["events"] = [event.as_metadata() for event in events]
    if links:
        metadata["links"] = links
    otel: dict[str, Any] = {
        "kind": kind, "status": {"code": status, "message": status_message} if status_message
        else {"code": status}}
    if scope_name or scope_version or scope_attributes:
        scope: dict[str, Any] = {}
        if scope_name:
            scope["name"] = scope_name
        if scope_version:
            scope["version"] = scope_version
        if scope_attributes:
            scope["attributes"] = dict(scope_attributes)  # a plain span's are shared
        otel["scope"] = scope
    if trace_state:
        otel["trace_state"] = trace_state
    if flags is not None:
        otel["flags"] = flags
    if dropped_a or dropped_e or dropped_l:
        otel["dropped"] = {name: count for name, count in (
            ("attributes", dropped_a), ("events", dropped_e), ("links", dropped_l)) if count}
    if attrs.shape.conventions:
        otel["conventions"] = attrs.shape.conventions.copy()
    if moved:
        otel["moved"] = dict(sorted(moved.items()))
    metadata["otel"] = otel
    row["metadata"] = metadata
    return row


def _link(link: OtelLink, index: int) -> dict[str, Any]:
    where = f"links[{index}]"
    out: dict[str, Any] = {}
    for name in ("trace_id", "span_id"):
        value = getattr(link, name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            out[name] = bytes(value).hex()
        elif isinstance(value, str):
            out[name] = value.lower() if _HEX.fullmatch(value) else value
        else:
            raise OtelSpanError(f"{where}.{name}: must be bytes or a hex string")
    if _text(link.trace_state, f"{where}.trace_state"):
        out["trace_state"] = link.trace_state
    attributes = _clean_attributes(link.attributes, f"{where}.attributes")
    if attributes:
        out["attributes"] = attributes
    if _count(link.dropped_attributes_count, f"{where}.dropped_attributes_count"):
        out["dropped_attributes_count"] = link.dropped_attributes_count
    return out
