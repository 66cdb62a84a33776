"""Every knob of the SDK in one table: keyword argument, ``SPANLOG_*`` variable, default.

:func:`load_config` is the one place where arguments and environment are read, parsed and
validated; everything else takes a finished :class:`Config`. A wrong value fails here with a
``ValueError`` that names the argument, the variable it came from and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_PORT = 8700  # the collector's, here so that the SDK, the CLI and serve agree
DEFAULT_API_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_PROJECT = "Global"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class Config:
    """The settled configuration of one :class:`~spanlog.Logger` (see the table in docs/sdk.md)."""

    __slots__ = ("api_key", "api_url", "async_flush", "async_transport", "batch_max_rows",
                 "exit_timeout", "flush_linger", "flush_timeout", "gzip_level",
                 "max_generator_items", "max_payload_bytes", "max_queue_rows", "max_retries",
                 "project", "project_id", "request_timeout", "retry_backoff",
                 "retry_backoff_max", "transport")

    project: str
    project_id: str | None
    api_key: str | None
    api_url: str
    async_flush: bool
    max_queue_rows: int
    batch_max_rows: int
    max_payload_bytes: int | None
    flush_linger: float
    flush_timeout: float
    exit_timeout: float
    request_timeout: float
    max_retries: int
    retry_backoff: float
    retry_backoff_max: float
    gzip_level: int
    max_generator_items: int
    # Not settable from the environment: objects, not strings.
    transport: Any
    async_transport: Callable[[], Any] | None

    def __init__(self, **values: Any) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is read-only; pass settings to init_logger()")

    def __repr__(self) -> str:
        shown = {n: getattr(self, n) for n in self.__slots__ if n != "api_key"}
        return f"Config({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


class Knob:
    """One configuration entry: how it is named, parsed and documented."""

    __slots__ = ("default", "env", "kind", "meaning", "minimum", "name")

    def __init__(self, name: str, env: str, default: Any, kind: str, minimum: float | None,
                 meaning: str) -> None:
        self.name = name
        self.env = env
        self.default = default
        self.kind = kind  # "str", "str?" (None allowed), "url", "bool", "int", "int?", "float"
        self.minimum = minimum
        self.meaning = meaning


# Platforms that freeze the process once the response is sent: a background flush would be
# frozen with the trace in it. AWS Lambda (AWS_LAMBDA_FUNCTION_NAME) has no waitUntil at all;
# Vercel (VERCEL=1 in every function) has one only through the runtime's hook, which is not
# there without the `vercel` package (and then spanlog finds none). A hook, when found, still
# comes first (docs/design.md, rule 1): this default costs latency only where a hook is missing.
FREEZING_PLATFORMS = ("AWS_LAMBDA_FUNCTION_NAME", "VERCEL")


def _async_flush_default(env: Mapping[str, str]) -> bool:
    return not any(env.get(name) for name in FREEZING_PLATFORMS)


KNOBS: tuple[Knob, ...] = (
    Knob("project", "SPANLOG_PROJECT", DEFAULT_PROJECT, "str", None,
         "project name; created on first use"),
    Knob("project_id", "SPANLOG_PROJECT_ID", None, "str?", None,
         "project id; wins over `project` when set"),
    Knob("api_key", "SPANLOG_API_KEY", None, "str?", None,
         "sent as `Authorization: Bearer`; a loopback collector without keys needs none"),
    Knob("api_url", "SPANLOG_API_URL", DEFAULT_API_URL, "url", None,
         "base URL of the collector"),
    Knob("async_flush", "SPANLOG_ASYNC_FLUSH", _async_flush_default, "bool", None,
         "true: deliver in the background; false: deliver as each trace ends, before "
         "returning (default false on AWS Lambda and Vercel)"),
    Knob("max_queue_rows", "SPANLOG_MAX_QUEUE_ROWS", 100_000, "int", 1,
         "rows held in memory; beyond it new rows are dropped and counted"),
    Knob("batch_max_rows", "SPANLOG_BATCH_MAX_ROWS", 1000, "int", 1,
         "rows per request at most"),
    Knob("max_payload_bytes", "SPANLOG_MAX_PAYLOAD_BYTES", None, "int?", 1024,
         "bytes per request at most (uncompressed); default: what the collector advertises"),
    Knob("flush_linger", "SPANLOG_FLUSH_LINGER", 0.05, "float", 0,
         "seconds the background flusher waits so that rows batch"),
    Knob("flush_timeout", "SPANLOG_FLUSH_TIMEOUT", 5.0, "float", 0,
         "seconds a trace-end flush (async_flush=false, or a waitUntil hook's) may take at "
         "most"),
    Knob("exit_timeout", "SPANLOG_EXIT_TIMEOUT", 5.0, "float", 0,
         "seconds the flush at interpreter exit may take at most"),
    Knob("request_timeout", "SPANLOG_REQUEST_TIMEOUT", 10.0, "float", 0.001,
         "seconds one HTTP request may take"),
    Knob("max_retries", "SPANLOG_MAX_RETRIES", 5, "int", 0,
         "retries of one request (connection errors, 429, 5xx) before its rows are "
         "requeued for the next flush"),
    Knob("retry_backoff", "SPANLOG_RETRY_BACKOFF", 0.1, "float", 0,
         "first retry delay in seconds; doubles each retry, with jitter"),
    Knob("retry_backoff_max", "SPANLOG_RETRY_BACKOFF_MAX", 5.0, "float", 0,
         "longest backoff between retries (a collector's Retry-After is honoured up to 60 s)"),
    Knob("gzip_level", "SPANLOG_GZIP_LEVEL", 1, "int", 0,
         "gzip level of request bodies, 0 sends them uncompressed"),
    Knob("max_generator_items", "SPANLOG_MAX_GENERATOR_ITEMS", 1000, "int", 0,
         "items of a traced generator kept as its output"),
)

_BY_NAME = {knob.name: knob for knob in KNOBS}
_OBJECT_KWARGS = frozenset({"transport", "async_transport"})


def _parse(knob: Knob, raw: Any, where: str) -> Any:
    kind = knob.kind.rstrip("?")
    if raw is None:
        if knob.kind.endswith("?"):
            return None
        raise ValueError(f"{where}: {knob.name} must not be None")
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true/false (or 1/0, yes/no, on/off)")
        if kind in ("str", "url"):
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError("expected a non-empty string")
            value = raw.strip()
            if kind == "url":
                if not value.startswith(("http://", "https://")):
                    raise ValueError("expected an http:// or https:// URL")
                value = value.rstrip("/")
            return value
        if isinstance(raw, bool):
            raise ValueError("expected a number, not a boolean")
        number: float
        if kind == "int":
            number = raw if isinstance(raw, int) else int(str(raw).strip())
        else:
            number = float(raw) if isinstance(raw, (int, float)) else float(str(raw).strip())
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if knob.minimum is not None and number < knob.minimum:
            raise ValueError(f"expected at least {knob.minimum:g}")
        return number
    except ValueError as exc:
        raise ValueError(f"{where}: {knob.name}={raw!r} is not valid: {exc}") from None


def load_config(kwargs: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Settle every knob from ``kwargs`` (None means unset), then ``SPANLOG_*``, then default.

    Raises ``TypeError`` for an unknown argument and ``ValueError`` for a bad value.
    """
    env = os.environ if environ is None else environ
    unknown = set(kwargs) - set(_BY_NAME) - _OBJECT_KWARGS
    if unknown:
        known = ", ".join(sorted([*_BY_NAME, *_OBJECT_KWARGS]))
        raise TypeError(f"init_logger() got unexpected argument(s) {sorted(unknown)}; "
                        f"known: {known}")
    values: dict[str, Any] = {}
    for knob in KNOBS:
        given = kwargs.get(knob.name)
        if given is not None:
            values[knob.name] = _parse(knob, given, "init_logger() argument")
        elif env.get(knob.env) not in (None, ""):
            values[knob.name] = _parse(knob, env[knob.env], f"environment variable {knob.env}")
        else:
            default = knob.default(env) if callable(knob.default) else knob.default
            values[knob.name] = default
    transport = kwargs.get("transport")
    if transport is not None and not callable(getattr(transport, "post", None)):
        raise ValueError("init_logger() argument transport must have a post(url, body, "
                         f"headers, timeout) method, got {type(transport).__name__}")
    async_transport = kwargs.get("async_transport")
    if async_transport is not None and not callable(async_transport):
        raise ValueError("init_logger() argument async_transport must be a zero-argument "
                         f"factory of AsyncTransport, got {type(async_transport).__name__}")
    if values["gzip_level"] > 9:
        raise ValueError(f"init_logger(): gzip_level={values['gzip_level']} is not valid: "
                         "expected 0 (off) to 9")
    return Config(transport=transport, async_transport=async_transport, **values)
