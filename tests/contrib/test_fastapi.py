"""The FastAPI admin router, driven through httpx.ASGITransport against a real Redis."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from fastapi import FastAPI, Header, HTTPException

from chenu_cache import ConfigurationError, FallbackCache
from chenu_cache.contrib.fastapi import cache_lifespan, create_cache_router

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.redis


@pytest.fixture
async def cache(redis_url: str, prefix: str) -> AsyncIterator[FallbackCache]:
    c = FallbackCache(redis_url=redis_url, prefix=prefix)
    await c.initialize()
    try:
        yield c
    finally:
        await c.clear()
        await c.close()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(cache: FallbackCache) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    async with client_for(app) as c:
        yield c


ADMIN_ROUTES = [
    ("GET", "/cache/stats", None),
    ("GET", "/cache/keys", None),
    ("GET", "/cache/key/some:key", None),
    ("POST", "/cache/key", {"key": "k", "value": 1}),
    ("DELETE", "/cache/key/some:key", None),
    ("DELETE", "/cache/namespace/user", None),
    ("POST", "/cache/clear", None),
]


# -- packaging -------------------------------------------------------------------------


def test_core_never_imports_fastapi() -> None:
    code = "import sys, chenu_cache; assert 'fastapi' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_import_without_fastapi_gives_the_install_hint() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n"
        "    import chenu_cache.contrib.fastapi\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert 'pip install "chenu-cache[fastapi]"' in out.stdout, out.stderr


# -- auth ------------------------------------------------------------------------------


def test_factory_refuses_to_build_without_auth(cache: FallbackCache) -> None:
    with pytest.raises(ConfigurationError, match="token"):
        create_cache_router(cache)
    with pytest.raises(ConfigurationError):
        create_cache_router(cache, token="")


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_refuse_anonymous_and_wrong_tokens(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    anonymous = await client.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["detail"]["error"] == "Unauthorized"
    wrong = await client.request(
        method, path, json=body, headers={"Authorization": "Bearer not-the-token"}
    )
    assert wrong.status_code == 403
    basic = await client.request(method, path, json=body, headers={"Authorization": "Basic eA=="})
    assert basic.status_code in (401, 403)
    right = await client.request(method, path, json=body, headers=AUTH)
    assert right.status_code in (200, 404), right.text


@pytest.mark.parametrize("path", ["/cache/health", "/cache/namespaces"])
async def test_open_routes_need_no_auth(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 200


async def test_application_dependency_guards_admin_routes(cache: FallbackCache) -> None:
    async def require_admin(x_role: str | None = Header(default=None)) -> None:
        if x_role != "admin":
            raise HTTPException(403, detail="admins only")

    app = FastAPI()
    app.include_router(create_cache_router(cache, dependency=require_admin, manage_lifespan=False))
    async with client_for(app) as c:
        for method, path, body in ADMIN_ROUTES:
            assert (await c.request(method, path, json=body)).status_code == 403
            ok = await c.request(method, path, json=body, headers={"X-Role": "admin"})
            assert ok.status_code in (200, 404), (path, ok.text)
        assert (await c.get("/cache/health")).status_code == 200


async def test_token_and_dependency_together_both_apply(cache: FallbackCache) -> None:
    def require_admin(x_role: str | None = Header(default=None)) -> None:
        if x_role != "admin":
            raise HTTPException(403, detail="admins only")

    app = FastAPI()
    app.include_router(
        create_cache_router(cache, token=TOKEN, dependency=require_admin, manage_lifespan=False)
    )
    async with client_for(app) as c:
        assert (await c.get("/cache/stats", headers=AUTH)).status_code == 403
        assert (await c.get("/cache/stats", headers={"X-Role": "admin"})).status_code == 401
        both = await c.get("/cache/stats", headers={**AUTH, "X-Role": "admin"})
        assert both.status_code == 200


async def test_insecure_opt_out_is_explicit_and_loud(
    cache: FallbackCache, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="chenu_cache"):
        router = create_cache_router(
            cache, insecure_allow_anonymous_admin=True, manage_lifespan=False
        )
    assert any("anonymous" in r.getMessage() for r in caplog.records)
    app = FastAPI()
    app.include_router(router)
    async with client_for(app) as c:
        assert (await c.get("/cache/stats")).status_code == 200


# -- routes ----------------------------------------------------------------------------


async def test_stats_has_the_spec_shape(client: httpx.AsyncClient, cache: FallbackCache) -> None:
    await cache.set("1", "x", namespace="user")
    await cache.get("1", namespace="user")
    body = (await client.get("/cache/stats", headers=AUTH)).json()
    assert body["backend"] == "redis"
    assert body["redis"]["connected"] is True
    assert isinstance(body["redis"]["usedMemory"], str)
    assert body["redis"]["connectedClients"] >= 1
    assert {"hits", "misses", "size", "hitRate"} <= set(body["memory"])
    assert body["namespaces"]["user"]["hits"] == 1
    assert body["failovers"] == 0


async def test_health_reports_backend_and_latency(client: httpx.AsyncClient) -> None:
    body = (await client.get("/cache/health")).json()
    assert body["status"] == "ok"
    assert body["backend"] == "redis"
    assert body["breakerState"] == "closed"
    assert body["redis"]["reachable"] is True
    assert body["redis"]["latencyMs"] >= 0


async def test_health_on_a_memory_only_cache() -> None:
    cache = FallbackCache(read_env=False)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    async with client_for(app) as c:
        body = (await c.get("/cache/health")).json()
    assert body == {
        "status": "ok",
        "backend": "memory",
        "breakerState": "memory-only",
        "redis": {"configured": False, "reachable": None, "latencyMs": None, "error": None},
    }


async def test_keys_page_to_the_end(client: httpx.AsyncClient, cache: FallbackCache) -> None:
    expected = {f"user:{i}" for i in range(250)}
    await cache.set_many(dict.fromkeys(expected, 1) | {f"agent:{i}": 1 for i in range(20)})
    seen: list[str] = []
    cursor = 0
    for _ in range(1000):
        reply = await client.get(
            "/cache/keys", params={"pattern": "user:*", "cursor": cursor, "limit": 30}, headers=AUTH
        )
        assert reply.status_code == 200
        page = reply.json()
        assert page["pattern"] == "user:*"
        seen.extend(page["keys"])
        cursor = page["cursor"]
        if cursor == 0:
            break
    assert set(seen) == expected


async def test_get_key_returns_value_and_ttl(
    client: httpx.AsyncClient, cache: FallbackCache
) -> None:
    await cache.set("123", {"name": "Ada", "tags": [1, 2]}, namespace="user")
    body = (await client.get("/cache/key/user:123", headers=AUTH)).json()
    assert body["key"] == "user:123"
    assert body["value"] == {"name": "Ada", "tags": [1, 2]}
    assert body["type"] == "dict"
    assert body["serializable"] is True
    assert 3590 < body["ttl"] <= 3600
    same = (await client.get("/cache/key/123", params={"namespace": "user"}, headers=AUTH)).json()
    assert same["value"] == body["value"]
    await cache.set("none", None)
    assert (await client.get("/cache/key/none", headers=AUTH)).json()["value"] is None
    missing = await client.get("/cache/key/absent", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["detail"]["error"] == "KeyNotFound"


async def test_keys_with_slashes_work(client: httpx.AsyncClient, cache: FallbackCache) -> None:
    await cache.set("path:/a/b", "v")
    assert (await client.get("/cache/key/path:/a/b", headers=AUTH)).json()["value"] == "v"
    deleted = await client.delete("/cache/key/path:/a/b", headers=AUTH)
    assert deleted.json() == {"key": "path:/a/b", "deleted": 1}


async def test_post_key_sets_with_ttl_namespace_and_no_expiry(
    client: httpx.AsyncClient, cache: FallbackCache
) -> None:
    reply = await client.post(
        "/cache/key", json={"key": "1", "value": [1, "a"], "namespace": "search"}, headers=AUTH
    )
    assert reply.status_code == 200
    assert reply.json()["key"] == "search:1"
    assert 295 < reply.json()["ttl"] <= 300
    assert await cache.get("search:1") == [1, "a"]
    timed = await client.post("/cache/key", json={"key": "t", "value": 1, "ttl": 12}, headers=AUTH)
    assert 11 < timed.json()["ttl"] <= 12
    forever = await client.post(
        "/cache/key", json={"key": "f", "value": 1, "noExpiry": True}, headers=AUTH
    )
    assert forever.json()["ttl"] is None


async def test_delete_routes_report_what_they_removed(
    client: httpx.AsyncClient, cache: FallbackCache, redis_url: str
) -> None:
    await cache.set_many({"user:1": 1, "user:2": 2, "agent:1": 3, "k": 4})
    assert (await client.delete("/cache/key/k", headers=AUTH)).json() == {"key": "k", "deleted": 1}
    assert (await client.delete("/cache/key/k", headers=AUTH)).json()["deleted"] == 0
    ns = await client.delete("/cache/namespace/user", headers=AUTH)
    assert ns.json() == {"namespace": "user", "deleted": 2}
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        await raw.set("someone-else:key", "theirs")
        cleared = await client.post("/cache/clear", headers=AUTH)
        assert cleared.json() == {"deleted": 1}
        assert await raw.get("someone-else:key") == b"theirs"
    finally:
        await raw.delete("someone-else:key")
        await raw.aclose()


async def test_namespaces_lists_the_registry(client: httpx.AsyncClient) -> None:
    body = (await client.get("/cache/namespaces")).json()
    names = {n["name"]: n["ttl"] for n in body["namespaces"]}
    assert names["user"] == 3600
    assert names["governance"] == 60
    assert len(names) == 10
    assert body["defaultTtl"] == 3600


# -- bad input -------------------------------------------------------------------------

BAD_REQUESTS = [
    ("POST", "/cache/key", {"json": {"key": "", "value": 1}}),
    ("POST", "/cache/key", {"json": {"key": "x" * 2000, "value": 1}}),
    ("POST", "/cache/key", {"json": {"key": "has space", "value": 1}}),
    ("POST", "/cache/key", {"json": {"key": "k", "value": 1, "ttl": -5}}),
    ("POST", "/cache/key", {"json": {"key": "k", "value": 1, "ttl": 0}}),
    ("POST", "/cache/key", {"json": {"key": "k", "value": 1, "ttl": 10**12}}),
    ("POST", "/cache/key", {"json": {"key": "k", "value": 1, "namespace": "a*"}}),
    ("POST", "/cache/key", {"json": {"key": "k", "value": 1, "namespace": "UPPER"}}),
    ("POST", "/cache/key", {"json": {"key": "k", "value": 1, "surprise": True}}),
    ("POST", "/cache/key", {"json": {"value": 1}}),
    ("POST", "/cache/key", {"json": [1, 2]}),
    (
        "POST",
        "/cache/key",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
    ),
    ("POST", "/cache/key", {"content": b"", "headers": {"content-type": "application/json"}}),
    (
        "POST",
        "/cache/key",
        {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
    ),
    ("GET", "/cache/keys", {"params": {"pattern": ""}}),
    ("GET", "/cache/keys", {"params": {"pattern": "user:[abc"}}),
    ("GET", "/cache/keys", {"params": {"pattern": "ends-with\\"}}),
    ("GET", "/cache/keys", {"params": {"pattern": "x" * 5000}}),
    ("GET", "/cache/keys", {"params": {"pattern": "a b"}}),
    ("GET", "/cache/keys", {"params": {"limit": 10**9}}),
    ("GET", "/cache/keys", {"params": {"limit": 0}}),
    ("GET", "/cache/keys", {"params": {"limit": "many"}}),
    ("GET", "/cache/keys", {"params": {"cursor": -1}}),
    ("GET", "/cache/keys", {"params": {"cursor": "x"}}),
    ("GET", "/cache/key/has%20space", {}),
    ("GET", "/cache/key/" + "k" * 3000, {}),
    ("GET", "/cache/key/k", {"params": {"namespace": "Bad*"}}),
    ("DELETE", "/cache/key/tab%09key", {}),
    ("DELETE", "/cache/namespace/user*", {}),
    ("DELETE", "/cache/namespace/Users", {}),
    ("DELETE", "/cache/namespace/" + "n" * 100, {}),
    ("DELETE", "/cache/namespace/a%5Bb%5D", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), BAD_REQUESTS)
async def test_bad_input_is_a_4xx_with_a_json_error(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    reply = await client.request(method, path, headers=headers, **kwargs)
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    assert "detail" in reply.json()


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"key": "k", "value": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    reply = await client.post(
        "/cache/key", content=big, headers={**AUTH, "content-type": "application/json"}
    )
    assert reply.status_code == 413


async def test_value_over_max_value_size_is_413(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, max_value_size=100)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    async with client_for(app) as c:
        reply = await c.post("/cache/key", json={"key": "k", "value": "x" * 500}, headers=AUTH)
    assert reply.status_code == 413
    assert reply.json()["detail"]["error"] == "ValueTooLargeError"
    await cache.close()


async def test_values_and_tokens_never_reach_the_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret_value = "very-secret-cached-value-4242"
    with caplog.at_level(logging.DEBUG):
        await client.post("/cache/key", json={"key": "s", "value": secret_value}, headers=AUTH)
        await client.get("/cache/key/s", headers=AUTH)
        await client.get("/cache/stats", headers={"Authorization": "Bearer wrong-token-xyz"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert secret_value not in text
    assert TOKEN not in text
    assert "wrong-token-xyz" not in text


async def test_non_json_values_are_described_not_500(redis_url: str, prefix: str) -> None:
    from datetime import datetime

    from chenu_cache import PickleSerializer

    cache = FallbackCache(
        redis_url=redis_url, prefix=prefix, serializer=PickleSerializer(b"0123456789abcdef-k")
    )
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    try:
        await cache.set("when", datetime(2026, 1, 1))
        async with client_for(app) as c:
            body = (await c.get("/cache/key/when", headers=AUTH)).json()
        assert body == {
            "key": "when",
            "value": None,
            "type": "datetime",
            "serializable": False,
            "ttl": body["ttl"],
        }
    finally:
        await cache.clear()
        await cache.close()


# -- lifespan and OpenAPI --------------------------------------------------------------


async def test_router_hooks_the_cache_into_the_app_lifespan(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(prefix=prefix)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN))
    import os

    os.environ["CHENU_CACHE_REDIS_URL"] = redis_url
    try:
        async with app.router.lifespan_context(app):
            assert cache.backend.name == "redis"
            await cache.set("k", 1)
            await cache.clear()
        assert cache.primary is None  # closed with the app, as before initialize()
    finally:
        del os.environ["CHENU_CACHE_REDIS_URL"]


async def test_cache_lifespan_composes_with_the_apps_own(redis_url: str, prefix: str) -> None:
    cache = FallbackCache(redis_url=redis_url, prefix=prefix)
    events: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append(f"app start, cache on {cache.backend.name}")
        await cache.set("seen", 1)
        yield {"state": "yes"}
        events.append("app stop")

    app = FastAPI(lifespan=cache_lifespan(cache, app_lifespan))
    async with app.router.lifespan_context(app) as state:
        assert state == {"state": "yes"}
    assert events == ["app start, cache on redis", "app stop"]
    await cache.initialize()
    await cache.clear()
    await cache.close()


async def test_openapi_describes_every_route(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    expected = {
        ("get", "/cache/stats"),
        ("get", "/cache/health"),
        ("get", "/cache/keys"),
        ("get", "/cache/key/{key}"),
        ("post", "/cache/key"),
        ("delete", "/cache/key/{key}"),
        ("delete", "/cache/namespace/{namespace}"),
        ("post", "/cache/clear"),
        ("get", "/cache/namespaces"),
    }
    found = {(m, p) for p, ops in paths.items() for m in ops}
    assert expected <= found
    for method, path in expected:
        op = paths[path][method]
        assert op.get("summary")
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in ok, (method, path)
    assert "SetKeyRequest" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
