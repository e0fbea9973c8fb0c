"""Prometheus metrics of the ingress data plane and controller (after ingress-nginx's
``nginx_ingress_controller_requests`` and ``..._response_duration_seconds``). Labelled
children are cached: looking one up costs more than counting."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("sampan_ingress_requests", "Client requests by Ingress and status code.",
                   ["namespace", "ingress", "status"])
UPSTREAM_LATENCY = Histogram(
    "sampan_ingress_upstream_latency_seconds",
    "Time from receiving a request to the end of the upstream's response, by Ingress.",
    ["namespace", "ingress"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SYNCS = Counter("sampan_ingress_config_syncs", "Routing tables built and swapped in.")
LAST_SYNC_SECONDS = Gauge("sampan_ingress_config_last_sync_duration_seconds",
                          "How long building the last routing table took.")
SERVED_INGRESSES = Gauge("sampan_ingress_served_ingresses", "Ingresses of our classes.")

_requests: dict[tuple[str, int], object] = {}
_latency: dict[str, object] = {}


def _labels(ingress: str) -> tuple[str, str]:
    namespace, _, name = ingress.partition("/")
    return namespace, name


def observe(ingress: str, status: int, _duration: float) -> None:
    child = _requests.get((ingress, status))
    if child is None:
        child = _requests[(ingress, status)] = REQUESTS.labels(*_labels(ingress), str(status))
    child.inc()  # type: ignore[attr-defined]


def observe_upstream(ingress: str, seconds: float) -> None:
    child = _latency.get(ingress)
    if child is None:
        child = _latency[ingress] = UPSTREAM_LATENCY.labels(*_labels(ingress))
    child.observe(seconds)  # type: ignore[attr-defined]
