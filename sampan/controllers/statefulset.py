"""The StatefulSet controller, as upstream's ``pkg/controller/statefulset``.

Pods get stable identities ``<set>-<ordinal>`` (from ``spec.ordinals.start``) with hostname and
subdomain, the ``statefulset.kubernetes.io/pod-name`` and ``apps.kubernetes.io/pod-index``
labels, and one PersistentVolumeClaim ``<claim>-<set>-<ordinal>`` per volumeClaimTemplate,
created before the pod. ``OrderedReady`` creates one pod at a time in ordinal order, waiting
for each to be Running and Ready (and available), and removes pods in reverse order;
``Parallel`` does both at once. Updates follow ControllerRevisions: RollingUpdate replaces pods
from the highest ordinal down to ``partition``, at most ``maxUnavailable`` at a time; OnDelete
waits for the user to delete pods. ``persistentVolumeClaimRetentionPolicy`` is carried out with
owner references on the claims, which the garbage collector follows.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sampan.api.errors import StatusError
from sampan.api.selectors import LabelSelector
from sampan.client.controller import Controller, Requeue
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import NAMESPACE_INDEX, InformerFactory, SharedInformer, object_key
from sampan.client.rest import Client, Preconditions
from sampan.controllers import history
from sampan.controllers.util import (
    CONTROLLER_REVISION_HASH_LABEL,
    controller_ref,
    is_pod_available,
    is_pod_ready,
    is_pod_terminating,
    meta,
    new_controller_ref,
    resolve_controller_ref,
    pod_from_template,
    pod_phase,
    selector_of,
)

log = logging.getLogger(__name__)

Object = dict[str, Any]

API_VERSION = "apps/v1"
KIND = "StatefulSet"
RESOURCE = "statefulsets"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = CONTROLLER_REVISION_HASH_LABEL
RETAIN, DELETE = "Retain", "Delete"
MAX_BATCH = 500
STATUS_RETRIES = 5

_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")
_INT32_MAX = 2 ** 31 - 1


# -- identity ----------------------------------------------------------------------------------


def parent_and_ordinal(name: str) -> tuple[str, int]:
    """The set a pod name belongs to and its ordinal; ("", -1) for names of another shape."""
    match = _ORDINAL.match(name)
    if match is None:
        return "", -1
    ordinal = int(match.group(2))
    return match.group(1), ordinal if ordinal <= _INT32_MAX else -1


def get_ordinal(pod: Mapping[str, Any]) -> int:
    return parent_and_ordinal(meta(pod).get("name", ""))[1]


def spec(sset: Mapping[str, Any]) -> Mapping[str, Any]:
    return sset.get("spec") or {}


def replicas_of(sset: Mapping[str, Any]) -> int:
    replicas = spec(sset).get("replicas")
    return 1 if replicas is None else int(replicas)


def start_ordinal(sset: Mapping[str, Any]) -> int:
    return int((spec(sset).get("ordinals") or {}).get("start") or 0)


def end_ordinal(sset: Mapping[str, Any]) -> int:
    return start_ordinal(sset) + replicas_of(sset) - 1


def in_ordinal_range(pod: Mapping[str, Any], sset: Mapping[str, Any]) -> bool:
    return start_ordinal(sset) <= get_ordinal(pod) <= end_ordinal(sset)


def pod_name(sset: Mapping[str, Any], ordinal: int) -> str:
    return f"{meta(sset)['name']}-{ordinal}"


def claim_name(template_name: str, set_name: str, ordinal: int) -> str:
    return f"{template_name}-{set_name}-{ordinal}"


def is_member(sset: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    return parent_and_ordinal(meta(pod).get("name", ""))[0] == meta(sset)["name"]


def pod_revision(pod: Mapping[str, Any]) -> str:
    return (meta(pod).get("labels") or {}).get(REVISION_LABEL, "")


def min_ready_seconds(sset: Mapping[str, Any]) -> int:
    return int(spec(sset).get("minReadySeconds") or 0)


def allows_burst(sset: Mapping[str, Any]) -> bool:
    return spec(sset).get("podManagementPolicy") == "Parallel"


def update_strategy(sset: Mapping[str, Any]) -> Mapping[str, Any]:
    return spec(sset).get("updateStrategy") or {}


def partition_of(sset: Mapping[str, Any]) -> int:
    rolling = update_strategy(sset).get("rollingUpdate")
    return int((rolling or {}).get("partition") or 0)


# -- pod state ---------------------------------------------------------------------------------


def is_created(pod: Mapping[str, Any]) -> bool:
    """Created by the API server (a pod we only built has no phase yet)."""
    return bool((pod.get("status") or {}).get("phase"))


def is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def is_running_and_available(pod: Mapping[str, Any], min_ready: int, now: float) -> bool:
    return pod_phase(pod) == "Running" and is_pod_available(pod, min_ready, now)


def is_healthy(pod: Mapping[str, Any]) -> bool:
    return is_running_and_ready(pod) and not is_pod_terminating(pod)


def is_unavailable(pod: Mapping[str, Any], min_ready: int, now: float) -> bool:
    return not is_healthy(pod) or not is_running_and_available(pod, min_ready, now)


def is_finished(pod: Mapping[str, Any]) -> bool:
    return is_created(pod) and pod_phase(pod) in ("Failed", "Succeeded")


# -- building pods and claims ------------------------------------------------------------------


def claims_for(sset: Mapping[str, Any], ordinal: int) -> dict[str, Object]:
    """The claims a pod with ``ordinal`` mounts, by template name (``getPersistentVolumeClaims``):
    named ``<claim>-<set>-<ordinal>``, labelled with the set's matchLabels."""
    set_meta = meta(sset)
    match_labels = (spec(sset).get("selector") or {}).get("matchLabels") or {}
    claims = {}
    for template in spec(sset).get("volumeClaimTemplates") or ():
        claim = copy.deepcopy(template)
        template_name = meta(template).get("name", "")
        claim_meta = claim.setdefault("metadata", {})
        claim_meta["name"] = claim_name(template_name, set_meta["name"], ordinal)
        claim_meta["namespace"] = set_meta.get("namespace")
        claim_meta["labels"] = {**(claim_meta.get("labels") or {}), **match_labels}
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            claim_meta.pop(key, None)
        claim["apiVersion"], claim["kind"] = "v1", "PersistentVolumeClaim"
        claim.pop("status", None)
        claims[template_name] = claim
    return claims


def update_identity(sset: Mapping[str, Any], pod: Object) -> None:
    ordinal = get_ordinal(pod)
    pod_meta = pod.setdefault("metadata", {})
    pod_meta["name"] = pod_name(sset, ordinal)
    pod_meta["namespace"] = meta(sset).get("namespace")
    labels = pod_meta.setdefault("labels", {})
    labels[POD_NAME_LABEL] = pod_meta["name"]
    labels[POD_INDEX_LABEL] = str(ordinal)


def identity_matches(sset: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    parent, ordinal = parent_and_ordinal(meta(pod).get("name", ""))
    labels = meta(pod).get("labels") or {}
    return (ordinal >= 0 and parent == meta(sset)["name"]
            and meta(pod).get("namespace") == meta(sset).get("namespace")
            and labels.get(POD_NAME_LABEL) == meta(pod)["name"]
            and labels.get(POD_INDEX_LABEL) == str(ordinal))


def update_storage(sset: Mapping[str, Any], pod: Object) -> None:
    """Mount the set's claims in the pod, replacing same-named volumes."""
    claims = claims_for(sset, get_ordinal(pod))
    volumes = [{"name": name, "persistentVolumeClaim": {"claimName": meta(claim)["name"]}}
               for name, claim in claims.items()]
    pod_spec = pod.setdefault("spec", {})
    volumes += [v for v in pod_spec.get("volumes") or () if v.get("name") not in claims]
    pod_spec["volumes"] = volumes


def storage_matches(sset: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    ordinal = get_ordinal(pod)
    if ordinal < 0:
        return False
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or ()}
    for template in spec(sset).get("volumeClaimTemplates") or ():
        name = meta(template).get("name", "")
        source = (volumes.get(name) or {}).get("persistentVolumeClaim") or {}
        if source.get("claimName") != claim_name(name, meta(sset)["name"], ordinal):
            return False
    return True


def new_stateful_pod(sset: Mapping[str, Any], ordinal: int) -> Object:
    ref = new_controller_ref(sset, API_VERSION, KIND)
    pod = pod_from_template(spec(sset).get("template") or {}, sset, ref,
                            name=pod_name(sset, ordinal))
    update_identity(sset, pod)
    pod["spec"]["hostname"] = pod["metadata"]["name"]
    if spec(sset).get("serviceName"):
        pod["spec"]["subdomain"] = spec(sset)["serviceName"]
    update_storage(sset, pod)
    return pod


def versioned_pod(current_set: Mapping[str, Any], update_set: Mapping[str, Any],
                  current_revision: str, update_revision: str, ordinal: int) -> Object:
    """A new pod at the current revision when the rollout has not reached ``ordinal`` yet
    (below the partition), else at the update revision (``newVersionedStatefulSetPod``)."""
    strategy = update_strategy(current_set)
    rolling = strategy.get("rollingUpdate")
    start = start_ordinal(current_set)
    current_replicas = int((current_set.get("status") or {}).get("currentReplicas") or 0)
    # Upstream's condition groups as (RollingUpdate and no rollingUpdate and ...) or (...).
    at_current = ((strategy.get("type") == "RollingUpdate" and rolling is None
                   and ordinal < start + current_replicas)
                  or (rolling is not None and ordinal < start + partition_of(current_set)))
    if at_current:
        pod = new_stateful_pod(current_set, ordinal)
        pod["metadata"]["labels"][REVISION_LABEL] = current_revision
    else:
        pod = new_stateful_pod(update_set, ordinal)
        pod["metadata"]["labels"][REVISION_LABEL] = update_revision
    return pod


def apply_revision(sset: Mapping[str, Any], revision: Mapping[str, Any]) -> Object:
    """The set as it was at ``revision`` (its stored template restored)."""
    restored = copy.deepcopy(dict(sset))
    restored.setdefault("spec", {})["template"] = history.template_from_revision(revision)
    return restored


# -- rolling update arithmetic -----------------------------------------------------------------


def max_unavailable(sset: Mapping[str, Any]) -> int:
    """``getStatefulSetMaxUnavailable``: at least one."""
    rolling = update_strategy(sset).get("rollingUpdate") or {}
    value = history.scaled_value(rolling.get("maxUnavailable", 1), replicas_of(sset), True)
    return max(value, 1)


# -- status ------------------------------------------------------------------------------------


@dataclass
class SetStatus:
    observed_generation: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    current_replicas: int = 0
    updated_replicas: int = 0
    current_revision: str = ""
    update_revision: str = ""
    collision_count: int = 0

    def count(self, pods: list[Object], min_ready: int, now: float) -> None:
        """Recount the replica fields from ``pods`` (``updateStatus``)."""
        self.replicas = self.ready_replicas = self.available_replicas = 0
        self.current_replicas = self.updated_replicas = 0
        for pod in pods:
            if is_created(pod):
                self.replicas += 1
            if is_running_and_ready(pod):
                self.ready_replicas += 1
                if is_running_and_available(pod, min_ready, now):
                    self.available_replicas += 1
            if is_created(pod) and not is_pod_terminating(pod):
                revision = pod_revision(pod)
                self.current_replicas += revision == self.current_revision
                self.updated_replicas += revision == self.update_revision

    def to_dict(self) -> Object:
        return {"observedGeneration": self.observed_generation, "replicas": self.replicas,
                "readyReplicas": self.ready_replicas, "currentReplicas": self.current_replicas,
                "updatedReplicas": self.updated_replicas,
                "availableReplicas": self.available_replicas,
                "currentRevision": self.current_revision, "updateRevision": self.update_revision,
                "collisionCount": self.collision_count}


def complete_rolling_update(sset: Mapping[str, Any], status: SetStatus) -> None:
    """Once every replica is updated and ready, the update revision becomes current."""
    if (update_strategy(sset).get("type") == "RollingUpdate"
            and status.updated_replicas == status.replicas
            and status.ready_replicas == status.replicas):
        status.current_replicas = status.updated_replicas
        status.current_revision = status.update_revision


def status_differs(sset: Mapping[str, Any], status: SetStatus) -> bool:
    """``inconsistentStatus``: whether the status must be written."""
    old = sset.get("status") or {}
    observed = old.get("observedGeneration")
    if observed is None or status.observed_generation > observed:
        return True
    new = status.to_dict()
    return any((old.get(k) or 0) != new[k] for k in (
        "replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas",
        "collisionCount")) or any((old.get(k) or "") != new[k] for k in (
            "currentRevision", "updateRevision"))


# -- claim retention ---------------------------------------------------------------------------


def retention_policy(sset: Mapping[str, Any]) -> tuple[str, str]:
    """(whenDeleted, whenScaled)."""
    policy = spec(sset).get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or RETAIN, policy.get("whenScaled") or RETAIN


def _matches_ref(ref: Mapping[str, Any], obj: Mapping[str, Any], kind: str) -> bool:
    return (ref.get("kind") == kind and ref.get("name") == meta(obj).get("name")
            and ref.get("uid") == meta(obj).get("uid"))


def _has_ref(claim: Mapping[str, Any], obj: Mapping[str, Any], kind: str) -> bool:
    return any(_matches_ref(r, obj, kind) for r in meta(claim).get("ownerReferences") or ())


def _ours(ref: Mapping[str, Any], sset: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    return _matches_ref(ref, sset, KIND) or _matches_ref(ref, pod, "Pod")


def _unexpected_controller(claim: Mapping[str, Any], sset: Mapping[str, Any],
                           pod: Mapping[str, Any]) -> bool:
    return any(r.get("controller") and not _ours(r, sset, pod)
               for r in meta(claim).get("ownerReferences") or ())


def _wanted_owners(sset: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[bool, bool]:
    """Whether the claim should be owned by (the set, the pod) under the retention policy."""
    when_deleted, when_scaled = retention_policy(sset)
    scaled_down = not in_ordinal_range(pod, sset)
    if when_scaled == DELETE and scaled_down:
        return False, True
    return when_deleted == DELETE, False


def claim_owner_up_to_date(claim: Mapping[str, Any], sset: Mapping[str, Any],
                           pod: Mapping[str, Any]) -> bool:
    """``isClaimOwnerUpToDate``: the claim's owner references carry out the retention policy."""
    refs = meta(claim).get("ownerReferences") or ()
    if _unexpected_controller(claim, sset, pod):
        return not (_has_ref(claim, sset, KIND) or _has_ref(claim, pod, "Pod"))
    if any(_ours(r, sset, pod) and not r.get("controller") for r in refs):
        return False
    want_set, want_pod = _wanted_owners(sset, pod)
    return _has_ref(claim, sset, KIND) == want_set and _has_ref(claim, pod, "Pod") == want_pod


def claim_owner_refs(claim: Mapping[str, Any], sset: Mapping[str, Any],
                     pod: Mapping[str, Any]) -> list[Object]:
    """The claim's owner references with ours replaced as the retention policy wants
    (``updateClaimOwnerRefForSetAndPod``); another controller's claim keeps no refs of ours."""
    refs = [dict(r) for r in meta(claim).get("ownerReferences") or () if not _ours(r, sset, pod)]
    if _unexpected_controller(claim, sset, pod):
        return refs
    want_set, want_pod = _wanted_owners(sset, pod)
    if want_set:
        refs.append({"apiVersion": API_VERSION, "kind": KIND, "name": meta(sset)["name"],
                     "uid": meta(sset)["uid"], "controller": True})
    if want_pod:
        refs.append({"apiVersion": "v1", "kind": "Pod", "name": meta(pod)["name"],
                     "uid": meta(pod)["uid"], "controller": True})
    return refs


def has_stale_owner_ref(claim: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """The claim is owned by an earlier pod of the same name (being deleted with it)."""
    return any(r.get("kind") == "Pod" and r.get("name") == meta(pod).get("name")
               and r.get("uid") != meta(pod).get("uid")
               for r in meta(claim).get("ownerReferences") or ())


# -- one reconcile -----------------------------------------------------------------------------


class PodOps(Protocol):
    """The writes a StatefulSet sync makes (upstream's StatefulPodControl)."""

    async def create_pod(self, sset: Object, pod: Object) -> None: ...
    async def delete_pod(self, sset: Object, pod: Object) -> None: ...
    async def update_pod(self, sset: Object, pod: Object) -> None: ...
    async def create_missing_claims(self, sset: Object, pod: Object) -> None: ...
    def claim_is_stale(self, sset: Object, pod: Object) -> bool: ...
    def claims_match_retention(self, sset: Object, pod: Object) -> bool: ...
    async def update_claims_for_retention(self, sset: Object, pod: Object) -> None: ...


async def _run_for_all(pods: list[Object], fn: Callable[[int], Awaitable[bool]],
                       monotonic: bool) -> bool:
    """Run ``fn`` per pod: in order, stopping at the first that says so (monotonic), or all at
    once in doubling batches that stop at the first failure (burst). True means stop here."""
    if monotonic:
        for i in range(len(pods)):
            if await fn(i):
                return True
        return False
    position, batch = 0, 1
    while position < len(pods):
        size = min(batch, len(pods) - position)
        results = await asyncio.gather(*(fn(i) for i in range(position, position + size)),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        position += size
        batch = min(batch * 2, MAX_BATCH)
    return False


class SetSync:
    """Upstream's ``updateStatefulSet`` for one set: create, fix, delete and replace pods."""

    def __init__(self, ops: PodOps, sset: Object, current: Object, update: Object,
                 collision_count: int, pods: list[Object], now: float | None = None):
        self.ops = ops
        self.sset = sset
        self.current_set = apply_revision(sset, current)
        self.update_set = apply_revision(sset, update)
        self.now = time.time() if now is None else now
        self.min_ready = min_ready_seconds(sset)
        self.monotonic = not allows_burst(sset)
        self.status = SetStatus(
            observed_generation=int(meta(sset).get("generation") or 0),
            current_revision=meta(current)["name"], update_revision=meta(update)["name"],
            collision_count=collision_count)
        self.status.count(pods, self.min_ready, self.now)
        self.replicas, self.condemned = self._partition(pods)
        self.first_unavailable = self._first_unavailable()

    def _partition(self, pods: list[Object]) -> tuple[list[Object], list[Object]]:
        start, count = start_ordinal(self.sset), replicas_of(self.sset)
        slots: list[Object | None] = [None] * count
        condemned = []
        for pod in pods:
            ordinal = get_ordinal(pod)
            if in_ordinal_range(pod, self.sset):
                slots[ordinal - start] = pod
            elif ordinal >= 0:
                condemned.append(pod)
        replicas = [pod if pod is not None else versioned_pod(
            self.current_set, self.update_set, self.status.current_revision,
            self.status.update_revision, start + i) for i, pod in enumerate(slots)]
        condemned.sort(key=get_ordinal, reverse=True)
        return replicas, condemned

    def _first_unavailable(self) -> Object | None:
        for pod in [*self.replicas, *reversed(self.condemned)]:
            if is_unavailable(pod, self.min_ready, self.now):
                return pod
        return None

    def recount(self) -> SetStatus:
        self.status.count([*self.replicas, *self.condemned], self.min_ready, self.now)
        return self.status

    async def run(self) -> SetStatus:
        if meta(self.sset).get("deletionTimestamp"):
            return self.status
        if await _run_for_all(self.replicas, self._process_replica, self.monotonic):
            return self.recount()
        if await _run_for_all(self.condemned, self._fix_condemned_claims, self.monotonic):
            return self.recount()
        if await _run_for_all(self.condemned, self._process_condemned, self.monotonic):
            return self.recount()
        self.recount()
        if update_strategy(self.sset).get("type") == "OnDelete":
            return self.status
        await self._rolling_update()
        return self.status

    async def _process_replica(self, i: int) -> bool:
        pod = self.replicas[i]
        if is_finished(pod):
            # Failed or Succeeded (e.g. evicted): delete it, and a new one comes next time.
            if not is_pod_terminating(pod):
                await self.ops.delete_pod(self.sset, pod)
            return True
        if not is_created(pod):
            if self.ops.claim_is_stale(self.sset, pod):
                return True  # its claims are still being deleted with the previous pod
            await self.ops.create_pod(self.sset, pod)
            return self.monotonic
        if pod_phase(pod) == "Pending":
            await self.ops.create_missing_claims(self.sset, pod)
        if self.monotonic and (is_pod_terminating(pod) or not is_running_and_ready(pod)
                               or not is_running_and_available(pod, self.min_ready, self.now)):
            return True
        if (identity_matches(self.sset, pod) and storage_matches(self.sset, pod)
                and self.ops.claims_match_retention(self.update_set, pod)):
            return False
        await self.ops.update_pod(self.update_set, copy.deepcopy(pod))
        return False

    async def _fix_condemned_claims(self, i: int) -> bool:
        pod = self.condemned[i]
        if not self.ops.claims_match_retention(self.update_set, pod):
            await self.ops.update_claims_for_retention(self.update_set, pod)
        return False

    async def _process_condemned(self, i: int) -> bool:
        pod = self.condemned[i]
        if is_pod_terminating(pod):
            return self.monotonic
        if self.monotonic and pod is not self.first_unavailable and (
                not is_running_and_ready(pod)
                or not is_running_and_available(pod, self.min_ready, self.now)):
            return True
        await self.ops.delete_pod(self.sset, pod)
        return True

    async def _rolling_update(self) -> None:
        """Delete out-of-date pods from the highest ordinal down to the partition, keeping no
        more than maxUnavailable replicas unavailable
        (``updateStatefulSetAfterInvariantEstablished``)."""
        limit = max_unavailable(self.sset)
        unavailable = sum(is_unavailable(p, self.min_ready, self.now) for p in self.replicas)
        if unavailable > limit:
            return
        budget = limit - unavailable
        update_min = partition_of(self.sset)
        for target in range(len(self.replicas) - 1, update_min - 1, -1):
            if budget <= 0:
                return
            pod = self.replicas[target]
            if pod_revision(pod) != self.status.update_revision and not is_pod_terminating(pod):
                await self.ops.delete_pod(self.sset, pod)
                budget -= 1
                self.status.current_replicas -= 1


# -- the controller ----------------------------------------------------------------------------


class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 5):
        self._owns_recorder = recorder is None
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.sets = informers.informer(API_VERSION, RESOURCE)
        self.pods = informers.informer("v1", "pods", indexers=history.CLAIM_INDEXERS)
        self.claims = informers.informer("v1", "persistentvolumeclaims")
        self.revisions = informers.informer(API_VERSION, history.REVISIONS,
                                            indexers=history.CLAIM_INDEXERS)
        self.sets.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                    self.enqueue)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.revisions.add_event_handler(self._owned_changed,
                                         lambda old, new: self._owned_changed(new),
                                         self._owned_changed)
        self.ops = _ApiPodOps(client, self.recorder, self.claims)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.sets, self.pods, self.claims, self.revisions]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder and self.recorder is not None:
                await self.recorder.close()

    # -- handlers (enqueue only) -----------------------------------------------------------------
    def _owner_key(self, obj: Mapping[str, Any]) -> str | None:
        return resolve_controller_ref(obj, KIND, self.sets.indexer)

    def _enqueue_matching_sets(self, pod: Mapping[str, Any]) -> None:
        """An orphan pod: wake the sets that could adopt it."""
        labels = meta(pod).get("labels") or {}
        for sset in self.sets.indexer.by_index(NAMESPACE_INDEX, meta(pod).get("namespace") or ""):
            try:
                if is_member(sset, pod) and selector_of(sset).matches(labels):
                    self.enqueue(sset)
            except StatusError:
                continue

    def _pod_added(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.queue.add(key)
        elif controller_ref(pod) is None:
            self._enqueue_matching_sets(pod)

    def _pod_updated(self, old: Object, new: Object) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if old_key is not None and old_key != new_key:
            self.queue.add(old_key)
        if new_key is not None:
            self.queue.add(new_key)
            seconds = min_ready_seconds(self.sets.indexer.get(new_key) or {})
            if seconds > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.queue.add_after(new_key, float(seconds))
        elif controller_ref(new) is None and (
                meta(old).get("labels") != meta(new).get("labels") or controller_ref(old)):
            self._enqueue_matching_sets(new)

    def _pod_deleted(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.queue.add(key)

    def _owned_changed(self, obj: Object) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    # -- reconcile -----------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        sset = self.sets.indexer.get(key)
        if sset is None:
            return
        sset = copy.deepcopy(sset)
        try:
            selector = selector_of(sset)
        except StatusError as e:
            self._event(sset, WARNING, "InvalidSelector", f"invalid selector: {e}")
            return
        revisions = await self._claim_revisions(sset, selector)
        pods = await self._claim_pods(sset, selector)
        status = await self.sync(sset, pods, revisions)
        if status is not None and min_ready_seconds(sset) > 0 \
                and status.available_replicas != replicas_of(sset):
            self.queue.add_after(key, float(min_ready_seconds(sset)))

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(_with_kind(obj), type_, reason, message)

    async def _claim_revisions(self, sset: Object, selector: LabelSelector) -> list[Object]:
        candidates = history.claim_candidates(self.revisions.indexer, sset)
        return await history.claim(self.client, sset, API_VERSION, KIND, RESOURCE, selector,
                                   candidates, API_VERSION, history.REVISIONS)

    async def _claim_pods(self, sset: Object, selector: LabelSelector) -> list[Object]:
        candidates = [p for p in history.claim_candidates(self.pods.indexer, sset)
                      if is_member(sset, p)]
        return await history.claim(self.client, sset, API_VERSION, KIND, RESOURCE, selector,
                                   candidates, "v1", "pods")

    async def sync(self, sset: Object, pods: list[Object],
                   revisions: list[Object]) -> SetStatus | None:
        """``UpdateStatefulSet``: revisions, pods, status, then history truncation."""
        revisions = history.sort_revisions(revisions)
        current, update, collision_count = await self._revisions(sset, revisions)
        set_sync = SetSync(self.ops, sset, current, update, collision_count, pods)
        try:
            status = await set_sync.run()
        except Exception:
            # Record what was reached even when a write failed (upstream does the same).
            await self._write_status(sset, set_sync.recount())
            await self._truncate_history(sset, pods, revisions, current, update)
            raise
        await self._write_status(sset, status)
        await self._truncate_history(sset, pods, revisions, current, update)
        return status

    async def _revisions(self, sset: Object,
                         revisions: list[Object]) -> tuple[Object, Object, int]:
        """``getStatefulSetRevisions``: the current and update revisions, creating the update
        revision (or renumbering an equal older one, a rollback) as needed."""
        collision_count = int((sset.get("status") or {}).get("collisionCount") or 0)
        candidate = history.new_revision(
            sset, API_VERSION, KIND, ((spec(sset).get("template") or {}).get("metadata") or {})
            .get("labels"), history.template_patch(sset),
            history.next_revision_number(revisions), collision_count)
        candidate["metadata"]["annotations"] = dict(meta(sset).get("annotations") or {})
        equal = history.find_equal_revisions(revisions, candidate)
        if equal and history.equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            update = await history.renumber_revision(self.client, equal[-1],
                                                     candidate["revision"])
        else:
            update, collision_count = await history.create_revision(
                self.client, sset, candidate, collision_count)
        wanted = (sset.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if meta(r)["name"] == wanted), None) or update
        return current, update, collision_count

    async def _write_status(self, sset: Object, status: SetStatus) -> None:
        complete_rolling_update(sset, status)
        if not status_differs(sset, status):
            return
        namespace, name = meta(sset).get("namespace"), meta(sset)["name"]
        body = sset
        for _ in range(STATUS_RETRIES):
            body = copy.deepcopy(body)
            body["status"] = {**(body.get("status") or {}), **status.to_dict()}
            try:
                await self.client.update(API_VERSION, RESOURCE, body, subresource="status")
                return
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict:
                    raise
            body = await self.client.get(API_VERSION, RESOURCE, name, namespace=namespace)
            if meta(body).get("uid") != meta(sset).get("uid"):
                return
        raise RuntimeError(f"statefulset {namespace}/{name}: too many conflicts writing status")

    async def _truncate_history(self, sset: Object, pods: list[Object], revisions: list[Object],
                                current: Object, update: Object) -> None:
        live = {meta(current)["name"], meta(update)["name"], *(pod_revision(p) for p in pods)}
        limit = spec(sset).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        for revision in history.excess_revisions(revisions, limit,
                                                 lambda r: meta(r)["name"] in live):
            await history.delete_revision(self.client, revision)


def _with_kind(obj: Mapping[str, Any]) -> Object:
    return {**obj, "apiVersion": API_VERSION, "kind": KIND}


class _ApiPodOps:
    """``StatefulPodControl`` against the API server, recording upstream's Events."""

    def __init__(self, client: Client, recorder: EventRecorder | None, claims: SharedInformer):
        self.client = client
        self.recorder = recorder
        self.claims = claims

    def _pod_event(self, verb: str, sset: Object, pod: Object, error: Exception | None) -> None:
        if self.recorder is None:
            return
        name, set_name = meta(pod)["name"], meta(sset)["name"]
        if error is None:
            self.recorder.event(_with_kind(sset), NORMAL, f"Successful{verb.title()}",
                                f"{verb} Pod {name} in StatefulSet {set_name} successful")
        else:
            self.recorder.event(_with_kind(sset), WARNING, f"Failed{verb.title()}",
                                f"{verb} Pod {name} in StatefulSet {set_name} failed error: "
                                f"{_message(error)}")

    def _claim_event(self, verb: str, sset: Object, pod: Object, claim: Object,
                     error: Exception | None) -> None:
        if self.recorder is None:
            return
        names = (meta(claim)["name"], meta(pod)["name"], meta(sset)["name"])
        if error is None:
            self.recorder.event(_with_kind(sset), NORMAL, f"Successful{verb.title()}",
                                "{} Claim {} Pod {} in StatefulSet {} success".format(verb, *names))
        else:
            self.recorder.event(_with_kind(sset), WARNING, f"Failed{verb.title()}",
                                "{} Claim {} for Pod {} in StatefulSet {} failed error: {}".format(
                                    verb, *names, _message(error)))

    def _cached_claim(self, claim: Mapping[str, Any]) -> Object | None:
        return self.claims.indexer.get(object_key(dict(claim)))

    async def create_missing_claims(self, sset: Object, pod: Object) -> None:
        errors = []
        for claim in claims_for(sset, get_ordinal(pod)).values():
            existing = self._cached_claim(claim)
            if existing is not None:
                if meta(existing).get("deletionTimestamp"):
                    errors.append(f"pvc {meta(claim)['name']} is being deleted")
                continue
            try:
                await self.client.create("v1", "persistentvolumeclaims", claim)
            except ApiError as e:
                if e.already_exists:
                    continue  # created by an earlier sync the cache has not seen yet
                errors.append(f"failed to create PVC {meta(claim)['name']}: {e.message}")
                self._claim_event("create", sset, pod, claim, e)
                continue
            self._claim_event("create", sset, pod, claim, None)
        if errors:
            raise RuntimeError("; ".join(errors))

    async def create_pod(self, sset: Object, pod: Object) -> None:
        try:
            await self.create_missing_claims(sset, pod)
        except RuntimeError as e:
            self._pod_event("create", sset, pod, e)
            raise
        try:
            created = await self.client.create("v1", "pods", pod)
        except ApiError as e:
            if e.already_exists:
                raise Requeue(f"pod {meta(pod)['name']} exists; waiting for the cache") from e
            self._pod_event("create", sset, pod, e)
            raise
        if spec(sset).get("volumeClaimTemplates"):
            try:
                await self.update_claims_for_retention(sset, created)
            except (ApiError, RuntimeError) as e:
                self._pod_event("update", sset, created, e)
                raise
        self._pod_event("create", sset, pod, None)

    async def delete_pod(self, sset: Object, pod: Object) -> None:
        try:
            await self.client.delete("v1", "pods", meta(pod)["name"],
                                     namespace=meta(pod).get("namespace"),
                                     preconditions=Preconditions(uid=meta(pod).get("uid")))
        except ApiError as e:
            if e.not_found or e.conflict:
                return  # already gone (or replaced): nothing of ours to delete
            self._pod_event("delete", sset, pod, e)
            raise
        self._pod_event("delete", sset, pod, None)

    async def update_pod(self, sset: Object, pod: Object) -> None:
        """Restore the pod's identity and storage and its claims' retention owners
        (``UpdateStatefulPod``), retrying conflicts from a fresh read."""
        for attempt in range(STATUS_RETRIES):
            consistent = True
            if not identity_matches(sset, pod):
                update_identity(sset, pod)
                consistent = False
            if not storage_matches(sset, pod):
                update_storage(sset, pod)
                consistent = False
                await self.create_missing_claims(sset, pod)
            if not self.claims_match_retention(sset, pod):
                await self.update_claims_for_retention(sset, pod)
            if consistent:
                return
            try:
                await self.client.update("v1", "pods", pod)
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict or attempt == STATUS_RETRIES - 1:
                    self._pod_event("update", sset, pod, e)
                    raise
                pod = await self.client.get("v1", "pods", meta(pod)["name"],
                                            namespace=meta(pod).get("namespace"))
                continue
            self._pod_event("update", sset, pod, None)
            return

    def claim_is_stale(self, sset: Object, pod: Object) -> bool:
        if retention_policy(sset)[1] == RETAIN:
            return False  # claims are reused, never stale
        for claim in claims_for(sset, get_ordinal(pod)).values():
            existing = self._cached_claim(claim)
            if existing is not None and has_stale_owner_ref(existing, pod):
                return True
        return False

    def claims_match_retention(self, sset: Object, pod: Object) -> bool:
        """Missing claims count as matching (upstream treats the lookup error so)."""
        for claim in claims_for(sset, get_ordinal(pod)).values():
            existing = self._cached_claim(claim)
            if existing is not None and not claim_owner_up_to_date(existing, sset, pod):
                return False
        return True

    async def update_claims_for_retention(self, sset: Object, pod: Object) -> None:
        for claim in claims_for(sset, get_ordinal(pod)).values():
            existing = self._cached_claim(claim)
            if existing is None:
                continue
            if _unexpected_controller(existing, sset, pod) and self.recorder is not None:
                self.recorder.event(
                    _with_kind(sset), WARNING, "ConflictingController",
                    f"PersistentVolumeClaim {meta(claim)['name']} has a conflicting "
                    "OwnerReference that acts as a manging controller, the retention policy is "
                    "ignored for this claim")
            if claim_owner_up_to_date(existing, sset, pod):
                continue
            refs = claim_owner_refs(existing, sset, pod)
            patch = {"metadata": {"ownerReferences": refs or None,
                                  "resourceVersion": meta(existing).get("resourceVersion")}}
            try:
                await self.client.patch("v1", "persistentvolumeclaims", meta(existing)["name"],
                                        patch, namespace=meta(existing).get("namespace"))
            except ApiError as e:
                if e.not_found:
                    continue
                raise RuntimeError(f"could not update claim {meta(claim)['name']} for delete "
                                   f"policy ownerRefs: {e.message}") from e


def _message(error: Exception) -> str:
    return error.message if isinstance(error, ApiError) else str(error)
