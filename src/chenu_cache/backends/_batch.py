"""Automatic batching: concurrent single-key calls coalesced into one round trip.

A lone call goes out at once, on its own: batching must never tax it. Calls that arrive
while a request is in flight queue up and leave together, as one batch, as soon as the
wire is free. When a batch's answers release many callers at once, the batcher waits one
loop turn before going idle, so that callers who immediately call again (a closed loop
of workers) form the next batch instead of racing one lone call out first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

I = TypeVar("I")  # noqa: E741 - item
R = TypeVar("R")  # result


class Batcher(Generic[I, R]):
    """Coalesces concurrent ``submit(item)`` calls into ``send_many(items)`` calls.

    ``send_one(item)`` serves a caller that finds nothing in flight; ``send_many(items)``
    returns one result per item, in order. An exception from ``send_many`` reaches every
    caller of that batch (and no other); a caller cancelled while queued is skipped.
    """

    def __init__(
        self,
        send_one: Callable[[I], Awaitable[R]],
        send_many: Callable[[Sequence[I]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 512,
    ) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._max_batch = max_batch
        self.busy = False
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: I) -> R:
        if not self.busy:
            self.busy = True
            try:
                return await self._send_one(item)
            finally:
                self.done_alone()
        return await self.enqueue(item)

    def done_alone(self) -> None:
        """A lone call is answered: send what queued meanwhile, or go idle."""
        self._advance(linger=False)

    def enqueue(self, item: I) -> asyncio.Future[R]:
        """Queue ``item`` for the next batch; await the returned future for its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        return future

    def _advance(self, *, linger: bool) -> None:
        """The wire is free: send what queued, or go idle (after a turn, if ``linger``)."""
        if self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            task = asyncio.get_running_loop().create_task(self._send_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif linger:
            asyncio.get_running_loop().call_soon(self._linger_over)
        else:
            self.busy = False

    def _linger_over(self) -> None:
        # Nothing else can be in flight: while busy, every caller queues.
        if self._queue:
            self._advance(linger=False)
        else:
            self.busy = False

    async def _send_batch(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send_many([item for item, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._advance(linger=True)

    async def close(self) -> None:
        """Cancel batches in flight; queued callers are cancelled too."""
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.busy = False
