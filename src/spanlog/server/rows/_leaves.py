"""The leaves of a row that the search index keeps: every scalar under the indexed fields.

The SQLite engine keeps them in its ``postings`` table; the filter language's
``index_terms`` says which of a filter's conditions such an index can answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Values longer than this are indexed by their prefix; lookups then re-check the row.
MAX_INDEXED_LENGTH = 256
# A row with absurdly many leaves indexes only the first ones (the rest still filter by scan).
MAX_LEAVES_PER_ROW = 2000
INDEXED_FIELDS = ("metadata", "tags", "span_attributes", "scores")


# The path segment that stands for "any element of this array". An int, so it can never be
# confused with an object key (keys are strings): ("tags", ARRAY) is not ("tags", "0").
ARRAY = 0

LeafPath = tuple[str | int, ...]


def leaves(row: Mapping[str, Any]) -> list[tuple[LeafPath, Any]]:
    """The (path, value) pairs the inverted index keeps for ``row``.

    Every scalar leaf under metadata, tags, span_attributes and scores. Array elements are
    indexed under the array's path plus an :data:`ARRAY` segment (``("tags", ARRAY)``), objects
    inside arrays below it. Nulls are not indexed (``IS NULL`` is not an equality lookup).
    At most :data:`MAX_LEAVES_PER_ROW` leaves.
    """
    out: list[tuple[LeafPath, Any]] = []
    for field in INDEXED_FIELDS:
        value = row.get(field)
        if value is not None:
            _walk(out, (field,), value)
    return out[:MAX_LEAVES_PER_ROW]


_SCALARS = frozenset({str, int, float, bool})


def _walk(out: list[tuple[LeafPath, Any]], path: LeafPath, value: Any) -> None:
    # On the write path for every row: scalars are handled inline (no call per leaf), and a
    # list is built instead of chaining generators. Rows are bounded by the body size limit,
    # so the list is too; `leaves` cuts it to MAX_LEAVES_PER_ROW.
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(item) in _SCALARS:
                out.append(((*path, key), item))
            elif item is not None:
                _walk(out, (*path, key), item)
    elif kind is list:
        inner = (*path, ARRAY)
        for item in value:
            if type(item) in _SCALARS:
                out.append((inner, item))
            elif item is not None:
                _walk(out, inner, item)
    elif value is not None:
        out.append((path, value))
