"""``python -m chenu_cache``: a walkthrough of the library, runnable with no set-up."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from . import __version__
from .exceptions import CacheError
from .facade import FallbackCache

DEMO_PREFIX = "chenu-demo:"


def _say(step: str, detail: object = "") -> None:
    print(f"  {step:<46} {detail}")


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
        stats = (await cache.get_statistics()).to_dict()
        print(json.dumps(stats, indent=2))
        await cache.clear()
    return 0


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
    demo.add_argument("--redis-url", help="run on this Redis (redis://, rediss://, unix://)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            return asyncio.run(_demo(args.redis_url))
    except CacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head`, say
        return 0
    parser.error(f"unknown command {args.command!r}")  # exits with status 2
