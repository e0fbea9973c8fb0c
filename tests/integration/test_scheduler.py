"""The scheduler against a real API server: binding, node selectors and taints, resources,
unschedulable reporting (condition + FailedScheduling event), rescheduling when a node
appears, preemption by priority, several profiles, leader election.

Each test uses its own node names (deleted at the end) and its own scheduler name, so a
test's scheduler only schedules that test's pods.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.scheduler import Profile, Scheduler, SchedulerComponent
from tests.integration.helpers import eventually, new_namespace

FAST_ELECTION = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


class Cluster:
    """Nodes and pods of one test, and the scheduler serving it."""

    def __init__(self, client: Client, namespace: str):
        self.client = client
        self.namespace = namespace
        self.tag = uuid.uuid4().hex[:6]
        self.scheduler_name = f"sched-{self.tag}"
        self.nodes: list[str] = []
        self.tasks: list[asyncio.Task] = []

    def node_name(self, name: str) -> str:
        return f"{name}-{self.tag}"

    async def add_node(self, name: str, cpu: str = "2", memory: str = "4Gi", pods: str = "110",
                       labels: dict | None = None, taints: list | None = None) -> str:
        full = self.node_name(name)
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": full, "labels": {"kubernetes.io/hostname": full,
                                                      "test": self.tag, **(labels or {})}},
                "spec": {"taints": taints or []}}
        created = await self.client.create("v1", "nodes", body)
        self.nodes.append(full)
        created["status"] = {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                             "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
                             "conditions": [{"type": "Ready", "status": "True",
                                             "reason": "KubeletReady"}]}
        await self.client.update("v1", "nodes", created, subresource="status")
        return full

    async def add_pod(self, name: str, cpu: str = "100m", scheduler_name: str | None = None,
                      **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"schedulerName": scheduler_name or self.scheduler_name,
                         "containers": [{"name": "c", "image": "busybox",
                                         "resources": {"requests": {"cpu": cpu}}}], **spec}}
        return await self.client.create("v1", "pods", body)

    async def pod(self, name: str) -> dict[str, Any]:
        return await self.client.get("v1", "pods", name, namespace=self.namespace)

    async def node_of(self, name: str) -> str:
        return (await self.pod(name))["spec"].get("nodeName") or ""

    async def wait_bound(self, name: str) -> str:
        async def bound() -> bool:
            return bool(await self.node_of(name))
        await eventually(bound, what=f"pod {name} bound")
        return await self.node_of(name)

    async def events(self, name: str, reason: str) -> list[dict[str, Any]]:
        events = await self.client.list("v1", "events", namespace=self.namespace)
        return [e for e in events["items"] if e["involvedObject"]["name"] == name
                and e["reason"] == reason]

    def start(self, *profiles: Profile) -> Scheduler:
        scheduler = Scheduler(self.client, profiles=list(profiles) or
                              [Profile(self.scheduler_name)])
        self.tasks.append(asyncio.create_task(scheduler.run()))
        return scheduler

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for name in self.nodes:
            try:
                await self.client.delete("v1", "nodes", name)
            except ApiError as e:
                if not e.not_found:
                    raise


@pytest.fixture
async def cluster(client: Client) -> AsyncIterator[Cluster]:
    c = Cluster(client, await new_namespace(client, "sched"))
    try:
        yield c
    finally:
        await c.close()


async def test_binds_respecting_selector_taints_and_resources(cluster: Cluster):
    small = await cluster.add_node("small", cpu="1")
    ssd = await cluster.add_node("ssd", cpu="4", labels={"disk": "ssd"})
    tainted = await cluster.add_node("tainted", cpu="8", taints=[
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    cluster.start()
    await cluster.add_pod("selector", nodeSelector={"disk": "ssd"})
    await cluster.add_pod("big", cpu="3")
    await cluster.add_pod("tolerant", cpu="6", tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
    assert await cluster.wait_bound("selector") == ssd
    assert await cluster.wait_bound("big") == ssd
    assert await cluster.wait_bound("tolerant") == tainted
    assert small not in {await cluster.node_of(n) for n in ("selector", "big", "tolerant")}

    async def scheduled_event() -> bool:
        return bool(await cluster.events("big", "Scheduled"))
    await eventually(scheduled_event, what="Scheduled event")
    event = (await cluster.events("big", "Scheduled"))[0]
    assert event["message"] == f"Successfully assigned {cluster.namespace}/big to {ssd}"
    assert event["source"]["component"] == "default-scheduler"


async def test_unschedulable_pod_reports_and_schedules_when_a_node_appears(cluster: Cluster):
    await cluster.add_node("tiny", cpu="500m")
    await cluster.add_node("cp", cpu="4", taints=[
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    scheduler = cluster.start()
    await cluster.add_pod("waiting", cpu="1")

    async def reported() -> bool:
        conditions = (await cluster.pod("waiting")).get("status", {}).get("conditions") or []
        return any(c["type"] == "PodScheduled" and c["status"] == "False" for c in conditions)
    await eventually(reported, what="PodScheduled=False")
    condition = next(c for c in (await cluster.pod("waiting"))["status"]["conditions"]
                     if c["type"] == "PodScheduled")
    assert condition["reason"] == "Unschedulable"
    total = scheduler.cache.node_count()  # other tests' nodes may still be going away
    assert "1 Insufficient cpu" in condition["message"]
    assert "node(s) had untolerated taint(s)" in condition["message"]
    assert condition["message"].startswith(f"0/{total} nodes are available: ")

    async def failed_event() -> bool:
        return bool(await cluster.events("waiting", "FailedScheduling"))
    await eventually(failed_event, what="FailedScheduling event")
    event = (await cluster.events("waiting", "FailedScheduling"))[0]
    assert event["type"] == "Warning" and event["message"] == condition["message"]
    assert "preemption: " in event["message"]

    roomy = await cluster.add_node("roomy", cpu="2")
    assert await cluster.wait_bound("waiting") == roomy


async def test_gated_pod_waits_for_its_gates(cluster: Cluster):
    node = await cluster.add_node("n1")
    scheduler = cluster.start()
    await cluster.add_pod("gated", schedulingGates=[{"name": "example.com/hold"}])

    async def gated() -> bool:
        return "/".join((cluster.namespace, "gated")) in scheduler.queue.unschedulable
    await eventually(gated, what="pod held by its gate")

    async def gated_condition() -> bool:
        conditions = (await cluster.pod("gated")).get("status", {}).get("conditions") or []
        return any(c["type"] == "PodScheduled" and c["status"] == "False"
                   and c["reason"] == "SchedulingGated" and c["message"] ==
                   "Scheduling is blocked due to non-empty scheduling gates" for c in conditions)
    await eventually(gated_condition, what="PodScheduled=False/SchedulingGated")
    assert not await cluster.node_of("gated")
    pod = await cluster.pod("gated")
    pod["spec"]["schedulingGates"] = []
    await cluster.client.update("v1", "pods", pod)
    assert await cluster.wait_bound("gated") == node


async def test_preemption_by_higher_priority_class(cluster: Cluster):
    node = await cluster.add_node("only", cpu="1")
    high = f"high-{cluster.tag}"
    await cluster.client.create("scheduling.k8s.io/v1", "priorityclasses", {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": high}, "value": 1000})
    try:
        cluster.start()
        await cluster.add_pod("victim", cpu="800m")
        assert await cluster.wait_bound("victim") == node
        await cluster.add_pod("vip", cpu="800m", priorityClassName=high)

        async def nominated_or_bound() -> bool:
            pod = await cluster.pod("vip")
            return bool(pod.get("status", {}).get("nominatedNodeName")
                        or pod["spec"].get("nodeName"))
        await eventually(nominated_or_bound, what="preemptor nominated")

        async def victim_gone() -> bool:
            try:
                pod = await cluster.pod("victim")
            except ApiError as e:
                return e.not_found
            if pod["metadata"].get("deletionTimestamp"):  # no kubelet: finish the deletion
                await cluster.client.delete("v1", "pods", "victim",
                                            namespace=cluster.namespace, grace_period_seconds=0)
            return False
        await eventually(victim_gone, what="victim deleted")
        assert await cluster.wait_bound("vip") == node
        events = await cluster.events("victim", "Preempted")
        vip = await cluster.pod("vip")
        assert events and events[0]["message"] == (
            f"Preempted by pod {vip['metadata']['uid']} on node {node}")
    finally:
        await cluster.client.delete("scheduling.k8s.io/v1", "priorityclasses", high)


async def test_profiles_by_scheduler_name(cluster: Cluster):
    await cluster.add_node("a", cpu="4")
    await cluster.add_node("b", cpu="4")
    packing = f"packing-{cluster.tag}"
    cluster.start(Profile(cluster.scheduler_name),
                  Profile(packing, plugin_args={"NodeResourcesFit": {
                      "scoringStrategy": {"type": "MostAllocated"}}}))
    await cluster.add_pod("spread-1", cpu="1")
    first = await cluster.wait_bound("spread-1")
    await cluster.add_pod("spread-2", cpu="1")
    assert await cluster.wait_bound("spread-2") != first  # LeastAllocated spreads
    await cluster.add_pod("pack-1", cpu="500m", scheduler_name=packing)
    packed = await cluster.wait_bound("pack-1")
    await cluster.add_pod("pack-2", cpu="500m", scheduler_name=packing)
    assert await cluster.wait_bound("pack-2") == packed  # MostAllocated packs
    await cluster.add_pod("nobody", scheduler_name="not-a-profile")
    await asyncio.sleep(0.5)
    assert not await cluster.node_of("nobody")


async def test_leader_election_on_kube_scheduler_lease(cluster: Cluster):
    node = await cluster.add_node("n1")
    stop = asyncio.Event()
    component = SchedulerComponent(cluster.client, profiles=[Profile(cluster.scheduler_name)],
                                   identity=f"test-{cluster.tag}", **FAST_ELECTION)
    task = asyncio.create_task(component.run(stop))
    try:
        await asyncio.wait_for(component.leading.wait(), 30)
        lease = await cluster.client.get("coordination.k8s.io/v1", "leases", "kube-scheduler",
                                         namespace="kube-system")
        assert lease["spec"]["holderIdentity"] == f"test-{cluster.tag}"
        await cluster.add_pod("p")
        assert await cluster.wait_bound("p") == node
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
