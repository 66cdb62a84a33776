"""The collector's JSON module gives json's values and bytes exactly, only faster."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanlog.server.rows import _json


def stdlib(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


# Text with every kind of character but lone surrogates (not valid in UTF-8, refused on input).
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# Strings that look like the numbers the fallback checks search for.
_lookalikes = st.sampled_from(["1e-5,", "x:0.00001]", "[0.0000", "2.5e-7}", "0e-000,",
                               "1234567890123456789", "a1e-9b4d-0c2e-4f00", "-0.0000"])
_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | _text | _lookalikes)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                       | st.dictionaries(_text | _lookalikes, inner, max_size=5),
                       max_leaves=30)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(_values)
def test_dumps_writes_what_json_writes(value):
    assert _json.dumps_bytes(value) == stdlib(value)
    assert _json.dumps(value) == stdlib(value).decode()


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(_values)
def test_loads_reads_what_json_reads(value):
    text = stdlib(value)
    decoded = _json.loads(text)
    assert decoded == json.loads(text)
    assert stdlib(decoded) == text  # same types too: an int stays an int
    assert _json.loads(text.decode()) == decoded


@pytest.mark.slow
def test_every_float_bit_pattern_is_written_like_json():
    """Random doubles over all exponents, and the edges around 1e-4 and 1e16."""
    rng = random.Random(7)
    floats = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
              for _ in range(100_000)]
    floats = [f for f in floats if math.isfinite(f)]
    for edge in (1e-4, 1e16, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308):
        floats += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
    floats += [rng.uniform(-1e-3, 1e-3) for _ in range(20_000)]
    for value in filter(math.isfinite, floats):
        for doc in ([value], {"k": value}, [[value, "x"], {"a": [value]}], [-value]):
            assert _json.dumps_bytes(doc) == stdlib(doc), value
        assert _json.loads(repr(value)) == value


@pytest.mark.parametrize("number", ["123456789012345678901234567890", "-9223372036854775809",
                                    "18446744073709551616", "9223372036854775807",
                                    "-9223372036854775808"])
def test_big_integers_stay_exact(number):
    doc = f'{{"a":[{number}],"b":"x"}}'
    assert _json.loads(doc) == {"a": [int(number)], "b": "x"}
    assert _json.dumps(_json.loads(doc)) == doc
    for spaced in (f'{{"a" :\t{number} }}', f"[1,\n {number}]", f" {number} ", f"[ {number}]"):
        decoded = _json.loads(spaced)
        assert decoded == json.loads(spaced) and stdlib(decoded) == stdlib(json.loads(spaced))


def test_long_digit_runs_in_strings_take_the_fast_path(monkeypatch):
    """19 digits in a string (OTLP/JSON's nanosecond times) are no number orjson may have
    rounded: json does not decode the body again."""
    def fallback(text):
        raise AssertionError(f"fell back for {text!r}")
    monkeypatch.setattr(json, "loads", fallback)
    doc = '{"startTimeUnixNano": "1796669861014990848", "t": ["-1234567890123456789"]}'
    assert _json.loads(doc) == {"startTimeUnixNano": "1796669861014990848",
                                "t": ["-1234567890123456789"]}


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "[-Infinity]", "[1e400]",
                                  '["\\ud800"]', '["a\x01b"]', "[1,]", "{'a':1}", "[01]",
                                  '{"a":1', "[" * 1100 + "]" * 1100])
def test_loads_refuses_what_is_not_json_with_a_position(text):
    with pytest.raises(_json.JSONDecodeError) as caught:
        _json.loads(text)
    assert caught.value.lineno >= 1 and caught.value.colno >= 1
    assert caught.value.msg


def test_fallbacks_cover_what_orjson_refuses_to_write():
    deep: Any = "leaf"
    for _ in range(400):  # deeper than orjson writes
        deep = [deep]
    for value in (deep, [2**64], {"a": [-(2**70)]}, 1e-5, 2.5, "text", None, True):
        assert _json.dumps_bytes(value) == stdlib(value)


def test_common_values_take_the_fast_path(monkeypatch):
    """Scores, timestamps, ids and prose are written by orjson, not by the fallback."""
    def fallback(value):
        raise AssertionError(f"fell back for {value!r}")
    monkeypatch.setattr(_json, "_stdlib_dumps", fallback)
    row = {"id": "3f2a8c1e-9b4d-4e2a-8c1e-0b4d4e2a8c1e", "scores": {"a": 0.8734, "b": 0.0001},
           "metrics": {"start": 1764000000.1234567, "end": 1764000001.5, "tokens": 812,
                       "ttft": 0.4567891234, "tiny": 1.5e-12, "huge": 1e300},
           "created": "2026-11-27T00:00:00.000000+00:00", "output": "e-mail me at 10:00, ok?",
           "input": [0.00012, -0.5, 10.00001]}
    assert _json.dumps_bytes(row) == stdlib(row)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_values)
def test_internal_text_decodes_to_the_same_values(value):
    text = _json.dumps_internal(value)
    assert json.loads(text) == json.loads(stdlib(value))
