"""Property-based fuzz of the admin router's OpenAPI schema: no input gets a 5xx.

schemathesis generates requests (valid and invalid) from the schema the router itself
publishes; they are sent through httpx.ASGITransport to an app whose cache runs on a
real Redis, all on one event loop owned by this module.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from chenu_cache import FallbackCache
from chenu_cache.contrib.fastapi import create_cache_router

TOKEN = "fuzz-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = int(os.environ.get("CHENU_CACHE_FUZZ_EXAMPLES", "60"))

pytestmark = pytest.mark.redis


def _app(cache: FallbackCache) -> FastAPI:
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    return app


schema = schemathesis.openapi.from_dict(_app(FallbackCache(read_env=False)).openapi())


class Harness:
    def __init__(self, redis_url: str, prefix: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.cache = FallbackCache(redis_url=redis_url, prefix=prefix)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=_app(self.cache)), base_url="http://test"
        )
        self.loop.run_until_complete(self._seed())

    async def _seed(self) -> None:
        await self.cache.initialize()
        await self.cache.set_many({"user:1": {"a": 1}, "k": "v", "path:/x": [1]})

    def send(self, kwargs: dict[str, Any]) -> httpx.Response:
        data = kwargs.pop("data", None)
        if data is not None:
            kwargs["content"] = data if isinstance(data, bytes) else str(data).encode()
        kwargs.pop("cookies", None)
        return self.loop.run_until_complete(self.client.request(**kwargs))

    def close(self) -> None:
        async def shutdown() -> None:
            await self.client.aclose()
            await self.cache.clear()
            await self.cache.close()

        self.loop.run_until_complete(shutdown())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(redis_url: str) -> Iterator[Harness]:
    h = Harness(redis_url, "fuzz-admin:")
    try:
        yield h
    finally:
        h.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error(harness: Harness, case: schemathesis.Case) -> None:
    for headers in (AUTH, {}):
        kwargs = case.as_transport_kwargs(base_url="http://test", headers=headers)
        response = harness.send(kwargs)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        if response.headers.get("content-type", "").startswith("application/json"):
            response.json()  # every answer, error or not, is JSON
