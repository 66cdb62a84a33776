"""Check and snapshot the fields a user logs: ``input`` ... ``tags`` (docs/protocol.md, rows).

A bad value is a bug in the caller's code, so it is the one thing a logging call raises: a
``ValueError`` naming the call and the field. Everything else about logging never raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._rules import METRIC_RULE, SCORE_RULE, is_number, is_score, is_tag
from ._serialize import snapshot

FIELDS = ("input", "output", "expected", "error", "scores", "metadata", "metrics", "tags",
          "span_attributes")
SPAN_TYPES = ("llm", "score", "function", "eval", "task", "tool")
_SPAN_TYPE_SET = frozenset(SPAN_TYPES)
FEEDBACK_SOURCES = ("external", "app", "api")


def event_piece(event: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The row fields for ``event``, validated and snapshotted.

    ``where`` names the call in error messages, e.g. ``"span.log()"``.
    """
    piece: dict[str, Any] = {}
    for key, value in event.items():
        if key in ("input", "output", "expected"):
            piece[key] = snapshot(value)
        elif key == "scores":
            piece[key] = check_scores(value, where)
        elif key == "metadata":
            piece[key] = check_metadata(value, where)
        elif key == "tags":
            piece[key] = check_tags(value, where)
        elif key == "metrics":
            piece[key] = check_metrics(value, where)
        elif key == "error":
            piece[key] = format_error(value)
        elif key == "span_attributes":
            piece[key] = check_span_attributes(value, where)
        else:
            raise ValueError(f"{where}: unknown field {key!r}; the fields are "
                             f"{', '.join(FIELDS)}")
    return piece


def check_scores(scores: Any, where: str) -> dict[str, float | int | None] | None:
    """``scores`` as a dict of name to a number in [0, 1] or None (bools become 1 or 0)."""
    if scores is None:
        return None
    if not isinstance(scores, Mapping):
        raise ValueError(f"{where}: scores must be a dict of name to number in [0, 1], got "
                         f"{type(scores).__name__}")
    out: dict[str, float | int | None] = {}
    for name, score in scores.items():
        if not isinstance(name, str):
            raise ValueError(f"{where}: score names must be strings, got {name!r}")
        if score is None:
            out[name] = None
            continue
        if isinstance(score, bool):
            out[name] = int(score)
            continue
        if not is_score(score):
            raise ValueError(f"{where}: scores[{name!r}] must be {SCORE_RULE} or None, "
                             f"got {score!r}")
        out[name] = score if type(score) in (int, float) else float(score)
    return out


def check_metadata(metadata: Any, where: str) -> dict[str, Any] | None:
    """``metadata`` as a snapshotted dict with string keys."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where}: metadata must be a dict with string keys, got "
                         f"{type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str):
            raise ValueError(f"{where}: metadata keys must be strings, got {key!r}")
    copied = snapshot(dict(metadata))
    assert isinstance(copied, dict)
    return copied


def check_tags(tags: Any, where: str) -> list[str] | None:
    """``tags`` as a list of strings, duplicates removed, order kept."""
    if tags is None:
        return None
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise ValueError(f"{where}: tags must be a list of strings, got "
                         f"{type(tags).__name__}")
    out: list[str] = []
    for tag in tags:
        if not is_tag(tag):
            raise ValueError(f"{where}: tags must be strings, got {tag!r}")
        if tag not in out:
            out.append(tag)
    return out


def check_metrics(metrics: Any, where: str) -> dict[str, float | int | None] | None:
    """``metrics`` as a dict of name to number (or None; NaN and infinities become None)."""
    if metrics is None:
        return None
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{where}: metrics must be a dict of name to number, got "
                         f"{type(metrics).__name__}")
    out: dict[str, float | int | None] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise ValueError(f"{where}: metric names must be strings, got {name!r}")
        if value is not None and not is_number(value):
            raise ValueError(f"{where}: metrics[{name!r}] must be {METRIC_RULE}, got {value!r}")
        # JSON has no NaN or infinity and the collector wants numbers here: an unmeasurable
        # metric is null.
        out[name] = value if value is None or value - value == 0 else None
    return out


def check_span_attributes(attributes: Any, where: str) -> dict[str, Any] | None:
    """``span_attributes`` as a snapshotted dict with string keys and a known ``type``."""
    if attributes is None:
        return None
    if not isinstance(attributes, Mapping) or not all(isinstance(k, str) for k in attributes):
        raise ValueError(f"{where}: span_attributes must be a dict with string keys")
    if "type" in attributes:
        check_span_type(attributes["type"], where)
    copied = snapshot(dict(attributes))
    assert isinstance(copied, dict)
    return copied


def check_span_type(span_type: Any, where: str) -> str | None:
    """``span_type`` if it is None or one of :data:`SPAN_TYPES`."""
    if span_type is None or span_type in _SPAN_TYPE_SET:
        return span_type  # type: ignore[no-any-return]
    value = getattr(span_type, "value", None)  # a str Enum of the same names
    if value in _SPAN_TYPE_SET:
        return value  # type: ignore[no-any-return]
    raise ValueError(f"{where}: type must be one of {', '.join(SPAN_TYPES)}, got {span_type!r}")


def format_error(error: Any) -> Any:
    """An exception as its formatted traceback; anything else snapshotted."""
    if isinstance(error, BaseException):
        import traceback  # only on the error path: it is a heavy import

        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return snapshot(error)
