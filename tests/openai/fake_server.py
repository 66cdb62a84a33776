"""An OpenAI-compatible HTTP server on 127.0.0.1 for the wrap_openai tests and benchmark.

Serves ``/v1/chat/completions`` (JSON and SSE, with or without the final usage chunk),
``/v1/responses`` (JSON and the typed SSE event stream the Responses API sends),
``/v1/embeddings`` (float and base64 encodings), and the same chat and embeddings under Azure's
``/openai/deployments/{name}/`` paths, from an aiohttp app running on its own event
loop in a background thread, so that the sync and the async ``openai`` clients can both call it.

Replies are deterministic and stateless, so concurrent calls never interfere:

- the reply text is ``"echo: <last user text>"``, or exactly ``<text>`` when the last user
  text is ``"say:<text>"`` (how tests get valid JSON for ``parse``);
- with function tools in the request (and ``tool_choice`` not ``"none"``) the reply is one
  call of the first tool with arguments ``{"query": <last user text>}``;
- usage counts words: ``prompt_tokens`` over all messages, ``completion_tokens`` over the
  reply; ``cached_tokens`` is half the prompt and ``reasoning_tokens`` is 1.

Per-request behaviour is steered by headers (``extra_headers=`` in the client):

- ``x-fake-status: 429`` (or 500, 400...): answer with that status and an OpenAI error body;
  with ``x-fake-fail-attempts: N`` only the first N attempts fail (the client numbers its
  retries in ``x-stainless-retry-count``), so a retried call finally succeeds;
- ``x-fake-first-delay: 0.2``: seconds before the response (or before the first chunk);
- ``x-fake-chunk-delay: 0.01``: seconds between stream chunks;
- ``x-fake-stream-error-after: N``: a stream sends N chunks, then an error event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from aiohttp import web

_WORDS = re.compile(r"\S+\s*")
_counter = iter(range(1, 1 << 62))


def _next_id(prefix: str) -> str:
    return f"{prefix}_{next(_counter):08d}"


def _text_of(content: Any) -> str:
    """The plain text of a message's content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return " ".join(texts)
    return ""


def _reply_text(last_user: str) -> str:
    if last_user.startswith("say:"):
        return last_user[len("say:"):]
    return f"echo: {last_user}"


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    """Split ``text`` into stream deltas (one word with its trailing space each)."""
    pieces = _WORDS.findall(text)
    if text and not pieces:
        pieces = [text]
    lead = len(text) - len(text.lstrip())
    if lead and pieces:
        pieces[0] = text[:lead] + pieces[0]
    return pieces


def _first_function_tool(body: Mapping[str, Any]) -> str | None:
    if body.get("tool_choice") == "none":
        return None
    for tool in body.get("tools") or []:
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            continue
        # Chat nests the function under "function"; Responses puts "name" on the tool.
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
        if isinstance(name, str):
            return name
    return None


def _error_body(status: int) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error",
             404: "not_found_error", 429: "rate_limit_exceeded"}
    return {"error": {"message": f"fake server error {status}",
                      "type": kinds.get(status, "server_error"),
                      "param": None, "code": kinds.get(status, "server_error")}}


class FakeOpenAI:
    """The fake server: ``start()`` it (or use it as a context manager), then point a client at
    ``base_url``. ``requests`` records every request as ``(path, headers, body)``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai",
                                        daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give ``openai.OpenAI``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def azure_endpoint(self) -> str:
        """The ``azure_endpoint`` to give ``openai.AzureOpenAI``."""
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind a free port on 127.0.0.1 and serve from the background thread."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(timeout=10)
        return self

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/embeddings", self._embeddings)
        # Azure OpenAI addresses a deployment: {endpoint}/openai/deployments/{name}/...
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        return int(address[1])

    def stop(self) -> None:
        """Stop serving, join the thread and close the loop."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies received on ``path`` (e.g. ``"/v1/chat/completions"``), in order."""
        with self._lock:
            return [body for p, _, body in self.requests if p == path]

    # -- shared request handling -----------------------------------------------------------

    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        """Record the request; return its body and an error response when one is asked for."""
        body = await request.json()
        with self._lock:
            self.requests.append((request.path, dict(request.headers), body))
        status = int(request.headers.get("x-fake-status", "200"))
        attempts = request.headers.get("x-fake-fail-attempts")
        attempt = int(request.headers.get("x-stainless-retry-count", "0"))
        failing = status >= 400 and (attempts is None or attempt < int(attempts))
        delay = float(request.headers.get("x-fake-first-delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        if failing:
            # retry-after-ms keeps the client's retry backoff short in tests.
            return body, web.json_response(_error_body(status), status=status,
                                           headers={"retry-after-ms": "5",
                                                    "x-request-id": _next_id("req")})
        return body, None

    async def _sse(self, request: web.Request,
                   events: Iterator[tuple[str | None, Any]]) -> web.StreamResponse:
        """Send ``events`` as server-sent events (``data: [DONE]`` is sent as given)."""
        response = web.StreamResponse(headers={"content-type": "text/event-stream",
                                               "cache-control": "no-cache",
                                               "x-request-id": _next_id("req")})
        await response.prepare(request)
        chunk_delay = float(request.headers.get("x-fake-chunk-delay", "0"))
        error_after = request.headers.get("x-fake-stream-error-after")
        sent = 0
        try:
            async for name, data in _paced(events, chunk_delay):
                if error_after is not None and sent >= int(error_after):
                    payload = json.dumps({"error": {"message": "fake stream error",
                                                    "type": "server_error"}})
                    await response.write(f"data: {payload}\n\n".encode())
                    break
                text = data if isinstance(data, str) else json.dumps(data)
                head = f"event: {name}\n" if name else ""
                await response.write(f"{head}data: {text}\n\n".encode())
                sent += 1
            await response.write_eof()
        except ConnectionResetError:
            # The client closed a stream it abandoned half way: nothing left to do.
            pass
        return response

    # -- /v1/chat/completions --------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._begin(request)
        if error is not None:
            return error
        messages = body.get("messages") or []
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
        last = _text_of(users[-1].get("content")) if users else ""
        prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in messages
                            if isinstance(m, Mapping))
        tool = _first_function_tool(body)
        text = _reply_text(last)
        arguments = json.dumps({"query": last})
        completion_tokens = _words(arguments if tool else text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": prompt_tokens // 2, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 1, "audio_tokens": 0},
        }
        n = int(body.get("n") or 1)
        cid = _next_id("chatcmpl")
        created = int(time.time())
        model = body.get("model", "fake-model")
        base = {"id": cid, "created": created, "model": model,
                "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if tool else text,
                                       "refusal": None}
            if tool:
                message["tool_calls"] = [{"id": f"call_{cid}_0", "type": "function",
                                          "function": {"name": tool, "arguments": arguments}}]
            choices = [{"index": i, "message": message, "logprobs": None,
                        "finish_reason": "tool_calls" if tool else "stop"} for i in range(n)]
            return web.json_response({**base, "object": "chat.completion", "choices": choices,
                                      "usage": usage},
                                     headers={"x-request-id": _next_id("req")})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._sse(request, _chat_chunks(base, n, text, tool, arguments,
                                                     usage if include_usage else None))

    # -- /v1/responses ---------------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._begin(request)
        if error is not None:
            return error
        given = body.get("input")
        if isinstance(given, str):
            last, prompt_tokens = given, _words(given)
        else:
            items = [i for i in given or [] if isinstance(i, Mapping)]
            users = [i for i in items if i.get("role") == "user"]
            last = _text_of(users[-1].get("content")) if users else ""
            prompt_tokens = sum(_words(_text_of(i.get("content"))) for i in items)
        tool = _first_function_tool(body)
        text = _reply_text(last)
        arguments = json.dumps({"query": last})
        completion_tokens = _words(arguments if tool else text)
        rid = _next_id("resp")
        item_id = _next_id("fc" if tool else "msg")
        usage = {"input_tokens": prompt_tokens,
                 "input_tokens_details": {"cached_tokens": prompt_tokens // 2},
                 "output_tokens": completion_tokens,
                 "output_tokens_details": {"reasoning_tokens": 1},
                 "total_tokens": prompt_tokens + completion_tokens}
        if tool:
            item: dict[str, Any] = {"id": item_id, "type": "function_call", "status": "completed",
                                    "call_id": f"call_{item_id}", "name": tool,
                                    "arguments": arguments}
        else:
            item = {"id": item_id, "type": "message", "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": [],
                                 "logprobs": []}]}
        response = {
            "id": rid, "object": "response", "created_at": time.time(), "status": "completed",
            "model": body.get("model", "fake-model"), "output": [item],
            "parallel_tool_calls": True, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "temperature": body.get("temperature"),
            "top_p": body.get("top_p"), "instructions": body.get("instructions"),
            "metadata": body.get("metadata") or {}, "error": None,
            "incomplete_details": None, "text": body.get("text") or {"format": {"type": "text"}},
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(response, headers={"x-request-id": _next_id("req")})
        return await self._sse(request, _response_events(response, item, text, arguments))

    # -- /v1/embeddings --------------------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._begin(request)
        if error is not None:
            return error
        given = body.get("input")
        inputs = [given] if isinstance(given, str) else list(given or [])
        dimensions = int(body.get("dimensions") or 8)
        data = []
        for index, text in enumerate(inputs):
            seed = sum(map(ord, str(text))) or 1
            vector = [((seed * (k + 1)) % 97) / 97.0 for k in range(dimensions)]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_words(str(t)) for t in inputs)
        return web.json_response({"object": "list", "data": data,
                                  "model": body.get("model", "fake-embedding"),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                                 headers={"x-request-id": _next_id("req")})


async def _paced(events: Iterator[tuple[str | None, Any]],
                 delay: float) -> AsyncIterator[tuple[str | None, Any]]:
    for number, event in enumerate(events):
        if delay and number:
            await asyncio.sleep(delay)
        yield event


def _chat_chunks(base: dict[str, Any], n: int, text: str, tool: str | None, arguments: str,
                 usage: dict[str, Any] | None) -> Iterator[tuple[str | None, Any]]:
    """The chunks of a streamed chat completion, as the API sends them."""
    extra = {"usage": None} if usage is not None else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> Any:
        return None, {**base, "object": "chat.completion.chunk", **extra,
                      "choices": [{"index": index, "delta": delta, "logprobs": None,
                                   "finish_reason": finish}]}

    for index in range(n):
        if tool:
            call_id = f"call_{base['id']}_{index}"
            yield chunk(index, {"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": call_id, "type": "function",
                 "function": {"name": tool, "arguments": ""}}]})
            for piece in _pieces(arguments):
                yield chunk(index, {"tool_calls": [{"index": 0,
                                                    "function": {"arguments": piece}}]})
            yield chunk(index, {}, "tool_calls")
        else:
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
            for piece in _pieces(text):
                yield chunk(index, {"content": piece})
            yield chunk(index, {}, "stop")
    if usage is not None:
        yield None, {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    yield None, "[DONE]"


def _response_events(response: dict[str, Any], item: dict[str, Any], text: str,
                     arguments: str) -> Iterator[tuple[str | None, Any]]:
    """The typed events of a streamed Responses API call, in the API's order."""
    sequence = iter(range(1 << 30))
    pending = {**response, "status": "in_progress", "output": [], "usage": None}

    def event(kind: str, **fields: Any) -> tuple[str, Any]:
        return kind, {"type": kind, "sequence_number": next(sequence), **fields}

    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    item_id = item["id"]
    if item["type"] == "function_call":
        yield event("response.output_item.added", output_index=0,
                    item={**item, "status": "in_progress", "arguments": ""})
        for piece in _pieces(arguments):
            yield event("response.function_call_arguments.delta", item_id=item_id,
                        output_index=0, delta=piece)
        yield event("response.function_call_arguments.done", item_id=item_id, output_index=0,
                    arguments=arguments)
    else:
        yield event("response.output_item.added", output_index=0,
                    item={**item, "status": "in_progress", "content": []})
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event("response.content_part.added", item_id=item_id, output_index=0,
                    content_index=0, part=empty)
        for piece in _pieces(text):
            yield event("response.output_text.delta", item_id=item_id, output_index=0,
                        content_index=0, delta=piece, logprobs=[])
        yield event("response.output_text.done", item_id=item_id, output_index=0,
                    content_index=0, text=text, logprobs=[])
        yield event("response.content_part.done", item_id=item_id, output_index=0,
                    content_index=0, part={**empty, "text": text})
    yield event("response.output_item.done", output_index=0, item=item)
    yield event("response.completed", response=response)


def main() -> None:
    """Serve from this process until stdin closes: ``python fake_server.py`` prints the
    base_url on its first line (the benchmark runs the server apart from the clients)."""
    import sys

    with FakeOpenAI() as server:
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
