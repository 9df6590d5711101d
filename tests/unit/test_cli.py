"""python -m chenu_cache: the newcomer's first command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.redis_server import free_port


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chenu_cache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
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
