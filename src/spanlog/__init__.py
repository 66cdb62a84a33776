"""spanlog: log LLM-application traces from Python.

Start with :func:`init_logger`, then trace with :func:`traced` and :func:`start_span`; see
docs/sdk.md for the flush modes and every setting. ``import spanlog`` loads the standard
library only.
"""

from __future__ import annotations

import typing as _typing

from ._context import bind_context
from ._hooks import wait_until_scope
from ._logger import (
    Logger,
    aflush,
    current_logger,
    current_span,
    flush,
    init_logger,
    log,
    log_feedback,
    start_span,
    stats,
    submit_scores,
)
from ._propagation import extract_traceparent, inject_traceparent
from ._span import NoopSpan, Span
from ._traced import traced
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._llm import llm_span, log_llm, usage_metrics
    from ._openai import wrap_openai

# Loaded on first use: the LLM helpers and the OpenAI wrapper are not needed by everyone and
# would add to every cold start (the wrapper never imports openai before it is called).
_LAZY = {"wrap_openai": "._openai", "llm_span": "._llm", "log_llm": "._llm",
         "usage_metrics": "._llm"}


def __getattr__(name: str) -> _typing.Any:
    """Load the lazily exported names (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spanlog' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Logger",
    "NoopSpan",
    "Span",
    "__version__",
    "aflush",
    "bind_context",
    "current_logger",
    "current_span",
    "extract_traceparent",
    "flush",
    "init_logger",
    "inject_traceparent",
    "llm_span",
    "log",
    "log_feedback",
    "log_llm",
    "start_span",
    "stats",
    "submit_scores",
    "traced",
    "usage_metrics",
    "wait_until_scope",
    "wrap_openai",
]
