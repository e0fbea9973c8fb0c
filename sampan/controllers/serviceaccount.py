"""The service account controller: every active namespace has a ``default`` ServiceAccount, as
upstream's ``pkg/controller/serviceaccount`` (``ServiceAccountsController``).

Work is keyed by namespace: a new or updated namespace, or a deleted ServiceAccount of a
managed name, puts its namespace in the queue; reconcile creates what is missing. A namespace
that is being deleted is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from sampan.client.controller import Controller
from sampan.client.errors import ApiError
from sampan.client.events import EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer
from sampan.client.rest import Client
from sampan.controllers.util import meta

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNTS = ("default",)


class ServiceAccountController(Controller):
    """Ensures the managed ServiceAccounts (``default``) exist in every active namespace."""

    name = "serviceaccount-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 2,
                 recorder: EventRecorder | None = None,
                 service_accounts: tuple[str, ...] = DEFAULT_SERVICE_ACCOUNTS):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self._owns_recorder = recorder is None
        self.managed = service_accounts
        self.namespaces = informers.informer("v1", "namespaces")
        self.service_accounts = informers.informer("v1", "serviceaccounts")
        self.namespaces.add_event_handler(on_add=self._namespace_changed,
                                          on_update=lambda _old, new: self._namespace_changed(new))
        self.service_accounts.add_event_handler(on_delete=self._service_account_deleted)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.namespaces, self.service_accounts]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder:
                await self.recorder.close()

    def _namespace_changed(self, namespace: dict[str, Any]) -> None:
        self.queue.add(meta(namespace)["name"])

    def _service_account_deleted(self, service_account: dict[str, Any]) -> None:
        if meta(service_account).get("name") in self.managed:
            self.queue.add(meta(service_account).get("namespace") or "")

    async def reconcile(self, key: str) -> None:
        namespace = self.namespaces.indexer.get(key)
        if namespace is None or not _is_active(namespace):
            return
        for name in self.managed:
            if self.service_accounts.indexer.get(f"{key}/{name}") is not None:
                continue
            body = {"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": key}}
            try:
                await self.client.create("v1", "serviceaccounts", body, namespace=key)
                log.info("created service account %s/%s", key, name)
            except ApiError as e:
                # Already there (the cache trails), or the namespace is going away.
                if e.already_exists or e.not_found or _namespace_terminating(e):
                    continue
                raise


def _is_active(namespace: dict[str, Any]) -> bool:
    return not meta(namespace).get("deletionTimestamp") and \
        (namespace.get("status") or {}).get("phase") != "Terminating"


def _namespace_terminating(error: ApiError) -> bool:
    return error.code == 403 and any(c.get("reason") == "NamespaceTerminating"
                                     for c in error.details.get("causes") or ())
