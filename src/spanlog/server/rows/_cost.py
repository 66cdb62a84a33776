"""The estimated cost of a span: for now, the cost its client logged (``metrics.estimated_cost``).

Estimating it from the model, provider and token counts with a price database comes next;
until then a span without a logged cost has an unknown cost (None, shown as "–", never 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def span_cost(row: Mapping[str, Any]) -> float | None:
    """The cost in USD of stored row ``row``, or None when it is not known."""
    metrics = row.get("metrics")
    if not isinstance(metrics, Mapping):
        return None
    value = metrics.get("estimated_cost")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    cost = float(value)
    return cost if math.isfinite(cost) and cost >= 0 else None
