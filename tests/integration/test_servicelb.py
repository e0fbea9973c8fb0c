"""The service load balancer controller against a real API server: LoadBalancer Services get
the addresses of the nodes that may take their traffic, follow node and endpoint changes, and
lose them when they stop being load balancers; other classes are left alone."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.controllers.endpointslice import EndpointSliceController
from sampan.controllers.manager import ControllerManager
from sampan.controllers.servicelb import ServiceLBController, can_host, ingress_ips
from tests.integration.helpers import (eventually, new_namespace, running_controllers,
                                       set_pod_status)


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def controllers(client: Client) -> AsyncIterator[ControllerManager]:
    async with running_controllers(client, (ServiceLBController,
                                            EndpointSliceController)) as manager:
        yield manager


def _ready(status: bool) -> dict[str, Any]:
    return {"type": "Ready", "status": "True" if status else "False", "reason": "Test",
            "lastHeartbeatTime": None, "lastTransitionTime": None}


async def set_node(client: Client, name: str, *, ready: bool = True,
                   unschedulable: bool | None = None) -> None:
    if unschedulable is not None:
        await client.patch("v1", "nodes", name, {"spec": {"unschedulable": unschedulable}})
    await client.patch("v1", "nodes", name, {"status": {"conditions": [_ready(ready)]}},
                       subresource="status", patch_type="strategic")


@contextlib.asynccontextmanager
async def fake_nodes(client: Client, specs: dict[str, dict[str, Any]]
                     ) -> AsyncIterator[dict[str, str]]:
    """Nodes named ``<prefix>-<key>`` with InternalIPs from TEST-NET-2 (nothing is sent to them);
    ``specs`` maps key → ``ready`` / ``unschedulable`` / ``external``. Yields key → name."""
    prefix = f"lb-{uuid.uuid4().hex[:6]}"
    names = {key: f"{prefix}-{key}" for key in specs}
    octet = uuid.uuid4().int % 200
    try:
        for i, (key, spec) in enumerate(specs.items()):
            addresses = [{"type": "InternalIP", "address": f"198.51.{octet}.{i + 1}"},
                         {"type": "Hostname", "address": names[key]}]
            if spec.get("external"):
                addresses.append({"type": "ExternalIP", "address": spec["external"]})
            await client.create("v1", "nodes", {
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": names[key]},
                "spec": {"unschedulable": bool(spec.get("unschedulable"))}})
            await client.patch("v1", "nodes", names[key], {"status": {
                "addresses": addresses, "conditions": [_ready(spec.get("ready", True))]}},
                subresource="status", patch_type="strategic")
        yield names
    finally:
        for name in names.values():
            with contextlib.suppress(ApiError):
                await client.delete("v1", "nodes", name)


async def node_ip(client: Client, name: str) -> str:
    node = await client.get("v1", "nodes", name)
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


async def expected_cluster_ips(client: Client) -> list[str]:
    """What a Cluster-policy load balancer should show given every node now in the cluster (other
    tests may have nodes of their own)."""
    nodes = (await client.list("v1", "nodes"))["items"]
    return ingress_ips({"spec": {"ipFamilies": ["IPv4"]}}, [n for n in nodes if can_host(n)])


def lb_service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                     **spec}}


async def ingress(client: Client, ns: str, name: str) -> list[dict[str, Any]]:
    svc = await client.get("v1", "services", name, namespace=ns)
    return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


async def ingress_ips_of(client: Client, ns: str, name: str) -> list[str]:
    return [i["ip"] for i in await ingress(client, ns, name)]


async def reasons(client: Client, ns: str, name: str) -> list[str]:
    events = (await client.list("v1", "events", namespace=ns))["items"]
    return [e["reason"] for e in events if e["involvedObject"]["name"] == name]


async def test_load_balancer_gets_ready_schedulable_nodes(client: Client,
                                                          controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "lb")
    specs = {"a": {}, "b": {}, "down": {"ready": False}, "cordoned": {"unschedulable": True}}
    async with fake_nodes(client, specs) as nodes:
        ips = {key: await node_ip(client, name) for key, name in nodes.items()}
        other = await client.create("v1", "services", lb_service(
            "other", loadBalancerClass="example.com/metal"), namespace=ns)
        other["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.50"}]}}
        await client.update("v1", "services", other, namespace=ns, subresource="status")
        await client.create("v1", "services", lb_service("web"), namespace=ns)
        await client.create("v1", "services", lb_service(
            "no-node-ports", allocateLoadBalancerNodePorts=False), namespace=ns)

        async def published(name: str) -> bool:
            have = await ingress_ips_of(client, ns, name)
            return have == await expected_cluster_ips(client) and ips["a"] in have
        await eventually(lambda: published("web"), what="ingress of the ready nodes")
        await eventually(lambda: published("no-node-ports"), what="ingress without node ports")
        have = await ingress(client, ns, "web")
        assert all(i["ipMode"] == "VIP" for i in have)
        published_ips = [i["ip"] for i in have]
        assert ips["b"] in published_ips
        assert ips["down"] not in published_ips and ips["cordoned"] not in published_ips

        async def ensured() -> bool:
            return {"EnsuringLoadBalancer", "EnsuredLoadBalancer"} <= set(
                await reasons(client, ns, "web"))
        await eventually(ensured, what="EnsuringLoadBalancer and EnsuredLoadBalancer events")
        # The other class's status is its own.
        assert await ingress_ips_of(client, ns, "other") == ["203.0.113.50"]

        await set_node(client, nodes["down"], ready=True)
        await set_node(client, nodes["a"], ready=False)
        await set_node(client, nodes["cordoned"], unschedulable=False)

        async def followed_nodes() -> bool:
            have = await ingress_ips_of(client, ns, "web")
            return ips["down"] in have and ips["cordoned"] in have and ips["a"] not in have \
                and have == await expected_cluster_ips(client)
        await eventually(followed_nodes, what="ingress following node readiness and cordons")

        async def no_ingress(name: str) -> bool:
            return await ingress(client, ns, name) == []
        await client.patch("v1", "services", "web", {"spec": {"type": "ClusterIP"}},
                           namespace=ns)
        await eventually(lambda: no_ingress("web"), what="ingress cleared on type ClusterIP")
        assert {"Type", "DeletingLoadBalancer", "DeletedLoadBalancer"} <= set(
            await reasons(client, ns, "web"))
        assert await ingress_ips_of(client, ns, "other") == ["203.0.113.50"]


async def test_local_policy_follows_ready_endpoints(client: Client,
                                                    controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "lb")
    specs = {"one": {}, "two": {"external": "203.0.113.9"}, "idle": {}}
    async with fake_nodes(client, specs) as nodes:
        ips = {key: await node_ip(client, name) for key, name in nodes.items()}
        await client.create("v1", "services", lb_service(
            "local", externalTrafficPolicy="Local", selector={"app": "local"}), namespace=ns)
        for pod_name in ("p1", "p2"):
            await client.create("v1", "pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "labels": {"app": "local"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, namespace=ns)
        await set_pod_status(client, ns, "p1", ready=True, node_name=nodes["one"])

        async def shows(expected: list[str]) -> bool:
            return await ingress_ips_of(client, ns, "local") == expected
        await eventually(lambda: shows([ips["one"]]), what="only the node with the endpoint")

        await set_pod_status(client, ns, "p2", ready=True, node_name=nodes["two"])
        # A node with an ExternalIP makes the external addresses the published ones.
        await eventually(lambda: shows(["203.0.113.9"]), what="the external address of two")

        await set_pod_status(client, ns, "p2", ready=False)
        await eventually(lambda: shows([ips["one"]]), what="two dropped when its pod is unready")

        await set_pod_status(client, ns, "p1", ready=False)
        await eventually(lambda: shows([]), what="no ingress without ready endpoints")
        assert "UnAvailableLoadBalancer" in await reasons(client, ns, "local")


async def test_load_balancer_without_node_ports(client: Client) -> None:
    ns = await new_namespace(client, "lb")
    created = await client.create("v1", "services", lb_service(
        "bare", allocateLoadBalancerNodePorts=False), namespace=ns)
    assert "nodePort" not in created["spec"]["ports"][0]
