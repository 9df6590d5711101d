"""redis-py clients from the URLs chenu-cache accepts, with our timeouts, never redis-py's.

- ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URL parsing);
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for
  TLS): a Redis Cluster, given seed nodes;
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``
  (``rediss+sentinel://``): the primary that Sentinel names for ``service_name``.

Credentials in the URL go to the data nodes; extra keyword options pass through to
redis-py (``ssl_ca_certs``, ``sentinel_kwargs`` for the sentinels' own auth, ...).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ..exceptions import ConfigurationError

__all__ = ["client_from_url"]

_CLUSTER = {"redis+cluster", "rediss+cluster"}
_SENTINEL = {"redis+sentinel", "rediss+sentinel"}


def _hosts(netloc: str, url: str) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.rpartition("@")[2].split(","):
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigurationError(f"invalid host:port {part!r} in {_redact(url)}")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    if not colon:  # "redis+cluster://password@host" is ambiguous; redis-py reads a user
        return unquote(user) or None, None
    return unquote(user) or None, unquote(password)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def client_from_url(
    url: str,
    *,
    operation_timeout: float,
    connect_timeout: float,
    max_connections: int,
    options: dict[str, Any],
) -> Redis | RedisCluster:
    """A client for ``url`` whose commands fail after ``operation_timeout`` seconds."""
    scheme = url.partition("://")[0].lower()
    timeouts: dict[str, Any] = {
        "socket_timeout": operation_timeout,
        "socket_connect_timeout": connect_timeout,
    }
    try:
        if scheme in _CLUSTER:
            return _cluster(url, scheme, timeouts, max_connections, options)
        if scheme in _SENTINEL:
            return _sentinel(url, scheme, timeouts, max_connections, options)
        pool = ConnectionPool.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            health_check_interval=0,
            **timeouts,
            **options,
        )
    except ValueError as exc:
        accepted = ("redis", "rediss", "unix", *sorted(_CLUSTER), *sorted(_SENTINEL))
        # redis-py's own message names only the schemes it parses itself.
        reason = (
            str(exc)
            if scheme in accepted
            else "the scheme must be one of " + ", ".join(f"{name}://" for name in accepted)
        )
        raise ConfigurationError(f"invalid Redis URL {_redact(url)}: {reason}") from None
    return Redis(connection_pool=pool)


def _cluster(
    url: str,
    scheme: str,
    timeouts: dict[str, Any],
    max_connections: int,
    options: dict[str, Any],
) -> RedisCluster:
    parts = urlsplit(url)
    if parts.path not in ("", "/"):
        raise ConfigurationError("a Redis Cluster has only database 0: drop the path")
    user, password = _credentials(parts.netloc)
    nodes = [ClusterNode(host, port) for host, port in _hosts(parts.netloc, url)]
    return RedisCluster(
        startup_nodes=nodes,
        username=user,
        password=password,
        ssl=scheme.startswith("rediss"),
        max_connections=max_connections,
        # One retry after a connection error, to follow a topology change; MOVED and
        # ASK redirections are followed anyway and do not count.
        retry=Retry(NoBackoff(), 1),
        **timeouts,
        **options,
    )


def _sentinel(
    url: str,
    scheme: str,
    timeouts: dict[str, Any],
    max_connections: int,
    options: dict[str, Any],
) -> Redis:
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigurationError(
            f"a Sentinel URL names its service: redis+sentinel://host:port/service[/db], "
            f"got {_redact(url)}"
        )
    service, db = path[0], int(path[1]) if len(path) == 2 else 0
    user, password = _credentials(parts.netloc)
    sentinel_kwargs = dict(options.pop("sentinel_kwargs", None) or {})
    sentinel_kwargs.setdefault("socket_timeout", timeouts["socket_timeout"])
    sentinel_kwargs.setdefault("socket_connect_timeout", timeouts["socket_connect_timeout"])
    # redis-py before 8.2 leaves it untyped; 8.2 types it (then the ignore is unused).
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        _hosts(parts.netloc, url), sentinel_kwargs=sentinel_kwargs, **timeouts
    )
    client: Redis = sentinel.master_for(
        service,
        db=db,
        username=user,
        password=password,
        ssl=scheme.startswith("rediss"),
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        **timeouts,
        **options,
    )
    return client
