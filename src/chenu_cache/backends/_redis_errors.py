"""Where redis-py's errors become ours: an outage, a refused command, or a bad argument.

The facade fails over on `BackendError` and on nothing else, so this decides what an
outage is. The rule, a row per case in ``docs/failover.md``:

- the server cannot be reached, is too slow, or is not serving (refused or reset
  connections, timeouts, ``LOADING``, ``BUSY``, ``READONLY`` after a demotion,
  ``MASTERDOWN``, ``CLUSTERDOWN``, ``TRYAGAIN``, redirections the client did not
  follow, ``OOM``, ``MISCONF``, ``NOREPLICAS``, failed authentication): `BackendTimeoutError`
  or `BackendUnavailableError`, and the facade fails over;
- the server answered and refused this command for this key or these arguments
  (``WRONGTYPE``, ``NOPERM``, any other error reply): `CommandRefusedError`; reads
  take it as a miss, and there is no failover;
- the arguments are out of range (``ERR invalid cursor``, redis-py's ``DataError``):
  `ValidationError`, the caller's mistake;
- anything else the client raises (a bug in its internals, seen mid slot migration):
  `BackendError`, so a client that breaks is a backend that fails.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import (
    AskError,
    ClusterDownError,
    DataError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CacheError,
    CommandRefusedError,
    ValidationError,
)

__all__ = ["translate"]

# Error replies that say the server is not serving right now, whatever the command.
# redis-py gives some their own class; the others arrive as a plain ResponseError
# whose message starts with the code.
_NOT_SERVING_CLASSES = (ReadOnlyError, ClusterDownError, TryAgainError, AskError, OutOfMemoryError)
_NOT_SERVING_CODES = frozenset(
    {
        "ASK",
        "BUSY",
        "CLUSTERDOWN",
        "LOADING",
        "MASTERDOWN",
        "MISCONF",
        "MOVED",
        "NOAUTH",
        "NOREPLICAS",
        "OOM",
        "READONLY",
        "TRYAGAIN",
        "WRONGPASS",
    }
)


def translate(exc: BaseException) -> CacheError:
    """The error of ours that ``exc``, raised by a Redis command, stands for."""
    if isinstance(exc, CacheError):  # already ours: a waiter that gave up, a check
        return exc
    if isinstance(exc, (RedisTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return BackendTimeoutError(f"Redis did not answer in time: {exc}")
    if isinstance(exc, (RedisConnectionError, OSError)):
        return BackendUnavailableError(f"Redis is unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, _NOT_SERVING_CLASSES):
        return BackendUnavailableError(f"Redis is not serving: {type(exc).__name__}: {exc}")
    if isinstance(exc, ResponseError):
        text = str(exc)
        code = text.split(" ", 1)[0]
        if code in _NOT_SERVING_CODES:
            return BackendUnavailableError(f"Redis is not serving: {text}")
        if "invalid cursor" in text.lower():
            return ValidationError(f"the scan cursor is out of range ({text})")
        return CommandRefusedError(f"Redis refused the command: {type(exc).__name__}: {text}")
    if isinstance(exc, DataError):
        return ValidationError(f"Redis cannot take this argument: {exc}")
    if isinstance(exc, (RedisError, RedisClusterException)):
        return BackendUnavailableError(f"Redis failed: {type(exc).__name__}: {exc}")
    return BackendError(f"the Redis client failed: {type(exc).__name__}: {exc}")
