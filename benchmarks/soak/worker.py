"""One soak worker process: ``tasks`` asyncio tasks driving one FallbackCache.

The "database" is a shared array of int64 versions, one per row. Only the row's owner
(``i % workers == worker id``) writes it, under a per-row lock, so that two writes of
one row never race each other: such a race is the application's, and it would make a
stale read that no cache could avoid. Every other operation may touch any row from any
process. Each operation is appended to column arrays with monotonic timestamps
(``CLOCK_MONOTONIC`` is system-wide, so the parent can compare processes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import random
import resource
import threading
import time
import traceback
from array import array
from collections.abc import Awaitable
from typing import Any

import chenu_cache
from benchmarks.soak import layout as L
from chenu_cache import FallbackCache, NearCacheOptions, Transition

PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_TRACEBACKS = 20


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * PAGE


class History:
    """Column arrays: a few hundred thousand operations cost a few megabytes."""

    def __init__(self) -> None:
        self.kind = array("B")
        self.row = array("l")
        self.t0 = array("d")
        self.t1 = array("d")
        self.bumped = array("d")  # for writes: when the database held the new version
        self.version = array("q")
        self.arg = array("l")
        # Every database write, even one whose cache call then failed: the checker's
        # picture of the database must not miss a version.
        self.bump_row = array("l")
        self.bump_version = array("q")
        self.bump_time = array("d")
        self.errors: dict[str, int] = {}
        self.tracebacks: list[str] = []

    def add(
        self, kind: int, row: int, t0: float, t1: float, version: int, arg: int, bumped: float
    ) -> None:
        self.kind.append(kind)
        self.row.append(row)
        self.t0.append(t0)
        self.t1.append(t1)
        self.version.append(version)
        self.arg.append(arg)
        self.bumped.append(bumped)

    def failed(self, kind: int, exc: BaseException) -> None:
        name = f"{L.OP_NAMES[kind]}: {type(exc).__module__}.{type(exc).__qualname__}"
        self.errors[name] = self.errors.get(name, 0) + 1
        if len(self.tracebacks) < MAX_TRACEBACKS:
            self.tracebacks.append("".join(traceback.format_exception(exc)))

    def columns(self) -> dict[str, bytes]:
        return {
            "kind": self.kind.tobytes(),
            "row": self.row.tobytes(),
            "t0": self.t0.tobytes(),
            "t1": self.t1.tobytes(),
            "bumped": self.bumped.tobytes(),
            "version": self.version.tobytes(),
            "arg": self.arg.tobytes(),
            "bump_row": self.bump_row.tobytes(),
            "bump_version": self.bump_version.tobytes(),
            "bump_time": self.bump_time.tobytes(),
        }


class Worker:
    def __init__(self, wid: int, url: str, db: Any, settings: L.Settings) -> None:
        self.wid = wid
        self.db = db
        self.settings = settings
        self.history = History()
        self.transitions: list[tuple[float, str]] = []
        self.rss: list[tuple[float, int]] = []
        self.locks: dict[int, asyncio.Lock] = {}
        self.owned = list(range(wid, settings.keys, settings.workers))
        self.cache = FallbackCache(
            redis_url=url,
            prefix="soak:",
            default_ttl=settings.ttl,
            operation_timeout=settings.operation_timeout,
            probe_interval=settings.probe_interval,
            probe_max_interval=settings.probe_max_interval,
            outage_ttl_cap=settings.outage_ttl_cap,
            read_env=False,
            on_transition=self._transition,
            near_cache=NearCacheOptions(heartbeat=0.1) if settings.near(wid) else False,
        )
        self.decorated = chenu_cache.cache(
            cache=self.cache, namespace=L.DEC_NAMESPACE, tags=["grp:{group}"]
        )(self._load_dec)

    def _transition(self, transition: Transition) -> None:
        self.transitions.append((time.monotonic(), transition.event))

    async def _read_db(self, i: int) -> dict[str, int]:
        # A load that takes a while is what opens the windows the fences must close.
        delay = self.settings.loader_delay
        if delay > 0:
            await asyncio.sleep(random.random() * delay)
        return {"v": int(self.db[i]), "i": i}

    async def _load_dec(self, i: int, group: int) -> dict[str, int]:
        return await self._read_db(i)

    def _pick(self, rng: random.Random) -> int:
        # Skewed towards low rows so that hot keys are read, written and loaded at once.
        return min(int(self.settings.keys * rng.random() ** 2), self.settings.keys - 1)

    async def _write(self, i: int, invalidate_only: bool) -> tuple[int, float]:
        lock = self.locks.get(i)
        if lock is None:
            lock = self.locks[i] = asyncio.Lock()
        async with lock:
            version = int(self.db[i]) + 1
            self.db[i] = version
            bumped = time.monotonic()
            self.history.bump_row.append(i)
            self.history.bump_version.append(version)
            self.history.bump_time.append(bumped)
            if invalidate_only:
                await self.cache.invalidate(L.item_key(i), L.item_namespace(i))
            else:
                await self.cache.set(
                    L.item_key(i),
                    {"v": version, "i": i},
                    namespace=L.item_namespace(i),
                    tags=[L.tag_of(i)],
                )
            await self.decorated.invalidate(i, L.group_of(i))
        return version, bumped

    async def _one(self, rng: random.Random, kind: int) -> None:
        i = self._pick(rng)
        arg = 0
        version = 0
        bumped = 0.0
        t0 = time.monotonic()
        try:
            if kind == L.GET:
                value = await self.cache.get(L.item_key(i), L.item_namespace(i))
                version = L.MISS if value is None else int(value["v"])
            elif kind == L.GET_OR_SET:
                value = await self.cache.get_or_set(
                    L.item_key(i),
                    lambda: self._read_db(i),
                    namespace=L.item_namespace(i),
                    tags=[L.tag_of(i)],
                )
                version = int(value["v"])
            elif kind == L.DECORATED:
                version = int((await self.decorated(i, L.group_of(i)))["v"])
            elif kind in (L.WRITE_SET, L.WRITE_INVALIDATE):
                i = self.owned[min(int(len(self.owned) * rng.random() ** 2), len(self.owned) - 1)]
                t0 = time.monotonic()
                version, bumped = await self._write(i, kind == L.WRITE_INVALIDATE)
            elif kind == L.INVALIDATE:
                await self.cache.invalidate(L.item_key(i), L.item_namespace(i))
            elif kind == L.INVALIDATE_PATTERN:
                namespace, digit = rng.randrange(L.NAMESPACES), rng.choice(L.PATTERN_DIGITS)
                arg = L.encode_pattern(namespace, digit)
                await self.cache.invalidate_pattern(L.pattern_of(namespace, digit))
            elif kind == L.INVALIDATE_NAMESPACE:
                arg = rng.randrange(L.NAMESPACES + 1)
                name = L.DEC_NAMESPACE if arg == L.DEC_NAMESPACE_CODE else f"ns{arg}"
                await self.cache.invalidate_namespace(name)
            elif kind == L.INVALIDATE_TAGS:
                arg = L.group_of(i)
                await self.cache.invalidate_tags(L.tag_of(i))
        except Exception as exc:  # the soak's point: count it, keep going
            self.history.failed(kind, exc)
            version = L.FAILED
        self.history.add(kind, i, t0, time.monotonic(), version, arg, bumped)

    async def _task(self, tid: int, until: float) -> None:
        s = self.settings
        rng = random.Random(s.seed * 1_000_003 + self.wid * 1009 + tid)
        kinds = list(L.MIX)
        weights = list(L.MIX.values())
        while time.monotonic() < until:
            await self._one(rng, rng.choices(kinds, weights)[0])
            await asyncio.sleep(rng.random() * 2 * s.think)

    async def _sample_rss(self, until: float) -> None:
        while time.monotonic() < until:
            self.rss.append((time.monotonic(), rss_bytes()))
            await asyncio.sleep(1.0)

    async def run(self, start_at: float) -> None:
        await self.cache.initialize()
        # All workers start their load together, after every one has connected.
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        until = start_at + self.settings.seconds
        sampler = asyncio.ensure_future(self._sample_rss(until))
        try:
            await asyncio.gather(*(self._task(t, until) for t in range(self.settings.tasks)))
        finally:
            sampler.cancel()
            self.rss.append((time.monotonic(), rss_bytes()))
            await asyncio.wait_for(self.cache.close(), 10)


def worker_main(
    wid: int, url: str, db: Any, settings: L.Settings, start_at: float, out_path: str
) -> None:
    """Entry point of a worker process; writes its history to ``out_path``."""
    _die_with_parent()
    # One line per transition per worker adds up over a soak; the history keeps them.
    logging.getLogger("chenu_cache").setLevel(logging.ERROR)
    worker = Worker(wid, url, db, settings)
    fatal = ""
    try:
        asyncio.run(_bounded(worker.run(start_at), settings.seconds + 60))
    except BaseException as exc:  # reported, not raised: the parent decides
        fatal = "".join(traceback.format_exception(exc))
    stats = worker.cache.statistics().to_dict()
    result = {
        "wid": wid,
        "url": url,
        "columns": worker.history.columns(),
        "errors": worker.history.errors,
        "tracebacks": worker.history.tracebacks,
        "transitions": worker.transitions,
        "rss": worker.rss,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "statistics": stats,
        "fatal": fatal,
    }
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(result, fh)
    os.replace(tmp, out_path)


def _die_with_parent() -> None:
    # A parent killed with SIGKILL runs no finally: its workers must not outlive it.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


async def _bounded(work: Awaitable[None], seconds: float) -> None:
    await asyncio.wait_for(work, seconds)
