"""Reading a cache's statistics for a metrics exporter (Prometheus, OpenTelemetry).

Both exporters are read from a thread of their own and must report series that a
time-series database can trust: the snapshot is taken where the cache runs, label
values stay bounded, and counters never go down. This module uses only chenu-cache's
public API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import operator
from collections.abc import Mapping
from typing import Any

from chenu_cache import CacheStatistics, ConfigurationError, FallbackCache

logger = logging.getLogger("chenu_cache")

DEFAULT_MAX_NAMESPACES = 100
OTHER_NAMESPACES = "(other)"
DEFAULT_TIMEOUT = 2.0

_NO_NAMESPACE = "(none)"  # the statistics' bucket for keys without a namespace
_BREAKER_STATES = ("closed", "open", "memory-only")


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def check_options(cache: object, name: object, max_namespaces: object, timeout: float) -> None:
    """Refuse, with `ConfigurationError`, what would make a cache unwatchable."""
    if not isinstance(cache, FallbackCache):
        raise ConfigurationError(f"expected a FallbackCache, got {type(cache).__name__}")
    if not isinstance(name, str) or not name:
        raise ConfigurationError("name must be a non-empty str")
    if type(max_namespaces) is not int or max_namespaces < 0:
        raise ConfigurationError("max_namespaces must be an int >= 0")
    if not timeout > 0:
        raise ConfigurationError("timeout must be a positive number of seconds")


def breaker_states(state: str) -> tuple[str, ...]:
    """The breaker states to report, ``state`` among them."""
    if state in _BREAKER_STATES:
        return _BREAKER_STATES
    return (*_BREAKER_STATES, state)  # a state added later still shows, as 1


def figure(stats: CacheStatistics, path: str) -> float | None:
    """The statistic at ``path`` (``"loader.calls"``); ``None`` while it has no value,
    and then the exporters leave its series out rather than report a made-up 0."""
    value: float | None = operator.attrgetter(path)(stats)
    return value


class WatchedCache:
    """One cache an exporter reports on, and what keeps its series sound between reads."""

    def __init__(
        self,
        cache: FallbackCache,
        name: str,
        max_namespaces: int,
        loop: asyncio.AbstractEventLoop | None,
        timeout: float,
    ) -> None:
        self.cache = cache
        self.name = name
        self.max_namespaces = max_namespaces
        self.loop = loop or running_loop()
        self.timeout = timeout
        self._labelled: set[str] = set()
        self._folded: set[str] = set()
        self._others = 0  # only undeclared namespaces count against max_namespaces
        self._redis_reads = (0, 0)

    def statistics(self) -> CacheStatistics | None:
        """A snapshot taken on the cache's event loop; ``None`` if it did not answer.

        The memory tier tidies expired entries while it is counted, so counting it from
        another thread would race the loop that uses it.
        """
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running() or running_loop() is loop:
            return self.cache.statistics()
        taken: concurrent.futures.Future[CacheStatistics] = concurrent.futures.Future()

        def take() -> None:
            if taken.set_running_or_notify_cancel():
                try:
                    taken.set_result(self.cache.statistics())
                except Exception as exc:
                    taken.set_exception(exc)

        try:
            loop.call_soon_threadsafe(take)
        except RuntimeError:  # closed since the check: nothing runs on it any more
            return self.cache.statistics()
        try:
            return taken.result(self.timeout)
        except concurrent.futures.TimeoutError:
            taken.cancel()
            logger.debug(
                "chenu_cache: cache %r: no statistics within %s s", self.name, self.timeout
            )
            return None

    def namespaces(self, found: Mapping[str, Any]) -> list[tuple[str, int, int]]:
        """``(namespace, hits, misses)`` per labelled namespace, the rest summed as "(other)".

        Declared namespaces, "(none)" and the first ``max_namespaces`` others to appear
        are labelled. A namespace keeps what it got first, for as long as the cache is
        watched, so that no counter moves between a namespace and "(other)".
        """
        labelled, folded = self._labelled, self._folded
        new = [name for name in found if name not in labelled and name not in folded]
        if new:
            declared = self.cache.namespaces
            # The busiest first when several appear at once; names break ties.
            new.sort(key=lambda name: (-(found[name].hits + found[name].misses), name))
            for name in new:
                if name == _NO_NAMESPACE or name in declared:
                    labelled.add(name)
                elif self._others < self.max_namespaces:
                    labelled.add(name)
                    self._others += 1
                else:
                    folded.add(name)
        rows: list[tuple[str, int, int]] = []
        other_hits = other_misses = 0
        for name, counts in found.items():
            if name in labelled:
                rows.append((name, counts.hits, counts.misses))
            else:
                other_hits += counts.hits
                other_misses += counts.misses
        if folded:
            rows.append((OTHER_NAMESPACES, other_hits, other_misses))
        return rows

    def redis_reads(self, stats: CacheStatistics) -> tuple[int, int]:
        """Redis's ``(hits, misses)`` as last seen while it served.

        They read 0 while it does not; a counter must not fall back to 0 and jump up
        again at failback.
        """
        redis = stats.redis
        if redis.connected:
            self._redis_reads = (redis.hits, redis.misses)
        return self._redis_reads
