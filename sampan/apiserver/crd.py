"""CustomResourceDefinitions: serve the resources they define.

A loop inside each API server watches CRDs in the watch cache. A new or changed CRD registers
its served versions in the resource registry, then gets ``NamesAccepted`` and ``Established``
conditions; a deleted CRD (it carries the ``customresourcecleanup`` finalizer) first has every
one of its objects deleted, then the finalizer removed, as upstream's finalizer controller does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from sampan.api.registry import Resource
from sampan.apiserver.rest import Context, Entry, now_rfc3339
from sampan.store.base import ConflictError, KeyNotFoundError

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

log = logging.getLogger(__name__)

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def resources_of(crd: dict[str, Any]) -> list[Resource]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = tuple(sorted((version.get("subresources") or {}).keys()))
        out.append(Resource(
            group=spec.get("group", ""), version=version["name"], resource=names.get("plural", ""),
            kind=names.get("kind", ""), namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()), subresources=subresources,
            crd=crd))
    return out


def _condition(type_: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True", "lastTransitionTime": now_rfc3339(),
            "reason": reason, "message": message}


class CRDController:
    def __init__(self, api: "APIServer"):
        self.api = api
        self.served: dict[str, list[Resource]] = {}  # CRD name → resources registered
        self._task: asyncio.Task | None = None

    @property
    def crd_resource(self) -> Resource:
        r = self.api.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert r is not None
        return r

    async def start(self) -> None:
        cache = self.api.storage.cache(self.crd_resource)
        watcher, initial = cache.watch_with_initial("", None, cache.prefix)
        for entry in initial:
            await self._sync(entry)
        self._task = asyncio.create_task(self._run(cache, watcher), name="crd-controller")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()

    async def _run(self, cache, watcher) -> None:
        while True:
            item = await watcher.queue.get()
            if item is None:  # fell behind or the cache was rebuilt: resync everything
                cache = self.api.storage.cache(self.crd_resource)
                watcher, initial = cache.watch_with_initial("", None, cache.prefix)
                names = {e.name for e in initial}
                for name in list(self.served):
                    if name not in names:
                        self._unregister(name)
                for entry in initial:
                    await self._guarded(entry)
                continue
            kind, entry = item
            if kind == "DELETED":
                self._unregister(entry.name)
            else:
                await self._guarded(entry)

    async def _guarded(self, entry: Entry) -> None:
        try:
            await self._sync(entry)
        except Exception:
            log.exception("syncing CRD %s", entry.name)

    def _register(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        self._unregister(name)
        resources = resources_of(crd)
        for r in resources:
            self.api.registry.add(r)
            self.api.schemata.forget(r)
        self.served[name] = resources

    def _unregister(self, name: str) -> None:
        for r in self.served.pop(name, []):
            current = self.api.registry.get(r.group, r.version, r.resource)
            if current is not None and current.crd is r.crd:
                self.api.registry.remove(r.group, r.version, r.resource)
            self.api.schemata.forget(r)

    async def _sync(self, entry: Entry) -> None:
        crd = entry.obj
        name = crd["metadata"]["name"]
        if crd["metadata"].get("deletionTimestamp"):
            await self._cleanup(entry)
            return
        known = self.served.get(name)
        if not known or known[0].crd is None or known[0].crd.get("spec") != crd.get("spec"):
            self._register(crd)
        await self._establish(entry)

    async def _update(self, entry: Entry, change) -> None:
        """Read-modify-write of a CRD from the API server itself (it owns the store)."""
        resource = self.crd_resource
        ctx = Context(user=self.api.system_user)
        for _ in range(8):
            current = await self.api.storage.get_latest(resource, "", entry.name)
            if current is None:
                return
            new = orjson.loads(current.raw)
            if not change(new):
                return
            try:
                await self.api.storage.write(resource, current, new, ctx)
                return
            except (ConflictError, KeyNotFoundError):
                continue

    async def _establish(self, entry: Entry) -> None:
        def change(crd: dict[str, Any]) -> bool:
            changed = False
            finalizers = crd["metadata"].setdefault("finalizers", [])
            if CLEANUP_FINALIZER not in finalizers:
                finalizers.append(CLEANUP_FINALIZER)
                changed = True
            status = crd.setdefault("status", {})
            names = (crd.get("spec") or {}).get("names") or {}
            accepted = dict(names)
            accepted.setdefault("singular", names.get("kind", "").lower())
            accepted.setdefault("listKind", names.get("kind", "") + "List")
            if status.get("acceptedNames") != accepted:
                status["acceptedNames"] = accepted
                changed = True
            stored = [v["name"] for v in (crd.get("spec") or {}).get("versions", []) if v.get("storage")]
            if status.get("storedVersions") is None or any(v not in status["storedVersions"] for v in stored):
                status["storedVersions"] = sorted(set(status.get("storedVersions") or []) | set(stored))
                changed = True
            types = {c.get("type") for c in status.get("conditions") or []}
            if not {"NamesAccepted", "Established"} <= types:
                status["conditions"] = [
                    _condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                    _condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ]
                changed = True
            return changed

        await self._update(entry, change)

    async def _cleanup(self, entry: Entry) -> None:
        crd = entry.obj
        if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or []):
            self._unregister(entry.name)
            return
        resources = self.served.get(entry.name) or resources_of(crd)
        ctx = Context(user=self.api.system_user)
        if resources:
            r = resources[0]
            for item in list(self.api.storage.cache(r).list(r.storage_prefix)):
                try:
                    await self.api.storage.remove(r, item, ctx)
                except (ConflictError, KeyNotFoundError):
                    pass
        self._unregister(entry.name)

        def change(obj: dict[str, Any]) -> bool:
            finalizers = obj["metadata"].get("finalizers") or []
            if CLEANUP_FINALIZER not in finalizers:
                return False
            obj["metadata"]["finalizers"] = [f for f in finalizers if f != CLEANUP_FINALIZER]
            conditions = [c for c in (obj.get("status") or {}).get("conditions") or []
                          if c.get("type") != "Terminating"]
            conditions.append(_condition("Terminating", "InstanceDeletionCompleted",
                                         "removed all instances"))
            obj.setdefault("status", {})["conditions"] = conditions
            return True

        await self._update(entry, change)
