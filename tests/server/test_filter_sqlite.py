"""compile_sqlite selects exactly the rows evaluate() accepts (differential tests)."""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import filter_corpus as corpus
from spanlog.server.query import Expr, FilterError, Like, parse
from spanlog.server.query._compile_sqlite import compile_sqlite, row_json
from spanlog.server.query._evaluate import evaluate

# Keys and characters chosen to hit every special case: SQLite path quoting and raw-key
# matching (non-ASCII, backslash, newline, empty), GLOB metacharacters, Unicode case forms.
# No key holds a double quote: SQLite's JSON paths cannot spell one (a FilterError, below).
CASES = corpus.Cases(
    keys=["a", "b", "user id", "café", "a\\b", "x\ny", "", "0", "AND", "Σ", "$.k", "a.b"],
    chars="aAbB%_*?[]\\'\"é É ßẞſSsKkσςΣ\n😀ǅǆǄ0 1.,:{}-",
    scalars=[
        None, True, False, 0, 1, -1, 5, 1.0, 1.5, -0.0, 0.1 + 0.2, 1e20, 1e-7, 2**53 + 1,
        2**63 - 1, -(2**63), 2**64 + 1, 9007199254740993, "", "prod", "PROD", "Prod", "5", "1",
        "true", "null", "50%", "a_b", "a*b", "a?b", "[x]", "é", "É", "straße", "STRASSE", "σς",
        "ΣΣ", "ǅ", "line\nbreak", "quote'\"", "back\\slash", "😀", "{\"a\":1}", "[1]",
    ],
    numbers=[2**53 + 1, 0.1, 1e16])
ROWS = CASES.corpus(seed=2024)


def make_table(rows: Sequence[dict[str, Any]], dumps: Any = row_json) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, data TEXT NOT NULL)")
    conn.executemany("INSERT INTO rows VALUES (?, ?)", [(i, dumps(r)) for i, r in enumerate(rows)])
    return conn


@pytest.fixture(scope="module")
def table() -> Iterator[sqlite3.Connection]:
    conn = make_table(ROWS)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def ascii_table() -> Iterator[sqlite3.Connection]:
    """The same rows written by plain json.dumps (\\u escapes, spaces after separators)."""
    conn = make_table(ROWS, json.dumps)
    yield conn
    conn.close()


def selected(conn: sqlite3.Connection, expr: Expr, negate: bool = False) -> set[int]:
    sql, params = compile_sqlite(expr)
    where = f"NOT {sql}" if negate else sql
    return {n for (n,) in conn.execute(f"SELECT n FROM rows WHERE {where}", params)}


def check(conn: sqlite3.Connection, rows: Sequence[dict[str, Any]], expr: Expr) -> None:
    """SQL and evaluate agree on every row, and NOT of the SQL selects exactly the rest."""
    corpus.check_selection(rows, expr, functools.partial(selected, conn), compile_sqlite)


@pytest.mark.slow
@corpus.fast(200)
@given(expr=CASES.trees(), seed=st.integers(0, 2**16))
def test_sql_matches_evaluate_on_corpus(table: sqlite3.Connection, expr: Expr, seed: int) -> None:
    """On a 300-row corpus of edge values, SQL filtering equals evaluate() for random trees."""
    check(table, ROWS, corpus.parsed(expr, seed))


@pytest.mark.slow
@corpus.fast(200)
@given(expr=CASES.trees(like=False), seed=st.integers(0, 2**16))
def test_paths_do_not_depend_on_json_escaping(ascii_table: sqlite3.Connection,
                                              expr: Expr, seed: int) -> None:
    """Rows stored by plain json.dumps (\\u escapes) give the same answers for non-LIKE filters."""
    check(ascii_table, ROWS, corpus.parsed(expr, seed))


@pytest.mark.slow
@corpus.fast(100)
@given(rows=CASES.rows(), expr=CASES.trees(), seed=st.integers(0, 2**16))
def test_sql_matches_evaluate_on_random_rows(rows: list[dict[str, Any]], expr: Expr,
                                             seed: int) -> None:
    """On random JSON rows, SQL filtering equals evaluate() for random trees."""
    expr = corpus.parsed(expr, seed)
    conn = make_table(rows)
    try:
        check(conn, rows, expr)
    finally:
        conn.close()


@pytest.mark.parametrize("text", corpus.HAND_PICKED)
def test_hand_picked_filters(table: sqlite3.Connection, ascii_table: sqlite3.Connection,
                             text: str) -> None:
    """Hand-picked filters over quoting, unicode keys, GLOB metacharacters and number edges."""
    check(table, ROWS, parse(text))
    if "LIKE" not in text:
        check(ascii_table, ROWS, parse(text))


def test_corpus_hits_both_sides() -> None:
    """The corpus is rich enough that typical filters select some rows but not all."""
    corpus.assert_some_not_all(ROWS, corpus.SOME_NOT_ALL)


def test_user_values_travel_only_as_parameters(table: sqlite3.Connection) -> None:
    """Quotes and SQL in literals, keys and patterns never reach the SQL text."""
    text = ("metadata.\"x'); DROP TABLE rows; --\" = 'a'' OR 1=1 --' OR "
            "input LIKE 'zz'' OR ''1''=''1' OR metadata.`é' OR 1=1` IS NOT NULL")
    sql, params = compile_sqlite(parse(text))
    assert "DROP" not in sql and "1=1" not in sql and "zz" not in sql
    assert "a' OR 1=1 --" in params
    check(table, ROWS, parse(text))
    assert table.execute("SELECT count(*) FROM rows").fetchone() == (len(ROWS),)


def test_hostile_glob_patterns_stay_fast() -> None:
    """The compiled GLOB of a many-% pattern fails fast on a long near-miss text. The parser
    refuses such a pattern (docs/filters.md, limits): the tree is built directly."""
    conn = make_table([{"input": "a" * 200_000}])
    try:
        started = time.perf_counter()
        for insensitive in (False, True):
            hostile = Like(("input",), "%a" * 60 + "%b", case_insensitive=insensitive)
            assert selected(conn, hostile) == set()
        assert time.perf_counter() - started < 2.0
    finally:
        conn.close()


@pytest.mark.parametrize("pragma", ["ON", "OFF"])
def test_case_sensitivity_ignores_the_connection_pragma(pragma: str) -> None:
    """LIKE stays case-sensitive and ILIKE insensitive whatever case_sensitive_like says."""
    rows = [{"input": "Refund"}, {"input": "refund"}, {"input": "RÉFUND"}, {"input": "réfund"}]
    conn = make_table(rows)
    try:
        conn.execute(f"PRAGMA case_sensitive_like = {pragma}")
        assert selected(conn, parse("input LIKE 'refund'")) == {1}
        assert selected(conn, parse("input ILIKE 'REFUND'")) == {0, 1}
        assert selected(conn, parse("input ILIKE 'réfund'")) == {2, 3}
        assert selected(conn, parse("input NOT ILIKE 'r%'")) == set()
    finally:
        conn.close()


def test_keys_with_double_quotes_are_refused_by_sqlite() -> None:
    """A key SQLite's JSON paths cannot spell is a FilterError pointing at the predicate."""
    expr = parse('metadata.a = 1 AND metadata."say ""hi""" = 1')
    with pytest.raises(FilterError, match="double quote") as caught:
        compile_sqlite(expr)
    assert caught.value.position == 19


def test_qualified_data_column_and_composition() -> None:
    """The SQL is one expression that composes with other conditions and table aliases."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE logs (project TEXT, body TEXT)")
        conn.executemany("INSERT INTO logs VALUES (?, ?)", [
            ("p1", row_json({"tags": ["prod"], "metadata": {"é": 1}})),
            ("p2", row_json({"tags": ["prod"], "metadata": {"é": 1}})),
            ("p1", row_json({"tags": ["dev"], "metadata": {"é": 2}}))])
        sql, params = compile_sqlite(parse("tags includes 'prod' AND metadata.`é` = 1 OR "
                                           "tags includes 'dev'"), "l.body")
        found = conn.execute(f"SELECT l.project FROM logs AS l WHERE l.project = ? AND {sql} "
                             f"ORDER BY l.rowid", ["p1", *params]).fetchall()
        assert found == [("p1",), ("p1",)]
    finally:
        conn.close()


@pytest.mark.parametrize("text", [
    "_xact_id = '12'", "_xact_id > '100'", "_xact_id LIKE '1%'", "_xact_id IS NULL",
    "_xact_id IS NOT NULL AND metadata.a = 1", "NOT _xact_id ILIKE '%2'", "_xact_id != '3'",
])
def test_fields_kept_in_columns(text: str) -> None:
    """A top-level field the store keeps in a column filters as if it were in the JSON."""
    rows = [{"metadata": {"a": i % 3}} for i in range(1, 130)]
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE rows (xact INTEGER PRIMARY KEY, data TEXT)")
        conn.executemany("INSERT INTO rows VALUES (?, ?)",
                         [(i, row_json(r)) for i, r in enumerate(rows, 1)])
        expr = parse(text)
        sql, params = compile_sqlite(expr, fields={"_xact_id": "CAST(xact AS TEXT)"})
        got = {n for (n,) in conn.execute(f"SELECT xact FROM rows WHERE {sql}", params)}
        want = {i for i, r in enumerate(rows, 1) if evaluate(expr, {**r, "_xact_id": str(i)})}
        assert got == want
        assert want or text == "_xact_id IS NULL"  # the case is not vacuous
    finally:
        conn.close()


def test_row_json_is_compact_utf8_and_refuses_nan() -> None:
    """row_json writes the text compile_sqlite expects and refuses NaN."""
    assert row_json({"a": "é", "b": [1, 2.5]}) == '{"a":"é","b":[1,2.5]}'
    with pytest.raises(ValueError):
        row_json({"a": float("nan")})
