"""The ``spanlog`` stdlib logger, imported on first use (``logging`` is a costly import).

Internal errors and delivery problems are reported here, never raised into user code.
"""

from __future__ import annotations

from typing import Any

_logger: Any = None


def get() -> Any:
    """The ``logging.getLogger("spanlog")`` logger."""
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger("spanlog")
    return _logger


def debug(message: str, *args: Any) -> None:
    """Log at DEBUG."""
    get().debug(message, *args)


def warning(message: str, *args: Any) -> None:
    """Log at WARNING."""
    get().warning(message, *args)


def error(message: str, *args: Any) -> None:
    """Log at ERROR."""
    get().error(message, *args)


def exception(message: str, *args: Any) -> None:
    """Log at ERROR with the traceback of the exception being handled."""
    get().error(message, *args, exc_info=True)
