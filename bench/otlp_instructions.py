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
``valgrind`` (Debian package ``valgrind``). Not a pass/fail test.
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
    from spanlog.server.http._ingest import decode_rows
    from spanlog.server.http._otlp import decode_spans

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


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"which of {', '.join(PATHS)} to count (default: all)")
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
