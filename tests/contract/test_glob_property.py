"""The memory backend's glob must agree with Redis's SCAN MATCH on every key and pattern."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chenu_cache import InvalidPatternError
from chenu_cache._glob import compile_glob, escape_glob, validate_pattern

pytestmark = pytest.mark.redis

ALPHABET = "ab:-^*?[]\\\u00e9\u65e5"
SPECIAL = "*?[]\\"

keys = st.text(alphabet=ALPHABET, min_size=1, max_size=6)


def _literal(c: str) -> str:
    return "\\" + c if c in SPECIAL else c


_member = st.one_of(
    st.sampled_from(ALPHABET).map(lambda c: "\\" + c if c in "]\\" else c),
    st.tuples(st.sampled_from("ab:-^\u00e9"), st.sampled_from("ab:^\u00e9")).map("-".join),
)
_bracket = st.builds(
    lambda neg, members: "[" + ("^" if neg else "") + "".join(members) + "]",
    st.booleans(),
    st.lists(_member, max_size=3),
)
_token = st.one_of(
    st.sampled_from(ALPHABET).map(_literal),
    st.just("?"),
    st.just("*"),
    _bracket,
)
built_patterns = st.lists(_token, min_size=1, max_size=6).map("".join)
raw_patterns = st.text(alphabet=ALPHABET, min_size=1, max_size=8)


@pytest.fixture(scope="module")
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _redis_matches(client: redis.Redis, candidates: set[str], pattern: str) -> set[str]:
    prefix = f"glob-{uuid.uuid4().hex[:8]}:"
    physical = {prefix + k: k for k in candidates}
    client.mset(dict.fromkeys(physical, b"1"))
    try:
        found = {
            raw.decode()
            for raw in client.scan_iter(match=escape_glob(prefix) + pattern, count=1000)
        }
    finally:
        client.delete(*physical)
    return {physical[k] for k in found}


def _check(client: redis.Redis, candidates: set[str], pattern: str) -> None:
    try:
        validate_pattern(pattern)
    except InvalidPatternError:
        assume(False)
    ours = {k for k in candidates if compile_glob(pattern)(k)}
    assert ours == _redis_matches(client, candidates, pattern), pattern


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidates=st.sets(keys, min_size=1, max_size=25), pattern=built_patterns)
def test_built_patterns_match_like_redis(
    sync_redis: redis.Redis, candidates: set[str], pattern: str
) -> None:
    _check(sync_redis, candidates, pattern)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidates=st.sets(keys, min_size=1, max_size=25), pattern=raw_patterns)
def test_arbitrary_patterns_match_like_redis(
    sync_redis: redis.Redis, candidates: set[str], pattern: str
) -> None:
    _check(sync_redis, candidates, pattern)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=ALPHABET, min_size=1, max_size=10), others=st.sets(keys))
def test_escaped_text_matches_only_itself(text: str, others: set[str]) -> None:
    matcher = compile_glob(validate_pattern(escape_glob(text)))
    assert matcher(text)
    assert all(not matcher(o) for o in others if o != text)


@pytest.mark.parametrize(
    "pattern", ["", "a[bc", "[", "ab\\", "has space", "tab\there", "x" * 1025, "[a-]"]
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidPatternError):
        validate_pattern(pattern)


def test_non_string_pattern_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        validate_pattern(b"user:*")


def test_pathological_pattern_is_fast_enough_to_finish() -> None:
    # A backtracking translation would take astronomically long here.
    assert not compile_glob("*a*a*a*a*a*a*a*a*a*a*a*b")("a" * 1000)
