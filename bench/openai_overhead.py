"""What wrap_openai costs: per non-streamed call and per streamed chunk, against the bare client.

End to end: a bare and a wrapped ``openai.OpenAI`` call the same local OpenAI-compatible server
(tests/openai/fake_server.py, in its own process so it does not compete for this one's GIL)
in alternating rounds; the figure is the best wrapped round minus the best bare round.
Loopback HTTP varies by more than the wrapper costs, so the same work is also measured in
isolation: the wrapper around a ``create`` that returns a canned response, and a traced
stream over chunks already parsed, each against the bare call.

Rows go to ``spanlog.testing.capture_rows()`` by default (the SDK's work, delivery to memory
at each trace end) or, with ``--sink collector``, to a real collector started in this
process (delivered by the background thread, as in production).

    python3 bench/openai_overhead.py [--calls 300] [--chunks 200] [--rounds 7] [--sink capture]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai

import spanlog
from spanlog import wrap_openai

FAKE_SERVER = Path(__file__).resolve().parent.parent / "tests" / "openai" / "fake_server.py"

MESSAGES = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": "say:the answer is forty two"}]


def _per_round(run: Callable[[], None], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - start) / repeat


def _compare(bare: Callable[[], None], wrapped: Callable[[], None], repeat: int,
             rounds: int) -> tuple[float, float, float]:
    """Best-round bare time, best-round wrapped time, and their difference (seconds).

    The best of several rounds, as ``timeit`` advises: other load on the machine only ever
    adds time, so the fastest round is the closest to the code's own cost.
    """
    bare(), wrapped()  # warm connections and caches
    bare_times, wrapped_times = [], []
    for _ in range(rounds):  # alternate, so that drifting load hits both alike
        bare_times.append(_per_round(bare, repeat))
        wrapped_times.append(_per_round(wrapped, repeat))
    return min(bare_times), min(wrapped_times), min(wrapped_times) - min(bare_times)


@contextlib.contextmanager
def _sink(kind: str) -> Iterator[None]:
    if kind == "capture":
        from spanlog.testing import capture_rows

        spanlog.init_logger(project="bench-openai")  # nothing is sent: rows stay in memory
        with capture_rows():
            yield
        return
    from spanlog.server.http._auth import create_key
    from spanlog.server.http._runner import BackgroundCollector
    from spanlog.server.store._records import DEFAULT_ORG

    with tempfile.TemporaryDirectory() as tmp:
        server = BackgroundCollector(str(Path(tmp) / "bench.sqlite3")).start()
        try:
            _, key = server.call(lambda: create_key(server.store, DEFAULT_ORG, name="bench"))
            spanlog.init_logger(project="bench-openai", api_url=server.url, api_key=key)
            yield
            spanlog.flush(timeout=30)
        finally:
            server.stop()


@contextlib.contextmanager
def _fake_server() -> Iterator[str]:
    """Run the fake OpenAI server in a child process; yield its base_url."""
    child = subprocess.Popen([sys.executable, str(FAKE_SERVER)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()  # the server exits when its stdin closes
        child.wait(timeout=30)
        child.stdout.close()  # type: ignore[union-attr]


def _stream_text(words: int) -> str:
    return "say:" + " ".join(f"w{i}" for i in range(words - 1))


def _in_memory_chunks(client: openai.OpenAI, words: int) -> list[Any]:
    stream = client.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": _stream_text(words)}],
        stream=True, stream_options={"include_usage": True})
    return list(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per round")
    parser.add_argument("--chunks", type=int, default=200, help="words per streamed reply")
    parser.add_argument("--streams", type=int, default=20, help="streams per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sink", choices=["capture", "collector"], default="capture")
    args = parser.parse_args()

    with _fake_server() as base_url, _sink(args.sink), \
            openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0) as bare:
        wrapped = wrap_openai(bare)
        print(f"sink: {args.sink}; best of {args.rounds} rounds")

        def call(client: Any) -> Callable[[], None]:
            return lambda: client.chat.completions.create(model="bench", messages=MESSAGES)

        b, w, d = _compare(call(bare), call(wrapped), args.calls, args.rounds)
        print(f"HTTP, non-streamed call: bare {b * 1e6:8.1f} us  wrapped {w * 1e6:8.1f} us  "
              f"difference {d * 1e6:7.1f} us/call ({d / b:+.1%})")

        text = _stream_text(args.chunks)

        def stream(client: Any) -> Callable[[], None]:
            def run() -> None:
                for _ in client.chat.completions.create(
                        model="bench", messages=[{"role": "user", "content": text}],
                        stream=True, stream_options={"include_usage": True}):
                    pass
            return run

        chunks = _in_memory_chunks(bare, args.chunks)
        b, w, d = _compare(stream(bare), stream(wrapped), args.streams, args.rounds)
        print(f"HTTP, streamed call ({len(chunks)} chunks): bare {b * 1e3:7.2f} ms  wrapped "
              f"{w * 1e3:7.2f} ms  difference {d * 1e6 / len(chunks):6.2f} us/chunk "
              f"(whole stream {d * 1e6:7.1f} us, {d / b:+.1%})")

        # The same work without the network, where the wrapper's cost is not lost in noise.
        from spanlog._llm import LLMSpan
        from spanlog._openai import _CHAT, _Wrapping
        from spanlog._openai_stream import ChatChunks, TracedStream

        completion = bare.chat.completions.create(model="bench", messages=MESSAGES)
        wrapping = _Wrapping("openai", False, (openai.NotGiven, openai.Omit))

        def canned(**kwargs: Any) -> Any:
            return completion

        gc.collect()
        b, w, d = _compare(lambda: canned(model="bench", messages=MESSAGES),
                           lambda: wrapping.call(_CHAT, canned, (),
                                                 {"model": "bench", "messages": MESSAGES}),
                           args.calls * 10, args.rounds)
        print(f"in memory, non-streamed call: wrapper {d * 1e6:6.1f} us/call "
              f"(span, request and response logging, trace-end delivery to the sink)")

        def plain() -> None:
            for _ in iter(chunks):
                pass

        def traced() -> None:
            for _ in TracedStream(iter(chunks), LLMSpan("bench"), ChatChunks()):
                pass

        def empty() -> None:
            for _ in TracedStream(iter(()), LLMSpan("bench"), ChatChunks()):
                pass

        _, _, per_stream = _compare(plain, traced, args.streams * 10, args.rounds)
        _, span_cost, _ = _compare(lambda: None, empty, args.streams * 10, args.rounds)
        per_chunk = (per_stream - span_cost) / len(chunks)
        print(f"in memory, stream of {len(chunks)} chunks: {per_chunk * 1e6:5.2f} us/chunk "
              f"(+ {span_cost * 1e6:6.1f} us per stream for its span)")


if __name__ == "__main__":
    main()
