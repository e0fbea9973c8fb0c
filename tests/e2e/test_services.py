"""Services end to end: every node agent runs the service proxy (nftables) and a node-local
cluster DNS; pods reach Services by name and ClusterIP, the host reaches NodePorts, endpoints
follow readiness, a rolling update under load drops nothing, and it all works across nodes.

Two test hosts (network namespaces, tests/nodehost.py) run real agents with real runc
containers; clients are busybox pods (Debian's static busybox: ``timeout N wget``, never
``wget -T``) or the test process itself for NodePorts."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.nodecluster import (BUSYBOX, NodeCluster, http_get, start_node_cluster,
                                   wait_for)
from tests.nodehost import AgentHost

HTTPD = "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 8080 -h /w"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[NodeCluster]:
    c = start_node_cluster(tmp_path_factory.mktemp("services"))
    try:
        c.add_node("node-a", wait=False)
        c.add_node("node-b", wait=False)
        c.wait_node_ready("node-a")
        c.wait_node_ready("node-b")
        yield c
    finally:
        c.stop()


@pytest.fixture
def ns(cluster: NodeCluster) -> Iterator[str]:
    name = cluster.namespace()
    yield name
    cluster.kubectl_run("delete", "namespace", name, "--wait=false", check=False)


# -- manifests ---------------------------------------------------------------------------------
def pod(name: str, node: str, command: str = HTTPD, *, labels: dict | None = None,
        container: dict | None = None) -> dict:
    """A busybox pod on ``node``; by default an httpd on 8080 (port ``http``) answering its
    own name, Ready once it listens."""
    main = {"name": "main", "image": BUSYBOX, "command": ["sh", "-c", command]}
    if HTTPD in command:
        main |= {"ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                     "terminationGracePeriodSeconds": 1, "containers": [main | (container or {})]}}


def client(name: str, node: str) -> dict:
    return pod(name, node, "sleep 3600")


def service(name: str, selector: dict, *, type: str = "ClusterIP", headless: bool = False,
            **spec) -> dict:
    body = {"type": type, "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            **spec}
    if headless:
        body["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def apply(cluster: NodeCluster, ns: str, *objects: dict) -> None:
    cluster.apply("\n---\n".join(json.dumps(o) for o in objects), ns)


# -- clients -----------------------------------------------------------------------------------
def fetch(cluster: NodeCluster, ns: str, pod_name: str, url: str) -> subprocess.CompletedProcess:
    """One GET from inside a pod (bounded: a hang shows as exit 124/143, not as a hung test)."""
    return cluster.exec(ns, pod_name, "timeout", "5", "wget", "-q", "-O", "-", url)


def body(cluster: NodeCluster, ns: str, pod_name: str, url: str) -> str | None:
    r = fetch(cluster, ns, pod_name, url)
    return r.stdout.strip() if r.returncode == 0 else None


def answers(cluster: NodeCluster, ns: str, pod_name: str, url: str, count: int) -> list[str]:
    """``count`` GETs in one exec, each a new connection: the bodies, FAIL for a failure."""
    script = (f"for i in $(seq {count}); do timeout 5 wget -q -O - {url} 2>/dev/null "
              f"|| echo FAIL; done")
    r = cluster.exec(ns, pod_name, "sh", "-c", script, timeout=count * 6 + 30)
    assert r.returncode == 0, r
    return r.stdout.split()


def wait_answers(cluster: NodeCluster, ns: str, pod_name: str, url: str, want: set[str],
                 timeout: float = 60) -> None:
    """Until requests to ``url`` reach exactly the backends ``want`` (the proxies have caught
    up with the endpoints)."""
    seen: list[list[str]] = []

    def check() -> bool:
        try:
            got = answers(cluster, ns, pod_name, url, 12)
        except AssertionError as e:  # kubectl exec itself failed: try again
            seen.append([str(e)[-500:]])
            return False
        seen.append(got)
        return set(got) == want
    wait_for(check, timeout, f"{url} answered by {sorted(want)} from {pod_name}",
             lambda: f"last answers: {seen[-3:]}")


def nslookup(cluster: NodeCluster, ns: str, pod_name: str, *args: str) -> str:
    """busybox nslookup's output (it exits 1 when any search-domain variant fails, so the
    answers are read from the output)."""
    r = cluster.exec(ns, pod_name, "timeout", "10", "nslookup", *args)
    assert r.returncode in (0, 1), f"nslookup {args} hung or crashed: {r}"
    return r.stdout + r.stderr


def addresses(output: str) -> dict[str, set[str]]:
    """``Name:``/``Address:`` pairs of busybox nslookup output, by name."""
    found: dict[str, set[str]] = {}
    name = None
    for line in output.splitlines():
        if line.startswith("Name:"):
            name = line.split(None, 1)[1].strip()
        elif line.startswith("Address: ") and name is not None:
            found.setdefault(name, set()).add(line.split(None, 1)[1].strip())
    return found


def cluster_ip(cluster: NodeCluster, ns: str, name: str) -> str:
    return cluster.json("get", "service", name, "-n", ns)["spec"]["clusterIP"]


def pod_ip(cluster: NodeCluster, ns: str, name: str) -> str:
    return cluster.json("get", "pod", name, "-n", ns)["status"]["podIP"]


# -- a small application shared by the DNS and proxy tests -------------------------------------
@dataclass
class App:
    ns: str
    web_ips: dict[str, str]  # pod name → pod IP

    def fqdn(self, service_name: str) -> str:
        return f"{service_name}.{self.ns}.svc.cluster.local"


@pytest.fixture(scope="module")
def app(cluster: NodeCluster) -> Iterator[App]:
    """Two httpd pods behind ``web`` (and the headless ``web-headless``) on node-a; ``web-1``
    alone is behind ``solo``; a client pod on node-a."""
    ns = cluster.namespace()
    apply(cluster, ns,
          pod("web-1", "node-a", labels={"app": "web", "solo": "yes"}),
          pod("web-2", "node-a", labels={"app": "web"}),
          client("client", "node-a"),
          service("web", {"app": "web"}),
          service("web-headless", {"app": "web"}, headless=True),
          service("solo", {"solo": "yes"}))
    for name in ("web-1", "web-2", "client"):
        cluster.wait_pod(ns, name)
    yield App(ns, {name: pod_ip(cluster, ns, name) for name in ("web-1", "web-2")})
    cluster.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)


def test_service_name_resolves_and_answers_through_the_cluster_ip(cluster: NodeCluster,
                                                                    app: App) -> None:
    ip = cluster_ip(cluster, app.ns, "web")
    assert ip.startswith("10.43.")
    resolv = cluster.exec(app.ns, "client", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.43.0.10" in resolv
    assert f"search {app.ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    # The short name through the search list, and the FQDN.
    assert addresses(nslookup(cluster, app.ns, "client", "web")).get(app.fqdn("web")) == {ip}
    assert addresses(nslookup(cluster, app.ns, "client", app.fqdn("web"))) == {
        app.fqdn("web"): {ip}}
    # Each spelling answers through the proxy (the resolver applies search and ndots).
    backends = set(app.web_ips)
    for host in ("web", f"web.{app.ns}", app.fqdn("web"), ip):
        wait_answers(cluster, app.ns, "client", f"http://{host}/", backends)


def test_srv_ptr_and_headless_records(cluster: NodeCluster, app: App) -> None:
    ip = cluster_ip(cluster, app.ns, "web")
    srv = nslookup(cluster, app.ns, "client", "-type=SRV",
                   f"_http._tcp.{app.fqdn('web')}")
    assert re.search(rf"service = 0 \d+ 80 {re.escape(app.fqdn('web'))}", srv), srv
    ptr = nslookup(cluster, app.ns, "client", ip)
    assert f"name = {app.fqdn('web')}" in ptr, ptr
    # A headless Service's name is its ready pods' addresses, no ClusterIP.
    headless = addresses(nslookup(cluster, app.ns, "client", app.fqdn("web-headless")))
    assert headless == {app.fqdn("web-headless"): set(app.web_ips.values())}, headless
    # ... and its SRV records name each pod.
    srv = nslookup(cluster, app.ns, "client", "-type=SRV",
                   f"_http._tcp.{app.fqdn('web-headless')}")
    assert len(re.findall(r"service = 0 \d+ 8080 ", srv)) == 2, srv


# -- a stand-in for the machine's resolver, inside node-a's namespace -----------------------
UPSTREAM_KNOWN = "outside.sampan-e2e.test."
UPSTREAM_ADDRESS = "192.0.2.10"
UPSTREAM = textwrap.dedent(f"""\
    import selectors, socket, sys
    import dns.message, dns.rcode, dns.rdatatype, dns.rrset
    selector = selectors.DefaultSelector()
    for address in sys.argv[1:]:
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                          socket.SOCK_DGRAM)
        s.bind((address, 53))
        selector.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            data, peer = key.fileobj.recvfrom(65535)
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            reply = dns.message.make_response(query)
            question = query.question[0]
            if question.name.to_text().lower() == {UPSTREAM_KNOWN!r}:
                if question.rdtype == dns.rdatatype.A:
                    reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A",
                                                            {UPSTREAM_ADDRESS!r}))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            key.fileobj.sendto(reply.to_wire(), peer)
    """)


def host_nameservers() -> list[str]:
    from sampan.dns.forward import resolv_conf_nameservers

    return [host for host, _ in resolv_conf_nameservers()]


@pytest.fixture
def upstream(cluster: NodeCluster) -> Iterator[list[str]]:
    """The agent's DNS forwards what the cluster does not know to the machine's resolv.conf
    nameservers, unreachable from a test host (no default route). Serve those addresses inside
    node-a's namespace, with one known name and NXDOMAIN for everything else."""
    host = cluster.hosts["node-a"]
    servers = host_nameservers()
    added = [s for s in servers if not s.startswith("127.") and s != "::1"]
    for address in added:
        host.exec_ip("addr", "add", address + ("/128" if ":" in address else "/32"), "dev", "lo",
                     *(["nodad"] if ":" in address else []))
    process = subprocess.Popen(["nsenter", f"--net=/run/netns/{host.netns}", sys.executable,
                                "-c", UPSTREAM, *servers],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if servers:
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
        yield servers
    finally:
        process.kill()
        process.wait(10)
        for address in added:
            subprocess.run(["ip", "-n", host.netns, "addr", "del",
                            address + ("/128" if ":" in address else "/32"), "dev", "lo"],
                           capture_output=True)


def test_names_outside_the_cluster_go_to_the_hosts_resolver(cluster: NodeCluster, app: App,
                                                            upstream: list[str]) -> None:
    # A name under the cluster domain that does not exist: the cluster DNS itself says so.
    missing = nslookup(cluster, app.ns, "client", app.fqdn("no-such-service"))
    assert f"can't find {app.fqdn('no-such-service')}: NXDOMAIN" in missing, missing
    if not upstream:  # no resolver on this machine: refused at once, no hang
        out = nslookup(cluster, app.ns, "client", "nowhere.sampan-e2e.test")
        assert "can't find nowhere.sampan-e2e.test: SERVFAIL" in out, out
        return
    # An outside name the host's resolver knows is forwarded and answered ...
    known = addresses(nslookup(cluster, app.ns, "client", UPSTREAM_KNOWN.rstrip(".")))
    assert known == {UPSTREAM_KNOWN.rstrip("."): {UPSTREAM_ADDRESS}}, known
    # ... and one it does not know is NXDOMAIN, promptly (nslookup is bounded to 10 s).
    out = nslookup(cluster, app.ns, "client", "nowhere.sampan-e2e.test")
    assert "can't find nowhere.sampan-e2e.test: NXDOMAIN" in out, out


def test_pod_reaches_its_own_service(cluster: NodeCluster, app: App) -> None:
    """Hairpin: web-1 is the only endpoint of ``solo`` and calls it."""
    wait_answers(cluster, app.ns, "web-1", "http://solo/", {"web-1"})
    ip = cluster_ip(cluster, app.ns, "solo")
    assert answers(cluster, app.ns, "web-1", f"http://{ip}/", 5) == ["web-1"] * 5


# -- NodePort and no endpoints ------------------------------------------------------------------
def get_from_root(url: str) -> str | None:
    """GET from the test process (the machine's root namespace) to a test host."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode().strip()
    except OSError:
        return None


def wait_reaching_all(url: str, backends: set[str]) -> None:
    """GET ``url`` from the root namespace until every backend has answered."""
    seen: set[str] = set()

    def reached_all() -> bool:
        answer = get_from_root(url)
        if answer is not None:
            seen.add(answer)
        return seen == backends
    wait_for(reached_all, 60, f"{url} from the root namespace reaching {backends}",
             lambda: f"seen {seen}")


def test_node_port_answers_from_the_host_and_inside_the_node(cluster: NodeCluster,
                                                             app: App) -> None:
    apply(cluster, app.ns, service("web-np", {"app": "web"}, type="NodePort"))
    node_port = cluster.json("get", "service", "web-np", "-n", app.ns)["spec"]["ports"][0][
        "nodePort"]
    assert 30000 <= node_port <= 32767
    backends = set(app.web_ips)
    # From the machine to each node's address; node-b has no endpoint and forwards to node-a.
    for host in cluster.hosts.values():
        wait_reaching_all(f"http://{host.ip}:{node_port}/", backends)
    # From inside node-a's own namespace, to its own address.
    node_a = cluster.hosts["node-a"]
    assert http_get(node_a, f"http://{node_a.ip}:{node_port}/").strip() in backends


def test_load_balancer_gets_the_nodes_addresses_and_answers_on_them(cluster: NodeCluster,
                                                                   app: App) -> None:
    """Without a cloud, the service-lb-controller gives a LoadBalancer the Ready nodes'
    addresses (k3s's servicelb) and the proxy serves the Service's port on them."""
    apply(cluster, app.ns, service("web-lb", {"app": "web"}, type="LoadBalancer"))
    node_ips = sorted(host.ip for host in cluster.hosts.values())

    def published() -> list[str]:
        status = cluster.json("get", "service", "web-lb", "-n", app.ns).get("status") or {}
        return sorted(i.get("ip", "") for i in
                      (status.get("loadBalancer") or {}).get("ingress") or [])
    wait_for(lambda: published() == node_ips, 60, f"web-lb published on {node_ips}",
             lambda: f"published {published()}")
    backends = set(app.web_ips)
    for ip in node_ips:
        wait_reaching_all(f"http://{ip}:80/", backends)
    events = cluster.kubectl("get", "events", "-n", app.ns, "--field-selector",
                             "involvedObject.name=web-lb")
    assert "EnsuredLoadBalancer" in events, events


def refused(connect) -> bool:
    try:
        connect()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_service_without_ready_endpoints_is_refused_at_once(cluster: NodeCluster,
                                                            app: App) -> None:
    apply(cluster, app.ns, service("nobody", {"app": "nobody-has-this"}, type="NodePort"))
    ip = cluster_ip(cluster, app.ns, "nobody")
    node_port = cluster.json("get", "service", "nobody", "-n", app.ns)["spec"]["ports"][0][
        "nodePort"]
    last: list[subprocess.CompletedProcess] = []

    def pod_refused() -> bool:
        r = fetch(cluster, app.ns, "client", f"http://{ip}/")
        last.append(r)
        return r.returncode == 1 and "Connection refused" in r.stderr
    # (Until the proxy has the Service, the ClusterIP is just unanswered: wait for the rule.)
    wait_for(pod_refused, 60, "the ClusterIP without endpoints refused",
             lambda: repr(last[-1:]))
    # By name as well: rejected by the proxy, not timed out (wget bounded to 5 s would say so).
    r = fetch(cluster, app.ns, "client", "http://nobody/")
    assert r.returncode == 1 and f"({ip}): Connection refused" in r.stderr, r
    node_a = cluster.hosts["node-a"]
    assert refused(lambda: socket.create_connection((node_a.ip, node_port), timeout=5).close())


# -- endpoints follow readiness ------------------------------------------------------------------
def slice_conditions(cluster: NodeCluster, ns: str, service_name: str) -> dict[str, bool]:
    """Endpoint address → its ``ready`` condition, over the Service's EndpointSlices."""
    slices = cluster.json("get", "endpointslices", "-n", ns, "-l",
                          f"kubernetes.io/service-name={service_name}")["items"]
    return {address: bool((endpoint.get("conditions") or {}).get("ready"))
            for s in slices for endpoint in s.get("endpoints") or ()
            for address in endpoint["addresses"]}


def pod_ready(cluster: NodeCluster, ns: str, name: str) -> bool:
    conditions = cluster.json("get", "pod", name, "-n", ns)["status"].get("conditions") or ()
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_endpoints_follow_readiness(cluster: NodeCluster, ns: str) -> None:
    probe = {"readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                "periodSeconds": 1, "failureThreshold": 1}}
    command = "touch /tmp/ready && " + HTTPD
    apply(cluster, ns,
          pod("ready-1", "node-a", command, labels={"app": "ready"}, container=probe),
          pod("ready-2", "node-a", command, labels={"app": "ready"}, container=probe),
          client("client", "node-b"),
          service("ready", {"app": "ready"}))
    for name in ("ready-1", "ready-2", "client"):
        cluster.wait_pod(ns, name)
    ip1, ip2 = pod_ip(cluster, ns, "ready-1"), pod_ip(cluster, ns, "ready-2")
    wait_answers(cluster, ns, "client", "http://ready/", {"ready-1", "ready-2"})

    assert cluster.exec(ns, "ready-1", "rm", "/tmp/ready").returncode == 0
    wait_for(lambda: not pod_ready(cluster, ns, "ready-1"), 30, "ready-1 not Ready")
    wait_for(lambda: slice_conditions(cluster, ns, "ready") == {ip1: False, ip2: True}, 30,
             "ready-1 in the EndpointSlice with ready=false",
             lambda: repr(slice_conditions(cluster, ns, "ready")))
    wait_answers(cluster, ns, "client", "http://ready/", {"ready-2"})
    assert answers(cluster, ns, "client", "http://ready/", 20) == ["ready-2"] * 20

    assert cluster.exec(ns, "ready-1", "touch", "/tmp/ready").returncode == 0
    wait_for(lambda: slice_conditions(cluster, ns, "ready") == {ip1: True, ip2: True}, 30,
             "ready-1 ready again in the EndpointSlice",
             lambda: repr(slice_conditions(cluster, ns, "ready")))
    wait_answers(cluster, ns, "client", "http://ready/", {"ready-1", "ready-2"})


# -- a rolling update under load -----------------------------------------------------------------
LOAD = textwrap.dedent("""\
    ok1=0; ok2=0; fail=0
    while [ ! -e /tmp/stop ]; do
      out=$(timeout 5 wget -q -O - http://roll/ 2>&1); rc=$?
      case "$rc:$out" in
        0:v1) ok1=$((ok1+1));;
        0:v2) ok2=$((ok2+1));;
        *) fail=$((fail+1)); echo "FAIL rc=$rc: $out";;
      esac
      echo "v1=$ok1 v2=$ok2 fail=$fail" > /tmp/count.new && mv /tmp/count.new /tmp/count
    done
    echo "DONE v1=$ok1 v2=$ok2 fail=$fail"
    exec sleep 3600
    """)


def rolling_deployment() -> dict:
    container = {
        "name": "httpd", "image": BUSYBOX, "env": [{"name": "VERSION", "value": "v1"}],
        # A server that stops at once on SIGTERM, as real ones do (httpd as PID 1 would
        # ignore it and serve on through the grace period, hiding the race).
        "command": ["sh", "-c", 'mkdir -p /w && echo "$VERSION" > /w/index.html && '
                                "httpd -f -p 8080 -h /w & trap 'kill $!; exit 0' TERM; wait"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        # Endpoints go first, the container after: every proxy has dropped the pod before
        # its server stops.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "roll"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {"metadata": {"labels": {"app": "roll"}},
                                  "spec": {"terminationGracePeriodSeconds": 15,
                                           "containers": [container]}}}}


def load_counts(cluster: NodeCluster, ns: str) -> dict[str, int]:
    r = cluster.exec(ns, "load", "cat", "/tmp/count")
    if r.returncode != 0:
        return {"v1": 0, "v2": 0, "fail": 0}
    return {k: int(v) for k, v in (field.split("=") for field in r.stdout.split())}


def test_rolling_update_under_load_fails_no_request(cluster: NodeCluster, ns: str) -> None:
    apply(cluster, ns, rolling_deployment(), service("roll", {"app": "roll"}))
    cluster.kubectl("rollout", "status", "-n", ns, "deployment/roll", "--timeout=120s",
                    timeout=130)
    apply(cluster, ns, pod("load", "node-b", LOAD))
    cluster.wait_pod(ns, "load")
    wait_for(lambda: load_counts(cluster, ns)["v1"] >= 20, 60, "the load reaching v1",
             lambda: cluster.kubectl_run("logs", "-n", ns, "load", check=False).stdout[-2000:])
    old = {p["metadata"]["name"] for p in
           cluster.json("get", "pods", "-n", ns, "-l", "app=roll")["items"]}

    cluster.kubectl("set", "env", "-n", ns, "deployment/roll", "VERSION=v2")
    cluster.kubectl("rollout", "status", "-n", ns, "deployment/roll", "--timeout=180s",
                    timeout=190)
    # Until the old pods are gone (their preStop and termination are the risky part), and
    # some more requests after that.
    def old_pods_gone() -> bool:
        names = {p["metadata"]["name"] for p in
                 cluster.json("get", "pods", "-n", ns, "-l", "app=roll")["items"]}
        return not names & old
    wait_for(old_pods_gone, 90, "the old pods deleted")
    after = load_counts(cluster, ns)["v2"]
    wait_for(lambda: load_counts(cluster, ns)["v2"] >= after + 20, 60, "more load on v2")

    assert cluster.exec(ns, "load", "touch", "/tmp/stop").returncode == 0
    wait_for(lambda: "DONE" in cluster.kubectl("logs", "-n", ns, "load"), 30, "the load done")
    log = cluster.kubectl("logs", "-n", ns, "load")
    done = dict(field.split("=") for field in log.split("DONE", 1)[1].split())
    assert int(done["fail"]) == 0, log[-3000:]
    assert int(done["v1"]) > 0 and int(done["v2"]) > 0, done
    print(f"rolling update under load: {done}")


# -- across nodes; node-local DNS ---------------------------------------------------------------
def test_service_across_nodes_and_node_local_dns(cluster: NodeCluster, ns: str) -> None:
    """A pod on node-a reaches a Service whose only endpoint is on node-b; each node serves
    DNS for its own pods, so node-b's agent stopping leaves node-a's pods resolving."""
    apply(cluster, ns, pod("far", "node-b"), client("near", "node-a"),
          service("far", {"app": "far"}))
    cluster.wait_pod(ns, "far")
    cluster.wait_pod(ns, "near")
    wait_answers(cluster, ns, "near", "http://far/", {"far"})

    slices = {s["metadata"]["name"]: s for s in cluster.json(
        "get", "endpointslices", "-n", "kube-system", "-l",
        "kubernetes.io/service-name=kube-dns")["items"]}
    for node in ("node-a", "node-b"):
        pod_cidr = cluster.json("get", "node", node)["spec"]["podCIDR"]
        gateway = pod_cidr.rsplit(".", 1)[0] + ".1"
        endpoints = slices[f"kube-dns-{node}"]["endpoints"]
        assert [(e["nodeName"], e["addresses"]) for e in endpoints] == [(node, [gateway])]
    dns = cluster.json("get", "service", "kube-dns", "-n", "kube-system")["spec"]
    assert (dns["clusterIP"], dns["internalTrafficPolicy"]) == ("10.43.0.10", "Local")

    node_b: AgentHost = cluster.hosts["node-b"]
    far_ip = cluster_ip(cluster, ns, "far")
    node_b.stop()
    try:
        assert node_b.process is not None and node_b.process.poll() is not None
        fqdn = f"far.{ns}.svc.cluster.local"
        # Several queries: with node-b's server gone, any sent there would go unanswered.
        script = f"for i in $(seq 10); do timeout 5 nslookup {fqdn} || echo FAILED; done"
        r = cluster.exec(ns, "near", "sh", "-c", script, timeout=90)
        assert "FAILED" not in r.stdout and r.stdout.count(f"Address: {far_ip}") == 10, r
        kubernetes = addresses(nslookup(cluster, ns, "near", "kubernetes.default.svc.cluster.local"))
        assert kubernetes == {"kubernetes.default.svc.cluster.local": {"10.43.0.1"}}, kubernetes
    finally:
        node_b.restart()
        cluster.wait_node_ready("node-b")
