"""The EndpointSlice controller: the endpoints of each selecting Service as
``discovery.k8s.io/v1`` EndpointSlices, as upstream's ``pkg/controller/endpointslice`` and the
``k8s.io/endpointslice`` reconciler.

Endpoints are grouped by address type (IPv4 / IPv6, from the Service's IP families) and by the
ports they serve; each group is spread over slices of at most ``max_endpoints_per_slice``.
Churn is kept low as upstream does: an endpoint that changed is rewritten in the slice it is in,
a slice that would be emptied is reused for new endpoints instead of deleted and recreated, and
leftover endpoints go to the slice they fill best. A Service with no endpoints gets one empty
placeholder slice. Slices are owned by their Service, so the garbage collector removes them with it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.client.controller import Controller, Requeue
from sampan.client.errors import ApiError
from sampan.client.events import WARNING, EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, split_key
from sampan.client.rest import Client
from sampan.controllers.endpoints import (
    HEADLESS_LABEL,
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
    POD_LABEL_INDEX,
    find_port,
    format_trigger_time,
    index_pod_by_label,
    is_ipv6,
    is_service_ip_set,
    pod_ips,
    pods_for_service,
    serves_endpoints,
    services_of_pod,
    services_of_pod_update,
    should_pod_be_in_endpoints,
    should_set_hostname,
    TriggerTimeTracker,
)
from sampan.controllers.util import is_pod_ready, meta

log = logging.getLogger(__name__)

Object = dict[str, Any]

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
SLICE_CHANGE_MIN_SYNC_DELAY = 1.0
SERVICE_INDEX = "service"
_RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, HEADLESS_LABEL)

PortKey = tuple[tuple[str, int, str, str], ...]
EndpointKey = tuple[tuple[str, ...], str, str, str]


def index_slice_by_service(endpoint_slice: Object) -> list[str]:
    slice_meta = meta(endpoint_slice)
    service = (slice_meta.get("labels") or {}).get(LABEL_SERVICE_NAME)
    return [f"{slice_meta.get('namespace') or ''}/{service}"] if service else []


# -- desired state -------------------------------------------------------------------------------


def address_types(service: Mapping[str, Any]) -> list[str]:
    """The address types a Service's slices carry (``getAddressTypesForService``)."""
    spec = service.get("spec") or {}
    families = spec.get("ipFamilies") or []
    types = [f for f in ("IPv4", "IPv6") if f in families]
    if types:
        return types
    if is_service_ip_set(service):
        return ["IPv6" if is_ipv6(spec["clusterIP"]) else "IPv4"]
    return ["IPv4", "IPv6"]


def endpoint_ports(service: Mapping[str, Any], pod: Mapping[str, Any]) -> list[Object]:
    spec = service.get("spec") or {}
    ports = []
    for service_port in spec.get("ports") or ():
        number = find_port(pod, service_port)
        if number is None:
            continue
        port: Object = {"name": service_port.get("name") or "", "port": number,
                        "protocol": service_port.get("protocol") or "TCP"}
        if service_port.get("appProtocol"):
            port["appProtocol"] = service_port["appProtocol"]
        ports.append(port)
    return ports


def port_key(ports: Iterable[Mapping[str, Any]] | None) -> PortKey:
    return tuple(sorted((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in ports or ()))


def pod_to_endpoint(pod: Mapping[str, Any], node: Mapping[str, Any] | None,
                    service: Mapping[str, Any], address_type: str) -> Object:
    serving = is_pod_ready(pod)
    terminating = bool(meta(pod).get("deletionTimestamp"))
    ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses")) or (
        serving and not terminating)
    pod_meta = meta(pod)
    endpoint: Object = {
        "addresses": [ip for ip in pod_ips(pod) if is_ipv6(ip) == (address_type == "IPv6")],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": pod_meta.get("namespace"),
                      "name": pod_meta.get("name"), "uid": pod_meta.get("uid")},
    }
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        endpoint["nodeName"] = node_name
    zone = (meta(node).get("labels") or {}).get(ZONE_LABEL) if node else None
    if zone:
        endpoint["zone"] = zone
    if should_set_hostname(pod, service):
        endpoint["hostname"] = pod["spec"]["hostname"]
    return endpoint


def endpoint_key(endpoint: Mapping[str, Any]) -> EndpointKey:
    """What identifies an endpoint across syncs (``hashEndpoint``): addresses, hostname and the
    pod it stands for; conditions and topology may change in place."""
    ref = endpoint.get("targetRef") or {}
    return (tuple(sorted(endpoint.get("addresses") or ())), endpoint.get("hostname") or "",
            ref.get("namespace") or "", ref.get("name") or "")


def _comparable(endpoint: Mapping[str, Any]) -> tuple:
    conditions = endpoint.get("conditions") or {}
    ref = {k: v for k, v in (endpoint.get("targetRef") or {}).items()
           if k != "resourceVersion" and v not in (None, "")}
    return (endpoint.get("nodeName"), endpoint.get("zone"), conditions.get("ready"),
            conditions.get("serving"), conditions.get("terminating"), sorted(ref.items()))


def endpoints_equal_beyond_key(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return _comparable(a) == _comparable(b)


def slice_labels(service: Mapping[str, Any],
                 controller_name: str = CONTROLLER_NAME) -> dict[str, str]:
    labels = {k: v for k, v in (meta(service).get("labels") or {}).items()
              if k not in _RESERVED_LABELS}
    if not is_service_ip_set(service):
        labels[HEADLESS_LABEL] = ""
    labels[LABEL_SERVICE_NAME] = meta(service)["name"]
    labels[LABEL_MANAGED_BY] = controller_name
    return labels


def _labels_changed(endpoint_slice: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    have = {k: v for k, v in (meta(endpoint_slice).get("labels") or {}).items()
            if k not in _RESERVED_LABELS}
    want = {k: v for k, v in (meta(service).get("labels") or {}).items()
            if k not in _RESERVED_LABELS}
    return have != want


def slice_prefix(service_name: str) -> str:
    prefix = f"{service_name}-"
    return prefix if len(prefix) <= 253 else service_name


def new_slice(service: Mapping[str, Any], ports: list[Object], address_type: str,
              controller_name: str = CONTROLLER_NAME) -> Object:
    service_meta = meta(service)
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "generateName": slice_prefix(service_meta["name"]),
            "namespace": service_meta.get("namespace"),
            "labels": slice_labels(service, controller_name),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                 "name": service_meta["name"], "uid": service_meta.get("uid"),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "addressType": address_type,
        "endpoints": [],
        "ports": copy.deepcopy(ports),
    }


def owned_by(endpoint_slice: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    uid = meta(service).get("uid")
    return any(ref.get("uid") == uid and ref.get("kind") == "Service"
               and ref.get("apiVersion") == "v1"
               for ref in meta(endpoint_slice).get("ownerReferences") or ())


def _is_placeholder_of(endpoint_slice: Mapping[str, Any], placeholder: Mapping[str, Any]) -> bool:
    return (meta(endpoint_slice).get("namespace") == meta(placeholder).get("namespace")
            and (meta(endpoint_slice).get("labels") or {}) == meta(placeholder)["labels"]
            and endpoint_slice.get("addressType") == placeholder["addressType"]
            and not endpoint_slice.get("endpoints") and not endpoint_slice.get("ports")
            and [r.get("uid") for r in meta(endpoint_slice).get("ownerReferences") or ()]
            == [r.get("uid") for r in meta(placeholder)["ownerReferences"]])


@dataclass
class SlicePlan:
    """The writes that bring a Service's slices to the desired state."""

    create: list[Object] = field(default_factory=list)
    update: list[Object] = field(default_factory=list)
    delete: list[Object] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


NodeLookup = Callable[[str], Mapping[str, Any] | None]


def plan_slices(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
                existing: Iterable[Object], node_lookup: NodeLookup, *,
                max_endpoints: int = MAX_ENDPOINTS_PER_SLICE,
                controller_name: str = CONTROLLER_NAME) -> SlicePlan:
    """What to create, update and delete (``Reconciler.Reconcile``); existing slices are never
    changed in place (they may be informer cache objects)."""
    pods = list(pods)
    supported = address_types(service)
    plan = SlicePlan()
    by_type: dict[str, list[Object]] = {}
    for endpoint_slice in existing:
        if endpoint_slice.get("addressType") not in supported:
            plan.delete.append(endpoint_slice)
        else:
            by_type.setdefault(endpoint_slice["addressType"], []).append(endpoint_slice)
    for address_type in supported:
        _plan_address_type(plan, service, pods, by_type.get(address_type, []), node_lookup,
                           address_type, max_endpoints, controller_name)
    return plan


def _plan_address_type(plan: SlicePlan, service: Mapping[str, Any], pods: list[Mapping[str, Any]],
                       existing: list[Object], node_lookup: NodeLookup, address_type: str,
                       max_endpoints: int, controller_name: str) -> None:
    to_create: list[Object] = []
    to_update: list[Object] = []
    to_delete: list[Object] = []
    existing_by_ports: dict[PortKey, list[Object]] = {}
    for endpoint_slice in existing:
        if owned_by(endpoint_slice, service):
            key = port_key(endpoint_slice.get("ports"))
            existing_by_ports.setdefault(key, []).append(endpoint_slice)
        else:
            to_delete.append(endpoint_slice)

    desired: dict[PortKey, dict[EndpointKey, Object]] = {}
    desired_ports: dict[PortKey, list[Object]] = {}
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(service, pod)
        key = port_key(ports)
        endpoints = desired.setdefault(key, {})
        desired_ports.setdefault(key, ports)
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = node_lookup(node_name) if node_name else None
        if node_name and node is None and not publish_not_ready:
            plan.errors.append(f"skipping Pod {meta(pod).get('name')} for Service "
                               f"{meta(service).get('namespace')}/{meta(service).get('name')}: "
                               f"Node {node_name} Not Found")
            continue
        endpoint = pod_to_endpoint(pod, node, service, address_type)
        if endpoint["addresses"]:
            endpoints[endpoint_key(endpoint)] = endpoint

    for key, endpoints in desired.items():
        created, updated, deleted = _plan_port_mapping(
            service, existing_by_ports.get(key, []), endpoints, desired_ports[key], address_type,
            max_endpoints, controller_name)
        to_create += created
        to_update += updated
        to_delete += deleted
    for key, slices in existing_by_ports.items():
        if key not in desired:
            to_delete += slices

    if len(existing) == len(to_delete) and not to_create:
        placeholder = new_slice(service, [], address_type, controller_name)
        if len(to_delete) == 1 and _is_placeholder_of(to_delete[0], placeholder):
            to_delete = []
        else:
            to_create.append(placeholder)

    # Reuse slices that would be deleted for slices that would be created.
    reusable = [s for s in to_delete if owned_by(s, service)
                and s.get("addressType") == address_type]
    while to_create and reusable:
        old = reusable.pop()
        to_delete.remove(old)
        fresh = to_create.pop()
        fresh["metadata"] = {**copy.deepcopy(meta(old)), "labels": fresh["metadata"]["labels"],
                             "ownerReferences": fresh["metadata"]["ownerReferences"]}
        to_update.append(fresh)
    plan.create += to_create
    plan.update += to_update
    plan.delete += to_delete


def _plan_port_mapping(service: Mapping[str, Any], existing: list[Object],
                       desired: dict[EndpointKey, Object], ports: list[Object], address_type: str,
                       max_endpoints: int, controller_name: str
                       ) -> tuple[list[Object], list[Object], list[Object]]:
    """``reconcileByPortMapping``: keep desired endpoints where they are, drop the others,
    then fill the slices already being rewritten, then the unchanged slice that the rest fills
    best, then new slices."""
    by_name: dict[str, Object] = {}
    unchanged: list[str] = []
    updating: list[str] = []
    deleting: list[str] = []
    for endpoint_slice in existing:
        name = meta(endpoint_slice)["name"]
        by_name[name] = endpoint_slice
        kept = []
        changed = False
        for endpoint in endpoint_slice.get("endpoints") or ():
            want = desired.pop(endpoint_key(endpoint), None)
            if want is not None:
                kept.append(want)
                changed |= not endpoints_equal_beyond_key(want, endpoint)
        labels_changed = _labels_changed(endpoint_slice, service)
        if changed or len(kept) != len(endpoint_slice.get("endpoints") or ()):
            if not kept:
                deleting.append(name)
                continue
            by_name[name] = _rewritten(endpoint_slice, service, kept, controller_name)
            updating.append(name)
        elif labels_changed:
            same = list(endpoint_slice.get("endpoints") or ())
            by_name[name] = _rewritten(endpoint_slice, service, same, controller_name)
            updating.append(name)
        else:
            unchanged.append(name)

    remaining = list(desired.values())
    if remaining and updating:
        for name in sorted(updating, key=lambda n: -len(by_name[n]["endpoints"])):
            target = by_name[name]
            room = max_endpoints - len(target["endpoints"])
            if room > 0:
                target["endpoints"] += remaining[:room]
                remaining = remaining[room:]

    to_create: list[Object] = []
    while remaining:
        target = None
        if len(remaining) < max_endpoints and unchanged:
            target_name = _slice_to_fill([by_name[n] for n in unchanged], len(remaining),
                                         max_endpoints)
            if target_name is not None:
                held = list(by_name[target_name].get("endpoints") or ())
                target = _rewritten(by_name[target_name], service, held, controller_name)
                by_name[target_name] = target
                unchanged.remove(target_name)
                updating.append(target_name)
        if target is None:
            target = new_slice(service, ports, address_type, controller_name)
            to_create.append(target)
        room = max_endpoints - len(target["endpoints"])
        target["endpoints"] += remaining[:room]
        remaining = remaining[room:]
    return to_create, [by_name[n] for n in updating], [by_name[n] for n in deleting]


def _rewritten(endpoint_slice: Object, service: Mapping[str, Any], endpoints: list[Object],
               controller_name: str) -> Object:
    fresh = {**endpoint_slice, "metadata": {**meta(endpoint_slice),
                                            "labels": slice_labels(service, controller_name)}}
    fresh["endpoints"] = endpoints
    return fresh


def _slice_to_fill(slices: list[Object], count: int, max_endpoints: int) -> str | None:
    """The slice closest to full once ``count`` endpoints are added (``getSliceToFill``)."""
    best, best_gap = None, max_endpoints
    for endpoint_slice in slices:
        gap = max_endpoints - (count + len(endpoint_slice.get("endpoints") or ()))
        if 0 <= gap < best_gap:
            best, best_gap = meta(endpoint_slice)["name"], gap
            if gap == 0:
                break
    return best


# -- what this controller has written ------------------------------------------------------------


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(meta(obj).get("resourceVersion") or 0)
    except ValueError:
        return 0


_DELETION_EXPECTED = -1


class SliceTracker:
    """The resourceVersion of every slice this controller wrote, by Service (upstream's
    ``EndpointSliceTracker``): the cache is stale while it shows an older version, misses a
    slice we created or still has one we deleted."""

    def __init__(self) -> None:
        self._by_service: dict[str, dict[str, int]] = {}

    def written(self, service_key: str, endpoint_slice: Mapping[str, Any]) -> None:
        versions = self._by_service.setdefault(service_key, {})
        versions[meta(endpoint_slice)["uid"]] = _rv(endpoint_slice)

    def deleting(self, service_key: str, endpoint_slice: Mapping[str, Any]) -> None:
        versions = self._by_service.setdefault(service_key, {})
        versions[meta(endpoint_slice)["uid"]] = _DELETION_EXPECTED

    def should_sync(self, service_key: str, endpoint_slice: Mapping[str, Any]) -> bool:
        """A slice changed by someone else (or never seen) needs its Service synced."""
        seen = self._by_service.get(service_key, {}).get(meta(endpoint_slice).get("uid"))
        return seen is None or _rv(endpoint_slice) > seen

    def deleted(self, service_key: str, endpoint_slice: Mapping[str, Any]) -> bool:
        """Forget a deleted slice; whether we deleted it ourselves."""
        versions = self._by_service.get(service_key, {})
        return versions.pop(meta(endpoint_slice).get("uid"), None) == _DELETION_EXPECTED

    def stale(self, service_key: str, slices: Iterable[Mapping[str, Any]]) -> bool:
        versions = self._by_service.get(service_key)
        if not versions:
            return False
        provided = set()
        for endpoint_slice in slices:
            uid = meta(endpoint_slice).get("uid")
            provided.add(uid)
            seen = versions.get(uid)
            if seen is not None and (seen == _DELETION_EXPECTED or seen > _rv(endpoint_slice)):
                return True
        return any(v != _DELETION_EXPECTED and uid not in provided for uid, v in versions.items())

    def forget(self, service_key: str) -> None:
        self._by_service.pop(service_key, None)


# -- the controller ------------------------------------------------------------------------------


class EndpointSliceController(Controller):
    """Keeps the EndpointSlices of every selecting Service."""

    name = "endpointslice-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 5,
                 recorder: EventRecorder | None = None,
                 max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self._owns_recorder = recorder is None
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.services = informers.informer("v1", "services")
        self.pods = informers.informer("v1", "pods", indexers={POD_LABEL_INDEX: index_pod_by_label})
        self.slices = informers.informer("discovery.k8s.io/v1", "endpointslices",
                                         indexers={SERVICE_INDEX: index_slice_by_service})
        self.nodes = informers.informer("v1", "nodes")
        self.services.add_event_handler(on_add=self.enqueue,
                                        on_update=lambda _old, new: self.enqueue(new),
                                        on_delete=self.enqueue)
        self.pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                    on_delete=self._pod_added)
        self.slices.add_event_handler(on_add=self._slice_added, on_update=self._slice_updated,
                                      on_delete=self._slice_deleted)
        self.tracker = SliceTracker()
        self.trigger_times = TriggerTimeTracker()

    def watched_informers(self) -> list[SharedInformer]:
        return [self.services, self.pods, self.slices, self.nodes]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder:
                await self.recorder.close()

    # -- handlers ----------------------------------------------------------------------------
    def _pod_added(self, pod: Object) -> None:
        for key in services_of_pod(self.services, pod):
            self.queue.add(key)

    def _pod_updated(self, old: Object, new: Object) -> None:
        for key in services_of_pod_update(self.services, old, new):
            self.queue.add(key)

    @staticmethod
    def _service_key(endpoint_slice: Mapping[str, Any]) -> str | None:
        service = (meta(endpoint_slice).get("labels") or {}).get(LABEL_SERVICE_NAME)
        return f"{meta(endpoint_slice).get('namespace')}/{service}" if service else None

    @staticmethod
    def _managed(endpoint_slice: Mapping[str, Any]) -> bool:
        return (meta(endpoint_slice).get("labels") or {}).get(LABEL_MANAGED_BY) == CONTROLLER_NAME

    def _queue_for_slice(self, endpoint_slice: Mapping[str, Any]) -> None:
        key = self._service_key(endpoint_slice)
        if key:
            self.queue.add_after(key, SLICE_CHANGE_MIN_SYNC_DELAY)

    def _slice_added(self, endpoint_slice: Object) -> None:
        key = self._service_key(endpoint_slice)
        if key and self._managed(endpoint_slice) and self.tracker.should_sync(key, endpoint_slice):
            self._queue_for_slice(endpoint_slice)

    def _slice_updated(self, old: Object, new: Object) -> None:
        key = self._service_key(new)
        if key != self._service_key(old):
            self._queue_for_slice(new)
            self._queue_for_slice(old)
            return
        if self._managed(old) != self._managed(new) or (
                key and self._managed(new) and self.tracker.should_sync(key, new)):
            self._queue_for_slice(new)

    def _slice_deleted(self, endpoint_slice: Object) -> None:
        key = self._service_key(endpoint_slice)
        if key and self._managed(endpoint_slice) and not self.tracker.deleted(key, endpoint_slice):
            self._queue_for_slice(endpoint_slice)

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        service = self.services.indexer.get(key)
        if service is None:
            self.trigger_times.forget(key)
            self.tracker.forget(key)
            return  # the garbage collector deletes the slices the Service owned
        if not serves_endpoints(service):
            return
        pods = pods_for_service(self.pods, service)
        slices = [s for s in self.slices.indexer.by_index(SERVICE_INDEX, key)
                  if self._managed(s) and not meta(s).get("deletionTimestamp")]
        if self.tracker.stale(key, slices):
            raise Requeue(f"EndpointSlice informer cache is out of date for {key}")
        trigger_time = self.trigger_times.compute(key, service, pods)
        plan = plan_slices(service, pods, slices, self.nodes.indexer.get,
                           max_endpoints=self.max_endpoints_per_slice)
        try:
            await self._apply(key, service, plan, trigger_time)
        except ApiError as e:
            if e.conflict or e.not_found:  # the cache trails: look again once it caught up
                raise Requeue(f"EndpointSlices of {key} changed: {e.message}") from e
            self.recorder.event(service, WARNING, "FailedToUpdateEndpointSlices",
                                f"Error updating Endpoint Slices for Service {key}: "
                                f"{e.message}")
            raise
        if plan.errors:
            raise Requeue("; ".join(plan.errors))

    async def _apply(self, key: str, service: Object, plan: SlicePlan,
                     trigger_time: float | None) -> None:
        namespace, _ = split_key(key)
        if not meta(service).get("deletionTimestamp"):
            for endpoint_slice in plan.create:
                _set_trigger_time(endpoint_slice, trigger_time)
                try:
                    created = await self.client.create("discovery.k8s.io/v1", "endpointslices",
                                                       endpoint_slice, namespace=namespace)
                except ApiError as e:
                    if e.code == 403 and any(c.get("reason") == "NamespaceTerminating"
                                             for c in e.details.get("causes") or ()):
                        return
                    raise
                self.tracker.written(key, created)
        for endpoint_slice in plan.update:
            _set_trigger_time(endpoint_slice, trigger_time)
            updated = await self.client.update("discovery.k8s.io/v1", "endpointslices",
                                               endpoint_slice, namespace=namespace)
            self.tracker.written(key, updated)
        for endpoint_slice in plan.delete:
            try:
                await self.client.delete("discovery.k8s.io/v1", "endpointslices",
                                         meta(endpoint_slice)["name"], namespace=namespace)
            except ApiError as e:
                if not e.not_found:
                    raise
                continue
            self.tracker.deleting(key, endpoint_slice)


def _set_trigger_time(endpoint_slice: Object, trigger_time: float | None) -> None:
    slice_meta = endpoint_slice.setdefault("metadata", {})
    annotations = dict(slice_meta.get("annotations") or {})
    if trigger_time:
        annotations[LAST_CHANGE_TRIGGER_TIME_ANNOTATION] = format_trigger_time(trigger_time)
    else:
        annotations.pop(LAST_CHANGE_TRIGGER_TIME_ANNOTATION, None)
    slice_meta["annotations"] = annotations

