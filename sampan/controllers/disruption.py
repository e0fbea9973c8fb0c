"""The disruption controller: the status of every PodDisruptionBudget, as upstream's
``pkg/controller/disruption``.

For a budget it counts the selected pods that are healthy (Ready and not being deleted, and not
just evicted), the number it must keep (``minAvailable``, or the expected count less
``maxUnavailable``), and from those the disruptions the eviction API may allow. Percentages and
``maxUnavailable`` are taken of the expected pod count: the sum of the scales of the controllers
owning the pods (a ReplicaSet's Deployment, a StatefulSet, a ReplicationController, a
ReplicaSet, or any controller with a ``scale`` subresource). Pods the eviction API reported in
``disruptedPods`` are not counted healthy for two minutes, then forgotten.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sampan.api.errors import StatusError
from sampan.api.selectors import LabelSelector, from_label_selector_object
from sampan.client.controller import Controller, Requeue
from sampan.client.discovery import UnknownKindError
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import (
    NAMESPACE_INDEX,
    InformerFactory,
    SharedInformer,
    object_key,
    split_key,
)
from sampan.client.rest import Client
from sampan.controllers.util import controller_ref, is_pod_ready, meta, now_rfc3339, parse_time

log = logging.getLogger(__name__)

Object = dict[str, Any]

DELETION_TIMEOUT = 120.0
CONDITION_DISRUPTION_ALLOWED = "DisruptionAllowed"
REASON_SUFFICIENT_PODS = "SufficientPods"
REASON_INSUFFICIENT_PODS = "InsufficientPods"
REASON_SYNC_FAILED = "SyncFailed"
_PERCENT = re.compile(r"^(\d+)%$")


class ExpectedCountError(Exception):
    """The expected pod count could not be worked out."""


# -- the arithmetic ------------------------------------------------------------------------------


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    """``GetScaledValueFromIntOrPercent``: an int as is, ``"N%"`` of ``total``."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _PERCENT.match(value)
        if m:
            exact = int(m.group(1)) * total / 100
            return math.ceil(exact) if round_up else math.floor(exact)
        if value.isdigit():
            return int(value)
    raise ExpectedCountError(f"invalid value for IntOrString: invalid value {value!r}")


def expected_pod_count(pdb: Mapping[str, Any], pods: list[Mapping[str, Any]],
                       scale_of: Mapping[str, int] | None) -> tuple[int, int]:
    """(expectedCount, desiredHealthy) of ``pdb`` (``getExpectedPodCount``); ``scale_of`` is the
    sum of the owning controllers' scales, needed for percentages and ``maxUnavailable``."""
    spec = pdb.get("spec") or {}
    max_unavailable = spec.get("maxUnavailable")
    min_available = spec.get("minAvailable")
    if max_unavailable is not None:
        expected = _expected_scale(scale_of)
        unavailable = scaled_value(max_unavailable, expected, True)
        return expected, max(0, expected - unavailable)
    if min_available is not None:
        if isinstance(min_available, int):
            return len(pods), min_available
        expected = _expected_scale(scale_of)
        return expected, scaled_value(min_available, expected, True)
    return len(pods), 0


def _expected_scale(scale_of: Mapping[str, int] | None) -> int:
    if scale_of is None:
        raise ExpectedCountError("scales of the pods' controllers are unknown")
    return sum(scale_of.values())


def needs_controller_scale(pdb: Mapping[str, Any]) -> bool:
    spec = pdb.get("spec") or {}
    return spec.get("maxUnavailable") is not None or isinstance(spec.get("minAvailable"), str)


def disrupted_pod_map(pdb: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
                      now: float) -> tuple[dict[str, str], list[Mapping[str, Any]], float | None]:
    """(still-disrupted pods → time, pods that were not deleted in time, next recheck)
    (``buildDisruptedPodMap``)."""
    listed = (pdb.get("status") or {}).get("disruptedPods") or {}
    result: dict[str, str] = {}
    overdue = []
    recheck = None
    for pod in pods:
        if meta(pod).get("deletionTimestamp"):
            continue
        stamp = listed.get(meta(pod).get("name"))
        if stamp is None:
            continue
        expected_deletion = (parse_time(stamp) or 0.0) + DELETION_TIMEOUT
        if expected_deletion < now:
            overdue.append(pod)
            continue
        recheck = expected_deletion if recheck is None else min(recheck, expected_deletion)
        result[meta(pod)["name"]] = stamp
    return result, overdue, recheck


def count_healthy(pods: Iterable[Mapping[str, Any]], disrupted: Mapping[str, str],
                  now: float) -> int:
    healthy = 0
    for pod in pods:
        if meta(pod).get("deletionTimestamp"):
            continue
        stamp = disrupted.get(meta(pod).get("name"))
        if stamp is not None and (parse_time(stamp) or 0.0) + DELETION_TIMEOUT > now:
            continue
        if is_pod_ready(pod):
            healthy += 1
    return healthy


@dataclass(frozen=True)
class BudgetStatus:
    current_healthy: int
    desired_healthy: int
    expected_pods: int
    disrupted_pods: dict[str, str]

    @property
    def disruptions_allowed(self) -> int:
        # A budget matching no pods yet stays safe until its first pods are counted.
        allowed = self.current_healthy - self.desired_healthy
        return allowed if self.expected_pods > 0 and allowed > 0 else 0


def set_condition(conditions: list[Object], wanted: Object) -> None:
    """``meta.SetStatusCondition``: the transition time moves only when the status does."""
    for current in conditions:
        if current.get("type") == wanted["type"]:
            if current.get("status") != wanted["status"]:
                current["lastTransitionTime"] = now_rfc3339()
            current.update({k: v for k, v in wanted.items() if k != "lastTransitionTime"})
            return
    conditions.append({**wanted, "lastTransitionTime": now_rfc3339()})


def allowed_condition(allowed: int, generation: int) -> Object:
    sufficient = allowed > 0
    return {"type": CONDITION_DISRUPTION_ALLOWED, "status": "True" if sufficient else "False",
            "reason": REASON_SUFFICIENT_PODS if sufficient else REASON_INSUFFICIENT_PODS,
            "message": "", "observedGeneration": generation}


def new_status(pdb: Mapping[str, Any], computed: BudgetStatus) -> Object | None:
    """The status to write, or None when ``pdb`` already shows it (``updatePdbStatus``)."""
    status = pdb.get("status") or {}
    generation = meta(pdb).get("generation") or 0
    allowed = computed.disruptions_allowed
    condition = next((c for c in status.get("conditions") or ()
                      if c.get("type") == CONDITION_DISRUPTION_ALLOWED), None)
    wanted_status = "True" if allowed > 0 else "False"
    up_to_date = (condition is not None and condition.get("status") == wanted_status
                  and condition.get("reason") in (REASON_SUFFICIENT_PODS, REASON_INSUFFICIENT_PODS)
                  and (condition.get("observedGeneration") or 0) == generation)
    if (status.get("currentHealthy") == computed.current_healthy
            and status.get("desiredHealthy") == computed.desired_healthy
            and status.get("expectedPods") == computed.expected_pods
            and status.get("disruptionsAllowed") == allowed
            and (status.get("disruptedPods") or {}) == computed.disrupted_pods
            and status.get("observedGeneration") == generation and up_to_date):
        return None
    conditions = [dict(c) for c in status.get("conditions") or ()]
    set_condition(conditions, allowed_condition(allowed, generation))
    out: Object = {"observedGeneration": generation, "disruptionsAllowed": allowed,
                   "currentHealthy": computed.current_healthy,
                   "desiredHealthy": computed.desired_healthy,
                   "expectedPods": computed.expected_pods, "conditions": conditions}
    if computed.disrupted_pods:
        out["disruptedPods"] = dict(computed.disrupted_pods)
    return out


def pdb_selector(pdb: Mapping[str, Any]) -> LabelSelector:
    try:
        return from_label_selector_object((pdb.get("spec") or {}).get("selector"))
    except StatusError:
        return LabelSelector.nothing()


# -- the controller ------------------------------------------------------------------------------


_SCALED_KINDS = {  # owner kind → (group, informer resource)
    "ReplicaSet": ("apps", "replicasets"),
    "StatefulSet": ("apps", "statefulsets"),
    "ReplicationController": ("", "replicationcontrollers"),
    "Deployment": ("apps", "deployments"),
}


def _group_of(api_version: str | None) -> str:
    return api_version.rpartition("/")[0] if api_version and "/" in api_version else ""


class DisruptionController(Controller):
    """Keeps ``status`` of every PodDisruptionBudget current."""

    name = "disruption-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 2,
                 recorder: EventRecorder | None = None):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self._owns_recorder = recorder is None
        self.pdbs = informers.informer("policy/v1", "poddisruptionbudgets")
        self.pods = informers.informer("v1", "pods")
        self.workloads: dict[str, SharedInformer] = {
            kind: informers.informer("v1" if not group else f"{group}/v1", resource)
            for kind, (group, resource) in _SCALED_KINDS.items()}
        self.pdbs.add_event_handler(on_add=self.enqueue,
                                    on_update=lambda _old, new: self.enqueue(new),
                                    on_delete=self.enqueue)
        self.pods.add_event_handler(on_add=self._pod_changed,
                                    on_update=self._pod_updated,
                                    on_delete=self._pod_changed)
        for informer in self.workloads.values():
            informer.add_event_handler(on_update=self._workload_updated)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.pdbs, self.pods, *self.workloads.values()]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder:
                await self.recorder.close()

    # -- handlers ----------------------------------------------------------------------------
    def _pod_changed(self, pod: Object) -> None:
        pod_meta = meta(pod)
        for pdb in self.pdbs.indexer.by_index(NAMESPACE_INDEX, pod_meta.get("namespace") or ""):
            if pdb_selector(pdb).matches(pod_meta.get("labels")):
                self.enqueue(pdb)

    def _pod_updated(self, old: Object, new: Object) -> None:
        if meta(old).get("labels") != meta(new).get("labels"):
            self._pod_changed(old)
        self._pod_changed(new)

    def _workload_updated(self, old: Object, new: Object) -> None:
        if (old.get("spec") or {}).get("replicas") != (new.get("spec") or {}).get("replicas"):
            namespace = meta(new).get("namespace") or ""
            for key in self.pdbs.indexer.index_keys(NAMESPACE_INDEX, namespace):
                self.queue.add(key)

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        pdb = self.pdbs.indexer.get(key)
        if pdb is None:
            return
        try:
            await self._try_sync(key, pdb)
        except ApiError as e:
            if e.conflict or e.not_found:
                raise Requeue(f"PDB {key}: {e.message}") from e
            await self._fail_safe(pdb, str(e.message))
            raise
        except ExpectedCountError as e:
            await self._fail_safe(pdb, str(e))
            raise Requeue(f"PDB {key}: {e}") from e

    async def _try_sync(self, key: str, pdb: Object) -> None:
        namespace, _ = split_key(key)
        selector = pdb_selector(pdb)
        pods = [p for p in self.pods.indexer.by_index(NAMESPACE_INDEX, namespace)
                if selector.matches(meta(p).get("labels"))]
        if not pods:
            self.recorder.event(pdb, NORMAL, "NoPods", "No matching pods found")
        scales = None
        if needs_controller_scale(pdb):
            try:
                scales, unmanaged = await self._controller_scales(pods)
            except ExpectedCountError as e:
                self.recorder.event(pdb, WARNING, "CalculateExpectedPodCountFailed",
                                    f"Failed to calculate the number of expected pods: {e}")
                raise
            if unmanaged:
                self.recorder.event(
                    pdb, WARNING, "UnmanagedPods",
                    f"Pods selected by this PodDisruptionBudget (selector: {selector}) were found "
                    "to be unmanaged. As a result, the status of the PDB cannot be calculated "
                    "correctly, which may result in undefined behavior. To account for these pods "
                    "please set \".spec.minAvailable\" field of the PDB to an integer value.")
        try:
            expected, desired = expected_pod_count(pdb, pods, scales)
        except ExpectedCountError as e:
            self.recorder.event(pdb, WARNING, "CalculateExpectedPodCountFailed",
                                f"Failed to calculate the number of expected pods: {e}")
            raise
        now = time.time()
        disrupted, overdue, recheck = disrupted_pod_map(pdb, pods, now)
        for pod in overdue:
            self.recorder.event(pod, WARNING, "NotDeleted",
                                f"Pod was expected by PDB {key} to be deleted but it wasn't")
        computed = BudgetStatus(count_healthy(pods, disrupted, now), desired, expected, disrupted)
        status = new_status(pdb, computed)
        if status is not None:
            await self.client.update("policy/v1", "poddisruptionbudgets", {**pdb, "status": status},
                                     namespace=namespace, subresource="status")
        if recheck is not None:
            self.queue.add_after(key, max(recheck - now, 0.0))

    async def _fail_safe(self, pdb: Object, message: str) -> None:
        """An unknown budget allows no disruptions (``failSafe``)."""
        status = dict(pdb.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or ()]
        set_condition(conditions, {"type": CONDITION_DISRUPTION_ALLOWED, "status": "False",
                                   "reason": REASON_SYNC_FAILED, "message": message,
                                   "observedGeneration": meta(pdb).get("generation") or 0})
        status.update(disruptionsAllowed=0, conditions=conditions)
        try:
            await self.client.update("policy/v1", "poddisruptionbudgets", {**pdb, "status": status},
                                     namespace=meta(pdb).get("namespace"), subresource="status")
        except ApiError as e:
            log.info("could not record sync failure of PDB %s: %s", object_key(pdb), e.message)

    async def _controller_scales(self, pods: list[Object]) -> tuple[dict[str, int], list[str]]:
        """The scale of each controller owning one of ``pods`` (``getExpectedScale``), and the
        pods no controller owns."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                unmanaged.append(meta(pod)["name"])
                continue
            if ref.get("uid") in scales:
                continue
            found = await self._scale_of(ref, meta(pod).get("namespace") or "")
            if found is None:
                raise ExpectedCountError(f'found no controllers for pod "{meta(pod)["name"]}"')
            uid, replicas = found
            scales[uid] = replicas
        return scales, unmanaged

    def _cached(self, kind: str, namespace: str, ref: Mapping[str, Any]) -> Object | None:
        informer = self.workloads.get(kind)
        if informer is None:
            return None
        obj = informer.indexer.get(f"{namespace}/{ref.get('name')}")
        if obj is None or meta(obj).get("uid") != ref.get("uid"):
            return None
        return obj

    async def _scale_of(self, ref: Mapping[str, Any], namespace: str) -> tuple[str, int] | None:
        kind, group = ref.get("kind"), _group_of(ref.get("apiVersion"))
        if kind in _SCALED_KINDS and group == _SCALED_KINDS[kind][0]:
            obj = self._cached(kind, namespace, ref)
            if obj is None:
                return None
            if kind == "ReplicaSet":
                owner = controller_ref(obj)
                if owner is not None and owner.get("kind") == "Deployment" \
                        and _group_of(owner.get("apiVersion")) == "apps":
                    deployment = self._cached("Deployment", namespace, owner)
                    if deployment is not None:
                        obj = deployment
            return meta(obj)["uid"], _replicas(obj)
        return await self._scale_subresource(ref, namespace)

    async def _scale_subresource(self, ref: Mapping[str, Any],
                                 namespace: str) -> tuple[str, int] | None:
        try:
            resource = await self.client.discovery.resource_for(ref.get("apiVersion", ""),
                                                                ref.get("kind", ""))
            scale = await self.client.get(resource.api_version, resource.name, ref.get("name", ""),
                                          namespace=namespace, subresource="scale")
        except UnknownKindError:
            return None
        except ApiError as e:
            if e.not_found or e.method_not_supported:
                return None
            raise
        if meta(scale).get("uid") and meta(scale).get("uid") != ref.get("uid"):
            return None
        return ref.get("uid", ""), int((scale.get("spec") or {}).get("replicas") or 0)


def _replicas(obj: Mapping[str, Any]) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)
