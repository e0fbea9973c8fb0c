"""The DaemonSet controller, as upstream's ``pkg/controller/daemon``.

One pod per eligible node: a node is eligible when it matches the template's nodeSelector and
required node affinity and has no NoSchedule/NoExecute taint the pod does not tolerate (daemon
pods get upstream's default tolerations for not-ready, unreachable, pressure and unschedulable
nodes). Pods are not bound here: each gets a required node affinity
``metadata.name In [<node>]`` so the scheduler places it on its node. Updates follow
ControllerRevisions (``<set>-<hash>``, the hash labelled ``controller-revision-hash`` on pods);
RollingUpdate replaces pods within ``maxUnavailable`` or surges up to ``maxSurge``; OnDelete
waits for the user. A node that stops being eligible loses its pod; a failed pod is deleted
(with backoff) and replaced.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.api.errors import StatusError
from sampan.api.selectors import LabelSelector
from sampan.client.controller import Controller, Requeue
from sampan.client.errors import ApiError
from sampan.client.events import WARNING, EventRecorder
from sampan.client.informer import NAMESPACE_INDEX, InformerFactory, SharedInformer, object_key
from sampan.client.rest import Client
from sampan.controllers import history
from sampan.controllers.util import (
    CONTROLLER_REVISION_HASH_LABEL,
    Expectations,
    PodControl,
    controller_ref,
    is_pod_available,
    is_pod_ready,
    is_pod_terminating,
    meta,
    new_controller_ref,
    resolve_controller_ref,
    parse_time,
    pod_from_template,
    pod_phase,
    selector_of,
    slow_start_batch,
)

log = logging.getLogger(__name__)

Object = dict[str, Any]

API_VERSION = "apps/v1"
KIND = "DaemonSet"
RESOURCE = "daemonsets"
HASH_LABEL = CONTROLLER_REVISION_HASH_LABEL
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
NODE_NAME_FIELD = "metadata.name"
BURST_REPLICAS = 250
STATUS_RETRIES = 2
FAILED_POD_BACKOFF = 1.0
MAX_FAILED_POD_BACKOFF = 900.0

# Daemon pods keep running through node problems the node lifecycle controller taints for.
DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}


# -- node eligibility ----------------------------------------------------------------------------


def add_daemon_tolerations(pod_spec: Object) -> None:
    """``AddOrUpdateDaemonPodTolerations``: replace same key+effect tolerations with ours."""
    wanted = list(DAEMON_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        wanted.append(HOST_NETWORK_TOLERATION)
    tolerations = [dict(t) for t in pod_spec.get("tolerations") or ()]
    for toleration in wanted:
        same = [i for i, t in enumerate(tolerations)
                if t.get("key") == toleration["key"] and t.get("effect") == toleration["effect"]]
        if same:
            tolerations[same[0]] = dict(toleration)
        else:
            tolerations.append(dict(toleration))
    pod_spec["tolerations"] = tolerations


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``Toleration.ToleratesTaint``."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def expression_matches(requirement: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One ``NodeSelectorRequirement`` against node labels."""
    key, op = requirement.get("key", ""), requirement.get("operator")
    values = requirement.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and len(values) == 1:
        have, want = _int(labels[key]), _int(values[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def field_matches(requirement: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """A ``matchFields`` requirement: only ``metadata.name`` with In / NotIn exists."""
    if requirement.get("key") != NODE_NAME_FIELD:
        return False
    name = meta(node).get("name")
    values = requirement.get("values") or []
    if requirement.get("operator") == "In":
        return name in values
    if requirement.get("operator") == "NotIn":
        return name not in values
    return False


def term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """An empty term matches no node; the requirements of a term are ANDed."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = meta(node).get("labels") or {}
    return (all(expression_matches(r, labels) for r in expressions)
            and all(field_matches(r, node) for r in fields))


def required_affinity_terms(pod_spec: Mapping[str, Any]) -> list[Object] | None:
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return None
    return list(required.get("nodeSelectorTerms") or [])


class Eligibility:
    """Which nodes a DaemonSet's pod should run on (``NodeShouldRunDaemonPod``), prepared once
    per DaemonSet so the per-node check is cheap."""

    def __init__(self, ds: Mapping[str, Any]):
        pod_spec = copy.deepcopy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
        add_daemon_tolerations(pod_spec)
        self.node_name = pod_spec.get("nodeName") or ""
        self.node_selector: Mapping[str, str] = pod_spec.get("nodeSelector") or {}
        self.terms = required_affinity_terms(pod_spec)
        self.tolerations: list[Object] = pod_spec["tolerations"]

    def fits_affinity(self, node: Mapping[str, Any]) -> bool:
        labels = meta(node).get("labels") or {}
        if any(labels.get(k) != v for k, v in self.node_selector.items()):
            return False
        return self.terms is None or any(term_matches(t, node) for t in self.terms)

    def untolerated(self, node: Mapping[str, Any], effects: Iterable[str]) -> bool:
        effects = set(effects)
        return any(taint.get("effect") in effects
                   and not any(tolerates(t, taint) for t in self.tolerations)
                   for taint in (node.get("spec") or {}).get("taints") or ())

    def check(self, node: Mapping[str, Any]) -> tuple[bool, bool]:
        """(should run a daemon pod, should keep running an existing one)."""
        if self.node_name and self.node_name != meta(node).get("name"):
            return False, False
        if not self.fits_affinity(node):
            return False, False
        if self.untolerated(node, ("NoSchedule", "NoExecute")):
            return False, not self.untolerated(node, ("NoExecute",))
        return True, True


def node_eligibility_view(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What eligibility depends on: a node update that keeps it changes nothing for us."""
    return (meta(node).get("labels"), (node.get("spec") or {}).get("taints"))


# -- pods ----------------------------------------------------------------------------------------


def target_node(pod: Mapping[str, Any]) -> str | None:
    """The node a daemon pod is for: its nodeName, or the node its affinity pins it to
    (``GetTargetNodeName``)."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        return node_name
    terms = required_affinity_terms(pod.get("spec") or {}) or []
    if len(terms) != 1:
        return None
    fields = terms[0].get("matchFields") or []
    if len(fields) != 1:
        return None
    req = fields[0]
    values = req.get("values") or []
    if req.get("key") == NODE_NAME_FIELD and req.get("operator") == "In" and len(values) == 1:
        return values[0]
    return None


def pin_to_node(pod_spec: Object, node_name: str) -> None:
    """``ReplaceDaemonSetPodNodeNameNodeAffinity``: require the node by name, replacing any
    required terms (the controller already checked them against this node)."""
    term = {"matchFields": [{"key": NODE_NAME_FIELD, "operator": "In", "values": [node_name]}]}
    affinity = pod_spec.setdefault("affinity", {}) or {}
    pod_spec["affinity"] = affinity
    node_affinity = affinity.setdefault("nodeAffinity", {}) or {}
    affinity["nodeAffinity"] = node_affinity
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    required["nodeSelectorTerms"] = [term]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required


def template_generation(ds: Mapping[str, Any]) -> str | None:
    return (meta(ds).get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)


def daemon_pod_template(ds: Mapping[str, Any], hash_: str) -> Object:
    """``CreatePodTemplate``: the template with daemon tolerations and the revision labels."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    add_daemon_tolerations(template.setdefault("spec", {}))
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    generation = template_generation(ds)
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = generation
    if hash_:
        labels[HASH_LABEL] = hash_
    return template


def is_pod_updated(pod: Mapping[str, Any], hash_: str, generation: str | None) -> bool:
    labels = meta(pod).get("labels") or {}
    return ((bool(hash_) and labels.get(HASH_LABEL) == hash_)
            or (generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == generation))


def oldest_first(pods: Iterable[Object]) -> list[Object]:
    """``podByCreationTimestampAndPhase``: older first; on a tie, ones with a node first."""
    return sorted(pods, key=lambda p: (parse_time(meta(p).get("creationTimestamp")) or 0.0,
                                       not (p.get("spec") or {}).get("nodeName"),
                                       meta(p).get("name", "")))


def nodes_to_daemon_pods(pods: Iterable[Object],
                         include_deleted_terminal: bool = False) -> dict[str, list[Object]]:
    by_node: dict[str, list[Object]] = {}
    for pod in pods:
        if (not include_deleted_terminal and pod_phase(pod) in ("Succeeded", "Failed")
                and is_pod_terminating(pod)):
            continue
        node = target_node(pod)
        if node is not None:
            by_node.setdefault(node, []).append(pod)
    return by_node


def find_updated_pods_on_node(pods: Iterable[Object], hash_: str, generation: str | None
                              ) -> tuple[Object | None, Object | None, bool]:
    """(new pod, old pod, ok): ok is False with more than one of either."""
    new = old = None
    for pod in pods:
        if is_pod_terminating(pod):
            continue
        if is_pod_updated(pod, hash_, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def surge_count(ds: Mapping[str, Any], desired: int) -> int:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    return history.scaled_value(rolling.get("maxSurge"), desired, True)


def unavailable_count(ds: Mapping[str, Any], desired: int) -> int:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    return history.scaled_value(rolling.get("maxUnavailable"), desired, True)


def min_ready_seconds(ds: Mapping[str, Any]) -> int:
    return int((ds.get("spec") or {}).get("minReadySeconds") or 0)


# -- decisions -----------------------------------------------------------------------------------


@dataclass
class Plan:
    """Nodes that need a daemon pod and pods (by name) to delete."""

    create_on: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    failed: list[tuple[Object, str]] = field(default_factory=list)  # (failed pod, its node)


def pods_should_be_on_node(ds: Mapping[str, Any], eligibility: Eligibility,
                           node: Mapping[str, Any], pods: list[Object] | None, hash_: str,
                           plan: Plan, now: float,
                           allow_failed_delete=lambda node_name: True) -> None:
    """``podsShouldBeOnNode``: create the missing daemon pod, delete failed and excess ones, or
    delete every daemon pod of a node that should not run one."""
    node_name = meta(node)["name"]
    should_run, should_continue = eligibility.check(node)
    if should_run and not pods:
        plan.create_on.append(node_name)
        return
    if not pods:
        return
    if not should_continue:
        plan.delete.extend(meta(p)["name"] for p in pods if not is_pod_terminating(p))
        return
    running = []
    for pod in pods:
        if is_pod_terminating(pod):
            continue
        phase = pod_phase(pod)
        if phase == "Failed":
            if allow_failed_delete(node_name):
                plan.failed.append((pod, node_name))
                plan.delete.append(meta(pod)["name"])
        elif phase == "Succeeded":
            plan.delete.append(meta(pod)["name"])
        else:
            running.append(pod)
    running = oldest_first(running)
    if surge_count(ds, 1) <= 0:
        plan.delete.extend(meta(p)["name"] for p in running[1:])
        return
    if len(running) <= 1:
        if not running and should_run:
            plan.create_on.append(node_name)
        return
    # Surging: keep the oldest new pod and the oldest old pod while the new one comes up.
    oldest_new = oldest_old = None
    for pod in running:
        if (meta(pod).get("labels") or {}).get(HASH_LABEL) == hash_:
            if oldest_new is None:
                oldest_new = pod
                continue
        elif oldest_old is None:
            oldest_old = pod
            continue
        plan.delete.append(meta(pod)["name"])
    if oldest_new is not None and oldest_old is not None:
        if not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready_seconds(ds), now):
            plan.delete.append(meta(oldest_old)["name"])


def manage_plan(ds: Mapping[str, Any], nodes: list[Object], by_node: Mapping[str, list[Object]],
                hash_: str, now: float, allow_failed_delete=lambda node_name: True) -> Plan:
    """``manage``: what every node needs, plus unscheduled pods for nodes that no longer
    exist (nobody else would ever delete those)."""
    eligibility = Eligibility(ds)
    plan = Plan()
    for node in nodes:
        pods_should_be_on_node(ds, eligibility, node, by_node.get(meta(node)["name"]), hash_,
                               plan, now, allow_failed_delete)
    known = {meta(n)["name"] for n in nodes}
    for node_name, pods in by_node.items():
        if node_name in known:
            continue
        plan.delete.extend(meta(p)["name"] for p in pods
                           if not (p.get("spec") or {}).get("nodeName")
                           and not is_pod_terminating(p))
    return plan


def desired_node_counts(ds: Mapping[str, Any], nodes: list[Object],
                        by_node: dict[str, list[Object]]) -> tuple[int, int, int]:
    """(maxSurge, maxUnavailable, desired): nodes that should run a pod get an (empty) entry
    in ``by_node``; a configuration allowing neither surge nor unavailability gets one."""
    eligibility = Eligibility(ds)
    desired = 0
    for node in nodes:
        if eligibility.check(node)[0]:
            desired += 1
            by_node.setdefault(meta(node)["name"], [])
    max_unavailable = unavailable_count(ds, desired)
    max_surge = surge_count(ds, desired)
    if desired > 0 and max_unavailable == 0 and max_surge == 0:
        max_unavailable = 1
    return max_surge, max_unavailable, desired


def rolling_update_plan(ds: Mapping[str, Any], nodes: list[Object],
                        by_node: dict[str, list[Object]], hash_: str, now: float) -> Plan:
    """``rollingUpdate``: which old pods to delete (and, surging, where to add new pods)."""
    by_node = {k: list(v) for k, v in by_node.items()}
    max_surge, max_unavailable, desired = desired_node_counts(ds, nodes, by_node)
    generation = template_generation(ds)
    min_ready = min_ready_seconds(ds)
    plan = Plan()
    if max_surge == 0:
        unavailable = 0
        allowed: list[str] = []
        candidates: list[str] = []
        for pods in by_node.values():
            new, old, ok = find_updated_pods_on_node(pods, hash_, generation)
            if not ok or (old is None) == (new is None):
                unavailable += 1  # the manage loop sorts this node out first
            elif new is not None:
                unavailable += not is_pod_available(new, min_ready, now)
            elif not is_pod_available(old, min_ready, now):
                allowed.append(meta(old)["name"])
                unavailable += 1
            elif unavailable < max_unavailable:
                candidates.append(meta(old)["name"])
        remaining = min(max(max_unavailable - unavailable, 0), len(candidates))
        plan.delete = allowed + candidates[:remaining]
        return plan

    eligibility = Eligibility(ds)
    nodes_by_name = {meta(n)["name"]: n for n in nodes}
    surging = available = 0
    for pods in by_node.values():
        new, old, ok = find_updated_pods_on_node(pods, hash_, generation)
        if not ok:
            surging += 1
            continue
        pod = old if old is not None else new
        available += pod is not None and is_pod_available(pod, min_ready, now)
    allowed_nodes: list[str] = []
    candidate_nodes: list[str] = []
    should_not_run: list[str] = []
    for node_name, pods in by_node.items():
        new, old, ok = find_updated_pods_on_node(pods, hash_, generation)
        if not ok or old is None:
            continue
        if new is None:
            node = nodes_by_name.get(node_name)
            should_run = node is not None and eligibility.check(node)[0]
            if not is_pod_available(old, min_ready, now):
                if should_run:
                    allowed_nodes.append(node_name)
                else:
                    plan.delete.append(meta(old)["name"])
            elif not should_run:
                should_not_run.append(meta(old)["name"])
            elif surging < max_surge:
                candidate_nodes.append(node_name)
        elif not is_pod_available(new, min_ready, now):
            surging += 1
        else:
            plan.delete.append(meta(old)["name"])
    deletable = min(max(available - desired, 0), len(should_not_run))
    plan.delete.extend(should_not_run[:deletable])
    remaining = min(max(max_surge - surging, 0), len(candidate_nodes))
    plan.create_on = allowed_nodes + candidate_nodes[:remaining]
    return plan


@dataclass
class DaemonStatus:
    desired: int = 0
    current: int = 0
    misscheduled: int = 0
    ready: int = 0
    updated: int = 0
    available: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"desiredNumberScheduled": self.desired, "currentNumberScheduled": self.current,
                "numberMisscheduled": self.misscheduled, "numberReady": self.ready,
                "updatedNumberScheduled": self.updated, "numberAvailable": self.available,
                "numberUnavailable": self.desired - self.available}


def compute_status(ds: Mapping[str, Any], nodes: list[Object],
                   by_node: Mapping[str, list[Object]], hash_: str, now: float) -> DaemonStatus:
    """``updateDaemonSetStatus``: counts over nodes, judging each node by its oldest pod."""
    eligibility = Eligibility(ds)
    generation = template_generation(ds)
    status = DaemonStatus()
    for node in nodes:
        should_run, _ = eligibility.check(node)
        pods = by_node.get(meta(node)["name"]) or []
        if not should_run:
            status.misscheduled += bool(pods)
            continue
        status.desired += 1
        if not pods:
            continue
        status.current += 1
        pod = oldest_first(pods)[0]
        if is_pod_ready(pod):
            status.ready += 1
            status.available += is_pod_available(pod, min_ready_seconds(ds), now)
        status.updated += is_pod_updated(pod, hash_, generation)
    return status


class FailedPodBackoff:
    """Per (DaemonSet, node) backoff for deleting failed pods: a kubelet that rejects every
    pod must not make us create and delete in a hot loop."""

    def __init__(self, initial: float = FAILED_POD_BACKOFF, maximum: float = MAX_FAILED_POD_BACKOFF,
                 clock=time.monotonic):
        self.initial, self.maximum, self.clock = initial, maximum, clock
        self._entries: dict[str, tuple[float, float]] = {}  # key → (delay, last update)

    def in_backoff(self, key: str) -> float:
        """Seconds left to wait (0 when free to act)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        delay, since = entry
        return max(0.0, since + delay - self.clock())

    def next(self, key: str) -> None:
        entry = self._entries.get(key)
        now = self.clock()
        if entry is None or now - entry[1] > 2 * self.maximum:
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.maximum), now)

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


# -- the controller ------------------------------------------------------------------------------


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 2):
        self._owns_recorder = recorder is None
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.sets = informers.informer(API_VERSION, RESOURCE)
        self.pods = informers.informer("v1", "pods", indexers=history.CLAIM_INDEXERS)
        self.nodes = informers.informer("v1", "nodes")
        self.revisions = informers.informer(API_VERSION, history.REVISIONS,
                                            indexers=history.CLAIM_INDEXERS)
        self.expectations = Expectations()
        self.failed_backoff = FailedPodBackoff()
        self.pod_control = PodControl(client, self.recorder)
        self.sets.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                    self._set_deleted)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_event_handler(self._node_added, self._node_updated, self._node_deleted)
        self.revisions.add_event_handler(self._owned_changed,
                                         lambda old, new: self._owned_changed(new),
                                         self._owned_changed)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.sets, self.pods, self.nodes, self.revisions]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder and self.recorder is not None:
                await self.recorder.close()

    # -- handlers (enqueue only) -----------------------------------------------------------------
    def _set_deleted(self, ds: Object) -> None:
        self.failed_backoff.forget_prefix(f"{meta(ds).get('uid')}/")
        self.enqueue(ds)

    def _owner_key(self, obj: Mapping[str, Any]) -> str | None:
        return resolve_controller_ref(obj, KIND, self.sets.indexer)

    def _enqueue_matching_sets(self, pod: Mapping[str, Any]) -> None:
        labels = meta(pod).get("labels") or {}
        for ds in self.sets.indexer.by_index(NAMESPACE_INDEX, meta(pod).get("namespace") or ""):
            try:
                if selector_of(ds).matches(labels):
                    self.enqueue(ds)
            except StatusError:
                continue

    def _pod_added(self, pod: Object) -> None:
        if is_pod_terminating(pod):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.queue.add(key)
        elif controller_ref(pod) is None:
            self._enqueue_matching_sets(pod)

    def _pod_updated(self, old: Object, new: Object) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if new_key is not None and is_pod_terminating(new) and not is_pod_terminating(old):
            self.expectations.deletion_observed(new_key, object_key(new))
        if old_key is not None and old_key != new_key:
            self.queue.add(old_key)
        if new_key is not None:
            self.queue.add(new_key)
        elif controller_ref(new) is None and (
                meta(old).get("labels") != meta(new).get("labels") or controller_ref(old)):
            self._enqueue_matching_sets(new)

    def _pod_deleted(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)

    def _owned_changed(self, obj: Object) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def _enqueue_for_node(self, node: Object, wanted) -> None:
        for ds in self.sets.indexer.list():
            try:
                if wanted(Eligibility(ds), node):
                    self.enqueue(ds)
            except Exception:  # a malformed DaemonSet must not stop the others
                self.enqueue(ds)

    def _node_added(self, node: Object) -> None:
        self._enqueue_for_node(node, lambda e, n: e.check(n)[0])

    def _node_deleted(self, node: Object) -> None:
        self._enqueue_for_node(node, lambda e, n: e.check(n)[0])

    def _node_updated(self, old: Object, new: Object) -> None:
        if node_eligibility_view(old) == node_eligibility_view(new):
            return
        self._enqueue_for_node(new, lambda e, n: e.check(old) != e.check(new))

    # -- reconcile -----------------------------------------------------------------------------
    def _event(self, ds: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(_with_kind(ds), type_, reason, message)

    async def reconcile(self, key: str) -> None:
        cached = self.sets.indexer.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        ds = copy.deepcopy(cached)
        try:
            selector = selector_of(ds)
        except StatusError as e:
            self._event(ds, WARNING, "InvalidSelector", f"invalid selector: {e}")
            return
        if selector.empty:
            self._event(ds, WARNING, "SelectingAll", "This daemon set is selecting all pods. "
                        "A non-empty selector is required.")
            return
        if meta(ds).get("deletionTimestamp"):
            return
        nodes = self.nodes.indexer.list()
        current, old = await self._construct_history(ds, selector)
        hash_ = (meta(current).get("labels") or {}).get(HASH_LABEL, "")
        pods = await self._claim_pods(ds, selector)
        now = time.time()
        if not self.expectations.satisfied(key):
            await self._write_status(ds, nodes, pods, hash_, now, observed=False)
            return
        try:
            await self._update(ds, key, nodes, pods, hash_, old, now)
        finally:
            await self._write_status(ds, nodes, pods, hash_, now, observed=True)

    async def _update(self, ds: Object, key: str, nodes: list[Object], pods: list[Object],
                      hash_: str, old: list[Object], now: float) -> None:
        by_node = nodes_to_daemon_pods(pods)
        plan = manage_plan(ds, nodes, by_node, hash_, now,
                           lambda node_name: self._failed_pod_delete_allowed(ds, key, node_name))
        for pod, node_name in plan.failed:
            self._event(ds, WARNING, "FailedDaemonPod",
                        f"Found failed daemon pod {meta(pod).get('namespace')}/"
                        f"{meta(pod)['name']} on node {node_name}, will try to kill it")
        await self._sync_nodes(ds, key, plan, pods, hash_)
        if self.expectations.satisfied(key) and \
                ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type") == "RollingUpdate":
            rolling = rolling_update_plan(ds, nodes, by_node, hash_, now)
            await self._sync_nodes(ds, key, rolling, pods, hash_)
        await self._cleanup_history(ds, pods, old)

    def _failed_pod_delete_allowed(self, ds: Object, key: str, node_name: str) -> bool:
        backoff_key = f"{meta(ds)['uid']}/{node_name}"
        wait = self.failed_backoff.in_backoff(backoff_key)
        if wait > 0:
            self.queue.add_after(key, wait)
            return False
        self.failed_backoff.next(backoff_key)
        return True

    async def _claim_pods(self, ds: Object, selector: LabelSelector) -> list[Object]:
        candidates = history.claim_candidates(self.pods.indexer, ds)
        return await history.claim(self.client, ds, API_VERSION, KIND, RESOURCE, selector,
                                   candidates, "v1", "pods")

    async def _sync_nodes(self, ds: Object, key: str, plan: Plan, pods: list[Object],
                          hash_: str) -> None:
        """``syncNodes``: create pods on ``plan.create_on`` (slow start) and delete
        ``plan.delete``, at most ``BURST_REPLICAS`` of each, with expectations set first."""
        create_on = plan.create_on[:BURST_REPLICAS]
        by_name = {meta(p)["name"]: p for p in pods}
        to_delete = [by_name[n] for n in dict.fromkeys(plan.delete) if n in by_name]
        to_delete = to_delete[:BURST_REPLICAS]
        if not create_on and not to_delete:
            return
        self.expectations.expect(key, adds=len(create_on),
                                 deleting=[object_key(p) for p in to_delete])
        errors: list[BaseException] = []
        if create_on:
            template = daemon_pod_template(ds, hash_)
            ref = new_controller_ref(ds, API_VERSION, KIND)
            owner = _with_kind(ds)
            targets = iter(create_on)

            def create():
                pod = pod_from_template(template, ds, ref)
                pin_to_node(pod["spec"], next(targets))
                return self._create(owner, pod)

            successes, failures = await slow_start_batch(len(create_on), create)
            unattempted = len(create_on) - successes - len(failures)
            failures = [e for e in failures if not _namespace_terminating(e)]
            self.expectations.creation_failed(key, len(failures) + unattempted)
            errors.extend(failures)
        for pod in to_delete:
            try:
                deleted = await self.pod_control.delete_pod(_with_kind(ds), pod)
            except ApiError as e:
                self.expectations.deletion_observed(key, object_key(pod))
                errors.append(e)
                continue
            if not deleted:
                self.expectations.deletion_observed(key, object_key(pod))
        if errors:
            raise errors[0]

    async def _create(self, owner: Object, pod: Object) -> Object:
        return await self.pod_control.create_pod(owner, pod)

    async def _write_status(self, ds: Object, nodes: list[Object], pods: list[Object],
                            hash_: str, now: float, *, observed: bool) -> None:
        status = compute_status(ds, nodes, nodes_to_daemon_pods(pods), hash_, now).to_dict()
        generation = int(meta(ds).get("generation") or 0)
        old = ds.get("status") or {}
        if all((old.get(k) or 0) == v for k, v in status.items()) \
                and int(old.get("observedGeneration") or 0) >= generation:
            self._recheck_availability(ds, status)
            return
        body = ds
        for attempt in range(STATUS_RETRIES + 1):
            body = copy.deepcopy(body)
            body["status"] = {**(body.get("status") or {}), **status}
            if observed:
                body["status"]["observedGeneration"] = generation
            try:
                await self.client.update(API_VERSION, RESOURCE, body, subresource="status")
                break
            except ApiError as e:
                if e.not_found:
                    return
                if not e.conflict or attempt == STATUS_RETRIES:
                    raise
            body = await self.client.get(API_VERSION, RESOURCE, meta(ds)["name"],
                                         namespace=meta(ds).get("namespace"))
        self._recheck_availability(ds, status)

    def _recheck_availability(self, ds: Object, status: Mapping[str, int]) -> None:
        """Pods become available minReadySeconds after Ready, with no event to say so."""
        if min_ready_seconds(ds) > 0 and status["numberReady"] != status["numberAvailable"]:
            self.queue.add_after(object_key(ds), float(min_ready_seconds(ds)))

    # -- history -------------------------------------------------------------------------------
    async def _construct_history(self, ds: Object,
                                 selector: LabelSelector) -> tuple[Object, list[Object]]:
        """``constructHistory``: the revision matching the template (created if missing,
        renumbered to be newest) and the old ones."""
        candidates = history.claim_candidates(self.revisions.indexer, ds)
        revisions = await history.claim(self.client, ds, API_VERSION, KIND, RESOURCE, selector,
                                        candidates, API_VERSION, history.REVISIONS)
        patch = history.template_patch(ds)
        current: list[Object] = []
        old: list[Object] = []
        for revision in revisions:
            if HASH_LABEL not in (meta(revision).get("labels") or {}):
                revision = await self._label_revision(revision)
            (current if revision.get("data") == patch else old).append(revision)
        number = history.max_revision_number(old) + 1
        if not current:
            return await self._snapshot(ds, patch, number), old
        cur = await self._dedup(ds, current)
        if history.revision_number(cur) < number:
            cur = await history.renumber_revision(self.client, cur, number)
        return cur, old

    async def _label_revision(self, revision: Object) -> Object:
        rmeta = meta(revision)
        patch = {"metadata": {"labels": {HASH_LABEL: rmeta["name"]},
                              "resourceVersion": rmeta.get("resourceVersion")}}
        return await self.client.patch(API_VERSION, history.REVISIONS, rmeta["name"], patch,
                                       namespace=rmeta.get("namespace"))

    async def _dedup(self, ds: Object, current: list[Object]) -> Object:
        """Several revisions hold the current template: keep the newest, move pods labelled
        with the others' hashes onto it, delete the others."""
        ordered = history.sort_revisions(current)
        keep = ordered[-1]
        if len(ordered) == 1:
            return keep
        keep_hash = (meta(keep).get("labels") or {}).get(HASH_LABEL, "")
        for duplicate in ordered[:-1]:
            dup_hash = (meta(duplicate).get("labels") or {}).get(HASH_LABEL)
            for pod in history.claim_candidates(self.pods.indexer, ds):
                if (meta(pod).get("labels") or {}).get(HASH_LABEL) == dup_hash:
                    await self.client.patch("v1", "pods", meta(pod)["name"],
                                            {"metadata": {"labels": {HASH_LABEL: keep_hash}}},
                                            namespace=meta(pod).get("namespace"))
            await history.delete_revision(self.client, duplicate)
        return keep

    async def _snapshot(self, ds: Object, patch: Object, number: int) -> Object:
        collision_count = (ds.get("status") or {}).get("collisionCount")
        hash_ = history.compute_hash((ds.get("spec") or {}).get("template") or {},
                                     collision_count)
        name = f"{meta(ds)['name']}-{hash_}"
        template_labels = (((ds.get("spec") or {}).get("template") or {}).get("metadata")
                           or {}).get("labels") or {}
        revision = {
            "apiVersion": API_VERSION, "kind": "ControllerRevision",
            "metadata": {"name": name, "namespace": meta(ds).get("namespace"),
                         "labels": {**template_labels, HASH_LABEL: hash_},
                         "annotations": dict(meta(ds).get("annotations") or {}),
                         "ownerReferences": [new_controller_ref(ds, API_VERSION, KIND)]},
            "data": patch, "revision": number,
        }
        try:
            return await self.client.create(API_VERSION, history.REVISIONS, revision)
        except ApiError as e:
            if not e.already_exists:
                raise
        existing = await self.client.get(API_VERSION, history.REVISIONS, name,
                                         namespace=meta(ds).get("namespace"))
        if existing.get("data") == patch:
            return existing
        # A hash collision with another template: bump collisionCount and try again later.
        fresh = await self.client.get(API_VERSION, RESOURCE, meta(ds)["name"],
                                      namespace=meta(ds).get("namespace"))
        if (fresh.get("status") or {}).get("collisionCount") != collision_count:
            raise Requeue(f"stale collision count of DaemonSet {meta(ds)['name']}")
        fresh.setdefault("status", {})["collisionCount"] = (collision_count or 0) + 1
        await self.client.update(API_VERSION, RESOURCE, fresh, subresource="status")
        raise Requeue(f"hash collision for DaemonSet {meta(ds)['name']}; collisionCount raised")

    async def _cleanup_history(self, ds: Object, pods: list[Object], old: list[Object]) -> None:
        """Delete old revisions beyond revisionHistoryLimit, oldest first, except those some
        pod still runs."""
        limit = (ds.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        to_kill = len(old) - limit
        if to_kill <= 0:
            return
        live = {(meta(p).get("labels") or {}).get(HASH_LABEL) for p in pods}
        for revision in history.sort_revisions(old):
            if to_kill <= 0:
                break
            if (meta(revision).get("labels") or {}).get(HASH_LABEL) in live:
                continue
            await history.delete_revision(self.client, revision)
            to_kill -= 1


def _with_kind(obj: Mapping[str, Any]) -> Object:
    return {**obj, "apiVersion": API_VERSION, "kind": KIND}


def _namespace_terminating(error: BaseException) -> bool:
    if not isinstance(error, ApiError):
        return False
    causes = error.details.get("causes") or ()
    return error.code == 403 and any(c.get("reason") == "NamespaceTerminating" for c in causes) \
        or "because it is being terminated" in error.message
