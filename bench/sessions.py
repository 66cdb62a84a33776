"""Sessions benchmark: latency over HTTP of a page of sessions and of one session
(docs/protocol.md, "Sessions") on a database built by ``bench/collector.py build``.

    python3 bench/sessions.py --db /tmp/bench.sqlite3

The benchmark data gives every trace its own ``metadata.session_id`` (the worst case for the
grouping: as many sessions as traces) and ~200,000 ``metadata.user_id`` values; both keys are
timed, over the whole project and over its last hour. Not a pass/fail test: it prints what
it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import urllib.parse
from typing import Any

from collector import PROJECT, _load, start_collector, stop_collector


async def _time(url: str, repeat: int) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, body: Any = None) -> Any:
            async with session.request(method, url + path, json=body) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{resp.status}: {await resp.text()}")
                return await resp.json()

        query = urllib.parse.urlencode({"project_name": PROJECT})
        project = (await call("GET", f"/v1/project?{query}"))["objects"][0]["id"]
        out: dict[str, Any] = {"loadavg_before": _load()}
        for key in ("metadata.session_id", "metadata.user_id"):
            await call("PATCH", f"/v1/project/{project}/settings", {"session_key": key})
            first = await call("GET", f"/v1/project_logs/{project}/sessions?limit=50")
            one = urllib.parse.quote(first["sessions"][0]["session_id"], safe="")
            cases = {
                "page_50": f"/v1/project_logs/{project}/sessions?limit=50",
                "page_50_last_hour": f"/v1/project_logs/{project}/sessions?limit=50&since=1h",
                "one_session": f"/v1/project_logs/{project}/sessions/{one}",
            }
            for name, path in cases.items():
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    await call("GET", path)
                    times.append((time.perf_counter() - t0) * 1000)
                times.sort()
                out[f"{key}:{name}"] = {"p50_ms": round(statistics.median(times), 1),
                                        "p90_ms": round(times[int(len(times) * 0.9)], 1)}
                print(json.dumps({f"{key}:{name}": out[f"{key}:{name}"]}), flush=True)
        await call("PATCH", f"/v1/project/{project}/settings", {"session_key": None})
        out["loadavg_after"] = _load()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="a database built by bench/collector.py")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    proc, url = start_collector(args.db, workers=0)
    try:
        print(json.dumps({"sessions": asyncio.run(_time(url, args.repeat))}))
    finally:
        stop_collector(proc)


if __name__ == "__main__":
    main()
