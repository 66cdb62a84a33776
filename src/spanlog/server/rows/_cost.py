"""The estimated cost of one stored span in US dollars, and how the command line prints it.

:func:`span_cost` reads a row as the collector stores it (docs/protocol.md). The rules
(docs/collector.md, "Cost"):

- a cost the client logged itself wins: ``metrics.estimated_cost`` (braintrust's name, and
  where spanlog's OpenTelemetry mapping puts OpenInference's ``llm.cost.total``), else
  ``metrics.cost`` (braintrust's OpenRouter integration logs OpenRouter's ``usage.cost``
  there); on any span, LLM or not;
- otherwise an ``llm`` span is priced from ``metadata.model``, ``metadata.provider`` and its
  token metrics with the price database of the ``genai-prices`` package, at the price in force
  on the span's day (``metrics.start``, else ``created``);
- an unknown model or provider, missing or bad token counts, or a span of another type give
  None, never 0: an unknown cost is not a free one.

Speed: the database's own calculator takes about 0.1 ms a call (Decimal arithmetic over a unit
registry). This runs once per LLM span at ingest and over every row when an index is rebuilt,
so the prices of one (provider, model, day) are looked up once and kept as float per-token
rates; a span then costs a few multiplications. Models whose price depends on the time of
day, or on units these rates do not model, are priced by the database's calculator per span.
tests/server/test_cost.py checks both paths against the calculator over every OpenAI,
Anthropic and Google model in the database.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["format_cost", "load_prices", "span_cost"]

_DAY = 86_400.0
_YEAR_10000 = 253_402_300_800.0  # what datetime can hold
# No model or provider is named longer; the price cache holds on to the names it is given.
_MAX_NAME = 256
_MAX_INT = 2**53  # larger ints are no token count, and a float could not hold them exactly

# The database's token prices these rates model, by the token count that pays them. A price
# of another unit whose count a row never carries (web searches, audio or image tokens, 1-hour
# cache writes) adds nothing to a span's cost, there as here; a price for counts the database
# would infer from the reported ones (``input_text_mtok`` and the like) sends the model to the
# database's calculator.
_TOKEN_PRICES = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
_UNREPORTED = frozenset({
    "cache_write_5m_mtok", "cache_write_1h_mtok",
    "input_audio_mtok", "output_audio_mtok", "cache_audio_read_mtok", "cache_audio_write_mtok",
    "input_image_mtok", "output_image_mtok", "cache_image_read_mtok", "cache_image_write_mtok",
    "input_video_mtok", "output_video_mtok", "cache_video_read_mtok", "cache_video_write_mtok",
    "input_audio_hours", "output_audio_hours", "audio_hours", "input_mchars",
    "web_searches_kcount", "storage_searches_kcount", "social_searches_kcount",
    "code_executions_kcount", "rerank_searches_kcount", "requests_kcount",
})

# (per-token price below every tier, ((tier start in input tokens, per-token price), ...)):
# a tier's price applies to all tokens of a request whose input exceeds its start, the
# database's rule (genai_prices.types.TieredPrices).
_Price = tuple[float, tuple[tuple[int, float], ...]]


@dataclass(frozen=True, slots=True)
class _Rates:
    """One model's prices on one day, per token; None where the database has no price."""

    per_request: float
    input: _Price | None
    cache_read: _Price | None
    cache_write: _Price | None
    output: _Price | None


class _AskDatabase:
    """The model's price needs the database's calculator for each span."""


_ASK_DATABASE = _AskDatabase()


def span_cost(row: Mapping[str, Any]) -> float | None:
    """The estimated cost of ``row``, one stored span, in US dollars; None when unknown.

    A cost the client logged (``metrics.estimated_cost``, else ``metrics.cost``) wins; an
    ``llm`` span without one is priced from its model, provider and token counts at the price
    of the span's day. Never raises on malformed rows: what cannot be read gives None.
    """
    metrics = row.get("metrics")
    if not isinstance(metrics, Mapping):
        metrics = {}
    for name in ("estimated_cost", "cost"):
        logged = _count(metrics.get(name))
        if logged is not None:
            return logged
    attributes = row.get("span_attributes")
    if not isinstance(attributes, Mapping) or attributes.get("type") != "llm":
        return None
    metadata = row.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    model = metadata.get("model")
    provider = metadata.get("provider")
    if not (isinstance(model, str) and 0 < len(model) <= _MAX_NAME and (
            provider is None or isinstance(provider, str) and len(provider) <= _MAX_NAME)):
        return None
    prompt = _count(metrics.get("prompt_tokens"))
    # Embeddings report no completion; a chat call's usage always has both counts.
    completion = _count(metrics.get("completion_tokens", 0))
    cache_read = _count(metrics.get("prompt_cached_tokens", 0))
    cache_write = _count(metrics.get("prompt_cache_creation_tokens", 0))
    when = _span_time(row, metrics)
    if prompt is None or completion is None or cache_read is None or cache_write is None \
            or when is None:
        return None
    if cache_read + cache_write > prompt:
        # prompt_tokens counts cache reads and writes in (OpenAI; braintrust's Anthropic
        # integration), except where it holds Anthropic's input_tokens as reported, which
        # leaves them out (spanlog._llm.usage_metrics): more cached tokens than prompt tokens
        # can only mean the latter.
        prompt += cache_read + cache_write
    rates = _rates(provider or None, model, math.floor(when / _DAY))
    if rates is None:
        return None
    if isinstance(rates, _AskDatabase):
        return _database_cost(provider or None, model, when, prompt, completion, cache_read,
                              cache_write)
    cost = rates.per_request + _pay(rates.output, completion, prompt)
    uncached = prompt
    if rates.cache_read is not None:
        uncached -= cache_read
        cost += _pay(rates.cache_read, cache_read, prompt)
    if rates.cache_write is not None:
        uncached -= cache_write
        cost += _pay(rates.cache_write, cache_write, prompt)
    cost += _pay(rates.input, uncached, prompt)
    return cost if cost < math.inf else None


def format_cost(value: float | None) -> str:
    """``value`` in US dollars as the command line prints it: ``$12.34``, ``$0.50``,
    ``$0.0123``, ``$0.000042``, ``<$0.000001``; "–" for an unknown cost."""
    if value is None or not math.isfinite(value):
        return "–"
    sign, magnitude = ("-" if value < 0 else ""), abs(value)
    if magnitude >= 1 or magnitude == 0:
        return f"{sign}${magnitude:,.2f}"
    if magnitude < 1e-6:
        return f"{sign}<$0.000001"
    # Below a dollar, three significant digits (at least the cents), so a span's fraction of
    # a cent still shows.
    text = f"{magnitude:.{2 - math.floor(math.log10(magnitude))}f}".rstrip("0")
    return f"{sign}${text}{'0' * max(0, 2 - len(text.partition('.')[2]))}"


def _count(value: Any) -> float | None:
    """``value`` as a float when it is a finite number >= 0 (not a bool), else None."""
    kind = type(value)
    if kind is float:
        return value if 0 <= value < math.inf else None
    if kind is int:
        return float(value) if 0 <= value <= _MAX_INT else None
    return None


def _span_time(row: Mapping[str, Any], metrics: Mapping[str, Any]) -> float | None:
    """When the span ran, in Unix seconds: ``metrics.start``, else the row's ``created``."""
    start = metrics.get("start")
    if type(start) is float or type(start) is int:
        return float(start) if 0 <= start < _YEAR_10000 else None
    created = row.get("created")
    if not isinstance(created, str):
        return None
    try:
        stamp = datetime.fromisoformat(created)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    seconds = stamp.timestamp()
    return seconds if 0 <= seconds < _YEAR_10000 else None


def _pay(price: _Price | None, tokens: float, prompt: float) -> float:
    if price is None or not tokens:
        return 0.0
    per_token, tiers = price
    for start, tier_price in reversed(tiers):
        if prompt > start:
            return tier_price * tokens
    return per_token * tokens


@functools.lru_cache(maxsize=4096)
def _rates(provider: str | None, model: str, day: int) -> _Rates | _AskDatabase | None:
    """The prices of ``model`` from ``provider`` on UTC day ``day`` (days since 1970), or
    None when the database knows no such model or provider."""
    calculation = _database_price(provider, model, datetime.fromtimestamp(day * _DAY,
                                                                           timezone.utc))
    if calculation is None:
        return None
    from genai_prices.types import TieredPrices, TimeOfDateConstraint

    info = calculation.model
    constraints = [price.constraint for price in info.prices] if isinstance(info.prices, list) \
        else []
    constraints += [variant.constraint for variant in info.price_variants or ()]
    prices = {key: value for key, value in vars(calculation.model_price).items()
              if not key.startswith("_") and value is not None}
    if (any(isinstance(constraint, TimeOfDateConstraint) for constraint in constraints)
            or not set(prices) <= _UNREPORTED.union(_TOKEN_PRICES)):
        return _ASK_DATABASE

    def per_token(key: str) -> _Price | None:
        price = prices.get(key)
        if price is None:
            return None
        if isinstance(price, TieredPrices):
            return (float(price.base) / 1e6,
                    tuple((tier.start, float(tier.price) / 1e6) for tier in price.tiers))
        return (float(price) / 1e6, ())

    # Zero tokens still pay a price per request, where the model has one.
    return _Rates(float(calculation.total_price), *(per_token(key) for key in _TOKEN_PRICES))


def load_prices() -> None:
    """Import the price database now (a few hundred ms), so that the first LLM span to
    price does not wait for it; the collector does this on a thread as it starts."""
    try:
        import genai_prices  # noqa: F401
    except ImportError:  # reported by the first estimate that needs it
        pass


def _database_price(provider: str | None, model: str, when: datetime, **usage: float) -> Any:
    """genai_prices' calculation for ``usage``, or None for an unknown model or provider, or
    usage the database refuses."""
    try:
        import genai_prices
    except ImportError as exc:  # pragma: no cover - the server extra installs it
        raise ModuleNotFoundError(
            "span costs need the genai-prices package: pip install 'spanlog[server]'") from exc
    try:
        return genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider,
                                       genai_request_timestamp=when)
    except (LookupError, ValueError):
        return None


def _database_cost(provider: str | None, model: str, when: float, prompt: float,
                   completion: float, cache_read: float, cache_write: float) -> float | None:
    calculation = _database_price(
        provider, model, datetime.fromtimestamp(when, timezone.utc), input_tokens=prompt,
        output_tokens=completion, cache_read_tokens=cache_read, cache_write_tokens=cache_write)
    cost = None if calculation is None else float(calculation.total_price)
    return cost if cost is not None and cost < math.inf else None
