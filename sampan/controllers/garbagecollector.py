"""The garbage collector: deletes objects whose owners are gone, and carries out foreground
and orphan deletion, as upstream's ``pkg/controller/garbagecollector``.

Three parts:

- the *graph*: every object (seen through metadata-only informers on every resource that can
  be listed, watched and deleted) is a node; ``ownerReferences`` are edges. An owner that is
  referenced but not (yet) seen is a *virtual* node whose existence must be checked.
- the *graph builder*: informer events change the graph and put nodes into two queues:
  ``attempt_to_delete`` (maybe garbage, or an owner waiting for its dependents) and
  ``attempt_to_orphan`` (an owner being deleted with the ``orphan`` finalizer).
- the *collector*: workers on both queues. Before deleting anything they verify, with live
  reads from the API server, that every owner is really gone (absent, or present with another
  uid); the graph only says where to look.

Deletion policies, as the API server records them on the owner:
- background: the owner is deleted at once; its dependents become garbage and are deleted.
- foreground: the owner gets ``foregroundDeletion``; its dependents are deleted first, and the
  finalizer is removed once no dependent with ``blockOwnerDeletion`` is left.
- orphan: the owner gets ``orphan``; its dependents lose their ownerReference to it, then the
  finalizer is removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sampan.client.controller import Requeue, run_workers
from sampan.client.discovery import APIResource, DiscoveryFailedError, UnknownKindError
from sampan.client.errors import ApiError
from sampan.client.events import WARNING, EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, strip_managed_fields
from sampan.client.rest import Client, Preconditions
from sampan.client.workqueue import RateLimitingQueue

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
IGNORED_RESOURCES = frozenset({("", "events"), ("events.k8s.io", "events")})
ABSENT_OWNER_CACHE_SIZE = 500
RESYNC_PERIOD = 30.0
CONFLICT_RETRIES = 5

Object = dict[str, Any]
OwnerReference = dict[str, Any]


# -- identities and nodes ------------------------------------------------------------------------


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class ObjectReference:
    """Where an object is: its coordinates and uid (the namespace is "" for cluster scope)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    @property
    def coordinates(self) -> tuple[str, str, str, str, str]:
        """Identity regardless of API version: one object is served in several versions."""
        return (_group(self.api_version), self.kind, self.namespace, self.name, self.uid)

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind}.{self.api_version} {where} ({self.uid})"


def owner_identity(ref: OwnerReference, namespace: str) -> ObjectReference:
    """The owner a reference names, assumed in the dependent's namespace until the REST
    mapping says the owner is cluster-scoped."""
    return ObjectReference(ref.get("apiVersion", ""), ref.get("kind", ""), namespace,
                           ref.get("name", ""), ref.get("uid", ""))


def _references(obj: Object) -> list[OwnerReference]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or [])


def _being_deleted(obj: Object) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _has_finalizer(obj: Object, finalizer: str) -> bool:
    return finalizer in ((obj.get("metadata") or {}).get("finalizers") or [])


def _deletion_starts_with(old: Object | None, new: Object, finalizer: str) -> bool:
    """``new`` is being deleted with ``finalizer`` and ``old`` was not."""
    if not _being_deleted(new) or not _has_finalizer(new, finalizer):
        return False
    return old is None or not _being_deleted(old) or not _has_finalizer(old, finalizer)


@dataclass(eq=False)
class Node:
    identity: ObjectReference
    owners: list[OwnerReference] = field(default_factory=list)
    observed: bool = True  # False: a virtual node, known only from references to it
    being_deleted: bool = False
    deleting_dependents: bool = False

    @property
    def uid(self) -> str:
        return self.identity.uid


class Graph:
    """Nodes by uid, and which uids reference each owner uid (kept even while the owner has
    no node, so an owner seen late still finds its dependents)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._dependents: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, uid: str) -> Node | None:
        return self.nodes.get(uid)

    def add(self, node: Node) -> None:
        self.nodes[node.uid] = node
        self._link(node.uid, node.owners)

    def remove(self, node: Node) -> None:
        if self.nodes.get(node.uid) is node:
            del self.nodes[node.uid]
            self._unlink(node.uid, node.owners)

    def set_owners(self, node: Node, owners: list[OwnerReference]) -> None:
        self._unlink(node.uid, node.owners)
        node.owners = owners
        self._link(node.uid, owners)

    def dependents(self, uid: str) -> list[Node]:
        return [self.nodes[d] for d in sorted(self._dependents.get(uid, ())) if d in self.nodes]

    def blocking_dependents(self, owner: Node) -> list[Node]:
        """Dependents whose reference to ``owner`` has ``blockOwnerDeletion``."""
        return [d for d in self.dependents(owner.uid)
                if any(r.get("uid") == owner.uid and r.get("blockOwnerDeletion") for r in d.owners)]

    def _link(self, uid: str, owners: list[OwnerReference]) -> None:
        for ref in owners:
            self._dependents.setdefault(ref.get("uid", ""), set()).add(uid)

    def _unlink(self, uid: str, owners: list[OwnerReference]) -> None:
        for ref in owners:
            deps = self._dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard(uid)
                if not deps:
                    del self._dependents[ref.get("uid", "")]


class AbsentOwnerCache:
    """Owners verified absent, so their other dependents need no second lookup (LRU)."""

    def __init__(self, size: int = ABSENT_OWNER_CACHE_SIZE):
        self.size = size
        self._entries: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def add(self, ref: ObjectReference) -> None:
        self._entries[ref.coordinates] = None
        self._entries.move_to_end(ref.coordinates)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __contains__(self, ref: ObjectReference) -> bool:
        return ref.coordinates in self._entries


# -- the graph builder ---------------------------------------------------------------------------


def _reference_diff(old: list[OwnerReference], new: list[OwnerReference]
                    ) -> tuple[list[OwnerReference], list[OwnerReference],
                               list[tuple[OwnerReference, OwnerReference]]]:
    """(added, removed, changed as (old, new)) by owner uid."""
    old_by_uid = {r.get("uid"): r for r in old}
    new_by_uid = {r.get("uid"): r for r in new}
    added = [r for uid, r in new_by_uid.items() if uid not in old_by_uid]
    removed = [r for uid, r in old_by_uid.items() if uid not in new_by_uid]
    changed = [(old_by_uid[uid], r) for uid, r in new_by_uid.items()
               if uid in old_by_uid and old_by_uid[uid] != r]
    return added, removed, changed


class GraphBuilder:
    """Turns informer events into graph changes and work for the collector."""

    def __init__(self, graph: Graph, absent: AbsentOwnerCache) -> None:
        self.graph = graph
        self.absent = absent
        self.attempt_to_delete: RateLimitingQueue[str] = RateLimitingQueue(
            name="garbage collector attempt to delete")
        self.attempt_to_orphan: RateLimitingQueue[str] = RateLimitingQueue(
            name="garbage collector attempt to orphan")

    def handlers(self, resource: APIResource) -> dict[str, Any]:
        return {"on_add": lambda obj: self.observe(resource, None, obj),
                "on_update": lambda old, new: self.observe(resource, old, new),
                "on_delete": lambda obj: self.observe_deletion(resource, obj)}

    @staticmethod
    def identity(resource: APIResource, obj: Object) -> ObjectReference:
        meta = obj["metadata"]
        return ObjectReference(resource.api_version, resource.kind, meta.get("namespace") or "",
                               meta["name"], meta["uid"])

    # -- add / update ----------------------------------------------------------------------
    def observe(self, resource: APIResource, old: Object | None, obj: Object) -> None:
        identity = self.identity(resource, obj)
        node = self.graph.get(identity.uid)
        if node is not None and not node.observed:
            self._replace_virtual(node, identity)
        if node is None:
            node = Node(identity, _references(obj), observed=True,
                        being_deleted=_being_deleted(obj),
                        deleting_dependents=_being_deleted(obj) and _has_finalizer(obj, FOREGROUND))
            self.graph.add(node)
            self._ensure_owners(node, node.owners)
        else:
            self._update_owners(node, _references(obj))
            if _being_deleted(obj):
                node.being_deleted = True
        self._process_transitions(old, obj, node)

    def _replace_virtual(self, node: Node, observed: ObjectReference) -> None:
        """A virtual node is now seen: its dependents that named it by other coordinates may
        be pointing at something that does not exist, so check them."""
        if node.identity.coordinates != observed.coordinates:
            for dep in self.graph.dependents(node.uid):
                if not self._refers_to(dep, observed):
                    self.attempt_to_delete.add(dep.uid)
            node.identity = observed
        node.observed = True

    @staticmethod
    def _refers_to(dependent: Node, owner: ObjectReference) -> bool:
        for ref in dependent.owners:
            if ref.get("uid") != owner.uid:
                continue
            if (_group(ref.get("apiVersion", "")), ref.get("kind"), ref.get("name")) == \
                    (_group(owner.api_version), owner.kind, owner.name) and \
                    (not owner.namespace or owner.namespace == dependent.identity.namespace):
                return True
        return False

    def _ensure_owners(self, node: Node, refs: list[OwnerReference]) -> None:
        """Owners not in the graph become virtual nodes to be checked; owners that are there
        but do not match the reference send the dependent to be checked."""
        for ref in refs:
            if not ref.get("uid"):
                continue
            owner = self.graph.get(ref["uid"])
            if owner is None:
                owner = Node(owner_identity(ref, node.identity.namespace), observed=False)
                self.graph.add(owner)
                self.attempt_to_delete.add(owner.uid)
            elif owner.observed and not self._refers_to(node, owner.identity):
                self.attempt_to_delete.add(node.uid)

    def _update_owners(self, node: Node, refs: list[OwnerReference]) -> None:
        added, removed, changed = _reference_diff(node.owners, refs)
        if not (added or removed or changed):
            return
        self._enqueue_unblocked_owners(removed, changed)
        self.graph.set_owners(node, refs)
        self._ensure_owners(node, added)

    def _enqueue_unblocked_owners(self, removed: list[OwnerReference],
                                  changed: list[tuple[OwnerReference, OwnerReference]]) -> None:
        """An owner in foreground deletion may have just lost its last blocking dependent."""
        unblocked = [r for r in removed if r.get("blockOwnerDeletion")]
        unblocked += [new for old, new in changed
                      if old.get("blockOwnerDeletion") and not new.get("blockOwnerDeletion")]
        for ref in unblocked:
            owner = self.graph.get(ref.get("uid", ""))
            if owner is not None and owner.deleting_dependents:
                self.attempt_to_delete.add(owner.uid)

    def _process_transitions(self, old: Object | None, obj: Object, node: Node) -> None:
        if _deletion_starts_with(old, obj, ORPHAN):
            self.attempt_to_orphan.add(node.uid)
            return
        if _deletion_starts_with(old, obj, FOREGROUND):
            node.deleting_dependents = True
            for dep in self.graph.dependents(node.uid):
                self.attempt_to_delete.add(dep.uid)
            self.attempt_to_delete.add(node.uid)

    # -- delete --------------------------------------------------------------------------------
    def observe_deletion(self, resource: APIResource, obj: Object) -> None:
        identity = self.identity(resource, obj)
        node = self.graph.get(identity.uid)
        if node is not None:
            self._remove(node, identity)

    def virtual_delete(self, identity: ObjectReference) -> None:
        """The collector verified that ``identity`` does not exist."""
        node = self.graph.get(identity.uid)
        if node is None:
            return
        if node.observed and node.identity.coordinates != identity.coordinates:
            # The real object lives elsewhere; only dependents naming these coordinates are
            # pointing at nothing.
            matching = [d for d in self.graph.dependents(node.uid) if self._refers_to(d, identity)]
            if matching:
                self.absent.add(identity)
            for dep in matching:
                self.attempt_to_delete.add(dep.uid)
            return
        self._remove(node, identity)

    def _remove(self, node: Node, identity: ObjectReference) -> None:
        self.graph.remove(node)
        dependents = self.graph.dependents(node.uid)
        if dependents:
            self.absent.add(identity)
        for dep in dependents:
            self.attempt_to_delete.add(dep.uid)
        for ref in node.owners:
            owner = self.graph.get(ref.get("uid", ""))
            if owner is not None and owner.deleting_dependents:
                self.attempt_to_delete.add(owner.uid)


# -- the collector -------------------------------------------------------------------------------


class _ClusterScopedDependentError(Exception):
    """A cluster-scoped object names a namespaced owner: retrying cannot help."""


@dataclass
class _Classified:
    solid: list[OwnerReference] = field(default_factory=list)
    dangling: list[OwnerReference] = field(default_factory=list)
    waiting: list[OwnerReference] = field(default_factory=list)  # owners deleting dependents


class GarbageCollector:
    """Runs the graph builder's informers and the workers that delete and orphan."""

    name = "garbage-collector"

    def __init__(self, client: Client, informers: InformerFactory | None = None, *,
                 workers: int = 20, resync_period: float = RESYNC_PERIOD):
        self.client = client
        self.workers = workers
        self.resync_period = resync_period
        self.graph = Graph()
        self.absent = AbsentOwnerCache()
        self.builder = GraphBuilder(self.graph, self.absent)
        self.monitors: dict[APIResource, SharedInformer] = {}
        self.recorder = EventRecorder(client, "garbage-collector-controller")

    # -- monitors ------------------------------------------------------------------------------
    async def deletable_resources(self) -> list[APIResource]:
        """Preferred resources supporting delete, list and watch (GetDeletableResources)."""
        try:
            await self.client.discovery.refresh()
        except DiscoveryFailedError as e:
            log.warning("garbage collector: %s", e)
        return [r for r in self.client.discovery.preferred_resources()
                if r.supports("delete", "list", "watch")
                and (r.group, r.name) not in IGNORED_RESOURCES]

    async def sync_monitors(self) -> None:
        """Watch resources that appeared (new CRDs); stop watching ones that went away."""
        wanted = {(r.group, r.name): r for r in await self.deletable_resources()}
        for resource in list(self.monitors):
            if wanted.get((resource.group, resource.name)) != resource:
                await self.monitors.pop(resource).stop()
        for resource in wanted.values():
            if resource not in self.monitors:
                informer = SharedInformer(self.client, resource.api_version, resource.name,
                                          metadata_only=True, transform=strip_managed_fields)
                informer.add_event_handler(**self.builder.handlers(resource))
                informer.start()
                self.monitors[resource] = informer
                log.debug("garbage collector: monitoring %s", resource.group_resource)

    async def _resync_monitors(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            try:
                await self.sync_monitors()
            except (ApiError, OSError, asyncio.TimeoutError) as e:
                log.warning("garbage collector: rediscovery failed: %r", e)

    # -- run -------------------------------------------------------------------------------------
    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.sync_monitors()
            await self._wait_for_graph()
            log.info("garbage collector: graph built from %d resources, %d objects",
                     len(self.monitors), len(self.graph))
            tasks = [
                asyncio.create_task(run_workers("gc-delete", self.builder.attempt_to_delete,
                                                self.attempt_to_delete, self.workers)),
                asyncio.create_task(run_workers("gc-orphan", self.builder.attempt_to_orphan,
                                                self.attempt_to_orphan, self.workers)),
                asyncio.create_task(self._resync_monitors()),
            ]
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(m.stop() for m in self.monitors.values()))
            self.monitors.clear()
            await self.recorder.close()

    async def _wait_for_graph(self) -> None:
        while True:
            pending = [m for m in self.monitors.values() if not m.has_synced()]
            if not pending:
                return
            synced = await asyncio.gather(*(m.wait_for_sync(30.0) for m in pending))
            if not all(synced):
                log.warning("garbage collector: waiting for %d monitors to sync",
                            sum(not s for s in synced))

    # -- API helpers -----------------------------------------------------------------------------
    async def _mapping(self, identity: ObjectReference) -> APIResource:
        try:
            return await self.client.discovery.resource_for(identity.api_version, identity.kind)
        except UnknownKindError as e:
            raise Requeue(str(e)) from e  # maybe a CRD not yet discovered

    async def _get(self, identity: ObjectReference) -> Object | None:
        """The live object (metadata) at ``identity``'s coordinates; None if absent."""
        resource = await self._mapping(identity)
        try:
            return await self.client.get(resource.api_version, resource.name, identity.name,
                                         namespace=identity.namespace if resource.namespaced else None,
                                         metadata_only=True)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def _patch_metadata(self, identity: ObjectReference, metadata: dict[str, Any]) -> None:
        resource = await self._mapping(identity)
        await self.client.patch(resource.api_version, resource.name, identity.name,
                                {"metadata": metadata},
                                namespace=identity.namespace if resource.namespaced else None)

    async def _delete(self, identity: ObjectReference, live: Object, policy: str) -> None:
        """Delete with uid and resourceVersion preconditions; if only unrelated fields changed
        since we decided, delete anyway rather than starve behind a busy writer."""
        resource = await self._mapping(identity)
        namespace = identity.namespace if resource.namespaced else None
        meta = live["metadata"]

        async def delete(rv: str | None) -> None:
            await self.client.delete(resource.api_version, resource.name, identity.name,
                                     namespace=namespace, propagation_policy=policy,
                                     preconditions=Preconditions(uid=identity.uid,
                                                                 resource_version=rv))
        try:
            await delete(meta.get("resourceVersion"))
        except ApiError as e:
            if not e.conflict:
                raise
            latest = await self._get(identity)
            if latest is None:
                return
            same_owners = _references(latest) == _references(live)
            if latest["metadata"].get("uid") != identity.uid or not same_owners:
                raise
            await delete(None)

    async def _update_live(self, identity: ObjectReference, change) -> None:
        """Read, change the metadata, patch with uid and resourceVersion preconditions; again
        from a fresh read on conflict. ``change`` returns the metadata patch, or None."""
        for attempt in range(CONFLICT_RETRIES):
            live = await self._get(identity)
            if live is None or live["metadata"].get("uid") != identity.uid:
                return
            patch = change(live["metadata"])
            if patch is None:
                return
            patch.update(uid=identity.uid, resourceVersion=live["metadata"]["resourceVersion"])
            try:
                await self._patch_metadata(identity, patch)
                return
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict or attempt == CONFLICT_RETRIES - 1:
                    raise

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        def change(meta: dict[str, Any]) -> dict[str, Any] | None:
            finalizers = meta.get("finalizers") or []
            if finalizer not in finalizers:
                return None
            return {"finalizers": [f for f in finalizers if f != finalizer]}

        await self._update_live(node.identity, change)

    async def _remove_owner_references(self, node: Node, owner_uids: set[str]) -> None:
        def change(meta: dict[str, Any]) -> dict[str, Any] | None:
            refs = meta.get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") not in owner_uids]
            return None if len(kept) == len(refs) else {"ownerReferences": kept}

        await self._update_live(node.identity, change)

    async def _unblock_owner_references(self, node: Node) -> None:
        def change(meta: dict[str, Any]) -> dict[str, Any] | None:
            refs = meta.get("ownerReferences") or []
            if not any(r.get("blockOwnerDeletion") for r in refs):
                return None
            return {"ownerReferences": [{**r, "blockOwnerDeletion": False} for r in refs]}

        await self._update_live(node.identity, change)

    # -- attempt to delete -----------------------------------------------------------------------
    async def attempt_to_delete(self, uid: str) -> None:
        node = self.graph.get(uid)
        if node is None:
            return
        try:
            verified_absent = await self._attempt_to_delete_item(node)
        except _ClusterScopedDependentError as e:
            log.warning("garbage collector: %s", e)
            self._report_invalid_owner(node, str(e))
            return
        if not verified_absent and not node.observed:
            raise Requeue(f"{node.identity} has not been observed by an informer yet")

    def _report_invalid_owner(self, node: Node, message: str) -> None:
        ident = node.identity
        involved = {"apiVersion": ident.api_version, "kind": ident.kind,
                    "metadata": {"name": ident.name, "namespace": ident.namespace,
                                 "uid": ident.uid}}
        self.recorder.event(involved, WARNING, "OwnerRefInvalidNamespace", message)

    async def _attempt_to_delete_item(self, node: Node) -> bool:
        """One look at ``node``; True when it turned out not to exist (a virtual delete)."""
        if node.being_deleted and not node.deleting_dependents:
            return False  # on its way out; its dependents are handled when it is gone
        live = await self._get(node.identity)
        if live is None or live["metadata"].get("uid") != node.uid:
            self.builder.virtual_delete(node.identity)
            return True
        if node.deleting_dependents:
            await self._process_deleting_dependents(node)
            return False
        refs = _references(live)
        if not refs:
            return False
        found = await self._classify(node, refs)
        if found.solid:
            stale = {r["uid"] for r in found.dangling + found.waiting}
            if stale:
                # Leaving references to owners waiting on us would block them forever.
                await self._remove_owner_references(node, stale)
            return False
        dependents = self.graph.dependents(node.uid)
        if found.waiting and dependents:
            if any(d.deleting_dependents for d in dependents):
                # A cycle of foreground deletions would wait forever: stop blocking our owners.
                await self._unblock_owner_references(node)
            policy = "Foreground"
        elif _has_finalizer(live, ORPHAN):
            policy = "Orphan"
        elif _has_finalizer(live, FOREGROUND):
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("garbage collector: deleting %s (%s)", node.identity, policy)
        try:
            await self._delete(node.identity, live, policy)
        except ApiError as e:
            if not e.not_found:
                raise
            self.builder.virtual_delete(node.identity)
            return True
        return False

    async def _classify(self, node: Node, refs: list[OwnerReference]) -> _Classified:
        found = _Classified()
        for ref in refs:
            owner = await self._live_owner(node, ref)
            if owner is None:
                found.dangling.append(ref)
            elif _being_deleted(owner) and _has_finalizer(owner, FOREGROUND):
                found.waiting.append(ref)
            else:
                found.solid.append(ref)
        return found

    async def _live_owner(self, node: Node, ref: OwnerReference) -> Object | None:
        """The owner a reference names, read live; None if it is absent or another object
        (another uid) now has its name."""
        identity = owner_identity(ref, node.identity.namespace)
        resource = await self._mapping(identity)
        if not resource.namespaced:
            identity = ObjectReference(identity.api_version, identity.kind, "", identity.name,
                                       identity.uid)
        elif not node.identity.namespace:
            raise _ClusterScopedDependentError(
                f"{node.identity} is cluster-scoped but refers to namespaced owner {identity}")
        if identity in self.absent:
            return None
        owner = await self._get(identity)
        if owner is None or owner["metadata"].get("uid") != identity.uid:
            self.absent.add(identity)
            return None
        return owner

    async def _process_deleting_dependents(self, node: Node) -> None:
        """An owner in foreground deletion: finish once no blocking dependent is left."""
        blocking = self.graph.blocking_dependents(node)
        if not blocking:
            log.info("garbage collector: removing %s finalizer from %s", FOREGROUND, node.identity)
            await self._remove_finalizer(node, FOREGROUND)
            return
        for dep in blocking:
            if not dep.deleting_dependents:
                self.builder.attempt_to_delete.add(dep.uid)

    # -- attempt to orphan -----------------------------------------------------------------------
    async def attempt_to_orphan(self, uid: str) -> None:
        owner = self.graph.get(uid)
        if owner is None:
            return
        dependents = self.graph.dependents(uid)
        results = await asyncio.gather(
            *(self._remove_owner_references(dep, {uid}) for dep in dependents),
            return_exceptions=True)
        failed = [f"{dep.identity}: {r!r}" for dep, r in zip(dependents, results)
                  if isinstance(r, BaseException)]
        if failed:
            raise RuntimeError(f"failed to orphan dependents of {owner.identity}: {failed}")
        log.info("garbage collector: orphaned %d dependents of %s", len(dependents), owner.identity)
        await self._remove_finalizer(owner, ORPHAN)
