"""Edge-case rows, filter trees and the agreement check shared by the filter compilers' tests.

Each engine's suite (``tests/server/test_filter_sqlite.py``, ``tests/store/
test_store_filters_pg.py``) builds a :class:`Cases` from the keys, characters and values that
stress it, then checks that its SQL selects exactly the rows ``evaluate`` accepts: on a fixed
:meth:`Cases.corpus`, on random rows, and for :data:`HAND_PICKED` filters.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from spanlog.server.query import And, Compare, FilterError, Includes, IsNull, Like, Not, Or, parse
from spanlog.server.query._evaluate import evaluate

if TYPE_CHECKING:
    from spanlog.server.query import Expr

FIELDS = ["metadata", "input", "output", "expected", "error", "context"]

# Filters over quoting, digit keys, unicode, LIKE/GLOB/regex metacharacters and the number
# edges where SQLite's, PostgreSQL's and Python's comparisons could part ways.
HAND_PICKED = [
    "metadata.a = 1", "metadata.a = 1.0", "metadata.a = true", "metadata.a = 'prod'",
    "metadata.a != 'prod'", "NOT metadata.a = 'prod'", "metadata.a > 5", "metadata.a <= 'b'",
    "metadata.a LIKE '%'", "metadata.a ILIKE 'PROD'", "metadata.a LIKE '%1%'",
    "metadata.\"user id\" IS NULL", "metadata.`café` IS NOT NULL", "metadata.\"a\\b\" = 5",
    "metadata.\"x\ny\"[0] IS NOT NULL", "metadata.\"\" LIKE '%a%'", "metadata.\"$.k\" = 1",
    "metadata.\"a.b\" IS NOT NULL", "metadata.`café`.a[1] = 1", "metadata.\"0\" IS NOT NULL",
    "metadata.a[0] IS NOT NULL", "metadata.Σ.`café`.\"user id\" IS NOT NULL",
    "input includes 1", "input includes 1e20", "input[0] ILIKE 'é%' OR output[1] = 1",
    "tags includes 'prod' AND tags NOT INCLUDES 'é'",
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

# Typical filters that a useful corpus must answer with some rows but not all.
SOME_NOT_ALL = [
    "metadata.a IS NOT NULL", "metadata.`café` IS NOT NULL", "input includes 1",
    "tags includes 'prod'", "metadata.a LIKE '%a%'", "input ILIKE '%é%'",
    "metadata.b = 1", "input > 1e19", "input = 1e20", "input LIKE '%,%'",
]


def fast(max_examples: int) -> settings:
    """Hypothesis settings for a differential test: reproducible, no deadline, no database."""
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


class Cases:
    """The rows and filter trees drawn from one suite's keys, characters and values."""

    def __init__(self, keys: Sequence[str], chars: str, scalars: Sequence[Any],
                 numbers: Sequence[int | float]) -> None:
        self.keys = list(keys)
        self.scalars = list(scalars)
        alphabet = list(chars)
        self.texts = st.text(alphabet=st.sampled_from(alphabet), max_size=6)
        self.numbers = st.one_of(
            st.integers(-(2**63), 2**63 - 1), st.integers(), st.sampled_from(list(numbers)),
            st.floats(allow_nan=False, allow_infinity=False))
        self.json_values = st.recursive(
            st.one_of(st.sampled_from(self.scalars), self.texts, self.numbers, st.booleans()),
            lambda inner: st.one_of(st.lists(inner, max_size=4),
                                    st.dictionaries(st.sampled_from(self.keys), inner,
                                                    max_size=4)),
            max_leaves=12)
        segments = st.one_of(st.sampled_from(self.keys), st.integers(0, 3))
        self.paths = st.builds(lambda root, rest: (root, *rest), st.sampled_from(FIELDS),
                               st.lists(segments, max_size=3))
        self.patterns = st.lists(
            st.one_of(st.sampled_from(["%", "_", "\\%", "\\_", "\\\\", "\\a"]),
                      st.sampled_from(alphabet).filter(lambda c: c not in "\\%_")),
            max_size=6).map("".join)
        self.eq_literals = st.one_of(st.sampled_from([s for s in self.scalars if s is not None]),
                                     self.texts, self.numbers, st.booleans())
        self.order_literals = st.one_of(self.texts, self.numbers,
                                        st.sampled_from(["prod", "é", "5", "a", "Z"]))

    def corpus(self, seed: int, count: int = 300) -> list[dict[str, Any]]:
        """Deterministic rows mixing every edge value under nested paths, plus typed fields."""
        rand = random.Random(seed)

        def value(depth: int) -> Any:
            roll = rand.random()
            if depth < 3 and roll < 0.2:
                return [value(depth + 1) for _ in range(rand.randrange(4))]
            if depth < 3 and roll < 0.4:
                return {rand.choice(self.keys): value(depth + 1)
                        for _ in range(rand.randrange(4))}
            return rand.choice(self.scalars)

        rows: list[dict[str, Any]] = []
        for i in range(count):
            row: dict[str, Any] = {"id": f"row{i}"}
            for name in FIELDS:
                if rand.random() < 0.7:
                    row[name] = ({rand.choice(self.keys): value(1)
                                  for _ in range(rand.randrange(6))}
                                 if name == "metadata" else value(0))
            if rand.random() < 0.7:
                row["scores"] = {k: rand.choice([None, 0, 0.5, 1, 0.25]) for k in
                                 rand.sample(["accuracy", "relevance"], rand.randrange(3))}
            if rand.random() < 0.7:
                row["tags"] = rand.sample(["prod", "staging", "Prod", "é", "a%"],
                                          rand.randrange(4))
            rows.append(row)
        return rows

    def rows(self) -> st.SearchStrategy[list[dict[str, Any]]]:
        """A few random rows of random JSON under the free-form fields."""
        return st.lists(st.dictionaries(st.sampled_from(FIELDS), self.json_values, max_size=3),
                        min_size=1, max_size=6)

    def predicates(self, like: bool = True) -> st.SearchStrategy[Expr]:
        """Every kind of predicate on random paths, plus typed ones on scores and tags."""
        paths = self.paths
        choices = [
            st.builds(Compare, paths, st.sampled_from(["=", "!="]), self.eq_literals),
            st.builds(Compare, paths, st.sampled_from(["<", "<=", ">", ">="]),
                      self.order_literals),
            st.builds(Includes, paths, self.eq_literals, st.booleans()),
            st.builds(IsNull, paths, st.booleans()),
            st.builds(Compare, st.just(("scores", "accuracy")), st.sampled_from(["=", ">", "<="]),
                      st.sampled_from([0, 0.5, 1, 0.25])),
            st.builds(Includes, st.just(("tags",)), st.sampled_from(["prod", "Prod", "é", "a%"])),
        ]
        if like:
            choices += [
                st.builds(Like, paths, self.patterns, st.booleans(), st.booleans()),
                st.builds(Like, st.sampled_from([("tags",), ("tags", 0), ("id",)]),
                          self.patterns, st.booleans(), st.booleans())]
        return st.one_of(choices)

    def trees(self, like: bool = True) -> st.SearchStrategy[Expr]:
        """Small AND / OR / NOT trees of :meth:`predicates`."""
        return st.recursive(
            self.predicates(like),
            lambda inner: st.one_of(
                st.builds(lambda items: And(tuple(items)),
                          st.lists(inner, min_size=2, max_size=3)),
                st.builds(lambda items: Or(tuple(items)),
                          st.lists(inner, min_size=2, max_size=3)),
                st.builds(Not, inner)),
            max_leaves=5)


# ---- rendering trees as filter text, so every generated case also exercises the parser ----
def render_key(key: str, rand: random.Random) -> str:
    """A path key as filter text: bare when it can be, else quoted with " or `."""
    if key.isidentifier() and key.upper() not in {"AND", "OR", "NOT", "IS", "NULL", "LIKE"}:
        return key
    quote = rand.choice('"`')
    return quote + key.replace(quote, quote * 2) + quote


def render_literal(value: Any) -> str:
    """A literal as filter text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def render(expr: Expr, rand: random.Random) -> str:
    """The filter text of ``expr``, keywords in mixed case, quotes picked by ``rand``."""
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


def parsed(expr: Expr, seed: int) -> Expr:
    """The tree as parsed back from its rendering (which must give the same tree)."""
    try:
        again = parse(render(expr, random.Random(seed)))
    except FilterError:
        assume(False)  # a generated type mismatch, e.g. tags = 5: the parser's job to refuse
        raise
    assert again == _flatten(expr)
    return again


def _flatten(expr: Expr) -> Expr:
    if isinstance(expr, (And, Or)):
        items: list[Expr] = []
        for item in map(_flatten, expr.items):
            items.extend(item.items if type(item) is type(expr) else (item,))  # type: ignore[union-attr]
        return type(expr)(tuple(items))
    return Not(_flatten(expr.item)) if isinstance(expr, Not) else expr


# ---- the differential check ----------------------------------------------------------------
def check_selection(rows: Sequence[dict[str, Any]], expr: Expr,
                    selected: Callable[[Expr, bool], set[int]],
                    sql: Callable[[Expr], object]) -> None:
    """SQL and evaluate agree on every row, and NOT of the SQL selects exactly the rest.

    ``selected(expr, negate)`` is the set of row numbers (indexes into ``rows``) an engine's
    SQL picks, or with ``negate`` those its ``NOT (...)`` picks; ``sql(expr)`` is that SQL,
    shown when they disagree.
    """
    want = {i for i, row in enumerate(rows) if evaluate(expr, row)}
    got = selected(expr, False)
    if got != want:
        diff = sorted(got ^ want)[:3]
        raise AssertionError(f"{expr}\nsql={sql(expr)}\nmismatch on rows: " + "\n".join(
            f"{i}: sql={i in got} {json.dumps(rows[i], ensure_ascii=False)}" for i in diff))
    assert selected(expr, True) == set(range(len(rows))) - want, "SQL gave NULL"


def assert_some_not_all(rows: Sequence[dict[str, Any]], texts: Sequence[str]) -> None:
    """Each filter selects some of ``rows`` but not all (so a corpus is worth testing on)."""
    for text in texts:
        hits = sum(evaluate(parse(text), row) for row in rows)
        assert 0 < hits < len(rows), text
