"""Service account credentials in the namespaces: the tokens controller and the root CA
publisher (upstream's ``serviceaccount-token-controller`` and ``root-ca-cert-publisher``).

- A Secret of type ``kubernetes.io/service-account-token`` naming a service account in the
  ``kubernetes.io/service-account.name`` annotation gets ``data.token`` (a legacy, non-expiring
  token signed with the service-account key), ``data["ca.crt"]`` and ``data.namespace``, and the
  account's uid in ``kubernetes.io/service-account.uid``. When the account is gone (or was
  recreated with another uid) the Secret is deleted, as upstream does.
- Every active namespace has a ``kube-root-ca.crt`` ConfigMap holding the cluster CA, which
  projected service-account volumes mount.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any, ClassVar

from sampan.apiserver.serviceaccounts import TokenIssuer
from sampan.client.controller import Controller
from sampan.client.errors import ApiError
from sampan.client.informer import InformerFactory, SharedInformer, split_key
from sampan.client.rest import Client, Preconditions

log = logging.getLogger(__name__)

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class TokensController(Controller):
    name: ClassVar[str] = "serviceaccount-token-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, issuer: TokenIssuer,
                 root_ca: bytes, workers: int = 2):
        super().__init__(client, informers, workers=workers)
        self.issuer = issuer
        self.root_ca = root_ca
        self.secrets = informers.informer("v1", "secrets")
        self.accounts = informers.informer("v1", "serviceaccounts")
        self.secrets.add_event_handler(self._secret_changed, lambda _, new: self._secret_changed(new))
        # A service account that goes away or is recreated invalidates its token secrets.
        self.accounts.add_event_handler(None, lambda _, new: self._account_changed(new),
                                        self._account_changed)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.secrets, self.accounts]

    def _secret_changed(self, secret: dict[str, Any]) -> None:
        if secret.get("type") == SA_TOKEN_TYPE:
            self.enqueue(secret)

    def _account_changed(self, account: dict[str, Any]) -> None:
        meta = account["metadata"]
        for secret in self.secrets.indexer.by_index("namespace", meta["namespace"]):
            if secret.get("type") == SA_TOKEN_TYPE and \
                    (secret["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION) == meta["name"]:
                self.enqueue(secret)

    async def reconcile(self, key: str) -> None:
        secret = self.secrets.indexer.get(key)
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            return
        namespace, name = split_key(key)
        annotations = secret["metadata"].get("annotations") or {}
        account_name = annotations.get(SA_NAME_ANNOTATION, "")
        account = self.accounts.indexer.get(f"{namespace}/{account_name}")
        wanted_uid = annotations.get(SA_UID_ANNOTATION)
        if account is None or (wanted_uid and wanted_uid != account["metadata"]["uid"]):
            # The account is gone: so is the reason for the secret. Double-check with the
            # server before deleting, the cache may trail a just-created account.
            try:
                account = await self.client.get("v1", "serviceaccounts", account_name,
                                                namespace=namespace)
            except ApiError as e:
                if not e.not_found:
                    raise
                account = None
            if account is None or (wanted_uid and wanted_uid != account["metadata"]["uid"]):
                await self._delete(secret)
                return
        data = secret.get("data") or {}
        if data.get("token") and data.get(ROOT_CA_KEY) and data.get("namespace") and wanted_uid:
            return
        token = self.issuer.legacy_token(account, name)
        patch = {"metadata": {"annotations": {SA_UID_ANNOTATION: account["metadata"]["uid"]},
                              "resourceVersion": secret["metadata"]["resourceVersion"]},
                 "data": {"token": _b64(token), ROOT_CA_KEY: _b64(self.root_ca),
                          "namespace": _b64(namespace)}}
        try:
            await self.client.patch("v1", "secrets", name, patch, namespace=namespace)
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise  # a conflict comes back through the informer

    async def _delete(self, secret: dict[str, Any]) -> None:
        meta = secret["metadata"]
        try:
            await self.client.delete("v1", "secrets", meta["name"], namespace=meta["namespace"],
                                     preconditions=Preconditions(uid=meta["uid"]))
        except ApiError as e:
            if not (e.not_found or e.code == 409):
                raise


class RootCAPublisher(Controller):
    name: ClassVar[str] = "root-ca-cert-publisher"

    def __init__(self, client: Client, informers: InformerFactory, *, root_ca: bytes,
                 workers: int = 1):
        super().__init__(client, informers, workers=workers)
        self.root_ca = root_ca.decode()
        self.namespaces = informers.informer("v1", "namespaces")
        self.configmaps = informers.informer("v1", "configmaps")
        self.namespaces.add_event_handler(self._namespace, lambda _, new: self._namespace(new))
        self.configmaps.add_event_handler(None, lambda _, new: self._configmap(new),
                                          self._configmap)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.namespaces, self.configmaps]

    def _namespace(self, ns: dict[str, Any]) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _configmap(self, cm: dict[str, Any]) -> None:
        if cm["metadata"]["name"] == ROOT_CA_CONFIGMAP:
            self.queue.add(cm["metadata"]["namespace"])

    async def reconcile(self, namespace: str) -> None:
        ns = self.namespaces.indexer.get(namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        current = self.configmaps.indexer.get(f"{namespace}/{ROOT_CA_CONFIGMAP}")
        data = {ROOT_CA_KEY: self.root_ca}
        annotations = {"kubernetes.io/description": (
            "Contains a CA bundle that can be used to verify the kube-apiserver when using "
            "internal endpoints such as the internal service IP or kubernetes.default.svc. No "
            "other usage is guaranteed across distributions of Kubernetes clusters.")}
        try:
            if current is None:
                await self.client.create("v1", "configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                                 "annotations": annotations},
                    "data": data}, namespace=namespace)
            elif current.get("data") != data:
                await self.client.patch("v1", "configmaps", ROOT_CA_CONFIGMAP,
                                        {"data": data, "binaryData": None,
                                         "metadata": {"annotations": annotations}},
                                        namespace=namespace)
        except ApiError as e:
            # A namespace being deleted refuses new content; an existing map was made by
            # a racing writer: both settle on the next event.
            if not (e.already_exists or e.not_found or e.code == 403):
                raise


def credential_controllers(service_account_key: Path, root_ca: Path):
    """Factories for the controller manager, bound to the cluster's key and CA."""
    issuer = TokenIssuer(service_account_key)
    ca = root_ca.read_bytes()

    def tokens(client: Client, informers: InformerFactory) -> TokensController:
        return TokensController(client, informers, issuer=issuer, root_ca=ca)

    def root_ca_publisher(client: Client, informers: InformerFactory) -> RootCAPublisher:
        return RootCAPublisher(client, informers, root_ca=ca)

    return [tokens, root_ca_publisher]
