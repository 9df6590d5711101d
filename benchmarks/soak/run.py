"""``python -m benchmarks.soak``: start Redis, a proxy, the workers and the chaos; check.

Exits 0 when every invariant held, 1 on a violation (the seed is printed to replay the
same operation mix and fault schedule; timing, and so interleavings, still vary), 2 when
the soak itself could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import pickle
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from tests.redis_server import RedisServer, redis_server_binary
from tests.tcp_proxy import TcpProxy

from benchmarks.soak import layout as L
from benchmarks.soak.chaos import Chaos, Fault
from benchmarks.soak.check import check, summary
from benchmarks.soak.worker import worker_main

STARTUP = 5.0  # seconds the workers get to spawn, import and connect
GRACE = 60.0  # past the run's end, after which a worker is killed


def parse(argv: list[str] | None) -> tuple[L.Settings, str | None]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=None, help="default: random, printed")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--tasks", type=int, default=32)
    p.add_argument("--keys", type=int, default=3000)
    p.add_argument("--operation-timeout", type=float, default=0.25)
    p.add_argument("--probe-interval", type=float, default=0.25)
    p.add_argument("--probe-max-interval", type=float, default=5.0)
    p.add_argument("--outage-ttl-cap", type=float, default=10.0)
    p.add_argument("--ttl", type=float, default=120.0)
    p.add_argument("--think", type=float, default=0.05, help="mean pause between ops, s")
    p.add_argument("--loader-delay", type=float, default=0.005, help="max loader time, s")
    p.add_argument("--rss-limit-mb", type=float, default=400.0)
    p.add_argument(
        "--near-cache",
        choices=("all", "half", "none"),
        default="half",
        help="workers reading through a near cache (half: even ids)",
    )
    p.add_argument("--json", default=None, help="write the summary here too")
    a = p.parse_args(argv)
    if a.workers < 1 or a.tasks < 1 or a.keys < L.GROUP_SIZE or a.seconds <= 0:
        p.error("need --workers >= 1, --tasks >= 1, --keys >= 50, --seconds > 0")
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**31)
    settings = L.Settings(
        seconds=a.seconds,
        seed=seed,
        workers=a.workers,
        tasks=a.tasks,
        keys=a.keys,
        operation_timeout=a.operation_timeout,
        probe_interval=a.probe_interval,
        probe_max_interval=a.probe_max_interval,
        outage_ttl_cap=a.outage_ttl_cap,
        ttl=a.ttl,
        think=a.think,
        loader_delay=a.loader_delay,
        rss_limit_mb=a.rss_limit_mb,
        near_cache=a.near_cache,
    )
    return settings, a.json


async def soak(settings: L.Settings, binary: str, folder: str) -> tuple[list[Any], list[Fault]]:
    server = RedisServer(binary, extra_args=["--enable-debug-command", "local"])
    proxy = TcpProxy(server.host, server.port)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process running threads
    processes: list[multiprocessing.process.BaseProcess] = []
    everyone = tuple(range(settings.workers))
    proxied = tuple(w for w in everyone if w % 2 == 1) or everyone
    chaos = Chaos(server, proxy, proxied, everyone, random.Random(settings.seed))
    try:
        server.start()
        await proxy.start()
        db = ctx.RawArray("q", settings.keys)
        start_at = time.monotonic() + STARTUP
        for wid in everyone:
            url = proxy.url if wid in proxied else server.url
            out = os.path.join(folder, f"worker-{wid}.pickle")
            process = ctx.Process(
                target=worker_main,
                args=(wid, url, db, settings, start_at, out),
                name=f"soak-worker-{wid}",
            )
            process.start()
            processes.append(process)
        end = start_at + settings.seconds
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        await asyncio.wait_for(chaos.run(end), settings.seconds + 30)
        deadline = end + GRACE
        for process in processes:
            await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
        return await asyncio.to_thread(_collect, folder, processes), chaos.faults
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        proxy.heal()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proxy.close(), 5)
        server.close()


def _collect(folder: str, processes: list[multiprocessing.process.BaseProcess]) -> list[Any]:
    results = []
    for wid, process in enumerate(processes):
        path = os.path.join(folder, f"worker-{wid}.pickle")
        if not os.path.exists(path):
            raise RuntimeError(f"worker {wid} left no history (exit code {process.exitcode})")
        with open(path, "rb") as fh:
            results.append(pickle.load(fh))  # noqa: S301 -- our own workers wrote it
    return results


def render(settings: L.Settings, faults: list[Fault], data: dict[str, Any]) -> str:
    lines = [
        f"soak: {settings.seconds:.0f} s, {settings.workers} workers x {settings.tasks} tasks, "
        f"{settings.keys} rows, seed {settings.seed}",
        "faults: "
        + ", ".join(f"{k} {n}" for k, n in sorted(Counter(f.kind for f in faults).items())),
        f"operations: {data['total_operations']} "
        f"({data['total_operations'] / settings.seconds:.0f}/s) {data['operations']}",
        f"errors to callers: {sum(data['errors'].values())} {data['errors'] or ''}",
        f"reads: {data['reads']}, misses {data['misses']}, cross-process stale "
        f"{data['stale_reads']} {data['stale_by_phase']}, staleness {data['staleness_s']}",
        f"transitions: {data['transitions']}",
    ]
    for phase, lat in data["latency_ms"].items():
        lines.append(
            f"latency {phase:8}: {lat['ops']:8} ops  p50 {lat['p50']:8.3f} ms  "
            f"p99 {lat['p99']:8.3f} ms  max {lat['max']:9.3f} ms"
        )
    lines.extend(
        f"worker {r['worker']:.0f} RSS: warm {r['warm_mb']} MB, peak {r['peak_mb']} MB, "
        f"last {r['last_mb']} MB"
        for r in data["rss_mb"]
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    settings, json_path = parse(argv)
    binary = redis_server_binary()
    if binary is None:
        print("soak: redis-server not found (PATH or CHENU_CACHE_REDIS_SERVER)", file=sys.stderr)
        return 2

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(f"soak: signal {signum}, cleaning up")

    signal.signal(signal.SIGTERM, terminated)
    folder = tempfile.mkdtemp(prefix="chenu-soak-")
    replay = (
        f"python -m benchmarks.soak --seconds {settings.seconds:g} --seed {settings.seed} "
        f"--workers {settings.workers} --tasks {settings.tasks} --keys {settings.keys}"
    )
    print(f"soak: seed {settings.seed}; replay with: {replay}", flush=True)
    try:
        results, faults = asyncio.run(soak(settings, binary, folder))
    except Exception as exc:
        print(f"soak: could not run ({exc!r}); seed {settings.seed}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report = check(settings, results, faults)
    data = summary(report)
    data["settings"] = asdict(settings)
    data["faults"] = [asdict(f) for f in faults]
    data["faults_by_kind"] = dict(Counter(f.kind for f in faults))
    data["worker_statistics"] = {r["wid"]: r["statistics"] for r in results}
    data["violation_details"] = [str(v) for v in report.violations[:50]]
    data["tracebacks"] = [t for r in results for t in r["tracebacks"]][:5]
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
    print(render(settings, faults, data))
    if report.violations:
        print(f"\nsoak: {len(report.violations)} VIOLATION(S), seed {settings.seed}:")
        for v in report.violations[:20]:
            print(f"  - {v}")
        for t in data["tracebacks"]:
            print(t)
        print(f"replay: {replay}")
        return 1
    print(f"soak: OK (seed {settings.seed})")
    return 0
