"""metrics.k8s.io storage: decoding the kubelet's /metrics/resource, rates between samples."""

from __future__ import annotations

from sampan.apiserver.metrics_api import (
    Batch,
    NodeStore,
    Point,
    cpu_quantity,
    decode_batch,
    go_duration,
    memory_quantity,
    node_address,
    table,
)

TEXT = """\
# HELP node_cpu_usage_seconds_total Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 100.5 1700000010000
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.048576e+06 1700000010000
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="ns",pod="web"} 2 1700000010000
container_cpu_usage_seconds_total{container="half",namespace="ns",pod="broken"} 2 1700000010000
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="ns",pod="web"} 4096 1700000010000
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="app",namespace="ns",pod="web"} 1.7e+09 1700000000000
# TYPE scrape_error gauge
scrape_error 0
"""


def test_decode_batch():
    batch = decode_batch(TEXT, 0)
    assert batch.node == Point(1700000010.0, 0, 100_500_000_000, 1_048_576)
    assert set(batch.pods) == {("ns", "web")}  # "broken" has no memory sample
    assert batch.pods[("ns", "web")]["app"] == Point(1700000010.0, 1.7e9, 2_000_000_000, 4096)


def _batch(t: float, node_cpu: float, pods: dict) -> Batch:
    return Batch(Point(t, 0, int(node_cpu * 1e9), 100), pods)


def test_node_rate_needs_two_samples():
    store = NodeStore(15)
    store.store(_batch(100, 10, {}))
    assert store.node_usage() is None
    store.store(_batch(115, 13, {}))
    u = store.node_usage()
    assert (u.cpu, u.memory, u.timestamp, u.window) == (200_000_000, 100, 115, 15)
    store.store(_batch(115, 13, {}))  # the same sample again keeps the previous one
    assert store.node_usage().window == 15


def test_container_rates_restarts_and_fresh_containers():
    store = NodeStore(15)
    key = ("ns", "web")
    store.store(_batch(100, 1, {key: {"app": Point(100, 50, 1_000_000_000, 10)}}))
    assert store.pod_usage(key) is None
    store.store(_batch(110, 2, {key: {"app": Point(110, 50, 3_000_000_000, 20)}}))
    containers, ts, window = store.pod_usage(key)
    assert containers["app"].cpu == 200_000_000 and (ts, window) == (110, 10)
    # Restarted between scrapes: no rate until it has two samples of the new run.
    store.store(_batch(120, 3, {key: {"app": Point(120, 115, 1_000_000, 20)}}))
    assert store.pod_usage(key) is None
    # Started 12 s before the sample (under the resolution, over 10 s): rate since its start.
    fresh = ("ns", "fresh")
    store.store(_batch(130, 4, {fresh: {"c": Point(130, 118, 6_000_000_000, 5)}}))
    containers, ts, window = store.pod_usage(fresh)
    assert containers["c"].cpu == 500_000_000 and window == 12
    # A pod is only reported when every container has a rate.
    two = ("ns", "two")
    store.store(_batch(140, 5, {two: {"a": Point(140, 0, 1, 1), "b": Point(140, 0, 1, 1)}}))
    store.store(_batch(150, 6, {two: {"a": Point(150, 0, 2, 1), "b": Point(150, 145, 1, 1)}}))
    assert store.pod_usage(two) is None


def test_formatting():
    assert cpu_quantity(250_000_000) == "250m"
    assert cpu_quantity(123_456_789) == "123456789n"
    assert cpu_quantity(2_000_000_000) == "2"
    assert memory_quantity(64 * 1024 * 1024) == "64Mi"
    assert memory_quantity(1_000_001) == "1000001"
    assert go_duration(15.02) == "15.02s" and go_duration(61) == "1m1s"
    assert go_duration(0.5) == "500ms"


def test_node_address_preference():
    node = {"metadata": {"name": "n"}, "status": {
        "addresses": [{"type": "InternalIP", "address": "10.99.0.2"},
                      {"type": "Hostname", "address": ""}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}}
    assert node_address(node) == ("10.99.0.2", 10251)
    node["status"].pop("daemonEndpoints")
    assert node_address(node) == ("10.99.0.2", 10250)


def test_table_sums_containers():
    item = {"metadata": {"name": "web", "namespace": "ns"}, "window": "15s",
            "containers": [{"name": "a", "usage": {"cpu": "250m", "memory": "64Mi"}},
                           {"name": "b", "usage": {"cpu": "500m", "memory": "64Mi"}}]}
    t = table([item])
    assert t["kind"] == "Table"
    assert t["rows"][0]["cells"] == ["web", "750m", "128Mi", "15s"]
