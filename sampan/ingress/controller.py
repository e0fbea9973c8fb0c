"""The control plane of the ingress: informers on Ingresses, IngressClasses, Services,
EndpointSlices, TLS Secrets and the TCP-services ConfigMap; any change rebuilds the routing
table (coalesced), swaps it into the proxy, opens or closes TCP-service listeners, records
events on Ingresses with problems and keeps their ``status.loadBalancer`` current."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from sampan.client import (
    WARNING,
    ApiError,
    Client,
    EventRecorder,
    NORMAL,
    InformerFactory,
    SharedInformer,
    object_key,
    strip_managed_fields,
)
from sampan.controllers.endpointslice import SERVICE_INDEX, index_slice_by_service
from sampan.ingress import metrics
from sampan.ingress.config import (
    CONTROLLER_NAME,
    DEFAULT_CLASS_ANNOTATION,
    TLS_SECRET_TYPE,
    Object,
    Problem,
    build_table,
    load_balancer_status,
    our_classes,
    serves,
)
from sampan.ingress.proxy import IngressProxy
from sampan.ingress.tls import CertificateStore

log = logging.getLogger(__name__)

NETWORKING = "networking.k8s.io/v1"
COMPONENT = "sampan-ingress-controller"


def ingress_class(name: str, controller: str = CONTROLLER_NAME,
                  default: bool = True) -> dict[str, Any]:
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    return {"apiVersion": NETWORKING, "kind": "IngressClass",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"controller": controller}}


class IngressController:
    def __init__(self, client: Client, proxy: IngressProxy, *, class_name: str = "sampan",
                 controller_name: str = CONTROLLER_NAME, create_class: bool = True,
                 publish_address: str = "", tcp_services: str = "", tcp_host: str = "0.0.0.0",
                 ssl_redirect: bool = True, debounce: float = 0.02,
                 certificates: CertificateStore | None = None) -> None:
        self.client, self.proxy = client, proxy
        self.class_name, self.controller_name = class_name, controller_name
        self.create_class = create_class
        self.publish_address = publish_address
        self.tcp_host = tcp_host
        self.ssl_redirect = ssl_redirect
        self.debounce = debounce
        self.certificates = certificates or CertificateStore()
        self.recorder = EventRecorder(client, COMPONENT)
        factory = InformerFactory(client, transform=strip_managed_fields)
        self.factory = factory
        self.ingresses = factory.informer(NETWORKING, "ingresses")
        self.classes = factory.informer(NETWORKING, "ingressclasses")
        self.services = factory.informer("v1", "services")
        self.slices = factory.informer("discovery.k8s.io/v1", "endpointslices",
                                       indexers={SERVICE_INDEX: index_slice_by_service})
        self.secrets = SharedInformer(client, "v1", "secrets",
                                      field_selector=f"type={TLS_SECRET_TYPE}",
                                      transform=strip_managed_fields)
        self.tcp_configmap: SharedInformer | None = None
        if tcp_services:
            namespace, _, name = tcp_services.partition("/")
            self.tcp_configmap = SharedInformer(client, "v1", "configmaps", namespace=namespace,
                                                field_selector=f"metadata.name={name}")
        self.informers = [*factory.informers(), self.secrets,
                          *([self.tcp_configmap] if self.tcp_configmap else [])]
        self._dirty = asyncio.Event()
        self._reported: set[Problem] = set()
        self._published: set[str] = set()  # Ingresses whose status carries our address
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        self.syncs = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        if self.create_class:
            await self._ensure_class()
        for informer in self.informers:
            informer.add_event_handler(self._changed, lambda old, new: self._changed(new),
                                       self._changed)
        self.ingresses.add_event_handler(self._ingress_added, self._ingress_updated)
        for informer in self.informers:
            informer.start()
        results = await asyncio.gather(*(i.wait_for_sync(timeout) for i in self.informers))
        if not all(results):
            log.warning("ingress caches not synced after %ss; serving what is known", timeout)
        await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="ingress sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*(i.stop() for i in self.informers))
        await self.recorder.close()

    async def _ensure_class(self) -> None:
        try:
            await self.client.create(NETWORKING, "ingressclasses",
                                     ingress_class(self.class_name, self.controller_name))
            log.info("created IngressClass %s (default)", self.class_name)
        except ApiError as e:
            if not e.already_exists:
                log.warning("cannot create IngressClass %s: %s", self.class_name, e)

    # -- events from the caches -------------------------------------------------------------
    def _changed(self, *_: Object) -> None:
        self._dirty.set()

    def _ours(self, ingress: Object) -> bool:
        return serves(ingress, our_classes(self.classes.indexer.list(), self.controller_name),
                      self.class_name)

    def _ingress_added(self, ingress: Object) -> None:
        if self._ours(ingress):
            self._event(ingress, NORMAL, "Sync", "Scheduled for sync")

    def _ingress_updated(self, old: Object, new: Object) -> None:
        if (old.get("metadata") or {}).get("generation") != \
                (new.get("metadata") or {}).get("generation") and self._ours(new):
            self._event(new, NORMAL, "Sync", "Scheduled for sync")

    def _event(self, ingress: Object, type_: str, reason: str, message: str) -> None:
        self.recorder.event({**ingress, "apiVersion": NETWORKING, "kind": "Ingress"}, type_,
                            reason, message)

    async def _loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.debounce)  # let a burst of changes land first
            try:
                await self.sync()
            except Exception:
                log.exception("ingress sync failed")
                await asyncio.sleep(1.0)
                self._dirty.set()

    # -- the sync ----------------------------------------------------------------------------
    async def sync(self) -> None:
        self._dirty.clear()
        started = time.monotonic()
        classes = our_classes(self.classes.indexer.list(), self.controller_name)
        served = [i for i in self.ingresses.indexer.list()
                  if serves(i, classes, self.class_name)]
        secrets = self._referenced_secrets(served)
        self.certificates.update(secrets)
        table, problems = build_table(
            served, self.services.indexer, self._slices_for, secrets,
            certificate_errors=self.certificates.errors, tcp_services=self._tcp_data(),
            ssl_redirect=self.ssl_redirect)
        self.proxy.table = table
        errors = await self.proxy.set_tcp_services(self.tcp_host, set(table.tcp))
        for port, error in errors.items():
            log.warning("cannot listen on TCP-service port %d: %s", port, error)
        self._report(problems, served)
        await self._update_statuses(served)
        metrics.SYNCS.inc()
        metrics.SERVED_INGRESSES.set(len(served))
        metrics.LAST_SYNC_SECONDS.set(time.monotonic() - started)
        self.syncs += 1
        self.synced.set()

    def _slices_for(self, namespace: str, service: str) -> list[Object]:
        return self.slices.indexer.by_index(SERVICE_INDEX, f"{namespace}/{service}")

    def _referenced_secrets(self, ingresses: list[Object]) -> dict[str, Object]:
        found: dict[str, Object] = {}
        for ingress in ingresses:
            namespace = (ingress.get("metadata") or {}).get("namespace") or ""
            for tls in (ingress.get("spec") or {}).get("tls") or []:
                key = f"{namespace}/{tls.get('secretName') or ''}"
                secret = self.secrets.indexer.get(key)
                if secret is not None:
                    found[key] = secret
        return found

    def _tcp_data(self) -> Mapping[str, str]:
        if self.tcp_configmap is None:
            return {}
        items = self.tcp_configmap.indexer.list()
        return (items[0].get("data") or {}) if items else {}

    def _report(self, problems: list[Problem], served: list[Object]) -> None:
        """A Warning event for each problem not reported before (a problem that went away and
        came back is reported again)."""
        by_key = {object_key(i): i for i in served}
        current = set(problems)
        for problem in problems:
            if problem not in self._reported and problem.ingress in by_key:
                log.warning("ingress %s: %s", problem.ingress, problem.message)
                self._event(by_key[problem.ingress], WARNING, problem.reason, problem.message)
        self._reported = current

    async def _update_statuses(self, served: list[Object]) -> None:
        """Our address on the Ingresses we serve; off again from those we served and no
        longer do (another class now, say), unless someone else has changed it since."""
        wanted = load_balancer_status(self.publish_address)
        if not wanted:
            return
        published: set[str] = set()
        for ingress in served:
            key = object_key(ingress)
            if _published_address(ingress) == wanted or await self._set_address(ingress, wanted):
                published.add(key)
        for key in self._published.difference(published):
            ingress = self.ingresses.indexer.get(key)
            if ingress is not None and _published_address(ingress) == wanted and \
                    not await self._set_address(ingress, None):
                published.add(key)  # try again next sync
        self._published = published

    async def _set_address(self, ingress: Object, address: list[dict[str, str]] | None) -> bool:
        meta = ingress.get("metadata") or {}
        try:
            await self.client.patch(NETWORKING, "ingresses", meta["name"],
                                    {"status": {"loadBalancer": {"ingress": address}}},
                                    namespace=meta.get("namespace"), subresource="status")
        except ApiError as e:
            if e.not_found:
                return True
            log.warning("cannot update status of ingress %s: %s", object_key(ingress), e)
            return False
        return True


def _published_address(ingress: Object) -> list[Any]:
    return ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
