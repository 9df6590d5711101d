"""cache_response (SPEC §15) through httpx.ASGITransport: every rule, one test or more each."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from chenu_cache import FallbackCache
from chenu_cache.contrib.fastapi import (
    CachedEndpoint,
    cache_response,
    invalidate_response,
    response_key,
)
from tests.conftest import FakeClock
from tests.redis_server import RedisServer

ETAG = re.compile(r'^W/"[0-9a-f]{32}"$')


class User(BaseModel):
    id: int
    name: str


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.names: dict[int, str] = {}


def build_app(cache: FallbackCache, counter: Counter, **options: Any) -> FastAPI:
    """An app whose routes count their runs; options go to ``/users/{user_id}``."""
    app = FastAPI()

    @app.head("/users/{user_id}", include_in_schema=False)
    @app.get("/users/{user_id}", response_model=User)
    @cache_response(ttl=60, cache=cache, tags=["user:{user_id}"], **options)
    async def read_user(user_id: int, detail: bool = False) -> User:
        """Read one user."""
        counter.calls += 1
        return User(id=user_id, name=counter.names.get(user_id, f"user {user_id}"))

    @app.get("/items")
    @cache_response(ttl=60, cache=cache)
    async def items(tag: Annotated[list[str], Query()] = []) -> dict[str, Any]:  # noqa: B006
        counter.calls += 1
        return {"tags": tag}

    @app.get("/missing/{n}")
    @cache_response(ttl=60, cache=cache)
    async def missing(n: int) -> dict[str, int]:
        counter.calls += 1
        raise HTTPException(404, detail="no such thing")

    @app.get("/created")
    @cache_response(ttl=60, cache=cache)
    async def created() -> Response:
        counter.calls += 1
        return JSONResponse({"ok": True}, status_code=201)

    @app.get("/cookie")
    @cache_response(ttl=60, cache=cache)
    async def cookie(response: Response) -> dict[str, bool]:
        counter.calls += 1
        response.set_cookie("session", "abc")
        response.headers["x-extra"] = "1"
        return {"ok": True}

    @app.get("/stream")
    @cache_response(ttl=60, cache=cache)
    async def stream() -> StreamingResponse:
        counter.calls += 1

        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/big")
    @cache_response(ttl=60, cache=cache, max_body_size=100)
    async def big() -> PlainTextResponse:
        counter.calls += 1
        return PlainTextResponse("x" * 1000)

    @app.get("/binary")
    @cache_response(ttl=60, cache=cache)
    async def binary() -> Response:
        counter.calls += 1
        return Response(bytes(range(256)), media_type="application/octet-stream")

    @app.get("/own-etag")
    @cache_response(ttl=60, cache=cache)
    async def own_etag() -> Response:
        counter.calls += 1
        return PlainTextResponse("v1", headers={"ETag": '"version-1"'})

    @app.get("/lang")
    @cache_response(ttl=60, cache=cache, vary=["Accept-Language"])
    async def lang(request: Request) -> dict[str, str]:
        counter.calls += 1
        return {"lang": request.headers.get("accept-language", "")}

    @app.get("/me")
    @cache_response(ttl=60, cache=cache, vary=["Authorization"])
    async def me(request: Request) -> dict[str, str]:
        counter.calls += 1
        return {"auth": request.headers.get("authorization", "")}

    @app.get("/public")
    @cache_response(ttl=60, cache=cache, public=True)
    async def public() -> dict[str, int]:
        counter.calls += 1
        return {"n": counter.calls}

    @app.get("/honour")
    @cache_response(ttl=60, cache=cache, honor_request_cache_control=True)
    async def honour() -> dict[str, int]:
        counter.calls += 1
        return {"n": counter.calls}

    return app


@pytest.fixture
async def cache() -> AsyncIterator[FallbackCache]:
    cache = FallbackCache(read_env=False)
    await cache.initialize()
    try:
        yield cache
    finally:
        await cache.close()


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
async def client(cache: FallbackCache, counter: Counter) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(cache, counter)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def params(cache_status: str) -> list[str]:
    assert cache_status.startswith("chenu; "), cache_status
    return cache_status.split("; ")[1:]


# -- basics ------------------------------------------------------------------------------


async def test_miss_then_hit(client: httpx.AsyncClient, counter: Counter) -> None:
    first = await client.get("/users/1")
    assert first.status_code == 200
    assert first.json() == {"id": 1, "name": "user 1"}
    assert first.headers["cache-status"] == "chenu; fwd=miss; fwd-status=200; stored"
    assert ETAG.match(first.headers["etag"])
    assert first.headers["cache-control"] == "max-age=60"
    second = await client.get("/users/1")
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert params(second.headers["cache-status"])[0] == "hit"
    assert second.headers["content-type"] == "application/json"
    assert int(second.headers["content-length"]) == len(second.content)
    assert counter.calls == 1


async def test_ttl_param_in_cache_status(cache: FallbackCache, counter: Counter) -> None:
    clock = FakeClock(1_000_000.0)
    app = FastAPI()

    @app.get("/t")
    @cache_response(ttl=60, cache=cache, clock=clock)
    async def t() -> dict[str, int]:
        counter.calls += 1
        return {"n": 1}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        await c.get("/t")
        clock.advance(10.5)
        reply = await c.get("/t")
    assert reply.headers["cache-status"] == "chenu; hit; ttl=49"
    assert reply.headers["age"] == "10"


async def test_signature_and_openapi_are_kept(cache: FallbackCache, counter: Counter) -> None:
    app = build_app(cache, counter)
    plain = FastAPI()

    @plain.get("/users/{user_id}", response_model=User)
    async def read_user(user_id: int, detail: bool = False) -> User:
        """Read one user."""
        raise AssertionError

    ours = app.openapi()["paths"]["/users/{user_id}"]
    theirs = plain.openapi()["paths"]["/users/{user_id}"]
    assert ours == theirs
    assert "_chenu_cache_request" not in str(app.openapi())
    route = next(r for r in app.routes if getattr(r, "path", "") == "/users/{user_id}")
    endpoint = route.endpoint  # type: ignore[attr-defined]
    assert isinstance(endpoint, CachedEndpoint)
    assert endpoint.__name__ == "read_user"  # type: ignore[attr-defined]
    assert endpoint.__doc__ == "Read one user."


async def test_called_directly_it_runs_uncached(cache: FallbackCache) -> None:
    @cache_response(ttl=60, cache=cache)
    async def plain(x: int) -> int:
        return x * 2

    assert await plain(21) == 42


# -- what is stored ----------------------------------------------------------------------


async def test_only_200_is_stored(client: httpx.AsyncClient, counter: Counter) -> None:
    for _ in range(2):
        reply = await client.get("/missing/1")
        assert reply.status_code == 404
        assert reply.json() == {"detail": "no such thing"}
    assert counter.calls == 2
    for _ in range(2):
        reply = await client.get("/created")
        assert reply.status_code == 201
        assert reply.headers["cache-status"] == "chenu; fwd=miss; fwd-status=201"
        assert "etag" not in reply.headers
    assert counter.calls == 4


async def test_a_response_setting_a_cookie_is_never_stored(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    for _ in range(2):
        client.cookies.clear()  # else the client sends it back, and bypasses
        reply = await client.get("/cookie")
        assert reply.status_code == 200
        assert "session=abc" in reply.headers["set-cookie"]
        assert reply.headers["x-extra"] == "1"
        assert "set-cookie" in reply.headers["cache-status"]
    assert counter.calls == 2


async def test_streaming_passes_through_uncached(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    for _ in range(2):
        reply = await client.get("/stream")
        assert reply.text == "ab"
        assert reply.headers["cache-status"].endswith("detail=streaming")
    assert counter.calls == 2


async def test_body_size_limit(client: httpx.AsyncClient, counter: Counter) -> None:
    for _ in range(2):
        reply = await client.get("/big")
        assert reply.text == "x" * 1000
        assert reply.headers["cache-status"].endswith("detail=too-large")
    assert counter.calls == 2


async def test_binary_bodies_round_trip(client: httpx.AsyncClient, counter: Counter) -> None:
    first = await client.get("/binary")
    second = await client.get("/binary")
    assert first.content == second.content == bytes(range(256))
    assert params(second.headers["cache-status"])[0] == "hit"
    assert counter.calls == 1


async def test_an_etag_the_endpoint_set_is_kept(client: httpx.AsyncClient) -> None:
    first = await client.get("/own-etag")
    second = await client.get("/own-etag", headers={"If-None-Match": '"version-1"'})
    assert first.headers["etag"] == '"version-1"'
    assert second.status_code == 304


# -- credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Authorization", "Cookie"])
async def test_credentials_bypass_the_shared_entry(
    client: httpx.AsyncClient, counter: Counter, header: str
) -> None:
    await client.get("/users/1")  # stored
    value = "Bearer secret" if header == "Authorization" else "sid=1"
    reply = await client.get("/users/1", headers={header: value})
    assert reply.headers["cache-status"] == "chenu; fwd=bypass; fwd-status=200"
    assert "etag" not in reply.headers
    assert counter.calls == 2
    # ... and never stored from such a request: a fresh URL stays cold.
    await client.get("/users/2", headers={header: value})
    reply = await client.get("/users/2")
    assert params(reply.headers["cache-status"])[0] == "fwd=miss"


async def test_vary_on_authorization_gives_one_entry_per_credential(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    a1 = await client.get("/me", headers={"Authorization": "Bearer a"})
    b1 = await client.get("/me", headers={"Authorization": "Bearer b"})
    a2 = await client.get("/me", headers={"Authorization": "Bearer a"})
    assert a1.json() == a2.json() == {"auth": "Bearer a"}
    assert b1.json() == {"auth": "Bearer b"}
    assert params(a2.headers["cache-status"])[0] == "hit"
    assert a1.headers["cache-control"].startswith("private")
    assert a1.headers["vary"] == "Authorization"
    assert counter.calls == 2
    # A cookie is not named in vary=: that request bypasses.
    c = await client.get("/me", headers={"Authorization": "Bearer a", "Cookie": "x=1"})
    assert c.headers["cache-status"].startswith("chenu; fwd=bypass")


async def test_public_shares_one_entry_with_credentials(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    first = await client.get("/public", headers={"Authorization": "Bearer a"})
    second = await client.get("/public", headers={"Cookie": "sid=2"})
    assert first.json() == second.json()
    assert first.headers["cache-control"] == "public, max-age=60"
    assert counter.calls == 1


# -- keys --------------------------------------------------------------------------------


async def test_vary_header_values_make_different_entries(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    fr = await client.get("/lang", headers={"Accept-Language": "fr"})
    de = await client.get("/lang", headers={"Accept-Language": "de"})
    fr2 = await client.get("/lang", headers={"Accept-Language": "fr"})
    assert fr.json() == fr2.json() == {"lang": "fr"}
    assert de.json() == {"lang": "de"}
    assert fr.headers["vary"] == "Accept-Language"
    assert counter.calls == 2


async def test_query_order_does_not_matter(client: httpx.AsyncClient, counter: Counter) -> None:
    a = await client.get("/users/1?detail=true&x=1")
    b = await client.get("/users/1?x=1&detail=true")
    assert a.content == b.content
    assert params(b.headers["cache-status"])[0] == "hit"
    assert counter.calls == 1


async def test_repeated_parameters_keep_their_order(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    ab = await client.get("/items?tag=a&tag=b")
    ba = await client.get("/items?tag=b&tag=a")
    assert ab.json() == {"tags": ["a", "b"]}
    assert ba.json() == {"tags": ["b", "a"]}
    assert counter.calls == 2


def test_response_key_is_order_insensitive_and_safe() -> None:
    assert response_key("/a", "y=2&x=1") == response_key("/a", {"x": "1", "y": "2"})
    key = response_key("/a b/*?[x]", "q=a b&r=*")
    for char in " *[":
        assert char not in key
    assert key.count("?") == 1
    long = response_key("/p", {"q": "x" * 5000})
    assert len(long) < 500


async def test_head_is_answered_from_the_get_entry(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    get = await client.get("/users/3")
    head = await client.head("/users/3")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == get.headers["etag"]
    assert params(head.headers["cache-status"])[0] == "hit"
    assert counter.calls == 1


async def test_head_first_stores_for_get(client: httpx.AsyncClient, counter: Counter) -> None:
    head = await client.head("/users/4")
    get = await client.get("/users/4")
    assert head.content == b""
    assert get.json() == {"id": 4, "name": "user 4"}
    assert counter.calls == 1


async def test_key_builder(cache: FallbackCache, counter: Counter) -> None:
    app = FastAPI()

    @app.get("/k/{x}")
    @cache_response(ttl=60, cache=cache, key_builder=lambda request: "same")
    async def k(x: int) -> dict[str, int]:
        counter.calls += 1
        return {"x": x}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        one = await c.get("/k/1")
        two = await c.get("/k/2")
    assert one.json() == two.json() == {"x": 1}
    assert await cache.exists("same", namespace="http")


# -- validators and 304 ------------------------------------------------------------------


async def test_etag_is_stable_across_two_app_instances(counter: Counter) -> None:
    etags = []
    for _ in range(2):
        cache = FallbackCache(read_env=False)
        app = build_app(cache, counter)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            etags.append((await client.get("/users/9")).headers["etag"])
        await cache.close()
    assert etags[0] == etags[1]


@pytest.mark.parametrize(
    "header",
    [
        "{etag}",
        "{strong}",  # weak comparison: the strong form matches the weak tag
        '"other", {etag}',
        '"a", "b",{strong}',
        "*",
        ' W/"x" ,  {etag} ',
    ],
)
async def test_if_none_match_answers_304(client: httpx.AsyncClient, header: str) -> None:
    first = await client.get("/users/5")
    etag = first.headers["etag"]
    value = header.format(etag=etag, strong=etag[2:])
    reply = await client.get("/users/5", headers={"If-None-Match": value})
    assert reply.status_code == 304
    assert reply.content == b""
    assert reply.headers["etag"] == etag
    assert reply.headers["cache-control"] == "max-age=60"
    assert "content-length" not in reply.headers
    assert "content-type" not in reply.headers
    assert params(reply.headers["cache-status"])[0] == "hit"


@pytest.mark.parametrize(
    "header", ['"nope"', 'W/"nope"', "garbage", '"unterminated', ",,,", 'W/"a" "b"', ""]
)
async def test_if_none_match_that_does_not_match_gets_200(
    client: httpx.AsyncClient, header: str
) -> None:
    await client.get("/users/6")
    reply = await client.get("/users/6", headers={"If-None-Match": header})
    assert reply.status_code == 200
    assert reply.json()["id"] == 6


async def test_304_carries_vary(client: httpx.AsyncClient) -> None:
    first = await client.get("/lang", headers={"Accept-Language": "fr"})
    reply = await client.get(
        "/lang", headers={"Accept-Language": "fr", "If-None-Match": first.headers["etag"]}
    )
    assert reply.status_code == 304
    assert reply.headers["vary"] == "Accept-Language"


async def test_a_fresh_response_can_be_304(client: httpx.AsyncClient, cache: FallbackCache) -> None:
    etag = (await client.get("/users/7")).headers["etag"]
    await cache.invalidate_namespace("http")
    reply = await client.get("/users/7", headers={"If-None-Match": etag})
    assert reply.status_code == 304
    assert reply.headers["cache-status"] == "chenu; fwd=miss; fwd-status=200; stored"


async def test_invalidation_kills_the_validator(
    client: httpx.AsyncClient, cache: FallbackCache, counter: Counter
) -> None:
    etag = (await client.get("/users/8")).headers["etag"]
    counter.names[8] = "renamed"
    # Still cached: the old validator still holds.
    assert (await client.get("/users/8", headers={"If-None-Match": etag})).status_code == 304
    assert await invalidate_response(cache, "/users/8") == 1
    reply = await client.get("/users/8", headers={"If-None-Match": etag})
    assert reply.status_code == 200
    assert reply.json()["name"] == "renamed"
    assert reply.headers["etag"] != etag


async def test_invalidation_by_tag_namespace_and_endpoint(
    cache: FallbackCache, counter: Counter
) -> None:
    app = build_app(cache, counter)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/users/1")
        await c.get("/users/1?detail=true")
        await c.get("/users/2")
        assert counter.calls == 3
        await cache.invalidate_tags("user:1")
        await c.get("/users/1")
        await c.get("/users/2")
        assert counter.calls == 4  # only user 1 reloaded
        await cache.invalidate_namespace("http")
        await c.get("/users/2")
        assert counter.calls == 5
        route = next(r for r in app.routes if getattr(r, "path", "") == "/users/{user_id}")
        endpoint = route.endpoint  # type: ignore[attr-defined]
        await c.get("/users/2?detail=true")
        removed = await endpoint.invalidate_response("/users/2", query={"detail": "true"})
        assert removed == 1
        hit = await c.get("/users/2")
        assert params(hit.headers["cache-status"])[0] == "hit"


# -- request Cache-Control ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["no-cache", "max-age=0", "no-store"])
async def test_request_cache_control_is_ignored_by_default(
    client: httpx.AsyncClient, counter: Counter, value: str
) -> None:
    await client.get("/users/1")
    reply = await client.get("/users/1", headers={"Cache-Control": value, "Pragma": "no-cache"})
    assert params(reply.headers["cache-status"])[0] == "hit"
    assert counter.calls == 1


async def test_request_cache_control_when_honoured(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    assert (await client.get("/honour")).json() == {"n": 1}
    refilled = await client.get("/honour", headers={"Cache-Control": "no-cache"})
    assert refilled.json() == {"n": 2}
    assert refilled.headers["cache-status"] == "chenu; fwd=request; fwd-status=200; stored"
    assert (await client.get("/honour")).json() == {"n": 2}
    bypassed = await client.get("/honour", headers={"Cache-Control": "no-store"})
    assert bypassed.json() == {"n": 3}
    assert bypassed.headers["cache-status"] == "chenu; fwd=request; fwd-status=200"
    assert (await client.get("/honour")).json() == {"n": 2}


# -- freshness ---------------------------------------------------------------------------


async def test_stale_while_revalidate_and_stale_if_error() -> None:
    clock = FakeClock(1_000_000.0)
    cache = FallbackCache(read_env=False, clock=clock)
    state = {"n": 0, "fail": False}
    app = FastAPI()

    @app.get("/s")
    @cache_response(ttl=10, refresh_after=5, stale_if_error=30, cache=cache, clock=clock)
    async def s() -> dict[str, int]:
        if state["fail"]:
            raise HTTPException(503, "down")
        state["n"] += 1
        return {"n": state["n"]}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        first = await c.get("/s")
        assert first.headers["cache-control"] == (
            "max-age=5, stale-while-revalidate=5, stale-if-error=30"
        )
        clock.advance(6)
        stale = await c.get("/s")
        assert stale.json() == {"n": 1}  # served at once ...
        assert stale.headers["cache-status"] == "chenu; hit; ttl=-1"

        async def refreshed() -> bool:
            return bool((await c.get("/s")).json() == {"n": 2})  # ... refreshed behind

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not await refreshed():
            assert loop.time() < deadline, "the background refresh never landed"
            await asyncio.sleep(0.01)
        state["fail"] = True
        clock.advance(12)  # expired; within stale_if_error
        reply = await c.get("/s")
        assert reply.status_code == 200
        assert reply.json() == {"n": 2}
        assert reply.headers["cache-status"] == "chenu; fwd=stale; fwd-status=503; ttl=-7"
        clock.advance(60)  # past the window: the error shows
        assert (await c.get("/s")).status_code == 503
    await cache.close()


async def test_a_returned_5xx_is_not_stored(cache: FallbackCache) -> None:
    app = FastAPI()
    calls = []

    @app.get("/e")
    @cache_response(ttl=10, cache=cache)
    async def e() -> Response:
        calls.append(1)
        return PlainTextResponse("boom", status_code=502)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        for _ in range(2):
            reply = await c.get("/e")
            assert reply.status_code == 502
            assert reply.headers["cache-status"] == "chenu; fwd=miss; fwd-status=502"
    assert len(calls) == 2


async def test_200_concurrent_requests_on_a_cold_url_run_the_endpoint_once(
    cache: FallbackCache,
) -> None:
    app = FastAPI()
    calls = []
    gate = asyncio.Event()

    @app.get("/cold")
    @cache_response(ttl=60, cache=cache)
    async def cold() -> dict[str, str]:
        calls.append(1)
        await gate.wait()
        return {"v": "x"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        tasks = [asyncio.create_task(c.get("/cold")) for _ in range(200)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not calls:
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        gate.set()
        replies = await asyncio.gather(*tasks)
    assert len(calls) == 1
    assert {r.status_code for r in replies} == {200}
    assert {r.content for r in replies} == {b'{"v":"x"}'}
    statuses = [r.headers["cache-status"] for r in replies]
    assert statuses.count("chenu; fwd=miss; fwd-status=200; stored") == 1
    assert all("collapsed" in s or "stored" in s or "hit" in s for s in statuses)


# -- models, sub-responses ---------------------------------------------------------------


async def test_response_model_filtering_and_sub_response(cache: FallbackCache) -> None:
    app = FastAPI()

    class Secretive(BaseModel):
        name: str

    @app.get("/m", response_model=Secretive, status_code=200)
    @cache_response(ttl=60, cache=cache)
    async def m(response: Response) -> Any:
        response.headers["x-from-endpoint"] = "yes"
        return {"name": "n", "password": "p"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        first = await c.get("/m")
        second = await c.get("/m")
    for reply in (first, second):
        assert reply.json() == {"name": "n"}
        assert reply.headers["x-from-endpoint"] == "yes"
    assert params(second.headers["cache-status"])[0] == "hit"


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/users/1?%00=%01",
        "/users/1?a=%FF%FE",
        "/users/1?" + "q=" + "x" * 10_000,
        "/users/1?a=b c",
        "/users/1?a=%20&&&=&",
        "/users/1?detail=notabool",
        "/users/%F0%9F%98%80",
        "/users/1?x=*&y=[a]&z=\\",
    ],
)
async def test_bad_input_never_gives_a_500(client: httpx.AsyncClient, url: str) -> None:
    for _ in range(2):
        reply = await client.get(url)
        assert reply.status_code < 500, reply.text


async def test_odd_header_bytes_never_give_a_500(client: httpx.AsyncClient) -> None:
    headers = [
        (b"if-none-match", b'W/"\xff\xfe"'),
        (b"accept-language", b"\xe9t\xe9"),
        (b"cache-control", b"\x01no-cache"),
    ]
    reply = await client.get("/lang", headers=headers)
    assert reply.status_code == 200


async def test_a_tag_the_cache_refuses_is_answered_uncached(cache: FallbackCache) -> None:
    app = FastAPI()

    @app.get("/t/{name}")
    @cache_response(ttl=60, cache=cache, tags=["name:{name}"])
    async def t(name: str) -> dict[str, str]:
        return {"name": name}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        reply = await c.get("/t/a%20b")
    assert reply.status_code == 200
    assert reply.json() == {"name": "a b"}
    assert reply.headers["cache-status"] == "chenu; fwd=bypass; fwd-status=200"


async def test_a_foreign_value_under_the_key_is_replaced(
    client: httpx.AsyncClient, cache: FallbackCache, counter: Counter
) -> None:
    await cache.set(response_key("/users/1"), "not an entry", namespace="http")
    reply = await client.get("/users/1")
    assert reply.status_code == 200
    assert reply.json()["id"] == 1
    again = await client.get("/users/1")
    assert params(again.headers["cache-status"])[0] == "hit"


# -- decoration-time errors --------------------------------------------------------------


def test_decoration_errors() -> None:
    from chenu_cache import CacheError

    def sync() -> None: ...

    with pytest.raises(TypeError):
        cache_response(ttl=1)(sync)  # type: ignore[arg-type]

    async def f(user_id: int) -> None: ...

    with pytest.raises(TypeError):
        cache_response(tags=["x:{nope}"])(f)
    bad: list[dict[str, Any]] = [
        {"ttl": -1},
        {"ttl": "1"},
        {"namespace": "Bad NS"},
        {"vary": "Accept"},
        {"vary": ["bad header"]},
        {"statuses": [99]},
        {"refresh_after": 10, "ttl": 5},
        {"max_body_size": -1},
        {"tags": "user"},
    ]
    for options in bad:
        with pytest.raises(CacheError):
            cache_response(**options)


# -- Redis -------------------------------------------------------------------------------


@pytest.mark.redis
async def test_etag_and_entry_shared_across_instances_on_redis(redis_url: str, prefix: str) -> None:
    counter = Counter()
    caches = [FallbackCache(redis_url=redis_url, prefix=prefix) for _ in range(2)]
    replies = []
    try:
        for cache in caches:
            await cache.initialize()
            app = build_app(cache, counter)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as c:
                replies.append(await c.get("/users/11"))
    finally:
        for cache in caches:
            await cache.clear()
            await cache.close()
    assert counter.calls == 1  # the second app read the first one's entry
    assert replies[0].headers["etag"] == replies[1].headers["etag"]
    assert params(replies[1].headers["cache-status"])[0] == "hit"


@pytest.mark.redis
async def test_redis_killed_mid_traffic_gives_no_5xx(server: RedisServer, prefix: str) -> None:
    cache = FallbackCache(redis_url=server.url, prefix=prefix, operation_timeout=0.5)
    await cache.initialize()
    counter = Counter()
    app = build_app(cache, counter)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            statuses: list[int] = []
            for i in range(30):
                if i == 10:
                    server.kill()
                statuses.extend(
                    r.status_code
                    for r in await asyncio.gather(*(c.get(f"/users/{i % 4}") for _ in range(5)))
                )
            assert set(statuses) == {200}
            assert cache.backend.name == "memory"
    finally:
        await cache.close()
