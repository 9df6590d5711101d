"""GET /cache/events (SPEC §16): invalidation events as Server-Sent Events.

The streaming tests run a real uvicorn process (this module's ``make_app``, on a free
loopback port, always stopped) on a real Redis, and read it with an SSE client written
on ``httpx`` streaming. Invalidations come from another `FallbackCache` on the same
Redis. Every wait is on a condition with a deadline; the latency figures are printed
(``pytest -s``), never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from fastapi import FastAPI, Header, HTTPException

from chenu_cache import ConfigurationError, FallbackCache
from chenu_cache.contrib.fastapi import create_cache_router
from tests.conftest import eventually
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "events-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC = ("user", "project")


def _need_uvicorn() -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI=true and uvicorn is not installed", pytrace=False)
        pytest.skip("uvicorn is not installed")


# -- the app the server runs -------------------------------------------------------------


async def _browser_user(x_user: str | None = Header(default=None)) -> None:
    """The app's own auth of the browser route: a user header (a session, in real life)."""
    if not x_user:
        raise HTTPException(401, detail={"error": "Unauthorized", "message": "log in"})


def make_app() -> FastAPI:
    """The app of one server process: an events=True cache from the environment,
    ``/cache/events`` on the admin token, ``/app/events`` on the app's own auth."""
    cache = FallbackCache(
        redis_url=os.environ["EVENTS_TEST_REDIS"],
        prefix=os.environ["EVENTS_TEST_PREFIX"],
        events=True,
        read_env=False,
    )
    heartbeat = float(os.environ["EVENTS_TEST_HEARTBEAT"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await cache.initialize()
        try:
            yield
        finally:
            await cache.close()

    app = FastAPI(lifespan=lifespan)
    app.include_router(
        create_cache_router(
            cache,
            token=TOKEN,
            manage_lifespan=False,
            event_namespaces=PUBLIC,
            heartbeat=heartbeat,
        )
    )
    app.include_router(
        create_cache_router(
            cache,
            token=TOKEN,
            prefix="/app",
            manage_lifespan=False,
            event_namespaces=PUBLIC,
            events_dependency=_browser_user,
            heartbeat=heartbeat,
        )
    )

    @app.get("/tasks")
    async def tasks() -> dict[str, int]:
        return {"tasks": len(asyncio.all_tasks())}

    return app


class Uvicorn:
    """One uvicorn process on a free loopback port; always stopped by ``close()``."""

    def __init__(self, redis_url: str, prefix: str, heartbeat: float, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {
            **os.environ,
            "EVENTS_TEST_REDIS": redis_url,
            "EVENTS_TEST_PREFIX": prefix,
            "EVENTS_TEST_HEARTBEAT": str(heartbeat),
            "PYTHONPATH": str(ROOT),
        }
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "tests.contrib.test_events_sse:make_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--timeout-graceful-shutdown",
                    "5",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"uvicorn exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/tasks", timeout=0.5).status_code == 200:
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

    def errors(self) -> str:
        text = self.log.read_text(errors="replace")
        return text if "Traceback" in text or "ERROR" in text else ""


@contextlib.contextmanager
def running(redis_url: str, prefix: str, log: Path, heartbeat: float = 15.0) -> Iterator[Uvicorn]:
    _need_uvicorn()
    server = Uvicorn(redis_url, prefix, heartbeat, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
    assert not server.errors(), server.errors()[-3000:]


# -- an SSE client on httpx streaming ------------------------------------------------------


@dataclass
class Frame:
    """One parsed SSE frame, or a comment line (``comment`` set), and when it was parsed."""

    received: float
    id: str | None = None
    event: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSE:
    """A connection to an event stream; frames are parsed by a reader task as they come."""

    response: httpx.Response
    frames: asyncio.Queue[Frame | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                now = time.perf_counter()
                if line.startswith(":"):
                    self.frames.put_nowait(Frame(received=now, comment=line[1:].strip()))
                elif line == "":
                    if fields:
                        self.frames.put_nowait(
                            Frame(
                                received=now,
                                id=fields.get("id"),
                                event=fields.get("event", "message"),
                                data=fields.get("data", ""),
                            )
                        )
                        fields = {}
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data" and "data" in fields:
                        value = fields["data"] + "\n" + value
                    fields[name] = value
        finally:
            self.frames.put_nowait(None)  # the stream ended

    async def next(self, timeout: float = 10.0, *, comments: bool = False) -> Frame:
        """The next frame (comments skipped unless ``comments``), within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no frame within {timeout} s")
            try:
                frame = await asyncio.wait_for(self.frames.get(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no frame within {timeout} s") from None
            if frame is None:
                raise AssertionError("the stream ended")
            if comments or frame.comment is None:
                return frame

    async def until_key(self, key: str, timeout: float = 10.0) -> Frame:
        """Skip frames until an invalidation of ``key``."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - time.monotonic()))
            if frame.event == "invalidate" and key in frame.json().get("keys", ()):
                return frame

    async def sync(self, writer: FallbackCache, timeout: float = 10.0) -> None:
        """Wait until the stream is live: the server reads "from now" once its stream
        starts, so invalidate a marker key until one of them comes through."""
        deadline = time.monotonic() + timeout
        for i in range(10_000):
            key = f"user:sync-{i}"
            await writer.invalidate(key)
            with contextlib.suppress(AssertionError):
                await self.until_key(key, timeout=0.3)
                return
            if time.monotonic() > deadline:
                raise AssertionError("the event stream never went live")

    async def drain_until_quiet(self) -> None:
        """Drop the frames already parsed (what ``sync`` left behind)."""
        while not self.frames.empty():
            self.frames.get_nowait()


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SSE]:
    async with client.stream("GET", url, headers=headers) as response:
        stream = SSE(response)
        if response.status_code == 200:
            stream.task = asyncio.create_task(stream._read())
        try:
            yield stream
        finally:
            if stream.task is not None:
                stream.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await stream.task


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=30.0))


@pytest.fixture
async def writer(redis_url: str, prefix: str) -> AsyncIterator[FallbackCache]:
    """Another FallbackCache on the same Redis and prefix: it makes the invalidations."""
    cache = FallbackCache(redis_url=redis_url, prefix=prefix, events=True, read_env=False)
    await cache.initialize()
    try:
        yield cache
    finally:
        await cache.clear()
        await cache.close()


async def first_ids(server: Uvicorn, writer: FallbackCache, keys: list[str]) -> list[str]:
    """Invalidate ``keys`` (the stream's first events) and return their event ids, read
    from the route itself from the beginning (``Last-Event-ID: 0``)."""
    for key in keys:
        await writer.invalidate(key)
    async with (
        http_client() as client,
        sse(
            client,
            server.url + "/cache/events",
            {
                **AUTH,
                "Last-Event-ID": "0",
            },
        ) as stream,
    ):
        frames = [await stream.next() for _ in keys]
    assert [f.json()["keys"] for f in frames] == [[k] for k in keys]
    ids = [f.id for f in frames]
    assert all(i is not None for i in ids)
    return [i for i in ids if i is not None]


# -- streaming on a real server ------------------------------------------------------------


@pytest.mark.redis
async def test_another_instances_invalidations_reach_the_client(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with (
            http_client() as client,
            sse(client, server.url + "/cache/events", AUTH) as stream,
        ):
            assert stream.response.status_code == 200
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            assert stream.response.headers["cache-control"] == "no-cache"
            await stream.sync(writer)
            await stream.drain_until_quiet()

            await writer.invalidate("42", namespace="user")
            frame = await stream.until_key("user:42")
            assert frame.event == "invalidate"
            assert frame.id is not None
            assert frame.id.count("-") == 1
            data = frame.json()
            assert data["kind"] == "key"
            assert data["keys"] == ["user:42"]
            assert isinstance(data["time"], float)
            assert data["origin"]
            assert "replayed" not in data

            await writer.invalidate_namespace("project")
            frame = await stream.next()
            assert (frame.event, frame.json()["kind"], frame.json()["namespace"]) == (
                "invalidate",
                "namespace",
                "project",
            )
            await writer.invalidate_pattern("user:1*")
            assert (await stream.next()).json()["pattern"] == "user:1*"
            await writer.clear()
            assert (await stream.next()).json()["kind"] == "clear"


@pytest.mark.redis
async def test_only_public_namespaces_are_streamed(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with (
            http_client() as client,
            sse(client, server.url + "/cache/events", AUTH) as stream,
        ):
            await stream.sync(writer)
            await stream.drain_until_quiet()
            await writer.invalidate("secret:1")
            await writer.invalidate_namespace("secret")
            await writer.invalidate_pattern("secret:*")
            await writer.invalidate("no-namespace")
            await writer.invalidate_tags("secret:9", "plain-tag")  # no public namespace
            await writer.invalidate_tags("secret:4", "user:42")  # the public tag only
            await writer.delete_many(["secret:2", "user:7", "project:8", "secret:3"])
            await writer.invalidate("user:last")
            seen: list[Frame] = []
            while not seen or "user:last" not in seen[-1].json().get("keys", ()):
                seen.append(await stream.next())
            # Order is kept, so everything between the calls above was filtered out.
            assert [f.json() for f in seen] == [
                {
                    "kind": "tags",
                    "time": seen[0].json()["time"],
                    "tags": ["user:42"],
                    "origin": seen[0].json()["origin"],
                },
                {
                    "kind": "keys",
                    "time": seen[1].json()["time"],
                    "keys": ["user:7", "project:8"],
                    "origin": seen[1].json()["origin"],
                },
                {
                    "kind": "key",
                    "time": seen[2].json()["time"],
                    "keys": ["user:last"],
                    "origin": seen[2].json()["origin"],
                },
            ]
            assert all("secret" not in f.data and "plain-tag" not in f.data for f in seen)


@pytest.mark.redis
async def test_latency_of_100_events_in_sequence(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with (
            http_client() as client,
            sse(client, server.url + "/cache/events", AUTH) as stream,
        ):
            await stream.sync(writer)
            await stream.drain_until_quiet()
            latencies: list[float] = []
            ids: list[str] = []
            for i in range(100):
                key = f"user:latency-{i}"
                sent = time.perf_counter()
                await writer.invalidate(key)
                frame = await stream.next()
                assert frame.json()["keys"] == [key]  # each one, in order, none skipped
                assert frame.id is not None
                latencies.append(frame.received - sent)
                ids.append(frame.id)
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[98]  # the 99th of 100, nearest rank
    print(
        f"\nSSE invalidation latency over {len(ms)} events (invalidate() call to parsed "
        f"frame): p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms, "
        f"min {ms[0]:.2f} ms"
    )


@pytest.mark.redis
async def test_last_event_id_resumes_exactly_after_it(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        keys = [f"user:r{i}" for i in range(10)]
        ids = await first_ids(server, writer, keys)
        url = server.url + "/cache/events"
        async with http_client() as client:
            for headers, query, start in (
                ({**AUTH, "Last-Event-ID": ids[4]}, "", 4),
                (AUTH, f"?since={ids[2]}", 2),
                ({**AUTH, "Last-Event-ID": ids[6]}, f"?since={ids[1]}", 6),  # the header wins
            ):
                async with sse(client, url + query, headers) as stream:
                    got = [await stream.next() for _ in ids[start + 1 :]]
                    assert [f.id for f in got] == ids[start + 1 :]
                    assert [f.json()["keys"] for f in got] == [[k] for k in keys[start + 1 :]]
                    # Nothing else was pending: the next frame is a new invalidation.
                    fresh = f"user:fresh-{len(keys)}"
                    await writer.invalidate(fresh)
                    frame = await stream.next()
                    assert frame.json()["keys"] == [fresh]
                    assert frame.id is not None
                    ids.append(frame.id)
                    keys.append(fresh)


@pytest.mark.redis
async def test_an_id_the_stream_no_longer_holds_gets_a_reset(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    small = FallbackCache(
        redis_url=redis_url, prefix=prefix, events=True, events_maxlen=5, read_env=False
    )
    await small.initialize()
    raw = redis_asyncio.Redis.from_url(redis_url)
    try:
        with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
            (old,) = await first_ids(server, small, ["user:old"])

            # MAXLEN ~ trims whole stream nodes only: write until the first is gone.
            async def trimmed() -> bool:
                for i in range(50):
                    await small.invalidate(f"user:fill-{i}")
                first = await raw.xrange(f"{prefix}!events", "-", "+", count=1)
                return bool(first) and first[0][0].decode() != old

            await eventually(trimmed, timeout=30)
            assert await raw.xlen(f"{prefix}!events") < 400  # bounded, near events_maxlen

            url = server.url + "/cache/events"
            async with http_client() as client:
                async with sse(client, url, {**AUTH, "Last-Event-ID": old}) as stream:
                    reset = await stream.next()
                    assert reset.event == "reset"
                    assert reset.json()["kind"] == "reset"
                    assert reset.id is not None
                    after = await stream.next()
                    assert after.event == "invalidate"
                # Resuming from the reset's id is no gap: no second reset.
                async with sse(client, url, {**AUTH, "Last-Event-ID": reset.id}) as stream:
                    first = await stream.next()
                    assert first.event == "invalidate"
                    assert first.id is not None
    finally:
        await small.clear()
        await small.close()
        await raw.aclose()


@pytest.mark.redis
async def test_auth_and_bad_ids(redis_url: str, prefix: str, tmp_path: Path) -> None:
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with http_client() as client:
            url = server.url + "/cache/events"
            anonymous = await client.get(url)
            assert anonymous.status_code == 401
            assert anonymous.headers["www-authenticate"] == "Bearer"
            assert anonymous.json()["detail"]["error"] == "Unauthorized"
            wrong = await client.get(url, headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 403
            assert wrong.json()["detail"]["error"] == "Forbidden"
            for headers, query in (
                ({"Last-Event-ID": "abc"}, ""),
                ({"Last-Event-ID": "1-2-3"}, ""),
                ({"Last-Event-ID": "99999999999999999999-0"}, ""),  # over 2**64 - 1
                ({}, "?since=x"),
                ({}, "?since="),
                ({}, "?since=" + "9" * 21),
            ):
                bad = await client.get(url + query, headers={**AUTH, **headers})
                assert bad.status_code == 400, (headers, query, bad.text)
                assert bad.json()["detail"]["error"] == "InvalidEventId"
            # The browser route: the app's own auth, not the admin token.
            browser = server.url + "/app/events"
            assert (await client.get(browser)).status_code == 401
            assert (await client.get(browser, headers=AUTH)).status_code == 401
            async with sse(client, browser, {"X-User": "alice"}) as stream:
                assert stream.response.status_code == 200


@pytest.mark.redis
async def test_heartbeats_keep_an_idle_stream_alive(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    with running(redis_url, prefix, tmp_path / "uvicorn.log", heartbeat=0.2) as server:
        async with (
            http_client() as client,
            sse(client, server.url + "/cache/events", AUTH) as stream,
        ):
            beats = [await stream.next(5, comments=True) for _ in range(3)]
            assert [b.comment for b in beats] == ["keep-alive"] * 3
            gaps = [b.received - a.received for a, b in itertools.pairwise(beats)]
            print(f"\nheartbeat gaps (heartbeat=0.2 s): {[round(g, 3) for g in gaps]}")
            # Filtered-out events are not sent: beats go on through them.
            await writer.invalidate("secret:1")
            assert (await stream.next(5, comments=True)).comment == "keep-alive"
            # And an event still comes through between beats.
            await stream.sync(writer)


@pytest.mark.redis
async def test_a_client_that_leaves_leaves_nothing_running(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with http_client() as client:

            async def tasks() -> int:
                reply = await client.get(server.url + "/tasks")
                return int(reply.json()["tasks"])

            idle = await tasks()
            for _ in range(3):
                async with sse(client, server.url + "/cache/events", AUTH) as stream:
                    await stream.sync(writer)
                    assert await tasks() > idle  # the stream and its read are running

                async def back_to_idle() -> bool:
                    return await tasks() == idle

                await eventually(back_to_idle, timeout=10)


@pytest.mark.redis
async def test_an_invalidation_made_once_the_headers_arrive_reaches_the_client(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    """EventSource counts the stream as open when the headers arrive: the server has
    joined the fan-out and knows where its reader starts before it sends them."""
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with http_client() as client:
            for i in range(10):  # each time the first listener: the reader starts anew
                async with sse(client, server.url + "/cache/events", AUTH) as stream:
                    assert stream.response.status_code == 200
                    await writer.invalidate(f"user:first-{i}")
                    frame = await stream.next()
                    assert frame.json()["keys"] == [f"user:first-{i}"]


async def _blocked_reads(client: redis_asyncio.Redis) -> int:
    """How many connections wait in a blocking command (XREAD here) right now: INFO's
    count, which Redis and Valkey both keep (their CLIENT LIST fields differ)."""
    return int((await client.info("clients"))["blocked_clients"])


@pytest.mark.redis
async def test_connections_share_one_reader(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    """Twenty open streams cost one blocking read on Redis, and all get every event."""
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(http_client())
            streams = [
                await stack.enter_async_context(sse(client, server.url + "/cache/events", AUTH))
                for _ in range(20)
            ]
            for stream in streams:
                await stream.sync(writer)
            inspector = redis_asyncio.Redis.from_url(redis_url)
            stack.push_async_callback(inspector.aclose)
            seen = [await _blocked_reads(inspector) for _ in range(50)]
            assert max(seen) == 1, seen  # one reader: the hub's, however many streams
            await writer.invalidate("shared", namespace="user")
            for stream in streams:
                await stream.until_key("user:shared")


def _slow_socket(port: int) -> socket.socket:
    """A connection to the events route that never reads, with a tiny receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /cache/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    return sock


def _read_to_end(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """All the server sent until it closed the connection; fails if it never does."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the server kept the slow connection open")
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            raise AssertionError("the server kept the slow connection open") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _dechunk(response: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response, as far as it was received."""
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    assert b"transfer-encoding: chunked" in head.lower()
    body = []
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        body.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(body)


@pytest.mark.redis
async def test_a_client_that_does_not_read_is_dropped_and_resumes(
    redis_url: str, prefix: str, writer: FallbackCache, tmp_path: Path
) -> None:
    """A stalled client fills its bounded queue and is disconnected, while a reading
    client gets every event; reconnecting from its last id, it misses nothing."""
    with running(redis_url, prefix, tmp_path / "uvicorn.log") as server:
        async with (
            http_client() as client,
            sse(client, server.url + "/cache/events", AUTH) as reader,
        ):
            await reader.sync(writer)
            slow = _slow_socket(server.port)
            try:
                await reader.sync(writer)  # the slow one has subscribed by now too
                # Each event names 2,000 keys (~38 kB): the server's socket buffer (up to
                # 4 MB) fills after ~110 of them, the connection's queue after 256 more.
                batches = 500
                for i in range(batches):
                    await writer.delete_many([f"{i}-{j:04}" for j in range(2000)], "user")
                for i in range(batches):
                    frame = await reader.next()
                    assert frame.json()["keys"][0] == f"user:{i}-0000"
                received = await asyncio.to_thread(_read_to_end, slow)
            finally:
                slow.close()
        frames = [f for f in _dechunk(received).split(b"\n\n") if b"\nevent: invalidate" in f]
        assert 0 < len(frames) < batches  # dropped before the end, not buffered
        complete = [f for f in frames if f.rstrip().endswith(b"}")]
        last_id = complete[-1].split(b"\n")[0].removeprefix(b"id: ").decode()
        last_key = json.loads(complete[-1].split(b"\ndata: ")[1])["keys"][0]
        assert last_key.startswith("user:")
        assert not last_key.startswith("user:sync")
        resumed_from = int(last_key.removeprefix("user:").split("-")[0])
        assert resumed_from < batches - 1
        async with (
            http_client() as client,
            sse(client, server.url + "/cache/events", {**AUTH, "Last-Event-ID": last_id}) as again,
        ):
            first = await again.next()
            assert first.event == "invalidate"
            assert first.json()["keys"][0] == f"user:{resumed_from + 1}-0000"
            await again.until_key(f"user:{batches - 1}-0000", timeout=20)


# -- the route itself, without a server ---------------------------------------------------


def _paths(app: FastAPI) -> set[str]:
    return set(app.openapi()["paths"])


async def test_without_event_namespaces_there_is_no_events_route() -> None:
    cache = FallbackCache(read_env=False, events=True)
    router = create_cache_router(cache, token=TOKEN, manage_lifespan=False)
    assert "/cache/events" not in {getattr(r, "path", None) for r in router.routes}
    app = FastAPI()
    app.include_router(router)
    assert "/cache/events" not in _paths(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/cache/events", headers=AUTH)).status_code == 404


def test_the_events_route_is_described_in_openapi() -> None:
    cache = FallbackCache(read_env=False, events=True)
    app = FastAPI()
    app.include_router(
        create_cache_router(cache, token=TOKEN, manage_lifespan=False, event_namespaces=PUBLIC)
    )
    operation = app.openapi()["paths"]["/cache/events"]["get"]
    content = operation["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]
    data = content["text/event-stream"]["itemSchema"]["properties"]["data"]
    assert {"kind", "time", "keys", "origin"} <= set(data["contentSchema"]["properties"])
    assert {"400", "401", "403"} <= set(operation["responses"])
    params = {p["name"]: p["in"] for p in operation["parameters"]}
    assert params == {"since": "query", "Last-Event-ID": "header"}


@pytest.mark.parametrize(
    "namespaces", [("User",), ("",), ("a" * 65,), ("user", "no space"), "user", (1,)]
)
def test_event_namespaces_are_checked_at_router_creation(namespaces: Any) -> None:
    cache = FallbackCache(read_env=False, events=True)
    with pytest.raises(ConfigurationError):
        create_cache_router(cache, token=TOKEN, event_namespaces=namespaces)


@pytest.mark.parametrize("heartbeat", [0, -1, float("inf"), float("nan"), True])
def test_heartbeat_is_checked_at_router_creation(heartbeat: Any) -> None:
    cache = FallbackCache(read_env=False, events=True)
    with pytest.raises(ConfigurationError):
        create_cache_router(cache, token=TOKEN, event_namespaces=PUBLIC, heartbeat=heartbeat)


async def test_a_cache_without_events_answers_503_and_bad_ids_400() -> None:
    cache = FallbackCache(read_env=False)  # events=False
    app = FastAPI()
    app.include_router(
        create_cache_router(cache, token=TOKEN, manage_lifespan=False, event_namespaces=PUBLIC)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        reply = await client.get("/cache/events", headers=AUTH)
        assert reply.status_code == 503
        assert reply.json()["detail"]["error"] == "ConfigurationError"
        bad = await client.get("/cache/events", headers={**AUTH, "Last-Event-ID": "nope"})
        assert bad.status_code == 400
        assert (await client.get("/cache/events")).status_code == 401
