"""The index entries of one row, computed fast: the SQLite writer's hottest loop.

Semantically :func:`leaf_keys` is ``[(path_key(p), index_value(v)[0]) for p, v in
leaves(row)]`` (see ``rows._leaves.leaves`` and ``_schema``), and a test holds it to exactly
that; the writer turns each path key into the project's ``fields`` id. It walks
the row once with a cache of path nodes, so the common case (paths seen before) costs a dict
lookup per leaf instead of building a tuple, hashing it and looking up its key.
"""

from __future__ import annotations

from typing import Any

from spanlog.server.rows._leaves import (
    ARRAY,
    INDEXED_FIELDS,
    MAX_INDEXED_LENGTH,
    MAX_LEAVES_PER_ROW,
)
from spanlog.server.store.sqlite._schema import FALSE, INT64, TRUE, index_value, path_key

# A node per path seen: [its 64-bit key, its path, child nodes by key, the ARRAY child].
_Node = list[Any]
# Metadata keys can be unbounded (ids used as keys); past this many nodes start afresh.
_MAX_NODES = 200_000
_nodes = 0
_roots: dict[str, _Node] = {}


def _node(children: dict[Any, _Node], parent_path: tuple[Any, ...], key: Any) -> _Node:
    global _nodes
    path = (*parent_path, key)
    node: _Node = [path_key(path), path, {}, None]
    _nodes += 1
    children[key] = node
    return node


def _array(node: _Node) -> _Node:
    inner: _Node | None = node[3]
    if inner is None:
        inner = node[3] = _node({}, node[1], ARRAY)
    return inner


def _walk(out: list[tuple[int, Any]], node: _Node, value: Any) -> None:
    # Scalars are encoded inline (see index_value): no function call per leaf.
    if type(value) is dict:
        children = node[2]
        pairs: Any = value.items()
    elif type(value) is list:
        inner = _array(node)
        pairs = ((None, item) for item in value)
    else:
        if value is not None:
            out.append((node[0], index_value(value)[0]))
        return
    for key, item in pairs:
        if key is None:
            child = inner
        else:
            child = children.get(key)
            if child is None:
                child = _node(children, node[1], key)
        kind = type(item)
        if kind is str:
            out.append((child[0], item if len(item) <= MAX_INDEXED_LENGTH
                        else item[:MAX_INDEXED_LENGTH]))
        elif kind is bool:
            out.append((child[0], TRUE if item else FALSE))
        elif kind is float or (kind is int and -INT64 <= item < INT64):
            out.append((child[0], item))
        elif item is not None:
            _walk(out, child, item)


def leaf_keys(data: dict[str, Any]) -> tuple[list[tuple[int, Any]], bool]:
    """The (path key, stored value) index entries of ``data``, and whether there were more
    than :data:`MAX_LEAVES_PER_ROW` (the rest are not indexed: the row is "capped")."""
    global _nodes
    if _nodes > _MAX_NODES:
        _roots.clear()
        _nodes = 0
    out: list[tuple[int, Any]] = []
    for field in INDEXED_FIELDS:
        value = data.get(field)
        if value is None:
            continue
        root = _roots.get(field)
        if root is None:
            root = _node(_roots, (), field)
        _walk(out, root, value)
    if len(out) > MAX_LEAVES_PER_ROW:
        return out[:MAX_LEAVES_PER_ROW], True
    return out, False
