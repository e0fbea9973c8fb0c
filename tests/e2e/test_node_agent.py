"""The node agent end to end: real runc containers on a test host, driven by real kubectl."""

from __future__ import annotations

import textwrap

import pytest

from tests.e2e.nodecluster import BUSYBOX, NodeCluster, http_get, start_node_cluster, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> NodeCluster:
    c = start_node_cluster(tmp_path_factory.mktemp("nodes"))
    try:
        c.add_node("node-a")
        yield c
    finally:
        c.stop()


@pytest.fixture
def ns(cluster: NodeCluster) -> str:
    name = cluster.namespace()
    yield name
    cluster.kubectl_run("delete", "namespace", name, "--wait=false", check=False)


HTTPD = textwrap.dedent(f"""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: web}}
    spec:
      replicas: 2
      selector: {{matchLabels: {{app: web}}}}
      template:
        metadata: {{labels: {{app: web}}}}
        spec:
          containers:
          - name: httpd
            image: {BUSYBOX}
            command: [sh, -c, 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www']
            ports: [{{containerPort: 8080}}]
            readinessProbe:
              httpGet: {{path: /, port: 8080}}
              periodSeconds: 1
    """)


def test_deployment_of_busybox_httpd_reached_by_pod_ip(cluster: NodeCluster, ns: str) -> None:
    cluster.apply(HTTPD, ns)
    cluster.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s",
                    timeout=130)
    pods = cluster.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    assert len(pods) == 2
    host = cluster.hosts["node-a"]
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert ip.startswith("10.42.")
        body = http_get(host, f"http://{ip}:8080/")
        assert body.strip() == f"hello from {pod['metadata']['name']}"
    table = cluster.kubectl("get", "pods", "-n", ns, "-l", "app=web", "--no-headers")
    for line in table.splitlines():
        name, ready, status, restarts = line.split()[:4]
        assert (ready, status, restarts) == ("1/1", "Running", "0"), table


def test_pod_runs_to_completion(cluster: NodeCluster, ns: str) -> None:
    cluster.kubectl("run", "once", "-n", ns, f"--image={BUSYBOX}", "--restart=Never",
                    "--", "sh", "-c", "echo done; exit 0")
    wait_for(lambda: cluster.pod_phase(ns, "once") == "Succeeded", 90, "pod Succeeded")
    line = cluster.kubectl("get", "pod", "once", "-n", ns, "--no-headers")
    assert line.split()[1:3] == ["0/1", "Completed"], line
    cluster.kubectl("run", "fails", "-n", ns, f"--image={BUSYBOX}", "--restart=Never",
                    "--", "sh", "-c", "exit 3")
    wait_for(lambda: cluster.pod_phase(ns, "fails") == "Failed", 90, "pod Failed")
    pod = cluster.json("get", "pod", "fails", "-n", ns)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
