"""HTTP response caching (SPEC §15): requests/s through a real uvicorn, side by side.

    python -m benchmarks.http_cache            # 3 interleaved rounds of 3 s per scenario
    python -m benchmarks.http_cache --quick    # 2 rounds of 1 s

Starts its own redis-server and one uvicorn process (one worker) on free loopback
ports, and drives them with an httpx load script (keep-alive connections, a fixed
number of concurrent requests, bounded in time). Prints a markdown table; writes no
file. Scenarios, all on the same endpoint body (a pydantic model) and the same Redis:

- ``chenu hit``: ``@cache_response(ttl=600)``, warm entry, a plain GET.
- ``chenu 304``: the same with a matching ``If-None-Match``.
- ``fastapi-cache2 hit`` / ``304``: its ``@cache(expire=600)`` on its ``RedisBackend``
  (skipped, with a note, when ``fastapi-cache2`` is not installed).
- ``uncached``: the endpoint with no cache at all (FastAPI validates and serializes).

Each figure is the median of the rounds; ratios are against ``fastapi-cache2 hit``
and ``uncached`` measured in the same run. The client shares the machine with the
server, so ratios are compressed toward 1: read them as lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx
from fastapi import FastAPI
from pydantic import BaseModel
from tests.redis_server import RedisServer, free_port

from chenu_cache import FallbackCache
from chenu_cache.contrib.fastapi import cache_response

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 16
PAGE_HIT, PAGE_304 = "chenu hit, 30 kB page", "chenu 304, 30 kB page"
PAGE = (PAGE_HIT, PAGE_304)


class Item(BaseModel):
    id: int
    name: str
    tags: list[str]
    price: float
    description: str


def _item(item_id: int) -> Item:
    return Item(
        id=item_id,
        name=f"item {item_id}",
        tags=["a", "b", "c"],
        price=12.5,
        description="x" * 200,
    )


def _have_fastapi_cache2() -> bool:
    try:
        import fastapi_cache  # noqa: F401
    except ImportError:
        return False
    return True


def make_app() -> FastAPI:
    """The benchmarked app (run by uvicorn in its own process)."""
    url = os.environ["HTTP_BENCH_REDIS"]
    cache = FallbackCache(redis_url=url, prefix="bench-http:")
    theirs = _have_fastapi_cache2()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await cache.initialize()
        client = None
        if theirs:
            import redis.asyncio as redis_asyncio
            from fastapi_cache import FastAPICache
            from fastapi_cache.backends.redis import RedisBackend

            client = redis_asyncio.Redis.from_url(url)
            FastAPICache.init(RedisBackend(client), prefix="bench-fc2")
        try:
            yield
        finally:
            await cache.close()
            if client is not None:
                await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ours/{item_id}")
    @cache_response(ttl=600, cache=cache)
    async def ours(item_id: int) -> Item:
        return _item(item_id)

    # A page of 100 items (~30 kB): where a 304's saving, the body, is worth measuring.
    @app.get("/ours-page/{page}")
    @cache_response(ttl=600, cache=cache)
    async def ours_page(page: int) -> list[Item]:
        return [_item(page * 100 + i) for i in range(100)]

    @app.get("/plain/{item_id}")
    async def plain(item_id: int) -> Item:
        return _item(item_id)

    if theirs:
        from fastapi_cache.decorator import cache as fc2_cache

        @app.get("/theirs/{item_id}")
        @fc2_cache(expire=600)
        async def their_route(item_id: int) -> Item:
            return _item(item_id)

    return app


@contextlib.contextmanager
def uvicorn_server(redis_url: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HTTP_BENCH_REDIS": redis_url, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "benchmarks.http_cache:make_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError("uvicorn exited at start-up")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/plain/1", timeout=0.5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 30 s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def load(url: str, headers: dict[str, str], seconds: float, expect: int) -> float:
    """Requests/s of ``CONCURRENCY`` keep-alive workers hitting ``url`` for ``seconds``."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=10, headers=headers) as client:
        for _ in range(CONCURRENCY):  # open the connections before timing
            assert (await client.get(url)).status_code == expect
        done = 0
        loop = asyncio.get_running_loop()
        stop = loop.time() + seconds

        async def worker() -> None:
            nonlocal done
            while loop.time() < stop:
                reply = await client.get(url)
                if reply.status_code != expect:
                    raise RuntimeError(f"{url}: {reply.status_code}, expected {expect}")
                done += 1

        started = loop.time()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (loop.time() - started)


WRK = shutil.which("wrk")
"""Debian's wrk (apt-get install wrk), when present: a load generator in C, so that the
figures measure the server, not a Python client sharing its two cores."""


async def load_wrk(url: str, headers: dict[str, str], seconds: float, expect: int) -> float:
    """Requests/s that ``wrk`` (one thread, ``CONCURRENCY`` connections) measured."""
    async with httpx.AsyncClient(headers=headers) as client:  # the answer is the expected one
        reply = await client.get(url)
        if reply.status_code != expect:
            raise RuntimeError(f"{url}: {reply.status_code}, expected {expect}")
    assert WRK is not None
    command = [WRK, "-t1", f"-c{CONCURRENCY}", f"-d{max(1, round(seconds))}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = await asyncio.to_thread(
        subprocess.run, [*command, url], capture_output=True, text=True, timeout=seconds + 30
    )
    found = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    if done.returncode != 0 or found is None or "Non-2xx" in done.stdout:
        raise RuntimeError(f"wrk failed on {url}: {done.stdout[-500:]} {done.stderr[-500:]}")
    return float(found.group(1))


async def run(rounds: int, seconds: float) -> str:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not on PATH"
    theirs = _have_fastapi_cache2()
    redis = RedisServer(binary)
    redis.start()
    try:
        with uvicorn_server(redis.url) as base:
            async with httpx.AsyncClient() as client:
                ours = await client.get(base + "/ours/1")
                await client.get(base + "/ours/1")
                etag = ours.headers["etag"]
                page = await client.get(base + "/ours-page/1")
                await client.get(base + "/ours-page/1")
                page_etag = page.headers["etag"]
                their_etag = None
                if theirs:
                    await client.get(base + "/theirs/1")
                    their_etag = (await client.get(base + "/theirs/1")).headers.get("etag")
                    hit = await client.get(base + "/theirs/1")
                    assert hit.headers.get("x-fastapi-cache") == "HIT", hit.headers
            scenarios: list[tuple[str, str, dict[str, str], int]] = [
                ("chenu hit", "/ours/1", {}, 200),
                ("chenu 304", "/ours/1", {"If-None-Match": etag}, 304),
                ("uncached", "/plain/1", {}, 200),
                (PAGE_HIT, "/ours-page/1", {}, 200),
                (PAGE_304, "/ours-page/1", {"If-None-Match": page_etag}, 304),
            ]
            if theirs and their_etag:
                scenarios[2:2] = [
                    ("fastapi-cache2 hit", "/theirs/1", {}, 200),
                    ("fastapi-cache2 304", "/theirs/1", {"If-None-Match": their_etag}, 304),
                ]
            results: dict[str, list[float]] = {name: [] for name, *_ in scenarios}
            for _ in range(rounds):  # interleaved: drift hits every contestant alike
                for name, path, headers, expect in scenarios:
                    measure = load_wrk if WRK else load
                    results[name].append(await measure(base + path, headers, seconds, expect))
    finally:
        redis.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    base_theirs = medians.get("fastapi-cache2 hit")
    lines = [
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs; uvicorn "
        f"{version('uvicorn')} (1 worker); FastAPI {version('fastapi')}; "
        f"{rounds} interleaved rounds of {seconds:g} s, {CONCURRENCY} concurrent "
        + (
            "keep-alive connections from wrk (one thread); medians."
            if WRK
            else "keep-alive requests from one httpx client process (no wrk found: the "
            "client, not the server, may be the limit); medians."
        ),
        "",
        "| scenario | requests/s | vs fastapi-cache2 hit | vs uncached |",
        "|---|---:|---:|---:|",
    ]
    for name, value in medians.items():
        vs_theirs = f"{value / base_theirs:.2f}x" if base_theirs and name not in PAGE else "n/a"
        lines.append(
            f"| {name} | {value:,.0f} | {vs_theirs} | {value / medians['uncached']:.2f}x |"
        )
    if not theirs:
        lines += ["", "fastapi-cache2 is not installed: its columns are skipped."]
    else:
        with contextlib.suppress(PackageNotFoundError):
            lines += ["", f"fastapi-cache2 {version('fastapi-cache2')} on the same Redis."]
    ours_hit, not_modified = medians["chenu hit"], medians["chenu 304"]
    lines.append(
        f"Targets: chenu hit >= fastapi-cache2 hit: "
        f"{'met' if base_theirs is None or ours_hit >= base_theirs else 'NOT met'}"
        f"{'' if base_theirs else ' (no contestant)'}; a 304 cheaper than a 200 hit: "
        f"{'met' if not_modified >= ours_hit else 'NOT met'} ({not_modified / ours_hit:.2f}x "
        f"on a ~300-byte body, {medians[PAGE_304] / medians[PAGE_HIT]:.2f}x on ~30 kB)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP response caching benchmark")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s per scenario")
    args = parser.parse_args()
    rounds, seconds = (2, 1.0) if args.quick else (3, 3.0)
    print(asyncio.run(run(rounds, seconds)))


if __name__ == "__main__":
    main()
