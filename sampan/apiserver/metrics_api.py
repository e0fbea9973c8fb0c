"""``metrics.k8s.io/v1beta1``: node and pod usage, served by the API server as metrics-server does.

Every ``metric-resolution`` (15 s) each node's agent is scraped for ``/metrics/resource`` (the
kubelet's Prometheus text: cumulative CPU seconds, working-set bytes, container start times).
CPU usage is the rate between the last two scrapes of a node (or, for a container started
during the last resolution but at least 10 s ago, between its start and the last scrape), so a
node or pod has no metrics until it has been scraped twice — ``kubectl top`` then says
"metrics not available yet". A node seen for the first time is scraped at once.

``NodeMetrics`` (cluster scoped, ``nodes``) and ``PodMetrics`` (namespaced, ``pods``) support
get and list with label and field selectors; their labels are the node's or pod's. Reading them
is what ``kubectl top`` and the HorizontalPodAutoscaler do.

Upstream: sigs.k8s.io/metrics-server (pkg/scraper, pkg/storage, pkg/api).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from sampan.api import errors
from sampan.api import selectors
from sampan.api.errors import StatusError
from sampan.api.registry import Resource
from sampan.api.validation import canonical_quantity, parse_quantity
from sampan.apiserver.negotiation import JSON, PROTOBUF, TABLE, YAML, Representation, negotiate
from sampan.controllers.util import now_rfc3339

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

log = logging.getLogger(__name__)

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
READ_VERBS = ("get", "list")
NODES = Resource(GROUP, VERSION, "nodes", "NodeMetrics", False, verbs=READ_VERBS, virtual=True)
PODS = Resource(GROUP, VERSION, "pods", "PodMetrics", True, verbs=READ_VERBS, virtual=True)

METRIC_RESOLUTION = 15.0           # metrics-server's --metric-resolution
SCRAPE_TIMEOUT = 10.0              # --kubelet-request-timeout
FRESH_CONTAINER_MIN = 10.0         # freshContainerMinMetricsResolution
MAX_PARALLEL_SCRAPES = 64
READER_ROLE = "system:aggregated-metrics-reader"
ADDRESS_TYPES = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")

# Fetches a node's /metrics/resource text; the default goes through the API server's kubelet
# client when it has one.
Fetch = Callable[[dict[str, Any]], Awaitable[str]]


# -- points and batches --------------------------------------------------------------------------


@dataclass
class Point:
    """One sample of a node or container: cumulative CPU (nanocore-seconds since
    ``start``), working set bytes, and when it was measured (unix seconds)."""

    timestamp: float = 0.0
    start: float = 0.0
    cpu: int = 0
    memory: int = 0


@dataclass
class Batch:
    node: Point | None = None
    pods: dict[tuple[str, str], dict[str, Point]] = field(default_factory=dict)


def decode_batch(text: str, default_time: float) -> Batch:
    """Parse ``/metrics/resource``; incomplete points (no CPU or memory) are dropped, as
    metrics-server drops them."""
    batch = Batch()
    node = Point()
    pods: dict[tuple[str, str], dict[str, Point]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            ts = sample.timestamp
            stamp = float(ts) if ts is not None else default_time
            if name == "node_cpu_usage_seconds_total":
                node.cpu, node.timestamp = int(value * 1e9), stamp
            elif name == "node_memory_working_set_bytes":
                node.memory, node.timestamp = int(value), stamp
            elif name.startswith("container_"):
                key = (labels.get("namespace", ""), labels.get("pod", ""))
                point = pods.setdefault(key, {}).setdefault(labels.get("container", ""), Point())
                if name == "container_cpu_usage_seconds_total":
                    point.cpu, point.timestamp = int(value * 1e9), stamp
                elif name == "container_memory_working_set_bytes":
                    point.memory, point.timestamp = int(value), stamp
                elif name == "container_start_time_seconds":
                    point.start = value
    if node.timestamp and node.cpu and node.memory:
        batch.node = node
    for key, containers in pods.items():
        if containers and all(p.cpu and p.memory for p in containers.values()):
            batch.pods[key] = containers
    return batch


@dataclass
class Usage:
    cpu: int            # nanocores
    memory: int         # bytes
    timestamp: float
    window: float


def usage(last: Point, prev: Point) -> Usage | None:
    if last.start < prev.start or last.cpu < prev.cpu or last.timestamp <= prev.timestamp:
        return None
    window = last.timestamp - prev.timestamp
    return Usage(int((last.cpu - prev.cpu) / window), last.memory, last.timestamp, window)


class NodeStore:
    """The last two samples of one node and of each of its pods' containers."""

    def __init__(self, resolution: float):
        self.resolution = resolution
        self.last: Point | None = None
        self.prev: Point | None = None
        self.pods_last: dict[tuple[str, str], dict[str, Point]] = {}
        self.pods_prev: dict[tuple[str, str], dict[str, Point]] = {}

    def store(self, batch: Batch) -> None:
        new = batch.node
        if new is None:
            self.last = self.prev = None
        else:
            if self.last is not None and new.timestamp > self.last.timestamp:
                self.prev = self.last
            elif self.prev is not None and self.prev.timestamp >= new.timestamp:
                self.prev = None
            self.last = new
        pods_prev: dict[tuple[str, str], dict[str, Point]] = {}
        for key, containers in batch.pods.items():
            old_last, old_prev = self.pods_last.get(key, {}), self.pods_prev.get(key, {})
            prev: dict[str, Point] = {}
            for name, point in containers.items():
                age = point.timestamp - point.start
                if point.start < point.timestamp and FRESH_CONTAINER_MIN <= age < self.resolution:
                    prev[name] = Point(point.start, point.start, 0, point.memory)
                    continue
                before = old_last.get(name)
                if before is None or point.start >= before.timestamp:
                    continue  # new, or restarted since the last scrape
                if point.timestamp > before.timestamp:
                    prev[name] = before
                elif name in old_prev and old_prev[name].timestamp < point.timestamp:
                    prev[name] = old_prev[name]
            if prev:
                pods_prev[key] = prev
        self.pods_last, self.pods_prev = batch.pods, pods_prev

    def node_usage(self) -> Usage | None:
        if self.last is None or self.prev is None:
            return None
        return usage(self.last, self.prev)

    def pod_usage(self, key: tuple[str, str]) -> tuple[dict[str, Usage], float, float] | None:
        """Per-container usage with the earliest timestamp (and its window), or None unless
        every container of the pod has two samples."""
        last, prev = self.pods_last.get(key), self.pods_prev.get(key)
        if not last or not prev:
            return None
        out: dict[str, Usage] = {}
        earliest: Usage | None = None
        for name, point in last.items():
            if name not in prev:
                return None
            u = usage(point, prev[name])
            if u is None:
                continue
            out[name] = u
            if earliest is None or u.timestamp < earliest.timestamp:
                earliest = u
        if earliest is None:
            return None
        return out, earliest.timestamp, earliest.window


# -- formatting ----------------------------------------------------------------------------------


def cpu_quantity(nanocores: int) -> str:
    return canonical_quantity(Decimal(nanocores).scaleb(-9), "DecimalSI")


def memory_quantity(size: int) -> str:
    return canonical_quantity(Decimal(size), "BinarySI")


def go_duration(seconds: float) -> str:
    """``metav1.Duration`` text (Go's ``time.Duration.String``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:.6f}".rstrip("0").rstrip(".") + "ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _timestamp(seconds: float) -> str:
    return now_rfc3339(seconds)


def _usage(cpu: int, memory: int) -> dict[str, str]:
    return {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)}


# -- the API -------------------------------------------------------------------------------------


class MetricsAPI:
    """The metrics.k8s.io group of one API server: its scraper, storage and handlers."""

    def __init__(self, api: APIServer, *, resolution: float | None = None,
                 fetch: Fetch | None = None):
        self.api = api
        env = os.environ.get("SAMPAN_METRIC_RESOLUTION")
        self.resolution = resolution or (float(env) if env else METRIC_RESOLUTION)
        self.timeout = min(SCRAPE_TIMEOUT, self.resolution)
        self.fetch = fetch or self._fetch
        self.nodes: dict[str, NodeStore] = {}
        self._pod_node: dict[tuple[str, str], str] = {}  # (namespace, pod) → node last seen on
        self._next_scrape: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Task] = {}
        self._semaphore = asyncio.Semaphore(MAX_PARALLEL_SCRAPES)
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        api.registry.add(NODES)
        api.registry.add(PODS)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._ensure_reader_role()
        self._task = asyncio.create_task(self._run(), name="metrics-scraper")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _ensure_reader_role(self) -> None:
        """metrics-server's ClusterRole, aggregated into admin, edit and view."""
        roles = self.api.registry.get("rbac.authorization.k8s.io", "v1", "clusterroles")
        if roles is None:
            return
        labels = {f"rbac.authorization.k8s.io/aggregate-to-{r}": "true"
                  for r in ("admin", "edit", "view")}
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": READER_ROLE, "labels": labels},
                "rules": [{"apiGroups": [GROUP], "resources": ["pods", "nodes"],
                           "verbs": ["get", "list", "watch"]}]}
        from sampan.apiserver.rest import Context

        try:
            await self.api._create_if_missing(roles, role, Context(user=self.api.system_user))
        except Exception:  # a cluster without it still serves metrics to its admins
            log.exception("creating the %s ClusterRole failed", READER_ROLE)

    # -- scraping ----------------------------------------------------------------------------
    async def _run(self) -> None:
        tick = min(1.0, self.resolution / 2)
        while True:
            try:
                self._schedule()
            except Exception:
                log.exception("scheduling metrics scrapes failed")
            await asyncio.sleep(tick)

    def _node_objects(self) -> dict[str, dict[str, Any]]:
        resource = self.api.registry.get("", "v1", "nodes")
        assert resource is not None
        return {e.name: e for e in self.api.storage.cache(resource).objects.values()}

    def _schedule(self) -> None:
        now = time.monotonic()
        entries = self._node_objects()
        for name in set(self.nodes) | set(self._next_scrape):
            if name not in entries:
                self.nodes.pop(name, None)
                self._next_scrape.pop(name, None)
                self._pod_node = {k: n for k, n in self._pod_node.items() if n != name}
        for name, entry in entries.items():
            if name in self._in_flight or self._next_scrape.get(name, 0) > now:
                continue
            self._next_scrape[name] = now + self.resolution
            task = asyncio.create_task(self.scrape(entry.obj), name=f"metrics-scrape-{name}")
            self._in_flight[name] = task
            task.add_done_callback(lambda _t, n=name: self._in_flight.pop(n, None))

    async def scrape(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        async with self._semaphore:
            started = time.time()
            try:
                text = await asyncio.wait_for(self.fetch(node), self.timeout)
                batch = decode_batch(text, started)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("scraping node %s failed: %s", name, e)
                return
        store = self.nodes.setdefault(name, NodeStore(self.resolution))
        for key in store.pods_last.keys() - batch.pods.keys():
            if self._pod_node.get(key) == name:
                del self._pod_node[key]
        store.store(batch)
        for key in batch.pods:
            self._pod_node[key] = name

    async def _fetch(self, node: dict[str, Any]) -> str:
        kubelet = getattr(self.api, "kubelet", None)
        request = getattr(kubelet, "request", None)
        if request is not None:  # the API server's kubelet client (client certificate)
            response = await request(node, "GET", "/metrics/resource", timeout=self.timeout)
            if isinstance(response, (bytes, bytearray)):
                return bytes(response).decode()
            if isinstance(response, str):
                return response
            async with response:
                response.raise_for_status()
                return await response.text()
        host, port = node_address(node)
        async with self._http().get(f"https://{host}:{port}/metrics/resource") as response:
            response.raise_for_status()
            return await response.text()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # metrics-server's --kubelet-insecure-tls
            cert = getattr(getattr(self.api, "kubelet", None), "cert", None)
            key = getattr(getattr(self.api, "kubelet", None), "key", None)
            if cert and key:
                ctx.load_cert_chain(str(cert), str(key))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, limit=MAX_PARALLEL_SCRAPES),
                trust_env=False)
        return self._session

    # -- reading -----------------------------------------------------------------------------
    def node_metrics(self, node_name: str, labels: dict[str, str]) -> dict[str, Any] | None:
        store = self.nodes.get(node_name)
        u = store.node_usage() if store else None
        if u is None:
            return None
        return {"kind": NODES.kind, "apiVersion": API_VERSION,
                "metadata": _metadata(node_name, None, labels),
                "timestamp": _timestamp(u.timestamp), "window": go_duration(u.window),
                "usage": _usage(u.cpu, u.memory)}

    def pod_metrics(self, namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any] | None:
        store = self.nodes.get(self._pod_node.get((namespace, name), ""))
        found = store.pod_usage((namespace, name)) if store is not None else None
        if found is not None:
            containers, timestamp, window = found
            return {"kind": PODS.kind, "apiVersion": API_VERSION,
                    "metadata": _metadata(name, namespace, labels),
                    "timestamp": _timestamp(timestamp), "window": go_duration(window),
                    "containers": [{"name": c, "usage": _usage(u.cpu, u.memory)}
                                   for c, u in sorted(containers.items())]}
        return None

    # -- HTTP --------------------------------------------------------------------------------
    async def handle(self, request: web.Request, info, ctx) -> web.Response:
        """A request for ``/apis/metrics.k8s.io/v1beta1/...`` (already authorized)."""
        from sampan.apiserver.resources import json_response

        if info.version != VERSION or info.resource not in ("nodes", "pods") or info.subresource:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        resource = NODES if info.resource == "nodes" else PODS
        if info.verb not in READ_VERBS:
            raise errors.method_not_supported(resource.resource, info.verb)
        rep = negotiate(request.headers.get("Accept"))
        if rep is None or rep.form == PROTOBUF:
            rep = Representation(JSON)
        if info.verb == "get":
            if resource.namespaced and not info.namespace:
                raise StatusError(404, "NotFound", "the server could not find the requested resource")
            items = [self._get(resource, info.namespace, info.name)]
            body = items[0]
        else:
            items = self._list(resource, info.namespace, request.query)
            body = {"kind": f"{resource.kind}List", "apiVersion": API_VERSION, "metadata": {},
                    "items": items}
        if rep.form == TABLE:
            return json_response(table(items, rep.version))
        if rep.form == YAML:
            return web.Response(text=yaml.safe_dump(body, sort_keys=False),
                                content_type="application/yaml")
        return json_response(body)

    def _get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        if resource is NODES:
            entry = self._node_objects().get(name)
            if entry is None:
                raise errors.not_found_error("nodes", name)
            obj = self.node_metrics(name, entry.labels)
            if obj is None:
                raise errors.not_found_error("nodemetrics", name, GROUP)
            return obj
        pod = self._pod_entries(namespace).get(name)
        if pod is None:
            raise errors.not_found_error("pods", name)
        obj = self.pod_metrics(namespace, name, pod.labels)
        if obj is None:
            raise errors.not_found_error("podmetrics", f"{namespace}/{name}", GROUP)
        return obj

    def _list(self, resource: Resource, namespace: str, query) -> list[dict[str, Any]]:
        label_selector = selectors.parse_label_selector(query.get("labelSelector", ""))
        field_selector = selectors.parse_field_selector(query.get("fieldSelector", ""), resource)
        items = []
        if resource is NODES:
            for name, entry in sorted(self._node_objects().items()):
                if not label_selector.matches(entry.labels):
                    continue
                if not field_selector.empty and not field_selector.matches(
                        {"metadata": {"name": name}}):
                    continue
                obj = self.node_metrics(name, entry.labels)
                if obj is not None:
                    items.append(obj)
            return items
        pods = self._pod_entries(namespace)
        for entry in sorted(pods.values(), key=lambda e: (e.namespace, e.name)):
            if not label_selector.matches(entry.labels):
                continue
            if not field_selector.empty and not field_selector.matches(
                    {"metadata": {"name": entry.name, "namespace": entry.namespace}}):
                continue
            obj = self.pod_metrics(entry.namespace, entry.name, entry.labels)
            if obj is not None:
                items.append(obj)
        return items

    def _pod_entries(self, namespace: str) -> dict[str, Any]:
        """Pods (cache entries) of a namespace (all when empty) on nodes scraped so far;
        keyed by name when a namespace is given, else by namespace/name."""
        resource = self.api.registry.get("", "v1", "pods")
        assert resource is not None
        cache = self.api.storage.cache(resource)
        entries = cache.list(resource.prefix(namespace or None))
        if namespace:
            return {e.name: e for e in entries}
        return {f"{e.namespace}/{e.name}": e for e in entries}


def table(items: list[dict[str, Any]], meta_version: str = "v1") -> dict[str, Any]:
    """metrics-server's Table: name, summed cpu and memory, window."""
    columns = [{"name": "Name", "type": "string", "format": "name",
                "description": "Name of the resource", "priority": 0},
               {"name": "cpu", "type": "string", "format": "quantity", "description": "",
                "priority": 0},
               {"name": "memory", "type": "string", "format": "quantity", "description": "",
                "priority": 0},
               {"name": "Window", "type": "string", "format": "duration", "description": "",
                "priority": 0}]
    rows = []
    for item in items:
        usages = [item["usage"]] if "usage" in item else [c["usage"] for c in item["containers"]]
        cpu = sum((parse_quantity(u["cpu"]).value for u in usages), Decimal(0))
        memory = sum((parse_quantity(u["memory"]).value for u in usages), Decimal(0))
        rows.append({"cells": [item["metadata"]["name"], canonical_quantity(cpu, "DecimalSI"),
                               canonical_quantity(memory, "BinarySI"), item["window"]],
                     "object": {"kind": "PartialObjectMetadata",
                                "apiVersion": f"meta.k8s.io/{meta_version}",
                                "metadata": item["metadata"]}})
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{meta_version}", "metadata": {},
            "columnDefinitions": columns, "rows": rows}


def _metadata(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["creationTimestamp"] = now_rfc3339()
    if labels:
        meta["labels"] = dict(labels)
    return meta


def node_address(node: dict[str, Any]) -> tuple[str, int]:
    """Where a node's agent listens (metrics-server's address type preference, the
    kubelet endpoint port)."""
    status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or ()}
    host = next((addresses[t] for t in ADDRESS_TYPES if addresses.get(t)), "")
    if not host:
        raise ValueError(f"node {node['metadata']['name']} has no address")
    port = (((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {})
            .get("Port")) or 10250
    return host, int(port)
