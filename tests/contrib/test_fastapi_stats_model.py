"""GET /cache/stats serves every key of ``to_dict()``, and its schema says what each counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from chenu_cache import CacheStatistics, FallbackCache
from chenu_cache.contrib.fastapi import StatsResponse, create_cache_router
from chenu_cache.stats import (
    FailoverStatistics,
    LoaderStatistics,
    MemoryStatistics,
    NamespaceStatistics,
    RedisStatistics,
)

TOKEN = "stats-model-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _statistics() -> CacheStatistics:
    """Every field set to a value of its own, so that no key can hide behind a default."""
    return CacheStatistics(
        backend="memory",
        redis=RedisStatistics(True, False, "1.2M", 5, 7, 3),
        memory=MemoryStatistics(hits=4, misses=2, size=3, bytes=99, evictions=1, expirations=2),
        hits=52,
        misses=8,
        decode_errors=1,
        command_errors=2,
        namespaces={"user": NamespaceStatistics(40, 5)},
        loader=LoaderStatistics(8, 1, 49, 2, 1, 1),
        failover=FailoverStatistics("open", 2, 1, 12.5, 6, "BackendTimeoutError: x", 1.7e9),
    )


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_the_model_keeps_every_key_of_to_dict() -> None:
    expected = _statistics().to_dict()
    served = StatsResponse.model_validate(expected).model_dump(mode="json")
    assert served == expected
    assert _shape(served) == _shape(expected)


def test_every_field_of_every_response_model_is_described() -> None:
    app = FastAPI()
    app.include_router(
        create_cache_router(FallbackCache(read_env=False), token=TOKEN, manage_lifespan=False)
    )
    schemas = app.openapi()["components"]["schemas"]
    ours = {name: schema for name, schema in schemas.items() if "ValidationError" not in name}
    assert "StatsResponse" in ours
    undescribed = [
        f"{name}.{field}"
        for name, schema in ours.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []
    stats = schemas["StatsResponse"]["properties"]
    assert "seconds since the epoch" in stats["lastBackendErrorAt"]["description"]
    assert "kept after recovery" in stats["lastBackendError"]["description"]
    memory = schemas["TierMemory"]["properties"]
    assert "not the cache's hits" in memory["hits"]["description"]


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, FallbackCache]]:
    cache = FallbackCache(read_env=False)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c, cache
    await cache.close()


async def test_stats_route_serves_what_to_dict_gives(
    client: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    http, cache = client
    await cache.set("1", "x", namespace="user")
    await cache.get("1", namespace="user")
    await cache.get("absent")
    reply = await http.get("/cache/stats", headers=AUTH)
    assert reply.status_code == 200
    body = reply.json()
    assert body == (await cache.get_statistics()).to_dict()
    assert body["lastBackendErrorAt"] is None
    assert body["commandErrors"] == 0
    assert body["memory"]["entries"] == body["memory"]["size"] == 1
