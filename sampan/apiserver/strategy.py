"""Per-kind behaviour of the generic REST storage, as upstream's ``rest.RESTCreateStrategy``
and friends give it: what a create resets, what an update keeps, when ``generation`` moves,
and which fields each of the main resource and its ``status`` subresource may change."""

from __future__ import annotations

import copy
from typing import Any

from sampan.api.registry import Resource
from sampan.apiserver.rest import now_rfc3339

DAEMONSET_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"

# Kinds whose objects carry a spec that ``metadata.generation`` tracks.
_NO_GENERATION = frozenset({
    "ConfigMap", "Secret", "Event", "Endpoints", "EndpointSlice", "ServiceAccount", "Lease",
    "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "LimitRange", "Binding",
    "ControllerRevision", "PodTemplate", "StorageClass", "PriorityClass", "Node", "Namespace",
    "Service", "ComponentStatus", "IngressClass",
})

# Kinds that may be created by an update (PUT) of a missing object (AllowCreateOnUpdate).
_CREATE_ON_UPDATE = frozenset({"Endpoints", "Lease", "Event", "EndpointSlice", "Node"})

_SPEC_EXCLUDED = ("metadata", "status", "apiVersion", "kind")


def tracks_generation(resource: Resource) -> bool:
    if resource.crd is not None:
        return True
    return resource.kind not in _NO_GENERATION


def allow_create_on_update(resource: Resource) -> bool:
    return resource.kind in _CREATE_ON_UPDATE


def has_status(resource: Resource) -> bool:
    return "status" in resource.subresources


def _spec_view(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _SPEC_EXCLUDED}


def prepare_for_create(resource: Resource, obj: dict[str, Any]) -> None:
    """Reset what a client may not set on create."""
    meta = obj["metadata"]
    if has_status(resource) and resource.kind not in ("Namespace", "Node"):
        obj.pop("status", None)
    if tracks_generation(resource):
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    if resource.kind == "Pod":
        _pod_initial_status(obj)
    elif resource.kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif resource.kind == "PersistentVolumeClaim":
        obj["status"] = {"phase": "Pending"}
    elif resource.kind == "PersistentVolume":
        obj["status"] = {"phase": "Pending"}
    elif resource.kind in ("Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"):
        obj["status"] = {}
    elif resource.kind == "DaemonSet" and resource.group == "apps":
        obj["status"] = {}
        meta.setdefault("annotations", {})[DAEMONSET_TEMPLATE_GENERATION] = "1"
    elif resource.kind == "Service":
        obj.setdefault("status", {"loadBalancer": {}})
    elif resource.kind == "Job" and resource.group == "batch":
        _job_selector(obj)
        obj["status"] = {}
    elif resource.kind == "CustomResourceDefinition":
        versions = (obj.get("spec") or {}).get("versions") or []
        stored = [v.get("name") for v in versions if v.get("storage")]
        obj["status"] = {"storedVersions": stored, "conditions": [],
                         "acceptedNames": {"plural": "", "kind": ""}}


def prepare_for_update(resource: Resource, obj: dict[str, Any], old: dict[str, Any]) -> None:
    """An update of the main resource keeps the old status when status is a subresource, and
    bumps ``generation`` when the spec changed."""
    if has_status(resource):
        if "status" in old:
            obj["status"] = copy.deepcopy(old["status"])
        else:
            obj.pop("status", None)
    meta, old_meta = obj["metadata"], old["metadata"]
    if tracks_generation(resource):
        generation = old_meta.get("generation", 1)
        if _spec_view(obj) != _spec_view(old):
            generation += 1
        meta["generation"] = generation
    elif "generation" in old_meta:
        meta["generation"] = old_meta["generation"]
    else:
        meta.pop("generation", None)
    if resource.kind == "DaemonSet" and resource.group == "apps":
        _daemonset_template_generation(obj, old)


def _daemonset_template_generation(obj: dict[str, Any], old: dict[str, Any]) -> None:
    """DaemonSets count template changes in an annotation (upstream's ``templateGeneration``,
    which apps/v1 keeps as ``deprecated.daemonset.template.generation``)."""
    old_annotations = old["metadata"].get("annotations") or {}
    try:
        generation = int(old_annotations.get(DAEMONSET_TEMPLATE_GENERATION, "1"))
    except ValueError:
        generation = 1
    if (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
        generation += 1
    obj["metadata"].setdefault("annotations", {})[DAEMONSET_TEMPLATE_GENERATION] = str(generation)


def prepare_for_status_update(obj: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A status update changes status and metadata, never spec, and keeps the labels, as
    upstream's status strategies reset them."""
    new = {k: copy.deepcopy(v) for k, v in old.items() if k not in ("status", "metadata")}
    if "status" in obj:
        new["status"] = obj["status"]
    meta = dict(obj.get("metadata") or {})
    if "labels" in old["metadata"]:
        meta["labels"] = copy.deepcopy(old["metadata"]["labels"])
    else:
        meta.pop("labels", None)
    new["metadata"] = meta
    return new


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _job_selector(job: dict[str, Any]) -> None:
    """Unless ``manualSelector`` is set, a Job selects its pods by its own uid, and its
    template carries the labels, as upstream's Job strategy generates them."""
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    uid, name = job["metadata"]["uid"], job["metadata"]["name"]
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.get("labels") or {}
    labels.update({JOB_UID_LABEL: uid, JOB_NAME_LABEL: name, "controller-uid": uid,
                   "job-name": name})
    template_meta["labels"] = labels
    spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}


def _pod_initial_status(pod: dict[str, Any]) -> None:
    spec = pod.get("spec") or {}
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    if spec.get("schedulingGates"):
        pod["status"]["conditions"] = [{
            "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
            "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}]


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, as upstream computes a pod's QoS class."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests: dict[str, bool] = {}
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for name in ("cpu", "memory"):
            if name in req or name in lim:
                any_set = True
            if name not in lim or (name in req and str(req[name]) != str(lim[name])):
                guaranteed = False
        requests.update({k: True for k in req})
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
