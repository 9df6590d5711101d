"""A FastAPI service with chenu-cache: cached endpoints, the admin routes, and a React page.

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
    curl -X PUT -H 'Content-Type: application/json' -d '{"name": "Ada"}' localhost:8000/users/42
    curl -N localhost:8000/cache/events     # the invalidations, as Server-Sent Events
    curl localhost:8000/cache/health        # open
    curl -H "Authorization: Bearer $CHENU_CACHE_ADMIN_TOKEN" localhost:8000/cache/stats
    curl -X POST -H "Authorization: Bearer $CHENU_CACHE_ADMIN_TOKEN" localhost:8000/cache/clear

The page at http://localhost:8000/ shows user 42 with ``chenu-cache-react`` and follows
the event stream: rename the user with the PUT above and the open page shows the new name
without a reload. Its script is built from ``examples/react_page/main.tsx`` (Node 20.19+)::

    cd js/react && npm ci && npm run build:example

Until then ``/`` answers ``503`` with that command. ``cd js/react && npm run e2e`` tests
the page in Chromium against this app and a throw-away Redis (docs/react.md).
"""

from __future__ import annotations

import asyncio
import html
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from chenu_cache import FallbackCache, cache
from chenu_cache.contrib.fastapi import cache_response, create_cache_router

ADMIN_ENV = "CHENU_CACHE_ADMIN_TOKEN"
# A random token when none is configured: the admin routes are never open by accident.
_CONFIGURED_TOKEN = os.environ.get(ADMIN_ENV)
ADMIN_TOKEN = _CONFIGURED_TOKEN or secrets.token_urlsafe(32)
TOKEN_GENERATED = not _CONFIGURED_TOKEN

# Seconds the stand-in database takes per query (the e2e test sets 0 to time the cache
# and the event stream alone).
DB_DELAY = float(os.environ.get("CHENU_EXAMPLE_DB_DELAY", "0.2"))

PAGE_DIR = Path(__file__).resolve().parent / "react_page"
PAGE_HTML = PAGE_DIR / "index.html"
# Built by `npm run build:example` in js/react/, and not committed (dist/ is git-ignored).
PAGE_BUNDLE = PAGE_DIR / "dist" / "app.js"

# The example's own cache rather than the shared `cache_service`: events must be switched
# on when a cache is built. Redis comes from CHENU_CACHE_REDIS_URL when initialize() runs
# (the router below runs it at start-up); without it, the cache lives in process memory.
app_cache = FallbackCache(events=True)
# The name earlier versions of this example (and their tests) use for the app's cache.
cache_service = app_cache


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


async def anyone_may_listen() -> None:
    """The event stream's auth: here, none.

    A browser's ``EventSource`` cannot send ``Authorization``, so the stream cannot take
    the admin token. This demo lets everyone listen, which only tells them *that* user
    entries were invalidated (``user:42``), never their data. A real app checks its own
    session cookie here and raises ``HTTPException(401)`` without one.
    """


app = FastAPI(title="chenu-cache example", lifespan=announce_token)
# The router also starts and stops app_cache with the app (initialize / close), and
# streams invalidations of the `user` namespace (keys and `user:...` tags) to browsers.
app.include_router(
    create_cache_router(
        app_cache,
        token=ADMIN_TOKEN,
        event_namespaces=("user",),
        events_dependency=anyone_may_listen,
    )
)


class User(BaseModel):
    id: str
    name: str


class UserUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=100)


# The "database": names changed through PUT /users/{id}; the others are "User <id>".
# One process only: with several workers, each would have its own.
NAMES: dict[str, str] = {}


# Comes back as a User on hits too (its return annotation), tagged with its user.
@cache(cache=app_cache, namespace="user", tags=["user:{user_id}"])
async def load_user(user_id: str) -> User:
    await asyncio.sleep(DB_DELAY)  # stands in for a database query
    return User(id=user_id, name=NAMES.get(user_id, f"User {user_id}"))


@app.get("/users/{user_id}")
async def get_user(user_id: str) -> User:
    return await load_user(user_id)


# The whole HTTP response cached: ETag, 304 on If-None-Match, Cache-Status; HEAD too.
@app.head("/users/{user_id}/card", include_in_schema=False)
@app.get("/users/{user_id}/card")
@cache_response(ttl=60, tags=["user:{user_id}"], cache=app_cache)
async def user_card(user_id: str) -> User:
    return await load_user(user_id)


@app.put("/users/{user_id}")
async def rename_user(user_id: str, update: UserUpdate) -> User:
    # A demo: anyone may rename anyone. The write, then the invalidation: every entry
    # tagged user:<id> (the loader's, the card's), in every process, and the event
    # {"kind": "tags", "tags": ["user:<id>"]} to every open page, which refetches.
    NAMES[user_id] = update.name
    await app_cache.invalidate_tags(f"user:{user_id}")
    return User(id=user_id, name=update.name)


@app.post("/users/{user_id}/refresh")
async def refresh_user(user_id: str) -> dict[str, bool]:
    # Every entry about this user, in every process: the loader's and the card's.
    await app_cache.invalidate_tags(f"user:{user_id}")
    return {"invalidated": True}


_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chenu-cache example</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>The page's script is not built yet</h1>
<p>From the repository's root (Node 20.19 or newer):</p>
<pre>cd js/react &amp;&amp; npm ci &amp;&amp; npm run build:example</pre>
<p>It writes <code>{bundle}</code>; then reload this page.</p>
</body></html>
"""


@app.get("/", include_in_schema=False, response_model=None)
async def page() -> Response:
    # 503 rather than a page that cannot work: the script it loads does not exist yet.
    if not PAGE_BUNDLE.is_file():
        return HTMLResponse(_NOT_BUILT.format(bundle=html.escape(str(PAGE_BUNDLE))), 503)
    return FileResponse(PAGE_HTML, media_type="text/html", headers={"Cache-Control": "no-cache"})


@app.get("/static/app.js", include_in_schema=False, response_model=None)
async def page_script() -> Response:
    if not PAGE_BUNDLE.is_file():
        return Response("npm run build:example (in js/react/) first\n", 404)
    return FileResponse(
        PAGE_BUNDLE, media_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )
