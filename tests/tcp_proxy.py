"""A TCP proxy the fault tests can cut and heal: a network partition on loopback.

``cut()`` black-holes traffic (bytes in both directions are read and dropped, new
connections are held open and never forwarded), as a partition does: the client sees
no error, only silence. ``heal()`` forwards again. Redis and its data stay alive.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.redis_server import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.cut_off = False
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        # Round trips: bursts of client data, each after the server's last reply (a
        # pipeline is one; commands that wait for each other's replies are one each).
        self.round_trips = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def cut(self) -> None:
        self.cut_off = True

    def heal(self) -> None:
        self.cut_off = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while self.cut_off:  # a connection made during a partition goes nowhere
                if not await reader.read(65536):
                    return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            turn = [True]  # whether the server spoke last (as if so before the first request)
            pumps = [
                asyncio.ensure_future(self._pump(reader, up_writer, turn, upstream=True)),
                asyncio.ensure_future(self._pump(up_reader, writer, turn, upstream=False)),
            ]
            self._tasks.update(pumps)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        turn: list[bool],
        *,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if self.cut_off:
                    continue  # dropped on the floor, as by a partition
                if upstream and turn[0]:
                    self.round_trips += 1
                turn[0] = not upstream
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
