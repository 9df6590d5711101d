"""The admin routes' request and response models (``chenu_cache.contrib.fastapi``).

The statistics and health models are not written here: they are generated from the
keys the statistics classes declare (``CacheStatistics.json_keys()``,
``HealthReport.json_keys()``), so that a counter declared there is served, validated
and described in the OpenAPI schema with no edit here.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at run time.

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, create_model

from chenu_cache import CacheStatistics, HealthReport

__all__ = [
    "Deleted",
    "DeletedKey",
    "DeletedNamespace",
    "ErrorBody",
    "ErrorResponse",
    "EventData",
    "HealthResponse",
    "KeyValue",
    "KeysPage",
    "NamespaceInfo",
    "NamespacesResponse",
    "SetKeyRequest",
    "SetKeyResponse",
    "StatsResponse",
    "statistics_model",
]


class _JsonKey(Protocol):
    """What the models need of a key that ``json_keys()`` lists (``chenu_cache.stats.JsonKey``)."""

    @property
    def name(self) -> str: ...
    @property
    def annotation(self) -> Any: ...
    @property
    def description(self) -> str: ...
    @property
    def keys(self) -> Sequence["_JsonKey"]: ...
    @property
    def mapping(self) -> bool: ...
    @property
    def schema(self) -> str: ...


# The names the OpenAPI schema has always given these objects; another one is named
# after its statistics class.
_MODEL_NAMES = {
    "CacheStatistics": "StatsResponse",
    "RedisStatistics": "TierRedis",
    "MemoryStatistics": "TierMemory",
    "NamespaceStatistics": "NamespaceCounters",
    "LoaderStatistics": "LoaderCounters",
    "HealthReport": "HealthResponse",
    "HealthReport.redis": "RedisHealth",
}


def statistics_model(
    schema: str, keys: Sequence[_JsonKey], built: dict[str, type[BaseModel]] | None = None
) -> type[BaseModel]:
    """A pydantic model of the JSON object whose keys are ``keys`` (``json_keys()``):
    one required field per key, described by the key's description, nested objects as
    models of their own."""
    built = {} if built is None else built
    name = _MODEL_NAMES.get(schema, schema.replace(".", "_"))
    if name in built:
        return built[name]
    fields: dict[str, Any] = {}
    for key in keys:
        annotation = key.annotation
        if key.keys:
            annotation = statistics_model(key.schema, key.keys, built)
            if key.mapping:
                annotation = dict[str, annotation]  # type: ignore[valid-type]
        fields[key.name] = (annotation, Field(description=key.description))
    model = built[name] = create_model(name, __module__=__name__, **fields)
    return model


StatsResponse = statistics_model("CacheStatistics", CacheStatistics.json_keys())
HealthResponse = statistics_model("HealthReport", HealthReport.json_keys())


class ErrorBody(BaseModel):
    error: str = Field(description="The error's type, e.g. InvalidKeyError")
    message: str = Field(description="What was wrong, for a person to read")


class ErrorResponse(BaseModel):
    detail: ErrorBody | str | list[Any] = Field(
        description="The router's own errors: {error, message}; FastAPI's request "
        "validation: a list of problems, each with its location (loc) and message (msg)"
    )


class KeysPage(BaseModel):
    keys: list[str] = Field(description="logical keys (namespace included, no prefix)")
    cursor: int = Field(description="pass back to get the next page; 0 when done")
    pattern: str = Field(description="the glob pattern of the request")
    limit: int = Field(description="the page size asked for; a page may hold a few more")


class KeyValue(BaseModel):
    key: str = Field(description="the logical key (namespace included)")
    value: Any = Field(description="the cached value (null when it is not JSON-serializable)")
    type: str = Field(description="the value's Python type name")
    serializable: bool = Field(description="whether `value` holds the value itself")
    ttl: float | None = Field(description="seconds left; null when the entry never expires")


class SetKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=1024, description="the key to write")
    value: Any = Field(description="any JSON value")
    # Strict: a TTL of `true` or `"10"` is a client's mistake, not one second or ten.
    ttl: float | None = Field(
        default=None,
        gt=0,
        strict=True,
        description="seconds (a number > 0, at most the cache's max_ttl); null for the "
        "namespace's or the default TTL; not together with noExpiry",
    )
    namespace: str | None = Field(
        default=None, min_length=1, max_length=64, description="prefixed to the key, 'ns:key'"
    )
    noExpiry: bool = Field(default=False, description="store without expiry; not together with ttl")


class SetKeyResponse(BaseModel):
    key: str = Field(description="the logical key written (namespace included)")
    ttl: float | None = Field(description="seconds it will live; null: no expiry")


class Deleted(BaseModel):
    deleted: int = Field(description="how many entries were removed")


class DeletedKey(Deleted):
    key: str = Field(description="the logical key (namespace included)")


class DeletedNamespace(Deleted):
    namespace: str = Field(description="the namespace cleared")


class InvalidatedTag(BaseModel):
    tag: str = Field(description="the tag invalidated")
    invalidated: bool = Field(
        description="always true: every entry carrying the tag is now a miss, in every process"
    )


class NamespaceInfo(BaseModel):
    name: str = Field(description="the namespace, the part of a key before its first ':'")
    ttl: float | None = Field(description="seconds; null: entries never expire")


class NamespacesResponse(BaseModel):
    namespaces: list[NamespaceInfo] = Field(description="the registered namespaces, by name")
    defaultTtl: float | None = Field(
        description="seconds, for keys outside these namespaces; null: no expiry"
    )


class EventData(BaseModel):
    """The ``data:`` of one event of ``GET /cache/events`` (``CacheEvent.to_dict()``)."""

    kind: str = Field(
        description="what was invalidated: key, keys, pattern, namespace or clear; reset "
        "(event: reset) means that anything may be stale"
    )
    time: float = Field(description="when the invalidation was made, seconds since the epoch")
    keys: list[str] | None = Field(
        default=None,
        description="key, keys: the logical keys (namespace included), only those of the "
        "namespaces the route streams",
    )
    pattern: str | None = Field(default=None, description="pattern: the Redis glob")
    namespace: str | None = Field(default=None, description="namespace: the namespace cleared")
    replayed: bool | None = Field(
        default=None,
        description="true when the invalidation was made while Redis was unreachable and "
        "published when it came back; absent otherwise",
    )
    origin: str = Field(description="an id of the cache instance that made the invalidation")
