"""Storage backends: the `Backend` protocol and its two built-in implementations."""

from .base import (
    Backend,
    BackendStats,
    DeclaresRecentWindow,
    SupportsEvents,
    SupportsFence,
    SupportsLock,
    SupportsNowait,
    SupportsStatsNowait,
    SupportsTags,
    SupportsTracking,
    Tracking,
    TrackingSink,
)
from .memory import MemoryBackend
from .redis import RedisBackend

__all__ = [
    "Backend",
    "BackendStats",
    "DeclaresRecentWindow",
    "MemoryBackend",
    "RedisBackend",
    "SupportsEvents",
    "SupportsFence",
    "SupportsLock",
    "SupportsNowait",
    "SupportsStatsNowait",
    "SupportsTags",
    "SupportsTracking",
    "Tracking",
    "TrackingSink",
]
