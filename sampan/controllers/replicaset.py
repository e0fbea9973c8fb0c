"""The ReplicaSet and ReplicationController controllers, as upstream's ``pkg/controller/replicaset``
(which serves ReplicationController through an adapter): keep ``spec.replicas`` active pods
matching the selector, and report what they are doing in ``status``.

One implementation, ``ReplicaManager``, parameterised by a ``WorkloadKind`` (where the objects
live, how their selector reads). A sync claims pods through controller references (adopting
matching orphans, releasing ones that stopped matching, ignoring other controllers' pods),
creates missing pods in slow-start batches or deletes surplus ones ranked by
``pods_to_delete_first``, at most ``burst_replicas`` per sync, and writes the status subresource
when it changed. Expectations keep a sync from acting on a cache that has not yet seen the
controller's own creations and deletions.

Pods are found through indexes, never by scanning: by controller owner uid for the pods a
ReplicaSet may own, by namespace for orphans (the only pods it may adopt).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sampan.api.selectors import LabelSelector, from_label_selector_object, selector_from_set
from sampan.client.controller import Controller, Requeue
from sampan.client.errors import ApiError
from sampan.client.events import EventRecorder
from sampan.client.informer import (
    NAMESPACE_INDEX,
    OWNER_UID_INDEX,
    InformerFactory,
    SharedInformer,
    index_by_owner_uid,
    object_key,
)
from sampan.client.rest import Client
from sampan.controllers.util import (
    Expectations,
    PodControl,
    adopt,
    claim_objects,
    controller_ref,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    is_pod_terminating,
    meta,
    new_controller_ref,
    now_rfc3339,
    owned_by,
    parse_time,
    pod_condition,
    pod_from_template,
    pod_phase,
    pods_to_delete_first,
    release,
    slow_start_batch,
)

log = logging.getLogger(__name__)

Object = dict[str, Any]

# Upstream's BurstReplicas: the most pods one sync creates or deletes.
BURST_REPLICAS = 500
# Upstream's ConcurrentRSSyncs / ConcurrentRCSyncs.
DEFAULT_WORKERS = 5
# Upstream retries a failed status write once, from a fresh read.
STATUS_UPDATE_RETRIES = 1
# Pods without a controller, by namespace: the only pods a ReplicaSet may adopt.
ORPHANS_BY_NAMESPACE_INDEX = "orphans-by-namespace"

REPLICA_FAILURE = "ReplicaFailure"
FAILED_CREATE = "FailedCreate"
FAILED_DELETE = "FailedDelete"
# A little past the moment a pod becomes available, so the recheck does not land just before.
AVAILABILITY_SLACK = 0.1

# Status fields upstream marks ``omitempty``: a zero is written by leaving the field out.
_COUNT_FIELDS = ("fullyLabeledReplicas", "readyReplicas", "availableReplicas")


def index_orphans_by_namespace(pod: Object) -> list[str]:
    if controller_ref(pod) is not None:
        return []
    return [meta(pod).get("namespace") or ""]


def pod_key(pod: Mapping[str, Any]) -> str:
    return f"{meta(pod).get('namespace') or ''}/{meta(pod)['name']}"


# -- the two kinds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadKind:
    """What differs between ReplicaSet and ReplicationController."""

    api_version: str
    resource: str
    kind: str
    selector: Callable[[Mapping[str, Any]], LabelSelector]
    # ``status.terminatingReplicas`` exists in the 1.37 schema for ReplicaSet only.
    reports_terminating: bool


def _replica_set_selector(rs: Mapping[str, Any]) -> LabelSelector:
    return from_label_selector_object((rs.get("spec") or {}).get("selector"))


def _replication_controller_selector(rc: Mapping[str, Any]) -> LabelSelector:
    # Upstream converts the map into matchLabels, so an empty map selects everything.
    return selector_from_set((rc.get("spec") or {}).get("selector"))


REPLICA_SET = WorkloadKind("apps/v1", "replicasets", "ReplicaSet", _replica_set_selector, True)
REPLICATION_CONTROLLER = WorkloadKind("v1", "replicationcontrollers", "ReplicationController",
                                      _replication_controller_selector, False)


# -- pure decisions -----------------------------------------------------------------------------


def desired_replicas(owner: Mapping[str, Any]) -> int:
    replicas = (owner.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def min_ready_seconds(owner: Mapping[str, Any]) -> int:
    return int((owner.get("spec") or {}).get("minReadySeconds") or 0)


def replica_diff(active: int, desired: int, burst: int = BURST_REPLICAS) -> int:
    """Pods to create (positive) or delete (negative) in one sync, at most ``burst``."""
    diff = desired - active
    return max(-burst, min(burst, diff))


def choose_pods_to_delete(pods: list[Object], count: int) -> list[Object]:
    """The ``count`` pods a scale-down removes first (no need to rank when all go)."""
    if count >= len(pods):
        return list(pods)
    return pods_to_delete_first(pods)[:count]


def is_terminating_replica(pod: Mapping[str, Any]) -> bool:
    """Being deleted but not finished (upstream's ``FilterTerminatingPods``)."""
    return is_pod_terminating(pod) and pod_phase(pod) not in ("Succeeded", "Failed")


def _ready_since(pod: Mapping[str, Any]) -> float | None:
    condition = pod_condition(pod, "Ready")
    if condition is None or condition.get("status") != "True":
        return None
    return parse_time(condition.get("lastTransitionTime"))


def next_availability_check(pods: Iterable[Mapping[str, Any]], min_ready: int,
                            now: float) -> float | None:
    """Seconds until the first ready-but-not-yet-available pod becomes available, if any."""
    if min_ready <= 0:
        return None
    soonest: float | None = None
    for pod in pods:
        since = _ready_since(pod)
        if since is None or since + min_ready <= now:
            continue
        wait = since + min_ready - now
        soonest = wait if soonest is None else min(soonest, wait)
    return None if soonest is None else soonest + AVAILABILITY_SLACK


def failure_reason(active: int, desired: int) -> str:
    """``FailedCreate`` when short of pods, ``FailedDelete`` when over."""
    if active < desired:
        return FAILED_CREATE
    if active > desired:
        return FAILED_DELETE
    return ""


def calculate_status(owner: Mapping[str, Any], active: list[Object],
                     terminating: list[Object] | None, manage_error: BaseException | None, *,
                     now: float | None = None) -> Object:
    """The status a sync reports (upstream's ``calculateStatus``); ``terminating`` is None for
    kinds without ``terminatingReplicas``. Unknown fields of the old status are kept."""
    now = time.time() if now is None else now
    status = copy.deepcopy(owner.get("status") or {})
    template_labels = ((((owner.get("spec") or {}).get("template") or {})
                        .get("metadata") or {}).get("labels") or {})
    template_selector = selector_from_set(template_labels)
    min_ready = min_ready_seconds(owner)
    fully_labeled = ready = available = 0
    for pod in active:
        if template_selector.matches(meta(pod).get("labels")):
            fully_labeled += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1

    status_conditions = _failure_conditions(status.get("conditions") or [], manage_error,
                                            failure_reason(len(active), desired_replicas(owner)),
                                            now)
    if status_conditions:
        status["conditions"] = status_conditions
    else:
        status.pop("conditions", None)

    status["replicas"] = len(active)
    for name, value in zip(_COUNT_FIELDS, (fully_labeled, ready, available)):
        if value:
            status[name] = value
        else:
            status.pop(name, None)
    if terminating is not None:
        status["terminatingReplicas"] = len(terminating)
    return status


def _failure_conditions(conditions: list[Object], manage_error: BaseException | None,
                        reason: str, now: float) -> list[Object]:
    """Set ``ReplicaFailure`` on an error (keeping an existing one as it is, like upstream's
    ``SetCondition``), drop it when the sync went well."""
    has_failure = any(c.get("type") == REPLICA_FAILURE for c in conditions)
    if manage_error is None:
        return [c for c in conditions if c.get("type") != REPLICA_FAILURE]
    if has_failure:
        return conditions
    return [*conditions, {"type": REPLICA_FAILURE, "status": "True",
                          "lastTransitionTime": now_rfc3339(now), "reason": reason,
                          "message": _error_message(manage_error)}]


def _error_message(error: BaseException) -> str:
    return error.message if isinstance(error, ApiError) else str(error)


def status_needs_update(owner: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether ``status`` differs from what ``owner`` reports, or the generation is unobserved
    (upstream's short-cut in ``updateReplicaSetStatus``)."""
    old = owner.get("status") or {}
    generation = meta(owner).get("generation") or 0
    if (old.get("observedGeneration") or 0) != generation:
        return True
    for name in ("replicas", *_COUNT_FIELDS):
        if (old.get(name) or 0) != (status.get(name) or 0):
            return True
    if old.get("terminatingReplicas") != status.get("terminatingReplicas"):
        return True
    return (old.get("conditions") or []) != (status.get("conditions") or [])


# -- the controller ----------------------------------------------------------------------------


class ReplicaManager(Controller):
    """The shared implementation; subclasses pick the ``workload`` they manage."""

    workload: ClassVar[WorkloadKind]

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = DEFAULT_WORKERS,
                 burst_replicas: int = BURST_REPLICAS):
        self._owns_recorder = recorder is None
        recorder = recorder if recorder is not None else EventRecorder(client, self.name)
        super().__init__(client, informers, workers=workers, recorder=recorder)
        self.burst_replicas = burst_replicas
        self.expectations = Expectations()
        self.pod_control = PodControl(client, recorder)
        self._selectors: dict[str, tuple[str, LabelSelector]] = {}  # uid → (rv, selector)

        kind = self.workload
        self.owners: SharedInformer = informers.informer(kind.api_version, kind.resource)
        self.owners.add_event_handler(on_add=self._owner_added, on_update=self._owner_updated,
                                      on_delete=self._owner_deleted)
        self.pods: SharedInformer = informers.informer(
            "v1", "pods", indexers={OWNER_UID_INDEX: index_by_owner_uid,
                                    ORPHANS_BY_NAMESPACE_INDEX: index_orphans_by_namespace})
        self.pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                    on_delete=self._pod_deleted)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.owners, self.pods]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder and self.recorder is not None:
                await self.recorder.close()

    # -- lookups ---------------------------------------------------------------------------------
    def _typed(self, owner: Mapping[str, Any]) -> Object:
        """``owner`` with its apiVersion and kind (list items may come without them)."""
        return {**owner, "apiVersion": self.workload.api_version, "kind": self.workload.kind}

    def _selector(self, owner: Mapping[str, Any]) -> LabelSelector:
        """The owner's selector, parsed once per resourceVersion; raises on an invalid one."""
        owner_meta = meta(owner)
        uid, rv = owner_meta.get("uid") or "", owner_meta.get("resourceVersion") or ""
        cached = self._selectors.get(uid)
        if cached is not None and cached[0] == rv:
            return cached[1]
        selector = self.workload.selector(owner)
        self._selectors[uid] = (rv, selector)
        return selector

    def _resolve(self, namespace: str, ref: Mapping[str, Any]) -> Object | None:
        """The owner a controller reference names, if it is ours and still the same object."""
        if ref.get("kind") != self.workload.kind:
            return None
        owner = self.owners.indexer.get(f"{namespace}/{ref.get('name')}")
        if owner is None or meta(owner).get("uid") != ref.get("uid"):
            return None
        return owner

    def _owners_selecting(self, pod: Mapping[str, Any]) -> list[Object]:
        """Owners in the pod's namespace whose selector matches it (``GetPodReplicaSets``);
        an empty selector matches nothing here, as upstream."""
        labels = meta(pod).get("labels")
        found = []
        namespace = meta(pod).get("namespace") or ""
        for owner in self.owners.indexer.by_index(NAMESPACE_INDEX, namespace):
            try:
                selector = self._selector(owner)
            except Exception:
                continue
            if not selector.empty and selector.matches(labels):
                found.append(owner)
        if len(found) > 1:
            log.warning("%s: more than one %s selects pod %s: %s", self.name, self.workload.kind,
                        pod_key(pod), [meta(o)["name"] for o in found])
        return found

    # -- owner events ----------------------------------------------------------------------------
    def _owner_added(self, owner: Object) -> None:
        self.enqueue(owner)

    def _owner_updated(self, old: Object, cur: Object) -> None:
        if meta(old).get("uid") != meta(cur).get("uid"):
            self._owner_deleted(old)
        self.enqueue(cur)

    def _owner_deleted(self, owner: Object) -> None:
        key = object_key(owner)
        self.expectations.forget(key)
        self._selectors.pop(meta(owner).get("uid") or "", None)
        self.queue.add(key)

    # -- pod events ------------------------------------------------------------------------------
    def _pod_added(self, pod: Object) -> None:
        if is_pod_terminating(pod):
            # Seen for the first time already going: not a creation we are waiting for.
            self._pod_deleted(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            owner = self._resolve(meta(pod).get("namespace") or "", ref)
            if owner is not None:
                key = object_key(owner)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for owner in self._owners_selecting(pod):
            self.enqueue(owner)

    def _pod_updated(self, old: Object, cur: Object) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return  # a resync: nothing changed
        labels_changed = meta(old).get("labels") != meta(cur).get("labels")
        if is_pod_terminating(cur):
            # Replace a gracefully deleted pod now, not when the kubelet finally removes it.
            self._pod_deleted(cur)
            if labels_changed:
                self._pod_deleted(old)
            return
        namespace = meta(cur).get("namespace") or ""
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        ref_changed = old_ref != cur_ref
        if ref_changed and old_ref is not None:
            previous = self._resolve(namespace, old_ref)
            if previous is not None:
                self.enqueue(previous)
        if cur_ref is not None:
            owner = self._resolve(namespace, cur_ref)
            if owner is None:
                return
            self.enqueue(owner)
            min_ready = min_ready_seconds(owner)
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(cur):
                self.queue.add_after(object_key(owner), min_ready + 1)
            return
        if labels_changed or ref_changed:
            for owner in self._owners_selecting(cur):
                self.enqueue(owner)

    def _pod_deleted(self, pod: Object) -> None:
        ref = controller_ref(pod)
        if ref is None:
            return
        owner = self._resolve(meta(pod).get("namespace") or "", ref)
        if owner is None:
            return
        key = object_key(owner)
        self.expectations.deletion_observed(key, pod_key(pod))
        self.queue.add(key)

    # -- sync --------------------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        owner = self.owners.indexer.get(key)
        if owner is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = self._selector(owner)
        except Exception as e:  # an invalid selector matches nothing; a spec change fixes it
            log.warning("%s: invalid selector of %s: %s", self.name, key, e)
            return
        owner = self._typed(owner)
        candidates = self._candidate_pods(owner)
        active = await self._claim_pods(owner, selector,
                                        [p for p in candidates if is_pod_active(p)])
        terminating = None
        if self.workload.reports_terminating:
            uid = meta(owner)["uid"]
            terminating = [p for p in candidates if is_terminating_replica(p)
                           and owned_by(p, uid) and selector.matches(meta(p).get("labels"))]

        manage_error: Exception | None = None
        if needs_sync and not meta(owner).get("deletionTimestamp"):
            try:
                await self._manage_replicas(key, owner, active)
            except Exception as e:
                manage_error = e

        now = time.time()
        status = calculate_status(owner, active, terminating, manage_error, now=now)
        await self._update_status(owner, status)
        if manage_error is not None:
            raise manage_error
        recheck = next_availability_check(active, min_ready_seconds(owner), now)
        if recheck is not None:
            self.queue.add_after(key, recheck)

    def _candidate_pods(self, owner: Mapping[str, Any]) -> list[Object]:
        """Pods naming the owner in an ownerReference, and the orphans of its namespace."""
        indexer = self.pods.indexer
        namespace = meta(owner).get("namespace") or ""
        keys = set(indexer.index_keys(OWNER_UID_INDEX, meta(owner)["uid"]))
        keys.update(indexer.index_keys(ORPHANS_BY_NAMESPACE_INDEX, namespace))
        pods = (indexer.get(k) for k in keys)
        return [p for p in pods if p is not None]

    async def _claim_pods(self, owner: Object, selector: LabelSelector,
                          pods: list[Object]) -> list[Object]:
        """Upstream's ``ClaimPods``: the pods this owner controls after adopting matching
        orphans and releasing owned pods that stopped matching."""
        claim = claim_objects(owner, selector, pods)
        owner_uid = meta(owner)["uid"]
        for pod in claim.release:
            await release(self.client, "v1", "pods", pod, owner_uid)
        if not claim.adopt:
            return claim.owned
        await self._check_can_adopt(owner)
        ref = new_controller_ref(owner, self.workload.api_version, self.workload.kind)
        owned = list(claim.owned)
        for pod in claim.adopt:
            if await adopt(self.client, "v1", "pods", pod, ref) is not None:
                owned.append(pod)
        return owned

    async def _check_can_adopt(self, owner: Mapping[str, Any]) -> None:
        """Before adopting, read the owner uncached: a deleted owner must not adopt (#42639)."""
        kind, owner_meta = self.workload, meta(owner)
        fresh = await self.client.get(kind.api_version, kind.resource, owner_meta["name"],
                                      namespace=owner_meta.get("namespace"))
        if meta(fresh).get("uid") != owner_meta["uid"]:
            raise RuntimeError(f"original {kind.kind} {pod_key(owner)} is gone: got uid "
                               f"{meta(fresh).get('uid')}, wanted {owner_meta['uid']}")
        if meta(fresh).get("deletionTimestamp"):
            raise RuntimeError(f"{kind.kind} {pod_key(owner)} has just been deleted at "
                               f"{meta(fresh)['deletionTimestamp']}")

    async def _manage_replicas(self, key: str, owner: Object, active: list[Object]) -> None:
        diff = replica_diff(len(active), desired_replicas(owner), self.burst_replicas)
        if diff > 0:
            await self._create_pods(key, owner, diff)
        elif diff < 0:
            await self._delete_pods(key, owner, choose_pods_to_delete(active, -diff))

    async def _create_pods(self, key: str, owner: Object, count: int) -> None:
        log.info("%s: too few replicas for %s, creating %d", self.name, key, count)
        self.expectations.expect(key, adds=count)
        ref = new_controller_ref(owner, self.workload.api_version, self.workload.kind)
        template = (owner.get("spec") or {}).get("template") or {}

        async def create_one() -> None:
            try:
                await self.pod_control.create_pod(owner, pod_from_template(template, owner, ref))
            except ApiError as e:
                if not _namespace_terminating(e):  # every create would fail: nothing to do
                    raise

        created, errors = await slow_start_batch(count, create_one)
        skipped = count - created
        if skipped:
            # Creations that failed or were never tried will not be observed.
            self.expectations.creation_failed(key, skipped)
        if errors:
            raise errors[0]

    async def _delete_pods(self, key: str, owner: Object, pods: list[Object]) -> None:
        log.info("%s: too many replicas for %s, deleting %d", self.name, key, len(pods))
        self.expectations.expect(key, deleting=[pod_key(p) for p in pods])
        errors: list[BaseException] = []

        async def delete_one(pod: Object) -> None:
            try:
                deleted = await self.pod_control.delete_pod(owner, pod)
            except Exception as e:
                self.expectations.deletion_observed(key, pod_key(pod))
                errors.append(e)
                return
            if not deleted:  # already gone: its deletion event may never come
                self.expectations.deletion_observed(key, pod_key(pod))

        await asyncio.gather(*(delete_one(p) for p in pods))
        if errors:
            raise errors[0]

    async def _update_status(self, owner: Object, status: Object) -> None:
        """Write ``status`` through the status subresource when it changed; one retry from a
        fresh read on failure, like upstream."""
        if not status_needs_update(owner, status):
            return
        kind = self.workload
        generation = meta(owner).get("generation")
        body = owner
        for attempt in range(STATUS_UPDATE_RETRIES + 1):
            new_status = dict(status)
            if generation is not None:
                new_status["observedGeneration"] = generation
            try:
                await self.client.update(kind.api_version, kind.resource,
                                         {**self._typed(body), "status": new_status},
                                         subresource="status")
                return
            except ApiError as e:
                if e.not_found:
                    return
                if attempt == STATUS_UPDATE_RETRIES:
                    if e.conflict:  # someone keeps writing: look again later, quietly
                        raise Requeue(f"status update conflicts: {e.message}") from e
                    raise
            fresh = await self.client.get(kind.api_version, kind.resource, meta(owner)["name"],
                                          namespace=meta(owner).get("namespace"))
            if meta(fresh).get("uid") != meta(owner).get("uid"):
                return
            body = fresh


def _namespace_terminating(error: ApiError) -> bool:
    causes = error.details.get("causes") or ()
    return error.code == 403 and (
        any(c.get("reason") == "NamespaceTerminating" for c in causes)
        or "because it is being terminated" in error.message)


class ReplicaSetController(ReplicaManager):
    """Keeps each apps/v1 ReplicaSet's pods at ``spec.replicas``."""

    name = "replicaset-controller"
    workload = REPLICA_SET


class ReplicationControllerController(ReplicaManager):
    """Keeps each v1 ReplicationController's pods at ``spec.replicas``."""

    name = "replication-controller"
    workload = REPLICATION_CONTROLLER

