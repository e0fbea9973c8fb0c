"""Prometheus metrics under CoreDNS's names, so its dashboards and alerts apply."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("coredns_dns_requests_total", "Counter of DNS requests made per zone, protocol "
                   "and family.", ["server", "zone", "proto", "family", "type"])
RESPONSES = Counter("coredns_dns_responses_total", "Counter of response status codes.",
                    ["server", "zone", "rcode", "plugin"])
DURATION = Histogram("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) "
                     "each request took per zone.", ["server", "zone", "type"],
                     buckets=(0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
                              0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192))
PANICS = Counter("coredns_panics_total", "A metrics that counts the number of panics.")
FORWARD_REQUESTS = Counter("coredns_forward_requests_total",
                           "Counter of requests made per upstream.", ["to"])
FORWARD_RESPONSES = Counter("coredns_forward_responses_total",
                            "Counter of responses received per upstream.", ["to", "rcode"])
FORWARD_FAILURES = Counter("coredns_forward_healthcheck_failures_total",
                           "Counter of the number of failed queries per upstream.", ["to"])
CACHE_HITS = Counter("coredns_cache_hits_total", "The count of cache hits.", ["type"])
CACHE_MISSES = Counter("coredns_cache_misses_total", "The count of cache misses.")
KUBERNETES_SYNCED = Gauge("coredns_kubernetes_synced", "1 when the Services, EndpointSlices "
                          "and Namespaces caches have synced.")

_COMMON_TYPES = frozenset({"A", "AAAA", "ANY", "CNAME", "HTTPS", "MX", "NS", "PTR", "SOA", "SRV",
                           "TXT", "SVCB", "DS", "DNSKEY", "CAA"})


def type_label(rdtype_text: str) -> str:
    """A bounded label: queries for unusual types all count as ``other`` (as CoreDNS)."""
    return rdtype_text if rdtype_text in _COMMON_TYPES else "other"
