"""Every error chenu-cache raises on purpose.

One family, rooted at `CacheError`. Errors about the caller's input also
subclass the builtin a Python programmer would reach for (``ValueError`` for a
value out of bounds, ``TypeError`` for a value of the wrong kind), so existing
``except ValueError`` blocks keep working. Backend failures form their own branch,
`BackendError`, which the facade absorbs during failover. A backend that answers but
refuses one command (`CommandRefusedError`) is not failing: that is no failover.

This module imports nothing from the package.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "CacheError",
    "CacheTypeError",
    "CommandRefusedError",
    "ConfigurationError",
    "DeserializationError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "InvalidPatternError",
    "InvalidTTLError",
    "SerializationError",
    "SignatureError",
    "ValidationError",
    "ValueTooLargeError",
]


class CacheError(Exception):
    """Base of every error raised by chenu-cache."""


class ValidationError(CacheError, ValueError):
    """An argument has the right type but a value the cache refuses."""


class InvalidKeyError(ValidationError):
    """A key is empty, too long, or holds whitespace or unprintable characters."""


class InvalidNamespaceError(ValidationError):
    """A namespace does not match ``[a-z0-9_.-]{1,64}``."""


class InvalidPatternError(ValidationError):
    """A glob pattern is empty, too long, or malformed (unclosed ``[``, dangling ``\\``)."""


class InvalidTTLError(ValidationError):
    """A TTL is negative, zero, not finite, or beyond the allowed maximum."""


class ValueTooLargeError(ValidationError):
    """An encoded value exceeds the configured maximum size; nothing was written."""


class ConfigurationError(ValidationError):
    """The cache or a backend was built with options that cannot work together."""


class CacheTypeError(CacheError, TypeError):
    """An argument has a type the cache cannot accept (a non-``str`` key, say)."""


class SerializationError(CacheError, TypeError):
    """The serializer cannot encode a value; the message names the offending type."""


class DeserializationError(CacheError, ValueError):
    """Stored bytes cannot be decoded: foreign data, a corrupt entry, or another format."""


class SignatureError(DeserializationError):
    """Signed data is unsigned or its signature does not verify; it was not unpickled."""


class BackendError(CacheError):
    """A backend failed to carry out an operation (network, server, protocol)."""


class BackendUnavailableError(BackendError, ConnectionError):
    """The backend cannot be reached: refused, reset, closed, or not yet connected."""


class BackendTimeoutError(BackendError, TimeoutError):
    """The backend did not answer within its operation or connect timeout."""


class CommandRefusedError(CacheError):
    """The backend answered, but refused this command for this key or these arguments.

    Redis's ``WRONGTYPE`` for a key another program wrote under the prefix, or
    ``NOPERM`` from an ACL, say. The server is up, so this is not a `BackendError` and
    causes no failover: reads treat it as a miss (counted and logged), other calls
    raise it.
    """
