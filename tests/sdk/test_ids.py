"""spanlog._ids: a span's row id is derived from its ids, the same whatever came before."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid

from spanlog._ids import new_span_id, new_trace_id, row_id_for


def reference(trace_id: str, span_id: str) -> str:
    """The row id as src/spanlog/_ids.py documents it: the trace id's first 60 bits and the
    span id's last 62, in a uuid4's shape."""
    t, s = trace_id, span_id
    return f"{t[:8]}-{t[8:12]}-4{t[13:16]}-{'89ab'[int(s[0], 16) & 3]}{s[1:4]}-{s[4:16]}"


def test_row_ids_follow_the_formula_in_any_order_of_traces() -> None:
    """Spans of a trace in a run, traces interleaved, a trace met again later: each row id is
    the formula's, a valid uuid4, and the same for the same ids (the last trace's head is
    kept between calls)."""
    pick = random.Random(7)
    traces = [new_trace_id() for _ in range(5)]
    pairs = [(pick.choice(traces), new_span_id()) for _ in range(300)]
    pairs += [(traces[0], new_span_id()) for _ in range(20)]  # a run of one trace
    for trace_id, span_id in pairs + pairs[::-1]:
        row_id = row_id_for(trace_id, span_id)
        assert row_id == reference(trace_id, span_id)
        assert uuid.UUID(row_id).version == 4 and str(uuid.UUID(row_id)) == row_id


def test_ids_of_another_shape_get_a_fresh_random_row_id() -> None:
    """A span id that is not 16 hex characters or a trace id under 16: a random uuid4 each
    time, and the next well-formed pair is still derived."""
    trace_id, span_id = new_trace_id(), new_span_id()
    for odd in [(trace_id, "zz" * 8), (trace_id, span_id[:15]), (trace_id[:15], span_id),
                ("", span_id)]:
        first, second = row_id_for(*odd), row_id_for(*odd)
        assert first != second and uuid.UUID(first).version == 4
        assert row_id_for(trace_id, span_id) == reference(trace_id, span_id)


def test_a_first_call_with_an_empty_trace_id_gets_a_random_row_id() -> None:
    """In a fresh process (nothing kept yet), an empty trace id is not mistaken for a kept
    one: the row id is a random uuid4, not a head-less derived one."""
    code = ("from spanlog._ids import row_id_for; "
            "print(row_id_for('', 'f792ab7945d5be7b'), row_id_for('', 'f792ab7945d5be7b'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    first, second = done.stdout.split()
    assert first != second and uuid.UUID(first).version == 4 and str(uuid.UUID(first)) == first
