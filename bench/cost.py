"""What estimating a span's cost takes (spanlog.server.rows._cost.span_cost).

Measured in this process, best of ``--repeat`` runs of ``--calls`` calls each:

- warm: the rows of a typical ingest batch (OpenAI and Anthropic calls with and without
  cached tokens, an unknown model, a task span, a span with a client-logged cost), all on one
  day: every price lookup hits the (provider, model, day) cache;
- rebuild: the same batches over ``--days`` days of history, 1 and 100 of them a day, as
  when an index is rebuilt over every stored row in time order: one price lookup per model
  and day, then cache hits;
- cold lookups: every call a new (provider, model, day), the cache's miss path;
- the database's own calculator (``genai_prices.calc_price``) per call, for comparison;

and, each in a fresh interpreter (best of ``--repeat``): the first ``span_cost`` of a
process (imports genai-prices and loads its data), and ``import spanlog.server``, which
must not import it.

    PYTHONPATH=src python3 bench/cost.py [--calls 200000] [--repeat 5]

Numbers move with machine load; not a pass/fail test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from spanlog.server.rows import _cost
from spanlog.server.rows._cost import span_cost

DAY = 86_400.0
START = datetime(2026, 11, 2, 12, tzinfo=timezone.utc).timestamp()


def llm(model: str, provider: str | None, start: float, **metrics: float) -> dict[str, Any]:
    return {"span_attributes": {"type": "llm"},
            "metadata": {"model": model, "provider": provider},
            "metrics": {"start": start, **metrics}}


def batch(start: float) -> list[dict[str, Any]]:
    return [
        llm("gpt-4o", "openai", start, prompt_tokens=1200, completion_tokens=300, tokens=1500),
        llm("gpt-4o-mini", "openai", start, prompt_tokens=900, completion_tokens=80,
            prompt_cached_tokens=512),
        llm("claude-sonnet-4-5", "anthropic", start, prompt_tokens=9000, completion_tokens=400,
            prompt_cached_tokens=8000, prompt_cache_creation_tokens=600),
        llm("o3", "openai", start, prompt_tokens=3000, completion_tokens=2000,
            completion_reasoning_tokens=1500),
        llm("gemini-2.5-flash", "google", start, prompt_tokens=700, completion_tokens=90),
        llm("an-unknown-model", "openai", start, prompt_tokens=10, completion_tokens=10),
        {"span_attributes": {"type": "task"}, "metrics": {"start": start}},
        {"span_attributes": {"type": "llm"}, "metrics": {"start": start, "estimated_cost": 0.01}},
    ]


def best_us(rows: list[dict[str, Any]], calls: int, repeat: int,
            before: Callable[[], None] = lambda: None) -> float:
    best = float("inf")
    for _ in range(repeat):
        before()
        todo = (rows * (calls // len(rows) + 1))[:calls]
        began = time.perf_counter()
        for row in todo:
            span_cost(row)
        best = min(best, time.perf_counter() - began)
    return best / calls * 1e6


def fresh_ms(code: str, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True, timeout=120).stdout
        runs.append(float(out))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()

    span_cost(batch(START)[0])  # imports genai-prices and loads its data
    warm = best_us(batch(START), args.calls, args.repeat)
    print(f"warm (one day, cache hits):          {warm:6.2f} µs/span")
    for per_day in (1, 100):
        history = [row for day in range(args.days) for row in batch(START - day * DAY) * per_day]
        print(f"rebuild ({args.days} days, {per_day:3} batches a day): "
              f"{best_us(history, len(history), args.repeat, _cost._rates.cache_clear):6.2f}"
              " µs/span")
    llm_rows = [row for day in range(2000) for row in batch(START - day * DAY)[:5]]
    print(f"cold lookups (every call a miss):    "
          f"{best_us(llm_rows, len(llm_rows), 1, _cost._rates.cache_clear):6.2f} µs/span")

    import genai_prices

    usage = genai_prices.Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200)
    when = datetime.fromtimestamp(START, timezone.utc)
    calls = max(1, args.calls // 50)
    began = time.perf_counter()
    for _ in range(calls):
        genai_prices.calc_price(usage, "gpt-4o", provider_id="openai",
                                genai_request_timestamp=when)
    print(f"genai_prices.calc_price:             "
          f"{(time.perf_counter() - began) / calls * 1e6:6.2f} µs/call")

    first = ("import time; t = time.perf_counter()\n"
             "from spanlog.server.rows._cost import span_cost\n"
             "span_cost({'span_attributes': {'type': 'llm'}, 'metadata': {'model': 'gpt-4o'},"
             " 'metrics': {'start': 1.7e9, 'prompt_tokens': 1, 'completion_tokens': 1}})\n"
             "print((time.perf_counter() - t) * 1e3)")
    server = ("import sys, time; t = time.perf_counter(); import spanlog.server\n"
              "assert 'genai_prices' not in sys.modules\n"
              "print((time.perf_counter() - t) * 1e3)")
    print(f"first span_cost of a process:        {fresh_ms(first, args.repeat):6.1f} ms")
    print(f"import spanlog.server:               {fresh_ms(server, args.repeat):6.1f} ms "
          "(genai_prices not imported)")


if __name__ == "__main__":
    main()
