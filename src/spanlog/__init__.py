"""spanlog: log LLM-application traces from Python.

Start with :func:`init_logger`, then trace with :func:`traced` and :func:`start_span`; see
the README for the flush modes and every setting. ``import spanlog`` loads the standard
library only.
"""

from __future__ import annotations

from ._context import bind_context
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
    "log",
    "log_feedback",
    "start_span",
    "stats",
    "submit_scores",
    "traced",
]
