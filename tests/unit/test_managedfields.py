"""Field ownership and server-side apply, against upstream's behaviour.

Scenarios follow k8s.io/apimachinery's field manager tests and structured-merge-diff's merge
fixtures (multiple appliers, nested types, sets, schema changes), on the built-in Deployment,
Pod and Service schemas and on small schemas written for the purpose."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any, Iterator

import pytest
import yaml

from sampan.api import managedfields as mf
from sampan.api.errors import StatusError
from sampan.api.schema import Schemas, builtin

S = builtin()
DEPLOYMENT = S.for_kind("apps", "v1", "Deployment")
POD = S.for_kind("", "v1", "Pod")
SERVICE = S.for_kind("", "v1", "Service")


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every field manager timestamp comes from here, one second apart."""
    seconds = itertools.count()
    stamps: list[str] = []

    def now() -> str:
        stamps.append(f"2030-01-01T00:00:{next(seconds):02d}Z")
        return stamps[-1]

    monkeypatch.setattr(mf, "_now", now)
    yield stamps


def load(text: str) -> dict:
    return yaml.safe_load(text)


def deployment(replicas: int = 3, image: str = "nginx:1.25", **spec: Any) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": image}]}},
                     **spec}}


def apply(live: dict | None, config: dict, manager: str, force: bool = False,
          node: dict = DEPLOYMENT, api_version: str = "apps/v1", **options: Any) -> dict:
    options.setdefault("ignored", ["status"])
    result = mf.apply(live, config, manager=manager, force=force, node=node, schemas=S,
                      api_version=api_version, **options)
    if live is None:  # the server creates it
        result["metadata"]["uid"] = "0b1e2c3d"
    return result


def update(live: dict | None, new: dict, manager: str, node: dict = DEPLOYMENT,
           api_version: str = "apps/v1", **options: Any) -> dict:
    new = copy.deepcopy(new)
    options.setdefault("ignored", ["status"])
    mf.track_update(live, new, manager=manager, node=node, schemas=S, api_version=api_version,
                    **options)
    if live is None:
        new.setdefault("metadata", {})["uid"] = "0b1e2c3d"
    return new


def entry(obj: dict, manager: str, operation: str | None = None) -> dict:
    found = [e for e in obj["metadata"].get("managedFields", [])
             if e["manager"] == manager and operation in (None, e["operation"])]
    assert len(found) == 1, obj["metadata"].get("managedFields")
    return found[0]


def owned(obj: dict, manager: str, operation: str | None = None) -> set[str]:
    """The fields ``manager`` owns, as dotted FieldsV1 keys: ``.f:spec.f:replicas``."""
    return set(_members(entry(obj, manager, operation)["fieldsV1"], ""))


def _members(fields: dict, prefix: str) -> Iterator[str]:
    for key, child in fields.items():
        if key == ".":
            yield prefix
            continue
        path = f"{prefix}.{key}"
        if not child:
            yield path
        else:
            yield from _members(child, path)


def managers(obj: dict) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in obj["metadata"].get("managedFields", [])]


def conflict(call) -> StatusError:
    with pytest.raises(StatusError) as caught:
        call()
    assert (caught.value.code, caught.value.reason) == (409, "Conflict")
    return caught.value


# --------------------------------------------------------------------------------------------
# FieldsV1


def test_fields_v1_round_trip_keeps_upstream_order_and_members() -> None:
    fields = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}},
            "f:finalizers": {'v:"a"': {}, 'v:"b"': {}},
            "f:args": {"i:0": {}},
        },
    }
    encoded = mf.set_to_fields(mf.fields_to_set(fields))
    assert encoded == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:args": {"i:0": {}},
            "f:finalizers": {'v:"a"': {}, 'v:"b"': {}},
            "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}},
        },
    }
    assert json.dumps(encoded) == json.dumps(mf.set_to_fields(mf.fields_to_set(encoded)))


def test_fields_v1_skips_unknown_element_types_and_rejects_malformed_keys() -> None:
    assert mf.fields_to_set({"f:a": {"x:future": {}}}) == {("a",)}
    for bad in ({"fa": {}}, {"f": {}}, {"v:[": {}}, {"f:a": 1}):
        with pytest.raises(ValueError):
            mf.fields_to_set(bad)


def test_fields_v1_escapes_keys_like_go() -> None:
    paths = mf.fields_to_set({'k:{"name":"a<b&c"}': {}})
    assert list(mf.set_to_fields(paths)) == ['k:{"name":"a\\u003cb\\u0026c"}']


# --------------------------------------------------------------------------------------------
# manager names


@pytest.mark.parametrize("user_agent, manager", [
    ("kubectl/v1.37.1 (linux/amd64) kubernetes/abcdef", "kubectl"),
    ("OpenAPI-Generator/37.0.2/python", "OpenAPI-Generator"),
    ("Go-http-client/1.1", "Go-http-client"),
    ("curl\x07/8.0", "curl"),
    ("", ""),
    ("x" * 200, "x" * 128),
])
def test_default_manager_is_the_user_agent_prefix(user_agent: str, manager: str) -> None:
    assert mf.default_manager(user_agent) == manager


def test_manager_names_are_validated_like_object_meta() -> None:
    errors = mf.validate_managed_fields([
        {"manager": "ok", "operation": "Apply", "fieldsType": "FieldsV1"},
        {"manager": "bad\x07", "operation": "Frob", "fieldsType": "FieldsV2"},
        {"manager": "x" * 129},
    ])
    assert [(e.field, e.detail) for e in errors] == [
        ("metadata.managedFields[1].operation", 'supported values: "Apply", "Update"'),
        ("metadata.managedFields[1].fieldsType", "must be `FieldsV1`"),
        ("metadata.managedFields[1].manager", "invalid character U+0007 (at position 3)"),
        ("metadata.managedFields[2].operation", "must not be empty"),
        ("metadata.managedFields[2].manager", "may not be more than 128 bytes"),
    ]


# --------------------------------------------------------------------------------------------
# apply: creating and re-applying


def test_create_by_apply_records_the_applied_fields() -> None:
    config = deployment()
    config["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    created = apply(None, config, "kubectl")
    assert created["spec"] == config["spec"]
    assert created["metadata"]["managedFields"] == [{
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": "2030-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        # protocol defaults to TCP, so it is part of the key
                        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                            ".": {}, "f:containerPort": {}}},
                    }}},
                },
            },
        },
    }]


def test_reapplying_the_same_configuration_changes_nothing(clock: list[str]) -> None:
    live = apply(None, deployment(), "kubectl")
    again = apply(live, deployment(), "kubectl")
    assert again == live
    assert len(clock) == 1  # no change, no new timestamp


def test_apply_does_not_modify_its_arguments() -> None:
    live = apply(None, deployment(), "kubectl")
    before, config = copy.deepcopy(live), deployment(replicas=5)
    config_before = copy.deepcopy(config)
    apply(live, config, "kubectl")
    assert (live, config) == (before, config_before)


def test_unowned_identity_fields_are_never_owned() -> None:
    config = deployment()
    config["metadata"].update({"resourceVersion": "5", "generation": 2, "uid": "x"})
    created = apply(None, config, "kubectl")
    assert not {f for f in owned(created, "kubectl") if f.startswith(".f:metadata.f:")
                and "labels" not in f}
    assert ".f:apiVersion" not in owned(created, "kubectl")


# --------------------------------------------------------------------------------------------
# apply: several managers


def test_two_appliers_share_a_field_they_set_to_the_same_value() -> None:
    live = apply(None, deployment(replicas=3), "alice")
    live = apply(live, load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 3}
"""), "bob")
    assert ".f:spec.f:replicas" in owned(live, "alice")
    assert owned(live, "bob") == {".f:spec.f:replicas"}


def test_conflict_with_another_applier_names_the_field_and_the_manager() -> None:
    live = apply(None, deployment(replicas=3), "alice")
    error = conflict(lambda: apply(live, deployment(replicas=5), "bob"))
    assert error.message == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    assert error.details == {"causes": [{"reason": "FieldManagerConflict",
                                         "message": 'conflict with "alice"',
                                         "field": ".spec.replicas"}]}


def test_conflicts_with_several_managers_are_grouped_by_manager() -> None:
    live = update(None, deployment(replicas=3), "kubectl-create")
    live = apply(live, load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers: [{name: nginx, image: nginx:1.25}]
"""), "alice")
    error = conflict(lambda: apply(live, deployment(replicas=5, image="nginx:2"), "bob"))
    assert error.message == (
        "Apply failed with 3 conflicts: "
        'conflicts with "alice":\n'
        '- .spec.template.spec.containers[name="nginx"].image\n'
        'conflicts with "kubectl-create" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image')
    assert [c["field"] for c in error.details["causes"]] == [
        '.spec.template.spec.containers[name="nginx"].image', ".spec.replicas",
        '.spec.template.spec.containers[name="nginx"].image']


def test_force_takes_ownership_from_the_other_manager() -> None:
    live = apply(None, deployment(replicas=3), "alice")
    live = apply(live, deployment(replicas=5), "bob", force=True)
    assert live["spec"]["replicas"] == 5
    assert ".f:spec.f:replicas" not in owned(live, "alice")
    assert ".f:spec.f:replicas" in owned(live, "bob")


def test_update_takes_fields_and_then_applying_them_conflicts() -> None:
    live = apply(None, deployment(replicas=3), "kubectl")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 7
    live = update(live, scaled, "kubectl-scale")
    assert owned(live, "kubectl-scale", "Update") == {".f:spec.f:replicas"}
    assert ".f:spec.f:replicas" not in owned(live, "kubectl")
    error = conflict(lambda: apply(live, deployment(replicas=3), "kubectl"))
    assert error.message == ('Apply failed with 1 conflict: conflict with "kubectl-scale" using '
                             "apps/v1: .spec.replicas")


def test_field_a_manager_stops_applying_is_removed() -> None:
    config = deployment()
    config["metadata"]["labels"]["tier"] = "front"
    live = apply(None, config, "kubectl")
    live = apply(live, deployment(), "kubectl")
    assert live["metadata"]["labels"] == {"app": "web"}
    assert ".f:metadata.f:labels.f:tier" not in owned(live, "kubectl")


def test_field_shared_with_an_updater_stays_when_the_applier_drops_it() -> None:
    # structured-merge-diff "unset_scalar_shared_with_updater"
    live = update(None, deployment(replicas=3), "updater")
    live = apply(live, deployment(replicas=3), "applier")
    config = deployment()
    del config["spec"]["replicas"]
    live = apply(live, config, "applier")
    assert live["spec"]["replicas"] == 3
    assert ".f:spec.f:replicas" in owned(live, "updater")
    assert ".f:spec.f:replicas" not in owned(live, "applier")


def test_container_merged_by_key_and_removed_when_its_applier_drops_it() -> None:
    def containers(*names: str) -> dict:
        config = deployment()
        config["spec"]["template"]["spec"]["containers"] = [
            {"name": n, "image": f"{n}:1"} for n in names]
        return config

    live = apply(None, containers("app"), "alice")
    live = apply(live, load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers: [{name: sidecar, image: sidecar:1}]
"""), "bob")
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == [
        "app", "sidecar"]
    live = apply(live, load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers: []
"""), "bob")
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["app"]
    assert [m for m, _ in managers(live)] == ["alice"]


def test_atomic_lists_and_maps_are_replaced_whole() -> None:
    config = deployment()
    config["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
    live = apply(None, config, "kubectl")
    config["spec"]["template"]["spec"]["containers"][0]["args"] = ["c"]
    config["spec"]["selector"] = {"matchExpressions": [
        {"key": "app", "operator": "Exists"}]}
    live = apply(live, config, "kubectl")
    assert live["spec"]["template"]["spec"]["containers"][0]["args"] == ["c"]
    assert live["spec"]["selector"] == config["spec"]["selector"]
    assert {".f:spec.f:selector",
            '.f:spec.f:template.f:spec.f:containers.k:{"name":"nginx"}.f:args'} <= owned(
        live, "kubectl")


def test_set_lists_are_unioned_across_appliers() -> None:
    def finalizers(*values: str) -> dict:
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "finalizers": list(values)}}

    live = apply(None, finalizers("a", "b"), "alice")
    live = apply(live, finalizers("c"), "bob")
    assert live["metadata"]["finalizers"] == ["a", "b", "c"]
    live = apply(live, finalizers("a"), "alice")
    assert live["metadata"]["finalizers"] == ["a", "c"]
    assert owned(live, "alice") == {'.f:metadata.f:finalizers.v:"a"'}


def test_applied_order_of_a_keyed_list_is_kept_relative_to_live_items() -> None:
    pod = load("""
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: a, image: x}, {name: b, image: x}, {name: c, image: x}]
""")
    live = apply(None, pod, "alice", node=POD, api_version="v1")
    reordered = copy.deepcopy(pod)
    reordered["spec"]["containers"] = [{"name": "c", "image": "x"}, {"name": "a", "image": "x"},
                                       {"name": "d", "image": "x"}, {"name": "b", "image": "x"}]
    live = apply(live, reordered, "alice", node=POD, api_version="v1")
    assert [c["name"] for c in live["spec"]["containers"]] == ["c", "a", "d", "b"]


def test_service_ports_are_keyed_by_port_and_defaulted_protocol() -> None:
    service = load("""
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80, targetPort: 8080}]
""")
    live = apply(None, service, "kubectl", node=SERVICE, api_version="v1")
    live["spec"]["ports"][0]["protocol"] = "TCP"  # the server's defaulting
    live = apply(live, service, "kubectl", node=SERVICE, api_version="v1")
    assert live["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert owned(live, "kubectl") == {
        '.f:spec.f:ports.k:{"port":80,"protocol":"TCP"}',
        '.f:spec.f:ports.k:{"port":80,"protocol":"TCP"}.f:port',
        '.f:spec.f:ports.k:{"port":80,"protocol":"TCP"}.f:targetPort'}


# --------------------------------------------------------------------------------------------
# structured-merge-diff fixtures: prune with dangling items (TestMultipleAppliersNestedType)


_NESTED = Schemas({"thing": {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
    "listOfLists": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {
            "name": {"type": "string"},
            "value": {"type": "array", "items": {"type": "string"},
                      "x-kubernetes-list-type": "set"}}}},
}}})


def _nested(live: dict | None, text: str, manager: str, operation: str = "apply") -> dict:
    obj = dict(load(text), apiVersion="x/v1", kind="Thing", metadata={"name": "t"})
    options = {"node": _NESTED.definitions["thing"], "schemas": _NESTED,
               "api_version": "x/v1"}
    if operation == "update":
        mf.track_update(live, obj, manager=manager, **options)
        return obj
    result = mf.apply(live, obj, manager=manager, force=False, kind="Thing", **options)
    result["metadata"]["uid"] = "u"
    return result


def test_removing_an_item_keeps_what_others_own_in_it() -> None:
    live = _nested(None, "listOfLists: [{name: a}, {name: b, value: [c]}]", "apply-one")
    live = _nested(live, "listOfLists: [{name: b, value: [d]}]", "apply-two")
    controller = copy.deepcopy(live)
    controller["listOfLists"][1]["value"] = ["c", "d", "e"]
    live = _nested(live, yaml.safe_dump({"listOfLists": controller["listOfLists"]}),
                   "controller", "update")
    live = _nested(live, "listOfLists: [{name: a}]", "apply-one")
    assert live["listOfLists"] == [{"name": "a"}, {"name": "b", "value": ["d", "e"]}]
    assert owned(live, "apply-one") == {'.f:listOfLists.k:{"name":"a"}',
                                        '.f:listOfLists.k:{"name":"a"}.f:name'}
    assert owned(live, "apply-two") == {'.f:listOfLists.k:{"name":"b"}',
                                        '.f:listOfLists.k:{"name":"b"}.f:name',
                                        '.f:listOfLists.k:{"name":"b"}.f:value.v:"d"'}
    assert owned(live, "controller") == {'.f:listOfLists.k:{"name":"b"}.f:value.v:"e"'}


def test_removing_an_item_nobody_else_owns_drops_it_whole() -> None:
    # "remove_one_with_dangling_subitem_keep_one": the controller's value under b goes too.
    live = _nested(None, "listOfLists: [{name: a}, {name: b, value: [c]}]", "apply-one")
    live = _nested(live, "listOfLists: [{name: a, value: [b]}]", "apply-two")
    controller = copy.deepcopy(live)
    controller["listOfLists"][1]["value"] = ["c", "d"]
    live = _nested(live, yaml.safe_dump({"listOfLists": controller["listOfLists"]}),
                   "controller", "update")
    live = _nested(live, "listOfLists: [{name: a}]", "apply-one")
    assert live["listOfLists"] == [{"name": "a", "value": ["b"]}]
    assert {m for m, _ in managers(live)} == {"apply-one", "apply-two"}


# --------------------------------------------------------------------------------------------
# apply: errors


def test_apply_of_another_kind_is_a_bad_request() -> None:
    config = deployment()
    config["kind"] = "ReplicaSet"
    with pytest.raises(StatusError) as caught:
        apply(None, config, "kubectl")
    assert (caught.value.code, caught.value.message) == (
        400, "invalid object type: apps/v1, Kind=ReplicaSet")


def test_apply_patch_that_is_not_an_object_is_a_bad_request() -> None:
    with pytest.raises(StatusError) as caught:
        apply(None, ["not", "an", "object"], "kubectl")  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.message) == (
        400, "error decoding patch: json: cannot unmarshal array into Go value of type "
             "map[string]interface {}")


def test_apply_with_managed_fields_is_a_bad_request() -> None:
    config = deployment()
    config["metadata"]["managedFields"] = []
    with pytest.raises(StatusError) as caught:
        apply(None, config, "kubectl")
    assert (caught.value.code, caught.value.message) == (400, "metadata.managedFields must be nil")


@pytest.mark.parametrize("change, message", [
    (lambda c: c["spec"].update(replicaz=1), ".spec.replicaz: field not declared in schema"),
    (lambda c: c["spec"]["template"]["spec"]["containers"].append({"name": "nginx"}),
     '.spec.template.spec.containers: duplicate entries for key [name="nginx"]'),
    (lambda c: c["spec"]["template"]["spec"]["containers"].append({"image": "x"}),
     ".spec.template.spec.containers: element 1: associative list with keys has an element "
     'that omits all key fields ["name"] (and doesn\'t have default values for any key '
     "fields)"),
    (lambda c: c["spec"].update(replicas="three"),
     ".spec.replicas: expected numeric (int or float), got string"),
])
def test_configuration_the_schema_cannot_read_fails_like_upstream(change, message: str) -> None:
    config = deployment()
    change(config)
    with pytest.raises(StatusError) as caught:
        apply(None, config, "kubectl")
    assert caught.value.code == 500
    assert caught.value.message == ("failed to create typed patch object (default/web; apps/v1, "
                                    f"Kind=Deployment): {message}")


# --------------------------------------------------------------------------------------------
# client-side apply, then server-side apply


LAST_APPLIED = mf.LAST_APPLIED_ANNOTATION


def client_side_create(config: dict, last_applied: dict | None = None) -> dict:
    """What ``kubectl apply`` (client-side) does to create: POST with the annotation."""
    obj = copy.deepcopy(config)
    recorded = json.dumps(last_applied or config, sort_keys=True, separators=(",", ":")) + "\n"
    obj["metadata"].setdefault("annotations", {})[LAST_APPLIED] = recorded
    return update(None, obj, "kubectl-client-side-apply")


def test_kubectl_server_side_apply_takes_over_client_side_applied_fields() -> None:
    live = client_side_create(deployment())
    assert managers(live) == [("kubectl-client-side-apply", "Update")]
    upgraded = apply(live, deployment(replicas=5, image="nginx:2"), "kubectl")
    assert upgraded["spec"]["replicas"] == 5
    assert ".f:spec.f:replicas" in owned(upgraded, "kubectl")
    assert ".f:spec.f:replicas" not in owned(upgraded, "kubectl-client-side-apply")
    annotation = json.loads(upgraded["metadata"]["annotations"][LAST_APPLIED])
    assert annotation == deployment(replicas=5, image="nginx:2")
    assert upgraded["metadata"]["annotations"][LAST_APPLIED].endswith("}\n")


def test_other_managers_conflict_with_client_side_applied_fields() -> None:
    live = client_side_create(deployment())
    error = conflict(lambda: apply(live, deployment(replicas=5), "helm"))
    assert error.message == ('Apply failed with 1 conflict: conflict with '
                             '"kubectl-client-side-apply" using apps/v1: .spec.replicas')


def test_fields_client_side_apply_set_without_recording_them_still_conflict() -> None:
    # The server defaulted progressDeadlineSeconds when kubectl created the object; the
    # annotation does not have it, so kubectl cannot take it over silently.
    live = client_side_create(deployment(progressDeadlineSeconds=600), deployment())
    error = conflict(lambda: apply(live, deployment(progressDeadlineSeconds=300), "kubectl"))
    assert error.message == ('Apply failed with 1 conflict: conflict with '
                             '"kubectl-client-side-apply" using apps/v1: '
                             ".spec.progressDeadlineSeconds")
    forced = apply(live, deployment(progressDeadlineSeconds=300), "kubectl", force=True)
    assert forced["spec"]["progressDeadlineSeconds"] == 300


def test_only_fields_that_still_match_the_annotation_are_taken_over() -> None:
    # lastappliedmanager_test: conflicts due to fields not allowed by last-applied
    last_applied = load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: my-deployment}
spec:
  replicas: 3
  selector: {matchLabels: {app: my-app}}
  template:
    metadata: {labels: {app: my-app}}
    spec:
      containers: [{name: my-c, image: my-image-v1}, {name: my-c2, image: my-image2}]
""")
    original = load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-deployment
  labels: {app: my-app}
spec:
  replicas: 100
  selector: {matchLabels: {app: my-app}}
  template:
    metadata: {labels: {app: my-app}}
    spec:
      containers: [{name: my-c, image: my-image-v2}]
""")
    applied = load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-deployment
  labels: {app: my-new-label}
spec:
  replicas: 333
  selector: {matchLabels: {app: my-new-label}}
  template:
    metadata: {labels: {app: my-new-label}}
    spec:
      containers: [{name: my-c, image: my-image-new}]
""")
    original["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(last_applied)}
    live = update(None, original, "test_client_side_apply")
    error = conflict(lambda: apply(live, applied, "kubectl"))
    assert error.message == (
        "Apply failed with 3 conflicts: "
        'conflicts with "test_client_side_apply" using apps/v1:\n'
        "- .metadata.labels.app\n"
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="my-c"].image')
    forced = apply(live, applied, "kubectl", force=True)
    assert forced["spec"]["template"]["spec"]["containers"] == [
        {"name": "my-c", "image": "my-image-new"}]


def test_annotation_is_only_kept_up_to_date_for_kubectl() -> None:
    config = deployment()
    config["metadata"]["annotations"] = {LAST_APPLIED: "nonempty"}
    live = apply(None, config, "NOT-KUBECTL")
    assert live["metadata"]["annotations"][LAST_APPLIED] == "nonempty"
    live = apply(live, config, "kubectl", force=True)
    recorded = json.loads(live["metadata"]["annotations"][LAST_APPLIED])
    assert recorded["metadata"] == {"labels": {"app": "web"}, "name": "web",
                                    "namespace": "default", "annotations": {}}


# --------------------------------------------------------------------------------------------
# updates


def test_create_gives_every_field_to_the_creator() -> None:
    created = update(None, deployment(), "kubectl-create")
    assert managers(created) == [("kubectl-create", "Update")]
    fields = owned(created, "kubectl-create")
    assert {".f:spec.f:replicas", ".f:metadata.f:labels.f:app",
            '.f:spec.f:template.f:spec.f:containers.k:{"name":"nginx"}.f:image'} <= fields
    assert ".f:metadata.f:labels" in fields  # the map was added with the object


def test_update_takes_changed_fields_from_others_and_keeps_the_rest() -> None:
    live = update(None, deployment(), "kubectl-create")
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"] = 4
    edited["metadata"]["labels"]["env"] = "prod"
    live = update(live, edited, "kubectl-edit")
    assert owned(live, "kubectl-edit") == {".f:spec.f:replicas", ".f:metadata.f:labels.f:env"}
    assert ".f:spec.f:replicas" not in owned(live, "kubectl-create")
    assert managers(live) == [("kubectl-create", "Update"), ("kubectl-edit", "Update")]


def test_unchanged_update_keeps_managed_fields_as_they_were(clock: list[str]) -> None:
    live = update(None, deployment(), "kubectl-create")
    again = update(live, copy.deepcopy(live), "kubectl-replace")
    assert again["metadata"]["managedFields"] == live["metadata"]["managedFields"]
    assert len(clock) == 1


def test_removed_field_is_dropped_from_its_owner() -> None:
    live = update(None, deployment(), "kubectl-create")
    edited = copy.deepcopy(live)
    del edited["metadata"]["labels"]
    live = update(live, edited, "kubectl-edit")
    assert not {f for f in owned(live, "kubectl-create") if f.startswith(".f:metadata")}
    assert managers(live) == [("kubectl-create", "Update")]


def test_empty_managed_fields_in_a_request_stop_tracking() -> None:
    live = update(None, deployment(), "kubectl-create")
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = []
    live = update(live, reset, "kubectl-replace")
    assert "managedFields" not in live["metadata"]
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"] = 9
    assert "managedFields" not in update(live, edited, "kubectl-edit")["metadata"]
    # The next apply finds nobody managing the object: its fields so far become
    # "before-first-apply"'s, and changing them conflicts.
    error = conflict(lambda: apply(live, deployment(replicas=9), "kubectl"))
    assert "before-first-apply" in error.message
    live = apply(live, deployment(), "kubectl")
    assert managers(live) == [("kubectl", "Apply"), ("before-first-apply", "Update")]


def test_one_empty_entry_resets_like_an_empty_list() -> None:
    live = update(None, deployment(), "kubectl-create")
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in update(live, reset, "x")["metadata"]


def test_malformed_managed_fields_in_a_request_are_ignored() -> None:
    live = update(None, deployment(), "kubectl-create")
    sent = copy.deepcopy(live)
    sent["metadata"]["managedFields"] = [{"manager": "m", "operation": "Frob",
                                          "apiVersion": "apps/v1", "fieldsType": "FieldsV1"}]
    sent["spec"]["replicas"] = 2
    result = update(live, sent, "kubectl-edit")
    assert managers(result) == [("kubectl-create", "Update"), ("kubectl-edit", "Update")]


def test_managed_fields_sent_by_a_client_replace_the_stored_ones() -> None:
    live = update(None, deployment(), "kubectl-create")
    sent = copy.deepcopy(live)
    sent["metadata"]["managedFields"] = [{
        "manager": "importer", "operation": "Apply", "apiVersion": "apps/v1",
        "time": "2029-05-05T10:00:00+02:00", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    result = update(live, sent, "kubectl-replace")
    assert result["metadata"]["managedFields"] == [{
        "manager": "importer", "operation": "Apply", "apiVersion": "apps/v1",
        "time": "2029-05-05T08:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}}}]


def test_default_manager_name_of_an_anonymous_update_is_unknown() -> None:
    assert managers(update(None, deployment(), "")) == [("unknown", "Update")]


def test_more_than_ten_update_managers_fold_into_ancient_changes() -> None:
    live = update(None, deployment(), "creator")
    for index in range(11):
        edited = copy.deepcopy(live)
        edited["metadata"]["labels"][f"l{index}"] = "x"
        live = update(live, edited, f"editor-{index}")
    names = [m for m, _ in managers(live)]
    assert len(names) == 10
    assert "ancient-changes" in names and "creator" not in names and "editor-0" not in names
    assert {".f:metadata.f:labels.f:app", ".f:metadata.f:labels.f:l0",
            ".f:metadata.f:labels.f:l1"} <= owned(live, "ancient-changes")


def test_entries_sort_apply_first_then_by_time() -> None:
    live = update(None, deployment(), "z-creator")
    live = apply(live, load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, annotations: {a: b}}
"""), "a-applier")
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"] = 1
    live = update(live, edited, "b-editor")
    assert managers(live) == [("a-applier", "Apply"), ("z-creator", "Update"),
                              ("b-editor", "Update")]


# --------------------------------------------------------------------------------------------
# status and the main resource


def test_status_subresource_owns_status_and_the_main_resource_ignores_it() -> None:
    live = update(None, deployment(), "kubectl-create")
    reported = copy.deepcopy(live)
    reported["status"] = {"replicas": 3, "readyReplicas": 3}
    reported["spec"]["replicas"] = 99  # the status strategy resets this; never owned here
    live_status = update(live, reported, "kube-controller-manager", subresource="status",
                         ignored=["spec"])
    status_entry = entry(live_status, "kube-controller-manager")
    assert status_entry["subresource"] == "status"
    assert {".f:status.f:readyReplicas", ".f:status.f:replicas"} <= owned(
        live_status, "kube-controller-manager")
    assert not {f for f in owned(live_status, "kube-controller-manager")
                if not f.startswith(".f:status")}
    assert ".f:spec.f:replicas" in owned(live_status, "kubectl-create")

    edited = copy.deepcopy(live_status)
    edited["status"]["readyReplicas"] = 0  # reset by the main resource's strategy
    edited["metadata"]["labels"]["x"] = "y"
    after = update(live_status, edited, "kubectl-edit")
    assert owned(after, "kubectl-edit") == {".f:metadata.f:labels.f:x"}


def test_subresource_requests_cannot_rewrite_managed_fields() -> None:
    live = update(None, deployment(), "kubectl-create")
    reported = copy.deepcopy(live)
    reported["metadata"]["managedFields"] = []
    reported["status"] = {"replicas": 1}
    result = update(live, reported, "controller", subresource="status", ignored=["spec"])
    assert [m for m, _ in managers(result)] == ["kubectl-create", "controller"]


def test_apply_to_status_conflicts_only_on_status() -> None:
    live = update(None, deployment(), "kubectl-create")
    status = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 42}, "status": {"replicas": 3}}
    live = apply(live, status, "controller", subresource="status", ignored=["spec"])
    assert owned(live, "controller") == {".f:status.f:replicas"}
    assert entry(live, "controller")["subresource"] == "status"
    error = conflict(lambda: apply(live, dict(status, status={"replicas": 4}), "other",
                                   subresource="status", ignored=["spec"]))
    assert error.message == ('Apply failed with 1 conflict: conflict with "controller" with '
                             'subresource "status": .status.replicas')


# --------------------------------------------------------------------------------------------
# custom resources


_WIDGET = Schemas({"widget": {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {
        "size": {"type": "integer"},
        "rules": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["host", "port"],
                  "items": {"type": "object", "properties": {
                      "host": {"type": "string"},
                      "port": {"type": "integer", "default": 80},
                      "weight": {"type": "integer"}}}},
        "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                     "additionalProperties": {"type": "string"}},
    }},
}}})


def _widget(spec: dict) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": spec}


def _apply_widget(live: dict | None, spec: dict, manager: str) -> dict:
    result = mf.apply(live, _widget(spec), manager=manager, force=False,
                      node=_WIDGET.definitions["widget"], schemas=_WIDGET,
                      api_version="example.com/v1", kind="Widget")
    result["metadata"]["uid"] = "u"
    return result


def test_custom_resource_keys_defaults_and_free_form_fields() -> None:
    live = _apply_widget(None, {"size": 1, "rules": [{"host": "a"}],
                                "config": {"nested": {"x": 1}, "list": [1, 2]},
                                "selector": {"a": "b"}}, "alice")
    assert owned(live, "alice") == {
        ".f:spec.f:size", '.f:spec.f:rules.k:{"host":"a","port":80}',
        '.f:spec.f:rules.k:{"host":"a","port":80}.f:host',
        # members of free-form maps are owned as well as their leaves
        ".f:spec.f:config.f:nested", ".f:spec.f:config.f:nested.f:x",
        ".f:spec.f:config.f:list", ".f:spec.f:selector"}
    live = _apply_widget(live, {"config": {"nested": {"y": 2}}}, "bob")
    assert live["spec"]["config"] == {"nested": {"x": 1, "y": 2}, "list": [1, 2]}
    error = conflict(lambda: _apply_widget(live, {"selector": {"c": "d"}}, "bob"))
    assert error.message == 'Apply failed with 1 conflict: conflict with "alice": .spec.selector'


def test_custom_resource_metadata_uses_object_meta() -> None:
    live = _apply_widget(None, {"size": 1}, "alice")
    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"] = {"team": "a"}
    labelled["metadata"]["finalizers"] = ["example.com/cleanup"]
    result = copy.deepcopy(labelled)
    mf.track_update(live, result, manager="kubectl-label", node=_WIDGET.definitions["widget"],
                    schemas=_WIDGET, api_version="example.com/v1")
    assert owned(result, "kubectl-label") == {
        ".f:metadata.f:labels", ".f:metadata.f:labels.f:team",
        ".f:metadata.f:finalizers", '.f:metadata.f:finalizers.v:"example.com/cleanup"'}


# --------------------------------------------------------------------------------------------
# schema changes (TestGranularToAtomicSchemaChanges)


def test_ownership_below_a_field_that_became_atomic_collapses_into_it() -> None:
    granular = {"type": "object", "properties": {"struct": {"type": "object", "properties": {
        "numeric": {"type": "integer"}, "string": {"type": "string"}}}}}
    atomic = copy.deepcopy(granular)
    atomic["properties"]["struct"]["x-kubernetes-map-type"] = "atomic"
    options = {"api_version": "x/v1", "kind": "T"}

    def config(struct: dict) -> dict:
        return {"apiVersion": "x/v1", "kind": "T", "metadata": {"name": "t"}, "struct": struct}

    live = mf.apply(None, config({"numeric": 1}), manager="one", force=False, node=granular,
                    schemas=Schemas({}), **options)
    live["metadata"]["uid"] = "u"
    with pytest.raises(StatusError) as caught:
        mf.apply(live, config({"string": "s"}), manager="two", force=False, node=atomic,
                 schemas=Schemas({}), **options)
    assert caught.value.message == 'Apply failed with 1 conflict: conflict with "one": .struct'
    live = mf.apply(live, config({"string": "s"}), manager="two", force=True, node=atomic,
                    schemas=Schemas({}), **options)
    assert live["struct"] == {"string": "s"}
    assert managers(live) == [("two", "Apply")]
