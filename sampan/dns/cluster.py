"""What the DNS server knows of the cluster: Services, EndpointSlices and Namespaces in
informer caches, with indexes that make every lookup a dictionary read (by service, by
ClusterIP, by endpoint address)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sampan.client import Indexer, InformerFactory, SharedInformer
from sampan.dns.names import dashed, normalize_ip

Object = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICES_BY_SERVICE = "dns-service"
SLICES_BY_ADDRESS = "dns-address"
SERVICES_BY_CLUSTER_IP = "dns-cluster-ip"


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class Endpoint:
    ip: str
    hostname: str  # the endpoint's hostname, else its dashed IP
    ports: tuple[Port, ...]


def _ready_endpoints(endpoint_slice: Object) -> Iterable[tuple[Object, str]]:
    """(endpoint, normalized address) of each ready address; an unknown readiness is ready."""
    if endpoint_slice.get("addressType") not in ("IPv4", "IPv6"):
        return
    for endpoint in endpoint_slice.get("endpoints") or []:
        if ((endpoint.get("conditions") or {}).get("ready")) is False:
            continue
        for address in endpoint.get("addresses") or []:
            ip = normalize_ip(address)
            if ip is not None:
                yield endpoint, ip


def index_slice_by_service(endpoint_slice: Object) -> list[str]:
    meta = endpoint_slice.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace') or ''}/{service}"] if service else []


def index_slice_by_address(endpoint_slice: Object) -> list[str]:
    return sorted({ip for _, ip in _ready_endpoints(endpoint_slice)})


def cluster_ips(service: Object) -> list[str]:
    spec = service.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in (normalize_ip(i) for i in ips if i != "None") if ip is not None]


def index_service_by_cluster_ip(service: Object) -> list[str]:
    return cluster_ips(service)


def is_headless(service: Object) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def is_external_name(service: Object) -> bool:
    return (service.get("spec") or {}).get("type") == "ExternalName"


def service_ports(service: Object) -> list[Port]:
    return [Port(p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
            for p in (service.get("spec") or {}).get("ports") or []]


class ClusterView:
    """Read-only lookups over the three caches; ``modified`` is the Unix time of the last
    change, the zone's SOA serial (as CoreDNS)."""

    def __init__(self, services: Indexer, slices: Indexer, namespaces: Indexer):
        services.add_indexers({SERVICES_BY_CLUSTER_IP: index_service_by_cluster_ip})
        slices.add_indexers({SLICES_BY_SERVICE: index_slice_by_service,
                             SLICES_BY_ADDRESS: index_slice_by_address})
        self.services, self.slices, self.namespaces = services, slices, namespaces
        self.modified = int(time.time())

    def touch(self, *_: Object) -> None:
        self.modified = int(time.time())

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces

    def service(self, namespace: str, name: str) -> Object | None:
        return self.services.get(f"{namespace}/{name}")

    def endpoints(self, namespace: str, service: str) -> list[Endpoint]:
        """The service's ready endpoints, one per (address, hostname) across its slices, in a
        stable order."""
        merged: dict[tuple[str, str], list[Port]] = {}
        for endpoint_slice in self.slices.by_index(SLICES_BY_SERVICE, f"{namespace}/{service}"):
            ports = [Port(p.get("name") or "", p.get("protocol") or "TCP", int(p["port"]))
                     for p in endpoint_slice.get("ports") or [] if p.get("port") is not None]
            for endpoint, ip in _ready_endpoints(endpoint_slice):
                hostname = (endpoint.get("hostname") or dashed(ip)).lower()
                known = merged.setdefault((ip, hostname), [])
                known.extend(p for p in ports if p not in known)
        return [Endpoint(ip, hostname, tuple(ports))
                for (ip, hostname), ports in sorted(merged.items())]

    def services_with_cluster_ip(self, ip: str) -> list[Object]:
        return self.services.by_index(SERVICES_BY_CLUSTER_IP, ip)

    def endpoint_names(self, ip: str) -> list[tuple[str, str, str]]:
        """(hostname, namespace, service) of every ready endpoint with address ``ip``."""
        names: set[tuple[str, str, str]] = set()
        for endpoint_slice in self.slices.by_index(SLICES_BY_ADDRESS, ip):
            keys = index_slice_by_service(endpoint_slice)
            if not keys:
                continue
            namespace, _, service = keys[0].partition("/")
            for endpoint, address in _ready_endpoints(endpoint_slice):
                if address == ip:
                    names.add(((endpoint.get("hostname") or dashed(ip)).lower(), namespace,
                               service))
        return sorted(names)


def informer_view(informers: InformerFactory) -> tuple[ClusterView, list[SharedInformer]]:
    """A view fed by shared informers (Namespaces metadata-only: only their names matter)."""
    services = informers.informer("v1", "services")
    slices = informers.informer("discovery.k8s.io/v1", "endpointslices")
    namespaces = informers.informer("v1", "namespaces", metadata_only=True)
    view = ClusterView(services.indexer, slices.indexer, namespaces.indexer)
    for informer in (services, slices, namespaces):
        informer.add_event_handler(on_add=view.touch, on_update=view.touch,
                                   on_delete=view.touch)
    return view, [services, slices, namespaces]
