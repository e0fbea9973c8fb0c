"""Hollow nodes against a real API server: registration, leases, pods run, complete and go.

No scheduler runs here: the tests bind pods themselves through the ``binding`` subresource (and
give them a scheduler name nobody serves, so that a scheduler elsewhere leaves them alone)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from sampan.client import Client
from sampan.node.hollow import (
    EXIT_CODE_ANNOTATION,
    GROUP_LABEL,
    RUN_SECONDS_ANNOTATION,
    HollowNodes,
)
from tests.integration.helpers import eventually, exists, new_namespace

LEASES = "coordination.k8s.io/v1"


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client.from_kubeconfig(kubeconfig) as c:
        yield c


def unique_prefix() -> str:
    return f"hollow-{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def hollow(client: Client, prefix: str, count: int = 2, *, delete: bool = True,
                 **kwargs) -> AsyncIterator[HollowNodes]:
    nodes = HollowNodes(client, count=count, prefix=prefix, delete_nodes_on_stop=delete,
                        lease_interval=kwargs.pop("lease_interval", 1.0), **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(nodes.run(stop))
    try:
        await asyncio.wait_for(nodes.registered.wait(), 30)
        yield nodes
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def bound_pod(client: Client, namespace: str, node: str, name: str = "p", *,
                    restart_policy: str = "Always", annotations: dict | None = None,
                    init: bool = False) -> dict:
    spec = {"schedulerName": "no-such-scheduler", "restartPolicy": restart_policy,
            "containers": [{"name": "app", "image": "registry.example/app:1"}]}
    if init:
        spec["initContainers"] = [{"name": "setup", "image": "registry.example/setup:1"}]
    pod = await client.create("v1", "pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec},
        namespace=namespace)
    await client.create("v1", "pods", {"apiVersion": "v1", "kind": "Binding",
                                       "metadata": {"name": name},
                                       "target": {"apiVersion": "v1", "kind": "Node",
                                                  "name": node}},
                        namespace=namespace, name=name, subresource="binding")
    return pod


async def get_pod(client: Client, namespace: str, name: str = "p") -> dict:
    return await client.get("v1", "pods", name, namespace=namespace)


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or ()
                 if c["type"] == type_), {})


async def test_nodes_register_ready_and_renew_leases(client: Client):
    prefix = unique_prefix()
    async with hollow(client, prefix, count=5) as nodes:
        listed = await client.list("v1", "nodes", label_selector=f"{GROUP_LABEL}={prefix}")
        names = sorted(n["metadata"]["name"] for n in listed["items"])
        assert names == sorted(f"{prefix}-{i}" for i in range(5)) == sorted(nodes.node_names)
        for node in listed["items"]:
            ready = condition(node, "Ready")
            assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
            assert node["status"]["allocatable"]["pods"] == "110"
            assert node["metadata"]["labels"]["kubernetes.io/hostname"] == node["metadata"]["name"]

        first = {}
        for name in names:
            lease = await client.get(LEASES, "leases", name, namespace="kube-node-lease")
            assert lease["spec"]["holderIdentity"] == name
            assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
            first[name] = lease["spec"]["renewTime"]

        async def all_renewed() -> bool:
            for name in names:
                lease = await client.get(LEASES, "leases", name, namespace="kube-node-lease")
                if lease["spec"]["renewTime"] <= first[name]:
                    return False
            return True
        await eventually(all_renewed, what="every lease renewed")
    assert not await exists(client, "v1", "nodes", names[0])


async def test_bound_pod_becomes_running_and_ready(client: Client):
    ns = await new_namespace(client, "hollow")
    async with hollow(client, unique_prefix()) as nodes:
        node = nodes.node_names[1]
        await bound_pod(client, ns, node, init=True)

        async def running() -> bool:
            pod = await get_pod(client, ns)
            return (pod["status"].get("phase") == "Running"
                    and condition(pod, "Ready").get("status") == "True")
        await eventually(running, what="pod Running and Ready")
        pod = await get_pod(client, ns)
        status = pod["status"]
        assert condition(pod, "PodScheduled")["status"] == "True"
        assert condition(pod, "ContainersReady")["status"] == "True"
        assert condition(pod, "Initialized")["status"] == "True"
        [app] = status["containerStatuses"]
        assert app["ready"] and app["started"] and "running" in app["state"]
        [setup] = status["initContainerStatuses"]
        assert setup["state"]["terminated"]["reason"] == "Completed"
        node_obj = await client.get("v1", "nodes", node)
        internal = [a["address"] for a in node_obj["status"]["addresses"]
                    if a["type"] == "InternalIP"]
        assert status["hostIP"] == internal[0]
        assert status["podIP"] and status["podIP"] != status["hostIP"]
        assert status["qosClass"] == "BestEffort" and status["startTime"]


async def test_pods_complete_after_their_run_seconds(client: Client):
    ns = await new_namespace(client, "hollow")
    async with hollow(client, unique_prefix()) as nodes:
        node = nodes.node_names[0]
        await bound_pod(client, ns, node, "ok", restart_policy="Never",
                        annotations={RUN_SECONDS_ANNOTATION: "1"})
        await bound_pod(client, ns, node, "fails", restart_policy="Never",
                        annotations={RUN_SECONDS_ANNOTATION: "1", EXIT_CODE_ANNOTATION: "3"})
        await bound_pod(client, ns, node, "retries", restart_policy="OnFailure",
                        annotations={RUN_SECONDS_ANNOTATION: "1", EXIT_CODE_ANNOTATION: "1"})

        async def phase_is(name: str, phase: str) -> bool:
            return (await get_pod(client, ns, name))["status"].get("phase") == phase
        await eventually(lambda: phase_is("ok", "Succeeded"), what="pod Succeeded")
        await eventually(lambda: phase_is("fails", "Failed"), what="pod Failed")
        ok = await get_pod(client, ns, "ok")
        assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        assert condition(ok, "Ready")["reason"] == "PodCompleted"
        failed = await get_pod(client, ns, "fails")
        assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3

        async def restarted() -> bool:
            pod = await get_pod(client, ns, "retries")
            statuses = pod["status"].get("containerStatuses") or [{}]
            return (statuses[0].get("restartCount") or 0) >= 1
        await eventually(restarted, what="OnFailure pod restarted")
        retries = await get_pod(client, ns, "retries")
        assert retries["status"]["phase"] == "Running"
        last = retries["status"]["containerStatuses"][0]["lastState"]["terminated"]
        assert last["exitCode"] == 1


async def test_complete_after_applies_to_pods_that_may_finish(client: Client):
    ns = await new_namespace(client, "hollow")
    async with hollow(client, unique_prefix(), complete_after=0.5) as nodes:
        await bound_pod(client, ns, nodes.node_names[0], "job", restart_policy="Never")
        await bound_pod(client, ns, nodes.node_names[0], "server")

        async def succeeded() -> bool:
            return (await get_pod(client, ns, "job"))["status"].get("phase") == "Succeeded"
        await eventually(succeeded, what="pod Succeeded")
        assert (await get_pod(client, ns, "server"))["status"]["phase"] == "Running"


async def test_deleting_a_pod_finishes_it(client: Client):
    ns = await new_namespace(client, "hollow")
    async with hollow(client, unique_prefix()) as nodes:
        await bound_pod(client, ns, nodes.node_names[0])

        async def running() -> bool:
            return (await get_pod(client, ns))["status"].get("phase") == "Running"
        await eventually(running, what="pod Running")
        answer = await client.delete("v1", "pods", "p", namespace=ns)
        assert answer["metadata"].get("deletionTimestamp"), "a bound pod is deleted gracefully"
        await eventually(lambda: _gone(client, ns, "p"), what="pod deleted")


async def _gone(client: Client, namespace: str, name: str) -> bool:
    return not await exists(client, "v1", "pods", name, namespace=namespace)


async def test_restart_keeps_nodes_and_running_pods(client: Client):
    ns = await new_namespace(client, "hollow")
    prefix = unique_prefix()
    async with hollow(client, prefix, delete=False) as nodes:
        await bound_pod(client, ns, nodes.node_names[0])

        async def running() -> bool:
            return (await get_pod(client, ns))["status"].get("phase") == "Running"
        await eventually(running, what="pod Running")
        before = {n: await client.get("v1", "nodes", n) for n in nodes.node_names}
        pod_before = await get_pod(client, ns)
    assert await exists(client, "v1", "nodes", f"{prefix}-0")  # stop deletes nothing
    async with hollow(client, prefix, delete=True) as nodes:
        for name, old in before.items():
            new = await client.get("v1", "nodes", name)
            assert new["metadata"]["uid"] == old["metadata"]["uid"]
            assert new["metadata"]["labels"] == old["metadata"]["labels"]
            assert new["status"]["nodeInfo"] == old["status"]["nodeInfo"]
            assert new["status"]["addresses"] == old["status"]["addresses"]
            assert condition(new, "Ready")["lastTransitionTime"] == \
                condition(old, "Ready")["lastTransitionTime"]
        await asyncio.sleep(0.5)  # give it a chance to (wrongly) rewrite the running pod
        pod_after = await get_pod(client, ns)
        assert pod_after["status"]["podIP"] == pod_before["status"]["podIP"]
        assert pod_after["status"]["containerStatuses"] == pod_before["status"]["containerStatuses"]
        # A new pod on the same node does not get the address the running one holds.
        await bound_pod(client, ns, nodes.node_names[0], "second")

        async def second_running() -> bool:
            return (await get_pod(client, ns, "second"))["status"].get("phase") == "Running"
        await eventually(second_running, what="second pod Running")
        second = await get_pod(client, ns, "second")
        assert second["status"]["podIP"] != pod_before["status"]["podIP"]
    assert not await exists(client, "v1", "nodes", f"{prefix}-0")
