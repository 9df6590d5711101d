"""``GET /cache/metrics``: the cache's statistics in Prometheus' text format (SPEC §18).

A private registry per router holds one collector for this cache, so the route shows
this cache and nothing else of the process (the application's own metrics stay on its
registry and its own endpoint). The snapshot is taken at scrape time, on the event loop
the route runs on. This module uses only chenu-cache's public API.
"""

# No `from __future__ import annotations`: FastAPI reads the route's annotations at run
# time.

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from chenu_cache import ConfigurationError, FallbackCache

__all__ = ["add_metrics_route"]

_DESCRIPTION = """The cache's statistics in the Prometheus text exposition format (or
OpenMetrics when the scraper asks for it): `chenu_cache_*` counters and gauges with
bounded labels (`cache`, `namespace`, `result`, `tier`, ...), never keys. See
docs/observability.md for the names."""


def add_metrics_route(
    router: APIRouter,
    cache: FallbackCache,
    auth: list[Any],
    auth_errors: dict[int | str, dict[str, Any]],
) -> None:
    """Add ``GET /metrics`` to ``router``; needs the ``prometheus`` extra."""
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        from .prometheus import register
    except ImportError as exc:
        raise ConfigurationError(
            'metrics=True needs prometheus_client: pip install "chenu-cache[prometheus]"'
        ) from exc
    registry = CollectorRegistry(auto_describe=False)
    register(cache, registry)

    @router.get(
        "/metrics",
        dependencies=auth,
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **auth_errors,
        },
        summary="Cache statistics for Prometheus",
        description=_DESCRIPTION,
    )
    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)
