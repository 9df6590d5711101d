"""chenu-cache: async Redis caching with an in-process fallback.

This module only re-exports; importing it does no I/O and reads no environment.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._types import MISSING, NO_EXPIRY
from .backends import Backend, BackendStats, MemoryBackend, RedisBackend
from .exceptions import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    CacheError,
    CacheTypeError,
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

try:
    __version__ = _version("chenu-cache")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "MISSING",
    "NO_EXPIRY",
    "Backend",
    "BackendError",
    "BackendStats",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CacheError",
    "CacheTypeError",
    "Codec",
    "ConfigurationError",
    "DeserializationError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "InvalidPatternError",
    "InvalidTTLError",
    "JsonSerializer",
    "MemoryBackend",
    "PickleSerializer",
    "RedisBackend",
    "SerializationError",
    "Serializer",
    "SignatureError",
    "ValidationError",
    "ValueTooLargeError",
    "__version__",
]
