"""A small RESP3 reader and writer for the tracking link, on asyncio streams.

The near cache's tracking connection is ours alone: it must not depend on which parser
redis-py picked for the data connections (hiredis or not, RESP2 or RESP3), and it must
tell a push (``>``: an invalidation) from a reply. Only what that connection receives
is parsed: simple and bulk strings, errors, numbers, null, booleans, doubles, arrays,
sets, maps, pushes and attributes (skipped).
"""

from __future__ import annotations

import asyncio

__all__ = ["Push", "ReplyError", "encode_command", "read_frame"]


class Push(list[object]):
    """An out-of-band push frame (``>``): ``[kind, *data]``."""


class ReplyError(Exception):
    """An error reply (``-ERR ...``, ``!``): the server refused a command."""


def encode_command(*parts: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def read_frame(reader: asyncio.StreamReader) -> object:
    """The next frame: bytes, int, float, bool, None, list, dict, `Push` or
    `ReplyError` (returned, not raised: the caller matches it to its command)."""
    line = await reader.readuntil(b"\r\n")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return bytes(body)
    if kind == b"-":
        return ReplyError(body.decode("utf-8", "replace"))
    if kind in (b":", b"("):
        return int(body)
    if kind in (b"$", b"=", b"!"):
        size = int(body)
        if size < 0:
            return None
        data = (await reader.readexactly(size + 2))[:-2]
        if kind == b"!":
            return ReplyError(data.decode("utf-8", "replace"))
        return data
    if kind in (b"*", b"~", b">"):
        size = int(body)
        if size < 0:
            return None
        items = [await read_frame(reader) for _ in range(size)]
        return Push(items) if kind == b">" else items
    if kind == b"%":
        pairs = int(body)
        found: dict[object, object] = {}
        for _ in range(pairs):
            name = await read_frame(reader)
            found[name if not isinstance(name, list) else tuple(name)] = await read_frame(reader)
        return found
    if kind == b"|":  # attributes describe the frame that follows: not needed here
        for _ in range(2 * int(body)):
            await read_frame(reader)
        return await read_frame(reader)
    if kind == b"_":
        return None
    if kind == b"#":
        return body == b"t"
    if kind == b",":
        return float(body)
    raise ReplyError(f"unexpected RESP3 frame type {kind!r}")
