"""HTTP response caching for FastAPI routes (SPEC §15): ``cache_response``.

Placed under the route decorator, it stores a GET route's response (status, headers,
body and a weak ETag) as one JSON value through ``FallbackCache.get_or_set``, so
single flight, failover, fences, tags, ``refresh_after`` and ``stale_if_error`` apply
as to any other entry. HEAD is answered from the GET entry; ``If-None-Match`` gets a
304. What may be stored, and for whom, is decided once per request from the request
line and headers; what is not stored is returned as the endpoint made it. See
``docs/http-caching.md`` for the rules and their reasons.

This module uses only chenu-cache's public API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import inspect
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar, cast
from urllib.parse import parse_qsl

try:
    from fastapi import HTTPException
    from fastapi.datastructures import DefaultPlaceholder
    from fastapi.dependencies.utils import get_typed_signature
    from fastapi.encoders import jsonable_encoder
    from fastapi.routing import APIRoute, serialize_response
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
except ImportError as exc:  # pragma: no cover - exercised by the import_minimal nox session
    raise ImportError(
        'chenu_cache.contrib.fastapi needs FastAPI: pip install "chenu-cache[fastapi]"'
    ) from exc

from typing_extensions import ParamSpec

from chenu_cache import (
    NO_EXPIRY,
    TTL,
    CacheError,
    CacheTypeError,
    ConfigurationError,
    FallbackCache,
    InvalidKeyError,
    InvalidNamespaceError,
    InvalidTTLError,
    cache_service,
)

from ._http_rules import (
    MAX_PART,
    cache_control_says,
    check_templates,
    digest,
    none_match,
    path_part,
    query_part,
    response_key,
    seconds,
    weak_etag,
)

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_NAMESPACE",
    "CachedEndpoint",
    "cache_response",
    "invalidate_response",
    "response_key",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_NAMESPACE = "http"
"""Where responses are stored unless ``namespace=`` says otherwise."""
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
"""Bodies larger than this many bytes are returned, not stored."""

_REQUEST_PARAM = "_chenu_cache_request"  # the parameter FastAPI fills with the Request
_ENTRY_VERSION = 1
_CREDENTIALS = (b"authorization", b"cookie")
_SERVER_ERRORS = frozenset({500, 502, 503, 504})  # what stale-if-error covers (RFC 5861)
# Not stored: recomputed per response, hop-by-hop, or this cache's own.
_UNSTORED = frozenset(
    {
        b"content-length",
        b"date",
        b"age",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"cache-status",
        b"etag",
    }
)
# What a 304 carries besides ETag, Cache-Control and Vary (RFC 9110 §15.4.5).
_NOT_MODIFIED_KEEP = frozenset({b"content-location", b"expires", b"cache-control", b"vary"})
_NAMESPACE = re.compile(r"[a-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MAX_MEMO = 4096


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """One route's options, validated once at decoration."""

    ttl: Any
    namespace: str
    tags: tuple[str, ...]
    vary: tuple[str, ...]
    vary_raw: tuple[bytes, ...]
    public: bool
    statuses: frozenset[int]
    refresh_after: float | None
    stale_if_error: float | None
    max_age: float | None
    key_builder: Callable[[Request], str] | None
    honor_request_cache_control: bool
    max_body_size: int
    credentials_in_key: frozenset[bytes]


# -- what is stored --------------------------------------------------------------------


class _State:
    """What one request's load did (a background refresh reuses the same load)."""

    __slots__ = ("error", "error_status", "ran", "response", "time")

    def __init__(self) -> None:
        self.ran = False
        self.time: float | None = None
        self.response: Response | None = None
        self.error: BaseException | None = None
        self.error_status: int | None = None


class _Passthrough:
    """A load's outcome that is not stored: a response or an error for its own request."""

    __slots__ = ("error", "reason", "response", "state")

    def __init__(
        self,
        state: _State,
        response: Response | None = None,
        reason: str = "",
        error: BaseException | None = None,
    ) -> None:
        self.state = state
        self.response = response
        self.reason = reason
        self.error = error


class _ServerError(Exception):
    """A 5xx the endpoint returned: raised in the load so that ``stale_if_error`` applies."""

    def __init__(self, state: _State, response: Response) -> None:
        super().__init__(f"the endpoint answered {response.status_code}")
        self.state = state
        self.response = response


def _storable(value: object) -> bool:
    return type(value) is dict


# -- the decorator ---------------------------------------------------------------------


class CachedEndpoint(Generic[P, R]):
    """A FastAPI endpoint whose GET responses are cached; FastAPI calls it as the original.

    ``await endpoint.invalidate_response("/users/42", query=...)`` drops the entries
    of that path (every query, or only ``query``) in this route's cache and namespace.
    Called outside a request (no ``Request``), it runs the endpoint uncached.
    """

    def __init__(
        self,
        endpoint: Callable[P, Awaitable[R]],
        options: _Options,
        cache: FallbackCache | None,
        clock: Callable[[], float],
    ) -> None:
        if inspect.isasyncgenfunction(endpoint) or not inspect.iscoroutinefunction(endpoint):
            raise CacheTypeError(
                "cache_response decorates async def endpoints; "
                f"{getattr(endpoint, '__qualname__', endpoint)!r} is not one"
            )
        signature = inspect.signature(endpoint)
        if _REQUEST_PARAM in signature.parameters:
            raise ConfigurationError(f"cache_response: {_REQUEST_PARAM!r} is a reserved name")
        # FastAPI fills one Request parameter per endpoint: the endpoint's own if it has
        # one (annotations resolved as FastAPI does), else one added for this wrapper.
        own_request = None
        for param in get_typed_signature(endpoint).parameters.values():
            annotation = param.annotation
            if isinstance(annotation, type) and issubclass(annotation, Request):
                own_request = param.name
        self._request_name = own_request or _REQUEST_PARAM
        tags = check_templates(options.tags, signature.parameters)
        self._options = options
        self._tags = tags
        self._static_tags = all("{" not in t for t in tags)
        self._endpoint = endpoint
        self._given_cache = cache
        self._clock = clock
        functools.update_wrapper(self, endpoint)
        # FastAPI reads the signature: the endpoint's own, plus the Request it injects
        # for us (keyword-only, before any **kwargs). Nothing shows in the OpenAPI schema.
        params = list(signature.parameters.values())
        if own_request is None:
            extra = inspect.Parameter(
                _REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request
            )
            tail = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
            head = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
            params = [*head, extra, *tail]
        self.__signature__ = signature.replace(parameters=params)
        mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
        if mark is not None:
            mark(self)
        else:  # pragma: no cover - Python 3.10 and 3.11
            self._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
        self._keys: dict[tuple[str, bytes], str] = {}
        self._control: tuple[FallbackCache, str, float | None] | None = None
        vary = ", ".join(options.vary)
        self._vary_header = vary.encode("latin-1") if vary else None

    @property
    def cache(self) -> FallbackCache:
        """The cache this route stores its responses in."""
        return self._given_cache if self._given_cache is not None else cache_service

    async def invalidate_response(
        self,
        path: str,
        *,
        query: str | Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    ) -> int:
        """Drop this route's entries for ``path`` (every query string, or only ``query``)."""
        return await invalidate_response(
            self.cache, path, query=query, namespace=self._options.namespace
        )

    # -- per-request steps --------------------------------------------------------------

    def _freshness(self, cache: FallbackCache) -> tuple[str, float | None]:
        """The Cache-Control value for this cache, and the entries' freshness lifetime
        on the server (``refresh_after``, else the TTL; ``None``: no expiry)."""
        known = self._control
        if known is not None and known[0] is cache:
            return known[1], known[2]
        options = self._options
        ttl = cache.namespaces.resolve(options.ttl, options.namespace)
        server = options.refresh_after if options.refresh_after is not None else ttl
        fresh = options.max_age if options.max_age is not None else server
        parts = []
        if options.public:
            parts.append("public")
        elif options.credentials_in_key:
            parts.append("private")
        if fresh is None:
            parts.append("no-cache")
        else:
            parts.append(f"max-age={int(fresh)}")
            if options.refresh_after is not None and ttl is not None and ttl > fresh:
                parts.append(f"stale-while-revalidate={int(ttl - fresh)}")
        if options.stale_if_error is not None:
            parts.append(f"stale-if-error={int(options.stale_if_error)}")
        value = ", ".join(parts)
        self._control = (cache, value, server)
        return value, server

    def _key(self, request: Request, vary: list[bytes] | None) -> str:
        scope = request.scope
        path: str = scope.get("path", "/")
        raw_query: bytes = scope.get("query_string", b"")
        builder = self._options.key_builder
        if builder is not None:
            built = builder(request)
            if not isinstance(built, str):
                raise CacheTypeError(f"key_builder must return str, not {type(built).__name__}")
            if not built or len(built) > MAX_PART or not built.isprintable() or " " in built:
                built = "sha256:" + digest(built)
            key = built
        else:
            memo = self._keys
            key_or_none = memo.get((path, raw_query))
            if key_or_none is None:
                query = raw_query.decode("latin-1")
                pairs = parse_qsl(query, keep_blank_values=True) if query else []
                key_or_none = f"{path_part(path)}?{query_part(pairs)}"
                if len(memo) >= _MAX_MEMO:
                    memo.clear()
                memo[(path, raw_query)] = key_or_none
            key = key_or_none
        if vary is not None:
            # Header values (credentials among them) never appear in a key: a digest does.
            blob = b"\x00".join(vary)
            key += "|" + hashlib.sha256(blob).hexdigest()[:32]
        return key

    def _tags_for(self, kwargs: Mapping[str, Any]) -> tuple[str, ...]:
        if self._static_tags:
            return self._tags
        return tuple(t.format_map(kwargs) for t in self._tags)

    async def _finish(self, raw: Any, request: Request, kwargs: Mapping[str, Any]) -> Response:
        """The response FastAPI would have made of the endpoint's return value."""
        if isinstance(raw, Response):
            return raw
        subs = [v for v in kwargs.values() if isinstance(v, Response)]
        status: int | None = None
        for sub in subs:
            if sub.status_code:
                status = sub.status_code
        route = request.scope.get("route")
        if isinstance(route, APIRoute) and route.endpoint is self:
            field = getattr(route, "secure_cloned_response_field", None) or route.response_field
            content = await serialize_response(
                field=field,
                response_content=raw,
                include=route.response_model_include,
                exclude=route.response_model_exclude,
                by_alias=route.response_model_by_alias,
                exclude_unset=route.response_model_exclude_unset,
                exclude_defaults=route.response_model_exclude_defaults,
                exclude_none=route.response_model_exclude_none,
                is_coroutine=True,
            )
            kind: Any = route.response_class
            if isinstance(kind, DefaultPlaceholder):
                kind = kind.value
            status = status or route.status_code
            response: Response = kind(content, status_code=status) if status else kind(content)
        else:
            encoded = jsonable_encoder(raw)
            response = JSONResponse(encoded, status_code=status or 200)
        if response.status_code < 200 or response.status_code in (204, 304):
            response.body = b""
        for sub in subs:
            response.raw_headers.extend(
                (k, v) for k, v in sub.raw_headers if k != b"content-length"
            )
        return response

    def _entry(self, response: Response) -> tuple[dict[str, Any] | None, str]:
        """The JSON value to store for ``response``, or ``None`` and why not."""
        body = getattr(response, "body", None)
        if not isinstance(body, (bytes, bytearray, memoryview)):
            return None, "streaming"
        if response.status_code not in self._options.statuses:
            return None, "status"
        body = bytes(body)
        if len(body) > self._options.max_body_size:
            return None, "too-large"
        headers: list[list[str]] = []
        etag: str | None = None
        for name, value in response.raw_headers:
            lower = name.lower()
            if lower == b"set-cookie":
                return None, "set-cookie"
            if lower == b"cache-control" and cache_control_says(
                value.decode("latin-1"), "no-store", "private", "no-cache"
            ):
                return None, "no-store"
            if lower == b"etag":
                etag = value.decode("latin-1")
            if lower not in _UNSTORED:
                headers.append([lower.decode("latin-1"), value.decode("latin-1")])
        entry: dict[str, Any] = {
            "v": _ENTRY_VERSION,
            "status": response.status_code,
            "headers": headers,
            "etag": etag or weak_etag(body),
            "time": self._clock(),
        }
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body"] = base64.b64encode(body).decode("ascii")
            entry["b64"] = True
        return entry, ""

    async def _forward(
        self, args: Any, kwargs: dict[str, Any], request: Request, why: str
    ) -> Response:
        """Run the endpoint for this request alone; nothing read or stored."""
        raw = await self._endpoint(*args, **kwargs)
        response = await self._finish(raw, request, kwargs)
        status = f"chenu; fwd={why}; fwd-status={response.status_code}"
        response.raw_headers.append((b"cache-status", status.encode("latin-1")))
        return response

    def _render(
        self,
        entry: dict[str, Any],
        request: Request,
        status_line: str,
        if_none_match: str | None,
        control: str,
        age: float,
    ) -> Response:
        status = int(entry["status"])
        etag = str(entry["etag"])
        stored = [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in entry["headers"]]
        own_control = any(k == b"cache-control" for k, _ in stored)
        extra = [(b"etag", etag.encode("latin-1"))]
        if not own_control:
            extra.append((b"cache-control", control.encode("latin-1")))
        if self._vary_header is not None:
            extra.append((b"vary", self._vary_header))
        if age >= 1:
            extra.append((b"age", str(int(age)).encode("latin-1")))
        extra.append((b"cache-status", status_line.encode("latin-1")))
        if if_none_match is not None and 200 <= status < 300 and none_match(if_none_match, etag):
            response = Response(status_code=304)
            response.raw_headers = [
                *[(k, v) for k, v in stored if k in _NOT_MODIFIED_KEEP],
                *extra,
            ]
            return response
        text = entry["body"]
        if not isinstance(text, str):
            raise TypeError("body")
        body = base64.b64decode(text, validate=True) if entry.get("b64") else text.encode()
        head = request.scope.get("method") == "HEAD"
        response = Response(content=b"" if head else body, status_code=status)
        length = (b"content-length", str(len(body)).encode("latin-1"))
        response.raw_headers = [*stored, length, *extra]
        return response

    # -- the call -----------------------------------------------------------------------

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R | Response:
        if self._request_name == _REQUEST_PARAM:
            request = kwargs.pop(_REQUEST_PARAM, None)
        else:
            request = kwargs.get(self._request_name)
        if not isinstance(request, Request):  # called directly, outside FastAPI
            return await self._endpoint(*args, **kwargs)
        call_kwargs = cast("dict[str, Any]", kwargs)
        if request.scope.get("method") not in ("GET", "HEAD"):
            return await self._forward(args, call_kwargs, request, "method")
        options = self._options
        # One pass over the raw headers: everything this request's handling depends on.
        if_none_match: str | None = None
        request_control: str | None = None
        pragma_no_cache = False
        credentials: set[bytes] = set()
        vary_values: dict[bytes, list[bytes]] | None = {n: [] for n in options.vary_raw} or None
        for name, value in request.scope.get("headers", ()):
            if name in _CREDENTIALS:
                credentials.add(name)
            elif name == b"if-none-match":
                text = value.decode("latin-1")
                if_none_match = text if if_none_match is None else f"{if_none_match}, {text}"
            elif name == b"cache-control":
                request_control = value.decode("latin-1")
            elif name == b"pragma":
                pragma_no_cache = b"no-cache" in value.lower()
            if vary_values is not None and name in vary_values:
                vary_values[name].append(value.strip())
        if credentials and not options.public and not credentials <= options.credentials_in_key:
            return await self._forward(args, call_kwargs, request, "bypass")
        refill = False
        if options.honor_request_cache_control:
            control = request_control or ""
            if cache_control_says(control, "no-store"):
                return await self._forward(args, call_kwargs, request, "request")
            refill = (
                cache_control_says(control, "no-cache")
                or re.search(r"(?:^|,)\s*max-age\s*=\s*0+\s*(?:,|$)", control) is not None
                or (request_control is None and pragma_no_cache)
            )
        cache = self.cache
        vary = None
        if vary_values is not None:
            vary = [b",".join(vary_values[n]) for n in options.vary_raw]
        key = self._key(request, vary)
        return await self._cached(args, call_kwargs, request, cache, key, refill, if_none_match)

    async def _cached(
        self,
        args: Any,
        kwargs: dict[str, Any],
        request: Request,
        cache: FallbackCache,
        key: str,
        refill: bool,
        if_none_match: str | None,
        retry: bool = True,
    ) -> Response:
        options = self._options
        started = self._clock()
        state = _State()

        async def load() -> object:
            state.ran = True
            try:
                raw = await self._endpoint(*args, **kwargs)
                response = await self._finish(raw, request, kwargs)
            except HTTPException as exc:
                if exc.status_code in _SERVER_ERRORS:
                    state.error, state.error_status = exc, exc.status_code
                    raise
                return _Passthrough(state, error=exc)  # a 404 is an answer, not a failure
            except Exception as exc:
                state.error, state.error_status = exc, 500
                raise
            entry, reason = self._entry(response)
            if entry is None:
                if response.status_code in _SERVER_ERRORS:
                    state.error_status = response.status_code
                    raise _ServerError(state, response)
                return _Passthrough(state, response, reason)
            state.time, state.response = entry["time"], response
            return entry

        try:
            tags = self._tags_for(kwargs)
            if refill:
                await cache.invalidate(key, options.namespace)
            value = await cache.get_or_set(
                key,
                load,
                options.ttl,
                options.namespace,
                refresh_after=options.refresh_after,
                stale_if_error=options.stale_if_error,
                cache_if=_storable,
                tags=tags,
            )
        except _ServerError as exc:
            if exc.state is not state:  # another request's failure: try for ourselves
                return await self._forward(args, kwargs, request, "miss")
            status = f"chenu; fwd=miss; fwd-status={exc.response.status_code}"
            exc.response.raw_headers.append((b"cache-status", status.encode("latin-1")))
            return exc.response
        except (CacheError, KeyError, AttributeError, IndexError) as exc:
            # The cache could not take this entry (a rendered tag or key it refuses, a
            # value too large to encode): answer as if it were not there. The
            # endpoint's own errors pass through untouched.
            if exc is state.error:
                raise
            own = state.response
            if own is not None:
                status = f"chenu; fwd=miss; fwd-status={own.status_code}; detail=not-stored"
                own.raw_headers.append((b"cache-status", status.encode("latin-1")))
                return own
            return await self._forward(args, kwargs, request, "bypass")
        if isinstance(value, _Passthrough):
            passed = value
            if passed.state is not state:
                # Collapsed onto a load whose response is not shareable (a cookie, a
                # stream, an error): this request runs the endpoint itself.
                return await self._forward(args, kwargs, request, "miss")
            if passed.error is not None:
                raise passed.error
            assert passed.response is not None
            response = passed.response
            status = f"chenu; fwd=miss; fwd-status={response.status_code}"
            if passed.reason != "status":
                status += f"; detail={passed.reason}"
            response.raw_headers.append((b"cache-status", status.encode("latin-1")))
            return response
        control, fresh = self._freshness(cache)
        now = self._clock()
        try:
            if type(value) is not dict or value.get("v") != _ENTRY_VERSION:
                raise KeyError("v")
            entry = cast("dict[str, Any]", value)
            written = float(entry["time"])
            age = max(0.0, now - written)
            if state.time is not None and written == state.time:
                why = "request" if refill else "miss"
                status = f"chenu; fwd={why}; fwd-status={entry['status']}; stored"
            elif state.error_status is not None:  # our load failed: stale-if-error
                left = math.floor((fresh or 0.0) - age)
                status = f"chenu; fwd=stale; fwd-status={state.error_status}; ttl={left}"
            elif written >= started and not state.ran:
                status = f"chenu; fwd=miss; fwd-status={entry['status']}; collapsed"
            elif fresh is None:
                status = "chenu; hit"
            else:
                status = f"chenu; hit; ttl={math.floor(fresh - age)}"
            response = self._render(entry, request, status, if_none_match, control, age)
        except (KeyError, TypeError, ValueError, binascii.Error):
            # Not an entry of ours (another program's value, an older layout): drop it.
            await cache.invalidate(key, options.namespace)
            if retry:
                return await self._cached(
                    args, kwargs, request, cache, key, refill, if_none_match, False
                )
            return await self._forward(args, kwargs, request, "miss")
        own = state.response
        if own is not None and state.time == written:
            response.background = own.background
        return response


def cache_response(
    ttl: TTL = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    tags: Iterable[str] = (),
    vary: Iterable[str] = (),
    public: bool = False,
    statuses: Iterable[int] = (200,),
    refresh_after: float | timedelta | None = None,
    stale_if_error: float | timedelta | None = None,
    max_age: float | timedelta | None = None,
    key_builder: Callable[[Request], str] | None = None,
    honor_request_cache_control: bool = False,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    cache: FallbackCache | None = None,
    clock: Callable[[], float] = time.time,
) -> Callable[[Callable[P, Awaitable[R]]], CachedEndpoint[P, R]]:
    """Cache a FastAPI GET route's responses; place it under the route decorator::

        @app.get("/users/{user_id}")
        @cache_response(ttl=60, tags=["user:{user_id}"])
        async def read_user(user_id: int) -> User: ...

    - ``ttl``: seconds (or ``timedelta``, or ``NO_EXPIRY``) the entry lives; default:
      the namespace's TTL. ``namespace``: where entries live (default ``"http"``).
    - ``tags``: templates formatted with the endpoint's parameters (SPEC §14).
    - ``vary``: request headers whose values key the entry and are named in ``Vary``.
      Requests with ``Authorization`` or ``Cookie`` bypass the cache unless ``vary``
      names them (one entry per credential, ``Cache-Control: private``) or
      ``public=True`` (one entry for all, ``Cache-Control: public``).
    - ``statuses``: the statuses stored (default only 200).
    - ``refresh_after`` / ``stale_if_error``: the freshness engine's options (SPEC §6),
      also stated to clients as ``stale-while-revalidate`` / ``stale-if-error``.
    - ``max_age``: what ``Cache-Control: max-age`` tells clients (default:
      ``refresh_after``, else the TTL).
    - ``key_builder``: ``(request) -> str`` replaces the path-and-query part of the key.
    - ``honor_request_cache_control``: let a request's ``no-cache`` / ``max-age=0``
      refill the entry and ``no-store`` bypass it (default: ignored).
    - ``max_body_size``: larger bodies are returned, not stored.
    - ``cache``: the `FallbackCache` to use (default ``chenu_cache.cache_service``).
    - ``clock``: wall-clock seconds for ``Age``; give the cache's own clock in tests.
    """
    if namespace is None or not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidNamespaceError(f"namespace {namespace!r} must match [a-z0-9_.-]{{1,64}}")
    if ttl is not NO_EXPIRY:
        ttl_seconds = seconds("ttl", ttl)
        if ttl_seconds == 0:
            raise InvalidTTLError("ttl must be positive")
    else:
        ttl_seconds = None
    fresh_after = seconds("refresh_after", refresh_after)
    stale_error = seconds("stale_if_error", stale_if_error)
    if fresh_after == 0 or stale_error == 0:
        raise InvalidTTLError("refresh_after and stale_if_error must be positive")
    if fresh_after is not None and ttl_seconds is not None and fresh_after >= ttl_seconds:
        raise InvalidTTLError("refresh_after must be shorter than ttl")
    client_max_age = seconds("max_age", max_age)
    if isinstance(vary, str) or not isinstance(vary, Iterable):
        raise CacheTypeError("vary= takes a list of header names, not a string")
    names: list[str] = []
    for name in vary:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidKeyError(f"vary: {name!r} is not a header name")
        if name.lower() not in (n.lower() for n in names):
            names.append(name)
    raw_names = tuple(n.lower().encode("latin-1") for n in names)
    if isinstance(statuses, (str, int)) or not isinstance(statuses, Iterable):
        raise CacheTypeError("statuses= takes a list of status codes")
    codes = frozenset(statuses)
    if not codes or any(type(c) is not int or not 200 <= c <= 599 for c in codes):
        raise CacheTypeError("statuses must be HTTP status codes between 200 and 599")
    if type(max_body_size) is not int or max_body_size < 0:
        raise CacheTypeError("max_body_size must be a non-negative int")
    if key_builder is not None and not callable(key_builder):
        raise CacheTypeError("key_builder must be callable")
    if cache is not None and not isinstance(cache, FallbackCache):
        raise CacheTypeError("cache must be a FallbackCache")
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise CacheTypeError("tags= takes a list of templates, not a string")
    options = _Options(
        ttl=ttl,
        namespace=namespace,
        tags=tuple(tags),
        vary=tuple(names),
        vary_raw=raw_names,
        public=bool(public),
        statuses=codes,
        refresh_after=fresh_after,
        stale_if_error=stale_error,
        max_age=client_max_age,
        key_builder=key_builder,
        honor_request_cache_control=bool(honor_request_cache_control),
        max_body_size=max_body_size,
        credentials_in_key=frozenset(n for n in raw_names if n in _CREDENTIALS),
    )

    def decorate(endpoint: Callable[P, Awaitable[R]]) -> CachedEndpoint[P, R]:
        return CachedEndpoint(endpoint, options, cache, clock)

    return decorate


async def invalidate_response(
    cache: FallbackCache | None,
    path: str,
    *,
    query: str | Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> int:
    """Drop the cached responses of ``GET path`` (every query string and ``vary``
    variant), or with ``query``, of that query only; return how many entries went.

    ``cache=None`` means ``chenu_cache.cache_service``. Entries stored under a
    ``key_builder`` key are reached by namespace or tags, not by path.
    """
    target = cache if cache is not None else cache_service
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidNamespaceError(f"namespace {namespace!r} must match [a-z0-9_.-]{{1,64}}")
    if not isinstance(path, str) or not path:
        raise CacheTypeError("path must be a non-empty str such as '/users/42'")
    # Keys hold no glob characters ('*', '?', '[' and '\' are percent-encoded; the one
    # '?' is ours), so they go into patterns as they are, with '?' escaped.
    if query is None:
        prefix = f"{namespace}:{path_part(path)}"
        return await target.invalidate_pattern(prefix + "\\?*")
    key = response_key(path, query)
    removed = int(await target.invalidate(key, namespace))
    pattern = f"{namespace}:{key}".replace("?", "\\?", 1) + "|*"
    return removed + await target.invalidate_pattern(pattern)
