"""Figures from Redis's INFO replies, as the statistics show them."""

from __future__ import annotations

from typing import Any

__all__ = ["human_size", "info_total"]


def info_total(info: Any, field: str) -> int | None:
    """A counter from INFO, summed over the nodes of a cluster's ``{node: info}`` reply."""
    if not isinstance(info, dict):
        return None
    if field in info:
        return int(info[field])
    values = [int(v[field]) for v in info.values() if isinstance(v, dict) and field in v]
    return sum(values) if values else None


def human_size(size: int | None) -> str | None:
    """Bytes as Redis's used_memory_human writes them (``1.20M``)."""
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{int(value)}B" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    return f"{value:.2f}T"
