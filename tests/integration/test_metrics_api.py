"""metrics.k8s.io against a real API server that scrapes a fake kubelet (an HTTPS server on
loopback named by a hand-made Node), read with kubectl top, the official Python client and the
HPA's metrics client.

The server is this module's own, started with a 1 s metric resolution so that two scrapes
(what a CPU rate needs) take about a second."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import uuid
from decimal import Decimal

import pytest
from aiohttp import web

from sampan.api.validation import parse_quantity
from sampan.client import ApiError, Client
from sampan.controllers.hpa import RestMetricsClient
from tests.cluster import KUBECTL, start_server
from tests.integration.helpers import eventually, new_namespace

MI = 1024 * 1024


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory):
    previous = os.environ.get("SAMPAN_METRIC_RESOLUTION")
    os.environ["SAMPAN_METRIC_RESOLUTION"] = "1"
    try:
        server = start_server(tmp_path_factory.mktemp("metrics-apiserver"))
    finally:
        if previous is None:
            os.environ.pop("SAMPAN_METRIC_RESOLUTION", None)
        else:
            os.environ["SAMPAN_METRIC_RESOLUTION"] = previous
    yield server
    server.stop()


class FakeKubelet:
    """Serves /metrics/resource as the kubelet does. Every answer moves the clock on by one
    second of its own, so CPU rates are exact whatever the real timing: the node uses half a
    core, every container a quarter."""

    def __init__(self, pki_dir, pods: list[tuple[str, str, str]]):
        self.pki_dir = pki_dir
        self.pods = pods
        self.clock = 1_700_000_000.0
        self.scrapes = 0
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        self.clock += 1
        ts = int(self.clock * 1000)
        elapsed = self.clock - 1_700_000_000.0
        lines = [
            "# HELP node_cpu_usage_seconds_total Cumulative cpu time consumed by the node",
            "# TYPE node_cpu_usage_seconds_total counter",
            f"node_cpu_usage_seconds_total {100 + 0.5 * elapsed} {ts}",
            "# HELP node_memory_working_set_bytes Current working set of the node in bytes",
            "# TYPE node_memory_working_set_bytes gauge",
            f"node_memory_working_set_bytes {512 * MI} {ts}",
            "# TYPE container_cpu_usage_seconds_total counter",
        ]
        for ns, pod, container in self.pods:
            labels = f'container="{container}",namespace="{ns}",pod="{pod}"'
            lines.append(f"container_cpu_usage_seconds_total{{{labels}}} {1 + 0.25 * elapsed} {ts}")
        lines.append("# TYPE container_memory_working_set_bytes gauge")
        for ns, pod, container in self.pods:
            labels = f'container="{container}",namespace="{ns}",pod="{pod}"'
            lines.append(f"container_memory_working_set_bytes{{{labels}}} {64 * MI} {ts}")
        lines.append("# TYPE container_start_time_seconds gauge")
        for ns, pod, container in self.pods:
            labels = f'container="{container}",namespace="{ns}",pod="{pod}"'
            lines.append(f"container_start_time_seconds{{{labels}}} 1.6e+09 1600000000000")
        lines.append("# TYPE scrape_error gauge")
        lines.append("scrape_error 0")
        return web.Response(text="\n".join(lines) + "\n",
                            content_type="text/plain", charset="utf-8")

    async def __aenter__(self) -> FakeKubelet:
        app = web.Application()
        app.router.add_get("/metrics/resource", self.metrics)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.pki_dir / "apiserver.crt"), str(self.pki_dir / "apiserver.key"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx).start()
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def node_object(name: str, port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "sampan.test/metrics": "yes"}}}


def node_status(port: int) -> dict:
    capacity = {"cpu": "2", "memory": "4Gi", "pods": "110"}
    return {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                       "capacity": capacity, "allocatable": capacity}}


def pod_object(name: str, node: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [
                {"name": "app", "image": "busybox",
                 "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}]}}


def cores(quantity: str) -> Decimal:
    return parse_quantity(quantity).value


def kubectl(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", server.kubeconfig, *args],
                          capture_output=True, text=True, timeout=60)


async def test_top_nodes_and_pods(metrics_server):
    node = f"metrics-{uuid.uuid4().hex[:6]}"
    async with Client.from_kubeconfig(metrics_server.kubeconfig) as client:
        ns = await new_namespace(client, "metrics")
        quiet_ns = await new_namespace(client, "metrics-quiet")
        kubelet_pods = [(ns, "web", "app"), (ns, "db", "app")]
        async with FakeKubelet(metrics_server.data_dir / "pki", kubelet_pods) as kubelet:
            await client.create("v1", "nodes", node_object(node, kubelet.port))
            try:
                await client.patch("v1", "nodes", node, node_status(kubelet.port),
                                   subresource="status")
                await client.create("v1", "pods", pod_object("web", node, {"app": "web"}),
                                    namespace=ns)
                await client.create("v1", "pods", pod_object("db", node, {"app": "db"}),
                                    namespace=ns)
                await client.create("v1", "pods", pod_object("idle", node, {"app": "idle"}),
                                    namespace=quiet_ns)
                await _check(metrics_server, client, node, ns, quiet_ns)
            finally:
                await client.delete("v1", "nodes", node)


async def _check(server, client: Client, node: str, ns: str, quiet_ns: str) -> None:
    base = "/apis/metrics.k8s.io/v1beta1"

    async def node_scraped_twice() -> bool:
        try:
            await client.request("GET", f"{base}/nodes/{node}")
            await client.request("GET", f"{base}/namespaces/{ns}/pods/web")
            return True
        except ApiError as e:
            assert e.not_found
            return False

    await eventually(node_scraped_twice, what="node and pod metrics")

    nm = await client.request("GET", f"{base}/nodes/{node}")
    assert nm["kind"] == "NodeMetrics" and nm["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert nm["metadata"]["labels"]["sampan.test/metrics"] == "yes"
    assert nm["window"] == "1s"
    assert cores(nm["usage"]["cpu"]) == Decimal("0.5")
    assert nm["usage"]["memory"] == "512Mi"

    listed = await client.request("GET", f"{base}/namespaces/{ns}/pods",
                                  params={"labelSelector": "app=web"})
    assert listed["kind"] == "PodMetricsList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    web_metrics = listed["items"][0]
    assert web_metrics["containers"][0]["name"] == "app"
    assert cores(web_metrics["containers"][0]["usage"]["cpu"]) == Decimal("0.25")
    assert web_metrics["containers"][0]["usage"]["memory"] == "64Mi"
    both = await client.request("GET", f"{base}/namespaces/{ns}/pods")
    assert [i["metadata"]["name"] for i in both["items"]] == ["db", "web"]
    by_field = await client.request("GET", f"{base}/pods",
                                    params={"fieldSelector": f"metadata.namespace={ns}"})
    assert sorted(i["metadata"]["name"] for i in by_field["items"]) == ["db", "web"]
    nodes = await client.request("GET", f"{base}/nodes",
                                 params={"labelSelector": f"kubernetes.io/hostname={node}"})
    assert [i["metadata"]["name"] for i in nodes["items"]] == [node]

    with pytest.raises(ApiError) as missing:  # the kubelet does not report it
        await client.request("GET", f"{base}/namespaces/{quiet_ns}/pods/idle")
    assert missing.value.code == 404
    assert 'podmetrics.metrics.k8s.io "' in missing.value.message
    with pytest.raises(ApiError) as refused:
        await client.request("POST", f"{base}/nodes", body={})
    assert refused.value.code == 405

    # The HPA reads the same API.
    metrics, _ = await RestMetricsClient(client).get_resource_metric("cpu", ns, "app=web", None)
    assert metrics["web"].value == 250 and metrics["web"].window == 1.0

    # Discovery lists the group, and kubectl top prints the numbers.
    groups = await client.request("GET", "/apis")
    assert "metrics.k8s.io" in [g["name"] for g in groups["groups"]]
    resources = await client.request("GET", f"{base}")
    assert {r["name"]: r["verbs"] for r in resources["resources"]} == {
        "nodes": ["get", "list"], "pods": ["get", "list"]}

    loop = asyncio.get_running_loop()
    top_nodes = await loop.run_in_executor(None, kubectl, server, "top", "node", node)
    assert top_nodes.returncode == 0, top_nodes.stderr
    row = next(line.split() for line in top_nodes.stdout.splitlines() if line.startswith(node))
    assert row[1:] == ["500m", "25%", "512Mi", "12%"]
    top_pods = await loop.run_in_executor(None, kubectl, server, "top", "pods", "-n", ns)
    assert top_pods.returncode == 0, top_pods.stderr
    rows = {line.split()[0]: line.split()[1:] for line in top_pods.stdout.splitlines()[1:]}
    assert rows == {"db": ["250m", "64Mi"], "web": ["250m", "64Mi"]}
    top_containers = await loop.run_in_executor(
        None, kubectl, server, "top", "pod", "web", "-n", ns, "--containers")
    assert top_containers.returncode == 0, top_containers.stderr
    assert "app" in top_containers.stdout and "250m" in top_containers.stdout
    quiet = await loop.run_in_executor(None, kubectl, server, "top", "pods", "-n", quiet_ns)
    assert quiet.returncode != 0 and "metrics not available yet" in quiet.stderr

    listed_by_get = await loop.run_in_executor(None, kubectl, server, "get", "podmetrics", "-n", ns)
    assert listed_by_get.returncode == 0, listed_by_get.stderr
    assert "web" in listed_by_get.stdout and "250m" in listed_by_get.stdout
    for path in ("/openapi/v2", "/openapi/v3"):
        raw = await loop.run_in_executor(None, kubectl, server, "get", "--raw", path)
        assert raw.returncode == 0, raw.stderr

    # The official Python client reads them as custom objects.
    await loop.run_in_executor(None, _python_client, server.kubeconfig, node, ns)


def _python_client(kubeconfig: str, node: str, ns: str) -> None:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        custom = client.CustomObjectsApi(api)
        pods = custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", ns, "pods")
        assert sorted(p["metadata"]["name"] for p in pods["items"]) == ["db", "web"]
        got = custom.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", node)
        assert got["usage"]["memory"] == "512Mi"


async def test_view_role_reads_metrics(metrics_server):
    """Whoever may view a namespace may read its pod metrics (the aggregated reader role)."""
    async with Client.from_kubeconfig(metrics_server.kubeconfig) as client:
        role = await client.get("rbac.authorization.k8s.io/v1", "clusterroles",
                                "system:aggregated-metrics-reader")
        assert role["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
        assert role["rules"][0]["apiGroups"] == ["metrics.k8s.io"]
