"""The error classification table of docs/failover.md, row by row, on real servers.

An unreachable, slow or non-serving server is an outage (the facade fails over); a
command refused for this key or these arguments is not (reads are misses, other calls
raise `CommandRefusedError`); an argument out of range is the caller's `ValidationError`.
Before the fix every row was an outage: a WRONGTYPE key written by another program, or
``scan(cursor=2**64)``, made the cache fail over, and the failback then deleted keys.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
import redis.exceptions as rx

from chenu_cache import (
    MISSING,
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CommandRefusedError,
    FallbackCache,
    RedisBackend,
    ValidationError,
)
from chenu_cache.backends._redis_errors import translate
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis

PREFIX = "cls:"


def backend_for(url: str, **options: Any) -> RedisBackend:
    options.setdefault("operation_timeout", 0.2)
    return RedisBackend(url, prefix=PREFIX, **options)


async def cache_on(backend: RedisBackend) -> FallbackCache:
    cache = FallbackCache(primary=backend, read_env=False, recent_window=0, probe_interval=60)
    await cache.initialize()
    return cache


async def failovers(cache: FallbackCache) -> int:
    stats = (await cache.get_statistics()).to_dict()
    return int(stats["failovers"])


async def expect_outage(
    url: str,
    call: Callable[[RedisBackend], Awaitable[object]],
    kind: type[BackendError] = BackendUnavailableError,
) -> BackendError:
    backend = backend_for(url)
    try:
        with pytest.raises(kind) as caught:
            await call(backend)
    finally:
        await backend.close()
    return caught.value


# -- outages: the facade fails over ----------------------------------------------------


async def test_connection_refused_is_an_outage() -> None:
    await expect_outage(f"redis://127.0.0.1:{free_port()}/0", lambda b: b.get("k"))


async def test_connection_reset_is_an_outage(server: RedisServer) -> None:
    backend = backend_for(server.url)
    try:
        await backend.set("k", b"v", None)
        server.kill()  # the pooled connection is now dead
        with pytest.raises(BackendUnavailableError):
            await backend.get("k")
    finally:
        await backend.close()


async def test_a_hung_server_is_a_timeout(server: RedisServer) -> None:
    backend = backend_for(server.url, operation_timeout=0.1)
    try:
        await backend.ping()
        server.pause()
        with pytest.raises(BackendTimeoutError):
            await backend.get("k")
    finally:
        server.resume()
        await backend.close()


async def test_loading_is_an_outage(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.config_set("key-load-delay", 200)  # microseconds per key
    await raw.config_set("loading-process-events-interval-bytes", 1024)
    await raw.execute_command("DEBUG", "POPULATE", 5000)
    reload = asyncio.ensure_future(raw.execute_command("DEBUG", "RELOAD"))
    try:
        backend = backend_for(server.url, operation_timeout=1.0)
        cache = await cache_on(backend)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            seen = None
            while seen is None and loop.time() < deadline:
                try:
                    await backend.get("k")
                except BackendUnavailableError as exc:
                    seen = exc
            assert seen is not None
            assert "loading" in str(seen).lower(), seen
            await cache.get("k")  # the facade treats it as an outage
            if not reload.done():
                assert await failovers(cache) == 1
        finally:
            await cache.close()
    finally:
        await reload


async def test_busy_script_is_an_outage(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.config_set("busy-reply-threshold", 50)
    spinner = redis_asyncio.Redis.from_url(server.url, socket_timeout=10)
    spin = asyncio.ensure_future(spinner.eval("while true do end", 0))
    try:
        await asyncio.sleep(0.1)  # let the script start: it holds the server from here on
        error = await expect_outage(server.url, lambda b: b.get("k"))
        assert "BUSY" in str(error)
    finally:
        await raw.script_kill()
        with contextlib.suppress(rx.ResponseError):
            await spin
        await spinner.aclose()


async def test_readonly_replica_is_an_outage(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.replicaof("127.0.0.1", free_port())  # a replica of nothing: read-only
    error = await expect_outage(server.url, lambda b: b.set("k", b"v", None))
    assert "read only" in str(error).lower() or "readonly" in str(error).lower()


async def test_masterdown_is_an_outage(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.config_set("replica-serve-stale-data", "no")
    await raw.replicaof("127.0.0.1", free_port())
    error = await expect_outage(server.url, lambda b: b.get("k"))
    assert "MasterDown" in str(error) or "MASTERDOWN" in str(error)


async def test_clusterdown_is_an_outage(redis_server_binary_path: str, tmp_path: Any) -> None:
    port = free_port()
    while port > 55535:  # the cluster bus listens 10,000 ports higher
        port = free_port()
    node = RedisServer(
        redis_server_binary_path,
        port=port,
        extra_args=["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "n.conf")],
    )
    node.start()
    try:  # a cluster node that serves no slot, reached by a plain client
        error = await expect_outage(node.url, lambda b: b.get("k"))
        assert "ClusterDown" in str(error) or "CLUSTERDOWN" in str(error)
    finally:
        node.close()


async def test_oom_is_an_outage(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.config_set("maxmemory-policy", "noeviction")
    await raw.config_set("maxmemory", 1)
    try:
        error = await expect_outage(server.url, lambda b: b.set("k", b"v", None))
        assert "OutOfMemory" in str(error) or "OOM" in str(error)
    finally:
        await raw.config_set("maxmemory", 0)


async def test_noreplicas_is_an_outage(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.config_set("min-replicas-to-write", 1)
    error = await expect_outage(server.url, lambda b: b.set("k", b"v", None))
    assert "NOREPLICAS" in str(error)


async def test_missing_password_is_an_outage(server: RedisServer, raw: redis_asyncio.Redis) -> None:
    await raw.config_set("requirepass", "s3cret")
    await expect_outage(server.url, lambda b: b.get("k"))  # NOAUTH
    wrong = server.url.replace("redis://", "redis://:wrong@")
    await expect_outage(wrong, lambda b: b.get("k"))  # WRONGPASS


async def test_an_outage_row_makes_the_facade_fail_over(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    cache = await cache_on(backend_for(server.url))
    try:
        await raw.config_set("min-replicas-to-write", 1)
        await cache.set("k", "v")  # refused for want of replicas: served by memory
        assert cache.backend.name == "memory"
        assert await failovers(cache) == 1
        assert await cache.get("k") == "v"
    finally:
        await raw.config_set("min-replicas-to-write", 0)
        await cache.close()


# -- refused commands: no failover -----------------------------------------------------


async def test_wrongtype_is_a_refused_read_and_a_miss(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    await raw.hset(PREFIX + "foreign", "field", "value")  # another program's hash
    backend = backend_for(server.url)
    with pytest.raises(CommandRefusedError, match="WRONGTYPE"):
        await backend.get("foreign")
    cache = await cache_on(backend)
    try:
        await cache.set("mine", "kept")
        assert await cache.get("foreign", default=MISSING) is MISSING
        assert await cache.get_or_set("foreign", lambda: "loaded") == "loaded"  # SET heals it
        assert await cache.get("foreign") == "loaded"
        stats = (await cache.get_statistics()).to_dict()
        assert stats["backend"] == "redis"
        assert stats["failovers"] == 0
        assert stats["commandErrors"] == 2  # get() and get_or_set()'s lookup
        assert await raw.get(PREFIX + "mine") is not None  # no failback deleted it
    finally:
        await cache.close()


async def test_noperm_is_refused_not_an_outage(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    await raw.acl_setuser(
        "limited", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-get"]
    )
    url = server.url.replace("redis://", "redis://limited:pw@")
    backend = backend_for(url)
    with pytest.raises(CommandRefusedError, match=r"NoPermission|NOPERM|permission"):
        await backend.get("k")
    cache = await cache_on(backend)
    try:
        await cache.set("k", "v")
        assert await cache.get("k", default=MISSING) is MISSING  # refused read: a miss
        assert cache.backend.name == "redis"
        assert await failovers(cache) == 0
    finally:
        await cache.close()


# -- arguments out of range: the caller's error ----------------------------------------


async def test_a_cursor_out_of_range_is_a_validation_error(server: RedisServer) -> None:
    backend = backend_for(server.url)
    with pytest.raises(ValidationError, match="cursor"):
        await backend.scan("*", cursor=2**64)
    cache = await cache_on(backend)
    try:
        await cache.set("k", "v")
        with pytest.raises(ValidationError, match="cursor"):
            await cache.scan("*", cursor=2**64)
        assert cache.backend.name == "redis"
        assert await failovers(cache) == 0
    finally:
        await cache.close()


# -- the mapping of every redis-py error class -----------------------------------------


def _instances() -> list[BaseException]:
    made = []
    for name in dir(rx):
        kind = getattr(rx, name)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            try:
                made.append(kind("x"))
            except (TypeError, ValueError):  # a class needing other arguments
                continue
    return made


@pytest.mark.parametrize("error", _instances(), ids=lambda e: type(e).__name__)
def test_every_redis_py_error_maps_to_ours(error: BaseException) -> None:
    ours = translate(error)
    outage = (
        rx.ConnectionError,
        rx.TimeoutError,
        rx.ReadOnlyError,
        rx.ClusterDownError,
        rx.TryAgainError,
        rx.AskError,
        rx.OutOfMemoryError,
        rx.RedisClusterException,
    )
    if isinstance(error, outage):
        assert isinstance(ours, BackendError)
    elif isinstance(error, rx.DataError):
        assert isinstance(ours, ValidationError)
    elif isinstance(error, rx.ResponseError):
        assert isinstance(ours, CommandRefusedError)
    else:
        assert isinstance(ours, BackendError)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("BUSY Redis is busy running a script", BackendUnavailableError),
        ("MISCONF Errors writing to the disk", BackendUnavailableError),
        ("NOREPLICAS Not enough good replicas to write.", BackendUnavailableError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", CommandRefusedError),
        ("invalid cursor", ValidationError),
        ("unknown command 'FOO'", CommandRefusedError),
    ],
)
def test_error_replies_by_code(reply: str, kind: type[Exception]) -> None:
    assert isinstance(translate(rx.ResponseError(reply)), kind)


def test_client_bugs_and_socket_errors() -> None:
    assert isinstance(translate(AttributeError("x")), BackendError)
    assert isinstance(translate(ConnectionResetError()), BackendUnavailableError)
    assert isinstance(translate(TimeoutError()), BackendTimeoutError)


# -- the admin routes: a refused command is a 502, a bad cursor a 400, neither a failover


async def test_routes_answer_refusals_and_bad_cursors_without_failing_over(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    import httpx
    from fastapi import FastAPI

    from chenu_cache.contrib.fastapi import create_cache_router

    await raw.acl_setuser(
        "reader", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-set"]
    )
    url = server.url.replace("redis://", "redis://reader:pw@")
    cache = await cache_on(backend_for(url))
    app = FastAPI()
    app.include_router(create_cache_router(cache, token="t", manage_lifespan=False))
    headers = {"Authorization": "Bearer t"}
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            huge = await client.get(f"/cache/keys?cursor={2**64}", headers=headers)
            assert huge.status_code == 400, huge.text
            assert "cursor" in huge.json()["detail"]["message"]
            refused = await client.post(
                "/cache/key", json={"key": "k", "value": 1, "ttl": 60}, headers=headers
            )
            assert refused.status_code == 502, refused.text
            assert refused.json()["detail"]["error"] == "CommandRefusedError"
        assert cache.backend.name == "redis"
        assert await failovers(cache) == 0
    finally:
        await cache.close()
