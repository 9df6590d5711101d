"""Plain asyncio: the default instance, namespaces, get_or_set and invalidation.

python examples/basic.py                       # memory, or CHENU_CACHE_REDIS_URL
"""

from __future__ import annotations

import asyncio

from chenu_cache import MISSING, cache_service


async def load_settings() -> dict[str, object]:
    await asyncio.sleep(0.05)  # stands in for a slow source
    return {"theme": "dark", "beta": True}


async def main() -> None:
    await cache_service.initialize()
    print("serving from", cache_service.backend.name)

    await cache_service.set("greeting", "hello", ttl=60)
    print("greeting:", await cache_service.get("greeting"))

    settings = await cache_service.get_or_set("app", load_settings, namespace="settings")
    print("settings (loaded):", settings)
    settings = await cache_service.get_or_set("app", load_settings, namespace="settings")
    print(
        "settings (cached):", settings, "ttl", round(await cache_service.ttl("settings:app") or 0)
    )

    await cache_service.set("nothing", None)
    print("cached None is not a miss:", await cache_service.get("nothing", default=MISSING))

    removed = await cache_service.invalidate_namespace("settings")
    print("invalidated", removed, "settings entries")
    print("statistics:", (await cache_service.get_statistics()).to_dict()["namespaces"])
    await cache_service.clear()
    await cache_service.close()


if __name__ == "__main__":
    asyncio.run(main())
