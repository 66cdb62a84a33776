"""The filter language: parsing, errors with positions, reference semantics, index terms."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from spanlog.server import query as _filter
from spanlog.server.query import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_PATH_SEGMENTS,
    MAX_PREDICATES,
    And,
    Compare,
    FilterError,
    Includes,
    IsNull,
    Like,
    Not,
    Or,
    parse,
)
from spanlog.server.query import _evaluate as _filter_eval
from spanlog.server.query._evaluate import (
    covered_by_terms,
    evaluate,
    includes_terms,
    index_terms,
    like_classes,
)

ROWS: dict[str, dict[str, Any]] = {
    "r1": {"id": "r1", "input": "Please REFUND me", "error": None, "tags": ["prod", "a"],
           "scores": {"accuracy": 0.9},
           "metadata": {"user_id": "1234", "n": 5, "f": 1.0, "flag": True, "nested": {"k": "v"},
                        "user id": "spaced", "café": "x", "0": "key zero", "pct": "50%"}},
    "r2": {"id": "r2", "error": "boom", "tags": ["staging"], "scores": {"accuracy": 0.2},
           "input": {"messages": [{"role": "user", "content": "hi"}]},
           "metadata": {"user_id": 1234, "n": "5", "flag": 1, "nested": {"k": "V"},
                        "pct": "50x"}},
    "r3": {"id": "r3", "metadata": {"list": [0, 1]}, "scores": {"accuracy": None},
           "input": ["a", 1, True, None]},
    "r4": {"id": "r4"},
}

SEMANTICS = [
    ("metadata.user_id = '1234'", "r1"),  # no coercion between strings and numbers
    ("metadata.user_id = 1234", "r2"),
    ("metadata.n = 5", "r1"),
    ("metadata.n = 5.0", "r1"),
    ("metadata.f = 1", "r1"),
    ("metadata.flag = true", "r1"),  # true is not 1 ...
    ("metadata.flag = 1", "r2"),  # ... and 1 is not true
    ("metadata.flag != true", "r2"),
    ("metadata.user_id != '1234'", "r2"),  # a missing value makes != false too
    ("NOT metadata.user_id = '1234'", "r2 r3 r4"),  # NOT is plain negation
    ("metadata.user_id <> '1234'", "r2"),
    ("metadata.user_id > '1'", "r1"),  # strings order only against strings
    ("metadata.user_id >= 1234", "r2"),
    ("scores.accuracy > 0.5", "r1"),
    ("scores.accuracy <= 0.5", "r2"),  # JSON null is not a number
    ("scores.accuracy IS NULL", "r3 r4"),
    ("error IS NOT NULL", "r2"),  # JSON null counts as NULL
    ("error IS NULL", "r1 r3 r4"),
    ("tags includes 'prod'", "r1"),
    ("tags NOT INCLUDES 'prod'", "r2"),  # needs a list to be present
    ("input includes 1", "r3"),
    ("input includes true", "r3"),
    ("input includes 'a'", "r3"),
    ("input ILIKE '%refund%'", "r1"),
    ("input LIKE '%refund%'", ""),  # LIKE is case-sensitive
    ("input LIKE '%REFUND%'", "r1"),
    ("input NOT LIKE '%REFUND%'", "r2 r3"),  # non-strings match as JSON text
    ("input LIKE '%\"role\":\"user\"%'", "r2"),
    ("input LIKE '[\"a\",1,true,null]'", "r3"),
    ("metadata.n LIKE '5'", "r1 r2"),
    ("metadata.flag LIKE 'tru_'", "r1"),
    ("metadata.nested.k ILIKE 'v'", "r1 r2"),
    ("metadata.nested.k LIKE 'v'", "r1"),
    ("metadata.nested LIKE '{%}'", "r1 r2"),
    ("metadata.pct LIKE '50\\%'", "r1"),
    ("metadata.pct LIKE '50_'", "r1 r2"),
    ("metadata.pct LIKE '5'", ""),  # LIKE matches the whole value
    ("input.messages[0].role = 'user'", "r2"),
    ("input[2] = true", "r3"),
    ("input[9] IS NULL", "r1 r2 r3 r4"),
    ("metadata.list[1] = 1", "r3"),
    ("metadata.\"user id\" = 'spaced'", "r1"),
    ("metadata.`café` = 'x'", "r1"),
    ("metadata.\"0\" = 'key zero'", "r1"),  # a quoted digit is a key, not an index
    ("metadata[0] IS NOT NULL", ""),
    ("metadata.user_id.deeper IS NULL", "r1 r2 r3 r4"),
    ("metadata.n = 5 OR metadata.n = '5' AND scores.accuracy > 0.5", "r1"),  # AND binds tighter
    ("(metadata.n = 5 OR metadata.n = '5') AND scores.accuracy < 0.5", "r2"),
    ("NOT metadata.n = 5 AND metadata.user_id = 1234", "r2"),  # NOT binds tighter than AND
    ("NOT (metadata.n = 5 OR metadata.n = '5')", "r3 r4"),
    ("id = 'r4' or id = 'r3'", "r3 r4"),
]


@pytest.mark.parametrize(("text", "expected"), SEMANTICS)
def test_evaluate_semantics(text: str, expected: str) -> None:
    """evaluate() selects exactly the rows the documented semantics say."""
    expr = parse(text)
    assert {name for name, row in ROWS.items() if evaluate(expr, row)} == set(expected.split())


def test_ilike_folds_unicode_case_and_like_does_not() -> None:
    """ILIKE matches Unicode case forms one character at a time; LIKE stays exact."""
    row = {"input": "ÉCOLE Straße ΣΑΣ"}
    assert evaluate(parse("input ILIKE 'école straße σας'"), row)
    assert not evaluate(parse("input LIKE 'école%'"), row)
    assert not evaluate(parse("input ILIKE 'ecole%'"), row)  # no accent folding
    assert evaluate(parse("input LIKE '_COLE%'"), row)  # _ is one character, not one byte


def test_like_classes_read_escapes_and_case_forms() -> None:
    """A LIKE pattern reads as wildcards and per-position characters, case forms under ILIKE."""
    pattern = "a\\%_%ǅß1"
    assert like_classes(pattern, False) == [
        ("char", "a"), ("char", "%"), ("one", "_"), ("any", "%"), ("char", "ǅ"), ("char", "ß"),
        ("char", "1")]
    assert like_classes(pattern, True) == [
        ("char", "aA"), ("char", "%"), ("one", "_"), ("any", "%"), ("char", "ǅǆǄ"),
        ("char", "ß"), ("char", "1")]  # no one-character upper case form of ß


def test_like_wildcards_span_newlines() -> None:
    """% and _ match newlines too, so multi-line inputs are searchable."""
    assert evaluate(parse("input LIKE 'a%b_c'"), {"input": "a\n\nb\nc"})


def test_hostile_like_patterns_take_linear_time() -> None:
    """Many % runs against a long near-miss text finish at once (no regex backtracking blow-up).
    The parser refuses such a pattern (docs/filters.md, limits): the tree is built directly."""
    started = time.perf_counter()
    for insensitive in (False, True):
        hostile = Like(("input",), "%a" * 60 + "%b", case_insensitive=insensitive)
        assert not evaluate(hostile, {"input": "a" * 200_000})
    assert time.perf_counter() - started < 2.0


def test_integers_beyond_64_bits_compare_as_doubles() -> None:
    """Huge integers compare as doubles, as SQLite stores them."""
    row = {"metadata": {"big": 2**70 + 1}}
    assert evaluate(parse("metadata.big = 1.1805916207174113e21"), row)
    assert evaluate(parse("metadata.big LIKE '1180591620717411303425'"), row)  # text is exact


def test_parse_tree_shapes() -> None:
    """Parsing builds the documented nodes, keywords in any case, <> as !=."""
    expr = parse("metadata.a = 1 and not metadata.b <> 'x' Or tags Includes 'p' "
                 "OR input ilike '%a%' or error is not null or input not like 'z'")
    assert expr == Or((
        And((Compare(("metadata", "a"), "=", 1), Not(Compare(("metadata", "b"), "!=", "x")))),
        Includes(("tags",), "p"),
        Like(("input",), "%a%", case_insensitive=True),
        IsNull(("error",), negated=True),
        Like(("input",), "z", negated=True),
    ))


def test_parse_flattens_and_chains_and_records_positions() -> None:
    """(a AND b) AND c is one And of three; each predicate remembers where it starts."""
    expr = parse("(metadata.a = 1 AND metadata.b = 2) AND metadata.c = 3")
    assert isinstance(expr, And) and len(expr.items) == 3
    assert [item.position for item in expr.items] == [1, 20, 40]  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "path"), [
    ("metadata.user_id", ("metadata", "user_id")),
    ('metadata."user id"', ("metadata", "user id")),
    ('metadata."say ""hi"""', ("metadata", 'say "hi"')),
    ("metadata.`odd``key`", ("metadata", "odd`key")),
    ('"metadata".x', ("metadata", "x")),
    ("input.messages[0].role", ("input", "messages", 0, "role")),
    ("input[0][12]", ("input", 0, 12)),
    ("metadata.and.Or.NULL", ("metadata", "and", "Or", "NULL")),
    ("metadata.ünïcödé", ("metadata", "ünïcödé")),
    ('metadata.""', ("metadata", "")),
])
def test_paths(text: str, path: tuple[object, ...]) -> None:
    """Dotted, quoted, backticked, indexed and keyword-named path segments parse."""
    expr = parse(f"{text} IS NULL")
    assert isinstance(expr, IsNull) and expr.path == path


@pytest.mark.parametrize(("literal", "value"), [
    ("'it''s'", "it's"), ("''", ""), ("'%\\_'", "%\\_"), ("-12", -12), ("0", 0),
    ("1.5", 1.5), ("1e3", 1000.0), ("-2.5E-3", -0.0025), ("true", True), ("FALSE", False),
    (str(2**63 - 1), 2**63 - 1), (str(-(2**63)), -(2**63)),
])
def test_literals(literal: str, value: object) -> None:
    """String, integer, float and boolean literals parse to the right Python values."""
    expr = parse(f"metadata.x = {literal}")
    assert isinstance(expr, Compare)
    assert expr.value == value and type(expr.value) is type(value)


ERRORS = [
    # (filter, position, words the message must contain)
    ("metadata.user_id = )", 19, "unexpected ')' at position 19: expected a value"),
    ("metadata.x = ", 13, "unexpected end of filter at position 13: expected a value"),
    ("metadata.x = 1)", 14, "unexpected ')' at position 14: expected AND, OR"),
    ("(metadata.x = 1", 15, "expected ')' to close the '(' at position 0"),
    ("metadata.x = 1 metadata.y = 2", 15, "unexpected 'metadata' at position 15"),
    ("foo.bar = 1", 0, "unknown field 'foo' at position 0; known fields: _xact_id"),
    ("metadata.x ~ 1", 11, "unexpected character '~' at position 11"),
    ("metadata.x = 'abc", 13, "unterminated quote ' starting at position 13"),
    ("metadata.x = 'it''", 13, "unterminated quote ' starting at position 13"),
    ('metadata."abc = 1', 9, "unterminated quote \" starting at position 9"),
    ("metadata.x = metadata.y", 13, "unexpected 'metadata' at position 13: expected a value"),
    ("= 1", 0, "unexpected '=' at position 0: expected a field name"),
    ("metadata.x", 10, "unexpected end of filter at position 10: expected an operator"),
    ("metadata.x NOT = 1", 15, "expected LIKE, ILIKE or INCLUDES after NOT"),
    ("metadata.x IS 1", 14, "unexpected '1' at position 14: expected NULL"),
    ("metadata.x LIKE 5", 16, "LIKE needs a 'text' pattern, got 5 at position 16"),
    ("metadata.x ILIKE true", 17, "ILIKE needs a 'text' pattern"),
    ("metadata.x LIKE 'ab\\'", 16, "bad pattern 'ab\\' at position 16: it ends with an escape"),
    ("metadata.x = null", 13, "comparing with null at position 13 is never true: use IS NULL"),
    ("metadata.x != NULL", 14, "use IS NOT NULL"),
    ("metadata.x INCLUDES null", 20, "INCLUDES needs a value"),
    ("metadata.x < true", 13, "< at position 13 needs a number or a 'text', got true"),
    ("tags = 'prod'", 0, "tags at position 0 is a list of strings, it cannot be compared"),
    ("tags = 5", 0, "use tags INCLUDES"),
    ("tags includes 5", 14, "type mismatch at position 14: tags is a list of strings, got 5"),
    ("tags[0] = 1", 10, "type mismatch at position 10: tags[0] holds a string, got 1"),
    ("tags.x = 'a'", 5, "tags is a list of strings, so it has no key x (at position 5)"),
    ("scores.accuracy > 'abc'", 18, "scores.accuracy holds a number, got 'abc'"),
    ("scores.accuracy = true", 18, "scores.accuracy holds a number, got true"),
    ("metrics.tokens = '5'", 17, "metrics.tokens holds a number"),
    ("scores = 1", 0, "scores at position 0 is an object of numbers"),
    ("scores[0] = 1", 7, "scores is an object of numbers, so it has no index 0"),
    ("scores.x.y = 1", 9, "scores.x is a number, so it has no key y"),
    ("span_attributes.type = 5", 23, "span_attributes.type holds a string, got 5"),
    ("id = 5", 5, "id holds a string, got 5"),
    ("id.x = 'a'", 3, "id is a string, so it has no key x"),
    ("id includes 'a'", 0, "id at position 0 is a string, not a list"),
    ("scores includes 1", 0, "scores at position 0 is an object of numbers, not a list"),
    ("metadata.x.0 = 1", 11, "array index '0' at position 11 must be written [0]"),
    ("metadata.x[a] = 1", 11, "unexpected 'a' at position 11: expected an array index"),
    ("metadata.x[-1] = 1", 11, "expected an array index"),
    ("metadata.x[1.5] = 1", 11, "expected an array index"),
    ("metadata.x[0 = 1", 13, "unexpected '=' at position 13: expected ']'"),
    ("metadata. = 1", 10, "unexpected '=' at position 10: expected a key after '.'"),
    ("metadata.x = 99999999999999999999", 13, "does not fit in 64 bits"),
    ("metadata.x = 1e999", 13, "number 1e999 at position 13 is out of range"),
    ("metadata.x = 12ab", 13, "malformed number '12a' at position 13"),
    ("", 0, "the filter is empty"),
    ("   ", 0, "the filter is empty"),
    ("metadata.x = 1 AND", 18, "unexpected end of filter at position 18: expected a field"),
    ("NOT", 3, "unexpected end of filter at position 3"),
    ("()", 1, "unexpected ')' at position 1: expected a field name"),
]


@pytest.mark.parametrize(("text", "position", "words"), ERRORS)
def test_errors_say_what_and_where(text: str, position: int, words: str) -> None:
    """Every kind of bad filter raises FilterError with its 0-based position in the message."""
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert caught.value.position == position
    assert words in str(caught.value)
    assert f"position {position}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_length_is_bounded() -> None:
    """A filter over the length limit is refused before it is tokenized."""
    text = " OR ".join(["metadata.x = 1"] * (MAX_FILTER_LENGTH // 10))
    with pytest.raises(FilterError, match="over the limit") as caught:
        parse(text)
    assert caught.value.position == MAX_FILTER_LENGTH


@pytest.mark.parametrize("opener", ["(", "NOT ", "NOT ("])
def test_nesting_is_bounded(opener: str) -> None:
    """Parentheses and NOTs nested past MAX_DEPTH are refused where the limit is crossed."""
    ok = opener * (MAX_DEPTH // 2) + "metadata.x = 1" + ")" * (MAX_DEPTH // 2) * opener.count("(")
    parse(ok)
    deep = opener * (MAX_DEPTH + 5) + "metadata.x = 1" + ")" * (MAX_DEPTH + 5) * opener.count("(")
    with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH}") as caught:
        parse(deep)
    levels = MAX_DEPTH if opener != "NOT (" else MAX_DEPTH // 2
    assert caught.value.position == len(opener) * levels


def test_predicate_count_is_bounded() -> None:
    """More than MAX_PREDICATES conditions are refused at the first one over the limit."""
    one = "metadata.x = 1"
    parse(" OR ".join([one] * MAX_PREDICATES))
    with pytest.raises(FilterError, match=f"more than {MAX_PREDICATES}") as caught:
        parse(" OR ".join([one] * (MAX_PREDICATES + 1)))
    assert caught.value.position == (len(one) + 4) * MAX_PREDICATES


def test_path_length_is_bounded() -> None:
    """Paths longer than MAX_PATH_SEGMENTS segments are refused."""
    parse("metadata" + ".a" * (MAX_PATH_SEGMENTS - 1) + " IS NULL")
    with pytest.raises(FilterError, match="path longer than"):
        parse("metadata" + ".a" * MAX_PATH_SEGMENTS + " IS NULL")


def test_index_terms_come_from_the_top_level_and_chain() -> None:
    """Only AND-ed `path = literal` conjuncts on key paths become index terms."""
    expr = parse("metadata.user_id = '1234' AND scores.accuracy > 0.5 AND tags includes 'prod'"
                 " AND span_attributes.type = 'llm' AND input.messages[0].role = 'user'")
    assert index_terms(expr) == [(("metadata", "user_id"), "1234"),
                                 (("span_attributes", "type"), "llm")]
    assert includes_terms(expr) == [(("tags",), "prod")]
    assert index_terms(expr, roots={"span_attributes"}) == [(("span_attributes", "type"), "llm")]
    assert not covered_by_terms(expr) and not covered_by_terms(expr, includes=True)


@pytest.mark.parametrize(("text", "terms", "covered"), [
    ("metadata.a = 1 AND metadata.b = true", [(("metadata", "a"), 1), (("metadata", "b"), True)],
     True),
    ("metadata.a = 'x'", [(("metadata", "a"), "x")], True),
    ("metadata.a = 1 OR metadata.b = 2", [], False),
    ("NOT metadata.a = 1", [], False),
    ("metadata.a != 1", [], False),
    ("metadata.a = 1 AND (metadata.b = 2 OR metadata.c = 3)", [(("metadata", "a"), 1)], False),
    ("metadata.a = 1 AND metadata.b IS NULL", [(("metadata", "a"), 1)], False),
    ("input[0] = 1", [], False),
])
def test_index_terms_and_coverage(text: str, terms: list[object], covered: bool) -> None:
    """index_terms lists the equality conjuncts; covered_by_terms says if nothing else remains."""
    expr = parse(text)
    assert index_terms(expr) == terms
    assert covered_by_terms(expr) is covered


def test_includes_terms_cover_only_with_includes_flag() -> None:
    """An INCLUDES conjunct is covered only when the store says it indexes array elements."""
    expr = parse("tags includes 'prod' AND metadata.env = 'x'")
    assert not covered_by_terms(expr)
    assert covered_by_terms(expr, includes=True)
    assert includes_terms(parse("tags NOT INCLUDES 'prod'")) == []
    assert not covered_by_terms(parse("tags NOT INCLUDES 'prod'"), includes=True)


def test_evaluator_names_stay_importable_from_the_parser_module() -> None:
    """evaluate and the index-term helpers are the same objects through _filter as in
    _filter_eval; other names are still an AttributeError."""
    for name in ("evaluate", "index_terms", "includes_terms", "covered_by_terms",
                 "case_variants", "IndexTerm"):
        assert getattr(_filter, name) is getattr(_filter_eval, name), name
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _filter.no_such_name  # noqa: B018


@pytest.mark.parametrize("first", ["query._evaluate", "query._syntax", "query._compile_sqlite",
                                   "query._compile_postgres"])
def test_filter_modules_import_in_any_order(first: str) -> None:
    """Importing any filter module first in a fresh interpreter works (no import cycle)."""
    code = (f"import spanlog.server.{first}\n"
            "from spanlog.server.query import evaluate, index_terms, parse\n"
            "assert evaluate(parse('metadata.a = 1'), {'metadata': {'a': 1}})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
