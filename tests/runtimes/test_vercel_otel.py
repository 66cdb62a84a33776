"""An OpenTelemetry-only ASGI function under the real Vercel runtime, frozen at `end`:
through spanlog's span processor the flush goes to the runtime's wait_until hook (the
response does not wait, the spans are stored before the freeze)."""

from __future__ import annotations

import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from harness_common import SlowLink
from harness_vercel import VercelFunction

APP = textwrap.dedent('''
    import json

    import spanlog
    from opentelemetry.sdk.trace import TracerProvider
    from spanlog.otel import SpanProcessor

    spanlog.init_logger()
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    tracer = provider.get_tracer("app")

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body"):
            pass
        with tracer.start_as_current_span("request") as root:
            with tracer.start_as_current_span("chat m") as call:
                call.set_attributes({"gen_ai.operation.name": "chat",
                                     "gen_ai.request.model": "m",
                                     "gen_ai.usage.input_tokens": 2,
                                     "gen_ai.usage.output_tokens": 1})
        body = json.dumps({"trace": f"{root.get_span_context().trace_id:032x}"}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
''')


def test_otel_spans_reach_the_collector_through_the_wait_until_hook(
        vercel_python: Path, collector: Any, slow_link: SlowLink, tmp_path: Path) -> None:
    """The response is immediate, yet both OTel spans are stored when Vercel freezes."""
    (tmp_path / "otel_app.py").write_text(APP)
    project = f"vercel-otel-{uuid.uuid4().hex[:8]}"
    env = {"SPANLOG_API_URL": slow_link.url, "SPANLOG_API_KEY": collector.api_key,
           "SPANLOG_PROJECT": project}
    function = VercelFunction(vercel_python, tmp_path / "otel_app.py", "app", env, tmp_path)
    try:
        status, reply, _, invocation = function.invoke("/chat", {"q": 1})
        answered = time.monotonic()
        assert status == 200, f"{reply}\n{function.describe()}"
        function.wait_end(invocation)
        rows = collector.fetch(project=project)
        assert sorted(row["span_attributes"]["name"] for row in rows) == ["chat m", "request"]
        assert {row["root_span_id"] for row in rows} == {reply["trace"]}
        # The slow link holds the flush's request LINK_DELAY seconds: the response had come
        # back before the link let it go, so it did not wait for the flush.
        assert answered < slow_link.first_forwarded("/logs3"), "the response waited"
    finally:
        function.close()
