"""The service proxy's Prometheus metrics, named after kube-proxy's."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# kube-proxy's buckets: exponential from 1 ms.
_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
            2.048, 4.096, 8.192, 16.384)

SYNC_DURATION = Histogram(
    "kubeproxy_sync_proxy_rules_duration_seconds",
    "SyncProxyRules latency in seconds", buckets=_BUCKETS)
FULL_SYNC_DURATION = Histogram(
    "kubeproxy_sync_full_proxy_rules_duration_seconds",
    "SyncProxyRules latency in seconds for full resyncs", buckets=_BUCKETS)
PARTIAL_SYNC_DURATION = Histogram(
    "kubeproxy_sync_partial_proxy_rules_duration_seconds",
    "SyncProxyRules latency in seconds for partial resyncs", buckets=_BUCKETS)
LAST_SYNC = Gauge(
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
    "The last time proxy rules were successfully synced")
SYNC_FAILURES = Counter(
    "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
    "Number of failed nftables transactions")
NETWORK_PROGRAMMING = Histogram(
    "kubeproxy_network_programming_duration_seconds",
    "In Cluster Network Programming Latency in seconds",
    buckets=(0.25, 0.5, 1, 2, 3, 4, 5, 10, 15, 30, 60, 120, 300))
NO_LOCAL_ENDPOINTS = Gauge(
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
    "Number of services with a Local traffic policy and no endpoints", ["traffic_policy"])
SERVICES = Gauge("kubeproxy_sync_proxy_rules_service_ports", "Service ports programmed")
ENDPOINTS = Gauge("kubeproxy_sync_proxy_rules_endpoint_chains", "Endpoint chains programmed")
