"""VolumeBinding: a pod's PersistentVolumeClaims must be satisfiable on the node.

Bound claims: the PersistentVolume's node affinity must match. Unbound claims of a
WaitForFirstConsumer class: a matching available volume, or a provisioner, must exist; in
pre-bind the scheduler names the node on the claim (``volume.kubernetes.io/selected-node``)
or reserves the volume (``claimRef``) and waits for the claim to be bound. Unbound claims of
an Immediate class make the pod unschedulable until the binder binds them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sampan.client.errors import ApiError
from sampan.scheduler.cache import Cache, NodeInfo, PodInfo, quantity_value
from sampan.scheduler.framework import (SKIP, SUCCESS, CycleState, NodeFilterPlugin,
                                        PreBindPlugin, PreFilterPlugin, ReservePlugin, Status)
from sampan.scheduler.plugins.helpers import node_selector_matches

ERR_REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
ERR_REASON_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_REASON_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
BIND_TIMEOUT = 600.0
_STATE = "VolumeBinding"


def claim_names(pod: PodInfo) -> list[str]:
    names = []
    for volume in pod.spec.get("volumes") or []:
        if volume.get("persistentVolumeClaim"):
            names.append(volume["persistentVolumeClaim"].get("claimName", ""))
        elif volume.get("ephemeral"):
            names.append(f"{pod.name}-{volume.get('name', '')}")
    return names


def _storage(obj: dict[str, Any], *path: str) -> int:
    for key in path:
        obj = (obj or {}).get(key) or {}
    return quantity_value(obj.get("storage", 0)) if isinstance(obj, dict) else 0


class VolumeBinding(PreFilterPlugin, NodeFilterPlugin, ReservePlugin, PreBindPlugin):
    name = "VolumeBinding"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self.bind_timeout = float(self.args.get("bindTimeoutSeconds", BIND_TIMEOUT))

    def _get(self, resource: str, key: str) -> dict[str, Any] | None:
        lister = self.handle.listers.get(resource)
        return lister.get(key) if lister is not None else None

    def _list(self, resource: str) -> list[dict[str, Any]]:
        lister = self.handle.listers.get(resource)
        return lister.list() if lister is not None else []

    def _class_of(self, claim: dict[str, Any]) -> dict[str, Any] | None:
        name = (claim.get("spec") or {}).get("storageClassName")
        return self._get("storageclasses", name) if name else None

    # -- pre-filter / filter ---------------------------------------------------------------
    def pre_filter(self, state: CycleState, pod: PodInfo, cache: Cache) -> Status:
        names = claim_names(pod)
        if not names:
            return SKIP
        bound, delayed = [], []
        for name in names:
            claim = self._get("persistentvolumeclaims", f"{pod.namespace}/{name}")
            if claim is None:
                return Status.unresolvable(f'persistentvolumeclaim "{name}" not found')
            if (claim.get("metadata") or {}).get("deletionTimestamp"):
                return Status.unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            volume_name = (claim.get("spec") or {}).get("volumeName")
            if volume_name:
                bound.append((claim, self._get("persistentvolumes", volume_name)))
                continue
            storage_class = self._class_of(claim)
            if (storage_class or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
                return Status.unresolvable(ERR_REASON_UNBOUND_IMMEDIATE)
            delayed.append((claim, storage_class))
        state[_STATE] = {"bound": bound, "delayed": delayed, "decisions": {}}
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        data = state[_STATE]
        for _, volume in data["bound"]:
            affinity = ((volume or {}).get("spec") or {}).get("nodeAffinity") or {}
            if not node_selector_matches(affinity.get("required"), node):
                return Status.unresolvable(ERR_REASON_NODE_CONFLICT)
        decisions = []
        taken: set[str] = set()
        for claim, storage_class in data["delayed"]:
            volume = self._find_volume(claim, node, taken)
            if volume is not None:
                taken.add(volume["metadata"]["name"])
                decisions.append((claim, volume))
            elif (storage_class or {}).get("provisioner", NO_PROVISIONER) != NO_PROVISIONER:
                decisions.append((claim, None))
            else:
                return Status.unresolvable(ERR_REASON_BIND_CONFLICT)
        data["decisions"][node.name] = decisions
        return SUCCESS

    def _find_volume(self, claim: dict[str, Any], node: NodeInfo,
                     taken: set[str]) -> dict[str, Any] | None:
        spec = claim.get("spec") or {}
        want = _storage(spec, "resources", "requests")
        modes = set(spec.get("accessModes") or [])
        best = None
        for volume in self._list("persistentvolumes"):
            v = volume.get("spec") or {}
            if (volume["metadata"]["name"] in taken or v.get("claimRef")
                    or (volume.get("status") or {}).get("phase", "Available") != "Available"
                    or (v.get("storageClassName") or "") != (spec.get("storageClassName") or "")
                    or not modes <= set(v.get("accessModes") or [])):
                continue
            size = _storage(v, "capacity")
            if size < want:
                continue
            if not node_selector_matches((v.get("nodeAffinity") or {}).get("required"), node):
                continue
            if best is None or size < _storage(best["spec"], "capacity"):
                best = volume
        return best

    # -- reserve / pre-bind ----------------------------------------------------------------
    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        data = state.get(_STATE)
        if data is not None:
            data["chosen"] = data["decisions"].get(node_name, [])
        return SUCCESS

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        data = state.get(_STATE)
        if not data or not data.get("chosen"):
            return SUCCESS
        client = self.handle.client
        try:
            for claim, volume in data["chosen"]:
                meta = claim["metadata"]
                if volume is None:
                    await client.patch("v1", "persistentvolumeclaims", meta["name"],
                                       {"metadata": {"annotations": {
                                           SELECTED_NODE_ANNOTATION: node_name}}},
                                       namespace=meta["namespace"])
                else:
                    await client.patch("v1", "persistentvolumes", volume["metadata"]["name"], {
                        "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                              "namespace": meta["namespace"],
                                              "name": meta["name"], "uid": meta.get("uid")}}})
            await self._wait_bound(pod, [c for c, _ in data["chosen"]])
        except ApiError as e:
            return Status.error(f"binding volumes: {e}")
        except TimeoutError:
            return Status.error("binding volumes: timed out waiting for the condition")
        return SUCCESS

    async def _wait_bound(self, pod: PodInfo, claims: list[dict[str, Any]]) -> None:
        async with asyncio.timeout(self.bind_timeout):
            while True:
                pending = []
                for claim in claims:
                    meta = claim["metadata"]
                    current = self._get("persistentvolumeclaims",
                                        f"{meta['namespace']}/{meta['name']}")
                    if current is None:
                        raise ApiError({"kind": "Status", "code": 404, "reason": "NotFound",
                                        "message": f'persistentvolumeclaim "{meta["name"]}" '
                                                   "not found"})
                    if (current.get("status") or {}).get("phase") != "Bound":
                        pending.append(claim)
                if not pending:
                    return
                await asyncio.sleep(0.5)

    def events_to_register(self):
        return ("PersistentVolumeClaim/*", "PersistentVolume/*", "StorageClass/*", "Node/Add",
                "Node/UpdateNodeLabel")
