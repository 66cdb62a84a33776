"""compile_postgres selects exactly the rows evaluate() accepts (differential tests).

``evaluate`` runs on each row as PostgreSQL hands it back (jsonb's key order, ``1e+20`` read
back as an integer): that is the row a reader of the store sees.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pg_cluster import Cluster, new_schema

from spanlog.server._filter import (
    And,
    Compare,
    Expr,
    FilterError,
    Includes,
    IsNull,
    Like,
    Not,
    Or,
    evaluate,
    parse,
)
from spanlog.server._filter_postgres import compile_postgres, containment, like_regex
from spanlog.server._postgres_schema import migrate

# Keys and characters chosen to hit the special cases: quoting, non-ASCII keys, digits as
# keys (which PostgreSQL's #> paths would read as array indexes), regex and LIKE
# metacharacters, Unicode case forms, and numbers at the edges of 2**53, 2**63 and 1e16.
KEYS = ["a", "b", "user id", "café", "a\\b", "x\ny", "", "0", "1", "AND", "Σ", "$.k", "a.b",
        'say "hi"', "{a}"]
CHARS = list("aAbB%_*?[]()|^$.+\\'\"é É ßẞſSsKkσςΣ\n😀ǅǆǄ0 1.,:{}-")
SCALARS: list[Any] = [
    None, True, False, 0, 1, -1, 5, 1.0, 1.5, -0.0, 0.1 + 0.2, 1e20, 1e-7, 1e-5, 0.0001,
    2**53 + 1, 2**53, float(2**53), 2**60, float(2**60), 1e16, 1.5e300, 5e-324,
    2**63 - 1, -(2**63), -(2**63) - 1, 2**64 + 1, 2**70 + 1, float(2**70),
    9007199254740993, "", "prod", "PROD", "Prod", "5", "1", "true", "null", "50%", "a_b",
    "a*b", "a?b", "[x]", "é", "É", "straße", "STRASSE", "σς", "ΣΣ", "ǅ", "line\nbreak",
    "quote'\"", "back\\slash", "😀", "{\"a\":1}", "[1]", "a: b, c", "(x|y)",
]
texts = st.text(alphabet=st.sampled_from(CHARS), max_size=6)
numbers = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.integers(),
    st.sampled_from([2**53 + 1, 0.1, 1e16, float(2**60), float(2**70), -(2.0**63)]),
    st.floats(allow_nan=False, allow_infinity=False))
scalars = st.one_of(st.sampled_from(SCALARS), texts, numbers, st.booleans())
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12)
FIELDS = ["metadata", "input", "output", "expected", "error", "context"]


def corpus(count: int = 300, seed: int = 2025) -> list[dict[str, Any]]:
    """Deterministic rows mixing every edge value under nested paths, plus typed fields."""
    rand = random.Random(seed)

    def value(depth: int) -> Any:
        roll = rand.random()
        if depth < 3 and roll < 0.2:
            return [value(depth + 1) for _ in range(rand.randrange(4))]
        if depth < 3 and roll < 0.4:
            return {rand.choice(KEYS): value(depth + 1) for _ in range(rand.randrange(4))}
        return rand.choice(SCALARS)

    rows: list[dict[str, Any]] = []
    for i in range(count):
        row: dict[str, Any] = {"id": f"row{i}"}
        for name in FIELDS:
            if rand.random() < 0.7:
                row[name] = ({rand.choice(KEYS): value(1) for _ in range(rand.randrange(6))}
                             if name == "metadata" else value(0))
        if rand.random() < 0.7:
            row["scores"] = {k: rand.choice([None, 0, 0.5, 1, 0.25])
                             for k in rand.sample(["accuracy", "relevance"], rand.randrange(3))}
        if rand.random() < 0.7:
            row["tags"] = rand.sample(["prod", "staging", "Prod", "é", "a%"], rand.randrange(4))
        rows.append(row)
    return rows


ROWS = corpus()


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
    want = {i for i, row in enumerate(rows) if evaluate(expr, row)}
    got = t.selected(expr)
    if got != want:
        diff = sorted(got ^ want)[:3]
        raise AssertionError(f"{expr}\nsql={compile_postgres(expr, 't.data')}\nmismatch on "
                             "rows: " + "\n".join(f"{i}: sql={i in got} "
                                                  f"{json.dumps(rows[i], ensure_ascii=False)}"
                                                  for i in diff))
    assert t.selected(expr, negate=True) == set(range(len(rows))) - want, "SQL gave NULL"


# ---- rendering trees as filter text, so every generated case also exercises the parser ----
def render_key(key: str, rand: random.Random) -> str:
    if key.isidentifier() and key.upper() not in {"AND", "OR", "NOT", "IS", "NULL", "LIKE"}:
        return key
    quote = rand.choice('"`')
    return quote + key.replace(quote, quote * 2) + quote


def render_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def render(expr: Expr, rand: random.Random) -> str:
    if isinstance(expr, (And, Or)):
        word = " AND " if isinstance(expr, And) else " or "
        return "(" + word.join(render(item, rand) for item in expr.items) + ")"
    if isinstance(expr, Not):
        return f"NOT ({render(expr.item, rand)})"
    path = "".join(f"[{s}]" if isinstance(s, int) else
                   (("." if i else "") + render_key(s, rand)) for i, s in enumerate(expr.path))
    if isinstance(expr, Compare):
        return f"{path} {expr.op} {render_literal(expr.value)}"
    if isinstance(expr, Like):
        word = "ILIKE" if expr.case_insensitive else "like"
        return f"{path} {'NOT ' if expr.negated else ''}{word} {render_literal(expr.pattern)}"
    if isinstance(expr, Includes):
        return f"{path} {'not ' if expr.negated else ''}INCLUDES {render_literal(expr.value)}"
    return f"{path} IS {'NOT ' if expr.negated else ''}NULL"


segments = st.one_of(st.sampled_from(KEYS), st.integers(0, 3))
any_paths = st.builds(lambda root, rest: (root, *rest), st.sampled_from(FIELDS),
                      st.lists(segments, max_size=3))
patterns = st.lists(st.one_of(st.sampled_from(["%", "_", "\\%", "\\_", "\\\\", "\\a"]),
                              st.sampled_from(CHARS).filter(lambda c: c not in "\\%_")),
                    max_size=6).map("".join)
eq_literals = st.one_of(st.sampled_from([s for s in SCALARS if s is not None]), texts, numbers,
                        st.booleans())
order_literals = st.one_of(texts, numbers, st.sampled_from(["prod", "é", "5", "a", "Z"]))


def predicates(paths: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Compare, paths, st.sampled_from(["=", "!="]), eq_literals),
        st.builds(Compare, paths, st.sampled_from(["<", "<=", ">", ">="]), order_literals),
        st.builds(Like, paths, patterns, st.booleans(), st.booleans()),
        st.builds(Includes, paths, eq_literals, st.booleans()),
        st.builds(IsNull, paths, st.booleans()),
        st.builds(Compare, st.just(("scores", "accuracy")), st.sampled_from(["=", ">", "<="]),
                  st.sampled_from([0, 0.5, 1, 0.25])),
        st.builds(Includes, st.just(("tags",)), st.sampled_from(["prod", "Prod", "é", "a%"])),
        st.builds(Like, st.sampled_from([("tags",), ("tags", 0), ("id",)]), patterns,
                  st.booleans(), st.booleans()),
    )


def trees(paths: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[Expr]:
    return st.recursive(
        predicates(paths),
        lambda inner: st.one_of(
            st.builds(lambda items: And(tuple(items)), st.lists(inner, min_size=2, max_size=3)),
            st.builds(lambda items: Or(tuple(items)), st.lists(inner, min_size=2, max_size=3)),
            st.builds(Not, inner)),
        max_leaves=5)


def parsed(expr: Expr, seed: int) -> Expr:
    """The tree as parsed back from its rendering."""
    try:
        return parse(render(expr, random.Random(seed)))
    except FilterError:
        assume(False)  # a generated type mismatch, e.g. tags = 5: the parser's job to refuse
        raise


FAST = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def scratch(pg_cluster: Cluster) -> Iterator[Table]:
    """An empty table for tests that load rows of their own."""
    t = Table(pg_cluster)
    try:
        yield t
    finally:
        t.close()


@FAST
@given(expr=trees(any_paths), seed=st.integers(0, 2**16))
def test_sql_matches_evaluate_on_corpus(table: Table,
                                        expr: Expr, seed: int) -> None:
    """On a 300-row corpus of edge values, SQL filtering equals evaluate() for random trees."""
    t, rows = table, table.rows
    check(t, rows, parsed(expr, seed))


@settings(max_examples=80, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3),
                     min_size=1, max_size=6),
       expr=trees(any_paths), seed=st.integers(0, 2**16))
def test_sql_matches_evaluate_on_random_rows(scratch: Table, rows: list[dict[str, Any]],
                                             expr: Expr, seed: int) -> None:
    """On random JSON rows, SQL filtering equals evaluate() for random trees."""
    expr = parsed(expr, seed)
    check(scratch, scratch.load(rows), expr)


HAND_PICKED = [
    "metadata.a = 1", "metadata.a = 1.0", "metadata.a = true", "metadata.a = 'prod'",
    "metadata.a != 'prod'", "NOT metadata.a = 'prod'", "metadata.a > 5", "metadata.a <= 'b'",
    "metadata.a LIKE '%'", "metadata.a ILIKE 'PROD'", "metadata.a LIKE '%1%'",
    "metadata.\"user id\" IS NULL", "metadata.`café` IS NOT NULL", "metadata.\"a\\b\" = 5",
    "metadata.\"x\ny\"[0] IS NOT NULL", "metadata.\"\" LIKE '%a%'", "metadata.\"$.k\" = 1",
    "metadata.\"a.b\" IS NOT NULL", "metadata.`café`.a[1] = 1", "metadata.\"0\" IS NOT NULL",
    "metadata.a[0] IS NOT NULL", "metadata.\"say \"\"hi\"\"\" IS NOT NULL",
    "metadata.Σ.`café`.\"user id\" IS NOT NULL", "input includes 1", "input includes 1e20",
    "input[0] ILIKE 'é%' OR output[1] = 1", "tags includes 'prod' AND tags NOT INCLUDES 'é'",
    "scores.accuracy >= 0.5 OR scores.relevance IS NULL", "input LIKE '%\\%%'",
    "input ILIKE '%straße%'", "input ILIKE '%ǆ%'", "input LIKE '[%'", "input LIKE '*'",
    "input LIKE '_'", "input ILIKE '(x|y)'", "input LIKE '%: %'", "input LIKE '%\":%'",
    "metadata.a = 9007199254740993", "metadata.a = 9007199254740992.0",
    "metadata.a = 1.152921504606847e18", "metadata.a > 1.152921504606847e18",
    "metadata.a = 1.1805916207174113e21", "metadata.a >= -9223372036854775808",
    "metadata.a = -9223372036854775808", "metadata.a < -9.223372036854776e18",
    "metadata.a > 1e19", "metadata.a LIKE '1e+20'", "metadata.a LIKE '%0.30000000000000004%'",
    "metadata.a LIKE '1e-05'", "metadata.a LIKE '5e-324'", "input LIKE '%1e-07%'",
    "input LIKE '%e+300%'", "metadata.a = 1e-05", "metadata.a < 0.0001",
]


@pytest.mark.parametrize("text", HAND_PICKED)
def test_hand_picked_filters(table: Table, text: str) -> None:
    """Hand-picked filters over quoting, digit keys, unicode, LIKE/regex metacharacters and
    the number edges where decimal and Python comparison part ways."""
    t, rows = table, table.rows
    check(t, rows, parse(text))


def test_corpus_hits_both_sides(table: Table) -> None:
    """The corpus is rich enough that typical filters select some rows but not all."""
    rows = table.rows
    for text in ["metadata.a IS NOT NULL", "metadata.`café` IS NOT NULL", "input includes 1",
                 "tags includes 'prod'", "metadata.a LIKE '%a%'", "input ILIKE '%é%'",
                 "metadata.b = 1", "input > 1e19", "input = 1e20", "input LIKE '%,%'"]:
        hits = sum(evaluate(parse(text), row) for row in rows)
        assert 0 < hits < len(rows), text


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
