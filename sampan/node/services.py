"""The node's share of cluster networking, run by the node agent: the service proxy (kube-proxy's
job) and a node-local cluster DNS server.

Every node serves DNS on its pod gateway address (``10.42.N.1:53``) from the agent's informer
caches and publishes that address in an EndpointSlice of ``kube-system/kube-dns`` of its own.
The Service has ``internalTrafficPolicy: Local``, so the proxy sends each pod's queries for
``10.43.0.10`` to its own node's server (NodeLocal DNSCache's layout, without a second hop):
DNS keeps answering for a node's pods while other nodes come and go."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from sampan.client import ApiError, Client, InformerFactory

log = logging.getLogger(__name__)

DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DNS_PORT = 53
MANAGED_BY = "node-agent.sampan.io"


def dns_slice_name(node_name: str) -> str:
    """``kube-dns-<node>``, shortened with a hash when it would pass 63 characters."""
    name = f"{DNS_SERVICE}-{node_name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(node_name.encode()).hexdigest()[:10]
    return f"{name[:52].rstrip('-.')}-{digest}"


def dns_endpoint_slice(node: dict[str, Any], addresses: Sequence[str], family: str,
                       port: int = DNS_PORT) -> dict[str, Any]:
    """The EndpointSlice that says ``node`` serves cluster DNS on ``addresses``."""
    meta = node["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": dns_slice_name(meta["name"]) + ("-v6" if family == "IPv6" else ""),
            "namespace": DNS_NAMESPACE,
            "labels": {"kubernetes.io/service-name": DNS_SERVICE,
                       "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
            # The node's deletion takes its slice with it (garbage collector).
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": meta["name"],
                                 "uid": meta["uid"]}],
        },
        "addressType": family,
        "endpoints": [{"addresses": [a], "nodeName": meta["name"],
                       "conditions": {"ready": True, "serving": True, "terminating": False}}
                      for a in addresses],
        "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": port, "protocol": "TCP"}],
    }


class NodeServices:
    """Service proxy and cluster DNS of one node, started and stopped with its agent."""

    def __init__(self, client: Client, node_name: str, informers: InformerFactory, *,
                 node_ips: Sequence[str] = (), cluster_cidrs: Sequence[str] = ("10.42.0.0/16",),
                 service_cidrs: Sequence[str] = ("10.43.0.0/16",), cluster_domain: str =
                 "cluster.local", proxy: bool = True, dns: bool = True, dns_port: int = DNS_PORT,
                 min_sync_interval: float = 0.05, proxy_mode: str = "auto"):
        self.client = client
        self.node_name = node_name
        self.informers = informers
        self.cluster_domain = cluster_domain
        self.dns_port = dns_port
        self.dns_enabled = dns
        self.dns_addresses: list[str] = []
        self.cluster_dns_ips: list[str] = []
        self.proxy = None
        if proxy:
            from sampan.proxy.proxier import ServiceProxy

            self.proxy = ServiceProxy(client, node_name, node_ips=node_ips,
                                      cluster_cidrs=cluster_cidrs, service_cidrs=service_cidrs,
                                      min_sync_interval=min_sync_interval, informers=informers,
                                      mode=proxy_mode)
        self.dns: Any = None
        self._proxy_stop = asyncio.Event()
        self._proxy_task: asyncio.Task[None] | None = None
        self._dns_lock = asyncio.Lock()
        self._slices: list[str] = []

    async def discover_cluster_dns(self) -> list[str]:
        """The ClusterIPs of ``kube-system/kube-dns`` (what ``--cluster-dns`` would say)."""
        try:
            service = await self.client.get("v1", "services", DNS_SERVICE,
                                            namespace=DNS_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                log.warning("reading the cluster DNS service: %s", e)
            return []
        spec = service.get("spec") or {}
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        return [ip for ip in ips if ip and ip != "None"]

    async def start(self) -> None:
        """Start the proxy (it syncs in the background; the informers are the agent's)."""
        if self.dns_enabled:
            self.cluster_dns_ips = await self.discover_cluster_dns()
        if self.proxy is not None:
            self._proxy_task = asyncio.get_running_loop().create_task(
                self.proxy.run(self._proxy_stop, delete_rules_on_stop=False),
                name="service proxy")

    async def network_ready(self, gateways: Sequence[str]) -> None:
        """Serve DNS on the pod gateway addresses and publish them (again after a change)."""
        if not self.dns_enabled:
            return
        async with self._dns_lock:
            addresses = sorted(gateways)
            if addresses == self.dns_addresses and self.dns is not None:
                return
            from sampan.dns.server import ClusterDNS

            if self.dns is not None:
                await self.dns.stop()
            dns = ClusterDNS(self.client, domain=self.cluster_domain,
                             listen=[(a, self.dns_port) for a in addresses],
                             informers=self.informers,
                             nameserver_ips=self.cluster_dns_ips or addresses)
            await dns.start()
            self.dns, self.dns_addresses = dns, addresses
            await self._publish(addresses)

    async def _publish(self, addresses: Sequence[str]) -> None:
        node = await self.client.get("v1", "nodes", self.node_name)
        by_family: dict[str, list[str]] = {}
        for address in addresses:
            family = "IPv6" if ipaddress.ip_address(address).version == 6 else "IPv4"
            by_family.setdefault(family, []).append(address)
        names = []
        for family, ips in by_family.items():
            want = dns_endpoint_slice(node, ips, family, self.dns_port)
            name = want["metadata"]["name"]
            names.append(name)
            try:
                current = await self.client.get("discovery.k8s.io/v1", "endpointslices", name,
                                                namespace=DNS_NAMESPACE)
            except ApiError as e:
                if e.code != 404:
                    raise
                await self.client.create("discovery.k8s.io/v1", "endpointslices", want,
                                         namespace=DNS_NAMESPACE)
                continue
            want["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.client.update("discovery.k8s.io/v1", "endpointslices", want,
                                     namespace=DNS_NAMESPACE)
        self._slices = names
        log.info("cluster DNS serving", extra={"addresses": list(addresses),
                                               "service_ips": self.cluster_dns_ips})

    async def close(self, *, remove: bool = False) -> None:
        """Stop serving. ``remove`` (the node shutting down) also withdraws the DNS endpoint
        and deletes the proxy's nftables table; otherwise both stay for the next agent."""
        if self.dns is not None:
            await self.dns.stop()
            self.dns = None
        if remove:
            for name in self._slices:
                try:
                    await self.client.delete("discovery.k8s.io/v1", "endpointslices", name,
                                             namespace=DNS_NAMESPACE)
                except ApiError as e:
                    if e.code != 404:
                        log.warning("withdrawing the DNS endpoint %s: %s", name, e)
                except Exception as e:  # the API server may be gone first (sampan up's Ctrl-C)
                    log.warning("withdrawing the DNS endpoint %s: %s", name, e)
        if self._proxy_task is not None:
            self._proxy_stop.set()
            await asyncio.gather(self._proxy_task, return_exceptions=True)
            self._proxy_task = None
        if remove and self.proxy is not None:
            await self.proxy.delete_rules()
