"""Where the node reads the ConfigMaps and Secrets that pods consume (env and volumes).

``ObjectLookup`` is the small interface both users need: the whole object, or None when it does
not exist. ``ClientLookup`` answers from the API server with a short-lived cache, so that a
burst of pods in one namespace (all mounting ``kube-root-ca.crt``) costs one GET, and with
concurrent asks for the same object sharing one request. An agent with informers may pass its
own lookup backed by them instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Protocol

from sampan.client import ApiError, Client

Object = dict[str, Any]


class ObjectLookup(Protocol):
    async def configmap(self, namespace: str, name: str) -> Object | None:
        """The ConfigMap, or None when it does not exist."""

    async def secret(self, namespace: str, name: str) -> Object | None:
        """The Secret (``data`` still base64), or None when it does not exist."""


class ClientLookup:
    """An ObjectLookup over the REST client with a ``ttl``-second cache."""

    def __init__(self, client: Client, *, ttl: float = 1.0, max_entries: int = 512):
        self.client = client
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str, str], tuple[float, Object | None]] = OrderedDict()
        self._inflight: dict[tuple[str, str, str], asyncio.Future[Object | None]] = {}

    async def configmap(self, namespace: str, name: str) -> Object | None:
        return await self._get("configmaps", namespace, name)

    async def secret(self, namespace: str, name: str) -> Object | None:
        return await self._get("secrets", namespace, name)

    def invalidate(self, resource: str | None = None, namespace: str | None = None,
                   name: str | None = None) -> None:
        """Forget cached objects (all, or one ``resource`` such as "configmaps" / "secrets")."""
        if resource is None:
            self._cache.clear()
        else:
            self._cache.pop((resource, namespace or "", name or ""), None)

    async def _get(self, resource: str, namespace: str, name: str) -> Object | None:
        key = (resource, namespace, name)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                return await self._get(resource, namespace, name)  # the asker was cancelled
        future: asyncio.Future[Object | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            try:
                obj: Object | None = await self.client.get("v1", resource, name,
                                                           namespace=namespace)
            except ApiError as e:
                if not e.not_found:
                    raise
                obj = None
            self._remember(key, obj)
            future.set_result(obj)
            return obj
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:
            future.set_exception(e)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._inflight.pop(key, None)

    def _remember(self, key: tuple[str, str, str], obj: Object | None) -> None:
        if self.ttl <= 0:
            return
        self._cache[key] = (time.monotonic() + self.ttl, obj)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
