"""The faults the parent injects, one at a time, each undone before the next.

Every fault has a kind, a start and an end on the monotonic clock, and the workers it
reached (all of them, except a partition, which cuts only the workers behind the proxy).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import redis
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

KINDS = (
    "kill",
    "sigstop",
    "partition",
    "client_pause",
    "debug_sleep",
    "flushdb",
    "tracking_kill",
)


@dataclass
class Fault:
    kind: str
    start: float
    end: float
    workers: tuple[int, ...]
    detail: str = ""


@dataclass
class Chaos:
    server: RedisServer
    proxy: TcpProxy
    proxied: tuple[int, ...]
    everyone: tuple[int, ...]
    rng: random.Random
    gap: tuple[float, float] = (3.0, 8.0)
    faults: list[Fault] = field(default_factory=list)

    def _admin(self) -> redis.Redis:
        # A fresh connection per fault: the previous one may belong to a killed server.
        return redis.Redis(host=self.server.host, port=self.server.port, socket_timeout=10)

    async def _command(self, *args: str) -> None:
        def run() -> None:
            client = self._admin()
            try:
                client.execute_command(*args)
            finally:
                client.close()

        await asyncio.to_thread(run)

    def _kill_tracking(self) -> int:
        client = self._admin()
        try:
            ids = [c["id"] for c in client.client_list() if c.get("name") == "chenu-near-tracking"]
            for found in ids:
                client.client_kill_filter(_id=found)
        finally:
            client.close()
        return len(ids)

    async def inject(self, kind: str) -> Fault:
        rng = self.rng
        hold = rng.uniform(0.5, 3.0)
        start = time.monotonic()
        workers = self.everyone
        detail = f"{hold:.2f} s"
        if kind == "kill":
            self.server.kill()
            await asyncio.sleep(hold)
            await asyncio.to_thread(self.server.start)
        elif kind == "sigstop":
            self.server.pause()
            try:
                await asyncio.sleep(hold)
            finally:
                self.server.resume()
        elif kind == "partition":
            workers = self.proxied
            self.proxy.cut()
            try:
                await asyncio.sleep(hold)
            finally:
                self.proxy.heal()
        elif kind == "client_pause":
            await self._command("CLIENT", "PAUSE", str(int(hold * 1000)), "ALL")
            await asyncio.sleep(hold)
        elif kind == "debug_sleep":
            await self._command("DEBUG", "SLEEP", f"{hold:.3f}")
        elif kind == "flushdb":
            await self._command("FLUSHDB")
            detail = ""
        elif kind == "tracking_kill":  # the near caches' tracking connections only
            detail = f"{await asyncio.to_thread(self._kill_tracking)} connections"
        else:
            raise ValueError(kind)
        fault = Fault(kind, start, time.monotonic(), workers, detail)
        self.faults.append(fault)
        return fault

    async def run(self, until: float) -> None:
        """Inject faults at random until ``until``; the last one ends before it."""
        while True:
            await asyncio.sleep(self.rng.uniform(*self.gap))
            # A fault holds at most 3 s (plus a restart): leave room for it to end.
            if time.monotonic() + 5.0 > until:
                return
            await self.inject(self.rng.choice(KINDS))
