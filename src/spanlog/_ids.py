"""Identifiers of spans and rows: W3C-sized hex ids and uuid4-shaped row ids.

``span_id`` is 16 lowercase hex chars and ``root_span_id`` 32 (docs/protocol.md), the sizes of
W3C trace context, so a span maps onto a ``traceparent`` header as it is.

Ids come from a private ``random.Random`` seeded from the OS, not from ``secrets`` (a
syscall per id) and not from the ``random`` module's shared instance, which user code often
seeds for reproducibility; identical seeds in two processes would make their rows collide.
The generator is reseeded in a forked child for the same reason.
"""

from __future__ import annotations

import os
import random

_rng = random.Random()
getrandbits = _bits = _rng.getrandbits  # Span.__init__ formats its ids inline with it

if hasattr(os, "register_at_fork"):  # absent under Pyodide and on Windows
    os.register_at_fork(after_in_child=_rng.seed)

# The uuid variant nibble is 10xx in binary: map any hex digit onto 8, 9, a or b.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_span_id() -> str:
    """A fresh 16-hex-char span id."""
    return f"{_bits(64):016x}"


def new_trace_id() -> str:
    """A fresh 32-hex-char trace id (a root span's ``root_span_id``)."""
    return f"{_bits(128):032x}"


def row_id_for(root_span_id: str, span_id: str) -> str:
    """The default row id of a span: a uuid4-shaped string derived from its two ids.

    Deriving it (instead of drawing a uuid4 on every span) keeps the caller's hot path free
    of it: the flusher fills ``id`` into rows that have none, and ``Span.id`` computes the
    same value, so both always agree without sharing state. The bits are the trace id's first
    60 and the span id's last 62, all random, so it is as unique as a uuid4 in practice.
    Ids that are not hex (a foreign parent) fall back to a random uuid.
    """
    global _last_head
    s = span_id
    if len(s) != 16 or (variant := _VARIANT.get(s[0])) is None:
        return new_row_id()
    t, head = _last_head
    if root_span_id != t:
        t = root_span_id
        if len(t) < 16:
            return new_row_id()
        head = f"{t[:8]}-{t[8:12]}-4{t[13:16]}-"
        _last_head = (t, head)
    return f"{head}{variant}{s[1:4]}-{s[4:]}"


# The last trace id and the head of its spans' row ids: spans of a trace come together (they
# end, and reach an OTLP batch, in a run), so most calls skip formatting it. One tuple:
# threads may race here, never see a torn pair.
_last_head: tuple[str | None, str] = (None, "")


def new_row_id() -> str:
    """A fresh random uuid4 string."""
    h = f"{_bits(128) & 0xFFFFFFFFFFFF0FFF3FFFFFFFFFFFFFFF | 0x40008000000000000000:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
