"""``python -m chenu_cache``: a walkthrough (``demo``) and inspection of a running cache."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import __version__
from ._facade import ENV_REDIS_URL, FallbackCache
from ._types import MISSING
from .backends.redis import RedisBackend
from .exceptions import BackendError, CacheError, ConfigurationError
from .stats import CacheStatistics

DEMO_PREFIX = "chenu-demo:"
URL_SCHEMES = (
    "redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, "
    "redis+sentinel://, rediss+sentinel://"
)


def _say(step: str, detail: object = "") -> None:
    print(f"  {step:<46} {detail}")


def _summary(stats: CacheStatistics) -> None:
    """The statistics a newcomer looks for, in words, before the full JSON."""
    lookups = stats.hits + stats.misses
    _say("backend serving calls", stats.backend)
    _say(
        "hit rate",
        f"{stats.hit_rate:.0%} of {lookups} lookups ({stats.hits} hits, {stats.misses} misses)",
    )
    loader = stats.loader
    _say("loader calls", f"{loader.calls} (single flight saved {loader.coalesced} loads)")
    failover = stats.failover
    if failover.failovers or failover.failbacks:
        _say(
            "failovers / failbacks",
            f"{failover.failovers} / {failover.failbacks} "
            f"({failover.time_on_fallback:.1f} s on the memory fallback)",
        )


async def _demo(redis_url: str | None) -> int:
    cache = FallbackCache(redis_url=redis_url, prefix=DEMO_PREFIX, read_env=False)
    async with cache:
        where = cache.backend.name
        print(f"chenu-cache {__version__} demo, serving from: {where}")
        if redis_url and where != "redis":
            print("  (Redis did not answer; the demo runs on the memory fallback)")
        await cache.clear()

        print("\n1. set and get")
        await cache.set("greeting", {"text": "hello", "tags": ["a", "b"]}, ttl=60)
        _say('set("greeting", {...}, ttl=60)')
        _say('get("greeting")', await cache.get("greeting"))
        _say('get("absent", default="fallback")', await cache.get("absent", default="fallback"))

        print("\n2. namespaces are key prefixes with their own TTLs")
        await cache.set("123", {"name": "Ada"}, namespace="user")
        _say('set("123", {...}, namespace="user")')
        _say('get("user:123")', await cache.get("user:123"))
        _say('ttl("user:123") (the "user" namespace: 1 h)', f"{await cache.ttl('user:123'):.0f} s")
        await cache.set("q", ["r1", "r2"], namespace="search")
        _say(
            'ttl("search:q") (the "search" namespace: 5 min)',
            f"{await cache.ttl('search:q'):.0f} s",
        )

        print("\n3. get_or_set: 50 concurrent misses, one loader call")
        calls = 0

        async def load_report() -> dict[str, int]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return {"rows": 42}

        start = time.perf_counter()
        results = await asyncio.gather(
            *(cache.get_or_set("analytics:report", load_report) for _ in range(50))
        )
        elapsed = (time.perf_counter() - start) * 1000
        _say("results all equal", all(r == {"rows": 42} for r in results))
        _say("loader calls", calls)
        _say("wall time", f"{elapsed:.0f} ms")

        print("\n4. the decorator")

        @cache.cached(namespace="user")
        async def get_user(user_id: str) -> dict[str, str]:
            await asyncio.sleep(0.02)
            return {"id": user_id, "name": f"user {user_id}"}

        for attempt in ("first call (miss)", "second call (hit)"):
            start = time.perf_counter()
            await get_user("42")
            _say(attempt, f"{(time.perf_counter() - start) * 1000:.2f} ms")
        _say("its key", get_user.key("42"))
        _say('await get_user.invalidate("42")', await get_user.invalidate("42"))

        print("\n5. invalidation")
        await cache.set_many({"user:1": 1, "user:2": 2, "agent:1": 3})
        _say('invalidate_pattern("user:?")', await cache.invalidate_pattern("user:?"))
        _say('invalidate_namespace("agent")', await cache.invalidate_namespace("agent"))
        _say('invalidate("greeting")', await cache.invalidate("greeting"))

        print("\n6. statistics")
        stats = await cache.get_statistics()
        _summary(stats)
        print("  every counter, as get_statistics().to_dict() gives it:")
        print(json.dumps(stats.to_dict(), indent=2))
        await cache.clear()
    return 0


class _Unreachable(BackendError):
    """Redis did not answer an inspection command (exit status 1, no traceback)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more; got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # Checked here so that the message names the option, not the backend's parameter.
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds greater than 0, e.g. 2 or 0.5; got {text!r}"
        )
    return value


def _prefix(text: str) -> str:
    if not text or not text.isprintable() or " " in text:
        raise argparse.ArgumentTypeError(
            f"must be non-empty, without spaces or control characters; got {text!r}"
        )
    return text


def _redact(url: str) -> str:
    """The URL without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _url(args: argparse.Namespace) -> str:
    url: str | None = args.redis_url or os.environ.get(ENV_REDIS_URL)
    if not url:
        raise ConfigurationError(f"no Redis URL: pass --redis-url or set {ENV_REDIS_URL}")
    return url


async def _connected(args: argparse.Namespace) -> FallbackCache:
    """A cache on the Redis of ``args``, checked to answer (no silent memory fallback)."""
    url = _url(args)
    backend = RedisBackend(url, prefix=args.prefix, operation_timeout=args.timeout)
    try:
        await backend.ping()
    except BackendError as exc:
        await backend.close()
        raise _Unreachable(f"Redis at {_redact(url)} does not answer: {exc}") from None
    return FallbackCache(primary=backend, prefix=args.prefix, read_env=False)


async def _health(args: argparse.Namespace) -> int:
    url = _url(args)
    backend = RedisBackend(url, prefix=args.prefix, operation_timeout=args.timeout)
    try:
        latency = await backend.ping()
        report = {"redis": _redact(url), "reachable": True, "latencyMs": round(latency * 1e3, 3)}
    except BackendError as exc:
        report = {"redis": _redact(url), "reachable": False, "error": str(exc)}
    finally:
        await backend.close()
    print(json.dumps(report, indent=2))
    return 0 if report["reachable"] else 1


async def _stats(args: argparse.Namespace) -> int:
    cache = await _connected(args)
    try:
        stats = (await cache.get_statistics()).to_dict()
        per_namespace: dict[str, int] = {}
        entries, cursor, capped = 0, 0, False
        while True:
            cursor, keys = await cache.scan("*", cursor, 1000)
            for key in keys:
                namespace = key.partition(":")[0] if ":" in key else "(none)"
                per_namespace[namespace] = per_namespace.get(namespace, 0) + 1
            entries += len(keys)
            if cursor == 0:
                break
            if entries >= args.max_scan:
                capped = True
                break
        report = {
            "prefix": args.prefix,
            "usedMemory": stats["redis"]["usedMemory"],
            "connectedClients": stats["redis"]["connectedClients"],
            "entries": entries,
            "entriesCapped": capped,
            "namespaces": dict(sorted(per_namespace.items())),
        }
        print(json.dumps(report, indent=2))
    finally:
        await cache.close()
    return 0


async def _keys(args: argparse.Namespace) -> int:
    cache = await _connected(args)
    try:
        shown, cursor = 0, 0
        while shown < args.limit:
            cursor, keys = await cache.scan(args.pattern, cursor, min(1000, args.limit))
            for key in keys[: args.limit - shown]:
                print(key)
            shown += min(len(keys), args.limit - shown)
            if cursor == 0:
                break
    finally:
        await cache.close()
    return 0


async def _get(args: argparse.Namespace) -> int:
    cache = await _connected(args)
    try:
        value = await cache.get(args.key, namespace=args.namespace, default=MISSING)
        if value is MISSING:
            print(f"not found: {args.key}", file=sys.stderr)
            return 1
        ttl = await cache.ttl(args.key, namespace=args.namespace)
        remaining = None if ttl is None or math.isinf(ttl) else round(ttl, 3)
        print(
            json.dumps({"key": args.key, "ttl": remaining, "value": value}, indent=2, default=repr)
        )
    finally:
        await cache.close()
    return 0


def _inspection(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    command.add_argument("--redis-url", help=f"the Redis to inspect (default: ${ENV_REDIS_URL})")
    command.add_argument(
        "--prefix", type=_prefix, default="chenu:", help="the cache's key prefix (chenu:)"
    )
    command.add_argument(
        "--timeout", type=_seconds, default=2.0, help="seconds to wait for Redis (default 2)"
    )
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chenu_cache",
        description="chenu-cache: async Redis caching with an in-process fallback.",
    )
    parser.add_argument("--version", action="version", version=f"chenu-cache {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="walk through the API (memory backend unless --redis-url is given)",
        description="Walk through set/get, namespaces, get_or_set, the decorator, "
        f"invalidation and statistics. Keys live under the prefix {DEMO_PREFIX!r}.",
    )
    demo.add_argument("--redis-url", help=f"run on this Redis ({URL_SCHEMES})")
    _inspection(commands, "health", "is the Redis reachable, and how fast does it answer")
    stats = _inspection(commands, "stats", "memory, clients and entries per namespace")
    stats.add_argument(
        "--max-scan", type=_positive_int, default=100_000, help="stop counting here (100000)"
    )
    keys = _inspection(commands, "keys", "list keys matching a Redis glob (logical keys)")
    keys.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'user:*'")
    keys.add_argument(
        "--limit", type=_positive_int, default=100, help="at most this many, 1 or more (100)"
    )
    get = _inspection(commands, "get", "print a key's value and remaining TTL as JSON")
    get.add_argument("key")
    get.add_argument("--namespace", help="the key's namespace, if not written in the key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # Status 2, as for any usage error: a script that forgot its command must not pass.
        parser.print_help(sys.stderr)
        return 2
    commands = {"demo": lambda: _demo(args.redis_url), "health": lambda: _health(args)}
    commands.update(stats=lambda: _stats(args), keys=lambda: _keys(args), get=lambda: _get(args))
    try:
        return asyncio.run(commands[args.command]())
    except _Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head`, say
        return 0
