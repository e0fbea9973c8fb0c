"""What the proxy programs, read from Service and EndpointSlice dicts: one ``ServicePort`` per
(service, port, IP family) with the endpoints it may use, like kube-proxy's ServicePortMap and
EndpointsMap (``pkg/proxy/serviceport.go``, ``endpointslicecache.go``, ``topology.go``).

Everything here is pure: the same objects give the same answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Object = Mapping[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_STICKY_SECONDS = 10800  # upstream's default sessionAffinityConfig.clientIP.timeoutSeconds


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    """One port of one service in one IP family (``family`` is 4 or 6)."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    port: int
    family: int
    cluster_ip: str
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    session_affinity_seconds: int = 0  # 0: no ClientIP affinity
    internal_local: bool = False
    external_local: bool = False
    endpoints: tuple[Endpoint, ...] = field(default=(), compare=True)

    @property
    def key(self) -> str:
        """``ns/name:port`` as kube-proxy names a ServicePortName."""
        return f"{self.namespace}/{self.name}:{self.port_name}"

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_local or (self.externally_accessible and not self.external_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.externally_accessible and self.external_local)


@dataclass(frozen=True)
class Categorized:
    """The endpoints a service port may use from this node (CategorizeEndpoints)."""

    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    any_usable: bool

    @property
    def reachable(self) -> tuple[Endpoint, ...]:
        seen = {str(e): e for e in (*self.cluster, *self.local)}
        return tuple(sorted(seen.values(), key=_endpoint_order))


def _endpoint_order(ep: Endpoint) -> tuple[bytes, int]:
    return ipaddress.ip_address(ep.ip).packed, ep.port


def categorize(sp: ServicePort, node_name: str) -> Categorized:
    """Ready endpoints; serving-terminating ones when none is ready (independently for the
    cluster-wide and the local set), as upstream's CategorizeEndpoints without topology hints."""
    eps = sp.endpoints
    any_usable = any(e.ready or (e.serving and e.terminating) for e in eps)

    def usable(candidates: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
        candidates = list(candidates)
        ready = [e for e in candidates if e.ready]
        chosen = ready or [e for e in candidates if e.serving and e.terminating]
        return tuple(sorted(chosen, key=_endpoint_order))

    # Cluster endpoints are computed even when no policy is Cluster: pod and node traffic to an
    # external address short-circuits to them (it never left the cluster).
    cluster = usable(eps)
    local = usable(e for e in eps if e.node_name and e.node_name == node_name)
    return Categorized(cluster, local, any_usable)


# -- reading the API objects ------------------------------------------------------------------
def _family(ip: str) -> int:
    try:
        return ipaddress.ip_address(ip).version
    except ValueError:
        return 0


def should_skip(service: Object) -> bool:
    """Headless and ExternalName services have nothing to proxy (ShouldSkipService)."""
    spec = service.get("spec") or {}
    return spec.get("type") == "ExternalName" or spec.get("clusterIP") in (None, "", "None")


def _cluster_ips(spec: Object) -> list[str]:
    ips = [ip for ip in spec.get("clusterIPs") or [] if ip and ip != "None"]
    return ips or ([spec["clusterIP"]] if spec.get("clusterIP") else [])


def _affinity_seconds(spec: Object) -> int:
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    return int(config.get("timeoutSeconds") or DEFAULT_STICKY_SECONDS)


def _load_balancer_ips(service: Object) -> list[str]:
    if (service.get("spec") or {}).get("type") != "LoadBalancer":
        return []
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    # ipMode Proxy: the load balancer itself delivers to the node; no VIP to capture.
    return [i["ip"] for i in ingress if i.get("ip") and i.get("ipMode", "VIP") == "VIP"]


def service_ports(service: Object, slices: Iterable[Object]) -> list[ServicePort]:
    """Every (port, family) of ``service`` with its endpoints from ``slices`` (the slices
    labelled with its name)."""
    if should_skip(service):
        return []
    meta, spec = service["metadata"], service.get("spec") or {}
    namespace, name = meta.get("namespace") or "default", meta["name"]
    node_port_type = spec.get("type") in ("NodePort", "LoadBalancer")
    slices = list(slices)
    result = []
    for cluster_ip in _cluster_ips(spec):
        family = _family(cluster_ip)
        if not family:
            continue
        same = lambda ips: tuple(ip for ip in ips if _family(ip) == family)  # noqa: E731
        externals = same(spec.get("externalIPs") or [])
        lb_ips = same(_load_balancer_ips(service))
        for port in spec.get("ports") or []:
            protocol = port.get("protocol") or "TCP"
            if protocol not in PROTOCOLS:
                continue
            sp = ServicePort(
                namespace=namespace, name=name, port_name=port.get("name") or "",
                protocol=protocol, port=int(port["port"]), family=family, cluster_ip=cluster_ip,
                node_port=int(port.get("nodePort") or 0) if node_port_type else 0,
                external_ips=externals, load_balancer_ips=lb_ips,
                session_affinity_seconds=_affinity_seconds(spec),
                internal_local=spec.get("internalTrafficPolicy") == "Local")
            external_local = (spec.get("externalTrafficPolicy") == "Local"
                              and sp.externally_accessible)
            result.append(ServicePort(
                **{**sp.__dict__, "external_local": external_local,
                   "endpoints": endpoints_for(sp, slices)}))
    return result


def endpoints_for(sp: ServicePort, slices: Iterable[Object]) -> tuple[Endpoint, ...]:
    """The endpoints of ``sp`` across the service's slices: slices of its family, the slice
    port of the same name and protocol, an endpoint's first address (as upstream), one entry
    per ip:port (a duplicate across slices counts once, the most available one wins)."""
    wanted = f"IPv{sp.family}"
    found: dict[tuple[str, int], Endpoint] = {}
    for eps in slices:
        if eps.get("addressType") != wanted:
            continue
        port = next((p for p in eps.get("ports") or []
                     if (p.get("name") or "") == sp.port_name
                     and (p.get("protocol") or "TCP") == sp.protocol), None)
        if port is None or not port.get("port"):
            continue
        for ep in eps.get("endpoints") or []:
            addresses = ep.get("addresses") or []
            if not addresses:
                continue
            conditions = ep.get("conditions") or {}
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving")
            endpoint = Endpoint(ip=addresses[0], port=int(port["port"]), ready=ready,
                                serving=ready if serving is None else bool(serving),
                                terminating=bool(conditions.get("terminating")),
                                node_name=ep.get("nodeName") or "")
            key = (endpoint.ip, endpoint.port)
            old = found.get(key)
            if old is None or (endpoint.ready, endpoint.serving) > (old.ready, old.serving):
                found[key] = endpoint
    return tuple(sorted(found.values(), key=_endpoint_order))


def build_service_ports(services: Iterable[Object],
                        slices: Iterable[Object]) -> list[ServicePort]:
    """All service ports of ``services``, endpoints matched through the service-name label."""
    by_service: dict[tuple[str, str], list[Object]] = {}
    for eps in slices:
        meta = eps.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if owner:
            by_service.setdefault((meta.get("namespace") or "default", owner), []).append(eps)
    result = []
    for svc in services:
        meta = svc["metadata"]
        key = (meta.get("namespace") or "default", meta["name"])
        result.extend(service_ports(svc, by_service.get(key, ())))
    result.sort(key=lambda sp: (sp.namespace, sp.name, sp.port_name, sp.protocol, sp.family))
    return result
