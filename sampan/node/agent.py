"""The node agent: Sampan's kubelet.

    sampan agent --kubeconfig K --node-name N --data-dir DIR

It registers its Node and keeps it fresh (status, Lease), watches the pods bound to it and
gives each a worker (``podworkers.py``) that makes the runtime match the spec. A relist loop
(the kubelet's PLEG) notices containers that changed on their own — exited, OOM-killed — and
wakes their pods' workers. The status manager writes each pod's status when it changes. The
agent's HTTPS server (``server.py``) serves logs, exec, attach, port-forward and stats to the
API server. Everything that runs survives the agent: a restarted agent adopts what it finds.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.client import ApiError, Client, InformerFactory, SharedInformer, strip_managed_fields
from sampan.client.events import EventRecorder
from sampan.client.leaderelection import micro_time
from sampan.controllers.util import now_rfc3339
from sampan.node import containers as cfg
from sampan.node import nodestatus
from sampan.node.cri import ContainerStatus, CRIError, Sandbox, State
from sampan.node.hooks import HookRunner
from sampan.node.podworkers import Backoff, PodRuntime, PodWorker
from sampan.node.status import PodView, pod_status

log = logging.getLogger(__name__)

Object = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
LEASE_RENEW_INTERVAL = 10.0
NODE_STATUS_UPDATE_FREQUENCY = 10.0
NODE_STATUS_REPORT_FREQUENCY = 300.0
RELIST_PERIOD = 1.0
HOUSEKEEPING_PERIOD = 10.0
IMAGE_GC_PERIOD = 300.0
VOLUME_REFRESH_SECONDS = 60.0
SHUTDOWN_GRACE_CAP = 10.0  # a node shutdown waits at most this long for each container


@dataclass
class AgentConfig:
    node_name: str
    data_dir: Path
    run_dir: Path
    node_ip: str = ""
    kubelet_port: int = 10250
    cgroup_root: str = ""
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    pod_cidr: str = ""                     # overrides the node's spec.podCIDR (standalone)
    cluster_cidrs: list[str] = field(default_factory=lambda: ["10.42.0.0/16"])
    service_cidrs: list[str] = field(default_factory=lambda: ["10.43.0.0/16"])
    allowed_host_paths: list[str] | None = None
    ca_file: Path | None = None
    bridge: str = "sampan0"
    insecure_registries: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    register_taints: list[Object] = field(default_factory=list)
    sync_frequency: float = VOLUME_REFRESH_SECONDS
    shutdown_on_exit: bool = False
    proxy: bool = True       # run the service proxy for this node
    proxy_mode: str = "auto"  # nftables, or iptables where nftables is missing
    dns_server: bool = True  # serve cluster DNS on the pod gateway (kube-dns's endpoint here)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.run_dir = Path(self.run_dir)
        if not self.cgroup_root:
            self.cgroup_root = f"/sampan/{self.node_name}"


class StatusManager:
    """Writes a pod's status when what the agent would write differs from what is there."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self._last: dict[str, Object] = {}

    async def set_status(self, pod: Object, view: PodView, *, terminal: bool = False) -> Object:
        now = now_rfc3339()
        status = pod_status(pod, view, host_ip=self.agent.node_ip, now=now, terminal=terminal)
        uid = pod["metadata"]["uid"]
        # Conditions the agent writes carry lastProbeTime null, as the API server returns them:
        # the dicts compare as they are.
        if status == self._last.get(uid) and status == pod.get("status"):
            return status
        meta = pod["metadata"]
        try:
            updated = await self.agent.client.patch(
                "v1", "pods", meta["name"], {"metadata": {"uid": uid}, "status": status},
                namespace=meta.get("namespace"), subresource="status")
        except ApiError as e:
            if e.code in (404, 409, 422):
                log.info("status of pod %s/%s not written: %s", meta.get("namespace"),
                         meta["name"], e)
                return status
            raise
        self._last[uid] = status
        worker = self.agent.workers.get(uid)
        if worker is not None and updated.get("metadata", {}).get("uid") == uid:
            # Later passes compare with what was written, not the informer's older copy.
            worker.pod = _newer(worker.pod, updated)
        return status

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)


def _newer(current: Object, updated: Object) -> Object:
    try:
        if int(updated["metadata"]["resourceVersion"]) >= int(current["metadata"]["resourceVersion"]):
            return updated
    except (KeyError, ValueError):
        pass
    return current


class Agent:
    def __init__(self, client: Client, config: AgentConfig, *, runtime: Any, images: Any,
                 network: Any, volumes: Any, probes: Any = None, server_factory: Any = None,
                 stats: Any = None, envvars: Any = None, log_rotator: Any = None,
                 image_gc: Any = None, node_services: Any = None):
        self.client = client
        self.config = config
        self.node_name = config.node_name
        self.node_ip = config.node_ip or nodestatus.detect_node_ip()
        self.runtime = runtime
        self.images = images
        self.network = network
        self.volumes = volumes
        self.envvars = envvars
        self.env_lookup: Any = None
        self.probes = probes if probes is not None else _NoProbes()
        self.stats = stats
        self.log_rotator = log_rotator
        self.image_gc = image_gc
        self._server_factory = server_factory
        self.server: Any = None
        self.recorder = EventRecorder(client, "kubelet", host=config.node_name, writers=4)
        self.status_manager = StatusManager(self)
        self.hooks = HookRunner(runtime, self._pod_ip)
        self.backoff = Backoff()
        self.backoff_marks: dict[str, float] = {}
        self.workers: dict[str, PodWorker] = {}
        self._finished: dict[str, float] = {}
        self.cluster_dns = list(config.cluster_dns)
        self.cluster_domain = config.cluster_domain
        self.cgroup_root = config.cgroup_root
        self.volume_refresh_seconds = config.sync_frequency
        self.node: Object | None = None
        self._network_ready = False
        self._pod_cidrs: list[str] = []
        self._runtime_state: dict[str, PodRuntime] = {}
        self._fingerprints: dict[str, tuple] = {}
        self._relist_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._host_searches: list[str] | None = None
        self.pods = SharedInformer(client, "v1", "pods",
                                   field_selector=f"spec.nodeName={config.node_name}",
                                   transform=strip_managed_fields)
        self.nodes = SharedInformer(client, "v1", "nodes", transform=strip_managed_fields)
        # One cache per resource for the agent, its service proxy and its DNS server.
        self.informers = InformerFactory(client, transform=strip_managed_fields)
        self.services = self.informers.informer("v1", "services")
        self.node_services = node_services  # sampan.node.services.NodeServices, or None
        self.started = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def start(self) -> None:
        cfg_ = self.config
        cfg_.data_dir.mkdir(parents=True, exist_ok=True)
        (cfg_.data_dir / "pods").mkdir(exist_ok=True)
        (cfg_.data_dir / "logs").mkdir(exist_ok=True)
        await self.runtime.start()
        await self.register_node()
        self.nodes.add_event_handler(on_add=self._node_changed,
                                     on_update=lambda old, new: self._node_changed(new),
                                     on_delete=lambda obj: self._peers_changed())
        self.pods.add_event_handler(on_add=self._pod_added,
                                    on_update=lambda old, new: self._pod_added(new),
                                    on_delete=self._pod_deleted)
        for informer in (self.nodes, self.services, self.pods):
            informer.start()
        await self.nodes.wait_for_sync()
        await self.services.wait_for_sync()
        if self.node_services is not None:
            await self.node_services.start()
            if not self.cluster_dns:  # no --cluster-dns: the cluster's kube-dns Service
                self.cluster_dns = list(self.node_services.cluster_dns_ips)
        await self.relist()
        if self._server_factory is not None:
            self.server = self._server_factory(self)
            await self.server.start()
        if self.stats is not None:
            await self.stats.start()
        loop = asyncio.get_running_loop()
        for coro, name in ((self._lease_loop(), "node lease"),
                           (self._node_status_loop(), "node status"),
                           (self._relist_loop(), "relist"),
                           (self._housekeeping_loop(), "housekeeping")):
            self._tasks.append(loop.create_task(coro, name=name))
        await self.pods.wait_for_sync()
        self.started.set()
        log.info("node agent %s started", self.node_name,
                 extra={"node_ip": self.node_ip, "pods": len(self.pods.indexer)})

    async def close(self) -> None:
        """Stop the agent; containers keep running (a restarted agent adopts them) unless the
        agent was told to shut the node down with it (``shutdown_on_exit``)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in list(self.workers.values()):
            await worker.stop()
        if self.config.shutdown_on_exit:
            try:
                await self.shutdown_node()
            except Exception:
                log.exception("shutting the node down")
        if self.node_services is not None:
            try:
                await self.node_services.close(remove=self.config.shutdown_on_exit)
            except Exception:
                log.exception("stopping the service proxy and DNS")
        for informer in (self.pods, self.nodes):
            await informer.stop()
        await self.informers.stop()
        if self.server is not None:
            await self.server.close()
        if self.stats is not None:
            await self.stats.close()
        await self.hooks.close()
        await self.recorder.close()
        await self.runtime.close()
        if self.config.shutdown_on_exit:
            import shutil

            await asyncio.to_thread(shutil.rmtree, self.config.run_dir, True)

    async def shutdown_node(self, grace_cap: float = SHUTDOWN_GRACE_CAP) -> None:
        """What a node shutdown does (``sampan up`` stopping): every container stopped with
        its grace period (capped), containers, sandboxes and volumes removed, the pod network
        and the node's cgroups gone. The pods stay in the API; the next start runs them again,
        as after a reboot."""
        await self.relist(wake=False)
        running = [(uid, c) for uid, state in self._runtime_state.items() for c in state.running()]
        log.info("shutting the node down", extra={"containers": len(running)})

        async def stop(uid: str, c: ContainerStatus) -> None:
            pod = next((p for p in self.pods.indexer.list() if p["metadata"]["uid"] == uid), None)
            grace = min(float(cfg.grace_period(pod)) if pod else 2.0, grace_cap)
            try:
                await self.runtime.stop_container(c.id, grace)
            except CRIError as e:
                log.warning("stopping container %s: %s", c.id, e)
        await asyncio.gather(*(stop(uid, c) for uid, c in running))
        await self.relist(wake=False)
        for state in list(self._runtime_state.values()):
            await self.remove_pod_runtime(state)
        for uid in await asyncio.to_thread(self.volumes.pods_on_disk):
            await self.volumes.teardown(uid)
        await self.network.close(remove=True)
        from sampan.node.runtime import cgroups

        await asyncio.to_thread(cgroups.remove, self.cgroup_root)
        parent = Path(self.cgroup_root).parent
        while str(parent) not in ("/", ""):
            # "/sampan" of "/sampan/<node>": gone once no other node uses it (rmdir of a
            # busy cgroup fails and leaves it).
            await asyncio.to_thread(_rmdir_cgroup, str(parent))
            parent = parent.parent

    async def remove_pod_runtime(self, state: PodRuntime) -> None:
        """Every container of a pod, then its sandboxes (logs stay)."""
        for history in state.containers.values():
            for c in history:
                try:
                    await self.runtime.remove_container(c.id)
                except CRIError as e:
                    log.warning("removing container %s: %s", c.id, e)
        await self.remove_sandboxes(state.sandboxes)

    async def remove_sandboxes(self, sandboxes: list[Sandbox]) -> None:
        for sandbox in sandboxes:
            try:
                await self.runtime.stop_sandbox(sandbox.id)
                await self.runtime.remove_sandbox(sandbox.id)
            except CRIError as e:
                log.warning("removing sandbox %s: %s", sandbox.id, e)

    # -- node ---------------------------------------------------------------------------------
    def _node_body(self, previous: Object | None) -> Object:
        now = now_rfc3339()
        ready, message = self._readiness()
        prev_status = (previous or {}).get("status") or {}
        return {
            "capacity": nodestatus.capacity(self.config.data_dir),
            "allocatable": nodestatus.allocatable(self.config.data_dir),
            "conditions": nodestatus.conditions(now, prev_status.get("conditions") or [],
                                                nodestatus.pressure(self.config.data_dir),
                                                ready, message),
            "addresses": nodestatus.addresses(self.node_ip, self.node_name),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.kubelet_port}},
            "nodeInfo": nodestatus.node_info(self.runtime_version(), self.node_name),
            "images": nodestatus.images(self.images.list()),
        }

    def runtime_version(self) -> str:
        return getattr(self.runtime, "version", None) or "runc://1"

    def _readiness(self) -> tuple[bool, str]:
        if not self._network_ready:
            return False, ("container runtime network not ready: NetworkReady=false "
                           "reason:NetworkPluginNotReady message:Network plugin returns error: "
                           "the node has no podCIDR")
        return True, ""

    async def register_node(self) -> None:
        name = self.node_name
        try:
            node = await self.client.get("v1", "nodes", name)
        except ApiError as e:
            if e.code != 404:
                raise
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name,
                                 "labels": {**nodestatus.labels(name), **self.config.labels},
                                 "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                                 "volumes.kubernetes.io/controller-managed-"
                                                 "attach-detach": "true"}},
                    "spec": {"taints": self.config.register_taints} if self.config.register_taints
                    else {},
                    "status": self._node_body(None)}
            if self.config.pod_cidr:
                body["spec"]["podCIDR"] = self.config.pod_cidr
                body["spec"]["podCIDRs"] = [self.config.pod_cidr]
            try:
                node = await self.client.create("v1", "nodes", body)
            except ApiError as e2:
                if e2.code != 409:
                    raise
                node = await self.client.get("v1", "nodes", name)
            else:
                log.info("registered node %s", name)
        self.node = node
        await self._update_node_status(force=True)
        await self._maybe_start_network(node)

    async def _update_node_status(self, force: bool = False) -> None:
        node = self.node or {}
        body = self._node_body(node)
        old = node.get("status") or {}
        changed = force or _status_differs(old, body)
        if not changed:
            return
        meta = node.get("metadata") or {}
        labels_patch = {k: v for k, v in nodestatus.labels(self.node_name).items()
                        if (meta.get("labels") or {}).get(k) != v}
        if labels_patch:
            await self.client.patch("v1", "nodes", self.node_name,
                                    {"metadata": {"labels": labels_patch}})
        self.node = await self.client.patch("v1", "nodes", self.node_name, {"status": body},
                                            subresource="status")
        self._last_status_report = time.monotonic()

    async def _node_status_loop(self) -> None:
        self._last_status_report = time.monotonic()
        while True:
            await asyncio.sleep(NODE_STATUS_UPDATE_FREQUENCY)
            try:
                force = time.monotonic() - self._last_status_report >= NODE_STATUS_REPORT_FREQUENCY
                await self._update_node_status(force=force)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("updating node status: %s", e)

    async def _lease_loop(self) -> None:
        while True:
            try:
                await self._renew_lease()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("renewing the node lease: %s", e)
            await asyncio.sleep(LEASE_RENEW_INTERVAL)

    async def _renew_lease(self) -> None:
        name = self.node_name
        try:
            lease = await self.client.get("coordination.k8s.io/v1", "leases", name,
                                          namespace=LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            node = self.node or await self.client.get("v1", "nodes", name)
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": LEASE_NAMESPACE,
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                                      "name": name,
                                                      "uid": node["metadata"]["uid"]}]},
                    "spec": {"holderIdentity": name,
                             "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                             "renewTime": micro_time()}}
            await self.client.create("coordination.k8s.io/v1", "leases", body,
                                     namespace=LEASE_NAMESPACE)
            return
        lease["spec"]["holderIdentity"] = name
        lease["spec"]["leaseDurationSeconds"] = LEASE_DURATION_SECONDS
        lease["spec"]["renewTime"] = micro_time()
        await self.client.update("coordination.k8s.io/v1", "leases", lease,
                                 namespace=LEASE_NAMESPACE)

    def _node_changed(self, node: Object) -> None:
        if node["metadata"]["name"] == self.node_name:
            self.node = node
            asyncio.get_running_loop().create_task(self._maybe_start_network(node))
        self._peers_changed()

    async def _maybe_start_network(self, node: Object) -> None:
        spec = node.get("spec") or {}
        cidrs = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        if self.config.pod_cidr:
            cidrs = [self.config.pod_cidr]
        if not cidrs or cidrs == self._pod_cidrs:
            return
        self._pod_cidrs = cidrs
        await self.network.start(cidrs)
        was_ready = self._network_ready
        if not was_ready:
            # Addresses, veths and pins of sandboxes the runtime no longer has (an agent or
            # machine restart) go before any pod gets a new sandbox.
            live = [s.id for s in await self.runtime.list_sandboxes()]
            await self.network.release_stale(live)
        self._network_ready = True
        log.info("pod network ready", extra={"pod_cidrs": cidrs})
        if self.node_services is not None:
            try:
                await self.node_services.network_ready([str(g.ip) for g in self.network.gateways])
            except Exception:
                log.exception("cluster DNS could not start on the pod gateway")
        self._peers_changed()
        if not was_ready:
            await self._update_node_status(force=True)
            for worker in self.workers.values():
                worker.wake()

    def _peers_changed(self) -> None:
        if not self._network_ready:
            return
        peers = []
        for node in self.nodes.indexer.list():
            if node["metadata"]["name"] == self.node_name:
                continue
            spec = node.get("spec") or {}
            cidrs = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
            ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or ()
                       if a.get("type") == "InternalIP"), None)
            if ip and cidrs:
                peers.append((ip, cidrs))
        task = asyncio.get_running_loop().create_task(self.network.sync_routes(peers))
        task.add_done_callback(_log_failure("syncing routes to other nodes"))

    def network_ready(self) -> bool:
        return self._network_ready

    # -- pods -----------------------------------------------------------------------------------
    def finished(self, uid: str) -> None:
        """A deleted pod's worker is done: later events about it (before the informer sees
        the deletion) start nothing."""
        self._finished[uid] = time.monotonic()
        if len(self._finished) > 4096:
            cutoff = time.monotonic() - 600
            self._finished = {u: t for u, t in self._finished.items() if t > cutoff}

    def _pod_added(self, pod: Object) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._finished and pod["metadata"].get("deletionTimestamp"):
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            self.probes.add_pod(pod)
            worker.start()
        else:
            self.probes.add_pod(pod)
            worker.update(pod)

    def _pod_deleted(self, pod: Object) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.remove()
        else:
            self._orphan(uid)

    async def forget_pod(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self.status_manager.forget(uid)
        self.backoff.forget_prefix(uid)
        self.backoff.forget_prefix("image/" + uid)
        self.backoff.forget_prefix("sandbox/" + uid)
        await asyncio.to_thread(_remove_tree, self.pod_dir(uid))
        await self.relist()

    def _orphan(self, uid: str) -> None:
        """Something of a pod the API server no longer has: remove it like a deleted pod."""
        state = self._runtime_state.get(uid)
        if state is None or uid in self.workers:
            return
        sandbox = state.sandboxes[0] if state.sandboxes else None
        labels = sandbox.config.labels if sandbox else {}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"uid": uid, "name": labels.get(cfg.POD_NAME, uid),
                            "namespace": labels.get(cfg.POD_NAMESPACE, "")},
               "spec": {"terminationGracePeriodSeconds": 2}}
        worker = PodWorker(self, pod)
        worker.removed = True
        self.workers[uid] = worker
        worker.start()

    def pod_runtime(self, uid: str) -> PodRuntime:
        return self._runtime_state.get(uid) or PodRuntime()

    async def refresh_pod(self, uid: str, container_id: str | None = None) -> ContainerStatus | None:
        await self.relist(wake=False)
        if container_id is None:
            return None
        for history in self.pod_runtime(uid).containers.values():
            for c in history:
                if c.id == container_id:
                    return c
        return None

    async def relist(self, wake: bool = True) -> None:
        """The PLEG: what the runtime runs now, grouped by pod; wake pods that changed."""
        async with self._relist_lock:
            sandboxes = await self.runtime.list_sandboxes()
            containers = await self.runtime.list_containers()
            state: dict[str, PodRuntime] = {}
            for s in sorted(sandboxes, key=lambda s: -s.created_at):
                uid = s.config.labels.get(cfg.POD_UID) or s.config.uid
                state.setdefault(uid, PodRuntime()).sandboxes.append(s)
            for c in sorted(containers, key=lambda c: (-c.attempt, -c.created_at)):
                uid = c.labels.get(cfg.POD_UID)
                if not uid:
                    continue
                state.setdefault(uid, PodRuntime()).containers.setdefault(c.name, []).append(c)
            fingerprints = {uid: _fingerprint(p) for uid, p in state.items()}
            changed = {uid for uid in set(fingerprints) | set(self._fingerprints)
                       if fingerprints.get(uid) != self._fingerprints.get(uid)}
            self._runtime_state = state
            self._fingerprints = fingerprints
        if not wake:
            return
        for uid in changed:
            worker = self.workers.get(uid)
            if worker is not None:
                worker.wake()
            elif uid in state and self.pods.has_synced() and self.pods.indexer.get(
                    self._key_of(uid)) is None:
                self._orphan(uid)

    def _key_of(self, uid: str) -> str:
        state = self._runtime_state.get(uid)
        if state and state.sandboxes:
            labels = state.sandboxes[0].config.labels
            return f"{labels.get(cfg.POD_NAMESPACE, '')}/{labels.get(cfg.POD_NAME, '')}"
        for history in (state.containers.values() if state else ()):
            for c in history:
                return f"{c.labels.get(cfg.POD_NAMESPACE, '')}/{c.labels.get(cfg.POD_NAME, '')}"
        return ""

    async def _relist_loop(self) -> None:
        while True:
            await asyncio.sleep(RELIST_PERIOD)
            try:
                await self.relist()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relist failed")

    async def _remove_orphaned_pod_dirs(self) -> None:
        """Volumes of pods that are gone (deleted while the agent was down)."""
        known = {p["metadata"]["uid"] for p in self.pods.indexer.list()} | set(self.workers)
        known |= set(self._runtime_state)
        for uid in await asyncio.to_thread(self.volumes.pods_on_disk):
            if uid not in known:
                log.info("removing the volumes of deleted pod %s", uid)
                await self.volumes.teardown(uid)

    async def _housekeeping_loop(self) -> None:
        last_gc = time.monotonic()
        try:
            await self._remove_orphaned_pod_dirs()
        except Exception:
            log.exception("removing orphaned pod directories")
        while True:
            await asyncio.sleep(HOUSEKEEPING_PERIOD)
            try:
                await self._remove_dead_containers()
                if self.log_rotator is not None:
                    await self.log_rotator.run_once(self._running_containers())
                if self.image_gc is not None and time.monotonic() - last_gc > IMAGE_GC_PERIOD:
                    last_gc = time.monotonic()
                    await self.image_gc.run_once(self.images_in_use())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")

    def _running_containers(self) -> list[ContainerStatus]:
        return [history[0] for state in self._runtime_state.values()
                for history in state.containers.values()
                if history and history[0].state == State.RUNNING]

    def images_in_use(self) -> set[str]:
        used = set()
        for state in self._runtime_state.values():
            for history in state.containers.values():
                for c in history:
                    if c.image_id:
                        used.add(c.image_id)
                    if c.image_ref:
                        used.add(c.image_ref)
        for pod in self.pods.indexer.list():
            for c in list((pod.get("spec") or {}).get("containers") or ()) + list(
                    (pod.get("spec") or {}).get("initContainers") or ()):
                used.add(c.get("image", ""))
        return used

    async def _remove_dead_containers(self) -> None:
        """Keep one exited container per name and pod (for lastState and logs --previous)."""
        for state in list(self._runtime_state.values()):
            for history in state.containers.values():
                for c in history[2:]:  # newest first: keep the latest and the one before
                    if c.state != State.EXITED:
                        continue
                    try:
                        await self.runtime.remove_container(c.id)
                    except CRIError as e:
                        log.warning("removing dead container %s: %s", c.id, e)
            for s in state.sandboxes[1:]:
                if s.state != State.RUNNING:
                    try:
                        await self.runtime.remove_sandbox(s.id)
                    except CRIError as e:
                        log.warning("removing dead sandbox %s: %s", s.id, e)

    # -- what workers ask of the agent ------------------------------------------------------------
    def pod_dir(self, uid: str) -> Path:
        return self.config.data_dir / "pods" / uid

    def log_path(self, pod: Object, container: str, attempt: int) -> Path:
        meta = pod["metadata"]
        d = (self.config.data_dir / "logs" /
             f"{meta.get('namespace', '')}_{meta['name']}_{meta['uid']}" / container)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{attempt}.log"

    def next_attempt(self, pod: Object, container: str) -> int:
        """After a reboot the runtime has forgotten the restart count: the log files remember
        (upstream's calcRestartCountByLogDir)."""
        meta = pod["metadata"]
        d = (self.config.data_dir / "logs" /
             f"{meta.get('namespace', '')}_{meta['name']}_{meta['uid']}" / container)
        best = -1
        try:
            for entry in os.listdir(d):
                stem = entry.split(".", 1)[0]
                if stem.isdigit():
                    best = max(best, int(stem))
        except OSError:
            return 0
        return best + 1

    def read_termination_message(self, pod: Object, spec: Object | None,
                                 c: ContainerStatus) -> str:
        """What the container wrote to its terminationMessagePath, or with
        FallbackToLogsOnError the end of its log when it failed without a message."""
        if spec is None:
            return ""
        message = self.volumes.termination_message(pod["metadata"]["uid"], c.name, c.attempt)
        if not message and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError" \
                and c.exit_code != 0 and c.log_path:
            message = _tail_log(Path(c.log_path), 80, 2048)
        return message

    def host_dns_searches(self) -> list[str]:
        if self._host_searches is None:
            searches: list[str] = []
            try:
                for line in Path("/etc/resolv.conf").read_text().splitlines():
                    parts = line.split()
                    if parts and parts[0] in ("search", "domain"):
                        searches = parts[1:]
            except OSError:
                pass
            self._host_searches = searches
        return self._host_searches

    async def pull_auths(self, pod: Object, ref: str) -> list[dict[str, str]]:
        names = [s.get("name") for s in (pod.get("spec") or {}).get("imagePullSecrets") or ()
                 if s.get("name")]
        if not names:
            return []
        registry = _registry_of(ref)
        secrets = []
        for name in names:
            try:
                secrets.append(await self.client.get("v1", "secrets", name,
                                                     namespace=pod["metadata"].get("namespace")))
            except ApiError as e:
                if e.code != 404:
                    raise
                self.recorder.event({"apiVersion": "v1", "kind": "Pod",
                                     "metadata": pod["metadata"]}, "Warning",
                                    "FailedToRetrieveImagePullSecret",
                                    f'Unable to retrieve some image pull secrets ({name}); '
                                    'attempting to pull the image may not succeed.')
        return cfg.image_pull_auths(secrets, registry)

    async def environment(self, pod: Object, spec: Object, sandbox: Sandbox) -> list[str]:
        """The container's environment: upstream's makeEnvironmentVariables."""
        if self.envvars is None:
            return [f"{e['name']}={e.get('value', '')}" for e in spec.get("env") or ()
                    if "valueFrom" not in e]
        return await self.envvars(self, pod, spec, sandbox)

    def allocatable(self) -> dict[str, str]:
        return (self.node or {}).get("status", {}).get("allocatable") or \
            nodestatus.allocatable(self.config.data_dir)

    def _pod_ip(self, uid: str) -> str | None:
        sandbox = self.pod_runtime(uid).running_sandbox()
        return sandbox.ips[0] if sandbox and sandbox.ips else None

    # -- for the agent server -------------------------------------------------------------------
    def pod(self, namespace: str, name: str) -> Object | None:
        return self.pods.indexer.get(f"{namespace}/{name}")

    def container_id(self, pod_uid: str, container: str, previous: bool = False) -> str | None:
        c = self._container(pod_uid, container, previous)
        return c.id if c else None

    def _container(self, pod_uid: str, container: str, previous: bool) -> ContainerStatus | None:
        history = self.pod_runtime(pod_uid).containers.get(container) or []
        if previous:
            return history[1] if len(history) > 1 else None
        return history[0] if history else None

    def log_path_of(self, pod_uid: str, container: str, previous: bool = False) -> Path | None:
        c = self._container(pod_uid, container, previous)
        return Path(c.log_path) if c and c.log_path else None

    def netns(self, pod_uid: str) -> Path | None:
        sandbox = self.pod_runtime(pod_uid).running_sandbox()
        return sandbox.netns if sandbox else None

    def pod_list(self) -> list[Object]:
        return self.pods.indexer.list()


class Resolver:
    """The agent's pods as the agent server and stats see them (server.PodResolver)."""

    def __init__(self, agent: Agent):
        self.agent = agent

    def pods(self) -> list[Object]:
        return self.agent.pod_list()

    def pod(self, namespace: str, name: str) -> Object | None:
        return self.agent.pod(namespace, name)

    def container_id(self, pod_uid: str, container: str, previous: bool = False) -> str | None:
        return self.agent.container_id(pod_uid, container, previous)

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path | None:
        return self.agent.log_path_of(pod_uid, container, previous)

    def netns(self, pod_uid: str) -> Path | None:
        return self.agent.netns(pod_uid)


class _NoProbes:
    """No probe manager: every container counts as started and ready once it runs."""

    def add_pod(self, pod: Object) -> None: ...
    def remove_pod(self, uid: str) -> None: ...
    def container_started(self, *args: Any, **kw: Any) -> None: ...
    def container_stopped(self, *args: Any) -> None: ...
    def readiness(self, uid: str, name: str) -> bool: return True
    def started(self, uid: str, name: str) -> bool: return True
    def liveness_failed(self, uid: str, name: str, restart: bool = True) -> str | None: return None
    def kill_grace_period(self, uid: str, name: str) -> int | None: return None


def _fingerprint(state: PodRuntime) -> tuple:
    return (tuple((s.id, s.state) for s in state.sandboxes),
            tuple(sorted((c.id, c.state, c.exit_code) for h in state.containers.values()
                         for c in h)))


def _status_differs(old: Object, new: Object) -> bool:
    def strip(status: Object) -> Object:
        out = copy.deepcopy(status)
        for c in out.get("conditions") or ():
            c.pop("lastHeartbeatTime", None)
        for key in ("capacity", "allocatable"):
            # Disk figures move a little all the time; the kubelet reports them when it
            # reports anyway (every 5 minutes) or when something else changed.
            (out.get(key) or {}).pop("ephemeral-storage", None)
        return out
    return strip(old) != strip(new)


def _registry_of(ref: str) -> str:
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _rmdir_cgroup(path: str) -> None:
    from sampan.node.runtime import cgroups

    for root in cgroups.hierarchies():
        try:
            os.rmdir(root / path.strip("/"))
        except OSError:
            pass


def _remove_tree(path: Path) -> None:
    """Remove what is left of a pod's directory (volumes are already unmounted)."""
    import shutil

    if not path.exists():
        return
    # Never follow into anything still mounted.
    with open("/proc/self/mountinfo") as f:
        mounted = [line.split()[4] for line in f]
    prefix = str(path) + "/"
    if any(m.startswith(prefix) for m in mounted):
        log.warning("not removing %s: something under it is still mounted", path)
        return
    shutil.rmtree(path, ignore_errors=True)


def _tail_log(path: Path, lines: int, limit: int) -> str:
    """The last lines of a CRI-format log, messages only."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().splitlines()[-lines:]
    except OSError:
        return ""
    out = []
    for raw in data:
        parts = raw.split(b" ", 3)
        if len(parts) == 4:
            out.append(parts[3] + (b"\n" if parts[2] == b"F" else b""))
    text = b"".join(out)
    return text[-limit:].decode(errors="replace")


def _log_failure(what: str):
    def callback(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: %s", what, task.exception())
    return callback


def decode_secret(secret: Object, key: str) -> str:
    return base64.b64decode((secret.get("data") or {}).get(key, "")).decode()
