"""Failover to the fallback tier and failback without stale reads.

States: ``closed`` (calls go to the primary), ``open`` (the primary failed; calls go
to the fallback while a background probe retries the primary with capped, jittered
exponential backoff), ``memory-only`` (no primary configured).

While open, every key written or invalidated on the fallback, every pattern and every
``clear()`` is recorded in a bounded `Journal`. When the primary answers again,
the probe deletes all of them in the primary *before* switching back, then empties the
fallback. So no caller of this process reads from the primary a value older than one
it replaced or invalidated during the outage. If the journal overflowed, whole
namespaces (or the whole prefix) are invalidated instead of single keys.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ._glob import escape_glob
from ._keys import NAMESPACE_SEPARATOR, namespace_of
from ._near import NearCache
from ._near_route import Near
from ._routes import Direct, Gated, Journaling, Primary, Route
from .backends.base import (
    Backend,
    DeclaresRecentWindow,
    SupportsEvents,
    SupportsTags,
    SupportsTracking,
)
from .events import CacheEvent
from .exceptions import BackendError, CacheError
from .stats import FailoverStatistics

__all__ = ["Failover", "Journal", "Transition", "recent_window_of"]

logger = logging.getLogger("chenu_cache")

CLOSED = "closed"
OPEN = "open"
MEMORY_ONLY = "memory-only"
_REPLAY_BATCH = 500
_FREE_REPLAY_ROUNDS = 3


@dataclass(frozen=True)
class Transition:
    """Passed to ``on_transition``: ``event`` is ``"failover"`` or ``"failback"``."""

    event: str
    error: str | None = None
    outage_seconds: float | None = None


@dataclass
class Journal:
    """What changed on the fallback during an outage, bounded in size.

    Up to ``max_keys`` keys and ``max_patterns`` patterns are kept exactly; beyond that
    a key is widened to its namespace (``ns:*``), and a key without namespace, or a
    pattern beyond the bound, widens to everything under the prefix.
    """

    max_keys: int = 10_000
    max_patterns: int = 1_000
    keys: set[str] = field(default_factory=set)
    patterns: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    events: list[tuple[bytes, int]] = field(default_factory=list)
    """Invalidation events to publish at failback (marked replayed), with their maxlen."""
    events_lost: bool = False
    everything: bool = False
    overflowed: bool = False
    event_maxlen: int = 10_000

    def add_keys(self, keys: Iterable[str]) -> None:
        if self.everything:
            return
        for key in keys:
            if len(self.keys) < self.max_keys or key in self.keys:
                self.keys.add(key)
                continue
            self.overflowed = True
            namespace = namespace_of(key)
            if namespace is None:
                self.everything = True
                return
            self.add_pattern(escape_glob(namespace) + NAMESPACE_SEPARATOR + "*")

    def add_pattern(self, pattern: str) -> None:
        if self.everything:
            return
        if len(self.patterns) < self.max_patterns or pattern in self.patterns:
            self.patterns.add(pattern)
        else:
            self.overflowed = True
            self.everything = True

    def add_tags(self, tags: Iterable[str]) -> None:
        """Tags invalidated: their versions are renewed on the primary at failback."""
        if self.everything:
            return
        for tag in tags:
            if len(self.tags) < self.max_patterns or tag in self.tags:
                self.tags.add(tag)
            else:
                self.overflowed = True
                self.everything = True
                return

    def add_event(self, data: bytes, maxlen: int) -> None:
        """An event to publish at failback; past ``max_keys`` of them, a reset instead."""
        if self.events_lost:
            return
        if len(self.events) >= min(self.max_keys, maxlen):
            self.events.clear()
            self.events_lost = True
            self.event_maxlen = maxlen
            return
        self.events.append((data, maxlen))

    def add_everything(self) -> None:
        self.everything = True

    def __bool__(self) -> bool:
        return (
            self.everything
            or bool(self.keys)
            or bool(self.patterns)
            or bool(self.tags)
            or bool(self.events)
            or self.events_lost
        )

    def take(self) -> Journal:
        """Hand over the recorded changes and start empty."""
        taken = Journal(self.max_keys, self.max_patterns, self.keys, self.patterns, self.tags)
        taken.everything, taken.overflowed = self.everything, self.overflowed
        taken.events, taken.events_lost = self.events, self.events_lost
        taken.event_maxlen = self.event_maxlen
        self.keys, self.patterns, self.tags = set(), set(), set()
        self.events, self.events_lost = [], False
        self.everything = self.overflowed = False
        return taken

    def merge(self, other: Journal) -> None:
        """Put back changes whose replay failed."""
        if other.everything:
            self.everything = True
        self.add_keys(other.keys)
        for pattern in other.patterns:
            self.add_pattern(pattern)
        self.add_tags(other.tags)
        if other.events_lost:
            self.events_lost, self.event_maxlen = True, other.event_maxlen
            self.events.clear()
        elif not self.events_lost:
            self.events[:0] = other.events  # they happened first

    async def replay(self, primary: Backend) -> None:
        """Delete everything recorded from ``primary``, then publish the outage's events
        (after: a reader that hears of one finds Redis already changed); raises if the
        primary fails."""
        await self._delete(primary)
        if isinstance(primary, SupportsEvents):
            if self.events_lost:  # too many to keep: "everything may be stale"
                reset = CacheEvent(id="", kind="reset", time=time.time(), replayed=True)
                await primary.append_event(reset.encode(), self.event_maxlen)
            for data, maxlen in self.events:
                await primary.append_event(data, maxlen)

    async def _delete(self, primary: Backend) -> None:
        if self.everything:
            await primary.clear()  # tag versions included: every tagged entry goes too
            return
        if self.tags and isinstance(primary, SupportsTags):
            await primary.bump_tags(sorted(self.tags))
        for pattern in self.patterns:
            await primary.delete_pattern(pattern)
        keys = list(self.keys)
        for start in range(0, len(keys), _REPLAY_BATCH):
            await primary.delete_many(keys[start : start + _REPLAY_BATCH])


def recent_window_of(primary: Backend | None) -> float:
    """The recent window a primary declares (`DeclaresRecentWindow`), else 2 seconds."""
    declared: object = primary  # a Backend need not declare it
    if isinstance(declared, DeclaresRecentWindow):
        return float(declared.recent_window)
    return 2.0


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Failover:
    """Decides which backend serves calls, and brings the primary back consistently."""

    def __init__(
        self,
        fallback: Backend,
        primary: Backend | None = None,
        *,
        probe_interval: float = 0.25,
        probe_max_interval: float = 5.0,
        outage_ttl_cap: float | None = 60.0,
        journal_max_keys: int = 10_000,
        recent_window: float = 2.0,
        on_transition: Callable[[Transition], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        near: NearCache | None = None,
    ) -> None:
        self.fallback = fallback
        self.near = near
        """The near cache in front of the primary, if any: emptied at every switch."""
        self.primary: Backend | None = None
        self.active: Backend = fallback
        self.probe_interval = probe_interval
        self.probe_max_interval = probe_max_interval
        self.outage_ttl_cap = outage_ttl_cap
        self.on_transition = on_transition
        self.journal = Journal(max_keys=journal_max_keys)
        self.recent_window = recent_window
        # (key, or pattern, or None for "everything"; is-a-pattern) -> when, newest last.
        # One entry per distinct change, so a hot key does not crowd out the others.
        self._recent: OrderedDict[tuple[str | None, str], float] = OrderedDict()
        self._recent_max = journal_max_keys
        self._recent_dropped_at = -math.inf
        self._clock = clock
        self._rng = rng
        self._sleep = sleep
        self._probe: asyncio.Task[None] | None = None
        self._owed = False  # a primary was ever used: changes on the fallback are journaled
        self.route: Route = Direct(self)
        """How calls reach the backends now; replaced on every transition."""
        self.on_switch: Callable[[], object] | None = None
        """Called, synchronously, whenever ``active`` or ``primary`` changes."""
        self.gate: asyncio.Event | None = None
        """Set while writers must wait: the last replay round before a failback."""
        self._outage_started: float | None = None
        self._fallback_seconds = 0.0
        self.failovers = 0
        self.failbacks = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._wall = wall_clock
        self.set_primary(primary)

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.primary is None:
            return MEMORY_ONLY
        return CLOSED if self.active is self.primary else OPEN

    @property
    def journaling(self) -> bool:
        """Whether the fallback serves calls in place of a primary that must learn of them.

        True during an outage, and also once a primary was dropped (``close()``): what
        changes meanwhile is replayed on whichever primary comes next.
        """
        return self.active is self.fallback and (self.primary is not None or self._owed)

    def set_primary(self, primary: Backend | None) -> None:
        """Use ``primary`` from now on (``None``: memory only).

        Changes journaled on the fallback and not yet replayed are kept: a new primary
        (the same server reconnected, or another) serves only after `recover()` or the
        probe has deleted them from it. Until then the fallback serves, journaling.
        """
        self._stop_probe()
        # Owed: changes to replay, or an outage in progress (the primary may have lost
        # what it acknowledged last). A close() with nothing changed since owes nothing.
        owed = bool(self.journal) or (self.journaling and self.primary is not None)
        self.primary = primary
        if self.near is not None:
            self.near.attach(primary)
        self._owed = self._owed or primary is not None
        if primary is not None and not owed:
            self.active = primary
            if self._outage_started is not None:
                self._fallback_seconds += self._clock() - self._outage_started
                self._outage_started = None
        else:
            self.active = self.fallback
            if primary is not None and self._outage_started is None:
                self._outage_started = self._clock()
        self._switched()

    def _switched(self) -> None:
        """Build the route of the state just entered, then tell the facade."""
        primary = self.primary
        near = self.near
        route: Route
        if near is not None:
            # Whatever it held was read through the route being left: a failover's
            # outage or a replay may have changed any of it.
            near.flush()
        if primary is not None and self.active is primary:
            if near is not None and isinstance(primary, SupportsTracking):
                route = Near(self, primary, near)
            else:
                route = Primary(self, primary)
        elif self.gate is not None:
            route = Gated(self, self.gate)
        elif self.journaling:
            route = Journaling(self, probe=primary is not None)
        else:
            route = Direct(self)
        self.route = route
        listener = self.on_switch
        if listener is not None:
            listener()

    def cap_ttl(self, ttl: float | None) -> float | None:
        """Entries written during an outage live at most ``outage_ttl_cap`` seconds."""
        cap = self.outage_ttl_cap
        if cap is None or (ttl is not None and ttl <= cap):
            return ttl
        return cap

    # -- transitions -----------------------------------------------------------------

    async def failed(self, exc: BaseException) -> None:
        """The primary failed a call: switch to the fallback (once) and start probing."""
        self._note_error(exc)
        if self.active is self.fallback or self.primary is None:
            return
        self.active = self.fallback
        self._switched()
        self._journal_recent()
        # Entries left from an earlier outage could be older than what the primary
        # holds now; the fallback must start empty. MemoryBackend clears without
        # suspending, so no call can read or write the fallback before this is done.
        await self.fallback.clear()
        self.failovers += 1
        self._outage_started = self._clock()
        logger.warning(
            "chenu_cache: %s failed (%s); serving from %s until it answers again",
            self.primary.name,
            self.last_error,
            self.fallback.name,
        )
        self._notify(Transition("failover", error=self.last_error))
        self._start_probe()

    def _note_error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.last_error_at = self._wall()

    def remember(self, change: str | None, *, pattern: bool = False, tag: bool = False) -> None:
        """Note a change the primary acknowledged (a key, a pattern, or ``None``: all).

        A primary that fails may lose what it acknowledged last: a replica promoted
        before it caught up, a restart before the append-only file was synced. Changes
        from the last ``recent_window`` seconds before a failover are journaled too, so
        that the failback deletes them and a lost invalidation cannot resurrect an
        older value.
        """
        recent = self._recent
        entry = (change, "tag" if tag else "pattern" if pattern else "key")
        recent[entry] = self._clock()
        recent.move_to_end(entry)
        if len(recent) > self._recent_max:
            _, dropped_at = recent.popitem(last=False)
            self._recent_dropped_at = max(self._recent_dropped_at, dropped_at)

    def _journal_recent(self) -> None:
        horizon = self._clock() - self.recent_window
        journal = self.journal
        if self._recent_dropped_at >= horizon:
            # More distinct keys changed within the window than are remembered: the
            # ones forgotten could be anywhere, so the failback invalidates everything.
            journal.add_everything()
        for (change, kind), at in self._recent.items():
            if at < horizon:
                continue
            if change is None:
                journal.add_everything()
            elif kind == "tag":
                journal.add_tags((change,))
            elif kind == "pattern":
                journal.add_pattern(change)
            else:
                journal.add_keys((change,))
        self._recent.clear()
        self._recent_dropped_at = -math.inf

    async def recover(self) -> bool:
        """Bring the primary back now if it answers: replay, then switch. Whether it serves.

        Closed: a ping (a failure fails over). Open: the journal is replayed on the
        primary before it serves again, as the probe would, without waiting for it.
        """
        primary = self.primary
        if primary is None:
            return False
        if self.active is primary:
            return await self.check()
        self._stop_probe()
        try:
            await primary.ping()
            await self._replay(primary)
        except CacheError as exc:
            self._note_error(exc)
            self._start_probe()
            return False
        await self._fail_back(primary)
        return True

    def ensure_probe(self) -> None:
        """Restart the probe if the event loop it ran on is gone (a new asyncio.run())."""
        probe = self._probe
        if probe is not None and not probe.done() and not probe.get_loop().is_closed():
            return
        if self.primary is not None and self.active is not self.primary:
            self._probe = None
            self._start_probe()

    async def check(self) -> bool:
        """Ping the primary now; on failure, fail over. Returns whether it answered."""
        primary = self.primary
        if primary is None:
            return False
        try:
            await primary.ping()
        except BackendError as exc:
            await self.failed(exc)
            return False
        return True

    def _start_probe(self) -> None:
        probe = self._probe
        if probe is None or probe.done() or probe.get_loop().is_closed():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_back())

    def _stop_probe(self) -> None:
        probe = self._probe
        if probe is not None and not probe.done():
            loop = probe.get_loop()
            if loop is _running_loop():
                probe.cancel()
            elif not loop.is_closed():
                # Task.cancel() belongs to the task's own loop: another thread's here.
                loop.call_soon_threadsafe(probe.cancel)
        self._probe = None
        self._open_gate()

    async def _probe_until_back(self) -> None:
        delay = self.probe_interval
        while True:
            # Full jitter between half and all of the delay: processes that lost the
            # same Redis do not come back in lockstep.
            await self._sleep(delay * (0.5 + self._rng() / 2))
            delay = min(delay * 2, self.probe_max_interval)
            primary = self.primary
            if primary is None or self.active is primary:
                return
            try:
                await primary.ping()
                await self._replay(primary)
            except CacheError as exc:  # a refused replay is retried like a failed one
                self._note_error(exc)
                continue
            if self.primary is not primary:  # replaced meanwhile; its owner recovers it
                return
            await self._fail_back(primary)
            return

    async def _replay(self, primary: Backend) -> None:
        # Calls keep writing to the fallback while a replay awaits the primary, so
        # replay again until a round finds nothing new. Under steady write traffic that
        # may never happen: after a few rounds, writers are held at the gate for one
        # last, short round, so the failback always converges.
        for _ in range(_FREE_REPLAY_ROUNDS):
            if not self.journal:
                return
            await self._replay_round(primary)
        if not self.journal:
            return
        self.gate = asyncio.Event()
        self._switched()
        try:
            await self._replay_round(primary)
        except BaseException:
            self._open_gate()
            raise

    async def _replay_round(self, primary: Backend) -> None:
        batch = self.journal.take()
        try:
            await batch.replay(primary)
        except BaseException:
            self.journal.merge(batch)
            raise

    def _open_gate(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            self._switched()
            gate.set()

    async def _fail_back(self, primary: Backend) -> None:
        # No await between the replay's last round and this switch: nothing written
        # to the fallback can go unreplayed.
        self.active = primary
        self._switched()
        self._open_gate()
        outage = 0.0
        if self._outage_started is not None:
            outage = self._clock() - self._outage_started
            self._fallback_seconds += outage
            self._outage_started = None
        self.failbacks += 1
        await self.fallback.clear()
        logger.info(
            "chenu_cache: %s answers again after %.1f s; switched back from %s",
            primary.name,
            outage,
            self.fallback.name,
        )
        self._notify(Transition("failback", outage_seconds=outage))

    def _notify(self, transition: Transition) -> None:
        if self.on_transition is None:
            return
        try:
            self.on_transition(transition)
        except Exception:  # a broken callback must not break the cache
            logger.exception("chenu_cache: on_transition callback failed")

    async def close(self) -> None:
        probe = self._probe
        self._stop_probe()
        if self.near is not None:
            await self.near.close()
        if probe is not None and probe.get_loop() is asyncio.get_running_loop():
            await asyncio.gather(probe, return_exceptions=True)

    def statistics(self) -> FailoverStatistics:
        on_fallback = self._fallback_seconds
        if self._outage_started is not None:
            on_fallback += self._clock() - self._outage_started
        return FailoverStatistics(
            state=self.state,
            failovers=self.failovers,
            failbacks=self.failbacks,
            time_on_fallback=on_fallback,
            errors=self.errors,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )
