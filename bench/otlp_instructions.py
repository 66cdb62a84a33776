"""What an ingest worker spends per span decoding an OTLP export into rows, beside decoding
and checking the same spans as a /logs3 body, in CPU instructions counted by valgrind: immune
to machine load, so two checkouts compare to a percent on a busy machine.

    python3 bench/otlp_instructions.py [--spans 3000] [--paths otlp,otlp-gzip,otlp-json,logs3]
                                       [SRC ...]

The bodies are bench/otlp.py's (``make_spans``: 5-span GenAI traces, ``--batch`` spans a
request): for ``otlp`` the protobuf the OpenTelemetry SDK's exporter sends, ``otlp-gzip`` the
same gzip-compressed, ``otlp-json`` the OTLP/JSON of bench/otlp.py, ``logs3`` the rows
``span_to_row`` makes of them as a /logs3 body. Each ``SRC`` is a checkout (its ``src`` goes on
``PYTHONPATH``; default: this one). A process under ``valgrind --tool=callgrind`` runs what an
ingest worker runs for a request (:func:`spanlog.server.http._otlp.decode_spans`, gunzipping
first as aiohttp does; :func:`spanlog.server.http._ingest.decode_rows`), without the store's
``prepare_rows`` (the same for every path); the figure is the difference between decoding
every body and decoding the first one only, per span, so start-up cancels out. Needs
``valgrind`` (Debian package ``valgrind``). The child sets the garbage collector as an ingest
worker does (``_tuning.GC_THRESHOLDS``). Not a pass/fail test.

With ``--whole`` it counts instead the collector process end to end, as the issue's goal
states it (a span over OTLP costs the server no more than over ``/logs3``): ``python -m
spanlog.server --workers 0`` (decoding, mapping, the writer and SQLite in one process, as
bench/collector_instructions.py runs it) on a fresh database, sent ``otlp`` and ``logs3``
bodies over HTTP one request at a time; the figure is the difference between ``--spans``
spans and a third as many, per span.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile

import _callgrind

HERE = os.path.dirname(os.path.abspath(__file__))
PATHS = ("otlp", "otlp-gzip", "otlp-json", "logs3")


def _bodies(spans: int, batch: int) -> dict[str, tuple[list[bytes], list[int]]]:
    """Each path's request bodies and how many spans each carries."""
    import otlp
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from spanlog.server.http._otlp import _spans_from_protobuf, spans_to_batch

    made = otlp.make_spans(spans)
    batches = [made[i:i + batch] for i in range(0, len(made), batch)]
    counts = [len(b) for b in batches]
    protobuf = [encode_spans(b).SerializeToString() for b in batches]
    logs3 = []
    for raw in protobuf:
        rows = spans_to_batch(_spans_from_protobuf(raw), None, otlp.PROJECT)[0].rows
        logs3.append(json.dumps({"rows": [{**r, "project_name": otlp.PROJECT} for r in rows],
                                 "api_version": 2}).encode())
    return {"otlp": (protobuf, counts),
            "otlp-gzip": ([gzip.compress(raw) for raw in protobuf], counts),
            "otlp-json": ([otlp._otlp_json(b) for b in batches], counts),
            "logs3": (logs3, counts)}


def _child(path: str, bodies_file: str, count: int) -> None:
    """Decode the first body (warming every cache), then the first ``count`` bodies."""
    import gc

    from spanlog.server.http._ingest import decode_rows
    from spanlog.server.http._otlp import decode_spans
    from spanlog.server.http._tuning import GC_THRESHOLDS

    gc.set_threshold(*GC_THRESHOLDS)  # as an ingest worker (server/http/_workers.py)
    with open(bodies_file, "rb") as fh:
        bodies = pickle.load(fh)[:count]

    def decode(raw: bytes) -> None:
        if path == "logs3":
            decode_rows(raw, "rows")
        else:
            if path == "otlp-gzip":
                raw = gzip.decompress(raw)
            batch, rejected = decode_spans(raw, path != "otlp-json", None, "bench-otlp")
            assert not rejected, rejected

    decode(bodies[0])
    for raw in bodies:
        decode(raw)


def _counted(src: str, path: str, bodies_file: str, count: int) -> int:
    with tempfile.TemporaryDirectory(prefix="spanlog-otlp-instructions-") as tmp:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((os.path.join(src, "src"), HERE)))
        subprocess.run(_callgrind.command(tmp, os.path.abspath(__file__), "--child", path,
                                          bodies_file, str(count)),
                       env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return _callgrind.total(tmp, f"{src} {path}")


def whole(src: str, path: str, spans: int, batch: int) -> float:
    """Instructions of the whole collector process per span sent over ``path`` (otlp or
    logs3): ``spans`` spans against a third as many, each run on a fresh database."""
    import asyncio

    import otlp
    from collector import _post_all
    from collector_instructions import _counted as collector_counted

    headers = {"Content-Type": "application/x-protobuf",
               "x-bt-parent": f"project_name:{otlp.PROJECT}"}
    counts, sent = [], []
    for n in (max(2 * batch, spans // 3), spans):
        raws, per_body = _bodies(n + batch, batch)[path]
        sent.append(sum(per_body[1:]))

        def work(url: str, raws: list[bytes] = raws) -> None:
            where = {} if path == "logs3" else {"path": "/otel/v1/traces", "headers": headers}
            asyncio.run(_post_all(url, raws[:1], 1, **where))  # creates the project
            asyncio.run(_post_all(url, raws[1:], 1, **where))

        with tempfile.TemporaryDirectory(prefix="spanlog-otlp-instructions-db-") as tmp:
            counts.append(collector_counted(src, os.path.join(tmp, "db.sqlite3"), work))
    return (counts[1] - counts[0]) / (sent[1] - sent[0])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"which of {', '.join(PATHS)} to count (default: all)")
    parser.add_argument("--whole", action="store_true",
                        help="count the whole collector process per span, otlp against logs3")
    parser.add_argument("src", nargs="*", default=[os.path.dirname(HERE)],
                        help="checkouts to compare (default: this one)")
    args = parser.parse_args()
    paths = args.paths.split(",")
    if not set(paths) <= set(PATHS):
        parser.error(f"--paths: of {', '.join(PATHS)}")
    if args.spans < 2 * args.batch:
        parser.error("--spans: at least two batches")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: install it (Debian: apt-get install valgrind)")
    if args.whole:
        print("collector instructions per span (callgrind, --workers 0, over HTTP): "
              "OTLP protobuf and the same spans as /logs3 rows", flush=True)
        for src in args.src:
            otlp, logs3 = (whole(src, path, args.spans, args.batch)
                           for path in ("otlp", "logs3"))
            print(f"  {src:30} otlp {otlp:>9,.0f}   logs3 {logs3:>9,.0f}   "
                  f"ratio {otlp / logs3:.3f}", flush=True)
        return
    bodies = _bodies(args.spans, args.batch)
    print("ingest worker instructions per span (callgrind): decoding a request into rows, "
          "without prepare_rows", flush=True)
    with tempfile.TemporaryDirectory(prefix="spanlog-otlp-instructions-") as tmp:
        for src in args.src:
            figures: dict[str, float] = {}
            for path in paths:
                raws, counts = bodies[path]
                bodies_file = os.path.join(tmp, f"{path}.pickle")
                with open(bodies_file, "wb") as fh:
                    pickle.dump(raws, fh)
                one = _counted(src, path, bodies_file, 1)
                every = _counted(src, path, bodies_file, len(raws))
                figures[path] = (every - one) / (sum(counts) - counts[0])
            shown = "   ".join(f"{path} {n:>9,.0f}" for path, n in figures.items())
            print(f"  {src:30} {shown}", flush=True)


if __name__ == "__main__":
    main()
