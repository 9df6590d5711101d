"""Redis storage on redis-py's asyncio client."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, cast

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._glob import escape_glob
from ..exceptions import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
)
from ._batch import Batcher
from ._clients import client_from_url
from .base import Backend, BackendStats, SupportsLock

__all__ = ["DEFAULT_OPERATION_TIMEOUT", "RedisBackend"]

DEFAULT_OPERATION_TIMEOUT = 0.25
"""Seconds a Redis command may take before it counts as failed.

A GET on a healthy Redis answers in well under a millisecond on the same network and a
few milliseconds across zones; a quarter of a second is far beyond that, yet short
enough that a caller stuck on a hung server notices little before the facade moves on.
"""

LOCK_MARK = "!lock:"
"""Physical keys of locks are ``prefix + LOCK_MARK + key``; scans leave them out."""

# Compare-and-delete: a holder whose lock lapsed must not release its successor's.
_RELEASE_LOCK = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""

DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_MAX_CONNECTIONS = 64
_SCAN_BATCH = 500
_SENTINEL_CHECK = 0.5  # seconds between background checks of who the primary is


def _translate(exc: BaseException) -> BackendError:
    """The one place where redis-py's and the socket layer's errors become ours."""
    if isinstance(exc, (RedisTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return BackendTimeoutError(f"Redis did not answer in time: {exc}")
    if isinstance(exc, (RedisConnectionError, OSError)):
        return BackendUnavailableError(f"Redis is unreachable: {exc}")
    if isinstance(exc, RedisError):
        return BackendError(f"Redis failed: {type(exc).__name__}: {exc}")
    return BackendError(f"the Redis client failed: {type(exc).__name__}: {exc}")


class _Slots:
    """At most ``n`` commands at once; callers beyond that wait instead of failing.

    A caller that waited while another command failed gives up without sending: when
    the server hangs, the queue behind the first timeout must not pay one timeout per
    batch of connections before the facade's failover takes over.
    """

    def __init__(self, n: int) -> None:
        self._semaphore = asyncio.Semaphore(n)
        self.failures = 0
        self.after: Callable[[], None] | None = None  # runs after each successful command

    async def __aenter__(self) -> None:
        semaphore = self._semaphore
        if not semaphore.locked():
            await semaphore.acquire()  # free slot: returns without suspending
            return
        seen = self.failures
        await semaphore.acquire()
        if self.failures != seen:
            semaphore.release()
            raise BackendUnavailableError(
                "Redis failed while this call waited for a connection; not sent"
            )

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        self._semaphore.release()
        if exc_type is None and self.after is not None:
            self.after()


# Everything a command can raise, not only RedisError: redis-py's own bugs surface as
# AttributeError and the like (seen with 5.0.1 mid slot migration and after a Sentinel
# switch), and a client that breaks is a backend that fails, for the facade to absorb.
# Only this module's commands run inside these blocks; CancelledError is not caught.
_ERRORS = (Exception,)


def _decodes_responses(client: Any) -> bool:
    get_encoder = getattr(client, "get_encoder", None)
    if callable(get_encoder):
        return bool(getattr(get_encoder(), "decode_responses", False))
    pool = getattr(client, "connection_pool", None)
    return bool(getattr(pool, "connection_kwargs", {}).get("decode_responses"))


def _node_cursor(cursors: Any) -> int:
    """A cluster SCAN on one node answers ``{node: cursor}``; older clients the cursor."""
    if isinstance(cursors, dict):
        return int(next(iter(cursors.values())))
    return int(cursors)


def _total(info: Any, field: str) -> int | None:
    """A counter from INFO, summed over the nodes of a cluster's ``{node: info}`` reply."""
    if not isinstance(info, dict):
        return None
    if field in info:
        return int(info[field])
    values = [int(v[field]) for v in info.values() if isinstance(v, dict) and field in v]
    return sum(values) if values else None


def _human(size: int | None) -> str | None:
    """Bytes as Redis's used_memory_human writes them (``1.20M``)."""
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{int(value)}B" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    return f"{value:.2f}T"


def _px(ttl: float) -> int:
    # Round up: an entry must never expire before the TTL the caller asked for.
    return max(1, math.ceil(ttl * 1000))


class RedisBackend(Backend, SupportsLock):
    """Redis as a `Backend`, under a key prefix.

    Build it from a URL (``redis://``, ``rediss://``, ``unix://``) or hand it a ready
    ``redis.asyncio.Redis`` client (``decode_responses`` must be off). Built from a URL,
    it uses its own connection settings, never redis-py's defaults (5-second socket
    timeouts and a retry loop that held one call for about a minute against a hung
    server): every command has ``operation_timeout`` seconds and no retry, because the
    facade's failover is the retry policy. A ready client keeps its own timeouts.

    At most ``max_connections`` commands run at once; more callers wait their turn
    instead of failing. With ``batching`` (the default), concurrent ``get`` calls are
    coalesced into one ``MGET`` and concurrent ``set`` calls into one pipeline, while a
    lone call is sent at once; results and errors stay per call.

    Every physical key starts with ``prefix`` (default ``"chenu:"``); scans and deletes
    use ``SCAN MATCH`` and ``UNLINK`` under it and never ``KEYS`` or ``FLUSHDB``, so
    other data in the same database is never touched.
    """

    name = "redis"

    recent_window: float
    """Seconds of acknowledged changes a failover should replay (see ``FallbackCache``).

    2 s for one server or a Cluster; 10 s behind Sentinel, where the old primary keeps
    taking writes from the promotion of its replica until the switch is announced and
    seen, and then loses them.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        prefix: str = "chenu:",
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        batching: bool = True,
        **connection_options: Any,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisBackend needs exactly one of url= or client=")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(
                "prefix must be a non-empty string: without one, clear() would reach "
                "keys other software keeps in the same database"
            )
        if not prefix.isprintable() or " " in prefix:
            raise ConfigurationError("prefix must not contain whitespace or control characters")
        if operation_timeout <= 0 or connect_timeout <= 0 or max_connections < 1:
            raise ConfigurationError(
                "operation_timeout and connect_timeout must be > 0, max_connections >= 1"
            )
        self.prefix = prefix
        self.operation_timeout = operation_timeout
        self._owns_client = client is None
        if client is None:
            assert url is not None
            client = client_from_url(
                url,
                operation_timeout=operation_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                options=dict(connection_options),
            )
        else:
            if _decodes_responses(client):
                raise ConfigurationError(
                    "the Redis client must not decode responses: the cache stores bytes"
                )
            pool = getattr(client, "connection_pool", None)
            pool_limit = getattr(pool, "max_connections", None)
            if isinstance(pool_limit, int) and pool_limit < max_connections:
                max_connections = pool_limit
        self.client: Redis | RedisCluster = client
        self.cluster = isinstance(client, RedisCluster)
        self.max_connections = max_connections
        self._slots = _Slots(max_connections)
        self._glob_prefix = escape_glob(prefix)
        # A Sentinel may promote a replica without any command failing here; the
        # writes the old primary took last may then be lost. Seeing the primary's
        # address change is treated as a failure, so the facade fails over and replays
        # its recent changes on the new primary before using it.
        self._sentinel_pool = getattr(client, "connection_pool", None)
        if getattr(self._sentinel_pool, "sentinel_manager", None) is None:
            self._sentinel_pool = None
        self._primary_address: object = None
        self._next_discovery = 0.0
        self._drop_connections = False
        self._discovery: asyncio.Task[None] | None = None
        self.recent_window = 2.0
        if self._sentinel_pool is not None:
            self._slots.after = self._check_primary
            self.recent_window = 10.0
        self._lock_prefix = prefix + LOCK_MARK
        self._release_lock = client.register_script(_RELEASE_LOCK)
        self._hits = 0
        self._misses = 0
        # Concurrent GETs become one MGET, concurrent SETs one pipeline; a lone call
        # is sent as it is.
        self._get_batcher: Batcher[str, bytes | None] | None = None
        self._set_batcher: Batcher[tuple[str, bytes, float | None], None] | None = None
        if batching:
            self._get_batcher = Batcher(self._get_one, self._mget)
            self._set_batcher = Batcher(self._set_one, self._set_batch)

    def _check_primary(self) -> None:
        # At most once a second, ask the sentinels in the background who the primary
        # is: after a manual failover the old primary accepts writes for a while, and
        # nothing would fail here until it is demoted, its recent writes lost.
        now = time.monotonic()
        if now >= self._next_discovery and (self._discovery is None or self._discovery.done()):
            self._next_discovery = now + _SENTINEL_CHECK
            self._discovery = asyncio.get_running_loop().create_task(self._discover())
        address = getattr(self._sentinel_pool, "master_address", None)
        if address == self._primary_address or address is None:
            return
        first, self._primary_address = self._primary_address is None, address
        if not first:
            # Connections still open to the old primary would go on reading from it,
            # demoted to a replica and serving its stale data: drop them all before
            # the next ping lets the facade fail back.
            self._drop_connections = True
            raise BackendUnavailableError(
                f"Sentinel promoted a new primary ({address}); replaying recent changes"
            )

    async def _discover(self) -> None:
        pool: Any = self._sentinel_pool
        try:
            await asyncio.wait_for(pool.get_master_address(), self.operation_timeout * 4)
        except Exception:
            return

    async def _agreed_primary(self, pool: Any) -> None:
        """Fail unless every sentinel that answers names the same primary.

        Right after a failover the sentinels disagree for a moment, and redis-py takes
        the first answer it gets: connections would then go to both servers, writes to
        one and reads from the other. Failing back only once they agree avoids that.
        """
        answers = set()
        try:
            for sentinel in pool.sentinel_manager.sentinels:
                try:
                    address = await asyncio.wait_for(
                        sentinel.sentinel_get_master_addr_by_name(pool.service_name),
                        self.operation_timeout,
                    )
                except Exception:  # noqa: S112 - a sentinel that cannot answer has no vote
                    continue
                if address:
                    host = address[0]
                    host = host.decode() if isinstance(host, bytes) else str(host)
                    answers.add((host, int(address[1])))
        except _ERRORS as exc:
            self._fail(exc)
        if len(answers) != 1:
            raise BackendUnavailableError(f"the sentinels do not agree on a primary: {answers}")
        agreed = answers.pop()
        pool.master_address = agreed
        self._primary_address = agreed

    def _fail(self, exc: BaseException) -> NoReturn:
        self._slots.failures += 1
        if isinstance(exc, BackendError):  # already ours (a waiter that gave up)
            raise exc
        raise _translate(exc) from exc

    # -- reads -----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        batcher = self._get_batcher
        if batcher is not None:
            value = await batcher.submit(key)  # a lone call is sent as a plain GET
        else:
            value = await self._get_one(key)
        if value is None:
            self._misses += 1
        else:
            self._hits += 1
        return value

    async def _get_one(self, key: str) -> bytes | None:
        try:
            async with self._slots:
                return cast("bytes | None", await self.client.get(self.prefix + key))
        except _ERRORS as exc:
            self._fail(exc)

    async def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        prefix = self.prefix
        physical = [prefix + k for k in keys]
        try:
            async with self._slots:
                if isinstance(self.client, RedisCluster):  # keys spread over slots
                    values = await self.client.mget_nonatomic(physical)
                else:
                    values = await self.client.mget(physical)
                return cast("list[bytes | None]", values)
        except _ERRORS as exc:
            self._fail(exc)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._mget(keys)
        found = sum(1 for v in values if v is not None)
        self._hits += found
        self._misses += len(values) - found
        return values

    async def ttl(self, key: str) -> float | None:
        try:
            async with self._slots:
                millis: int = await self.client.pttl(self.prefix + key)
        except _ERRORS as exc:
            self._fail(exc)
        if millis == -2:
            return None
        if millis == -1:
            return math.inf
        return millis / 1000

    # -- writes ----------------------------------------------------------------------

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        batcher = self._set_batcher
        if batcher is not None:
            await batcher.submit((key, value, ttl))  # a lone call is sent as a plain SET
        else:
            await self._set_one((key, value, ttl))

    async def _set_one(self, item: tuple[str, bytes, float | None]) -> None:
        key, value, ttl = item
        try:
            async with self._slots:
                if ttl is None:
                    await self.client.set(self.prefix + key, value)
                else:
                    await self.client.set(self.prefix + key, value, px=_px(ttl))
        except _ERRORS as exc:
            self._fail(exc)

    async def _set_batch(self, items: Sequence[tuple[str, bytes, float | None]]) -> list[None]:
        await self.set_many(items)
        return [None] * len(items)

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        if not items:
            return
        prefix = self.prefix
        try:
            async with self._slots:
                pipe = self.client.pipeline(transaction=False)
                for key, value, ttl in items:
                    if ttl is None:
                        pipe.set(prefix + key, value)
                    else:
                        pipe.set(prefix + key, value, px=_px(ttl))
                await pipe.execute()
        except _ERRORS as exc:
            self._fail(exc)

    async def delete(self, key: str) -> bool:
        try:
            async with self._slots:
                removed: int = await self.client.unlink(self.prefix + key)
        except _ERRORS as exc:
            self._fail(exc)
        return removed > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        prefix = self.prefix
        try:
            async with self._slots:
                removed: int = await self.client.unlink(*[prefix + k for k in keys])
        except _ERRORS as exc:
            self._fail(exc)
        return removed

    # -- scanning --------------------------------------------------------------------

    async def scan(self, pattern: str, cursor: int = 0, count: int = 100) -> tuple[int, list[str]]:
        match = self._glob_prefix + pattern
        try:
            async with self._slots:
                if isinstance(self.client, RedisCluster):
                    return await self._scan_cluster(self.client, match, cursor, count)
                next_cursor, raw = await self.client.scan(cursor=cursor, match=match, count=count)
        except _ERRORS as exc:
            self._fail(exc)
        return int(next_cursor), self._strip(raw)

    async def _scan_cluster(
        self, client: RedisCluster, match: str, cursor: int, count: int
    ) -> tuple[int, list[str]]:
        # One cursor over every primary: node cursor * number of primaries + node index.
        # A page comes from one node; the cursor moves to the next node when it is done.
        await client.initialize()  # after aclose(), nodes must be fetched anew, not reused
        primaries = sorted(client.get_primaries(), key=lambda node: node.name)
        index, node_cursor = cursor % len(primaries), cursor // len(primaries)
        cursors, raw = await client.scan(
            cursor=node_cursor, match=match, count=count, target_nodes=primaries[index]
        )
        node_next = _node_cursor(cursors)
        if node_next:
            return node_next * len(primaries) + index, self._strip(raw)
        return (index + 1 if index + 1 < len(primaries) else 0), self._strip(raw)

    async def delete_pattern(self, pattern: str) -> int:
        # SCAN pages and UNLINKs each page: the server never blocks on one long
        # command, and UNLINK frees memory off the main thread. On a cluster, every
        # primary is scanned, and redis-py splits each UNLINK by slot.
        match = self._glob_prefix + pattern
        try:
            if isinstance(self.client, RedisCluster):
                removed = 0
                await self.client.initialize()  # nodes of a closed client are stale
                for node in self.client.get_primaries():
                    removed += await self._delete_on(match, node)
                return removed
            return await self._delete_on(match, None)
        except _ERRORS as exc:
            self._fail(exc)

    async def _delete_on(self, match: str, node: Any) -> int:
        removed = 0
        cursor = 0
        while True:
            async with self._slots:
                if node is None:
                    cursor, raw = await self.client.scan(
                        cursor=cursor, match=match, count=_SCAN_BATCH
                    )
                else:
                    cursors, raw = await self.client.scan(
                        cursor=cursor, match=match, count=_SCAN_BATCH, target_nodes=node
                    )
                    cursor = _node_cursor(cursors)
                if raw:
                    removed += await self.client.unlink(*raw)
            if not int(cursor):
                return removed

    async def clear(self) -> int:
        return await self.delete_pattern("*")

    def _strip(self, raw: Sequence[bytes | str]) -> list[str]:
        cut = len(self.prefix)
        locks = self._lock_prefix
        keys = []
        for item in raw:
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            # The bare prefix is not one of our keys, and locks are not entries.
            if len(text) > cut and not text.startswith(locks):
                keys.append(text[cut:])
        return keys

    # -- locks (SupportsLock) --------------------------------------------------------

    async def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        try:
            async with self._slots:
                taken = await self.client.set(self._lock_prefix + key, token, nx=True, px=_px(ttl))
        except _ERRORS as exc:
            self._fail(exc)
        return bool(taken)

    async def release_lock(self, key: str, token: str) -> bool:
        try:
            async with self._slots:
                released = await self._release_lock(keys=[self._lock_prefix + key], args=[token])
        except _ERRORS as exc:
            self._fail(exc)
        return bool(released)

    # -- housekeeping ----------------------------------------------------------------

    async def stats(self) -> BackendStats:
        try:
            async with self._slots:
                if isinstance(self.client, RedisCluster):
                    await self.client.initialize()
                    primaries = self.client.get_primaries()
                    memory = await self.client.info("memory", target_nodes=primaries)
                    clients = await self.client.info("clients", target_nodes=primaries)
                else:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.info("memory")
                    pipe.info("clients")
                    memory, clients = await pipe.execute()
        except _ERRORS as exc:
            self._fail(exc)
        used = _total(memory, "used_memory")
        details: dict[str, object] = {
            "used_memory": used,
            "used_memory_human": _human(used),
            "connected_clients": _total(clients, "connected_clients"),
            "deployment": "cluster" if self.cluster else "single",
        }
        if self.cluster and isinstance(memory, dict) and "used_memory" not in memory:
            details["nodes"] = len(memory)
        return BackendStats(name=self.name, hits=self._hits, misses=self._misses, details=details)

    async def ping(self) -> float:
        if self._drop_connections and self._sentinel_pool is not None:
            await self._agreed_primary(self._sentinel_pool)
            self._drop_connections = False
            await self._sentinel_pool.disconnect(inuse_connections=True)
        start = time.perf_counter()
        try:
            async with self._slots:
                if isinstance(self.client, RedisCluster):
                    # The cluster answers only if every primary does and every slot
                    # is served: a failback to half a cluster would just fail again.
                    await self.client.ping(target_nodes=RedisCluster.PRIMARIES)
                    info = await self.client.cluster_info(target_nodes=RedisCluster.RANDOM)
                    state = info.get("cluster_state") if isinstance(info, dict) else None
                    if state not in (None, "ok", b"ok"):
                        raise BackendUnavailableError(f"the cluster's state is {state!r}")
                else:
                    await self.client.ping()
        except _ERRORS as exc:
            self._fail(exc)
        return time.perf_counter() - start

    async def close(self) -> None:
        if self._discovery is not None and not self._discovery.done():
            self._discovery.cancel()
            await asyncio.gather(self._discovery, return_exceptions=True)
        for batcher in (self._get_batcher, self._set_batcher):
            if batcher is not None:
                await batcher.close()
        if not self._owns_client:
            return
        try:
            await self.client.aclose()
            if isinstance(self.client, Redis):
                pool = self.client.connection_pool
                await pool.disconnect()
                # A Sentinel-made client also holds connections to the sentinels.
                manager = getattr(pool, "sentinel_manager", None)
                for sentinel in getattr(manager, "sentinels", ()):
                    await sentinel.aclose()
        except _ERRORS:
            pass  # closing a dead connection has nothing left to release

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r}, operation_timeout={self.operation_timeout})"
