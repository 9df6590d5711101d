"""FallbackCache against a model, on a real redis-server that the rules kill and pause.

The model is what the cache may answer: for each key, the value last set (or nothing
once invalidated, directly or through one of its tags). SPEC §5 lets a failover or a
restarted Redis lose entries, so a read may be a miss; it may never be a value the
model no longer holds (an older one, or one invalidated), and no call may raise.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chenu_cache import FallbackCache
from tests.redis_server import RedisServer, redis_server_binary

pytestmark = pytest.mark.redis

T = TypeVar("T")
KEYS = st.sampled_from([f"k{i}" for i in range(6)])
TAGS = st.sampled_from(["red", "green", "blue"])
VALUES = st.integers(min_value=0, max_value=1000)
# Loaded values are negative, so a load is never mistaken for a (tagged) set value.
LOADED = st.integers(min_value=-1000, max_value=-1)
FAILBACK_DEADLINE = 15.0

SERVER: RedisServer | None = None


@pytest.fixture(scope="module")
def model_server() -> Iterator[RedisServer]:
    global SERVER
    binary = redis_server_binary()
    if binary is None:
        reason = "the redis-server binary is not on PATH"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI=true and no Redis for the tests: {reason}", pytrace=False)
        pytest.skip(reason)
    server = RedisServer(binary)
    server.start()
    SERVER = server
    try:
        yield server
    finally:
        SERVER = None
        server.close()


class CacheModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert SERVER is not None
        self.server = SERVER
        self.loop = asyncio.new_event_loop()
        self.cache = FallbackCache(
            redis_url=self.server.url,
            prefix=f"model-{uuid.uuid4().hex[:8]}:",
            # Small enough that a paused server is noticed within a step, large enough
            # that a loaded CI machine does not fail over a healthy one.
            operation_timeout=0.2,
            probe_interval=0.05,
            probe_max_interval=0.2,
            recent_window=0,
            read_env=False,
        )
        self.run(self.cache.initialize())
        self.model: dict[str, tuple[int, frozenset[str]]] = {}
        self.down: str | None = None  # "killed" or "paused" while a fault lasts

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    @rule(key=KEYS, value=VALUES, tags=st.frozensets(TAGS, max_size=2))
    def set(self, key: str, value: int, tags: frozenset[str]) -> None:
        self.run(self.cache.set(key, value, tags=sorted(tags)))
        self.model[key] = (value, tags)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        got = self.run(self.cache.get(key))
        expected = self.model.get(key)
        if expected is None:
            assert got is None, f"{key} was invalidated, yet read {got!r}"
        else:
            assert got in (None, expected[0]), f"{key}: read {got!r}, last set {expected[0]!r}"

    @rule(key=KEYS, value=LOADED)
    def get_or_set(self, key: str, value: int) -> None:
        got = self.run(self.cache.get_or_set(key, lambda: value))
        expected = self.model.get(key)
        if expected is None or got != expected[0]:
            # A miss loads: what the factory gave is now the entry (untagged).
            assert got == value, f"{key}: read {got!r}, expected {expected} or {value}"
            self.model[key] = (value, frozenset())

    @rule(key=KEYS)
    def invalidate(self, key: str) -> None:
        self.run(self.cache.invalidate(key))
        self.model.pop(key, None)

    @rule(tag=TAGS)
    def invalidate_tags(self, tag: str) -> None:
        self.run(self.cache.invalidate_tags(tag))
        self.model = {k: v for k, v in self.model.items() if tag not in v[1]}

    @precondition(lambda self: self.down is None)
    @rule(how=st.sampled_from(["killed", "paused"]))
    def fail_over(self, how: str) -> None:
        if how == "killed":
            self.server.kill()
        else:
            self.server.pause()
        self.down = how

    @precondition(lambda self: self.down is not None)
    @rule()
    def fail_back(self) -> None:
        self.heal()
        deadline = time.monotonic() + FAILBACK_DEADLINE
        while self.cache.backend.name != "redis":
            assert time.monotonic() < deadline, "no failback within the deadline"
            # Calls drive the cache as traffic would; the probe does the rest.
            self.run(self.cache.get("k0"))
            self.run(asyncio.sleep(0.05))

    def heal(self) -> None:
        if self.down == "killed":
            self.server.start()
        elif self.down == "paused":
            self.server.resume()
        self.down = None

    @invariant()
    def never_memory_only(self) -> None:
        assert self.cache.statistics().to_dict()["breakerState"] != "memory-only"

    def teardown(self) -> None:
        try:
            self.heal()
            self.run(self.cache.clear())
            self.run(self.cache.close())
        finally:
            self.loop.close()


def test_cache_model(model_server: RedisServer) -> None:
    run_state_machine_as_test(
        CacheModel,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
