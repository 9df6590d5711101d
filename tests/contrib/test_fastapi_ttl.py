"""POST /cache/key: every bad TTL gets one status, 422, and ttl with noExpiry is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from chenu_cache import FallbackCache
from chenu_cache.contrib.fastapi import create_cache_router

TOKEN = "ttl-route-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def setup() -> AsyncIterator[tuple[httpx.AsyncClient, FallbackCache]]:
    cache = FallbackCache(read_env=False)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, cache
    await cache.close()


BAD_TTLS: list[Any] = [-1, -0.5, 0, 10**12, 1e300, "abc", "10", True, [5], {"s": 5}]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
async def test_every_bad_ttl_is_a_422(
    setup: tuple[httpx.AsyncClient, FallbackCache], ttl: Any
) -> None:
    client, cache = setup
    reply = await client.post("/cache/key", json={"key": "k", "value": 1, "ttl": ttl}, headers=AUTH)
    assert reply.status_code == 422, reply.text
    assert "ttl" in reply.text.lower()
    assert await cache.exists("k") is False


@pytest.mark.parametrize("raw", [b"1e400", b"Infinity", b"NaN", b"-Infinity"])
async def test_non_finite_ttls_are_a_422(
    setup: tuple[httpx.AsyncClient, FallbackCache], raw: bytes
) -> None:
    client, cache = setup
    body = b'{"key": "k", "value": 1, "ttl": ' + raw + b"}"
    headers = {**AUTH, "content-type": "application/json"}
    reply = await client.post("/cache/key", content=body, headers=headers)
    assert reply.status_code == 422, reply.text
    assert await cache.exists("k") is False


async def test_a_ttl_over_max_ttl_names_the_error(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, _ = setup
    reply = await client.post(
        "/cache/key", json={"key": "k", "value": 1, "ttl": 10**12}, headers=AUTH
    )
    assert reply.status_code == 422
    assert reply.json()["detail"]["error"] == "InvalidTTLError"


@pytest.mark.parametrize("ttl", [60, 0.5, 10**12])
async def test_ttl_with_no_expiry_is_refused(
    setup: tuple[httpx.AsyncClient, FallbackCache], ttl: float
) -> None:
    client, cache = setup
    reply = await client.post(
        "/cache/key", json={"key": "k", "value": 1, "ttl": ttl, "noExpiry": True}, headers=AUTH
    )
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert detail["error"] == "InvalidTTLError"
    assert "ttl" in detail["message"]
    assert "noExpiry" in detail["message"]
    assert await cache.exists("k") is False


async def test_good_ttls_still_work(setup: tuple[httpx.AsyncClient, FallbackCache]) -> None:
    client, _ = setup
    timed = await client.post("/cache/key", json={"key": "t", "value": 1, "ttl": 12}, headers=AUTH)
    assert timed.status_code == 200
    assert 11 < timed.json()["ttl"] <= 12
    forever = await client.post(
        "/cache/key", json={"key": "f", "value": 1, "noExpiry": True, "ttl": None}, headers=AUTH
    )
    assert forever.status_code == 200
    assert forever.json()["ttl"] is None
    default = await client.post("/cache/key", json={"key": "d", "value": 1}, headers=AUTH)
    assert 3590 < default.json()["ttl"] <= 3600


async def test_openapi_lists_422_for_an_invalid_ttl(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, _ = setup
    schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/cache/key"]["post"]["responses"]
    assert "TTL" in responses["422"]["description"]
    assert "TTL" not in responses["400"]["description"]
