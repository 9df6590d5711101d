"""Watching which server Sentinel names primary, since no failing command reveals it.

After a manual or automatic Sentinel failover, the old primary keeps accepting writes
until it is demoted, and then loses them. Nothing fails on the client in between, so
`PrimaryWatch` asks the sentinels in the background (at most twice a second, after
successful commands) and raises `BackendUnavailableError` when the primary's address
changes: the facade fails over and replays its recent changes on the new primary.
Before the next ping lets it fail back, every connection is dropped (those to the old
primary would read its stale data) and all the sentinels must agree on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ..exceptions import BackendUnavailableError

__all__ = ["PrimaryWatch"]

_CHECK_EVERY = 0.5  # seconds between background checks of who the primary is


class PrimaryWatch:
    """Follows the primary of one Sentinel-made client (on one event loop)."""

    def __init__(self, pool: Any, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout
        self.address: object = None
        self.must_reconnect = False
        self._next_check = 0.0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, client: object, timeout: float) -> PrimaryWatch | None:
        """A watch for ``client`` if Sentinel made it, else ``None``."""
        pool = getattr(client, "connection_pool", None)
        if getattr(pool, "sentinel_manager", None) is None:
            return None
        return cls(pool, timeout)

    def after_command(self) -> None:
        """Start a background check when due; raise if the primary changed since."""
        now = time.monotonic()
        if now >= self._next_check and (self._task is None or self._task.done()):
            self._next_check = now + _CHECK_EVERY
            self._task = asyncio.get_running_loop().create_task(self._ask())
        if self.must_reconnect:
            # Until every connection is dropped, a reply may come from either server:
            # the new primary lacks what the old one took meanwhile. A command that
            # finished after the promotion was seen fails too (and is retried on the
            # fallback), not only the one that saw it.
            raise BackendUnavailableError(
                "Sentinel promoted a new primary; not reconnected to it yet"
            )
        address = getattr(self.pool, "master_address", None)
        if address == self.address or address is None:
            return
        first, self.address = self.address is None, address
        if not first:
            self.must_reconnect = True
            raise BackendUnavailableError(
                f"Sentinel promoted a new primary ({address}); replaying recent changes"
            )

    async def _ask(self) -> None:
        # redis-py records the answer in pool.master_address; a failed ask is retried
        # by the next check.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pool.get_master_address(), self.timeout * 4)

    async def before_ping(self) -> None:
        """After a promotion: wait until the sentinels agree, then drop every connection."""
        if not self.must_reconnect:
            return
        await self._agreed_primary()
        self.must_reconnect = False
        await self.pool.disconnect(inuse_connections=True)

    async def _agreed_primary(self) -> None:
        # Right after a failover the sentinels disagree for a moment and redis-py takes
        # the first answer: connections would go to both servers, writes to one and
        # reads from the other. Failing back only once they agree avoids that.
        answers = set()
        for sentinel in self.pool.sentinel_manager.sentinels:
            try:
                address = await asyncio.wait_for(
                    sentinel.sentinel_get_master_addr_by_name(self.pool.service_name),
                    self.timeout,
                )
            except Exception:  # noqa: S112 - a sentinel that cannot answer has no vote
                continue
            if address:
                host = address[0]
                host = host.decode() if isinstance(host, bytes) else str(host)
                answers.add((host, int(address[1])))
        if len(answers) != 1:
            raise BackendUnavailableError(f"the sentinels do not agree on a primary: {answers}")
        agreed = answers.pop()
        self.pool.master_address = agreed
        self.address = agreed

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def close_sentinels(self) -> None:
        """Release the connections to the sentinels themselves."""
        for sentinel in getattr(self.pool.sentinel_manager, "sentinels", ()):
            await sentinel.aclose()
