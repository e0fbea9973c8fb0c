"""The endpoints controller: an Endpoints object per selecting Service, listing the addresses of
the pods the Service selects, as upstream's ``pkg/controller/endpoint``.

Ready pods go into ``addresses``, the others into ``notReadyAddresses`` (all of them into
``addresses`` when the Service publishes not-ready addresses). Addresses are grouped into
subsets by the ports they serve — a named ``targetPort`` is resolved per pod, so pods that
number a port differently land in different subsets. Services without a selector keep the
Endpoints their users write; ``default/kubernetes`` belongs to the API server.

Also here: what the EndpointSlice controller shares with this one — which pods belong in
endpoints, port resolution, the pod → Services lookup through a label index, and the
``last-change-trigger-time`` tracker.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from sampan.api.selectors import LabelSelector, selector_from_set
from sampan.client.controller import Controller, Requeue, wait_for_cache_sync
from sampan.client.errors import ApiError
from sampan.client.events import WARNING, EventRecorder
from sampan.client.informer import (
    NAMESPACE_INDEX,
    InformerFactory,
    SharedInformer,
    object_key,
    split_key,
)
from sampan.client.rest import Client
from sampan.controllers.util import is_pod_ready, meta, parse_time, pod_phase

log = logging.getLogger(__name__)

Object = dict[str, Any]

MAX_CAPACITY = 1000
TRUNCATED = "truncated"
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
LAST_CHANGE_TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
API_SERVER_ENDPOINTS = "default/kubernetes"
POD_LABEL_INDEX = "namespace-label"

# A headless Service may have no ports; its addresses are grouped under this sentinel.
_NO_PORT: tuple[str, int, str, str | None] = ("", -1, "", None)


# -- pods and services (shared with the EndpointSlice controller) ------------------------------


def index_pod_by_label(pod: Object) -> list[str]:
    """``namespace/key=value`` for every label: a Service's selector finds its candidate pods
    through the rarest of its pairs instead of scanning the namespace."""
    pod_meta = meta(pod)
    namespace = pod_meta.get("namespace") or ""
    return [f"{namespace}/{k}={v}" for k, v in (pod_meta.get("labels") or {}).items()]


def service_selector(service: Mapping[str, Any]) -> LabelSelector | None:
    """The Service's selector, or None when it has none (its endpoints are the user's)."""
    selector = (service.get("spec") or {}).get("selector")
    if selector is None:
        return None
    return selector_from_set(selector)


def serves_endpoints(service: Mapping[str, Any]) -> bool:
    spec = service.get("spec") or {}
    return spec.get("type") != "ExternalName" and spec.get("selector") is not None


def pods_for_service(pods: SharedInformer, service: Mapping[str, Any]) -> list[Object]:
    """The pods the Service selects, from the label index (sorted by key for stable output)."""
    namespace = meta(service).get("namespace") or ""
    selector_map = (service.get("spec") or {}).get("selector")
    if selector_map is None:
        return []
    if not selector_map:
        candidates = pods.indexer.by_index(NAMESPACE_INDEX, namespace)
    else:
        keys = min((pods.indexer.index_keys(POD_LABEL_INDEX, f"{namespace}/{k}={v}")
                    for k, v in selector_map.items()), key=len)
        candidates = [p for p in (pods.indexer.get(k) for k in keys) if p is not None]
    selector = selector_from_set(selector_map)
    return [p for p in candidates if selector.matches(meta(p).get("labels"))]


def services_for_labels(services: SharedInformer, namespace: str,
                        labels: Mapping[str, str] | None) -> set[str]:
    """Keys of the Services in ``namespace`` whose selector matches ``labels``."""
    keys = set()
    for service in services.indexer.by_index(NAMESPACE_INDEX, namespace):
        selector = service_selector(service)
        if selector is not None and selector.matches(labels):
            keys.add(object_key(service))
    return keys


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    ips = [entry.get("ip") for entry in status.get("podIPs") or () if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return ":" in ip


def should_pod_be_in_endpoints(pod: Mapping[str, Any], include_terminating: bool) -> bool:
    """Not finished, has an IP, and (unless asked) not being deleted
    (``ShouldPodBeInEndpoints``)."""
    if pod_phase(pod) in ("Succeeded", "Failed"):
        return False
    if not pod_ips(pod):
        return False
    return include_terminating or not meta(pod).get("deletionTimestamp")


def should_set_hostname(pod: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == meta(service).get("name") \
        and meta(service).get("namespace") == meta(pod).get("namespace")


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The container port a Service port leads to in ``pod`` (``FindPort``): a numeric
    targetPort as is, a named one looked up among the pod's (and sidecars') container ports."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    if not target:
        return service_port.get("port")
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or ()), *sidecars]:
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def is_service_ip_set(service: Mapping[str, Any]) -> bool:
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    return bool(cluster_ip) and cluster_ip != "None"


def pod_endpoints_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[bool, bool]:
    """(the pod's endpoint changed, the Services it matches may have changed)."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    labels_changed = (meta(old).get("labels") != meta(new).get("labels")
                      or old_spec.get("hostname") != new_spec.get("hostname")
                      or old_spec.get("subdomain") != new_spec.get("subdomain"))
    pod_changed = (meta(old).get("deletionTimestamp") != meta(new).get("deletionTimestamp")
                   or is_pod_ready(old) != is_pod_ready(new)
                   or pod_ips(old) != pod_ips(new)
                   or pod_phase(old) != pod_phase(new)
                   or old_spec.get("nodeName") != new_spec.get("nodeName"))
    return pod_changed, labels_changed


def services_of_pod(services: SharedInformer, pod: Mapping[str, Any]) -> set[str]:
    """Keys of the Services whose endpoints a new (or deleted) pod may change."""
    pod_meta = meta(pod)
    return services_for_labels(services, pod_meta.get("namespace") or "", pod_meta.get("labels"))


def services_of_pod_update(services: SharedInformer, old: Mapping[str, Any],
                           new: Mapping[str, Any]) -> set[str]:
    """Keys of the Services a pod update concerns: those it matches when its endpoint changed,
    and those it joined or left when its labels changed (upstream's getPodServiceMemberships
    with podEndpointsChanged)."""
    if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
        return set()
    pod_changed, labels_changed = pod_endpoints_changed(old, new)
    if not pod_changed and not labels_changed:
        return set()
    namespace = meta(new).get("namespace") or ""
    keys = services_for_labels(services, namespace, meta(new).get("labels"))
    if labels_changed:
        old_keys = services_for_labels(services, namespace, meta(old).get("labels"))
        keys = keys | old_keys if pod_changed else keys ^ old_keys
    return keys


def format_trigger_time(moment: float) -> str:
    """RFC 3339 with nanoseconds, trailing zeros dropped (Go's ``time.RFC3339Nano``)."""
    when = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


class TriggerTimeTracker:
    """Computes ``endpoints.kubernetes.io/last-change-trigger-time``: the earliest change (a pod's
    Ready transition, the Service's creation) not yet reflected by a previous sync."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[float, dict[str, float]]] = {}

    def compute(self, key: str, service: Mapping[str, Any],
                pods: Iterable[Mapping[str, Any]]) -> float | None:
        known = self._states.get(key)
        last_service, last_pods = known if known is not None else (0.0, {})
        earliest: float | None = None
        pod_times: dict[str, float] = {}
        for pod in pods:
            ready = next((c for c in (pod.get("status") or {}).get("conditions") or ()
                          if c.get("type") == "Ready"), None)
            moment = parse_time(ready.get("lastTransitionTime")) if ready else None
            if moment is None:
                continue
            name = meta(pod).get("name", "")
            pod_times[name] = moment
            if moment > last_pods.get(name, 0.0):
                earliest = moment if earliest is None else min(earliest, moment)
        service_time = parse_time(meta(service).get("creationTimestamp")) or 0.0
        if service_time > last_service:
            earliest = service_time if earliest is None else min(earliest, service_time)
        self._states[key] = (service_time, pod_times)
        if known is None:
            return service_time or None
        return earliest

    def forget(self, key: str) -> None:
        self._states.pop(key, None)


# -- subsets -------------------------------------------------------------------------------------


def endpoint_address(service: Mapping[str, Any], pod: Mapping[str, Any]) -> Object | None:
    """The pod's address in the Service's IP family (``podToEndpointAddressForService``)."""
    spec = service.get("spec") or {}
    families = spec.get("ipFamilies") or []
    if families:
        want_v6 = families[0] == "IPv6"
    elif is_service_ip_set(service):
        want_v6 = is_ipv6(spec["clusterIP"])
    else:
        want_v6 = is_ipv6((pod.get("status") or {}).get("podIP") or "")
    ip = next((ip for ip in pod_ips(pod) if is_ipv6(ip) == want_v6), None)
    if ip is None:
        return None
    pod_meta = meta(pod)
    target = {"kind": "Pod", "namespace": pod_meta.get("namespace"), "name": pod_meta.get("name"),
              "uid": pod_meta.get("uid")}
    address: Object = {"ip": ip, "targetRef": target}
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        address["nodeName"] = node_name
    if should_set_hostname(pod, service):
        address["hostname"] = pod["spec"]["hostname"]
    return address


def endpoint_port(service_port: Mapping[str, Any], number: int) -> Object:
    port: Object = {"port": number, "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _port_key(port: Mapping[str, Any]) -> tuple[str, int, str, str | None]:
    return (port.get("name") or "", port.get("port", -1), port.get("protocol") or "TCP",
            port.get("appProtocol"))


def _port_from_key(key: tuple[str, int, str, str | None]) -> Object:
    name, number, protocol, app_protocol = key
    port: Object = {"port": number, "protocol": protocol}
    if name:
        port["name"] = name
    if app_protocol:
        port["appProtocol"] = app_protocol
    return port


def _address_key(address: Mapping[str, Any]) -> tuple[str, str]:
    return (address.get("ip", ""), (address.get("targetRef") or {}).get("uid") or "")


def desired_subsets(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[Object]:
    """The Endpoints subsets for ``service`` selecting ``pods``, in canonical (repacked) form."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    # (address key → address), and per port: address key → ready (not-ready wins)
    addresses: dict[tuple[str, str], Object] = {}
    by_port: dict[tuple[str, int, str, str | None], dict[tuple[str, str], bool]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish_not_ready):
            continue
        address = endpoint_address(service, pod)
        if address is None:
            continue
        ready = publish_not_ready or is_pod_ready(pod)
        key = _address_key(address)
        addresses.setdefault(key, address)
        if not service_ports:
            if headless:
                _add(by_port, _NO_PORT, key, ready)
            continue
        for service_port in service_ports:
            number = find_port(pod, service_port)
            if number is None:
                continue
            _add(by_port, _port_key(endpoint_port(service_port, number)), key, ready)
    return _repack(addresses, by_port)


def _add(by_port: dict, port: tuple, key: tuple[str, str], ready: bool) -> None:
    seen = by_port.setdefault(port, {})
    if seen.get(key, True):
        seen[key] = ready


def _repack(addresses: Mapping[tuple[str, str], Object],
            by_port: Mapping[tuple, Mapping[tuple[str, str], bool]]) -> list[Object]:
    """Group ports that are offered by exactly the same addresses (with the same readiness)
    into one subset (``RepackSubsets``), sorted so equal inputs give equal outputs."""
    groups: dict[tuple, list[tuple]] = {}
    for port, members in by_port.items():
        groups.setdefault(tuple(sorted(members.items())), []).append(port)
    subsets = []
    for members, ports in groups.items():
        subset: Object = {}
        ready = [addresses[k] for k, r in members if r]
        not_ready = [addresses[k] for k, r in members if not r]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        real_ports = [p for p in sorted(ports, key=_sortable_port) if p != _NO_PORT]
        if real_ports:
            subset["ports"] = [_port_from_key(p) for p in real_ports]
        subsets.append(subset)
    subsets.sort(key=_subset_sort_key)
    return subsets


def _sortable_port(port: tuple) -> tuple:
    name, number, protocol, app_protocol = port
    return (name, number, protocol, app_protocol or "")


def _subset_sort_key(subset: Mapping[str, Any]) -> tuple:
    return (tuple(_sortable_port(_port_key(p)) for p in subset.get("ports") or ()),
            tuple(_address_key(a) for a in subset.get("addresses") or ()),
            tuple(_address_key(a) for a in subset.get("notReadyAddresses") or ()))


def truncate_subsets(subsets: list[Object], capacity: int = MAX_CAPACITY) -> bool:
    """Keep at most ``capacity`` addresses, ready ones first, spread over the subsets in
    proportion to their size (``truncateEndpoints``). Whether anything was dropped."""
    total_ready = sum(len(s.get("addresses") or ()) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or ()) for s in subsets)
    if total_ready + total_not_ready <= capacity:
        return False
    truncate_ready = total_ready > capacity
    budget = capacity if truncate_ready else capacity - total_ready
    total = total_ready if truncate_ready else total_not_ready
    room = budget
    field = "addresses" if truncate_ready else "notReadyAddresses"
    for subset in subsets:
        members = subset.get(field) or []
        share = min(math.ceil(len(members) / total * budget) if total else 0, room)
        kept = members[:share]
        if kept:
            subset[field] = kept
        else:
            subset.pop(field, None)
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        room -= len(kept)
    return True


def normalize_subsets(subsets: Iterable[Mapping[str, Any]] | None) -> list[Object]:
    """Subsets as this controller writes them, for comparing with what is stored (the server
    may add empty fields; a targetRef's resourceVersion does not matter)."""
    out = []
    for subset in subsets or ():
        norm: Object = {}
        for field in ("addresses", "notReadyAddresses"):
            items = []
            for address in subset.get(field) or ():
                item = {k: v for k, v in address.items() if v not in (None, "", [], {})}
                if "targetRef" in item:
                    item["targetRef"] = {k: v for k, v in item["targetRef"].items()
                                         if k != "resourceVersion" and v not in (None, "")}
                items.append(item)
            if items:
                norm[field] = items
        ports = [_port_from_key(_port_key(p)) for p in subset.get("ports") or ()]
        if ports:
            norm["ports"] = ports
        out.append(norm)
    return out


def capacity_annotation_set_correctly(annotations: Mapping[str, str] | None,
                                      subsets: Iterable[Mapping[str, Any]] | None) -> bool:
    count = sum(len(s.get("addresses") or ()) + len(s.get("notReadyAddresses") or ())
                for s in subsets or ())
    if count > MAX_CAPACITY:
        return False
    return OVER_CAPACITY_ANNOTATION not in (annotations or {})


# -- the controller ------------------------------------------------------------------------------


class EndpointsController(Controller):
    """Keeps an Endpoints object per selecting Service."""

    name = "endpoint-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 5,
                 recorder: EventRecorder | None = None):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self._owns_recorder = recorder is None
        self.services = informers.informer("v1", "services")
        self.pods = informers.informer("v1", "pods", indexers={POD_LABEL_INDEX: index_pod_by_label})
        self.endpoints = informers.informer("v1", "endpoints")
        self.services.add_event_handler(on_add=self.enqueue,
                                        on_update=lambda _old, new: self.enqueue(new),
                                        on_delete=self.enqueue)
        self.pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                    on_delete=self._pod_added)
        self.endpoints.add_event_handler(on_delete=self.enqueue)
        self.trigger_times = TriggerTimeTracker()
        self._stale: dict[str, str] = {}  # key → a resourceVersion we already replaced

    def watched_informers(self) -> list[SharedInformer]:
        return [self.services, self.pods, self.endpoints]

    async def run(self) -> None:
        try:
            await wait_for_cache_sync(self.name, self.watched_informers())
            self._check_leftover_endpoints()
            await super().run()
        finally:
            if self._owns_recorder:
                await self.recorder.close()

    def _check_leftover_endpoints(self) -> None:
        """Endpoints whose Service went away while no controller ran are deleted."""
        for endpoints in self.endpoints.indexer.list():
            if LEADER_ANNOTATION in (meta(endpoints).get("annotations") or {}):
                continue
            self.enqueue(endpoints)

    # -- handlers ----------------------------------------------------------------------------
    def _pod_added(self, pod: Object) -> None:
        for key in services_of_pod(self.services, pod):
            self.queue.add(key)

    def _pod_updated(self, old: Object, new: Object) -> None:
        for key in services_of_pod_update(self.services, old, new):
            self.queue.add(key)

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        if key == API_SERVER_ENDPOINTS:
            return
        namespace, name = split_key(key)
        service = self.services.indexer.get(key)
        if service is None:
            self.trigger_times.forget(key)
            self._stale.pop(key, None)
            current = self.endpoints.indexer.get(key)
            annotations = meta(current or {}).get("annotations") or {}
            if LEADER_ANNOTATION in annotations:
                return
            try:
                await self.client.delete("v1", "endpoints", name, namespace=namespace)
            except ApiError as e:
                if not e.not_found:
                    raise
            return
        if not serves_endpoints(service):
            return
        pods = pods_for_service(self.pods, service)
        trigger_time = self.trigger_times.compute(key, service, pods)
        subsets = desired_subsets(service, pods)

        current = self.endpoints.indexer.get(key)
        if current is not None and self._stale.get(key) == meta(current).get("resourceVersion"):
            raise Requeue(f"endpoints informer cache is out of date for {key}")
        await self._write(service, current, subsets, trigger_time)

    async def _write(self, service: Object, current: Object | None, subsets: list[Object],
                     trigger_time: float | None) -> None:
        key = object_key(service)
        service_labels = meta(service).get("labels") or {}
        if current is not None:
            current_labels = {k: v for k, v in (meta(current).get("labels") or {}).items()
                              if k != HEADLESS_LABEL}
            if (normalize_subsets(current.get("subsets")) == subsets
                    and current_labels == service_labels
                    and capacity_annotation_set_correctly(meta(current).get("annotations"),
                                                          current.get("subsets"))):
                return
        labels = dict(service_labels)
        if not is_service_ip_set(service):
            labels[HEADLESS_LABEL] = ""
        annotations = dict((meta(current).get("annotations") or {}) if current else {})
        if trigger_time:
            annotations[LAST_CHANGE_TRIGGER_TIME_ANNOTATION] = format_trigger_time(trigger_time)
        else:
            annotations.pop(LAST_CHANGE_TRIGGER_TIME_ANNOTATION, None)
        if truncate_subsets(subsets):
            annotations[OVER_CAPACITY_ANNOTATION] = TRUNCATED
        else:
            annotations.pop(OVER_CAPACITY_ANNOTATION, None)
        namespace, name = split_key(key)
        if current is None:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels,
                                 "annotations": annotations},
                    "subsets": subsets}
            await self._create(service, body)
            return
        body = {**current, "metadata": {**meta(current), "labels": labels,
                                        "annotations": annotations},
                "subsets": subsets}
        try:
            updated = await self.client.update("v1", "endpoints", body, namespace=namespace)
        except ApiError as e:
            if e.conflict or e.not_found:
                raise Requeue(f"endpoints {key} changed under us: {e.message}") from e
            self.recorder.event(body, WARNING, "FailedToUpdateEndpoint",
                                f"Failed to update endpoint {key}: {e.message}")
            raise
        if meta(updated).get("resourceVersion") != meta(current).get("resourceVersion"):
            self._stale[key] = meta(current).get("resourceVersion")

    async def _create(self, service: Object, body: Object) -> None:
        key = object_key(service)
        try:
            await self.client.create("v1", "endpoints", body,
                                     namespace=body["metadata"]["namespace"])
        except ApiError as e:
            if e.already_exists:
                raise Requeue(f"endpoints {key} exist but are not in the cache yet") from e
            if e.code == 403 and any(c.get("reason") == "NamespaceTerminating"
                                     for c in e.details.get("causes") or ()):
                return
            self.recorder.event(body, WARNING, "FailedToCreateEndpoint",
                                f"Failed to create endpoint for service {key}: {e.message}")
            raise
