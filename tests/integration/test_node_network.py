"""BridgeNetwork against the real kernel: every "host" is a network namespace made here, each
runs the network code in a driver process entered with ``nsenter --net`` (as the agent runs in
multi-node tests), two hosts are joined by a test bridge in the root namespace. Traffic only
ever flows between namespaces this test created.

Run as a module (``python -m tests.integration.test_node_network``) this file is the driver:
JSON requests on stdin, JSON replies on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ECHO_SERVER = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(16)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, addr = s.accept()
        c.recv(1024)
        c.sendall(f"hello from {c.getsockname()[0]} to {addr[0]}".encode())
        c.close()
    else:
        data, addr = s.recvfrom(1024)
        s.sendto(f"udp hello to {addr[0]}".encode(), addr)
"""
CLIENT = r"""
import errno, socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(5)
try:
    if proto == "tcp":
        s.connect((host, port))
        s.sendall(b"hi")
        print(s.recv(1024).decode())
    else:
        s.sendto(b"hi", (host, port))
        print(s.recvfrom(1024)[0].decode())
except OSError as exc:
    print("ERROR", errno.errorcode.get(exc.errno, exc.errno) if exc.errno else type(exc).__name__)
"""


# -- driver (runs inside a host namespace) ---------------------------------------------------
async def _serve() -> None:
    from sampan.node.cri import PortMapping
    from sampan.node.network import BridgeNetwork

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    net: BridgeNetwork | None = None
    while line := await reader.readline():
        req = json.loads(line)
        op, args = req["op"], req.get("args", {})
        try:
            if op == "init":
                extra = {k: args[k] for k in ("cluster_cidrs", "service_cidrs") if k in args}
                net = BridgeNetwork(args["node"], Path(args["data_dir"]), Path(args["run_dir"]),
                                    bridge=args["bridge"], **extra)
                result = None
            elif op == "setup_pod":
                ports = [PortMapping(**p) for p in args.pop("ports", [])]
                status = await net.setup_pod(args["sandbox_id"], Path(args["netns"]), "default",
                                             args["sandbox_id"], ports)
                result = status.ips
            elif op == "setup_many":  # concurrent sandboxes, as pod workers would make them
                async def one(sid: str) -> list[str]:
                    pin = await net.create_netns(sid)
                    return (await net.setup_pod(sid, pin, "default", sid, [])).ips
                ips = await asyncio.gather(*(one(sid) for sid in args["sandbox_ids"]))
                result = dict(zip(args["sandbox_ids"], ips))
            elif op == "teardown_many":
                await asyncio.gather(*(net.teardown_pod(sid, None) for sid in args["sandbox_ids"]))
                result = None
            elif op == "create_netns":
                result = str(await net.create_netns(args["sandbox_id"]))
            elif op == "teardown_pod":
                netns = args.get("netns")
                result = await net.teardown_pod(args["sandbox_id"], Path(netns) if netns else None)
            else:
                result = await getattr(net, op)(**args)
            reply = {"ok": True, "result": result}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class Driver:
    """A BridgeNetwork living in the host namespace ``host``, driven over a pipe."""

    def __init__(self, host: str, node: str, data_dir: Path, run_dir: Path, bridge: str,
                 **extra):
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{host}", PYTHON, "-m",
             "tests.integration.test_node_network"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.call("init", node=node, data_dir=str(data_dir), run_dir=str(run_dir), bridge=bridge,
                  **extra)

    def call(self, op: str, **args):
        reply = self.try_call(op, **args)
        assert reply["ok"], reply["error"]
        return reply["result"]

    def try_call(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"driver exited ({self.proc.poll()})"
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- helpers --------------------------------------------------------------------------------
def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv}: {done.stderr}")
    return done.stdout


def in_ns(pin: str | Path, *argv: str, check: bool = True) -> str:
    return sh("nsenter", f"--net={pin}", *argv, check=check)


def client(pin: str | Path, host: str, port: int, proto: str = "tcp") -> str:
    return in_ns(pin, PYTHON, "-c", CLIENT, proto, host, str(port)).strip()


class Servers:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, pin: str | Path, port: int, proto: str = "tcp") -> None:
        proc = subprocess.Popen(["nsenter", f"--net={pin}", PYTHON, "-c", ECHO_SERVER, proto,
                                 str(port)], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs.clear()


def links(host: str) -> list[str]:
    out = sh("ip", "-n", host, "-o", "link", "show")
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def nft_tables(host: str) -> str:
    return sh("ip", "netns", "exec", host, "nft", "list", "tables")


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two hosts (netns) on a test bridge in the root namespace, each with its own
    BridgeNetwork driver: host A = 10.99.0.2 with 10.42.1.0/24, host B = 10.99.0.3 with
    10.42.2.0/24."""
    tag = secrets.token_hex(3)
    hosts = {"a": f"spnet-{tag}-a", "b": f"spnet-{tag}-b"}
    test_bridge = f"spnb{tag}"
    made_links: list[str] = []
    drivers: dict[str, Driver] = {}
    base = tmp_path_factory.mktemp("net")
    try:
        sh("ip", "link", "add", test_bridge, "type", "bridge")
        made_links.append(test_bridge)
        sh("ip", "link", "set", test_bridge, "up")
        for i, (key, host) in enumerate(hosts.items()):
            sh("ip", "netns", "add", host)
            root_side = f"spn{tag}{key}"
            sh("ip", "link", "add", root_side, "type", "veth", "peer", "name", "uplink",
               "netns", host)
            made_links.append(root_side)
            sh("ip", "link", "set", root_side, "master", test_bridge, "up")
            sh("ip", "-n", host, "addr", "add", f"10.99.0.{i + 2}/16", "dev", "uplink")
            sh("ip", "-n", host, "link", "set", "uplink", "up")
            sh("ip", "-n", host, "link", "set", "lo", "up")
        for i, (key, host) in enumerate(hosts.items()):
            d = Driver(host, f"node-{tag}-{key}", base / key / "data", base / key / "run",
                       "sampan0")
            drivers[key] = d
            d.call("start", pod_cidrs=[f"10.42.{i + 1}.0/24"])
        yield {"hosts": hosts, "drivers": drivers, "base": base, "tag": tag}
    finally:
        for d in drivers.values():
            with contextlib.suppress(Exception):
                d.call("close", remove=True)
            d.stop()
        for host in hosts.values():
            sh("ip", "netns", "del", host, check=False)
        for link in made_links:
            sh("ip", "link", "del", link, check=False)
        for key in hosts:
            netns_dir = base / key / "run" / "netns"
            if netns_dir.exists():
                for pin in netns_dir.iterdir():
                    sh("umount", "-l", str(pin), check=False)
                sh("umount", "-l", str(netns_dir), check=False)


@pytest.fixture
def servers():
    s = Servers()
    yield s
    s.stop()


def make_pod(driver: Driver, sandbox_id: str, ports=()) -> tuple[str, str]:
    pin = driver.call("create_netns", sandbox_id=sandbox_id)
    ips = driver.call("setup_pod", sandbox_id=sandbox_id, netns=pin, ports=list(ports))
    return pin, ips[0]


# -- tests ----------------------------------------------------------------------------------
def test_pods_on_one_bridge_talk_and_reach_the_gateway(world, servers):
    a, host = world["drivers"]["a"], world["hosts"]["a"]
    pin1, ip1 = make_pod(a, "pod-one")
    pin2, ip2 = make_pod(a, "pod-two")
    try:
        assert ip1.startswith("10.42.1.") and ip2.startswith("10.42.1.") and ip1 != ip2
        assert ip1 != "10.42.1.1" and ip2 != "10.42.1.1"
        # pod side: eth0 with the address, default route via the gateway, MAC from the IP
        addr = in_ns(pin1, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
        assert f"{ip1}/24" in addr
        assert "default via 10.42.1.1 dev eth0" in in_ns(pin1, "ip", "route")
        octets = ":".join(f"{int(o):02x}" for o in ip1.split("."))
        assert f"0a:58:{octets}" in in_ns(pin1, "ip", "link", "show", "eth0")
        assert "UP" in in_ns(pin1, "ip", "link", "show", "lo")
        # host side: hairpin on the bridge port
        from sampan.node.network import veth_name
        port = sh("ip", "-n", host, "-d", "link", "show", veth_name("pod-one"))
        assert "hairpin on" in port and "master sampan0" in port

        servers.start(pin2, 8000)
        assert client(pin1, ip2, 8000) == f"hello from {ip2} to {ip1}"
        servers.start(f"/run/netns/{host}", 8001)
        assert client(pin1, "10.42.1.1", 8001) == f"hello from 10.42.1.1 to {ip1}"
        in_ns(pin1, "/bin/busybox", "ping", "-c", "1", "-W", "5", "10.42.1.1")
    finally:
        a.call("teardown_pod", sandbox_id="pod-one", netns=pin1)
        a.call("teardown_pod", sandbox_id="pod-two", netns=pin2)


def test_cluster_addresses_without_a_pod_are_unreachable(world):
    a, host = world["drivers"]["a"], world["hosts"]["a"]
    pin, _ = make_pod(a, "pod-lonely")
    try:
        got = subprocess.run(["ip", "-n", host, "route", "get", "10.42.200.9"],
                             capture_output=True, text=True, timeout=30)
        assert got.returncode != 0 and "No route to host" in got.stderr
        assert client(pin, "10.42.200.9", 80) == "ERROR EHOSTUNREACH"
        # The service range stays on the bridge (for the service proxy's output hook): it is
        # never sent towards the host's default route.
        got = sh("ip", "-n", host, "route", "get", "10.43.0.10")
        assert "dev sampan0" in got and " via " not in got
        routes = sh("ip", "-n", host, "route", "show", "proto", "165")
        assert "unreachable 10.42.0.0/16" in routes
        assert "10.43.0.0/16 dev sampan0" in routes and "scope link" in routes
    finally:
        a.call("teardown_pod", sandbox_id="pod-lonely", netns=pin)


def test_pods_on_two_hosts_reach_each_other_through_sync_routes(world, servers):
    a, b = world["drivers"]["a"], world["drivers"]["b"]
    pin_a, ip_a = make_pod(a, "pod-on-a")
    pin_b, ip_b = make_pod(b, "pod-on-b")
    try:
        assert ip_b.startswith("10.42.2.")
        servers.start(pin_b, 8000)
        assert client(pin_a, ip_b, 8000) == "ERROR EHOSTUNREACH"  # no route yet: stays local
        # a node's own pod CIDR in the list is ignored
        a.call("sync_routes", peers=[["10.99.0.3", ["10.42.2.0/24"]],
                                     ["10.99.0.2", ["10.42.1.0/24"]]])
        b.call("sync_routes", peers=[["10.99.0.2", ["10.42.1.0/24"]]])
        a.call("sync_routes", peers=[["10.99.0.3", ["10.42.2.0/24"]]])  # idempotent
        host_a = world["hosts"]["a"]
        routes = sh("ip", "-n", host_a, "route", "show", "proto", "165")
        assert "10.42.2.0/24 via 10.99.0.3 dev uplink" in routes
        assert "10.42.1.0/24 via" not in routes
        # the service range's route to the bridge is not a peer route: it stays
        assert "10.43.0.0/16 dev sampan0" in routes
        # pod to pod across hosts keeps the pod's source address (no masquerade in-cluster)
        assert client(pin_a, ip_b, 8000) == f"hello from {ip_b} to {ip_a}"
        # the peer is gone: its route goes, the address is unreachable again
        a.call("sync_routes", peers=[])
        assert "10.42.2.0/24" not in sh("ip", "-n", host_a, "route", "show", "proto", "165")
        assert client(pin_a, ip_b, 8000) == "ERROR EHOSTUNREACH"
    finally:
        a.call("sync_routes", peers=[])
        b.call("sync_routes", peers=[])
        a.call("teardown_pod", sandbox_id="pod-on-a", netns=pin_a)
        b.call("teardown_pod", sandbox_id="pod-on-b", netns=pin_b)


def test_pod_traffic_leaving_the_cluster_is_masqueraded(world, servers):
    a, b = world["drivers"]["a"], world["drivers"]["b"]
    pin, ip = make_pod(a, "pod-out")
    try:
        # host B stands in for "outside": it sees host A's address, not the pod's
        servers.start(f"/run/netns/{world['hosts']['b']}", 8100)
        assert client(pin, "10.99.0.3", 8100) == "hello from 10.99.0.3 to 10.99.0.2"
    finally:
        a.call("teardown_pod", sandbox_id="pod-out", netns=pin)
    del b


def test_host_ports(world, servers):
    a, hosts = world["drivers"]["a"], world["hosts"]
    ports = [{"container_port": 80, "host_port": 8080},
             {"container_port": 53, "host_port": 5353, "protocol": "UDP"},
             {"container_port": 80, "host_port": 9090, "host_ip": "127.0.0.1"}]
    pin, ip = make_pod(a, "pod-hostport", ports)
    other_pin, other_ip = make_pod(a, "pod-neighbour")
    try:
        servers.start(pin, 80)
        servers.start(pin, 53, "udp")
        host_a, host_b = f"/run/netns/{hosts['a']}", f"/run/netns/{hosts['b']}"
        # from another machine, to the node's address
        assert client(host_b, "10.99.0.2", 8080) == f"hello from {ip} to 10.99.0.3"
        assert client(host_b, "10.99.0.2", 5353, "udp") == "udp hello to 10.99.0.3"
        # from the node itself, to localhost and to its own address
        assert client(host_a, "127.0.0.1", 8080).startswith(f"hello from {ip}")
        assert client(host_a, "127.0.0.1", 9090).startswith(f"hello from {ip}")
        assert client(host_a, "10.99.0.2", 8080).startswith(f"hello from {ip}")
        # host_ip 127.0.0.1 only: not reachable on the node's address
        assert client(host_b, "10.99.0.2", 9090).startswith("ERROR")
        # from a neighbour pod and from the pod itself (hairpin) through the node's address
        assert client(other_pin, "10.99.0.2", 8080).startswith(f"hello from {ip}")
        assert client(pin, "10.99.0.2", 8080).startswith(f"hello from {ip}")
        rules = sh("ip", "netns", "exec", hosts["a"], "nft", "list", "table", "inet",
                   f"sampan-hostport-node-{world['tag']}-a")
        assert "pod-hostport" in rules
    finally:
        a.call("teardown_pod", sandbox_id="pod-hostport", netns=pin)
        a.call("teardown_pod", sandbox_id="pod-neighbour", netns=other_pin)
    rules = sh("ip", "netns", "exec", hosts["a"], "nft", "list", "table", "inet",
               f"sampan-hostport-node-{world['tag']}-a")
    assert "pod-hostport" not in rules and "dnat" not in rules
    assert client(f"/run/netns/{hosts['b']}", "10.99.0.2", 8080).startswith("ERROR")


def test_concurrent_setups_get_distinct_addresses(world):
    a, host = world["drivers"]["a"], world["hosts"]["a"]
    ids = [f"pod-many-{i}" for i in range(12)]
    try:
        got = a.call("setup_many", sandbox_ids=ids)
        ips = [v[0] for v in got.values()]
        assert len(set(ips)) == len(ids)
        pins = world["base"] / "a" / "run" / "netns"
        for sid in ids[:3]:
            assert got[sid][0] in in_ns(pins / sid, "ip", "-o", "-4", "addr", "show", "eth0")
    finally:
        a.call("teardown_many", sandbox_ids=ids)
    from sampan.node.network import veth_name
    assert not {veth_name(sid) for sid in ids} & set(links(host))


def test_teardown_leaves_nothing_and_is_idempotent(world):
    a, host, base = world["drivers"]["a"], world["hosts"]["a"], world["base"]
    pin, ip = make_pod(a, "pod-gone", [{"container_port": 80, "host_port": 8181}])
    from sampan.node.network import veth_name
    assert veth_name("pod-gone") in links(host)
    a.call("teardown_pod", sandbox_id="pod-gone", netns=pin)
    a.call("teardown_pod", sandbox_id="pod-gone", netns=pin)
    a.call("teardown_pod", sandbox_id="pod-never-made", netns=None)
    assert veth_name("pod-gone") not in links(host)
    assert not Path(pin).exists()
    ipam_dir = base / "a" / "data" / "network" / "10.42.1.0-24"
    assert not (ipam_dir / ip).exists()
    assert not any((base / "a" / "data" / "network" / "hostports").glob("*.json"))
    assert pin not in Path("/proc/self/mountinfo").read_text()


def test_restart_adopts_running_pods_and_release_stale(world, servers):
    a, host, base, tag = world["drivers"]["a"], world["hosts"]["a"], world["base"], world["tag"]
    pin1, ip1 = make_pod(a, "pod-survivor", [{"container_port": 80, "host_port": 8282}])
    pin2, ip2 = make_pod(a, "pod-orphan")
    servers.start(pin1, 80)
    a.call("close", remove=False)
    a.stop()
    # everything is still there while no agent runs
    assert client(pin2, ip1, 80) == f"hello from {ip1} to {ip2}"
    world["drivers"]["a"] = a = Driver(host, f"node-{tag}-a", base / "a" / "data",
                                       base / "a" / "run", "sampan0")
    a.call("start", pod_cidrs=["10.42.1.0/24"])
    assert client(pin2, ip1, 80) == f"hello from {ip1} to {ip2}"
    assert client(f"/run/netns/{world['hosts']['b']}", "10.99.0.2", 8282).startswith(
        f"hello from {ip1}")
    pin3, ip3 = make_pod(a, "pod-new")
    assert ip3 not in (ip1, ip2)
    # the orphan's sandbox is gone: garbage collection frees its address and pin
    stale = a.call("release_stale", live_sandbox_ids=["pod-survivor", "pod-new"])
    assert stale == ["pod-orphan"]
    assert not Path(pin2).exists()
    assert not (base / "a" / "data" / "network" / "10.42.1.0-24" / ip2).exists()
    for sid, pin in (("pod-survivor", pin1), ("pod-new", pin3)):
        a.call("teardown_pod", sandbox_id=sid, netns=pin)


def test_close_remove_leaves_nothing(world):
    """A third host on its own, dual stack: start, one pod, close(remove=True)."""
    tag = secrets.token_hex(3)
    host = f"spnet-{tag}-c"
    base = world["base"] / "c"
    sh("ip", "netns", "add", host)
    d = None
    try:
        d = Driver(host, f"node-{tag}-c", base / "data", base / "run", "spbr0",
                   cluster_cidrs=["10.42.0.0/16", "fd00:42::/56"])
        d.call("start", pod_cidrs=["fd00:42:0:9::/64", "10.42.9.0/24"])
        d.call("start", pod_cidrs=["10.42.9.0/24", "fd00:42:0:9::/64"])  # idempotent
        pin = d.call("create_netns", sandbox_id="pod-c")
        ips = d.call("setup_pod", sandbox_id="pod-c", netns=pin,
                     ports=[{"container_port": 80, "host_port": 8080}])
        assert ips == ["10.42.9.2", "fd00:42:0:9::2"]
        assert "default via fd00:42:0:9::1 dev eth0" in in_ns(pin, "ip", "-6", "route")
        in_ns(pin, "/bin/busybox", "ping", "-c", "1", "-W", "5", "fd00:42:0:9::1")
        in_ns(pin, "/bin/busybox", "ping", "-c", "1", "-W", "5", "10.42.9.1")
        routes = sh("ip", "-n", host, "-6", "route", "show", "proto", "165")
        assert "unreachable fd00:42::/56" in routes
        d.call("close", remove=True)
        assert links(host) == ["lo"]
        assert sh("ip", "-n", host, "route", "show", "table", "all", "proto", "165") == ""
        assert "sampan" not in nft_tables(host)
        assert not (base / "run" / "netns").exists()
        assert not (base / "data" / "network").exists()
        assert str(base) not in Path("/proc/self/mountinfo").read_text()
    finally:
        if d is not None:
            d.stop()
        sh("ip", "netns", "del", host, check=False)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    asyncio.run(_serve())
