"""A project's settings (docs/protocol.md, "Project settings"): what each one means, its
default, and how a value is checked. Engines store only the values a user set, as one JSON
object per project; readers apply the defaults here.

- ``session_key``: the field whose value groups a project's traces into sessions
  (conversations), read from each trace's root span: a path into ``metadata`` in the filter
  language, default ``metadata.session_id`` (docs/protocol.md, "Sessions").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spanlog.server.query import FilterError, IsNull, parse
from spanlog.server.store._errors import BadRequest

DEFAULTS: dict[str, Any] = {"session_key": "metadata.session_id"}
_KEY_LENGTH = 200


def session_path(key: str) -> tuple[str, ...]:
    """The path of session key ``key`` (``metadata.session_id`` → ``("metadata",
    "session_id")``); :class:`BadRequest` naming ``session_key`` when it is not a path into
    ``metadata`` of object keys without double quotes or backslashes."""
    where = f"session_key: {key!r}"
    if not isinstance(key, str) or not key.strip() or len(key) > _KEY_LENGTH:
        raise BadRequest(f"session_key: must be a path such as 'metadata.session_id' of at "
                         f"most {_KEY_LENGTH} characters, got {key!r}")
    try:
        expr = parse(f"{key} IS NULL")
    except FilterError as exc:
        raise BadRequest(f"{where} is no field path: {exc}") from None
    if not isinstance(expr, IsNull) or expr.negated:
        raise BadRequest(f"{where} is no field path such as 'metadata.session_id'")
    path = expr.path
    if path[0] != "metadata" or len(path) < 2:
        raise BadRequest(f"{where} must be a path into metadata, such as "
                         "'metadata.session_id'")
    segments: list[str] = []
    for segment in path:
        if not isinstance(segment, str) or '"' in segment or "\\" in segment:
            raise BadRequest(f"{where}: each part must be an object key without double "
                             "quotes or backslashes (no [index])")
        segments.append(segment)
    return tuple(segments)


def check_settings(changes: Any) -> dict[str, Any]:
    """``changes`` (a JSON object of setting → value, null: back to the default) checked;
    :class:`BadRequest` naming the setting that is wrong."""
    if not isinstance(changes, Mapping) or not changes:
        raise BadRequest(f"settings: must be a non-empty object of settings "
                         f"({', '.join(DEFAULTS)})")
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in DEFAULTS:
            raise BadRequest(f"settings.{name}: no such setting (known: {', '.join(DEFAULTS)})")
        if value is not None:
            session_path(value)
            value = value.strip()
        checked[name] = value
    return checked


def merged(stored: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The values to store after ``changes`` (checked) apply to ``stored``: a null removes."""
    out = {k: v for k, v in stored.items() if k in DEFAULTS}
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def with_defaults(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of a project: the stored values, the defaults for the rest."""
    return {name: stored.get(name, default) for name, default in DEFAULTS.items()}
