"""Record one LLM call as a span of type ``llm``: model, token metrics, time to first token.

Two ways in, both small enough to wrap any client in a few lines:

- :func:`log_llm` attaches model metadata, token counts and timing to the current span, for
  use inside ``@traced(type="llm")`` functions;
- :func:`llm_span` opens the span itself and hands back an :class:`LLMSpan` that measures time
  to first token and ends exactly once, whether used as ``with``, ``async with`` or a plain
  object ended later (how ``wrap_openai`` records streams that outlive the call).

Token names follow the row metrics of docs/protocol.md: ``prompt_tokens``, ``completion_tokens``,
``tokens``, plus details such as ``prompt_cached_tokens`` and ``completion_reasoning_tokens``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from spanlog._log import guard
from spanlog._logger import current_span, open_span
from spanlog._span import NoopSpan, Span, skip_prefixes

__all__ = ["LLMSpan", "llm_span", "log_llm", "usage_metrics"]


# Provider spellings of the three headline counts (OpenAI chat, OpenAI Responses, Anthropic,
# Gemini and friends all say the same three things differently).
_HEADLINE = {
    "prompt_tokens": "prompt_tokens",
    "input_tokens": "prompt_tokens",
    "prompt_token_count": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "output_tokens": "completion_tokens",
    "candidates_token_count": "completion_tokens",
    "total_tokens": "tokens",
    "tokens": "tokens",
    "total_token_count": "tokens",
    # Anthropic reports cache use beside the headline counts rather than in a details object.
    "cache_read_input_tokens": "prompt_cached_tokens",
    "cache_creation_input_tokens": "prompt_cache_creation_tokens",
}
# Anthropic's input_tokens leaves out the tokens read from and written to its cache, which
# every other provider's prompt count includes: they are added back (as braintrust's SDK does),
# so that prompt_tokens means the same whoever reported it.
_BESIDE_PROMPT = ("cache_read_input_tokens", "cache_creation_input_tokens")

# ``input_tokens_details.cached_tokens`` becomes ``prompt_cached_tokens``, and so on.
_DETAIL_PREFIX = {
    "prompt_tokens_details": "prompt",
    "input_tokens_details": "prompt",
    "completion_tokens_details": "completion",
    "output_tokens_details": "completion",
}


def _number(value: Any) -> bool:
    kind = type(value)  # exact types: bool is an int subclass, and this runs per usage field
    return kind is int or kind is float or (kind is not bool and isinstance(value, (int, float)))


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if value is None or type(value) is dict or isinstance(value, Mapping):
        return value
    # Pydantic models (openai's, anthropic's usage types) and plain objects keep their fields
    # in __dict__: reading it is many times cheaper than model_dump() on every call.
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, Mapping):
        extra = getattr(value, "__pydantic_extra__", None)
        return {**fields, **extra} if extra else fields
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        dumped = dump()
        return dumped if isinstance(dumped, Mapping) else None
    return None


def usage_metrics(usage: Any) -> dict[str, float]:
    """The row metrics for a provider's usage report (a mapping or a pydantic object).

    Headline counts map to ``prompt_tokens``, ``completion_tokens`` and ``tokens`` whatever
    the provider calls them; ``*_tokens_details`` entries become ``prompt_<kind>`` or
    ``completion_<kind>`` (``prompt_cached_tokens``, ``completion_reasoning_tokens``). Unknown
    numeric ``*_tokens`` fields are kept under their own name; ``tokens`` is filled in as the
    sum when only the two parts are given. ``prompt_tokens`` always counts cached prompt
    tokens in (Anthropic's ``input_tokens`` does not: its cache counts are added).
    """
    fields = _as_mapping(usage)
    metrics: dict[str, float] = {}
    if not fields:
        return metrics
    for key, value in fields.items():
        if key in _DETAIL_PREFIX:
            details = _as_mapping(value) or {}
            prefix = _DETAIL_PREFIX[key]
            for kind, count in details.items():
                if _number(count):
                    name = kind if kind.endswith("tokens") else f"{kind}_tokens"
                    metrics[f"{prefix}_{name}"] = count
        elif _number(value):
            if key in _HEADLINE:
                metrics[_HEADLINE[key]] = value
            elif key.endswith("tokens"):
                metrics[key] = value
    if "input_tokens" in fields and "prompt_tokens" in metrics:
        for key in _BESIDE_PROMPT:
            if _number(fields.get(key)):
                metrics["prompt_tokens"] += fields[key]
    if "tokens" not in metrics and "prompt_tokens" in metrics and "completion_tokens" in metrics:
        metrics["tokens"] = metrics["prompt_tokens"] + metrics["completion_tokens"]
    return metrics


def _llm_fields(model: str | None, provider: str | None, metadata: Mapping[str, Any] | None,
                usage: Any, prompt_tokens: float | None, completion_tokens: float | None,
                tokens: float | None, time_to_first_token: float | None,
                metrics: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metadata and metrics of an LLM call from the keyword arguments both entry points take."""
    meta: dict[str, Any] = {}
    if provider is not None:
        meta["provider"] = provider
    if model is not None:
        meta["model"] = model
    if metadata:
        meta.update(metadata)
    numbers: dict[str, Any] = usage_metrics(usage) if usage is not None else {}
    for name, value in (("prompt_tokens", prompt_tokens),
                        ("completion_tokens", completion_tokens), ("tokens", tokens),
                        ("time_to_first_token", time_to_first_token)):
        if value is not None:
            numbers[name] = value
    if metrics:
        numbers.update(metrics)
    if ("tokens" not in numbers and _number(numbers.get("prompt_tokens"))
            and _number(numbers.get("completion_tokens"))):
        numbers["tokens"] = numbers["prompt_tokens"] + numbers["completion_tokens"]
    return meta, numbers


_UNSET: Any = object()
_SKIP = skip_prefixes()
_SKIPS: dict[tuple[str, ...], str | tuple[str, ...]] = {}


def _skip_for(modules: tuple[str, ...]) -> str | tuple[str, ...]:
    """``skip_prefixes(modules)``, computed once per tuple: a wrapper passes the same one on
    every call."""
    try:
        return _SKIPS[modules]
    except (KeyError, TypeError):  # TypeError: a list, not hashable
        skip = skip_prefixes(tuple(modules))
        if type(modules) is tuple and len(_SKIPS) < 64:
            _SKIPS[modules] = skip
        return skip


def log_llm(*, input: Any = _UNSET, output: Any = _UNSET, model: str | None = None,
            provider: str | None = None, usage: Any = None, prompt_tokens: float | None = None,
            completion_tokens: float | None = None, tokens: float | None = None,
            time_to_first_token: float | None = None, metadata: Mapping[str, Any] | None = None,
            metrics: Mapping[str, Any] | None = None) -> None:
    """Attach an LLM call's model, tokens and timing to the current span.

    Meant for the body of a ``@traced(type="llm")`` function that calls a client spanlog
    does not wrap itself. ``usage`` takes the provider's usage object as it is (see
    :func:`usage_metrics`); the explicit counts override it. ``tokens`` defaults to
    ``prompt_tokens + completion_tokens``. Outside any span this does nothing.
    """
    meta, numbers = _llm_fields(model, provider, metadata, usage, prompt_tokens,
                                completion_tokens, tokens, time_to_first_token, metrics)
    event: dict[str, Any] = {}
    if input is not _UNSET:
        event["input"] = input
    if output is not _UNSET:
        event["output"] = output
    if meta:
        event["metadata"] = meta
    if numbers:
        event["metrics"] = numbers
    if event:
        current_span().log(**event)


class LLMSpan:
    """One LLM call in progress: a span of type ``llm`` that knows when it started.

    Record the first token with :meth:`first_token`, the result with :meth:`log` (same
    keywords as :func:`log_llm`), a failure with :meth:`fail`; :meth:`end` ends the span once,
    however many times it is called and from whichever thread (a garbage-collected stream
    ends its span from the collector's thread). Used as ``with`` / ``async with`` it ends on
    exit and records an exception that escapes the block, then lets it propagate. The span
    does not become the current span: it is a leaf, and you log on this object.
    """

    __slots__ = ("_ended", "_first", "_first_logged", "_lock", "_start", "span")

    def __init__(self, name: str = "LLM", *, input: Any = _UNSET, model: str | None = None,
                 provider: str | None = None, metadata: Mapping[str, Any] | None = None,
                 parent: Any = None, skip_modules: tuple[str, ...] = ()) -> None:
        meta, _ = _llm_fields(model, provider, metadata, None, None, None, None, None, None)
        event: dict[str, Any] = {}
        if input is not _UNSET:
            event["input"] = input
        if meta:
            event["metadata"] = meta
        self._start = time.perf_counter()
        self._first: float | None = None
        self._first_logged = False
        self._ended = False
        self._lock = threading.Lock()
        skip = _skip_for(skip_modules) if skip_modules else _SKIP
        self.span: Span | NoopSpan = open_span(name, "llm", parent, event, 3, skip)

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` has run."""
        return self._ended

    def first_token(self) -> None:
        """Mark now as the arrival of the first token (only the first call counts)."""
        if self._first is None:
            self._first = time.perf_counter() - self._start

    def _write(self, event: dict[str, Any]) -> None:
        # The time to first token rides along with the next write: one piece, not two.
        if self._first is not None and not self._first_logged:
            self._first_logged = True
            metrics = event.setdefault("metrics", {})
            metrics.setdefault("time_to_first_token", self._first)
        if event:
            self.span.log(**event)

    def log(self, *, input: Any = _UNSET, output: Any = _UNSET, error: Any = _UNSET,
            model: str | None = None, provider: str | None = None, usage: Any = None,
            prompt_tokens: float | None = None, completion_tokens: float | None = None,
            tokens: float | None = None, metadata: Mapping[str, Any] | None = None,
            metrics: Mapping[str, Any] | None = None) -> None:
        """Log fields of the call on its span (values are snapshotted now).

        ``usage`` is the provider's usage object as it is (see :func:`usage_metrics`);
        ``model`` and ``provider`` go into ``metadata``. Raises ``ValueError`` for a bad
        field, as ``span.log`` does.
        """
        meta, numbers = _llm_fields(model, provider, metadata, usage, prompt_tokens,
                                    completion_tokens, tokens, None, metrics)
        event: dict[str, Any] = {}
        for key, value in (("input", input), ("output", output), ("error", error)):
            if value is not _UNSET:
                event[key] = value
        if meta:
            event["metadata"] = meta
        if numbers:
            event["metrics"] = numbers
        self._write(event)

    def fail(self, error: BaseException) -> None:
        """Record ``error`` on the span, formatted with its traceback (the caller re-raises)."""
        # The caller's own error is what must propagate, untouched.
        with guard("recording an llm call's error"):
            self.span.log(error=error)

    def _close(self) -> bool:
        """Mark the call ended, once; say whether the span is still to be ended."""
        with self._lock:
            if self._ended:
                return False
            self._ended = True
        with guard("logging an llm span's timing"):
            self._write({})
        return True

    def end(self) -> None:
        """End the span (later calls do nothing)."""
        if self._close():
            self.span.end()

    async def aend(self) -> None:
        """:meth:`end` for async code: a flush due at the end of the trace is awaited, not
        run blocking on the event loop (``async_flush=False``)."""
        if self._close():
            await self.span.aend()

    def __enter__(self) -> LLMSpan:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and isinstance(exc, Exception):
            self.fail(exc)
        self.end()

    async def __aenter__(self) -> LLMSpan:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is not None and isinstance(exc, Exception):
            self.fail(exc)
        await self.aend()


def llm_span(name: str = "LLM", *, input: Any = _UNSET, model: str | None = None,
             provider: str | None = None, metadata: Mapping[str, Any] | None = None,
             parent: Any = None, skip_modules: tuple[str, ...] = ()) -> LLMSpan:
    """Start a span of type ``llm`` for one model call, under the current span by default.

    ``input`` is what the model is sent (the messages); ``model`` and ``provider`` go into
    ``metadata`` with any request parameters given there. Use it as ``with`` / ``async with``
    or keep the object and call :meth:`LLMSpan.end` when a stream finishes.
    ``skip_modules`` names module prefixes (such as ``("anthropic.",)``) whose frames are
    passed over when the row records its caller, for a wrapper that the client library
    itself calls back into: the recorded caller is then the user's code.
    """
    return LLMSpan(name, input=input, model=model, provider=provider, metadata=metadata,
                   parent=parent, skip_modules=skip_modules)
