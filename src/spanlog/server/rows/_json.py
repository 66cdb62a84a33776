"""The collector's JSON: orjson's speed with the standard library's values and text.

Ingest decodes every body and encodes every row it stores; with ``json`` that was a fifth of
the collector's CPU per row, all of it under the GIL that the writer thread needs too.
orjson is several times faster; this module keeps what the rest of the collector relies on:

- :func:`loads` gives the values ``json.loads`` gives. orjson reads an integer beyond 64 bits
  as a float (losing digits), so input holding a run of 19 or more digits where a number may
  start (after ``:``, ``[``, ``,`` or at the start, whitespace aside) is decoded again by
  ``json``; 19 digits in a string (OTLP/JSON's nanosecond times) are left to orjson. What
  orjson refuses is refused (RFC 8259 strictly: no ``NaN``, no number that overflows a
  double, no lone surrogate, nesting up to 1024 levels), with line and column.
- :func:`dumps` writes the bytes ``json.dumps(value, ensure_ascii=False,
  separators=(",", ":"))`` writes: the stored text is what filters match ``LIKE`` against
  and what a retry's digest is computed from. The one difference in orjson's output is a
  float between 1e-10 and 1e-4 (``0.00001`` and ``2.5e-7`` where Python writes ``1e-05``
  and ``2.5e-07``); output that may hold one is written again by ``json``, as is anything orjson
  refuses (integers beyond 64 bits, deep nesting, non-string keys).

Both checks are byte searches in C (``bytes.translate`` folds digits and JSON punctuation
into classes, then ``find``), so they can fire on a string that merely looks like a number:
the fallback is then slower, never different. (``find``, not ``in``: ``bytes in bytes`` first
tries its operand as an integer and formats the TypeError it catches, about 2,000
instructions per test with Python 3.11, twice per row encoded.) Values must be made of JSON
types with finite floats, as everything :func:`loads` returns is: orjson would write a NaN
as ``null``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["JSONDecodeError", "dumps", "dumps_bytes", "dumps_internal", "loads"]

JSONDecodeError = json.JSONDecodeError  # orjson's own error is a subclass

_stdlib_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                 allow_nan=False).encode
# Make orjson refuse (so ``json`` decides) what ``json`` treats differently.
_OPTIONS = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS)

# For loads: digits become "0" and whitespace goes, so a number of 19 digits or more is one
# of a few byte strings to look for: the run after what a number may follow. Deleting
# whitespace inside strings may join a run to such a byte: then the fallback is slower,
# never different.
_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_WHITESPACE = b" \t\n\r"
_LONG_DIGITS = b"0" * 19
_LONG_NUMBERS = tuple(before + sign + _LONG_DIGITS for before in (b":", b"[", b",")
                      for sign in (b"", b"-"))
# For dumps: 1-9 become "1"; "-" and the bytes that delimit a number ( : , [ ] } ) become NUL,
# which JSON output never holds otherwise (control characters are escaped).
_SHAPES = bytes.maketrans(b"123456789-:,[]}", b"111111111\0\0\0\0\0\0")
# Where orjson writes a float below 1e-4 differently: [-]0.0000ddd (Python: d.ddde-05) or with
# a one-digit exponent, d.ddde-7 (Python: d.ddde-07; the shortest digits never end in 0).
# Longer exponents agree.
_SMALL_FLOATS = (b"\x000.0000", b"1e\x001\x00")


def loads(raw: bytes | str) -> Any:
    """``raw`` decoded (:data:`JSONDecodeError` saying where when it is not JSON)."""
    value = orjson.loads(raw)
    data = raw.encode() if isinstance(raw, str) else raw
    folded = data.translate(_DIGITS, _WHITESPACE)
    if folded.find(_LONG_DIGITS) >= 0 and (
            folded.lstrip(b"-").startswith(_LONG_DIGITS)
            or any(folded.find(number) >= 0 for number in _LONG_NUMBERS)):
        # Maybe an integer beyond 64 bits, which orjson turned into a float: ``json`` keeps
        # it exact (and accepts whatever orjson accepted).
        return json.loads(raw)
    return value


def dumps_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, byte for byte what ``json.dumps`` writes."""
    if not isinstance(value, (dict, list, tuple)):
        return _stdlib_dumps(value).encode()
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return _stdlib_dumps(value).encode()
    folded = out.translate(_SHAPES)
    for pattern in _SMALL_FLOATS:
        if folded.find(pattern) >= 0:
            return _stdlib_dumps(value).encode()
    return out


def dumps(value: Any) -> str:
    """``value`` as compact JSON text, exactly what ``json.dumps`` writes (see module doc)."""
    return dumps_bytes(value).decode()


def dumps_internal(value: Any) -> str:
    """``value`` as compact JSON for the collector's own bookkeeping, which is only ever
    decoded, never matched (``rows.links``, ``postings.xacts``): the same values,
    with no check of the float text."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: what orjson refuses, json writes
        return _stdlib_dumps(value)
