"""Throw-away redis-server processes for the test suite.

Each server listens on a free loopback port, keeps nothing on disk, and is stopped by
whoever started it, even when a test fails. Fault tests use pause()/resume() (SIGSTOP /
SIGCONT), kill() and start() on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    return os.environ.get("CHENU_CACHE_REDIS_SERVER") or shutil.which("redis-server")


def ping(host: str, port: int, timeout: float = 0.2) -> bool:
    """A raw RESP PING: no client library involved, so it cannot hide a failure."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(
        self, binary: str, port: int | None = None, extra_args: list[str] | None = None
    ) -> None:
        self.binary = binary
        self.extra_args = list(extra_args or [])
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="chenu-redis-")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--loglevel",
                "warning",
                "--logfile",
                os.path.join(self._dir, "redis.log"),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not ping(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log}")
            time.sleep(0.01)

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self._dir, "redis.log"), encoding="utf-8") as fh:
                return fh.read()[-2000:]
        except OSError:
            return ""

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)  # a stopped process cannot die cleanly
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
