"""What the workload controllers share, as upstream's ``pkg/controller/controller_utils.go``:
pod predicates, controller references and adoption, pods from templates, creation/deletion
expectations, and the pod control that records Events.

Objects are plain dicts from informer caches; nothing here mutates an object it was given.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.api.selectors import LabelSelector, from_label_selector_object
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.rest import Client, Preconditions

log = logging.getLogger(__name__)

Object = dict[str, Any]

# How long expectations wait for the informer to see our own writes before giving up on them.
EXPECTATIONS_TIMEOUT = 300.0
# Upstream creates pods in batches that double from 1 (slowStartBatch) so that a failing
# template costs one request, not N.
SLOW_START_INITIAL_BATCH = 1

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash"


# -- time --------------------------------------------------------------------------------------


def now_rfc3339(now: float | None = None) -> str:
    """``metav1.Time`` text: RFC 3339 in UTC with second precision."""
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now,
                                             datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch for a ``metav1.Time`` / ``MicroTime``, or None."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- pods --------------------------------------------------------------------------------------


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def pod_phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def is_pod_terminating(pod: Mapping[str, Any]) -> bool:
    return bool(meta(pod).get("deletionTimestamp"))


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """Neither finished nor being deleted (``IsPodActive``)."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not is_pod_terminating(pod)


def pod_condition(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_:
            return condition
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    condition = pod_condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int,
                     now: float | None = None) -> bool:
    """Ready for at least ``min_ready_seconds`` (``IsPodAvailable``)."""
    condition = pod_condition(pod, "Ready")
    if condition is None or condition.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(condition.get("lastTransitionTime"))
    if since is None:
        return False
    return since + min_ready_seconds <= (time.time() if now is None else now)


def pod_restarts(pod: Mapping[str, Any]) -> int:
    return max((s.get("restartCount") or 0
                for s in (pod.get("status") or {}).get("containerStatuses") or ()), default=0)


def _ready_since(pod: Mapping[str, Any]) -> float | None:
    condition = pod_condition(pod, "Ready")
    if condition is None or condition.get("status") != "True":
        return None
    return parse_time(condition.get("lastTransitionTime"))


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_cost(pod: Mapping[str, Any]) -> int:
    annotations = meta(pod).get("annotations") or {}
    try:
        return int(annotations.get("controller.kubernetes.io/pod-deletion-cost", 0))
    except (TypeError, ValueError):
        return 0


def _log2_bucket(seconds: float) -> int:
    """Upstream's LogarithmicScaleDown: durations compare by ``floor(log2(seconds))`` so that
    pods of similar age count as equally old and the newest of them is not always the victim."""
    return int(math.log2(seconds)) if seconds >= 1 else 0


def pods_to_delete_first(pods: Iterable[Object], now: float | None = None,
                         related: Iterable[Object] | None = None) -> list[Object]:
    """Pods ordered as upstream's ``ActivePodsWithRanks`` ranks them for scale-down: unassigned
    before assigned; Pending before Unknown before Running; not ready before ready; lower
    deletion cost first; pods doubled up on a node with more ``related`` pods (by default the
    candidates themselves) first; ready for less time first; more restarts first; newer first —
    times and restarts compared on a log scale."""
    pods = list(pods)
    now = time.time() if now is None else now
    on_node: dict[str, int] = {}
    for pod in pods if related is None else related:
        if is_pod_active(pod):
            node = (pod.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1

    def rank(pod: Object) -> tuple[Any, ...]:
        node = (pod.get("spec") or {}).get("nodeName") or ""
        ready_since = _ready_since(pod)
        created = parse_time(meta(pod).get("creationTimestamp"))
        restarts = pod_restarts(pod)
        return (
            bool(node),
            _PHASE_RANK.get(pod_phase(pod), 3),
            is_pod_ready(pod),
            deletion_cost(pod),
            -on_node.get(node, 0) if node else 0,
            _log2_bucket(now - ready_since) if ready_since is not None else -1,
            -(int(math.log2(restarts)) + 1 if restarts else 0),
            _log2_bucket(now - created) if created is not None else -1,
        )
    return sorted(pods, key=rank)


# -- controller references ---------------------------------------------------------------------


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with ``controller: true``, if any (``GetControllerOf``)."""
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def resolve_controller_ref(obj: Mapping[str, Any], kind: str, owners: Any) -> str | None:
    """The cache key of ``obj``'s controller of ``kind`` when that owner is in ``owners`` (an
    informer's indexer) with the same uid (upstream's resolveControllerRef)."""
    ref = controller_ref(obj)
    if ref is None or ref.get("kind") != kind:
        return None
    key = f"{meta(obj).get('namespace')}/{ref.get('name')}"
    owner = owners.get(key)
    if owner is None or meta(owner).get("uid") != ref.get("uid"):
        return None
    return key


def new_controller_ref(owner: Mapping[str, Any], api_version: str, kind: str) -> Object:
    owner_meta = meta(owner)
    return {"apiVersion": api_version, "kind": kind, "name": owner_meta["name"],
            "uid": owner_meta["uid"], "controller": True, "blockOwnerDeletion": True}


def owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner_uid


def selector_of(obj: Mapping[str, Any]) -> LabelSelector:
    """The workload's ``spec.selector`` (nil selects nothing, as upstream)."""
    return from_label_selector_object((obj.get("spec") or {}).get("selector"))


@dataclass
class Claim:
    """What ``claim_pods`` decided: pods this owner controls (existing or newly adopted) and
    the adoptions and releases it must still write."""

    owned: list[Object] = field(default_factory=list)
    adopt: list[Object] = field(default_factory=list)
    release: list[Object] = field(default_factory=list)


def claim_objects(owner: Mapping[str, Any], selector: LabelSelector,
                  candidates: Iterable[Object]) -> Claim:
    """Upstream's ``ClaimPods`` decision: objects we control that still match stay; ones we
    control that no longer match are released; orphans that match are adopted unless the owner
    or the object is being deleted. Objects controlled by someone else are ignored."""
    owner_uid = meta(owner)["uid"]
    owner_deleting = bool(meta(owner).get("deletionTimestamp"))
    claim = Claim()
    for obj in candidates:
        labels = meta(obj).get("labels") or {}
        ref = controller_ref(obj)
        if ref is not None:
            if ref.get("uid") != owner_uid:
                continue
            if selector.matches(labels):
                claim.owned.append(obj)
            elif not owner_deleting:
                claim.release.append(obj)
            else:
                claim.owned.append(obj)
            continue
        if owner_deleting or meta(obj).get("deletionTimestamp") or not selector.matches(labels):
            continue
        claim.adopt.append(obj)
    return claim


async def adopt(client: Client, api_version: str, resource: str, obj: Mapping[str, Any],
                ref: Object) -> Object | None:
    """Add ``ref`` as controller of ``obj`` (a JSON patch guarded by the object's uid so a
    recreated namesake is never adopted); None when it went away or someone else won."""
    obj_meta = meta(obj)
    refs = [r for r in obj_meta.get("ownerReferences") or () if r.get("uid") != ref["uid"]]
    patch = {"metadata": {"ownerReferences": refs + [ref], "uid": obj_meta["uid"],
                          "resourceVersion": obj_meta.get("resourceVersion")}}
    try:
        return await client.patch(api_version, resource, obj_meta["name"], patch,
                                  namespace=obj_meta.get("namespace"))
    except ApiError as e:
        if e.not_found or e.code in (409, 422):
            return None
        raise


async def release(client: Client, api_version: str, resource: str, obj: Mapping[str, Any],
                  owner_uid: str) -> None:
    """Remove our controller reference from ``obj`` (``ReleasePod``)."""
    obj_meta = meta(obj)
    refs = [r for r in obj_meta.get("ownerReferences") or () if r.get("uid") != owner_uid]
    patch = {"metadata": {"ownerReferences": refs or None, "uid": obj_meta["uid"]}}
    try:
        await client.patch(api_version, resource, obj_meta["name"], patch,
                           namespace=obj_meta.get("namespace"))
    except ApiError as e:
        if not (e.not_found or e.code in (409, 422)):
            raise


# -- pods from templates -----------------------------------------------------------------------


def pod_from_template(template: Mapping[str, Any], owner: Mapping[str, Any],
                      ref: Object | None, *, name: str | None = None,
                      generate_name: str | None = None) -> Object:
    """A Pod for ``template`` owned by ``owner`` (``GetPodFromTemplate``): the template's labels,
    annotations, finalizers and spec, named ``name`` or generated from ``<owner>-``."""
    tmeta = template.get("metadata") or {}
    pod_meta: Object = {"namespace": meta(owner).get("namespace")}
    if name is not None:
        pod_meta["name"] = name
    else:
        prefix = generate_name if generate_name is not None else f"{meta(owner)['name']}-"
        if len(prefix) > 58:  # upstream trims so that the random suffix fits in 63
            prefix = prefix[:58]
        pod_meta["generateName"] = prefix
    for key in ("labels", "annotations", "finalizers"):
        if tmeta.get(key):
            pod_meta[key] = copy.deepcopy(tmeta[key])
    if ref is not None:
        pod_meta["ownerReferences"] = [ref]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


# -- expectations ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Expectation:
    adds: int
    deletes: int
    since: float
    deleting: set[str] = field(default_factory=set)  # keys of pods we asked to delete


class Expectations:
    """Creations and deletions a controller made and has not yet seen in its informer
    (``ControllerExpectations`` / ``UIDTrackingControllerExpectations``): until they are seen (or
    expire after five minutes), the controller must not act on a stale cache and create or
    delete twice."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT, clock=time.monotonic):
        self._items: dict[str, _Expectation] = {}
        self._timeout = timeout
        self._clock = clock

    def satisfied(self, key: str) -> bool:
        e = self._items.get(key)
        if e is None:
            return True
        if e.adds <= 0 and e.deletes <= 0:
            return True
        if self._clock() - e.since > self._timeout:
            log.info("expectations of %s expired (%d adds, %d deletes pending)",
                     key, e.adds, e.deletes)
            return True
        return False

    def expect(self, key: str, adds: int = 0, deleting: Iterable[str] = ()) -> None:
        """Replace the expectations of ``key``."""
        deleting = set(deleting)
        self._items[key] = _Expectation(adds, len(deleting), self._clock(), deleting)

    def creation_observed(self, key: str) -> None:
        e = self._items.get(key)
        if e is not None:
            e.adds -= 1

    def creation_failed(self, key: str, count: int = 1) -> None:
        """A create we expected will never be observed."""
        e = self._items.get(key)
        if e is not None:
            e.adds -= count

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._items.get(key)
        if e is not None and pod_key in e.deleting:
            e.deleting.discard(pod_key)
            e.deletes -= 1

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


# -- pod control -------------------------------------------------------------------------------


class PodControl:
    """Creates and deletes pods for a controller, recording upstream's Events on the owner."""

    def __init__(self, client: Client, recorder: EventRecorder | None):
        self.client = client
        self.recorder = recorder

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(dict(obj), type_, reason, message)

    async def create_pod(self, owner: Mapping[str, Any], pod: Object) -> Object:
        try:
            created = await self.client.create("v1", "pods", pod,
                                               namespace=pod["metadata"]["namespace"])
        except ApiError as e:
            if not e.already_exists and not _namespace_terminating(e):
                self._event(owner, WARNING, "FailedCreate", f"Error creating: {e.message}")
            raise
        self._event(owner, NORMAL, "SuccessfulCreate",
                    f"Created pod: {created['metadata']['name']}")
        return created

    async def delete_pod(self, owner: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
        """Delete ``pod`` (guarded by its uid); False when it was already gone."""
        pod_meta = meta(pod)
        try:
            await self.client.delete("v1", "pods", pod_meta["name"],
                                     namespace=pod_meta.get("namespace"),
                                     preconditions=_uid_precondition(pod_meta))
        except ApiError as e:
            if e.not_found or e.code == 409:
                return False
            self._event(owner, WARNING, "FailedDelete",
                        f"Error deleting: {e.message}")
            raise
        self._event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {pod_meta['name']}")
        return True


def _uid_precondition(obj_meta: Mapping[str, Any]) -> Preconditions:
    return Preconditions(uid=obj_meta.get("uid"))


def _namespace_terminating(error: ApiError) -> bool:
    """Creating in a terminating namespace is expected during namespace deletion."""
    causes = error.details.get("causes") or ()
    return error.code == 403 and any(c.get("reason") == "NamespaceTerminating" for c in causes) \
        or "because it is being terminated" in error.message


async def slow_start_batch(count: int, create) -> tuple[int, list[BaseException]]:
    """Run ``create()`` ``count`` times in batches of 1, 2, 4, ... stopping at the first batch
    with a failure (``slowStartBatch``). Returns (successes, errors)."""
    successes, remaining, batch = 0, count, SLOW_START_INITIAL_BATCH
    while remaining > 0:
        size = min(batch, remaining)
        results = await asyncio.gather(*(create() for _ in range(size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += size - len(errors)
        if errors:
            for e in errors:
                if isinstance(e, asyncio.CancelledError):
                    raise e
            return successes, errors
        remaining -= size
        batch *= 2
    return successes, []


def labels_match(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    return from_label_selector_object(selector).matches(labels)
