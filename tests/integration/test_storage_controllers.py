"""The PersistentVolume controller and the local-path provisioner against a real API server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.client.informer import InformerFactory
from sampan.controllers.localpath import LocalPathProvisioner
from sampan.controllers.persistentvolume import PersistentVolumeController
from tests.integration.helpers import eventually, exists, new_namespace
from tests.integration.test_node_controllers import running

TIMEOUT = 45.0


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


def volume(name: str, size: str, storage_class: str, policy: str = "Retain") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": storage_class, "persistentVolumeReclaimPolicy": policy,
                     "hostPath": {"path": f"/tmp/{name}"}}}


def claim(name: str, size: str, storage_class: str,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "resources": {"requests": {"storage": size}}}}


async def phase(client: Client, resource: str, name: str, namespace: str | None = None) -> str | None:
    try:
        obj = await client.get("v1", resource, name, namespace=namespace)
    except ApiError as e:
        if e.not_found:
            return None
        raise
    return (obj.get("status") or {}).get("phase")


async def test_claim_binds_to_the_smallest_matching_volume(client: Client) -> None:
    suffix = uuid.uuid4().hex[:6]
    storage_class = f"manual-{suffix}"
    big, small, other = f"big-{suffix}", f"small-{suffix}", f"other-{suffix}"
    await client.create("v1", "persistentvolumes", volume(big, "10Gi", storage_class))
    await client.create("v1", "persistentvolumes", volume(small, "1Gi", storage_class, "Delete"))
    await client.create("v1", "persistentvolumes", volume(other, "1Gi", "elsewhere"))
    namespace = await new_namespace(client, "pv")
    try:
        async with running(client, PersistentVolumeController):
            await client.create("v1", "persistentvolumeclaims",
                                claim("data", "500Mi", storage_class), namespace=namespace)

            async def bound() -> bool:
                return await phase(client, "persistentvolumeclaims", "data", namespace) == "Bound" \
                    and await phase(client, "persistentvolumes", small) == "Bound"
            await eventually(bound, TIMEOUT, "claim bound")
            pvc = await client.get("v1", "persistentvolumeclaims", "data", namespace=namespace)
            pv = await client.get("v1", "persistentvolumes", small)
            assert pvc["spec"]["volumeName"] == small
            assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
            assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
            assert pvc["status"]["capacity"] == {"storage": "1Gi"}
            assert pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
            assert await phase(client, "persistentvolumes", big) == "Available"

            # A claim that names its volume gets exactly that one.
            await client.create("v1", "persistentvolumeclaims",
                                {**claim("named", "1Gi", storage_class),
                                 "spec": {**claim("named", "1Gi", storage_class)["spec"],
                                          "volumeName": big}}, namespace=namespace)
            await eventually(lambda: _is(phase(client, "persistentvolumes", big), "Bound"),
                             TIMEOUT, "named volume bound")

            # Released: Delete removes the volume, Retain keeps it Released.
            await client.delete("v1", "persistentvolumeclaims", "data", namespace=namespace)
            await eventually(lambda: _gone(client, small), TIMEOUT, "Delete volume removed")
            await client.delete("v1", "persistentvolumeclaims", "named", namespace=namespace)
            await eventually(lambda: _is(phase(client, "persistentvolumes", big), "Released"),
                             TIMEOUT, "Retain volume released")
    finally:
        for name in (big, small, other):
            with contextlib.suppress(ApiError):
                await client.delete("v1", "persistentvolumes", name)


async def _is(value_coro, expected: str) -> bool:
    return await value_coro == expected


async def _gone(client: Client, name: str) -> bool:
    return not await exists(client, "v1", "persistentvolumes", name)


async def test_local_path_claim_gets_a_volume_on_the_selected_node(client: Client) -> None:
    node = f"lp-{uuid.uuid4().hex[:6]}"
    await client.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": node, "labels": {"kubernetes.io/hostname": node}}})
    namespace = await new_namespace(client, "lp")

    def provisioner(c: Client, i: InformerFactory) -> LocalPathProvisioner:
        return LocalPathProvisioner(c, i, base_dir="/srv/sampan-test")
    try:
        async with running(client, PersistentVolumeController, provisioner):
            async def default_class() -> bool:
                return await exists(client, "storage.k8s.io/v1", "storageclasses", "local-path")
            await eventually(default_class, TIMEOUT, "local-path StorageClass")
            storage_class = await client.get("storage.k8s.io/v1", "storageclasses", "local-path")
            assert storage_class["provisioner"] == "rancher.io/local-path"
            assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
            assert storage_class["metadata"]["annotations"][
                "storageclass.kubernetes.io/is-default-class"] == "true"

            # No node chosen yet: the claim waits.
            await client.create("v1", "persistentvolumeclaims", claim("waiting", "1Gi", "local-path"),
                                namespace=namespace)

            async def waits() -> bool:
                listed = await client.list("v1", "events", namespace=namespace)
                return any(e["reason"] == "WaitForFirstConsumer" and e["message"] ==
                           "waiting for first consumer to be created before binding"
                           for e in listed["items"])
            await eventually(waits, TIMEOUT, "WaitForFirstConsumer event")

            await client.create("v1", "persistentvolumeclaims",
                                claim("data", "2Gi", "local-path",
                                      {"volume.kubernetes.io/selected-node": node}),
                                namespace=namespace)
            await eventually(lambda: _is(phase(client, "persistentvolumeclaims", "data", namespace),
                                         "Bound"), TIMEOUT, "local-path claim bound")
            pvc = await client.get("v1", "persistentvolumeclaims", "data", namespace=namespace)
            uid = pvc["metadata"]["uid"]
            assert pvc["spec"]["volumeName"] == f"pvc-{uid}"
            assert pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == \
                "rancher.io/local-path"
            pv = await client.get("v1", "persistentvolumes", f"pvc-{uid}")
            assert pv["spec"]["hostPath"]["path"] == f"/srv/sampan-test/pvc-{uid}_{namespace}_data"
            assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0][
                "matchExpressions"][0]["values"] == [node]
            assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == \
                "rancher.io/local-path"
            assert pv["status"]["phase"] == "Bound"

            await client.delete("v1", "persistentvolumeclaims", "data", namespace=namespace)
            await eventually(lambda: _gone(client, f"pvc-{uid}"), TIMEOUT, "volume reclaimed")
    finally:
        with contextlib.suppress(ApiError):
            await client.delete("v1", "nodes", node)
