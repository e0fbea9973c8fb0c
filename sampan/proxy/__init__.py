"""The service proxy: ClusterIP, NodePort, LoadBalancer and external IPs in nftables, the way
kube-proxy's nftables mode programs them."""

from sampan.proxy.model import Endpoint, ServicePort, build_service_ports, categorize
from sampan.proxy.proxier import ServiceProxy, default_table
from sampan.proxy.rules import NodeInfo, Ruleset, build_ruleset, render_full, render_update
from sampan.proxy.run import run_proxy


def ruleset_text(services, slices, node: NodeInfo, table: str) -> str:
    """The whole-table nft script for ``services`` and ``slices`` on ``node`` (pure)."""
    return render_full(build_ruleset(build_service_ports(services, slices), node, table))


__all__ = ["Endpoint", "NodeInfo", "Ruleset", "ServicePort", "ServiceProxy", "build_ruleset",
           "build_service_ports", "categorize", "default_table", "render_full", "render_update",
           "ruleset_text", "run_proxy"]
