"""Decoding bodies, pruning unknown fields and strict field validation (sampan.api.decode)."""

from __future__ import annotations

import json

import orjson
import pytest

from sampan.api.decode import (
    DuplicateField,
    apply_field_validation,
    decode,
    field_validation_directive,
    prune_unknown,
)
from sampan.api.errors import StatusError
from sampan.api.schema import builtin

S = builtin()


def kind_schema(group: str, version: str, kind: str) -> dict:
    node = S.for_kind(group, version, kind)
    assert node is not None
    return node


# --- decode: JSON ----------------------------------------------------------------------------


def test_json_without_duplicates_is_returned_as_parsed():
    obj, dups = decode(b'{"kind":"Pod","spec":{"containers":[{"name":"a"}]}}', "application/json")
    assert obj == {"kind": "Pod", "spec": {"containers": [{"name": "a"}]}}
    assert dups == []


def test_duplicate_keys_are_reported_with_their_paths():
    body = (b'{"spec":{"replicas":2,"replicas":3,"template":{"spec":{"containers":'
            b'[{"name":"a"},{"name":"b","image":"x","image":"y"}]}}}}')
    obj, dups = decode(body, "application/json")
    assert obj["spec"]["replicas"] == 3  # the last value wins, as in Go
    assert dups == ["spec.replicas", "spec.template.spec.containers[1].image"]
    assert all(isinstance(d, DuplicateField) and d.line is None for d in dups)


def test_duplicate_at_the_root_and_in_a_map():
    _, dups = decode(b'{"a":1,"a":2,"metadata":{"labels":{"x":"1","x":"2"}}}', "application/json")
    assert dups == ["a", "metadata.labels.x"]


@pytest.mark.parametrize("body", [
    b'{"a":"x:y","b":{"c":"::"}}',                 # colons inside strings
    b'{"a":"\\u003a","b":"\\u003A:"}',               # escaped colons
    b'{"a" : 1, "b" :\n {"c" : [1, 2, {"d": 3}]}}',  # whitespace around separators
    b'{"a":"\\\\u003a"}',                           # a literal backslash, not an escape
    b'[{"a":1},{"a":1}]',                           # same key in different objects
])
def test_no_false_duplicates(body):
    obj, dups = decode(body, "application/json")
    assert obj == json.loads(body)
    assert dups == []


def test_duplicate_next_to_escaped_colons_is_still_found():
    _, dups = decode(b'{"a":"\\u003a","a":"b"}', "application/json")
    assert dups == ["a"]


def test_integers_beyond_64_bits_still_decode():
    obj, _ = decode(b'{"n": 123456789012345678901234567890}', "application/json")
    assert obj["n"] == pytest.approx(1.2345678901234568e29)


def test_content_type_parameters_are_ignored():
    obj, _ = decode(b'{"a":1}', "application/json; charset=utf-8")
    assert obj == {"a": 1}


@pytest.mark.parametrize("body, reason", [
    (b"", "unexpected end of JSON input"),
    (b'{"a":', "unexpected end of JSON input"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b'{"a":1}x', "invalid character 'x' after top-level value"),
    (b"abc", "invalid character 'a' looking for beginning of value"),
    (b'{"a": NaN}', "invalid character 'N' looking for beginning of value"),
])
def test_malformed_json_is_a_bad_request_worded_like_go(body, reason):
    with pytest.raises(StatusError) as err:
        decode(body, "application/json", kind="Pod")
    assert err.value.code == 400 and err.value.reason == "BadRequest"
    assert err.value.message.startswith(
        "the object provided is unrecognized (must be of type Pod): couldn't get version/kind; "
        f"json parse error: {reason} (")


def test_malformed_body_summary_is_the_start_of_the_body():
    with pytest.raises(StatusError) as err:
        decode(b'{"apiVersion": "v1", "kind": "Pod", oops}', "application/json", kind="Pod")
    assert err.value.message.endswith('({"apiVersion": "v1", "kind": " ...)')
    with pytest.raises(StatusError) as err:
        decode(b"", "application/json", kind="Pod")
    assert err.value.message.endswith("(<empty>)")


def test_malformed_json_without_a_kind_carries_the_reason_only():
    with pytest.raises(StatusError) as err:
        decode(b"[", "application/json-patch+json")
    assert err.value.message == "couldn't get version/kind; json parse error: unexpected end of JSON input"


# --- decode: YAML ----------------------------------------------------------------------------


def test_yaml_is_decoded_like_sigs_yaml():
    body = b"""
apiVersion: v1
kind: Pod
metadata:
  name: p
  creationTimestamp: 2024-01-01T00:00:00Z
  annotations: {1: one, true: yes}
spec:
  base: &base {a: 1}
  merged:
    <<: *base
    b: 2
"""
    obj, dups = decode(body, "application/yaml")
    assert dups == []
    assert obj["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"  # not a datetime
    assert obj["metadata"]["annotations"] == {"1": "one", "true": True}
    assert obj["spec"]["merged"] == {"a": 1, "b": 2}


def test_yaml_duplicates_carry_their_line():
    body = b"kind: Deployment\nspec:\n  replicas: 1\n  replicas: 2\n  template:\n    x: [ {a: 1, a: 2} ]\n"
    obj, dups = decode(body, "application/apply-patch+yaml")
    assert obj["spec"]["replicas"] == 2
    assert dups == ["spec.replicas", "spec.template.x[0].a"]
    assert [d.line for d in dups] == [4, 6]


def test_empty_yaml_is_null_and_only_the_first_document_counts():
    assert decode(b"", "application/yaml") == (None, [])
    obj, _ = decode(b"a: 1\n---\nb: 2\n", "application/yaml")
    assert obj == {"a": 1}


def test_malformed_yaml():
    with pytest.raises(StatusError) as err:
        decode(b"a: b: c", "application/yaml", kind="Pod")
    assert err.value.code == 400
    assert ("must be of type Pod): yaml: line 1: mapping values are not allowed in this context"
            in err.value.message)


# --- prune_unknown ---------------------------------------------------------------------------


def test_unknown_fields_of_a_builtin_kind_are_dropped_and_reported():
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "unknownMeta": 1, "labels": {"any": "thing"}},
        "spec": {"replicass": 3, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                     {"name": "c", "image": "x", "imagee": "y",
                      "resources": {"limits": {"cpu": "1"}}}]}}},
        "status": {"bogus": True},
    }
    dropped = prune_unknown(dep, kind_schema("apps", "v1", "Deployment"), S)
    assert dropped == ["metadata.unknownMeta", "spec.replicass",
                       "spec.template.spec.containers[0].imagee", "status.bogus"]
    assert "replicass" not in dep["spec"]
    assert dep["metadata"]["labels"] == {"any": "thing"}  # a map keeps every key
    assert dep["spec"]["template"]["spec"]["containers"][0] == {
        "name": "c", "image": "x", "resources": {"limits": {"cpu": "1"}}}


def test_free_form_fields_are_kept():
    revision = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": "r"}, "revision": 1, "data": {"anything": {"goes": [1]}}}
    assert prune_unknown(revision, kind_schema("apps", "v1", "ControllerRevision"), S) == []
    assert revision["data"] == {"anything": {"goes": [1]}}


def test_int_or_string_and_quantity_leaves_are_not_descended():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80, "targetPort": "http"}]}}
    assert prune_unknown(svc, kind_schema("", "v1", "Service"), S) == []


CRD_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}}}},
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                        "properties": {"known": {"type": "object", "properties": {
                            "a": {"type": "string"}}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object", "properties": {
                                 "x": {"type": "string"}}}}},
                "empty": {"type": "object"},
            },
        },
    },
}


def test_custom_resource_pruning():
    cr = {
        "apiVersion": "zoo.example.com/v1", "kind": "Pet",
        "metadata": {"name": "p", "unknownMeta": 1, "labels": {"a": "b"}},
        "spec": {
            "size": 1, "sizee": 2, "port": "http", "labels": {"x": "y"},
            "items": [{"name": "a", "nam": "b"}],
            "raw": {"kept": 1, "known": {"a": "x", "b": "pruned"}},
            "template": {"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "t", "bogus": 1}, "spec": {"x": "1", "y": "2"}},
            "empty": {"anything": 1},
        },
        "unknownTop": 1,
    }
    dropped = prune_unknown(cr, CRD_SCHEMA, S)
    assert dropped == [
        "metadata.unknownMeta", "spec.sizee", "spec.items[0].nam", "spec.raw.known.b",
        "spec.template.metadata.bogus", "spec.template.spec.y", "spec.empty.anything",
        "unknownTop"]
    assert cr["apiVersion"] == "zoo.example.com/v1" and cr["kind"] == "Pet"
    assert cr["metadata"] == {"name": "p", "labels": {"a": "b"}}
    assert cr["spec"]["raw"] == {"kept": 1, "known": {"a": "x"}}
    assert cr["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod",
                                      "metadata": {"name": "t"}, "spec": {"x": "1"}}


def test_pruning_a_subtree_keeps_its_path_prefix():
    spec = {"size": 1, "bogus": 2}
    assert prune_unknown(spec, CRD_SCHEMA["properties"]["spec"], S, "spec") == ["spec.bogus"]


def test_type_mismatches_are_left_for_validation():
    cr = {"spec": "not an object", "metadata": {"name": "x"}}
    assert prune_unknown(cr, CRD_SCHEMA, S) == []
    assert cr["spec"] == "not an object"


# --- apply_field_validation ------------------------------------------------------------------


def test_strict_rejects_with_upstreams_message_and_causes():
    with pytest.raises(StatusError) as err:
        apply_field_validation("Strict", ["spec.unknownField"],
                               [DuplicateField("spec.replicas", "replicas")],
                               kind="Deployment", version="v1")
    status = err.value.status()
    assert status["code"] == 400 and status["reason"] == "BadRequest"
    # the conformance test "should detect unknown and duplicate fields of a typed object"
    assert status["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.unknownField", duplicate field "spec.replicas"')
    assert status["details"]["causes"] == [
        {"reason": "FieldValueUnknown", "message": 'unknown field "spec.unknownField"',
         "field": "spec.unknownField"},
        {"reason": "FieldValueDuplicate", "message": 'duplicate field "spec.replicas"',
         "field": "spec.replicas"},
    ]


def test_strict_from_decoded_and_pruned_body():
    body = orjson.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "d", "unknownMeta": "foo"}, "spec": {}})
    obj, dups = decode(body, "application/json")
    unknown = prune_unknown(obj, kind_schema("apps", "v1", "Deployment"), S)
    with pytest.raises(StatusError) as err:
        apply_field_validation("Strict", unknown, dups, kind="Deployment", version="v1")
    assert 'strict decoding error: unknown field "metadata.unknownMeta"' in err.value.message


def test_custom_resources_list_duplicates_first():
    with pytest.raises(StatusError) as err:
        apply_field_validation("Strict", ["spec.favoriteColor"], [DuplicateField("spec.a", "a")],
                               kind="Pet", version="v1alpha1", custom_resource=True)
    assert err.value.message == (
        'Pet in version "v1alpha1" cannot be handled as a Pet: strict decoding error: '
        'duplicate field "spec.a", unknown field "spec.favoriteColor"')


def test_yaml_duplicates_are_reported_in_go_yamls_words():
    _, dups = decode(b"spec:\n  replicas: 1\n  replicas: 2\n", "application/yaml")
    with pytest.raises(StatusError) as err:
        apply_field_validation("Strict", ["spec.foo"], dups, kind="Deployment", version="v1")
    assert err.value.message.endswith(
        'strict decoding error: yaml: unmarshal errors:\n  line 3: key "replicas" already set in '
        'map, unknown field "spec.foo"')
    warnings = apply_field_validation("Warn", [], dups, kind="Deployment", version="v1")
    assert warnings == ['yaml: unmarshal errors:   line 3: key "replicas" already set in map']


@pytest.mark.parametrize("directive", ["Warn", "", None])
def test_warn_is_the_default(directive):
    warnings = apply_field_validation(directive, ["spec.foo"], [DuplicateField("spec.a", "a")],
                                      kind="Deployment", version="v1")
    assert warnings == ['unknown field "spec.foo"', 'duplicate field "spec.a"']


def test_ignore_and_nothing_to_report():
    assert apply_field_validation("Ignore", ["spec.foo"], [], kind="Pod", version="v1") == []
    assert apply_field_validation("Strict", [], [], kind="Pod", version="v1") == []


def test_an_unknown_directive_is_an_invalid_options_object():
    with pytest.raises(StatusError) as err:
        apply_field_validation("strict", [], [], kind="Pod", version="v1",
                               options_kind="PatchOptions")
    assert err.value.code == 422
    assert err.value.message == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict": '
        'supported values: "", "Ignore", "Strict", "Warn"')
    assert field_validation_directive(None) == "Warn"
    assert field_validation_directive("Ignore") == "Ignore"


def test_arbitrary_bytes_are_bad_requests_not_crashes():
    import random
    rnd = random.Random(7)
    for _ in range(500):
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 32)))
        for content_type in ("application/json", "application/yaml"):
            try:
                decode(body, content_type, kind="Pod")
            except StatusError as err:
                assert err.code == 400
