"""Bad Services through the real API server: each gets upstream's 422 with kubectl's message,
changes nothing, and leaves every other Service its addresses and ports; allocations come back
when a Service goes (or never came to be). A targetPort no pod has is not an error: those pods
are simply not endpoints of that port."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.controllers.endpoints import EndpointsController
from sampan.controllers.endpointslice import EndpointSliceController
from sampan.controllers.manager import ControllerManager
from tests.integration.helpers import (eventually, exists, new_namespace, running_controllers,
                                       set_pod_status)

SERVICE_PORT_TCP_80 = ('core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
                       'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, '
                       'NodePort:0}')


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def endpoint_controllers(client: Client) -> AsyncIterator[ControllerManager]:
    async with running_controllers(client, (EndpointsController,
                                            EndpointSliceController)) as manager:
        yield manager


def svc(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def free_node_port() -> int:
    # Random so that runs sharing one API server do not collide.
    return random.randrange(30000, 32768)


def free_cluster_ip() -> str:
    return f"10.43.{random.randrange(200, 255)}.{random.randrange(2, 255)}"


async def rejected(client: Client, ns: str, body: dict[str, Any]) -> ApiError:
    """Create ``body``, expect a 422, and check nothing was stored."""
    with pytest.raises(ApiError) as caught:
        await client.create("v1", "services", body, namespace=ns)
    error = caught.value
    assert error.code == 422 and error.reason == "Invalid", error.message
    assert not await exists(client, "v1", "services", body["metadata"]["name"], ns)
    return error


async def test_each_bad_service_gets_upstreams_error(client: Client) -> None:
    ns = await new_namespace(client, "badsvc")
    bystander = await client.create("v1", "services", svc("bystander", type="NodePort"),
                                    namespace=ns)

    e = await rejected(client, ns, svc("dup", ports=[{"name": "a", "port": 80},
                                                     {"name": "b", "port": 80}]))
    assert e.message == f'Service "dup" is invalid: spec.ports[1]: Duplicate value: ' \
                        f'{SERVICE_PORT_TCP_80}'
    assert e.details["causes"][0]["field"] == "spec.ports[1]"

    e = await rejected(client, ns, svc("tp-high", ports=[{"port": 80, "targetPort": 70000}]))
    assert e.message == 'Service "tp-high" is invalid: spec.ports[0].targetPort: Invalid ' \
                        'value: 70000: must be between 1 and 65535, inclusive'
    e = await rejected(client, ns, svc("tp-neg", ports=[{"port": 80, "targetPort": -1}]))
    assert "spec.ports[0].targetPort: Invalid value: -1" in e.message
    e = await rejected(client, ns, svc("tp-name", ports=[{"port": 80, "targetPort": "Bad_Name"}]))
    assert e.message == 'Service "tp-name" is invalid: spec.ports[0].targetPort: Invalid ' \
                        'value: "Bad_Name": must contain only alpha-numeric characters ' \
                        '(a-z, 0-9), and hyphens (-)'

    e = await rejected(client, ns, svc("np-range", type="NodePort",
                                       ports=[{"port": 80, "nodePort": 80}]))
    assert e.message == 'Service "np-range" is invalid: spec.ports[0].nodePort: Invalid ' \
                        'value: 80: provided port is not in the valid range. The range of ' \
                        'valid ports is 30000-32767'
    taken = bystander["spec"]["ports"][0]["nodePort"]
    e = await rejected(client, ns, svc("np-taken", type="NodePort",
                                       ports=[{"port": 80, "nodePort": taken}]))
    assert e.message == f'Service "np-taken" is invalid: spec.ports[0].nodePort: Invalid ' \
                        f'value: {taken}: provided port is already allocated'

    e = await rejected(client, ns, svc("ip-range", clusterIP="10.96.0.5"))
    assert e.message.startswith('Service "ip-range" is invalid: spec.clusterIPs: Invalid value:')
    assert e.message.endswith("failed to allocate IP 10.96.0.5: the provided IP (10.96.0.5) is "
                              "not in the valid range. The range of valid IPs is 10.43.0.0/16")
    bystander_ip = bystander["spec"]["clusterIP"]
    e = await rejected(client, ns, svc("ip-taken", clusterIP=bystander_ip))
    assert e.message.endswith(f"failed to allocate IP {bystander_ip}: provided IP is already "
                              f"allocated")

    e = await rejected(client, ns, svc("headless-np", clusterIP="None", type="NodePort"))
    assert e.message == 'Service "headless-np" is invalid: spec.clusterIPs[0]: Invalid value: ' \
                        '"None": may not be set to \'None\' for NodePort services'
    e = await rejected(client, ns, {"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": "ext"}, "spec": {"type": "ExternalName"}})
    assert e.message == 'Service "ext" is invalid: spec.externalName: Required value'

    # Nothing of the above touched the bystander.
    now = await client.get("v1", "services", "bystander", namespace=ns)
    assert now["spec"] == bystander["spec"]
    assert now["metadata"]["resourceVersion"] == bystander["metadata"]["resourceVersion"]


async def test_upstream_accepts_what_it_defaults(client: Client) -> None:
    """The same port over two protocols is two ports; targetPort 0 means "the port"."""
    ns = await new_namespace(client, "badsvc")
    dns = await client.create("v1", "services", svc("dns", ports=[
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]), namespace=ns)
    assert [p["protocol"] for p in dns["spec"]["ports"]] == ["UDP", "TCP"]
    zero = await client.create("v1", "services", svc("zero", ports=[
        {"port": 8080, "targetPort": 0}]), namespace=ns)
    assert zero["spec"]["ports"][0]["targetPort"] == 8080


async def test_cluster_ip_is_immutable(client: Client) -> None:
    ns = await new_namespace(client, "badsvc")
    created = await client.create("v1", "services", svc("fixed"), namespace=ns)
    ip = created["spec"]["clusterIP"]
    moved = {**created, "spec": {**created["spec"], "clusterIP": "10.43.250.250",
                                 "clusterIPs": ["10.43.250.250"]}}
    with pytest.raises(ApiError) as caught:
        await client.update("v1", "services", moved, namespace=ns)
    assert caught.value.code == 422
    assert caught.value.message == 'Service "fixed" is invalid: spec.clusterIPs[0]: Invalid ' \
                                   'value: []string{"10.43.250.250"}: may not change once set'
    assert (await client.get("v1", "services", "fixed", namespace=ns))["spec"]["clusterIP"] == ip


async def test_allocations_come_back_when_the_service_is_deleted(client: Client) -> None:
    ns = await new_namespace(client, "badsvc")
    port, ip = free_node_port(), free_cluster_ip()
    await client.create("v1", "services", svc("first", type="NodePort", clusterIP=ip,
                                              ports=[{"port": 80, "nodePort": port}]),
                        namespace=ns)
    await client.delete("v1", "services", "first", namespace=ns)

    async def reusable() -> bool:
        try:
            await client.create("v1", "services", svc("second", type="NodePort", clusterIP=ip,
                                                      ports=[{"port": 80, "nodePort": port}]),
                                namespace=ns)
        except ApiError as e:
            if "already allocated" in e.message:
                return False  # the delete has not reached the server's cache yet
            raise
        return True
    # Until the cache has seen the delete; at most PENDING_TTL (30 s) without the revision wiring.
    await eventually(reusable, timeout=60, what="node port and cluster IP reusable after delete")


async def test_a_failed_create_keeps_nothing(client: Client) -> None:
    ns = await new_namespace(client, "badsvc")
    port, ip = free_node_port(), free_cluster_ip()
    bad = svc("retry", type="NodePort", clusterIP=ip,
              ports=[{"name": "a", "port": 80, "nodePort": port}, {"name": "b", "port": 80}])
    await rejected(client, ns, bad)
    good = svc("retry", type="NodePort", clusterIP=ip, ports=[{"port": 80, "nodePort": port}])
    created = await client.create("v1", "services", good, namespace=ns)
    assert created["spec"]["clusterIP"] == ip
    assert created["spec"]["ports"][0]["nodePort"] == port


def pod(name: str, ports: dict[str, int]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [
                {"name": n, "containerPort": p} for n, p in ports.items()]}]}}


def subsets(endpoints: dict[str, Any]) -> dict[str, set[int]]:
    """pod name → ready ports."""
    out: dict[str, set[int]] = {}
    for subset in endpoints.get("subsets") or ():
        ports = {p["port"] for p in subset.get("ports") or ()}
        for address in subset.get("addresses") or ():
            out.setdefault(address["targetRef"]["name"], set()).update(ports)
    return out


async def slice_ports(client: Client, ns: str, service: str) -> dict[str, list[int]]:
    """pod name → ports of the slice it is in."""
    listed = await client.list("discovery.k8s.io/v1", "endpointslices", namespace=ns,
                               label_selector=f"kubernetes.io/service-name={service}")
    return {e["targetRef"]["name"]: sorted(p["port"] for p in s.get("ports") or ())
            for s in listed["items"] for e in s.get("endpoints") or ()}


async def test_target_port_no_pod_has_leaves_those_pods_out(
        client: Client, endpoint_controllers: ControllerManager) -> None:
    ns = await new_namespace(client, "badsvc")
    await client.create("v1", "services", svc("named", selector={"app": "web"}, ports=[
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9100, "targetPort": "metrics"}]), namespace=ns)
    await client.create("v1", "services", svc("missing", selector={"app": "web"}, ports=[
        {"name": "x", "port": 80, "targetPort": "nosuchport"}]), namespace=ns)
    await client.create("v1", "services", svc("plain", selector={"app": "web"}, ports=[
        {"port": 80, "targetPort": 8080}]), namespace=ns)
    await client.create("v1", "pods", pod("full", {"http": 8080, "metrics": 9100}), namespace=ns)
    await client.create("v1", "pods", pod("bare", {"http": 8080}), namespace=ns)
    for name in ("full", "bare"):
        await set_pod_status(client, ns, name, ready=True)

    async def settled() -> bool:
        try:
            named = await client.get("v1", "endpoints", "named", namespace=ns)
            plain = await client.get("v1", "endpoints", "plain", namespace=ns)
            missing = await client.get("v1", "endpoints", "missing", namespace=ns)
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return (subsets(named) == {"full": {8080, 9100}, "bare": {8080}}
                and subsets(plain) == {"full": {8080}, "bare": {8080}}
                and subsets(missing) == {}
                and await slice_ports(client, ns, "named") == {"full": [8080, 9100],
                                                               "bare": [8080]}
                and await slice_ports(client, ns, "plain") == {"full": [8080], "bare": [8080]})
    await eventually(settled, what="endpoints by the ports each pod has")
