"""Compile a filter tree to a SQLite boolean expression over a column of row JSON text.

The result matches :func:`spanlog.server.query._evaluate.evaluate` row for row. How:

- **Types.** ``json_extract`` turns JSON ``true`` into ``1`` and a string ``'{"a":1}'`` into
  the same text as an object, so every comparison is guarded by ``json_type``: a string
  literal only meets ``text``, a number only ``integer``/``real``, ``true`` only ``true``.
- **Two-valued.** Each predicate yields 0 or 1, never NULL (guards use ``IS`` / ``IFNULL``),
  so ``NOT`` is plain negation exactly as in ``evaluate``.
- **LIKE / ILIKE** become ``GLOB`` patterns built here from the LIKE pattern: GLOB is
  case-sensitive in every connection (unlike SQLite's ``LIKE``, steered by the connection-wide
  ``PRAGMA case_sensitive_like``, and ASCII-only when insensitive). ``%``→``*``, ``_``→``?``,
  literal ``*?[`` → ``[*]`` ``[?]`` ``[[]``; for ILIKE each cased character becomes a class of
  its case forms (``[rR]``), the same classes ``evaluate`` uses. Non-string values are
  matched as their JSON text via ``->``, which keeps the stored number tokens.
- **Paths** are bound as ``?`` parameters, never spliced into the SQL. Keys made of printable
  ASCII (no ``"`` or ``\\``) go straight into the JSON path (``$."user id"``). SQLite matches
  path keys against the key's raw, still-escaped text in the document, so any other key (say
  ``"café"``, stored as ``caf\\u00e9`` by ``ensure_ascii`` serialisers) is first looked up by
  its decoded name with ``json_each`` and the lookup continues from the ``fullkey`` SQLite
  reports (all such keys of a path in one flat join, computed once per row). A key
  containing ``"`` cannot be written in a SQLite JSON path at all: a :class:`FilterError`.

Contract with the store: the column holds JSON text written by Python's ``json.dumps``, best
with :func:`row_json` (compact, UTF-8, no NaN), since ``LIKE`` on a non-string value compares
the stored tokens with what ``json.dumps(..., ensure_ascii=False)`` writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from spanlog.server.query._evaluate import (
    covered_by_terms,
    includes_terms,
    index_terms,
    like_classes,
)
from spanlog.server.query._syntax import (
    And,
    Compare,
    Expr,
    FilterError,
    Includes,
    IsNull,
    Like,
    Not,
    Or,
    Scalar,
    Segment,
)

__all__ = ["compile_sqlite", "covered_by_terms", "includes_terms", "index_terms", "row_json"]

_Sql = tuple[str, list[object]]


def row_json(row: Mapping[str, Any]) -> str:
    """The JSON text to store for ``row`` so that :func:`compile_sqlite` matches exactly."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _plain(key: str) -> bool:
    # Such keys are written raw by every JSON serialiser, so SQLite's raw comparison works.
    return all(" " <= ch <= "~" and ch not in '"\\' for ch in key) and key != ""


class _Compiler:
    def __init__(self, data: str, fields: Mapping[str, str]) -> None:
        self.data = data
        self.fields = fields
        self.aliases = 0

    def alias(self) -> str:
        self.aliases += 1
        return f"_sl{self.aliases}"

    def path(self, doc: str, path: tuple[Segment, ...], position: int) -> _Sql:
        """SQL for the JSON path string of ``path``: a bound ``$."a"[0]``, or, when some keys
        need a ``json_each`` lookup, one flat subquery joining a ``json_each`` per such key
        (NULL when one is absent). Flat, not nested, to stay clear of SQLite's parser depth."""
        joins: list[str] = []
        join_params: list[object] = []
        conditions: list[str] = []
        keys: list[object] = []
        last, pending = "", "$"  # the previous lookup's fullkey column; plain steps since
        for seg in path:
            if isinstance(seg, int):
                pending += f"[{seg}]"
            elif _plain(seg):
                pending += f'."{seg}"'
            elif '"' in seg:
                raise FilterError(f"the key {seg!r} in the path at position {position} contains "
                                  f"a double quote, which the SQLite store cannot look up",
                                  position)
            else:
                parent, params = _concat(last, pending)
                j = self.alias()
                joins.append(f"json_each({doc}, {parent}) AS {j}")
                join_params += params
                conditions.append(f"{j}.key = ?")
                keys.append(seg)
                last, pending = f"{j}.fullkey", ""
        if not joins:
            return "?", [pending]
        select, params = _concat(last, pending)
        return (f"(SELECT {select} FROM {', '.join(joins)} WHERE {' AND '.join(conditions)})",
                [*params, *join_params, *keys])

    def expr(self, expr: Expr) -> _Sql:
        if isinstance(expr, (And, Or)):
            parts = [self.expr(item) for item in expr.items]
            word = " AND " if isinstance(expr, And) else " OR "
            return "(" + word.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]
        if isinstance(expr, Not):
            sql, params = self.expr(expr.item)
            return f"(NOT {sql})", params
        doc, path = self.data, expr.path
        column = self.fields.get(str(path[0]))
        if column is not None:
            # A field the store keeps in a column of its own: wrapped, it is typed and looked
            # up exactly like one inside the JSON.
            doc, path = f"json_object('v', {column})", ("v", *path[1:])
        path_sql, path_params = self.path(doc, path, expr.position)
        if path_sql == "?":
            return self.predicate(expr, doc, "?", path_params)
        # A looked-up path is computed once per row and shared by the predicate's uses.
        p = self.alias()
        sql, params = self.predicate(expr, doc, f"{p}.path", [])
        return f"(SELECT {sql} FROM (SELECT {path_sql} AS path) AS {p})", [*params, *path_params]

    def predicate(self, expr: Compare | Like | Includes | IsNull, d: str, path_sql: str,
                  pp: list[object]) -> _Sql:
        jtype, jtype_p = f"json_type({d}, {path_sql})", list(pp)
        value, value_p = f"json_extract({d}, {path_sql})", list(pp)
        if isinstance(expr, IsNull):
            return f"({value} IS {'NOT ' if expr.negated else ''}NULL)", value_p
        if isinstance(expr, Like):
            glob = _glob(expr.pattern, expr.case_insensitive)
            text = (f"CASE {jtype} WHEN 'text' THEN {value} WHEN 'null' THEN NULL "
                    f"ELSE {d} -> {path_sql} END")
            op = "NOT GLOB" if expr.negated else "GLOB"
            return f"IFNULL(({text}) {op} ?, 0)", [*jtype_p, *value_p, *pp, glob]
        if isinstance(expr, Includes):
            e = self.alias()
            test, test_p = _typed_equal((f"{e}.type", []), (f"{e}.atom", []), expr.value)
            exists = "NOT EXISTS" if expr.negated else "EXISTS"
            return (f"({jtype} IS 'array' AND {exists} (SELECT 1 FROM json_each({d}, {path_sql}) "
                    f"AS {e} WHERE {test}))", [*jtype_p, *pp, *test_p])
        assert isinstance(expr, Compare)
        if expr.op in ("=", "!="):
            test, test_p = _typed_equal((jtype, jtype_p), (value, value_p), expr.value)
            if expr.op == "=":
                return test, test_p
            # != needs a value: NULL (missing or JSON null) makes every comparison false.
            return (f"(IFNULL({jtype}, 'null') != 'null' AND NOT {test})", [*jtype_p, *test_p])
        guard = _type_guard(jtype, expr.value)
        return f"({guard} AND {value} {expr.op} ?)", [*jtype_p, *value_p, expr.value]


def _concat(column: str, suffix: str) -> _Sql:
    if not column:
        return "?", [suffix]
    return (f"{column} || ?", [suffix]) if suffix else (column, [])


def _type_guard(jtype: str, literal: Scalar) -> str:
    if isinstance(literal, bool):
        return f"{jtype} IS '{'true' if literal else 'false'}'"
    if isinstance(literal, str):
        return f"{jtype} IS 'text'"
    return f"IFNULL({jtype}, '') IN ('integer', 'real')"


def _typed_equal(jtype: _Sql, value: _Sql, literal: Scalar) -> _Sql:
    """Whether the JSON node of type ``jtype`` and SQL value ``value`` equals ``literal``."""
    guard = _type_guard(jtype[0], literal)
    if isinstance(literal, bool):
        return f"({guard})", list(jtype[1])
    return f"({guard} AND {value[0]} = ?)", [*jtype[1], *value[1], literal]


def _glob(pattern: str, case_insensitive: bool) -> str:
    out = []
    for kind, chars in like_classes(pattern, case_insensitive):
        if kind != "char":
            out.append("*" if kind == "any" else "?")
        elif len(chars) > 1 or chars in "*?[":
            out.append(f"[{chars}]")  # a class: case forms, or a GLOB metacharacter as itself
        else:
            out.append(chars)
    return "".join(out)


def compile_sqlite(expr: Expr, data_column: str = "data",
                   fields: Mapping[str, str] | None = None) -> tuple[str, list[object]]:
    """A SQLite boolean expression (and its ``?`` parameters) true exactly for the rows whose
    JSON text in ``data_column`` satisfies ``expr``.

    ``fields`` maps top-level fields the store keeps outside the JSON to a SQL expression of
    their value, e.g. ``{"_xact_id": "CAST(r.xact AS TEXT)"}``. ``data_column`` and ``fields``
    are trusted SQL from the store, never user input; user values only travel as parameters.
    Raises :class:`FilterError` for what SQLite cannot express (object keys containing ``"``).
    """
    return _Compiler(data_column, fields or {}).expr(expr)
