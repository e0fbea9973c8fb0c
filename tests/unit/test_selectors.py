"""Label and field selectors against upstream's grammar, matching and error messages
(k8s.io/apimachinery/pkg/labels/selector_test.go, pkg/fields/selector_test.go, and the per-kind
field label conversions)."""

from __future__ import annotations

import pytest

from sampan.api.errors import StatusError
from sampan.api.registry import Registry, Resource
from sampan.api.selectors import (
    EQUALS,
    IN,
    LabelSelector,
    Requirement,
    escape_field_value,
    from_label_selector_object,
    parse_field_selector,
    parse_label_selector,
    selector_from_set,
)

REGISTRY = Registry()

_KEY_REGEX_TEXT = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
_VALUE_REGEX_TEXT = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def resource(group: str, version: str, plural: str) -> Resource:
    found = REGISTRY.get(group, version, plural)
    assert found is not None
    return found


def bad_request_message(fn, *args) -> str:
    with pytest.raises(StatusError) as caught:
        fn(*args)
    assert caught.value.code == 400
    assert caught.value.reason == "BadRequest"
    return caught.value.message


# --------------------------------------------------------------------------------------------
# Label selector parsing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5",
])
def test_good_selectors_print_back_without_spaces(text):
    assert str(parse_label_selector(text)) == text.replace(" ", "")


@pytest.mark.parametrize("text, expected", [
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("x=a,a=x", "a=x,x=a"),
    ("a==b", "a==b"),
    ("  a  =  b ", "a=b"),
    ("in=notin", "in=notin"),  # keywords are identifiers where a key or value is expected
    ("a in (x,y,x)", "a in (x,y)"),
])
def test_selectors_are_normalised_like_upstream(text, expected):
    assert str(parse_label_selector(text)) == expected


def test_parse_keeps_the_operator_and_sorted_unique_values():
    selector = parse_label_selector("env in (prod,dev,prod),!canary,tier")
    assert selector.requirements == (
        Requirement("canary", "!", ()),
        Requirement("env", "in", ("dev", "prod")),
        Requirement("tier", "exists", ()),
    )


@pytest.mark.parametrize("text, message", [
    ("x=a||y=b", f'unable to parse requirement: values[0][x]: Invalid value: "a||y": '
                 f"{_VALUE_REGEX_TEXT}"),
    ("x==a==b", "found '==', expected: ',' or 'end of string'"),
    ("!x=a", "found '=', expected: ',' or 'end of string'"),
    ("x<a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' "
            "operators, the value must be an integer"),
    ("a>1.5", "unable to parse requirement: values[0]: Invalid value: \"1.5\": for 'Gt', 'Lt' "
              "operators, the value must be an integer"),
    ("a>-1", f'unable to parse requirement: values[0][a]: Invalid value: "-1": '
             f"{_VALUE_REGEX_TEXT}"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a,", "found '', expected: identifier after ','"),
    ("a=b,,", "found ',', expected: identifier after ','"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("a notin", "unable to parse requirement: found '' expected: '('"),
    ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("-a=b", 'unable to parse requirement: <nil>: Invalid value: "-a": name part '
             f"{_KEY_REGEX_TEXT}"),
    ("/a", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be '
           "non-empty"),
    ("example.com/", 'unable to parse requirement: <nil>: Invalid value: "example.com/": name '
                     f"part must be non-empty; name part {_KEY_REGEX_TEXT}"),
    ("x/y/z", 'unable to parse requirement: <nil>: Invalid value: "x/y/z": a valid label key '
              f"{_KEY_REGEX_TEXT} with an optional DNS subdomain prefix and '/' "
              "(e.g. 'example.com/MyName')"),
    ("a" * 64, f'unable to parse requirement: <nil>: Invalid value: "{"a" * 64}": name part '
               "must be no more than 63 bytes"),
    ("Example.com/a", 'unable to parse requirement: <nil>: Invalid value: "Example.com/a": '
                      "prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                      "alphanumeric characters, '-' or '.', and must start and end with an "
                      "alphanumeric character (e.g. 'example.com', regex used for validation "
                      "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
])
def test_bad_selectors_fail_with_upstreams_message(text, message):
    assert bad_request_message(parse_label_selector, text) == message


# --------------------------------------------------------------------------------------------
# Label selector matching
# --------------------------------------------------------------------------------------------

LABELS = {"foo": "bar", "baz": "blah"}


@pytest.mark.parametrize("text, labels, expected", [
    ("", {"x": "y"}, True),
    ("x=y", {"x": "y"}, True),
    ("x=y,z=w", {"x": "y", "z": "w"}, True),
    ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
    ("notin=in", {"notin": "in"}, True),
    ("x", {"x": "z"}, True),
    ("!x", {"y": "z"}, True),
    ("x>1", {"x": "2"}, True),
    ("x<1", {"x": "0"}, True),
    ("x=z", {}, False),
    ("x=y", {"x": "z"}, False),
    ("x=y,z=w", {"x": "w", "z": "w"}, False),
    ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
    ("x", {"y": "z"}, False),
    ("!x", {"x": "z"}, False),
    ("x>1", {"x": "0"}, False),
    ("x<1", {"x": "2"}, False),
    ("x>1", {"x": "a"}, False),
    ("x>1", {}, False),
    ("foo=bar", LABELS, True),
    ("baz=blah", LABELS, True),
    ("foo=bar,baz=blah", LABELS, True),
    ("foo=blah", LABELS, False),
    ("baz=bar", LABELS, False),
    ("foo=bar,foobar=bar,baz=blah", LABELS, False),
    ("foo in (bar,x)", LABELS, True),
    ("foo in (x)", LABELS, False),
    ("foo notin (x)", LABELS, True),
    ("nope notin (x)", LABELS, True),
    ("foo notin (bar)", LABELS, False),
    ("x=", {"x": ""}, True),
    ("x=", {}, False),
    ("x!=", {}, True),
    ("x in ()", {"x": ""}, True),
])
def test_matches_like_upstream(text, labels, expected):
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["a=1", "a=1,b=2", "a=1,b=2,c=3", "a in (1)", "a==1,b in (2)"])
@pytest.mark.parametrize("labels", [
    None, {}, {"a": "1"}, {"a": "1", "b": "2"}, {"a": "1", "b": "2", "c": "3"}, {"a": "2"},
    {"b": "2", "c": "3"}, {"a": ""},
])
def test_the_equality_fast_path_agrees_with_the_requirements(text, labels):
    selector = parse_label_selector(text)
    expected = all(r.matches(labels or {}) for r in selector.requirements)
    assert selector.matches(labels) is expected


def test_everything_and_nothing():
    assert parse_label_selector("").empty
    assert LabelSelector.everything().matches(None)
    nothing = LabelSelector.nothing()
    assert not nothing.empty and nothing.selects_nothing
    assert not nothing.matches({"a": "b"}) and not nothing.matches(None)


@pytest.mark.parametrize("text, key, value", [
    ("app=web,tier=db", "app", "web"),
    ("app==web", "app", "web"),
    ("app in (web)", "app", "web"),
    ("app in (web,api)", "app", None),
    ("app!=web", "app", None),
    ("app", "app", None),
    ("tier=db", "app", None),
])
def test_exact_match_value(text, key, value):
    assert parse_label_selector(text).exact_match_value(key) == value


def test_requirement_new_aggregates_every_problem():
    message = bad_request_message(lambda: from_label_selector_object(
        {"matchExpressions": [{"key": "-k", "operator": "In", "values": ["-v"]}]}))
    assert message == (f'[key: Invalid value: "-k": name part {_KEY_REGEX_TEXT}, '
                       f'values[0][-k]: Invalid value: "-v": {_VALUE_REGEX_TEXT}]')


# --------------------------------------------------------------------------------------------
# metav1.LabelSelector objects
# --------------------------------------------------------------------------------------------


def test_a_nil_selector_selects_nothing_and_an_empty_one_everything():
    assert from_label_selector_object(None).selects_nothing
    assert not from_label_selector_object(None).matches({"app": "web"})
    assert from_label_selector_object({}).empty
    assert from_label_selector_object({"matchLabels": {}, "matchExpressions": []}).matches({})


def test_match_labels_and_expressions_are_anded_and_sorted_by_key():
    selector = from_label_selector_object({
        "matchLabels": {"tier": "web", "app": "shop"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "canary"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
            {"key": "team", "operator": "NotIn", "values": ["ops"]},
        ],
    })
    assert str(selector) == "app=shop,env in (canary,prod),!legacy,team notin (ops),tier=web,zone"
    assert selector.matches({"app": "shop", "tier": "web", "env": "prod", "zone": "a"})
    assert not selector.matches({"app": "shop", "tier": "web", "env": "dev", "zone": "a"})
    assert not selector.matches({"app": "shop", "tier": "web", "env": "prod", "zone": "a",
                                 "legacy": "yes"})
    assert not selector.matches({"app": "shop", "tier": "web", "env": "prod", "zone": "a",
                                 "team": "ops"})


@pytest.mark.parametrize("expression, message", [
    ({"key": "a", "operator": "Equals", "values": ["b"]},
     '"Equals" is not a valid label selector operator'),
    ({"key": "a", "operator": "In", "values": []},
     "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"),
    ({"key": "a", "operator": "Exists", "values": ["b"]},
     'values: Invalid value: ["b"]: values set must be empty for exists and does not exist'),
])
def test_invalid_selector_objects_are_rejected_with_upstreams_message(expression, message):
    assert bad_request_message(
        from_label_selector_object, {"matchExpressions": [expression]}) == message


def test_selector_from_set():
    selector = selector_from_set({"b": "2", "a": "1"})
    assert selector.requirements == (Requirement("a", EQUALS, ("1",)),
                                     Requirement("b", EQUALS, ("2",)))
    assert selector_from_set(None).empty and selector_from_set({}).empty
    assert Requirement("a", IN, ("1", "2")).matches({"a": "2"})


# --------------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------------

PODS = resource("", "v1", "pods")


def pod(name="web", namespace="default", node="node-1", phase="Running", **status) -> dict:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "restartPolicy": "Always"},
            "status": {"phase": phase, **status}}


@pytest.mark.parametrize("text, value", [
    (r"metadata.name=a\,b", "a,b"),
    (r"metadata.name=a\=b", "a=b"),
    (r"metadata.name=a\\b", "a\\b"),
    ("metadata.name==web", "web"),
    ("metadata.name=", ""),
])
def test_field_values_are_unescaped(text, value):
    selector = parse_field_selector(text, PODS)
    assert selector.exact_match_value("metadata.name") == value


def test_escape_round_trips():
    text = "metadata.name=" + escape_field_value("a,b=c\\d")
    selector = parse_field_selector(text, PODS)
    assert selector.exact_match_value("metadata.name") == "a,b=c\\d"
    assert str(selector) == text


@pytest.mark.parametrize("text, message", [
    ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
    ("metadata.name=a,bad", "invalid selector: 'metadata.name=a,bad'; can't understand 'bad'"),
    ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    (r"metadata.name=a\x", r"invalid field selector: invalid escape sequence: \x"),
    ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
])
def test_malformed_field_selectors(text, message):
    assert bad_request_message(parse_field_selector, text, PODS) == message


def test_pod_fields_match_the_pod():
    selector = parse_field_selector("spec.nodeName=node-1,status.phase!=Failed", PODS)
    assert selector.matches(pod())
    assert not selector.matches(pod(node="node-2"))
    assert not selector.matches(pod(phase="Failed"))
    assert selector.exact_match_value("spec.nodeName") == "node-1"
    assert selector.exact_match_value("status.phase") is None


def test_unscheduled_pods_have_an_empty_node_name():
    selector = parse_field_selector("spec.nodeName=", PODS)
    unscheduled = pod()
    del unscheduled["spec"]["nodeName"]
    assert selector.matches(unscheduled) and not selector.matches(pod())


def test_pod_spec_host_is_the_old_name_of_spec_node_name():
    selector = parse_field_selector("spec.host=node-1", PODS)
    assert selector.requirements[0].field == "spec.nodeName"
    assert selector.matches(pod())


def test_pod_host_network_defaults_to_false_and_pod_ip_reads_the_primary_ip():
    assert parse_field_selector("spec.hostNetwork=false", PODS).matches(pod())
    with_ips = pod(podIPs=[{"ip": "10.0.0.7"}, {"ip": "fd00::7"}])
    assert parse_field_selector("status.podIP=10.0.0.7", PODS).matches(with_ips)


def test_status_pod_ips_is_accepted_but_never_has_a_value():
    with_ips = pod(podIP="10.0.0.7", podIPs=[{"ip": "10.0.0.7"}])
    assert not parse_field_selector("status.podIPs=10.0.0.7", PODS).matches(with_ips)
    assert parse_field_selector("status.podIPs!=10.0.0.7", PODS).matches(with_ips)


@pytest.mark.parametrize("group, version, plural, text, message", [
    ("", "v1", "pods", "foo=bar", "field label not supported: foo"),
    ("", "v1", "nodes", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("", "v1", "namespaces", "spec.finalizers=x", "field label not supported: spec.finalizers"),
    ("batch", "v1", "jobs", "spec.suspend=true",
     'field label "spec.suspend" not supported for Job'),
    ("apps", "v1", "replicasets", "status.replicas=1",
     '"status.replicas" is not a known field selector: only "metadata.name", '
     '"metadata.namespace"'),
    ("events.k8s.io", "v1", "events", "involvedObject.name=x",
     "field label not supported: involvedObject.name"),
])
def test_unsupported_field_labels(group, version, plural, text, message):
    assert bad_request_message(parse_field_selector, text, resource(group, version, plural)) \
        == message


def test_labels_are_converted_in_sorted_order():
    # Upstream sorts the terms before converting them, so "a" is reported before "z".
    assert bad_request_message(parse_field_selector, "z=1,a=2", PODS) == \
        "field label not supported: a"


@pytest.mark.parametrize("group, version, plural, text, obj, expected", [
    ("", "v1", "nodes", "spec.unschedulable=true", {"spec": {"unschedulable": True}}, True),
    ("", "v1", "nodes", "spec.unschedulable=false", {"spec": {}}, True),
    ("", "v1", "namespaces", "status.phase=Terminating", {"status": {"phase": "Active"}}, False),
    ("", "v1", "secrets", "type=kubernetes.io/tls", {"type": "kubernetes.io/tls"}, True),
    ("", "v1", "services", "spec.type=NodePort", {"spec": {"type": "ClusterIP"}}, False),
    ("", "v1", "services", "spec.clusterIP=None", {"spec": {"clusterIP": "None"}}, True),
    ("", "v1", "replicationcontrollers", "status.replicas=0", {"status": {}}, True),
    ("batch", "v1", "jobs", "status.successful=2", {"status": {"succeeded": 2}}, True),
    ("apps", "v1", "deployments", "metadata.namespace=prod",
     {"metadata": {"name": "d", "namespace": "prod"}}, True),
])
def test_kind_specific_fields(group, version, plural, text, obj, expected):
    assert parse_field_selector(text, resource(group, version, plural)).matches(obj) is expected


CORE_EVENT = {
    "metadata": {"name": "e1", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
    "reason": "BackOff", "type": "Warning", "source": {}, "reportingComponent": "kubelet",
}
NEW_EVENT = {
    "metadata": {"name": "e1", "namespace": "default"},
    "regarding": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
    "reason": "BackOff", "type": "Warning", "reportingController": "kubelet",
}


@pytest.mark.parametrize("group, text, event", [
    ("", "involvedObject.kind=Pod,involvedObject.name=web,type=Warning", CORE_EVENT),
    ("", "source=kubelet,reportingComponent=kubelet,involvedObject.uid=u1", CORE_EVENT),
    ("events.k8s.io", "regarding.kind=Pod,regarding.name=web,reason=BackOff", NEW_EVENT),
    ("events.k8s.io", "reportingController=kubelet,source=kubelet", NEW_EVENT),
    # events.k8s.io reads the same stored objects as core/v1 events.
    ("events.k8s.io", "regarding.name=web", CORE_EVENT),
])
def test_event_fields(group, text, event):
    selector = parse_field_selector(text, resource(group, "v1", "events"))
    assert selector.matches(event)


def test_events_k8s_io_labels_convert_to_the_core_names():
    selector = parse_field_selector("regarding.name=web", resource("events.k8s.io", "v1", "events"))
    assert selector.exact_match_value("involvedObject.name") == "web"


def crd_resource(namespaced: bool) -> Resource:
    crd = {"spec": {"group": "example.com", "versions": [
        {"name": "v1", "served": True, "storage": True,
         "selectableFields": [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.size"}]}]}}
    return Resource("example.com", "v1", "widgets", "Widget", namespaced, crd=crd)


def test_custom_resources_select_on_their_selectable_fields():
    widgets = crd_resource(namespaced=True)
    widget = {"metadata": {"name": "w", "namespace": "ns"}, "spec": {"color": "red", "size": 3}}
    assert parse_field_selector("spec.color=red,spec.size=3", widgets).matches(widget)
    assert parse_field_selector("metadata.namespace=ns", widgets).matches(widget)
    assert not parse_field_selector("spec.color=blue", widgets).matches(widget)
    assert bad_request_message(parse_field_selector, "spec.shape=round", widgets) == \
        "field label not supported: spec.shape"


def test_cluster_scoped_custom_resources_have_no_namespace_field():
    assert bad_request_message(parse_field_selector, "metadata.namespace=x",
                               crd_resource(namespaced=False)) == \
        "field label not supported: metadata.namespace"


def test_an_empty_field_selector_matches_everything():
    selector = parse_field_selector("", PODS)
    assert selector.empty and selector.matches(pod())
