"""The service load balancer's decisions (which Services, which nodes, which addresses) and the
allocations behind Services."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from sampan.apiserver.ipalloc import ClusterIPAllocator, NodePortAllocator, transaction
from sampan.controllers.servicelb import (
    EXCLUDE_LABEL,
    LOAD_BALANCER_CLASS,
    can_host,
    desired_ingress,
    ingress_equal,
    ingress_ips,
    is_managed,
    ready_endpoint_nodes,
)


def node(name: str, *addresses: tuple[str, str], ready: bool = True,
         unschedulable: bool = False, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "addresses": [{"type": t, "address": a} for t, a in addresses]}}


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"], **spec}}


def endpoint_slice(*endpoints: tuple[str, bool | None]) -> dict[str, Any]:
    return {"endpoints": [{"addresses": ["10.42.0.9"], "nodeName": n,
                           "conditions": {} if ready is None else {"ready": ready}}
                          for n, ready in endpoints]}


def test_managed_services_are_load_balancers_of_no_class_or_ours() -> None:
    assert is_managed(service())
    assert is_managed(service(loadBalancerClass=LOAD_BALANCER_CLASS))
    assert not is_managed(service(loadBalancerClass="example.com/metal"))
    assert not is_managed(service(type="NodePort"))
    assert not is_managed(service(type="ClusterIP"))


def test_hosts_are_ready_schedulable_and_not_excluded() -> None:
    assert can_host(node("a"))
    assert not can_host(node("a", ready=False))
    assert not can_host({"metadata": {"name": "a"}, "status": {}})  # no Ready condition
    assert not can_host(node("a", unschedulable=True))
    assert can_host(node("a", unschedulable=True), schedulable=False)
    assert not can_host(node("a", labels={EXCLUDE_LABEL: ""}))


def test_ingress_is_the_internal_ips_of_hosts_sorted_numerically_as_vips() -> None:
    nodes = [node("a", ("InternalIP", "10.0.0.10"), ("Hostname", "a")),
             node("b", ("InternalIP", "10.0.0.9")),
             node("c", ("InternalIP", "10.0.0.11"), ready=False),
             node("d", ("InternalIP", "10.0.0.12"), unschedulable=True)]
    assert desired_ingress(service(), nodes, []) == [
        {"ip": "10.0.0.9", "ipMode": "VIP"}, {"ip": "10.0.0.10", "ipMode": "VIP"}]


def test_external_ips_win_when_any_host_has_one() -> None:
    nodes = [node("a", ("InternalIP", "10.0.0.1"), ("ExternalIP", "203.0.113.7")),
             node("b", ("InternalIP", "10.0.0.2"))]
    assert ingress_ips(service(), nodes) == ["203.0.113.7"]


def test_only_the_services_ip_families() -> None:
    nodes = [node("a", ("InternalIP", "10.0.0.1"), ("InternalIP", "fd00::1"))]
    assert ingress_ips(service(), nodes) == ["10.0.0.1"]
    assert ingress_ips(service(ipFamilies=["IPv6"]), nodes) == ["fd00::1"]
    assert ingress_ips(service(ipFamilies=["IPv4", "IPv6"]), nodes) == ["10.0.0.1", "fd00::1"]


def test_local_policy_takes_only_ready_nodes_with_a_ready_endpoint() -> None:
    nodes = [node("a", ("InternalIP", "10.0.0.1")), node("b", ("InternalIP", "10.0.0.2")),
             node("c", ("InternalIP", "10.0.0.3"), ready=False),
             node("d", ("InternalIP", "10.0.0.4"), unschedulable=True)]
    slices = [endpoint_slice(("a", True), ("b", False)), endpoint_slice(("c", True), ("d", None))]
    assert ready_endpoint_nodes(slices) == {"a", "c", "d"}
    local = service(externalTrafficPolicy="Local")
    assert [i["ip"] for i in desired_ingress(local, nodes, slices)] == ["10.0.0.1", "10.0.0.4"]
    assert desired_ingress(local, nodes, []) == []


def test_ingress_compare_defaults_ip_mode() -> None:
    assert ingress_equal([{"ip": "10.0.0.1"}], [{"ip": "10.0.0.1", "ipMode": "VIP"}])
    assert not ingress_equal([{"ip": "10.0.0.1", "ipMode": "Proxy"}],
                             [{"ip": "10.0.0.1", "ipMode": "VIP"}])
    assert not ingress_equal([], [{"ip": "10.0.0.1"}])


# -- allocations behind Services (sampan.apiserver.ipalloc) ---------------------------------------

def test_a_failed_write_gives_its_reservations_back() -> None:
    cache: set[int] = set()
    ports = NodePortAllocator(30000, 30001, lambda: cache)
    with pytest.raises(ValueError):
        with transaction():
            ports.reserve(30000)
            assert ports.check(30000) == "provided port is already allocated"
            raise ValueError("validation failed")
    assert ports.check(30000) is None


def test_a_committed_value_is_the_caches_once_the_cache_reaches_its_revision() -> None:
    cache: set[int] = set()
    revision = 10
    ports = NodePortAllocator(30000, 30001, lambda: cache, lambda: revision)
    with transaction() as txn:
        ports.reserve(30000)
        txn.committed(12)
    assert ports.check(30000) is not None  # the cache (at 10) has not seen the write yet
    revision = 13  # the cache saw the create and then the delete
    assert ports.check(30000) is None


def test_a_value_seen_in_the_cache_is_freed_with_its_service() -> None:
    cache: set[int] = set()
    ports = NodePortAllocator(30000, 30001, lambda: cache)
    ports.reserve(30001)
    cache.add(30001)
    assert ports.check(30001) is not None
    cache.discard(30001)
    assert ports.check(30001) is None


def test_allocation_leaves_the_bottom_of_each_range_to_values_users_pick() -> None:
    ips = ClusterIPAllocator("10.43.0.0/16", lambda: ["10.43.0.1"])
    lowest = min(ipaddress.ip_address(ips.allocate()) for _ in range(200))
    assert lowest >= ipaddress.ip_address("10.43.1.1")  # upstream keeps 256 below
    ports = NodePortAllocator(30000, 32767, lambda: ())
    assert all(ports.allocate() >= 30086 for _ in range(200))  # 2768 / 32 kept
    small = NodePortAllocator(30000, 30017, lambda: ())  # 18 ports: 16 kept, 2 above
    assert sorted(small.allocate() for _ in range(18)) == list(range(30000, 30018))
    with pytest.raises(RuntimeError):
        small.allocate()
    tiny = ClusterIPAllocator("10.43.0.0/29", lambda: ["10.43.0.1"])  # no band below 16
    assert sorted(tiny.allocate() for _ in range(5)) == [f"10.43.0.{i}" for i in range(2, 7)]
