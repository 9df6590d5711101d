"""Observability (SPEC §18): what a memory hit costs with the collectors and spans on.

    python -m benchmarks.observability            # 7 interleaved repetitions
    python -m benchmarks.observability --quick    # 3 repetitions, fewer calls

Needs prometheus_client, opentelemetry-api and opentelemetry-sdk. Memory-only caches
(no Redis), one per configuration, all warmed first; two workloads per cache, a plain
hit (``await cache.get(key)``) and a decorated hit (``await f(i)``), each over 1,000
keys. Configurations run interleaved (A B C ... B C A ...: each repetition starts one
further) and each figure is the median of the repetitions, in microseconds per call;
the ratio is to the same workload with instrumentation off, measured in the same run
(1.00: free). SPEC §18's budget is "on costs at most a tenth of a memory hit", i.e. a
ratio of at most 1.10. The configurations that run the very code of ``off`` (the
collectors, the no-op provider) show how much of a ratio is noise on this machine.
Prints a markdown report; writes no file.

- ``off``: nothing registered or instrumented (what every user gets by default).
- ``prometheus``: the collector registered (scraped once, before timing; a scrape does
  not touch the hit path, so scraping during the run would measure only the GIL).
- ``otel metrics``: ``instrument(spans=False)`` on an SDK MeterProvider.
- ``otel spans, API only``: no SDK configured (the API's global proxy tracer provider).
- ``otel spans, no-op provider``: ``NoOpTracerProvider`` given (nothing is wrapped).
- ``otel spans, SDK sampler off``: an SDK TracerProvider whose sampler drops everything.
- ``otel spans, SDK, no exporter``: an SDK TracerProvider that records every span, with
  no span processor (the cost of making spans, without exporting them).
- ``... nowait_spans=False``: the same, without spans on the decorator's memory hits.

Then, for scale, plain ``get()`` hits on a redis-server the script starts on a free
loopback port (skipped, with a note, when ``redis-server`` is not on PATH): off, SDK
spans sampled out, SDK spans recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from tests.redis_server import RedisServer

from chenu_cache import FallbackCache
from chenu_cache.contrib.otel import instrument
from chenu_cache.contrib.prometheus import register

KEYS = 1000
VALUE = {"id": 7, "name": "Ada Lovelace", "plan": "pro", "active": True}
BUDGET = 1.10  # SPEC §18: on costs at most a tenth of a memory hit


@dataclass
class Config:
    name: str
    setup: Callable[[FallbackCache], Any]
    cache: FallbackCache = field(default_factory=lambda: FallbackCache(read_env=False))
    get: list[float] = field(default_factory=list)
    decorated: list[float] = field(default_factory=list)


def _configs() -> list[Config]:
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    recording = TracerProvider()  # no span processor: spans are made, then dropped
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)

    def prometheus(cache: FallbackCache) -> None:
        registry = CollectorRegistry()
        register(cache, registry)
        generate_latest(registry)

    return [
        Config("off", lambda cache: None),
        Config("prometheus collector", prometheus),
        Config(
            "otel metrics",
            lambda cache: instrument(cache, meter_provider=meters, spans=False),
        ),
        Config("otel spans, API only", lambda cache: instrument(cache, metrics=False)),
        Config(
            "otel spans, no-op provider",
            lambda cache: instrument(cache, tracer_provider=NoOpTracerProvider(), metrics=False),
        ),
        Config(
            "otel spans, SDK sampler off",
            lambda cache: instrument(cache, tracer_provider=sampled_out, metrics=False),
        ),
        Config(
            "otel spans, SDK, no exporter",
            lambda cache: instrument(cache, tracer_provider=recording, metrics=False),
        ),
        Config(
            "otel spans, SDK, no exporter, nowait_spans=False",
            lambda cache: instrument(
                cache, tracer_provider=recording, metrics=False, nowait_spans=False
            ),
        ),
    ]


async def _micros(call: Callable[[int], Awaitable[object]], calls: int) -> float:
    """Microseconds per call of ``call`` over ``calls`` calls, keys in turn."""
    gc.collect()
    start = time.perf_counter()
    for i in range(calls):
        await call(i % KEYS)
    return (time.perf_counter() - start) / calls * 1e6


async def run(repetitions: int, calls: int) -> list[Config]:
    configs = _configs()
    workloads: list[
        tuple[Config, Callable[[int], Awaitable[object]], Callable[[int], Awaitable[object]]]
    ] = []
    for config in configs:
        cache = config.cache
        config.setup(cache)
        keys = [f"user:{i}" for i in range(KEYS)]
        await cache.set_many(dict.fromkeys(keys, VALUE))

        @cache.cached(ttl=3600, namespace="profile")
        async def profile(uid: int) -> dict[str, Any]:
            return {**VALUE, "id": uid}

        async def get(i: int, cache: FallbackCache = cache, keys: list[str] = keys) -> object:
            return await cache.get(keys[i])

        for i in range(KEYS):  # warm: every call below is a hit
            await profile(i)
            assert await get(i) == VALUE
        workloads.append((config, get, profile))
    for rep in range(repetitions):
        # A different configuration goes first each time: no one always follows the
        # garbage the recording spans leave behind.
        turn = rep % len(workloads)
        for config, get, profile in workloads[turn:] + workloads[:turn]:
            config.get.append(await _micros(get, calls))
            config.decorated.append(await _micros(profile, calls))
    for config in configs:
        stats = config.cache.statistics()
        assert stats.misses == 0 or stats.misses == KEYS, stats.misses  # the warm-up only
    return configs


async def run_redis(url: str, repetitions: int, calls: int) -> list[Config]:
    """Plain hits on Redis: off, spans sampled out, spans recorded (SDK, no exporter)."""
    recording = TracerProvider()
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)
    configs = [
        Config("off", lambda cache: None),
        Config(
            "otel spans, SDK sampler off",
            lambda cache: instrument(cache, tracer_provider=sampled_out, metrics=False),
        ),
        Config(
            "otel spans, SDK, no exporter",
            lambda cache: instrument(cache, tracer_provider=recording, metrics=False),
        ),
    ]
    keys = [f"user:{i}" for i in range(100)]
    for number, config in enumerate(configs):
        config.cache = FallbackCache(url, prefix=f"bench-obs-{number}:", read_env=False)
        await config.cache.initialize()
        config.setup(config.cache)
        await config.cache.set_many(dict.fromkeys(keys, VALUE))
    try:
        for rep in range(repetitions):
            turn = rep % len(configs)
            for config in configs[turn:] + configs[:turn]:
                cache = config.cache

                async def get(i: int, cache: FallbackCache = cache) -> object:
                    return await cache.get(keys[i % len(keys)])

                config.get.append(await _micros(get, calls))
    finally:
        for config in configs:
            await config.cache.clear()
            await config.cache.close()
    return configs


def _report_redis(configs: list[Config], repetitions: int, calls: int) -> str:
    off = statistics.median(configs[0].get)
    lines = [
        "### For scale: get() hits on Redis (loopback)",
        "",
        f"Medians of {repetitions} interleaved repetitions of {calls:,} calls.",
        "",
        "| configuration | get() hit, µs | ratio | added, µs |",
        "|---|---|---|---|",
    ]
    for config in configs:
        get = statistics.median(config.get)
        lines.append(f"| {config.name} | {get:.1f} | {get / off:.2f} | {get - off:+.1f} |")
    return "\n".join(lines)


def _report(configs: list[Config], repetitions: int, calls: int) -> str:
    base = configs[0]
    lines = [
        "## Observability: cost on a memory hit",
        "",
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs ({platform.machine()}); "
        f"medians of {repetitions} interleaved repetitions of {calls:,} calls; "
        f"memory-only cache, {KEYS:,} keys.",
        "",
        "Versions: "
        + ", ".join(
            f"{name} {_version(name)}"
            for name in ("chenu-cache", "prometheus_client", "opentelemetry-sdk")
        )
        + ".",
        "",
        "| configuration | get() hit, µs | ratio | decorated hit, µs | ratio |",
        "|---|---|---|---|---|",
    ]
    off_get = statistics.median(base.get)
    off_deco = statistics.median(base.decorated)
    for config in configs:
        get = statistics.median(config.get)
        deco = statistics.median(config.decorated)
        lines.append(
            f"| {config.name} | {get:.2f} | {get / off_get:.2f} | "
            f"{deco:.2f} | {deco / off_deco:.2f} |"
        )
    lines += ["", f"Budget (SPEC §18): ratio <= {BUDGET:.2f}."]
    for config in configs[1:]:
        worst = max(
            statistics.median(config.get) / off_get,
            statistics.median(config.decorated) / off_deco,
        )
        verdict = "met" if worst <= BUDGET else "NOT met"
        lines.append(f"- {config.name}: {verdict} (worst ratio {worst:.2f})")
    return "\n".join(lines)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "(source tree)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, fewer calls")
    parser.add_argument("--repetitions", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None)
    args = parser.parse_args()
    repetitions = args.repetitions or (3 if args.quick else 7)
    calls = args.calls or (10_000 if args.quick else 30_000)
    configs = await run(repetitions, calls)
    print(_report(configs, repetitions, calls))
    print()
    binary = shutil.which("redis-server")
    if binary is None:
        print("(redis-server is not on PATH: no Redis figures)")
        return
    server = RedisServer(binary)
    server.start()
    try:
        redis_calls = max(calls // 10, 1_000)
        on_redis = await run_redis(server.url, repetitions, redis_calls)
    finally:
        server.close()  # stops the server, always
    print(_report_redis(on_redis, repetitions, redis_calls))


if __name__ == "__main__":
    asyncio.run(main())
