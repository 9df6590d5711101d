"""Counters kept by the facade and the statistics object built from them (SPEC §7).

Two kinds of hit and miss counters live here, and they answer different questions:

- the cache's own (`CacheStatistics.hits`, ``misses``, per namespace): every logical
  lookup a caller made (``get``, ``get_many``, ``get_or_set``, ``@cache``), whichever
  tier answered it;
- a tier's (`RedisStatistics`, `MemoryStatistics`): the reads that reached that
  backend. The memory tier is read only while it serves (during an outage, or in a
  memory-only cache), so while Redis serves its counters stay still.

A read the backend answered with bytes the cache then refused (expired by freshness
metadata, undecodable) is a tier hit and a cache miss.

Each statistic is declared once, in its class: a field or public property (a computed
key, ``hitRate``) gives its name and type, its docstring what it counts. Its JSON key
is the camelCase of its name; ``field(metadata={...})`` may rename it (``"json"``),
convert its value (``"convert"``), nest it in an object described in ``_json_groups``
(``"group"``) or spread a statistics object's keys over the top level (``"flatten"``).
``_json_after`` puts a key right after another where the JSON order is not that of the
declarations (fields, then properties). ``to_dict()`` and ``json_keys()`` (what the
FastAPI extra builds its response models from) are generated; descriptions are read
from the source, and are empty where it is not shipped.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import functools
import inspect
import operator
import textwrap
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "LOAD_BUCKETS",
    "CacheStatistics",
    "Counters",
    "FailoverStatistics",
    "HealthReport",
    "JsonKey",
    "LoadDurations",
    "LoaderStatistics",
    "MemoryStatistics",
    "NamespaceStatistics",
    "NearCacheStatistics",
    "RedisStatistics",
]

NO_NAMESPACE = "(none)"
"""Statistics bucket for keys without a namespace."""

LOAD_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the load-duration histogram's buckets; one more bucket
holds what took longer."""


def _rate(hits: int, misses: int) -> float:
    total = hits + misses
    return round(hits / total, 4) if total else 0.0


class Counters:
    """Plain integer counters; incrementing one is all the hit path pays.

    Hits and misses live in one ``[hits, misses]`` list per namespace, which callers
    may keep (the facade caches it with each resolved key) and bump directly.
    """

    __slots__ = (
        "command_errors",
        "decode_errors",
        "fenced",
        "load_counts",
        "load_seconds",
        "loader_calls",
        "loader_errors",
        "namespaces",
        "not_cached",
        "stale_by_tag",
        "stale_served",
        "tag_invalidations",
        "type_errors",
    )

    def __init__(self) -> None:
        self.loader_calls = 0
        self.loader_errors = 0
        self.decode_errors = 0
        self.type_errors = 0
        self.command_errors = 0
        self.fenced = 0
        self.not_cached = 0
        self.stale_by_tag = 0
        self.tag_invalidations = 0
        self.stale_served = 0
        self.namespaces: dict[str, list[int]] = {}
        self.load_counts = [0] * (len(LOAD_BUCKETS) + 1)
        self.load_seconds = 0.0

    def slot(self, namespace: str | None) -> list[int]:
        """The ``[hits, misses]`` counters of ``namespace`` (``None``: no namespace)."""
        name = namespace or NO_NAMESPACE
        slot = self.namespaces.get(name)
        if slot is None:
            slot = self.namespaces[name] = [0, 0]
        return slot

    def observe_load(self, seconds: float) -> None:
        """Count one loader run that took ``seconds`` (on a miss: never on the hit path)."""
        self.load_counts[bisect.bisect_left(LOAD_BUCKETS, seconds)] += 1
        self.load_seconds += seconds

    def load_durations(self) -> LoadDurations:
        return LoadDurations(
            bounds=LOAD_BUCKETS,
            counts=tuple(self.load_counts),
            total_seconds=self.load_seconds,
        )

    @property
    def hits(self) -> int:
        return sum(slot[0] for slot in self.namespaces.values())

    @property
    def misses(self) -> int:
        return sum(slot[1] for slot in self.namespaces.values())


@dataclass(frozen=True)
class LoadDurations:
    """How long loader runs took (``get_or_set`` factories, ``@cache`` functions,
    background refreshes; failed runs included): a histogram for metrics exporters.

    ``counts[i]`` is the number of runs that took at most ``bounds[i]`` seconds and more
    than ``bounds[i - 1]``; the last count, the runs longer than ``bounds[-1]``. Not part
    of the statistics JSON (SPEC §7).
    """

    bounds: tuple[float, ...]
    """The buckets' upper bounds, in seconds (`LOAD_BUCKETS`)."""
    counts: tuple[int, ...]
    """Runs per bucket, one more than ``bounds``: the last, runs longer than all."""
    total_seconds: float
    """The time all runs took together."""

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, runs at most that long)`` pairs, ending with ``inf``: the
        shape Prometheus and OpenTelemetry histograms take."""
        pairs, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


# -- the declarations and what is generated from them ------------------------------------

_METADATA = frozenset(("json", "convert", "group", "flatten"))


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _itself(obj: Any) -> Any:
    return obj


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _compose(first: Callable[[Any], Any], then: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda obj: then(first(obj))


@dataclass(frozen=True)
class JsonKey:
    """One key of a statistics object's ``to_dict()``, as ``json_keys()`` lists them."""

    name: str
    """The key."""
    annotation: Any
    """Its value's type: ``int``, ``str | None``, a statistics class, a mapping of them."""
    _read: Callable[[Any], Any] = field(repr=False, compare=False)
    _doc: tuple[type, str] | str = field(repr=False)
    keys: tuple[JsonKey, ...] = ()
    """An object's keys (a mapping's: each of its values'); empty for a plain value."""
    mapping: bool = False
    """Whether the value maps names to objects with these ``keys`` (``namespaces``)."""
    schema: str = ""
    """An object's kind: its class's name, or ``"Class.key"`` for a group of fields."""

    @property
    def description(self) -> str:
        """What the key counts: the docstring of the field or property it comes from."""
        if isinstance(self._doc, str):
            return self._doc
        owner, name = self._doc
        return _docstrings(owner).get(name, "")


def _key(name: str, hint: Any, read: Callable[[Any], Any], doc: tuple[type, str]) -> JsonKey:
    mapped = typing.get_origin(hint) in (Mapping, dict)
    inner = typing.get_args(hint)[-1] if mapped else hint
    if isinstance(inner, type) and issubclass(inner, _Serialized):
        return JsonKey(name, hint, read, doc, _layout(inner), mapped, inner.__name__)
    return JsonKey(name, hint, read, doc)


_LAYOUTS: dict[type, tuple[JsonKey, ...]] = {}


def _layout(cls: type) -> tuple[JsonKey, ...]:
    """The keys of ``cls``'s ``to_dict()``, in order, from its declarations."""
    if (known := _LAYOUTS.get(cls)) is not None:
        return known
    hints = typing.get_type_hints(cls)
    members: dict[str, list[JsonKey | str]] = {}  # a str: the group the member opens
    groups: dict[str, list[JsonKey]] = {}
    for item in dataclasses.fields(cls):
        meta, name = item.metadata, item.name
        if unknown := set(meta) - _METADATA:
            raise TypeError(f"{cls.__name__}.{name}: unknown metadata {sorted(unknown)}")
        owner = next(k for k in cls.__mro__ if name in inspect.get_annotations(k))
        read: Callable[[Any], Any] = operator.attrgetter(name)
        if (convert := meta.get("convert")) is not None:
            read = _compose(read, convert)
        key = _key(meta.get("json") or _camel(name), hints[name], read, (owner, name))
        if meta.get("flatten"):
            members[name] = [
                dataclasses.replace(inner, _read=_compose(read, inner._read)) for inner in key.keys
            ]
        elif group := meta.get("group"):
            if group not in groups:
                members[name] = [group]
            groups.setdefault(group, []).append(key)
        else:
            members[name] = [key]
    for klass in reversed(cls.__mro__):
        for name, prop in vars(klass).items():
            if isinstance(prop, property) and not name.startswith("_"):
                hint = typing.get_type_hints(prop.fget).get("return", Any)
                members[name] = [_key(_camel(name), hint, operator.attrgetter(name), (klass, name))]
    after: Mapping[str, str] = getattr(cls, "_json_after", {})
    if unplaceable := set(after) - set(members):
        raise TypeError(f"{cls.__name__}._json_after: no member {sorted(unplaceable)}")
    order = [name for name in members if name not in after]
    pending = [name for name in members if name in after]
    while pending:
        placed = [name for name in pending if after[name] in order]
        if not placed:
            raise TypeError(f"{cls.__name__}._json_after: cannot place {pending}")
        for name in reversed(placed):  # keys after one key keep their declaration order
            order.insert(order.index(after[name]) + 1, name)
            pending.remove(name)
    described: Mapping[str, str] = getattr(cls, "_json_groups", {})
    layout: list[JsonKey] = []
    for entry in (entry for name in order for entry in members[name]):
        if isinstance(entry, str):  # a group: its members' keys, in an object
            keys, schema = tuple(groups[entry]), f"{cls.__name__}.{entry}"
            entry = JsonKey(entry, dict, _itself, described[entry], keys, schema=schema)
        layout.append(entry)
    known = _LAYOUTS[cls] = tuple(layout)
    return known


def _dump(keys: tuple[JsonKey, ...], obj: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in keys:
        value = key._read(obj)
        if key.mapping:
            value = {name: _dump(key.keys, item) for name, item in sorted(value.items())}
        elif key.keys:
            value = _dump(key.keys, value)
        found[key.name] = value
    return found


@functools.cache
def _docstrings(cls: type) -> Mapping[str, str]:
    """The docstrings of ``cls``'s own fields and methods, from its source, on one line."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source shipped: no descriptions
        return {}
    node = tree.body[0] if tree.body else None
    body = node.body if isinstance(node, ast.ClassDef) else []
    found: dict[str, str] = {}
    for statement, following in zip(body, [*body[1:], None], strict=False):
        if isinstance(statement, ast.FunctionDef):
            found[statement.name] = ast.get_docstring(statement) or ""
        elif (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[statement.target.id] = following.value.value
    return {name: " ".join(doc.split()) for name, doc in found.items()}


class _Serialized:
    """What a statistics dataclass inherits: ``to_dict()`` and ``json_keys()``."""

    _json_after: ClassVar[Mapping[str, str]] = {}
    _json_groups: ClassVar[Mapping[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        """This object as JSON: camelCase keys, in the order ``json_keys()`` lists them."""
        return _dump(_layout(type(self)), self)

    @classmethod
    def json_keys(cls) -> tuple[JsonKey, ...]:
        """The keys ``to_dict()`` gives, in order, with their types and descriptions."""
        return _layout(cls)


# -- the statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceStatistics(_Serialized):
    """The cache's lookups of keys in one namespace (``"(none)"``: keys without one)."""

    hits: int
    """Lookups of a key in this namespace that returned a cached value."""
    misses: int
    """Lookups of a key in this namespace that found nothing usable."""

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, ``hits / (hits + misses)`` rounded to 4 places; 0.0 before
        any lookup."""
        return _rate(self.hits, self.misses)


@dataclass(frozen=True)
class RedisStatistics(_Serialized):
    """The primary tier (Redis, or whatever backend was given as ``primary``)."""

    _json_after: ClassVar[Mapping[str, str]] = {"used_memory_bytes": "used_memory"}

    configured: bool
    """Whether the cache has a primary at all (``False``: a memory-only cache)."""
    connected: bool
    """Whether the primary serves calls right now: ``False`` during an outage, until the
    failback, even if Redis already answers again."""
    used_memory: str | None = None
    """The Redis server's memory use, human-readable (``"1.2M"``; summed over a
    cluster's primaries); ``None`` while not connected or when the primary does not
    report it."""
    connected_clients: int | None = None
    """Clients connected to the Redis server, from every process (``INFO clients``);
    ``None`` while not connected or when the primary does not report it."""
    hits: int = 0
    """Reads of the primary by this process that found an entry (not the server's
    keyspace counters, which other software shares); 0 while not connected."""
    misses: int = 0
    """Reads of the primary by this process that found nothing; 0 while not connected."""
    used_memory_bytes: int | None = None
    """The server's memory use as a number of bytes, for dashboards and alerts; ``None``
    when the human-readable figure is."""

    @property
    def hit_rate(self) -> float:
        """Hits over reads, ``hits / (hits + misses)`` rounded to 4 places; 0.0 before
        any read."""
        return _rate(self.hits, self.misses)


@dataclass(frozen=True)
class MemoryStatistics(_Serialized):
    """The in-process fallback tier, counted since the cache was built.

    It is read only while it serves (an outage, or a memory-only cache): its ``hits``
    and ``misses`` are a part of the cache's lookups, not all of them.
    """

    _json_after: ClassVar[Mapping[str, str]] = {"hit_rate": "size", "entries": "hit_rate"}

    hits: int
    """Reads that reached the memory tier and found a live entry. The memory tier is
    read only while it serves (an outage, or a memory-only cache), so this is not the
    cache's hits (see the top-level ``hits``)."""
    misses: int
    """Reads that reached the memory tier and found nothing (or an expired entry); not
    the cache's misses (see the top-level ``misses``)."""
    size: int
    """Entries held now (``entries`` too); emptied at each failover."""
    bytes: int
    """Bytes held now: keys and encoded values."""
    evictions: int
    """Entries dropped, least recently used first, to stay under ``memory_max_entries``
    or ``memory_max_bytes``."""
    expirations: int
    """Entries removed because their TTL ran out (found on a read or swept)."""

    @property
    def hit_rate(self) -> float:
        """Hits over reads, ``hits / (hits + misses)`` rounded to 4 places; 0.0 before
        any read."""
        return _rate(self.hits, self.misses)

    @property
    def entries(self) -> int:
        """Entries held now: the same as ``size``, under a name that cannot be taken for
        bytes."""
        return self.size


@dataclass(frozen=True)
class NearCacheStatistics(_Serialized):
    """The near cache (``near_cache=``; SPEC §13): copies of Redis entries in process
    memory, kept coherent by Redis's invalidations."""

    enabled: bool = False
    """Whether the cache was built with a near cache (and has a primary to be near to)."""
    tracking: bool = False
    """Whether it serves right now: its tracking link is up and answered its last
    heartbeat. While ``False`` every read goes to Redis."""
    hits: int = 0
    """Reads served from the near cache, with no round trip."""
    misses: int = 0
    """Reads that went to Redis and may be kept near."""
    invalidations: int = 0
    """Keys Redis reported changed (by any process, this one included)."""
    flushes: int = 0
    """Times it was emptied: tracking lost or re-established, a FLUSHDB, a failover or
    failback, a Cluster topology change."""
    evictions: int = 0
    """Entries dropped, least recently used first, to stay within its bounds."""
    bypassed: int = 0
    """Reads that went to Redis without being kept, because coherence could not be
    vouched for at the time."""
    size: int = 0
    """Entries held now."""
    bytes: int = 0
    """Bytes held now: keys, values and bookkeeping."""
    links: int = 0
    """Tracking connections open now (one per primary)."""
    last_error: str | None = None
    """Why the tracking link last went down (``"Type: message"``); ``None`` if never."""

    @property
    def hit_rate(self) -> float:
        """Hits over reads that reached it, rounded to 4 places; 0.0 before any."""
        return _rate(self.hits, self.misses)


@dataclass(frozen=True)
class LoaderStatistics(_Serialized):
    """What ``get_or_set`` and ``@cache`` did on misses."""

    calls: int
    """Loader runs (``get_or_set`` factories, ``@cache`` functions), background
    refreshes included."""
    errors: int
    """Loader runs that raised; nothing was cached for them."""
    coalesced: int
    """Callers served by a load another caller had started (single flight): loader
    runs saved in this process."""
    refreshes: int = 0
    """Background refreshes started (``refresh_after``, ``early_refresh``)."""
    refresh_failures: int = 0
    """Background refreshes that failed; the cached value kept being served."""
    stale_served: int = 0
    """Times an expired value was returned because its loader failed
    (``stale_if_error``)."""
    fenced: int = 0
    """Loads whose value was returned to their callers but not stored, because their
    entry was invalidated or written while they ran (or their claim lapsed)."""
    not_cached: int = 0
    """Loads whose value was returned but not stored because ``cache_if`` said so, or
    because it did not fit the requested type."""


@dataclass(frozen=True)
class FailoverStatistics(_Serialized):
    """Outages of the primary and what the cache did about them.

    `CacheStatistics.to_dict()` serves its keys at the top level.
    """

    _json_after: ClassVar[Mapping[str, str]] = {"state": "time_on_fallback"}

    state: str = field(default="closed", metadata={"json": "breakerState"})
    """``"closed"``: the primary serves; ``"open"``: the fallback serves during an
    outage; ``"memory-only"``: there is no primary."""
    failovers: int = 0
    """Switches from the primary to the fallback."""
    failbacks: int = 0
    """Switches back to the primary once it answered and the outage's changes were
    replayed on it."""
    time_on_fallback: float = field(default=0.0, metadata={"convert": lambda s: round(s, 3)})
    """Seconds spent serving from the fallback in place of the primary, the current
    outage included (rounded to 3 places in JSON)."""
    errors: int = field(default=0, metadata={"json": "backendErrors"})
    """Errors of the primary: every failed call (whether or not it caused a failover)
    and every failed probe during an outage."""
    last_error: str | None = field(default=None, metadata={"json": "lastBackendError"})
    """The last of those errors (``"Type: message"``), kept after recovery, so it may
    describe an outage long over (the time of the last error says when); ``None``
    before any."""
    last_error_at: float | None = field(default=None, metadata={"json": "lastBackendErrorAt"})
    """When the last error happened, in seconds since the epoch (``time.time()``);
    ``None`` before any error."""


@dataclass(frozen=True)
class CacheStatistics(_Serialized):
    """A snapshot of the cache; `to_dict()` gives the JSON the admin route serves."""

    _json_after: ClassVar[Mapping[str, str]] = {
        "hit_rate": "misses",
        "evictions": "hit_rate",
        "failover": "evictions",
    }

    backend: str
    """Name of the backend serving calls now: ``"redis"``, or ``"memory"`` during an
    outage and in a memory-only cache."""
    redis: RedisStatistics
    """The primary tier (Redis)."""
    memory: MemoryStatistics
    """The in-process fallback tier; its hits and misses count only the reads it
    served."""
    hits: int = 0
    """Lookups (``get``, each key of ``get_many``, ``get_or_set``, ``@cache``) that
    returned a cached value, whichever tier held it."""
    misses: int = 0
    """Lookups that found nothing usable: absent, expired, undecodable (decode errors),
    not of the requested type (type errors), refused by the server (command errors), or
    stale by one of their tags."""
    decode_errors: int = 0
    """Entries found that could not be decoded (foreign data, another serializer),
    counted as misses."""
    type_errors: int = 0
    """Entries found that did not fit the type the caller asked for (``type=``, or a
    decorated function's return annotation), counted as misses."""
    command_errors: int = 0
    """Reads the server refused for the key (``WRONGTYPE``, say), counted as misses."""
    stale_by_tag: int = 0
    """Entries found whose tags were invalidated after they were loaded (SPEC §14),
    counted as misses."""
    tag_invalidations: int = 0
    """Tags invalidated by ``invalidate_tags`` (each tag of a call counts once)."""
    namespaces: Mapping[str, NamespaceStatistics] = field(default_factory=dict)
    """``hits`` and ``misses`` split by namespace; keys without one under ``"(none)"``."""
    loader: LoaderStatistics = field(default_factory=lambda: LoaderStatistics(0, 0, 0))
    """What loads on misses did."""
    near_cache: NearCacheStatistics = field(default_factory=NearCacheStatistics)
    """The near cache in front of Redis (``enabled: false`` without one)."""
    failover: FailoverStatistics = field(
        default_factory=FailoverStatistics, metadata={"flatten": True}
    )
    """Outages, failovers and failbacks; ``to_dict()`` serves its keys at the top level."""

    @property
    def hit_rate(self) -> float:
        """Hits over lookups, ``hits / (hits + misses)`` rounded to 4 places; 0.0 before
        any lookup."""
        return _rate(self.hits, self.misses)

    @property
    def evictions(self) -> int:
        """The memory tier's evictions, the same as ``memory.evictions`` (Redis's own
        ``maxmemory`` evictions are in its ``INFO stats``)."""
        return self.memory.evictions

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of SPEC §7, as ``/cache/stats`` serves it (camelCase keys);
        ``json_keys()`` lists its keys with their types and descriptions."""
        return super().to_dict()


@dataclass(frozen=True)
class HealthReport(_Serialized):
    """What ``FallbackCache.health()`` found; ``to_dict()`` is what ``/cache/health`` serves."""

    _json_groups: ClassVar[Mapping[str, str]] = {"redis": "The primary, as this check found it."}

    status: str
    """``"ok"`` when the configured tiers all serve, ``"degraded"`` while the cache
    answers from memory because its primary does not."""
    backend: str
    """Name of the backend serving calls now: ``"redis"`` or ``"memory"``."""
    breaker_state: str
    """``"closed"``, ``"open"`` (an outage) or ``"memory-only"``."""
    redis_configured: bool = field(metadata={"json": "configured", "group": "redis"})
    """Whether the cache has a primary."""
    redis_reachable: bool | None = field(metadata={"json": "reachable", "group": "redis"})
    """Whether the primary answered this health check's PING; ``None`` without one."""
    redis_latency: float | None = field(
        default=None, metadata={"json": "latencyMs", "group": "redis", "convert": _milliseconds}
    )
    """That PING's round trip, in seconds (in milliseconds in JSON: ``latencyMs``);
    ``None`` when it did not answer."""
    redis_error: str | None = field(default=None, metadata={"json": "error", "group": "redis"})
    """Why the PING failed (``"Type: message"``); ``None`` when it answered."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``/cache/health`` serves (latency in milliseconds); ``json_keys()``
        lists its keys with their types and descriptions."""
        return super().to_dict()
