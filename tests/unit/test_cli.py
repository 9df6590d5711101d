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


# -- usage errors ----------------------------------------------------------------------


def test_no_command_prints_help_and_is_a_usage_error() -> None:
    out = _run()
    assert out.returncode == 2
    assert "usage:" in out.stderr
    assert "demo" in out.stderr  # the full help, with its list of commands


@pytest.mark.parametrize("limit", ["0", "-5", "many"])
def test_keys_limit_below_one_is_a_usage_error(limit: str) -> None:
    out = _run("keys", "--limit", limit, "--redis-url", "redis://127.0.0.1:1/0")
    assert out.returncode == 2
    assert out.stdout == ""
    assert "argument --limit: must be a whole number, 1 or more" in out.stderr


# Internal names a user of the CLI never typed: the options' own names must be used.
INTERNAL_NAMES = ("operation_timeout", "connect_timeout", "max_connections", "clear()", "_")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["health", "--timeout", "0"], "--timeout"),
        (["stats", "--timeout", "-1"], "--timeout"),
        (["keys", "--timeout", "nan"], "--timeout"),
        (["get", "k", "--timeout", "inf"], "--timeout"),
        (["health", "--timeout", "soon"], "--timeout"),
        (["health", "--prefix", ""], "--prefix"),
        (["stats", "--prefix", "has space"], "--prefix"),
        (["stats", "--max-scan", "0"], "--max-scan"),
        (["keys", "--limit", "0"], "--limit"),
    ],
)
def test_bad_option_values_are_named_by_their_option(args: list[str], option: str) -> None:
    out = _run(*args, "--redis-url", "redis://127.0.0.1:1/0")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    message = out.stderr.strip().splitlines()[-1]
    assert f"argument {option}:" in message
    # The message proper, after "argument --x:", speaks of nothing internal.
    said = message.partition(f"argument {option}:")[2]
    for name in INTERNAL_NAMES:
        assert name not in said, message


# -- the demo's summary ----------------------------------------------------------------


def _summary(stdout: str) -> dict[str, str]:
    """The demo's statistics summary: the step lines between its heading and the JSON."""
    section = stdout.partition("6. statistics\n")[2].partition("\n{")[0]
    lines = {}
    for line in section.splitlines():
        label, _, value = line.strip().partition("  ")
        lines[label] = value.strip()
    return lines


def test_demo_summarises_its_statistics_before_the_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from chenu_cache._cli import main

    assert main(["demo"]) == 0
    stdout = capsys.readouterr().out
    summary = _summary(stdout)
    assert summary["backend serving calls"] == "memory"
    assert summary["hit rate"] == "5% of 55 lookups (3 hits, 52 misses)"
    assert summary["loader calls"] == "2 (single flight saved 49 loads)"
    assert "failovers / failbacks" not in summary  # only shown when there were any
    stats = json.loads("{" + stdout.partition("\n{")[2])  # the JSON still follows
    assert stats["loader"] == {
        "calls": 2,
        "errors": 0,
        "coalesced": 49,
        "refreshes": 0,
        "refreshFailures": 0,
        "staleServed": 0,
        "fenced": 0,
        "notCached": 0,
    }
    assert "serving from: memory" in stdout  # the walkthrough before it is unchanged


def test_demo_summary_shows_failovers_when_there_were_some() -> None:
    out = _run("demo", "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 0, out.stderr
    summary = _summary(out.stdout)
    assert summary["backend serving calls"] == "memory"
    assert summary["failovers / failbacks"].startswith("1 / 0 (")
