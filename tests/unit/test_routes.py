"""One test per cell of the route table: failover state x kind of call.

States: memory-only (Direct), closed (Primary, up and failing), open (Journaling with a
probe), closed-after-close() (Journaling without a probe), last replay round (Gated).
Calls: read, write, change, query; and whether a no-await read is offered.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

import pytest

from chenu_cache import MemoryBackend
from chenu_cache._failover import Failover
from chenu_cache._routes import Direct, Gated, Journaling, Primary
from tests.unit.test_failover_logic import SwitchableBackend


class Flaky(SwitchableBackend):
    """The failover tests' switchable primary, failing its bulk reads and TTLs too."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check()
        return await super().get_many(keys)

    async def ttl(self, key: str) -> float | None:
        self._check()
        return await super().ttl(key)


@pytest.fixture
async def parts() -> AsyncIterator[tuple[Failover, Flaky, MemoryBackend]]:
    fallback = MemoryBackend()
    primary = Flaky()
    failover = Failover(fallback, primary, probe_interval=60, recent_window=0, outage_ttl_cap=5)
    try:
        yield failover, primary, fallback
    finally:
        await failover.close()


async def outage(failover: Failover, primary: Flaky) -> None:
    primary.down = True
    await failover.check()
    assert isinstance(failover.route, Journaling)


# -- memory-only ---------------------------------------------------------------------


async def test_direct_serves_every_call_from_the_fallback() -> None:
    fallback = MemoryBackend()
    failover = Failover(fallback)
    route = failover.route
    assert type(route) is Direct
    assert route.nowait is not None
    assert route.write_nowait is not None
    await route.write("k", b"v", None)
    assert await route.read("k") == b"v"
    assert route.nowait("k") == b"v"
    assert await route.query(lambda b: b.ttl("k")) == math.inf
    assert await route.change(lambda b: b.delete("k"), keys=["k"]) is True
    assert not failover.journal


# -- closed: the primary serves --------------------------------------------------------


async def test_primary_reads_and_writes_the_primary(parts: tuple) -> None:
    failover, primary, fallback = parts
    route = failover.route
    assert type(route) is Primary
    assert route.nowait is None
    await route.write("k", b"v", 10)
    assert await primary.get("k") == b"v"
    assert await fallback.get("k") is None
    assert await route.read("k") == b"v"
    assert await route.read_many(["k", "x"]) == [b"v", None]
    remaining = await route.query(lambda b: b.ttl("k"))
    assert remaining is not None
    assert 9 < remaining <= 10  # the primary's TTL (not a timing test: a busy CI may lag)
    assert await route.change(lambda b: b.delete("k"), keys=["k"]) is True
    assert route.lock is None  # this primary offers no SupportsLock


async def test_primary_read_failure_fails_over_and_asks_the_new_route(parts: tuple) -> None:
    failover, primary, fallback = parts
    await fallback.set("k", b"stale-from-before", None)
    primary.down = True
    assert await failover.route.read("k") is None  # the fallback was emptied at failover
    assert failover.failovers == 1
    assert isinstance(failover.route, Journaling)


async def test_primary_write_failure_is_journaled_on_the_fallback(parts: tuple) -> None:
    failover, primary, fallback = parts
    route = failover.route
    primary.down = True
    await route.write("k", b"v", 3600)
    assert await fallback.get("k") == b"v"
    assert "k" in failover.journal.keys
    assert await fallback.ttl("k") == pytest.approx(5, abs=0.1)  # outage TTL cap


async def test_primary_change_failure_is_journaled(parts: tuple) -> None:
    failover, primary, _ = parts
    route = failover.route
    primary.down = True
    await route.change(lambda b: b.delete_pattern("user:*"), pattern="user:*")
    assert "user:*" in failover.journal.patterns


async def test_primary_query_failure_is_answered_by_the_fallback(parts: tuple) -> None:
    failover, primary, _ = parts
    primary.down = True
    assert await failover.route.query(lambda b: b.ttl("k")) is None
    assert failover.failovers == 1
    assert not failover.journal  # a query changes nothing


# -- open: an outage -------------------------------------------------------------------


async def test_outage_reads_go_through_read_and_keep_the_probe_alive(parts: tuple) -> None:
    failover, primary, fallback = parts
    await outage(failover, primary)
    route = failover.route
    assert route.nowait is None
    assert route.write_nowait is None
    failover._probe.cancel()  # as if its event loop had ended
    await asyncio.sleep(0)
    await fallback.set("k", b"v", None)
    assert await route.read("k") == b"v"
    assert failover._probe is not None
    assert not failover._probe.done()


async def test_outage_write_is_journaled_first_and_capped(parts: tuple) -> None:
    failover, primary, fallback = parts
    await outage(failover, primary)
    await failover.route.write_many([("a", b"1", 3600), ("b", b"2", None)])
    assert failover.journal.keys == {"a", "b"}
    assert await fallback.ttl("a") == pytest.approx(5, abs=0.1)
    assert await fallback.ttl("b") == pytest.approx(5, abs=0.1)


async def test_outage_changes_are_journaled(parts: tuple) -> None:
    failover, primary, _ = parts
    await outage(failover, primary)
    route = failover.route
    await route.change(lambda b: b.delete("k"), keys=["k"])
    await route.change(lambda b: b.delete_pattern("p:*"), pattern="p:*")
    assert failover.journal.keys == {"k"}
    assert failover.journal.patterns == {"p:*"}
    await route.change(lambda b: b.clear(), everything=True)
    assert failover.journal.everything


async def test_outage_query_is_not_journaled(parts: tuple) -> None:
    failover, primary, _ = parts
    await outage(failover, primary)
    assert await failover.route.query(lambda b: b.ttl("k")) is None
    assert not failover.journal


# -- after close(): journaling without a probe ----------------------------------------


async def test_detached_cache_journals_without_a_probe(parts: tuple) -> None:
    failover, _, _ = parts
    failover.set_primary(None)
    route = failover.route
    assert isinstance(route, Journaling)
    assert route.probe is False
    assert route.nowait is not None  # reads need no probe, so no await
    await route.write("k", b"v", None)
    await route.change(lambda b: b.delete("j"), keys=["j"])
    assert failover.journal.keys == {"k", "j"}
    assert route.nowait("k") == b"v"
    assert await route.query(lambda b: b.ttl("k")) is not None
    assert failover._probe is None


# -- the last replay round -------------------------------------------------------------


async def test_gated_reads_go_on_and_writes_wait_for_the_new_route(parts: tuple) -> None:
    failover, primary, fallback = parts
    await outage(failover, primary)
    await fallback.set("k", b"v", None)
    gate = asyncio.Event()
    failover.gate = gate
    failover._switched()
    route = failover.route
    assert type(route) is Gated
    assert await route.read("k") == b"v"  # no wait
    assert await route.query(lambda b: b.ttl("k")) == math.inf
    write = asyncio.ensure_future(route.write("w", b"1", None))
    change = asyncio.ensure_future(route.change(lambda b: b.delete("k"), keys=["k"]))
    await asyncio.sleep(0.01)
    assert not write.done()
    assert not change.done()
    primary.down = False
    failover.active = primary  # the failback, as _fail_back does it
    failover._open_gate()
    await write
    await change
    assert await primary.get("w") == b"1"  # took the primary's route after the gate
    assert await fallback.get("w") is None
