"""The generic REST storage: one implementation of get, list, watch, create, update, patch and
delete for every resource, driven by the resource registry and the per-kind strategy.

Reads come from the watch cache; writes go to the store with compare-and-swap on the object's
``resourceVersion`` (its ``mod_revision``) and are retried from a fresh read when the request did
not pin a version — a conflict is never overwritten blindly.
"""

from __future__ import annotations

import base64
import datetime
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from sampan.api import errors
from sampan.api.registry import Resource
from sampan.apiserver.auth import UserInfo
from sampan.apiserver.watchcache import Entry, Mux, ResourceCache, decode_entry
from sampan.store.base import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Store,
)

log = logging.getLogger(__name__)

MAX_RETRIES = 16
GENERATE_NAME_RETRIES = 8
EVENT_TTL = 3600  # seconds, as upstream's --event-ttl
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_after(seconds: int) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    """What a write request carries besides its body."""

    user: UserInfo
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"
    force: bool = False
    user_agent: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListResult:
    entries: list[Entry]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


def encode_continue(revision: int, start_key: str) -> str:
    body = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start_key})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        body = orjson.loads(base64.urlsafe_b64decode(padded))
        revision, start = int(body["rv"]), str(body["start"])
        if body.get("v") != "meta.k8s.io/v1" or revision <= 0 or ".." in start:
            raise ValueError
    except Exception:
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion"
                                 " (version meta.k8s.io/v1)") from None
    return revision, prefix + start


def _strip_for_storage(obj: dict[str, Any]) -> bytes:
    meta = obj["metadata"]
    rv = meta.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


class ObjectStorage:
    """Reads and writes of API objects through the watch cache and the store."""

    def __init__(self, store: Store, mux: Mux):
        self.store = store
        self.mux = mux

    def cache(self, resource: Resource) -> ResourceCache:
        return self.mux.cache(resource.storage_prefix)

    # -- reads -------------------------------------------------------------------------------
    async def _fresh(self, resource_version: str, match: str = "") -> bool:
        """Make the cache serve a read at ``resource_version`` semantics; False → use the store."""
        if resource_version == "0" and match != "Exact":
            return True
        if resource_version == "":
            return await self.mux.wait_fresh()
        revision = parse_resource_version(resource_version)
        if match == "Exact":
            return False
        if not await self.mux.wait_for(revision, timeout=3.0):
            raise errors.timeout(f"Too large resource version: {revision}, current: "
                                 f"{self.mux.revision}")
        return True

    async def get(self, resource: Resource, namespace: str, name: str,
                  resource_version: str = "") -> Entry:
        key = resource.key(namespace, name)
        if await self._fresh(resource_version):
            entry = self.cache(resource).get(key)
        else:
            revision = 0 if not resource_version else parse_resource_version(resource_version)
            kv = await self._store_call(self.store.get(key, revision=revision))
            entry = decode_entry(kv) if kv else None
        if entry is None:
            raise errors.not_found_error(resource.resource, name, resource.group)
        return entry

    async def get_latest(self, resource: Resource, namespace: str, name: str) -> Entry | None:
        """A quorum read from the store, for read-modify-write."""
        kv = await self._store_call(self.store.get(resource.key(namespace, name)))
        return decode_entry(kv) if kv else None

    async def list(self, resource: Resource, namespace: str, *, accept: Callable[[Entry], bool] | None,
                   limit: int = 0, continue_token: str = "", resource_version: str = "",
                   match: str = "") -> ListResult:
        prefix = resource.prefix(namespace)
        if continue_token:
            if resource_version:
                raise errors.bad_request("specifying resource version is not allowed when "
                                         "using continue")
            revision, start = decode_continue(continue_token, prefix)
            return await self._list_store(resource, prefix, accept, limit, revision, start)
        if match == "Exact" or (resource_version not in ("", "0") and match == "Exact"):
            revision = parse_resource_version(resource_version)
            return await self._list_store(resource, prefix, accept, limit, revision, prefix)
        if not await self._fresh(resource_version, match):
            return await self._list_store(resource, prefix, accept, limit, 0, prefix)
        cache = self.cache(resource)
        entries = cache.list(prefix)
        revision = cache.revision
        if accept is not None:
            entries = [e for e in entries if accept(e)]
        if limit and len(entries) > limit and resource_version != "0":
            rest = len(entries) - limit
            entries = entries[:limit]
            token = encode_continue(revision, entries[-1].key[len(prefix):] + "\x00")
            return ListResult(entries, revision, token, rest if accept is None else None)
        return ListResult(entries, revision)

    async def _list_store(self, resource: Resource, prefix: str, accept, limit: int,
                          revision: int, start: str) -> ListResult:
        entries: list[Entry] = []
        page_size = max(limit, 500) if limit else 10_000
        more = True
        last_key = ""
        total: int | None = None  # keys from the first start key on, for remainingItemCount
        scanned = 0
        while more and (not limit or len(entries) < limit):
            page = await self._store_call(self.store.list(prefix, revision=revision,
                                                          limit=page_size, start_key=start))
            revision = page.revision
            more = page.more
            if total is None:
                total = page.count
            for kv in page.kvs:
                last_key = kv.key
                scanned += 1
                entry = decode_entry(kv)
                if accept is None or accept(entry):
                    entries.append(entry)
                    if limit and len(entries) == limit:
                        more = more or kv is not page.kvs[-1]
                        break
            if page.kvs:
                start = last_key + "\x00"
        token = ""
        remaining = None
        if limit and more and entries:
            token = encode_continue(revision, entries[-1].key[len(prefix):] + "\x00")
            if accept is None and total is not None:
                remaining = total - scanned
        return ListResult(entries, revision, token, remaining)

    async def _store_call(self, awaitable):
        try:
            return await awaitable
        except CompactedError as e:
            raise errors.gone("The resourceVersion for the provided list is too old.") from e
        except FutureRevisionError as e:
            raise errors.timeout(f"Too large resource version: {e.requested}, current: "
                                 f"{e.current}") from e

    # -- writes ------------------------------------------------------------------------------
    async def create(self, resource: Resource, obj: dict[str, Any], ctx: Context,
                     ttl: int = 0, generated_name: bool = False) -> Entry:
        """Store a new object. A name made from ``generateName`` is made anew on a clash."""
        meta = obj["metadata"]
        generate = generated_name and meta.get("generateName")
        for attempt in range(GENERATE_NAME_RETRIES if generate else 1):
            if attempt:
                meta["name"] = generate_name(meta["generateName"])
            key = resource.key(meta.get("namespace"), meta["name"])
            if ctx.dry_run:
                if self.cache(resource).get(key) is not None and not generate:
                    raise errors.already_exists(resource.resource, meta["name"], resource.group)
                meta["resourceVersion"] = ""
                return Entry.of(key, obj, 0)
            try:
                kv = await self.store.create(key, _strip_for_storage(obj), ttl=ttl)
            except KeyExistsError:
                if generate and attempt + 1 < GENERATE_NAME_RETRIES:
                    continue
                raise errors.already_exists(resource.resource, meta["name"], resource.group)
            return decode_entry(kv)
        raise AssertionError("unreachable")

    async def write(self, resource: Resource, old: Entry, obj: dict[str, Any], ctx: Context) -> Entry:
        """Store ``obj`` over ``old`` with compare-and-swap; ConflictError propagates."""
        meta = obj["metadata"]
        if ctx.dry_run:
            meta["resourceVersion"] = str(old.revision)
            return Entry.of(old.key, obj, old.revision)
        # An update that leaves a deleted object without finalizers completes its deletion,
        # unless a grace period is still running (a pod waits for its kubelet), as upstream's
        # ShouldDeleteDuringUpdate.
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and \
                not meta.get("deletionGracePeriodSeconds") and _finalized(resource, obj):
            kv = await self.store.delete(old.key, expected_revision=old.revision)
            return decode_entry(kv, kv.mod_revision)
        ttl = EVENT_TTL if resource.resource == "events" else 0
        kv = await self.store.update(old.key, _strip_for_storage(obj), expected_revision=old.revision,
                                     ttl=ttl)
        return decode_entry(kv)

    async def remove(self, resource: Resource, entry: Entry, ctx: Context) -> Entry:
        if ctx.dry_run:
            return entry
        kv = await self.store.delete(entry.key, expected_revision=entry.revision)
        return decode_entry(kv, kv.mod_revision)

    async def guaranteed_update(
        self, resource: Resource, namespace: str, name: str, ctx: Context,
        mutate: Callable[[Entry | None], dict[str, Any] | None],
        *, pinned_revision: int = 0,
    ) -> tuple[Entry | None, bool]:
        """Read, mutate, compare-and-swap; retried from a fresh read on conflict unless the
        caller pinned a resourceVersion. ``mutate`` returns the new object, or None for "no
        change". Returns (entry, created)."""
        for _ in range(MAX_RETRIES):
            current = await self.get_latest(resource, namespace, name)
            # A stale resourceVersion is a conflict before anything else is looked at.
            if pinned_revision and current is not None and pinned_revision != current.revision:
                raise errors.conflict(resource.resource, name, resource.group)
            new = mutate(current)
            if new is None:
                return current, False
            if current is None:
                return await self.create(resource, new, ctx), True
            try:
                return await self.write(resource, current, new, ctx), False
            except ConflictError:
                if pinned_revision:
                    raise errors.conflict(resource.resource, name, resource.group)
                continue
            except KeyNotFoundError:
                raise errors.not_found_error(resource.resource, name, resource.group)
        raise errors.conflict(resource.resource, name, resource.group,
                              "too many conflicting updates, please retry")


def _finalized(resource: Resource, obj: dict[str, Any]) -> bool:
    """Namespaces also wait for their spec finalizers."""
    if resource.kind == "Namespace":
        return not (obj.get("spec") or {}).get("finalizers")
    return True


def generate_name(base: str) -> str:
    """``generateName`` plus five random characters, as upstream's name generator makes them
    (the base is cut so that the result stays within 63 characters)."""
    return base[:58] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))


def parse_resource_version(value: str) -> int:
    try:
        revision = int(value)
        if revision < 0:
            raise ValueError
        return revision
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{value}"') from None

