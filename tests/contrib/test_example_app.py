"""examples/fastapi_app.py runs: its lifespan starts the cache and its routes answer."""

from __future__ import annotations

import importlib

import httpx
import pytest

pytestmark = pytest.mark.redis


async def test_example_app(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("CHENU_CACHE_ADMIN_TOKEN", "example-token-0123456789")
    monkeypatch.setenv("CHENU_CACHE_REDIS_URL", redis_url)
    module = importlib.reload(importlib.import_module("examples.fastapi_app"))
    app = module.app
    async with app.router.lifespan_context(app):
        assert module.cache_service.backend.name == "redis"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await client.get("/users/42")
            second = await client.get("/users/42")
            assert first.json() == second.json() == {"id": "42", "name": "User 42"}
            stats = await module.cache_service.get_statistics()
            assert stats.loader.calls == 1  # the second answer came from the cache
            card = await client.get("/users/42/card")
            assert card.status_code == 200
            assert card.json() == {"id": "42", "name": "User 42"}
            etag = card.headers["etag"]
            again = await client.get("/users/42/card", headers={"If-None-Match": etag})
            assert again.status_code == 304
            assert "hit" in again.headers["cache-status"]
            assert (await client.post("/users/42/refresh")).json() == {"invalidated": True}
            after = await client.get("/users/42/card", headers={"If-None-Match": etag})
            # The tag removed the entry: the endpoint ran again (a miss), and since the
            # user did not change, its bytes and so its ETag did not either: still a 304.
            assert "fwd=miss" in after.headers["cache-status"]
            assert after.status_code == 304
            # Loads: the user, the card, then after the refresh the card and the user.
            assert (await module.cache_service.get_statistics()).loader.calls == 4
            stats = await client.get(
                "/cache/stats", headers={"Authorization": "Bearer example-token-0123456789"}
            )
            assert stats.status_code == 200
            assert (await client.get("/cache/stats")).status_code == 401
        await module.cache_service.clear()
    # close() undid initialize(): the shared default instance is memory-only again.
    assert module.cache_service.primary is None
