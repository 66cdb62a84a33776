"""Turn whatever a user logs into JSON-safe values, at the moment it is logged.

:func:`snapshot` runs on the caller's thread, so the common case (dicts, lists and scalars)
takes the fewest Python operations possible; everything else (pydantic models, dataclasses,
datetimes, sets, bytes, numpy values, arbitrary objects, circular references) goes through
:func:`_convert`, which never raises. The copy is what makes logging a snapshot: mutating a
dict after ``span.log(...)`` does not change the row.

Floats are left as they are (NaN and infinities included): checking every float would tax
the hot path for a rare case, so :func:`encode_json` catches them when a batch is encoded
and only then sanitizes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

_ATOMS = frozenset({str, int, float, bool, type(None)})
_MAX_DEPTH = 64
_MAX_REPR = 10_000
_SEQUENCES = (list, tuple)


def snapshot(value: Any) -> Any:
    """A JSON-safe deep copy of ``value``; never raises, never keeps a reference to it."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:  # the commonest case, a flat dict of scalars: one C-level copy
        atoms = _ATOMS
        for item in value.values():
            if type(item) not in atoms:
                break
        else:
            return value.copy()
    try:
        return _copy(value, 0, None)
    except Exception:  # a broken __repr__ or model_dump: log something rather than nothing
        return _describe(value)


def snapshot_values(fresh: dict[str, Any]) -> dict[str, Any]:
    """:func:`snapshot` for a dict the caller just built: its values are copied in place."""
    atoms = _ATOMS
    for key, value in fresh.items():
        if type(value) not in atoms:
            fresh[key] = snapshot(value)
    return fresh


def _copy(value: Any, depth: int, path: set[int] | None) -> Any:
    """Copy ``value``; ``path`` holds the ids of the containers being copied above it.

    The top-level container is not tracked and the set is only made when a nested container
    shows up, so the common case (a flat dict or list) allocates nothing but its copy; a
    cycle through the top level is still caught one level down.
    """
    kind = type(value)
    if kind in _ATOMS:
        return value
    if depth >= _MAX_DEPTH:
        return "<max depth>"
    if kind is dict or kind is list or kind is tuple:
        ident = id(value)
        if depth:
            if path is None:
                path = set()
            elif ident in path:
                return "<circular reference>"
            path.add(ident)
        depth += 1
        atoms = _ATOMS
        try:
            if kind is dict:
                # Keys stay as they are: the encoder spells int/float/bool/None keys as
                # strings itself, and anything else makes it fall back to _sanitize.
                # Copy in C, then replace what is not a scalar (faster than a dict display).
                out = value.copy()
                for key, item in out.items():
                    if type(item) not in atoms:
                        if path is None:
                            path = set()
                        out[key] = _copy(item, depth, path)
                return out
            if path is None:
                path = set()
            return [item if type(item) in atoms else _copy(item, depth, path)
                    for item in value]
        finally:
            if path is not None:
                path.discard(ident)
    if path is None:
        path = set()
    return _convert(value, depth, path)


def _key(key: Any) -> str:
    if key is None or isinstance(key, (bool, int, float)):
        return _encode(key)  # the spelling json.dumps uses for non-str keys
    converted = snapshot(key)
    return converted if isinstance(converted, str) else _describe(key)


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<unserializable {type(value).__name__}>"
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "...<truncated>"


def _convert(value: Any, depth: int, path: set[int]) -> Any:
    """Everything that is not a plain dict, list, tuple or scalar."""
    kind = type(value)
    module = kind.__module__
    if module == "enum" or hasattr(kind, "_value2member_map_"):
        return _copy(value.value, depth, path)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping) or (isinstance(value, _SEQUENCES)):
        ident = id(value)
        if ident in path:
            return "<circular reference>"
        path.add(ident)
        try:
            if isinstance(value, Mapping):
                return {(k if type(k) is str else _key(k)): _copy(v, depth + 1, path)
                        for k, v in value.items()}
            return [_copy(v, depth + 1, path) for v in value]
        finally:
            path.discard(ident)
    if isinstance(value, (set, frozenset)):
        items = [_copy(v, depth + 1, path) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if module == "datetime" and hasattr(value, "isoformat"):
        return str(value.isoformat())
    if module in ("uuid", "decimal", "pathlib", "ipaddress", "fractions"):
        return str(value)
    if isinstance(value, BaseException):
        return f"{kind.__name__}: {value}"
    model_dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(model_dump) and hasattr(kind, "model_fields"):
        return _copy(model_dump(mode="json"), depth + 1, path)
    if hasattr(kind, "__fields__") and callable(getattr(value, "dict", None)):  # pydantic v1
        return _copy(value.dict(), depth + 1, path)
    fields = getattr(kind, "__dataclass_fields__", None)
    if fields is not None and not isinstance(value, type):
        ident = id(value)
        if ident in path:
            return "<circular reference>"
        path.add(ident)
        try:
            return {name: _copy(getattr(value, name, None), depth + 1, path)
                    for name in fields}
        finally:
            path.discard(ident)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, array.array
    if callable(tolist) and not isinstance(value, type):
        return _copy(tolist(), depth + 1, path)
    return _describe(value)


# --- encoding (flusher side) ---------------------------------------------------------------

_encoder: Any = None


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_encoder() -> Any:
    """The compact encoder: ``json``'s C encoder made once and called directly.

    ``json.JSONEncoder.encode`` builds a new C encoder (nine arguments parsed) and runs two
    Python frames on every call; rows are encoded one at a time, so that was most of the
    cost of encoding a small row. Where ``json`` has no C encoder, ``JSONEncoder.encode``.
    """
    import json
    from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

    # ensure_ascii off: UTF-8 bodies are smaller, and a lone surrogate (which JSON parsers
    # refuse) stays a code point that _utf8 can find and replace.
    if c_make_encoder is None:
        return json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False,
                                ensure_ascii=False).encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
    # skipkeys, allow_nan), as JSONEncoder.iterencode passes them.
    chunks = c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False,
                            False)
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


def _encode(value: Any) -> str:
    """Compact JSON text (the encoder is made on first use: ``json`` is not needed to log)."""
    global _encoder
    if _encoder is None:
        _encoder = _make_encoder()
    return _encoder(value)  # type: ignore[no-any-return]


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8, any lone surrogate (half of a broken pair, as from a bad decode)
    replaced with U+FFFD: the collector, like every JSON parser, refuses them."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def encode_json(value: Any) -> bytes:
    """Compact JSON bytes of ``value``; NaN and infinities become strings.

    Snapshots are JSON-safe except for non-finite floats, so the fast C encoder runs first
    and a sanitizing copy is made only when it refuses.
    """
    try:
        return _utf8(_encode(value))
    except (ValueError, TypeError, RecursionError):
        return _utf8(_encode(_sanitize(value, 0)))


# The C encoder holds the GIL for the whole of one call: about 2 ms per MB of string here,
# and several times that under Pyodide, where the event loop waits for all of it. In a
# process with an event loop (see src/spanlog/_delivery.py, _encode_rows), a row whose
# strings hold more than LONG_TEXT characters is encoded a piece at a time (a dict item, a list
# item, _SLICE_STEP characters of a string), giving way between pieces when :func:`pace_due`:
# to an event loop on another thread (:func:`pace`) or, without threads, to the loop itself
# (the delivery plan yields), so that the loop waits a piece, not the row.
LONG_TEXT = 256 * 1024
_SLICE_STEP = 64 * 1024

# The fields whose values the user chooses; the others (ids, names, context, metrics, tags)
# are spanlog's own and short.
_FREE_FIELDS = ("input", "output", "expected", "error", "metadata")


def text_size(row: dict[str, Any]) -> int:
    """The characters in the strings of ``row``'s free fields, counted until they pass
    :data:`LONG_TEXT` (then the count so far: enough to know the row is long)."""
    size = 0
    for field in _FREE_FIELDS:
        value = row.get(field)
        if value is not None:
            size = _text_size(value, size, 0)
            if size > LONG_TEXT:
                break
    return size


def _text_size(value: Any, size: int, depth: int) -> int:
    # Runs for every row on the flush thread of a process with an event loop: descend only
    # into containers, no generators.
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list:
        items = value
    else:
        return size + len(value) if kind is str else size
    for item in items:
        kind = type(item)
        if kind is str:
            size += len(item)
        elif (kind is dict or kind is list) and depth < _MAX_DEPTH:
            size = _text_size(item, size, depth + 1)
        if size > LONG_TEXT:
            break
    return size


def encode_slices(row: dict[str, Any], parts: list[bytes]) -> Iterator[None]:
    """Encode ``row`` into ``parts`` (joined, its JSON) a piece at a time; yields between
    pieces whenever :func:`pace_due`, for the caller to give way."""
    return _encode_sliced(_sanitize(row, 0), parts)


def _encode_sliced(value: Any, parts: list[bytes]) -> Iterator[None]:
    kind = type(value)
    if pace_due():
        yield
    if kind is str and len(value) > _SLICE_STEP:
        parts.append(b'"')
        for at in range(0, len(value), _SLICE_STEP):
            if at and pace_due():
                yield
            parts.append(_utf8(_encode(value[at:at + _SLICE_STEP])[1:-1]))
        parts.append(b'"')
    elif kind is dict:
        parts.append(b"{")
        for index, (key, item) in enumerate(value.items()):
            parts.append(b"," + _utf8(_encode(key)) + b":" if index
                         else _utf8(_encode(key)) + b":")
            yield from _encode_sliced(item, parts)
        parts.append(b"}")
    elif kind is list:
        parts.append(b"[")
        for index, item in enumerate(value):
            if index:
                parts.append(b",")
            yield from _encode_sliced(item, parts)
        parts.append(b"]")
    else:
        parts.append(_utf8(_encode(value)))


_paced_at = 0.0
_PACE_EVERY = 0.0005


# Whether a trace has ended on an event loop in this process (see note_event_loop): pace()
# gives way only then.
loop_seen = False


def note_event_loop() -> None:
    """Note that this process runs an event loop (a trace ended on one)."""
    global loop_seen
    loop_seen = True


def pace() -> None:
    """Give up the GIL for a moment when this thread has run ~0.5 ms since it last did.

    Called between units of delivery work (a row merged, a row or slice encoded) on the
    flush thread: a thread asking for the GIL would otherwise wait the interpreter's switch
    interval (5 ms), and the application's event loop is such a thread. Only in a process
    where a trace has ended on an event loop (:data:`loop_seen`): the thread that gives way
    waits that same interval to get the GIL back from a busy thread, so without a loop to
    keep responsive, pacing would only starve delivery of its fair share (a busy caller
    would fill the buffer faster than it drains).
    """
    if not loop_seen:
        return
    global _paced_at
    now = time.perf_counter()
    if now - _paced_at > _PACE_EVERY:
        time.sleep(0)
        _paced_at = time.perf_counter()


def pace_due() -> bool:
    """Whether delivery work ran ~0.5 ms since it last gave way (:func:`pace`,
    :func:`gave_way`)."""
    return time.perf_counter() - _paced_at > _PACE_EVERY


def gave_way() -> None:
    """Note that delivery work just gave way (an awaited flush let its event loop run)."""
    global _paced_at
    _paced_at = time.perf_counter()


def _sanitize(value: Any, depth: int) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if depth >= _MAX_DEPTH:
        return "<max depth>"
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _key(k)): _sanitize(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v, depth + 1) for v in value]
    if type(value) in _ATOMS:
        return value
    return _sanitize(snapshot(value), depth + 1)


_second: tuple[int, str] = (-1, "")


def iso_utc(seconds: float) -> str:
    """``seconds`` since the epoch as ISO-8601 UTC with microseconds (a row's ``created``)."""
    global _second
    whole = int(seconds)
    cached = _second  # one tuple, swapped whole: safe to share between threads
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((seconds - whole) * 1_000_000):06d}+00:00"
