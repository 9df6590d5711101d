"""chenu-cache: async Redis caching with an in-process fallback.

This module only re-exports; importing it does no I/O and reads no environment.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._decorator import BoundCachedMethod, CachedFunction
from ._default import cache, cache_service
from ._facade import FallbackCache
from ._failover import Transition
from ._namespaces import DEFAULT_NAMESPACES, NamespaceRegistry
from ._near import NearCacheOptions
from ._types import MISSING, NO_EXPIRY, TTL
from .backends import Backend, BackendStats, MemoryBackend, RedisBackend, SupportsLock
from .events import CacheEvent
from .exceptions import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CacheError,
    CacheTypeError,
    CommandRefusedError,
    ConfigurationError,
    DeserializationError,
    InvalidKeyError,
    InvalidNamespaceError,
    InvalidPatternError,
    InvalidTTLError,
    SerializationError,
    SignatureError,
    ValidationError,
    ValueTooLargeError,
)
from .serializers import Codec, JsonSerializer, PickleSerializer, Serializer
from .stats import CacheStatistics, HealthReport

try:
    __version__ = _version("chenu-cache")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_NAMESPACES",
    "MISSING",
    "NO_EXPIRY",
    "TTL",
    "Backend",
    "BackendError",
    "BackendStats",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BoundCachedMethod",
    "CacheError",
    "CacheEvent",
    "CacheStatistics",
    "CacheTypeError",
    "CachedFunction",
    "Codec",
    "CommandRefusedError",
    "ConfigurationError",
    "DeserializationError",
    "FallbackCache",
    "HealthReport",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "InvalidPatternError",
    "InvalidTTLError",
    "JsonSerializer",
    "MemoryBackend",
    "NamespaceRegistry",
    "NearCacheOptions",
    "PickleSerializer",
    "RedisBackend",
    "SerializationError",
    "Serializer",
    "SignatureError",
    "SupportsLock",
    "Transition",
    "ValidationError",
    "ValueTooLargeError",
    "__version__",
    "cache",
    "cache_service",
]
