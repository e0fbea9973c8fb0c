"""The scheduler: informers feed the cache and the queue; one loop pops a pod, runs the
scheduling cycle synchronously (filter, score, assume, reserve, permit) and starts the binding
cycle as a task, so the next pod is scheduled while many bindings are in flight.

A pod no node fits gets ``PodScheduled=False`` (reason ``Unschedulable``), a
``FailedScheduling`` Warning event with upstream's message, and waits in the queue for a
cluster event that might help.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from sampan.api.selectors import LabelSelector, from_label_selector_object, selector_from_set
from sampan.client.config import load_kubeconfig
from sampan.client.errors import ApiError
from sampan.client.events import EventRecorder
from sampan.client.informer import (NAMESPACE_INDEX, InformerFactory, SharedInformer,
                                    strip_managed_fields)
from sampan.client.leaderelection import (LeaderElectionConfig, default_identity,
                                          run_while_leading)
from sampan.client.rest import Client
from sampan.scheduler import queue as q
from sampan.scheduler.cache import Cache, PodInfo
from sampan.scheduler.framework import (DEFAULT_SCHEDULER_NAME, Code, CycleState, Diagnosis,
                                        FitError, Framework, Handle, PluginSpec, Registry,
                                        Status, num_feasible_nodes_to_find)
from sampan.scheduler.plugins import IN_TREE, default_plugins
from sampan.scheduler.plugins.schedulinggates import GATED_MESSAGE, GATED_REASON

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kube-scheduler"
COMPONENT = "default-scheduler"
MAX_BINDS_IN_FLIGHT = 256
NO_NODES_MESSAGE = "no nodes available to schedule pods"
POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"

SCHEDULE_ATTEMPTS = Counter("scheduler_schedule_attempts_total",
                            "Attempts to schedule pods, by result and profile",
                            ["result", "profile"])
E2E_DURATION = Histogram("scheduler_e2e_scheduling_duration_seconds",
                         "From a pod's first scheduling attempt to its binding (or failure)",
                         ["result", "profile"],
                         buckets=(0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128,
                                  0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384))
ATTEMPT_DURATION = Histogram("scheduler_scheduling_algorithm_duration_seconds",
                             "Scheduling cycle latency (filter + score)",
                             buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                      0.05, 0.1, 0.2, 0.5, 1.0))
PENDING_PODS = Gauge("scheduler_pending_pods", "Pending pods by queue", ["queue"])


@dataclass
class Profile:
    """One ``KubeSchedulerProfile``: pods whose ``spec.schedulerName`` is ``scheduler_name``
    are scheduled with ``plugins`` (the default set when None)."""
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    plugins: list[PluginSpec] | None = None
    plugin_args: dict[str, dict] = field(default_factory=dict)
    percentage_of_nodes_to_score: int = 0


# A scheduler binding hundreds of pods a second records as many ``Scheduled`` events.
EVENT_WRITERS = 8


class NoNodesAvailable(Exception):
    """The cluster has no nodes at all (upstream ErrNoNodesAvailable)."""


def _pod_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether anything but the status (and bookkeeping) changed (upstream isPodUpdated)."""
    if old.get("spec") != new.get("spec"):
        return True
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return om.get("labels") != nm.get("labels") or om.get("annotations") != nm.get("annotations")


def _finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _assigned(pod: dict[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


class Scheduler:
    """Schedules the pods of its profiles. ``run()`` until cancelled (starts its informers);
    tests may also feed ``cache`` / ``queue`` directly and call ``schedule_one``."""

    def __init__(self, client: Client | None, informers: InformerFactory | None = None, *,
                 profiles: Sequence[Profile] | None = None, recorder: EventRecorder | None = None,
                 registry: Registry = IN_TREE, max_binds_in_flight: int = MAX_BINDS_IN_FLIGHT,
                 seed: int | None = None):
        self.client = client
        self.informers = informers if informers is not None else (
            InformerFactory(client, transform=strip_managed_fields) if client is not None else None)
        self.recorder = recorder if recorder is not None or client is None else EventRecorder(
            client, COMPONENT, writers=EVENT_WRITERS)
        self.cache = Cache()
        self.listers: dict[str, Any] = {}
        self.frameworks: dict[str, Framework] = {}
        for profile in profiles or [Profile()]:
            handle = Handle(self.cache, client, self.recorder, self.informers)
            handle.listers = self.listers
            handle.namespace_labels = self._namespace_labels
            handle.default_selector = self._default_selector
            plugins = profile.plugins if profile.plugins is not None else default_plugins(
                profile.plugin_args)
            self.frameworks[profile.scheduler_name] = Framework(
                profile.scheduler_name, registry, plugins, handle,
                percentage_of_nodes_to_score=profile.percentage_of_nodes_to_score)
        self.queue = q.SchedulingQueue(self.frameworks)
        if client is not None:
            self.queue.on_gated = self._mark_gated
        for fw in self.frameworks.values():
            fw.handle.nominator = self.queue
        self.next_start_node_index = 0
        self.max_binds_in_flight = max_binds_in_flight
        self._bind_slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task] = set()
        self._random = random.Random(seed)
        self.scheduled = 0  # pods bound so far

    # -- informers ----------------------------------------------------------------------------
    def _namespace_labels(self, namespace: str) -> dict:
        lister = self.listers.get("namespaces")
        ns = lister.get(namespace) if lister is not None else None
        return ((ns or {}).get("metadata") or {}).get("labels") or {}

    def _default_selector(self, pod: PodInfo) -> LabelSelector | None:
        """``helper.DefaultSelector``: what selects the pod (services, its controller)."""
        requirements = []
        services = self.listers.get("services")
        if services is not None:
            for svc in services.by_index(NAMESPACE_INDEX, pod.namespace):
                selector = (svc.get("spec") or {}).get("selector")
                if selector and selector_from_set(selector).matches(pod.labels):
                    requirements.extend(selector_from_set(selector).requirements)
        for ref in (pod.pod.get("metadata") or {}).get("ownerReferences") or []:
            if not ref.get("controller"):
                continue
            resource = {"ReplicaSet": "replicasets", "StatefulSet": "statefulsets",
                        "ReplicationController": "replicationcontrollers"}.get(ref.get("kind"))
            lister = self.listers.get(resource) if resource else None
            owner = lister.get(f"{pod.namespace}/{ref.get('name')}") if lister else None
            if owner is None:
                continue
            raw = (owner.get("spec") or {}).get("selector")
            try:
                selector = (selector_from_set(raw) if resource == "replicationcontrollers"
                            else from_label_selector_object(raw))
            except Exception:
                continue
            requirements.extend(selector.requirements)
        return LabelSelector(requirements) if requirements else None

    def _setup_informers(self) -> list[SharedInformer]:
        assert self.client is not None and self.informers is not None
        pods = SharedInformer(self.client, "v1", "pods", field_selector=POD_FIELD_SELECTOR,
                              transform=strip_managed_fields)
        pods.add_event_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        nodes = self.informers.informer("v1", "nodes")
        nodes.add_event_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        watched = [pods, nodes]
        for api_version, resource, event in (
                ("v1", "persistentvolumeclaims", q.PVC_CHANGE),
                ("v1", "persistentvolumes", q.PV_CHANGE),
                ("storage.k8s.io/v1", "storageclasses", q.STORAGE_CLASS_CHANGE),
                ("policy/v1", "poddisruptionbudgets", None), ("v1", "namespaces", None),
                ("v1", "services", None), ("apps/v1", "replicasets", None),
                ("apps/v1", "statefulsets", None), ("v1", "replicationcontrollers", None)):
            informer = self.informers.informer(api_version, resource)
            self.listers[resource] = informer.indexer
            if event is not None:
                informer.add_event_handler(lambda o, e=event: self.queue.on_event(e),
                                           lambda o, n, e=event: self.queue.on_event(e),
                                           lambda o, e=event: self.queue.on_event(e))
            watched.append(informer)
        self._pod_informer = pods
        return watched

    def _responsible(self, pod: dict[str, Any]) -> bool:
        return ((pod.get("spec") or {}).get("schedulerName")
                or DEFAULT_SCHEDULER_NAME) in self.frameworks

    def _on_pod_add(self, pod: dict[str, Any]) -> None:
        if _finished(pod):
            return
        if _assigned(pod):
            self.cache.add_pod(pod)
            self.queue.on_event(q.POD_ADD)
        elif self._responsible(pod):
            self.queue.add(PodInfo(pod))

    def _on_pod_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if _finished(new):
            self._on_pod_delete(new)
            return
        if _assigned(new):
            key = PodInfo(new).key
            self.cache.update_pod(new)
            if not _assigned(old):  # bound: an assigned pod appeared
                self.queue.delete(key)
                self.queue.on_event(q.POD_ADD)
            elif _pod_changed(old, new):
                self.queue.on_event(q.POD_UPDATE)
            return
        if not self._responsible(new):
            return
        if _pod_changed(old, new):
            self.queue.update(PodInfo(new))
        else:
            self.queue.refresh(PodInfo(new))

    def _on_pod_delete(self, pod: dict[str, Any]) -> None:
        key = PodInfo(pod).key
        self.queue.delete(key)
        if key in self.cache.pods:
            self.cache.remove_pod(key)
            self.queue.on_event(q.POD_DELETE)

    def _on_node_add(self, node: dict[str, Any]) -> None:
        self.cache.add_node(node)
        self.queue.on_event(q.NODE_ADD)

    def _on_node_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.cache.update_node(new)
        for event in node_update_events(old, new):
            self.queue.on_event(event)

    def _on_node_delete(self, node: dict[str, Any]) -> None:
        self.cache.remove_node(node["metadata"]["name"])
        self.queue.on_event(q.NODE_DELETE)

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Start informers, wait for them, schedule until cancelled."""
        self._bind_slots = asyncio.Semaphore(self.max_binds_in_flight)
        watched = self._setup_informers() if self.client is not None else []
        for informer in watched:
            informer.start()
        background = [asyncio.create_task(self.queue.run(), name="scheduling queue"),
                      asyncio.create_task(self._housekeeping(), name="scheduler housekeeping")]
        try:
            for informer in watched:
                await informer.wait_for_sync()
            log.info("scheduler started", extra={"profiles": list(self.frameworks)})
            await self.schedule_forever()
        finally:
            for task in [*background, *self._tasks]:
                task.cancel()
            await asyncio.gather(*background, *self._tasks, return_exceptions=True)
            await asyncio.gather(*(i.stop() for i in watched), return_exceptions=True)
            if self.recorder is not None:
                await self.recorder.close()

    async def schedule_forever(self) -> None:
        if self._bind_slots is None:
            self._bind_slots = asyncio.Semaphore(self.max_binds_in_flight)
        while True:
            await self._bind_slots.acquire()
            try:
                qpi = await self.queue.pop()
            except BaseException:
                self._bind_slots.release()
                raise
            try:
                self.schedule_one(qpi)
            except Exception:
                log.exception("scheduling %s failed", qpi.key)
                self._release()
                self.queue.requeue(qpi, self.queue.scheduling_cycle, error=True)
            await asyncio.sleep(0)  # let informer events and bindings run between pods

    def _release(self) -> None:
        if self._bind_slots is not None:
            self._bind_slots.release()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for key in self.cache.cleanup_assumed():
                log.warning("assumed pod %s expired without its binding showing up", key)
            for name, count in self.queue.pending().items():
                PENDING_PODS.labels(name).set(count)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the scheduling cycle -------------------------------------------------------------------
    def schedule_pod(self, fw: Framework, state: CycleState, pod: PodInfo) -> str:
        """Filter and score: the chosen node's name, or FitError."""
        num_nodes = self.cache.node_count()
        if num_nodes == 0:
            raise NoNodesAvailable(NO_NODES_MESSAGE)
        slots = self.cache.node_slots()
        status = fw.run_pre_filter(state, pod)
        if status.code == Code.ERROR:
            raise RuntimeError(f"running PreFilter plugin {status.plugin!r}: {status.message}")
        if not status.success:
            diagnosis = Diagnosis({int(s): status for s in slots.tolist()}, {status.plugin},
                                  pre_filter_msg=status.message)
            raise FitError(pod, num_nodes, diagnosis)
        start = self.next_start_node_index % num_nodes
        order = np.roll(slots, -start) if start else slots
        codes, table = fw.run_filters(state, pod, order)
        feasible = np.flatnonzero(codes == 0)
        if len(feasible) == 0:
            statuses = {int(order[i]): table[c - 1] for i, c in enumerate(codes.tolist())}
            self.next_start_node_index = start
            raise FitError(pod, num_nodes, Diagnosis(
                statuses, {s.plugin for s in table if s.plugin}))
        wanted = num_feasible_nodes_to_find(num_nodes, fw.percentage_of_nodes_to_score)
        if len(feasible) > wanted:
            feasible = feasible[:wanted]
            processed = int(feasible[-1]) + 1
        else:
            processed = num_nodes
        self.next_start_node_index = (start + processed) % num_nodes
        candidates = order[feasible]
        if len(candidates) == 1:
            return self.cache.slot_infos[int(candidates[0])].name
        scores = fw.run_scores(state, pod, candidates)
        best = np.flatnonzero(scores == scores.max())
        pick = best[0] if len(best) == 1 else best[self._random.randrange(len(best))]
        return self.cache.slot_infos[int(candidates[pick])].name

    def schedule_one(self, qpi: q.QueuedPodInfo) -> None:
        """One scheduling cycle; the binding cycle continues in a task."""
        pod = qpi.pod
        fw = self.frameworks.get(pod.spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME)
        if fw is None or _assigned(pod.pod) or pod.terminating:  # upstream skipPodSchedule
            self.queue.done(pod.key)
            self._release()
            return
        cycle = self.queue.scheduling_cycle
        state = CycleState()
        started = time.monotonic()
        try:
            node_name = self.schedule_pod(fw, state, pod)
        except FitError as fit:
            ATTEMPT_DURATION.observe(time.monotonic() - started)
            nominated = None
            if fw.post_filter:
                nominated, status = fw.run_post_filter(state, pod, fit.diagnosis.node_statuses)
                if status.reasons and not status.success:
                    fit.diagnosis.post_filter_msg = status.message
            self._fail(fw, qpi, cycle, str(fit), "Unschedulable",
                       fit.diagnosis.unschedulable_plugins, nominated=nominated)
            return
        except NoNodesAvailable as e:
            self._fail(fw, qpi, cycle, str(e), "Unschedulable", set())
            return
        except Exception as e:
            log.exception("scheduling cycle of %s failed", pod.key)
            self._fail(fw, qpi, cycle, str(e), "SchedulerError", set(), error=True)
            return
        ATTEMPT_DURATION.observe(time.monotonic() - started)
        self.cache.assume_pod(pod, node_name)
        status = fw.run_reserve(state, pod, node_name)
        if status.success:
            status, wait = fw.run_permit(state, pod, node_name)
        else:
            wait = 0.0
        if status.code not in (Code.SUCCESS, Code.WAIT):
            fw.run_unreserve(state, pod, node_name)
            self.cache.forget_pod(pod.key)
            self._fail(fw, qpi, cycle, status.message, "Unschedulable" if status.rejected
                       else "SchedulerError", {status.plugin}, error=not status.rejected)
            return
        self._spawn(self._binding_cycle(fw, state, qpi, node_name, cycle, wait),
                    name=f"bind {pod.key}")

    async def _binding_cycle(self, fw: Framework, state: CycleState, qpi: q.QueuedPodInfo,
                             node_name: str, cycle: int, wait: float) -> None:
        pod = qpi.pod
        try:
            status = Status()
            if wait:
                await asyncio.sleep(wait)  # no permit plugin in tree waits; time out = reject
                status = Status.unschedulable("rejected due to timeout after waiting "
                                              f"{wait}s at plugin permit")
            if status.success:
                status = await fw.run_pre_bind(state, pod, node_name)
            if status.success:
                status = await fw.run_bind(state, pod, node_name)
        except asyncio.CancelledError:
            self.cache.forget_pod(pod.key)
            raise
        except Exception as e:
            status = Status.error(repr(e))
        finally:
            self._release()
        if status.success:
            self.cache.finish_binding(pod.key)
            self.queue.done(pod.key)
            self.queue.delete_nominated(pod.key)
            self.scheduled += 1
            SCHEDULE_ATTEMPTS.labels("scheduled", fw.profile_name).inc()
            if qpi.initial_attempt is not None:
                E2E_DURATION.labels("scheduled", fw.profile_name).observe(
                    self.queue.clock() - qpi.initial_attempt)
            self._event(pod, "Normal", "Scheduled",
                        f"Successfully assigned {pod.namespace}/{pod.name} to {node_name}")
            fw.run_post_bind(state, pod, node_name)
            return
        fw.run_unreserve(state, pod, node_name)
        self.cache.forget_pod(pod.key)
        self.queue.on_event(q.POD_DELETE)  # the room it held is free again
        if "NotFound" in status.message or "not found" in status.message:
            self.queue.done(pod.key)
            return
        self._fail(fw, qpi, cycle, f"Binding rejected: {status.message}", "SchedulerError",
                   set(), error=True, release=False)

    # -- failures -----------------------------------------------------------------------------
    def _fail(self, fw: Framework, qpi: q.QueuedPodInfo, cycle: int, message: str, reason: str,
              plugins: set[str], *, error: bool = False, nominated: str | None = None,
              release: bool = True) -> None:
        pod = qpi.pod
        if release:
            self._release()
        qpi.unschedulable_plugins = set(plugins)
        if nominated:
            self.queue.add_nominated(pod, nominated)
        self.queue.requeue(qpi, cycle, error=error)
        SCHEDULE_ATTEMPTS.labels("error" if error else "unschedulable", fw.profile_name).inc()
        self._event(pod, "Warning", "FailedScheduling", message)
        if self.client is not None:
            self._spawn(self._update_status(pod, reason, message, nominated),
                        name=f"status {pod.key}")

    def _mark_gated(self, pod: PodInfo) -> None:
        conditions = (pod.pod.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "PodScheduled" and c.get("reason") == GATED_REASON
                   for c in conditions):
            self._spawn(self._write_gated(pod), name=f"gated {pod.key}")

    async def _write_gated(self, pod: PodInfo) -> None:
        try:
            await gated_condition(self.client, pod.pod)
        except ApiError as e:
            if not e.not_found:
                log.info("could not mark %s as gated: %s", pod.key, e)

    def _event(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event({"apiVersion": "v1", "kind": "Pod",
                                 "metadata": pod.pod.get("metadata") or {}}, type_, reason,
                                message)

    async def _update_status(self, pod: PodInfo, reason: str, message: str,
                             nominated: str | None) -> None:
        status = pod.pod.get("status") or {}
        current = next((c for c in status.get("conditions") or []
                        if c.get("type") == "PodScheduled"), {})
        patch: dict[str, Any] = {}
        if (current.get("status"), current.get("reason"), current.get("message")) != (
                "False", reason, message):
            patch["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": reason,
                                    "message": message, "lastProbeTime": None,
                                    "lastTransitionTime": _now()}]
        if nominated and status.get("nominatedNodeName") != nominated:
            patch["nominatedNodeName"] = nominated
        if not patch:
            return
        try:
            await self.client.patch("v1", "pods", pod.name, {"status": patch},
                                    namespace=pod.namespace, subresource="status",
                                    patch_type="strategic")
        except ApiError as e:
            if not e.not_found:
                log.info("could not update the status of %s: %s", pod.key, e)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def node_update_events(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The cluster events a node update amounts to (what changed)."""
    events = []
    o_status, n_status = old.get("status") or {}, new.get("status") or {}
    if o_status.get("allocatable") != n_status.get("allocatable"):
        events.append(q.NODE_ALLOCATABLE)
    if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
        events.append(q.NODE_LABEL)
    o_spec, n_spec = old.get("spec") or {}, new.get("spec") or {}
    if (o_spec.get("taints") != n_spec.get("taints")
            or o_spec.get("unschedulable") != n_spec.get("unschedulable")):
        events.append(q.NODE_TAINT)
    return events


async def gated_condition(client: Client, pod: dict[str, Any]) -> None:
    """Mark a gated pod ``PodScheduled=False/SchedulingGated`` (the API server does this on
    create upstream; done here too for pods created without it)."""
    meta = pod["metadata"]
    await client.patch("v1", "pods", meta["name"], {"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": GATED_REASON,
        "message": GATED_MESSAGE, "lastProbeTime": None, "lastTransitionTime": _now()}]}},
        namespace=meta["namespace"], subresource="status", patch_type="strategic")


# -- the component -----------------------------------------------------------------------------

class SchedulerComponent:
    """Runs a ``Scheduler`` while holding the Lease ``kube-system/kube-scheduler``."""

    def __init__(self, client: Client, *, profiles: Sequence[Profile] | None = None,
                 leader_election: bool = True, identity: str | None = None,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0):
        self.client = client
        self.profiles = profiles
        self.leader_election = leader_election
        self.election = LeaderElectionConfig(
            namespace=LEASE_NAMESPACE, name=LEASE_NAME, identity=identity or default_identity(),
            lease_duration=lease_duration, renew_deadline=renew_deadline,
            retry_period=retry_period)
        self.leading = asyncio.Event()
        self.scheduler: Scheduler | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await run_while_leading(self.client, self.election, self._lead, stop,
                                leader_election=self.leader_election, name="scheduler",
                                on_stopped_leading=self.leading.clear)

    async def _lead(self) -> None:
        """One term: a fresh scheduler (fresh informers, cache and queue)."""
        self.leading.set()
        self.scheduler = Scheduler(self.client, profiles=self.profiles)
        try:
            await self.scheduler.run()
        finally:
            self.leading.clear()


async def run_scheduler(kubeconfig_path: str | os.PathLike[str], stop_event: asyncio.Event, *,
                        identity: str | None = None, leader_election: bool = True,
                        profiles: Sequence[Profile] | None = None) -> None:
    """The ``sampan scheduler`` entry point: run until ``stop_event`` is set."""
    config = load_kubeconfig(kubeconfig_path)
    config.user_agent = "sampan-scheduler"
    async with Client(config, max_connections=MAX_BINDS_IN_FLIGHT) as client:
        component = SchedulerComponent(client, profiles=profiles,
                                       leader_election=leader_election, identity=identity)
        await component.run(stop_event)
