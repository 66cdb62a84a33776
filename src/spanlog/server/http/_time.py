"""Times a client gives the API (``since``, ``until``): Unix seconds, ISO-8601, or a span of
time back from now such as ``15m``, ``24h`` or ``7d`` (docs/protocol.md, "Time ranges")."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from typing import Any

from spanlog.server.store._errors import BadRequest

_AGO = re.compile(r"(\d{1,6})\s*(s|m|h|d|w)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EXAMPLES = "Unix seconds, an ISO-8601 time such as 2026-01-31T12:00:00Z, or 15m, 24h, 7d back"


def parse_time(value: Any, field: str, now: float | None = None) -> float | None:
    """``value`` as Unix seconds (None stays None); :class:`BadRequest` naming ``field``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        ago = _AGO.fullmatch(text)
        if ago is not None:
            moment = time.time() if now is None else now
            return moment - int(ago.group(1)) * _UNIT[ago.group(2)]
        try:
            seconds = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise BadRequest(f"{field}: {value!r} is no time ({_EXAMPLES})") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            seconds = parsed.timestamp()
    else:
        raise BadRequest(f"{field}: must be a time ({_EXAMPLES}), got {type(value).__name__}")
    if not math.isfinite(seconds) or abs(seconds) > 1e12:
        raise BadRequest(f"{field}: {value!r} is out of range ({_EXAMPLES})")
    return seconds


def parse_range(source: dict[str, Any], now: float | None = None
                ) -> tuple[float | None, float | None]:
    """``since`` and ``until`` of a request (either may be absent), checked to be in order."""
    moment = time.time() if now is None else now
    since = parse_time(source.get("since"), "since", moment)
    until = parse_time(source.get("until"), "until", moment)
    if since is not None and until is not None and since >= until:
        raise BadRequest(f"until: must be after since (since {since:g}, until {until:g})")
    return since, until
