"""Container environments: upstream's expansion table, envFrom/env precedence, valueFrom sources
and their error messages, service-link variables, and the downward API field paths."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sampan.node.envvars import (
    EnvError,
    expand,
    make_environment,
    mapping_for,
    service_environment,
)
from sampan.node.fieldpath import (
    FieldPathError,
    container_resource_value,
    extract_field_path,
    format_map,
    pod_field_value,
)

# third_party/forked/golang/expansion/expand_test.go
EXPANSION_CASES = [
    ("whole string", "$(VAR_A)", "A"),
    ("repeat", "$(VAR_A)-$(VAR_A)", "A-A"),
    ("beginning", "$(VAR_A)-1", "A-1"),
    ("middle", "___$(VAR_B)___", "___B___"),
    ("end", "___$(VAR_C)", "___C"),
    ("compound", "$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
    ("escape & expand", "$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("compound escape", "$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
    ("mixed in escapes", "f000-$$VAR_A", "f000-$VAR_A"),
    ("backslash escape ignored", "foo\\$(VAR_C)bar", "foo\\Cbar"),
    ("backslash escape ignored 2", "foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
    ("lots of backslashes", "foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
    ("nested var references", "$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
    ("nested var references second type", "$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
    ("value is a reference", "$(VAR_REF)", "$(VAR_A)"),
    ("value is a reference x 2", "%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
    ("empty var", "foo$(VAR_EMPTY)bar", "foobar"),
    ("unterminated expression", "foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
    ("expression without operator", "f00__(VAR_A)__", "f00__(VAR_A)__"),
    ("shell special vars pass through", "$?_boo_$!", "$?_boo_$!"),
    ("bare operators are ignored", "$VAR_A", "$VAR_A"),
    ("undefined vars are passed through", "$(VAR_DNE)", "$(VAR_DNE)"),
    ("multiple (even) operators, var undefined", "$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
    ("multiple (even) operators, var defined", "$$$$$$(VAR_A)", "$$$(VAR_A)"),
    ("multiple (odd) operators, var undefined", "$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
    ("multiple (odd) operators, var defined", "$$$$$$$(VAR_A)", "$$$A"),
    ("missing open expression", "$VAR_A)", "$VAR_A)"),
    ("shell syntax ignored", "${VAR_A}", "${VAR_A}"),
    ("trailing incomplete expression not consumed", "$(VAR_B)_______$(A", "B_______$(A"),
    ("trailing incomplete expression, no content, is not consumed", "$(VAR_C)_______$(",
     "C_______$("),
    ("operator at end of input string is preserved", "$(VAR_A)foobarzab$", "Afoobarzab$"),
    ("shell escaped incomplete expr", "foo-\\$(VAR_A", "foo-\\$(VAR_A"),
    ("lots of $( in middle", "--$($($($($--", "--$($($($($--"),
    ("lots of $( in beginning", "$($($($($--foo$(", "$($($($($--foo$("),
    ("lots of $( at end", "foo0--$($($($(", "foo0--$($($($("),
    ("escaped operators in variable names are not escaped", "$(foo$$var)", "$(foo$$var)"),
    ("newline not expanded", "\n", "\n"),
]


@pytest.mark.parametrize("name,text,expected", EXPANSION_CASES, ids=[c[0] for c in EXPANSION_CASES])
def test_expansion_table(name: str, text: str, expected: str) -> None:
    single = mapping_for({"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)",
                          "VAR_EMPTY": ""})
    dual = mapping_for({"VAR_A": "A", "VAR_EMPTY": ""},
                       {"VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)"})
    assert expand(text, single) == expected
    assert expand(text, dual) == expected


def test_map_reference_chains_through_earlier_values() -> None:
    declared: dict[str, str] = {}
    mapping = mapping_for(declared, {})
    for name, value in [("FOO", "bar"), ("ZOO", "$(FOO)-1"), ("BLU", "$(ZOO)-2")]:
        declared[name] = expand(value, mapping)
    assert declared == {"FOO": "bar", "ZOO": "bar-1", "BLU": "bar-1-2"}


# -- make_environment -------------------------------------------------------------------------
class FakeLookup:
    def __init__(self, configmaps: dict[str, dict[str, str]] | None = None,
                 secrets: dict[str, dict[str, str]] | None = None):
        self.configmaps = configmaps or {}
        self.secrets = secrets or {}
        self.calls: list[tuple[str, str, str]] = []

    async def configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("configmap", namespace, name))
        if name not in self.configmaps:
            return None
        return {"metadata": {"name": name, "namespace": namespace}, "data": self.configmaps[name]}

    async def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("secret", namespace, name))
        if name not in self.secrets:
            return None
        return {"metadata": {"name": name}, "data": {
            k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[name].items()}}


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": 'say "hi"'}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "builder",
                     "containers": [container], **spec}}


async def env_of(container: dict[str, Any], lookup: FakeLookup | None = None,
                 service_env: dict[str, str] | None = None, **kwargs: Any) -> list[str]:
    return await make_environment(pod(container), container, lookup=lookup or FakeLookup(),
                                  service_env=service_env or {}, **kwargs)


async def test_env_from_then_env_overrides_and_keeps_order() -> None:
    lookup = FakeLookup(configmaps={"cfg": {"A": "1", "B": "2"}}, secrets={"sec": {"PASS": "pw"}})
    container = {"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}},
                                          {"prefix": "S_", "secretRef": {"name": "sec"}}],
                 "env": [{"name": "B", "value": "override-$(A)"}, {"name": "C", "value": "3"}]}
    env = await env_of(container, lookup, service_env={"KUBERNETES_SERVICE_HOST": "10.43.0.1",
                                                       "C": "from-service"})
    assert env == ["A=1", "B=override-1", "S_PASS=pw", "C=3",
                   "KUBERNETES_SERVICE_HOST=10.43.0.1"]


async def test_expansion_sees_service_env_and_earlier_vars_only() -> None:
    container = {"name": "c", "env": [
        {"name": "URL", "value": "http://$(MY_SVC_SERVICE_HOST):$(PORT)"},
        {"name": "PORT", "value": "80"},
        {"name": "AGAIN", "value": "$(PORT)/$$(PORT)"}]}
    env = await env_of(container, service_env={"MY_SVC_SERVICE_HOST": "10.43.0.7"})
    assert env[:3] == ["URL=http://10.43.0.7:$(PORT)", "PORT=80", "AGAIN=80/$(PORT)"]


async def test_value_from_sources() -> None:
    lookup = FakeLookup(configmaps={"cfg": {"level": "debug"}}, secrets={"sec": {"token": "t0k"}})
    container = {"name": "c", "resources": {"limits": {"memory": "64Mi"},
                                            "requests": {"cpu": "250m"}},
                 "env": [
                     {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
                     {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
                     {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                     {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                     {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                     {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                     {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                     {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                     {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                     {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                     {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {
                         "resource": "limits.memory", "divisor": "1Mi"}}},
                     {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {
                         "resource": "requests.cpu", "divisor": "1m"}}},
                     {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                 ]}
    env = await env_of(container, lookup, pod_ips=["10.42.0.5", "fd00::5"], host_ips=["10.99.0.2"],
                       allocatable={"cpu": "2", "memory": "4Gi"})
    assert env == ["LEVEL=debug", "TOKEN=t0k", "POD=web-1", "NS=shop", "APP=web", "NODE=node-a",
                   "SA=builder", "IP=10.42.0.5", "IPS=10.42.0.5,fd00::5", "HOST=10.99.0.2",
                   "MEM_MI=64", "CPU_M=250", "CPU_LIMIT=2"]


@pytest.mark.parametrize("ref,message", [
    ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
    ({"configMapKeyRef": {"name": "cfg", "key": "missing"}},
     "couldn't find key missing in ConfigMap shop/cfg"),
    ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
    ({"secretKeyRef": {"name": "sec", "key": "missing"}},
     "couldn't find key missing in Secret shop/sec"),
    ({"fieldRef": {"fieldPath": "spec.restartPolicy"}}, "unsupported fieldPath: spec.restartPolicy"),
])
async def test_missing_references_fail_like_upstream(ref: dict[str, Any], message: str) -> None:
    lookup = FakeLookup(configmaps={"cfg": {"a": "1"}}, secrets={"sec": {"b": "2"}})
    with pytest.raises(EnvError) as caught:
        await env_of({"name": "c", "env": [{"name": "X", "valueFrom": ref}]}, lookup)
    assert caught.value.message == message
    assert caught.value.reason == "CreateContainerConfigError"


async def test_optional_references_are_skipped() -> None:
    lookup = FakeLookup(configmaps={"cfg": {"a": "1"}})
    container = {"name": "c", "envFrom": [{"configMapRef": {"name": "gone", "optional": True}},
                                          {"secretRef": {"name": "gone", "optional": True}}],
                 "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {
                     "name": "cfg", "key": "missing", "optional": True}}},
                     {"name": "Y", "valueFrom": {"secretKeyRef": {
                         "name": "gone", "key": "k", "optional": True}}},
                     {"name": "Z", "value": "z"}]}
    assert await env_of(container, lookup) == ["Z=z"]


async def test_env_from_missing_configmap_is_an_error() -> None:
    with pytest.raises(EnvError, match='configmap "cfg" not found'):
        await env_of({"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]})


async def test_each_object_is_fetched_once() -> None:
    lookup = FakeLookup(configmaps={"cfg": {"a": "1", "b": "2"}})
    container = {"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}],
                 "env": [{"name": "A2", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                         {"name": "B2", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "b"}}}]}
    assert await env_of(container, lookup) == ["a=1", "b=2", "A2=1", "B2=2"]
    assert lookup.calls == [("configmap", "shop", "cfg")]


async def test_invalid_env_from_keys_are_reported() -> None:
    lookup = FakeLookup(configmaps={"cfg": {"ok": "1", "bad=key": "2"}})
    skipped: list[str] = []
    env = await env_of({"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}, lookup,
                       invalid_keys=skipped)
    assert env == ["ok=1"] and skipped == ["bad=key"]


# -- service links ------------------------------------------------------------------------------
def service(name: str, namespace: str, cluster_ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "ports": ports}}


def test_service_environment_matches_upstream() -> None:
    services = [
        service("kubernetes", "default", "10.43.0.1", [{"name": "https", "port": 443,
                                                        "protocol": "TCP"}]),
        service("my-db", "shop", "10.43.0.9", [{"port": 5432},
                                               {"name": "metrics", "port": 9187, "protocol": "UDP"}]),
        service("headless", "shop", "None", [{"port": 80}]),
        service("elsewhere", "other", "10.43.0.3", [{"port": 80}]),
    ]
    env = service_environment(services, "shop")
    assert env == {
        "KUBERNETES_SERVICE_HOST": "10.43.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.43.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.43.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.43.0.1",
        "MY_DB_SERVICE_HOST": "10.43.0.9",
        "MY_DB_SERVICE_PORT": "5432",
        "MY_DB_SERVICE_PORT_METRICS": "9187",
        "MY_DB_PORT": "tcp://10.43.0.9:5432",
        "MY_DB_PORT_5432_TCP": "tcp://10.43.0.9:5432",
        "MY_DB_PORT_5432_TCP_PROTO": "tcp",
        "MY_DB_PORT_5432_TCP_PORT": "5432",
        "MY_DB_PORT_5432_TCP_ADDR": "10.43.0.9",
        "MY_DB_PORT_9187_UDP": "udp://10.43.0.9:9187",
        "MY_DB_PORT_9187_UDP_PROTO": "udp",
        "MY_DB_PORT_9187_UDP_PORT": "9187",
        "MY_DB_PORT_9187_UDP_ADDR": "10.43.0.9",
    }
    without_links = service_environment(services, "shop", enable_service_links=False)
    assert set(without_links) == {k for k in env if k.startswith("KUBERNETES_")}


def test_service_environment_ipv6_and_namespace_override() -> None:
    services = [service("kubernetes", "default", "10.43.0.1", [{"port": 443}]),
                service("kubernetes", "shop", "fd00::1", [{"port": 8443}])]
    env = service_environment(services, "shop")
    assert env["KUBERNETES_SERVICE_HOST"] == "fd00::1"
    assert env["KUBERNETES_PORT"] == "tcp://[fd00::1]:8443"


# -- field paths ----------------------------------------------------------------------------------
def test_metadata_field_paths() -> None:
    p = pod({"name": "c"})
    assert extract_field_path(p, "metadata.name") == "web-1"
    assert extract_field_path(p, "metadata.uid") == "u-1"
    assert extract_field_path(p, "metadata.labels") == 'app="web"\ntier="front"'
    assert extract_field_path(p, "metadata.annotations") == 'note="say \\"hi\\""'
    assert extract_field_path(p, "metadata.labels['tier']") == "front"
    assert extract_field_path(p, "metadata.annotations['absent']") == ""
    with pytest.raises(FieldPathError, match="unsupported fieldPath: status.podIP"):
        extract_field_path(p, "status.podIP")
    with pytest.raises(FieldPathError, match="does not support subscript"):
        extract_field_path(p, "metadata.name['x']")
    with pytest.raises(FieldPathError, match="invalid key subscript"):
        extract_field_path(p, "metadata.labels['bad key']")


def test_format_map_quotes_like_go() -> None:
    assert format_map({}) == ""
    assert format_map({"b": "x\ny", "a": "tab\there", "c": "é"}) == \
        'a="tab\\there"\nb="x\\ny"\nc="é"'


def test_pod_field_values() -> None:
    p = pod({"name": "c"}, terminationGracePeriodSeconds=5)
    assert pod_field_value(p, "spec.terminationGracePeriodSeconds") == "5"
    assert pod_field_value(p, "status.hostIPs", host_ips=["10.0.0.1", "fd::1"]) == "10.0.0.1,fd::1"
    assert pod_field_value(p, "status.podIP") == ""
    with pytest.raises(FieldPathError):
        pod_field_value(p, "status.hostIP")


@pytest.mark.parametrize("resource,divisor,expected", [
    ("limits.cpu", None, "1"),            # 500m rounds up to whole cores
    ("limits.cpu", "1m", "500"),
    ("requests.cpu", "100m", "3"),        # 250m / 100m = 2.5 → 3
    ("limits.memory", None, str(128 * 1024 * 1024)),
    ("limits.memory", "1Mi", "128"),
    ("requests.memory", "1Gi", "1"),      # 100Mi / 1Gi rounds up
    ("limits.ephemeral-storage", "1Gi", "10"),   # allocatable stands in
    ("requests.ephemeral-storage", None, "0"),
])
def test_container_resources(resource: str, divisor: str | None, expected: str) -> None:
    container = {"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                            "requests": {"cpu": "250m", "memory": "100Mi"}}}
    selector = {"resource": resource, **({"divisor": divisor} if divisor else {})}
    assert container_resource_value(selector, pod(container), container,
                                    allocatable={"ephemeral-storage": "10Gi"}) == expected


def test_limits_default_to_allocatable_and_container_name() -> None:
    main = {"name": "main"}
    side = {"name": "side", "resources": {"limits": {"memory": "1Gi"}}}
    p = pod(main)
    p["spec"]["containers"].append(side)
    allocatable = {"cpu": "4", "memory": "8Gi"}
    assert container_resource_value({"resource": "limits.cpu"}, p, main,
                                    allocatable=allocatable) == "4"
    assert container_resource_value({"resource": "limits.memory", "divisor": "1Gi",
                                     "containerName": "side"}, p, main,
                                    allocatable=allocatable) == "1"
    with pytest.raises(FieldPathError, match="container ghost not found"):
        container_resource_value({"resource": "limits.cpu", "containerName": "ghost"}, p)
    with pytest.raises(FieldPathError, match="unsupported container resource : limits.gpu"):
        container_resource_value({"resource": "limits.gpu"}, p, main)
