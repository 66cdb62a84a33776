"""A span's estimated cost (spanlog.server.rows._cost): priced from genai-prices' database at
the price of the span's day, a client-logged cost wins, and what is unknown stays None.

Expected values are computed from the per-million-token prices read out of the database
itself (``model_price``), so a data update does not break these tests, and the fast path is
compared with the database's own calculator over every model it lists."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import StartDateConstraint, TieredPrices
from hypothesis import given, settings
from hypothesis import strategies as st

import spanlog
from spanlog._logger import set_current_logger
from spanlog._otel_rows import OtelSpan, span_to_row
from spanlog.server.rows import _cost
from spanlog.server.rows._cost import format_cost, span_cost

NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc).timestamp()


def llm_row(model: Any = "gpt-4o", provider: Any = "openai", start: Any = NOW,
            **metrics: Any) -> dict[str, Any]:
    metadata = {"model": model} if provider is None else {"model": model, "provider": provider}
    return {"id": "r", "span_id": "s", "span_attributes": {"type": "llm", "name": "chat"},
            "metadata": metadata, "metrics": {"start": start, **metrics}}


def per_token(provider: str, model: str, when: float, key: str) -> float:
    """The database's price of one token of kind ``key`` (``input_mtok``...) at ``when``,
    below any long-context tier."""
    calculation = genai_prices.calc_price(
        genai_prices.Usage(), model, provider_id=provider,
        genai_request_timestamp=datetime.fromtimestamp(when, timezone.utc))
    price = getattr(calculation.model_price, key)
    assert price is not None, f"{model} has no {key} in the database"
    base = price.base if isinstance(price, TieredPrices) else price
    assert isinstance(base, Decimal)
    return float(base) / 1e6


def test_an_openai_call_costs_its_tokens_at_the_databases_prices():
    rate = {key: per_token("openai", "gpt-4o", NOW, key)
            for key in ("input_mtok", "cache_read_mtok", "output_mtok")}
    cost = span_cost(llm_row(prompt_tokens=1200, completion_tokens=300, prompt_cached_tokens=200,
                             tokens=1500))
    # OpenAI's prompt_tokens count the cached ones in; those pay the cache-read price.
    expected = (1000 * rate["input_mtok"] + 200 * rate["cache_read_mtok"]
                + 300 * rate["output_mtok"])
    assert cost == pytest.approx(expected, rel=1e-12)
    assert rate["cache_read_mtok"] < rate["input_mtok"]  # the cache discount is really applied


def test_reasoning_tokens_are_part_of_the_completion_and_priced_as_output():
    plain = span_cost(llm_row("o4-mini", prompt_tokens=100, completion_tokens=900))
    with_detail = span_cost(llm_row("o4-mini", prompt_tokens=100, completion_tokens=900,
                                    completion_reasoning_tokens=800))
    assert plain is not None and with_detail == plain


def test_an_anthropic_call_pays_cache_reads_and_writes_at_their_prices():
    model = "claude-sonnet-4-5"
    rate = {key: per_token("anthropic", model, NOW, key)
            for key in ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")}
    # braintrust's Anthropic integration: prompt_tokens = input + cache reads + cache writes.
    row = llm_row(model, "anthropic", prompt_tokens=100 + 5000 + 2000, completion_tokens=50,
                  prompt_cached_tokens=5000, prompt_cache_creation_tokens=2000)
    expected = (100 * rate["input_mtok"] + 5000 * rate["cache_read_mtok"]
                + 2000 * rate["cache_write_mtok"] + 50 * rate["output_mtok"])
    assert span_cost(row) == pytest.approx(expected, rel=1e-12)


def test_anthropic_input_tokens_logged_as_reported_still_count_the_cache():
    """spanlog's log_llm stores Anthropic's input_tokens, which leaves cache reads out, as
    prompt_tokens: fewer prompt tokens than cached ones cannot include them."""
    inclusive = llm_row("claude-sonnet-4-5", "anthropic", prompt_tokens=20 + 9000,
                        completion_tokens=10, prompt_cached_tokens=9000)
    as_reported = llm_row("claude-sonnet-4-5", "anthropic", prompt_tokens=20,
                          completion_tokens=10, prompt_cached_tokens=9000)
    assert span_cost(as_reported) == pytest.approx(span_cost(inclusive), rel=1e-12)


def test_a_long_prompt_pays_the_long_context_tier_on_every_token():
    model = "claude-sonnet-4-5"
    price = genai_prices.calc_price(genai_prices.Usage(), model, provider_id="anthropic",
                                    genai_request_timestamp=datetime.fromtimestamp(
                                        NOW, timezone.utc)).model_price
    assert isinstance(price.input_mtok, TieredPrices) and isinstance(price.output_mtok,
                                                                     TieredPrices)
    start = price.input_mtok.tiers[0].start
    assert price.output_mtok.tiers[0].start == start
    tokens = start + 1
    expected = (tokens * float(price.input_mtok.tiers[0].price)
                + 10 * float(price.output_mtok.tiers[0].price)) / 1e6
    row = llm_row(model, "anthropic", prompt_tokens=tokens, completion_tokens=10)
    assert span_cost(row) == pytest.approx(expected, rel=1e-12)
    below = span_cost(llm_row(model, "anthropic", prompt_tokens=start, completion_tokens=10))
    assert below is not None and below < expected * start / tokens


def test_a_price_change_applies_from_its_day_on():
    """o3's price in the database changes on a date: spans are priced as of their own day."""
    _, model = get_snapshot().find_provider_model("o3", None, "openai", None)
    assert isinstance(model.prices, list)
    changes = [price.constraint.start_date for price in model.prices
               if isinstance(price.constraint, StartDateConstraint)]
    assert changes, "o3 has no price history in the database any more: pick another model"
    change = changes[0]
    on = datetime(change.year, change.month, change.day, tzinfo=timezone.utc).timestamp()
    before = on - 1
    costs = {}
    for when in (before, on):
        rate = {key: per_token("openai", "o3", when, key) for key in ("input_mtok", "output_mtok")}
        costs[when] = span_cost(llm_row("o3", start=when, prompt_tokens=1000,
                                        completion_tokens=100))
        expected = 1000 * rate["input_mtok"] + 100 * rate["output_mtok"]
        assert costs[when] == pytest.approx(expected, rel=1e-12)
    assert costs[before] != costs[on]


def test_a_row_without_a_start_is_priced_as_of_its_creation():
    row = llm_row("o3", prompt_tokens=1000, completion_tokens=100)
    expected = span_cost(row)
    del row["metrics"]["start"]
    assert span_cost(row) is None
    row["created"] = datetime.fromtimestamp(NOW, timezone.utc).isoformat()
    assert span_cost(row) == expected


def test_an_embedding_pays_its_input_only():
    rate = per_token("openai", "text-embedding-3-small", NOW, "input_mtok")
    row = llm_row("text-embedding-3-small", prompt_tokens=5000, tokens=5000)
    assert span_cost(row) == pytest.approx(5000 * rate, rel=1e-12)


def test_the_provider_may_be_absent_or_spelled_as_the_otel_conventions_do():
    expected = span_cost(llm_row(prompt_tokens=10, completion_tokens=10))
    assert expected is not None
    for provider in (None, "", "OpenAI", "openai.chat", "az.ai.openai"):
        assert span_cost(llm_row(provider=provider, prompt_tokens=10,
                                 completion_tokens=10)) == expected, provider


@pytest.mark.parametrize("metrics", [
    {"estimated_cost": 0.25},
    {"estimated_cost": 0.25, "cost": 7.0},
    {"cost": 0.25},
    {"estimated_cost": "a lot", "cost": 0.25},
])
def test_a_cost_the_client_logged_wins(metrics):
    row = llm_row(prompt_tokens=1200, completion_tokens=300, **metrics)
    assert span_cost(row) == 0.25


def test_a_logged_cost_counts_on_any_span_and_a_bad_one_is_no_cost():
    task = {"span_attributes": {"type": "task"}, "metrics": {"start": NOW, "estimated_cost": 3}}
    assert span_cost(task) == 3.0
    assert span_cost({"metrics": {"estimated_cost": 0}}) == 0.0
    for bad in (-1, math.nan, math.inf, True, "3", None):
        assert span_cost({"metrics": {"estimated_cost": bad}}) is None, bad
    priced = span_cost(llm_row(prompt_tokens=10, completion_tokens=10))
    assert priced is not None
    assert span_cost(llm_row(prompt_tokens=10, completion_tokens=10,
                             estimated_cost=math.nan)) == priced


@pytest.mark.parametrize(("model", "provider"), [
    ("no-such-model-9000", "openai"),
    ("no-such-model-9000", None),
    ("gpt-4o", "a-provider-nobody-knows"),
    ("claude-sonnet-4-5", "openai"),
])
def test_an_unknown_model_or_provider_has_no_cost(model, provider):
    assert span_cost(llm_row(model, provider, prompt_tokens=10, completion_tokens=10)) is None


@pytest.mark.parametrize("metrics", [
    {},
    {"tokens": 100},
    {"completion_tokens": 100},
    {"prompt_tokens": None, "completion_tokens": 100},
    {"prompt_tokens": 10, "completion_tokens": None},
])
def test_missing_token_counts_give_no_cost(metrics):
    assert span_cost(llm_row(**metrics)) is None


def test_spans_of_other_types_have_no_cost():
    row = llm_row(prompt_tokens=10, completion_tokens=10)
    for attributes in ({"type": "task"}, {"type": "tool"}, {}, None, "llm"):
        row["span_attributes"] = attributes
        assert span_cost(row) is None, attributes
    assert span_cost({}) is None


BAD_NUMBERS = ["100", -1, -0.5, math.nan, math.inf, True, False, [1], {"n": 1}, 2**60,
               Decimal("10")]


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens",
                                   "prompt_cached_tokens", "prompt_cache_creation_tokens"])
def test_a_bad_token_count_gives_no_cost(field, bad):
    row = llm_row(prompt_tokens=1000, completion_tokens=10, prompt_cached_tokens=0,
                  prompt_cache_creation_tokens=0)
    row["metrics"][field] = bad
    assert span_cost(row) is None


@pytest.mark.parametrize("row", [
    llm_row(model=5, prompt_tokens=1, completion_tokens=1),
    llm_row(model="", prompt_tokens=1, completion_tokens=1),
    llm_row(model=None, prompt_tokens=1, completion_tokens=1),
    llm_row(provider=["openai"], prompt_tokens=1, completion_tokens=1),
    # a name no model or provider has (genai-prices would strip these spaces and match)
    llm_row(provider="openai" + " " * 300, prompt_tokens=1, completion_tokens=1),
    llm_row(start="yesterday", prompt_tokens=1, completion_tokens=1),
    llm_row(start=math.nan, prompt_tokens=1, completion_tokens=1),
    llm_row(start=-5.0, prompt_tokens=1, completion_tokens=1),
    llm_row(start=1e300, prompt_tokens=1, completion_tokens=1),
    {**llm_row(start=None, prompt_tokens=1, completion_tokens=1), "created": "not a time"},
    {**llm_row(prompt_tokens=1, completion_tokens=1), "metadata": "gpt-4o"},
    {**llm_row(), "metrics": [1, 2]},
], ids=repr)
def test_a_malformed_row_gives_no_cost_without_raising(row):
    assert span_cost(row) is None


def test_prices_are_looked_up_once_per_provider_model_and_day():
    _cost._rates.cache_clear()
    for tokens in range(100):
        span_cost(llm_row(start=NOW + tokens, prompt_tokens=tokens, completion_tokens=1))
    span_cost(llm_row(start=NOW + 86_400, prompt_tokens=1, completion_tokens=1))
    assert _cost._rates.cache_info().misses == 2


def _models() -> list[tuple[str, str]]:
    return sorted({(provider.id, model.id) for provider in get_snapshot().providers
                   for model in provider.models})


MODELS = _models()
DAYS = [date(2024, 6, 1), date(2025, 6, 9), date(2025, 6, 10), date(2026, 3, 13),
        date(2026, 8, 21), date(2026, 11, 2)]


def database_cost(provider: str, model: str, when: datetime, prompt: int, completion: int,
                  cache_read: int, cache_write: int) -> float | None:
    try:
        calculation = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=prompt, output_tokens=completion,
                               cache_read_tokens=cache_read, cache_write_tokens=cache_write),
            model, provider_id=provider, genai_request_timestamp=when)
    except (LookupError, ValueError):
        return None
    return float(calculation.total_price)


@pytest.mark.slow  # about 6 s: every model (some 2,300) on six days, through both calculators
def test_every_model_in_the_database_costs_what_its_calculator_says():
    assert {"openai", "anthropic", "google"} <= {provider for provider, _ in MODELS}
    mismatches = []
    for provider, model in MODELS:
        for day in DAYS:
            when = datetime(day.year, day.month, day.day, 15, 45, tzinfo=timezone.utc)
            usage = (250_000 if model.startswith("claude") else 3000, 700, 1000, 500)
            got = span_cost(llm_row(model, provider, start=when.timestamp(),
                                    prompt_tokens=usage[0], completion_tokens=usage[1],
                                    prompt_cached_tokens=usage[2],
                                    prompt_cache_creation_tokens=usage[3]))
            want = database_cost(provider, model, when, *usage)
            if not (got == want or (got is not None and want is not None
                                    and math.isclose(got, want, rel_tol=1e-9))):
                mismatches.append((provider, model, day, got, want))
    assert not mismatches


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(MODELS),
       when=st.datetimes(datetime(2024, 1, 1), datetime(2027, 1, 1),
                         timezones=st.just(timezone.utc)),
       prompt=st.integers(0, 2_000_000), completion=st.integers(0, 200_000),
       cache_read=st.integers(0, 400_000), cache_write=st.integers(0, 400_000))
def test_a_span_costs_what_the_databases_calculator_says(model, when, prompt, completion,
                                                         cache_read, cache_write):
    provider, name = model
    got = span_cost(llm_row(name, provider, start=when.timestamp(), prompt_tokens=prompt,
                            completion_tokens=completion, prompt_cached_tokens=cache_read,
                            prompt_cache_creation_tokens=cache_write))
    if cache_read + cache_write > prompt:
        prompt += cache_read + cache_write  # the cache counts were left out of prompt_tokens
    want = database_cost(provider, name, when, prompt, completion, cache_read, cache_write)
    assert got == want or (got is not None and want is not None
                           and math.isclose(got, want, rel_tol=1e-9))


def test_the_rows_spanlogs_sdk_stores_through_the_collector_are_priced(collector):
    """What the SDK's log_llm sends for OpenAI's and Anthropic's usage objects, as the
    collector stores it and hands it back."""
    project = f"cost-{uuid.uuid4().hex[:10]}"
    logger = spanlog.init_logger(project=project, api_url=collector.url,
                                 api_key=collector.api_key, flush_linger=0.01)
    try:
        with spanlog.start_span("answer", type="task"):
            with spanlog.llm_span("openai", model="gpt-4o", provider="openai") as call:
                call.log(usage={"prompt_tokens": 1200, "completion_tokens": 300,
                                "prompt_tokens_details": {"cached_tokens": 200}})
            with spanlog.llm_span("anthropic", model="claude-sonnet-4-5",
                                  provider="anthropic") as call:
                call.log(usage={"input_tokens": 100, "output_tokens": 50,
                                "cache_read_input_tokens": 5000,
                                "cache_creation_input_tokens": 2000})
        assert logger.flush(timeout=10)
    finally:
        logger.close(timeout=5)
        set_current_logger(None)
    rows = {row["span_attributes"]["name"]: row
            for row in collector.wait_for_rows(3, project=project)}
    start = rows["openai"]["metrics"]["start"]
    openai = {key: per_token("openai", "gpt-4o", start, key)
              for key in ("input_mtok", "cache_read_mtok", "output_mtok")}
    assert span_cost(rows["openai"]) == pytest.approx(
        1000 * openai["input_mtok"] + 200 * openai["cache_read_mtok"]
        + 300 * openai["output_mtok"], rel=1e-12)
    anthropic = {key: per_token("anthropic", "claude-sonnet-4-5", start, key)
                 for key in ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")}
    assert span_cost(rows["anthropic"]) == pytest.approx(
        100 * anthropic["input_mtok"] + 5000 * anthropic["cache_read_mtok"]
        + 2000 * anthropic["cache_write_mtok"] + 50 * anthropic["output_mtok"], rel=1e-12)
    assert span_cost(rows["answer"]) is None


def test_opentelemetry_spans_are_priced_and_their_logged_cost_wins():
    def otel_row(**attributes: Any) -> dict[str, Any]:
        start = int(NOW * 1e9)
        return span_to_row(OtelSpan(name="chat gpt-4o", trace_id="ab" * 16, span_id="cd" * 8,
                                    start_time_unix_nano=start,
                                    end_time_unix_nano=start + 10**9, attributes=attributes))

    genai = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
             "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1200,
             "gen_ai.usage.output_tokens": 300}
    assert span_cost(otel_row(**genai)) == span_cost(llm_row(prompt_tokens=1200,
                                                             completion_tokens=300))
    openinference = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                     "llm.token_count.prompt": 1200, "llm.token_count.completion": 300,
                     "llm.cost.total": 0.5}
    assert span_cost(otel_row(**openinference)) == 0.5


@pytest.mark.parametrize(("value", "text"), [
    (None, "–"), (math.nan, "–"), (math.inf, "–"),
    (0, "$0.00"), (0.0, "$0.00"), (12.345, "$12.35"), (1234.5, "$1,234.50"), (1, "$1.00"),
    (0.5, "$0.50"), (0.1, "$0.10"), (0.0123, "$0.0123"), (0.00575, "$0.00575"),
    (0.000042, "$0.000042"), (0.9999, "$1.00"), (0.0000004, "<$0.000001"),
    (-0.5, "-$0.50"),
])
def test_format_cost(value, text):
    assert format_cost(value) == text


def test_the_price_database_is_imported_only_when_a_span_is_priced():
    probe = ("import sys, spanlog.server, spanlog.server.rows._cost as c\n"
             "assert 'genai_prices' not in sys.modules\n"
             "c.span_cost({'metrics': {'estimated_cost': 1.0}})\n"
             "assert 'genai_prices' not in sys.modules\n"
             "c.span_cost({'span_attributes': {'type': 'llm'}, 'metadata': {'model': 'gpt-4o'},"
             " 'metrics': {'start': 1.7e9, 'prompt_tokens': 1, 'completion_tokens': 1}})\n"
             "assert 'genai_prices' in sys.modules\n")
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)

