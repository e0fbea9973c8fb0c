"""Cluster DNS: Services, headless endpoints, pods, SRV and PTR records of the cluster domain
from informers; other names forwarded to the host's resolvers."""

from sampan.dns.cluster import ClusterView
from sampan.dns.forward import Forwarder, ResponseCache, resolv_conf_nameservers
from sampan.dns.run import parse_address, run_dns
from sampan.dns.server import DEFAULT_LISTEN, ClusterDNS
from sampan.dns.zone import Zone

__all__ = ["ClusterDNS", "ClusterView", "DEFAULT_LISTEN", "Forwarder", "ResponseCache", "Zone",
           "parse_address", "resolv_conf_nameservers", "run_dns"]
