"""Keeping loaders from stampeding: in-process single flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs at most one load per key at a time; concurrent callers share its outcome.

    The load runs in a task of its own, so a caller that is cancelled (a client that
    hung up, a timeout) does not cancel it for the others, and a load that finishes
    after every caller left still completes its write. Its exception reaches every
    caller of that flight; nothing about a failed flight is remembered.
    """

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}
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

    async def cancel_all(self) -> None:
        """Cancel every running load and wait until they are gone (used by ``close()``)."""
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._flights.clear()
