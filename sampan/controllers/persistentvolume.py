"""The PersistentVolume controller: binds claims to volumes and reclaims released volumes, as
upstream's ``pkg/controller/volume/persistentvolume``.

A claim without ``spec.volumeName`` gets the smallest Available volume of its class that has
its access modes, volume mode, at least the requested size and matches its selector; a claim
naming a volume gets that volume if it fits. Binding writes the volume's ``claimRef`` first,
then the claim's ``volumeName``, then both statuses, with upstream's annotations, so that a
crash at any point is finished by the next sync. Claims of a class with a provisioner are
annotated for that provisioner (``volume.kubernetes.io/storage-provisioner``); claims of a
``WaitForFirstConsumer`` class wait until the scheduler picks a node
(``volume.kubernetes.io/selected-node``). When its claim goes, a volume is Released; with
``reclaimPolicy: Delete`` it is deleted (by its provisioner when one made it).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sampan.api.selectors import from_label_selector_object
from sampan.api.validation import QuantityError, parse_quantity
from sampan.client.controller import Controller
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, object_key
from sampan.client.rest import Client, Preconditions
from sampan.controllers.nodelifecycle import wait_for_synced
from sampan.controllers.util import meta

log = logging.getLogger(__name__)

Object = dict[str, Any]

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_DYNAMICALLY_PROVISIONED = "pv.kubernetes.io/provisioned-by"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
ANN_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"

CLAIM_UNBOUND_CLASS_INDEX = "pvc-unbound-class"
VOLUME_CLASS_INDEX = "pv-class"
VOLUME_CLAIM_INDEX = "pv-claim"
RESYNC_PERIOD = 15.0

MSG_WAIT_FOR_FIRST_CONSUMER = "waiting for first consumer to be created before binding"
MSG_NO_CLASS = "no persistent volumes available for this claim and no storage class is set"


# -- what a claim asks for ---------------------------------------------------------------------


def claim_class(claim: Mapping[str, Any]) -> str:
    """``GetPersistentVolumeClaimClass``: the beta annotation wins over the field."""
    annotations = meta(claim).get("annotations") or {}
    if ANN_BETA_CLASS in annotations:
        return annotations[ANN_BETA_CLASS]
    return (claim.get("spec") or {}).get("storageClassName") or ""


def volume_class(volume: Mapping[str, Any]) -> str:
    annotations = meta(volume).get("annotations") or {}
    if ANN_BETA_CLASS in annotations:
        return annotations[ANN_BETA_CLASS]
    return (volume.get("spec") or {}).get("storageClassName") or ""


def storage_quantity(resources: Mapping[str, Any] | None, field: str) -> Decimal:
    raw = ((resources or {}).get(field) or {}).get("storage")
    if raw is None:
        return Decimal(0)
    try:
        return parse_quantity(raw).value
    except QuantityError:
        return Decimal(0)


def claim_request(claim: Mapping[str, Any]) -> Decimal:
    return storage_quantity((claim.get("spec") or {}).get("resources"), "requests")


def volume_capacity(volume: Mapping[str, Any]) -> Decimal:
    raw = ((volume.get("spec") or {}).get("capacity") or {}).get("storage")
    try:
        return parse_quantity(raw).value if raw is not None else Decimal(0)
    except QuantityError:
        return Decimal(0)


def access_modes_satisfied(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    have = set((volume.get("spec") or {}).get("accessModes") or ())
    return set((claim.get("spec") or {}).get("accessModes") or ()) <= have


def volume_mode_mismatch(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    return ((claim.get("spec") or {}).get("volumeMode") or "Filesystem") != \
        ((volume.get("spec") or {}).get("volumeMode") or "Filesystem")


def is_volume_bound_to_claim(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    ref = (volume.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    if ref.get("name") != meta(claim).get("name") or \
            ref.get("namespace") != meta(claim).get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta(claim).get("uid")


def _requirement_matches(requirement: Mapping[str, Any], value: str | None) -> bool:
    operator = requirement.get("operator")
    values = requirement.get("values") or []
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def node_selector_matches(selector: Mapping[str, Any] | None, node: Mapping[str, Any]) -> bool:
    """A ``NodeSelector``: any term whose expressions and fields all match (no terms: none)."""
    if selector is None:
        return True
    labels = meta(node).get("labels") or {}
    fields = {"metadata.name": meta(node).get("name")}
    for term in selector.get("nodeSelectorTerms") or ():
        expressions = term.get("matchExpressions") or []
        field_reqs = term.get("matchFields") or []
        if not expressions and not field_reqs:
            continue
        if all(_requirement_matches(r, labels.get(r.get("key"))) for r in expressions) and \
                all(_requirement_matches(r, fields.get(r.get("key"))) for r in field_reqs):
            return True
    return False


def volume_fits_node(volume: Mapping[str, Any], node: Mapping[str, Any] | None) -> bool:
    if node is None:
        return True
    required = (((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required"))
    return node_selector_matches(required, node) if required else True


def check_volume_satisfies_claim(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> str | None:
    """Why ``volume`` cannot serve ``claim`` (``checkVolumeSatisfyClaim``), or None."""
    if volume_capacity(volume) < claim_request(claim):
        return "requested PV is too small"
    if volume_class(volume) != claim_class(claim):
        return "storageClassName does not match"
    if volume_mode_mismatch(volume, claim):
        return "incompatible volumeMode"
    if not access_modes_satisfied(volume, claim):
        return "incompatible accessMode"
    return None


def find_best_match(claim: Mapping[str, Any], volumes: list[Object], *, delay_binding: bool,
                    node: Mapping[str, Any] | None) -> Object | None:
    """The volume for ``claim`` (``findMatchingVolume``): one pre-bound to it, else the
    smallest Available volume that fits."""
    request = claim_request(claim)
    spec = claim.get("spec") or {}
    selector = from_label_selector_object(spec["selector"]) if spec.get("selector") else None
    wanted_class = claim_class(claim)
    best: Object | None = None
    for volume in volumes:
        if not access_modes_satisfied(volume, claim):
            continue
        size = volume_capacity(volume)
        if size < request or volume_mode_mismatch(volume, claim) or \
                meta(volume).get("deletionTimestamp"):
            continue
        fits_node = volume_fits_node(volume, node)
        if is_volume_bound_to_claim(volume, claim):
            return volume if fits_node else None
        if node is None and delay_binding:
            continue  # the scheduler decides where, then we bind
        # A new volume is Pending until this controller's volume sync makes it Available;
        # taking it already spares a claim that races that sync a bigger volume.
        if ((volume.get("status") or {}).get("phase") or "Pending") not in ("Available", "Pending"):
            continue
        if (volume.get("spec") or {}).get("claimRef"):
            continue
        if selector is not None and not selector.matches(meta(volume).get("labels") or {}):
            continue
        if volume_class(volume) != wanted_class or not fits_node:
            continue
        if best is None or volume_capacity(best) > size:
            best = volume
    return best


def is_default_class(storage_class: Mapping[str, Any]) -> bool:
    annotations = meta(storage_class).get("annotations") or {}
    return annotations.get(ANN_DEFAULT_CLASS) == "true" or \
        annotations.get(ANN_BETA_DEFAULT_CLASS) == "true"


def index_unbound_claim_by_class(claim: Object) -> list[str]:
    if (claim.get("spec") or {}).get("volumeName"):
        return []
    return [claim_class(claim)]


def index_volume_by_class(volume: Object) -> list[str]:
    return [volume_class(volume)]


def index_volume_by_claim(volume: Object) -> list[str]:
    ref = (volume.get("spec") or {}).get("claimRef")
    if not ref or not ref.get("name"):
        return []
    return [f"{ref.get('namespace')}/{ref['name']}"]


def _set_annotation(obj: Object, key: str, value: str) -> None:
    obj.setdefault("metadata", {}).setdefault("annotations", {})[key] = value


def _has_annotation(obj: Mapping[str, Any], key: str) -> bool:
    return key in (meta(obj).get("annotations") or {})


# -- the controller ------------------------------------------------------------------------------


class PersistentVolumeController(Controller):
    """Binds PersistentVolumeClaims to PersistentVolumes and reclaims released volumes.
    Queue keys: ``claim:<ns>/<name>`` and ``volume:<name>``."""

    name = "persistentvolume-controller"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 2,
                 resync_period: float = RESYNC_PERIOD):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.resync_period = resync_period
        self.volumes = informers.informer("v1", "persistentvolumes",
                                          indexers={VOLUME_CLASS_INDEX: index_volume_by_class,
                                                    VOLUME_CLAIM_INDEX: index_volume_by_claim})
        self.claims = informers.informer(
            "v1", "persistentvolumeclaims",
            indexers={CLAIM_UNBOUND_CLASS_INDEX: index_unbound_claim_by_class})
        self.classes = informers.informer("storage.k8s.io/v1", "storageclasses")
        self.nodes = informers.informer("v1", "nodes")
        self.volumes.add_event_handler(on_add=self._volume_changed,
                                       on_update=lambda old, new: self._volume_changed(new),
                                       on_delete=self._volume_changed)
        self.claims.add_event_handler(on_add=self._claim_changed,
                                      on_update=lambda old, new: self._claim_changed(new),
                                      on_delete=self._claim_changed)
        self.classes.add_event_handler(on_add=self._class_changed,
                                       on_update=lambda old, new: self._class_changed(new))

    def watched_informers(self) -> list[SharedInformer]:
        return [self.volumes, self.claims, self.classes, self.nodes]

    # -- handlers (keys only) ------------------------------------------------------------------
    def _volume_changed(self, volume: Object) -> None:
        self.queue.add("volume:" + meta(volume)["name"])
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref and ref.get("namespace") and ref.get("name"):
            self.queue.add(f"claim:{ref['namespace']}/{ref['name']}")
        elif not ref and (volume.get("status") or {}).get("phase") in (None, "Available",
                                                                        "Pending"):
            # A volume that is free now may be what a pending claim of its class waits for.
            for key in self.claims.indexer.index_keys(CLAIM_UNBOUND_CLASS_INDEX,
                                                      volume_class(volume)):
                self.queue.add("claim:" + key)

    def _claim_changed(self, claim: Object) -> None:
        self.queue.add("claim:" + object_key(claim))
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if volume_name:
            self.queue.add("volume:" + volume_name)

    def _class_changed(self, storage_class: Object) -> None:
        if is_default_class(storage_class):
            for key in self.claims.indexer.index_keys(CLAIM_UNBOUND_CLASS_INDEX, ""):
                self.queue.add("claim:" + key)

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync_forever(), name=f"{self.name} resync")
        try:
            await super().run()
        finally:
            resync.cancel()
            await asyncio.gather(resync, return_exceptions=True)

    async def _resync_forever(self) -> None:
        """Upstream syncs everything every 15 s: what waits on time or on other components
        (a provisioner, a prebound volume) is looked at again."""
        await wait_for_synced(self.watched_informers())
        while True:
            await asyncio.sleep(self.resync_period)
            for key in self.claims.indexer.keys():
                self.queue.add("claim:" + key)
            for key in self.volumes.indexer.keys():
                self.queue.add("volume:" + key)

    async def reconcile(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "claim":
            claim = self.claims.indexer.get(rest)
            if claim is not None:
                await self.sync_claim(claim)
        elif kind == "volume":
            volume = self.volumes.indexer.get(rest)
            if volume is not None:
                await self.sync_volume(volume)

    # -- claims --------------------------------------------------------------------------------
    async def sync_claim(self, claim: Object) -> None:
        if meta(claim).get("deletionTimestamp") and not (claim.get("spec") or {}).get("volumeName"):
            return
        if not _has_annotation(claim, ANN_BIND_COMPLETED):
            await self.sync_unbound_claim(claim)
        else:
            await self.sync_bound_claim(claim)

    def _storage_class(self, claim: Mapping[str, Any]) -> Object | None:
        name = claim_class(claim)
        return self.classes.indexer.get(name) if name else None

    def _delay_binding(self, claim: Mapping[str, Any]) -> bool:
        storage_class = self._storage_class(claim)
        return bool(storage_class) and \
            storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER  # type: ignore[union-attr]

    def _default_class(self) -> Object | None:
        defaults = [c for c in self.classes.indexer.list() if is_default_class(c)]
        if not defaults:
            return None
        # Several defaults: the newest wins, as upstream's admission picks.
        return max(defaults, key=lambda c: (meta(c).get("creationTimestamp") or "",
                                            meta(c).get("name")))

    async def sync_unbound_claim(self, claim: Object) -> None:
        spec = claim.get("spec") or {}
        if "storageClassName" not in spec or spec.get("storageClassName") is None:
            if ANN_BETA_CLASS not in (meta(claim).get("annotations") or {}) and \
                    await self._assign_default_class(claim):
                return
        volume_name = spec.get("volumeName")
        if not volume_name:
            await self._bind_any(claim)
            return
        volume = self.volumes.indexer.get(volume_name)
        if volume is None:
            await self.update_claim_status(claim, "Pending")
            return
        if not (volume.get("spec") or {}).get("claimRef"):
            reason = check_volume_satisfies_claim(volume, claim)
            if reason is not None:
                self._event(claim, WARNING, "VolumeMismatch",
                            f"Cannot bind to requested volume \"{volume_name}\": {reason}")
                await self.update_claim_status(claim, "Pending")
                return
            await self.bind(volume, claim)
        elif is_volume_bound_to_claim(volume, claim):
            await self.bind(volume, claim)
        elif not _has_annotation(claim, ANN_BOUND_BY_CONTROLLER):
            await self.update_claim_status(claim, "Pending")  # wait for the volume to be free
        else:
            raise RuntimeError(f"invalid binding of claim {object_key(claim)} to volume "
                               f"{volume_name}: volume already claimed by "
                               f"{volume['spec']['claimRef'].get('namespace')}/"
                               f"{volume['spec']['claimRef'].get('name')}")

    async def _assign_default_class(self, claim: Object) -> bool:
        """Retroactive default class: a claim that names no class gets the default one."""
        default = self._default_class()
        if default is None:
            return False
        try:
            await self.client.patch("v1", "persistentvolumeclaims", meta(claim)["name"],
                                    {"metadata": {"uid": meta(claim).get("uid")},
                                     "spec": {"storageClassName": meta(default)["name"]}},
                                    namespace=meta(claim).get("namespace"))
        except ApiError as e:
            if e.not_found or e.code in (409, 422):
                return True
            raise
        return True

    async def _bind_any(self, claim: Object) -> None:
        delay = self._delay_binding(claim)
        selected = (meta(claim).get("annotations") or {}).get(ANN_SELECTED_NODE)
        node = self.nodes.indexer.get(selected) if selected else None
        candidates = self.volumes.indexer.by_index(VOLUME_CLASS_INDEX, claim_class(claim))
        prebound = [v for v in self.volumes.indexer.by_index(VOLUME_CLAIM_INDEX, object_key(claim))
                    if v not in candidates]
        volume = find_best_match(claim, prebound + candidates, delay_binding=delay, node=node)
        if volume is not None:
            await self.bind(volume, claim)
            return
        if delay and not selected:
            self._event(claim, NORMAL, "WaitForFirstConsumer", MSG_WAIT_FOR_FIRST_CONSUMER)
        elif claim_class(claim):
            await self.provision_claim(claim)
        else:
            self._event(claim, NORMAL, "FailedBinding", MSG_NO_CLASS)
        await self.update_claim_status(claim, "Pending")

    async def provision_claim(self, claim: Object) -> None:
        """Leave the volume to the class's provisioner, saying so on the claim."""
        class_name = claim_class(claim)
        storage_class = self.classes.indexer.get(class_name)
        if storage_class is None:
            self._event(claim, WARNING, "ProvisioningFailed",
                        f"storageclass.storage.k8s.io \"{class_name}\" not found")
            return
        provisioner = storage_class.get("provisioner") or ""
        if provisioner == NO_PROVISIONER:
            return
        annotations = meta(claim).get("annotations") or {}
        if annotations.get(ANN_STORAGE_PROVISIONER) != provisioner or \
                annotations.get(ANN_BETA_STORAGE_PROVISIONER) != provisioner:
            try:
                claim = await self.client.patch(
                    "v1", "persistentvolumeclaims", meta(claim)["name"],
                    {"metadata": {"uid": meta(claim).get("uid"),
                                  "annotations": {ANN_STORAGE_PROVISIONER: provisioner,
                                                  ANN_BETA_STORAGE_PROVISIONER: provisioner}}},
                    namespace=meta(claim).get("namespace"))
            except ApiError as e:
                if e.not_found or e.code in (409, 422):
                    return
                raise
        self._event(claim, NORMAL, "ExternalProvisioning",
                    f"Waiting for a volume to be created either by the external provisioner "
                    f"'{provisioner}' or manually by the system administrator. If volume creation "
                    f"is delayed, please verify that the provisioner is running and correctly "
                    f"registered.")

    async def sync_bound_claim(self, claim: Object) -> None:
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            await self.update_claim_status(claim, "Lost")
            self._event(claim, WARNING, "ClaimLost",
                        "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
            return
        volume = self.volumes.indexer.get(volume_name)
        if volume is None:
            try:
                volume = await self.client.get("v1", "persistentvolumes", volume_name)
            except ApiError as e:
                if not e.not_found:
                    raise
                await self.update_claim_status(claim, "Lost")
                self._event(claim, WARNING, "ClaimLost",
                            "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
                return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or is_volume_bound_to_claim(volume, claim):
            await self.bind(volume, claim)
            return
        await self.update_claim_status(claim, "Lost")
        self._event(claim, WARNING, "ClaimMisbound",
                    "Two claims are bound to the same volume, this one is bound incorrectly")

    # -- binding -------------------------------------------------------------------------------
    async def bind(self, volume: Object, claim: Object) -> None:
        """Volume's claimRef, volume phase, claim's volumeName, claim status — each written
        only when it is not already so."""
        volume = await self._bind_volume_to_claim(volume, claim)
        volume = await self.update_volume_phase(volume, "Bound")
        claim = await self._bind_claim_to_volume(claim, volume)
        await self.update_claim_status(claim, "Bound", volume)

    async def _bind_volume_to_claim(self, volume: Object, claim: Object) -> Object:
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        claim_meta = meta(claim)
        wanted = {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                  "namespace": claim_meta.get("namespace"), "name": claim_meta["name"],
                  "uid": claim_meta.get("uid"),
                  "resourceVersion": claim_meta.get("resourceVersion")}
        if ref.get("uid") == wanted["uid"] and ref.get("name") == wanted["name"] and \
                ref.get("namespace") == wanted["namespace"]:
            return volume
        volume = copy.deepcopy(volume)
        if not ref:
            _set_annotation(volume, ANN_BOUND_BY_CONTROLLER, "yes")
        volume["spec"]["claimRef"] = {**ref, **wanted}
        return await self.client.update("v1", "persistentvolumes", volume)

    async def _bind_claim_to_volume(self, claim: Object, volume: Object) -> Object:
        spec = claim.get("spec") or {}
        annotations = meta(claim).get("annotations") or {}
        if spec.get("volumeName") == meta(volume)["name"] and \
                annotations.get(ANN_BIND_COMPLETED) == "yes":
            return claim
        claim = copy.deepcopy(claim)
        if spec.get("volumeName") != meta(volume)["name"]:
            claim["spec"]["volumeName"] = meta(volume)["name"]
            _set_annotation(claim, ANN_BOUND_BY_CONTROLLER, "yes")
        _set_annotation(claim, ANN_BIND_COMPLETED, "yes")
        return await self.client.update("v1", "persistentvolumeclaims", claim)

    async def update_claim_status(self, claim: Object, phase: str,
                                  volume: Object | None = None) -> Object:
        status = claim.get("status") or {}
        wanted: Object = {"phase": phase}
        if volume is not None:
            wanted["accessModes"] = copy.deepcopy((volume.get("spec") or {}).get("accessModes"))
            wanted["capacity"] = copy.deepcopy((volume.get("spec") or {}).get("capacity"))
        if all(status.get(k) == v for k, v in wanted.items()):
            return claim
        claim = copy.deepcopy(claim)
        claim.setdefault("status", {}).update(wanted)
        try:
            return await self.client.update("v1", "persistentvolumeclaims", claim,
                                            subresource="status")
        except ApiError as e:
            if e.not_found:
                return claim
            raise

    async def update_volume_phase(self, volume: Object, phase: str, message: str | None = None) -> Object:
        status = volume.get("status") or {}
        if status.get("phase") == phase and (message is None or status.get("message") == message):
            return volume
        volume = copy.deepcopy(volume)
        volume["status"] = {**status, "phase": phase}
        if message is not None:
            volume["status"]["message"] = message
        else:
            volume["status"].pop("message", None)
        try:
            return await self.client.update("v1", "persistentvolumes", volume,
                                            subresource="status")
        except ApiError as e:
            if e.not_found:
                return volume
            raise

    # -- volumes -------------------------------------------------------------------------------
    async def sync_volume(self, volume: Object) -> None:
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref:
            await self.update_volume_phase(volume, "Available")
            return
        if not ref.get("uid"):
            # Pre-bound by a user (or the scheduler) to a claim that will bind to it.
            await self.update_volume_phase(volume, "Available")
            return
        claim = await self._claim_of(ref)
        if claim is None:
            await self._released(volume)
            return
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            return  # binding in progress; the claim's sync finishes it
        if volume_name == meta(volume)["name"]:
            await self.update_volume_phase(volume, "Bound")
            return
        # The claim went to another volume.
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        if _has_annotation(volume, ANN_DYNAMICALLY_PROVISIONED) and policy == "Delete":
            await self._released(volume)  # made for that claim and no longer needed
        elif _has_annotation(volume, ANN_BOUND_BY_CONTROLLER):
            await self.unbind_volume(volume)
        # else a user pointed it at that claim: leave it be

    async def _claim_of(self, ref: Mapping[str, Any]) -> Object | None:
        """The claim a volume is bound to, looked up in the API when the cache lacks it (the
        cache may not have seen a claim that was just made)."""
        key = f"{ref.get('namespace')}/{ref.get('name')}"
        claim = self.claims.indexer.get(key)
        if claim is None:
            try:
                claim = await self.client.get("v1", "persistentvolumeclaims", ref.get("name"),
                                              namespace=ref.get("namespace"))
            except ApiError as e:
                if not e.not_found:
                    raise
                return None
        if meta(claim).get("uid") != ref.get("uid"):
            return None
        return claim

    async def unbind_volume(self, volume: Object) -> None:
        volume = copy.deepcopy(volume)
        volume["spec"]["claimRef"] = None
        (volume["metadata"].get("annotations") or {}).pop(ANN_BOUND_BY_CONTROLLER, None)
        volume = await self.client.update("v1", "persistentvolumes", volume)
        await self.update_volume_phase(volume, "Available")

    async def _released(self, volume: Object) -> None:
        phase = (volume.get("status") or {}).get("phase")
        if phase not in ("Released", "Failed"):
            volume = await self.update_volume_phase(volume, "Released")
        await self.reclaim_volume(volume)

    async def reclaim_volume(self, volume: Object) -> None:
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if (volume.get("status") or {}).get("phase") == "Failed":
            return
        if policy == "Retain":
            return
        if policy == "Recycle":
            await self.update_volume_phase(volume, "Failed", "Recycle is not supported")
            self._event(volume, WARNING, "VolumeFailedRecycle",
                        "No recycler plugin found for the volume!")
            return
        if policy != "Delete":
            await self.update_volume_phase(volume, "Failed",
                                           "Volume has unrecognized PersistentVolumeReclaimPolicy")
            self._event(volume, WARNING, "VolumeUnknownReclaimPolicy",
                        "Volume has unrecognized PersistentVolumeReclaimPolicy")
            return
        provisioner = (meta(volume).get("annotations") or {}).get(ANN_DYNAMICALLY_PROVISIONED)
        if provisioner:
            return  # its provisioner deletes what it made
        name = meta(volume)["name"]
        log.info("%s: deleting released volume %s", self.name, name)
        try:
            await self.client.delete("v1", "persistentvolumes", name,
                                     preconditions=Preconditions(uid=meta(volume).get("uid")))
        except ApiError as e:
            if e.not_found:
                return
            if e.code == 409:
                return
            self._event(volume, WARNING, "VolumeFailedDelete", e.message)
            raise

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        kind = "PersistentVolume" if "namespace" not in meta(obj) else "PersistentVolumeClaim"
        self.recorder.event({"apiVersion": "v1", "kind": kind, **obj}, type_, reason, message)
