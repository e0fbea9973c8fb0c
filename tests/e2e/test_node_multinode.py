"""Several node agents, each on its own test host (network namespace): pods on different
nodes reach each other by pod IP, and when a node dies its pods come back on the others."""

from __future__ import annotations

import json

import pytest

from tests.e2e.nodecluster import BUSYBOX, NodeCluster, start_node_cluster, wait_for

TOLERATION_SECONDS = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> NodeCluster:
    # A short heartbeat grace so that a dead node is noticed within seconds.
    c = start_node_cluster(tmp_path_factory.mktemp("multinode"),
                           "--node-monitor-grace-period", "8")
    try:
        c.add_node("node-a", wait=False)
        c.add_node("node-b", wait=False)
        c.wait_node_ready("node-a")
        c.wait_node_ready("node-b")
        yield c
    finally:
        c.stop()


def deployment(replicas: int) -> str:
    tolerations = [{"key": key, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": TOLERATION_SECONDS}
                   for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "tolerations": tolerations,
                     "terminationGracePeriodSeconds": 2,
                     "topologySpreadConstraints": [{
                         "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                         "whenUnsatisfiable": "ScheduleAnyway",
                         "labelSelector": {"matchLabels": {"app": "web"}}}],
                     "containers": [{
                         "name": "httpd", "image": BUSYBOX,
                         "command": ["sh", "-c", "mkdir -p /w && hostname > /w/index.html && "
                                                 "exec httpd -f -p 8080 -h /w"],
                         "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}})


def test_pods_reach_each_other_across_nodes_and_move_when_a_node_dies(cluster: NodeCluster):
    ns = cluster.namespace()
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment(2))
    cluster.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s",
                    timeout=130)
    pods = cluster.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    assert set(by_node) == {"node-a", "node-b"}, [p["spec"].get("nodeName") for p in pods]
    a, b = by_node["node-a"], by_node["node-b"]
    assert a["status"]["podIP"].split(".")[2] != b["status"]["podIP"].split(".")[2]
    # From the pod on node-a to the pod on node-b by pod IP, and back.
    for src, dst in ((a, b), (b, a)):
        # (Debian's static busybox wget crashes with -T: bound it with timeout instead.)
        out = cluster.kubectl("exec", "-n", ns, src["metadata"]["name"], "--", "timeout", "10",
                              "wget", "-qO-", f"http://{dst['status']['podIP']}:8080/")
        assert out.strip() == dst["metadata"]["name"]

    # node-b dies (its agent is killed): NotReady, tainted, its pod evicted after the
    # toleration and replaced on node-a.
    cluster.hosts["node-b"].stop(9)

    def node_b_not_ready() -> bool:
        status = cluster.kubectl("get", "node", "node-b", "-o",
                                 "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
        return status.strip() == "Unknown"
    wait_for(node_b_not_ready, 90, "node-b NotReady (Unknown)")

    def moved() -> bool:
        items = cluster.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions") or ())]
        return len(ready) == 2 and all(p["spec"]["nodeName"] == "node-a" for p in ready)
    wait_for(moved, 120, "both replicas Ready on node-a")
