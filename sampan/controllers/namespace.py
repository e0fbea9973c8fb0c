"""The namespace controller: empties a namespace that is being deleted, then finalizes it.

As upstream's ``pkg/controller/namespace``: for a Namespace with a deletionTimestamp, discover
every namespaced resource that can be deleted, delete each collection in the namespace, and
list again until nothing is left (objects with finalizers are waited for). Progress and
problems are reported in ``status.conditions``. When the namespace is empty the ``kubernetes``
finalizer is removed through the ``/finalize`` subresource, and the API server deletes the
Namespace once no finalizer is left.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from sampan.client.controller import Controller
from sampan.client.discovery import APIResource, DiscoveryFailedError
from sampan.client.errors import ApiError
from sampan.client.informer import InformerFactory, SharedInformer
from sampan.client.rest import Client
from sampan.client.workqueue import ItemExponentialFailureRateLimiter, RateLimitingQueue

log = logging.getLogger(__name__)

FINALIZER_KUBERNETES = "kubernetes"
# How long to assume finalizers on remaining content take before looking again.
FINALIZER_ESTIMATE_SECONDS = 15
CONTENT_CONCURRENCY = 8
CONFLICT_RETRIES = 5

DISCOVERY_FAILURE = "NamespaceDeletionDiscoveryFailure"
GV_PARSING_FAILURE = "NamespaceDeletionGroupVersionParsingFailure"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
CONDITION_TYPES = (DISCOVERY_FAILURE, GV_PARSING_FAILURE, CONTENT_FAILURE, CONTENT_REMAINING,
                   FINALIZERS_REMAINING)
_OK = {  # type → (reason, message) when nothing is wrong
    DISCOVERY_FAILURE: ("ResourcesDiscovered", "All resources successfully discovered"),
    GV_PARSING_FAILURE: ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    CONTENT_FAILURE: ("ContentDeleted",
                      "All content successfully deleted, may be waiting on finalization"),
    CONTENT_REMAINING: ("ContentRemoved", "All content successfully removed"),
    FINALIZERS_REMAINING: ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
}


class ResourcesRemainingError(Exception):
    """Content was deleted but has not gone yet; look again in about ``estimate`` seconds."""

    def __init__(self, estimate: int):
        self.estimate = estimate
        super().__init__(f"some content remains in the namespace, estimate {estimate} seconds "
                         "before it is removed")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- conditions ----------------------------------------------------------------------------------


@dataclass
class _Conditions:
    """What one deletion pass found, turned into the namespace's status conditions."""

    failures: dict[str, tuple[str, str]] = field(default_factory=dict)  # type → (reason, msg)
    content_errors: list[str] = field(default_factory=list)

    def discovery_failed(self, message: str) -> None:
        self.failures[DISCOVERY_FAILURE] = ("DiscoveryFailed", message)

    def group_version_parsing_failed(self, message: str) -> None:
        self.failures[GV_PARSING_FAILURE] = ("GroupVersionParsingFailed", message)

    def content_remaining(self, by_resource: dict[str, int], by_finalizer: dict[str, int]) -> None:
        if by_resource:
            listed = sorted(f"{r} has {n} resource instances" for r, n in by_resource.items())
            self.failures[CONTENT_REMAINING] = (
                "SomeResourcesRemain", f"Some resources are remaining: {', '.join(listed)}")
        if by_finalizer:
            listed = sorted(f"{f} in {n} resource instances" for f, n in by_finalizer.items())
            self.failures[FINALIZERS_REMAINING] = (
                "SomeFinalizersRemain",
                f"Some content in the namespace has finalizers remaining: {', '.join(listed)}")

    def apply(self, namespace: dict[str, Any]) -> bool:
        """Write the conditions into ``namespace``; whether anything changed."""
        if self.content_errors and CONTENT_FAILURE not in self.failures:
            errors = sorted(self.content_errors)
            self.failures[CONTENT_FAILURE] = (
                "ContentDeletionFailed",
                f"Failed to delete all resource types, {len(errors)} remaining: "
                f"{', '.join(errors)}")
        conditions = namespace.setdefault("status", {}).setdefault("conditions", [])
        changed = False
        for type_ in CONDITION_TYPES:
            failing = type_ in self.failures
            reason, message = self.failures.get(type_) or _OK[type_]
            wanted = {"type": type_, "status": "True" if failing else "False", "reason": reason,
                      "message": message}
            changed |= _set_condition(conditions, wanted)
        return changed


def _set_condition(conditions: list[dict[str, Any]], wanted: dict[str, str]) -> bool:
    for current in conditions:
        if current.get("type") != wanted["type"]:
            continue
        if all(current.get(k) == v for k, v in wanted.items()):
            return False
        if current.get("status") != wanted["status"]:
            current["lastTransitionTime"] = _now()
        current.update(wanted)
        return True
    conditions.append({**wanted, "lastTransitionTime": _now()})
    return True


# -- the deleter -------------------------------------------------------------------------------


@dataclass
class _Remaining:
    """What is left of one resource after deleting its collection."""

    estimate: int = 0
    count: int = 0
    finalizers: dict[str, int] = field(default_factory=dict)


class NamespacedResourcesDeleter:
    """Deletes everything in a namespace, then removes ``finalizer_token`` from it."""

    def __init__(self, client: Client, finalizer_token: str = FINALIZER_KUBERNETES):
        self.client = client
        self.finalizer_token = finalizer_token
        self._unsupported: set[tuple[APIResource, str]] = set()  # (resource, verb)

    async def delete(self, name: str) -> None:
        """One pass; raises ``ResourcesRemainingError`` while content is still going away."""
        try:
            namespace = await self.client.get("v1", "namespaces", name)
        except ApiError as e:
            if e.not_found:
                return
            raise
        if not namespace["metadata"].get("deletionTimestamp"):
            return
        namespace = await self._ensure_terminating(namespace)
        if namespace is None or self.finalizer_token not in _spec_finalizers(namespace):
            return
        estimate = await self._delete_all_content(namespace)
        if estimate > 0:
            raise ResourcesRemainingError(estimate)
        await self._finalize(namespace)

    async def _ensure_terminating(self, namespace: dict[str, Any]) -> dict[str, Any] | None:
        if (namespace.get("status") or {}).get("phase") == "Terminating":
            return namespace
        for _ in range(CONFLICT_RETRIES):
            namespace.setdefault("status", {})["phase"] = "Terminating"
            try:
                return await self.client.update("v1", "namespaces", namespace,
                                                subresource="status")
            except ApiError as e:
                if e.not_found:
                    return None
                if not e.conflict:
                    raise
            namespace = await self._get_same(namespace)
        raise RuntimeError(f"namespace {namespace['metadata']['name']}: too many conflicts")

    async def _get_same(self, namespace: dict[str, Any]) -> dict[str, Any]:
        """The namespace read again; an error if it was replaced by another of that name."""
        meta = namespace["metadata"]
        latest = await self.client.get("v1", "namespaces", meta["name"])
        if latest["metadata"].get("uid") != meta.get("uid"):
            raise RuntimeError(f"namespace {meta['name']}: uid has changed across retries")
        return latest

    async def _finalize(self, namespace: dict[str, Any]) -> None:
        for _ in range(CONFLICT_RETRIES):
            remaining = sorted({f for f in _spec_finalizers(namespace) if f != self.finalizer_token})
            body = {**namespace, "spec": {**(namespace.get("spec") or {}), "finalizers": remaining}}
            try:
                await self.client.update("v1", "namespaces", body, subresource="finalize")
                return
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict:
                    raise
            namespace = await self._get_same(namespace)
        raise RuntimeError(f"namespace {namespace['metadata']['name']}: too many conflicts")

    # -- content -------------------------------------------------------------------------------
    async def _deletable_resources(self, conditions: _Conditions) -> list[APIResource]:
        discovery = self.client.discovery
        try:
            await discovery.refresh()
        except DiscoveryFailedError as e:  # not fatal: delete what we can see
            conditions.discovery_failed(
                f"Discovery failed for some groups, {len(e.failures)} failing: {e}")
        except (ApiError, OSError, asyncio.TimeoutError) as e:
            conditions.discovery_failed(str(e))
        if discovery.parse_failures:
            conditions.group_version_parsing_failed(
                "; ".join(f"{gv}: {msg}" for gv, msg in sorted(discovery.parse_failures.items())))
        return [r for r in discovery.preferred_resources() if r.namespaced and r.supports("delete")]

    async def _delete_all_content(self, namespace: dict[str, Any]) -> int:
        """Delete every resource's content; the longest estimate of what still remains."""
        name = namespace["metadata"]["name"]
        deleted_at = _parse_time(namespace["metadata"]["deletionTimestamp"])
        conditions = _Conditions()
        resources = await self._deletable_resources(conditions)
        limit = asyncio.Semaphore(CONTENT_CONCURRENCY)

        async def one(resource: APIResource) -> _Remaining:
            async with limit:
                try:
                    return await self._delete_content(resource, name, deleted_at)
                except Exception as e:  # keep going with the other resources
                    conditions.content_errors.append(str(e))
                    return _Remaining()

        results = await asyncio.gather(*(one(r) for r in resources))
        by_resource: dict[str, int] = {}
        by_finalizer: dict[str, int] = {}
        for resource, left in zip(resources, results):
            if left.count:
                by_resource[f"{resource.name}.{resource.group}"] = left.count
            for finalizer, n in left.finalizers.items():
                by_finalizer[finalizer] = by_finalizer.get(finalizer, 0) + n
        conditions.content_remaining(by_resource, by_finalizer)
        await self._update_conditions(namespace, conditions)
        failures = [*conditions.content_errors,
                    *(m for t, (_, m) in conditions.failures.items()
                      if t in (DISCOVERY_FAILURE, GV_PARSING_FAILURE))]
        if failures:
            raise RuntimeError(f"namespace {name}: " + "; ".join(sorted(failures)))
        return max((r.estimate for r in results), default=0)

    async def _update_conditions(self, namespace: dict[str, Any], conditions: _Conditions) -> None:
        if not conditions.apply(namespace):
            return
        try:
            updated = await self.client.update("v1", "namespaces", namespace, subresource="status")
            namespace.clear()
            namespace.update(updated)
        except ApiError as e:  # conditions are information; the next pass writes them again
            log.warning("could not update conditions of namespace %s: %s",
                        namespace["metadata"]["name"], e)

    async def _delete_content(self, resource: APIResource, namespace: str,
                              deleted_at: datetime.datetime) -> _Remaining:
        estimate = await self._estimate_graceful_termination(resource, namespace, deleted_at)
        if not await self._delete_collection(resource, namespace):
            await self._delete_each(resource, namespace)
        items = await self._list(resource, namespace)
        if items is None or not items:
            return _Remaining(estimate=estimate if items is None else 0)
        finalizers: dict[str, int] = {}
        for item in items:
            for finalizer in item["metadata"].get("finalizers") or []:
                finalizers[finalizer] = finalizers.get(finalizer, 0) + 1
        if estimate:
            return _Remaining(estimate, len(items), finalizers)
        if finalizers:
            return _Remaining(FINALIZER_ESTIMATE_SECONDS, len(items), finalizers)
        raise RuntimeError(f"unexpected items still remain in namespace: {namespace} for gvr: "
                           f"{resource.api_version}/{resource.name}")

    def _supported(self, resource: APIResource, verb: str) -> bool:
        return resource.supports(verb) and (resource, verb) not in self._unsupported

    async def _delete_collection(self, resource: APIResource, namespace: str) -> bool:
        """Whether the server supports deletecollection for ``resource``."""
        if not self._supported(resource, "deletecollection"):
            return False
        try:
            await self.client.delete_collection(resource.api_version, resource.name,
                                                namespace=namespace,
                                                propagation_policy="Background")
            return True
        except ApiError as e:
            if e.method_not_supported or e.not_found:
                self._unsupported.add((resource, "deletecollection"))
                return False
            raise

    async def _list(self, resource: APIResource, namespace: str) -> list[dict[str, Any]] | None:
        """The remaining items (metadata only), or None when the resource cannot be listed."""
        if not self._supported(resource, "list"):
            return None
        try:
            listed = await self.client.list(resource.api_version, resource.name,
                                            namespace=namespace, metadata_only=True)
            return listed.get("items") or []
        except ApiError as e:
            if e.method_not_supported or e.not_found:
                self._unsupported.add((resource, "list"))
                return None
            raise

    async def _delete_each(self, resource: APIResource, namespace: str) -> None:
        for item in await self._list(resource, namespace) or []:
            try:
                await self.client.delete(resource.api_version, resource.name,
                                         item["metadata"]["name"], namespace=namespace,
                                         propagation_policy="Background")
            except ApiError as e:
                if not (e.not_found or e.method_not_supported):
                    raise

    async def _estimate_graceful_termination(self, resource: APIResource, namespace: str,
                                             deleted_at: datetime.datetime) -> int:
        """Pods get their termination grace period, counted from the namespace's deletion."""
        if (resource.group, resource.name) != ("", "pods"):
            return 0
        pods = await self.client.list("v1", "pods", namespace=namespace)
        estimate = 0
        for pod in pods.get("items") or []:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
            if grace is not None:
                estimate = max(estimate, int(grace))
        elapsed = (datetime.datetime.now(datetime.timezone.utc) - deleted_at).total_seconds()
        return 0 if elapsed >= estimate else estimate


def _spec_finalizers(namespace: dict[str, Any]) -> list[str]:
    return list((namespace.get("spec") or {}).get("finalizers") or [])


# -- the controller ------------------------------------------------------------------------------


class NamespaceController(Controller):
    """Reconciles Namespaces that are being deleted."""

    name = "namespace"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 10,
                 **kwargs: Any):
        super().__init__(client, informers, workers=workers, **kwargs)
        # Upstream's namespace queue backs off 5 ms → 60 s without an overall bucket.
        self.queue = RateLimitingQueue(ItemExponentialFailureRateLimiter(0.005, 60.0),
                                       name=self.name)
        self.namespaces: SharedInformer = informers.informer("v1", "namespaces")
        self.namespaces.add_event_handler(on_add=self._enqueue_if_deleting,
                                          on_update=lambda _old, new: self._enqueue_if_deleting(new))
        self.deleter = NamespacedResourcesDeleter(client)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.namespaces]

    def _enqueue_if_deleting(self, namespace: dict[str, Any]) -> None:
        if namespace["metadata"].get("deletionTimestamp"):
            self.enqueue(namespace)

    async def reconcile(self, key: str) -> None:
        namespace = self.namespaces.indexer.get(key)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        try:
            await self.deleter.delete(namespace["metadata"]["name"])
        except ResourcesRemainingError as e:
            log.info("namespace %s: %s", key, e)
            self.queue.add_after(key, e.estimate // 2 + 1)
