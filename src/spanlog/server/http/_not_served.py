"""What a collector does not do, said plainly: the braintrust SDKs' other features.

The braintrust SDKs also manage experiments, datasets, prompts and functions, upload
attachments and run BTQL queries against the platform they were written for. A spanlog
collector stores and serves project logs only (docs/protocol.md), so each of those calls gets
501 with a JSON error naming the feature: the SDK raises it to the caller instead of carrying
on as if the call had worked. Paths nobody claims keep aiohttp's plain 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

# Each feature and the path prefixes of its calls in braintrust's Python (0.48.1) and
# TypeScript (3.35.0) SDKs: "/v1/dataset" also covers "/v1/dataset_snapshot" and
# "/v1/dataset/{id}/insert".
FEATURES: dict[str, tuple[str, ...]] = {
    "experiments": ("/api/experiment/", "/api/base_experiment/", "/v1/experiment",
                    "/experiment-comparison2"),
    "datasets": ("/api/dataset/", "/api/dataset_snapshot/", "/v1/dataset",
                 "/api/self/get_object_info", "/xact-id"),
    "prompts": ("/v1/prompt", "/api/prompt_session/"),
    "functions (tools, scorers, invoke)": ("/v1/function", "/function/", "/insert-functions"),
    "attachments": ("/attachment",),
    "BTQL queries (read logs with POST /v1/project_logs/{id}/fetch)": ("/btql",),
}


def _refuse(feature: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": (
            f"spanlog does not serve {feature}: {request.method} {request.path} (a spanlog "
            "collector stores project logs; docs/protocol.md lists what it serves)")},
            status=501)
    return refuse


def setup_not_served(app: web.Application) -> None:
    """Answer the calls of :data:`FEATURES` on the collector ``app`` with 501 and their name."""
    for feature, prefixes in FEATURES.items():
        refuse = _refuse(feature)
        for prefix in prefixes:
            # The prefix itself and anything below it ("/v1/dataset", "/v1/dataset/x/insert").
            app.router.add_route("*", prefix + "{rest:.*}", refuse)
