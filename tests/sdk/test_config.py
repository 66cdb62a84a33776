"""Configuration: every knob as an argument or a SPANLOG_* variable, checked in one place."""

from __future__ import annotations

import pytest

import spanlog
from spanlog._config import KNOBS, load_config


def test_defaults() -> None:
    """No arguments, no environment: project Global, the local collector, async flush."""
    config = load_config({}, environ={})
    assert config.project == "Global" and config.api_url == "http://127.0.0.1:8700"
    assert config.async_flush is True and config.api_key is None


def test_environment_then_arguments() -> None:
    """SPANLOG_* variables set defaults; keyword arguments win over them."""
    env = {"SPANLOG_PROJECT": "from-env", "SPANLOG_API_URL": "https://c.example/",
           "SPANLOG_ASYNC_FLUSH": "off", "SPANLOG_MAX_QUEUE_ROWS": "50",
           "SPANLOG_FLUSH_LINGER": "0.5", "SPANLOG_API_KEY": "k"}
    config = load_config({}, environ=env)
    assert (config.project, config.api_url, config.async_flush, config.max_queue_rows,
            config.flush_linger, config.api_key) == ("from-env", "https://c.example", False,
                                                     50, 0.5, "k")
    config = load_config({"project": "arg", "async_flush": True}, environ=env)
    assert config.project == "arg" and config.async_flush is True


@pytest.mark.parametrize("platform", [{"AWS_LAMBDA_FUNCTION_NAME": "f"}, {"VERCEL": "1"}])
def test_freezing_platforms_default_to_flushing_at_trace_end(platform: dict[str, str]) -> None:
    """On AWS Lambda and on Vercel async_flush defaults to False; an argument or
    SPANLOG_ASYNC_FLUSH still sets it, and the platform is read from the given environment."""
    assert load_config({}, environ=platform).async_flush is False
    assert load_config({"async_flush": True}, environ=platform).async_flush is True
    on = {**platform, "SPANLOG_ASYNC_FLUSH": "true"}
    assert load_config({}, environ=on).async_flush is True
    assert load_config({}, environ={"VERCEL": ""}).async_flush is True


@pytest.mark.parametrize(("kwargs", "env", "message"), [
    ({}, {"SPANLOG_ASYNC_FLUSH": "maybe"}, "SPANLOG_ASYNC_FLUSH: async_flush='maybe'"),
    ({}, {"SPANLOG_MAX_QUEUE_ROWS": "lots"}, "SPANLOG_MAX_QUEUE_ROWS"),
    ({"max_queue_rows": 0}, {}, "max_queue_rows=0 is not valid: expected at least 1"),
    ({"api_url": "ftp://x"}, {}, "api_url='ftp://x' is not valid"),
    ({"flush_timeout": -1}, {}, "flush_timeout=-1"),
    ({"flush_linger": float("nan")}, {}, "finite"),
    ({"gzip_level": 12}, {}, "gzip_level=12"),
    ({"max_retries": True}, {}, "not a boolean"),
    ({"transport": object()}, {}, "transport must have a post"),
])
def test_bad_values_name_the_knob_and_its_source(kwargs: dict[str, object],
                                                 env: dict[str, str], message: str) -> None:
    """A bad value is a ValueError naming the argument or variable and what was expected."""
    with pytest.raises(ValueError) as caught:
        load_config(kwargs, environ=env)
    assert message in str(caught.value)


def test_unknown_argument_is_a_type_error() -> None:
    """A misspelled setting fails loudly, listing the known ones."""
    with pytest.raises(TypeError, match="async_flsh"):
        spanlog.init_logger(async_flsh=True)


def test_every_knob_has_an_env_var_and_a_meaning() -> None:
    """The table that documents the settings is complete."""
    for knob in KNOBS:
        assert knob.env == "SPANLOG_" + knob.name.upper() and knob.meaning


def test_config_is_read_only() -> None:
    """A logger's settled configuration cannot be changed behind its back."""
    config = load_config({}, environ={})
    with pytest.raises(AttributeError):
        config.project = "other"  # type: ignore[misc]
