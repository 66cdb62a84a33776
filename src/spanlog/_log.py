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


class guard:  # lower case: used like a function, `with guard("...")`
    """``with _log.guard("what"):`` logs an exception raised in the block (with its
    traceback) as ``spanlog: what failed`` and swallows it: logging never raises into the
    user's code (``docs/design.md``). ``BaseException`` such as cancellation passes through.
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        if exc_type is None or not issubclass(exc_type, Exception):
            return False
        get().error("spanlog: %s failed", self.what, exc_info=(exc_type, exc, tb))
        return True

    def failed(self) -> None:
        """What ``__exit__`` does, from an ``except Exception:`` block: on a path that runs
        for every span, ``try``/``except`` costs nothing until something raises, where a
        ``with`` block costs two calls."""
        get().error("spanlog: %s failed", self.what, exc_info=True)
