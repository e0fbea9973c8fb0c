"""Defaulting: the values upstream fills in before an object is validated and stored.

Upstream runs ``SetDefaults_*`` (``pkg/apis/<group>/v1/defaults.go`` plus the ``+default``
markers of the types) every time it decodes an object, so ``apply_defaults`` is meant to run on
every write, after decoding and before validation. A few defaults are create-only upstream (the
Namespace's ``kubernetes`` finalizer is added by the strategy's PrepareForCreate, because it must
be removable later); those follow ``create``.

Like upstream, a field counts as unset when it is absent, null or — for the non-pointer Go
fields — the zero value; set fields are never overwritten.

``apply_schema_defaults`` applies the ``default`` values of a CustomResourceDefinition's
structural schema, as the apiextensions apiserver does on decode and on read.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

from sampan.api.registry import Resource
from sampan.api.validation import (
    aggregate_container_requests,
    is_pod_level_resource,
    round_up_milli,
)

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_FILE_MODE = 0o644  # 420: secret, configMap, downwardAPI and projected volumes
DEFAULT_CLIENT_IP_TIMEOUT = 10800
DEFAULT_HPA_CPU_UTILIZATION = 80


def apply_defaults(obj: dict, resource: Resource, *, create: bool | None = None) -> None:
    """Fill in, in place, the defaults upstream applies to ``resource``'s kind.

    ``create`` says whether the object is being created; when None it is taken to be a create
    exactly when ``metadata.resourceVersion`` is unset (updates must carry one). A custom
    resource (``resource.crd`` set) gets its schema's defaults.
    """
    if not isinstance(obj, dict):
        return
    if resource.crd is not None:
        schema = (resource.crd.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(schema, dict):
            apply_schema_defaults(obj, schema)
        return
    defaulter = (_VERSIONED_DEFAULTERS.get((resource.group, resource.version, resource.kind))
                 or _DEFAULTERS.get((resource.group, resource.kind)))
    if defaulter is not None:
        defaulter(obj)
    on_create = _ON_CREATE.get((resource.group, resource.kind))
    if on_create is not None:
        if create is None:
            create = not _mapping(obj, "metadata").get("resourceVersion")
        if create:
            on_create(obj)


# --------------------------------------------------------------------------------------------
# helpers: a field is unset when absent or null (or, for non-pointer Go fields, zero)


def _dict(obj: dict, key: str) -> dict:
    """The object at ``obj[key]``, created when unset. A value of the wrong type is left for
    validation to report: defaults then go into a detached dict nobody sees."""
    value = obj.get(key)
    if value is None:
        value = obj[key] = {}
    return value if isinstance(value, dict) else {}


def _default(obj: dict, key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = copy.deepcopy(value)


def _default_zero(obj: dict, key: str, value: Any) -> None:
    """A non-pointer Go field: its zero value means unset too."""
    if not obj.get(key):
        obj[key] = copy.deepcopy(value)


def _dicts(obj: Any, key: str) -> Iterator[dict]:
    items = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                yield item


def _mapping(obj: Any, key: str) -> dict:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _sub(obj: Any, *keys: str) -> dict | None:
    """``obj[k1][k2]...`` if each step is an object, else None (nothing is created)."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, dict) else None


# --------------------------------------------------------------------------------------------
# core/v1: pods and pod templates


def image_tag(image: str) -> str:
    """The tag ``parsers.ParseImageName`` finds: "latest" when neither tag nor digest is given."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not tag and not digest:
        return "latest"
    return tag


def _container(c: dict) -> None:
    if not c.get("imagePullPolicy"):
        image = c.get("image") if isinstance(c.get("image"), str) else ""
        c["imagePullPolicy"] = "Always" if image_tag(image) == "latest" else "IfNotPresent"
    _default_zero(c, "terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)
    _default_zero(c, "terminationMessagePolicy", "File")
    for port in _dicts(c, "ports"):
        _default_zero(port, "protocol", "TCP")
    for env in _dicts(c, "env"):
        field_ref = _sub(env, "valueFrom", "fieldRef")
        if field_ref is not None:
            _default_zero(field_ref, "apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(c.get(probe), dict):
            _probe(c[probe])
    for hook in ("postStart", "preStop"):
        handler = _sub(c, "lifecycle", hook)
        if handler is not None:
            _http_get(handler)
    resources = c.get("resources")
    if isinstance(resources, dict):
        for field in ("limits", "requests"):
            if isinstance(resources.get(field), dict):
                _resource_list(resources[field])


def _probe(probe: dict) -> None:
    _default_zero(probe, "timeoutSeconds", 1)
    _default_zero(probe, "periodSeconds", 10)
    _default_zero(probe, "successThreshold", 1)
    _default_zero(probe, "failureThreshold", 3)
    _http_get(probe)


def _http_get(handler: dict) -> None:
    action = handler.get("httpGet")
    if isinstance(action, dict):
        _default_zero(action, "path", "/")
        _default_zero(action, "scheme", "HTTP")


def _resource_list(resources: dict) -> None:
    """``SetDefaults_ResourceList``: round up to milli-units; written in canonical form, as
    upstream serialises quantities."""
    for name, raw in resources.items():
        canonical = round_up_milli(raw)
        if canonical is not None:
            resources[name] = canonical


_VOLUME_SOURCES = frozenset({
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image"})


def _volume(volume: dict) -> None:
    if not any(volume.get(source) is not None for source in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for source in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(volume.get(source), dict):
            _default(volume[source], "defaultMode", DEFAULT_FILE_MODE)
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict):
        _default(host_path, "type", "")
    for item in _dicts(volume.get("downwardAPI"), "items"):
        _field_ref(item)
    for source in _dicts(volume.get("projected"), "sources"):
        token = source.get("serviceAccountToken")
        if isinstance(token, dict):
            _default(token, "expirationSeconds", 3600)
        for item in _dicts(source.get("downwardAPI"), "items"):
            _field_ref(item)
    template = _sub(volume, "ephemeral", "volumeClaimTemplate")
    if template is not None:
        _default(_dict(template, "spec"), "volumeMode", "Filesystem")
    image = volume.get("image")
    if isinstance(image, dict) and not image.get("pullPolicy"):
        reference = image.get("reference") if isinstance(image.get("reference"), str) else ""
        image["pullPolicy"] = "Always" if image_tag(reference) == "latest" else "IfNotPresent"


def _field_ref(item: dict) -> None:
    if isinstance(item.get("fieldRef"), dict):
        _default_zero(item["fieldRef"], "apiVersion", "v1")


def pod_spec_defaults(spec: dict) -> None:
    """``SetDefaults_PodSpec`` and everything below it: what every pod template gets."""
    _default_zero(spec, "dnsPolicy", "ClusterFirst")
    _default_zero(spec, "restartPolicy", "Always")
    _default(spec, "securityContext", {})
    _default(spec, "terminationGracePeriodSeconds", 30)
    _default_zero(spec, "schedulerName", "default-scheduler")
    _mirror_service_account(spec)
    for volume in _dicts(spec, "volumes"):
        _volume(volume)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in _dicts(spec, key):
            _container(c)
    overhead = spec.get("overhead")
    if isinstance(overhead, dict):
        _resource_list(overhead)
    pod_resources = spec.get("resources")
    if isinstance(pod_resources, dict):
        for field in ("limits", "requests"):
            if isinstance(pod_resources.get(field), dict):
                _resource_list(pod_resources[field])


def _mirror_service_account(spec: dict) -> None:
    """The v1 ⇄ internal conversion keeps the deprecated ``serviceAccount`` equal to
    ``serviceAccountName`` (taking it as the name when only it is given). Not defaulting
    upstream, but it happens on every write; rerun after admission sets the account."""
    name, deprecated = spec.get("serviceAccountName"), spec.get("serviceAccount")
    if not name and isinstance(deprecated, str) and deprecated:
        spec["serviceAccountName"] = name = deprecated
    if isinstance(name, str) and name:
        spec["serviceAccount"] = name


def pod_template_defaults(template: Any) -> None:
    if isinstance(template, dict):
        pod_spec_defaults(_dict(template, "spec"))


def _pod(pod: dict) -> None:
    spec = _dict(pod, "spec")
    pod_spec_defaults(spec)
    # SetDefaults_Pod: only real pods, not templates
    for key in ("containers", "initContainers"):
        for c in _dicts(spec, key):
            resources = c.get("resources")
            limits = resources.get("limits") if isinstance(resources, dict) else None
            if isinstance(limits, dict):
                requests = _dict(resources, "requests")
                for name, value in limits.items():
                    requests.setdefault(name, value)
    _pod_level_requests(spec)
    _default(spec, "enableServiceLinks", True)
    if spec.get("hostNetwork") is True:
        for key in ("containers", "initContainers"):
            for c in _dicts(spec, key):
                for port in _dicts(c, "ports"):
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort")


def _pod_level_requests(spec: dict) -> None:
    """``defaultPodRequests``: with pod-level limits set, each missing pod-level request of cpu,
    memory or hugepages becomes what the containers request together, or else the limit."""
    resources = spec.get("resources")
    limits = resources.get("limits") if isinstance(resources, dict) else None
    if not isinstance(limits, dict) or not limits:
        return
    requests = dict(resources.get("requests") or {})
    aggregate = aggregate_container_requests(spec)
    for name, value in [*((n, str(q)) for n, q in aggregate.items()), *limits.items()]:
        if name not in requests and is_pod_level_resource(name):
            requests[name] = value
    if requests:
        resources["requests"] = requests


def _pod_template(obj: dict) -> None:
    pod_template_defaults(obj.get("template"))


def _replication_controller(rc: dict) -> None:
    spec = _dict(rc, "spec")
    template = spec.get("template")
    labels = _sub(template, "metadata", "labels")
    if labels is not None:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        metadata = _dict(rc, "metadata")
        if not metadata.get("labels"):
            metadata["labels"] = dict(labels)
    _default(spec, "replicas", 1)
    pod_template_defaults(template)


# --------------------------------------------------------------------------------------------
# core/v1: everything else


def _is_externally_accessible(spec: dict) -> bool:
    kind = spec.get("type")
    return (kind in ("LoadBalancer", "NodePort")
            or (kind == "ClusterIP" and bool(spec.get("externalIPs"))))


def _service(svc: dict) -> None:
    spec = _dict(svc, "spec")
    _default_zero(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        timeout = _sub(spec, "sessionAffinityConfig", "clientIP")
        if timeout is None or timeout.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {
                "clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_TIMEOUT}}
    _default_zero(spec, "type", "ClusterIP")
    for port in _dicts(spec, "ports"):
        _default_zero(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if _is_externally_accessible(spec):
        _default_zero(spec, "externalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer", "ClusterIP"):
        _default(spec, "internalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        _default(spec, "allocateLoadBalancerNodePorts", True)
        for ingress in _dicts(_sub(svc, "status", "loadBalancer"), "ingress"):
            if ingress.get("ip"):
                _default(ingress, "ipMode", "VIP")
    _service_ip_families(spec)


def _service_ip_families(spec: dict) -> None:
    """What upstream's service REST storage settles before validation (single-stack IPv4
    unless the cluster IP says otherwise): ``clusterIPs`` mirrors ``clusterIP``, and the IP
    family fields are filled in for every type but ExternalName. Allocating the IP is the
    server's job."""
    if spec.get("type") == "ExternalName":
        return
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [cluster_ip]
    _default(spec, "ipFamilyPolicy", "SingleStack")
    if not spec.get("ipFamilies"):
        family = "IPv4"
        if cluster_ip and cluster_ip != "None":
            try:
                family = "IPv6" if ipaddress.ip_address(cluster_ip).version == 6 else "IPv4"
            except ValueError:
                pass
        spec["ipFamilies"] = [family]


def _secret(secret: dict) -> None:
    _default_zero(secret, "type", "Opaque")
    # stringData is write-only: the v1 → internal conversion merges it into data
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _dict(secret, "data")
        for key, value in string_data.items():
            if isinstance(value, str):
                data[key] = base64.b64encode(value.encode()).decode()


def _namespace(ns: dict) -> None:
    metadata = _dict(ns, "metadata")
    name = metadata.get("name")
    if isinstance(name, str) and name:
        _dict(metadata, "labels")["kubernetes.io/metadata.name"] = name
    _default_zero(_dict(ns, "status"), "phase", "Active")


def _namespace_finalizer(ns: dict) -> None:
    """PrepareForCreate, not defaulting: the finalizer must stay removable afterwards."""
    spec = _dict(ns, "spec")
    finalizers = spec.get("finalizers") or []
    if isinstance(finalizers, list) and "kubernetes" not in finalizers:
        spec["finalizers"] = [*finalizers, "kubernetes"]


def _persistent_volume(pv: dict) -> None:
    spec = _dict(pv, "spec")
    _default_zero(spec, "persistentVolumeReclaimPolicy", "Retain")
    _default(spec, "volumeMode", "Filesystem")
    _default_zero(_dict(pv, "status"), "phase", "Pending")


def _persistent_volume_claim(pvc: dict) -> None:
    _default(_dict(pvc, "spec"), "volumeMode", "Filesystem")
    _default_zero(_dict(pvc, "status"), "phase", "Pending")
    requests = _sub(pvc, "spec", "resources", "requests")
    if requests is not None:
        _resource_list(requests)


def _endpoints(ep: dict) -> None:
    for subset in _dicts(ep, "subsets"):
        for port in _dicts(subset, "ports"):
            _default_zero(port, "protocol", "TCP")


def _node(node: dict) -> None:
    status = node.get("status")
    if isinstance(status, dict) and status.get("allocatable") is None and isinstance(
            status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _limit_range(lr: dict) -> None:
    for item in _dicts(_sub(lr, "spec"), "limits"):
        if item.get("type") != "Container":
            continue
        default, request = _dict(item, "default"), _dict(item, "defaultRequest")
        for key, value in _mapping(item, "max").items():
            default.setdefault(key, value)
        for key, value in default.items():
            request.setdefault(key, value)
        for key, value in _mapping(item, "min").items():
            request.setdefault(key, value)


# --------------------------------------------------------------------------------------------
# apps/v1


def _deployment(d: dict) -> None:
    spec = _dict(d, "spec")
    _default(spec, "replicas", 1)
    strategy = _dict(spec, "strategy")
    _default_zero(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", "25%")
        _default(rolling, "maxSurge", "25%")
    _default(spec, "revisionHistoryLimit", 10)
    _default(spec, "progressDeadlineSeconds", 600)
    pod_template_defaults(spec.get("template"))


def _replica_set(rs: dict) -> None:
    spec = _dict(rs, "spec")
    _default(spec, "replicas", 1)
    pod_template_defaults(spec.get("template"))


def _daemon_set(ds: dict) -> None:
    spec = _dict(ds, "spec")
    strategy = _dict(spec, "updateStrategy")
    _default_zero(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", 1)
        _default(rolling, "maxSurge", 0)
    _default(spec, "revisionHistoryLimit", 10)
    pod_template_defaults(spec.get("template"))


def _stateful_set(sts: dict) -> None:
    spec = _dict(sts, "spec")
    _default_zero(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        _default(strategy, "rollingUpdate", {})
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict):
        _default(rolling, "partition", 0)
        _default(rolling, "maxUnavailable", 1)  # MaxUnavailableStatefulSet, beta since 1.35
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    _default_zero(retention, "whenDeleted", "Retain")
    _default_zero(retention, "whenScaled", "Retain")
    _default(spec, "replicas", 1)
    _default(spec, "revisionHistoryLimit", 10)
    pod_template_defaults(spec.get("template"))
    for claim in _dicts(spec, "volumeClaimTemplates"):
        _persistent_volume_claim(claim)


# --------------------------------------------------------------------------------------------
# batch/v1


def _job(job: dict) -> None:
    spec = _dict(job, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _default(spec, "parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2 ** 31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    labels = _sub(spec, "template", "metadata", "labels")
    metadata = _dict(job, "metadata")
    if labels and not metadata.get("labels"):
        metadata["labels"] = dict(labels)
    _default(spec, "completionMode", "NonIndexed")
    _default(spec, "suspend", False)
    for rule in _dicts(spec.get("podFailurePolicy"), "rules"):
        for pattern in _dicts(rule, "onPodConditions"):
            _default_zero(pattern, "status", "True")
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = ("Failed" if spec.get("podFailurePolicy") is not None
                                        else "TerminatingOrFailed")
    pod_template_defaults(spec.get("template"))


def _cron_job(cj: dict) -> None:
    spec = _dict(cj, "spec")
    _default_zero(spec, "concurrencyPolicy", "Allow")
    _default(spec, "suspend", False)
    _default(spec, "successfulJobsHistoryLimit", 3)
    _default(spec, "failedJobsHistoryLimit", 1)
    job_spec = _sub(spec, "jobTemplate", "spec")
    if job_spec is not None:
        pod_template_defaults(job_spec.get("template"))


# --------------------------------------------------------------------------------------------
# the other groups

_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Pods", "value": 4, "periodSeconds": 15},
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_SCALE_DOWN = {"selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _hpa_v1(hpa: dict) -> None:
    _default(_dict(hpa, "spec"), "minReplicas", 1)


def _hpa(hpa: dict) -> None:
    spec = _dict(hpa, "spec")
    _default(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": DEFAULT_HPA_CPU_UTILIZATION}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for direction, rules in (("scaleUp", _SCALE_UP), ("scaleDown", _SCALE_DOWN)):
            current = behavior.get(direction)
            if not isinstance(current, dict):
                behavior[direction] = copy.deepcopy(rules)
                continue
            for key, value in rules.items():
                _default(current, key, value)


def _network_policy(np: dict) -> None:
    spec = _dict(np, "spec")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for direction in ("ingress", "egress"):
        for rule in _dicts(spec, direction):
            for port in _dicts(rule, "ports"):
                _default(port, "protocol", "TCP")


def _ingress_class(ic: dict) -> None:
    params = _sub(ic, "spec", "parameters")
    if params is not None:
        _default(params, "scope", "Cluster")


def _role_binding(rb: dict) -> None:
    _default_zero(_dict(rb, "roleRef"), "apiGroup", "rbac.authorization.k8s.io")
    for subject in _dicts(rb, "subjects"):
        if not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"


def _storage_class(sc: dict) -> None:
    _default(sc, "reclaimPolicy", "Delete")
    _default(sc, "volumeBindingMode", "Immediate")


def _priority_class(pc: dict) -> None:
    _default(pc, "preemptionPolicy", "PreemptLowerPriority")


def _endpoint_slice(es: dict) -> None:
    for port in _dicts(es, "ports"):
        _default(port, "name", "")
        _default(port, "protocol", "TCP")


def _crd(crd: dict) -> None:
    spec = _dict(crd, "spec")
    names = _dict(spec, "names")
    kind = names.get("kind") if isinstance(names.get("kind"), str) else ""
    _default_zero(names, "singular", kind.lower())
    if kind:
        _default_zero(names, "listKind", kind + "List")
    _default(spec, "conversion", {"strategy": "None"})
    service = _sub(spec, "conversion", "webhook", "clientConfig", "service")
    if service is not None:
        _default(service, "port", 443)
    status = _dict(crd, "status")
    if not status.get("storedVersions"):
        storage = [v.get("name") for v in _dicts(spec, "versions") if v.get("storage") is True]
        if storage:
            status["storedVersions"] = storage[:1]


_DEFAULTERS: dict[tuple[str, str], Callable[[dict], None]] = {
    ("", "Pod"): _pod,
    ("", "PodTemplate"): _pod_template,
    ("", "ReplicationController"): _replication_controller,
    ("", "Service"): _service,
    ("", "Secret"): _secret,
    ("", "Namespace"): _namespace,
    ("", "PersistentVolume"): _persistent_volume,
    ("", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "Endpoints"): _endpoints,
    ("", "Node"): _node,
    ("", "LimitRange"): _limit_range,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replica_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("apps", "StatefulSet"): _stateful_set,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cron_job,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
    ("networking.k8s.io", "IngressClass"): _ingress_class,
    ("rbac.authorization.k8s.io", "RoleBinding"): _role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _role_binding,
    ("storage.k8s.io", "StorageClass"): _storage_class,
    ("scheduling.k8s.io", "PriorityClass"): _priority_class,
    ("discovery.k8s.io", "EndpointSlice"): _endpoint_slice,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}
_VERSIONED_DEFAULTERS: dict[tuple[str, str, str], Callable[[dict], None]] = {
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): _hpa_v1,
}
_ON_CREATE: dict[tuple[str, str], Callable[[dict], None]] = {
    ("", "Namespace"): _namespace_finalizer,
}


# --------------------------------------------------------------------------------------------
# CustomResourceDefinition structural schemas


def apply_schema_defaults(obj: Any, schema_node: dict | None) -> None:
    """Apply, in place, the ``default`` values of a structural schema (``openAPIV3Schema`` of a
    CRD version) the way the apiextensions apiserver does: a property that is absent — or null
    where the schema does not allow null — gets a copy of its default, and defaulting goes on
    into defaulted values, ``additionalProperties`` and array items."""
    if not isinstance(schema_node, dict):
        return
    if isinstance(obj, dict):
        props = schema_node.get("properties")
        props = props if isinstance(props, dict) else {}
        for key, prop in props.items():
            if isinstance(prop, dict) and "default" in prop and (
                    key not in obj or _non_nullable_null(obj[key], prop)):
                obj[key] = copy.deepcopy(prop["default"])
        extra = schema_node.get("additionalProperties")
        for key, value in obj.items():
            sub = props.get(key)
            if not isinstance(sub, dict) and isinstance(extra, dict):
                sub = extra
                if _non_nullable_null(value, extra) and "default" in extra:
                    obj[key] = value = copy.deepcopy(extra["default"])
            if isinstance(sub, dict):
                apply_schema_defaults(value, sub)
    elif isinstance(obj, list):
        items = schema_node.get("items")
        if isinstance(items, dict):
            for i, value in enumerate(obj):
                if _non_nullable_null(value, items) and "default" in items:
                    obj[i] = value = copy.deepcopy(items["default"])
                apply_schema_defaults(value, items)


def _non_nullable_null(value: Any, node: dict) -> bool:
    return value is None and not node.get("nullable")
