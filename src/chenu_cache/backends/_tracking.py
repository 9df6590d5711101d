"""The near cache's tracking link: Redis tells us which keys changed (SPEC §13).

One connection per primary server, ours alone (our RESP3 reader, never the data
connections' parser), switched to ``CLIENT TRACKING ON BCAST PREFIX <prefix>``: from the
moment it answers, every change to a key under a tracked prefix, by any client, arrives
here as an ``invalidate`` push. BCAST rather than the default mode: the default mode
tracks the keys each *data* connection read and would need every pooled connection,
reconnected or new, to be redirected to this link; with BCAST the link alone is enough,
whatever connection, script or pipeline read the value. It costs one push per write
under the prefix to every process tracking it (docs/near-cache.md).

A `Tracker` keeps the links up and tells its `TrackingSink` when coherence can and can
no longer be vouched for: a link lost, not yet up, silent past its heartbeat, a server
no longer a primary (Sentinel promotion, Cluster failover), a Cluster whose primaries
changed. It never raises: while it cannot track, the sink stays incoherent and the near
cache is bypassed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from ._resp3 import Push, ReplyError, encode_command, read_frame
from .base import TrackingSink

__all__ = ["Endpoint", "Tracker", "endpoint_from"]

logger = logging.getLogger("chenu_cache")

_LINK_ERRORS = (
    OSError,
    EOFError,
    asyncio.TimeoutError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ReplyError,
    ValueError,
    RedisError,  # from the data client, asked where the primaries are
)


@dataclass(frozen=True)
class Endpoint:
    """Where a tracking link connects, and how it authenticates."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    ssl: _ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None

    @property
    def name(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"


def endpoint_from(
    kwargs: dict[str, Any],
    host: str | None = None,
    port: int | None = None,
    *,
    tls: bool = False,
) -> Endpoint:
    """An `Endpoint` from redis-py connection keyword arguments (``tls``: the data
    connections use TLS, which a ``rediss://`` URL says in the connection class only)."""
    context = None
    if tls or kwargs.get("ssl") or "ssl_ca_certs" in kwargs or "ssl_certfile" in kwargs:
        context = _ssl.create_default_context(
            cafile=kwargs.get("ssl_ca_certs"), capath=kwargs.get("ssl_ca_path")
        )
        if kwargs.get("ssl_certfile"):
            context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"))
        reqs = kwargs.get("ssl_cert_reqs", "required")
        if reqs in ("none", _ssl.CERT_NONE, None):
            context.check_hostname = False
            context.verify_mode = _ssl.CERT_NONE
        else:
            context.check_hostname = bool(kwargs.get("ssl_check_hostname", False))
    username, password = kwargs.get("username"), kwargs.get("password")
    provider = kwargs.get("credential_provider")
    if provider is not None:
        found = provider.get_credentials()
        username, password = (None, found[0]) if len(found) == 1 else (found[0], found[1])
    return Endpoint(
        host=host if host is not None else str(kwargs.get("host", "127.0.0.1")),
        port=port if port is not None else int(kwargs.get("port", 6379)),
        path=kwargs.get("path"),
        ssl=context,
        username=username,
        password=password,
    )


class _Link:
    """One tracking connection: commands answered in order, pushes to a callback."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_push: Callable[[Push], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_push = on_push
        self._waiting: collections.deque[asyncio.Future[object]] = collections.deque()
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(
        cls, endpoint: Endpoint, timeout: float, on_push: Callable[[Push], None]
    ) -> _Link:
        if endpoint.path is not None:
            opening = asyncio.open_unix_connection(endpoint.path, ssl=endpoint.ssl)
        else:
            opening = asyncio.open_connection(endpoint.host, endpoint.port, ssl=endpoint.ssl)
        reader, writer = await asyncio.wait_for(opening, timeout)
        return cls(reader, writer, on_push)

    async def _read(self) -> None:
        try:
            while True:
                frame = await read_frame(self._reader)
                if isinstance(frame, Push):
                    self._on_push(frame)
                elif self._waiting:
                    waiter = self._waiting.popleft()
                    if not waiter.done():
                        waiter.set_result(frame)
        except (*_LINK_ERRORS, asyncio.CancelledError):
            pass
        finally:
            for waiter in self._waiting:
                if not waiter.done():
                    waiter.set_exception(EOFError("tracking link closed"))

    async def command(self, *parts: str | bytes | int, timeout: float) -> object:
        if self.task.done():
            raise EOFError("tracking link closed")
        waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._writer.write(encode_command(*parts))
        reply = await asyncio.wait_for(waiter, timeout)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def close(self) -> None:
        self.task.cancel()
        self._writer.close()
        with contextlib.suppress(*_LINK_ERRORS, asyncio.CancelledError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


class Tracker:
    """Keeps one tracking link per primary up, and reports to a `TrackingSink`.

    ``endpoints`` names the primaries now (one, or a Cluster's); ``topology``, when
    given, is checked at each heartbeat and a change rebuilds the links. Each heartbeat
    asks ``ROLE`` (``PING`` where ROLE is refused): a server that answers but is no
    longer a primary loses coherence too.
    """

    def __init__(
        self,
        sink: TrackingSink,
        *,
        endpoints: Callable[[], Awaitable[Sequence[Endpoint]]],
        prefixes: Sequence[bytes],
        strip: int,
        heartbeat: float,
        timeout: float,
        topology: Callable[[], frozenset[str]] | None = None,
    ) -> None:
        self.sink = self._sink = sink
        self._endpoints = endpoints
        self._prefixes = list(prefixes)
        self._strip = strip
        self.heartbeat = heartbeat
        self._timeout = timeout
        self._topology = topology
        self._grace = 2 * heartbeat + timeout
        self._role = True  # ROLE, until a server refuses it (ACLs)
        self._said_refused = False
        self._said_failed = False
        self.links = 0
        self.up = False
        self.task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self.task.get_loop() if self.task is not None else None

    def running(self) -> bool:
        task = self.task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    async def close(self) -> None:
        task, self.task = self.task, None
        if task is None or task.done():
            return
        loop = task.get_loop()
        if loop.is_closed():
            return
        if loop is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            loop.call_soon_threadsafe(task.cancel)

    def _push(self, frame: Push) -> None:
        if len(frame) < 2 or frame[0] != b"invalidate":
            return
        keys = frame[1]
        if keys is None:  # FLUSHDB, FLUSHALL: everything may have changed
            self._sink.invalidated(None)
            return
        if not isinstance(keys, list):
            return
        cut = self._strip
        self._sink.invalidated(
            [k[cut:].decode("utf-8", "replace") for k in keys if isinstance(k, bytes)]
        )

    async def _run(self) -> None:
        delay = 0.02
        while True:
            links: list[_Link] = []
            try:
                names = await self._open(links)
                self.up = True
                self._sink.tracking_up(time.monotonic() + self._grace)
                delay = 0.02
                await self._watch(links, names)
            except _LINK_ERRORS as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ReplyError) and not self._said_refused:
                    # Not an outage: this server (before Redis 6) or this user (an ACL)
                    # will not track; the near cache stays bypassed, so say it once.
                    self._said_refused = True
                    logger.warning(
                        "chenu_cache: the near cache cannot track (%s); reads go to Redis",
                        exc,
                    )
                else:
                    logger.debug("chenu_cache: near cache tracking link: %s", self.last_error)
            except Exception as exc:  # a bug, not an outage: keep tracking, say it once
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self._said_failed:
                    self._said_failed = True
                    logger.exception("chenu_cache: near cache tracking failed unexpectedly")
            finally:
                self.up = False
                self._sink.tracking_down()
                self.links = 0
                for link in links:
                    await link.close()
            # Jittered, so processes that lost the same server do not come back at once.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, 1.0)

    async def _open(self, links: list[_Link]) -> frozenset[str]:
        endpoints = await asyncio.wait_for(self._endpoints(), self._timeout)
        if not endpoints:
            raise EOFError("no primary to track")
        tracking: list[str | bytes] = ["CLIENT", "TRACKING", "ON", "BCAST"]
        for prefix in self._prefixes:
            tracking += ["PREFIX", prefix]
        for endpoint in endpoints:
            link = await _Link.open(endpoint, self._timeout, self._push)
            links.append(link)
            hello: list[str | bytes] = ["HELLO", "3"]
            if endpoint.password is not None:
                hello += ["AUTH", endpoint.username or "default", endpoint.password]
            await link.command(*hello, "SETNAME", "chenu-near-tracking", timeout=self._timeout)
            await link.command(*tracking, timeout=self._timeout)
            await self._check_role(link)
        self.links = len(links)
        return frozenset(e.name for e in endpoints)

    async def _check_role(self, link: _Link) -> None:
        if self._role:
            try:
                role = await link.command("ROLE", timeout=self._timeout)
            except ReplyError:
                self._role = False  # not allowed to ask: PING keeps the heartbeat
            else:
                if not isinstance(role, list) or not role or role[0] != b"master":
                    raise EOFError("the tracked server is no longer a primary")
                return
        await link.command("PING", timeout=self._timeout)

    async def _watch(self, links: list[_Link], names: frozenset[str]) -> None:
        tasks = [link.task for link in links]
        while True:
            done, _ = await asyncio.wait(
                tasks, timeout=self.heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                raise EOFError("tracking link closed by the server")
            if self._topology is not None and self._topology() != names:
                raise EOFError("the cluster's primaries changed")
            started = time.monotonic()
            await asyncio.gather(*(self._check_role(link) for link in links))
            # Every push sent before the heartbeat's reply has been read by now.
            self._sink.tracking_extended(started + self._grace)
