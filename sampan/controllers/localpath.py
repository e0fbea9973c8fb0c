"""The local-path provisioner, as rancher's ``local-path-provisioner`` that k3s ships.

It keeps a default StorageClass ``local-path`` (provisioner ``rancher.io/local-path``,
``WaitForFirstConsumer``, ``reclaimPolicy: Delete``). For a claim the PersistentVolume
controller handed to this provisioner, once the scheduler has picked a node
(``volume.kubernetes.io/selected-node``), it creates the PersistentVolume ``pvc-<claim uid>``:
a ``hostPath`` directory ``<base dir>/pvc-<uid>_<namespace>_<name>`` on that node, with node
affinity to it, pre-bound to the claim. The node agent creates (and, on delete, removes) the
directory; here only its path is recorded. A Released volume it made is deleted.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from typing import Any

from sampan.client.controller import Controller, wait_for_cache_sync
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, object_key
from sampan.client.rest import Client, Preconditions
from sampan.controllers.persistentvolume import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_DEFAULT_CLASS,
    ANN_DYNAMICALLY_PROVISIONED,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    claim_class,
)
from sampan.controllers.util import meta

log = logging.getLogger(__name__)

Object = dict[str, Any]

PROVISIONER = "rancher.io/local-path"
STORAGE_CLASS = "local-path"
DEFAULT_BASE_DIR = "/var/lib/sampan/storage"
ANN_NODE = "local.path.provisioner/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
SUPPORTED_ACCESS_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}
CLASS_KEY = "class"


def default_storage_class() -> Object:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {ANN_DEFAULT_CLASS: "true"}},
            "provisioner": PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete"}


def volume_name(claim: Mapping[str, Any]) -> str:
    """The external provisioner's naming: ``pvc-<claim uid>``."""
    return f"pvc-{meta(claim)['uid']}"


def volume_path(base_dir: str, claim: Mapping[str, Any]) -> str:
    claim_meta = meta(claim)
    return posixpath.join(base_dir,
                          f"{volume_name(claim)}_{claim_meta['namespace']}_{claim_meta['name']}")


def wants_this_provisioner(claim: Mapping[str, Any]) -> bool:
    annotations = meta(claim).get("annotations") or {}
    return PROVISIONER in (annotations.get(ANN_STORAGE_PROVISIONER),
                           annotations.get(ANN_BETA_STORAGE_PROVISIONER))


def build_volume(claim: Mapping[str, Any], storage_class: Mapping[str, Any],
                 node: Mapping[str, Any] | None, node_name: str, base_dir: str) -> Object:
    """The PersistentVolume for ``claim`` on ``node_name`` (pre-bound to the claim)."""
    claim_meta, spec = meta(claim), claim.get("spec") or {}
    hostname = ((meta(node).get("labels") or {}).get(HOSTNAME_LABEL) if node else None) or node_name
    request = (((spec.get("resources") or {}).get("requests") or {}).get("storage")) or "0"
    volume: Object = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim),
                     "annotations": {ANN_DYNAMICALLY_PROVISIONED: PROVISIONER,
                                     ANN_NODE: node_name}},
        "spec": {
            "capacity": {"storage": request},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": meta(storage_class)["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": claim_meta["namespace"], "name": claim_meta["name"],
                         "uid": claim_meta["uid"],
                         "resourceVersion": claim_meta.get("resourceVersion")},
            "hostPath": {"path": volume_path(base_dir, claim), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}]}},
        },
    }
    if storage_class.get("mountOptions"):
        volume["spec"]["mountOptions"] = list(storage_class["mountOptions"])
    return volume


class LocalPathProvisioner(Controller):
    """Provisions hostPath volumes for claims of the ``local-path`` class. Queue keys:
    ``claim:<ns>/<name>``, ``volume:<name>`` and ``class``."""

    name = "local-path-provisioner"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 2,
                 base_dir: str = DEFAULT_BASE_DIR):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, PROVISIONER))
        self.base_dir = base_dir
        self.claims = informers.informer("v1", "persistentvolumeclaims")
        self.volumes = informers.informer("v1", "persistentvolumes")
        self.classes = informers.informer("storage.k8s.io/v1", "storageclasses")
        self.nodes = informers.informer("v1", "nodes")
        self.claims.add_event_handler(on_add=self._claim_changed,
                                      on_update=lambda old, new: self._claim_changed(new))
        self.volumes.add_event_handler(on_add=self._volume_changed,
                                       on_update=lambda old, new: self._volume_changed(new))
        self.classes.add_event_handler(on_delete=self._class_deleted)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.claims, self.volumes, self.classes, self.nodes]

    def _claim_changed(self, claim: Object) -> None:
        if wants_this_provisioner(claim) and not (claim.get("spec") or {}).get("volumeName"):
            self.queue.add("claim:" + object_key(claim))

    def _volume_changed(self, volume: Object) -> None:
        annotations = meta(volume).get("annotations") or {}
        if annotations.get(ANN_DYNAMICALLY_PROVISIONED) == PROVISIONER and \
                (volume.get("status") or {}).get("phase") == "Released":
            self.queue.add("volume:" + meta(volume)["name"])

    def _class_deleted(self, storage_class: Object) -> None:
        if meta(storage_class).get("name") == STORAGE_CLASS:
            self.queue.add(CLASS_KEY)

    async def run(self) -> None:
        await wait_for_cache_sync(self.name, self.watched_informers())
        self.queue.add(CLASS_KEY)
        await super().run()

    async def reconcile(self, key: str) -> None:
        if key == CLASS_KEY:
            await self.ensure_storage_class()
            return
        kind, _, rest = key.partition(":")
        if kind == "claim":
            claim = self.claims.indexer.get(rest)
            if claim is not None:
                await self.provision(claim)
        elif kind == "volume":
            volume = self.volumes.indexer.get(rest)
            if volume is not None:
                await self.delete(volume)

    async def ensure_storage_class(self) -> None:
        if self.classes.indexer.get(STORAGE_CLASS) is not None:
            return
        try:
            await self.client.create("storage.k8s.io/v1", "storageclasses", default_storage_class())
            log.info("%s: created StorageClass %s", self.name, STORAGE_CLASS)
        except ApiError as e:
            if not e.already_exists:
                raise

    async def provision(self, claim: Object) -> None:
        if (claim.get("spec") or {}).get("volumeName") or meta(claim).get("deletionTimestamp") \
                or not wants_this_provisioner(claim):
            return
        name = volume_name(claim)
        if self.volumes.indexer.get(name) is not None:
            return
        class_name = claim_class(claim)
        storage_class = self.classes.indexer.get(class_name)
        if storage_class is None or storage_class.get("provisioner") != PROVISIONER:
            return
        node_name = (meta(claim).get("annotations") or {}).get(ANN_SELECTED_NODE)
        problem = self._problem(claim, node_name)
        if problem is not None:
            self._event(claim, WARNING, "ProvisioningFailed",
                        f"failed to provision volume with StorageClass \"{class_name}\": {problem}")
            return
        claim_key = object_key(claim)
        self._event(claim, NORMAL, "Provisioning",
                    f"External provisioner is provisioning volume for claim \"{claim_key}\"")
        node = self.nodes.indexer.get(node_name)  # type: ignore[arg-type]
        volume = build_volume(claim, storage_class, node, node_name, self.base_dir)  # type: ignore[arg-type]
        try:
            await self.client.create("v1", "persistentvolumes", volume)
        except ApiError as e:
            if e.already_exists:
                return
            self._event(claim, WARNING, "ProvisioningFailed",
                        f"failed to provision volume with StorageClass \"{class_name}\": {e.message}")
            raise
        log.info("%s: provisioned %s at %s on %s for %s", self.name, name,
                 volume["spec"]["hostPath"]["path"], node_name, claim_key)
        self._event(claim, NORMAL, "ProvisioningSucceeded", f"Successfully provisioned volume {name}")

    @staticmethod
    def _problem(claim: Object, node_name: str | None) -> str | None:
        if not node_name:
            return "configuration error, no node was specified"
        modes = set((claim.get("spec") or {}).get("accessModes") or ())
        if not modes or not modes <= SUPPORTED_ACCESS_MODES:
            return "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"
        if (claim.get("spec") or {}).get("volumeMode") == "Block":
            return "Block volume mode is not supported"
        return None

    async def delete(self, volume: Object) -> None:
        """Delete a Released volume we made whose policy says so."""
        if (volume.get("status") or {}).get("phase") != "Released" or \
                (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Delete":
            return
        name = meta(volume)["name"]
        try:
            await self.client.delete("v1", "persistentvolumes", name,
                                     preconditions=Preconditions(uid=meta(volume).get("uid")))
        except ApiError as e:
            if e.not_found or e.code == 409:
                return
            self._event(volume, WARNING, "VolumeFailedDelete", e.message)
            raise
        log.info("%s: deleted volume %s (%s)", self.name, name,
                 ((volume.get("spec") or {}).get("hostPath") or {}).get("path"))

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        kind = "PersistentVolumeClaim" if meta(obj).get("namespace") else "PersistentVolume"
        self.recorder.event({**obj, "apiVersion": "v1", "kind": kind}, type_, reason, message)
