"""The filter language of fetch, the viewer and the CLI (docs/protocol.md, "Filter expressions").

``_syntax.py`` parses a filter into a tree, ``_evaluate.py`` says what a tree means (the
reference every engine's SQL must match) and which index lookups it allows, and each engine
has a compiler from the tree to its SQL: ``_compile_sqlite.py``, ``_compile_postgres.py``.
The language itself, syntax and meaning, is exported here.
"""

from __future__ import annotations

from spanlog.server.query._evaluate import (
    IndexTerm,
    case_variants,
    covered_by_terms,
    evaluate,
    includes_terms,
    index_terms,
    like_classes,
)
from spanlog.server.query._syntax import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_LIKE_WILDCARDS,
    MAX_PATH_SEGMENTS,
    MAX_PREDICATES,
    MAX_TOTAL_WILDCARDS,
    And,
    Compare,
    Expr,
    FilterError,
    Includes,
    IsNull,
    Like,
    Not,
    Or,
    Predicate,
    Scalar,
    Segment,
    like_tokens,
    parse,
)

__all__ = [
    "MAX_DEPTH", "MAX_FILTER_LENGTH", "MAX_LIKE_WILDCARDS", "MAX_PATH_SEGMENTS",
    "MAX_PREDICATES", "MAX_TOTAL_WILDCARDS",
    "And", "Compare", "Expr", "FilterError", "Includes", "IndexTerm", "IsNull", "Like", "Not",
    "Or", "Predicate", "Scalar", "Segment", "case_variants", "covered_by_terms", "evaluate",
    "includes_terms", "index_terms", "like_classes", "like_tokens", "parse",
]
