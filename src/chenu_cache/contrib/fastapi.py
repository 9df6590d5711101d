"""Admin HTTP routes for a cache, and its start and stop in a FastAPI app's lifespan.

Needs the ``fastapi`` extra (``pip install "chenu-cache[fastapi]"``)::

    from chenu_cache import cache_service
    from chenu_cache.contrib.fastapi import create_cache_router

    token = os.environ["CHENU_CACHE_ADMIN_TOKEN"]
    app.include_router(create_cache_router(cache_service, token=token))

Admin routes need the application's own dependency (``dependency=``) or a bearer token
(``token=``); with both, both must pass. ``/cache/health`` and ``/cache/namespaces``
are open. ``GET /cache/events`` (invalidation events as Server-Sent Events, SPEC §16)
exists only when ``event_namespaces=`` names the namespaces it may stream. This module
uses only chenu-cache's public API.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time,
# and some refer to closure variables (the bearer scheme, the page-size bound).

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, TypeVar

try:
    import anyio
    from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, status
    from fastapi.responses import StreamingResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ImportError as exc:  # pragma: no cover - exercised by the import_minimal nox session
    raise ImportError(
        'chenu_cache.contrib.fastapi needs FastAPI: pip install "chenu-cache[fastapi]"'
    ) from exc

from chenu_cache import (
    MISSING,
    NO_EXPIRY,
    CacheError,
    CacheEvent,
    CacheTypeError,
    CommandRefusedError,
    ConfigurationError,
    FallbackCache,
    InvalidKeyError,
    InvalidTTLError,
    SerializationError,
    ValidationError,
    ValueTooLargeError,
)

from ._fastapi_models import (
    Deleted,
    DeletedKey,
    DeletedNamespace,
    ErrorResponse,
    EventData,
    HealthResponse,
    InvalidatedTag,
    KeysPage,
    KeyValue,
    NamespaceInfo,
    NamespacesResponse,
    SetKeyRequest,
    SetKeyResponse,
    StatsResponse,
)
from ._http_cache import CachedEndpoint, cache_response, invalidate_response
from ._http_rules import response_key

__all__ = [
    "CachedEndpoint",
    "cache_lifespan",
    "cache_response",
    "create_cache_router",
    "invalidate_response",
    "response_key",
]

logger = logging.getLogger("chenu_cache")

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_BODY_BYTES = 1024 * 1024
_MAX_SCAN_CALLS = 10
_MIN_TOKEN_LENGTH = 16
_TOO_LARGE = 413  # Starlette renamed its constants for these; the numbers are stable
_UNPROCESSABLE = 422
DEFAULT_HEARTBEAT = 15.0
_NAMESPACE = re.compile(r"[a-z0-9_.-]{1,64}")
_EVENT_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_MAX_ID_PART = 2**64 - 1  # a stream id is two unsigned 64-bit numbers
_KEEP_ALIVE = b": keep-alive\n\n"
_CLOSE_TIMEOUT = 5.0  # seconds the clean-up of a finished stream may take at most


# -- helpers ---------------------------------------------------------------------------


def _http_error(exc: CacheError) -> HTTPException:
    code = status.HTTP_400_BAD_REQUEST
    if isinstance(exc, ValueTooLargeError):
        code = _TOO_LARGE
    elif isinstance(exc, InvalidTTLError):
        # The body's schema refuses some bad TTLs (422) and the cache the others
        # (over max_ttl, infinite): one status, whichever caught it.
        code = _UNPROCESSABLE
    elif isinstance(exc, CommandRefusedError):
        # Redis is up and refused this command (an ACL, a foreign key's type): the
        # upstream said no, which is neither the caller's mistake nor an outage.
        code = status.HTTP_502_BAD_GATEWAY
    elif not isinstance(exc, (ValidationError, CacheTypeError, SerializationError)):
        code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HTTPException(code, detail={"error": type(exc).__name__, "message": str(exc)})


async def _guard(call: Awaitable[T]) -> T:
    """Await a cache call; its typed errors become 4xx answers, never a 500."""
    try:
        return await call
    except CacheError as exc:
        raise _http_error(exc) from None


def _ttl_field(ttl: float | None) -> float | None:
    if ttl is None or math.isinf(ttl):
        return None
    return round(ttl, 3)


def _token_check(token: str) -> Callable[..., Awaitable[None]]:
    expected = token.encode("utf-8")
    bearer = HTTPBearer(auto_error=False, description="the admin token given to the router")

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"error": "Unauthorized", "message": "a bearer token is required"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.credentials.encode("utf-8"), expected):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail={"error": "Forbidden", "message": "the bearer token is not valid"},
            )

    return require_token


async def _whole_path(request: Request) -> None:
    """Refuse a path ending in a newline: Starlette's ``{x:path}`` ('.*$') matches just
    before it and hands the route the key or tag *without* it, another one."""
    if str(request.scope.get("path", "")).endswith("\n"):
        raise _http_error(InvalidKeyError("a key or tag cannot end with a newline"))


async def _limit_body(request: Request) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(
            _TOO_LARGE,
            detail={"error": "BodyTooLarge", "message": f"body over {MAX_BODY_BYTES} bytes"},
        )


def _has_non_finite(document: Any) -> bool:
    stack = [document]
    while stack:  # not recursive: a deeply nested body must not exhaust the stack
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def _finite_body(request: Request) -> None:
    # Python's JSON parser reads NaN and Infinity, which JSON has not. FastAPI's own
    # 422 for them would echo the number back and fail to encode it (a 500), so they
    # are refused here, before the body is validated.
    try:
        document = await request.json()
    except ValueError:
        return  # not JSON at all: FastAPI's validation answers that
    if _has_non_finite(document):
        raise HTTPException(
            _UNPROCESSABLE,
            detail={
                "error": "InvalidJSON",
                "message": "the body holds NaN or Infinity, which JSON does not allow",
            },
        )


# -- invalidation events as Server-Sent Events ---------------------------------------------


def _public_namespaces(namespaces: Iterable[str]) -> frozenset[str]:
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


def _checked_event_id(text: str) -> str:
    """``text`` if it is a stream id (``<ms>`` or ``<ms>-<seq>``), else a 400."""
    found = _EVENT_ID.fullmatch(text)
    if found is None or any(int(p) > _MAX_ID_PART for p in found.groups("0")):
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
    ``key``/``keys`` event names only the keys of public namespaces."""
    if not event.touches(public):
        return None
    data = event.to_dict()
    if event.kind in ("key", "keys"):
        data["keys"] = [key for key in event.keys if _namespace_of(key) in public]
    data.pop("tags", None)  # a tag is no namespace: none is public
    lines = [f"id: {event.id}"] if event.id else []
    lines.append("event: reset" if event.kind == "reset" else "event: invalidate")
    # ensure_ascii: no byte of the data can end an SSE line (only \n and \r do).
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=True))
    return ("\n".join(lines) + "\n\n").encode("ascii")


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
    """The body of ``GET /cache/events``: frames read straight from ``events``.

    One read is in flight at a time, kept across heartbeats (cancelling a read to send
    one would end the iterator), so a connection holds one event at most: nothing queues.
    When the client goes away, the server cancels this generator (or a heartbeat finds
    it gone); either way the read is cancelled and ``events`` closed before it ends.
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


def cache_lifespan(
    cache: FallbackCache,
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A FastAPI ``lifespan`` that initializes ``cache`` on start-up and closes it on exit.

    Pass the application's own lifespan as ``lifespan`` to run it inside: the cache is
    ready before it starts and closed after it ends. Whatever it yields is passed on.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        await cache.initialize()
        try:
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            await cache.close()

    return run


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "invalid key, pattern or namespace"},
    422: {"model": ErrorResponse, "description": "malformed request, or an invalid TTL"},
    502: {
        "model": ErrorResponse,
        "description": "Redis refused the command (an ACL forbids it, a key of another type)",
    },
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "no bearer token"},
    403: {"model": ErrorResponse, "description": "wrong bearer token or refused by dependency"},
}


def create_cache_router(
    cache: FallbackCache,
    *,
    token: str | None = None,
    dependency: Callable[..., Any] | None = None,
    insecure_allow_anonymous_admin: bool = False,
    prefix: str = "/cache",
    tags: list[str] | None = None,
    manage_lifespan: bool = True,
    max_page_size: int = MAX_PAGE_SIZE,
    event_namespaces: Iterable[str] = (),
    events_dependency: Callable[..., Any] | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
) -> APIRouter:
    """An ``APIRouter`` with the cache's admin routes under ``prefix`` (default ``/cache``).

    - ``token``: admin callers must send ``Authorization: Bearer <token>`` (compared in
      constant time). ``dependency``: a FastAPI dependency of the application's own that
      admits admins (it raises ``HTTPException`` to refuse). One of them is required;
      with both, both apply. Without either, the factory raises, unless
      ``insecure_allow_anonymous_admin=True`` says that anyone may read, write and clear.
    - ``manage_lifespan``: ``app.include_router()`` hooks ``cache.initialize()`` and
      ``cache.close()`` into the app's lifespan (FastAPI 0.115+).
    - ``max_page_size``: the largest ``limit`` ``GET /cache/keys`` accepts.
    - ``event_namespaces``: the namespaces whose invalidations ``GET /cache/events``
      streams (the cache needs ``events=True``); without them the route does not
      exist. ``events_dependency``: its auth (the app's own, for browsers), instead of
      the admin auth. ``heartbeat``: seconds of silence before a keep-alive comment.
    """
    public = _public_namespaces(event_namespaces)
    if isinstance(heartbeat, bool) or not (
        isinstance(heartbeat, (int, float)) and 0 < heartbeat < math.inf
    ):
        raise ConfigurationError("heartbeat must be a number of seconds > 0")
    if token is None and dependency is None and not insecure_allow_anonymous_admin:
        raise ConfigurationError(
            "create_cache_router needs token= or dependency= for its admin routes; pass "
            "insecure_allow_anonymous_admin=True only if anyone may clear the cache"
        )
    if token is not None and (not isinstance(token, str) or not token):
        raise ConfigurationError("token must be a non-empty string")
    if token is not None and len(token) < _MIN_TOKEN_LENGTH:
        logger.warning(
            "chenu_cache: the admin token is shorter than %d characters", _MIN_TOKEN_LENGTH
        )
    if token is None and dependency is None:
        logger.warning("chenu_cache: cache admin routes are open to anonymous callers")
    admin: list[Any] = []
    if token is not None:
        admin.append(Depends(_token_check(token)))
    if dependency is not None:
        admin.append(Depends(dependency))

    router = APIRouter(
        prefix=prefix,
        tags=list(tags) if tags is not None else ["cache"],
        lifespan=cache_lifespan(cache) if manage_lifespan else None,
    )
    admin_errors = {**_ERRORS, **_AUTH_ERRORS}

    @router.get(
        "/stats",
        response_model=StatsResponse,
        dependencies=admin,
        responses=_AUTH_ERRORS,
        summary="Cache statistics",
    )
    async def stats() -> dict[str, Any]:
        return (await _guard(cache.get_statistics())).to_dict()

    @router.get("/health", response_model=HealthResponse, summary="Health check (open)")
    async def health() -> dict[str, Any]:
        return (await _guard(cache.health())).to_dict()

    @router.get(
        "/keys",
        response_model=KeysPage,
        dependencies=admin,
        responses=admin_errors,
        summary="List keys matching a glob, one page at a time",
    )
    async def keys(
        pattern: Annotated[
            str, Query(min_length=1, max_length=1024, description="Redis glob pattern")
        ] = "*",
        cursor: Annotated[int, Query(ge=0, description="0 to start; then the reply's cursor")] = 0,
        limit: Annotated[
            int, Query(ge=1, le=max_page_size, description="about how many keys per page")
        ] = DEFAULT_PAGE_SIZE,
    ) -> KeysPage:
        # Several short SCAN calls rather than one long one: Redis never blocks, and a
        # sparse pattern does not make the client page through empty replies.
        found: list[str] = []
        for _ in range(_MAX_SCAN_CALLS):
            cursor, page = await _guard(cache.scan(pattern, cursor, limit))
            found.extend(page)
            if cursor == 0 or len(found) >= limit:
                break
        return KeysPage(keys=found, cursor=cursor, pattern=pattern, limit=limit)

    @router.get(
        "/key/{key:path}",
        response_model=KeyValue,
        dependencies=[*admin, Depends(_whole_path)],
        responses={**admin_errors, 404: {"model": ErrorResponse, "description": "no such key"}},
        summary="A key's value and remaining TTL",
    )
    async def get_key(
        key: Annotated[str, Path(min_length=1, max_length=1024)],
        namespace: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> KeyValue:
        value = await _guard(cache.get(key, namespace=namespace, default=MISSING))
        if value is MISSING:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail={"error": "KeyNotFound", "message": "no entry under this key"},
            )
        ttl = await _guard(cache.ttl(key, namespace=namespace))
        try:
            json.dumps(value, allow_nan=False)
            serializable = True
        except (TypeError, ValueError):
            serializable = False
        logical = f"{namespace}:{key}" if namespace else key
        return KeyValue(
            key=logical,
            value=value if serializable else None,
            type=type(value).__name__,
            serializable=serializable,
            ttl=_ttl_field(ttl),
        )

    @router.post(
        "/key",
        response_model=SetKeyResponse,
        dependencies=[*admin, Depends(_limit_body), Depends(_finite_body)],
        responses={**admin_errors, 413: {"model": ErrorResponse, "description": "too large"}},
        summary="Set a value",
    )
    async def set_key(body: SetKeyRequest) -> SetKeyResponse:
        if body.noExpiry and body.ttl is not None:
            raise _http_error(InvalidTTLError("pass ttl or noExpiry, not both"))
        ttl: Any = NO_EXPIRY if body.noExpiry else body.ttl
        await _guard(cache.set(body.key, body.value, ttl=ttl, namespace=body.namespace))
        logical = f"{body.namespace}:{body.key}" if body.namespace else body.key
        remaining = await _guard(cache.ttl(logical))
        return SetKeyResponse(key=logical, ttl=_ttl_field(remaining))

    @router.delete(
        "/key/{key:path}",
        response_model=DeletedKey,
        dependencies=[*admin, Depends(_whole_path)],
        responses=admin_errors,
        summary="Delete a key",
    )
    async def delete_key(
        key: Annotated[str, Path(min_length=1, max_length=1024)],
        namespace: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> DeletedKey:
        removed = await _guard(cache.invalidate(key, namespace=namespace))
        logical = f"{namespace}:{key}" if namespace else key
        return DeletedKey(key=logical, deleted=int(removed))

    @router.delete(
        "/namespace/{namespace}",
        response_model=DeletedNamespace,
        dependencies=admin,
        responses=admin_errors,
        summary="Delete every entry of a namespace",
    )
    async def delete_namespace(
        namespace: Annotated[str, Path(min_length=1, max_length=64)],
    ) -> DeletedNamespace:
        removed = await _guard(cache.invalidate_namespace(namespace))
        return DeletedNamespace(namespace=namespace, deleted=removed)

    @router.delete(
        "/tag/{tag:path}",
        response_model=InvalidatedTag,
        dependencies=[*admin, Depends(_whole_path)],
        responses=admin_errors,
        summary="Invalidate every entry carrying a tag",
    )
    async def delete_tag(tag: Annotated[str, Path(min_length=1, max_length=256)]) -> InvalidatedTag:
        await _guard(cache.invalidate_tags(tag))
        return InvalidatedTag(tag=tag, invalidated=True)

    @router.post(
        "/clear",
        response_model=Deleted,
        dependencies=admin,
        responses=_AUTH_ERRORS,
        summary="Delete every entry under the cache's prefix",
    )
    async def clear() -> Deleted:
        return Deleted(deleted=await _guard(cache.clear()))

    @router.get(
        "/namespaces", response_model=NamespacesResponse, summary="Namespaces and TTLs (open)"
    )
    async def namespaces() -> NamespacesResponse:
        registry = cache.namespaces
        return NamespacesResponse(
            namespaces=[
                NamespaceInfo(name=name, ttl=ttl)
                for name, ttl in sorted(registry.as_dict().items())
            ],
            defaultTtl=registry.default_ttl,
        )

    if public:
        events_auth = [Depends(events_dependency)] if events_dependency is not None else admin
        _add_events_route(router, cache, public, float(heartbeat), events_auth)

    return router


_EVENTS_DESCRIPTION = """Invalidation events as Server-Sent Events (SPEC §16), for the
namespaces the application declared public. Each invalidation is a frame
`id: <event id>`, `event: invalidate`, `data: <JSON>`; `event: reset` means that
anything may be stale (the stream no longer holds every event after the id asked
for). A `: keep-alive` comment is sent when the stream has been idle for the
heartbeat. Reconnecting with `Last-Event-ID` (or `?since=`) resumes after that id:
at least once within the stream's retention, a reset otherwise."""

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


def _add_events_route(
    router: APIRouter,
    cache: FallbackCache,
    public: frozenset[str],
    heartbeat: float,
    auth: list[Any],
) -> None:
    @router.get(
        "/events",
        dependencies=auth,
        response_class=StreamingResponse,
        responses={**_EVENTS_RESPONSES, **_AUTH_ERRORS},
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
        try:
            stream = cache.events(after)
        except ConfigurationError as exc:  # events=False: the server's mistake, not the caller's
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail={"error": type(exc).__name__, "message": str(exc)},
            ) from None
        except CacheError as exc:
            raise _http_error(exc) from None
        return StreamingResponse(
            _event_stream(stream, request, public, heartbeat),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
