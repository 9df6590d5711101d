"""DELETE /cache/tag/{tag}: invalidates every entry carrying the tag, admins only (SPEC §8, §14)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from fastapi import FastAPI

from chenu_cache import MISSING, FallbackCache
from chenu_cache.contrib.fastapi import create_cache_router

TOKEN = "tag-route-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(cache: FallbackCache) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def setup() -> AsyncIterator[tuple[httpx.AsyncClient, FallbackCache]]:
    cache = FallbackCache(read_env=False)
    await cache.initialize()
    async with client_for(cache) as client:
        yield client, cache
    await cache.close()


async def seed(cache: FallbackCache) -> None:
    """Entries carrying ``user:1`` (alone or with other tags) and entries that do not."""
    await cache.set("profile:1", {"name": "Ada"}, tags=["user:1"])
    await cache.set("feed:1", [1, 2], tags=["user:1", "feed"])
    await cache.get_or_set("orders:1", lambda: [7], tags=["user:1"])
    await cache.set("profile:2", {"name": "Bob"}, tags=["user:2"])
    await cache.set("feed:2", [3], tags=["user:2", "feed"])
    await cache.set("plain", "untagged")


TAGGED_USER_1 = ["profile:1", "feed:1", "orders:1"]
OTHERS = {"profile:2": {"name": "Bob"}, "feed:2": [3], "plain": "untagged"}


async def present(cache: FallbackCache, keys: list[str]) -> list[str]:
    return [k for k in keys if await cache.get(k, default=MISSING) is not MISSING]


async def all_still_there(cache: FallbackCache) -> None:
    assert await present(cache, TAGGED_USER_1) == TAGGED_USER_1
    for key, value in OTHERS.items():
        assert await cache.get(key) == value
    assert cache.statistics().tag_invalidations == 0


# -- the route ---------------------------------------------------------------------------


async def test_delete_tag_invalidates_only_the_entries_carrying_it(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    await seed(cache)
    assert await present(cache, TAGGED_USER_1) == TAGGED_USER_1

    reply = await client.delete("/cache/tag/user:1", headers=AUTH)

    assert reply.status_code == 200, reply.text
    assert reply.json() == {"tag": "user:1", "invalidated": True}
    assert await present(cache, TAGGED_USER_1) == []
    for key, value in OTHERS.items():
        assert await cache.get(key) == value
    assert cache.statistics().tag_invalidations == 1


async def test_the_entries_of_a_tag_are_loaded_again_after_it(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    loads: list[int] = []

    @cache.cached(ttl=600, tags=["user:{user_id}"])
    async def profile(user_id: int) -> dict[str, Any]:
        loads.append(user_id)
        return {"id": user_id, "version": len(loads)}

    assert await profile(1) == {"id": 1, "version": 1}
    assert await profile(2) == {"id": 2, "version": 2}
    assert await profile(1) == {"id": 1, "version": 1}  # a hit
    reply = await client.delete("/cache/tag/user:1", headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert await profile(1) == {"id": 1, "version": 3}  # loaded again
    assert await profile(2) == {"id": 2, "version": 2}  # another tag: still a hit
    assert loads == [1, 2, 1]


async def test_a_tag_nothing_carries_is_invalidated_all_the_same(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    await seed(cache)
    reply = await client.delete("/cache/tag/nobody", headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"tag": "nobody", "invalidated": True}
    assert await present(cache, TAGGED_USER_1) == TAGGED_USER_1


@pytest.mark.parametrize("tag", ["org/42", "a" * 256, "é:ü", "user:1:*"])
async def test_tags_with_slashes_long_or_unusual_characters_work(
    setup: tuple[httpx.AsyncClient, FallbackCache], tag: str
) -> None:
    client, cache = setup
    await cache.set("k", 1, tags=[tag])
    await cache.set("other", 2, tags=["user:1"])
    reply = await client.delete(f"/cache/tag/{tag}", headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"tag": tag, "invalidated": True}
    assert await cache.get("k", default=MISSING) is MISSING
    assert await cache.get("other") == 2


# -- auth --------------------------------------------------------------------------------


async def test_no_token_is_a_401_and_invalidates_nothing(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    await seed(cache)
    reply = await client.delete("/cache/tag/user:1")
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["detail"]["error"] == "Unauthorized"
    await all_still_there(cache)


@pytest.mark.parametrize(
    "authorization", ["Bearer not-the-token", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"]
)
async def test_a_wrong_token_is_a_403_and_invalidates_nothing(
    setup: tuple[httpx.AsyncClient, FallbackCache], authorization: str
) -> None:
    client, cache = setup
    await seed(cache)
    reply = await client.delete("/cache/tag/user:1", headers={"Authorization": authorization})
    assert reply.status_code == 403
    assert reply.json() == {
        "detail": {"error": "Forbidden", "message": "the bearer token is not valid"}
    }
    await all_still_there(cache)


async def test_another_scheme_is_refused_and_invalidates_nothing(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    await seed(cache)
    reply = await client.delete("/cache/tag/user:1", headers={"Authorization": "Basic eA=="})
    assert reply.status_code in (401, 403)
    assert set(reply.json()["detail"]) == {"error", "message"}
    await all_still_there(cache)


# -- bad input ---------------------------------------------------------------------------

# Refused by the cache (InvalidKeyError): the router's own {error, message} shape.
REFUSED_BY_THE_CACHE = ["has%20space", "%20", "tab%09tag", "nul%00", "bell%07", "x%20" * 60]


@pytest.mark.parametrize("tag", REFUSED_BY_THE_CACHE)
async def test_a_bad_tag_is_a_400_with_the_routers_json_error(
    setup: tuple[httpx.AsyncClient, FallbackCache], tag: str
) -> None:
    client, cache = setup
    await seed(cache)
    reply = await client.delete(f"/cache/tag/{tag}", headers=AUTH)
    assert reply.status_code == 400, reply.text
    detail = reply.json()["detail"]
    assert set(detail) == {"error", "message"}
    assert detail["error"] == "InvalidKeyError"
    assert "tag" in detail["message"]
    await all_still_there(cache)


# Refused by the route's path parameter (max_length=256, min_length=1) before the cache
# is called: FastAPI's own 422, whose detail is a list of problems (the `ErrorResponse`
# model documents both shapes), as for any other route's request validation.
@pytest.mark.parametrize("tag", ["x" * 257, "x" * 300, "user:" + "9" * 1000, ""])
async def test_an_over_long_or_empty_tag_is_a_422(
    setup: tuple[httpx.AsyncClient, FallbackCache], tag: str
) -> None:
    client, cache = setup
    await seed(cache)
    reply = await client.delete(f"/cache/tag/{tag}", headers=AUTH)
    assert reply.status_code == 422, reply.text
    problems = reply.json()["detail"]
    assert isinstance(problems, list)
    assert problems[0]["loc"] == ["path", "tag"]
    await all_still_there(cache)


async def test_a_newline_in_the_tag_matches_no_route(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    # Starlette's ``path`` converter does not match a newline: the router never sees the
    # request, and Starlette answers 404 {"detail": "Not Found"} (a 4xx, never a 500).
    client, cache = setup
    await seed(cache)
    for tag in ["new%0Aline", "%0Auser:1", "%0D%0A"]:
        reply = await client.delete(f"/cache/tag/{tag}", headers=AUTH)
        assert 400 <= reply.status_code < 500, (tag, reply.text)
        assert "detail" in reply.json()
    await all_still_there(cache)


async def test_a_trailing_newline_is_refused_not_stripped(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    await seed(cache)
    reply = await client.delete("/cache/tag/user:1%0A", headers=AUTH)
    assert reply.status_code == 400, reply.text
    assert reply.json()["detail"]["error"] == "InvalidKeyError"
    await all_still_there(cache)
    # The key routes had the same hole (encode/starlette#1058).
    await cache.set("foo", 1)
    reply = await client.delete("/cache/key/foo%0A", headers=AUTH)
    assert reply.status_code == 400, reply.text
    assert (await client.get("/cache/key/foo%0A", headers=AUTH)).status_code == 400
    assert await cache.get("foo") == 1


async def test_a_bad_tag_without_a_token_is_still_a_401(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    await seed(cache)
    for tag in ["has%20space", "x" * 300]:
        reply = await client.delete(f"/cache/tag/{tag}")
        assert reply.status_code in (401, 422), reply.text
        assert reply.status_code != 500
    await all_still_there(cache)


async def test_other_methods_on_the_tag_route_are_405(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, cache = setup
    await seed(cache)
    for method in ("GET", "POST", "PUT"):
        reply = await client.request(method, "/cache/tag/user:1", headers=AUTH)
        assert reply.status_code == 405, (method, reply.text)
    await all_still_there(cache)


# -- OpenAPI -----------------------------------------------------------------------------


async def test_openapi_describes_the_tag_route(
    setup: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    client, _ = setup
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/cache/tag/{tag}"]["delete"]
    assert operation["summary"]
    assert operation["tags"] == ["cache"]
    assert {"HTTPBearer": []} in operation["security"]

    (parameter,) = operation["parameters"]
    assert parameter["name"] == "tag"
    assert parameter["in"] == "path"
    assert parameter["required"] is True
    assert parameter["schema"]["maxLength"] == 256
    assert parameter["schema"]["minLength"] == 1

    responses = operation["responses"]
    ok = responses["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/InvalidatedTag"}
    model = schema["components"]["schemas"]["InvalidatedTag"]
    assert set(model["required"]) == {"tag", "invalidated"}
    assert model["properties"]["tag"]["type"] == "string"
    assert model["properties"]["invalidated"]["type"] == "boolean"
    for status in ("400", "401", "403", "422"):
        error = responses[status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorResponse"}, status


# -- on a real Redis ---------------------------------------------------------------------


@pytest.mark.redis
async def test_delete_tag_on_redis_reaches_every_process(redis_url: str, prefix: str) -> None:
    """The route, served by one cache, invalidates entries another cache (another
    process, sharing Redis) wrote and reads: one tag version key, nothing swept."""
    served = FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False)
    other = FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False)
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        await served.initialize()
        await other.initialize()
        assert served.backend.name == other.backend.name == "redis"
        await seed(other)
        keys_before = sorted(await raw.keys(prefix + "*"))
        assert await present(served, TAGGED_USER_1) == TAGGED_USER_1

        async with client_for(served) as client:
            refused = await client.delete("/cache/tag/user:1")
            assert refused.status_code == 401
            wrong = await client.delete(
                "/cache/tag/user:1", headers={"Authorization": "Bearer wrong-token-0000"}
            )
            assert wrong.status_code == 403
            bad = await client.delete("/cache/tag/has%20space", headers=AUTH)
            assert bad.status_code == 400
            assert bad.json()["detail"]["error"] == "InvalidKeyError"
            await all_still_there(other)
            version_before = await raw.get(prefix + "!tag:user:1")
            assert version_before is not None

            reply = await client.delete("/cache/tag/user:1", headers=AUTH)

        assert reply.status_code == 200, reply.text
        assert reply.json() == {"tag": "user:1", "invalidated": True}
        assert await present(other, TAGGED_USER_1) == []
        assert await present(served, TAGGED_USER_1) == []
        for key, value in OTHERS.items():
            assert await other.get(key) == value
        # The tag's version changed; no entry was deleted or added.
        version_after = await raw.get(prefix + "!tag:user:1")
        assert version_after is not None
        assert version_after != version_before
        assert sorted(await raw.keys(prefix + "*")) == keys_before
    finally:
        await served.clear()
        await served.close()
        await other.close()
        await raw.aclose()
