"""``to_dict()`` is generated from the statistics' declarations and keeps SPEC §7's shape.

Each key is declared once (its field or property, with its docstring); these tests pin
the JSON that results, key order included, and show that a new declaration is all a
new counter needs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from chenu_cache import stats as stats_module
from chenu_cache.stats import (
    CacheStatistics,
    FailoverStatistics,
    HealthReport,
    LoaderStatistics,
    MemoryStatistics,
    NamespaceStatistics,
    RedisStatistics,
)


def _statistics() -> CacheStatistics:
    return CacheStatistics(
        backend="memory",
        redis=RedisStatistics(True, False, "1.2M", 5, 7, 3, 1258291),
        memory=MemoryStatistics(hits=4, misses=2, size=3, bytes=99, evictions=1, expirations=2),
        hits=52,
        misses=8,
        decode_errors=1,
        type_errors=4,
        command_errors=2,
        stale_by_tag=6,
        tag_invalidations=9,
        namespaces={"user": NamespaceStatistics(40, 5), "(none)": NamespaceStatistics(12, 3)},
        loader=LoaderStatistics(8, 1, 49, 2, 1, 1, 3, 5),
        failover=FailoverStatistics("open", 2, 1, 12.56789, 6, "BackendTimeoutError: x", 1.7e9),
    )


# The JSON text, key order included, as the hand-written to_dict() gave it.
EXPECTED_STATISTICS = (
    '{"backend": "memory", "redis": {"configured": true, "connected": false, '
    '"usedMemory": "1.2M", "usedMemoryBytes": 1258291, "connectedClients": 5, "hits": 7, '
    '"misses": 3, "hitRate": 0.7}, "memory": {"hits": 4, "misses": 2, "size": 3, '
    '"hitRate": 0.6667, "entries": 3, "bytes": 99, "evictions": 1, "expirations": 2}, '
    '"hits": 52, "misses": 8, "hitRate": 0.8667, "evictions": 1, "failovers": 2, '
    '"failbacks": 1, "timeOnFallback": 12.568, "breakerState": "open", "backendErrors": 6, '
    '"lastBackendError": "BackendTimeoutError: x", "lastBackendErrorAt": 1700000000.0, '
    '"decodeErrors": 1, "typeErrors": 4, "commandErrors": 2, "staleByTag": 6, '
    '"tagInvalidations": 9, "namespaces": {"(none)": {"hits": 12, '
    '"misses": 3, "hitRate": 0.8}, "user": {"hits": 40, "misses": 5, "hitRate": 0.8889}}, '
    '"loader": {"calls": 8, "errors": 1, "coalesced": 49, "refreshes": 2, '
    '"refreshFailures": 1, "staleServed": 1, "fenced": 3, "notCached": 5}, '
    '"nearCache": {"enabled": false, "tracking": false, "hits": 0, "misses": 0, '
    '"invalidations": 0, "flushes": 0, "evictions": 0, "bypassed": 0, "size": 0, '
    '"bytes": 0, "links": 0, "lastError": null, "hitRate": 0.0}}'
)


def test_cache_statistics_to_dict_keeps_its_keys_their_order_and_values() -> None:
    assert json.dumps(_statistics().to_dict()) == EXPECTED_STATISTICS


def test_the_top_level_key_order_is_pinned() -> None:
    assert list(_statistics().to_dict()) == [
        "backend",
        "redis",
        "memory",
        "hits",
        "misses",
        "hitRate",
        "evictions",
        "failovers",
        "failbacks",
        "timeOnFallback",
        "breakerState",
        "backendErrors",
        "lastBackendError",
        "lastBackendErrorAt",
        "decodeErrors",
        "typeErrors",
        "commandErrors",
        "staleByTag",
        "tagInvalidations",
        "namespaces",
        "loader",
        "nearCache",
    ]


def test_defaults_serialize_as_before() -> None:
    stats = CacheStatistics(
        backend="redis",
        redis=RedisStatistics(configured=False, connected=False),
        memory=MemoryStatistics(0, 0, 0, 0, 0, 0),
    )
    shape = stats.to_dict()
    assert shape["redis"] == {
        "configured": False,
        "connected": False,
        "usedMemory": None,
        "usedMemoryBytes": None,
        "connectedClients": None,
        "hits": 0,
        "misses": 0,
        "hitRate": 0.0,
    }
    assert shape["namespaces"] == {}
    assert shape["loader"] == {
        "calls": 0,
        "errors": 0,
        "coalesced": 0,
        "refreshes": 0,
        "refreshFailures": 0,
        "staleServed": 0,
        "fenced": 0,
        "notCached": 0,
    }
    assert shape["timeOnFallback"] == 0.0
    assert isinstance(shape["timeOnFallback"], float)
    assert shape["breakerState"] == "closed"
    assert shape["lastBackendError"] is None


def test_health_report_to_dict_nests_the_redis_fields() -> None:
    report = HealthReport("ok", "redis", "closed", True, True, 0.0012345678, None)
    assert json.dumps(report.to_dict()) == (
        '{"status": "ok", "backend": "redis", "breakerState": "closed", "redis": '
        '{"configured": true, "reachable": true, "latencyMs": 1.235, "error": null}}'
    )
    down = HealthReport("degraded", "memory", "open", True, False, None, "BackendError: x")
    assert down.to_dict()["redis"] == {
        "configured": True,
        "reachable": False,
        "latencyMs": None,
        "error": "BackendError: x",
    }


def test_failover_statistics_serve_the_keys_cache_statistics_spreads() -> None:
    failover = FailoverStatistics("open", 2, 1, 1 / 3, 6, "x", 1.5)
    assert failover.to_dict() == {
        "failovers": 2,
        "failbacks": 1,
        "timeOnFallback": 0.333,
        "breakerState": "open",
        "backendErrors": 6,
        "lastBackendError": "x",
        "lastBackendErrorAt": 1.5,
    }
    shape = CacheStatistics(
        "redis", RedisStatistics(True, True), MemoryStatistics(0, 0, 0, 0, 0, 0), failover=failover
    ).to_dict()
    assert {key: shape[key] for key in failover.to_dict()} == failover.to_dict()


def test_json_keys_give_types_and_nested_keys() -> None:
    keys = {key.name: key for key in CacheStatistics.json_keys()}
    assert keys["hits"].annotation is int
    assert keys["redis"].schema == "RedisStatistics"
    assert [key.name for key in keys["redis"].keys][:3] == ["configured", "connected", "usedMemory"]
    assert keys["namespaces"].mapping
    assert [key.name for key in keys["namespaces"].keys] == ["hits", "misses", "hitRate"]
    assert "seconds since the epoch" in keys["lastBackendErrorAt"].description
    health = {key.name: key for key in HealthReport.json_keys()}
    assert health["redis"].schema == "HealthReport.redis"
    assert health["redis"].description
    assert [key.name for key in health["redis"].keys] == [
        "configured",
        "reachable",
        "latencyMs",
        "error",
    ]


# -- a new counter needs its declaration only --------------------------------------------


@dataclasses.dataclass(frozen=True)
class _MoreLoaderStatistics(LoaderStatistics):
    """Loader counters with one more, as a future release might add."""

    slow_loads: int = 0
    """Loader runs that took longer than the slow-load threshold."""


@dataclasses.dataclass(frozen=True)
class _MoreStatistics(CacheStatistics):
    """A cache snapshot with two more keys."""

    _json_after: ClassVar[Mapping[str, str]] = {
        **CacheStatistics._json_after,
        "pending_refreshes": "misses",
    }

    loader: _MoreLoaderStatistics = dataclasses.field(
        default_factory=lambda: _MoreLoaderStatistics(0, 0, 0)
    )
    """What loads on misses did."""
    pending_refreshes: int = 0
    """Background refreshes started and not finished yet."""


def _more() -> _MoreStatistics:
    base = _statistics()
    fields = {field.name: getattr(base, field.name) for field in dataclasses.fields(base)}
    fields["loader"] = _MoreLoaderStatistics(8, 1, 49, slow_loads=4)
    return _MoreStatistics(**fields, pending_refreshes=3)


def test_a_declared_field_appears_in_to_dict_where_declared() -> None:
    shape = _more().to_dict()
    assert shape["pendingRefreshes"] == 3
    keys = list(shape)
    assert keys[keys.index("misses") + 1] == "pendingRefreshes"
    assert shape["loader"]["slowLoads"] == 4
    assert list(shape["loader"])[-1] == "slowLoads"
    without = {key: value for key, value in shape.items() if key != "pendingRefreshes"}
    assert list(without) == list(_statistics().to_dict())


def test_a_declared_field_is_described_by_its_docstring() -> None:
    keys = {key.name: key for key in _MoreStatistics.json_keys()}
    assert keys["pendingRefreshes"].annotation is int
    assert keys["pendingRefreshes"].description == (
        "Background refreshes started and not finished yet."
    )
    loader = {key.name: key for key in keys["loader"].keys}
    assert loader["slowLoads"].description.startswith("Loader runs that took longer")
    assert keys["loader"].schema == "_MoreLoaderStatistics"


# -- mistakes in a declaration fail loudly ---------------------------------------------


def test_unknown_metadata_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Typo(NamespaceStatistics):
        extra: int = dataclasses.field(default=0, metadata={"jsno": "extraKey"})
        """A key whose metadata is misspelt."""

    with pytest.raises(TypeError, match="unknown metadata"):
        Typo(1, 1).to_dict()


@pytest.mark.parametrize(
    ("after", "message"),
    [({"nothing": "hits"}, "no member"), ({"hits": "misses", "misses": "hits"}, "cannot place")],
)
def test_a_placement_that_cannot_be_made_is_refused(after: dict[str, str], message: str) -> None:
    @dataclasses.dataclass(frozen=True)
    class Misplaced(NamespaceStatistics):
        _json_after: ClassVar[Mapping[str, str]] = after

    with pytest.raises(TypeError, match=message):
        Misplaced.json_keys()


def test_without_source_the_json_is_the_same_and_descriptions_are_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dataclasses.dataclass(frozen=True)
    class Shipped(NamespaceStatistics):
        extra: int = 0
        """A key of a class whose source is not shipped."""

    def no_source(obj: Any) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(stats_module.inspect, "getsource", no_source)
    assert Shipped(1, 3, 2).to_dict() == {"hits": 1, "misses": 3, "extra": 2, "hitRate": 0.25}
    assert {key.name: key.description for key in Shipped.json_keys()}["extra"] == ""
