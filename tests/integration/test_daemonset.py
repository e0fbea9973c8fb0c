"""The DaemonSet controller against a real API server, with Node objects made here. No
scheduler runs: daemon pods stay unbound (pinned to their node by affinity) and their status is
written with ``set_pod_status``. The nodes carry a taint only these DaemonSets tolerate, so
other tests' pods never land on them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import Client, InformerFactory, load_kubeconfig
from sampan.controllers.daemonset import DaemonSetController, target_node
from sampan.controllers.util import now_rfc3339
from tests.integration.helpers import eventually, new_namespace, set_pod_status

TIMEOUT = 45.0
ISOLATION_TAINT = "sampan.test/daemonset"


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def controller(client: Client) -> AsyncIterator[DaemonSetController]:
    informers = InformerFactory(client)
    ctl = DaemonSetController(client, informers)
    informers.start()
    task = asyncio.create_task(ctl.run())
    yield ctl
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await informers.stop()


@pytest.fixture
async def ns(client: Client) -> AsyncIterator[str]:
    name = await new_namespace(client, "ds")
    yield name
    await client.delete("v1", "namespaces", name)


class Nodes:
    """Nodes made by one test (a unique group label), deleted at its end."""

    def __init__(self, client: Client):
        self.client = client
        self.group = uuid.uuid4().hex[:8]
        self.names: list[str] = []

    async def add(self, suffix: str, labels: dict[str, str] | None = None,
                  taints: list[dict[str, str]] | None = None) -> str:
        name = f"ds-{self.group}-{suffix}"
        now = now_rfc3339()
        resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        await self.client.create("v1", "nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"group": self.group, **(labels or {})}},
            "spec": {"taints": [{"key": ISOLATION_TAINT, "value": self.group,
                                 "effect": "NoSchedule"}, *(taints or [])]},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": now, "lastTransitionTime": now}]},
        })
        self.names.append(name)
        return name

    async def patch(self, name: str, patch: dict[str, Any]) -> None:
        await self.client.patch("v1", "nodes", name, patch)

    async def remove(self, name: str) -> None:
        await self.client.delete("v1", "nodes", name)
        self.names.remove(name)

    async def cleanup(self) -> None:
        for name in list(self.names):
            await self.remove(name)


@pytest.fixture
async def nodes(client: Client) -> AsyncIterator[Nodes]:
    made = Nodes(client)
    yield made
    await made.cleanup()


def daemon_set(name: str, group: str, *, image: str = "agent:1",
               node_selector: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "nodeSelector": {"group": group, **(node_selector or {})},
                     "tolerations": [{"key": ISOLATION_TAINT, "operator": "Exists"}],
                     "containers": [{"name": "c", "image": image}]}},
                 **spec},
    }


async def live_pods(client: Client, ns: str) -> list[dict[str, Any]]:
    pods = (await client.list("v1", "pods", namespace=ns))["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


async def pods_by_node(client: Client, ns: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for pod in await live_pods(client, ns):
        out.setdefault(target_node(pod) or "", []).append(pod)
    return out


async def wait_nodes(client: Client, ns: str, names: set[str], what: str) -> None:
    async def check() -> bool:
        by_node = await pods_by_node(client, ns)
        return set(by_node) == names and all(len(p) == 1 for p in by_node.values())
    await eventually(check, TIMEOUT, what)


async def make_all_ready(client: Client, ns: str) -> None:
    for pod in await live_pods(client, ns):
        if (pod.get("status") or {}).get("phase") != "Running":
            await set_pod_status(client, ns, pod["metadata"]["name"])


async def ds_status(client: Client, ns: str, name: str) -> dict[str, Any]:
    return (await client.get("apps/v1", "daemonsets", name, namespace=ns)).get("status") or {}


async def test_one_pod_per_eligible_node(client: Client, controller: DaemonSetController,
                                         ns: str, nodes: Nodes) -> None:
    web1 = await nodes.add("web1", {"role": "web"})
    web2 = await nodes.add("web2", {"role": "web"})
    await nodes.add("db", {"role": "db"})
    tainted = await nodes.add("tainted", {"role": "web"},
                              [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    await client.create("apps/v1", "daemonsets",
                        daemon_set("agent", nodes.group, node_selector={"role": "web"}),
                        namespace=ns)
    await wait_nodes(client, ns, {web1, web2}, "a pod on each web node")

    pod = (await pods_by_node(client, ns))[web1][0]
    assert not pod["spec"].get("nodeName")
    assert pod["metadata"]["generateName"] == "agent-"
    assert pod["metadata"]["labels"]["controller-revision-hash"]
    node_affinity = pod["spec"]["affinity"]["nodeAffinity"]
    affinity = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity["nodeSelectorTerms"] == [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [web1]}]}]
    tolerated = {(t.get("key"), t.get("effect")) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in tolerated
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in tolerated

    async def scheduled() -> bool:
        status = await ds_status(client, ns, "agent")
        return status.get("desiredNumberScheduled") == 2 \
            and status.get("currentNumberScheduled") == 2 and status.get("numberReady") == 0
    await eventually(scheduled, TIMEOUT, "status counts scheduled pods")
    await make_all_ready(client, ns)

    async def ready() -> bool:
        status = await ds_status(client, ns, "agent")
        return (status.get("numberReady") == 2 and status.get("numberAvailable") == 2
                and status.get("updatedNumberScheduled") == 2
                and status.get("numberUnavailable") == 0 and status.get("observedGeneration") == 1)
    await eventually(ready, TIMEOUT, "status counts ready pods")
    reasons = {e["reason"] for e in (await client.list("v1", "events", namespace=ns))["items"]}
    assert "SuccessfulCreate" in reasons

    # A new eligible node gets a pod; a removed node's (unscheduled) pod is deleted.
    web3 = await nodes.add("web3", {"role": "web"})
    await wait_nodes(client, ns, {web1, web2, web3}, "a pod on the new node")
    await nodes.remove(web3)
    await wait_nodes(client, ns, {web1, web2}, "the removed node's pod deleted")

    # Dropping the taint makes a node eligible; relabelling one makes it ineligible.
    await nodes.patch(tainted, {"spec": {"taints": [
        {"key": ISOLATION_TAINT, "value": nodes.group, "effect": "NoSchedule"}]}})
    await wait_nodes(client, ns, {web1, web2, tainted}, "a pod on the untainted node")
    await nodes.patch(web2, {"metadata": {"labels": {"role": "db"}}})
    await wait_nodes(client, ns, {web1, tainted}, "the relabelled node's pod deleted")


async def test_rolling_update_replaces_one_node_at_a_time(
        client: Client, controller: DaemonSetController, ns: str, nodes: Nodes) -> None:
    names = {await nodes.add(f"n{i}") for i in range(3)}
    await client.create("apps/v1", "daemonsets", daemon_set("roll", nodes.group), namespace=ns)
    await wait_nodes(client, ns, names, "a pod on every node")
    await make_all_ready(client, ns)

    async def available(count: int) -> bool:
        return (await ds_status(client, ns, "roll")).get("numberAvailable") == count
    await eventually(lambda: available(3), TIMEOUT, "all available")

    await client.patch("apps/v1", "daemonsets", "roll", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "agent:2"}]}}}}, namespace=ns)

    async def rolled() -> bool:
        pods = await live_pods(client, ns)
        ready_old = [p for p in pods if p["spec"]["containers"][0]["image"] == "agent:1"
                     and (p.get("status") or {}).get("phase") == "Running"]
        ready_new = [p for p in pods if p["spec"]["containers"][0]["image"] == "agent:2"
                     and (p.get("status") or {}).get("phase") == "Running"]
        # maxUnavailable 1: never fewer than two nodes with a ready pod.
        assert len(ready_old) + len(ready_new) >= 2, [p["metadata"]["name"] for p in pods]
        await make_all_ready(client, ns)
        return len(ready_new) == 3 and not ready_old
    await eventually(rolled, TIMEOUT, "every node runs the new template")

    async def updated() -> bool:
        status = await ds_status(client, ns, "roll")
        return status.get("updatedNumberScheduled") == 3 and status.get("numberAvailable") == 3
    await eventually(updated, TIMEOUT, "status shows the update")
    revisions = (await client.list("apps/v1", "controllerrevisions", namespace=ns))["items"]
    assert sorted(r["revision"] for r in revisions) == [1, 2]


async def test_failed_pod_is_replaced(client: Client, controller: DaemonSetController,
                                      ns: str, nodes: Nodes) -> None:
    node = await nodes.add("only")
    await client.create("apps/v1", "daemonsets", daemon_set("fail", nodes.group), namespace=ns)
    await wait_nodes(client, ns, {node}, "a pod on the node")
    first = (await live_pods(client, ns))[0]
    await set_pod_status(client, ns, first["metadata"]["name"], phase="Failed", ready=False)

    async def replaced() -> bool:
        pods = await live_pods(client, ns)
        return len(pods) == 1 and pods[0]["metadata"]["uid"] != first["metadata"]["uid"]
    await eventually(replaced, TIMEOUT, "failed pod replaced")
    reasons = {e["reason"] for e in (await client.list("v1", "events", namespace=ns))["items"]}
    assert "FailedDaemonPod" in reasons
