"""Defaulting (sampan.api.defaults): upstream's SetDefaults_* and structural-schema defaults."""

from __future__ import annotations

import copy

import pytest

from sampan.api.defaults import apply_defaults, apply_schema_defaults, image_tag
from sampan.api.registry import Registry, Resource
from sampan.api.schema import builtin
from sampan.api.validation import validate

REGISTRY = Registry()
S = builtin()


def defaulted(group: str, version: str, kind: str, obj: dict, **kw) -> dict:
    resource = REGISTRY.for_kind(group, version, kind)
    assert resource is not None
    obj = copy.deepcopy(obj)
    apply_defaults(obj, resource, **kw)
    return obj


def pod_spec(**extra) -> dict:
    return {"containers": [{"name": "app", "image": "nginx:1.25"}], **extra}


# --- pods ----------------------------------------------------------------------------------


def test_a_minimal_pod():
    pod = defaulted("", "v1", "Pod", {"metadata": {"name": "p"}, "spec": pod_spec()})
    assert pod["spec"] == {
        "containers": [{"name": "app", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"}],
        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
        "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
    }


@pytest.mark.parametrize("image, policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("registry.local:5000/team/app", "Always"), ("registry.local:5000/team/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"), ("nginx:latest@sha256:" + "a" * 64, "Always"),
])
def test_image_pull_policy_follows_the_tag(image, policy):
    pod = defaulted("", "v1", "Pod", {"spec": {"containers": [{"name": "a", "image": image}],
                                               "initContainers": [{"name": "b", "image": image}]}})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy
    assert pod["spec"]["initContainers"][0]["imagePullPolicy"] == policy


def test_image_tag():
    assert image_tag("localhost:5000/app") == "latest"
    assert image_tag("app@sha256:abc") == ""
    assert image_tag("app:1") == "1"


def test_container_details():
    container = {
        "name": "app", "image": "nginx:1", "imagePullPolicy": "Never",
        "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "livenessProbe": {"httpGet": {"port": 80}},
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5, "failureThreshold": 0},
        "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}},
    }
    c = defaulted("", "v1", "Pod", {"spec": {"containers": [container]}})["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "Never"  # set values are kept
    assert [p["protocol"] for p in c["ports"]] == ["TCP", "UDP"]
    assert c["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "spec.nodeName",
                                                    "apiVersion": "v1"}
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                  "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                  "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 5
    assert c["readinessProbe"]["failureThreshold"] == 3  # an int32, so 0 is unset
    assert c["lifecycle"]["preStop"]["httpGet"] == {"port": 80, "path": "/stop", "scheme": "HTTP"}


def test_requests_default_to_limits_and_quantities_are_canonical():
    container = {"name": "app", "image": "x", "resources": {
        "limits": {"cpu": "1000m", "memory": "1024Mi", "example.com/gpu": 1},
        "requests": {"cpu": 0.5, "ephemeral-storage": "0.0001"}}}
    pod = defaulted("", "v1", "Pod", {"spec": {"containers": [container],
                                               "initContainers": [{"name": "i", "image": "x",
                                                                   "resources": {
                                                   "limits": {"cpu": "2"}}}]}})
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "1", "memory": "1Gi", "example.com/gpu": "1"}
    assert resources["requests"] == {"cpu": "500m", "ephemeral-storage": "1m", "memory": "1Gi",
                                     "example.com/gpu": "1"}
    assert pod["spec"]["initContainers"][0]["resources"]["requests"] == {"cpu": "2"}


def test_pod_level_requests_follow_the_containers_then_the_limits():
    pod = defaulted("", "v1", "Pod", {"spec": {
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}},
        "containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "300m"}}},
                       {"name": "b", "image": "x", "resources": {"requests": {"cpu": "200m"}}}],
        "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}})
    # the init container's 1 CPU outweighs the 500m the app containers add up to
    assert pod["spec"]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    template = defaulted("", "v1", "PodTemplate", {"template": {"spec": {
        "resources": {"limits": {"cpu": "2"}},
        "containers": [{"name": "a", "image": "x"}]}}})
    assert "requests" not in template["template"]["spec"]["resources"]  # pods only


def test_volume_sources():
    volumes = [
        {"name": "scratch"},
        {"name": "cfg", "configMap": {"name": "c"}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
        {"name": "host", "hostPath": {"path": "/var/log"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}},
                                                   {"downwardAPI": {"items": [{"path": "n",
                                                                               "fieldRef": {
                                                       "fieldPath": "metadata.name"}}]}}]}},
        {"name": "eph",
         "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}},
    ]
    v = defaulted("", "v1", "Pod", {"spec": pod_spec(volumes=volumes)})["spec"]["volumes"]
    assert v[0] == {"name": "scratch", "emptyDir": {}}
    assert v[1]["configMap"]["defaultMode"] == 420
    assert v[2]["secret"]["defaultMode"] == 0o400
    assert v[3]["hostPath"] == {"path": "/var/log", "type": ""}
    assert v[4]["downwardAPI"]["defaultMode"] == 420
    assert v[4]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"] == "v1"
    assert v[5]["projected"]["defaultMode"] == 420
    assert v[5]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3600
    assert v[5]["projected"]["sources"][1]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"] == "v1"
    assert v[6]["ephemeral"]["volumeClaimTemplate"]["spec"]["volumeMode"] == "Filesystem"


def test_host_network_exposes_container_ports():
    spec = pod_spec(hostNetwork=True)
    spec["containers"][0]["ports"] = [{"containerPort": 8080},
                                      {"containerPort": 9090, "hostPort": 9090}]
    ports = defaulted("", "v1", "Pod", {"spec": spec})["spec"]["containers"][0]["ports"]
    assert [p["hostPort"] for p in ports] == [8080, 9090]


def test_null_is_unset_and_set_values_stay():
    pod = defaulted("", "v1", "Pod", {"spec": pod_spec(
        restartPolicy="Never", terminationGracePeriodSeconds=None, enableServiceLinks=False,
        securityContext={"runAsUser": 1000})})
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert pod["spec"]["enableServiceLinks"] is False
    assert pod["spec"]["securityContext"] == {"runAsUser": 1000}


def test_deprecated_service_account_mirrors_the_name():
    pod = defaulted("", "v1", "Pod", {"spec": pod_spec(serviceAccount="builder")})
    assert pod["spec"]["serviceAccountName"] == pod["spec"]["serviceAccount"] == "builder"
    pod = defaulted("", "v1", "Pod",
                    {"spec": pod_spec(serviceAccountName="ci", serviceAccount="old")})
    assert pod["spec"]["serviceAccountName"] == pod["spec"]["serviceAccount"] == "ci"
    assert "serviceAccount" not in defaulted("", "v1", "Pod", {"spec": pod_spec()})["spec"]


def test_defaulting_twice_changes_nothing():
    once = defaulted("", "v1", "Pod", {"spec": pod_spec()})
    assert defaulted("", "v1", "Pod", once) == once


# --- pod templates -------------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {
    "containers": [{"name": "app", "image": "nginx", "resources": {"limits": {"cpu": "1"}}}]}}


@pytest.mark.parametrize("group, kind, path", [
    ("", "PodTemplate", ("template",)),
    ("", "ReplicationController", ("spec", "template")),
    ("apps", "Deployment", ("spec", "template")),
    ("apps", "ReplicaSet", ("spec", "template")),
    ("apps", "DaemonSet", ("spec", "template")),
    ("apps", "StatefulSet", ("spec", "template")),
    ("batch", "Job", ("spec", "template")),
    ("batch", "CronJob", ("spec", "jobTemplate", "spec", "template")),
])
def test_every_pod_template_gets_pod_spec_defaults(group, kind, path):
    obj: dict = {}
    cursor = obj
    for key in path[:-1]:
        cursor = cursor.setdefault(key, {})
    cursor[path[-1]] = copy.deepcopy(TEMPLATE)
    out = defaulted(group, "v1", kind, obj)
    for key in path:
        out = out[key]
    spec = out["spec"]
    assert spec["dnsPolicy"] == "ClusterFirst" and spec["schedulerName"] == "default-scheduler"
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    # what SetDefaults_Pod adds belongs to pods only
    assert "enableServiceLinks" not in spec
    assert "requests" not in spec["containers"][0]["resources"]


# --- workloads -----------------------------------------------------------------------------


def test_deployment():
    spec = defaulted("apps", "v1", "Deployment", {"spec": {"template": TEMPLATE}})["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600


def test_deployment_recreate_gets_no_rolling_update():
    spec = defaulted("apps", "v1", "Deployment", {"spec": {"strategy": {"type": "Recreate"},
                                                           "replicas": 0}})["spec"]
    assert spec["strategy"] == {"type": "Recreate"} and spec["replicas"] == 0


def test_replica_set_and_daemon_set():
    assert defaulted("apps", "v1", "ReplicaSet", {"spec": {}})["spec"]["replicas"] == 1
    ds = defaulted("apps", "v1", "DaemonSet", {"spec": {}})["spec"]
    assert ds["updateStrategy"] == {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["revisionHistoryLimit"] == 10


def test_stateful_set():
    sts = defaulted("apps", "v1", "StatefulSet", {"spec": {"volumeClaimTemplates": [
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})["spec"]
    assert sts["podManagementPolicy"] == "OrderedReady"
    assert sts["updateStrategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"partition": 0, "maxUnavailable": 1}}
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                           "whenScaled": "Retain"}
    assert sts["replicas"] == 1 and sts["revisionHistoryLimit"] == 10
    claim = sts["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem" and claim["status"] == {"phase": "Pending"}


def test_stateful_set_explicit_rolling_update_gets_no_rolling_update_block():
    sts = defaulted("apps", "v1", "StatefulSet",
                    {"spec": {"updateStrategy": {"type": "RollingUpdate"}}})
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}


def test_replication_controller_copies_template_labels():
    rc = defaulted("", "v1", "ReplicationController", {"metadata": {"name": "rc"},
                                                       "spec": {"template": TEMPLATE}})
    assert rc["spec"]["selector"] == {"app": "web"}
    assert rc["metadata"]["labels"] == {"app": "web"}
    assert rc["spec"]["replicas"] == 1


def test_job():
    job = defaulted("batch", "v1", "Job",
                    {"metadata": {"name": "j"}, "spec": {"template": TEMPLATE}})
    assert {k: v for k, v in job["spec"].items() if k != "template"} == {
        "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": False, "podReplacementPolicy": "TerminatingOrFailed"}
    assert job["metadata"]["labels"] == {"app": "web"}


def test_job_variants():
    spec = defaulted("batch", "v1", "Job", {"spec": {"parallelism": 3}})["spec"]
    assert "completions" not in spec and spec["parallelism"] == 3
    spec = defaulted("batch", "v1", "Job", {"spec": {"completions": 4, "completionMode": "Indexed",
                                                     "backoffLimitPerIndex": 1}})["spec"]
    assert spec["parallelism"] == 1 and spec["backoffLimit"] == 2147483647
    spec = defaulted("batch", "v1", "Job", {"spec": {"podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}})["spec"]
    assert spec["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"] == "True"
    assert spec["podReplacementPolicy"] == "Failed"


def test_cron_job():
    cj = defaulted("batch", "v1", "CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {
        "spec": {"template": TEMPLATE}}}})["spec"]
    assert cj["concurrencyPolicy"] == "Allow" and cj["suspend"] is False
    assert cj["successfulJobsHistoryLimit"] == 3 and cj["failedJobsHistoryLimit"] == 1
    assert "backoffLimit" not in cj["jobTemplate"]["spec"]  # SetDefaults_Job is for Jobs only


# --- core ----------------------------------------------------------------------------------


def test_cluster_ip_service():
    spec = defaulted("", "v1", "Service",
                     {"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP",
                                                                             "targetPort": "dns"}]}})["spec"]
    assert spec == {
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80},
                  {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
        "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}


def test_load_balancer_and_node_port_services():
    lb = defaulted("", "v1", "Service", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                                         "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["status"]["loadBalancer"]["ingress"][0]["ipMode"] == "VIP"
    node_port = defaulted("", "v1", "Service", {"spec": {"type": "NodePort"}})["spec"]
    assert node_port["externalTrafficPolicy"] == "Cluster"
    assert "allocateLoadBalancerNodePorts" not in node_port


def test_service_session_affinity_and_ips():
    spec = defaulted("", "v1", "Service", {"spec": {"sessionAffinity": "ClientIP",
                                                    "clusterIP": "fd00::10"}})["spec"]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert spec["clusterIPs"] == ["fd00::10"] and spec["ipFamilies"] == ["IPv6"]
    spec = defaulted("", "v1", "Service", {"spec": {"sessionAffinityConfig": {"clientIP": {}}}})["spec"]
    assert "sessionAffinityConfig" not in spec


def test_external_name_service_gets_no_ip_families():
    spec = defaulted("", "v1", "Service", {"spec": {"type": "ExternalName",
                                                    "externalName": "db.example.com"}})["spec"]
    assert "ipFamilies" not in spec and "ipFamilyPolicy" not in spec
    assert "internalTrafficPolicy" not in spec


def test_secret():
    secret = defaulted("", "v1", "Secret",
                       {"data": {"a": "eA=="}, "stringData": {"b": "hello", "a": "y"}})
    assert secret == {"type": "Opaque", "data": {"a": "eQ==", "b": "aGVsbG8="}}
    assert defaulted("", "v1", "Secret", {"type": "kubernetes.io/tls"})["type"] == "kubernetes.io/tls"


def test_namespace():
    ns = defaulted("", "v1", "Namespace", {"metadata": {"name": "team"}})
    assert ns == {"metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team"}},
                  "status": {"phase": "Active"}, "spec": {"finalizers": ["kubernetes"]}}


def test_namespace_finalizer_is_only_added_on_create():
    finalizing = {"metadata": {"name": "team", "resourceVersion": "7"}, "spec": {"finalizers": []}}
    assert defaulted("", "v1", "Namespace", finalizing)["spec"] == {"finalizers": []}
    assert defaulted("", "v1", "Namespace", finalizing, create=True)["spec"] == {"finalizers": ["kubernetes"]}
    assert defaulted("", "v1", "Namespace", {"metadata": {"name": "t"}}, create=False).get("spec") is None


def test_persistent_volumes_and_claims():
    pv = defaulted("", "v1", "PersistentVolume", {"spec": {"capacity": {"storage": "1Gi"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem" and pv["status"] == {"phase": "Pending"}
    pvc = defaulted("", "v1", "PersistentVolumeClaim",
                    {"spec": {"resources": {"requests": {"storage": "1024Mi"}}}})
    assert pvc["spec"]["volumeMode"] == "Filesystem" and pvc["status"] == {"phase": "Pending"}
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_endpoints_node_and_limit_range():
    ep = defaulted("", "v1", "Endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    node = defaulted("", "v1", "Node", {"status": {"capacity": {"cpu": "4"}}})
    assert node["status"]["allocatable"] == {"cpu": "4"}
    lr = defaulted("", "v1", "LimitRange", {"spec": {"limits": [
        {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"memory": "64Mi"},
         "default": {"cpu": "500m"}},
        {"type": "Pod", "max": {"cpu": "4"}}]}})
    container, pod = lr["spec"]["limits"]
    assert container["default"] == {"cpu": "500m", "memory": "1Gi"}
    assert container["defaultRequest"] == {"cpu": "500m", "memory": "1Gi"}
    assert "default" not in pod


# --- other groups --------------------------------------------------------------------------


def test_network_policy():
    np = defaulted("networking.k8s.io", "v1", "NetworkPolicy", {"spec": {
        "podSelector": {}, "ingress": [{"ports": [{"port": 80}]}], "egress": [{}]}})
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"
    assert defaulted("networking.k8s.io", "v1", "NetworkPolicy", {"spec": {}})["spec"]["policyTypes"] == ["Ingress"]


def test_ingress_class_parameters_scope():
    ic = defaulted("networking.k8s.io", "v1", "IngressClass", {"spec": {
        "controller": "example.com/ingress", "parameters": {"kind": "Params", "name": "p"}}})
    assert ic["spec"]["parameters"]["scope"] == "Cluster"


def test_hpa_v2():
    spec = defaulted("autoscaling", "v2", "HorizontalPodAutoscaler", {"spec": {
        "maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}})["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert spec["behavior"]["scaleUp"] == {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                                           "policies": [
                                               {"type": "Pods", "value": 4, "periodSeconds": 15},
                                               {"type": "Percent", "value": 100,
                                                "periodSeconds": 15}]}
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 60,
                                             "selectPolicy": "Max",
                                             "policies": [{"type": "Percent", "value": 100,
                                                           "periodSeconds": 15}]}


def test_hpa_without_behavior_and_v1():
    spec = defaulted("autoscaling", "v2", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 3}})["spec"]
    assert "behavior" not in spec
    spec = defaulted("autoscaling", "v1", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 3}})["spec"]
    assert spec == {"maxReplicas": 3, "minReplicas": 1}


def test_rbac_bindings():
    rb = defaulted("rbac.authorization.k8s.io", "v1", "RoleBinding", {
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"},
                     {"kind": "ServiceAccount", "name": "sa"}]})
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert [s.get("apiGroup") for s in rb["subjects"]] == [
        "rbac.authorization.k8s.io", "rbac.authorization.k8s.io", None]
    crb = defaulted("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", {"roleRef": {}})
    assert crb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"


def test_storage_priority_and_endpoint_slices():
    sc = defaulted("storage.k8s.io", "v1", "StorageClass", {"provisioner": "p"})
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
    pc = defaulted("scheduling.k8s.io", "v1", "PriorityClass", {"value": 1})
    assert pc["preemptionPolicy"] == "PreemptLowerPriority"
    es = defaulted("discovery.k8s.io", "v1", "EndpointSlice", {"ports": [{"port": 80}]})
    assert es["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]


def test_custom_resource_definition():
    crd = defaulted("apiextensions.k8s.io", "v1", "CustomResourceDefinition", {"spec": {
        "names": {"plural": "pets", "kind": "Pet"},
        "versions": [{"name": "v1beta1", "storage": False}, {"name": "v1", "storage": True}]}})
    assert crd["spec"]["names"] == {"plural": "pets", "kind": "Pet", "singular": "pet",
                                    "listKind": "PetList"}
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert crd["status"] == {"storedVersions": ["v1"]}
    webhook = defaulted("apiextensions.k8s.io", "v1", "CustomResourceDefinition", {"spec": {
        "names": {"kind": "Pet"}, "conversion": {"strategy": "Webhook", "webhook": {
            "clientConfig": {"service": {"name": "conv", "namespace": "ns"}}}}}})
    assert webhook["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["port"] == 443


def test_kinds_without_defaults_are_left_alone():
    ingress = {"spec": {"rules": [{"http": {"paths": [{"path": "/"}]}}]}}
    assert defaulted("networking.k8s.io", "v1", "Ingress", ingress) == ingress
    lease = {"spec": {"holderIdentity": "x"}}
    assert defaulted("coordination.k8s.io", "v1", "Lease", lease) == lease


def test_defaulted_objects_validate():
    dep = defaulted("apps", "v1", "Deployment", {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}})
    assert validate(dep, REGISTRY.for_kind("apps", "v1", "Deployment"), S) == []


# --- structural schema defaults ------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "default": {},
            "properties": {
                "replicas": {"type": "integer", "default": 1},
                "mode": {"type": "string", "default": "fast", "nullable": True},
                "config": {"type": "object", "default": {"level": 2},
                           "properties": {"level": {"type": "integer"},
                                          "verbose": {"type": "boolean", "default": False}}},
                "ports": {"type": "array", "items": {"type": "object", "properties": {
                    "protocol": {"type": "string", "default": "TCP"}}}},
                "limits": {"type": "object", "additionalProperties": {
                    "type": "object", "default": {"max": 1},
                    "properties": {"max": {"type": "integer"},
                                   "unit": {"type": "string", "default": "cores"}}}},
                "sizes": {"type": "array", "items": {"type": "integer", "default": 7}},
            },
        },
    },
}


def test_schema_defaults_fill_absent_fields_recursively():
    obj = {"spec": {"ports": [{}, {"protocol": "UDP"}], "limits": {"cpu": {}, "mem": None},
                    "sizes": [1, None]}}
    apply_schema_defaults(obj, SCHEMA)
    assert obj["spec"] == {
        "replicas": 1, "mode": "fast", "config": {"level": 2, "verbose": False},
        "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}],
        "limits": {"cpu": {"unit": "cores"}, "mem": {"max": 1, "unit": "cores"}},
        "sizes": [1, 7]}


def test_schema_defaults_fill_a_missing_parent_and_respect_nullable():
    obj: dict = {}
    apply_schema_defaults(obj, SCHEMA)
    assert obj["spec"]["replicas"] == 1 and obj["spec"]["config"]["verbose"] is False
    obj = {"spec": {"replicas": None, "mode": None}}
    apply_schema_defaults(obj, SCHEMA)
    assert obj["spec"]["replicas"] == 1  # null where null is not allowed: defaulted
    assert obj["spec"]["mode"] is None   # a nullable field keeps its null


def test_schema_defaults_are_copies():
    first, second = {}, {}
    apply_schema_defaults(first, SCHEMA)
    apply_schema_defaults(second, SCHEMA)
    first["spec"]["config"]["level"] = 9
    assert second["spec"]["config"]["level"] == 2
    assert SCHEMA["properties"]["spec"]["properties"]["config"]["default"] == {"level": 2}


def test_custom_resources_get_their_schema_defaults():
    resource = Resource("zoo.example.com", "v1", "pets", "Pet", True,
                        crd={"name": "v1", "schema": {"openAPIV3Schema": SCHEMA}})
    obj = {"apiVersion": "zoo.example.com/v1", "kind": "Pet", "metadata": {"name": "tom"}}
    apply_defaults(obj, resource)
    assert obj["spec"]["replicas"] == 1
