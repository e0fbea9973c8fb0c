"""Prometheus metrics of the ingress data plane and controller (after ingress-nginx's
``nginx_ingress_controller_requests`` and ``..._response_duration_seconds``).

The two per-request metrics are counted in plain dicts and turned into samples only when
scraped (a collector, as exporters for other servers do): a labelled prometheus_client child
takes a lock and a bucket walk per observation, which costs more than the rest of counting."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

REQUESTS_NAME = "sampan_ingress_requests"
REQUESTS_HELP = "Client requests by Ingress and status code."
LATENCY_NAME = "sampan_ingress_upstream_latency_seconds"
LATENCY_HELP = ("Time from receiving a request to the end of the upstream's response, "
                "by Ingress.")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                   10, float("inf"))
_LE = tuple(floatToGoString(bound) for bound in LATENCY_BUCKETS)

SYNCS = Counter("sampan_ingress_config_syncs", "Routing tables built and swapped in.")
LAST_SYNC_SECONDS = Gauge("sampan_ingress_config_last_sync_duration_seconds",
                          "How long building the last routing table took.")
SERVED_INGRESSES = Gauge("sampan_ingress_served_ingresses", "Ingresses of our classes.")


class _Latency:
    __slots__ = ("buckets", "sum", "created")

    def __init__(self) -> None:
        self.buckets = [0] * len(LATENCY_BUCKETS)  # per bucket, not cumulative
        self.sum = 0.0
        self.created = time.time()


_requests: dict[tuple[str, int], int] = {}
_requests_created: dict[tuple[str, int], float] = {}
_latency: dict[str, _Latency] = {}


def _labels(ingress: str) -> dict[str, str]:
    namespace, _, name = ingress.partition("/")
    return {"namespace": namespace, "ingress": name}


def observe(ingress: str, status: int, _duration: float) -> None:
    """One client request answered for ``ingress`` ("ns/name", "" when none matched)."""
    key = (ingress, status)
    count = _requests.get(key)
    if count is None:
        _requests_created[key] = time.time()
        count = 0
    _requests[key] = count + 1


def observe_upstream(ingress: str, seconds: float) -> None:
    """One upstream response for ``ingress`` ended ``seconds`` after its request came in."""
    latency = _latency.get(ingress)
    if latency is None:
        latency = _latency[ingress] = _Latency()
    latency.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
    latency.sum += seconds


class DataPlaneCollector(Collector):
    """The request counter and the latency histogram, in prometheus_client's exposition."""

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(REQUESTS_NAME, REQUESTS_HELP),
                Metric(LATENCY_NAME, LATENCY_HELP, "histogram")]

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(REQUESTS_NAME, REQUESTS_HELP,
                                       labels=("namespace", "ingress", "status"))
        for (ingress, status), count in list(_requests.items()):
            namespace, _, name = ingress.partition("/")
            requests.add_metric((namespace, name, str(status)), count,
                                created=_requests_created[(ingress, status)])
        yield requests
        histogram = Metric(LATENCY_NAME, LATENCY_HELP, "histogram")
        for ingress, latency in list(_latency.items()):
            labels = _labels(ingress)
            total = 0
            for le, count in zip(_LE, latency.buckets):
                total += count
                histogram.add_sample(LATENCY_NAME + "_bucket", {**labels, "le": le}, total)
            histogram.add_sample(LATENCY_NAME + "_count", labels, total)
            histogram.add_sample(LATENCY_NAME + "_sum", labels, latency.sum)
            histogram.add_sample(LATENCY_NAME + "_created", labels, latency.created)
        yield histogram


REGISTRY.register(DataPlaneCollector())
