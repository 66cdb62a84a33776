"""The filter language of fetch, the viewer and the CLI: its syntax, parsed to a tree.

``metadata.user_id = '1234' AND (scores.accuracy > 0.5 OR tags includes 'prod')``

Syntax (keywords are case-insensitive; ``NOT`` binds tighter than ``AND``, ``AND`` than ``OR``):

- predicate: ``path op literal`` with op one of ``= != <> < <= > >=``; ``path [NOT] LIKE
  'pattern'``, ``path [NOT] ILIKE 'pattern'``; ``path [NOT] INCLUDES literal``;
  ``path IS [NOT] NULL``; combined with ``AND``, ``OR``, ``NOT`` and parentheses.
- path: a known top-level field then ``.key`` segments; odd keys are quoted, ``."user id"`` or
  ``.`user id```, a quote doubled inside; array elements are ``[0]`` (brackets only: a digit
  after a dot is an error, so ``metadata."0"`` stays the key ``"0"``).
- literal: ``'text'`` (``''`` is a quote), integers (64-bit), floats, ``true``, ``false``;
  ``null`` only in ``IS [NOT] NULL``.

Semantics: :func:`evaluate` (in ``_evaluate.py``) is the reference that every store engine
compiles to; its module documents them. The package, ``spanlog.server.query``, exports both.

Bounds, each a :class:`FilterError`: 4,000 characters, 32 levels of parentheses/NOT, 100
conditions, 16 path segments, 64-bit integer literals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

Segment = str | int
Scalar = str | int | float | bool

MAX_FILTER_LENGTH = 4_000
MAX_DEPTH = 32
MAX_PREDICATES = 100
MAX_PATH_SEGMENTS = 16
# A LIKE pattern costs about (value length) ** (its '%' runs) to match at worst: the limits
# that keep a filter's cost bounded (docs/filters.md, "Limits"). A run of '%' counts once.
MAX_LIKE_WILDCARDS = 4
MAX_TOTAL_WILDCARDS = 24
_INT64 = 2**63
_MAX_INDEX = 2**31 - 1


class FilterError(ValueError):
    """A filter that cannot be used; ``str()`` says what and where, ``position`` is 0-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Compare:
    """``path op value`` with op one of ``= != < <= > >=``."""
    path: tuple[Segment, ...]
    op: str
    value: Scalar
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Like:
    """``path [NOT] LIKE|ILIKE pattern``."""
    path: tuple[Segment, ...]
    pattern: str
    case_insensitive: bool = False
    negated: bool = False
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Includes:
    """``path [NOT] INCLUDES value``: the array at path has (or lacks) an element = value."""
    path: tuple[Segment, ...]
    value: Scalar
    negated: bool = False
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class IsNull:
    """``path IS [NOT] NULL`` (missing counts as NULL)."""
    path: tuple[Segment, ...]
    negated: bool = False
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    """All of ``items`` (two or more)."""
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    """Any of ``items`` (two or more)."""
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    """The negation of ``item``."""
    item: Expr


Expr = Compare | Like | Includes | IsNull | And | Or | Not
Predicate = Compare | Like | Includes | IsNull

# ---- what the known fields hold, to catch type mismatches while parsing ----------------
_STR, _NUM, _ANY = "a string", "a number", "any"


@dataclass(frozen=True)
class _List:
    item: object


@dataclass(frozen=True)
class _Obj:
    fields: Mapping[str, object]
    other: object


_NUMBERS = _Obj({}, _NUM)
_FIELDS: Mapping[str, object] = {
    "id": _STR, "span_id": _STR, "root_span_id": _STR, "span_parents": _List(_STR),
    "created": _STR, "span_attributes": _Obj({"name": _STR, "type": _STR}, _ANY),
    "input": _ANY, "output": _ANY, "expected": _ANY, "error": _ANY, "scores": _NUMBERS,
    "metadata": _ANY, "metrics": _NUMBERS, "tags": _List(_STR), "context": _ANY,
    "comment": _Obj({"text": _STR}, _ANY), "origin": _Obj({"id": _STR}, _ANY),
    "project_id": _STR, "_xact_id": _STR,
}

# ---- tokens ---------------------------------------------------------------------------
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<word>[^\W0-9]\w*)
  | (?P<str>'(?:[^']|'')*'(?!'))
  | (?P<qid>"(?:[^"]|"")*"(?!")|`(?:[^`]|``)*`(?!`))
  | (?P<op>!=|<>|<=|>=|[=<>().\[\]])
""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "ILIKE", "INCLUDES", "IS", "NULL", "TRUE", "FALSE"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # num word str qid end, the upper-cased keyword, or the operator itself
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "'\"`":
                raise FilterError(f"unterminated quote {text[pos]} starting at position {pos}",
                                  pos)
            raise FilterError(f"unexpected character {text[pos]!r} at position {pos}", pos)
        kind = m.lastgroup or ""
        if kind == "word" and m.group().upper() in _KEYWORDS:
            kind = m.group().upper()
        elif kind == "op":
            kind = m.group()
        if kind == "num" and m.end() < len(text) and (text[m.end()].isalnum() or
                                                      text[m.end()] == "_"):
            raise FilterError(f"malformed number {text[pos:m.end() + 1]!r} at position {pos}", pos)
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


def _describe(tok: _Tok) -> str:
    if tok.kind == "end":
        return "end of filter"
    return repr(tok.text if len(tok.text) <= 40 else tok.text[:37] + "...")


# ---- parser ---------------------------------------------------------------------------
_OPS = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_VALUE_HINT = "a value ('text', a number, true or false)"


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.predicates = 0
        self.wildcards = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def fail(self, expected: str, tok: _Tok | None = None) -> FilterError:
        tok = tok or self.peek()
        return FilterError(f"unexpected {_describe(tok)} at position {tok.pos}: expected "
                           f"{expected}", tok.pos)

    def expr(self) -> Expr:
        items = [self.conjunction()]
        while self.peek().kind == "OR":
            self.take()
            items.append(self.conjunction())
        return _join(Or, items)

    def conjunction(self) -> Expr:
        items = [self.negation()]
        while self.peek().kind == "AND":
            self.take()
            items.append(self.negation())
        return _join(And, items)

    def negation(self) -> Expr:
        tok = self.peek()
        if tok.kind not in ("NOT", "("):
            return self.predicate()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"filter nested deeper than {MAX_DEPTH} levels at position "
                              f"{tok.pos}", tok.pos)
        self.take()
        if tok.kind == "NOT":
            result: Expr = Not(self.negation())
        else:
            result = self.expr()
            if self.peek().kind != ")":
                raise self.fail(f"')' to close the '(' at position {tok.pos}")
            self.take()
        self.depth -= 1
        return result

    def count_wildcards(self, tokens: list[tuple[str, str]], at: _Tok) -> None:
        runs = sum(1 for i, (kind, _) in enumerate(tokens)
                   if kind == "any" and (i == 0 or tokens[i - 1][0] != "any"))
        if runs > MAX_LIKE_WILDCARDS:
            raise FilterError(f"pattern {at.text} at position {at.pos} has {runs} '%' "
                              f"wildcards, over the limit of {MAX_LIKE_WILDCARDS} per pattern "
                              "(each one multiplies the cost of matching)", at.pos)
        self.wildcards += runs
        if self.wildcards > MAX_TOTAL_WILDCARDS:
            raise FilterError(f"pattern {at.text} at position {at.pos} brings the filter to "
                              f"{self.wildcards} '%' wildcards, over the limit of "
                              f"{MAX_TOTAL_WILDCARDS} per filter", at.pos)

    def predicate(self) -> Predicate:
        start = self.peek()
        self.predicates += 1
        if self.predicates > MAX_PREDICATES:
            raise FilterError(f"more than {MAX_PREDICATES} conditions at position {start.pos}",
                              start.pos)
        path, kind = self.path()
        tok = self.take()
        negated = tok.kind == "NOT"
        if negated:
            tok = self.take()
            if tok.kind not in ("LIKE", "ILIKE", "INCLUDES"):
                raise self.fail("LIKE, ILIKE or INCLUDES after NOT", tok)
        if tok.kind in _OPS:
            return self.compare(path, kind, _OPS[tok.text], start.pos)
        if tok.kind in ("LIKE", "ILIKE"):
            value, at = self.literal()
            if not isinstance(value, str):
                raise FilterError(f"{tok.text} needs a 'text' pattern, got {at.text} at "
                                  f"position {at.pos}", at.pos)
            try:
                tokens = like_tokens(value)
            except ValueError as exc:
                raise FilterError(f"bad pattern {at.text} at position {at.pos}: {exc}",
                                  at.pos) from None
            self.count_wildcards(tokens, at)
            return Like(path, value, tok.kind == "ILIKE", negated, start.pos)
        if tok.kind == "INCLUDES":
            value, at = self.literal()
            if value is None:
                raise FilterError(f"INCLUDES needs {_VALUE_HINT}, got null at position "
                                  f"{at.pos}", at.pos)
            if kind in (_STR, _NUM) or isinstance(kind, _Obj):
                raise FilterError(f"{_path_text(path)} at position {start.pos} is "
                                  f"{_kind_name(kind)}, not a list: INCLUDES needs a list",
                                  start.pos)
            _check_value(kind.item if isinstance(kind, _List) else _ANY, value, at, "=",
                         f"{_path_text(path)} is {_kind_name(kind)}")
            return Includes(path, value, negated, start.pos)
        if tok.kind == "IS":
            negated = self.peek().kind == "NOT"
            if negated:
                self.take()
            null = self.take()
            if null.kind != "NULL":
                raise self.fail("NULL", null)
            return IsNull(path, negated, start.pos)
        raise self.fail("an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, INCLUDES, IS NULL)", tok)

    def compare(self, path: tuple[Segment, ...], kind: object, op: str, pos: int) -> Compare:
        value, at = self.literal()
        if value is None:
            hint = "IS NOT NULL" if op == "!=" else "IS NULL"
            raise FilterError(f"comparing with null at position {at.pos} is never true: "
                              f"use {hint}", at.pos)
        if isinstance(kind, (_List, _Obj)):
            hint = (f"use {_path_text(path)} INCLUDES ..." if isinstance(kind, _List)
                    else f"compare one field, e.g. {_path_text(path)}.name")
            raise FilterError(f"{_path_text(path)} at position {pos} is {_kind_name(kind)}, "
                              f"it cannot be compared with {at.text}: {hint}", pos)
        _check_value(kind, value, at, op, f"{_path_text(path)} holds {kind}")
        return Compare(path, op, value, pos)

    def path(self) -> tuple[tuple[Segment, ...], object]:
        tok = self.take()
        if tok.kind not in ("word", "qid"):
            raise self.fail("a field name such as metadata.user_id", tok)
        name = _unquote(tok)
        if name not in _FIELDS:
            raise FilterError(f"unknown field {name!r} at position {tok.pos}; known fields: "
                              f"{', '.join(sorted(_FIELDS))}", tok.pos)
        segments: list[Segment] = [name]
        kind = _FIELDS[name]
        while self.peek().kind in (".", "["):
            sep = self.take()
            seg = self.take()
            if sep.kind == ".":
                if seg.kind == "num":
                    raise FilterError(f"array index {seg.text!r} at position {seg.pos} must be "
                                      f"written [{seg.text}] (or quoted, \"{seg.text}\", for a "
                                      f"key)", seg.pos)
                if seg.kind not in ("word", "qid") and seg.kind not in _KEYWORDS:
                    raise self.fail("a key after '.'", seg)
                step: Segment = _unquote(seg)
            else:
                if seg.kind != "num" or not seg.text.isdigit() or int(seg.text) > _MAX_INDEX:
                    raise self.fail("an array index (0, 1, ...)", seg)
                step = int(seg.text)
                close = self.take()
                if close.kind != "]":
                    raise self.fail("']'", close)
            kind = _step_kind(kind, step, segments, seg)
            segments.append(step)
            if len(segments) > MAX_PATH_SEGMENTS:
                raise FilterError(f"path longer than {MAX_PATH_SEGMENTS} segments at position "
                                  f"{seg.pos}", seg.pos)
        return tuple(segments), kind

    def literal(self) -> tuple[Scalar | None, _Tok]:
        tok = self.take()
        if tok.kind == "str":
            return tok.text[1:-1].replace("''", "'"), tok
        if tok.kind in ("TRUE", "FALSE"):
            return tok.kind == "TRUE", tok
        if tok.kind == "NULL":
            return None, tok
        if tok.kind == "num":
            if re.fullmatch(r"-?\d+", tok.text):
                number = int(tok.text)
                if not -_INT64 <= number < _INT64:
                    raise FilterError(f"integer {tok.text} at position {tok.pos} does not fit "
                                      f"in 64 bits", tok.pos)
                return number, tok
            real = float(tok.text)
            if real in (float("inf"), float("-inf")):
                raise FilterError(f"number {tok.text} at position {tok.pos} is out of range",
                                  tok.pos)
            return real, tok
        raise self.fail(_VALUE_HINT, tok)


def _join(cls: type[And] | type[Or], items: list[Expr]) -> Expr:
    if len(items) == 1:
        return items[0]
    flat: list[Expr] = []
    for item in items:  # (a AND b) AND c is a AND b AND c
        flat.extend(item.items if isinstance(item, cls) else (item,))
    return cls(tuple(flat))


def _unquote(tok: _Tok) -> str:
    if tok.kind != "qid":
        return tok.text
    quote = tok.text[0]
    return tok.text[1:-1].replace(quote * 2, quote)


def _path_text(path: tuple[Segment, ...]) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            plain = re.fullmatch(r"[^\W\d]\w*", seg) and seg.upper() not in _KEYWORDS
            out += ("." if out else "") + (seg if plain else '"' + seg.replace('"', '""') + '"')
    return out


def _kind_name(kind: object) -> str:
    if isinstance(kind, _List):
        return f"a list of {str(kind.item)[2:]}s"
    if isinstance(kind, _Obj):
        return "an object of numbers" if kind is _NUMBERS else "an object"
    return str(kind)


def _step_kind(kind: object, step: Segment, before: list[Segment], tok: _Tok) -> object:
    if kind == _ANY:
        return _ANY
    if isinstance(kind, _List) and isinstance(step, int):
        return kind.item
    if isinstance(kind, _Obj) and isinstance(step, str):
        return kind.fields.get(step, kind.other)
    what = "index" if isinstance(step, int) else "key"
    raise FilterError(f"{_path_text(tuple(before))} is {_kind_name(kind)}, so it has no {what} "
                      f"{tok.text} (at position {tok.pos})", tok.pos)


def _check_value(kind: object, value: Scalar, at: _Tok, op: str, holds: str) -> None:
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if op not in ("=", "!=") and not (is_num or isinstance(value, str)):
        raise FilterError(f"{op} at position {at.pos} needs a number or a 'text', got {at.text}",
                          at.pos)
    if (kind == _STR and not isinstance(value, str)) or (kind == _NUM and not is_num):
        raise FilterError(f"type mismatch at position {at.pos}: {holds}, got {at.text}",
                          at.pos)


def parse(text: str) -> Expr:
    """Parse a filter expression into a tree; raise :class:`FilterError` saying what and where."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter is {len(text)} characters long, over the limit of "
                          f"{MAX_FILTER_LENGTH} (at position {MAX_FILTER_LENGTH})",
                          MAX_FILTER_LENGTH)
    nul = text.find("\0")
    if nul >= 0:  # no stored text holds one (docs/collector.md), and PostgreSQL cannot take it
        raise FilterError(f"the filter contains a NUL character (U+0000) at position {nul}",
                          nul)
    parser = _Parser(text)
    if parser.peek().kind == "end":
        raise FilterError("the filter is empty (at position 0)", 0)
    result = parser.expr()
    if parser.peek().kind != "end":
        raise parser.fail("AND, OR or the end of the filter")
    return result


# ---- LIKE patterns: the parser checks them, _evaluate and the compilers read them -----
def like_tokens(pattern: str) -> list[tuple[str, str]]:
    """Split a LIKE pattern into ``("any", "%")``, ``("one", "_")`` and ``("char", c)`` tokens."""
    out: list[tuple[str, str]] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError("it ends with an escape character '\\'")
            out.append(("char", escaped))
        else:
            out.append(("any", ch) if ch == "%" else ("one", ch) if ch == "_" else ("char", ch))
    return out
