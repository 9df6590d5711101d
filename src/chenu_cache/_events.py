"""Following the event log (SPEC §16): ``FallbackCache.events()``.

The log is read through the current route, so an outage pauses a reader instead of
failing it: it waits, then resumes after the last id it delivered. A reader that starts
from (or comes back to) an id older than what the log still holds may have missed
events, and is told so with a ``reset`` first.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

from ._routes import Route
from .events import CacheEvent
from .exceptions import InvalidKeyError

__all__ = ["follow", "newest", "parse_event_id"]

_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
_BLOCK = 0.05  # seconds a read waits for an event (Redis caps it below its socket timeout)
_RETRY = 0.25  # seconds between tries while the log cannot be read
_COUNT = 100


def parse_event_id(text: str) -> tuple[int, int]:
    """A stream id (``"1717000000000-3"``, or ``"1717000000000"``) as a pair; a malformed
    one raises `InvalidKeyError` (a ``ValueError``)."""
    found = _ID.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise InvalidKeyError(f"{text!r} is not an event id ('<milliseconds>-<sequence>')")
    return int(found.group(1)), int(found.group(2) or 0)


async def newest(route: Callable[[], Route]) -> str:
    """The id of the newest event the log holds (``"0-0"`` when empty), once it can be
    read: an outage makes this wait."""
    while True:
        readable, bounds = await route().event_bounds()
        if readable:
            return bounds[1] if bounds else "0-0"
        await asyncio.sleep(_RETRY)


async def follow(
    route: Callable[[], Route], since: str | None, *, wait: bool = True
) -> AsyncIterator[CacheEvent]:
    """Events after ``since`` (else from now), waiting for new ones for ever; without
    ``wait``, ending once it has caught up with the log (an outage still pauses it)."""
    after = since
    if after is not None:
        parse_event_id(after)  # before any I/O: a bad id is the caller's mistake
    else:
        after = await newest(route)
    check_gap = since is not None
    while True:
        if check_gap:
            readable, bounds = await route().event_bounds()
            if not readable:
                await asyncio.sleep(_RETRY)
                continue
            check_gap = False
            if bounds is not None and (0, 0) < parse_event_id(after) < parse_event_id(bounds[0]):
                yield CacheEvent(id=bounds[0], kind="reset")
        found = await route().read_events(after, _COUNT, _BLOCK if wait else 0.0)
        if found is None:  # an outage: wait, then make sure nothing was trimmed meanwhile
            await asyncio.sleep(_RETRY)
            check_gap = True
            continue
        if not found and not wait:
            return
        for event_id, data in found:
            after = event_id
            yield CacheEvent.decode(event_id, data)
