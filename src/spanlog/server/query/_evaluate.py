"""What a filter means: the reference evaluator, LIKE matching and index terms.

:func:`evaluate` defines the semantics of a parsed filter (see ``_syntax.py`` for the
syntax); every store engine compiles a tree to SQL that selects exactly the rows it accepts:

- A predicate is true or false, never unknown: a missing path and JSON ``null`` are NULL, and
  every predicate on NULL is false except ``IS NULL``. ``NOT p`` is simply the negation, so
  ``NOT metadata.env = 'prod'`` holds for rows without ``env`` while ``metadata.env != 'prod'``
  (and ``NOT LIKE``, ``NOT INCLUDES``) need the value to be present.
- No coercion: ``=`` and the orderings hold only between a string and a string (code point
  order) or a number and a number (``1 = 1.0``); ``true`` equals only JSON ``true``. Integers
  beyond 64 bits compare as doubles, as in SQLite.
- ``LIKE`` matches the whole value, ``%`` any run, ``_`` one character, ``\\`` escapes the next
  character; case-sensitive. ``ILIKE`` lets each cased pattern character also match its
  single-character upper, lower and title case forms (Unicode). A non-string value is matched
  as its compact JSON text (``{"a":1}``, ``true``, ``1e+20``), as Python's ``json.dumps`` wrote it.
- ``INCLUDES``: the value is an array with an element ``=`` to the literal.
- Strings containing U+0000 are outside the contract (SQLite truncates them, PostgreSQL
  ``jsonb`` rejects them).

:func:`like_classes` is the one reading of a LIKE pattern that the evaluator and both
compilers build on; :func:`index_terms` and friends tell a store which index lookups a filter
allows.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from spanlog.server.query._syntax import (
    _INT64,
    And,
    Compare,
    Includes,
    IsNull,
    Like,
    Not,
    Or,
    Scalar,
    like_tokens,
)

if TYPE_CHECKING:
    from spanlog.server.query._syntax import Expr, Segment

__all__ = ["IndexTerm", "case_variants", "covered_by_terms", "evaluate", "includes_terms",
           "index_terms", "like_classes"]


# ---- LIKE patterns, shared with the compilers -------------------------------------------
def case_variants(ch: str) -> str:
    """The characters ILIKE lets ``ch`` match: itself and its one-character case forms."""
    forms = dict.fromkeys([ch, ch.lower(), ch.upper(), ch.title()])
    return "".join(f for f in forms if len(f) == 1)


def like_classes(pattern: str, case_insensitive: bool) -> list[tuple[str, str]]:
    """The pattern as ``("any", "%")``, ``("one", "_")`` and ``("char", chars)`` tokens, where
    ``chars`` are the characters that position matches: the pattern's own character, first,
    followed under ILIKE by its other :func:`case_variants`."""
    return [(kind, case_variants(ch) if case_insensitive and kind == "char" else ch)
            for kind, ch in like_tokens(pattern)]


@functools.lru_cache(maxsize=512)
def _like_program(pattern: str, case_insensitive: bool) -> tuple[tuple[re.Pattern[str], int], ...]:
    """The pattern's runs between ``%`` signs, each a fixed-width regex and its width."""
    runs: list[list[str]] = [[]]
    for kind, chars in like_classes(pattern, case_insensitive):
        if kind == "any":
            runs.append([])
        elif kind == "one":
            runs[-1].append(".")
        else:
            runs[-1].append("[" + "".join(map(re.escape, chars)) + "]" if len(chars) > 1
                            else re.escape(chars))
    return tuple((re.compile("".join(run), re.DOTALL), len(run)) for run in runs)


def _like(program: tuple[tuple[re.Pattern[str], int], ...], text: str) -> bool:
    # Each run has a fixed width, so taking every middle run at its leftmost place after the
    # previous one is enough; no regex with several .* groups, which can go exponential.
    if len(program) == 1:
        return program[0][0].fullmatch(text) is not None
    (first, _), *middle, (last, width) = program
    found = first.match(text)
    if found is None:
        return False
    pos = found.end()
    for run, _ in middle:
        found = run.search(text, pos)
        if found is None:
            return False
        pos = found.end()
    end = len(text) - width
    return end >= pos and last.fullmatch(text, end) is not None


# ---- reference evaluator ----------------------------------------------------------------
def _lookup(row: Any, path: tuple[Segment, ...]) -> Any:
    node = row
    for seg in path:
        if isinstance(seg, int) and isinstance(node, list) and seg < len(node):
            node = node[seg]
        elif isinstance(seg, str) and isinstance(node, dict) and seg in node:
            node = node[seg]
        else:
            return None
    return node


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if isinstance(value, int) and not -_INT64 <= value < _INT64 else value


def _equals(value: Any, literal: Scalar) -> bool:
    if isinstance(literal, bool):
        return value is literal
    if isinstance(literal, str):
        return isinstance(value, str) and value == literal
    number = _number(value)
    return number is not None and number == literal


_ORDER: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _ordered(value: Any, op: str, literal: Scalar) -> bool:
    left = value if isinstance(value, str) else _number(value)
    if left is None or isinstance(left, str) != isinstance(literal, str):
        return False
    return _ORDER[op](left, literal)


def evaluate(expr: Expr, row: Mapping[str, Any]) -> bool:
    """Whether ``row`` (a stored row, as JSON-decoded Python) satisfies ``expr``."""
    if isinstance(expr, And):
        return all(evaluate(item, row) for item in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(item, row) for item in expr.items)
    if isinstance(expr, Not):
        return not evaluate(expr.item, row)
    value = _lookup(row, expr.path)
    if isinstance(expr, IsNull):
        return (value is None) != expr.negated
    if value is None:
        return False
    if isinstance(expr, Compare):
        if expr.op in ("=", "!="):
            return _equals(value, expr.value) == (expr.op == "=")
        return _ordered(value, expr.op, expr.value)
    if isinstance(expr, Like):
        text = value if isinstance(value, str) else json.dumps(
            value, ensure_ascii=False, separators=(",", ":"))
        found = _like(_like_program(expr.pattern, expr.case_insensitive), text)
        return found != expr.negated
    if not isinstance(value, list):
        return False
    return any(_equals(item, expr.value) for item in value) != expr.negated


# ---- index support ----------------------------------------------------------------------
IndexTerm = tuple[tuple[str, ...], Scalar]


def _conjuncts(expr: Expr) -> tuple[Expr, ...]:
    return expr.items if isinstance(expr, And) else (expr,)


def _term(item: Expr, cls: type, roots: Collection[str] | None) -> IndexTerm | None:
    if isinstance(item, Compare) and cls is Compare and item.op == "=":
        pass
    elif isinstance(item, Includes) and cls is Includes and not item.negated:
        pass
    else:
        return None
    if roots is not None and item.path[0] not in roots:
        return None
    keys = tuple(seg for seg in item.path if isinstance(seg, str))
    return (keys, item.value) if len(keys) == len(item.path) else None


def index_terms(expr: Expr, roots: Collection[str] | None = None) -> list[IndexTerm]:
    """The ``path = literal`` conditions a row must meet, from the top-level AND chain.

    Only key paths (no ``[n]``) under ``roots`` (all fields when None). Each row that
    satisfies ``expr`` has, at each term's path, a value equal to the term's value under
    :func:`evaluate`'s rules: types kept apart (``True`` is not ``1``; mind Python's
    ``True == 1`` when keying a dict), ``1 == 1.0``. The store intersects its index lookups and
    still checks the whole expression unless :func:`covered_by_terms` says it is exact.
    """
    return [t for t in (_term(i, Compare, roots) for i in _conjuncts(expr)) if t is not None]


def includes_terms(expr: Expr, roots: Collection[str] | None = None) -> list[IndexTerm]:
    """Like :func:`index_terms` for ``path INCLUDES literal`` conjuncts (array elements),
    for a store that indexes each array element under the array's own path (``tags``)."""
    return [t for t in (_term(i, Includes, roots) for i in _conjuncts(expr)) if t is not None]


def covered_by_terms(expr: Expr, roots: Collection[str] | None = None,
                     includes: bool = False) -> bool:
    """Whether ``expr`` is exactly the AND of its :func:`index_terms` (and, with
    ``includes=True``, its :func:`includes_terms`), so an exact index needs no residual check.

    "Exact" is the store's promise: its lookup for ``(path, value)`` returns precisely the
    rows whose value at path equals ``value`` (no array elements mixed in, no value too long
    to have been indexed).
    """
    kinds: tuple[type, ...] = (Compare, Includes) if includes else (Compare,)
    return all(any(_term(i, k, roots) is not None for k in kinds) for i in _conjuncts(expr))
