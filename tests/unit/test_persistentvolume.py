"""Volume matching and binding (the PersistentVolume controller) and the local-path
provisioner's volumes, with fake clients."""

from __future__ import annotations

import copy
from typing import Any

from sampan.client.errors import ApiError
from sampan.client.informer import InformerFactory
from sampan.controllers.localpath import LocalPathProvisioner, build_volume, default_storage_class, \
    volume_path
from sampan.controllers.persistentvolume import (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    PersistentVolumeController,
    check_volume_satisfies_claim,
    find_best_match,
    node_selector_matches,
)


def pv(name: str, size: str, *, cls: str = "", modes: tuple[str, ...] = ("ReadWriteOnce",),
       phase: str = "Available", labels: dict[str, str] | None = None,
       claim_ref: dict[str, Any] | None = None, policy: str = "Retain",
       node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": list(modes),
                            "storageClassName": cls, "persistentVolumeReclaimPolicy": policy,
                            "hostPath": {"path": "/tmp/" + name}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    if node:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "uid": "pv-" + name, "resourceVersion": "1",
                         "labels": labels or {}},
            "spec": spec, "status": {"phase": phase}}


def pvc(name: str, size: str, *, cls: str | None = "", modes: tuple[str, ...] = ("ReadWriteOnce",),
        selector: dict[str, Any] | None = None, volume_name: str | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": list(modes),
                            "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if selector:
        spec["selector"] = selector
    if volume_name:
        spec["volumeName"] = volume_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "ns", "uid": "pvc-" + name,
                         "resourceVersion": "1", "annotations": annotations or {}},
            "spec": spec, "status": {"phase": "Pending"}}


def test_smallest_fitting_volume_wins() -> None:
    volumes = [pv("big", "10Gi"), pv("small", "1Gi"), pv("tiny", "500Mi"), pv("rwx", "2Gi",
               modes=("ReadWriteMany",)), pv("other-class", "1Gi", cls="fast"),
               pv("bound", "1Gi", phase="Bound", claim_ref={"name": "x", "namespace": "ns"})]
    claim = pvc("c", "1G")
    assert find_best_match(claim, volumes, delay_binding=False, node=None)["metadata"]["name"] == "small"
    claim = pvc("c", "1Gi", modes=("ReadWriteMany",))
    assert find_best_match(claim, volumes, delay_binding=False, node=None)["metadata"]["name"] == "rwx"
    assert find_best_match(pvc("c", "20Gi"), volumes, delay_binding=False, node=None) is None


def test_selector_prebinding_and_delayed_binding() -> None:
    labelled = pv("labelled", "5Gi", labels={"tier": "gold"})
    volumes = [pv("plain", "1Gi"), labelled]
    claim = pvc("c", "1Gi", selector={"matchLabels": {"tier": "gold"}})
    assert find_best_match(claim, volumes, delay_binding=False, node=None) is labelled
    prebound = pv("mine", "5Gi", claim_ref={"name": "c", "namespace": "ns"})
    assert find_best_match(pvc("c", "1Gi"), volumes + [prebound], delay_binding=True,
                           node=None) is prebound
    # Without a node, a WaitForFirstConsumer claim only takes a volume pre-bound to it.
    assert find_best_match(pvc("c", "1Gi"), volumes, delay_binding=True, node=None) is None
    node_a = {"metadata": {"name": "a", "labels": {"kubernetes.io/hostname": "a"}}}
    local = [pv("on-b", "1Gi", node="b"), pv("on-a", "2Gi", node="a")]
    assert find_best_match(pvc("c", "1Gi"), local, delay_binding=True,
                           node=node_a)["metadata"]["name"] == "on-a"


def test_node_selector_and_claim_checks() -> None:
    node = {"metadata": {"name": "n1", "labels": {"zone": "z1", "size": "5"}}}
    term = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In",
                                                        "values": ["z1"]},
                                                       {"key": "size", "operator": "Gt",
                                                        "values": ["3"]}]}]}
    assert node_selector_matches(term, node)
    assert not node_selector_matches({"nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}, node)
    assert check_volume_satisfies_claim(pv("v", "1Gi"), pvc("c", "2Gi")) == "requested PV is too small"
    assert check_volume_satisfies_claim(pv("v", "1Gi", cls="x"), pvc("c", "1Gi")) == \
        "storageClassName does not match"
    assert check_volume_satisfies_claim(pv("v", "1Gi"), pvc("c", "1Gi")) is None


class FakeClient:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, str | None, dict[str, Any]]] = []

    async def update(self, api_version: str, resource: str, body: dict[str, Any], *,
                     namespace: str | None = None, subresource: str | None = None) -> dict[str, Any]:
        self.writes.append(("update", resource, subresource, copy.deepcopy(body)))
        return copy.deepcopy(body)

    async def patch(self, api_version: str, resource: str, name: str, patch: Any,
                    **kwargs: Any) -> dict[str, Any]:
        self.writes.append(("patch", resource, kwargs.get("subresource"), copy.deepcopy(patch)))
        return {"metadata": {"name": name, "annotations": patch["metadata"].get("annotations")}}

    async def get(self, api_version: str, resource: str, name: str, **_: Any) -> dict[str, Any]:
        raise ApiError({"code": 404, "reason": "NotFound", "message": f"{name} not found"})

    async def delete(self, api_version: str, resource: str, name: str, **_: Any) -> dict[str, Any]:
        self.writes.append(("delete", resource, None, {"name": name}))
        return {}

    async def create(self, api_version: str, resource: str, body: dict[str, Any],
                     **_: Any) -> dict[str, Any]:
        self.writes.append(("create", resource, None, copy.deepcopy(body)))
        return body


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))


def _pv_controller() -> tuple[PersistentVolumeController, FakeClient, FakeRecorder]:
    client, recorder = FakeClient(), FakeRecorder()
    return (PersistentVolumeController(client, InformerFactory(client), recorder=recorder),
            client, recorder)


async def test_binding_writes_volume_then_claim_with_annotations() -> None:
    controller, client, _ = _pv_controller()
    controller.volumes.indexer.upsert(pv("v1", "1Gi"))
    claim = pvc("c", "1Gi")
    controller.claims.indexer.upsert(claim)
    await controller.sync_claim(claim)
    kinds = [(w[0], w[1], w[2]) for w in client.writes]
    assert kinds == [("update", "persistentvolumes", None), ("update", "persistentvolumes", "status"),
                     ("update", "persistentvolumeclaims", None),
                     ("update", "persistentvolumeclaims", "status")]
    volume = client.writes[0][3]
    assert volume["spec"]["claimRef"]["uid"] == "pvc-c"
    assert volume["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER] == "yes"
    assert client.writes[1][3]["status"]["phase"] == "Bound"
    bound_claim = client.writes[2][3]
    assert bound_claim["spec"]["volumeName"] == "v1"
    assert bound_claim["metadata"]["annotations"][ANN_BIND_COMPLETED] == "yes"
    assert client.writes[3][3]["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                             "capacity": {"storage": "1Gi"}}


async def test_wait_for_first_consumer_and_external_provisioning() -> None:
    controller, client, recorder = _pv_controller()
    controller.classes.indexer.upsert(default_storage_class())
    claim = pvc("c", "1Gi", cls="local-path")
    await controller.sync_claim(claim)
    assert recorder.events[0] == ("c", "WaitForFirstConsumer",
                                  "waiting for first consumer to be created before binding")
    selected = pvc("c", "1Gi", cls="local-path", annotations={ANN_SELECTED_NODE: "n1"})
    await controller.sync_claim(selected)
    patch = [w for w in client.writes if w[0] == "patch"][0][3]
    assert patch["metadata"]["annotations"][ANN_STORAGE_PROVISIONER] == "rancher.io/local-path"
    assert recorder.events[-1][1] == "ExternalProvisioning"
    assert "external provisioner 'rancher.io/local-path'" in recorder.events[-1][2]


async def test_claim_without_class_gets_the_default_class() -> None:
    controller, client, _ = _pv_controller()
    controller.classes.indexer.upsert(default_storage_class())
    await controller.sync_claim(pvc("c", "1Gi", cls=None))
    assert client.writes[0][3]["spec"] == {"storageClassName": "local-path"}


async def test_released_volumes_follow_their_reclaim_policy() -> None:
    controller, client, _ = _pv_controller()
    gone = {"name": "c", "namespace": "ns", "uid": "old-uid"}
    retained = pv("keep", "1Gi", phase="Bound", claim_ref=gone)
    await controller.sync_volume(retained)
    assert client.writes[-1][3]["status"]["phase"] == "Released"
    assert not any(w[0] == "delete" for w in client.writes)

    controller.claims.indexer.upsert(pvc("c", "1Gi"))  # a namesake with another uid
    deleted = pv("drop", "1Gi", phase="Released", claim_ref=gone, policy="Delete")
    await controller.sync_volume(deleted)
    assert client.writes[-1] == ("delete", "persistentvolumes", None, {"name": "drop"})


async def test_local_path_provisions_on_the_selected_node() -> None:
    client, recorder = FakeClient(), FakeRecorder()
    provisioner = LocalPathProvisioner(client, InformerFactory(client), recorder=recorder,
                                       base_dir="/data")
    provisioner.classes.indexer.upsert(default_storage_class())
    claim = pvc("data", "2Gi", cls="local-path",
                annotations={ANN_SELECTED_NODE: "n1", ANN_STORAGE_PROVISIONER: "rancher.io/local-path"})
    await provisioner.provision(claim)
    created = client.writes[0][3]
    assert created["metadata"]["name"] == "pvc-pvc-data"
    assert created["spec"]["hostPath"]["path"] == "/data/pvc-pvc-data_ns_data"
    assert created["spec"]["claimRef"]["uid"] == "pvc-data"
    assert created["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert created["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0][
        "matchExpressions"][0]["values"] == ["n1"]
    assert [e[1] for e in recorder.events] == ["Provisioning", "ProvisioningSucceeded"]

    rwx = pvc("shared", "1Gi", cls="local-path", modes=("ReadWriteMany",),
              annotations={ANN_SELECTED_NODE: "n1", ANN_STORAGE_PROVISIONER: "rancher.io/local-path"})
    await provisioner.provision(rwx)
    assert recorder.events[-1][1] == "ProvisioningFailed"


def test_volume_path_and_hostname_label() -> None:
    claim = pvc("c", "1Gi")
    assert volume_path("/var/lib/sampan/storage", claim) == \
        "/var/lib/sampan/storage/pvc-pvc-c_ns_c"
    node = {"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "host-1"}}}
    volume = build_volume(claim, default_storage_class(), node, "n1", "/x")
    assert volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0][
        "matchExpressions"][0]["values"] == ["host-1"]
