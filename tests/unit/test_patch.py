"""JSON patch, merge patch and strategic merge patch, against upstream's behaviour.

The strategic merge patch cases are ported from k8s.io/apimachinery's strategicpatch test
tables (``patch_test.go``), on the same ``MergeItem`` type those tables use, written here as
schema nodes; the rest use the built-in Deployment and Pod schemas."""

from __future__ import annotations

import copy

import orjson
import pytest
import yaml

from sampan.api import patch
from sampan.api.errors import StatusError
from sampan.api.schema import Schemas, builtin

# --------------------------------------------------------------------------------------------
# schemas


def _ref(name: str, **extensions: str) -> dict:
    return {"$ref": f"#/$defs/{name}", **extensions}


_ITEM_FIELDS = {
    "name": {"type": "string"},
    "value": {"type": "string"},
    "other": {"type": "string"},
    "mergingList": {"type": "array", "items": _ref("mergeItem"),
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name"},
    "nonMergingList": {"type": "array", "items": _ref("mergeItem")},
    "mergingIntList": {"type": "array", "items": {"type": "integer"},
                       "x-kubernetes-patch-strategy": "merge"},
    "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
    "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
    "replacingItem": _ref("raw", **{"x-kubernetes-patch-strategy": "replace"}),
    "retainKeysMap": _ref("retainKeysMergeItem", **{"x-kubernetes-patch-strategy": "retainKeys"}),
    "retainKeysMergingList": {"type": "array", "items": _ref("mergeItem"),
                              "x-kubernetes-patch-strategy": "merge,retainKeys",
                              "x-kubernetes-patch-merge-key": "name"},
}
MERGE_ITEM = Schemas({
    "mergeItem": {"type": "object", "properties": _ITEM_FIELDS},
    "retainKeysMergeItem": {"type": "object", "properties": {
        k: _ITEM_FIELDS[k] for k in ("name", "value", "other", "simpleMap", "mergingIntList",
                                     "mergingList", "nonMergingList")}},
    "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
})
MERGE_ITEM_ROOT = MERGE_ITEM.definitions["mergeItem"]


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return builtin()


@pytest.fixture(scope="module")
def deployment_node(schemas: Schemas) -> dict:
    return schemas.for_kind("apps", "v1", "Deployment")


def smp(original: str | dict, patch_body: str | dict) -> dict:
    """Strategic-merge ``patch_body`` into ``original`` (YAML or dicts) on MergeItem."""
    load = (lambda v: yaml.safe_load(v) if isinstance(v, str) else v)
    return patch.strategic_merge_patch(load(original) or {}, load(patch_body), MERGE_ITEM_ROOT,
                                       MERGE_ITEM)


def status_of(call) -> StatusError:
    with pytest.raises(StatusError) as caught:
        call()
    return caught.value


# --------------------------------------------------------------------------------------------
# content types


@pytest.mark.parametrize("content_type, is_custom, expected", [
    ("application/json-patch+json", False, patch.JSON_PATCH),
    ("application/merge-patch+json; charset=utf-8", False, patch.MERGE_PATCH),
    ("application/strategic-merge-patch+json", False, patch.STRATEGIC_MERGE_PATCH),
    ("application/apply-patch+yaml", True, patch.APPLY_PATCH_YAML),
])
def test_accepted_patch_types(content_type: str, is_custom: bool, expected: str) -> None:
    assert patch.check_patch_type(content_type, is_custom=is_custom) == expected


def test_strategic_merge_patch_of_a_custom_resource_is_unsupported_media_type() -> None:
    error = status_of(lambda: patch.check_patch_type(patch.STRATEGIC_MERGE_PATCH,
                                                     is_custom=True))
    assert (error.code, error.reason) == (415, "UnsupportedMediaType")
    assert error.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")


def test_cbor_apply_is_unsupported_while_its_feature_gate_is_off() -> None:
    error = status_of(lambda: patch.check_patch_type(patch.APPLY_PATCH_CBOR, is_custom=False))
    assert error.code == 415
    assert error.message.endswith("application/strategic-merge-patch+json, "
                                  "application/apply-patch+yaml")


def test_apply_patch_dispatches_on_content_type(deployment_node: dict, schemas: Schemas) -> None:
    obj = {"metadata": {"name": "web"}, "spec": {"replicas": 1}}
    body = b'{"spec": {"replicas": 3}}'
    for content_type in (patch.MERGE_PATCH, patch.STRATEGIC_MERGE_PATCH):
        patched = patch.apply_patch(obj, content_type, body, deployment_node, schemas,
                                    is_custom=False)
        assert patched["spec"]["replicas"] == 3
    patched = patch.apply_patch(obj, patch.JSON_PATCH,
                                b'[{"op": "replace", "path": "/spec/replicas", "value": 2}]',
                                deployment_node, schemas, is_custom=False)
    assert patched["spec"]["replicas"] == 2
    assert obj["spec"]["replicas"] == 1


def test_apply_patch_rejects_a_body_that_is_not_json(deployment_node: dict,
                                                     schemas: Schemas) -> None:
    error = status_of(lambda: patch.apply_patch({}, patch.MERGE_PATCH, b"{nope", deployment_node,
                                                schemas, is_custom=False))
    assert (error.code, error.reason, error.message) == (400, "BadRequest", "invalid JSON patch")


# --------------------------------------------------------------------------------------------
# JSON patch


POD = {"metadata": {"name": "p", "labels": {"app": "web"}},
       "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}


def test_json_patch_operations() -> None:
    ops = [
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "remove", "path": "/metadata/labels/app"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "x2"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "c"}},
        {"op": "move", "from": "/spec/containers/2", "path": "/spec/containers/0"},
        {"op": "copy", "from": "/metadata/name", "path": "/metadata/annotations"},
        {"op": "test", "path": "/spec/containers/1/image", "value": "x2"},
    ]
    patched = patch.json_patch(POD, ops)
    assert patched["metadata"] == {"name": "p", "labels": {"tier": "front"}, "annotations": "p"}
    assert [c["name"] for c in patched["spec"]["containers"]] == ["c", "a", "b"]
    assert POD["metadata"]["labels"] == {"app": "web"}


def test_json_patch_pointer_escapes_and_negative_indices() -> None:
    obj = {"metadata": {"annotations": {"a/b": "1", "c~d": "2"}}, "items": [1, 2, 3]}
    patched = patch.json_patch(obj, [
        {"op": "remove", "path": "/metadata/annotations/a~1b"},
        {"op": "replace", "path": "/metadata/annotations/c~0d", "value": "3"},
        {"op": "remove", "path": "/items/-1"},
    ])
    assert patched == {"metadata": {"annotations": {"c~d": "3"}}, "items": [1, 2]}


def test_json_patch_replace_of_a_missing_key_adds_it_like_json_patch_v4() -> None:
    assert patch.json_patch({"a": {}}, [{"op": "replace", "path": "/a/b", "value": 1}]) == {
        "a": {"b": 1}}


@pytest.mark.parametrize("op", [
    {"op": "test", "path": "/metadata/name", "value": "q"},
    {"op": "test", "path": "/metadata/generation", "value": 1},
    {"op": "test", "path": "/spec/replicas", "value": True},  # true is not 1
    {"op": "remove", "path": "/metadata/nope"},
    {"op": "add", "path": "/missing/parent", "value": 1},
    {"op": "replace", "path": "/spec/containers/5/image", "value": "z"},
    {"op": "add", "path": "/spec/containers/x", "value": {}},
    {"op": "frobnicate", "path": "/metadata"},
])
def test_json_patch_operation_that_does_not_apply_is_422(op: dict) -> None:
    obj = dict(POD, spec=dict(POD["spec"], replicas=1))
    error = status_of(lambda: patch.json_patch(obj, [op]))
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == "the server rejected our request due to an error in our request"
    assert error.status()["details"] == {}


def test_json_patch_test_of_an_absent_path_against_null_passes() -> None:
    assert patch.json_patch({"a": 1}, [{"op": "test", "path": "/b", "value": None}]) == {"a": 1}


@pytest.mark.parametrize("ops, message", [
    ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    (["add"], "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
])
def test_malformed_json_patch_is_400(ops: object, message: str) -> None:
    error = status_of(lambda: patch.json_patch({}, ops))
    assert (error.code, error.reason, error.message) == (400, "BadRequest", message)


def test_json_patch_with_too_many_operations_is_413() -> None:
    ops = [{"op": "test", "path": "/a", "value": 1}] * (patch.MAX_JSON_PATCH_OPERATIONS + 1)
    error = status_of(lambda: patch.json_patch({"a": 1}, ops))
    assert error.code == 413
    assert error.message == ("Request entity too large: The allowed maximum operations in a "
                             "JSON patch is 10000, got 10001")


def test_json_patch_that_leaves_no_object_is_invalid() -> None:
    error = status_of(lambda: patch.json_patch({}, [{"op": "replace", "path": "",
                                                     "value": [1]}]))
    assert error.code == 422
    assert error.message.startswith(' "" is invalid: patch: Invalid value: "[1]": couldn\'t get '
                                    "version/kind; json parse error: json: cannot unmarshal "
                                    "array into Go value of type struct")


# --------------------------------------------------------------------------------------------
# JSON merge patch: RFC 7386 appendix A, with json-patch v4's answers where they differ


@pytest.mark.parametrize("original, merge, expected", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    # json-patch v4 prunes nulls inside a value that replaces a non-object...
    ({"a": 1}, {"a": [{"b": None, "c": 1}]}, {"a": [{"c": 1}]}),
    # ...but not inside one that replaces an object.
    ({"a": {"x": 1}}, {"a": [{"b": None}]}, {"a": [{"b": None}]}),
])
def test_merge_patch(original: dict, merge: dict, expected: dict) -> None:
    before = copy.deepcopy(original)
    assert patch.merge_patch(original, merge) == expected
    assert original == before


@pytest.mark.parametrize("merge", [None, "bar", 1])
def test_merge_patch_that_is_not_an_object_is_400(merge: object) -> None:
    error = status_of(lambda: patch.merge_patch({"a": "foo"}, merge))
    assert (error.code, error.message) == (400, "Invalid JSON Patch")


def test_merge_patch_that_is_an_array_replaces_the_object_and_fails_to_decode() -> None:
    assert status_of(lambda: patch.merge_patch({"a": "b"}, ["c"])).code == 422


# --------------------------------------------------------------------------------------------
# strategic merge patch: cases from strategicpatch's tables


def test_merging_list_merges_items_by_key_and_keeps_server_only_items() -> None:
    # New items go before the server-only items the live list has after the patch's items
    # (mergeSortedSlice), so 3 lands before 2.
    assert smp("""
mergingList:
  - name: 1
    value: a
  - name: 2
""", """
mergingList:
  - name: 1
    other: b
  - name: 3
""") == yaml.safe_load("""
mergingList:
  - name: 1
    value: a
    other: b
  - name: 3
  - name: 2
""")


def test_non_merging_list_is_replaced() -> None:
    assert smp("nonMergingList: [{name: 1}, {name: 2}]", "nonMergingList: [{name: 3}]") == {
        "nonMergingList": [{"name": 3}]}


def test_merging_int_list_is_a_union_in_patch_order() -> None:
    # "preserve the order from the patch in a merging int list"
    assert smp("mergingIntList: [1, 2, 3]", "mergingIntList: [3, 1]") == {
        "mergingIntList": [2, 3, 1]}
    assert smp("mergingIntList: [1, 2]", "mergingIntList: [3]") == {"mergingIntList": [3, 1, 2]}


def test_order_of_a_merging_list_follows_the_patch() -> None:
    # "preserve the order from the patch in a merging list 2"
    assert smp("""
mergingList:
  - name: 1
  - name: 2
    value: b
  - name: 3
""", """
mergingList:
  - name: 3
    value: c
  - name: 1
    value: a
""") == yaml.safe_load("""
mergingList:
  - name: 2
    value: b
  - name: 3
    value: c
  - name: 1
    value: a
""")


def test_delete_directive_removes_a_list_item() -> None:
    assert smp("mergingList: [{name: 1}, {name: 2}]",
               "mergingList: [{name: 1, $patch: delete}]") == {"mergingList": [{"name": 2}]}


def test_replace_directive_replaces_a_list() -> None:
    assert smp("mergingList: [{name: 1, value: a}, {name: 2}]",
               "mergingList: [{name: 3}, {$patch: replace}]") == {"mergingList": [{"name": 3}]}


def test_replace_and_delete_directives_in_maps() -> None:
    original = "simpleMap: {a: x, b: y}\nretainKeysMap: {name: foo, value: a}"
    assert smp(original, "simpleMap: {c: z, $patch: replace}") == {
        "simpleMap": {"c": "z"}, "retainKeysMap": {"name": "foo", "value": "a"}}
    assert smp(original, "simpleMap: {$patch: delete}") == {
        "simpleMap": {}, "retainKeysMap": {"name": "foo", "value": "a"}}
    assert smp(original, "$patch: replace\nname: n") == {"name": "n"}


def test_new_value_with_a_directive_is_dropped() -> None:
    # removeDirectives: a map that carries $patch is not taken as a new value.
    assert smp("name: a", "simpleMap: {k: v, $patch: replace}") == {"name": "a"}


def test_null_deletes_fields_and_unmatched_nulls_are_discarded() -> None:
    assert smp("name: a\nvalue: b\nsimpleMap: {k: v}",
               "value: null\nsimpleMap: {k: null}\nother: null\nmergingList: "
               "[{name: 1, value: null}]") == {
        "name": "a", "simpleMap": {}, "mergingList": [{"name": 1}]}


def test_delete_from_primitive_list() -> None:
    assert smp("mergingIntList: [1, 2, 3]", "$deleteFromPrimitiveList/mergingIntList: [2]") == {
        "mergingIntList": [1, 3]}
    # "...of nonexistent item in primitive list should not add the item to the list"
    assert smp("mergingIntList: [1, 2]", "$deleteFromPrimitiveList/mergingIntList: [3]") == {
        "mergingIntList": [1, 2]}
    # "...on nonexistent primitive list should not add the primitive list"
    assert smp("name: a", "$deleteFromPrimitiveList/mergingIntList: [3]") == {"name": "a"}


def test_set_element_order_orders_the_merged_list() -> None:
    # "set elements order in a list with server-only items" (three-way)
    assert smp("""
mergingList:
  - name: 1
    other: a
  - name: 3
    value: 3
  - name: 4
    value: 4
  - name: 2
    value: 2
  - name: 9
""", """
$setElementOrder/mergingList:
  - name: 4
  - name: 2
  - name: 3
  - name: 1
""") == yaml.safe_load("""
mergingList:
  - name: 4
    value: 4
  - name: 2
    value: 2
  - name: 3
    value: 3
  - name: 1
    other: a
  - name: 9
""")


def test_set_element_order_of_a_primitive_list_without_the_list() -> None:
    # "$setElementOrder contains item that is not present in the int list to be merged"
    assert smp("mergingIntList: [1, 3]", "$setElementOrder/mergingIntList: [3, 2, 1]") == {
        "mergingIntList": [3, 1]}


def test_set_element_order_with_deletion_orders_by_upstreams_live_view() -> None:
    # "add map and delete map from merging list": upstream's Go slices share their backing
    # array, so the item appended after a deletion counts as a live item when ordering.
    assert smp("""
mergingList:
  - name: 1
  - name: 2
    other: b
  - name: 4
    other: c
""", """
$setElementOrder/mergingList:
  - name: 2
  - name: 3
mergingList:
  - name: 3
  - name: 1
    $patch: delete
""") == yaml.safe_load("""
mergingList:
  - name: 2
    other: b
  - name: 4
    other: c
  - name: 3
""")


def test_retain_keys_clears_fields_not_listed() -> None:
    # "retainKeys map should clear defaulted field"
    assert smp("retainKeysMap: {name: foo, value: a, other: b}",
               "retainKeysMap:\n  $retainKeys: [name, value]\n  value: c") == {
        "retainKeysMap": {"name": "foo", "value": "c"}}


def test_retain_keys_in_a_merging_list_item() -> None:
    assert smp("retainKeysMergingList: [{name: foo, value: a, other: x}, {name: bar}]",
               "retainKeysMergingList: [{name: foo, $retainKeys: [name, other], other: y}]") == {
        "retainKeysMergingList": [{"name": "foo", "other": "y"}, {"name": "bar"}]}


def test_replace_strategy_field_is_taken_whole() -> None:
    assert smp("replacingItem: {a: 1, b: 2}", "replacingItem: {c: 3}") == {
        "replacingItem": {"c": 3}}


# --------------------------------------------------------------------------------------------
# strategic merge patch errors


@pytest.mark.parametrize("original, patch_body, code, message", [
    ("mergingList: [{name: 1, value: a}]", "mergingList: [{value: b}]", 500,
     "map: map[value:b] does not contain declared merge key: name"),
    ("retainKeysMap: {name: a}", "retainKeysMap: {$retainKeys: name}", 400,
     "invalid patch format of retainKeys"),
    ("retainKeysMap: {name: a}", "retainKeysMap: {$retainKeys: [name], value: b}", 400,
     "invalid patch format of retainKeys"),
    ("mergingIntList: [1]", "$deleteFromPrimitiveListmergingIntList: [1]", 400,
     "invalid patch format of primitive list"),
    ("mergingList: [{name: 1}]", "mergingList: [{name: 1, $patch: merge}]", 500,
     "merging lists cannot yet be specified in the patch"),
    ("mergingList: [{name: 1}]", "mergingList: [{name: 1, $patch: frob}]", 500,
     "unknown patch type: frob in map: map[$patch:frob name:1]"),
    ("simpleMap: {a: b}", "simpleMap: {$patch: frob}", 500,
     "unknown patch type: frob in map: map[$patch:frob]"),
    ("mergingIntList: []", "mergingIntList: [[2]]", 422,
     "the server rejected our request due to an error in our request"),
    ("mergingIntList: [1]", "mergingIntList: [a]", 500,
     "list element types are not identical: [[1] [a]]"),
])
def test_strategic_merge_patch_errors(original: str, patch_body: str, code: int,
                                      message: str) -> None:
    error = status_of(lambda: smp(original, patch_body))
    assert (error.code, error.message) == (code, message)


def test_set_element_order_must_agree_with_the_patch_list() -> None:
    error = status_of(lambda: smp("mergingList: [{name: 1}, {name: 3}, {name: 2}]", """
$setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}]
mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]
"""))
    assert error.code == 500
    assert "doesn't match $setElementOrder list" in error.message


def test_patch_that_is_not_an_object_is_400() -> None:
    error = status_of(lambda: smp("name: a", [1]))
    assert (error.code, error.message) == (
        400, "json: cannot unmarshal array into Go value of type map[string]interface {}")


def test_nested_map_in_a_map_field_fails_like_upstream(schemas: Schemas) -> None:
    node = schemas.definitions[
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"]
    original = {"properties": {"spec": {"type": "object"}}}
    error = status_of(lambda: patch.strategic_merge_patch(
        original, {"properties": {"spec": {"type": "string"}}}, node, schemas))
    assert (error.code, error.message) == (
        500, "merging an object in json but data type is not struct, instead is: map")


# --------------------------------------------------------------------------------------------
# strategic merge patch on real kinds


DEPLOYMENT = yaml.safe_load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  finalizers: [a, b]
spec:
  replicas: 2
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    spec:
      tolerations: [{key: a, operator: Exists}]
      volumes:
        - name: data
          emptyDir: {}
      containers:
        - name: app
          image: app:1
          env: [{name: A, value: "1"}, {name: B, value: "2"}]
          ports: [{containerPort: 80}]
        - name: sidecar
          image: side:1
""")


def deployment_patch(node: dict, schemas: Schemas, body: str) -> dict:
    return patch.strategic_merge_patch(DEPLOYMENT, yaml.safe_load(body), node, schemas)


def test_containers_merge_by_name(deployment_node: dict, schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, """
spec:
  template:
    spec:
      containers:
        - name: app
          image: app:2
          env: [{name: B, value: "3"}, {name: C, value: "4"}]
""")
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["image"] == "app:2"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                                    {"name": "C", "value": "4"}]
    assert containers[0]["ports"] == [{"containerPort": 80}]
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1"


def test_delete_a_container_and_replace_atomic_tolerations(deployment_node: dict,
                                                           schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, """
spec:
  template:
    spec:
      containers: [{name: sidecar, $patch: delete}]
      tolerations: [{key: b, operator: Exists}]
""")
    spec = patched["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    assert spec["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_kubectl_style_retain_keys_switches_deployment_strategy(deployment_node: dict,
                                                                schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, """
spec:
  strategy:
    $retainKeys: [type]
    type: Recreate
""")
    assert patched["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_on_a_volume_switches_its_source(deployment_node: dict,
                                                     schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, """
spec:
  template:
    spec:
      volumes:
        - name: data
          $retainKeys: [name, configMap]
          configMap: {name: settings}
""")
    assert patched["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "configMap": {"name": "settings"}}]


def test_finalizers_union_and_deletion(deployment_node: dict, schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, """
metadata:
  finalizers: [c, a]
  $deleteFromPrimitiveList/finalizers: [b]
""")
    assert patched["metadata"]["finalizers"] == ["c", "a"]


def test_kubectl_apply_style_patch_with_set_element_order(deployment_node: dict,
                                                          schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, """
spec:
  replicas: null
  template:
    spec:
      $setElementOrder/containers: [{name: sidecar}, {name: app}]
      containers:
        - name: app
          $setElementOrder/env: [{name: B}, {name: A}]
""")
    assert "replicas" not in patched["spec"]
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["sidecar", "app"]
    assert [e["name"] for e in containers[1]["env"]] == ["B", "A"]


def test_port_list_merges_on_container_port(deployment_node: dict, schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, """
spec:
  template:
    spec:
      containers:
        - name: app
          ports: [{containerPort: 80, name: http}, {containerPort: 443}]
""")
    assert patched["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "name": "http"}, {"containerPort": 443}]


def test_strategic_merge_patch_result_round_trips_through_json(deployment_node: dict,
                                                               schemas: Schemas) -> None:
    patched = deployment_patch(deployment_node, schemas, "metadata: {labels: {a: b}}")
    assert orjson.loads(orjson.dumps(patched)) == patched
