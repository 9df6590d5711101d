"""Every public name documents its contract (the API reference is built from these)."""

from __future__ import annotations

import inspect

import pytest

import chenu_cache
from chenu_cache.contrib import fastapi as contrib_fastapi

PUBLIC = [
    (name, getattr(chenu_cache, name))
    for name in chenu_cache.__all__
    if inspect.isclass(getattr(chenu_cache, name)) or inspect.isroutine(getattr(chenu_cache, name))
] + [
    ("create_cache_router", contrib_fastapi.create_cache_router),
    ("cache_lifespan", contrib_fastapi.cache_lifespan),
]


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_names_and_their_methods_have_docstrings(name: str, obj: object) -> None:
    assert (inspect.getdoc(obj) or "").strip(), f"{name} has no docstring"
    if not inspect.isclass(obj) or issubclass(obj, BaseException):
        return
    for attr, member in vars(obj).items():
        if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
            continue
        doc = inspect.getdoc(getattr(obj, attr))
        assert (doc or "").strip(), f"{name}.{attr} has no docstring"
