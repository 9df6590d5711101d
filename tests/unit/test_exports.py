"""The public surface: __all__ is complete, sorted, and names only what exists."""

from __future__ import annotations

import types

import chenu_cache


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions and the rest.
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    assert chenu_cache.__all__ == sorted(chenu_cache.__all__, key=_isort_key)


def test_all_names_exist_and_nothing_public_is_missing() -> None:
    exported = set(chenu_cache.__all__)
    assert len(exported) == len(chenu_cache.__all__), "duplicates in __all__"
    for name in exported:
        assert hasattr(chenu_cache, name), name
    public = {
        name
        for name, value in vars(chenu_cache).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= exported, public - exported


def test_version_is_a_string() -> None:
    assert isinstance(chenu_cache.__version__, str)
    assert chenu_cache.__version__
