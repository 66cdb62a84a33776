"""JSON numbers through ``jsonb``, so that both engines give back the text that was stored.

SQLite keeps a row as the text ``json.dumps`` writes; ``jsonb`` keeps each number as a
``numeric``, its value and its digits after the point but not its text, and writes it back
in positional form. Two kinds of float then come back as other text:

- from 1e16 up Python writes an exponent (``1e+16``, ``1e+308``), which ``numeric`` reads as
  an integer: a client that tells integers from floats would get an integer of 17 to 309
  digits. So on the way in (:func:`to_jsonb`) such a float is written positionally with four
  zero decimals, ``10000000000000000.0000``: ``numeric`` keeps them, and Python never writes
  a float that way (its positional floats have no trailing zeros but ``.0``), so it stays
  recognisable.
- below 1e-4 Python writes ``1e-07`` where ``numeric`` writes ``0.0000001``.

Both forms hold ``0.0000``, which rows seldom hold otherwise: one substring test per row
tells whether there is anything to rewrite on the way out (:func:`from_jsonb`). There each
number of those two forms is written as Python writes it, ``repr(float(text))``: the stored
digits are those of a Python float's shortest repr, so this is exactly the text SQLite holds.
``spanlog_py_number`` (``_schema``) does the same in SQL, for filters that match a number's
text. Values are unchanged throughout, so containment and comparisons need nothing.
Negative zero is the one float ``numeric`` cannot hold: it comes back as ``0.0``; and a float
from 1e16 up stored before this rewrite (schema version 4 and older) stays an integer.
"""

from __future__ import annotations

import re
from decimal import Decimal

# A JSON string (skipped whole, so nothing inside one is touched) or a number to rewrite.
_TO_JSONB = re.compile(r'"(?:[^"\\]|\\.)*"|(-?[0-9.]+e\+[0-9]+)')
_FROM_JSONB = re.compile(
    r'"(?:[^"\\]|\\.)*"|(?<![0-9.])(-?(?:0\.0000[0-9]*|[0-9]{17,}\.0000)(?![0-9]))')
# What a text must hold for there to be anything to rewrite (most rows hold neither).
_EXPONENT = "e+"
_REWRITTEN = "0.0000"


def _positional(match: re.Match[str]) -> str:
    number = match[1]
    return match[0] if number is None else f"{Decimal(number):f}.0000"


def _python(match: re.Match[str]) -> str:
    number = match[1]
    return match[0] if number is None else repr(float(number))


def to_jsonb(text: str) -> str:
    """``text`` (JSON as ``json.dumps`` writes it) with each float from 1e16 up written
    positionally (``1e+16`` becomes ``10000000000000000.0000``), for a ``jsonb`` column."""
    if _EXPONENT not in text:
        return text
    return _TO_JSONB.sub(_positional, text)


def from_jsonb(text: str) -> str:
    """``text`` (a ``jsonb`` value's text) with each number that Python writes differently
    written as Python writes it (``0.0000001`` becomes ``1e-07``,
    ``10000000000000000.0000`` becomes ``1e+16``)."""
    if _REWRITTEN not in text:
        return text
    return _FROM_JSONB.sub(_python, text)
