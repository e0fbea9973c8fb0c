"""Validation of built-in objects and custom resources (sampan.api.validation).

Every expected message is upstream's text, as kubectl prints it for the same object.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from sampan.api.defaults import apply_defaults
from sampan.api.errors import FieldError
from sampan.api.registry import Registry, Resource
from sampan.api.schema import builtin
from sampan.api.validation import (
    canonical_quantity,
    cron_schedule_error,
    is_qualified_name,
    parse_quantity,
    validate,
    validate_custom,
)

S = builtin()
REGISTRY = Registry()

LABEL_ERR = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1035_ERR = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
               "start with an alphabetic character, and end with an alphanumeric character (e.g. "
               "'my-name',  or 'abc-123', regex used for validation is "
               "'[a-z]([-a-z0-9]*[a-z0-9])?')")
NAME_PART_ERR = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                 "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                 "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                   "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                   "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


# --- objects -------------------------------------------------------------------------------


def container(name: str = "app", **extra: Any) -> dict:
    return {"name": name, "image": "nginx:1.25", **extra}


def template(labels: dict | None = None, **spec: Any) -> dict:
    return {"metadata": {"labels": labels if labels is not None else {"app": "web"}},
            "spec": {"containers": [container()], **spec}}


def meta(name: str = "web", namespace: str | None = "default", **extra: Any) -> dict:
    out = {"name": name, **extra}
    if namespace is not None:
        out["namespace"] = namespace
    return out


SELECTOR = {"matchLabels": {"app": "web"}}

BASES: dict[str, tuple[str, str, str, Callable[[], dict]]] = {
    "Pod": ("", "v1", "Pod", lambda: {
        "metadata": meta(labels={"app": "web"}),
        "spec": {"containers": [container(ports=[{"name": "http", "containerPort": 80}])]}}),
    "PodTemplate": ("", "v1", "PodTemplate", lambda: {"metadata": meta(), "template": template()}),
    "ReplicationController": ("", "v1", "ReplicationController", lambda: {
        "metadata": meta(), "spec": {"selector": {"app": "web"}, "template": template()}}),
    "Deployment": ("apps", "v1", "Deployment", lambda: {
        "metadata": meta(), "spec": {"selector": copy.deepcopy(SELECTOR), "template": template()}}),
    "ReplicaSet": ("apps", "v1", "ReplicaSet", lambda: {
        "metadata": meta(), "spec": {"selector": copy.deepcopy(SELECTOR), "template": template()}}),
    "DaemonSet": ("apps", "v1", "DaemonSet", lambda: {
        "metadata": meta(), "spec": {"selector": copy.deepcopy(SELECTOR), "template": template()}}),
    "StatefulSet": ("apps", "v1", "StatefulSet", lambda: {
        "metadata": meta(), "spec": {"selector": copy.deepcopy(SELECTOR), "serviceName": "web",
                                     "template": template()}}),
    "ControllerRevision": ("apps", "v1", "ControllerRevision", lambda: {
        "metadata": meta(), "data": {"spec": {}}, "revision": 1}),
    "Job": ("batch", "v1", "Job", lambda: {
        "metadata": meta("pi", uid="u-1"),
        "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}},
                 "template": template({"batch.kubernetes.io/controller-uid": "u-1",
                                       "batch.kubernetes.io/job-name": "pi",
                                       "controller-uid": "u-1", "job-name": "pi"},
                                      restartPolicy="Never")}}),
    "CronJob": ("batch", "v1", "CronJob", lambda: {
        "metadata": meta("nightly"),
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {
            "template": template({}, restartPolicy="OnFailure")}}}}),
    "Service": ("", "v1", "Service", lambda: {
        "metadata": meta(), "spec": {"selector": {"app": "web"},
                                     "ports": [{"port": 80, "targetPort": "http"}]}}),
    "Endpoints": ("", "v1", "Endpoints", lambda: {
        "metadata": meta(), "subsets": [{"addresses": [{"ip": "10.1.2.3"}],
                                         "ports": [{"port": 80}]}]}),
    "ConfigMap": ("", "v1", "ConfigMap", lambda: {
        "metadata": meta(), "data": {"app.properties": "a=b"}, "binaryData": {"blob": "AAEC"}}),
    "Secret": ("", "v1", "Secret", lambda: {
        "metadata": meta(), "data": {"password": "c2VjcmV0"}, "stringData": {"user": "admin"}}),
    "Namespace": ("", "v1", "Namespace", lambda: {"metadata": meta("team-a", None)}),
    "Node": ("", "v1", "Node", lambda: {
        "metadata": meta("node-1.example.com", None),
        "spec": {"podCIDRs": ["10.244.1.0/24"],
                 "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
    "ServiceAccount": ("", "v1", "ServiceAccount", lambda: {"metadata": meta("builder")}),
    "PersistentVolume": ("", "v1", "PersistentVolume", lambda: {
        "metadata": meta("pv-1", None),
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/data/pv-1"}}}),
    "PersistentVolumeClaim": ("", "v1", "PersistentVolumeClaim", lambda: {
        "metadata": meta("data"),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    "LimitRange": ("", "v1", "LimitRange", lambda: {
        "metadata": meta("limits"),
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "100m"},
                             "default": {"cpu": "500m"}}]}}),
    "ResourceQuota": ("", "v1", "ResourceQuota", lambda: {
        "metadata": meta("quota"), "spec": {"hard": {"pods": "10", "requests.cpu": "4",
                                                     "count/deployments.apps": "5"}}}),
    "Event": ("", "v1", "Event", lambda: {
        "metadata": meta("web.17a"), "involvedObject": {"kind": "Pod", "namespace": "default",
                                                        "name": "web"},
        "reason": "Started", "message": "started", "type": "Normal"}),
    "events.Event": ("events.k8s.io", "v1", "Event", lambda: {
        "metadata": meta("web.17b"), "eventTime": "2024-01-01T00:00:00.000000Z",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "web"},
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
        "action": "Scheduled", "reason": "Scheduled", "note": "ok", "type": "Normal"}),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "HorizontalPodAutoscaler", lambda: {
        "metadata": meta(), "spec": {"scaleTargetRef": {"apiVersion": "apps/v1",
                                                        "kind": "Deployment", "name": "web"},
                                     "minReplicas": 1, "maxReplicas": 5}}),
    "Ingress": ("networking.k8s.io", "v1", "Ingress", lambda: {
        "metadata": meta(),
        "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["*.example.com"],
                                                       "secretName": "tls"}],
                 "rules": [{"host": "www.example.com", "http": {"paths": [
                     {"path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    "IngressClass": ("networking.k8s.io", "v1", "IngressClass", lambda: {
        "metadata": meta("nginx", None), "spec": {"controller": "k8s.io/ingress-nginx"}}),
    "NetworkPolicy": ("networking.k8s.io", "v1", "NetworkPolicy", lambda: {
        "metadata": meta(),
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                 "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                    "except": ["10.1.0.0/16"]}},
                                       {"podSelector": {}}],
                              "ports": [{"port": 80}, {"port": "http"}]}]}}),
    "EndpointSlice": ("discovery.k8s.io", "v1", "EndpointSlice", lambda: {
        "metadata": meta("web-abc"), "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.2.3"]}], "ports": [{"name": "http", "port": 80}]}),
    "Lease": ("coordination.k8s.io", "v1", "Lease", lambda: {
        "metadata": meta("leader"), "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
    "Role": ("rbac.authorization.k8s.io", "v1", "Role", lambda: {
        "metadata": meta("reader"),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    "ClusterRole": ("rbac.authorization.k8s.io", "v1", "ClusterRole", lambda: {
        "metadata": meta("system:reader", None),
        "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "RoleBinding", lambda: {
        "metadata": meta("read"), "roleRef": {"kind": "Role", "name": "reader"},
        "subjects": [{"kind": "User", "name": "jane"},
                     {"kind": "ServiceAccount", "name": "builder"}]}),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", lambda: {
        "metadata": meta("read", None), "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                    "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}]}),
    "PodDisruptionBudget": ("policy", "v1", "PodDisruptionBudget", lambda: {
        "metadata": meta(), "spec": {"minAvailable": "50%", "selector": copy.deepcopy(SELECTOR)}}),
    "StorageClass": ("storage.k8s.io", "v1", "StorageClass", lambda: {
        "metadata": meta("fast", None), "provisioner": "rancher.io/local-path",
        "parameters": {"type": "ssd"}}),
    "PriorityClass": ("scheduling.k8s.io", "v1", "PriorityClass", lambda: {
        "metadata": meta("high", None), "value": 1000}),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", lambda: {
        "metadata": meta("pets.zoo.example.com", None),
        "spec": {"group": "zoo.example.com", "scope": "Namespaced",
                 "names": {"plural": "pets", "kind": "Pet", "shortNames": ["pt"]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "additionalPrinterColumns": [
                                   {"name": "Species", "type": "string",
                                    "jsonPath": ".spec.species"}],
                               "subresources": {"status": {}, "scale": {
                                   "specReplicasPath": ".spec.replicas",
                                   "statusReplicasPath": ".status.replicas"}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {
                                       "species": {"type": "string"},
                                       "replicas": {"type": "integer"}}},
                                   "status": {"type": "object",
                                              "x-kubernetes-preserve-unknown-fields": True}}}}}]}}),
}


def resource_of(key: str) -> Resource:
    group, version, kind, _ = BASES[key]
    resource = REGISTRY.for_kind(group, version, kind)
    assert resource is not None
    return resource


def base(key: str) -> dict:
    group, version, kind, factory = BASES[key]
    obj = factory()
    return {"apiVersion": f"{group}/{version}" if group else version, "kind": kind, **obj}


def check(obj: dict, key: str, *, old: dict | None = None, defaults: bool = True) -> list[FieldError]:
    resource = resource_of(key)
    obj = copy.deepcopy(obj)
    if defaults:
        apply_defaults(obj, resource, create=old is None)
        if old is not None:
            old = copy.deepcopy(old)
            apply_defaults(old, resource, create=False)
    return validate(obj, resource, S, old=old)


def messages(obj: dict, key: str, **kw: Any) -> list[str]:
    return [e.message() for e in check(obj, key, **kw)]


@pytest.mark.parametrize("key", sorted(BASES))
def test_valid_objects_pass(key):
    assert messages(base(key), key) == []


@pytest.mark.parametrize("key", sorted(BASES))
def test_an_unchanged_update_passes(key):
    obj = base(key)
    resource = resource_of(key)
    apply_defaults(obj, resource)
    obj["metadata"]["resourceVersion"] = "1"
    assert [e.message() for e in validate(obj, resource, S, old=obj)] == []


# --- the rules, case by case -----------------------------------------------------------------

Mutation = Callable[[dict], Any]


def at(obj: dict, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def put(path: str, value: Any) -> Mutation:
    def mutate(obj: dict) -> None:
        parent, _, last = path.rpartition(".")
        target = at(obj, parent) if parent else obj
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def drop(path: str) -> Mutation:
    def mutate(obj: dict) -> None:
        parent, _, last = path.rpartition(".")
        target = at(obj, parent) if parent else obj
        del target[last]
    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(obj: dict) -> None:
        for m in mutations:
            m(obj)
    return mutate


C0 = "spec.containers.0"
TC0 = "spec.template.spec.containers.0"

CASES: list[tuple[str, str, Mutation, str]] = [
    # object metadata
    ("pod name", "Pod", put("metadata.name", "Web_1"),
     f'metadata.name: Invalid value: "Web_1": {SUBDOMAIN_ERR}'),
    ("namespace name with dots", "Namespace", put("metadata.name", "a.b"),
     'metadata.name: Invalid value: "a.b": must not contain dots'),
    ("statefulset name is a label", "StatefulSet", put("metadata.name", "web.v1"),
     'metadata.name: Invalid value: "web.v1": must not contain dots'),
    ("service name", "Service", put("metadata.name", "1web"),
     f'metadata.name: Invalid value: "1web": {DNS1035_ERR}'),
    ("rbac name", "Role", put("metadata.name", "a/b"),
     'metadata.name: Invalid value: "a/b": may not contain \'/\''),
    ("rbac name dots", "ClusterRole", put("metadata.name", ".."),
     'metadata.name: Invalid value: "..": may not be \'..\''),
    ("name required", "ConfigMap", drop("metadata.name"),
     "metadata.name: Required value: name or generateName is required"),
    ("generateName", "ConfigMap", put("metadata.generateName", "Web-"),
     f'metadata.generateName: Invalid value: "Web-": {SUBDOMAIN_ERR}'),
    ("namespace required", "ConfigMap", drop("metadata.namespace"),
     "metadata.namespace: Required value"),
    ("namespace invalid", "ConfigMap", put("metadata.namespace", "Team"),
     f'metadata.namespace: Invalid value: "Team": {LABEL_ERR}'),
    ("namespace on cluster scope", "Node", put("metadata.namespace", "default"),
     "metadata.namespace: Forbidden: not allowed on this type"),
    ("label key", "Pod", put("metadata.labels", {"a b": "x"}),
     f'metadata.labels: Invalid value: "a b": {NAME_PART_ERR}'),
    ("label key prefix", "Pod", put("metadata.labels", {"Example.com/a": "x"}),
     f'metadata.labels: Invalid value: "Example.com/a": prefix part {SUBDOMAIN_ERR}'),
    ("label value too long", "Pod", put("metadata.labels", {"a": "x" * 64}),
     f'metadata.labels: Invalid value: "{"x" * 64}": must be no more than 63 bytes'),
    ("label value chars", "Pod", put("metadata.labels", {"a": "-x"}),
     f'metadata.labels: Invalid value: "-x": {LABEL_VALUE_ERR}'),
    ("annotation key", "Pod", put("metadata.annotations", {"a/b/c": "x"}),
     "metadata.annotations: Invalid value: \"a/b/c\": a valid label key must consist of "
     "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
     "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
     "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
     "(e.g. 'example.com/MyName')"),
    ("annotations too large", "ConfigMap", put("metadata.annotations", {"a": "x" * 262144}),
     "metadata.annotations: Too long: must have at most 262144 bytes"),
    ("finalizer not fully qualified", "ConfigMap", put("metadata.finalizers", ["cleanup"]),
     'metadata.finalizers[0]: Invalid value: "cleanup": name is neither a standard finalizer '
     "name nor is it fully qualified"),
    ("finalizer invalid", "ConfigMap", put("metadata.finalizers", ["example.com/a b"]),
     f'metadata.finalizers: Invalid value: "example.com/a b": {NAME_PART_ERR}'),
    ("orphan and foreground", "ConfigMap",
     put("metadata.finalizers", ["orphan", "foregroundDeletion"]),
     'metadata.finalizers: Invalid value: []string{"orphan", "foregroundDeletion"}: finalizer '
     "orphan and foregroundDeletion cannot be both set"),
    ("owner reference fields", "ConfigMap",
     put("metadata.ownerReferences",
         [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}]),
     'metadata.ownerReferences.uid: Invalid value: "": must not be empty'),
    ("two controllers", "ConfigMap", put("metadata.ownerReferences", [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True}]),
     'metadata.ownerReferences: Invalid value: [{"apiVersion":"v1","kind":"A","name":"a","uid":"1",'
     '"controller":true},{"apiVersion":"v1","kind":"B","name":"b","uid":"2","controller":true}]: '
     'Only one reference can have Controller set to true. Found "true" in references for A/a and B/b'),
    ("generation", "ConfigMap", put("metadata.generation", -1),
     "metadata.generation: Invalid value: -1: must be greater than or equal to 0"),
    # pods
    ("containers required", "Pod", put("spec.containers", []), "spec.containers: Required value"),
    ("container name", "Pod", put(f"{C0}.name", "App"),
     f'spec.containers[0].name: Invalid value: "App": {LABEL_ERR}'),
    ("container image", "Pod", drop(f"{C0}.image"), "spec.containers[0].image: Required value"),
    ("image whitespace", "Pod", put(f"{C0}.image", "nginx "),
     'spec.containers[0].image: Invalid value: "nginx ": must not have leading or trailing whitespace'),
    ("duplicate container", "Pod", put("spec.containers", [container(), container()]),
     'spec.containers[1].name: Duplicate value: "app"'),
    ("init container name clash", "Pod", put("spec.initContainers", [container()]),
     'spec.initContainers[0].name: Duplicate value: "app"'),
    ("init container probe", "Pod", put("spec.initContainers", [
        container("init", readinessProbe={"exec": {"command": ["true"]}})]),
     "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers "
     "without restartPolicy=Always"),
    ("init container restart policy", "Pod", put("spec.initContainers", [
        container("init", restartPolicy="Sometimes")]),
     'spec.initContainers[0].restartPolicy: Unsupported value: "Sometimes": supported values: '
     '"Always", "Never", "OnFailure"'),
    ("container restart rules need a policy", "Pod",
     put(f"{C0}.restartPolicyRules", [{"action": "Restart",
                                       "exitCodes": {"operator": "In", "values": [42]}}]),
     "spec.containers[0].restartPolicy: Required value: must specify restartPolicy when restart "
     "rules are used"),
    ("container restart rule action", "Pod", both(
        put(f"{C0}.restartPolicy", "Never"),
        put(f"{C0}.restartPolicyRules", [{"action": "Reboot",
                                          "exitCodes": {"operator": "In", "values": [42]}}])),
     'spec.containers[0].restartPolicyRules[0].action: Unsupported value: "Reboot": supported '
     'values: "Restart", "RestartAllContainers"'),
    ("container restart rule exit codes", "Pod", both(
        put(f"{C0}.restartPolicy", "Never"),
        put(f"{C0}.restartPolicyRules", [{"action": "Restart"}])),
     "spec.containers[0].restartPolicyRules[0].exitCodes: Required value: must be specified"),
    ("pod-level resource names", "Pod", put("spec.resources", {"limits": {"example.com/gpu": "1"}}),
     'spec.resources.limits[example.com/gpu]: Unsupported value: "example.com/gpu": supported '
     'values: "cpu", "memory"'),
    ("pod-level requests within limits", "Pod",
     put("spec.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
     'spec.resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1'),
    ("pod-level requests cover containers", "Pod", both(
        put(f"{C0}.resources", {"requests": {"memory": "2Gi"}}),
        put("spec.resources", {"requests": {"memory": "1Gi"}})),
     'spec.resources.requests[memory]: Invalid value: "1Gi": must be greater than or equal to '
     "aggregate container requests of 2Gi"),
    ("container limits within pod limits", "Pod", both(
        put(f"{C0}.resources", {"limits": {"cpu": "2"}}),
        put("spec.resources", {"limits": {"cpu": "1"}})),
     'spec.containers[0].resources.limits[cpu]: Invalid value: "2": must be less than or equal to '
     "pod limits of 1"),
    ("resize policy resource", "Pod",
     put(f"{C0}.resizePolicy", [{"resourceName": "gpu", "restartPolicy": "NotRequired"}]),
     'spec.containers[0].resizePolicy: Unsupported value: "gpu": supported values: "cpu", "memory"'),
    ("resize policy duplicate", "Pod", put(f"{C0}.resizePolicy", [
        {"resourceName": "cpu", "restartPolicy": "NotRequired"},
        {"resourceName": "cpu", "restartPolicy": "RestartContainer"}]),
     'spec.containers[0].resizePolicy[1]: Duplicate value: "cpu"'),
    ("resize policy required", "Pod", put(f"{C0}.resizePolicy", [{"resourceName": "cpu"}]),
     "spec.containers[0].resizePolicy: Required value"),
    ("container port required", "Pod", put(f"{C0}.ports", [{"containerPort": 0}]),
     "spec.containers[0].ports[0].containerPort: Required value"),
    ("container port range", "Pod", put(f"{C0}.ports", [{"containerPort": 70000}]),
     "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and "
     "65535, inclusive"),
    ("host port range", "Pod", put(f"{C0}.ports", [{"containerPort": 80, "hostPort": -1}]),
     "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive"),
    ("port name", "Pod", put(f"{C0}.ports", [{"containerPort": 80, "name": "http--x"}]),
     'spec.containers[0].ports[0].name: Invalid value: "http--x": must not contain consecutive hyphens'),
    ("port name unique", "Pod", put(f"{C0}.ports", [{"containerPort": 80, "name": "http"},
                                                    {"containerPort": 81, "name": "http"}]),
     'spec.containers[0].ports[1].name: Duplicate value: "http"'),
    ("port protocol", "Pod", put(f"{C0}.ports", [{"containerPort": 80, "protocol": "ICMP"}]),
     'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: '
     '"SCTP", "TCP", "UDP"'),
    ("host port conflict", "Pod", put(f"{C0}.ports", [{"containerPort": 80, "hostPort": 8080},
                                                      {"containerPort": 81, "hostPort": 8080}]),
     'spec.containers[0].ports[1].hostPort: Duplicate value: "TCP//8080"'),
    ("restart policy", "Pod", put("spec.restartPolicy", "Sometimes"),
     'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
     '"OnFailure", "Never"'),
    ("dns policy", "Pod", put("spec.dnsPolicy", "Custom"),
     'spec.dnsPolicy: Unsupported value: "Custom": supported values: "ClusterFirstWithHostNet", '
     '"ClusterFirst", "Default", "None"'),
    ("dns none needs config", "Pod", put("spec.dnsPolicy", "None"),
     "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"),
    ("pull policy", "Pod", put(f"{C0}.imagePullPolicy", "Sometimes"),
     'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: '
     '"Always", "IfNotPresent", "Never"'),
    ("termination message policy", "Pod", put(f"{C0}.terminationMessagePolicy", "Log"),
     'spec.containers[0].terminationMessagePolicy: Unsupported value: "Log": supported values: '
     '"File", "FallbackToLogsOnError"'),
    ("requests above limits", "Pod", put(f"{C0}.resources", {"limits": {"cpu": "1"},
                                                             "requests": {"cpu": "1500m"}}),
     'spec.containers[0].resources.requests: Invalid value: "1500m": must be less than or equal '
     "to cpu limit of 1"),
    ("negative quantity", "Pod", put(f"{C0}.resources", {"limits": {"memory": "-1Gi"}}),
     'spec.containers[0].resources.limits[memory]: Invalid value: "-1Gi": must be greater than '
     "or equal to 0"),
    ("unknown resource", "Pod", put(f"{C0}.resources", {"limits": {"gpu": "1"}}),
     'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard '
     "resource type or fully qualified"),
    ("not a container resource", "Pod", put(f"{C0}.resources", {"limits": {"pods": "1"}}),
     'spec.containers[0].resources.limits[pods]: Invalid value: "pods": must be a standard '
     "resource for containers"),
    ("extended resources need limits", "Pod",
     put(f"{C0}.resources", {"requests": {"example.com/gpu": "1"}}),
     "spec.containers[0].resources.limits: Required value: Limit must be set for non "
     "overcommitable resources"),
    ("extended resources are integers", "Pod",
     put(f"{C0}.resources", {"limits": {"example.com/gpu": "500m"}}),
     "spec.containers[0].resources.limits[example.com/gpu]: Invalid value: 500m: must be an integer"),
    ("duplicate volume", "Pod", put("spec.volumes", [{"name": "v", "emptyDir": {}},
                                                     {"name": "v", "emptyDir": {}}]),
     'spec.volumes[1].name: Duplicate value: "v"'),
    ("volume name", "Pod", put("spec.volumes", [{"name": "V", "emptyDir": {}}]),
     f'spec.volumes[0].name: Invalid value: "V": {LABEL_ERR}'),
    ("two volume sources", "Pod", put("spec.volumes", [
        {"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]),
     "spec.volumes[0].secret: Forbidden: may not specify more than 1 volume type"),
    ("secret volume name", "Pod", put("spec.volumes", [{"name": "v", "secret": {}}]),
     "spec.volumes[0].secret.secretName: Required value"),
    ("volume file mode", "Pod", put("spec.volumes", [
        {"name": "v", "configMap": {"name": "c", "defaultMode": 1000}}]),
     "spec.volumes[0].configMap.defaultMode: Invalid value: 1000: must be a number between 0 "
     "and 0777 (octal), both inclusive"),
    ("volume item path", "Pod", put("spec.volumes", [
        {"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../x"}]}}]),
     'spec.volumes[0].configMap.items[0].path: Invalid value: "../x": must not contain \'..\''),
    ("host path type", "Pod", put("spec.volumes", [
        {"name": "v", "hostPath": {"path": "/x", "type": "Dir"}}]),
     'spec.volumes[0].hostPath.type: Unsupported value: "Dir": supported values: "", '
     '"BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"'),
    ("nfs path", "Pod", put("spec.volumes", [{"name": "v", "nfs": {"server": "s", "path": "x"}}]),
     'spec.volumes[0].nfs.path: Invalid value: "x": must be an absolute path'),
    ("pvc claim name", "Pod", put("spec.volumes", [{"name": "v", "persistentVolumeClaim": {}}]),
     "spec.volumes[0].persistentVolumeClaim.claimName: Required value"),
    ("mount of a missing volume", "Pod",
     put(f"{C0}.volumeMounts", [{"name": "nope", "mountPath": "/x"}]),
     'spec.containers[0].volumeMounts[0].name: Not found: "nope"'),
    ("mount path unique", "Pod", both(
        put("spec.volumes", [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}]),
        put(f"{C0}.volumeMounts",
            [{"name": "a", "mountPath": "/x"}, {"name": "b", "mountPath": "/x"}])),
     'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/x": must be unique'),
    ("bidirectional propagation", "Pod", both(
        put("spec.volumes", [{"name": "a", "emptyDir": {}}]),
        put(f"{C0}.volumeMounts",
            [{"name": "a", "mountPath": "/x", "mountPropagation": "Bidirectional"}])),
     "spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount "
     "propagation is available only to privileged containers"),
    ("env name", "Pod", put(f"{C0}.env", [{"name": "A=B"}]),
     'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name '
     "must consist only of printable ASCII characters other than '='"),
    ("env name required", "Pod", put(f"{C0}.env", [{"value": "x"}]),
     "spec.containers[0].env[0].name: Required value"),
    ("env value and valueFrom", "Pod", put(f"{C0}.env", [
        {"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
     'spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` '
     "is not empty"),
    ("env field path", "Pod", put(f"{C0}.env", [
        {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}]),
     'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "metadata.labels": '
     'supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", '
     '"spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"'),
    ("env secret key", "Pod", put(f"{C0}.env", [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}]),
     "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Invalid value: \"a/b\": a valid config "
     "key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
     "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
    ("envFrom source", "Pod", put(f"{C0}.envFrom", [{"prefix": "P_"}]),
     'spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`'),
    ("probe handler", "Pod", put(f"{C0}.livenessProbe", {"periodSeconds": 5}),
     "spec.containers[0].livenessProbe: Required value: must specify a handler type"),
    ("probe two handlers", "Pod", put(f"{C0}.livenessProbe", {
        "exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
     "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"),
    ("liveness success threshold", "Pod", put(f"{C0}.livenessProbe", {
        "tcpSocket": {"port": 80}, "successThreshold": 2}),
     "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
    ("probe port name", "Pod", put(f"{C0}.readinessProbe", {"httpGet": {"port": "HTTP"}}),
     'spec.containers[0].readinessProbe.httpGet.port: Invalid value: "HTTP": must contain only '
     "alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    ("probe scheme", "Pod", put(f"{C0}.readinessProbe", {"httpGet": {"port": 80, "scheme": "FTP"}}),
     'spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: "FTP": supported '
     'values: "HTTP", "HTTPS"'),
    ("exec command", "Pod", put(f"{C0}.lifecycle", {"preStop": {"exec": {}}}),
     "spec.containers[0].lifecycle.preStop.exec.command: Required value"),
    ("sleep beyond grace period", "Pod",
     put(f"{C0}.lifecycle", {"preStop": {"sleep": {"seconds": 60}}}),
     "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 60: must be non-negative and "
     "less than terminationGracePeriodSeconds (30)"),
    ("toleration exists with value", "Pod", put("spec.tolerations", [
        {"key": "k", "operator": "Exists", "value": "v"}]),
     'spec.tolerations[0].operator: Invalid value: "v": value must be empty when `operator` is \'Exists\''),
    ("toleration empty key", "Pod", put("spec.tolerations", [{"operator": "Equal", "value": "v"}]),
     'spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is '
     'empty, which means "match all values and all keys"'),
    ("toleration operator", "Pod", put("spec.tolerations", [{"key": "k", "operator": "In"}]),
     'spec.tolerations[0].operator: Unsupported value: "In": supported values: "Equal", "Exists"'),
    ("toleration effect", "Pod", put("spec.tolerations", [{"key": "k", "effect": "NoRun"}]),
     'spec.tolerations[0].effect: Unsupported value: "NoRun": supported values: "NoSchedule", '
     '"PreferNoSchedule", "NoExecute"'),
    ("toleration seconds", "Pod", put("spec.tolerations", [
        {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]),
     'spec.tolerations[0].effect: Invalid value: "NoSchedule": effect must be \'NoExecute\' when '
     "`tolerationSeconds` is set"),
    ("node selector", "Pod", put("spec.nodeSelector", {"disk": "s s d"}),
     f'spec.nodeSelector: Invalid value: "s s d": {LABEL_VALUE_ERR}'),
    ("node affinity operator", "Pod", put("spec.affinity", {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "Near"}]}]}}}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
     '[0].matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator'),
    ("node affinity values", "Pod", put("spec.affinity", {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
     "[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' "
     "or 'NotIn'"),
    ("node affinity terms", "Pod", put("spec.affinity", {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: "
     "Required value: must have at least one node selector term"),
    ("pod affinity topology key", "Pod", put("spec.affinity", {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": SELECTOR}]}}),
     "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: "
     "Required value: can not be empty"),
    ("affinity weight", "Pod", put("spec.affinity", {"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 0, "podAffinityTerm": {"topologyKey": "zone"}}]}}),
     "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: "
     "Invalid value: 0: must be in the range 1-100"),
    ("selector operator", "Pod", put("spec.topologySpreadConstraints", [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists",
                                                 "values": ["x"]}]}}]),
     "spec.topologySpreadConstraints[0].labelSelector.matchExpressions[0].values: Forbidden: may "
     "not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
    ("topology spread", "Pod", put("spec.topologySpreadConstraints", [
        {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]),
     "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero"),
    ("host network ports", "Pod", both(put("spec.hostNetwork", True),
                                       put(f"{C0}.ports", [{"containerPort": 80, "hostPort": 81}])),
     "spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when "
     "`hostNetwork` is true"),
    ("active deadline", "Pod", put("spec.activeDeadlineSeconds", 0),
     "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"),
    ("run as user", "Pod", put("spec.securityContext", {"runAsUser": -1}),
     "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 4294967295, inclusive"),
    ("seccomp type", "Pod", put(f"{C0}.securityContext", {"seccompProfile": {"type": "Strict"}}),
     'spec.containers[0].securityContext.seccompProfile.type: Unsupported value: "Strict": '
     'supported values: "Localhost", "RuntimeDefault", "Unconfined"'),
    ("service account name", "Pod", put("spec.serviceAccountName", "Builder"),
     f'spec.serviceAccountName: Invalid value: "Builder": {SUBDOMAIN_ERR}'),
    ("hostname", "Pod", put("spec.hostname", "a.b"),
     'spec.hostname: Invalid value: "a.b": must not contain dots'),
    ("ephemeral containers on create", "Pod", put("spec.ephemeralContainers", [
        {"name": "debug", "image": "busybox"}]),
     "spec.ephemeralContainers: Forbidden: cannot be set on create"),
    ("deletion cost", "Pod",
     put("metadata.annotations", {"controller.kubernetes.io/pod-deletion-cost": "x"}),
     'metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: "x": must be '
     "a 32bit integer"),
    ("token projection needs a service account", "Pod", both(
        put("spec.serviceAccountName", ""),
        put("spec.volumes", [{"name": "t", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}}]}}])),
     "spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: must not be specified "
     "when serviceAccountName is not set"),
    # workloads
    ("deployment selector mismatch", "Deployment",
     put("spec.template.metadata.labels", {"app": "x"}),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"x"}: `selector` does '
     "not match template `labels`"),
    ("deployment selector required", "Deployment", drop("spec.selector"),
     "spec.selector: Required value"),
    ("deployment empty selector", "Deployment", put("spec.selector", {}),
     "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{},"
     "MatchExpressions:[]LabelSelectorRequirement{},}: empty selector is invalid for deployment"),
    ("selector expression", "Deployment", put("spec.selector", {"matchExpressions": [
        {"key": "app", "operator": "Like", "values": ["web"]}]}),
     'spec.selector.matchExpressions[0].operator: Invalid value: "Like": not a valid selector operator'),
    ("replicas", "Deployment", put("spec.replicas", -1),
     "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ("template restart policy", "Deployment", put("spec.template.spec.restartPolicy", "Never"),
     'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'),
    ("template active deadline", "ReplicaSet", put("spec.template.spec.activeDeadlineSeconds", 5),
     "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is "
     "not Supported"),
    ("template container", "Deployment", put(f"{TC0}.name", "App"),
     f'spec.template.spec.containers[0].name: Invalid value: "App": {LABEL_ERR}'),
    ("template labels", "Deployment",
     put("spec.template.metadata.labels", {"app": "web", "x": "-"}),
     f'spec.template.labels: Invalid value: "-": {LABEL_VALUE_ERR}'),
    ("rolling update zero", "Deployment", put("spec.strategy", {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}),
     "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"),
    ("rolling update percent", "Deployment", put("spec.strategy", {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "110%"}}),
     "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 110%: must not be greater than 100%"),
    ("rolling update format", "Deployment", put("spec.strategy", {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "1x"}}),
     "spec.strategy.rollingUpdate.maxSurge: Invalid value: 1x: a valid percent string must be a "
     "numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation "
     "is '[0-9]+%')"),
    ("recreate with rolling update", "Deployment", put("spec.strategy", {
        "type": "Recreate", "rollingUpdate": {}}),
     "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"),
    ("strategy type", "Deployment", put("spec.strategy", {"type": "BlueGreen"}),
     'spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"BlueGreen", '
     'RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: "Recreate", "RollingUpdate"'),
    ("progress deadline", "Deployment", both(put("spec.minReadySeconds", 700)),
     "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"),
    ("replica set empty selector text", "ReplicaSet", put("spec.selector", {}),
     "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{},"
     "MatchExpressions:[]LabelSelectorRequirement{},}: empty selector is invalid for deployment"),
    ("daemon set mismatch", "DaemonSet", put("spec.template.metadata.labels", {}),
     "spec.template.metadata.labels: Invalid value: map[string]string{}: `selector` does not "
     "match template `labels`"),
    ("daemon set surge and unavailable", "DaemonSet", put("spec.updateStrategy", {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}),
     "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when "
     "maxUnavailable is non-zero"),
    ("daemon set strategy", "DaemonSet", put("spec.updateStrategy", {"type": "Surge"}),
     'spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:"Surge", '
     'RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: "RollingUpdate", "OnDelete"'),
    ("stateful set policy", "StatefulSet", put("spec.podManagementPolicy", "Any"),
     "spec.podManagementPolicy: Invalid value: \"Any\": must be 'OrderedReady' or 'Parallel'"),
    ("stateful set strategy", "StatefulSet", put("spec.updateStrategy", {"type": "OnDelete",
                                                                         "rollingUpdate": {}}),
     "spec.updateStrategy.rollingUpdate: Invalid value: {}: only allowed for updateStrategy "
     "'RollingUpdate'"),
    ("stateful set retention", "StatefulSet", put("spec.persistentVolumeClaimRetentionPolicy", {
        "whenDeleted": "Keep", "whenScaled": "Retain"}),
     'spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": supported '
     'values: "Retain", "Delete"'),
    ("controller revision data", "ControllerRevision", drop("data"),
     "data: Required value: data is mandatory"),
    ("rc selector", "ReplicationController", put("spec.selector", {"app": "other"}),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` '
     "does not match template `labels`"),
    ("rc template", "ReplicationController", drop("spec.template"),
     "spec.template: Required value"),
    ("job restart policy", "Job", put("spec.template.spec.restartPolicy", "Always"),
     'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
     '"OnFailure", "Never"'),
    ("job parallelism", "Job", put("spec.parallelism", -1),
     "spec.parallelism: Invalid value: -1: must be greater than or equal to 0"),
    ("job completion mode", "Job", put("spec.completionMode", "Ordered"),
     'spec.completionMode: Unsupported value: "Ordered": supported values: "NonIndexed", "Indexed"'),
    ("job generated labels", "Job", put("spec.template.metadata.labels", {
        "batch.kubernetes.io/controller-uid": "u-1"}),
     "spec.template.metadata.labels[batch.kubernetes.io/job-name]: Required value: must be 'pi'"),
    ("job generated selector", "Job", put("spec.selector", {"matchLabels": {"job-name": "other"}}),
     "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{job-name: other,},"
     "MatchExpressions:[]LabelSelectorRequirement{},}: `selector` not auto-generated"),
    ("job selector required", "Job", drop("spec.selector"), "spec.selector: Required value"),
    ("pod failure policy needs Never", "Job", both(
        put("spec.template.spec.restartPolicy", "OnFailure"),
        put("spec.podFailurePolicy", {"rules": [{"action": "Ignore", "onPodConditions": [
            {"type": "DisruptionTarget", "status": "True"}]}]})),
     'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported '
     "when podFailurePolicy is specified"),
    ("pod failure policy action", "Job", put("spec.podFailurePolicy", {"rules": [
        {"onExitCodes": {"operator": "In", "values": [1]}}]}),
     'spec.podFailurePolicy.rules[0].action: Required value: valid values: ["Count" "FailIndex" '
     '"FailJob" "Ignore"]'),
    ("pod failure policy requirement", "Job", put("spec.podFailurePolicy", {"rules": [
        {"action": "FailJob"}]}),
     "spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and "
     "OnPodConditions is required"),
    ("pod failure policy exit codes", "Job", put("spec.podFailurePolicy", {"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In"}}]}),
     "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32(nil): at least "
     "one value is required"),
    ("pod failure policy exit code order", "Job", put("spec.podFailurePolicy", {"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [3, 2]}}]}),
     "spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Invalid value: 2: must be ordered"),
    ("pod failure policy zero exit code", "Job", put("spec.podFailurePolicy", {"rules": [
        {"action": "Count", "onExitCodes": {"operator": "In", "values": [0]}}]}),
     "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for "
     "the In operator"),
    ("pod failure policy container", "Job", put("spec.podFailurePolicy", {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "nope", "operator": "In",
                                              "values": [1]}}]}),
     'spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: "nope": must be '
     "one of the container or initContainer names in the pod template"),
    ("pod failure policy condition status", "Job", put("spec.podFailurePolicy", {"rules": [
        {"action": "Ignore",
         "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}]}]}),
     'spec.podFailurePolicy.rules[0].onPodConditions[0].status: Unsupported value: "Maybe": '
     'supported values: "False", "True", "Unknown"'),
    ("fail index needs per-index limit", "Job", put("spec.podFailurePolicy", {"rules": [
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]}),
     'spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the '
     "backoffLimitPerIndex to be set"),
    ("replacement policy with failure policy", "Job", both(
        put("spec.podReplacementPolicy", "TerminatingOrFailed"),
        put("spec.podFailurePolicy", {"rules": [{"action": "Ignore", "onPodConditions": [
            {"type": "DisruptionTarget", "status": "True"}]}]})),
     'spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: '
     '"Failed"'),
    ("success policy rules", "Job", both(put("spec.completionMode", "Indexed"),
                                          put("spec.completions", 3),
                                          put("spec.successPolicy", {})),
     "spec.successPolicy.rules: Required value: at least one rules must be specified when the "
     "successPolicy is specified"),
    ("success policy indexed", "Job", put("spec.successPolicy", {"rules": [{"succeededCount": 1}]}),
     "spec.successPolicy: Invalid value: "),
    ("success policy rule", "Job", both(put("spec.completionMode", "Indexed"),
                                         put("spec.completions", 3),
                                         put("spec.successPolicy", {"rules": [{}]})),
     "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or "
     "succeededIndexes must be specified"),
    ("success policy indexes", "Job", both(put("spec.completionMode", "Indexed"),
                                            put("spec.completions", 3),
                                            put("spec.successPolicy", {"rules": [
                                                {"succeededIndexes": "0-1,5"}]})),
     'spec.successPolicy.rules[0].succeededIndexes: Invalid value: "0-1,5": error parsing '
     'succeededIndexes: too large index: "5"'),
    ("success policy count", "Job", both(put("spec.completionMode", "Indexed"),
                                          put("spec.completions", 3),
                                          put("spec.successPolicy", {"rules": [
                                              {"succeededIndexes": "0-1", "succeededCount": 3}]})),
     "spec.successPolicy.rules[0].succeededCount: Invalid value: 3: must be less than or equal to "
     "2 (the number of indexes in the specified succeededIndexes field)"),
    ("cron schedule", "CronJob", put("spec.schedule", "61 * * * *"),
     'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'),
    ("cron schedule fields", "CronJob", put("spec.schedule", "* * *"),
     'spec.schedule: Invalid value: "* * *": expected exactly 5 fields, found 3: [* * *]'),
    ("cron time zone in schedule", "CronJob", put("spec.schedule", "TZ=UTC 0 3 * * *"),
     'spec.schedule: Invalid value: "TZ=UTC 0 3 * * *": cannot use TZ or CRON_TZ in schedule, '
     "use timeZone field instead"),
    ("cron time zone", "CronJob", put("spec.timeZone", "Mars/Olympus"),
     'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'),
    ("cron name length", "CronJob", put("metadata.name", "x" * 53),
     f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters'),
    ("cron concurrency", "CronJob", put("spec.concurrencyPolicy", "Queue"),
     'spec.concurrencyPolicy: Unsupported value: "Queue": supported values: "Allow", "Forbid", "Replace"'),
    ("cron job selector", "CronJob", put("spec.jobTemplate.spec.selector", SELECTOR),
     "spec.jobTemplate.spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string"
     "{app: web,},MatchExpressions:[]LabelSelectorRequirement{},}: `selector` will be auto-generated"),
    ("cron job template restart policy", "CronJob",
     put("spec.jobTemplate.spec.template.spec.restartPolicy", "Always"),
     'spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": supported '
     'values: "OnFailure", "Never"'),
    # services
    ("service ports required", "Service", put("spec.ports", []), "spec.ports: Required value"),
    ("service port range", "Service", put("spec.ports", [{"port": 0}]),
     "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ("service port names required", "Service",
     put("spec.ports", [{"port": 80}, {"port": 81, "name": "b"}]),
     "spec.ports[0].name: Required value"),
    ("service port name", "Service", put("spec.ports", [{"port": 80, "name": "Web"}]),
     f'spec.ports[0].name: Invalid value: "Web": {LABEL_ERR}'),
    ("service duplicate port", "Service", put("spec.ports", [{"port": 80, "name": "a"},
                                                            {"port": 80, "name": "b"}]),
     'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", '
     'AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, '
     'StrVal:""}, NodePort:0}'),
    ("service protocol", "Service", put("spec.ports", [{"port": 80, "protocol": "HTTP"}]),
     'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    ("service target port", "Service", put("spec.ports", [{"port": 80, "targetPort": 70000}]),
     "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("service type", "Service", put("spec.type", "Internal"),
     'spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", '
     '"LoadBalancer", "NodePort"'),
    ("service node port on cluster ip", "Service",
     put("spec.ports", [{"port": 80, "nodePort": 30080}]),
     "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    ("service node port range", "Service", both(put("spec.type", "NodePort"),
                                                put("spec.ports",
                                                    [{"port": 80, "nodePort": 8080}])),
     "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The "
     "range of valid ports is 30000-32767"),
    ("service session affinity", "Service", put("spec.sessionAffinity", "Cookie"),
     'spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", "None"'),
    ("service client ip timeout", "Service", both(
        put("spec.sessionAffinity", "ClientIP"),
        put("spec.sessionAffinityConfig", {"clientIP": {"timeoutSeconds": 100000}})),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 100000: must be greater "
     "than 0 and less than 86400"),
    ("external name required", "Service",
     both(put("spec.type", "ExternalName"), put("spec.ports", []),
                                               drop("spec.selector")),
     "spec.externalName: Required value"),
    ("external name invalid", "Service", both(put("spec.type", "ExternalName"),
                                              put("spec.externalName", "db_host")),
     f'spec.externalName: Invalid value: "db_host": {SUBDOMAIN_ERR}'),
    ("cluster ips must match", "Service", both(put("spec.clusterIP", "10.96.0.10"),
                                               put("spec.clusterIPs", ["10.96.0.11"])),
     'spec.clusterIPs: Invalid value: []string{"10.96.0.11"}: first value must match `clusterIP`'),
    ("cluster ip", "Service", put("spec.clusterIP", "10.96.0.300"),
     'spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. '
     "10.9.8.7 or 2001:db8::ffff)"),
    ("external traffic policy", "Service", put("spec.externalTrafficPolicy", "Local"),
     'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible '
     "services"),
    ("load balancer source ranges", "Service", put("spec.loadBalancerSourceRanges", ["10.0.0.0/8"]),
     "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"),
    ("external ip", "Service", put("spec.externalIPs", ["127.0.0.1"]),
     'spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range '
     "(127.0.0.0/8, ::1/128)"),
    ("endpoints address", "Endpoints", put("subsets.0.addresses", [{"ip": "not-an-ip"}]),
     'subsets[0].addresses[0].ip: Invalid value: "not-an-ip": must be a valid IP address, (e.g. '
     "10.9.8.7 or 2001:db8::ffff)"),
    ("endpoints subset", "Endpoints", put("subsets", [{"ports": [{"port": 80}]}]),
     "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"),
    # config
    ("config key", "ConfigMap", put("data", {"a b": "x"}),
     "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric "
     "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
     "for validation is '[-._a-zA-Z0-9]+')"),
    ("config key dots", "ConfigMap", put("data", {"..a": "x"}),
     'data[..a]: Invalid value: "..a": must not start with \'..\''),
    ("config key in both", "ConfigMap", put("binaryData", {"app.properties": "AA=="}),
     'data[app.properties]: Invalid value: "app.properties": duplicate of key present in binaryData'),
    ("config too large", "ConfigMap", put("data", {"big": "x" * (1024 * 1024 + 1)}),
     ": Too long: must have at most 1048576 bytes"),
    ("secret key", "Secret", put("data", {"a/b": "eA=="}),
     "data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric "
     "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
     "for validation is '[-._a-zA-Z0-9]+')"),
    ("secret tls keys", "Secret", put("type", "kubernetes.io/tls"),
     "data[tls.crt]: Required value"),
    ("secret service account", "Secret", put("type", "kubernetes.io/service-account-token"),
     "metadata.annotations[kubernetes.io/service-account.name]: Required value"),
    ("secret docker config", "Secret", both(put("type", "kubernetes.io/dockerconfigjson"),
                                            put("data", {".dockerconfigjson": "bm90IGpzb24="})),
     'data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": invalid character '
     "'n' looking for beginning of value"),
    ("secret too large", "Secret", put("data", {"big": "A" * (1400 * 1024)}),
     "data: Too long: must have at most 1048576 bytes"),
    ("namespace finalizer", "Namespace", put("spec", {"finalizers": ["custom"]}),
     'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is '
     "it fully qualified"),
    ("node taint effect", "Node", put("spec.taints", [{"key": "a", "effect": ""}]),
     "metadata.taints[0].effect: Required value"),
    ("node taint unique", "Node", put("spec.taints", [{"key": "a", "effect": "NoSchedule"},
                                                     {"key": "a", "value": "b",
                                                      "effect": "NoSchedule"}]),
     'metadata.taints[1]: Duplicate value: core.Taint{Key:"a", Value:"b", Effect:"NoSchedule", '
     "TimeAdded:(*v1.Time)(nil)}: taints must be unique by key and effect pair"),
    ("node pod cidr", "Node", put("spec.podCIDRs", ["10.244.1.0"]),
     'spec.podCIDRs[0]: Invalid value: "10.244.1.0": must be a valid CIDR value, (e.g. '
     "10.9.8.0/24 or 2001:db8::/64)"),
    ("node capacity", "Node", put("status.capacity", {"cpu": "-1"}),
     'status.capacity.cpu: Invalid value: "-1": must be greater than or equal to 0'),
    # storage, quota, limits
    ("pv access modes", "PersistentVolume", put("spec.accessModes", []),
     "spec.accessModes: Required value"),
    ("pv access mode", "PersistentVolume", put("spec.accessModes", ["ReadWriteAll"]),
     'spec.accessModes: Unsupported value: "ReadWriteAll": supported values: "ReadOnlyMany", '
     '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"'),
    ("pv capacity", "PersistentVolume", put("spec.capacity", {"storage": "0"}),
     'spec.capacity[storage]: Invalid value: "0": must be greater than zero'),
    ("pv source", "PersistentVolume", drop("spec.hostPath"),
     "spec: Required value: must specify a volume type"),
    ("pv reclaim policy", "PersistentVolume", put("spec.persistentVolumeReclaimPolicy", "Keep"),
     'spec.persistentVolumeReclaimPolicy: Unsupported value: "Keep": supported values: "Delete", '
     '"Recycle", "Retain"'),
    ("pvc access modes", "PersistentVolumeClaim", put("spec.accessModes", []),
     "spec.accessModes: Required value: at least 1 access mode is required"),
    ("pvc read write once pod", "PersistentVolumeClaim",
     put("spec.accessModes", ["ReadWriteOncePod", "ReadWriteOnce"]),
     "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"),
    ("pvc storage", "PersistentVolumeClaim", put("spec.resources", {}),
     "spec.resources[storage]: Required value"),
    ("pvc volume mode", "PersistentVolumeClaim", put("spec.volumeMode", "Raw"),
     'spec.volumeMode: Unsupported value: "Raw": supported values: "Block", "Filesystem"'),
    ("limit range order", "LimitRange", put("spec.limits.0.min", {"cpu": "3"}),
     "spec.limits[0].min[cpu]: Invalid value: 3: min value 3 is greater than max value 2"),
    ("limit range pod default", "LimitRange",
     put("spec.limits", [{"type": "Pod", "default": {"cpu": "1"}}]),
     "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'"),
    ("limit range type", "LimitRange", put("spec.limits", [{"type": "Volume"}]),
     'spec.limits[0].type: Invalid value: "Volume": must be a standard limit type or fully qualified'),
    ("quota resource", "ResourceQuota", put("spec.hard", {"storage": "1"}),
     'spec.hard[storage]: Invalid value: "storage": must be a standard resource for quota'),
    ("quota integer", "ResourceQuota", put("spec.hard", {"pods": "1.5"}),
     "spec.hard[pods]: Invalid value: 1500m: must be an integer"),
    ("quota scopes", "ResourceQuota", put("spec.scopes", ["BestEffort", "NotBestEffort"]),
     'spec.scopes: Invalid value: ["BestEffort","NotBestEffort"]: conflicting scopes'),
    ("storage class provisioner", "StorageClass", drop("provisioner"),
     "provisioner: Required value"),
    ("storage class reclaim", "StorageClass", put("reclaimPolicy", "Recycle"),
     'reclaimPolicy: Unsupported value: "Recycle": supported values: "Delete", "Retain"'),
    ("storage class binding", "StorageClass", put("volumeBindingMode", "Later"),
     'volumeBindingMode: Unsupported value: "Later": supported values: "Immediate", "WaitForFirstConsumer"'),
    ("priority class system prefix", "PriorityClass", put("metadata.name", "system-foo"),
     "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for "
     "system use only. error: system-foo is not a known system priority class"),
    ("priority class value", "PriorityClass", put("value", 2_000_000_000),
     "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"),
    ("priority class preemption", "PriorityClass", put("preemptionPolicy", "Always"),
     'preemptionPolicy: Unsupported value: "Always": supported values: "PreemptLowerPriority", "Never"'),
    # events
    ("event namespace", "Event", put("involvedObject.namespace", "other"),
     'involvedObject.namespace: Invalid value: "other": does not match event.namespace'),
    ("events type", "events.Event", put("type", "Info"),
     'type: Invalid value: "": has invalid value: Info'),
    ("events reporting controller", "events.Event", drop("reportingController"),
     "reportingController: Required value"),
    ("events series", "events.Event", put("series", {"count": 1}),
     'series.count: Invalid value: "": should be at least 2'),
    ("events deprecated fields", "events.Event", put("deprecatedCount", 3),
     'count: Invalid value: "": needs to be unset'),
    ("events note length", "events.Event", put("note", "x" * 1025),
     'message: Invalid value: "": can have at most 1024 characters'),
    # networking, discovery, coordination
    ("ingress path type", "Ingress", drop("spec.rules.0.http.paths.0.pathType"),
     "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"),
    ("ingress path type value", "Ingress", put("spec.rules.0.http.paths.0.pathType", "Regex"),
     'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", '
     '"ImplementationSpecific", "Prefix"'),
    ("ingress absolute path", "Ingress", put("spec.rules.0.http.paths.0.path", "api"),
     'spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path'),
    ("ingress path sequence", "Ingress", put("spec.rules.0.http.paths.0.path", "/a//b"),
     "spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'"),
    ("ingress backend", "Ingress", put("spec.rules.0.http.paths.0.backend", {}),
     'spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required'),
    ("ingress backend port", "Ingress", put("spec.rules.0.http.paths.0.backend",
                                            {"service": {"name": "web", "port": {}}}),
     "spec.rules[0].http.paths[0].backend: Required value: port name or number is required"),
    ("ingress backend service name", "Ingress", put("spec.rules.0.http.paths.0.backend",
                                                    {"service": {"name": "1web",
                                                                 "port": {"number": 80}}}),
     f'spec.rules[0].http.paths[0].backend.service.name: Invalid value: "1web": {DNS1035_ERR}'),
    ("ingress paths", "Ingress", put("spec.rules.0.http.paths", []),
     "spec.rules[0].http.paths: Required value"),
    ("ingress host ip", "Ingress", put("spec.rules.0.host", "10.0.0.1"),
     'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address'),
    ("ingress nothing", "Ingress", drop("spec.rules"),
     "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must "
     "be specified"),
    ("ingress class controller", "IngressClass", put("spec.controller", "nginx"),
     'spec.controller: Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")'),
    ("network policy peer", "NetworkPolicy", put("spec.ingress.0.from", [{}]),
     "spec.ingress[0].from[0]: Required value: must specify a peer"),
    ("network policy ip block", "NetworkPolicy",
     put("spec.ingress.0.from.0.ipBlock.except", ["11.0.0.0/16"]),
     'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "11.0.0.0/16": must be a strict '
     "subset of `cidr`"),
    ("network policy both peers", "NetworkPolicy", put("spec.ingress.0.from.0.podSelector", {}),
     "spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"),
    ("network policy end port", "NetworkPolicy",
     put("spec.ingress.0.ports", [{"port": 80, "endPort": 70}]),
     "spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`"),
    ("network policy types", "NetworkPolicy", put("spec.policyTypes", ["Both"]),
     'spec.policyTypes[0]: Unsupported value: "Both": supported values: "Ingress", "Egress"'),
    ("endpoint slice address type", "EndpointSlice", put("addressType", "IPv5"),
     'addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"'),
    ("endpoint slice address", "EndpointSlice", put("endpoints.0.addresses", ["fd00::1"]),
     'endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address'),
    ("endpoint slice addresses", "EndpointSlice", put("endpoints.0.addresses", []),
     "endpoints[0].addresses: Required value: must contain at least 1 address"),
    ("lease duration", "Lease", put("spec.leaseDurationSeconds", 0),
     "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
    # rbac
    ("role verbs", "Role", put("rules.0.verbs", []),
     "rules[0].verbs: Required value: verbs must contain at least one value"),
    ("role resources", "Role", put("rules.0.resources", []),
     "rules[0].resources: Required value: resource rules must supply at least one resource"),
    ("role non resource urls", "Role",
     put("rules", [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]),
     'rules[0].nonResourceURLs: Invalid value: []string{"/metrics"}: namespaced rules cannot apply '
     "to non-resource URLs"),
    ("cluster role mixed rule", "ClusterRole", put("rules.0.resources", ["pods"]),
     'rules[0].nonResourceURLs: Invalid value: []string{"/healthz"}: rules cannot apply to both '
     "regular resources and non-resource URLs"),
    ("binding role kind", "RoleBinding", put("roleRef.kind", "Group"),
     'roleRef.kind: Unsupported value: "Group": supported values: "Role", "ClusterRole"'),
    ("cluster binding role kind", "ClusterRoleBinding", put("roleRef.kind", "Role"),
     'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"'),
    ("binding api group", "RoleBinding", put("roleRef.apiGroup", "rbac"),
     'roleRef.apiGroup: Unsupported value: "rbac": supported values: "rbac.authorization.k8s.io"'),
    ("binding subject kind", "RoleBinding", put("subjects.0.kind", "Robot"),
     'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"'),
    ("binding subject namespace", "ClusterRoleBinding", drop("subjects.1.namespace"),
     "subjects[1].namespace: Required value"),
    ("binding subject group", "RoleBinding",
     put("subjects.1.apiGroup", "rbac.authorization.k8s.io"),
     'subjects[1].apiGroup: Unsupported value: "rbac.authorization.k8s.io": supported values: ""'),
    # policy, autoscaling
    ("pdb both", "PodDisruptionBudget", put("spec.maxUnavailable", 1),
     'spec: Invalid value: {"minAvailable":"50%","selector":{"matchLabels":{"app":"web"}},'
     '"maxUnavailable":1}: minAvailable and maxUnavailable cannot be both set'),
    ("pdb percent", "PodDisruptionBudget", put("spec.minAvailable", "150%"),
     "spec.minAvailable: Invalid value: 150%: must not be greater than 100%"),
    ("pdb eviction policy", "PodDisruptionBudget", put("spec.unhealthyPodEvictionPolicy", "Never"),
     'spec.unhealthyPodEvictionPolicy: Unsupported value: "Never": supported values: '
     '"AlwaysAllow", "IfHealthyBudget"'),
    ("hpa min above max", "HorizontalPodAutoscaler", put("spec.minReplicas", 10),
     "spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`"),
    ("hpa max", "HorizontalPodAutoscaler", put("spec.maxReplicas", 0),
     "spec.maxReplicas: Invalid value: 0: must be greater than 0"),
    ("hpa min", "HorizontalPodAutoscaler", put("spec.minReplicas", 0),
     "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"),
    ("hpa target", "HorizontalPodAutoscaler", put("spec.scaleTargetRef.name", ""),
     "spec.scaleTargetRef.name: Required value"),
    ("hpa metric type", "HorizontalPodAutoscaler", put("spec.metrics", [{"type": "Custom"}]),
     'spec.metrics[0].type: Unsupported value: "Custom": supported values: "Object", "Pods", '
     '"Resource", "External", "ContainerResource"'),
    ("hpa behavior", "HorizontalPodAutoscaler", put("spec.behavior", {"scaleUp": {"policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 3600}]}}),
     "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 3600: must be less than or "
     "equal to 1800"),
    # custom resource definitions
    ("crd name", "CustomResourceDefinition", put("metadata.name", "pets.example.com"),
     'metadata.name: Invalid value: "pets.example.com": must be spec.names.plural+"."+spec.group'),
    ("crd group", "CustomResourceDefinition", put("spec.group", "zoo"),
     'spec.group: Invalid value: "zoo": should be a domain with at least one dot'),
    ("crd scope", "CustomResourceDefinition", put("spec.scope", "Global"),
     'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"'),
    ("crd storage version", "CustomResourceDefinition", put("spec.versions.0.storage", False),
     "must have exactly one version marked as storage version"),
    ("crd version name", "CustomResourceDefinition", put("spec.versions.0.name", "V1"),
     f'spec.versions[0].name: Invalid value: "V1": {DNS1035_ERR}'),
    ("crd plural", "CustomResourceDefinition", put("spec.names.plural", "Pets"),
     f'spec.names.plural: Invalid value: "Pets": {DNS1035_ERR}'),
    ("crd kind", "CustomResourceDefinition", put("spec.names.kind", "My_Pet"),
     f'spec.names.kind: Invalid value: "My_Pet": may have mixed case, but should otherwise match: '
     f"{DNS1035_ERR}"),
    ("crd list kind", "CustomResourceDefinition", put("spec.names.listKind", "Pet"),
     'spec.names.listKind: Invalid value: "Pet": kind and listKind may not be the same'),
    ("crd schema required", "CustomResourceDefinition", drop("spec.versions.0.schema"),
     "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"),
    ("crd structural type", "CustomResourceDefinition",
     put("spec.versions.0.schema.openAPIV3Schema.properties.spec.properties.species", {}),
     "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[species].type: Required "
     "value: must not be empty for specified object fields"),
    ("crd root type", "CustomResourceDefinition",
     put("spec.versions.0.schema.openAPIV3Schema.type", "array"),
     'spec.versions[0].schema.openAPIV3Schema.type: Invalid value: "array": must be object at the root'),
    ("crd array items", "CustomResourceDefinition",
     put("spec.versions.0.schema.openAPIV3Schema.properties.spec.properties.species",
         {"type": "array"}),
     "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[species].items: Required "
     "value: must be specified"),
    ("crd list map keys", "CustomResourceDefinition",
     put("spec.versions.0.schema.openAPIV3Schema.properties.spec.properties.species",
         {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "map"}),
     "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[species]."
     "x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"),
    ("crd printer column", "CustomResourceDefinition",
     put("spec.versions.0.additionalPrinterColumns.0.type", "text"),
     'spec.versions[0].additionalPrinterColumns[0].type: Unsupported value: "text": supported '
     'values: "boolean", "date", "integer", "number", "string"'),
    ("crd scale path", "CustomResourceDefinition",
     put("spec.versions.0.subresources.scale.specReplicasPath", ".replicas"),
     'spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".replicas": should be a '
     "json path under .spec"),
]


@pytest.mark.parametrize("key, mutate, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(key, mutate, expected):
    obj = base(key)
    mutate(obj)
    found = messages(obj, key)
    assert any(expected in m for m in found), "\n".join(found)


# --- updates -------------------------------------------------------------------------------

UPDATES: list[tuple[str, str, Mutation, str]] = [
    ("name", "ConfigMap", put("metadata.name", "other"),
     'metadata.name: Invalid value: "other": field is immutable'),
    ("uid", "ConfigMap", put("metadata.uid", "u-2"),
     'metadata.uid: Invalid value: "u-2": field is immutable'),
    ("generation", "ConfigMap", put("metadata.generation", 1),
     "metadata.generation: Invalid value: 1: must not be decremented"),
    ("pod spec", "Pod", put("spec.restartPolicy", "Never"),
     "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
     "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
     "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
     "to 1 if it was previously negative)\n"),
    ("pod containers", "Pod", put("spec.containers", [container(), container("b")]),
     "spec.containers: Forbidden: pod updates may not add or remove containers"),
    ("pod tolerations", "Pod", put("spec.tolerations", []),
     "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"),
    ("pod active deadline", "Pod", put("spec.activeDeadlineSeconds", 200),
     "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"),
    ("deployment selector", "Deployment", both(put("spec.selector", {"matchLabels": {"app": "y"}}),
                                               put("spec.template.metadata.labels", {"app": "y"})),
     "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{app: y,},"
     "MatchExpressions:[]LabelSelectorRequirement{},}: field is immutable"),
    ("replica set selector", "ReplicaSet", both(put("spec.selector", {"matchLabels": {"app": "y"}}),
                                                put("spec.template.metadata.labels", {"app": "y"})),
     "spec.selector: Invalid value: &LabelSelector{MatchLabels:map[string]string{app: y,},"
     "MatchExpressions:[]LabelSelectorRequirement{},}: field is immutable"),
    ("stateful set spec", "StatefulSet", put("spec.serviceName", "other"),
     "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
     "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
     "are forbidden"),
    ("job template", "Job", put(f"{TC0}.image", "other"), "spec.template: Invalid value: "),
    ("job completions", "Job", put("spec.completions", 5),
     "spec.completions: Invalid value: 5: field is immutable"),
    ("service cluster ip", "Service", both(put("spec.clusterIP", "10.96.0.20"),
                                           put("spec.clusterIPs", ["10.96.0.20"])),
     'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.20"}: may not change once set'),
    ("configmap immutable", "ConfigMap", put("data", {"a": "b"}),
     "data: Forbidden: field is immutable when `immutable` is set"),
    ("secret type", "Secret", put("type", "kubernetes.io/basic-auth"),
     'type: Invalid value: "kubernetes.io/basic-auth": field is immutable'),
    ("pvc spec", "PersistentVolumeClaim", put("spec.accessModes", ["ReadWriteMany"]),
     "spec: Forbidden: spec is immutable after creation except resources.requests and "
     "volumeAttributesClassName for bound claims\n"),
    ("role ref", "RoleBinding", put("roleRef.name", "writer"),
     'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", '
     'Name:"writer"}: cannot change roleRef'),
    ("storage class parameters", "StorageClass", put("parameters", {"type": "hdd"}),
     "parameters: Forbidden: updates to parameters are forbidden."),
    ("priority class value", "PriorityClass", put("value", 5),
     "value: Forbidden: may not be changed in an update."),
    ("endpoint slice address type", "EndpointSlice", both(put("addressType", "IPv6"),
                                                          put("endpoints.0.addresses",
                                                              ["fd00::1"])),
     'addressType: Invalid value: "IPv6": field is immutable'),
    ("crd group", "CustomResourceDefinition", both(put("spec.group", "zoo.example.org"),
                                                   put("metadata.name", "pets.zoo.example.org")),
     'spec.group: Invalid value: "zoo.example.org": field is immutable'),
    ("node pod cidr", "Node", put("spec.podCIDRs", ["10.244.2.0/24"]),
     'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid'),
    ("events reason", "events.Event", put("reason", "Killed"),
     'reason: Invalid value: "Killed": field is immutable'),
    ("events regarding", "events.Event", put("regarding.name", "other"),
     "involvedObject: Invalid value: "),
]

_PRIOR_STATE: dict[str, Mutation] = {
    "Pod": both(put("spec.tolerations", [{"key": "k", "operator": "Exists"}]),
                put("spec.activeDeadlineSeconds", 100)),
    "ConfigMap": both(put("immutable", True), put("metadata.generation", 2),
                      put("metadata.uid", "u-1")),
    "Service": both(put("spec.clusterIP", "10.96.0.10"), put("spec.clusterIPs", ["10.96.0.10"])),
}


@pytest.mark.parametrize("key, mutate, expected", [u[1:] for u in UPDATES],
                         ids=[u[0] for u in UPDATES])
def test_update_rule(key, mutate, expected):
    old = base(key)
    _PRIOR_STATE.get(key, lambda o: None)(old)
    apply_defaults(old, resource_of(key))
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "2"
    mutate(new)
    found = messages(new, key, old=old)
    assert any(m.startswith(expected) for m in found), "\n".join(found)


def test_pod_image_and_tolerations_may_change():
    old = base("Pod")
    old["spec"]["tolerations"] = [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                                   "tolerationSeconds": 10}]
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.27"
    new["spec"]["tolerations"][0]["tolerationSeconds"] = 20
    new["spec"]["tolerations"].append({"key": "other", "operator": "Exists"})
    new["metadata"]["labels"]["extra"] = "yes"
    assert messages(new, "Pod", old=old) == []


def test_immutable_configmap_may_still_change_metadata():
    old = base("ConfigMap")
    old["immutable"] = True
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"a": "b"}
    assert messages(new, "ConfigMap", old=old) == []
    new["immutable"] = False
    assert "immutable: Forbidden: field is immutable when `immutable` is set" in messages(new, "ConfigMap", old=old)


def test_bound_claims_may_grow():
    old = base("PersistentVolumeClaim")
    old["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    new = copy.deepcopy(old)
    new["spec"]["resources"]["requests"]["storage"] = "2Gi"
    new["spec"]["volumeName"] = "pv-1"
    assert messages(new, "PersistentVolumeClaim", old=old) == []
    new["spec"]["resources"]["requests"]["storage"] = "512Mi"
    assert ("spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
            in messages(new, "PersistentVolumeClaim", old=old))


# --- the error objects ---------------------------------------------------------------------


def test_causes_carry_type_field_and_message():
    dep = base("Deployment")
    dep["spec"]["template"]["metadata"]["labels"] = {"app": "x"}
    errs = check(dep, "Deployment")
    assert [e.cause() for e in errs] == [{
        "reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
        "message": 'Invalid value: map[string]string{"app":"x"}: `selector` does not match '
                   "template `labels`"}]


def test_required_fields_of_the_schema_are_reported_once():
    pod = base("Pod")
    del pod["spec"]["containers"][0]["name"]
    found = messages(pod, "Pod")
    assert found.count("spec.containers[0].name: Required value") == 1


def test_missing_required_field_with_no_hand_written_rule():
    role = base("Role")
    del role["rules"][0]["verbs"]
    assert messages(role, "Role") == ["rules[0].verbs: Required value: verbs must contain at least one value"]
    binding = base("RoleBinding")
    del binding["roleRef"]
    assert "roleRef: Required value" not in messages(binding,
                                                     "RoleBinding")  # roleRef.* errors cover it
    assert "roleRef.name: Required value" in messages(binding, "RoleBinding")
    hpa = base("HorizontalPodAutoscaler")
    del hpa["spec"]["scaleTargetRef"]
    assert "spec.scaleTargetRef.kind: Required value" in messages(hpa, "HorizontalPodAutoscaler")


@pytest.mark.parametrize("key, mutate", [
    ("Pod", put(f"{C0}.lifecycle", {"preStop": {"sleep": {}}})),
    ("Pod",
     put(f"{C0}.readinessProbe", {"httpGet": {"port": 80, "httpHeaders": [{"name": "X-A"}]}})),
    ("Pod", put("spec.securityContext", {"sysctls": [{"name": "kernel.shm_rmid_forced"}]})),
    ("Pod", put("spec.volumes", [{"name": "v", "iscsi": {
        "targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.example:storage"}}])),
    ("Pod", put("spec.affinity", {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}]}})),
    ("Pod", both(put(f"{C0}.restartPolicy", "Never"), put(f"{C0}.restartPolicyRules", [
        {"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]))),
    ("Pod", put("spec.initContainers", [container("init", restartPolicy="Never")])),
    ("LimitRange", put("spec", {})),
    ("Event", drop("involvedObject")),
    ("Job", put("spec.podFailurePolicy", {})),
    ("CustomResourceDefinition", drop("spec.versions.0.served")),
], ids=["zero sleep", "header without value", "sysctl without value", "iscsi lun 0",
        "preferred term without preference", "container restart rules", "init restart policy",
        "no limits", "event without object", "no failure rules", "unserved version"])
def test_schema_required_fields_upstream_accepts_absent(key, mutate):
    """Upstream decodes into Go structs: a field the OpenAPI lists as required (it has no
    omitempty) may still be absent when its zero value is valid."""
    obj = base(key)
    mutate(obj)
    assert messages(obj, key) == []


def test_required_field_reported_by_its_holder_is_not_repeated():
    pod = base("Pod")
    pod["spec"]["schedulingGates"] = [{}]
    found = messages(pod, "Pod")
    assert found and all(m.startswith("spec.schedulingGates[0]: Invalid value") for m in found)


# --- types: upstream's decoder refuses these outright ------------------------------------------


@pytest.mark.parametrize("key, mutate, expected", [
    ("Deployment", put("spec.replicas", "3"),
     'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'),
    ("Pod", put("spec.containers", {"name": "x"}),
     'spec.containers: Invalid value: "object": spec.containers in body must be of type array: "object"'),
    ("Pod", put("spec.hostNetwork", "yes"),
     'spec.hostNetwork: Invalid value: "string": spec.hostNetwork in body must be of type boolean: "string"'),
    ("Pod", put(f"{C0}.env", [{"name": "A", "value": True}]),
     'spec.containers[0].env[0].value: Invalid value: "boolean": spec.containers[0].env[0].value '
     'in body must be of type string: "boolean"'),
    ("Service", put("spec.ports", [{"port": 80, "targetPort": 1.5}]),
     'spec.ports[0].targetPort: Invalid value: "number": spec.ports[0].targetPort in body must be '
     'of type integer,string: "number"'),
    ("Pod", put(f"{C0}.resources", {"limits": {"cpu": "one"}}),
     "spec.containers[0].resources.limits.cpu: Invalid value: \"one\": quantities must match the "
     "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    ("Pod", put(f"{C0}.resources", {"limits": {"cpu": "1K"}}),
     "spec.containers[0].resources.limits.cpu: Invalid value: \"1K\": unable to parse quantity's suffix"),
    ("Deployment", put("spec.replicas", 2 ** 31),
     "spec.replicas: Invalid value: 2147483648: must be between -2147483648 and 2147483647"),
    ("Secret", put("data", {"a": "!!"}),
     "data.a: Invalid value: illegal base64 data at input byte 0"),
], ids=["integer", "array", "boolean", "string", "int-or-string", "quantity", "quantity suffix",
        "int32", "base64"])
def test_wrongly_typed_values(key, mutate, expected):
    obj = base(key)
    mutate(obj)
    assert messages(obj, key, defaults=False) == [expected]


def test_nulls_are_zero_values():
    dep = base("Deployment")
    dep["spec"]["replicas"] = None
    dep["metadata"]["labels"] = None
    assert messages(dep, "Deployment") == []


def test_float_integers_are_integers():
    dep = base("Deployment")
    dep["spec"]["replicas"] = 2.0
    assert messages(dep, "Deployment") == []


def test_status_fields_are_not_required():
    pod = base("Pod")
    pod["status"] = {"containerStatuses": [{"name": "app"}], "conditions": [{"status": "True"}]}
    assert messages(pod, "Pod") == []


def test_virtual_kinds_only_get_type_checks():
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}
    resource = REGISTRY.for_kind("authorization.k8s.io", "v1", "SelfSubjectAccessReview")
    assert validate(review, resource, S) == []


# --- formats, quantities, cron -------------------------------------------------------------


def test_qualified_names():
    assert is_qualified_name("app.kubernetes.io/name") == []
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 bytes"]
    assert is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert is_qualified_name("a/") == ["name part must be non-empty",
                                       "name part " + NAME_PART_ERR[len("name part "):]]


@pytest.mark.parametrize("raw, canonical", [
    ("1", "1"), ("1000m", "1"), ("1500m", "1500m"), ("0.5", "500m"), (0.5, "500m"), (2, "2"),
    ("1Gi", "1Gi"), ("1024Mi", "1Gi"), ("1.5Gi", "1536Mi"), ("512", "512"), ("0.5Ki", "512"),
    ("100M", "100M"), ("1e3", "1e3"), ("1k", "1k"), ("1000", "1k"), ("0", "0"), ("-1Gi", "-1Gi"),
    ("10u", "10u"), ("0.1m", "100u"), ("1.", "1"), (".5", "500m"),
])
def test_quantities_are_printed_canonically(raw, canonical):
    q = parse_quantity(raw)
    assert str(q) == canonical
    assert canonical_quantity(q.value, q.format) == canonical


@pytest.mark.parametrize("raw", ["", "one", "1K", "1Gb", "1e", "--1", "1 Gi"])
def test_malformed_quantities(raw):
    with pytest.raises(ValueError):
        parse_quantity(raw)


@pytest.mark.parametrize("schedule, error", [
    ("*/5 * * * *", ""), ("0 0 1 jan mon", ""), ("@hourly", ""), ("@every 1h30m", ""),
    ("TZ=Europe/Paris 0 3 * * *", ""), ("0-59/15 0-23 * * 1-5", ""),
    ("", "empty spec string"),
    ("@weekdays", "unrecognized descriptor: @weekdays"),
    ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("* * * 13 *", "end of range (13) above maximum (12): 13"),
])
def test_cron_schedules(schedule, error):
    assert cron_schedule_error(schedule) == error


# --- custom resources ----------------------------------------------------------------------

PET_SCHEMA = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["species"],
            "properties": {
                "species": {"type": "string", "enum": ["cat", "dog"]},
                "age": {"type": "integer", "minimum": 0, "maximum": 30},
                "weight": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                           "multipleOf": 0.5},
                "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "born": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3,
                         "x-kubernetes-list-type": "set"},
                "toys": {"type": "array", "minItems": 1, "uniqueItems": True,
                         "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {
                              "name": {"type": "string"},
                              "port": {"x-kubernetes-int-or-string": True}}}},
                "owner": {"type": "string", "nullable": True},
                "vet": {"type": "string"},
                "extra": {"x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "maxProperties": 1,
                           "additionalProperties": {"type": "string"}},
                "contact": {"type": "object",
                            "anyOf": [{"required": ["email"]}, {"required": ["phone"]}],
                            "properties": {"email": {"type": "string"},
                                           "phone": {"type": "string"}}},
            },
        },
    },
}


def pet(**spec: Any) -> dict:
    return {"apiVersion": "zoo.example.com/v1", "kind": "Pet",
            "metadata": {"name": "tom", "namespace": "default"},
            "spec": {"species": "cat", **spec}}


def custom_messages(obj: dict, **kw: Any) -> list[str]:
    return [e.message() for e in validate_custom(obj, {"openAPIV3Schema": PET_SCHEMA}, **kw)]


def test_a_valid_custom_resource():
    obj = pet(age=3, weight=4.5, name="tom", born="2020-01-02T03:04:05Z", tags=["a", "b"],
              toys=["ball"], ports=[{"name": "a", "port": 80}, {"name": "b", "port": "http"}],
              owner=None, extra={"anything": [1, {"x": None}]}, labels={"a": "b"},
              contact={"phone": "123"})
    assert custom_messages(obj, namespaced=True) == []


@pytest.mark.parametrize("spec, expected", [
    ({"species": "cow"}, 'spec.species: Unsupported value: "cow": supported values: "cat", "dog"'),
    ({"age": "3"},
     'spec.age: Invalid value: "string": spec.age in body must be of type integer: "string"'),
    ({"age": 31},
     "spec.age: Invalid value: 31: spec.age in body should be less than or equal to 30"),
    ({"age": -1},
     "spec.age: Invalid value: -1: spec.age in body should be greater than or equal to 0"),
    ({"weight": 0}, "spec.weight: Invalid value: 0: spec.weight in body should be greater than 0"),
    ({"weight": 1.2},
     "spec.weight: Invalid value: 1.2: spec.weight in body should be a multiple of 0.5"),
    ({"name": "abcdef"}, "spec.name: Too long: may not be longer than 5"),
    ({"name": "a"},
     'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long'),
    ({"name": "Tom"},
     "spec.name: Invalid value: \"Tom\": spec.name in body should match '^[a-z]+$'"),
    ({"born": "yesterday"}, 'spec.born: Invalid value: "yesterday": spec.born in body must be of '
                            'type date-time: "yesterday"'),
    ({"tags": ["a", "b", "c", "d"]}, "spec.tags: Too many: 4: must have at most 3 items"),
    ({"tags": ["a", "a"]}, 'spec.tags[1]: Duplicate value: "a"'),
    ({"toys": []}, "spec.toys: Invalid value: 0: spec.toys in body should have at least 1 items"),
    ({"toys": ["a", "a"]},
     'spec.toys: Invalid value: "": spec.toys in body shouldn\'t contain duplicates'),
    ({"ports": [{"name": "a"}, {"name": "a", "port": 2}]},
     'spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}'),
    ({"ports": [{"name": "a", "port": True}]},
     'spec.ports[0].port: Invalid value: "boolean": spec.ports[0].port in body must be of type '
     'integer,string: "boolean"'),
    ({"vet": None},
     'spec.vet: Invalid value: "null": spec.vet in body must be of type string: "null"'),
    ({"labels": {"a": "1", "b": "2"}}, "spec.labels: Too many: 2: must have at most 1 items"),
    ({"labels": {"a": 1}}, 'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be '
                           'of type string: "integer"'),
    ({"contact": {}},
     'spec.contact: Invalid value: "": spec.contact in body must validate at least '
     "one schema (anyOf)"),
])
def test_custom_resource_rules(spec, expected):
    obj = pet()
    obj["spec"].update(spec)
    assert expected in custom_messages(obj)


def test_custom_resource_required_fields():
    obj = pet()
    del obj["spec"]["species"]
    assert custom_messages(obj) == ["spec.species: Required value"]
    del obj["spec"]
    assert custom_messages(obj) == ["spec: Required value"]


def test_custom_resource_metadata():
    obj = pet()
    obj["metadata"] = {"name": "Tom", "finalizers": ["cleanup"]}
    assert custom_messages(obj, namespaced=True) == [
        f'metadata.name: Invalid value: "Tom": {SUBDOMAIN_ERR}',
        "metadata.namespace: Required value",
    ]  # a plain finalizer name is fine on custom resources
    old = pet()
    new = pet()
    new["metadata"]["name"] = "jerry"
    assert custom_messages(new, old=old) == ['metadata.name: Invalid value: "jerry": field is immutable']


def test_custom_resources_through_validate():
    crd_version = {"name": "v1", "served": True, "storage": True,
                   "schema": {"openAPIV3Schema": PET_SCHEMA}}
    resource = Resource("zoo.example.com", "v1", "pets", "Pet", True, crd=crd_version)
    assert [e.message() for e in validate(pet(species="cow"), resource, S)] == [
        'spec.species: Unsupported value: "cow": supported values: "cat", "dog"']


# --- speed ---------------------------------------------------------------------------------


def test_a_pod_validates_well_under_a_millisecond():
    pod = base("Pod")
    resource = resource_of("Pod")
    apply_defaults(pod, resource)
    validate(pod, resource, S)
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        validate(pod, resource, S)
    per_pod = (time.perf_counter() - start) / runs
    assert per_pod < 0.002, f"{per_pod * 1e6:.0f} µs per pod"


# --- robustness: no input crashes the validator --------------------------------------------

_ODD_VALUES = [None, "x", -1, 1.5, True, [], {}, [None], {"a": None}]


def _paths(obj: Any, prefix: tuple = ()) -> Any:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@pytest.mark.parametrize("key", ["Pod", "Deployment", "Service", "CustomResourceDefinition",
                                 "Ingress", "RoleBinding", "Job"])
def test_wrongly_typed_values_anywhere_are_errors_not_crashes(key):
    resource = resource_of(key)
    valid = base(key)
    apply_defaults(valid, resource)
    for path in list(_paths(valid))[1:]:
        for value in _ODD_VALUES:
            obj = copy.deepcopy(valid)
            target = obj
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = copy.deepcopy(value)
            apply_defaults(obj, resource)
            assert isinstance(validate(obj, resource, S), list)
            assert isinstance(validate(obj, resource, S, old=valid), list)


def test_malformed_crd_schemas_do_not_crash_custom_validation():
    for path in list(_paths(PET_SCHEMA))[1:]:
        for value in _ODD_VALUES:
            schema = copy.deepcopy(PET_SCHEMA)
            target = schema
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = copy.deepcopy(value)
            assert isinstance(validate_custom(pet(age=3, tags=["a"], ports=[{"name": "a"}]),
                                              {"openAPIV3Schema": schema}), list)
