"""Invalidation delay across processes: a write returns in one, when does another see it?

    python -m benchmarks.near_delay            # 500 writes per contestant
    python -m benchmarks.near_delay --quick    # 100 writes

This process writes versioned values with plain redis-py (the bytes the reader's library
would store). A reader process with a near cache polls the key, yielding to its event
loop between reads, and reports when it first reads each new version. Both stamp
``time.monotonic_ns()``: CLOCK_MONOTONIC, one clock for every process on Linux. The delay
is the reader's first read of a version minus the moment the writer's SET returned
(negative: the reader saw it before the writer's reply arrived). Target for chenu-cache:
p99 <= 5 ms. Starts its own redis-server unless given ``--redis-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis_asyncio
from tests.redis_server import RedisServer

from benchmarks.near_cache import (
    CASHEWS,
    CASHEWS_PREFIX,
    CHENU_NEAR,
    CHENU_PREFIX,
    ROOT,
    cashews_available,
    cashews_encode,
    open_cashews,
    open_chenu,
    until_coherent,
)
from chenu_cache import FallbackCache

KEY = "delay:k"
STOP = 999_999_999  # the version that tells the reader to report and exit (digits: cashews)


def _layout(kind: str) -> tuple[str, Callable[[Any], bytes]]:
    """Where and how the reader's library stores the key: its Redis key and encoding."""
    if kind == "chenu":
        return CHENU_PREFIX + KEY, FallbackCache(read_env=False).codec.encode
    return CASHEWS_PREFIX + KEY, cashews_encode


async def reader_main(url: str, kind: str) -> None:
    reader = await (open_chenu(url, near=True) if kind == "chenu" else open_cashews(url))
    await until_coherent(reader, KEY)
    last = await reader.get(KEY)
    print("ready", flush=True)
    while True:
        value = await reader.get(KEY)
        if value != last:
            seen = time.monotonic_ns()
            last = value
            if value == STOP:
                break
            print(value, seen, flush=True)
        await asyncio.sleep(0)  # as a server would between requests: lets invalidations in
    stats = reader.near_stats()
    print(json.dumps(stats.to_dict() if stats is not None else {}), flush=True)
    await reader.close()


@contextlib.asynccontextmanager
async def reader_process(url: str, kind: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.near_delay",
        "--reader",
        kind,
        url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@dataclass
class Delays:
    name: str
    delays_ms: list[float] = field(default_factory=list)
    unseen: int = 0
    reader_stats: dict[str, Any] = field(default_factory=dict)


async def measure(url: str, kind: str, writes: int, timeout: float = 2.0) -> Delays:
    raw_key, encode = _layout(kind)
    out = Delays(CHENU_NEAR if kind == "chenu" else CASHEWS)
    client = redis_asyncio.Redis.from_url(url)
    await client.set(raw_key, encode(0), ex=3600)
    try:
        async with reader_process(url, kind) as reader:
            assert reader.stdout is not None
            line = await asyncio.wait_for(reader.stdout.readline(), 30)
            if line.strip() != b"ready":
                raise RuntimeError(f"reader did not start: {line!r}")
            for version in range(1, writes + 1):
                await client.set(raw_key, encode(version), ex=3600)
                returned = time.monotonic_ns()
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        line = await asyncio.wait_for(
                            reader.stdout.readline(), max(0.0, deadline - time.monotonic())
                        )
                    except asyncio.TimeoutError:
                        out.unseen += 1
                        break
                    if not line:
                        raise RuntimeError("the reader process exited")
                    seen_version, seen = map(int, line.split())
                    if seen_version == version:
                        out.delays_ms.append((seen - returned) / 1e6)
                        break
                # Let the reader read the new version back into its near cache.
                await asyncio.sleep(random.uniform(0.002, 0.005))
            await client.set(raw_key, encode(STOP), ex=3600)
            line = await asyncio.wait_for(reader.stdout.readline(), 10)
            out.reader_stats = json.loads(line)
            await asyncio.wait_for(reader.wait(), 10)
    finally:
        await client.delete(raw_key)
        await client.aclose()
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def render(rows: list[Delays]) -> str:
    lines = [
        "### Invalidation delay: write returns in one process, first read of it in another",
        "",
        "| contestant | writes seen | p50 | p99 | max | min | not seen in 2 s "
        "| reader's near cache |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        d = row.delays_ms
        stats = row.reader_stats
        near = (
            f"{stats['hits']:,} hits, {stats['misses']:,} misses, "
            f"{stats['invalidations']:,} invalidations, {stats['flushes']} flushes"
            if "hits" in stats
            else "-"
        )
        quantiles = [statistics.median(d), _quantile(d, 0.99), max(d), min(d)] if d else []
        figures = [f"{q:.3f} ms" for q in quantiles] or ["-"] * 4
        lines.append(f"| {row.name} | {len(d)} | {' | '.join(figures)} | {row.unseen} | {near} |")
    return "\n".join(lines)


async def run(url: str, writes: int) -> str:
    kinds = ["chenu", "cashews"] if cashews_available() else ["chenu"]
    return render([await measure(url, kind, writes) for kind in kinds])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="100 writes")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--reader", nargs=2, metavar=("KIND", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader:
        asyncio.run(reader_main(args.reader[1], args.reader[0]))
        return
    writes = 100 if args.quick else args.writes
    started = time.perf_counter()
    if args.redis_url:
        report = asyncio.run(run(args.redis_url, writes))
    else:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH"
        with RedisServer(binary) as server:
            report = asyncio.run(run(server.url, writes))
    print(report)
    print(f"\n(took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
