"""GET /cache/stats serves every key of ``to_dict()``, and its schema says what each counts.

The statistics and health models are generated from the statistics classes'
declarations: a key declared there is in the model, with its docstring as description.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from chenu_cache import CacheStatistics, FallbackCache, HealthReport
from chenu_cache.contrib._fastapi_models import HealthResponse, statistics_model
from chenu_cache.contrib.fastapi import StatsResponse, create_cache_router
from chenu_cache.stats import (
    FailoverStatistics,
    LoaderStatistics,
    MemoryStatistics,
    NamespaceStatistics,
    RedisStatistics,
)

TOKEN = "stats-model-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _statistics() -> CacheStatistics:
    """Every field set to a value of its own, so that no key can hide behind a default."""
    return CacheStatistics(
        backend="memory",
        redis=RedisStatistics(True, False, "1.2M", 5, 7, 3),
        memory=MemoryStatistics(hits=4, misses=2, size=3, bytes=99, evictions=1, expirations=2),
        hits=52,
        misses=8,
        decode_errors=1,
        command_errors=2,
        namespaces={"user": NamespaceStatistics(40, 5)},
        loader=LoaderStatistics(8, 1, 49, 2, 1, 1),
        failover=FailoverStatistics("open", 2, 1, 12.5, 6, "BackendTimeoutError: x", 1.7e9),
    )


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_the_model_keeps_every_key_of_to_dict() -> None:
    expected = _statistics().to_dict()
    served = StatsResponse.model_validate(expected).model_dump(mode="json")
    assert served == expected
    assert _shape(served) == _shape(expected)


def test_every_field_of_every_response_model_is_described() -> None:
    app = FastAPI()
    app.include_router(
        create_cache_router(FallbackCache(read_env=False), token=TOKEN, manage_lifespan=False)
    )
    schemas = app.openapi()["components"]["schemas"]
    ours = {name: schema for name, schema in schemas.items() if "ValidationError" not in name}
    assert "StatsResponse" in ours
    undescribed = [
        f"{name}.{field}"
        for name, schema in ours.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []
    stats = schemas["StatsResponse"]["properties"]
    assert "seconds since the epoch" in stats["lastBackendErrorAt"]["description"]
    assert "kept after recovery" in stats["lastBackendError"]["description"]
    memory = schemas["TierMemory"]["properties"]
    assert "not the cache's hits" in memory["hits"]["description"]


def _model_shape(model: type[BaseModel]) -> dict[str, Any]:
    """Each field of ``model``, and of the models it nests, as ``_dict_shape`` gives keys."""
    shape: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            shape[name] = _model_shape(annotation)
        elif getattr(annotation, "__origin__", None) is dict:
            shape[name] = {"<name>": _model_shape(annotation.__args__[1])}
        else:
            shape[name] = None
    return shape


def _dict_shape(value: dict[str, Any], mapping: frozenset[str] = frozenset()) -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for key, item in value.items():
        if key in mapping:
            shape[key] = {"<name>": _dict_shape(next(iter(item.values())))}
        elif isinstance(item, dict):
            shape[key] = _dict_shape(item)
        else:
            shape[key] = None
    return shape


def _descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, info in model.model_fields.items():
        found[prefix + name] = info.description
        annotation = info.annotation
        if getattr(annotation, "__origin__", None) is dict:
            annotation = annotation.__args__[1]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.update(_descriptions(annotation, f"{prefix}{name}."))
    return found


def test_the_generated_models_have_exactly_the_keys_of_to_dict_in_order() -> None:
    expected = _dict_shape(_statistics().to_dict(), frozenset({"namespaces"}))
    assert _model_shape(StatsResponse) == expected
    assert list(_model_shape(StatsResponse)) == list(expected)
    health = HealthReport("ok", "redis", "closed", True, True, 0.001, None).to_dict()
    assert _model_shape(HealthResponse) == _dict_shape(health)


def test_every_generated_field_is_described_by_its_declaration() -> None:
    for model in (StatsResponse, HealthResponse):
        described = _descriptions(model)
        assert [path for path, text in described.items() if not text] == []
    stats = _descriptions(StatsResponse)
    assert stats["memory.entries"] == _key(CacheStatistics, "memory", "entries").description
    assert stats["loader.staleServed"].startswith("Times an expired value was returned")
    assert "milliseconds" in _descriptions(HealthResponse)["redis.latencyMs"]


def _key(cls: Any, *path: str) -> Any:
    keys = cls.json_keys()
    for name in path:
        key = next(key for key in keys if key.name == name)
        keys = key.keys
    return key


def test_the_schema_keeps_the_model_names_of_earlier_releases() -> None:
    app = FastAPI()
    app.include_router(
        create_cache_router(FallbackCache(read_env=False), token=TOKEN, manage_lifespan=False)
    )
    schemas = app.openapi()["components"]["schemas"]
    assert {
        "StatsResponse",
        "TierRedis",
        "TierMemory",
        "NamespaceCounters",
        "LoaderCounters",
        "HealthResponse",
        "RedisHealth",
    } <= set(schemas)
    stats = schemas["StatsResponse"]
    assert stats["properties"]["redis"]["$ref"] == "#/components/schemas/TierRedis"
    assert stats["properties"]["namespaces"]["additionalProperties"] == {
        "$ref": "#/components/schemas/NamespaceCounters"
    }
    assert list(stats["properties"]) == list(_statistics().to_dict())
    assert set(stats["required"]) == set(stats["properties"])


# -- a counter declared in chenu_cache.stats reaches the model with no other edit ------


from tests.unit.test_stats_json import (  # noqa: E402 - shared with it
    _MoreLoaderStatistics,
    _MoreStatistics,
)


def test_a_new_declared_counter_is_in_the_model_and_its_schema() -> None:
    model = statistics_model("CacheStatistics", _MoreStatistics.json_keys())
    base = _statistics()
    fields = {field.name: getattr(base, field.name) for field in dataclasses.fields(base)}
    fields["loader"] = _MoreLoaderStatistics(8, 1, 49, 2, 1, 1, slow_loads=4)
    expected = _MoreStatistics(**fields, pending_refreshes=3).to_dict()
    assert model.model_validate(expected).model_dump(mode="json") == expected
    assert _model_shape(model) == _dict_shape(expected, frozenset({"namespaces"}))
    described = _descriptions(model)
    assert described["pendingRefreshes"] == "Background refreshes started and not finished yet."
    assert described["loader.slowLoads"].startswith("Loader runs that took longer")
    schema = model.model_json_schema()
    assert "pendingRefreshes" in schema["properties"]
    assert "slowLoads" in schema["$defs"]["_MoreLoaderStatistics"]["properties"]


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, FallbackCache]]:
    cache = FallbackCache(read_env=False)
    app = FastAPI()
    app.include_router(create_cache_router(cache, token=TOKEN, manage_lifespan=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c, cache
    await cache.close()


async def test_stats_route_serves_what_to_dict_gives(
    client: tuple[httpx.AsyncClient, FallbackCache],
) -> None:
    http, cache = client
    await cache.set("1", "x", namespace="user")
    await cache.get("1", namespace="user")
    await cache.get("absent")
    reply = await http.get("/cache/stats", headers=AUTH)
    assert reply.status_code == 200
    body = reply.json()
    assert body == (await cache.get_statistics()).to_dict()
    assert body["lastBackendErrorAt"] is None
    assert body["commandErrors"] == 0
    assert body["memory"]["entries"] == body["memory"]["size"] == 1
