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

import hmac
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, TypeVar

try:
    from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ImportError as exc:  # pragma: no cover - exercised by the import_minimal nox session
    raise ImportError(
        'chenu_cache.contrib.fastapi needs FastAPI: pip install "chenu-cache[fastapi]"'
    ) from exc

from chenu_cache import (
    MISSING,
    NO_EXPIRY,
    CacheError,
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

from ._events_sse import DEFAULT_HEARTBEAT, add_events_route, public_namespaces
from ._fastapi_models import (
    Deleted,
    DeletedKey,
    DeletedNamespace,
    ErrorResponse,
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
from ._metrics_route import add_metrics_route

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
    metrics: bool = False,
    metrics_dependency: Callable[..., Any] | None = None,
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
    - ``metrics``: serve ``GET /cache/metrics`` for Prometheus (the ``prometheus``
      extra), on the admin auth or ``metrics_dependency`` (a scraper's own, instead).
    """
    public = public_namespaces(event_namespaces)
    if metrics_dependency is not None and not metrics:
        raise ConfigurationError("metrics_dependency= is the auth of metrics=True's route")
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
        add_events_route(router, cache, public, float(heartbeat), events_auth, _AUTH_ERRORS)

    if metrics:
        metrics_auth = [Depends(metrics_dependency)] if metrics_dependency is not None else admin
        add_metrics_route(router, cache, metrics_auth, _AUTH_ERRORS)

    return router
