"""compile_postgres selects exactly the rows evaluate() accepts (differential tests).

``evaluate`` runs on each row as PostgreSQL hands it back (jsonb's key order, ``1e+20`` read
back as an integer): that is the row a reader of the store sees.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pg_cluster import Cluster, new_schema

import filter_corpus as corpus
from spanlog.server.query import Expr, parse
from spanlog.server.query._compile_postgres import compile_postgres, containment, like_regex
from spanlog.server.store.postgres._schema import migrate

# Keys and characters chosen to hit the special cases: quoting, non-ASCII keys, digits as
# keys (which PostgreSQL's #> paths would read as array indexes), regex and LIKE
# metacharacters, Unicode case forms, and numbers at the edges of 2**53, 2**63 and 1e16.
CASES = corpus.Cases(
    keys=["a", "b", "user id", "café", "a\\b", "x\ny", "", "0", "1", "AND", "Σ", "$.k", "a.b",
          'say "hi"', "{a}"],
    chars="aAbB%_*?[]()|^$.+\\'\"é É ßẞſSsKkσςΣ\n😀ǅǆǄ0 1.,:{}-",
    scalars=[
        None, True, False, 0, 1, -1, 5, 1.0, 1.5, -0.0, 0.1 + 0.2, 1e20, 1e-7, 1e-5, 0.0001,
        2**53 + 1, 2**53, float(2**53), 2**60, float(2**60), 1e16, 1.5e300, 5e-324,
        2**63 - 1, -(2**63), -(2**63) - 1, 2**64 + 1, 2**70 + 1, float(2**70),
        9007199254740993, "", "prod", "PROD", "Prod", "5", "1", "true", "null", "50%", "a_b",
        "a*b", "a?b", "[x]", "é", "É", "straße", "STRASSE", "σς", "ΣΣ", "ǅ", "line\nbreak",
        "quote'\"", "back\\slash", "😀", "{\"a\":1}", "[1]", "a: b, c", "(x|y)",
    ],
    numbers=[2**53 + 1, 0.1, 1e16, float(2**60), float(2**70), -(2.0**63)])
ROWS = CASES.corpus(seed=2025)


class Table:
    """Rows in a PostgreSQL table (n, data jsonb) on a private schema, queried synchronously."""

    def __init__(self, cluster: Cluster) -> None:
        import asyncpg

        self.runner = asyncio.Runner()
        url = self.runner.run(new_schema(cluster))
        self.conn = self.runner.run(asyncpg.connect(url))
        self.runner.run(migrate(self.conn))
        self.run("execute", "CREATE TABLE t (n integer PRIMARY KEY, data jsonb NOT NULL)")
        self.rows: list[dict[str, Any]] = []

    def run(self, method: str, sql: str, *args: Any) -> Any:
        return self.runner.run(getattr(self.conn, method)(sql, *args))

    def load(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the table's rows; return them as PostgreSQL gives them back."""
        self.run("execute", "TRUNCATE t")
        self.run("executemany", "INSERT INTO t VALUES ($1, $2::jsonb)",
                 [(i, json.dumps(r, ensure_ascii=False)) for i, r in enumerate(rows)])
        return [json.loads(d) for (d,) in self.run("fetch", "SELECT data FROM t ORDER BY n")]

    def selected(self, expr: Expr, negate: bool = False) -> set[int]:
        sql, params = compile_postgres(expr, "t.data")
        where = f"NOT {sql}" if negate else sql
        return {r[0] for r in self.run("fetch", f"SELECT n FROM t WHERE {where}", *params)}

    def close(self) -> None:
        self.runner.run(self.conn.close())
        self.runner.close()

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"<Table of {len(self.rows)} rows>"


@pytest.fixture(scope="module")
def table(pg_cluster: Cluster) -> Iterator[Table]:
    """The corpus in a table; ``table.rows`` is the corpus as read back."""
    t = Table(pg_cluster)
    try:
        t.rows = t.load(ROWS)
        yield t
    finally:
        t.close()


def check(t: Table, rows: Sequence[dict[str, Any]], expr: Expr) -> None:
    """SQL and evaluate agree on every row, and NOT of the SQL selects exactly the rest."""
    corpus.check_selection(rows, expr, t.selected, lambda e: compile_postgres(e, "t.data"))


@pytest.fixture(scope="module")
def scratch(pg_cluster: Cluster) -> Iterator[Table]:
    """An empty table for tests that load rows of their own."""
    t = Table(pg_cluster)
    try:
        yield t
    finally:
        t.close()


@corpus.fast(150)
@given(expr=CASES.trees(), seed=st.integers(0, 2**16))
def test_sql_matches_evaluate_on_corpus(table: Table,
                                        expr: Expr, seed: int) -> None:
    """On a 300-row corpus of edge values, SQL filtering equals evaluate() for random trees."""
    t, rows = table, table.rows
    check(t, rows, corpus.parsed(expr, seed))


@corpus.fast(80)
@given(rows=CASES.rows(), expr=CASES.trees(), seed=st.integers(0, 2**16))
def test_sql_matches_evaluate_on_random_rows(scratch: Table, rows: list[dict[str, Any]],
                                             expr: Expr, seed: int) -> None:
    """On random JSON rows, SQL filtering equals evaluate() for random trees."""
    expr = corpus.parsed(expr, seed)
    check(scratch, scratch.load(rows), expr)


# Beyond the shared filters: a key with a double quote, which only PostgreSQL can look up.
QUOTED_KEY = 'metadata."say ""hi""" IS NOT NULL'


@pytest.mark.parametrize("text", [*corpus.HAND_PICKED, QUOTED_KEY])
def test_hand_picked_filters(table: Table, text: str) -> None:
    """Hand-picked filters over quoting, digit keys, unicode, LIKE/regex metacharacters and
    the number edges where decimal and Python comparison part ways."""
    t, rows = table, table.rows
    check(t, rows, parse(text))


def test_corpus_hits_both_sides(table: Table) -> None:
    """The corpus is rich enough that typical filters select some rows but not all."""
    corpus.assert_some_not_all(table.rows, corpus.SOME_NOT_ALL)


def test_number_edges_on_purpose_built_rows(scratch: Table) -> None:
    """Ints past 2**53 and 2**63, floats written with exponents: Python's rules, exactly."""
    t = scratch
    values = [2**60, float(2**60), 2**60 + 100, 2**63, 2**70 + 1, -(2**63) - 1,
              -(2**63) - 5000, 1e16, 1e-05, 0.1, 10**16 + 1, 5, 5.0]
    rows = [{"metadata": {"a": v}} for v in values]
    try:
        back = t.load(rows)
        for text in ["metadata.a = 1.152921504606847e18", "metadata.a > 1.152921504606847e18",
                     "metadata.a = 1152921504606846976", "metadata.a = 1.1805916207174113e21",
                     "metadata.a = -9223372036854775808", "metadata.a < -9223372036854775808",
                     "metadata.a > 9223372036854775807", "metadata.a = 1e16",
                     "metadata.a = 10000000000000001", "metadata.a = 0.1", "metadata.a = 5",
                     "metadata.a LIKE '1e-05'", "metadata.a LIKE '5.0'", "metadata.a > 1e-05",
                     "metadata.a >= 9.223372036854776e18"]:
            check(t, back, parse(text))
    finally:
        t.load([])


def test_user_values_travel_only_as_parameters(table: Table) -> None:
    """Quotes and SQL in literals, keys and patterns never reach the SQL text."""
    t, rows = table, table.rows
    text = ("metadata.\"x'); DROP TABLE t; --\" = 'a'' OR 1=1 --' OR "
            "input LIKE 'zz'' OR ''1''=''1' OR metadata.`é' OR 1=1` IS NOT NULL")
    sql, params = compile_postgres(parse(text), "t.data")
    assert "DROP" not in sql and "1=1" not in sql and "zz" not in sql
    check(t, rows, parse(text))
    assert t.run("fetchval", "SELECT count(*) FROM t") == len(rows)


def test_equality_uses_containment_so_the_gin_index_serves_it() -> None:
    """Key-path equality and INCLUDES compile to data @> doc; unsafe numbers do not."""
    sql, params = compile_postgres(parse("metadata.user_id = '1234' AND tags includes 'p'"),
                                   "r.data")
    assert sql.count("r.data @>") == 2
    assert '{"metadata":{"user_id":"1234"}}' in params and '{"tags":["p"]}' in params
    assert containment(("metadata", "n"), 2**53) is None
    assert containment(("metadata", 0), "x") is None
    assert containment(("a",), 1.5) == '{"a":1.5}'


def test_ilike_regex_escapes_metacharacters() -> None:
    """ILIKE patterns become anchored regexes with each metacharacter escaped."""
    assert like_regex("a.b%_") == "^(?:a|A)\\.(?:b|B).*.$"
    assert like_regex("\\%(x)") == "^\\%\\((?:x|X)\\)$"
