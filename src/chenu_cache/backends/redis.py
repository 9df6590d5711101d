"""Redis storage on redis-py's asyncio client.

Every command runs inside its event loop's `Command` boundary (a connection slot, then
redis-py's errors translated into ours); the per-loop state lives in `_redis_loops`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import ConnectionPool, Redis, RedisCluster

from .._glob import escape_glob
from ..exceptions import (
    BackendUnavailableError,
    CommandRefusedError,
    ConfigurationError,
)
from ._clients import client_from_url
from ._redis_abilities import Abilities, px
from ._redis_info import human_size, info_total
from ._redis_loops import LoopState, LoopStates
from ._redis_near import NearAbilities
from ._sentinel import PrimaryWatch
from .base import Backend, BackendStats, SupportsStatsNowait

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_OPERATION_TIMEOUT",
    "RedisBackend",
]

DEFAULT_OPERATION_TIMEOUT = 0.25
"""Seconds a Redis command may take before it counts as failed.

A GET on a healthy Redis answers in well under a millisecond on the same network and a
few milliseconds across zones; a quarter of a second is far beyond that, yet short
enough that a caller stuck on a hung server notices little before the facade moves on.
"""

LOCK_MARK = "!lock:"
"""Physical keys of locks are ``prefix + LOCK_MARK + key``; scans leave them out."""
TAG_MARK = "!tag:"
"""Physical keys of tag versions are ``prefix + TAG_MARK + tag``; scans leave them out."""

DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_MAX_CONNECTIONS = 64
_SCAN_BATCH = 500


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


class RedisBackend(Abilities, NearAbilities, Backend, SupportsStatsNowait):
    """Redis as a `Backend`, under a key prefix.

    Build it from a URL (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``,
    ``redis+sentinel://``) or hand it a ready ``redis.asyncio`` client
    (``decode_responses`` must be off). Built from a URL, it uses its own connection
    settings, never redis-py's defaults (5-second socket timeouts and a retry loop that
    held one call for about a minute against a hung server): every command has
    ``operation_timeout`` seconds and no retry, because the facade's failover is the
    retry policy. A ready client keeps its own timeouts.

    Usable from any event loop: each loop gets its own connections (built from the URL
    again; a ready plain ``Redis`` client is copied with its pool's settings).

    At most ``max_connections`` commands run at once per loop; more callers wait their
    turn instead of failing. With ``batching`` (the default), concurrent ``get`` calls
    are coalesced into one ``MGET`` and concurrent ``set`` calls into one pipeline,
    while a lone call is sent at once; results and errors stay per call.

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
        self.batching = batching
        self._url = url
        self._client_options: dict[str, Any] = {
            "operation_timeout": operation_timeout,
            "connect_timeout": connect_timeout,
            "max_connections": max_connections,
            "options": dict(connection_options),
        }
        if client is None:
            assert url is not None
            client = self._new_client()  # built now: a bad URL is reported at once
        else:
            if _decodes_responses(client):
                raise ConfigurationError(
                    "the Redis client must not decode responses: the cache stores bytes"
                )
            pool = getattr(client, "connection_pool", None)
            pool_limit = getattr(pool, "max_connections", None)
            if isinstance(pool_limit, int) and pool_limit < max_connections:
                max_connections = pool_limit
        self._given_client = client if url is None else None
        self.cluster = isinstance(client, RedisCluster)
        self.max_connections = max_connections
        self._glob_prefix = escape_glob(prefix)
        self._lock_prefix = prefix + LOCK_MARK
        self._tag_prefix = prefix + TAG_MARK
        self._stream_key = (prefix + "!events").encode()
        self.recent_window = 2.0
        if PrimaryWatch.of(client, operation_timeout) is not None:
            self.recent_window = 10.0
        self._loops = LoopStates(
            client,
            given_client=self._given_client,
            new_client=self._new_client,
            new_state=self._new_state,
        )
        self._hits = 0
        self._misses = 0

    # -- event loops -----------------------------------------------------------------

    def _new_client(self) -> Redis | RedisCluster:
        if self._url is not None:
            return client_from_url(self._url, **self._client_options)
        given = self._given_client
        pool = getattr(given, "connection_pool", None)
        if type(given) is Redis and type(pool) is ConnectionPool:
            # Another loop's copy of a client handed in: its settings, its own sockets.
            copy = ConnectionPool(
                connection_class=pool.connection_class,
                max_connections=pool.max_connections,
                **pool.connection_kwargs,
            )
            return Redis(connection_pool=copy)
        raise ConfigurationError(
            "a ready Cluster or Sentinel client belongs to the event loop that first used "
            "it; to use the cache from several event loops at once, build RedisBackend "
            "from a URL"
        )

    def _new_state(
        self, loop: asyncio.AbstractEventLoop, client: Redis | RedisCluster
    ) -> LoopState:
        batch = (self._get_one, self._mget, self._set_one, self._set_batch)
        return LoopState(
            loop,
            client,
            max_connections=self.max_connections,
            timeout=self.operation_timeout,
            batch=batch if self.batching else None,
        )

    # -- reads -----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        state = self._loops.here()
        batcher = state.get_batcher
        if batcher is not None:
            value = await batcher.submit(key)  # a lone call is sent as a plain GET
        else:
            value = await self._get_one(state, key)
        if value is None:
            self._misses += 1
        else:
            self._hits += 1
        return value

    async def _get_one(self, state: LoopState, key: str) -> bytes | None:
        async with state.command:
            return cast("bytes | None", await state.client.get(self.prefix + key))

    async def _mget(self, state: LoopState, keys: Sequence[str]) -> list[bytes | None]:
        prefix = self.prefix
        physical = [prefix + k for k in keys]
        async with state.command:
            if state.cluster:  # keys spread over slots
                values = await cast("RedisCluster", state.client).mget_nonatomic(physical)
            else:
                values = await state.client.mget(physical)
            return cast("list[bytes | None]", values)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._mget(self._loops.here(), keys)
        found = sum(1 for v in values if v is not None)
        self._hits += found
        self._misses += len(values) - found
        return values

    async def ttl(self, key: str) -> float | None:
        state = self._loops.here()
        async with state.command:
            millis: int = await state.client.pttl(self.prefix + key)
        if millis == -2:
            return None
        if millis == -1:
            return math.inf
        return millis / 1000

    # -- writes ----------------------------------------------------------------------

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        state = self._loops.here()
        batcher = state.set_batcher
        if batcher is not None:
            await batcher.submit((key, value, ttl))  # a lone call is sent as a plain SET
        else:
            await self._set_one(state, (key, value, ttl))

    async def _set_one(self, state: LoopState, item: tuple[str, bytes, float | None]) -> None:
        key, value, ttl = item
        async with state.command:
            if ttl is None:
                await state.client.set(self.prefix + key, value)
            else:
                await state.client.set(self.prefix + key, value, px=px(ttl))

    async def _set_batch(
        self, state: LoopState, items: Sequence[tuple[str, bytes, float | None]]
    ) -> list[None]:
        await self._set_many(state, items)
        return [None] * len(items)

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        if items:
            await self._set_many(self._loops.here(), items)

    async def _set_many(
        self, state: LoopState, items: Sequence[tuple[str, bytes, float | None]]
    ) -> None:
        prefix = self.prefix
        async with state.command:
            pipe = state.client.pipeline(transaction=False)
            for key, value, ttl in items:
                if ttl is None:
                    pipe.set(prefix + key, value)
                else:
                    pipe.set(prefix + key, value, px=px(ttl))
            await pipe.execute()

    async def delete(self, key: str) -> bool:
        state = self._loops.here()
        async with state.command:
            removed: int = await state.client.unlink(self.prefix + key)
        return removed > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        prefix = self.prefix
        state = self._loops.here()
        async with state.command:
            removed: int = await state.client.unlink(*[prefix + k for k in keys])
        return removed

    # -- scanning --------------------------------------------------------------------

    async def scan(self, pattern: str, cursor: int = 0, count: int = 100) -> tuple[int, list[str]]:
        match = self._glob_prefix + pattern
        state = self._loops.here()
        async with state.command:
            if state.cluster:
                return await self._scan_cluster(state, match, cursor, count)
            next_cursor, raw = await state.client.scan(cursor=cursor, match=match, count=count)
        return int(next_cursor), self._strip(raw)

    async def _scan_cluster(
        self, state: LoopState, match: str, cursor: int, count: int
    ) -> tuple[int, list[str]]:
        # One cursor over every primary: node cursor * number of primaries + node index.
        # A page comes from one node; the cursor moves to the next node when it is done.
        client = cast("RedisCluster", state.client)
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
        state = self._loops.here()
        if not state.cluster:
            return await self._delete_on(state, match, None)
        client = cast("RedisCluster", state.client)
        async with state.command:
            await client.initialize()  # nodes of a closed client are stale
            primaries = client.get_primaries()
        removed = 0
        for node in primaries:
            removed += await self._delete_on(state, match, node)
        return removed

    async def _delete_on(self, state: LoopState, match: str, node: Any) -> int:
        removed = 0
        cursor = 0
        client: Any = state.client
        while True:
            async with state.command:
                if node is None:
                    cursor, raw = await client.scan(cursor=cursor, match=match, count=_SCAN_BATCH)
                else:
                    cursors, raw = await client.scan(
                        cursor=cursor, match=match, count=_SCAN_BATCH, target_nodes=node
                    )
                    cursor = _node_cursor(cursors)
                # The event stream survives clear(): recreated, its ids could restart
                # below what its readers have seen, and they would miss what follows.
                doomed = [k for k in raw if k != self._stream_key]
                if doomed:
                    removed += await client.unlink(*doomed)
            if not int(cursor):
                return removed

    async def clear(self) -> int:
        return await self.delete_pattern("*")

    def _strip(self, raw: Sequence[bytes | str]) -> list[str]:
        cut = len(self.prefix)
        hidden = (self._lock_prefix, self._tag_prefix, self.prefix + "!events")
        keys = []
        for item in raw:
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            # The bare prefix is not one of our keys; locks and tag versions are not entries.
            if len(text) > cut and not text.startswith(hidden):
                keys.append(text[cut:])
        return keys

    # -- housekeeping ----------------------------------------------------------------

    async def stats(self) -> BackendStats:
        state = self._loops.here()
        client: Any = state.client
        async with state.command:
            if state.cluster:
                await client.initialize()
                primaries = client.get_primaries()
                memory = await client.info("memory", target_nodes=primaries)
                clients = await client.info("clients", target_nodes=primaries)
            else:
                pipe = client.pipeline(transaction=False)
                pipe.info("memory")
                pipe.info("clients")
                memory, clients = await pipe.execute()
        used = info_total(memory, "used_memory")
        details: dict[str, object] = {
            "used_memory": used,
            "used_memory_human": human_size(used),
            "connected_clients": info_total(clients, "connected_clients"),
            "deployment": "cluster" if self.cluster else "single",
        }
        if self.cluster and isinstance(memory, dict) and "used_memory" not in memory:
            details["nodes"] = len(memory)
        return BackendStats(name=self.name, hits=self._hits, misses=self._misses, details=details)

    def stats_nowait(self) -> BackendStats:
        deployment = "cluster" if self.cluster else "single"
        return BackendStats(
            name=self.name,
            hits=self._hits,
            misses=self._misses,
            details={"deployment": deployment},
        )

    async def ping(self) -> float:
        state = self._loops.here()
        start = time.perf_counter()
        try:
            async with state.command:
                if state.watch is not None:
                    await state.watch.before_ping()
                if state.cluster:
                    # The cluster answers only if every primary does and every slot
                    # is served: a failback to half a cluster would just fail again.
                    client: Any = state.client
                    seeds = client.nodes_manager.startup_nodes
                    if not seeds:  # all dropped by redis-py after errors: seed anew
                        seeds.update(state.cluster_seeds)
                    await client.ping(target_nodes=RedisCluster.PRIMARIES)
                    info = await client.cluster_info(target_nodes=RedisCluster.RANDOM)
                    state_ = info.get("cluster_state") if isinstance(info, dict) else None
                    if state_ not in (None, "ok", b"ok"):
                        raise BackendUnavailableError(f"the cluster's state is {state_!r}")
                else:
                    await state.client.ping()
        except CommandRefusedError as exc:  # a server that refuses PING is not usable
            raise BackendUnavailableError(str(exc)) from exc
        return time.perf_counter() - start

    async def close(self) -> None:
        """Release every event loop's connections (see `LoopStates.close_all`)."""
        await self._loops.close_all()

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r}, operation_timeout={self.operation_timeout})"
