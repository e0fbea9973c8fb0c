"""The endpoints, EndpointSlice, service account, resource quota and disruption controllers
against a real API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.controllers.disruption import DisruptionController
from sampan.controllers.endpoints import EndpointsController
from sampan.controllers.endpointslice import EndpointSliceController
from sampan.controllers.manager import ControllerManager
from sampan.controllers.resourcequota import ResourceQuotaController
from sampan.controllers.serviceaccount import ServiceAccountController
from tests.integration.helpers import (eventually, new_namespace, running_controllers,
                                       set_pod_status)

CONTROLLERS = (EndpointsController, EndpointSliceController, ServiceAccountController,
               ResourceQuotaController, DisruptionController)


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def controllers(client: Client) -> AsyncIterator[ControllerManager]:
    async with running_controllers(client, CONTROLLERS) as manager:
        yield manager


def pod(name: str, labels: dict[str, str], *, ports: dict[str, int] | None = None,
        cpu: str | None = None, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "busybox"}
    if ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in ports.items()]
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": [container]}}


def service(name: str, selector: dict[str, str] | None,
            target_port: int | str = 80) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "targetPort": target_port}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"team": "a"}},
            "spec": spec}


async def get_or_none(client: Client, api_version: str, resource: str, name: str,
                      namespace: str) -> dict[str, Any] | None:
    try:
        return await client.get(api_version, resource, name, namespace=namespace)
    except ApiError as e:
        if e.not_found:
            return None
        raise


def addresses(endpoints: dict[str, Any] | None, field: str) -> dict[str, set[int]]:
    """pod name → ports it is listed with under ``field``."""
    out: dict[str, set[int]] = {}
    for subset in (endpoints or {}).get("subsets") or ():
        for address in subset.get(field) or ():
            ports = {p["port"] for p in subset.get("ports") or ()}
            out.setdefault(address["targetRef"]["name"], set()).update(ports)
    return out


async def slice_endpoints(client: Client, namespace: str, service_name: str) -> dict[str, dict]:
    listed = await client.list("discovery.k8s.io/v1", "endpointslices", namespace=namespace,
                               label_selector=f"kubernetes.io/service-name={service_name}")
    out = {}
    for item in listed["items"]:
        ports = sorted(p["port"] for p in item.get("ports") or ())
        for endpoint in item.get("endpoints") or ():
            out[endpoint["targetRef"]["name"]] = {**endpoint["conditions"], "ports": ports}
    return out


async def test_endpoints_and_slices_follow_pods(client: Client,
                                                controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "svc")
    await client.create("v1", "services", service("web", {"app": "web"}, "http"), namespace=ns)
    for name, port in (("a", 8080), ("b", 9090)):
        await client.create("v1", "pods", pod(name, {"app": "web"}, ports={"http": port}),
                            namespace=ns)
    await client.create("v1", "pods", pod("other", {"app": "db"}, ports={"http": 1}), namespace=ns)
    await set_pod_status(client, ns, "a", ready=True)
    await set_pod_status(client, ns, "b", ready=False)
    await set_pod_status(client, ns, "other", ready=True)

    async def a_ready_b_not() -> bool:
        ep = await get_or_none(client, "v1", "endpoints", "web", ns)
        return addresses(ep, "addresses") == {"a": {8080}} and \
            addresses(ep, "notReadyAddresses") == {"b": {9090}}
    await eventually(a_ready_b_not, what="endpoints with a ready and b not ready")
    ep = await client.get("v1", "endpoints", "web", namespace=ns)
    assert ep["metadata"]["labels"] == {"team": "a"}
    assert "endpoints.kubernetes.io/last-change-trigger-time" in ep["metadata"]["annotations"]

    async def slices_match() -> bool:
        found = await slice_endpoints(client, ns, "web")
        return (found.get("a", {}).get("ready") is True
                and found.get("b", {}).get("ready") is False and "other" not in found)
    await eventually(slices_match, what="slices with a ready and b not ready")
    found = await slice_endpoints(client, ns, "web")
    assert found["a"]["ports"] == [8080] and found["b"]["ports"] == [9090]
    slices = (await client.list("discovery.k8s.io/v1", "endpointslices", namespace=ns))["items"]
    assert all(s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
               == "endpointslice-controller.k8s.io" for s in slices)
    assert all(s["metadata"]["generateName"] == "web-" and s["addressType"] == "IPv4"
               and s["metadata"]["ownerReferences"][0]["kind"] == "Service" for s in slices)

    await set_pod_status(client, ns, "b", ready=True)

    async def both_ready() -> bool:
        ep = await get_or_none(client, "v1", "endpoints", "web", ns)
        found = await slice_endpoints(client, ns, "web")
        return set(addresses(ep, "addresses")) == {"a", "b"} and \
            not addresses(ep, "notReadyAddresses") and \
            all(found.get(n, {}).get("ready") for n in ("a", "b"))
    await eventually(both_ready, what="both pods ready")

    await client.delete("v1", "pods", "a", namespace=ns, grace_period_seconds=0)

    async def a_gone() -> bool:
        ep = await get_or_none(client, "v1", "endpoints", "web", ns)
        found = await slice_endpoints(client, ns, "web")
        return set(addresses(ep, "addresses")) == {"b"} and set(found) == {"b"}
    await eventually(a_gone, what="deleted pod removed from endpoints and slices")

    await client.delete("v1", "services", "web", namespace=ns)

    async def endpoints_gone() -> bool:
        return await get_or_none(client, "v1", "endpoints", "web", ns) is None
    await eventually(endpoints_gone, what="endpoints deleted with their service")


async def test_user_managed_endpoints_untouched(client: Client,
                                                controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "svc")
    await client.create("v1", "services", service("manual", None), namespace=ns)
    manual = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
              "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 80}]}]}
    created = await client.create("v1", "endpoints", manual, namespace=ns)
    # A selecting Service in the same namespace shows the controller has looked at this one.
    await client.create("v1", "services", service("headless-probe", {"app": "none"}), namespace=ns)

    async def probe_synced() -> bool:
        return await get_or_none(client, "v1", "endpoints", "headless-probe", ns) is not None
    await eventually(probe_synced, what="endpoints of the selecting service")
    current = await client.get("v1", "endpoints", "manual", namespace=ns)
    assert current["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    kubernetes = await client.get("v1", "endpoints", "kubernetes", namespace="default")
    assert kubernetes["subsets"][0]["addresses"]


async def test_default_service_account(client: Client, controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "sa")

    async def has_default() -> bool:
        return await get_or_none(client, "v1", "serviceaccounts", "default", ns) is not None
    await eventually(has_default, what="default service account")
    first = await client.get("v1", "serviceaccounts", "default", namespace=ns)
    await client.delete("v1", "serviceaccounts", "default", namespace=ns)

    async def recreated() -> bool:
        sa = await get_or_none(client, "v1", "serviceaccounts", "default", ns)
        return sa is not None and sa["metadata"]["uid"] != first["metadata"]["uid"]
    await eventually(recreated, what="default service account recreated")


async def test_resource_quota_usage(client: Client, controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "quota")
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
             "spec": {"hard": {"pods": "10", "configmaps": "5", "requests.cpu": "2",
                               "count/deployments.apps": "3"}}}
    await client.create("v1", "resourcequotas", quota, namespace=ns)
    await client.create("v1", "pods", pod("p1", {"app": "x"}, cpu="250m"), namespace=ns)
    await client.create("v1", "pods", pod("p2", {"app": "x"}, cpu="500m"), namespace=ns)
    await client.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": "c"}}, namespace=ns)

    async def used(expected: dict[str, str]) -> bool:
        q = await client.get("v1", "resourcequotas", "q", namespace=ns)
        status = q.get("status") or {}
        return status.get("used") == expected and status.get("hard") == q["spec"]["hard"]

    async def counted() -> bool:
        return await used({"pods": "2", "configmaps": "1", "requests.cpu": "750m",
                           "count/deployments.apps": "0"})
    await eventually(counted, what="quota usage of two pods and a configmap")

    await set_pod_status(client, ns, "p1", phase="Succeeded", ready=False)

    async def finished_pod_released() -> bool:
        return await used({"pods": "1", "configmaps": "1", "requests.cpu": "500m",
                           "count/deployments.apps": "0"})
    await eventually(finished_pod_released, what="quota usage without the finished pod")


async def test_pdb_status(client: Client, controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "pdb")
    rs = await client.create("apps/v1", "replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
        namespace=ns)
    for i in range(3):
        await client.create("v1", "pods", pod(f"db-{i}", {"app": "db"}, owner=rs), namespace=ns)
    for i in range(2):
        await set_pod_status(client, ns, f"db-{i}", ready=True)
    for name, budget in (("min", {"minAvailable": 1}), ("max", {"maxUnavailable": "34%"})):
        await client.create("policy/v1", "poddisruptionbudgets", {
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {**budget, "selector": {"matchLabels": {"app": "db"}}}}, namespace=ns)

    async def status_of(name: str) -> dict[str, Any]:
        pdb = await client.get("policy/v1", "poddisruptionbudgets", name, namespace=ns)
        return pdb.get("status") or {}

    async def computed() -> bool:
        low, high = await status_of("min"), await status_of("max")
        return (low.get("currentHealthy"), low.get("desiredHealthy"), low.get("expectedPods"),
                low.get("disruptionsAllowed")) == (2, 1, 3, 1) and \
            (high.get("currentHealthy"), high.get("desiredHealthy"), high.get("expectedPods"),
             high.get("disruptionsAllowed")) == (2, 1, 3, 1)
    await eventually(computed, what="PDB status from pods and the ReplicaSet's scale")
    condition = (await status_of("min"))["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == \
        ("DisruptionAllowed", "True", "SufficientPods")

    # A ReplicaSet of a Deployment counts with the Deployment's scale.
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    deployment = await client.create("apps/v1", "deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}}, "template": template}},
        namespace=ns)
    owned_rs = await client.create("apps/v1", "replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
            "uid": deployment["metadata"]["uid"], "controller": True}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}},
        namespace=ns)
    for i in range(2):
        await client.create("v1", "pods", pod(f"web-{i}", {"app": "web"}, owner=owned_rs),
                            namespace=ns)
        await set_pod_status(client, ns, f"web-{i}", ready=True)
    await client.create("policy/v1", "poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}, namespace=ns)

    async def deployment_scale() -> bool:
        web = await status_of("web")
        return (web.get("expectedPods"), web.get("desiredHealthy"), web.get("currentHealthy"),
                web.get("disruptionsAllowed")) == (4, 3, 2, 0)
    await eventually(deployment_scale, what="PDB counting the Deployment's replicas")

    for i in range(2):
        await set_pod_status(client, ns, f"db-{i}", ready=False)

    async def insufficient() -> bool:
        low = await status_of("min")
        conditions = low.get("conditions") or [{}]
        return (low.get("disruptionsAllowed") == 0
                and conditions[0].get("reason") == "InsufficientPods")
    await eventually(insufficient, what="PDB without healthy pods")
