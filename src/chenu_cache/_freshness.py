"""Freshness and stampedes: single flight, entry timing metadata, early refresh.

An entry written by ``get_or_set`` with a freshness option carries a small envelope in
front of the codec's bytes: when it was written (wall clock, shared across processes),
its logical TTL, and how long its loader took. That is what stale-while-revalidate,
serve-stale-on-error and probabilistic early refresh (XFetch) decide on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from .exceptions import CacheTypeError, InvalidTTLError

__all__ = [
    "DEFAULT_LOCK_TTL",
    "ENVELOPE_MAGIC",
    "ENVELOPE_SIZE",
    "BackgroundTasks",
    "EntryTiming",
    "Freshness",
    "SingleFlight",
    "cancel_tasks",
    "peek",
    "unwrap",
    "wrap",
    "xfetch_due",
]

logger = logging.getLogger("chenu_cache")

T = TypeVar("T")


async def cancel_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for those of this event loop to end.

    A task of another live loop (a worker thread's) is cancelled through that loop and
    not awaited; one of a closed loop is already over.
    """
    here = asyncio.get_running_loop()
    mine = []
    for task in tasks:
        loop = task.get_loop()
        if loop is here:
            task.cancel()
            mine.append(task)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
    if mine:
        await asyncio.gather(*mine, return_exceptions=True)


class SingleFlight(Generic[T]):
    """Runs at most one load per key at a time; concurrent callers share its outcome.

    The load runs in a task of its own, so a caller that is cancelled (a client that
    hung up, a timeout) does not cancel it for the others, and a load that finishes
    after every caller left still completes its write. Its exception reaches every
    caller of that flight; nothing about a failed flight is remembered.
    """

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}
        self.running = self._flights
        """Keys with a load in flight (read-only for callers: ``key in running``)."""
        self.completed = 0
        self.joined = 0
        """Callers served by a load another caller started."""
        """Flights finished so far, any key: a reader compares it before and after a
        read to learn whether a load may have stored its value meanwhile."""

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: object) -> bool:
        return key in self._flights

    async def run(self, key: str, load: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Start ``load`` for ``key``, or join the one running; return its result."""
        task = self._flights.get(key)
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            task = None  # another event loop's load cannot be awaited from this one
        if task is not None:
            self.joined += 1
        else:
            task = asyncio.get_running_loop().create_task(load())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: str, task: asyncio.Task[T]) -> None:
        self.completed += 1
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a flight nobody awaited logs no warning

    def forget(self, match: Callable[[str], bool]) -> None:
        """Let new callers of the matching keys start a new load (their entry was
        invalidated): those already waiting keep the running one's value."""
        for key in [key for key in self._flights if match(key)]:
            del self._flights[key]

    def discard(self, key: str) -> None:
        """`forget` for one key, in O(1): a caller wrote it, so a load started before
        that write must not answer the callers that come after it."""
        self._flights.pop(key, None)

    async def cancel_all(self) -> None:
        """Cancel every running load and wait until they are gone (used by ``close()``)."""
        await cancel_tasks(list(self._flights.values()))
        self._flights.clear()


_MAX_REMEMBERED = 10_000

DEFAULT_LOCK_TTL = 10.0
"""Seconds a cross-process load lock lives when ``lock=True``: longer than most loaders,
short enough that a crashed holder does not stall the others for long."""


def _positive_seconds(name: str, value: object) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise CacheTypeError(f"{name} must be seconds or a timedelta, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidTTLError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Freshness:
    """The freshness options of one ``get_or_set`` call or decorated function.

    ``refresh_after``: seconds after a write past which a hit returns the value at once
    and starts one background refresh. ``stale_if_error``: seconds past expiry during
    which a failing loader is answered with the last value. ``early_refresh``: XFetch's
    ``beta`` (1.0 is the paper's default; higher refreshes earlier). ``lock_ttl``: when
    set, one load at a time across processes, through a lock that lives that long.
    """

    refresh_after: float | None = None
    stale_if_error: float | None = None
    early_refresh: float | None = None
    lock_ttl: float | None = None

    @property
    def timed(self) -> bool:
        """Whether entries need timing metadata for these options."""
        return (
            self.refresh_after is not None
            or self.stale_if_error is not None
            or self.early_refresh is not None
        )

    @classmethod
    def build(
        cls,
        refresh_after: float | timedelta | None = None,
        stale_if_error: float | timedelta | None = None,
        early_refresh: float | None = None,
        lock: bool | float = False,
    ) -> Freshness | None:
        """Validate the keyword options; ``None`` when none is set."""
        if (
            refresh_after is None
            and stale_if_error is None
            and early_refresh is None
            and (lock is False)
        ):
            return None
        beta: float | None = None
        if early_refresh is not None:
            beta = _positive_seconds("early_refresh", early_refresh)
        lock_ttl: float | None = None
        if lock is True:
            lock_ttl = DEFAULT_LOCK_TTL
        elif lock is not False:
            lock_ttl = _positive_seconds("lock", lock)
        return cls(
            refresh_after=None
            if refresh_after is None
            else _positive_seconds("refresh_after", refresh_after),
            stale_if_error=None
            if stale_if_error is None
            else _positive_seconds("stale_if_error", stale_if_error),
            early_refresh=beta,
            lock_ttl=lock_ttl,
        )


ENVELOPE_MAGIC = 0xC2
"""First byte of an entry with timing metadata (the codec's own header is ``0xC1``)."""

_ENVELOPE = struct.Struct("<Bddf")  # magic, written_at, ttl (0: none), load seconds
ENVELOPE_SIZE = _ENVELOPE.size


@dataclass(frozen=True)
class EntryTiming:
    """When an entry was written (wall-clock seconds), for how long, and its load time."""

    written_at: float
    ttl: float | None
    load_seconds: float

    @property
    def expires_at(self) -> float:
        return math.inf if self.ttl is None else self.written_at + self.ttl


def wrap(data: bytes, timing: EntryTiming) -> bytes:
    """Prefix encoded bytes with their timing."""
    return (
        _ENVELOPE.pack(ENVELOPE_MAGIC, timing.written_at, timing.ttl or 0.0, timing.load_seconds)
        + data
    )


def unwrap(data: bytes) -> tuple[bytes, EntryTiming | None]:
    """Split stored bytes into the codec's bytes and their timing, if they carry one."""
    if not data or data[0] != ENVELOPE_MAGIC or len(data) < ENVELOPE_SIZE:
        return data, None
    _, written_at, ttl, load_seconds = _ENVELOPE.unpack_from(data)
    return data[ENVELOPE_SIZE:], EntryTiming(written_at, ttl or None, load_seconds)


peek: Callable[[bytes], tuple[int, float, float, float]] = _ENVELOPE.unpack_from
"""``(magic, written_at, ttl or 0.0, load_seconds)`` of an entry that carries an
envelope (at least `ENVELOPE_SIZE` bytes): the hit path's check, with no `EntryTiming`
built and no Python frame."""


def xfetch_due(now: float, timing: EntryTiming, beta: float, random: Callable[[], float]) -> bool:
    """XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): refresh early at random.

    True when ``now - load_seconds * beta * ln(U) >= expiry`` for ``U`` uniform in
    (0, 1]: the closer the expiry and the slower the loader, the likelier. Fed one
    value of a seeded RNG per call, the decision is reproducible.
    """
    if timing.ttl is None or beta <= 0:
        return False
    u = random()
    if u <= 0.0:
        return True  # -ln(0) is infinite: any entry would be due
    return now - timing.load_seconds * beta * math.log(u) >= timing.expires_at


class BackgroundTasks:
    """Background refreshes: at most one per key, tracked, and cancelled on close."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failing: set[str] = set()  # keys whose last refresh failed: logged once
        self.started = 0
        self.failed = 0

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: str, work: Callable[[], Coroutine[Any, Any, object]]) -> bool:
        """Run ``work`` in the background unless a refresh of ``key`` already runs."""
        running = self._tasks.get(key)
        if running is not None and not running.get_loop().is_closed():
            return False
        self.started += 1
        task = asyncio.get_running_loop().create_task(self._run(key, work))
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return True

    async def _run(self, key: str, work: Callable[[], Coroutine[Any, Any, object]]) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the caller already has its answer; keep serving
            self.failed += 1
            if key not in self._failing and len(self._failing) < _MAX_REMEMBERED:
                self._failing.add(key)
                logger.warning(
                    "chenu_cache: background refresh of %r failed (%s); serving the "
                    "cached value meanwhile",
                    key,
                    type(exc).__name__,
                )
        else:
            self._failing.discard(key)

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def cancel_all(self) -> None:
        await cancel_tasks(list(self._tasks.values()))
        self._tasks.clear()
