"""Everything of `RedisBackend` that belongs to one event loop, and the one command boundary.

Connections belong to the event loop that opened them, so the client and its pool, the
connection slots, the batchers and the Sentinel watch live in a `LoopState` per loop.
`LoopStates` makes one on a loop's first call (from the URL again, or a copy of a ready
plain ``Redis`` client), so one backend serves several ``asyncio.run()`` in a row,
pytest-asyncio's loop per test, and worker threads with loops of their own, without
failing over. A loop's state is closed while that loop shuts down: ``asyncio.run()``
and ``asyncio.Runner`` finalize async generators, and one is registered per loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster

from ..exceptions import BackendError, BackendUnavailableError
from . import _redis_scripts as scripts
from ._batch import Batcher
from ._redis_errors import translate
from ._sentinel import PrimaryWatch

__all__ = ["Command", "LoopState", "LoopStates"]

_CLOSE_OTHER_LOOP = 2.0  # seconds close_all() waits for another thread's loop to let go

Item = tuple[str, bytes, "float | None"]


class Command:
    """The one boundary every Redis command crosses: a connection slot, then our errors.

    At most ``n`` commands run at once; callers beyond that wait instead of failing. A
    caller that waited while another command failed gives up without sending: when the
    server hangs, the queue behind the first timeout must not pay one timeout per batch
    of connections before the facade's failover takes over. Errors leave translated by
    `translate` (``raise ... from`` the driver's); only outages count as failures.
    """

    __slots__ = ("_semaphore", "failures", "watch")

    def __init__(self, n: int, watch: PrimaryWatch | None) -> None:
        self._semaphore = asyncio.Semaphore(n)
        self.failures = 0
        self.watch = watch

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

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._semaphore.release()
        try:
            if exc is None:
                if self.watch is not None:
                    self.watch.after_command()
                return
        except BackendError as changed:
            exc = changed
        # Everything a command raises, not only RedisError: redis-py's own bugs surface
        # as AttributeError and the like. CancelledError is no failure: it passes.
        if not isinstance(exc, Exception):
            return
        ours = translate(exc)
        if isinstance(ours, BackendError):
            self.failures += 1
        if ours is exc:
            raise ours
        raise ours from exc


class LoopState:
    """What the backend holds for one event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: Any,
        *,
        max_connections: int,
        timeout: float,
        batch: tuple[
            Callable[[LoopState, str], Awaitable[bytes | None]],
            Callable[[LoopState, Sequence[str]], Awaitable[list[bytes | None]]],
            Callable[[LoopState, Item], Awaitable[None]],
            Callable[[LoopState, Sequence[Item]], Awaitable[list[None]]],
        ]
        | None,
    ) -> None:
        self.loop = loop
        self.client: Redis | RedisCluster = client
        self.cluster = isinstance(client, RedisCluster)
        # The seed nodes as given: redis-py drops a node from its seeds on each
        # connection error or timeout, and a cluster whose every seed failed once (a
        # primary down, the others slow) finds nothing to ask again (redis-py 5.0).
        self.cluster_seeds: dict[str, Any] = (
            dict(client.nodes_manager.startup_nodes) if self.cluster else {}
        )
        self.watch = PrimaryWatch.of(client, timeout)
        self.command = Command(max_connections, self.watch)
        # Blocking event reads hold a connection each: a few at a time, so that readers
        # (one per SSE client) never take the slots the cache's own calls need.
        self.event_reads = asyncio.Semaphore(max(1, min(8, max_connections // 4)))
        self.release_lock = client.register_script(scripts.RELEASE_LOCK)
        self.claim = client.register_script(scripts.CLAIM)
        self.fill = client.register_script(scripts.FILL)
        self.get_with_versions = client.register_script(scripts.GET_WITH_VERSIONS)
        self.get_with_ttl = client.register_script(scripts.GET_WITH_TTL)
        self.get_batcher: Batcher[str, bytes | None] | None = None
        self.set_batcher: Batcher[Item, None] | None = None
        if batch is not None:
            # Concurrent GETs become one MGET, concurrent SETs one pipeline; a lone
            # call is sent as it is.
            get_one, mget, set_one, set_many = batch
            self.get_batcher = Batcher(
                lambda key: get_one(self, key), lambda keys: mget(self, keys)
            )
            self.set_batcher = Batcher(
                lambda item: set_one(self, item), lambda items: set_many(self, items)
            )
        self.closed = False
        self.shutdown_hook: AsyncGenerator[None, None] | None = None


class LoopStates:
    """The `LoopState` of each event loop that has called, made on its first call."""

    def __init__(
        self,
        first_client: Redis | RedisCluster,
        *,
        given_client: Redis | RedisCluster | None,
        new_client: Callable[[], Redis | RedisCluster],
        new_state: Callable[[asyncio.AbstractEventLoop, Redis | RedisCluster], LoopState],
    ) -> None:
        self._spare: Redis | RedisCluster | None = first_client
        """Built but not yet bound to a loop: the first loop to call takes it."""
        self._given = given_client
        self._new_client = new_client
        self._new_state = new_state
        self._states: dict[asyncio.AbstractEventLoop, LoopState] = {}
        self._last: LoopState | None = None  # the last loop's, for the fast path

    def here(self) -> LoopState:
        """The state of the running loop, made on its first call."""
        loop = asyncio.get_running_loop()
        state = self._last
        if state is not None and state.loop is loop:
            return state
        state = self._states.get(loop)
        if state is None:
            state = self._bind(loop)
        self._last = state
        return state

    def _bind(self, loop: asyncio.AbstractEventLoop) -> LoopState:
        for other in list(self._states.values()):
            if other.loop.is_closed():
                # Closed without finalizing async generators (loop.close() by hand):
                # its sockets cannot be closed on a dead loop; the collector takes them.
                self._forget(other)
        client = self._spare
        self._spare = None
        if client is None:
            given = self._given
            if given is not None and not any(s.client is given for s in self._states.values()):
                client = given  # its first loop is gone: the client is free again
            else:
                client = self._new_client()
        state = self._new_state(loop, client)
        self._states[loop] = state
        state.shutdown_hook = self._release_at_shutdown(state)
        # Registers the generator with the loop (its first-iteration hook) and runs it
        # to its yield without suspending; the loop's shutdown_asyncgens() resumes it.
        with contextlib.suppress(StopIteration):
            state.shutdown_hook.__anext__().send(None)
        return state

    async def _release_at_shutdown(self, state: LoopState) -> AsyncGenerator[None, None]:
        # asyncio.run() and asyncio.Runner (which pytest-asyncio uses) close every
        # unfinished async generator before closing the loop: that is the last moment
        # this loop's connections can be closed properly.
        try:
            yield
        finally:
            await self._close(state, loop_ending=True)

    def _forget(self, state: LoopState) -> None:
        state.closed = True
        self._states.pop(state.loop, None)
        if self._last is state:
            self._last = None

    async def _close(self, state: LoopState, *, loop_ending: bool = False) -> None:
        if state.closed:
            return
        self._forget(state)
        for batcher in (state.get_batcher, state.set_batcher):
            if batcher is not None:
                await batcher.close()
        if state.watch is not None:
            await state.watch.close()
        client: Any = state.client
        try:
            if state.client is self._given:
                # The caller's client is theirs to close; but when its loop ends, its
                # connections die with it, and the next loop reuses the client.
                if loop_ending:
                    pool = getattr(client, "connection_pool", None)
                    await (pool.disconnect() if pool is not None else client.aclose())
                return
            await client.aclose()
            if isinstance(client, Redis):
                await client.connection_pool.disconnect()
                if state.watch is not None:  # a Sentinel-made client: the sentinels too
                    await state.watch.close_sentinels()
        except Exception:  # noqa: S110 - closing a dead connection has nothing to release
            pass

    async def close_all(self) -> None:
        """Release every loop's connections: this loop's now, other live loops' through
        their own thread, closed loops' to the garbage collector."""
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for state in list(self._states.values()):
            loop = state.loop
            if loop is here:
                await self._close(state)
            elif not loop.is_closed() and loop.is_running():
                done = asyncio.run_coroutine_threadsafe(self._close(state), loop)
                # A loop too busy to answer in time closes them at its own shutdown.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(done), _CLOSE_OTHER_LOOP)
            else:
                self._forget(state)
        spare, self._spare = self._spare, None
        if spare is not None and spare is not self._given:
            with contextlib.suppress(Exception):  # never connected: nothing to release
                await spare.aclose()
