"""The service proxy's iptables backend against the real kernel and the real API server.

The same network namespaces as the nftables test (``tests/integration/test_proxy.py``'s World:
a "host" namespace with a bridge, two server pods and a client pod, and an "outside" namespace
behind the node address). Every test runs twice: with ``iptables-legacy`` (x_tables) when the
host has it, and with the default ``iptables`` (iptables-nft on Debian). The proxy applies its
chains inside the host namespace (``nsenter --net=… iptables-restore``); every test ends by
checking that no chain of ours is left in either family.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from sampan.client import Client
from sampan.proxy import ServiceProxy
from sampan.proxy.bench import synthetic
from sampan.proxy.iptables import IptablesBackend, family_command
from sampan.proxy.model import build_service_ports, categorize
from sampan.proxy.rules import NodeInfo
from tests.integration.helpers import eventually
from tests.integration.test_proxy import (GATEWAY, NODE_IP, OUTSIDE_IP, PODS, World, backends,
                                          make_service, proxy_namespace, running_world,
                                          set_endpoints, sh)

# Debian's iptables package (install.sh) ships both the legacy and the nf_tables binaries.
BINARIES = ["iptables-legacy", "iptables"]


@pytest.fixture(params=BINARIES)
def binary(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def world():
    # The service range is routed back out of the bridge the pods are on: the redirects the
    # host would send for that use up the rate limit of the ICMP errors under test.
    with running_world("net.ipv4.conf.all.send_redirects=0",
                       "net.ipv4.conf.br0.send_redirects=0") as w:
        yield w


@pytest.fixture
async def cluster(kubeconfig) -> AsyncIterator[tuple[Client, str]]:
    async with proxy_namespace(kubeconfig, "proxy-ipt") as pair:
        yield pair


def saved_rules(world: World, binary: str, family: int = 4) -> str:
    return sh("ip", "netns", "exec", world.host, *family_command([binary], family, "save"))


def our_chains(world: World, binary: str, prefix: str) -> list[str]:
    return [line for family in (4, 6) for line in saved_rules(world, binary, family).splitlines()
            if prefix in line]


@contextlib.asynccontextmanager
async def running_proxy(client: Client, world: World, binary: str,
                        node: str = "node-a") -> AsyncIterator[ServiceProxy]:
    prefix = f"SAMPAN-{secrets.token_hex(2).upper()}"
    nsenter = ["nsenter", f"--net={world.pin(world.host)}"]
    proxy = ServiceProxy(client, node, node_ips=[NODE_IP], mode="iptables",
                         iptables=[*nsenter, binary], chain_prefix=prefix,
                         conntrack=[*nsenter, "conntrack"])
    stop = asyncio.Event()
    task = asyncio.create_task(proxy.run(stop))
    try:
        await eventually(lambda: _true(proxy.syncs > 0), what="first sync")
        assert our_chains(world, binary, prefix), "no chains programmed"
        yield proxy
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        assert our_chains(world, binary, prefix) == [], "the proxy left rules behind"


async def _true(value: bool) -> bool:
    return value


# -- tests ---------------------------------------------------------------------------------
async def test_cluster_ip_round_robin_follows_updates(world, cluster, binary):
    client, namespace = cluster
    ip = (await make_service(client, namespace, "web"))["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "web", "p1", "p2")
    async with running_proxy(client, world, binary):
        async def both() -> bool:
            return backends(await world.connect("client", ip, 80, 20)) == {"p1", "p2"}
        await eventually(both, what="answers from both backends")
        replies = await world.connect("client", ip, 80, 5)
        assert all(r.endswith(PODS["client"]) for r in replies), replies  # no SNAT in-cluster

        await set_endpoints(client, namespace, "web", "p2")

        async def only_p2() -> bool:
            return backends(await world.connect("client", ip, 80, 10)) == {"p2"}
        await eventually(only_p2, what="p1 out of rotation")
        await set_endpoints(client, namespace, "web", "p1", "p2")
        await eventually(both, what="p1 back in rotation")
        # the node itself (nat OUTPUT) reaches the service too
        replies = await world.connect(world.host, ip, 80, 3)
        assert replies and backends(replies) <= {"p1", "p2"}, replies


async def test_service_without_endpoints_is_refused_at_once(world, cluster, binary):
    client, namespace = cluster
    ip = (await make_service(client, namespace, "empty"))["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "empty", "p1", ready=False)
    async with running_proxy(client, world, binary):
        async def refused() -> bool:
            return await world.connect("client", ip, 80) == ["ERROR ECONNREFUSED"]
        await eventually(refused, what="connection refused")
        assert await world.connect("client", ip, 80, 3) == ["ERROR ECONNREFUSED"] * 3
        assert await world.connect(world.host, ip, 80) == ["ERROR ECONNREFUSED"]
        # an allocated ClusterIP's other ports are refused, an unallocated address dropped
        assert await world.connect("client", ip, 81) == ["ERROR ECONNREFUSED"]
        unallocated = str(ipaddress.ip_address(ip) + 1)
        if f"-d {unallocated}/32 " not in saved_rules(world, binary):
            assert await world.connect("client", unallocated, 80) == ["ERROR TimeoutError"]

        await set_endpoints(client, namespace, "empty", "p1")

        async def answers() -> bool:
            return backends(await world.connect("client", ip, 80)) == {"p1"}
        await eventually(answers, what="the service answering once ready")


async def test_client_ip_affinity_sticks_across_syncs(world, cluster, binary):
    client, namespace = cluster
    ip = (await make_service(client, namespace, "sticky", sessionAffinity="ClientIP",
                             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
          )["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "sticky", "p1", "p2")
    async with running_proxy(client, world, binary) as proxy:
        async def answers() -> bool:
            return not (await world.connect("client", ip, 80))[0].startswith("ERROR")
        await eventually(answers, what="sticky service answering")
        replies = await world.connect("client", ip, 80, 20)
        assert len(backends(replies)) == 1, replies
        # an unrelated change (a partial restore) keeps the -m recent lists
        await make_service(client, namespace, "other")
        await set_endpoints(client, namespace, "other", "p1")
        syncs = proxy.syncs
        await eventually(lambda: _true(proxy.syncs > syncs), what="another sync")
        assert backends(await world.connect("client", ip, 80, 10)) == backends(replies)
        await proxy.sync_once(full=True)  # and so does a full one
        assert backends(await world.connect("client", ip, 80, 10)) == backends(replies)


async def test_node_port_answers_on_the_node_address(world, cluster, binary):
    client, namespace = cluster
    svc = await make_service(client, namespace, "np", type="NodePort")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    await set_endpoints(client, namespace, "np", "p1", "p2")
    async with running_proxy(client, world, binary):
        async def from_outside() -> bool:
            return backends(await world.connect("outside", NODE_IP, node_port, 10)) \
                == {"p1", "p2"}
        await eventually(from_outside, what="NodePort from outside")
        replies = await world.connect("outside", NODE_IP, node_port, 3)
        assert all(r.split()[1] != OUTSIDE_IP for r in replies), replies  # masqueraded
        assert backends(await world.connect("client", NODE_IP, node_port, 3)) <= {"p1", "p2"}
        assert backends(await world.connect(world.host, NODE_IP, node_port, 3)) <= {"p1", "p2"}

        await set_endpoints(client, namespace, "np", "p1", ready=False)

        async def refused() -> bool:
            return await world.connect("outside", NODE_IP, node_port) == ["ERROR ECONNREFUSED"]
        await eventually(refused, what="NodePort without endpoints refused")


async def test_external_traffic_policy_local_and_external_ips(world, cluster, binary):
    client, namespace = cluster
    svc = await make_service(client, namespace, "loc", type="NodePort",
                             externalTrafficPolicy="Local", externalIPs=["10.99.79.9"])
    node_port = svc["spec"]["ports"][0]["nodePort"]
    sh("ip", "-n", world.ns["outside"], "route", "replace", "10.99.79.9/32", "via", NODE_IP)
    await set_endpoints(client, namespace, "loc", "p1", node="node-b")  # remote only
    async with running_proxy(client, world, binary):
        async def dropped() -> bool:
            return await world.connect("outside", NODE_IP, node_port) == ["ERROR TimeoutError"]
        await eventually(dropped, what="external traffic dropped without local endpoints")
        # pods still reach it (short-circuit to the cluster-wide endpoints)
        assert backends(await world.connect("client", NODE_IP, node_port)) == {"p1"}

        await set_endpoints(client, namespace, "loc", "p2", node="node-a")

        async def local() -> bool:
            return backends(await world.connect("outside", NODE_IP, node_port, 3)) == {"p2"}
        await eventually(local, what="the local endpoint answering")
        # a Local policy keeps the client's address
        assert (await world.connect("outside", NODE_IP, node_port))[0] == f"p2 {OUTSIDE_IP}"
        assert (await world.connect("outside", "10.99.79.9", 80))[0] == f"p2 {OUTSIDE_IP}"


async def test_internal_traffic_policy_local(world, cluster, binary):
    client, namespace = cluster
    ip = (await make_service(client, namespace, "itp", internalTrafficPolicy="Local")
          )["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "itp", "p1", node="node-b")
    async with running_proxy(client, world, binary):
        async def dropped() -> bool:  # endpoints elsewhere only: dropped, not refused
            return await world.connect("client", ip, 80) == ["ERROR TimeoutError"]
        await eventually(dropped, what="no local endpoint: dropped")

        body = await client.get("discovery.k8s.io/v1", "endpointslices", "itp-manual",
                                namespace=namespace)
        body["endpoints"].append({"addresses": [PODS["p2"]], "nodeName": "node-a",
                                  "conditions": {"ready": True}})
        await client.update("discovery.k8s.io/v1", "endpointslices", body, namespace=namespace)

        async def only_local() -> bool:
            return backends(await world.connect("client", ip, 80, 10)) == {"p2"}
        await eventually(only_local, what="only the local endpoint")


async def test_hairpin_pod_reaches_itself_through_its_service(world, cluster, binary):
    client, namespace = cluster
    ip = (await make_service(client, namespace, "self"))["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "self", "p1")
    async with running_proxy(client, world, binary):
        async def hairpin() -> bool:
            return backends(await world.connect("p1", ip, 80)) == {"p1"}
        await eventually(hairpin, what="hairpin connection")
        assert (await world.connect("p1", ip, 80))[0] == f"p1 {GATEWAY}"  # masqueraded


async def test_two_proxies_in_one_namespace_do_not_collide(world, cluster, binary):
    client, namespace = cluster
    ip = (await make_service(client, namespace, "shared"))["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "shared", "p1", "p2")
    async with running_proxy(client, world, binary, node="node-a"):
        async with running_proxy(client, world, binary, node="node-b"):
            async def both() -> bool:
                return backends(await world.connect("client", ip, 80, 20)) == {"p1", "p2"}
            await eventually(both, what="answers with two proxies")
        # the other proxy's removal left this one's rules working
        assert backends(await world.connect("client", ip, 80, 20)) == {"p1", "p2"}


async def test_measure_sync_1000_services_by_10_endpoints(world, binary):
    """Not a timing assertion: prints the figures (pytest -s) for bench/service."""
    scratch = f"{world.host}-bench"
    sh("ip", "netns", "add", scratch)
    try:
        node = NodeInfo("bench", ("10.99.0.1",))
        backend = IptablesBackend(node, chain_prefix="SAMPAN-BENCH", iptables=[
            "nsenter", f"--net=/run/netns/{scratch}", binary])
        svcs, slices = synthetic(1000, 10)

        def ports():
            return [(sp, categorize(sp, node.name))
                    for sp in build_service_ports(svcs, slices)]

        start = time.perf_counter()
        tables = backend.desired(ports())
        generated = time.perf_counter()
        await backend.sync(ports(), full=True)
        full = time.perf_counter()
        slices[0]["endpoints"][0]["addresses"] = ["10.41.255.1"]  # one endpoint moved
        await backend.sync(ports())
        partial = time.perf_counter()
        await backend.sync(ports(), full=True)
        full_again = time.perf_counter()
        rules = sum(len(r) for t in tables[4].values() for r in t.values())
        print(f"\niptables sync ({binary}): 1000 services x 10 endpoints, {rules} rules: "
              f"generate {generated - start:.3f}s, first full sync "
              f"{full - generated:.3f}s, partial sync {partial - full:.3f}s, "
              f"full resync {full_again - partial:.3f}s")
        await backend.delete()
        assert "SAMPAN-BENCH" not in sh("ip", "netns", "exec", scratch,
                                        *family_command([binary], 4, "save"))
    finally:
        sh("ip", "netns", "del", scratch, check=False)
