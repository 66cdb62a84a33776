"""Snapshots: whatever is logged becomes JSON-safe at log time, without ever raising."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any

import pydantic

from spanlog._serialize import encode_json, snapshot


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    tags: set[str]


class User(pydantic.BaseModel):
    name: str
    joined: datetime.date


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def roundtrip(value: Any) -> Any:
    return json.loads(encode_json(snapshot(value)))


def test_common_types_become_json() -> None:
    """Pydantic models, dataclasses, datetimes, sets, bytes, enums, uuids, decimals."""
    value = {
        "user": User(name="ann", joined=datetime.date(2024, 5, 1)),
        "point": Point(1, {"b", "a"}),
        "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc),
        "set": {3, 1, 2}, "frozen": frozenset({"x"}), "tuple": (1, 2),
        "bytes": b"abc", "color": Color.RED, "id": uuid.UUID(int=1),
        "price": decimal.Decimal("9.99"), 7: "int key",
    }
    assert roundtrip(value) == {
        "user": {"name": "ann", "joined": "2024-05-01"},
        "point": {"x": 1, "tags": ["a", "b"]},
        "when": "2024-05-01T12:00:00+00:00",
        "set": [1, 2, 3], "frozen": ["x"], "tuple": [1, 2], "bytes": "abc",
        "color": "red", "id": "00000000-0000-0000-0000-000000000001", "price": "9.99",
        "7": "int key",
    }


def test_non_finite_floats_become_strings() -> None:
    """NaN and infinities, which JSON lacks, are spelled as strings."""
    assert roundtrip([float("nan"), float("inf"), -float("inf"), 1.5]) == [
        "NaN", "Infinity", "-Infinity", 1.5]


def test_circular_references_are_cut() -> None:
    """A structure containing itself serializes with a marker instead of recursing."""
    data: dict[str, Any] = {"name": "loop"}
    data["self"] = data
    items: list[Any] = [1]
    items.append(items)
    out = roundtrip({"d": data, "l": items})
    assert out["d"] == {"name": "loop", "self": "<circular reference>"}
    assert out["l"] == [1, "<circular reference>"]
    top = roundtrip(data)  # a cycle through the top level is cut one level down
    assert top == {"name": "loop", "self": {"name": "loop", "self": "<circular reference>"}}


def test_shared_but_acyclic_references_are_copied() -> None:
    """The same object twice (not a cycle) is copied twice, not flagged."""
    shared = {"k": [1]}
    assert roundtrip({"a": shared, "b": shared}) == {"a": {"k": [1]}, "b": {"k": [1]}}


def test_arbitrary_and_broken_objects_never_raise() -> None:
    """Objects without a JSON form become their repr; a failing repr is described."""
    out = roundtrip({"obj": object(), "broken": BrokenRepr(), "fn": len})
    assert out["obj"].startswith("<object object")
    assert out["broken"] == "<unserializable BrokenRepr>"
    assert "len" in out["fn"]


def test_deep_nesting_is_bounded() -> None:
    """Very deep structures are cut at a maximum depth instead of overflowing the stack."""
    deep: Any = "bottom"
    for _ in range(5000):
        deep = [deep]
    out = roundtrip(deep)
    depth = 0
    while isinstance(out, list):
        out, depth = out[0], depth + 1
    assert out == "<max depth>" and depth < 100


def test_snapshot_is_a_copy() -> None:
    """The snapshot shares no mutable object with the original."""
    original = {"list": [1, {"x": 1}], "tuple": ([1],)}
    copied = snapshot(original)
    original["list"][1]["x"] = 2  # type: ignore[index]
    original["tuple"][0].append(2)  # type: ignore[attr-defined]
    assert copied == {"list": [1, {"x": 1}], "tuple": [[1]]}


def test_a_row_with_long_strings_is_encoded_in_pieces_to_the_same_json() -> None:
    """encode_slices encodes a row a piece at a time (so that the GIL or the event loop is
    given up between pieces) and still produces the row's JSON (NaN as a string, a lone
    surrogate as U+FFFD, as everywhere); text_size counts what decides that it must."""
    from spanlog import _serialize

    def pieces(row: dict[str, Any]) -> bytes:
        parts: list[bytes] = []
        for _ in _serialize.encode_slices(row, parts):
            pass
        return b"".join(parts)

    long = "é\"\\\n" + "x" * (_serialize.LONG_TEXT + 7) + "\udc80"
    row = {"input": long, "metadata": {"deep": [{"text": long}], "n": float("nan")}, "k": 1}
    assert _serialize.text_size(row) > _serialize.LONG_TEXT
    decoded = json.loads(pieces(row))
    long = long.replace("\udc80", "\ufffd")
    assert decoded["input"] == long and decoded["metadata"]["deep"][0]["text"] == long
    assert decoded["metadata"]["n"] == "NaN" and decoded["k"] == 1
    short = {"input": "x" * 100, "metadata": {"a": [1, 2], "b": "yz"}, "id": "i" * 500}
    assert _serialize.text_size(short) == 102  # the free fields' strings only
    assert pieces(short) == _serialize.encode_json(short)


def test_lone_surrogates_become_replacement_characters_and_pairs_survive() -> None:
    """A string holding half of a surrogate pair (a bad decode) is sent with U+FFFD in its
    place, since JSON parsers refuse it; real non-BMP characters are sent as they are."""
    row = {"input": "a\ud800b", "output": {"\udfff": "😀 ok"}, "tags": ["é"]}
    body = encode_json(row)
    assert json.loads(body) == {"input": "a\ufffdb", "output": {"\ufffd": "😀 ok"},
                                "tags": ["é"]}
    assert "😀".encode() in body  # UTF-8, not escaped


def test_delivery_gives_way_only_once_a_trace_ended_on_an_event_loop() -> None:
    """Pacing (``_serialize.pace``) keeps an event loop responsive at the cost of the flush
    thread's share of the GIL, so it starts with the first trace that ends on a loop: in a
    fresh process, a sync trace leaves it off, a trace in ``asyncio.run`` turns it on."""
    import subprocess
    import sys

    code = (
        "import asyncio, spanlog\n"
        "from spanlog import _serialize\n"
        "from spanlog.testing import capture_rows\n"
        "with capture_rows() as rows:\n"
        "    with spanlog.start_span(name='sync'):\n"
        "        pass\n"
        "    print(_serialize.loop_seen, len(rows))\n"
        "    async def main():\n"
        "        with spanlog.start_span(name='in a loop'):\n"
        "            pass\n"
        "    asyncio.run(main())\n"
        "    print(_serialize.loop_seen, len(rows))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["False", "1", "True", "2"], (out.stdout, out.stderr)
