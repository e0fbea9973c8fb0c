"""The Kubernetes protobuf codec (``sampan.api.protobuf``): round trips of built-in kinds, the
JSON-form rules on hand-built wire bytes, bodies captured from real kubectl 1.37, and real
kubectl (Go's client-go) reading what we encode, watch frames included.

Regenerate the captured fixtures with ``python tests/unit/test_protobuf.py --capture``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from sampan.api import protobuf
from sampan.api.errors import StatusError
from sampan.api.protobuf import (
    MAGIC,
    MEDIA_TYPE,
    WATCH_MEDIA_TYPE,
    EncodeError,
    UnsupportedKind,
    decode,
    encode,
    encode_watch_event,
    format_go_duration,
    parse_go_duration,
    supports,
)

FIXTURES = Path(__file__).parent / "fixtures"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")

TIME = "2026-11-24T20:30:57Z"
LATER = "2026-11-24T20:31:02Z"


# --------------------------------------------------------------------------------------------
# objects


def managed_fields(api_version: str) -> list[dict[str, Any]]:
    return [{"manager": "kubectl-create", "operation": "Update", "apiVersion": api_version,
             "time": TIME, "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]


def metadata(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "uid": "0d4a3c2e-1111-2222-3333-444455556666",
            "resourceVersion": "42", "creationTimestamp": TIME, **extra}


CONFIGMAP = {
    "kind": "ConfigMap", "apiVersion": "v1",
    "metadata": metadata("settings", labels={"app": "web"}, annotations={"note": "ünïcode ✓"},
                         managedFields=managed_fields("v1")),
    "data": {"a": "b", "empty": "", "multi": "line1\nline2\n"},
    "binaryData": {"blob": base64.b64encode(b"\x00\x01\xfe\xff").decode()},
    "immutable": False,  # *bool: an explicit false is kept
}

SECRET = {
    "kind": "Secret", "apiVersion": "v1",
    "metadata": metadata("creds"),
    "data": {"key": base64.b64encode(bytes(range(256))).decode(), "empty": ""},
    "type": "Opaque",
}

DEPLOYMENT = {
    "kind": "Deployment", "apiVersion": "apps/v1",
    "metadata": metadata("web", generation=4, labels={"app": "web"},
                         annotations={"deployment.kubernetes.io/revision": "3"},
                         managedFields=managed_fields("apps/v1")),
    "spec": {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "web"},
                     "matchExpressions": [{"key": "tier", "operator": "In",
                                           "values": ["frontend", "edge"]}]},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "web", "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                              "requests": {"cpu": "250m", "memory": "64Mi",
                                           "ephemeral-storage": "1Gi"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http",
                                              "scheme": "HTTP"},
                                  "periodSeconds": 10, "failureThreshold": 3},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            }], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst", "securityContext": {},
                "schedulerName": "default-scheduler"},
        },
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
        "minReadySeconds": 5, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        "paused": True,
    },
    "status": {
        "observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": LATER,
                        "lastTransitionTime": TIME, "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability."}],
    },
}

POD = {
    "kind": "Pod", "apiVersion": "v1",
    "metadata": metadata("web-1", ownerReferences=[{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
        "uid": "11111111-2222-3333-4444-555555555555", "controller": True,
        "blockOwnerDeletion": True}], finalizers=["example.com/keep"],
        deletionTimestamp=LATER, deletionGracePeriodSeconds=30),
    "spec": {
        "volumes": [
            {"name": "config", "configMap": {"name": "settings", "defaultMode": 420,
                                             "items": [{"key": "a", "path": "a.txt"}]}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                "expirationSeconds": 3607, "path": "token"}}]}},
        ],
        "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"],
                            "resources": {}}],
        "containers": [{
            "name": "app", "image": "busybox", "args": ["sleep", "3600"],
            "env": [{"name": "MODE", "value": "prod"},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                "fieldPath": "spec.nodeName"}}},
                    {"name": "UNSET"}],
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": True}],
            "securityContext": {"runAsUser": 0, "runAsNonRoot": False,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "100m"}},
            "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
        }],
        "nodeName": "node-1", "serviceAccountName": "default",
        "securityContext": {"supplementalGroups": [1000, 2000], "fsGroup": 0},
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                                               "topologyKey": "kubernetes.io/hostname"}}]}},
        "priority": 0, "enableServiceLinks": True,
    },
    "status": {
        "phase": "Running", "hostIP": "10.0.0.5", "podIP": "10.244.1.7",
        "podIPs": [{"ip": "10.244.1.7"}], "startTime": TIME, "qosClass": "Burstable",
        "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None,
                        "lastTransitionTime": LATER}],
        "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                               "image": "busybox:latest", "imageID": "sha256:abc",
                               "containerID": "runc://1234", "started": True,
                               "state": {"running": {"startedAt": LATER}},
                               "lastState": {}}],
    },
}

SERVICE = {
    "kind": "Service", "apiVersion": "v1",
    "metadata": metadata("web"),
    "spec": {
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http",
                   "nodePort": 30080},
                  {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9090}],
        "selector": {"app": "web"}, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "type": "NodePort", "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
    },
    "status": {"loadBalancer": {}},
}

NAMESPACE = {
    "kind": "Namespace", "apiVersion": "v1",
    "metadata": {"name": "team-a", "uid": "22222222-3333-4444-5555-666666666666",
                 "resourceVersion": "7", "creationTimestamp": TIME,
                 "labels": {"kubernetes.io/metadata.name": "team-a"}},
    "spec": {"finalizers": ["kubernetes"]},
    "status": {"phase": "Active"},
}

SELF_SUBJECT_ACCESS_REVIEW = {
    "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
    "metadata": {},
    "spec": {"resourceAttributes": {"namespace": "default", "verb": "create",
                                    "resource": "pods", "subresource": "exec"}},
    "status": {"allowed": True, "reason": "RBAC: allowed by RoleBinding \"dev\""},
}

SUBJECT_ACCESS_REVIEW = {
    "kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
    "metadata": {},
    "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}, "user": "alice",
             "groups": ["dev"], "extra": {"scopes": ["read", "write"], "none": []},
             "uid": "u-1"},
    "status": {"allowed": False, "denied": True},
}

STATUS = {
    "kind": "Status", "apiVersion": "v1", "metadata": {},
    "status": "Failure", "message": 'pods "x" not found', "reason": "NotFound",
    "details": {"name": "x", "kind": "pods",
                "causes": [{"reason": "FieldValueRequired", "message": "Required value",
                            "field": "spec.containers"}]},
    "code": 404,
}

CONFIGMAP_LIST = {
    "kind": "ConfigMapList", "apiVersion": "v1",
    "metadata": {"resourceVersion": "99", "continue": "token", "remainingItemCount": 0},
    "items": [{"metadata": metadata("one"), "data": {"k": "v"}},
              {"metadata": metadata("two")}],
}

EVENT = {
    "kind": "Event", "apiVersion": "events.k8s.io/v1",
    "metadata": metadata("web-1.17f"),
    "eventTime": "2026-11-24T20:30:57.123456Z",
    "reportingController": "kubelet", "reportingInstance": "node-1",
    "action": "Pulling", "reason": "Pulling", "type": "Normal", "note": "Pulling image",
    "regarding": {"kind": "Pod", "namespace": "default", "name": "web-1", "apiVersion": "v1"},
    "series": {"count": 2, "lastObservedTime": "2026-11-24T20:31:00.000001Z"},
}

LEASE = {
    "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
    "metadata": metadata("node-1"),
    "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
             "renewTime": "2026-11-24T20:30:57.500000Z", "leaseTransitions": 0},
}

POD_METRICS = {
    "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
    "metadata": metadata("web-1"),
    "timestamp": TIME, "window": "30s",
    "containers": [{"name": "app", "usage": {"cpu": "12m", "memory": "48Mi"}}],
}

CRD = {
    "kind": "CustomResourceDefinition", "apiVersion": "apiextensions.k8s.io/v1",
    "metadata": {"name": "widgets.example.com", "creationTimestamp": TIME},
    "spec": {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "listKind": "WidgetList", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "required": ["size"],
                             "properties": {
                                 "size": {"type": "integer", "minimum": 1, "maximum": 10.5,
                                          "default": 3},
                                 "mode": {"type": "string", "enum": ["fast", "slow", None]},
                                 "port": {"x-kubernetes-int-or-string": True},
                                 "tags": {"type": "array", "items": {"type": "string"},
                                          "x-kubernetes-list-type": "set"},
                                 "labels": {"type": "object",
                                            "additionalProperties": {"type": "string"}},
                                 "open": {"type": "object", "additionalProperties": False},
                                 "raw": {"x-kubernetes-preserve-unknown-fields": True},
                             },
                             "dependencies": {"mode": ["size"],
                                              "port": {"required": ["mode"]}},
                             "x-kubernetes-validations": [{"rule": "self.size < 100",
                                                           "message": "too big"}]},
                },
            }},
            "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size",
                                                     "statusReplicasPath": ".status.size"}},
            "additionalPrinterColumns": [{"name": "Size", "type": "integer",
                                          "jsonPath": ".spec.size"}],
        }],
        "conversion": {"strategy": "None"},
    },
    "status": {"acceptedNames": {"plural": "widgets", "kind": "Widget"},
               "storedVersions": ["v1"]},
}

CONTROLLER_REVISION = {
    "kind": "ControllerRevision", "apiVersion": "apps/v1",
    "metadata": metadata("web-7d4b9c"),
    "data": {"spec": {"template": {"$patch": "replace", "spec": {"containers": []}}}},
    "revision": 2,
}

ROUND_TRIPS = {
    "ConfigMap": CONFIGMAP, "Secret": SECRET, "Deployment": DEPLOYMENT, "Pod": POD,
    "Service": SERVICE, "Namespace": NAMESPACE,
    "SelfSubjectAccessReview": SELF_SUBJECT_ACCESS_REVIEW,
    "SubjectAccessReview": SUBJECT_ACCESS_REVIEW, "Status": STATUS,
    "ConfigMapList": CONFIGMAP_LIST, "Event": EVENT, "Lease": LEASE,
    "PodMetrics": POD_METRICS, "CustomResourceDefinition": CRD,
    "ControllerRevision": CONTROLLER_REVISION,
}


def without_nulls(value: Any) -> Any:
    """The dict a JSON parse gives once nulls are dropped: the decoder never writes them."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# wire helpers, independent of the codec under test


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes, *, content_encoding: str = "") -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return (MAGIC + field(1, type_meta) + field(2, raw) + field(3, content_encoding)
            + field(4, ""))


def fields_of(message: bytes) -> list[tuple[int, int | bytes]]:
    """(number, varint or bytes) pairs of a message, to look inside what encode wrote."""
    pairs, pos = [], 0
    while pos < len(message):
        key, pos = read_varint(message, pos)
        if key & 7 == 0:
            value, pos = read_varint(message, pos)
            pairs.append((key >> 3, value))
        else:
            assert key & 7 == 2
            size, pos = read_varint(message, pos)
            pairs.append((key >> 3, message[pos:pos + size]))
            pos += size
    return pairs


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("obj", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trip_is_identity(obj: dict[str, Any]) -> None:
    body = encode(obj)
    assert body.startswith(MAGIC)
    assert decode(body) == without_nulls(obj)


def test_envelope_carries_type_meta_and_raw_message() -> None:
    body = encode(NAMESPACE)
    unknown = dict(fields_of(body[len(MAGIC):]))
    assert dict(fields_of(unknown[1])) == {1: b"v1", 2: b"Namespace"}
    assert unknown[3] == b"" and unknown[4] == b""  # contentEncoding, contentType
    raw = dict(fields_of(unknown[2]))
    assert set(raw) == {1, 2, 3}  # metadata, spec, status; apiVersion/kind are not repeated
    assert dict(fields_of(raw[1]))[1] == b"team-a"


def test_v1_list_items_are_embedded_protobuf_objects() -> None:
    listing = {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": ""},
               "items": [NAMESPACE, SERVICE]}
    body = encode(listing)
    raw = dict(fields_of(body[len(MAGIC):]))[2]
    items = [value for number, value in fields_of(raw) if number == 2]
    assert [dict(fields_of(item))[1][:len(MAGIC)] for item in items] == [MAGIC, MAGIC]
    assert decode(body) == {"kind": "List", "apiVersion": "v1", "metadata": {},
                            "items": [NAMESPACE, SERVICE]}


def test_list_of_custom_resources_is_not_encodable() -> None:
    listing = {"kind": "List", "apiVersion": "v1", "metadata": {},
               "items": [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}]}
    with pytest.raises(UnsupportedKind):
        encode(listing)


def test_controller_revision_data_stays_json() -> None:
    raw = dict(fields_of(encode(CONTROLLER_REVISION)[len(MAGIC):]))[2]
    data = dict(fields_of(raw))[2]
    assert orjson.loads(dict(fields_of(data))[1]) == CONTROLLER_REVISION["data"]


# --------------------------------------------------------------------------------------------
# the JSON form of hand-built messages


def test_present_zero_is_kept_only_for_pointers_and_fields_without_omitempty() -> None:
    # DeploymentSpec as Go writes it: every non-pointer field, zero or not.
    spec = (field(1, 0)  # replicas *int32 = 0
            + field(4, b"")  # strategy (struct)
            + field(5, 0)  # minReadySeconds int32 omitempty
            + field(7, 0))  # paused bool omitempty
    body = envelope("apps/v1", "Deployment", field(1, field(1, "web")) + field(2, spec))
    assert decode(body) == {"kind": "Deployment", "apiVersion": "apps/v1",
                            "metadata": {"name": "web"},
                            "spec": {"replicas": 0, "strategy": {}}}


def test_non_omitempty_zero_scalars_are_kept() -> None:
    # ContainerPort.containerPort has no omitempty; hostPort is omitempty.
    port = field(2, 0) + field(3, 0) + field(4, "TCP")
    pod_spec = field(2, field(1, "c") + field(6, port))
    body = envelope("v1", "Pod", field(2, pod_spec))
    container = decode(body)["spec"]["containers"][0]
    assert container == {"name": "c", "ports": [{"containerPort": 0, "protocol": "TCP"}]}


def test_zero_time_is_left_out_like_null() -> None:
    # Go writes ObjectMeta.creationTimestamp as an empty message when the time is zero.
    meta = field(1, "c") + field(8, b"") + field(9, field(1, -62135596800))
    body = envelope("v1", "ConfigMap", field(1, meta))
    assert decode(body)["metadata"] == {"name": "c"}


def test_time_drops_fraction_and_micro_time_keeps_six_digits() -> None:
    stamp = field(1, 1795552257) + field(2, 123456789)
    cm = envelope("v1", "ConfigMap", field(1, field(8, stamp)))
    assert decode(cm)["metadata"]["creationTimestamp"] == TIME
    lease = envelope("coordination.k8s.io/v1", "Lease", field(2, field(4, stamp)))
    assert decode(lease)["spec"]["renewTime"] == "2026-11-24T20:30:57.123456Z"


def test_time_with_an_offset_is_written_in_utc() -> None:
    obj = {**NAMESPACE, "metadata": {"name": "x", "creationTimestamp": "2026-11-24T21:30:57+01:00"}}
    assert decode(encode(obj))["metadata"]["creationTimestamp"] == TIME


def test_int_or_string_and_quantity() -> None:
    port = field(1, 1) + field(2, 0) + field(3, "http")  # type String
    number = field(1, 0) + field(2, 8080) + field(3, "")
    spec = field(1, field(1, "a") + field(4, port)) + field(1, field(1, "b") + field(4, number))
    svc = decode(envelope("v1", "Service", field(2, spec)))
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http", 8080]
    quota = field(1, field(1, "cpu") + field(2, field(1, "1500m")))  # map entry
    rq = decode(envelope("v1", "ResourceQuota", field(2, quota)))
    assert rq["spec"] == {"hard": {"cpu": "1500m"}}


def test_bytes_are_base64_and_map_entries_keep_empty_values() -> None:
    data = field(2, field(1, "bin") + field(2, b"\x00\xff")) + field(2, field(1, "none"))
    secret = decode(envelope("v1", "Secret", data))
    assert secret["data"] == {"bin": "AP8=", "none": ""}


def test_negative_ints_use_ten_byte_varints() -> None:
    pc = {"kind": "PriorityClass", "apiVersion": "scheduling.k8s.io/v1",
          "metadata": {"name": "low"}, "value": -5}
    raw = dict(fields_of(encode(pc)[len(MAGIC):]))[2]
    assert raw.endswith(b"\x10" + varint(-5)) and len(varint(-5)) == 10
    assert decode(encode(pc))["value"] == -5


def test_packed_and_unpacked_repeated_ints_decode_alike() -> None:
    unpacked = field(4, 1000) + field(4, 2000)
    packed = field(4, varint(1000) + varint(2000))
    for security_context in (unpacked, packed):
        body = envelope("v1", "Pod", field(2, field(14, security_context)))
        assert decode(body)["spec"]["securityContext"] == {"supplementalGroups": [1000, 2000]}


def test_unknown_fields_are_skipped() -> None:
    meta = field(1, "c") + field(999, "from the future") + field(998, 7)
    body = envelope("v1", "ConfigMap", field(1, meta) + field(77, b"\x01\x02"))
    assert decode(body) == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}}


def test_inline_volume_source_sits_in_the_volume() -> None:
    volume = field(1, "data") + field(2, field(2, field(1, "Memory")))  # VolumeSource.emptyDir
    body = envelope("v1", "Pod", field(2, field(1, volume)))
    assert decode(body)["spec"]["volumes"] == [{"name": "data", "emptyDir": {"medium": "Memory"}}]


def test_json_names_come_from_go_tags() -> None:
    props = {"$ref": "#/definitions/x", "x-kubernetes-preserve-unknown-fields": True}
    crd = {**CRD, "spec": {**CRD["spec"], "versions": [{
        "name": "v1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": props}}]}}
    version = decode(encode(crd))["spec"]["versions"][0]
    assert version["schema"]["openAPIV3Schema"] == props


def test_duration_strings_follow_go() -> None:
    cases = {0: "0s", 999: "999ns", 1_500: "1.5µs", 1_500_000: "1.5ms", 1_000_000_000: "1s",
             60_000_000_000: "1m0s", 3_600_000_000_000: "1h0m0s",
             3_723_500_000_000: "1h2m3.5s", -90_000_000_000: "-1m30s"}
    for nanos, text in cases.items():
        assert format_go_duration(nanos) == text
        assert parse_go_duration(text) == nanos
    assert parse_go_duration("1h30m") == 5_400_000_000_000
    assert parse_go_duration("300ms") == 300_000_000
    assert parse_go_duration("1.5h") == 5_400_000_000_000
    assert parse_go_duration("0") == 0
    for bad in ("", "5", "1x", "h", "-"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)


# --------------------------------------------------------------------------------------------
# watch frames


def test_watch_frame_is_length_and_bare_watch_event() -> None:
    frame = encode_watch_event("MODIFIED", DEPLOYMENT)
    length = int.from_bytes(frame[:4], "big")
    assert length == len(frame) - 4
    event = dict(fields_of(frame[4:]))  # no magic, no Unknown around the event
    assert event[1] == b"MODIFIED"
    embedded = dict(fields_of(event[2]))[1]
    assert embedded.startswith(MAGIC)
    assert decode(embedded) == DEPLOYMENT


def test_watch_error_event_carries_a_status() -> None:
    frame = encode_watch_event("ERROR", {**STATUS, "code": 410, "reason": "Expired",
                                         "message": "too old resource version: 1 (5)"})
    event = dict(fields_of(frame[4:]))
    assert decode(dict(fields_of(event[2]))[1])["code"] == 410


def test_watch_of_a_custom_resource_is_refused() -> None:
    with pytest.raises(UnsupportedKind):
        encode_watch_event("ADDED", {"apiVersion": "example.com/v1", "kind": "Widget"})


# --------------------------------------------------------------------------------------------
# what is supported, and what fails


def test_supports_built_in_kinds_only() -> None:
    assert supports("", "v1", "Pod")
    assert supports("", "v1", "Status")
    assert supports("apps", "v1", "Deployment")
    assert supports("apps", "v1", "DeploymentList")
    assert supports("apps", "v1", "DeleteOptions")  # every group version has the options kinds
    assert supports("metrics.k8s.io", "v1beta1", "NodeMetricsList")
    assert supports("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
    assert supports("meta.k8s.io", "v1", "PartialObjectMetadataList")
    assert not supports("meta.k8s.io", "v1", "Table")  # JSON only upstream
    assert not supports("example.com", "v1", "Widget")
    assert not supports("example.com", "v1", "DeleteOptions")
    assert not supports("apps", "v1", "Pod")


def test_schema_header_names_the_upstream_commits() -> None:
    header = orjson.loads(protobuf.SCHEMA_PATH.read_bytes())["header"]
    for repo in ("kubernetes/api", "kubernetes/apimachinery"):
        commit = header["sources"][repo]["commit"]
        assert len(commit) == 40 and int(commit, 16) >= 0


def bad_request(body: bytes) -> str:
    with pytest.raises(StatusError) as caught:
        decode(body)
    assert caught.value.code == 400 and caught.value.reason == "BadRequest"
    return caught.value.message


def test_malformed_bodies_are_400() -> None:
    good = encode(CONFIGMAP)
    assert "expected prefix [107 56 115 0]" in bad_request(orjson.dumps(CONFIGMAP))
    assert "unexpected EOF" in bad_request(good[:-7])
    assert "unexpected EOF" in bad_request(good[:len(MAGIC) + 3])
    assert "integer overflow" in bad_request(MAGIC + b"\x08" + b"\xff" * 11)
    assert "illegal wireType 7" in bad_request(MAGIC + b"\x0f")
    assert 'no kind "Widget" is registered for version "example.com/v1"' in bad_request(
        envelope("example.com/v1", "Widget", b""))
    assert "Kind" in bad_request(envelope("v1", "", b""))
    assert "content encoding" in bad_request(
        envelope("v1", "ConfigMap", b"", content_encoding="gzip"))
    # metadata.name (a string) sent as a varint
    assert "wrong wireType" in bad_request(envelope("v1", "ConfigMap", field(1, field(1, 5))))
    # managedFields[0].fieldsV1 holding something that is not JSON
    bad_fields = field(17, field(7, field(1, b"{not json")))
    assert "embedded JSON" in bad_request(envelope("v1", "ConfigMap", field(1, bad_fields)))


def test_objects_that_do_not_fit_their_schema_are_encode_errors() -> None:
    with pytest.raises(UnsupportedKind):
        encode({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}})
    with pytest.raises(UnsupportedKind):
        encode({"metadata": {}})
    bad = [
        {**DEPLOYMENT, "spec": {"replicas": "three"}},
        {**DEPLOYMENT, "spec": {"replicas": 1 << 40}},
        {**SECRET, "data": {"k": "not base64!"}},
        {**CONFIGMAP, "metadata": "nope"},
        {**CONFIGMAP, "data": ["a"]},
        {**NAMESPACE, "metadata": {"creationTimestamp": "yesterday"}},
    ]
    for obj in bad:
        with pytest.raises(EncodeError):
            encode(obj)


# --------------------------------------------------------------------------------------------
# bodies captured from kubectl 1.37


KUBECTL_CREATES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "configmap": (["create", "configmap", "c", "--from-literal=a=b"], {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"},
        "data": {"a": "b"}}),
    "secret": (["create", "secret", "generic", "s", "--from-literal=p=x"], {
        "kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"},
        "data": {"p": "eA=="}}),
    "deployment": (["create", "deployment", "web", "--image=busybox", "--replicas=3"], {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "busybox", "image": "busybox",
                                                       "resources": {}}]}},
                 "strategy": {}},
        "status": {}}),
}


@pytest.mark.parametrize("name", KUBECTL_CREATES)
def test_captured_kubectl_body_decodes_to_its_json_form(name: str) -> None:
    body = (FIXTURES / f"kubectl_{name}.pb").read_bytes()
    expected = KUBECTL_CREATES[name][1]
    assert decode(body) == expected
    assert decode(encode(expected)) == expected


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def throwaway_server(handler: Handler) -> AsyncIterator[str]:
    """A plain-HTTP server on a free loopback port; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def kubectl(server: str, home: Path, *args: str) -> tuple[int, str, str]:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--server", server, "--token", "x", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "")})
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


def served(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as a server would answer a create: with the fields it sets."""
    return {**obj, "metadata": {**obj["metadata"], "namespace": "default",
                                "uid": "0d4a3c2e-1111-2222-3333-444455556666",
                                "resourceVersion": "42", "generation": 1,
                                "creationTimestamp": TIME,
                                "managedFields": managed_fields(obj["apiVersion"])}}


def status_not_found() -> web.Response:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": "the server could not find the requested resource",
              "reason": "NotFound", "code": 404}
    return web.Response(body=encode(status), status=404, content_type=MEDIA_TYPE)


async def test_kubectl_sends_protobuf_and_reads_our_protobuf_back(tmp_path: Path) -> None:
    received: list[tuple[str, bytes]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return status_not_found()
        body = await request.read()
        received.append((request.headers["Content-Type"], body))
        return web.Response(body=encode(served(decode(body))), status=201,
                            content_type=MEDIA_TYPE)

    async with throwaway_server(handler) as server:
        for name, (args, expected) in KUBECTL_CREATES.items():
            code, out, err = await kubectl(server, tmp_path, *args, "-o", "json",
                                           "--show-managed-fields")
            assert code == 0, err
            content_type, body = received[-1]
            assert content_type == MEDIA_TYPE
            assert decode(body) == expected, name
            # What Go decoded from our bytes, printed back as JSON by kubectl.
            assert orjson.loads(out) == served(expected), name


async def test_kubectl_reads_our_list_and_watch_stream(tmp_path: Path) -> None:
    def event(name: str, reason: str) -> dict[str, Any]:
        return {"kind": "Event", "apiVersion": "v1", "metadata": metadata(name),
                "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1",
                                   "apiVersion": "v1"},
                "reason": reason, "message": f"saw {reason}", "type": "Normal",
                "source": {"component": "kubelet"}, "firstTimestamp": TIME,
                "lastTimestamp": LATER, "count": 1, "eventTime": "2026-11-24T20:30:57.123456Z",
                "reportingComponent": "kubelet", "reportingInstance": "node-1"}

    async def handler(request: web.Request) -> web.StreamResponse:
        if not request.path.endswith("/events"):
            return status_not_found()
        assert request.headers["Accept"].startswith(MEDIA_TYPE)
        if request.query.get("watch") == "true":
            response = web.StreamResponse(headers={"Content-Type": WATCH_MEDIA_TYPE})
            await response.prepare(request)
            await response.write(encode_watch_event("ADDED", event("e2", "Pulled")))
            await response.write(encode_watch_event("MODIFIED", event("e2", "Started")))
            return response
        listing = {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"},
                   "items": [event("e1", "Scheduled")]}
        return web.Response(body=encode(listing), content_type=MEDIA_TYPE)

    async with throwaway_server(handler) as server:
        code, out, err = await kubectl(server, tmp_path, "events", "-o", "json")
        assert code == 0, err
        (item,) = orjson.loads(out)["items"]
        assert item == {**event("e1", "Scheduled"), "kind": "Event", "apiVersion": "v1"}

        code, out, err = await kubectl(server, tmp_path, "events", "--watch")
        assert code == 0, err
        assert "saw Pulled" in out and "saw Started" in out


# --------------------------------------------------------------------------------------------
# fixture capture


async def _capture_fixtures() -> None:
    """Record the bodies kubectl sends for ``KUBECTL_CREATES`` into ``fixtures/``."""
    bodies: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            bodies.append(await request.read())
            return web.Response(body=encode(served(decode(bodies[-1]))), status=201,
                                content_type=MEDIA_TYPE)
        return status_not_found()

    FIXTURES.mkdir(exist_ok=True)
    home = FIXTURES / ".kubectl-home"
    try:
        async with throwaway_server(handler) as server:
            for name, (args, _) in KUBECTL_CREATES.items():
                code, _, err = await kubectl(server, home, *args)
                if code != 0:
                    raise SystemExit(f"kubectl {' '.join(args)} failed: {err}")
                (FIXTURES / f"kubectl_{name}.pb").write_bytes(bodies[-1])
                print(f"kubectl_{name}.pb: {len(bodies[-1])} bytes")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__" and sys.argv[1:] == ["--capture"]:
    asyncio.run(_capture_fixtures())
