"""The cluster DNS server against a real API server: records appear, change and disappear
with Services and EndpointSlices; other names go to a tiny upstream on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype as T
import dns.reversename
import pytest

from sampan.client import Client, InformerFactory, load_kubeconfig, retry_on_conflict
from sampan.controllers.endpointslice import EndpointSliceController
from sampan.controllers.util import now_rfc3339
from sampan.dns import ClusterDNS
from tests.integration.helpers import eventually, new_namespace
from tests.unit.test_dns_server import FakeUpstream

ZONE = "cluster.local."


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream({"www.example.": ["A 192.0.2.1"], "db.example.": ["A 192.0.2.7"]})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def cluster_dns(client: Client, upstream: FakeUpstream) -> AsyncIterator[ClusterDNS]:
    async with ClusterDNS(client, listen=[("127.0.0.1", 0)], upstreams=[upstream.address],
                          startup_timeout=30) as server:
        assert server.synced
        yield server


@pytest.fixture
async def namespace(client: Client) -> AsyncIterator[str]:
    name = await new_namespace(client, "dns")
    yield name
    await client.delete("v1", "namespaces", name)


async def query(cluster_dns: ClusterDNS, name: str, rdtype: str = "A", *,
                proto: str = "udp") -> dns.message.Message:
    host, port = cluster_dns.addresses[0]
    q = dns.message.make_query(name, rdtype, use_edns=0)
    send = dns.asyncquery.udp if proto == "udp" else dns.asyncquery.tcp
    response = await send(q, host, port=port, timeout=5)
    assert response.id == q.id and response.question == q.question
    return response


def records(response: dns.message.Message, rdtype: int) -> list[str]:
    return sorted(r.to_text() for rrset in response.answer if rrset.rdtype == rdtype
                  for r in rrset)


async def resolves(cluster_dns: ClusterDNS, name: str, rdtype: str, expected: list[str]) -> None:
    async def check() -> bool:
        return records(await query(cluster_dns, name, rdtype), T.from_text(rdtype)) == expected
    await eventually(check, what=f"{name} {rdtype} → {expected}")


def service(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"name": "http", "port": 80, "protocol": "TCP"},
                              {"name": "dns", "port": 53, "protocol": "UDP"}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def endpoint_slice(name: str, service_name: str, endpoints: list[dict[str, Any]],
                   port: int = 5432) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "ports": [{"name": "pg", "port": port, "protocol": "TCP"}],
            "endpoints": endpoints}


async def test_cluster_ip_service(client, cluster_dns, namespace):
    created = await client.create("v1", "services", service("web"), namespace=namespace)
    ip = created["spec"]["clusterIP"]
    name = f"web.{namespace}.svc.{ZONE}"
    await resolves(cluster_dns, name, "A", [ip])
    assert records(await query(cluster_dns, name, proto="tcp"), T.A) == [ip]

    nodata = await query(cluster_dns, name, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == T.SOA and nodata.flags & dns.flags.AA

    srv = await query(cluster_dns, f"_http._tcp.{name}", "SRV")
    assert records(srv, T.SRV) == [f"0 100 80 {name}"]
    assert [r.to_text() for r in srv.additional[0]] == [ip]
    udp_srv = await query(cluster_dns, f"_dns._udp.{name}", "SRV")
    assert records(udp_srv, T.SRV) == [f"0 100 53 {name}"]
    assert (await query(cluster_dns, f"_http._udp.{name}", "SRV")).rcode() == dns.rcode.NXDOMAIN

    ptr = await query(cluster_dns, dns.reversename.from_address(ip).to_text(), "PTR")
    assert records(ptr, T.PTR) == [name]

    for missing in (f"nope.{namespace}.svc.{ZONE}", f"web.no-such-ns.svc.{ZONE}",
                    f"{name}{namespace}.svc.{ZONE}", f"kubernetes.default.svc.{ZONE}svc.{ZONE}"):
        response = await query(cluster_dns, missing)
        assert response.rcode() == dns.rcode.NXDOMAIN, missing
        assert response.authority[0].rdtype == T.SOA


async def test_headless_service_with_hand_made_slices(client, cluster_dns, namespace):
    await client.create("v1", "services", service(
        "db", clusterIP="None", ports=[{"name": "pg", "port": 5432}]), namespace=namespace)
    await client.create("discovery.k8s.io/v1", "endpointslices", endpoint_slice("db-a", "db", [
        {"addresses": ["10.42.3.10"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.42.3.11"], "hostname": "db-1", "conditions": {"ready": True}},
        {"addresses": ["10.42.3.12"], "hostname": "db-2", "conditions": {"ready": False}},
        {"addresses": ["10.42.3.13"], "conditions": {"ready": True}},
    ]), namespace=namespace)
    name = f"db.{namespace}.svc.{ZONE}"
    await resolves(cluster_dns, name, "A", ["10.42.3.10", "10.42.3.11", "10.42.3.13"])
    assert records(await query(cluster_dns, f"db-1.{name}"), T.A) == ["10.42.3.11"]
    assert records(await query(cluster_dns, f"10-42-3-13.{name}"), T.A) == ["10.42.3.13"]
    assert (await query(cluster_dns, f"db-2.{name}")).rcode() == dns.rcode.NXDOMAIN

    srv = await query(cluster_dns, f"_pg._tcp.{name}", "SRV", proto="tcp")
    assert records(srv, T.SRV) == [f"0 33 5432 10-42-3-13.{name}", f"0 33 5432 db-0.{name}",
                                   f"0 33 5432 db-1.{name}"]
    assert {a.name.to_text() for a in srv.additional} == {
        f"db-0.{name}", f"db-1.{name}", f"10-42-3-13.{name}"}
    ptr = await query(cluster_dns, "10.3.42.10.in-addr.arpa.", "PTR")
    assert records(ptr, T.PTR) == [f"db-0.{name}"]

    # the endpoint becomes ready; then the slice goes away
    async def mark_ready() -> None:
        current = await client.get("discovery.k8s.io/v1", "endpointslices", "db-a",
                                   namespace=namespace)
        current["endpoints"][2]["conditions"]["ready"] = True
        await client.update("discovery.k8s.io/v1", "endpointslices", current, namespace=namespace)
    await retry_on_conflict(mark_ready)
    await resolves(cluster_dns, f"db-2.{name}", "A", ["10.42.3.12"])
    await client.delete("discovery.k8s.io/v1", "endpointslices", "db-a", namespace=namespace)

    async def gone() -> bool:
        return (await query(cluster_dns, name)).rcode() == dns.rcode.NXDOMAIN
    await eventually(gone, what="headless service without endpoints is NXDOMAIN")


async def test_external_name(client, cluster_dns, namespace, upstream):
    await client.create("v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "www.example"}}, namespace=namespace)
    name = f"ext.{namespace}.svc.{ZONE}"
    await resolves(cluster_dns, name, "CNAME", ["www.example."])
    response = await query(cluster_dns, name, "A")
    assert records(response, T.CNAME) == ["www.example."]
    assert records(response, T.A) == ["192.0.2.1"]  # chased through the upstream

    async def retarget() -> None:
        current = await client.get("v1", "services", "ext", namespace=namespace)
        current["spec"]["externalName"] = "db.example"
        await client.update("v1", "services", current, namespace=namespace)
    await retry_on_conflict(retarget)
    await resolves(cluster_dns, name, "A", ["192.0.2.7"])


async def test_service_changes_and_deletion(client, cluster_dns, namespace):
    await client.create("v1", "services", service("svc"), namespace=namespace)
    name = f"svc.{namespace}.svc.{ZONE}"
    await resolves(cluster_dns, f"_http._tcp.{name}", "SRV", [f"0 100 80 {name}"])

    async def rename_port() -> None:
        current = await client.get("v1", "services", "svc", namespace=namespace)
        current["spec"]["ports"][0]["name"] = "web"
        current["spec"]["ports"][0]["port"] = 8080
        await client.update("v1", "services", current, namespace=namespace)
    await retry_on_conflict(rename_port)
    await resolves(cluster_dns, f"_web._tcp.{name}", "SRV", [f"0 100 8080 {name}"])
    assert (await query(cluster_dns, f"_http._tcp.{name}", "SRV")).rcode() == dns.rcode.NXDOMAIN

    await client.delete("v1", "services", "svc", namespace=namespace)

    async def gone() -> bool:
        return (await query(cluster_dns, name)).rcode() == dns.rcode.NXDOMAIN
    await eventually(gone, what="deleted service is NXDOMAIN")


async def test_pod_records_and_namespace_names(cluster_dns, namespace):
    # The namespace was just created: the DNS knows it once its informer has seen it.
    async def pod_record() -> bool:
        pod = await query(cluster_dns, f"10-42-0-7.{namespace}.pod.{ZONE}")
        return records(pod, T.A) == ["10.42.0.7"]
    await eventually(pod_record, what="pod record in a new namespace")
    empty = await query(cluster_dns, f"{namespace}.svc.{ZONE}")
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer
    assert (await query(cluster_dns, ZONE, "SOA")).answer[0].rdtype == T.SOA
    assert records(await query(cluster_dns, f"dns-version.{ZONE}", "TXT"), T.TXT) == ['"1.1.0"']


async def test_forwarding_and_garbage(cluster_dns, upstream):
    for proto in ("udp", "tcp"):
        assert records(await query(cluster_dns, "www.example.", proto=proto), T.A) == ["192.0.2.1"]
    assert (await query(cluster_dns, "nothing.example.")).rcode() == dns.rcode.NXDOMAIN
    assert all(name != f"web.default.svc.{ZONE}" for _, name, _ in upstream.queries)

    host, port = cluster_dns.addresses[0]
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Collect(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Collect, remote_addr=(host, port))
    try:
        transport.sendto(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07garbage")
        reply = dns.message.from_wire(await asyncio.wait_for(replies.get(), 10))
        assert reply.id == 0xABCD and reply.rcode() == dns.rcode.FORMERR
    finally:
        transport.close()
    assert records(await query(cluster_dns, "www.example."), T.A) == ["192.0.2.1"]


async def test_statefulset_style_pods_through_the_endpointslice_controller(client, cluster_dns,
                                                                         namespace):
    informers = InformerFactory(client)
    controller = EndpointSliceController(client, informers, workers=1)
    informers.start()
    task = asyncio.create_task(controller.run())
    try:
        await client.create("v1", "services", service(
            "peers", clusterIP="None", selector={"app": "peers"},
            ports=[{"name": "gossip", "port": 7000}]), namespace=namespace)
        for i in range(2):
            await client.create("v1", "pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"peers-{i}", "labels": {"app": "peers"}},
                "spec": {"hostname": f"peers-{i}", "subdomain": "peers",
                         "containers": [{"name": "app", "image": "busybox"}]}},
                namespace=namespace)
            await _running(client, namespace, f"peers-{i}", f"10.42.7.{i + 2}")
        name = f"peers.{namespace}.svc.{ZONE}"
        await resolves(cluster_dns, name, "A", ["10.42.7.2", "10.42.7.3"])
        assert records(await query(cluster_dns, f"peers-1.{name}"), T.A) == ["10.42.7.3"]
        assert records(await query(cluster_dns, f"_gossip._tcp.{name}", "SRV"), T.SRV) == [
            f"0 50 7000 peers-0.{name}", f"0 50 7000 peers-1.{name}"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await informers.stop()


async def _running(client: Client, namespace: str, name: str, ip: str) -> None:
    async def write() -> None:
        pod = await client.get("v1", "pods", name, namespace=namespace)
        now = now_rfc3339()
        pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "hostIP": "10.99.0.1", "startTime": now,
                         "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                        for t in ("PodScheduled", "Initialized",
                                                  "ContainersReady", "Ready")]}
        await client.update("v1", "pods", pod, namespace=namespace, subresource="status")
    await retry_on_conflict(write)
