"""The SQLite writer's fast index-entry walk agrees with the reference leaf definition."""

from __future__ import annotations

import random
from typing import Any

from spanlog.server.rows._leaves import ARRAY, MAX_LEAVES_PER_ROW, leaves
from spanlog.server.store.sqlite._leaf_keys import leaf_keys
from spanlog.server.store.sqlite._schema import index_value, path_key


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    return [
        lambda: rng.choice(["a", "b", "x" * 300, "", "ünï"]),
        lambda: rng.randrange(-5, 5),
        lambda: rng.choice([2**70, -(2**64), 2**63 - 1]),
        lambda: rng.random(),
        lambda: rng.choice([True, False]),
        lambda: None,
        lambda: {rng.choice(["k", "0", "a.b", "[]", "ключ"]): _value(rng, depth + 1)
                 for _ in range(rng.randrange(4))},
        lambda: [_value(rng, depth + 1) for _ in range(rng.randrange(4))],
        lambda: {"deep": {"er": _value(rng, depth + 1)}},
    ][kind]()


def test_leaf_keys_match_reference_leaves():
    """leaf_keys(row) == ([(path_key(p), index_value(v)) for p, v in leaves(row)], False)."""
    rng = random.Random(3)
    for _ in range(2000):
        row = {field: _value(rng, 0) for field in
               ("metadata", "tags", "span_attributes", "scores", "input", "output")}
        expected = [(path_key(p), index_value(v)[0]) for p, v in leaves(row)]
        assert leaf_keys(row) == (expected, False), row


def test_leaves_cover_indexed_fields_only():
    """Leaves come from metadata, tags, span_attributes and scores; arrays use ARRAY; no nulls."""
    row = {"metadata": {"a": {"b": 1}, "n": None, "l": ["x", {"y": True}]},
           "tags": ["t"], "scores": {"s": 0.5}, "span_attributes": {"type": "llm"},
           "input": {"ignored": 1}, "output": "ignored"}
    assert leaves(row) == [
        (("metadata", "a", "b"), 1), (("metadata", "l", ARRAY), "x"),
        (("metadata", "l", ARRAY, "y"), True), (("tags", ARRAY), "t"),
        (("span_attributes", "type"), "llm"), (("scores", "s"), 0.5)]


def test_leaves_are_bounded_and_capping_is_reported():
    """A row with a huge metadata object indexes at most MAX_LEAVES_PER_ROW leaves, and says
    it was capped; a row with exactly that many is not capped."""
    row = {"metadata": {f"k{i}": i for i in range(MAX_LEAVES_PER_ROW + 50)}}
    keys, capped = leaf_keys(row)
    assert len(leaves(row)) == MAX_LEAVES_PER_ROW == len(keys) and capped
    full = {"metadata": {f"k{i}": i for i in range(MAX_LEAVES_PER_ROW)}}
    assert leaf_keys(full)[1] is False
