"""The watch cache: the API server's in-memory copy of everything under ``/registry/``.

One store watch feeds every resource (``Mux``); each resource prefix gets a ``ResourceCache``
with its current objects, a ring of recent events and its watchers. Clients' lists and watches
are served from memory; N watchers of a resource cost one store watch, and an event is encoded
to JSON once however many watchers receive it.

Consistent reads (resourceVersion unset) wait until the cache has seen the store's current
revision, as upstream's consistent-list-from-cache does; if it does not catch up in time
(another cluster's writes can bump a shared etcd's revision) the caller reads the store.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from sampan.store.base import DELETE, CompactedError, Event, KeyValue, Store

log = logging.getLogger(__name__)

ROOT = "/registry/"
EVENT_WINDOW = 10_000  # events remembered per resource for watches that resume
WATCHER_QUEUE = 2_000  # a watcher this far behind is closed; its client resumes from its RV
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


class Entry:
    """One object as the cache holds it: its JSON encoding (made once, served as is) and what
    filters need. The decoded object is made on demand: holding every object as Python dicts
    would cost several times the memory of their JSON."""

    __slots__ = ("key", "raw", "revision", "namespace", "name", "labels")

    def __init__(self, key: str, raw: bytes, revision: int, namespace: str, name: str,
                 labels: dict[str, str]):
        self.key = key
        self.raw = raw  # metadata.resourceVersion set
        self.revision = revision
        self.namespace = namespace
        self.name = name
        self.labels = labels

    @classmethod
    def of(cls, key: str, obj: dict[str, Any], revision: int) -> "Entry":
        meta = obj.get("metadata") or {}
        return cls(key, orjson.dumps(obj), revision, meta.get("namespace", ""),
                   meta.get("name", ""), meta.get("labels") or {})

    @property
    def obj(self) -> dict[str, Any]:
        """A fresh decoded copy: callers may change it."""
        return orjson.loads(self.raw)


def decode_entry(kv: KeyValue, revision: int | None = None) -> Entry:
    obj = orjson.loads(kv.value)
    rev = kv.mod_revision if revision is None else revision
    obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
    return Entry.of(kv.key, obj, rev)


@dataclass(slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED, DELETED
    entry: Entry
    prev: Entry | None
    revision: int


Filter = Callable[[Entry], bool]


class Watcher:
    """A client's watch: events that pass its filter, in order, through a bounded queue."""

    def __init__(self, namespace: str, accept: Filter | None):
        self.namespace = namespace
        self.accept = accept
        self.queue: asyncio.Queue[tuple[str, Entry] | None] = asyncio.Queue(WATCHER_QUEUE)
        self.closed = False
        self.revision = 0

    def _matches(self, entry: Entry | None) -> bool:
        if entry is None:
            return False
        if self.namespace and entry.namespace != self.namespace:
            return False
        return self.accept is None or self.accept(entry)

    def offer(self, event: CacheEvent) -> None:
        """Translate a change into what this watcher sees (selectors turn a modification into
        an addition or a deletion when the object moves in or out of the selection)."""
        if self.closed:
            return
        now = event.type != DELETED and self._matches(event.entry)
        before = self._matches(event.prev)
        if now and before:
            kind = MODIFIED
        elif now:
            kind = ADDED
        elif before:
            kind = DELETED
        else:
            return
        self.push(kind, event.entry)

    def push(self, kind: str, entry: Entry) -> None:
        try:
            self.queue.put_nowait((kind, entry))
        except asyncio.QueueFull:
            log.info("closing a watcher that fell %d events behind", WATCHER_QUEUE)
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            while True:  # make room for the end marker
                try:
                    self.queue.put_nowait(None)
                    return
                except asyncio.QueueFull:
                    self.queue.get_nowait()


class TooOldError(Exception):
    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class ResourceCache:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.objects: dict[str, Entry] = {}
        self.events: deque[CacheEvent] = deque(maxlen=EVENT_WINDOW)
        self.revision = 0  # the mux revision this cache reflects
        self.oldest = 0  # events after this revision are all in ``events``
        self._sorted: list[str] | None = None
        self._watchers: set[Watcher] = set()

    # -- reading -----------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        return self.objects.get(key)

    def sorted_keys(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def list(self, prefix: str, start_key: str = "") -> list[Entry]:
        """Entries whose key starts with ``prefix``, from ``start_key`` on, in key order."""
        keys = self.sorted_keys()
        lo = bisect.bisect_left(keys, max(prefix, start_key))
        hi = bisect.bisect_left(keys, prefix + "\xff") if prefix != self.prefix else len(keys)
        objects = self.objects
        return [objects[k] for k in keys[lo:hi]]

    # -- watching ----------------------------------------------------------------------------
    def watch(self, after_revision: int, namespace: str, accept: Filter | None) -> Watcher:
        """A watcher that first receives the recorded events after ``after_revision``."""
        if after_revision < self.oldest:
            raise TooOldError(after_revision, self.oldest + 1)
        watcher = Watcher(namespace, accept)
        for event in self.events:
            if event.revision > after_revision:
                watcher.offer(event)
        watcher.revision = self.revision
        self._watchers.add(watcher)
        return watcher

    def watch_with_initial(self, namespace: str, accept: Filter | None,
                           prefix: str) -> tuple[Watcher, list[Entry]]:
        """A watcher from now on, and the current objects it should first see as ADDED."""
        watcher = Watcher(namespace, accept)
        watcher.revision = self.revision
        self._watchers.add(watcher)
        return watcher, [e for e in self.list(prefix) if watcher._matches(e)]

    def stop(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
        watcher.close()

    # -- applying changes --------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        kv = event.kv
        prev = self.objects.get(kv.key)
        if event.type == DELETE:
            if prev is None:
                return
            del self.objects[kv.key]
            self._sorted = None
            entry = decode_entry(kv, kv.mod_revision)
            cache_event = CacheEvent(DELETED, entry, prev, kv.mod_revision)
        else:
            entry = decode_entry(kv)
            if prev is None:
                self._sorted = None
            self.objects[kv.key] = entry
            cache_event = CacheEvent(MODIFIED if prev else ADDED, entry, prev, kv.mod_revision)
        if len(self.events) == self.events.maxlen:
            self.oldest = self.events[0].revision
        self.events.append(cache_event)
        for watcher in tuple(self._watchers):
            watcher.offer(cache_event)
            if watcher.closed:
                self._watchers.discard(watcher)

    def advance(self, revision: int) -> None:
        self.revision = revision

    def close(self) -> None:
        for watcher in tuple(self._watchers):
            watcher.close()
        self._watchers.clear()


def resource_prefix(key: str) -> str:
    """``/registry/apps/deployments/ns/name`` → ``/registry/apps/deployments/``."""
    i = key.find("/", len(ROOT))
    j = key.find("/", i + 1)
    return key[: j + 1] if i > 0 and j > 0 else ""


class Mux:
    """One store watch for the whole registry, fanned out to resource caches."""

    def __init__(self, store: Store, prefixes: Callable[[], list[str]] = list):
        self.store = store
        # Prefixes to hold a cache for from the start (the registry's resources), so that a
        # watch from any revision since the load is served even if the resource had no objects.
        self.prefixes = prefixes
        self.caches: dict[str, ResourceCache] = {}
        self.revision = 0
        self.ready = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.restarts = 0

    def cache(self, prefix: str) -> ResourceCache:
        cache = self.caches.get(prefix)
        if cache is None:
            cache = self.caches[prefix] = ResourceCache(prefix)
            cache.revision = cache.oldest = self.revision
        return cache

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="watchcache")
        await asyncio.wait_for(self.ready.wait(), timeout=60)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for cache in self.caches.values():
            cache.close()
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()

    async def _load(self) -> int:
        """(Re)fill every cache from a list of the store at one revision."""
        page = await self.store.list(ROOT, limit=10_000)
        revision = page.revision
        kvs = list(page.kvs)
        while page.more:
            page = await self.store.list(ROOT, revision=revision, limit=10_000,
                                         start_key=kvs[-1].key + "\x00")
            kvs.extend(page.kvs)
        for cache in self.caches.values():
            cache.close()
        self.caches = {}
        for prefix in self.prefixes():
            self.caches.setdefault(prefix, ResourceCache(prefix))
        for kv in kvs:
            prefix = resource_prefix(kv.key)
            if prefix:
                self.caches.setdefault(prefix, ResourceCache(prefix)).objects[kv.key] = decode_entry(kv)
        self.revision = revision
        for cache in self.caches.values():
            cache.revision = cache.oldest = revision
        return revision

    async def _run(self) -> None:
        backoff = 0.1
        revision = await self._load()
        self.ready.set()
        self._wake()
        while True:
            try:
                async for batch in self.store.watch(ROOT, after_revision=revision):
                    self._dispatch(batch)
                    revision = self.revision
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except CompactedError:
                log.warning("watch cache fell behind compaction at %d; relisting", revision)
                self.restarts += 1
                revision = await self._load()
                self._wake()
            except Exception:  # the store went away: back off and resume from where we were
                log.exception("registry watch failed; resuming from %d", revision)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, batch: list[Event]) -> None:
        for event in batch:
            prefix = resource_prefix(event.kv.key)
            if prefix:
                self.cache(prefix).apply(event)
            self.revision = max(self.revision, event.revision)
        for cache in self.caches.values():
            cache.advance(self.revision)
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        still = []
        for rev, fut in self._waiters:
            if rev <= self.revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((rev, fut))
        self._waiters = still

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """Wait until the caches reflect ``revision``; False on timeout."""
        if self.revision >= revision:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def wait_fresh(self, timeout: float = 3.0) -> bool:
        """Wait until the caches reflect everything the store has committed so far."""
        return await self.wait_for(await self.store.current_revision(), timeout)
