"""The tracking link's RESP3 reader: every frame type it can meet, and pushes apart."""

from __future__ import annotations

import asyncio

import pytest

from chenu_cache.backends._resp3 import Push, ReplyError, encode_command, read_frame


async def _frames(data: bytes, count: int) -> list[object]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return [await read_frame(reader) for _ in range(count)]


async def test_every_frame_type() -> None:
    data = (
        b"+OK\r\n"
        b"-ERR unknown command\r\n"
        b":42\r\n"
        b"(12345678901234567890\r\n"
        b"$5\r\nhello\r\n"
        b"$-1\r\n"
        b"=7\r\ntxt:abc\r\n"
        b"!9\r\nSYNTAX no\r\n"
        b"*2\r\n:1\r\n$1\r\na\r\n"
        b"*-1\r\n"
        b"~1\r\n+x\r\n"
        b"%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n"
        b"|1\r\n+ttl\r\n:3600\r\n+after-attribute\r\n"
        b"_\r\n"
        b"#t\r\n"
        b"#f\r\n"
        b",1.5\r\n"
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nk:1\r\n"
        b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    )
    found = await _frames(data, 19)
    assert found[0] == b"OK"
    assert isinstance(found[1], ReplyError)
    assert "unknown command" in str(found[1])
    assert found[2:6] == [42, 12345678901234567890, b"hello", None]
    assert found[6] == b"txt:abc"
    assert isinstance(found[7], ReplyError)
    assert found[8:11] == [[1, b"a"], None, [b"x"]]
    assert found[11] == {b"server": b"redis", b"proto": 3}
    assert found[12] == b"after-attribute"
    assert found[13:17] == [None, True, False, 1.5]
    assert isinstance(found[17], Push)
    assert found[17] == [b"invalidate", [b"k:1"]]
    assert isinstance(found[18], Push)
    assert found[18] == [b"invalidate", None]
    assert not isinstance(found[8], Push)


async def test_an_unknown_frame_type_is_an_error_not_a_guess() -> None:
    with pytest.raises(ReplyError):
        await _frames(b"?what\r\n", 1)


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command("CLIENT", "TRACKING", b"ON", 3) == (
        b"*4\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$1\r\n3\r\n"
    )
