"""The decorator on methods, classmethods and with a custom key.

python examples/methods.py
"""

from __future__ import annotations

import asyncio

from chenu_cache import FallbackCache

cache = FallbackCache(read_env=False)


class UserService:
    def __init__(self) -> None:
        self.queries = 0

    # `self` is left out of the default key: every instance shares the entries.
    @cache.cached(namespace="user")
    async def get(self, user_id: str) -> dict[str, str]:
        self.queries += 1
        return {"id": user_id}

    # A key_builder sees every argument, `self` included.
    @cache.cached(key_builder=lambda self, user_id: f"profile:{user_id}", ttl=30)
    async def profile(self, user_id: str) -> dict[str, str]:
        self.queries += 1
        return {"id": user_id, "bio": "..."}

    @cache.cached
    @classmethod
    async def count(cls) -> int:
        return 42


async def main() -> None:
    service = UserService()
    await service.get("1")
    await service.get("1")
    await UserService().get("1")  # another instance, same entry
    print("queries after three calls:", service.queries)
    print("key:", service.get.key("1"))
    print("invalidated:", await service.get.invalidate("1"))
    await service.profile("1")
    print("profile cached under:", await cache.exists("profile:1"))
    print("classmethod:", await UserService.count(), "key", UserService.count.key())
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
