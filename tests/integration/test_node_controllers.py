"""Node lifecycle, taint eviction, node IPAM and the HPA against a real API server (the
``kubeconfig`` fixture). A test task stands in for the kubelet by renewing Leases."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.client.informer import InformerFactory
from sampan.controllers.hpa import HorizontalPodAutoscalerController
from sampan.controllers.nodeipam import NodeIpamController
from sampan.controllers.nodelifecycle import NodeLifecycleController, TaintEvictionController
from sampan.controllers.util import now_rfc3339
from tests.integration.helpers import eventually, new_namespace, set_pod_status

TIMEOUT = 45.0


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@contextlib.asynccontextmanager
async def running(client: Client, *makers) -> AsyncIterator[list[Any]]:
    """Controllers made by ``makers(client, informers)`` running in this loop until exit."""
    informers = InformerFactory(client)
    controllers = [make(client, informers) for make in makers]
    informers.start()
    tasks = [asyncio.create_task(c.run()) for c in controllers]
    try:
        yield controllers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()
        for c in controllers:
            if c.recorder is not None:
                await c.recorder.close()


def micro_time() -> str:
    return now_rfc3339().replace("Z", ".000000Z")


async def make_node(client: Client, name: str, zone: str) -> None:
    await client.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "labels": {"topology.kubernetes.io/zone": zone,
                                 "kubernetes.io/hostname": name}}})
    node = await client.get("v1", "nodes", name)
    now = now_rfc3339()
    node["status"] = {"conditions": [
        {"type": t, "status": s, "reason": "KubeletReady" if t == "Ready" else "KubeletHasNoPressure",
         "message": "", "lastHeartbeatTime": now, "lastTransitionTime": now}
        for t, s in (("Ready", "True"), ("MemoryPressure", "False"), ("DiskPressure", "False"),
                     ("PIDPressure", "False"))]}
    await client.update("v1", "nodes", node, subresource="status")
    await client.create("coordination.k8s.io/v1", "leases", {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_time()}},
        namespace="kube-node-lease")


async def renew_forever(client: Client, name: str) -> None:
    while True:
        lease = await client.get("coordination.k8s.io/v1", "leases", name,
                                 namespace="kube-node-lease")
        lease["spec"]["renewTime"] = micro_time()
        with contextlib.suppress(ApiError):
            await client.update("coordination.k8s.io/v1", "leases", lease)
        await asyncio.sleep(0.5)


async def delete_nodes(client: Client, *names: str) -> None:
    for name in names:
        with contextlib.suppress(ApiError):
            await client.delete("v1", "nodes", name)
        with contextlib.suppress(ApiError):
            await client.delete("coordination.k8s.io/v1", "leases", name,
                                namespace="kube-node-lease")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or ()
                 if c["type"] == type_), {})


async def events(client: Client, namespace: str, reason: str) -> list[dict[str, Any]]:
    listed = await client.list("v1", "events", namespace=namespace)
    return [e for e in listed["items"] if e.get("reason") == reason]


async def test_silent_node_is_marked_unknown_tainted_and_its_pods_evicted(client: Client) -> None:
    suffix = uuid.uuid4().hex[:6]
    good, bad, zone = f"good-{suffix}", f"bad-{suffix}", f"zone-{suffix}"
    namespace = await new_namespace(client, "nlc")
    await make_node(client, good, zone)
    await make_node(client, bad, zone)
    renewer = asyncio.create_task(renew_forever(client, good))
    unreachable = "node.kubernetes.io/unreachable"
    for name, tolerations in (("tolerating", [{"key": unreachable, "operator": "Exists",
                                               "effect": "NoExecute", "tolerationSeconds": 2}]),
                              ("forever", [{"key": unreachable, "operator": "Exists",
                                            "effect": "NoExecute"}])):
        await client.create("v1", "pods", {"apiVersion": "v1", "kind": "Pod",
                                           "metadata": {"name": name}, "spec": {
                                               "nodeName": bad, "tolerations": tolerations,
                                               "containers": [{"name": "c", "image": "busybox"}]}},
                            namespace=namespace)
        await set_pod_status(client, namespace, name, ready=True)

    def lifecycle(c: Client, i: InformerFactory) -> NodeLifecycleController:
        return NodeLifecycleController(c, i, node_monitor_period=0.5, node_monitor_grace_period=2.0,
                                       node_eviction_rate=100.0)
    try:
        async with running(client, lifecycle, TaintEvictionController):
            async def bad_node_tainted() -> bool:
                node = await client.get("v1", "nodes", bad)
                taints = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or ()}
                return condition(node, "Ready").get("status") == "Unknown" and \
                    (unreachable, "NoExecute") in taints and (unreachable, "NoSchedule") in taints
            await eventually(bad_node_tainted, TIMEOUT, "bad node Unknown and tainted")
            node = await client.get("v1", "nodes", bad)
            assert condition(node, "Ready")["reason"] == "NodeStatusUnknown"
            assert condition(node, "Ready")["message"] == "Kubelet stopped posting node status."
            assert condition(node, "MemoryPressure")["status"] == "Unknown"
            assert not ((await client.get("v1", "nodes", good)).get("spec") or {}).get("taints")

            async def evicted(name: str) -> bool:
                try:
                    pod = await client.get("v1", "pods", name, namespace=namespace)
                except ApiError as e:
                    return e.not_found
                return bool(pod["metadata"].get("deletionTimestamp"))
            await eventually(lambda: evicted("tolerating"), TIMEOUT, "tolerating pod evicted")
            forever = await client.get("v1", "pods", "forever", namespace=namespace)
            assert not forever["metadata"].get("deletionTimestamp")
            assert condition(forever, "Ready")["status"] == "False"  # MarkPodsNotReady

            async def eviction_event() -> bool:
                messages = {e["message"] for e in await events(client, namespace,
                                                               "TaintManagerEviction")}
                return f"Marking for deletion Pod {namespace}/tolerating" in messages
            await eventually(eviction_event, TIMEOUT, "TaintManagerEviction event")

            # A NoExecute taint a pod does not tolerate evicts it at once; spec.unschedulable
            # is mirrored as a NoSchedule taint.
            await client.create("v1", "pods", {"apiVersion": "v1", "kind": "Pod",
                                               "metadata": {"name": "untolerating"}, "spec": {
                                                   "nodeName": good,
                                                   "containers": [{"name": "c", "image": "busybox"}]}},
                                namespace=namespace)
            node = await client.get("v1", "nodes", good)
            node.setdefault("spec", {})["unschedulable"] = True
            node["spec"]["taints"] = [{"key": "example.com/drain", "effect": "NoExecute"}]
            await client.update("v1", "nodes", node)
            await eventually(lambda: evicted("untolerating"), TIMEOUT, "untolerating pod evicted")

            async def cordoned() -> bool:
                node = await client.get("v1", "nodes", good)
                return any(t["key"] == "node.kubernetes.io/unschedulable"
                           for t in (node.get("spec") or {}).get("taints") or ())
            await eventually(cordoned, TIMEOUT, "unschedulable taint")
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        await delete_nodes(client, good, bad)


async def test_new_nodes_get_pod_cidrs(client: Client) -> None:
    suffix = uuid.uuid4().hex[:6]
    names = [f"ipam-{suffix}-{i}" for i in range(3)]
    for name in names[:2]:
        await client.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node",
                                            "metadata": {"name": name}})

    def ipam(c: Client, i: InformerFactory) -> NodeIpamController:
        return NodeIpamController(c, i, cluster_cidrs=["10.210.0.0/16"])
    try:
        async with running(client, ipam):
            await client.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node",
                                                "metadata": {"name": names[2]}})

            async def all_allocated() -> bool:
                for name in names:
                    if not ((await client.get("v1", "nodes", name)).get("spec") or {}).get("podCIDR"):
                        return False
                return True
            await eventually(all_allocated, TIMEOUT, "pod CIDRs on every node")
            nodes = [await client.get("v1", "nodes", n) for n in names]
            cidrs = [n["spec"]["podCIDR"] for n in nodes]
            assert len(set(cidrs)) == 3
            assert all(c.startswith("10.210.") and c.endswith("/24") for c in cidrs)
            assert all(n["spec"]["podCIDRs"] == [n["spec"]["podCIDR"]] for n in nodes)
    finally:
        await delete_nodes(client, *names)


# The HPA lives here too: it is the other controller that needs no storage.
async def test_hpa_without_metrics_clamps_to_min_and_reports(client: Client) -> None:
    namespace = await new_namespace(client, "hpa")
    await client.create("apps/v1", "deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {
                                  "requests": {"cpu": "100m"}}}]}}}}, namespace=namespace)
    await client.create("autoscaling/v2", "horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 50}}}]}}, namespace=namespace)

    def hpa(c: Client, i: InformerFactory) -> HorizontalPodAutoscalerController:
        return HorizontalPodAutoscalerController(c, i, sync_period=0.5)
    async with running(client, hpa):
        async def scaled_to_min() -> bool:
            deployment = await client.get("apps/v1", "deployments", "web", namespace=namespace)
            return deployment["spec"]["replicas"] == 2
        await eventually(scaled_to_min, TIMEOUT, "deployment scaled to minReplicas")

        async def reports_missing_metrics() -> bool:
            status = (await client.get("autoscaling/v2", "horizontalpodautoscalers", "web",
                                       namespace=namespace)).get("status") or {}
            active = condition({"status": status}, "ScalingActive")
            return active.get("reason") == "FailedGetResourceMetric"
        await eventually(reports_missing_metrics, TIMEOUT, "ScalingActive=False condition")
        hpa_obj = await client.get("autoscaling/v2", "horizontalpodautoscalers", "web",
                                   namespace=namespace)
        active = condition(hpa_obj, "ScalingActive")
        assert active["status"] == "False"
        assert active["message"].startswith("the HPA was unable to compute the replica count: "
                                            "failed to get cpu utilization: unable to get metrics "
                                            "for resource cpu: ")
        assert condition(hpa_obj, "AbleToScale")["reason"] in ("SucceededGetScale",
                                                               "SucceededRescale")
        assert hpa_obj["status"]["currentReplicas"] == 2

        async def warned() -> bool:
            return bool(await events(client, namespace, "FailedGetResourceMetric")) and \
                bool(await events(client, namespace, "FailedComputeMetricsReplicas"))
        await eventually(warned, TIMEOUT, "Warning events")
        rescaled = await events(client, namespace, "SuccessfulRescale")
        assert rescaled[0]["message"] == \
            "New size: 2; reason: Current number of replicas below Spec.MinReplicas"
