"""cache_response on real servers: uvicorn processes on loopback, a real Redis.

Each test starts its uvicorn process(es) (``python -m uvicorn --factory``, this module's
``make_app``) on free ports and stops them in ``finally``. Waits are on conditions with
deadlines. Without uvicorn the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from chenu_cache import FallbackCache
from chenu_cache.contrib.fastapi import cache_response, invalidate_response
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.redis


def _need_uvicorn() -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI=true and uvicorn is not installed", pytrace=False)
        pytest.skip("uvicorn is not installed")


# -- the app each server runs ------------------------------------------------------------


def make_app() -> FastAPI:
    """The app of one server process: its cache from the environment."""
    cache = FallbackCache(
        redis_url=os.environ["HTTP_CACHE_TEST_REDIS"],
        prefix=os.environ["HTTP_CACHE_TEST_PREFIX"],
        operation_timeout=0.3,
        probe_interval=0.1,
    )
    calls = {"n": 0}
    data = {"name": "first"}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await cache.initialize()
        try:
            yield
        finally:
            await cache.close()

    app = FastAPI(lifespan=lifespan)

    @app.head("/users/{user_id}", include_in_schema=False)
    @app.get("/users/{user_id}")
    @cache_response(ttl=60, cache=cache, tags=["user:{user_id}"], vary=["Accept-Language"])
    async def read_user(user_id: int) -> dict[str, object]:
        calls["n"] += 1
        return {"id": user_id, "name": data["name"]}

    @app.get("/slow/{n}")
    @cache_response(ttl=60, cache=cache)
    async def slow(n: int) -> dict[str, int]:
        calls["n"] += 1
        await asyncio.sleep(0.2)  # the endpoint's own work: keeps the flight open
        return {"n": n}

    @app.get("/calls")
    async def count() -> dict[str, int]:
        return calls

    @app.post("/rename/{name}")
    async def rename(name: str) -> dict[str, int]:
        data["name"] = name
        return {"removed": await invalidate_response(cache, "/users/1")}

    return app


class Uvicorn:
    """One uvicorn process on a free loopback port; always stopped by ``close()``."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "HTTP_CACHE_TEST_REDIS": redis_url,
            "HTTP_CACHE_TEST_PREFIX": prefix,
            "PYTHONPATH": str(ROOT),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.contrib.test_http_cache_uvicorn:make_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise AssertionError(f"uvicorn exited: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/calls", timeout=0.5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError("uvicorn did not answer in time")
            time.sleep(0.02)  # polling a condition, with a deadline

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextlib.contextmanager
def servers(redis_url: str, prefix: str, count: int = 1) -> Iterator[list[Uvicorn]]:
    _need_uvicorn()
    started: list[Uvicorn] = []
    try:
        for _ in range(count):
            started.append(Uvicorn(redis_url, prefix))
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.close()


def params(cache_status: str) -> list[str]:
    assert cache_status.startswith("chenu; "), cache_status
    return cache_status.split("; ")[1:]


# -- tests -------------------------------------------------------------------------------


async def test_two_processes_share_entries_and_etags(redis_url: str, prefix: str) -> None:
    with servers(redis_url, prefix, count=2) as (a, b):
        async with httpx.AsyncClient(timeout=10) as client:
            first = await client.get(a.url + "/users/1")
            second = await client.get(b.url + "/users/1")
            assert first.status_code == second.status_code == 200
            assert first.headers["cache-status"] == "chenu; fwd=miss; fwd-status=200; stored"
            assert params(second.headers["cache-status"])[0] == "hit"
            assert first.headers["etag"] == second.headers["etag"]
            assert (await client.get(b.url + "/calls")).json() == {"n": 0}
            # A 304 from the other process: ETag, Cache-Control, Vary and one Date.
            etag = first.headers["etag"]
            not_modified = await client.get(
                b.url + "/users/1", headers={"If-None-Match": f'"x", {etag}'}
            )
            assert not_modified.status_code == 304
            assert not_modified.content == b""
            assert not_modified.headers["etag"] == etag
            assert not_modified.headers["cache-control"] == "max-age=60"
            assert not_modified.headers["vary"] == "Accept-Language"
            assert len(not_modified.headers.get_list("date")) == 1
            head = await client.head(a.url + "/users/1")
            assert head.status_code == 200
            assert head.headers["content-length"] == str(len(first.content))
            # Invalidation by path (from a route of the app) kills the validator.
            renamed = await client.post(a.url + "/rename/second")
            assert renamed.json() == {"removed": 1}
            after = await client.get(a.url + "/users/1", headers={"If-None-Match": etag})
            assert after.status_code == 200
            assert after.json()["name"] == "second"
            assert after.headers["etag"] != etag
            # The other process now serves the new entry, and the old validator is dead.
            other = await client.get(b.url + "/users/1", headers={"If-None-Match": etag})
            assert other.status_code == 200
            assert other.json()["name"] == "second"
            assert params(other.headers["cache-status"])[0] == "hit"


async def test_200_concurrent_requests_on_a_cold_url_run_the_endpoint_once(
    redis_url: str, prefix: str
) -> None:
    with servers(redis_url, prefix) as (server,):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            replies = await asyncio.gather(
                *(client.get(server.url + "/slow/1") for _ in range(200))
            )
            assert {r.status_code for r in replies} == {200}
            assert {r.content for r in replies} == {b'{"n":1}'}
            assert (await client.get(server.url + "/calls")).json() == {"n": 1}


async def test_redis_killed_mid_traffic_gives_no_5xx(server: RedisServer, prefix: str) -> None:
    with servers(server.url, prefix) as (app,):
        async with httpx.AsyncClient(timeout=30) as client:
            statuses: list[int] = []
            for i in range(40):
                if i == 10:
                    server.kill()
                replies = await asyncio.gather(
                    *(client.get(app.url + f"/users/{i % 5}") for _ in range(10))
                )
                statuses.extend(r.status_code for r in replies)
            assert set(statuses) == {200}
            assert len(statuses) == 400
