"""Local deployments for the scale-out tests: a Redis Cluster, and Sentinel with a replica.

Every process listens on a free loopback port, keeps its files in a temporary directory,
and is stopped by ``close()``, which the fixtures call even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.redis_server import RedisServer, free_port, ping


def cli_binary(server_binary: str) -> str | None:
    """``redis-cli`` (or ``valkey-cli``) beside the server binary, else on PATH."""
    folder = Path(server_binary).resolve().parent
    for name in ("valkey-cli", "redis-cli") if "valkey" in server_binary else ("redis-cli",):
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    return shutil.which("redis-cli")


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Cluster:
    """A Redis Cluster of ``size`` primaries, no replicas."""

    def __init__(self, binary: str, size: int = 3) -> None:
        self.binary = binary
        self.nodes: list[RedisServer] = []
        for _ in range(size):
            port = free_port()
            # The bus port is set explicitly: port + 10000 overflows for high ports.
            bus = free_port()
            self.nodes.append(
                RedisServer(
                    binary,
                    port=port,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        str(bus),
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--enable-debug-command",
                        "local",
                    ],
                )
            )

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://{seeds}"

    def start(self) -> None:
        started = time.monotonic()
        for node in self.nodes:
            node.start()
        cli = cli_binary(self.binary)
        if cli is None:
            raise RuntimeError("redis-cli is needed to create a cluster")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()
        self.start_seconds = time.monotonic() - started

    def state_ok(self) -> bool:
        for node in self.nodes:
            try:
                with redis.Redis(port=node.port, socket_timeout=1) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text:
                        return False
            except redis.RedisError:
                return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        _wait(self.state_ok, timeout, "cluster_state:ok")

    def node_ids(self) -> dict[int, str]:
        ids = {}
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                myid = client.execute_command("CLUSTER", "MYID")
                ids[node.port] = myid.decode() if isinstance(myid, bytes) else str(myid)
        return ids

    def reshard(self, slots: int, source: RedisServer, target: RedisServer) -> None:
        """Move ``slots`` slots with their keys from one primary to another."""
        cli = cli_binary(self.binary)
        assert cli is not None
        ids = self.node_ids()
        subprocess.run(
            [
                cli,
                "--cluster",
                "reshard",
                f"127.0.0.1:{source.port}",
                "--cluster-from",
                ids[source.port],
                "--cluster-to",
                ids[target.port],
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
                "--cluster-pipeline",
                "10",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def close(self) -> None:
        for node in self.nodes:
            node.close()


_SENTINEL_CONF = """\
port {port}
bind 127.0.0.1
dir {dir}
sentinel monitor {service} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 5000
sentinel parallel-syncs {service} 1
"""


class SentinelSetup:
    """A primary, one replica, and three sentinels watching them as ``service``."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        # A name of its own: two deployments side by side must not be confused.
        self.service = f"svc{free_port()}"
        self.primary = RedisServer(binary)
        self.replica = RedisServer(
            binary, extra_args=["--replicaof", "127.0.0.1", str(self.primary.port)]
        )
        self._dir = tempfile.mkdtemp(prefix="chenu-sentinel-")
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> None:
        started = time.monotonic()
        self.primary.start()
        self.replica.start()
        for port in self.sentinel_ports:
            conf = Path(self._dir) / f"sentinel-{port}.conf"
            conf.write_text(
                _SENTINEL_CONF.format(
                    port=port, dir=self._dir, service=self.service, primary=self.primary.port
                )
            )
            self._sentinels.append(
                subprocess.Popen(
                    [self.binary, str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.sentinel_ports:
            _wait(lambda port=port: ping("127.0.0.1", port), 10, f"sentinel on {port}")
        try:
            _wait(self._ready, 60, "sentinels that agree on the primary and see the replica")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; state: {self._state()}") from None
        self.start_seconds = time.monotonic() - started

    def _ready(self) -> bool:
        try:
            for port in self.sentinel_ports:
                with redis.Redis(port=port, socket_timeout=1) as s:
                    if len(s.execute_command("SENTINEL", "REPLICAS", self.service)) < 1:
                        return False
                    if len(s.execute_command("SENTINEL", "SENTINELS", self.service)) < 2:
                        return False
            with redis.Redis(port=self.replica.port) as r:
                return bool(r.info("replication").get("master_link_status") == "up")
        except redis.RedisError:
            return False

    def _state(self) -> object:
        views = {}
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1) as s:
                    views[port] = {
                        "replicas": len(s.execute_command("SENTINEL", "REPLICAS", self.service)),
                        "sentinels": len(s.execute_command("SENTINEL", "SENTINELS", self.service)),
                    }
            except redis.RedisError as exc:
                views[port] = repr(exc)
        try:
            with redis.Redis(port=self.replica.port, socket_timeout=1) as r:
                views["replica_link"] = r.info("replication").get("master_link_status")
        except redis.RedisError as exc:
            views["replica_link"] = repr(exc)
        return views

    def primary_port(self) -> int:
        with redis.Redis(port=self.sentinel_ports[0]) as s:
            _, port = s.sentinel_get_master_addr_by_name(self.service)
        return int(port)

    def failover(self, timeout: float = 30.0) -> int:
        """Ask the sentinels to promote the replica; return the new primary's port."""
        before = self.primary_port()
        with redis.Redis(port=self.sentinel_ports[0]) as s:
            s.execute_command("SENTINEL", "FAILOVER", self.service)

        def switched() -> bool:
            try:
                if self.primary_port() == before:
                    return False
                with redis.Redis(port=self.primary_port(), socket_timeout=1) as r:
                    return bool(r.info("replication")["role"] == "master")
            except redis.RedisError:
                return False

        _wait(switched, timeout, "the sentinel failover")
        return self.primary_port()

    def wait_demoted(self, port: int, timeout: float = 30.0) -> float:
        """Wait until the server on ``port`` reports itself a replica; return seconds."""
        started = time.monotonic()

        def demoted() -> bool:
            try:
                with redis.Redis(port=port, socket_timeout=1) as r:
                    return bool(r.info("replication")["role"] == "slave")
            except redis.RedisError:
                return False

        _wait(demoted, timeout, f"the old primary on {port} to become a replica")
        return time.monotonic() - started

    def close(self) -> None:
        for proc in self._sentinels:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.replica.close()
        self.primary.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
