"""The service proxy against the real kernel and the real API server.

A "host" network namespace made here carries a bridge with two "pod" namespaces and a client
pod on 10.42.77.0/24, and a veth to an "outside" namespace whose host end (10.99.77.1) is the
node address. The ServiceProxy runs in this process against the API server fixture and applies
its rules inside the host namespace (``nsenter --net=… nft``). Services and EndpointSlices are
written by hand. Traffic only flows between namespaces this test created; everything is
removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from sampan.client import Client
from sampan.proxy import ServiceProxy
from sampan.proxy.bench import measure_sync
from tests.integration.helpers import eventually, new_namespace

PYTHON = sys.executable
NODE_IP = "10.99.77.1"
OUTSIDE_IP = "10.99.77.2"
GATEWAY = "10.42.77.1"
SERVICE_CIDR = "10.43.0.0/16"
PODS = {"p1": "10.42.77.11", "p2": "10.42.77.12", "client": "10.42.77.13"}
SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, addr = u.recvfrom(1024)
        u.sendto(f"{name} {addr[0]}".encode(), addr)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, addr = s.accept()
    c.sendall(f"{name} {addr[0]}".encode())
    c.close()
"""
CLIENT = r"""
import errno, json, socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
proto = sys.argv[4] if len(sys.argv) > 4 else "tcp"
source_port = int(sys.argv[5]) if len(sys.argv) > 5 else 0
out = []
for _ in range(count):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(3)
    if source_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", source_port))
    try:
        if proto == "tcp":
            s.connect((host, port))
            out.append(s.recv(1024).decode())
        else:
            s.sendto(b"hi", (host, port))
            out.append(s.recvfrom(1024)[0].decode())
    except OSError as e:
        out.append("ERROR " + (errno.errorcode.get(e.errno, "") if e.errno else type(e).__name__))
    finally:
        s.close()
print(json.dumps(out))
"""


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


class World:
    """The namespaces of one test module and the servers in them."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.host = f"spx-{tag}-host"
        self.ns = {name: f"spx-{tag}-{name}" for name in (*PODS, "outside")}
        self.servers: list[subprocess.Popen] = []

    def pin(self, name: str) -> str:
        return f"/run/netns/{self.ns.get(name, name)}"

    def build(self) -> None:
        h = self.host
        sh("ip", "netns", "add", h)
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
        sh("ip", "-n", h, "link", "set", "lo", "up")
        sh("ip", "-n", h, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", h, "addr", "add", f"{GATEWAY}/24", "dev", "br0")
        sh("ip", "-n", h, "link", "set", "br0", "up")
        sh("ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # A node needs a route for the service range, or its own processes fail routing before
        # the output hook can DNAT; unallocated addresses are dropped by the proxy's rules.
        sh("ip", "-n", h, "route", "add", SERVICE_CIDR, "dev", "br0")
        for i, (name, ip) in enumerate(PODS.items()):
            port, ns = f"vp{i}", self.ns[name]
            sh("ip", "-n", h, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "-n", h, "link", "set", port, "master", "br0", "up")
            sh("ip", "netns", "exec", h, "bridge", "link", "set", "dev", port, "hairpin", "on")
            self._plug(ns, ip, 24, GATEWAY)
        outside = self.ns["outside"]
        sh("ip", "-n", h, "link", "add", "vout", "type", "veth", "peer", "name", "eth0",
           "netns", outside)
        sh("ip", "-n", h, "addr", "add", f"{NODE_IP}/24", "dev", "vout")
        sh("ip", "-n", h, "link", "set", "vout", "up")
        self._plug(outside, OUTSIDE_IP, 24, NODE_IP)

    @staticmethod
    def _plug(ns: str, ip: str, prefix: int, gateway: str) -> None:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", gateway)

    def serve(self, name: str, port: int) -> None:
        proc = subprocess.Popen(["nsenter", f"--net={self.pin(name)}", PYTHON, "-c", SERVER,
                                 name, str(port)], stdout=subprocess.PIPE, text=True)
        self.servers.append(proc)
        assert proc.stdout.readline().strip() == "ready"

    async def connect(self, source: str, host: str, port: int, count: int = 1,
                      proto: str = "tcp", source_port: int = 0) -> list[str]:
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={self.pin(source)}", PYTHON, "-c", CLIENT, host, str(port),
            str(count), proto, str(source_port), stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return json.loads(out)

    def destroy(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()
        for ns in (*self.ns.values(), self.host):
            sh("ip", "netns", "del", ns, check=False)


@contextlib.contextmanager
def running_world(*host_sysctls: str) -> Iterator[World]:
    """The test hosts with servers p1 and p2 on :8080; every namespace gone afterwards."""
    w = World()
    try:
        w.build()
        if host_sysctls:
            sh("ip", "netns", "exec", w.host, "sysctl", "-qw", *host_sysctls)
        w.serve("p1", 8080)
        w.serve("p2", 8080)
        yield w
    finally:
        w.destroy()
    leftovers = sh("ip", "netns", "list")
    assert not any(ns in leftovers for ns in (*w.ns.values(), w.host))


@pytest.fixture(scope="module")
def world():
    with running_world() as w:
        yield w


@contextlib.asynccontextmanager
async def proxy_namespace(kubeconfig: str, prefix: str) -> AsyncIterator[tuple[Client, str]]:
    """A namespace for a test's Services; they and their EndpointSlices are deleted one by one
    afterwards (the test server runs no namespace controller, and every proxy under test
    sees every Service)."""
    async with Client.from_kubeconfig(kubeconfig) as client:
        namespace = await new_namespace(client, prefix)
        try:
            yield client, namespace
        finally:
            for svc in (await client.list("v1", "services", namespace=namespace))["items"]:
                await client.delete("v1", "services", svc["metadata"]["name"],
                                    namespace=namespace)
            await client.delete_collection("discovery.k8s.io/v1", "endpointslices",
                                           namespace=namespace)
            await client.delete("v1", "namespaces", namespace)


@pytest.fixture
async def cluster(kubeconfig) -> AsyncIterator[tuple[Client, str]]:
    async with proxy_namespace(kubeconfig, "proxy") as pair:
        yield pair


@contextlib.asynccontextmanager
async def running_proxy(client: Client, world: World, **options) -> AsyncIterator[ServiceProxy]:
    table = f"sampan-proxy-test-{secrets.token_hex(3)}"
    nsenter = ["nsenter", f"--net={world.pin(world.host)}"]
    proxy = ServiceProxy(client, "node-a", node_ips=[NODE_IP], table=table,
                         nft=[*nsenter, "nft"], conntrack=[*nsenter, "conntrack"], **options)
    stop = asyncio.Event()
    task = asyncio.create_task(proxy.run(stop))
    try:
        await eventually(lambda: _true(proxy.syncs > 0), what="first sync")
        yield proxy
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        tables = sh("ip", "netns", "exec", world.host, "nft", "list", "tables")
        assert table not in tables, "the proxy left its table behind"


async def _true(value: bool) -> bool:
    return value


# -- API objects ------------------------------------------------------------------------------
async def make_service(client: Client, namespace: str, name: str, **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                "protocol": "TCP"}], **spec}}
    return await client.create("v1", "services", body, namespace=namespace)


async def set_endpoints(client: Client, namespace: str, service: str, *pods: str,
                        node: str = "node-a", ready: bool = True,
                        protocol: str = "TCP") -> None:
    """The one hand-made slice of ``service`` lists ``pods`` (names in PODS)."""
    name = f"{service}-manual"
    body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "test.sampan.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [PODS[p]], "nodeName": node,
                           "conditions": {"ready": ready}} for p in pods],
            "ports": [{"name": "http", "port": 8080, "protocol": protocol}]}
    try:
        current = await client.get("discovery.k8s.io/v1", "endpointslices", name,
                                   namespace=namespace)
    except Exception:
        await client.create("discovery.k8s.io/v1", "endpointslices", body, namespace=namespace)
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await client.update("discovery.k8s.io/v1", "endpointslices", body, namespace=namespace)


def backends(replies: list[str]) -> set[str]:
    return {r.split()[0] for r in replies}


# -- tests ---------------------------------------------------------------------------------
async def test_cluster_ip_balances_over_both_backends_and_follows_updates(world, cluster):
    client, namespace = cluster
    svc = await make_service(client, namespace, "web")
    ip = svc["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "web", "p1", "p2")
    async with running_proxy(client, world):
        async def both() -> bool:
            return backends(await world.connect("client", ip, 80, 20)) == {"p1", "p2"}
        await eventually(both, what="answers from both backends")
        replies = await world.connect("client", ip, 80, 5)
        assert all(r.endswith(PODS["client"]) for r in replies), replies  # no SNAT in-cluster

        await set_endpoints(client, namespace, "web", "p2")  # scale down

        async def only_p2() -> bool:
            return backends(await world.connect("client", ip, 80, 10)) == {"p2"}
        await eventually(only_p2, what="p1 out of rotation")

        await set_endpoints(client, namespace, "web", "p1", "p2")  # and up again
        await eventually(both, what="p1 back in rotation")

        # the node itself (output hook) reaches the service too, masqueraded
        replies = await world.connect(world.host, ip, 80, 3)
        assert backends(replies) <= {"p1", "p2"} and replies, replies


async def test_service_without_endpoints_is_refused_at_once(world, cluster):
    client, namespace = cluster
    svc = await make_service(client, namespace, "empty")
    ip = svc["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "empty", "p1", ready=False)
    async with running_proxy(client, world):
        async def refused() -> bool:
            return await world.connect("client", ip, 80) == ["ERROR ECONNREFUSED"]
        await eventually(refused, what="connection refused")
        started = asyncio.get_running_loop().time()
        assert await world.connect("client", ip, 80, 3) == ["ERROR ECONNREFUSED"] * 3
        # a refusal, not a 3 s socket timeout (generous bound: three processes' start-up)
        assert asyncio.get_running_loop().time() - started < 9
        assert await world.connect("client", ip, 81) in (["ERROR ECONNREFUSED"],
                                                         ["ERROR ECONNRESET"])

        await set_endpoints(client, namespace, "empty", "p1")

        async def answers() -> bool:
            return backends(await world.connect("client", ip, 80)) == {"p1"}
        await eventually(answers, what="the service answering once ready")


async def test_client_ip_affinity_sticks(world, cluster):
    client, namespace = cluster
    svc = await make_service(client, namespace, "sticky", sessionAffinity="ClientIP",
                             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    ip = svc["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "sticky", "p1", "p2")
    async with running_proxy(client, world) as proxy:
        async def answers() -> bool:
            return not (await world.connect("client", ip, 80))[0].startswith("ERROR")
        await eventually(answers, what="sticky service answering")
        replies = await world.connect("client", ip, 80, 20)
        assert len(backends(replies)) == 1, replies
        # an unrelated change (a partial sync) keeps the affinity
        other = await make_service(client, namespace, "other")
        await set_endpoints(client, namespace, "other", "p1")
        syncs = proxy.syncs
        await eventually(lambda: _true(proxy.syncs > syncs), what="another sync")
        assert backends(await world.connect("client", ip, 80, 10)) == backends(replies)
        assert other["spec"]["clusterIP"]


async def test_node_port_answers_on_the_node_address(world, cluster):
    client, namespace = cluster
    svc = await make_service(client, namespace, "np", type="NodePort")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    await set_endpoints(client, namespace, "np", "p1", "p2")
    async with running_proxy(client, world):
        async def from_outside() -> bool:
            return backends(await world.connect("outside", NODE_IP, node_port, 10)) \
                == {"p1", "p2"}
        await eventually(from_outside, what="NodePort from outside")
        # traffic from outside the cluster is masqueraded: replies come back through the node
        replies = await world.connect("outside", NODE_IP, node_port, 3)
        assert all(r.split()[1] != OUTSIDE_IP for r in replies), replies
        assert backends(await world.connect("client", NODE_IP, node_port, 3)) <= {"p1", "p2"}
        assert backends(await world.connect(world.host, NODE_IP, node_port, 3)) <= {"p1", "p2"}


async def test_external_traffic_policy_local_and_external_ips(world, cluster):
    client, namespace = cluster
    svc = await make_service(client, namespace, "loc", type="NodePort",
                             externalTrafficPolicy="Local", externalIPs=["10.99.78.9"])
    node_port = svc["spec"]["ports"][0]["nodePort"]
    sh("ip", "-n", world.ns["outside"], "route", "replace", "10.99.78.9/32", "via", NODE_IP)
    await set_endpoints(client, namespace, "loc", "p1", node="node-b")  # remote only
    async with running_proxy(client, world):
        async def dropped() -> bool:
            return await world.connect("outside", NODE_IP, node_port) == ["ERROR TimeoutError"]
        await eventually(dropped, what="external traffic dropped without local endpoints")
        # pods still reach it (short-circuit to the cluster-wide endpoints)
        assert backends(await world.connect("client", NODE_IP, node_port)) == {"p1"}

        await set_endpoints(client, namespace, "loc", "p2", node="node-a")

        async def local() -> bool:
            replies = await world.connect("outside", NODE_IP, node_port, 3)
            return backends(replies) == {"p2"}
        await eventually(local, what="the local endpoint answering")
        # Local policy keeps the client's address
        reply = (await world.connect("outside", NODE_IP, node_port))[0]
        assert reply == f"p2 {OUTSIDE_IP}"
        assert (await world.connect("outside", "10.99.78.9", 80))[0] == f"p2 {OUTSIDE_IP}"


async def test_hairpin_pod_reaches_itself_through_its_service(world, cluster):
    client, namespace = cluster
    svc = await make_service(client, namespace, "self")
    ip = svc["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "self", "p1")
    async with running_proxy(client, world):
        async def hairpin() -> bool:
            return backends(await world.connect("p1", ip, 80)) == {"p1"}
        await eventually(hairpin, what="hairpin connection")
        reply = (await world.connect("p1", ip, 80))[0]
        assert reply == f"p1 {GATEWAY}", reply  # masqueraded so the reply comes back via us


async def test_udp_service_and_stale_flows(world, cluster):
    client, namespace = cluster
    svc = await make_service(client, namespace, "dns", ports=[
        {"name": "http", "port": 53, "targetPort": 8080, "protocol": "UDP"}])
    ip = svc["spec"]["clusterIP"]
    await set_endpoints(client, namespace, "dns", "p1", protocol="UDP")
    async with running_proxy(client, world):
        # One source port throughout: without the conntrack cleanup the flow would stay
        # DNATed to p1 (which still answers) after p1 left the service.
        async def answers(expected: str) -> bool:
            replies = await world.connect("client", ip, 53, 1, "udp", source_port=40053)
            return backends(replies) == {expected}
        await eventually(lambda: answers("p1"), what="UDP answer from p1")
        await set_endpoints(client, namespace, "dns", "p2", protocol="UDP")
        await eventually(lambda: answers("p2"), what="UDP answer from p2 after the move")


async def test_benchmark_sync_1000_services_by_10_endpoints(world):
    """Not a timing assertion: prints the figures (pytest -s) for bench/service."""
    scratch = f"{world.host}-bench"
    sh("ip", "netns", "add", scratch)
    try:
        times = await measure_sync(1000, 10, nft=["nsenter", f"--net=/run/netns/{scratch}",
                                                  "nft"])
        print(f"\nproxy sync: {times}")
        assert times.services == 1000
    finally:
        sh("ip", "netns", "del", scratch, check=False)
