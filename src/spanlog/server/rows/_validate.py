"""The shape of a stored row: validation of incoming pieces.

Every row that reaches a store went through :func:`validate_row` first, so the engines can
trust types. Errors name the row's index in its request and the offending field, e.g.
``rows[3].scores.accuracy: must be a number in [0, 1] or null, got 1.5``.
"""

from __future__ import annotations

from typing import Any

from spanlog._merge import IS_MERGE, MERGE_PATHS
from spanlog._rules import METRIC_RULE, SCORE_RULE, is_number, is_score, is_tag

# docs/protocol.md's span types, plus the rest of the braintrust SDK's SpanTypeAttribute enum
# (0.48.1): its users may log those, and rejecting them would drop whole batches.
SPAN_TYPES = frozenset({
    "llm", "score", "function", "eval", "task", "tool",
    "automation", "facet", "preprocessor", "classifier", "review", "decision", "question",
    "log",
})

# Fields a piece may carry: docs/protocol.md's row table, plus the control fields the braintrust
# SDK sends on logs rows (see braintrust/db_fields.py).
ROW_FIELDS = frozenset({
    "id", "span_id", "root_span_id", "span_parents", "project_id", "project_name", "log_id",
    "created", IS_MERGE, MERGE_PATHS, "span_attributes", "metrics", "context", "input",
    "output", "expected", "error", "scores", "metadata", "tags", "_audit_source",
    "_audit_metadata", "comment", "origin", "_object_delete", "_parent_id", "is_root",
    "_async_scoring_control", "_skip_async_scoring", "_array_delete", "_xact_id",
    "org_id",
})

# Fields that identify another object type of the seed platform; spanlog stores project logs
# only, so a row naming one of these is refused rather than silently filed under a project.
FOREIGN_OBJECT_FIELDS = ("experiment_id", "dataset_id", "prompt_session_id", "function_data")
FOREIGN_OBJECT_FIELDS_SET = frozenset(FOREIGN_OBJECT_FIELDS)

# Fields the server sets itself; a client's values are dropped rather than trusted.
SERVER_FIELDS = frozenset({"_xact_id", "org_id", "is_root"})

MAX_ID_LENGTH = 1024


class InvalidRow(ValueError):
    """A piece does not have the shape docs/protocol.md requires; the message says where."""


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Every check below runs for every incoming row, on the event loop: each takes the row's
# location and the field's name apart and joins them only for an error message.

def _check_string(where: str, name: str, value: Any, *, nullable: bool = False,
                  max_length: int | None = None) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise InvalidRow(f"{where}.{name}: must be a string, got {_describe(value)}")
    if max_length is not None and len(value) > max_length:
        raise InvalidRow(f"{where}.{name}: longer than {max_length} characters")


def _check_object(where: str, name: str, value: Any, *, nullable: bool = True) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, dict):
        raise InvalidRow(f"{where}.{name}: must be an object, got {_describe(value)}")


def _check_scores(where: str, name: str, value: Any) -> None:
    _check_object(where, name, value)
    for key, score in (value or {}).items():
        if score is None:
            continue
        if not is_score(score):
            raise InvalidRow(f"{where}.{name}.{key}: must be {SCORE_RULE} or null, "
                             f"got {_describe(score)}")


def _check_metrics(where: str, name: str, value: Any) -> None:
    _check_object(where, name, value)
    for key, metric in (value or {}).items():
        if metric is not None and not is_number(metric):
            raise InvalidRow(f"{where}.{name}.{key}: must be {METRIC_RULE} or null, "
                             f"got {_describe(metric)}")


def _check_tags(where: str, name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise InvalidRow(f"{where}.{name}: must be a list of strings, got {_describe(value)}")
    for i, tag in enumerate(value):
        if not is_tag(tag):
            raise InvalidRow(f"{where}.{name}[{i}]: must be a string, got {_describe(tag)}")


def _check_span_attributes(where: str, name: str, value: Any) -> None:
    _check_object(where, name, value)
    if not value:
        return
    kind = value.get("type")
    if kind is not None and kind not in SPAN_TYPES:
        raise InvalidRow(f"{where}.{name}.type: must be one of {', '.join(sorted(SPAN_TYPES))}, "
                         f"got {_describe(kind)}")
    _check_string(where, f"{name}.name", value.get("name"), nullable=True)


def _check_merge_paths(where: str, name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(
            isinstance(p, list) and all(isinstance(s, str) for s in p) for p in value):
        raise InvalidRow(f"{where}.{name}: must be a list of key paths (lists of strings)")


_ALLOWED_FIELDS = ROW_FIELDS | frozenset(FOREIGN_OBJECT_FIELDS)
_OBJECT_FIELDS = ("metadata", "context", "_audit_metadata", "comment", "origin")


def validate_row(where: str, row: Any) -> dict[str, Any]:
    """Check one incoming piece; return it without server-owned fields.

    ``where`` names the piece in its request (``rows[3]``) and prefixes every error.
    """
    if not isinstance(row, dict):
        raise InvalidRow(f"{where}: must be an object, got {_describe(row)}")
    if not FOREIGN_OBJECT_FIELDS_SET.isdisjoint(row):
        for field in FOREIGN_OBJECT_FIELDS:
            if row.get(field) is not None:
                raise InvalidRow(f"{where}.{field}: this collector stores project logs only "
                                 "(use project_id or project_name)")
    if not _ALLOWED_FIELDS.issuperset(row):
        for field in row:
            if field not in _ALLOWED_FIELDS:
                raise InvalidRow(f"{where}: unknown field {field!r}")
    row_id = row.get("id")
    if row_id is None:
        raise InvalidRow(f"{where}.id: missing (every row needs a string id)")
    _check_string(where, "id", row_id, max_length=MAX_ID_LENGTH)
    if not row_id:
        raise InvalidRow(f"{where}.id: must not be empty")
    get = row.get
    if get("project_id") is None and get("project_name") is None:
        raise InvalidRow(f"{where}: needs project_id or project_name")
    for field in ("project_id", "project_name", "span_id", "root_span_id"):
        value = get(field)
        # The common case inline; _check_string decides (and words the error) otherwise.
        if value is not None and (type(value) is not str or len(value) > MAX_ID_LENGTH):
            _check_string(where, field, value, max_length=MAX_ID_LENGTH)
    if get("log_id") not in (None, "g"):
        raise InvalidRow(f"{where}.log_id: must be \"g\" (project logs), got "
                         f"{_describe(row['log_id'])}")
    parents = get("span_parents")
    if parents is not None:
        if not isinstance(parents, list):
            raise InvalidRow(f"{where}.span_parents: must be a list of span ids or null, "
                             f"got {_describe(parents)}")
        for i, parent in enumerate(parents):
            if type(parent) is not str or len(parent) > MAX_ID_LENGTH:
                _check_string(where, f"span_parents[{i}]", parent, max_length=MAX_ID_LENGTH)
    _check_string(where, "created", get("created"), nullable=True)
    if not isinstance(get(IS_MERGE, False), (bool, type(None))):
        raise InvalidRow(f"{where}.{IS_MERGE}: must be true or false")
    _check_merge_paths(where, MERGE_PATHS, get(MERGE_PATHS))
    _check_span_attributes(where, "span_attributes", get("span_attributes"))
    _check_metrics(where, "metrics", get("metrics"))
    _check_scores(where, "scores", get("scores"))
    _check_tags(where, "tags", get("tags"))
    for field in _OBJECT_FIELDS:
        value = get(field)
        if value is not None and not isinstance(value, dict):
            _check_object(where, field, value)
    _check_string(where, "_audit_source", get("_audit_source"), nullable=True)
    if SERVER_FIELDS.isdisjoint(row):
        return dict(row)
    return {k: v for k, v in row.items() if k not in SERVER_FIELDS}
