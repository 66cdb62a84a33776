"""The public names of spanlog are exactly __all__, sorted (httpx's check)."""

from __future__ import annotations
import __future__

import types

import spanlog


def test_all_is_sorted_and_matches_the_public_names() -> None:
    """Every public attribute is in __all__ and every name in __all__ exists (some are
    loaded on first access)."""
    for name in spanlog.__all__:
        getattr(spanlog, name)
    public = {name for name, value in vars(spanlog).items()
              if not name.startswith("_")
              and not isinstance(value, (types.ModuleType, __future__._Feature))}
    assert public | {"__version__"} == set(spanlog.__all__)
    assert spanlog.__all__ == sorted(spanlog.__all__)


def test_unknown_attributes_still_raise() -> None:
    """The lazy loader does not turn typos into anything but AttributeError."""
    try:
        spanlog.wrap_opneai  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "wrap_opneai" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
