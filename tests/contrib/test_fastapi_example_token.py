"""examples/fastapi_app.py: the admin token comes from the environment, or is shown."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

import httpx
import pytest


def _example(monkeypatch: pytest.MonkeyPatch, token: str | None) -> ModuleType:
    monkeypatch.delenv("CHENU_CACHE_REDIS_URL", raising=False)
    if token is None:
        monkeypatch.delenv("CHENU_CACHE_ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("CHENU_CACHE_ADMIN_TOKEN", token)
    # The token is read at import: import the module afresh for this environment.
    return importlib.reload(importlib.import_module("examples.fastapi_app"))


async def _stats_status(module: ModuleType, token: str) -> int:
    transport = httpx.ASGITransport(app=module.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        reply = await client.get("/cache/stats", headers={"Authorization": f"Bearer {token}"})
    return reply.status_code


async def test_a_generated_token_is_printed_at_start_up_and_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _example(monkeypatch, None)
    app = module.app
    async with app.router.lifespan_context(app):
        printed = capsys.readouterr().err
        found = re.search(r"admin token (\S+)", printed)
        assert found is not None, printed
        assert "CHENU_CACHE_ADMIN_TOKEN" in printed
        assert await _stats_status(module, found.group(1)) == 200
        assert await _stats_status(module, "not-the-token-0123456789") == 403
    assert module.cache_service.primary is None


async def test_a_token_from_the_environment_is_used_and_not_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "from-the-environment-0123456789"
    module = _example(monkeypatch, token)
    app = module.app
    async with app.router.lifespan_context(app):
        captured = capsys.readouterr()
        assert token not in captured.out + captured.err
        assert "admin token" not in captured.err
        assert await _stats_status(module, token) == 200


def test_the_docstring_shows_how_to_call_an_admin_route(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _example(monkeypatch, "doc-token-0123456789abcdef").__doc__ or ""
    assert 'curl -H "Authorization: Bearer $CHENU_CACHE_ADMIN_TOKEN"' in doc
    assert "/cache/stats" in doc
