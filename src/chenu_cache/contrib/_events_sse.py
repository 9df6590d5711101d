"""``GET /cache/events``: a cache's invalidation events as Server-Sent Events (SPEC §16).

One reader per router follows the cache's stream and fans each event out to every open
connection (`EventHub`), so a thousand browsers cost one blocking read, not a thousand.
Each connection has a bounded queue: a client that stops reading fills it and is
dropped, its response ended. That loses it nothing: ``EventSource`` reconnects with
``Last-Event-ID``, and the connection replays what it missed from the stream before it
joins the fan-out again (at least once within the stream's retention, a ``reset``
otherwise). This module uses only chenu-cache's public API.
"""

# No `from __future__ import annotations`: FastAPI reads the route's annotations at run
# time.

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from chenu_cache import CacheError, CacheEvent, ConfigurationError, FallbackCache

from ._fastapi_models import ErrorResponse, EventData

__all__ = ["DEFAULT_HEARTBEAT", "QUEUE_SIZE", "EventHub", "add_events_route", "public_namespaces"]

logger = logging.getLogger("chenu_cache")

DEFAULT_HEARTBEAT = 15.0
QUEUE_SIZE = 256
"""Events a connection may have waiting before it counts as too slow and is dropped."""

_NAMESPACE = re.compile(r"[a-z0-9_.-]{1,64}")
_EVENT_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_MAX_ID_PART = 2**64 - 1  # a stream id is two unsigned 64-bit numbers
_KEEP_ALIVE = b": keep-alive\n\n"
_CLOSE_TIMEOUT = 5.0  # seconds the clean-up of a finished stream may take at most
_READY_WAIT = 1.0  # seconds a new connection waits for the reader's starting point


def public_namespaces(namespaces: Iterable[str]) -> frozenset[str]:
    """``event_namespaces=``, checked when the router is built."""
    if isinstance(namespaces, (str, bytes)):
        raise ConfigurationError(
            "event_namespaces must be a collection of namespaces, e.g. ('user',), not a string"
        )
    found: set[str] = set()
    for namespace in namespaces:
        if not isinstance(namespace, str) or _NAMESPACE.fullmatch(namespace) is None:
            raise ConfigurationError(
                f"event_namespaces: {namespace!r} is not a namespace ([a-z0-9_.-]{{1,64}})"
            )
        found.add(namespace)
    return frozenset(found)


def _namespace_of(key: str) -> str | None:
    head, sep, _ = key.partition(":")
    return head if sep and _NAMESPACE.fullmatch(head) is not None else None


def _id_parts(text: str) -> tuple[int, int] | None:
    found = _EVENT_ID.fullmatch(text)
    if found is None:
        return None
    parts = (int(found.group(1)), int(found.group(2) or 0))
    return None if max(parts) > _MAX_ID_PART else parts


def _checked_event_id(text: str) -> str:
    """``text`` if it is a stream id (``<ms>`` or ``<ms>-<seq>``), else a 400."""
    if _id_parts(text) is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail={
                "error": "InvalidEventId",
                "message": "an event id is '<milliseconds>-<sequence>', as sent in 'id:' lines",
            },
        )
    return text


def _sse_frame(event: CacheEvent, public: frozenset[str]) -> bytes | None:
    """The SSE frame of ``event``, or ``None`` when it concerns no public namespace. A
    ``key``/``keys`` event names only the keys of public namespaces, a ``tags`` event
    only the tags named like them (``user:42`` when ``user`` is public): a browser
    takes such a tag for everything about that thing."""
    data = event.to_dict()
    if event.kind == "tags":
        data["tags"] = [tag for tag in event.tags if _namespace_of(tag) in public]
        if not data["tags"]:
            return None
    elif not event.touches(public):
        return None
    else:
        data.pop("tags", None)
    if event.kind in ("key", "keys"):
        data["keys"] = [key for key in event.keys if _namespace_of(key) in public]
    lines = [f"id: {event.id}"] if event.id else []
    lines.append("event: reset" if event.kind == "reset" else "event: invalidate")
    # ensure_ascii: no byte of the data can end an SSE line (only \n and \r do).
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=True))
    return ("\n".join(lines) + "\n\n").encode("ascii")


# -- one reader, many connections ----------------------------------------------------------


class Subscriber:
    """One connection's place in the fan-out: a bounded queue, and whether it is over."""

    __slots__ = ("closed", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[CacheEvent | None] = asyncio.Queue(size)
        self.closed = False

    def offer(self, event: CacheEvent) -> bool:
        """Queue ``event``; ``False`` (and closed) when the queue is full."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.closed = True
            return False
        return True

    def end(self) -> None:
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)  # wakes a connection waiting on an empty queue

    async def get(self) -> CacheEvent | None:
        """The next event; ``None`` once dropped or ended."""
        if self.closed:  # dropped or ended: what it has queued is replayed on reconnection
            return None
        return await self.queue.get()


class EventHub:
    """Follows a cache's event stream while at least one connection listens, and hands
    every event to each of them.

    The reader starts from the newest event when the first connection joins, and stops
    when the last one leaves. ``ready`` is set once its starting point is known:
    a connection that resumes from an id replays the stream up to its end only after
    that, so no event falls between its replay and the fan-out. ``dropped`` counts the
    connections dropped for being too slow.
    """

    def __init__(self, cache: FallbackCache, queue_size: int = QUEUE_SIZE) -> None:
        self._cache = cache
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.dropped = 0

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    def join(self) -> Subscriber:
        """A new connection's place in the fan-out; the reader starts if it is not running."""
        subscriber = Subscriber(self._queue_size)
        self._subscribers.add(subscriber)
        if self._task is None:
            self.ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._follow(self.ready))
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        """The connection is over; the reader stops with the last one."""
        self._subscribers.discard(subscriber)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _follow(self, ready: asyncio.Event) -> None:
        try:
            start = await self._cache.latest_event_id()
            ready.set()
            async for event in self._cache.events(start):
                for subscriber in tuple(self._subscribers):
                    if not subscriber.offer(event):
                        self._subscribers.discard(subscriber)
                        self.dropped += 1
                        logger.info("chenu_cache: an event stream client was too slow: dropped")
        except CacheError as exc:
            logger.warning("chenu_cache: the event stream ended: %s", exc)
        finally:
            ready.set()  # nobody may wait for a reader that is gone
            # A reader stopped by leave() has been replaced (or is not needed): the
            # connections there now belong to its successor. One that ended by itself
            # ends its connections, which reconnect to a new one.
            if self._task is asyncio.current_task():
                self._task = None
                for subscriber in tuple(self._subscribers):
                    subscriber.end()


async def _events_after(
    hub: EventHub, subscriber: Subscriber, cache: FallbackCache, since: str | None
) -> AsyncIterator[CacheEvent]:
    """A connection's events: the stream after ``since`` up to its end, then the
    fan-out's, without the ones the replay already gave."""
    try:
        await hub.ready.wait()
        last: tuple[int, int] | None = None
        if since is not None:
            async for event in cache.events(since, wait=False):
                if event.kind != "reset":
                    last = _id_parts(event.id)
                yield event
        while True:
            shared = await subscriber.get()
            if shared is None:
                return
            if last is not None and shared.kind != "reset":
                seen = _id_parts(shared.id)
                if seen is not None and seen <= last:
                    continue
            yield shared
    finally:
        hub.leave(subscriber)


async def _next_event(events: AsyncIterator[CacheEvent]) -> CacheEvent | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _event_stream(
    events: AsyncIterator[CacheEvent],
    request: Request,
    public: frozenset[str],
    heartbeat: float,
) -> AsyncIterator[bytes]:
    """The body of ``GET /cache/events``: a frame per public event, keep-alives between.

    One read is in flight at a time, kept across heartbeats (cancelling a read to send
    one would end the iterator). When the client goes away, the server cancels this
    generator (or a heartbeat finds it gone); either way the read is cancelled and
    ``events`` closed before it ends, which takes the connection out of the fan-out.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Task[CacheEvent | None] | None = None
    last_sent = loop.time()
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(_next_event(events))
            idle = loop.time() - last_sent
            done, _ = await asyncio.wait((pending,), timeout=max(0.0, heartbeat - idle))
            if not done:
                if await request.is_disconnected():
                    return
                last_sent = loop.time()
                yield _KEEP_ALIVE
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except CacheError as exc:
                logger.warning("chenu_cache: the event stream ended: %s", exc)
                return
            if event is None:
                return
            frame = _sse_frame(event, public)
            if frame is not None:
                last_sent = loop.time()
                yield frame
    finally:
        # Shielded: the server cancels this generator when the client disconnects, and
        # the clean-up must still run to its end (bounded, should the iterator hang).
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
            close = getattr(events, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


# -- the route -------------------------------------------------------------------------------

_EVENTS_DESCRIPTION = """Invalidation events as Server-Sent Events (SPEC §16), for the
namespaces the application declared public. Each invalidation is a frame
`id: <event id>`, `event: invalidate`, `data: <JSON>`; `event: reset` means that
anything may be stale (the stream no longer holds every event after the id asked
for). A `: keep-alive` comment is sent when the stream has been idle for the
heartbeat. Reconnecting with `Last-Event-ID` (or `?since=`) resumes after that id:
at least once within the stream's retention, a reset otherwise. A client that does not
read is disconnected once 256 events wait for it; reconnecting resumes it."""

_EVENTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "an endless text/event-stream",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                # OpenAPI 3.2's description of one event; its data is EventData's JSON.
                "itemSchema": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "id": {"type": "string", "description": "the event id"},
                        "event": {"type": "string", "enum": ["invalidate", "reset"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": EventData.model_json_schema(),
                        },
                    },
                },
                "example": 'id: 1717000000000-0\nevent: invalidate\ndata: {"kind":"key",'
                '"time":1717000000.0,"keys":["user:42"],"origin":"a1b2c3"}\n\n',
            }
        },
    },
    400: {"model": ErrorResponse, "description": "a malformed Last-Event-ID or since"},
    503: {"model": ErrorResponse, "description": "the cache was built without events=True"},
}


def add_events_route(
    router: APIRouter,
    cache: FallbackCache,
    public: frozenset[str],
    heartbeat: float,
    auth: list[Any],
    auth_errors: dict[int | str, dict[str, Any]],
) -> EventHub:
    """Add ``GET /events`` to ``router``; return the hub its connections share."""
    hub = EventHub(cache)

    @router.get(
        "/events",
        dependencies=auth,
        response_class=StreamingResponse,
        responses={**_EVENTS_RESPONSES, **auth_errors},
        summary="Invalidation events of the public namespaces (Server-Sent Events)",
        description=_EVENTS_DESCRIPTION,
    )
    async def events(
        request: Request,
        since: Annotated[
            str | None,
            Query(description="resume after this event id (Last-Event-ID wins over it)"),
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(
                alias="Last-Event-ID",
                description="sent by EventSource when it reconnects: resume after this id",
            ),
        ] = None,
    ) -> StreamingResponse:
        # EventSource sends Last-Event-ID when it reconnects: it is newer than the URL's
        # `since`, which it keeps sending. An empty header is no id (the spec's own).
        header = (last_event_id or "").strip()
        start = header or since
        after = None if start is None else _checked_event_id(start)
        if not cache.events_enabled:  # the server's mistake, not the caller's
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail={
                    "error": "ConfigurationError",
                    "message": "events() needs FallbackCache(..., events=True)",
                },
            )
        # Joined, and the reader's starting point known, before the headers go out: a
        # browser counts the stream as open when they arrive, and an invalidation made
        # after that must reach it. Not waited for long: during an outage the reader
        # waits for Redis, and nothing is published meanwhile anyway.
        subscriber = hub.join()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(hub.ready.wait(), _READY_WAIT)
        except BaseException:
            hub.leave(subscriber)
            raise
        events = _events_after(hub, subscriber, cache, after)
        return StreamingResponse(
            _event_stream(events, request, public, heartbeat),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return hub
