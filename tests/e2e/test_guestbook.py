"""The guestbook sample application (deploy/guestbook) on a real node: the image built
offline, the manifests applied with kubectl, an entry added through the frontend's API,
listed back, and still there after the frontend's pods are replaced (the backend keeps it on
its volume).

The frontend reaches the backend by the Service name ``guestbook-backend``: this test runs
the cluster DNS (``sampan dns``, the pods' nameserver via the agent's ``--cluster-dns``) and
the service proxy (``sampan proxy``) inside the test host's network namespace, as
``sampan up`` will on a real node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import SAMPAN, stop_process
from tests.e2e.nodecluster import NodeCluster, start_node_cluster, wait_for

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "guestbook" / "guestbook.yaml"
NS = "guestbook"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from sampan.node.images import ImageStore
    from sampan.node.images.build import build_guestbook

    work = tmp_path_factory.mktemp("guestbook")
    cluster = start_node_cluster(work)
    processes: list[subprocess.Popen] = []
    try:
        build_guestbook(ImageStore(work / "node-a" / "images"))
        node_ip = f"10.99.{cluster.net.subnet}.2"         # the first test host's address
        host = cluster.add_node("node-a", "--cluster-dns", node_ip)
        assert host.ip == node_ip
        kubeconfig = cluster.server.kubeconfig
        for name, args in (
                ("dns", ["dns", "--kubeconfig", kubeconfig, "--listen", f"{node_ip}:53"]),
                ("proxy", ["proxy", "--kubeconfig", kubeconfig, "--node", "node-a",
                           "--node-ip", node_ip, "--cluster-cidr", "10.42.0.0/16",
                           "--service-cidr", "10.43.0.0/16"])):
            with open(work / f"{name}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    ["nsenter", f"--net=/run/netns/{host.netns}", SAMPAN, *args],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        yield cluster
    finally:
        for process in processes:
            stop_process(process, signal.SIGTERM, 10)
        cluster.stop()


def _request(cluster: NodeCluster, url: str, entry: str | None = None) -> tuple[int, str]:
    """GET (or POST entry=...) ``url`` from the node's network namespace."""
    code = f"""
import sys, urllib.error, urllib.parse, urllib.request
data = None if {entry!r} is None else urllib.parse.urlencode({{"entry": {entry!r}}}).encode()
try:
    r = urllib.request.urlopen(urllib.request.Request({url!r}, data=data), timeout=15)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
"""
    host = cluster.hosts["node-a"]
    r = host.nsenter(sys.executable, "-c", code, timeout=30,
                     env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    assert r.returncode == 0, r.stderr[-2000:]
    status, _, body = r.stdout.partition("\n")
    return int(status), body


def _ready_pod_ips(cluster: NodeCluster, component: str) -> list[str]:
    pods = cluster.json("get", "pods", "-n", NS, "-l",
                        f"app.kubernetes.io/component={component}")["items"]
    return [p["status"]["podIP"] for p in pods
            if p["metadata"].get("deletionTimestamp") is None and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or ())]


def _rollout(cluster: NodeCluster, name: str) -> None:
    r = cluster.kubectl_run("rollout", "status", "-n", NS, f"deployment/{name}",
                            "--timeout=150s", timeout=170, check=False)
    if r.returncode != 0:
        describe = cluster.kubectl_run("describe", "pods", "-n", NS, check=False).stdout
        raise AssertionError(f"{name} not rolled out: {r.stderr}\n{describe[-6000:]}\n"
                             f"{cluster.hosts['node-a'].logs()[-3000:]}")


def test_guestbook(cluster: NodeCluster) -> None:
    cluster.kubectl("apply", "-f", str(MANIFEST))
    _rollout(cluster, "guestbook-backend")
    _rollout(cluster, "guestbook-frontend")
    ingress = cluster.json("get", "ingress", "-n", NS, "guestbook")
    assert ingress["spec"]["rules"][0]["host"] == "guestbook.localhost"

    frontend = _ready_pod_ips(cluster, "frontend")
    assert len(frontend) == 2
    status, page = _request(cluster, f"http://{frontend[0]}:8080/")
    assert status == 200 and "<form" in page
    status, config = _request(cluster, f"http://{frontend[0]}:8080/cgi-bin/config")
    assert (status, config.splitlines()) == (
        200, ["Sampan Guestbook", "Hello from Sampan! Leave a message."])

    # frontend → backend by Service name: cluster DNS, then the ClusterIP through the proxy
    def backend_answers() -> bool:
        return _request(cluster, f"http://{frontend[0]}:8080/cgi-bin/healthz")[0] == 200
    wait_for(backend_answers, 60, "the frontend to reach guestbook-backend",
             lambda: _request(cluster, f"http://{frontend[0]}:8080/cgi-bin/healthz")[1])

    entry = "Hello from the e2e test <b>&amp; friends</b> + ünïcode"
    status, body = _request(cluster, f"http://{frontend[0]}:8080/cgi-bin/entries", entry)
    assert (status, body.strip()) == (201, entry)
    status, body = _request(cluster, f"http://{frontend[1]}:8080/cgi-bin/entries", "second")
    assert status == 201
    status, body = _request(cluster, f"http://{frontend[1]}:8080/cgi-bin/entries")
    assert (status, body.splitlines()) == (200, [entry, "second"])
    status, body = _request(cluster, f"http://{frontend[0]}:8080/cgi-bin/entries", "   ")
    assert status in (400, 502)

    # through the frontend's Service (ClusterIP, proxied) as the Ingress would reach it
    service = cluster.json("get", "service", "-n", NS, "guestbook-frontend")
    status, body = _request(cluster, f"http://{service['spec']['clusterIP']}/cgi-bin/entries")
    assert (status, body.splitlines()) == (200, [entry, "second"])

    # new frontend pods: the entries live in the backend
    cluster.kubectl("delete", "pods", "-n", NS, "-l", "app.kubernetes.io/component=frontend",
                    "--wait=false")
    wait_for(lambda: len(set(_ready_pod_ips(cluster, "frontend")) - set(frontend)) == 2, 120,
             "replacement frontend pods Ready")
    fresh = sorted(set(_ready_pod_ips(cluster, "frontend")) - set(frontend))
    status, body = _request(cluster, f"http://{fresh[0]}:8080/cgi-bin/entries")
    assert (status, body.splitlines()) == (200, [entry, "second"])

    events = json.loads(cluster.kubectl("get", "events", "-n", NS, "-o", "json"))["items"]
    assert not [e for e in events if e.get("reason") in ("Failed", "ErrImagePull",
                                                         "ErrImageNeverPull")]
