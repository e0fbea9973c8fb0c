"""The service load balancer controller: LoadBalancer Services on a cluster without a cloud, as
k3s's ServiceLB and upstream's ``cloud-provider/controllers/service`` do it together.

There is no load balancer to create: every node's service proxy already accepts a
LoadBalancer Service's traffic on the addresses in its status. So ensuring a load balancer
means publishing, in ``status.loadBalancer.ingress``, the addresses of the nodes that may take
its traffic — the Ready, schedulable nodes, or with ``externalTrafficPolicy: Local`` the Ready
nodes that hold a ready endpoint of the Service — the node's ExternalIPs when any such node has
one, else their InternalIPs (k3s's choice), limited to the Service's IP families, sorted.

Services with another ``spec.loadBalancerClass`` belong to another implementation and are left
alone. A Service that stops being a LoadBalancer has its ingress cleared. Node and
EndpointSlice changes re-sync the Services they affect.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sampan.client.controller import Controller, Requeue
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, split_key
from sampan.client.rest import Client
from sampan.controllers.endpointslice import SERVICE_INDEX, index_slice_by_service
from sampan.controllers.nodelifecycle import node_condition
from sampan.controllers.util import meta

log = logging.getLogger(__name__)

Object = dict[str, Any]

LOAD_BALANCER_CLASS = "sampan.io/servicelb"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


# -- what a Service should show ------------------------------------------------------------------


def is_managed(service: Mapping[str, Any]) -> bool:
    """A LoadBalancer Service for us: no class (the cluster default) or ours."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and \
        spec.get("loadBalancerClass") in (None, "", LOAD_BALANCER_CLASS)


def current_ingress(service: Mapping[str, Any]) -> list[Object]:
    return list(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ())


def _node_ready(node: Mapping[str, Any]) -> bool:
    return (node_condition(node, "Ready") or {}).get("status") == "True"


def can_host(node: Mapping[str, Any], *, schedulable: bool = True) -> bool:
    """A node that may take load balancer traffic: Ready, not excluded by label, and (unless
    ``schedulable`` is False) not cordoned."""
    if EXCLUDE_LABEL in (meta(node).get("labels") or {}):
        return False
    if schedulable and (node.get("spec") or {}).get("unschedulable"):
        return False
    return _node_ready(node)


def ready_endpoint_nodes(slices: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of the nodes that hold a ready endpoint in ``slices``."""
    nodes = set()
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or ():
            ready = (endpoint.get("conditions") or {}).get("ready")
            if endpoint.get("nodeName") and ready is not False:
                nodes.add(endpoint["nodeName"])
    return nodes


def hosting_nodes(service: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]],
                  slices: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The nodes that may host ``service``'s load balancer."""
    if (service.get("spec") or {}).get("externalTrafficPolicy") == "Local":
        with_endpoints = ready_endpoint_nodes(slices)
        return [n for n in nodes if meta(n).get("name") in with_endpoints
                and can_host(n, schedulable=False)]
    return [n for n in nodes if can_host(n)]


def _family(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


def ingress_ips(service: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """The addresses to publish: the nodes' ExternalIPs if any has one, else their InternalIPs;
    only of the Service's IP families; sorted numerically, IPv4 first."""
    external: set[str] = set()
    internal: set[str] = set()
    for node in nodes:
        for address in (node.get("status") or {}).get("addresses") or ():
            if address.get("type") == "ExternalIP":
                external.add(address.get("address") or "")
            elif address.get("type") == "InternalIP":
                internal.add(address.get("address") or "")
    families = set((service.get("spec") or {}).get("ipFamilies") or ("IPv4", "IPv6"))
    chosen = [ip for ip in (external or internal) if _family(ip) in families]
    return sorted(chosen, key=lambda ip: (ipaddress.ip_address(ip).version,
                                          int(ipaddress.ip_address(ip))))


def desired_ingress(service: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]],
                    slices: Iterable[Mapping[str, Any]]) -> list[Object]:
    return [{"ip": ip, "ipMode": "VIP"}
            for ip in ingress_ips(service, hosting_nodes(service, nodes, slices))]


def _comparable(ingress: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i.get("ip") or "", i.get("hostname") or "", i.get("ipMode") or "VIP")
            for i in ingress]


def ingress_equal(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]]) -> bool:
    return _comparable(a) == _comparable(b)


def _node_view(node: Mapping[str, Any]) -> tuple:
    """What of a node matters to load balancers."""
    status = node.get("status") or {}
    return (_node_ready(node), bool((node.get("spec") or {}).get("unschedulable")),
            EXCLUDE_LABEL in (meta(node).get("labels") or {}),
            sorted((a.get("type") or "", a.get("address") or "")
                   for a in status.get("addresses") or ()))


# -- the controller ------------------------------------------------------------------------------


class ServiceLBController(Controller):
    """Publishes node addresses as the ingress of LoadBalancer Services."""

    name = "service-lb-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 2,
                 recorder: EventRecorder | None = None):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, "service-controller"))
        self._owns_recorder = recorder is None
        self.services = informers.informer("v1", "services")
        self.nodes = informers.informer("v1", "nodes")
        self.slices = informers.informer("discovery.k8s.io/v1", "endpointslices",
                                         indexers={SERVICE_INDEX: index_slice_by_service})
        self.services.add_event_handler(on_add=self._service_changed,
                                        on_update=self._service_updated,
                                        on_delete=self._service_changed)
        self.nodes.add_event_handler(on_add=lambda _n: self._all_load_balancers(),
                                     on_update=self._node_updated,
                                     on_delete=lambda _n: self._all_load_balancers())
        self.slices.add_event_handler(on_add=self._slice_changed,
                                      on_update=lambda _old, new: self._slice_changed(new),
                                      on_delete=self._slice_changed)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.services, self.nodes, self.slices]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder:
                await self.recorder.close()

    # -- handlers ----------------------------------------------------------------------------
    @staticmethod
    def _relevant(service: Mapping[str, Any]) -> bool:
        return is_managed(service) or bool(current_ingress(service))

    def _service_changed(self, service: Object) -> None:
        if self._relevant(service):
            self.enqueue(service)

    def _service_updated(self, old: Object, new: Object) -> None:
        if self._relevant(new) or self._relevant(old):
            if is_managed(old) != is_managed(new):
                self.recorder.event(new, NORMAL, "Type",
                                    f"{(old.get('spec') or {}).get('type')} -> "
                                    f"{(new.get('spec') or {}).get('type')}")
            self.enqueue(new)

    def _node_updated(self, old: Object, new: Object) -> None:
        if _node_view(old) != _node_view(new):
            self._all_load_balancers()

    def _all_load_balancers(self) -> None:
        for service in self.services.indexer.list():
            if is_managed(service):
                self.enqueue(service)

    def _slice_changed(self, endpoint_slice: Object) -> None:
        for key in index_slice_by_service(endpoint_slice):
            service = self.services.indexer.get(key)
            if service is not None and is_managed(service) and \
                    (service.get("spec") or {}).get("externalTrafficPolicy") == "Local":
                self.queue.add(key)

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        service = self.services.indexer.get(key)
        if service is None or meta(service).get("deletionTimestamp"):
            return
        have = current_ingress(service)
        if is_managed(service):
            want = desired_ingress(service, self.nodes.indexer.list(),
                                   self.slices.indexer.by_index(SERVICE_INDEX, key))
            if ingress_equal(have, want):
                if not want:
                    self.recorder.event(service, WARNING, "UnAvailableLoadBalancer",
                                        "There are no available nodes for LoadBalancer")
                return
            await self._ensure(key, service, have, want)
        elif have and (service.get("spec") or {}).get("type") != "LoadBalancer":
            self.recorder.event(service, NORMAL, "DeletingLoadBalancer", "Deleting load balancer")
            await self._write(key, service, None)
            self.recorder.event(service, NORMAL, "DeletedLoadBalancer", "Deleted load balancer")

    async def _ensure(self, key: str, service: Object, have: list[Object],
                      want: list[Object]) -> None:
        first = not have
        if first:
            self.recorder.event(service, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
        try:
            await self._write(key, service, want)
        except ApiError as e:
            if not (e.conflict or e.not_found):
                self.recorder.event(service, WARNING, "SyncLoadBalancerFailed",
                                    f"Error syncing load balancer: {e.message}")
            raise
        if not want:
            self.recorder.event(service, WARNING, "UnAvailableLoadBalancer",
                                "There are no available nodes for LoadBalancer")
        elif first:
            self.recorder.event(service, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer")
        else:
            self.recorder.event(service, NORMAL, "UpdatedLoadBalancer",
                                "Updated load balancer with new hosts")

    async def _write(self, key: str, service: Object, ingress: list[Object] | None) -> None:
        """Set the status's ingress, guarded by the resourceVersion the decision was made on."""
        namespace, name = split_key(key)
        patch = {"metadata": {"resourceVersion": meta(service).get("resourceVersion")},
                 "status": {"loadBalancer": {"ingress": ingress or None}}}
        try:
            await self.client.patch("v1", "services", name, patch, namespace=namespace,
                                    subresource="status")
        except ApiError as e:
            if e.not_found:
                return
            if e.conflict:  # the cache trails the Service: decide again on the newer one
                raise Requeue(f"Service {key} changed: {e.message}") from e
            raise
        log.info("load balancer of %s: %s", key, [i["ip"] for i in ingress or ()])


__all__ = ["LOAD_BALANCER_CLASS", "ServiceLBController", "can_host", "desired_ingress",
           "hosting_nodes", "ingress_ips", "is_managed", "ready_endpoint_nodes"]
