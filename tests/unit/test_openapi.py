"""OpenAPI documents: what kubectl (explain, apply, field validation) and generators read."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterator

import orjson
import pytest

from sampan.api import schema
from sampan.api.registry import Registry, Resource
from sampan.apiserver.openapi import (
    crd_model_name,
    encode_openapi_v2,
    encode_openapi_v3,
    encode_openapi_v3_index,
    openapi_v2,
    openapi_v3_group_version,
    openapi_v3_index,
    operation_id_and_tags,
)

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")

CRONTAB_SCHEMA = {
    "type": "object",
    "description": "A cron tab.",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["cronSpec", "note"],
            "properties": {
                "cronSpec": {"type": "string", "description": "The schedule."},
                "replicas": {"type": "integer", "default": 1},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                   "properties": {"phase": {"type": "string"}}},
    },
}
CRONTAB_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {
        "group": "stable.example.com",
        "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                  "listKind": "CronTabList", "shortNames": ["ct"]},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": CRONTAB_SCHEMA}}],
    },
}


def crontab() -> Resource:
    return Resource("stable.example.com", "v1", "crontabs", "CronTab", True, ("ct",), ("all",),
                    ("status",), crd=CRONTAB_CRD)


def widget(group: str) -> Resource:
    crd = {"spec": {"group": group, "scope": "Cluster",
                    "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    return Resource(group, "v1", "widgets", "Widget", False, crd=crd)


@pytest.fixture(scope="module")
def schemas() -> schema.Schemas:
    return schema.builtin()


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry()
    registry.add(crontab())
    return registry


@pytest.fixture(scope="module")
def v2(registry: Registry, schemas: schema.Schemas) -> dict:
    return openapi_v2(registry, schemas)


def operations(doc: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def by_operation_id(doc: dict) -> dict[str, tuple[str, str, dict]]:
    return {op["operationId"]: (path, method, op) for path, method, op in operations(doc)}


def refs(node: Any) -> Iterator[tuple[str, dict]]:
    """Every ``$ref`` in a document part, with the node that holds it. (A property may be
    called ``$ref`` too: JSONSchemaProps has one.)"""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value, node
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved {ref}"
        node = node[part]
    return node


def schema_keys(node: Any) -> Iterator[str]:
    """The keywords used in a schema and its subschemas (not the names of its properties)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "patternProperties"):
                for sub in value.values():
                    yield from schema_keys(sub)
            else:
                yield key
                yield from schema_keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_keys(value)


def definition_keys(definitions: dict) -> set[str]:
    return {key for definition in definitions.values() for key in schema_keys(definition)}


# --- operation ids -----------------------------------------------------------------------------

@pytest.mark.parametrize("operation, path, expected", [
    ("readNamespacedPod", "/api/v1/namespaces/{namespace}/pods/{name}",
     ("readCoreV1NamespacedPod", ["core_v1"])),
    ("deletecollectionNamespacedPod", "/api/v1/namespaces/{namespace}/pods",
     ("deleteCoreV1CollectionNamespacedPod", ["core_v1"])),
    ("listClusterRole", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
     ("listRbacAuthorizationV1ClusterRole", ["rbacAuthorization_v1"])),
    ("listNamespacedCronTab", "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs",
     ("listStableExampleComV1NamespacedCronTab", ["stableExampleCom_v1"])),
    ("getAPIVersions", "/api/", ("getCoreAPIVersions", ["core"])),
    ("getAPIVersions", "/apis/", ("getAPIVersions", ["apis"])),
    ("getAPIGroup", "/apis/apps/", ("getAppsAPIGroup", ["apps"])),
    ("getCodeVersion", "/version/", ("getCodeVersion", ["version"])),
])
def test_operation_id_and_tags(operation: str, path: str, expected: tuple) -> None:
    assert operation_id_and_tags(operation, path) == expected


def test_upstream_operation_ids(v2: dict) -> None:
    ops = by_operation_id(v2)
    expected = {
        "readCoreV1NamespacedPod": ("/api/v1/namespaces/{namespace}/pods/{name}", "get"),
        "listAppsV1DeploymentForAllNamespaces": ("/apis/apps/v1/deployments", "get"),
        "patchAppsV1NamespacedDeploymentScale":
            ("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", "patch"),
        "deleteCoreV1CollectionNamespacedPod": ("/api/v1/namespaces/{namespace}/pods", "delete"),
        "watchCoreV1NamespacedPodList": ("/api/v1/watch/namespaces/{namespace}/pods", "get"),
        "readCoreV1NamespacedPodLog": ("/api/v1/namespaces/{namespace}/pods/{name}/log", "get"),
        "connectCoreV1PostNamespacedPodExec":
            ("/api/v1/namespaces/{namespace}/pods/{name}/exec", "post"),
        "connectCoreV1GetNamespacedPodProxyWithPath":
            ("/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}", "get"),
        "createCoreV1NamespacedPodEviction":
            ("/api/v1/namespaces/{namespace}/pods/{name}/eviction", "post"),
        "createCoreV1NamespacedServiceAccountToken":
            ("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", "post"),
        "replaceCoreV1NamespaceFinalize": ("/api/v1/namespaces/{name}/finalize", "put"),
        "createAuthorizationV1SelfSubjectAccessReview":
            ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "post"),
        "listAutoscalingV1NamespacedHorizontalPodAutoscaler":
            ("/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers", "get"),
        "getCoreAPIVersions": ("/api/", "get"),
        "getAppsV1APIResources": ("/apis/apps/v1/", "get"),
        "patchStableExampleComV1NamespacedCronTabStatus":
            ("/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status",
             "patch"),
    }
    for operation_id, (path, method) in expected.items():
        assert operation_id in ops, operation_id
        assert ops[operation_id][:2] == (path, method), operation_id


def test_operation_ids_are_unique(v2: dict) -> None:
    ids = [op["operationId"] for _, _, op in operations(v2)]
    assert len(ids) == len(set(ids))


def test_operations_carry_action_and_kind(v2: dict) -> None:
    ops = by_operation_id(v2)
    _, _, scale = ops["patchAppsV1NamespacedDeploymentScale"]
    assert scale["x-kubernetes-action"] == "patch"
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "kind": "Scale", "version": "v1"}
    _, _, exec_ = ops["connectCoreV1GetNamespacedPodExec"]
    assert exec_["x-kubernetes-action"] == "connect"
    assert exec_["x-kubernetes-group-version-kind"]["kind"] == "PodExecOptions"
    _, _, deletes = ops["deleteCoreV1CollectionNamespacedPod"]
    assert deletes["x-kubernetes-action"] == "deletecollection"


# --- Swagger 2.0 -------------------------------------------------------------------------------

def test_v2_is_structurally_valid_swagger(v2: dict) -> None:
    assert v2["swagger"] == "2.0"
    assert v2["info"]["title"] and v2["info"]["version"]
    for ref, _ in refs(v2):
        assert ref.startswith(("#/definitions/", "#/parameters/")), ref
        resolve(v2, ref)
    for path, item in v2["paths"].items():
        assert path.startswith("/")
        for method, op in ((m, item[m]) for m in METHODS if m in item):
            params = [resolve(v2, p["$ref"]) if "$ref" in p else p
                      for p in item.get("parameters", []) + op.get("parameters", [])]
            for p in params:
                assert p["in"] in ("query", "path", "body", "header"), p
                assert ("schema" in p) == (p["in"] == "body"), p
                if p["in"] != "body":
                    assert p["type"] in ("string", "integer", "boolean"), p
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (path, method)
            assert all(p.get("required") for p in params if p["in"] == "path")
            assert op["responses"] and op["operationId"] and op["produces"]


def test_v2_definitions_are_in_v2_form(v2: dict) -> None:
    definitions = v2["definitions"]
    assert "nullable" not in definition_keys(definitions)
    assert not any(ref.startswith("#/$defs/") for ref, _ in refs(v2))
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == (
        "int-or-string")
    assert definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    deployment = definitions["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert "enum" not in deployment["properties"]["apiVersion"]
    spec = definitions["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert spec["strategy"] == {
        "$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy",
        "description": spec["strategy"]["description"],
        "x-kubernetes-patch-strategy": "retainKeys",
    }
    for name in ("Status", "DeleteOptions", "WatchEvent", "APIResourceList", "APIGroupList",
                 "Patch", "ObjectMeta"):
        assert "io.k8s.apimachinery.pkg.apis.meta.v1." + name in definitions, name
    assert "io.k8s.api.autoscaling.v1.Scale" in definitions


def test_v2_parameters(v2: dict) -> None:
    path, _, op = by_operation_id(v2)["patchAppsV1NamespacedDeployment"]
    names = {(p.get("name") or resolve(v2, p["$ref"])["name"]) for p in op["parameters"]}
    assert names == {"body", "dryRun", "fieldManager", "fieldValidation", "force"}
    # kubectl's v2 verifier looks for these inline on the PATCH operation
    inline = {p["name"] for p in op["parameters"] if "name" in p}
    assert {"dryRun", "fieldValidation"} <= inline
    common = {resolve(v2, p["$ref"])["name"] if "$ref" in p else p["name"]
              for p in v2["paths"][path]["parameters"]}
    assert common == {"name", "namespace", "pretty"}
    _, _, listing = by_operation_id(v2)["listCoreV1NamespacedPod"]
    list_params = {resolve(v2, p["$ref"])["name"] for p in listing["parameters"]}
    assert {"labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
            "resourceVersionMatch", "sendInitialEvents", "allowWatchBookmarks",
            "timeoutSeconds", "watch"} == list_params
    _, _, delete = by_operation_id(v2)["deleteAppsV1NamespacedDeployment"]
    delete_params = {p.get("name") or resolve(v2, p["$ref"])["name"]
                     for p in delete["parameters"]}
    assert {"gracePeriodSeconds", "propagationPolicy", "orphanDependents", "dryRun",
            "body"} <= delete_params
    body = next(resolve(v2, p["$ref"]) for p in delete["parameters"]
                if "$ref" in p and resolve(v2, p["$ref"])["in"] == "body")
    assert body["schema"]["$ref"].endswith("meta.v1.DeleteOptions") and "required" not in body


def test_v2_consumes_and_produces(v2: dict) -> None:
    ops = by_operation_id(v2)
    patch = ops["patchAppsV1NamespacedDeployment"][2]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert "application/apply-patch+yaml" in patch["consumes"]
    crd_patch = ops["patchStableExampleComV1NamespacedCronTab"][2]
    assert "application/strategic-merge-patch+json" not in crd_patch["consumes"]
    assert "application/json;stream=watch" in ops["listCoreV1NamespacedPod"][2]["produces"]
    log = ops["readCoreV1NamespacedPodLog"][2]
    assert log["produces"][0] == "text/plain"
    assert log["responses"]["200"]["schema"] == {"type": "string"}


def test_v2_is_cached_and_encoded_once(registry: Registry, schemas: schema.Schemas) -> None:
    assert openapi_v2(registry, schemas) is openapi_v2(registry, schemas)
    encoded = encode_openapi_v2(registry, schemas)
    assert encoded is encode_openapi_v2(registry, schemas)
    assert orjson.loads(encoded.body) == openapi_v2(registry, schemas)
    assert encoded.hash == hashlib.sha512(encoded.body).hexdigest().upper()


# --- OpenAPI 3.0 -------------------------------------------------------------------------------

def test_v3_index(registry: Registry, schemas: schema.Schemas) -> None:
    index = openapi_v3_index(registry, schemas)
    paths = index["paths"]
    for expected in ("api", "api/v1", "apis", "apis/apps", "apis/apps/v1", "apis/autoscaling/v1",
                     "apis/autoscaling/v2", "apis/stable.example.com/v1", "version"):
        assert expected in paths, expected
    for gv_path, entry in paths.items():
        encoded = encode_openapi_v3(registry, schemas, gv_path)
        assert entry == {"serverRelativeURL": f"/openapi/v3/{gv_path}?hash={encoded.hash}"}
    assert orjson.loads(encode_openapi_v3_index(registry, schemas).body) == index


def test_every_v3_document_is_self_contained(registry: Registry,
                                             schemas: schema.Schemas) -> None:
    for gv_path in openapi_v3_index(registry, schemas)["paths"]:
        doc = openapi_v3_group_version(registry, schemas, gv_path)
        assert doc["openapi"].startswith("3.0")
        assert doc["paths"], gv_path
        for ref, holder in refs(doc):
            assert ref.startswith("#/components/schemas/"), ref
            resolve(doc, ref)
            assert holder == {"$ref": ref}, f"{gv_path}: $ref with siblings {holder}"
        prefix = "/" + gv_path + "/"
        assert all(path.startswith(prefix) for path in doc["paths"]), gv_path


def test_unknown_v3_document(registry: Registry, schemas: schema.Schemas) -> None:
    assert openapi_v3_group_version(registry, schemas, "apis/apps/v9") is None
    assert encode_openapi_v3(registry, schemas, "apis/nope") is None


def test_v3_apps_document_names_the_deployment_kind(registry: Registry,
                                                    schemas: schema.Schemas) -> None:
    doc = openapi_v3_group_version(registry, schemas, "apis/apps/v1")
    deployment = doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert deployment["properties"]["spec"] == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}],
        "description": "Specification of the desired behavior of the Deployment.",
    }
    assert "nullable" not in definition_keys(doc["components"]["schemas"])


def _patch_operations(doc: dict, gvk: dict) -> list[dict]:
    """The PATCH operations of a kind. cli-runtime's QueryParamVerifierV3 and kubectl apply's
    patcher take the first they meet while iterating a Go map, so every one must qualify."""
    found = [op for _, method, op in operations(doc)
             if method == "patch" and op.get("x-kubernetes-group-version-kind") == gvk]
    assert found, gvk
    return found


@pytest.mark.parametrize("gv_path, gvk, strategic", [
    ("apis/apps/v1", {"group": "apps", "kind": "Deployment", "version": "v1"}, True),
    ("api/v1", {"group": "", "kind": "Namespace", "version": "v1"}, True),
    ("apis/stable.example.com/v1", {"group": "stable.example.com", "kind": "CronTab",
                                    "version": "v1"}, False),
])
def test_v3_patch_operations_support_field_validation(registry: Registry,
                                                      schemas: schema.Schemas, gv_path: str,
                                                      gvk: dict, strategic: bool) -> None:
    doc = openapi_v3_group_version(registry, schemas, gv_path)
    for op in _patch_operations(doc, gvk):
        # the verifier reads the operation's own parameters, not the path's
        query = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= query
        content = op["requestBody"]["content"]
        assert ("application/strategic-merge-patch+json" in content) == strategic
        assert {"application/json-patch+json", "application/merge-patch+json",
                "application/apply-patch+yaml"} <= set(content)
        assert op["requestBody"]["required"] is True


def test_v3_request_bodies(registry: Registry, schemas: schema.Schemas) -> None:
    doc = openapi_v3_group_version(registry, schemas, "apis/apps/v1")
    ops = by_operation_id(doc)
    create = ops["createAppsV1NamespacedDeployment"][2]
    assert create["requestBody"] == {
        "content": {"*/*": {"schema": {
            "$ref": "#/components/schemas/io.k8s.api.apps.v1.Deployment"}}},
        "required": True,
    }
    assert set(create["responses"]) == {"200", "201", "202", "401"}
    delete = ops["deleteAppsV1NamespacedDeployment"][2]
    assert "required" not in delete["requestBody"]
    assert delete["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "meta.v1.Status")


def _deref(doc: dict, node: dict) -> dict:
    """Follow ``$ref``, a lone ``allOf`` and array items, as the explain template does."""
    while True:
        if "$ref" in node:
            node = resolve(doc, node["$ref"])
        elif "allOf" in node and "properties" not in node:
            node = node["allOf"][0]
        elif "items" in node:
            node = node["items"]
        else:
            return node


def _explain(doc: dict, resource_path: str, fields: list[str]) -> dict:
    """kubectl explain's plaintext template: the kind from the operations at the resource's
    path, the schema carrying that kind, then each field in turn."""
    item = doc["paths"][resource_path]
    gvk = next(item[m]["x-kubernetes-group-version-kind"] for m in ("get", "post", "put")
               if m in item)
    node = next(s for s in doc["components"]["schemas"].values()
                if gvk in s.get("x-kubernetes-group-version-kind", []))
    for field in fields:
        node = _deref(doc, node)["properties"][field]
    return _deref(doc, node)


def test_explain_walks_from_kind_to_nested_fields(registry: Registry,
                                                  schemas: schema.Schemas) -> None:
    apps = openapi_v3_group_version(registry, schemas, "apis/apps/v1")
    template = _explain(apps, "/apis/apps/v1/namespaces/{namespace}/deployments",
                        ["spec", "template"])
    assert {"metadata", "spec"} <= set(template["properties"])
    strategy = _explain(apps, "/apis/apps/v1/deployments", ["spec", "strategy"])
    assert set(strategy["properties"]) == {"rollingUpdate", "type"}
    core = openapi_v3_group_version(registry, schemas, "api/v1")
    ports = _explain(core, "/api/v1/namespaces/{namespace}/pods", ["spec", "containers", "ports"])
    assert "containerPort" in ports["properties"]


def test_v3_keeps_strategic_merge_metadata(registry: Registry,
                                           schemas: schema.Schemas) -> None:
    core = openapi_v3_group_version(registry, schemas, "api/v1")
    containers = core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"][
        "containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    int_or_string = core["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert "type" not in int_or_string  # kubectl explain then names it <IntOrString>


# --- custom resources --------------------------------------------------------------------------

def test_crd_definitions_in_v3(registry: Registry, schemas: schema.Schemas) -> None:
    name = crd_model_name("stable.example.com", "v1", "CronTab")
    assert name == "com.example.stable.v1.CronTab"
    doc = openapi_v3_group_version(registry, schemas, "apis/stable.example.com/v1")
    crontab_schema = doc["components"]["schemas"][name]
    assert crontab_schema["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]
    props = crontab_schema["properties"]
    assert props["apiVersion"]["type"] == props["kind"]["type"] == "string"
    assert props["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    spec = props["spec"]["properties"]
    assert spec["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert spec["note"]["nullable"] is True
    assert spec["replicas"]["default"] == 1
    assert {"apiVersion", "kind", "metadata"} <= set(spec["template"]["properties"])
    crontab_list = doc["components"]["schemas"]["com.example.stable.v1.CronTabList"]
    assert crontab_list["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/" + name}
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]


def test_crd_definitions_in_v2(v2: dict) -> None:
    crontab_schema = v2["definitions"]["com.example.stable.v1.CronTab"]
    assert crontab_schema["properties"]["metadata"]["$ref"] == (
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    spec = crontab_schema["properties"]["spec"]
    assert spec["required"] == ["cronSpec"]  # nullable fields are not required in v2
    assert "type" not in spec["properties"]["note"]
    assert "anyOf" not in spec["properties"]["port"]
    assert "default" not in spec["properties"]["replicas"]
    status = crontab_schema["properties"]["status"]
    assert "properties" not in status and "type" not in status
    assert "nullable" not in set(schema_keys(crontab_schema))


def test_crd_changes_rebuild_documents(schemas: schema.Schemas) -> None:
    registry = Registry()
    before = openapi_v3_index(registry, schemas)
    assert "apis/stable.example.com/v1" not in before["paths"]
    registry.add(crontab())
    after = openapi_v3_index(registry, schemas)
    assert "apis/stable.example.com/v1" in after["paths"]
    assert before["paths"]["apis/apps/v1"] == after["paths"]["apis/apps/v1"]
    assert "com.example.stable.v1.CronTab" in openapi_v2(registry, schemas)["definitions"]


def test_hashes_do_not_depend_on_registration_order(schemas: schema.Schemas) -> None:
    one, two = Registry(), Registry()
    for r in (widget("a.example.com"), widget("b.example.com")):
        one.add(r)
    for r in (widget("b.example.com"), widget("a.example.com")):
        two.add(r)
    assert encode_openapi_v2(one, schemas).hash == encode_openapi_v2(two, schemas).hash
    assert openapi_v3_index(one, schemas) == openapi_v3_index(two, schemas)
