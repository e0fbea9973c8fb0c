"""Rule sync time for N services × M endpoints (issue 5's "1,000 × 10 under 2 s"): ruleset
generation, a whole-table apply, and a partial apply after one endpoint changed.

``measure_sync(nft=[...])`` applies through the given nft command: point it at a scratch
network namespace (``["nsenter", "--net=/run/netns/x", "nft"]``), never at a live node.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sampan.proxy.kernel import apply_script
from sampan.proxy.model import build_service_ports
from sampan.proxy.rules import NodeInfo, build_ruleset, render_full, render_update


@dataclass(frozen=True)
class SyncTimes:
    services: int
    endpoints: int
    generate_s: float
    full_apply_s: float
    partial_generate_s: float
    partial_apply_s: float
    script_bytes: int

    def __str__(self) -> str:
        return (f"{self.services} services x {self.endpoints} endpoints: generate "
                f"{self.generate_s:.3f}s, full apply {self.full_apply_s:.3f}s "
                f"({self.script_bytes // 1024} KiB), partial sync "
                f"{self.partial_generate_s + self.partial_apply_s:.3f}s "
                f"(generate {self.partial_generate_s:.3f}s + apply {self.partial_apply_s:.3f}s)")


def synthetic(services: int, endpoints: int, *, first_pod: str = "10.42.0.10",
              first_vip: str = "10.43.1.0") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``services`` ClusterIP services with one TCP port and ``endpoints`` ready endpoints."""
    pod, vip = ipaddress.ip_address(first_pod), ipaddress.ip_address(first_vip)
    svcs, slices = [], []
    for i in range(services):
        name = f"svc-{i}"
        svcs.append({"metadata": {"namespace": "bench", "name": name},
                     "spec": {"clusterIP": str(vip + i), "type": "ClusterIP",
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        slices.append({
            "metadata": {"namespace": "bench", "name": f"{name}-abcde",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [str(pod + i * endpoints + j)],
                           "conditions": {"ready": True}} for j in range(endpoints)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    return svcs, slices


async def measure_sync(services: int = 1000, endpoints: int = 10, *,
                       nft: Sequence[str] = ("nft",), table: str = "sampan-proxy-bench",
                       node: NodeInfo | None = None) -> SyncTimes:
    node = node or NodeInfo("bench", ("10.99.0.1",))
    svcs, slices = synthetic(services, endpoints)
    start = time.perf_counter()
    ruleset = build_ruleset(build_service_ports(svcs, slices), node, table)
    script = render_full(ruleset)
    generated = time.perf_counter()
    await apply_script(script, nft)
    applied = time.perf_counter()

    slices[0]["endpoints"][0]["addresses"] = ["10.41.255.1"]  # one endpoint moved
    start2 = time.perf_counter()
    updated = build_ruleset(build_service_ports(svcs, slices), node, table)
    update_script = render_update(ruleset, updated)
    generated2 = time.perf_counter()
    await apply_script(update_script, nft)
    applied2 = time.perf_counter()
    return SyncTimes(services, endpoints, generated - start, applied - generated,
                     generated2 - start2, applied2 - generated2, len(script))
