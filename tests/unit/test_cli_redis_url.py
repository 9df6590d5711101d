"""A Redis URL with a scheme chenu-cache does not read: the error lists every one it does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chenu_cache import ConfigurationError, FallbackCache, RedisBackend

SCHEMES = [
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
    "rediss+sentinel://",
]


@pytest.mark.parametrize("url", ["ftp://example", "localhost:6379", "http://127.0.0.1:6379/0"])
def test_fallback_cache_names_every_accepted_scheme(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        FallbackCache(redis_url=url, read_env=False)
    message = str(caught.value)
    assert message.startswith(f"invalid Redis URL {url}: ")
    for scheme in SCHEMES:
        assert scheme in message, (scheme, message)


def test_a_known_scheme_keeps_the_precise_reason() -> None:
    with pytest.raises(ConfigurationError, match="Port could not be cast"):
        RedisBackend("redis://127.0.0.1:notaport/0")
    with pytest.raises(ConfigurationError, match="names its service"):
        RedisBackend("redis+sentinel://127.0.0.1:26379")


def test_the_password_stays_out_of_the_message() -> None:
    with pytest.raises(ConfigurationError) as caught:
        FallbackCache(redis_url="ftp://user:hunter2@example", read_env=False)
    assert "hunter2" not in str(caught.value)


def test_cli_names_every_accepted_scheme() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHENU_CACHE_REDIS_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "chenu_cache", "demo", "--redis-url", "ftp://example"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    for scheme in SCHEMES:
        assert scheme in out.stderr, (scheme, out.stderr)
