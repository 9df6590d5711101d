"""GET /cache/metrics (SPEC §18): the cache's statistics for Prometheus, behind auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException
from prometheus_client.parser import text_string_to_metric_families

from chenu_cache import ConfigurationError, FallbackCache
from chenu_cache.contrib.fastapi import create_cache_router

TOKEN = "metrics-route-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def gets(text: str, namespace: str, result: str) -> float:
    key = (
        "chenu_cache_gets_total",
        (("cache", "default"), ("namespace", namespace), ("result", result)),
    )
    return samples(text).get(key, 0.0)


async def _scraper(x_scraper: str | None = Header(default=None)) -> None:
    if x_scraper != "prometheus":
        raise HTTPException(403, detail={"error": "Forbidden", "message": "scrapers only"})


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[FallbackCache]:
    url = None if request.param == "memory" else request.getfixturevalue("redis_url")
    instance = FallbackCache(redis_url=url, prefix=prefix, read_env=False)
    await instance.initialize()
    try:
        yield instance
    finally:
        await instance.clear()
        await instance.close()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_metrics_move_with_the_cache_and_need_the_admin_auth(cache: FallbackCache) -> None:
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False, metrics=True))
    async with client_for(app) as client:
        assert (await client.get("/cache/metrics")).status_code == 401
        bad = await client.get("/cache/metrics", headers={"Authorization": "Bearer " + "x" * 30})
        assert bad.status_code == 403
        before = await client.get("/cache/metrics", headers=AUTH)
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        await cache.set("1", "a", namespace="user")
        assert await cache.get("user:1") == "a"
        assert await cache.get("user:2") is None
        after = (await client.get("/cache/metrics", headers=AUTH)).text
        assert gets(after, "user", "hit") == gets(before.text, "user", "hit") + 1
        assert gets(after, "user", "miss") == gets(before.text, "user", "miss") + 1
        # A private registry: the cache's families only, not the process's own.
        names = {family.name for family in text_string_to_metric_families(after)}
        assert names
        assert all(name.startswith("chenu_cache_") for name in names)
        assert "user:1" not in after  # keys are never labels
        openmetrics = await client.get(
            "/cache/metrics", headers={**AUTH, "Accept": "application/openmetrics-text"}
        )
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.rstrip().endswith("# EOF")


async def test_a_scraper_dependency_replaces_the_admin_auth() -> None:
    async with FallbackCache(read_env=False) as cache:
        app = FastAPI()
        app.include_router(
            create_cache_router(
                cache, token=TOKEN, manage_lifespan=False, metrics=True, metrics_dependency=_scraper
            )
        )
        async with client_for(app) as client:
            assert (await client.get("/cache/metrics", headers=AUTH)).status_code == 403
            ok = await client.get("/cache/metrics", headers={"X-Scraper": "prometheus"})
            assert ok.status_code == 200
            assert "chenu_cache_gets_total" in ok.text or "chenu_cache_breaker_state" in ok.text
            # The other admin routes keep the token.
            assert (
                await client.get("/cache/stats", headers={"X-Scraper": "prometheus"})
            ).status_code == 401


async def test_without_metrics_there_is_no_route_and_the_options_are_checked() -> None:
    async with FallbackCache(read_env=False) as cache:
        app = FastAPI()
        app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
        async with client_for(app) as client:
            assert (await client.get("/cache/metrics", headers=AUTH)).status_code == 404
        with pytest.raises(ConfigurationError):
            create_cache_router(cache, token=TOKEN, metrics_dependency=_scraper)


def test_the_route_is_in_openapi() -> None:
    cache = FallbackCache(read_env=False)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False, metrics=True))
    paths: dict[str, Any] = app.openapi()["paths"]
    assert "get" in paths["/cache/metrics"]
