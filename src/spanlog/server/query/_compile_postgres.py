"""Compile a filter tree to a PostgreSQL boolean expression over a ``jsonb`` column.

The result matches :func:`spanlog.server.query._evaluate.evaluate` row for row, where the
row is the one PostgreSQL hands back (``jsonb`` keeps objects' keys in its own order and
turns a number written as ``1e+20`` into the integer ``100000000000000000000``; the store
returns rows in that form, so the filter and what a reader sees agree). How:

- **Equality goes through the GIN index.** ``path = literal`` and ``path INCLUDES literal``
  on a key-only path become containment, ``data @> '{"metadata": {"user_id": "1234"}}'``,
  which a ``jsonb_path_ops`` GIN index answers. Containment is exact for strings, booleans
  and numbers below 2**53 (``jsonb`` compares numbers as exact decimals and never matches a
  scalar against an array below the top level), so no re-check is needed; larger numbers,
  where ``evaluate``'s int/float rules differ from decimal equality, take the typed path.
- **Paths** are ``#>`` lookups guarded by the type of every container on the way (an
  object before a key, an array before an index), so they walk exactly as ``evaluate``
  does. JSON ``null`` counts as missing.
- **Two-valued.** Each predicate yields true or false, never NULL (``COALESCE``), so ``NOT``
  is plain negation exactly as in ``evaluate``.
- **Numbers** follow Python: an integer (``scale = 0``) inside 64 bits compares exactly with
  an integer literal and with the exact binary value of a float literal; a float
  (``scale > 0``) or an integer beyond 64 bits compares as a double with a float literal.
- **Strings** order by code point (``COLLATE "C"``: UTF-8 byte order is code point order).
- **LIKE** uses PostgreSQL's ``LIKE`` under ``COLLATE "C"`` (same ``%``, ``_`` and ``\\``
  rules, case-sensitive). **ILIKE** becomes an anchored regular expression in which each
  cased character is an alternation of its case forms (``evaluate``'s classes): PostgreSQL's
  own ILIKE folds case by the database locale instead. A non-string value is matched as the
  compact JSON text Python writes for it (``spanlog_json_text``, see the PostgreSQL engine's
  ``_schema.py``).

Every user value travels as a parameter; only the column name is spliced into the SQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from spanlog.server.query._evaluate import like_classes
from spanlog.server.query._syntax import (
    _INT64,
    And,
    Compare,
    Expr,
    Includes,
    IsNull,
    Like,
    Not,
    Or,
    Scalar,
    Segment,
)

__all__ = ["Params", "compile_postgres", "containment", "like_regex"]

# Below this every number compares the same under decimal equality and Python's rules.
_SAFE = 2**53


class Params:
    """The positional parameters of one statement: ``$n`` placeholders, deduplicated."""

    def __init__(self, values: list[Any] | None = None) -> None:
        self.values: list[Any] = list(values or [])
        self._seen: dict[tuple[str, str, Any], str] = {}

    def add(self, value: Any, cast: str) -> str:
        """The placeholder (with its cast) standing for ``value``."""
        key = (cast, type(value).__name__, value if not isinstance(value, float)
               else value.hex())
        found = self._seen.get(key)
        if found is None:
            self.values.append(value)
            found = self._seen[key] = f"${len(self.values)}::{cast}"
        return found


def containment(path: tuple[Segment, ...], value: Scalar, *, element: bool = False) -> str | None:
    """The JSON document ``data @> doc`` needs for ``path = value`` (or ``path INCLUDES value``
    with ``element``), or None when containment would not be exact for it."""
    if not all(isinstance(seg, str) for seg in path):
        return None
    if (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not -_SAFE < value < _SAFE):
        return None
    doc: Any = [value] if element else value
    for seg in reversed(path):
        doc = {seg: doc}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def like_regex(pattern: str) -> str:
    """An anchored PostgreSQL regular expression that matches as ``ILIKE pattern`` does."""
    parts = ["^"]
    for kind, chars in like_classes(pattern, case_insensitive=True):
        if kind == "any":
            parts.append(".*")
        elif kind == "one":
            parts.append(".")
        elif len(chars) == 1:
            parts.append(_regex_char(chars))
        else:
            parts.append("(?:" + "|".join(_regex_char(v) for v in chars) + ")")
    parts.append("$")
    return "".join(parts)


def _regex_char(ch: str) -> str:
    # In an ARE a backslash before a non-alphanumeric character means that character; before
    # a letter or digit it starts an escape, so those (and non-ASCII) go as they are.
    if ch.isascii() and not ch.isalnum():
        return "\\" + ch
    return ch


class _Compiler:
    def __init__(self, data: str, params: Params, fields: Mapping[str, str]) -> None:
        self.data = data
        self.params = params
        self.fields = fields

    def value(self, path: tuple[Segment, ...]) -> str:
        """SQL for the jsonb at ``path`` (NULL when absent), walked as ``evaluate`` walks."""
        # `#>` alone would read a key "0" of an object for [0], an element of an array for
        # the key "0", and even [0] of a scalar (jsonb keeps a scalar as a one-element
        # array): so every step first checks that its container has the right type.
        checks = []
        for i, seg in enumerate(path[1:], start=1):
            kind = "array" if isinstance(seg, int) else "object"
            prefix = self.params.add(tuple(str(s) for s in path[:i]), "text[]")
            checks.append(f"jsonb_typeof({self.data} #> {prefix}) = '{kind}'")
        target = f"{self.data} #> {self.params.add(tuple(str(s) for s in path), 'text[]')}"
        if not checks:
            return f"({target})"
        return f"(CASE WHEN {' AND '.join(checks)} THEN {target} END)"

    def expr(self, expr: Expr) -> str:
        if isinstance(expr, (And, Or)):
            word = " AND " if isinstance(expr, And) else " OR "
            return "(" + word.join(self.expr(item) for item in expr.items) + ")"
        if isinstance(expr, Not):
            return f"(NOT {self.expr(expr.item)})"
        column = self.fields.get(str(expr.path[0]))
        if column is not None:
            # A field the store keeps in a column of its own: wrapped in an object, it is
            # typed and looked up exactly like one inside the JSON (never through the index).
            inner = _Compiler(f"jsonb_build_object('v', {column})", self.params, {})
            return inner.expr(replace(expr, path=("v", *expr.path[1:])))
        if isinstance(expr, Compare) and expr.op == "=":
            doc = containment(expr.path, expr.value)
            if doc is not None:
                return f"({self.data} @> {self.params.add(doc, 'jsonb')})"
        if isinstance(expr, Includes):
            doc = containment(expr.path, expr.value, element=True)
            if doc is not None:
                test = f"({self.data} @> {self.params.add(doc, 'jsonb')})"
                if not expr.negated:
                    return test
                value = self.value(expr.path)
                return f"COALESCE(jsonb_typeof({value}) = 'array' AND NOT {test}, false)"
        value = self.value(expr.path)
        if isinstance(expr, IsNull):
            if expr.negated:
                return f"COALESCE({value} <> 'null'::jsonb, false)"
            return f"COALESCE({value} = 'null'::jsonb, true)"
        if isinstance(expr, Like):
            return self.like(value, expr)
        if isinstance(expr, Includes):
            test = self.equal("_e.v", expr.value)
            exists = "NOT EXISTS" if expr.negated else "EXISTS"
            return (f"COALESCE(jsonb_typeof({value}) = 'array' AND {exists} (SELECT 1 FROM "
                    f"jsonb_array_elements({value}) AS _e(v) WHERE {test}), false)")
        assert isinstance(expr, Compare)
        if expr.op == "=":
            return self.equal(value, expr.value)
        if expr.op == "!=":
            # != needs a value: NULL (missing or JSON null) makes every comparison false.
            return (f"COALESCE({value} <> 'null'::jsonb AND NOT {self.equal(value, expr.value)}"
                    f", false)")
        return self.ordered(value, expr.op, expr.value)

    def like(self, value: str, expr: Like) -> str:
        text = (f"(CASE jsonb_typeof({value}) WHEN 'string' THEN {value} #>> '{{}}' "
                f"WHEN 'null' THEN NULL ELSE spanlog_json_text({value}) END)")
        if expr.case_insensitive:
            test = f"{text} ~ {self.params.add(like_regex(expr.pattern), 'text')}"
        else:
            test = f"{text} COLLATE \"C\" LIKE {self.params.add(expr.pattern, 'text')}"
        return f"COALESCE({'NOT ' if expr.negated else ''}({test}), false)"

    def equal(self, value: str, literal: Scalar) -> str:
        """SQL true exactly when the jsonb ``value`` equals ``literal`` (never NULL)."""
        if isinstance(literal, bool):
            return f"COALESCE({value} = '{'true' if literal else 'false'}'::jsonb, false)"
        if isinstance(literal, str):
            return f"COALESCE({value} = to_jsonb({self.params.add(literal, 'text')}), false)"
        return self.number(value, "=", literal)

    def ordered(self, value: str, op: str, literal: Scalar) -> str:
        if isinstance(literal, str):
            return (f"(CASE WHEN jsonb_typeof({value}) = 'string' THEN ({value} #>> '{{}}') "
                    f"COLLATE \"C\" {op} {self.params.add(literal, 'text')} ELSE false END)")
        return self.number(value, op, literal)

    def number(self, value: str, op: str, literal: Scalar) -> str:
        assert isinstance(literal, (int, float)) and not isinstance(literal, bool)
        n = f"({value})::numeric"
        low = f"{-_INT64}::numeric"
        if isinstance(literal, int):
            # Python turns an integer beyond 64 bits into a double; only at the low end can
            # that double meet a 64-bit literal (it may round to exactly -2**63).
            left = (f"(CASE WHEN {n} < {low} AND ({n})::float8 = '{-_INT64}'::float8 "
                    f"THEN {low} ELSE {n} END)")
            test = f"{left} {op} {self.params.add(Decimal(literal), 'numeric')}"
        else:
            as_double = f"({n})::float8 {op} {self.params.add(literal, 'float8')}"
            # Decimal(float) is the double's exact binary value: an exact integer compare.
            exact = f"{n} {op} {self.params.add(Decimal(literal), 'numeric')}"
            test = (f"(CASE WHEN scale({n}) > 0 OR {n} >= {_INT64}::numeric OR {n} < {low} "
                    f"THEN {as_double} ELSE {exact} END)")
        # CASE, not AND: only CASE promises the cast never sees a non-number.
        return f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN {test} ELSE false END)"


def compile_postgres(expr: Expr, data_column: str = "data", params: Params | None = None,
                     fields: Mapping[str, str] | None = None) -> tuple[str, list[Any]]:
    """A PostgreSQL boolean expression (and its parameter values) true exactly for the rows
    whose ``jsonb`` in ``data_column`` satisfies ``expr``.

    ``fields`` maps top-level fields the store keeps outside the JSON to a SQL expression of
    their value, e.g. ``{"_xact_id": "r.xact::text"}``. ``data_column`` and ``fields`` are
    trusted SQL from the store (a column, possibly qualified), never user input. Pass
    ``params`` to continue numbering after a statement's own ``$n`` parameters; the returned
    list is then all of them.
    """
    params = params if params is not None else Params()
    sql = _Compiler(data_column, params, fields or {}).expr(expr)
    return sql, params.values
