"""Hollow nodes: many simulated kubelets in one process, for scale tests (kubemark / KWOK).

``HollowNodes`` registers Nodes ``<prefix>-<i>`` and behaves towards the API server as their
kubelets would, without containers: it renews each node's Lease in ``kube-node-lease`` every
10 s, reports node status every 5 minutes (and at once when someone else changed a
condition), marks the pods bound to its nodes Running and Ready, completes pods that are meant
to finish (restartPolicy Never/OnFailure with ``sampan.io/hollow-run-seconds``) and finishes
pods being deleted. Whatever the number of nodes there is one client, one pod informer, one
node informer and one lease loop, and status writes go through a bounded pool of workers.

    sampan hollow-nodes --kubeconfig K --count N [--prefix hollow-node]
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.client import (
    ApiError,
    Client,
    ItemExponentialFailureRateLimiter,
    Preconditions,
    RateLimitingQueue,
    SharedInformer,
    object_key,
    run_workers,
    strip_managed_fields,
)
from sampan.client.config import load_kubeconfig
from sampan.client.leaderelection import micro_time
from sampan.controllers.util import now_rfc3339, parse_time

log = logging.getLogger(__name__)

Object = dict[str, Any]

RUN_SECONDS_ANNOTATION = "sampan.io/hollow-run-seconds"
EXIT_CODE_ANNOTATION = "sampan.io/hollow-exit-code"
GROUP_LABEL = "sampan.io/hollow-nodes"  # the prefix: selects one HollowNodes' nodes
KUBELET_VERSION = "v1.37.0"
CONTAINER_RUNTIME_VERSION = "hollow://1.0"
OS_IMAGE = "Sampan Hollow Node"
KERNEL_VERSION = "6.1.0-hollow"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40  # the kubelet's nodeLeaseDurationSeconds
LEASE_RENEW_INTERVAL = 10.0  # a quarter of the lease duration, as the kubelet renews
NODE_STATUS_REPORT_FREQUENCY = 300.0  # the kubelet's nodeStatusReportFrequency
KUBELET_PORT = 10250
DEFAULT_ZONES = ("hollow-zone-a", "hollow-zone-b", "hollow-zone-c")
MAX_IN_FLIGHT = 32
MAX_DELETE_DELAY = 1.0
_MIN_TICK = 0.02
_TERMINAL = ("Succeeded", "Failed")


# -- nodes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeShape:
    """What every hollow node reports: capacity (allocatable is the same: nothing is
    reserved), architecture and the zones the nodes are spread over."""

    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    ephemeral_storage: str = "100Gi"
    architecture: str = "amd64"
    zones: tuple[str, ...] = DEFAULT_ZONES
    region: str = "hollow"

    def resources(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods),
                "ephemeral-storage": self.ephemeral_storage, "hugepages-1Gi": "0",
                "hugepages-2Mi": "0"}


def node_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index}"


def node_internal_ip(index: int) -> str:
    """10.99.x.y: test-range data, never routed anywhere."""
    host = index + 1
    return f"10.99.{(host // 254) % 256}.{host % 254 + 1}"


def fake_pod_cidr(index: int) -> str:
    """A /24 per node in 10.244.0.0-10.255.255.255, for nodes without ``spec.podCIDR``."""
    block = index % (12 * 256)
    return f"10.{244 + block // 256}.{block % 256}.0/24"


def _stable_uuid(*parts: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256("/".join(parts).encode()).digest()[:16]))


def node_labels(name: str, index: int, shape: NodeShape, group: str) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": shape.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": shape.architecture,
        "node.kubernetes.io/instance-type": "hollow",
        "topology.kubernetes.io/zone": shape.zones[index % len(shape.zones)],
        "topology.kubernetes.io/region": shape.region,
        GROUP_LABEL: group,
    }


def node_conditions(now: str, previous: list[Object] | None = None) -> list[Object]:
    """A healthy kubelet's conditions (``nodestatus`` setters' reasons); a condition keeps
    its lastTransitionTime while its status stays the same. NetworkUnavailable belongs to the
    network plugin: set once, as a working one would, and left alone after that."""
    before = {c.get("type"): c for c in previous or ()}
    network = before.get("NetworkUnavailable") or {
        "type": "NetworkUnavailable", "status": "False", "lastHeartbeatTime": now,
        "lastTransitionTime": now, "reason": "RouteCreated",
        "message": "RouteController created a route"}
    out = [copy.deepcopy(network)]
    for type_, status, reason, message in _KUBELET_CONDITIONS:
        old = before.get(type_)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append({"type": type_, "status": status, "lastHeartbeatTime": now,
                    "lastTransitionTime": since or now, "reason": reason, "message": message})
    return out


_KUBELET_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def conditions_differ(node: Object) -> bool:
    """Whether the kubelet's conditions on the node are not what a healthy one reports (the
    node lifecycle controller marked them Unknown, say)."""
    have = {c.get("type"): c.get("status")
            for c in (node.get("status") or {}).get("conditions") or ()}
    return any(have.get(type_) != status for type_, status, _, _ in _KUBELET_CONDITIONS)


def node_status(name: str, index: int, shape: NodeShape, now: str,
                previous: Object | None = None) -> Object:
    resources = shape.resources()
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": node_conditions(now, (previous or {}).get("conditions")),
        "addresses": [{"type": "InternalIP", "address": node_internal_ip(index)},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "machineID": _stable_uuid("machine", name).replace("-", ""),
            "systemUUID": _stable_uuid("system", name),
            "bootID": _stable_uuid("boot", name),
            "kernelVersion": KERNEL_VERSION,
            "osImage": OS_IMAGE,
            "containerRuntimeVersion": CONTAINER_RUNTIME_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": shape.architecture,
        },
    }


def node_object(name: str, index: int, shape: NodeShape, group: str, now: str) -> Object:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name, index, shape, group),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach":
                                         "true"}},
        "spec": {},
        "status": node_status(name, index, shape, now),
    }


def lease_object(node: Object, now: float | None = None) -> Object:
    meta = node["metadata"]
    owner = {"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": meta["name"], "namespace": LEASE_NAMESPACE,
                         "ownerReferences": [owner]},
            "spec": {"holderIdentity": meta["name"],
                     "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                     "renewTime": micro_time(now)}}


# -- pods ----------------------------------------------------------------------------------------


def run_seconds(pod: Mapping[str, Any], complete_after: float | None = None) -> float | None:
    """How long a pod that may finish runs: its annotation, else ``complete_after``; None for
    pods that run until deleted (restartPolicy Always, or nothing said)."""
    if (pod.get("spec") or {}).get("restartPolicy", "Always") == "Always":
        return None
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(RUN_SECONDS_ANNOTATION)
    if text is not None:
        try:
            return max(0.0, float(text))
        except ValueError:
            log.warning("pod %s: %s=%r is not a number", object_key(dict(pod)),
                        RUN_SECONDS_ANNOTATION, text)
    return complete_after


def exit_code(pod: Mapping[str, Any]) -> int:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(EXIT_CODE_ANNOTATION, "0")
    try:
        return int(text)
    except ValueError:
        return 1


def _container_id(pod_uid: str, name: str, restarts: int) -> str:
    return "hollow://" + hashlib.sha256(f"{pod_uid}/{name}/{restarts}".encode()).hexdigest()


def _image_id(image: str) -> str:
    return f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _condition(type_: str, status: bool, now: str, reason: str | None = None,
               message: str | None = None) -> Object:
    out: Object = {"type": type_, "status": "True" if status else "False",
                   "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _keep_transition(conditions: list[Object], previous: list[Object]) -> list[Object]:
    """A condition whose status did not change keeps its lastTransitionTime."""
    before = {c.get("type"): c for c in previous}
    for c in conditions:
        old = before.get(c["type"])
        if old and old.get("status") == c["status"] and old.get("lastTransitionTime"):
            c["lastTransitionTime"] = old["lastTransitionTime"]
    return conditions


def _ready_condition(pod: Mapping[str, Any], containers_ready: bool, now: str) -> Object:
    """Ready needs the containers ready and every readiness gate's condition True."""
    if not containers_ready:
        return _condition("Ready", False, now, "ContainersNotReady")
    have = {c.get("type"): c.get("status")
            for c in (pod.get("status") or {}).get("conditions") or ()}
    for gate in (pod.get("spec") or {}).get("readinessGates") or ():
        kind = gate.get("conditionType")
        if have.get(kind) != "True":
            text = (f"corresponding condition of pod readiness gate \"{kind}\" does not exist."
                    if kind not in have else
                    f"the status of pod readiness gate \"{kind}\" is not \"True\", "
                    f"but {have[kind]}")
            return _condition("Ready", False, now, "ReadinessGatesNotReady", text)
    return _condition("Ready", True, now)


def _scheduled_condition(pod: Mapping[str, Any], now: str) -> Object:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "PodScheduled":
            return copy.deepcopy(c)
    return _condition("PodScheduled", True, now)


def _extra_conditions(pod: Mapping[str, Any]) -> list[Object]:
    """Conditions the kubelet does not own (readiness gates', DisruptionTarget...) stay."""
    ours = {"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"}
    return [copy.deepcopy(c) for c in (pod.get("status") or {}).get("conditions") or ()
            if c.get("type") not in ours]


def _init_statuses(pod: Mapping[str, Any], started: str, running: bool) -> list[Object]:
    """Init containers completed; sidecars (restartPolicy Always) run beside the others."""
    uid = pod["metadata"]["uid"]
    out = []
    for c in (pod.get("spec") or {}).get("initContainers") or ():
        base = {"name": c["name"], "image": c.get("image", ""),
                "imageID": _image_id(c.get("image", "")),
                "containerID": _container_id(uid, c["name"], 0), "restartCount": 0,
                "lastState": {}}
        if c.get("restartPolicy") == "Always":
            base.update(ready=running, started=running,
                        state={"running": {"startedAt": started}} if running else
                        {"terminated": {"exitCode": 0, "reason": "Completed",
                                        "startedAt": started, "finishedAt": started}})
        else:
            base.update(ready=True, started=False,
                        state={"terminated": {"exitCode": 0, "reason": "Completed",
                                              "startedAt": started, "finishedAt": started,
                                              "containerID": base["containerID"]}})
        out.append(base)
    return out


def _base_status(pod: Mapping[str, Any], host_ip: str, pod_ip: str, now: str) -> Object:
    status = pod.get("status") or {}
    out = {"hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip,
           "podIPs": [{"ip": pod_ip}], "startTime": status.get("startTime") or now}
    if status.get("qosClass"):
        out["qosClass"] = status["qosClass"]
    return out


def running_status(pod: Mapping[str, Any], *, host_ip: str, pod_ip: str, started: str,
                   now: str, restarts: int = 0, last_exit: tuple[int, str, str] | None = None
                   ) -> Object:
    """The status of a pod whose containers all run and are ready (probes are not run).
    ``last_exit`` = (exit code, started, finished) of the previous run after a restart."""
    uid = pod["metadata"]["uid"]
    containers = []
    for c in (pod.get("spec") or {}).get("containers") or ():
        last: Object = {}
        if last_exit is not None:
            code, began, ended = last_exit
            last = {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed",
                                   "startedAt": began, "finishedAt": ended,
                                   "containerID": _container_id(uid, c["name"], restarts - 1)}}
        containers.append({"name": c["name"], "image": c.get("image", ""),
                           "imageID": _image_id(c.get("image", "")),
                           "containerID": _container_id(uid, c["name"], restarts),
                           "ready": True, "started": True, "restartCount": restarts,
                           "state": {"running": {"startedAt": started}}, "lastState": last})
    previous = (pod.get("status") or {}).get("conditions") or []
    conditions = _keep_transition([
        _condition("PodReadyToStartContainers", True, now),
        _condition("Initialized", True, now),
        _ready_condition(pod, True, now),
        _condition("ContainersReady", True, now),
        _scheduled_condition(pod, now),
    ], previous) + _extra_conditions(pod)
    status = {"phase": "Running", "conditions": conditions, "containerStatuses": containers,
              **_base_status(pod, host_ip, pod_ip, now)}
    init = _init_statuses(pod, started, running=True)
    if init:
        status["initContainerStatuses"] = init
    return status


def finished_status(pod: Mapping[str, Any], *, host_ip: str, pod_ip: str, started: str,
                    now: str, code: int, restarts: int = 0) -> Object:
    """Succeeded (exit code 0) or Failed: every container terminated with ``code``."""
    uid = pod["metadata"]["uid"]
    containers = []
    for c in (pod.get("spec") or {}).get("containers") or ():
        cid = _container_id(uid, c["name"], restarts)
        containers.append({"name": c["name"], "image": c.get("image", ""),
                           "imageID": _image_id(c.get("image", "")), "containerID": cid,
                           "ready": False, "started": False, "restartCount": restarts,
                           "state": {"terminated": {"exitCode": code,
                                                    "reason": "Completed" if code == 0 else "Error",
                                                    "startedAt": started, "finishedAt": now,
                                                    "containerID": cid}},
                           "lastState": {}})
    previous = (pod.get("status") or {}).get("conditions") or []
    if code == 0:  # upstream's status generators say PodCompleted only for Succeeded
        initialized = _condition("Initialized", True, now, "PodCompleted")
        ready = _condition("Ready", False, now, "PodCompleted")
        containers_ready = _condition("ContainersReady", False, now, "PodCompleted")
    else:
        names = " ".join(c["name"] for c in containers)
        unready = f"containers with unready status: [{names}]"
        initialized = _condition("Initialized", True, now)
        ready = _condition("Ready", False, now, "ContainersNotReady", unready)
        containers_ready = _condition("ContainersReady", False, now, "ContainersNotReady", unready)
    conditions = _keep_transition([
        _condition("PodReadyToStartContainers", False, now), initialized, ready,
        containers_ready, _scheduled_condition(pod, now),
    ], previous) + _extra_conditions(pod)
    status = {"phase": "Succeeded" if code == 0 else "Failed", "conditions": conditions,
              "containerStatuses": containers, **_base_status(pod, host_ip, pod_ip, now)}
    init = _init_statuses(pod, started, running=False)
    if init:
        status["initContainerStatuses"] = init
    return status


class PodIPs:
    """Per-node pod IP allocation: the lowest free address of the node's CIDR (from .2)."""

    def __init__(self) -> None:
        self._used: dict[str, set[int]] = {}
        self._by_pod: dict[str, tuple[str, int, str]] = {}  # uid → (node, slot, ip)

    def get(self, uid: str) -> str | None:
        held = self._by_pod.get(uid)
        return held[2] if held else None

    def allocate(self, node: str, cidr: str, uid: str) -> str:
        held = self._by_pod.get(uid)
        if held is not None:
            return held[2]
        network = ipaddress.ip_network(cidr, strict=False)
        used = self._used.setdefault(node, set())
        slot = 2
        while slot in used:
            slot += 1
        if slot >= network.num_addresses - 1:
            raise RuntimeError(f"node {node}: pod CIDR {cidr} is full")
        ip = str(network.network_address + slot)
        used.add(slot)
        self._by_pod[uid] = (node, slot, ip)
        return ip

    def mark(self, node: str, cidr: str, uid: str, ip: str) -> None:
        """Record an address a pod already has (after a restart of the hollow nodes)."""
        if uid in self._by_pod:
            return
        try:
            network = ipaddress.ip_network(cidr, strict=False)
            slot = int(ipaddress.ip_address(ip)) - int(network.network_address)
        except ValueError:
            return
        if 0 < slot < network.num_addresses:
            self._used.setdefault(node, set()).add(slot)
            self._by_pod[uid] = (node, slot, ip)

    def release(self, uid: str) -> None:
        held = self._by_pod.pop(uid, None)
        if held is not None:
            self._used.get(held[0], set()).discard(held[1])


# -- the simulation ------------------------------------------------------------------------------


@dataclass
class _Run:
    """What this process reported for one pod's current run."""

    started: float
    restarts: int = 0
    finished: bool = False


@dataclass
class _Node:
    name: str
    index: int
    obj: Object = field(default_factory=dict)  # the latest Node we know
    lease: Object | None = None


class HollowNodes:
    """``count`` simulated nodes named ``<prefix>-<start_index + i>`` behind one client."""

    def __init__(self, client: Client, *, count: int, prefix: str = "hollow-node",
                 start_index: int = 0, shape: NodeShape | None = None,
                 complete_after: float | None = None, delete_nodes_on_stop: bool = False,
                 max_in_flight: int = MAX_IN_FLIGHT,
                 lease_interval: float = LEASE_RENEW_INTERVAL,
                 status_report_interval: float = NODE_STATUS_REPORT_FREQUENCY):
        if count < 1:
            raise ValueError("count must be at least 1")
        self.client = client
        self.prefix = prefix
        self.shape = shape or NodeShape()
        self.complete_after = complete_after
        self.delete_nodes_on_stop = delete_nodes_on_stop
        self.max_in_flight = max_in_flight
        self.lease_interval = lease_interval
        self.status_report_interval = status_report_interval
        self.nodes: dict[str, _Node] = {}
        for i in range(start_index, start_index + count):
            name = node_name(prefix, i)
            self.nodes[name] = _Node(name, i)
        self.pod_informer = SharedInformer(client, "v1", "pods", field_selector="spec.nodeName!=",
                                           transform=strip_managed_fields)
        self.node_informer = SharedInformer(client, "v1", "nodes",
                                            label_selector=f"{GROUP_LABEL}={prefix}")
        limiter = ItemExponentialFailureRateLimiter(0.05, 30.0)
        self.pod_queue: RateLimitingQueue[str] = RateLimitingQueue(limiter, name="hollow-pods")
        self.node_queue: RateLimitingQueue[str] = RateLimitingQueue(
            ItemExponentialFailureRateLimiter(0.05, 30.0), name="hollow-node-status")
        self.ips = PodIPs()
        self.registered = asyncio.Event()
        self._runs: dict[str, _Run] = {}  # pod uid → run
        self._delete_at: dict[str, float] = {}  # pod uid → loop time to finish its deletion
        self._lease_slots = asyncio.Semaphore(max(4, max_in_flight // 2))
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = False
        self.pod_informer.add_event_handler(self._on_pod, lambda _, new: self._on_pod(new),
                                            self._on_pod_deleted)
        self.node_informer.add_event_handler(self._on_node, lambda _, new: self._on_node(new))

    @property
    def node_names(self) -> list[str]:
        return list(self.nodes)

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event) -> None:
        """Register the nodes, then simulate them until ``stop_event`` is set."""
        try:
            await self.start()
            await stop_event.wait()
        finally:
            await self.stop()

    async def start(self) -> None:
        await self._register_all()
        self.registered.set()
        # Nodes first: a pod's address comes from its node's spec.podCIDR.
        self.node_informer.start()
        await self.node_informer.wait_for_sync()
        self.pod_informer.start()
        await self.pod_informer.wait_for_sync()
        spawn = asyncio.create_task
        self._tasks = [
            spawn(run_workers("hollow-pods", self.pod_queue, self._sync_pod, self.max_in_flight)),
            spawn(run_workers("hollow-node-status", self.node_queue, self._report_status, 4)),
            spawn(self._spread(self.lease_interval, self._renew_lease), name="hollow leases"),
            spawn(self._spread(self.status_report_interval, self.node_queue.add,
                               delay_first=True), name="hollow node status"),
        ]
        log.info("hollow nodes running", extra={"prefix": self.prefix, "count": len(self.nodes)})

    async def stop(self) -> None:
        """Stop simulating; the Nodes stay unless ``delete_nodes_on_stop``."""
        if self._stopped:
            return
        self._stopped = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.pod_queue.shut_down()
        self.node_queue.shut_down()
        await asyncio.gather(self.pod_informer.stop(), self.node_informer.stop())
        if self.delete_nodes_on_stop:
            await self._bounded(self._delete_node, list(self.nodes))

    async def _bounded(self, action: Callable[[str], Awaitable[None]], names: list[str]) -> None:
        slots = asyncio.Semaphore(self.max_in_flight)

        async def one(name: str) -> None:
            async with slots:
                await action(name)
        await asyncio.gather(*(one(n) for n in names))

    # -- registration --------------------------------------------------------------------------
    async def _register_all(self) -> None:
        await self._bounded(self._register, list(self.nodes))

    async def _register(self, name: str) -> None:
        """Create the Node or, when it exists, bring its labels and status to ours (as the
        kubelet does on restart), then make sure its Lease exists."""
        node = self.nodes[name]
        now = now_rfc3339()
        wanted = node_object(name, node.index, self.shape, self.prefix, now)
        while True:
            try:
                node.obj = await self.client.create("v1", "nodes", wanted)
                break
            except ApiError as e:
                if not e.already_exists:
                    raise
            try:
                existing = await self.client.get("v1", "nodes", name)
            except ApiError as e:
                if e.not_found:
                    continue  # deleted in between: create again
                raise
            labels = existing["metadata"].get("labels") or {}
            missing = {k: v for k, v in wanted["metadata"]["labels"].items() if labels.get(k) != v}
            if missing:
                existing = await self.client.patch("v1", "nodes", name,
                                                   {"metadata": {"labels": missing}})
            node.obj = existing
            await self._write_node_status(node)
            break
        await self._renew_lease(name)

    async def _delete_node(self, name: str) -> None:
        for api_version, resource, namespace in (("v1", "nodes", None),
                                                 ("coordination.k8s.io/v1", "leases",
                                                  LEASE_NAMESPACE)):
            try:
                await self.client.delete(api_version, resource, name, namespace=namespace)
            except ApiError as e:
                if not e.not_found:
                    log.warning("deleting %s %s: %s", resource, name, e)

    # -- node status and leases ----------------------------------------------------------------
    def _on_node(self, obj: Object) -> None:
        node = self.nodes.get(obj["metadata"]["name"])
        if node is None:
            return
        node.obj = obj
        if conditions_differ(obj):
            self.node_queue.add(node.name)

    async def _report_status(self, name: str) -> None:
        node = self.nodes[name]
        await self._write_node_status(node)

    async def _write_node_status(self, node: _Node) -> None:
        status = node_status(node.name, node.index, self.shape, now_rfc3339(),
                             previous=node.obj.get("status"))
        try:
            node.obj = await self.client.patch("v1", "nodes", node.name, {"status": status},
                                               subresource="status")
        except ApiError as e:
            if e.not_found:
                log.warning("node %s was deleted; not reporting its status", node.name)
                return
            raise

    async def _renew_lease(self, name: str) -> None:
        node = self.nodes[name]
        if not node.obj.get("metadata", {}).get("uid"):
            return
        async with self._lease_slots:
            try:
                await self._try_renew(node)
            except (ApiError, OSError, asyncio.TimeoutError) as e:
                node.lease = None  # read it afresh next time
                log.warning("renewing the lease of %s failed: %r", name, e)

    async def _try_renew(self, node: _Node) -> None:
        if node.lease is None:
            try:
                node.lease = await self.client.create("coordination.k8s.io/v1", "leases",
                                                      lease_object(node.obj))
                return
            except ApiError as e:
                if not e.already_exists:
                    raise
            node.lease = await self.client.get("coordination.k8s.io/v1", "leases", node.name,
                                               namespace=LEASE_NAMESPACE)
        lease = copy.deepcopy(node.lease)
        wanted = lease_object(node.obj)
        lease["spec"].update(wanted["spec"])
        lease["metadata"]["ownerReferences"] = wanted["metadata"]["ownerReferences"]
        try:
            node.lease = await self.client.update("coordination.k8s.io/v1", "leases", lease)
        except ApiError as e:
            if e.conflict or e.not_found:
                node.lease = None
                await self._try_renew(node)
                return
            raise

    async def _spread(self, interval: float, action: Callable[[str], Any], *,
                      delay_first: bool = False) -> None:
        """Call ``action(node)`` for every node once per ``interval``, the turns spread evenly
        over it (1,000 nodes every 10 s: one every 10 ms, not a burst of 1,000)."""
        loop = asyncio.get_running_loop()
        names = self.node_names
        step = interval / len(names)
        start = loop.time() + (interval if delay_first else step)
        turn = 0
        pending: set[asyncio.Task[Any]] = set()
        busy: set[str] = set()
        try:
            while True:
                now = loop.time()
                while start + turn * step <= now:
                    name = names[turn % len(names)]
                    turn += 1
                    result = action(name)
                    if asyncio.iscoroutine(result):
                        if name in busy:  # the last turn is still under way: skip this one
                            result.close()
                            continue
                        busy.add(name)
                        task = asyncio.create_task(result)
                        pending.add(task)
                        task.add_done_callback(lambda t, n=name: (pending.discard(t),
                                                                  busy.discard(n)))
                await asyncio.sleep(max(start + turn * step - loop.time(), _MIN_TICK))
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # -- pods ----------------------------------------------------------------------------------
    def _ours(self, pod: Object) -> _Node | None:
        return self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")

    def _on_pod(self, pod: Object) -> None:
        node = self._ours(pod)
        if node is None:
            return
        status = pod.get("status") or {}
        if status.get("podIP") and status.get("phase") not in _TERMINAL:
            self.ips.mark(node.name, self._pod_cidr(node), pod["metadata"]["uid"],
                          status["podIP"])
        self.pod_queue.add(object_key(pod))

    def _on_pod_deleted(self, pod: Object) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        self._runs.pop(uid, None)
        self._delete_at.pop(uid, None)
        self.ips.release(uid)

    def _pod_cidr(self, node: _Node) -> str:
        return (node.obj.get("spec") or {}).get("podCIDR") or fake_pod_cidr(node.index)

    def _host_ip(self, node: _Node) -> str:
        return node_internal_ip(node.index)

    async def _sync_pod(self, key: str) -> None:
        pod = self.pod_informer.indexer.get(key)
        node = self._ours(pod) if pod is not None else None
        if pod is None or node is None:
            return
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            await self._finish_deletion(key, pod)
            return
        if (pod.get("status") or {}).get("phase") in _TERMINAL:
            self.ips.release(uid)
            return
        run = self._runs.get(uid) or self._adopt(pod)
        if run is None:
            run = _Run(started=time.time())
            if not await self._write_running(pod, node, run):
                return
            self._runs[uid] = run
        if run.finished:
            return
        seconds = run_seconds(pod, self.complete_after)
        if seconds is None:
            return
        remaining = run.started + seconds - time.time()
        if remaining > 0:
            self.pod_queue.add_after(key, remaining)
            return
        await self._complete(key, pod, node, run)

    def _adopt(self, pod: Object) -> _Run | None:
        """A pod already running by an earlier life of these hollow nodes (or of this pod's
        kubelet): carry on from its status."""
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        names = {c["name"] for c in (pod.get("spec") or {}).get("containers") or ()}
        if status.get("phase") != "Running" or {s.get("name") for s in statuses} != names:
            return None
        if not all("running" in (s.get("state") or {}) and s.get("ready") for s in statuses):
            return None
        started = [parse_time(s["state"]["running"].get("startedAt")) for s in statuses]
        run = _Run(started=min((t for t in started if t is not None), default=time.time()),
                   restarts=max(s.get("restartCount") or 0 for s in statuses))
        self._runs[pod["metadata"]["uid"]] = run
        return run

    async def _write_running(self, pod: Object, node: _Node, run: _Run,
                             last_exit: tuple[int, str, str] | None = None) -> bool:
        uid = pod["metadata"]["uid"]
        host_ip = self._host_ip(node)
        pod_ip = (host_ip if (pod.get("spec") or {}).get("hostNetwork")
                  else self.ips.allocate(node.name, self._pod_cidr(node), uid))
        status = running_status(pod, host_ip=host_ip, pod_ip=pod_ip,
                                started=now_rfc3339(run.started), now=now_rfc3339(),
                                restarts=run.restarts, last_exit=last_exit)
        return await self._patch_status(pod, status)

    async def _complete(self, key: str, pod: Object, node: _Node, run: _Run) -> None:
        """The pod's run is over: it succeeds, fails, or (OnFailure) runs again."""
        code = exit_code(pod)
        uid = pod["metadata"]["uid"]
        if code != 0 and (pod.get("spec") or {}).get("restartPolicy") == "OnFailure":
            previous = (code, now_rfc3339(run.started), now_rfc3339())
            again = _Run(started=time.time(), restarts=run.restarts + 1)
            if await self._write_running(pod, node, again, last_exit=previous):
                self._runs[uid] = again
                self.pod_queue.add_after(key, run_seconds(pod, self.complete_after) or 0)
            return
        host_ip = self._host_ip(node)
        pod_ip = self.ips.get(uid) or (pod.get("status") or {}).get("podIP") or host_ip
        status = finished_status(pod, host_ip=host_ip, pod_ip=pod_ip,
                                 started=now_rfc3339(run.started), now=now_rfc3339(),
                                 code=code, restarts=run.restarts)
        if await self._patch_status(pod, status):
            run.finished = True
            self.ips.release(uid)

    async def _patch_status(self, pod: Object, status: Object) -> bool:
        """Write the pod's status; False when the pod is gone or was replaced (its uid in the
        patch is a precondition)."""
        meta = pod["metadata"]
        try:
            await self.client.patch("v1", "pods", meta["name"],
                                    {"metadata": {"uid": meta["uid"]}, "status": status},
                                    namespace=meta["namespace"], subresource="status")
            return True
        except ApiError as e:
            if e.not_found or e.conflict:
                return False
            raise

    async def _finish_deletion(self, key: str, pod: Object) -> None:
        """As the kubelet: once the containers are stopped (here: after min(grace, 1 s)),
        delete the pod for good with grace 0 and the pod's uid as precondition."""
        meta = pod["metadata"]
        loop = asyncio.get_running_loop()
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        due = self._delete_at.setdefault(meta["uid"], loop.time() + min(grace, MAX_DELETE_DELAY))
        if due > loop.time():
            self.pod_queue.add_after(key, due - loop.time())
            return
        try:
            await self.client.delete("v1", "pods", meta["name"], namespace=meta["namespace"],
                                     grace_period_seconds=0,
                                     preconditions=Preconditions(uid=meta["uid"]))
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise
        self.ips.release(meta["uid"])


async def run_hollow_nodes(kubeconfig_path: str | os.PathLike[str], stop_event: asyncio.Event,
                           *, count: int, prefix: str = "hollow-node", start_index: int = 0,
                           shape: NodeShape | None = None, complete_after: float | None = None,
                           delete_nodes_on_stop: bool = False,
                           max_in_flight: int = MAX_IN_FLIGHT) -> None:
    """The ``sampan hollow-nodes`` entry point: simulate ``count`` nodes until ``stop_event``."""
    config = load_kubeconfig(kubeconfig_path)
    config.user_agent = "sampan-hollow-node"
    async with Client(config, max_connections=max_in_flight * 2 + 8) as client:
        nodes = HollowNodes(client, count=count, prefix=prefix, start_index=start_index,
                            shape=shape, complete_after=complete_after,
                            delete_nodes_on_stop=delete_nodes_on_stop,
                            max_in_flight=max_in_flight)
        await nodes.run(stop_event)

