"""Shared informers: a reflector (list, then watch from the list's resourceVersion) feeding an
indexed local cache and event handlers, as client-go's ``tools/cache``.

The reflector relists when the server says its resourceVersion is too old (410), resumes the
watch from the last seen version (bookmarks included) when a stream ends, and backs off on
errors. Handlers run on the event loop, in order, and must not block: a controller's handler
only puts keys into its work queue. Cached objects are shared by everyone reading the cache:
copy one before changing it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from sampan.client.errors import ApiError, ResourceExpiredError

if TYPE_CHECKING:
    from sampan.client.rest import Client

log = logging.getLogger(__name__)

Object = dict[str, Any]
IndexFunc = Callable[[Object], Iterable[str]]

MIN_WATCH_TIMEOUT = 300
INITIAL_BACKOFF = 0.8
MAX_BACKOFF = 30.0
SHORT_WATCH = 1.0
NAMESPACE_INDEX = "namespace"
OWNER_UID_INDEX = "owner-uid"


def object_key(obj: Object) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else meta["name"]


def split_key(key: str) -> tuple[str, str]:
    """``namespace/name`` → (namespace, name); ``name`` → ("", name)."""
    namespace, _, name = key.rpartition("/")
    return namespace, name


def strip_managed_fields(obj: Object) -> Object:
    """A transform that drops ``metadata.managedFields`` before an object is cached, as
    kube-controller-manager and kube-scheduler do (``TransformStripManagedFields``): no
    controller reads them, and they are often the largest part of an object. An update sent
    without them keeps the stored ones."""
    meta = obj.get("metadata")
    if meta is not None:
        meta.pop("managedFields", None)
    return obj


def index_by_namespace(obj: Object) -> list[str]:
    return [(obj.get("metadata") or {}).get("namespace") or ""]


def index_by_owner_uid(obj: Object) -> list[str]:
    return [ref["uid"] for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("uid")]


class Indexer:
    """Objects by key, plus secondary indexes (index name → indexed value → keys)."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None):
        self._items: dict[str, Object] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        for name, fn in indexers.items():
            if name in self._indexers:
                continue
            self._indexers[name] = fn
            self._indices[name] = {}
            for key, obj in self._items.items():
                self._index(name, key, obj)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: str) -> Object | None:
        return self._items.get(key)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self) -> list[Object]:
        return list(self._items.values())

    def index_keys(self, index_name: str, value: str) -> list[str]:
        return sorted(self._indices[index_name].get(value, ()))

    def by_index(self, index_name: str, value: str) -> list[Object]:
        return [self._items[k] for k in self.index_keys(index_name, value)]

    # -- writes (the informer's) -------------------------------------------------------------
    def upsert(self, obj: Object) -> Object | None:
        """Store ``obj``; the object it replaced, if any."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._indexers:
            self._index(name, key, obj)
        return old

    def remove(self, key: str) -> Object | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objects: Iterable[Object]) -> None:
        self._items = {object_key(o): o for o in objects}
        self._indices = {name: {} for name in self._indexers}
        for key, obj in self._items.items():
            for name in self._indexers:
                self._index(name, key, obj)

    def _index(self, name: str, key: str, obj: Object) -> None:
        index = self._indices[name]
        for value in self._indexers[name](obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Object) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


@dataclass(frozen=True)
class EventHandler:
    on_add: Callable[[Object], None] | None = None
    on_update: Callable[[Object, Object], None] | None = None
    on_delete: Callable[[Object], None] | None = None  # the last state the cache knew


class SharedInformer:
    """One resource's cache, kept current by a reflector, shared by many handlers."""

    def __init__(self, client: Client, api_version: str, resource: str, *,
                 namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, metadata_only: bool = False,
                 resync_period: float = 0.0, indexers: Mapping[str, IndexFunc] | None = None,
                 page_size: int = 500, transform: Callable[[Object], Object] | None = None):
        self.client = client
        self.api_version, self.resource, self.namespace = api_version, resource, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.metadata_only = metadata_only
        self.resync_period = resync_period
        self.page_size = page_size
        self.transform = transform  # applied to each object before it is cached
        self.indexer = Indexer({NAMESPACE_INDEX: index_by_namespace, **(indexers or {})})
        self.last_sync_resource_version = ""
        self._handlers: list[EventHandler] = []
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<SharedInformer {self.api_version}/{self.resource}>"

    # -- handlers --------------------------------------------------------------------------
    def add_event_handler(self, on_add: Callable[[Object], None] | None = None,
                          on_update: Callable[[Object, Object], None] | None = None,
                          on_delete: Callable[[Object], None] | None = None) -> EventHandler:
        """Register handlers; a late handler first hears an add for every cached object."""
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in self.indexer.list():
                self._call(on_add, obj)
        return handler

    def remove_event_handler(self, handler: EventHandler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)

    def _call(self, fn: Callable[..., None], *args: Object) -> None:
        try:
            fn(*args)
        except Exception:  # one handler's bug must not stop the informer
            log.exception("event handler failed", extra={"resource": self.resource})

    def _added(self, obj: Object) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _updated(self, old: Object, new: Object) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _deleted(self, obj: Object) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self._tasks)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
            return True
        except TimeoutError:
            return False

    def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._reflect(), name=f"reflector {self.resource}"))
        if self.resync_period > 0:
            self._tasks.append(loop.create_task(self._resync(), name=f"resync {self.resource}"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- reflector ---------------------------------------------------------------------------
    async def _reflect(self) -> None:
        backoff = INITIAL_BACKOFF
        while True:
            try:
                await self._list_and_watch()
                backoff = INITIAL_BACKOFF
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("list/watch of %s failed: %r; retrying in %.1fs", self.resource, e,
                            backoff)
                await asyncio.sleep(backoff * random.uniform(1.0, 1.5))
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _list_and_watch(self) -> None:
        """List, then watch until the watch can no longer resume (then return to relist)."""
        await self._list()
        backoff = INITIAL_BACKOFF
        while True:
            try:
                await self._watch()
                backoff = INITIAL_BACKOFF
            except ResourceExpiredError:
                log.info("watch of %s expired at %s; relisting", self.resource,
                         self.last_sync_resource_version)
                return
            except ApiError as e:
                if e.code in (429, 500, 503, 504):
                    await self._sleep_backoff(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
                log.info("watch of %s broke: %r; resuming", self.resource, e)
                await self._sleep_backoff(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    @staticmethod
    async def _sleep_backoff(backoff: float) -> None:
        await asyncio.sleep(backoff * random.uniform(1.0, 1.5))

    async def _list(self) -> None:
        kwargs = dict(namespace=self.namespace, label_selector=self.label_selector,
                      field_selector=self.field_selector, metadata_only=self.metadata_only)
        try:
            listed = await self.client.list_all(self.api_version, self.resource,
                                                page_size=self.page_size, **kwargs)
        except ResourceExpiredError:  # a continue token outlived its revision: one big page
            listed = await self.client.list(self.api_version, self.resource, **kwargs)
        self._replace(listed.get("items") or [])
        self.last_sync_resource_version = (listed.get("metadata") or {}).get("resourceVersion", "")
        self._synced.set()

    def _replace(self, items: list[Object]) -> None:
        if self.transform is not None:
            items = [self.transform(o) for o in items]
        old = {object_key(o): o for o in self.indexer.list()}
        self.indexer.replace(items)
        for obj in items:
            previous = old.pop(object_key(obj), None)
            if previous is None:
                self._added(obj)
            else:
                self._updated(previous, obj)
        for gone in old.values():
            self._deleted(gone)

    async def _watch(self) -> None:
        timeout = int(MIN_WATCH_TIMEOUT * (1 + random.random()))
        loop = asyncio.get_running_loop()
        started, events = loop.time(), 0
        async with self.client.watch(
                self.api_version, self.resource, namespace=self.namespace,
                resource_version=self.last_sync_resource_version, timeout_seconds=timeout,
                allow_watch_bookmarks=True, label_selector=self.label_selector,
                field_selector=self.field_selector, metadata_only=self.metadata_only) as stream:
            async for kind, obj in stream:
                self._handle_event(kind, obj)
                events += 1
        if events == 0 and loop.time() - started < SHORT_WATCH:
            # A server that ends every watch at once would have us spin (client-go does the same).
            raise ConnectionError("very short watch: the server closed it without events")

    def _handle_event(self, kind: str, obj: Object) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            pass
        elif kind in ("ADDED", "MODIFIED"):
            if self.transform is not None:
                obj = self.transform(obj)
            old = self.indexer.upsert(obj)
            if old is None:
                self._added(obj)
            else:
                self._updated(old, obj)
        elif kind == "DELETED":
            self.indexer.remove(object_key(obj))
            self._deleted(obj)
        else:
            log.warning("unknown watch event type %r for %s", kind, self.resource)
            return
        if rv:
            self.last_sync_resource_version = rv

    async def _resync(self) -> None:
        """Hand every cached object to the update handlers again (periodic resync)."""
        while True:
            await asyncio.sleep(self.resync_period)
            if self.has_synced():
                for obj in self.indexer.list():
                    self._updated(obj, obj)


class InformerFactory:
    """Hands out one shared informer per (resource, namespace, representation), and starts and
    stops them together (client-go's SharedInformerFactory)."""

    def __init__(self, client: Client, *, resync_period: float = 0.0,
                 transform: Callable[[Object], Object] | None = None):
        self.client = client
        self.resync_period = resync_period
        self.transform = transform
        self._informers: dict[tuple[str, str, str, bool], SharedInformer] = {}

    def informer(self, api_version: str, resource: str, *, namespace: str | None = None,
                 metadata_only: bool = False,
                 indexers: Mapping[str, IndexFunc] | None = None) -> SharedInformer:
        key = (api_version, resource, namespace or "", metadata_only)
        informer = self._informers.get(key)
        if informer is None:
            informer = SharedInformer(self.client, api_version, resource, namespace=namespace,
                                      metadata_only=metadata_only,
                                      resync_period=self.resync_period,
                                      transform=self.transform)
            self._informers[key] = informer
        if indexers:
            informer.indexer.add_indexers(indexers)
        return informer

    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        for informer in self._informers.values():
            informer.start()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        results = await asyncio.gather(*(i.wait_for_sync(timeout) for i in self._informers.values()))
        return all(results)

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
