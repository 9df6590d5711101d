"""A value planted in Redis by someone without the secret is refused, never unpickled."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from chenu_cache import (
    Codec,
    DeserializationError,
    PickleSerializer,
    RedisBackend,
    SignatureError,
)

pytestmark = pytest.mark.redis

EXECUTED: list[str] = []


class Payload:
    def __reduce__(self) -> Any:
        return (EXECUTED.append, ("pwned",))


async def test_planted_pickle_in_redis_is_refused(redis_backend: RedisBackend) -> None:
    codec = Codec(PickleSerializer(b"the-real-secret-0123456789"))
    await redis_backend.set("legit", codec.encode({"ok": True}), None)
    header = codec.encode(None)[:3]
    # An attacker with write access to Redis, but not the secret, plants three variants.
    planted = {
        "bare": pickle.dumps(Payload()),
        "headed": header + pickle.dumps(Payload()),
        "fake-mac": header + b"\x00" * 32 + pickle.dumps(Payload()),
    }
    for key, data in planted.items():
        await redis_backend.set(key, data, None)
    assert codec.decode(await redis_backend.get("legit") or b"") == {"ok": True}
    for key in planted:
        raw = await redis_backend.get(key)
        assert raw is not None
        # Without our header the bytes are foreign; with it, the signature fails.
        expected = DeserializationError if key == "bare" else SignatureError
        with pytest.raises(expected):
            codec.decode(raw)
    assert EXECUTED == []
