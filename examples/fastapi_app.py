"""A FastAPI service with chenu-cache: cached endpoints and the admin routes.

    pip install "chenu-cache[fastapi]" uvicorn
    CACHE_ADMIN_TOKEN=change-me-to-something-long CHENU_CACHE_REDIS_URL=redis://127.0.0.1:6379/0 \
        uvicorn examples.fastapi_app:app

Without CHENU_CACHE_REDIS_URL the cache runs in memory. Then try:

    curl localhost:8000/users/42            # slow the first time, instant after
    curl localhost:8000/cache/health
    curl -H "Authorization: Bearer $CACHE_ADMIN_TOKEN" localhost:8000/cache/stats
"""

from __future__ import annotations

import asyncio
import os
import secrets

from fastapi import FastAPI

from chenu_cache import cache, cache_service
from chenu_cache.contrib.fastapi import create_cache_router

# A random token when none is configured: the admin routes are never open by accident.
ADMIN_TOKEN = os.environ.get("CACHE_ADMIN_TOKEN") or secrets.token_urlsafe(32)

app = FastAPI(title="chenu-cache example")
# The router also starts and stops cache_service with the app (initialize / close).
app.include_router(create_cache_router(cache_service, token=ADMIN_TOKEN))


@cache(namespace="user")
async def load_user(user_id: str) -> dict[str, str]:
    await asyncio.sleep(0.2)  # stands in for a database query
    return {"id": user_id, "name": f"User {user_id}"}


@app.get("/users/{user_id}")
async def get_user(user_id: str) -> dict[str, str]:
    return await load_user(user_id)


@app.post("/users/{user_id}/refresh")
async def refresh_user(user_id: str) -> dict[str, bool]:
    return {"invalidated": await load_user.invalidate(user_id)}
