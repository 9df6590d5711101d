"""Every statistic says what it counts: in its field's docstring and in docs/usage.md.

A field's (or a computed key's property's) docstring is the one description of what it
counts: the API reference shows it, and ``json_keys()`` gives it to the FastAPI extra's
response models.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from chenu_cache import stats as stats_module
from chenu_cache.stats import (
    CacheStatistics,
    FailoverStatistics,
    HealthReport,
    JsonKey,
    LoaderStatistics,
    MemoryStatistics,
    NamespaceStatistics,
    RedisStatistics,
)

ROOT = Path(__file__).resolve().parents[2]
USAGE = ROOT / "docs" / "usage.md"


def _field_docstrings() -> dict[str, dict[str, str]]:
    """For each dataclass of stats.py, the string literal that follows each field."""
    tree = ast.parse(Path(stats_module.__file__).read_text(encoding="utf-8"))
    found: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        for statement, following in zip(node.body, [*node.body[1:], None], strict=True):
            if not isinstance(statement, ast.AnnAssign):
                continue
            assert isinstance(statement.target, ast.Name)
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = following.value.value
            else:
                docs[statement.target.id] = ""
        found[node.name] = docs
    return found


DATACLASSES = [
    cls
    for cls in vars(stats_module).values()
    if isinstance(cls, type)
    and dataclasses.is_dataclass(cls)
    and cls.__module__ == "chenu_cache.stats"
]


STATISTICS = [cls for cls in DATACLASSES if hasattr(cls, "json_keys")]


def test_the_statistics_classes_are_found() -> None:
    assert len(STATISTICS) == 8
    assert {CacheStatistics, HealthReport, FailoverStatistics} <= set(STATISTICS)


@pytest.mark.parametrize("cls", DATACLASSES, ids=lambda c: c.__name__)
def test_every_dataclass_field_has_a_docstring(cls: type) -> None:
    docs = _field_docstrings()[cls.__name__]
    for field in dataclasses.fields(cls):
        if field.name.startswith("_"):
            continue
        assert docs.get(field.name, "").strip(), f"{cls.__name__}.{field.name} has no docstring"


def _all_keys(keys: tuple[JsonKey, ...], prefix: str = "") -> list[tuple[str, JsonKey]]:
    found = []
    for key in keys:
        path = prefix + key.name
        found.append((path, key))
        inner = f"{path}.<name>." if key.mapping else f"{path}."
        found.extend(_all_keys(key.keys, inner))
    return found


@pytest.mark.parametrize("cls", STATISTICS, ids=lambda c: c.__name__)
def test_every_json_key_is_described_by_its_declaration(cls: Any) -> None:
    keys = _all_keys(cls.json_keys())
    assert keys
    undescribed = [path for path, key in keys if len(key.description) < 10]
    assert undescribed == []
    for path, key in keys:  # one line each, ready for an OpenAPI schema
        assert "\n" not in key.description, path


def _statistics() -> CacheStatistics:
    return CacheStatistics(
        backend="redis",
        redis=RedisStatistics(True, True, "1M", 1, 1, 1),
        memory=MemoryStatistics(1, 1, 1, 1, 1, 1),
        namespaces={"user": NamespaceStatistics(1, 1)},
        loader=LoaderStatistics(1, 1, 1),
        failover=FailoverStatistics(last_error="x", last_error_at=1.0),
    )


def _paths(value: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, item in value.items():
        name = "<name>" if prefix == "namespaces." else key
        if isinstance(item, dict) and item:
            paths.extend(_paths(item, f"{prefix}{name}."))
        else:
            paths.append(prefix + name)
    return paths


def _usage_table() -> dict[str, str]:
    section = USAGE.read_text(encoding="utf-8").partition("## Statistics")[2]
    rows = re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, flags=re.MULTILINE)
    return dict(rows)


def test_json_keys_list_exactly_the_keys_of_to_dict_in_order() -> None:
    declared = [path for path, key in _all_keys(CacheStatistics.json_keys()) if not key.keys]
    assert declared == _paths(_statistics().to_dict())


def test_the_usage_table_explains_every_key_of_to_dict() -> None:
    table = _usage_table()
    paths = _paths(_statistics().to_dict())
    assert "namespaces.<name>.hits" in paths
    missing = [path for path in paths if not table.get(path, "").strip()]
    assert missing == []
    stale = sorted(set(table) - set(paths))
    assert stale == []


def test_spec_keys_stay_and_the_clearer_alias_matches() -> None:
    shape = _statistics().to_dict()
    assert {"backend", "redis", "memory"} <= set(shape)
    assert {"connected", "usedMemory", "connectedClients", "hitRate"} <= set(shape["redis"])
    assert {"hits", "misses", "size", "hitRate"} <= set(shape["memory"])
    assert shape["memory"]["entries"] == shape["memory"]["size"]


def test_the_docs_tell_the_two_kinds_of_misses_apart() -> None:
    table = _usage_table()
    assert "reached the memory tier" in table["memory.misses"]
    assert "lookups" in table["misses"]
    assert "kept after Redis recovers" in table["lastBackendError"]
    assert "seconds since the epoch" in table["lastBackendErrorAt"]
