"""examples/fastapi_app.py runs: its lifespan starts the cache and its routes answer.

The page it serves is tested in Chromium by `npm run e2e` in js/react/ (docs/react.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import httpx
import pytest

pytestmark = pytest.mark.redis


def _example(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> ModuleType:
    monkeypatch.setenv("CHENU_CACHE_ADMIN_TOKEN", "example-token-0123456789")
    monkeypatch.setenv("CHENU_CACHE_REDIS_URL", redis_url)
    monkeypatch.setenv("CHENU_EXAMPLE_DB_DELAY", "0")
    return importlib.reload(importlib.import_module("examples.fastapi_app"))


async def test_example_app(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    module = _example(monkeypatch, redis_url)
    app = module.app
    app_cache = module.app_cache
    async with app.router.lifespan_context(app):
        assert app_cache.backend.name == "redis"
        assert app_cache.events_enabled
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await client.get("/users/42")
            second = await client.get("/users/42")
            assert first.json() == second.json() == {"id": "42", "name": "User 42"}
            stats = await app_cache.get_statistics()
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
            assert (await app_cache.get_statistics()).loader.calls == 4
            stats = await client.get(
                "/cache/stats", headers={"Authorization": "Bearer example-token-0123456789"}
            )
            assert stats.status_code == 200
            assert (await client.get("/cache/stats")).status_code == 401
        await app_cache.clear()
    # close() undid initialize(): the example's cache is memory-only again.
    assert app_cache.primary is None


async def test_a_rename_invalidates_by_tag_and_is_streamed(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    module = _example(monkeypatch, redis_url)
    app = module.app
    app_cache = module.app_cache
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            card = await client.get("/users/7/card")
            assert card.json() == {"id": "7", "name": "User 7"}
            since = await app_cache.latest_event_id()
            renamed = await client.put("/users/7", json={"name": "Ada"})
            assert renamed.status_code == 200
            assert renamed.json() == {"id": "7", "name": "Ada"}
            events = [event async for event in app_cache.events(since, wait=False)]
            assert [(event.kind, event.tags) for event in events] == [("tags", ("user:7",))]
            # The old ETag no longer matches: the card was rendered again.
            fresh = await client.get(
                "/users/7/card", headers={"If-None-Match": card.headers["etag"]}
            )
            assert fresh.status_code == 200
            assert fresh.json() == {"id": "7", "name": "Ada"}
            assert (await client.get("/users/7")).json()["name"] == "Ada"
            assert (await client.put("/users/7", json={"name": ""})).status_code == 422
            # The stream takes no admin token (a browser cannot send one): a malformed
            # `since` gets past the auth to the id check.
            bad = await client.get("/cache/events", params={"since": "not-an-id"})
            assert bad.status_code == 400
        await app_cache.clear()


async def test_the_page_says_how_to_build_its_script(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, tmp_path: Path
) -> None:
    module = _example(monkeypatch, redis_url)
    transport = httpx.ASGITransport(app=module.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        monkeypatch.setattr(module, "PAGE_BUNDLE", tmp_path / "app.js")
        missing = await client.get("/")
        assert missing.status_code == 503
        assert "npm run build:example" in missing.text
        assert (await client.get("/static/app.js")).status_code == 404

        (tmp_path / "app.js").write_text("console.log('built')\n")
        built = await client.get("/")
        assert built.status_code == 200
        assert built.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/app.js">' in built.text
        script = await client.get("/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
