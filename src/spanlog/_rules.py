"""What a score, a metric and a tag may hold: the value rules of docs/protocol.md's row fields.

The SDK checks what a user logs and the collector checks what arrives (from any client) with
these same predicates, so the two never disagree on a value. Each side words its own errors
(the SDK names the call, the collector the row and field) with the rule texts below.
"""

from __future__ import annotations

from typing import Any

SCORE_RULE = "a number in [0, 1]"
METRIC_RULE = "a number"

_EXACT_NUMBERS = frozenset({int, float})


def is_number(value: Any) -> bool:
    """An int or float, not a bool (JSON's true is no number)."""
    # The exact types first: that is what decoded JSON holds, and one lookup.
    return type(value) in _EXACT_NUMBERS or (isinstance(value, (int, float))
                                             and not isinstance(value, bool))


def is_score(value: Any) -> bool:
    """A number in [0, 1] (NaN is not)."""
    return is_number(value) and 0 <= value <= 1


def is_tag(value: Any) -> bool:
    """A string."""
    return isinstance(value, str)
