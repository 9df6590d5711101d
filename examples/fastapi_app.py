"""A FastAPI service with chenu-cache: cached endpoints and the admin routes.

From a clone of the repository (chenu-cache is not on PyPI yet)::

    python -m pip install -e ".[fastapi]" uvicorn
    export CHENU_CACHE_ADMIN_TOKEN=change-me-to-something-long   # optional, see below
    export CHENU_CACHE_REDIS_URL=redis://127.0.0.1:6379/0        # optional: memory without it
    uvicorn examples.fastapi_app:app

The admin routes need ``Authorization: Bearer <token>``. The token is
``CHENU_CACHE_ADMIN_TOKEN``; without it, the app makes up a random one at start-up and
prints it (``chenu-cache example: admin token ...``): copy it into the variable of the
shell you run curl from. With ``--workers`` above 1, set the variable: each worker would
make up a token of its own. Then try::

    curl localhost:8000/users/42            # slow the first time, instant after
    curl -i localhost:8000/users/42/card    # a cached response: ETag, Cache-Status
    curl -X POST localhost:8000/users/42/refresh   # invalidates both, by tag
    curl localhost:8000/cache/health        # open
    curl -H "Authorization: Bearer $CHENU_CACHE_ADMIN_TOKEN" localhost:8000/cache/stats
    curl -X POST -H "Authorization: Bearer $CHENU_CACHE_ADMIN_TOKEN" localhost:8000/cache/clear
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from chenu_cache import cache, cache_service
from chenu_cache.contrib.fastapi import cache_response, create_cache_router

ADMIN_ENV = "CHENU_CACHE_ADMIN_TOKEN"
# A random token when none is configured: the admin routes are never open by accident.
_CONFIGURED_TOKEN = os.environ.get(ADMIN_ENV)
ADMIN_TOKEN = _CONFIGURED_TOKEN or secrets.token_urlsafe(32)
TOKEN_GENERATED = not _CONFIGURED_TOKEN


@asynccontextmanager
async def announce_token(app: FastAPI) -> AsyncIterator[None]:
    if TOKEN_GENERATED:
        # Only a token made up for this run is shown: one from the environment is
        # already known to whoever set it, and must not end up in log files.
        print(
            f"chenu-cache example: admin token {ADMIN_TOKEN} (set {ADMIN_ENV} to choose it)",
            file=sys.stderr,
            flush=True,
        )
    yield


app = FastAPI(title="chenu-cache example", lifespan=announce_token)
# The router also starts and stops cache_service with the app (initialize / close).
app.include_router(create_cache_router(cache_service, token=ADMIN_TOKEN))


class User(BaseModel):
    id: str
    name: str


# Comes back as a User on hits too (its return annotation), tagged with its user.
@cache(namespace="user", tags=["user:{user_id}"])
async def load_user(user_id: str) -> User:
    await asyncio.sleep(0.2)  # stands in for a database query
    return User(id=user_id, name=f"User {user_id}")


@app.get("/users/{user_id}")
async def get_user(user_id: str) -> User:
    return await load_user(user_id)


# The whole HTTP response cached: ETag, 304 on If-None-Match, Cache-Status; HEAD too.
@app.head("/users/{user_id}/card", include_in_schema=False)
@app.get("/users/{user_id}/card")
@cache_response(ttl=60, tags=["user:{user_id}"])
async def user_card(user_id: str) -> User:
    return await load_user(user_id)


@app.post("/users/{user_id}/refresh")
async def refresh_user(user_id: str) -> dict[str, bool]:
    # Every entry about this user, in every process: the loader's and the card's.
    await cache_service.invalidate_tags(f"user:{user_id}")
    return {"invalidated": True}
