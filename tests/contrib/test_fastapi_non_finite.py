"""NaN and Infinity in a request body: a 422 in the router's error shape, never a 500.

Python's JSON parser accepts them; FastAPI's validation error would echo the number
back and then fail to encode its own answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from chenu_cache import FallbackCache
from chenu_cache.contrib.fastapi import create_cache_router

TOKEN = "non-finite-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    cache = FallbackCache(read_env=False)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    # Without raising app exceptions, as a server would answer: a crash shows as a 500.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await cache.close()


BODIES = [
    b'{"key": NaN, "value": 1}',
    b'{"key": "k", "value": 1, "namespace": -Infinity}',
    b'{"key": "k", "value": 1, "noExpiry": NaN}',
    b'{"key": "k", "value": [1, {"deep": [Infinity]}]}',
    b'{"key": "k", "value": 1, "ttl": NaN}',
    b'{"key": "k", "value": 1, "ttl": -Infinity}',
    b"NaN",
    b"[Infinity]",
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.decode())
async def test_non_finite_numbers_are_a_422(client: httpx.AsyncClient, body: bytes) -> None:
    reply = await client.post("/cache/key", content=body, headers=AUTH)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"]["error"] == "InvalidJSON"


async def test_auth_comes_first(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/cache/key", content=b'{"key": NaN}', headers={"content-type": "application/json"}
    )
    assert reply.status_code == 401


async def test_finite_bodies_pass(client: httpx.AsyncClient) -> None:
    body = b'{"key": "k", "value": [1.5, -2e10, {"x": 0.0}], "ttl": 30}'
    reply = await client.post("/cache/key", content=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
