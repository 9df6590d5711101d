"""python -m chenu_cache: the newcomer's first command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.redis_server import free_port


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHENU_CACHE_REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "chenu_cache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_demo_runs_on_memory_with_no_setup() -> None:
    out = _run("demo")
    assert out.returncode == 0, out.stderr
    assert "serving from: memory" in out.stdout
    assert "loader calls                                   1" in out.stdout
    assert '"backend": "memory"' in out.stdout


@pytest.mark.redis
def test_demo_runs_on_redis(redis_url: str) -> None:
    out = _run("demo", "--redis-url", redis_url)
    assert out.returncode == 0, out.stderr
    assert "serving from: redis" in out.stdout


def test_demo_with_unreachable_redis_falls_back() -> None:
    out = _run("demo", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 0, out.stderr
    assert "memory fallback" in out.stdout


def test_bad_url_is_a_clear_error_without_traceback() -> None:
    out = _run("demo", "--redis-url", "ftp://example")
    assert out.returncode == 2
    assert "error:" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_lists_commands() -> None:
    out = _run("--help")
    assert out.returncode == 0
    assert "demo" in out.stdout


@pytest.fixture
def seeded(redis_url: str) -> str:
    import asyncio

    from chenu_cache import FallbackCache

    async def seed() -> None:
        async with FallbackCache(redis_url=redis_url, prefix="cli-test:") as cache:
            await cache.clear()
            await cache.set_many({f"user:{i}": {"n": i} for i in range(5)})
            await cache.set("plain", "v", ttl=100)

    asyncio.run(seed())
    return redis_url


@pytest.mark.redis
def test_inspection_commands(seeded: str) -> None:
    common = ["--redis-url", seeded, "--prefix", "cli-test:"]
    health = _run("health", *common)
    assert health.returncode == 0
    assert json.loads(health.stdout)["reachable"] is True
    stats = _run("stats", *common)
    assert stats.returncode == 0, stats.stderr
    body = json.loads(stats.stdout)
    assert body["entries"] == 6
    assert body["namespaces"] == {"(none)": 1, "user": 5}
    keys = _run("keys", "user:[0-2]", *common)
    assert sorted(keys.stdout.split()) == ["user:0", "user:1", "user:2"]
    limited = _run("keys", "*", "--limit", "2", *common)
    assert len(limited.stdout.split()) == 2
    got = json.loads(_run("get", "user:3", *common).stdout)
    assert got["key"] == "user:3"
    assert got["value"] == {"n": 3}
    assert 3590 < got["ttl"] <= 3600
    same = _run("get", "3", "--namespace", "user", *common)
    assert json.loads(same.stdout)["value"] == {"n": 3}
    missing = _run("get", "nope", *common)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["health", "--redis-url", "redis://127.0.0.1:1/0"], 1, None),
        (["stats", "--redis-url", "redis://user:hunter2@127.0.0.1:1/0"], 1, "does not answer"),
        (["keys", "--redis-url", "ftp://nowhere"], 2, "invalid Redis URL"),
        (["get", "k"], 2, "no Redis URL"),
    ],
)
def test_inspection_errors_are_clear_and_without_traceback(
    args: list[str], status: int, message: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHENU_CACHE_REDIS_URL", raising=False)
    out = _run(*args)
    assert out.returncode == status
    assert "Traceback" not in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
    if message:
        assert message in out.stderr


@pytest.mark.redis
def test_bad_pattern_is_a_clear_error(redis_url: str) -> None:
    out = _run("keys", "user:[abc", "--redis-url", redis_url)
    assert out.returncode == 2
    assert "error:" in out.stderr
    assert "Traceback" not in out.stderr
