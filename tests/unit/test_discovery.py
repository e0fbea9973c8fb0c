"""Discovery documents: the shapes kubectl and client-go read from /api and /apis."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from sampan.api.registry import Registry, Resource
from sampan.apiserver import discovery
from sampan.apiserver.discovery import (
    aggregated_discovery,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    encode_aggregated_discovery,
    negotiate_discovery,
    storage_version_hash,
)

V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# What kubectl 1.37 (client-go's discovery client) sends.
KUBECTL_ACCEPT = V2 + ",application/json"

CRONTAB_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {
        "group": "stable.example.com",
        "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                  "shortNames": ["ct"], "listKind": "CronTabList"},
        "versions": [
            {"name": "v1", "served": True, "storage": True},
            {"name": "v1beta1", "served": True, "storage": False},
        ],
    },
}


def crontab(version: str = "v1") -> Resource:
    return Resource("stable.example.com", version, "crontabs", "CronTab", True, ("ct",),
                    ("all",), ("status", "scale"), crd=CRONTAB_CRD)


@pytest.fixture
def registry() -> Registry:
    return Registry()


def entries(doc: dict) -> dict[str, dict]:
    return {e["name"]: e for e in doc["resources"]}


# --- legacy discovery --------------------------------------------------------------------------

def test_api_versions_names_the_server() -> None:
    assert api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}],
    }


def test_group_list_has_named_groups_with_preferred_version_first(registry: Registry) -> None:
    doc = api_group_list(registry)
    assert (doc["kind"], doc["apiVersion"]) == ("APIGroupList", "v1")
    groups = {g["name"]: g for g in doc["groups"]}
    assert "" not in groups and len(groups) == len(doc["groups"])
    assert groups["apps"] == {
        "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
    }
    autoscaling = groups["autoscaling"]
    assert [v["version"] for v in autoscaling["versions"]] == ["v2", "v1"]
    assert autoscaling["preferredVersion"] == {"groupVersion": "autoscaling/v2", "version": "v2"}


def test_api_group(registry: Registry) -> None:
    doc = api_group(registry, "batch")
    assert doc is not None
    assert (doc["kind"], doc["apiVersion"], doc["name"]) == ("APIGroup", "v1", "batch")
    assert doc["preferredVersion"]["groupVersion"] == "batch/v1"
    assert api_group(registry, "") is None
    assert api_group(registry, "no.such.group") is None


def test_core_resource_list_is_unversioned_like_upstream(registry: Registry) -> None:
    doc = api_resource_list(registry, "", "v1")
    assert doc is not None
    assert doc["kind"] == "APIResourceList" and "apiVersion" not in doc
    assert doc["groupVersion"] == "v1"
    names = [e["name"] for e in doc["resources"]]
    assert names == sorted(names)


def test_pod_and_its_subresources_as_upstream_lists_them(registry: Registry) -> None:
    pods = entries(api_resource_list(registry, "", "v1"))
    assert pods["pods"] == {
        "name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                  "watch"],
        "shortNames": ["po"], "categories": ["all"],
        "storageVersionHash": "xPOwRZ+Yhw8=",  # the value a real cluster reports
    }
    expected = {
        "pods/log": ("Pod", ["get"]),
        "pods/exec": ("PodExecOptions", ["create", "get"]),
        "pods/attach": ("PodAttachOptions", ["create", "get"]),
        "pods/portforward": ("PodPortForwardOptions", ["create", "get"]),
        "pods/proxy": ("PodProxyOptions", ["create", "delete", "get", "patch", "update"]),
        "pods/binding": ("Binding", ["create"]),
        "pods/status": ("Pod", ["get", "patch", "update"]),
        "pods/ephemeralcontainers": ("Pod", ["get", "patch", "update"]),
    }
    for name, (kind, verbs) in expected.items():
        assert pods[name] == {"name": name, "singularName": "", "namespaced": True,
                              "kind": kind, "verbs": verbs}, name
    assert pods["pods/eviction"] == {
        "name": "pods/eviction", "singularName": "", "namespaced": True,
        "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"],
    }


def test_other_core_subresources(registry: Registry) -> None:
    core = entries(api_resource_list(registry, "", "v1"))
    assert core["serviceaccounts/token"]["group"] == "authentication.k8s.io"
    assert core["serviceaccounts/token"]["kind"] == "TokenRequest"
    assert core["namespaces/finalize"]["verbs"] == ["update"]
    assert core["services/proxy"]["kind"] == "ServiceProxyOptions"
    assert core["nodes/proxy"]["kind"] == "NodeProxyOptions"
    assert core["nodes"]["namespaced"] is False
    assert core["bindings"]["verbs"] == ["create"]
    assert "storageVersionHash" not in core["bindings"]  # never stored


def test_deployment_scale_names_the_autoscaling_kind(registry: Registry) -> None:
    doc = api_resource_list(registry, "apps", "v1")
    assert doc is not None and doc["apiVersion"] == "v1" and doc["groupVersion"] == "apps/v1"
    apps = entries(doc)
    assert apps["deployments"]["shortNames"] == ["deploy"]
    assert apps["deployments"]["categories"] == ["all"]
    assert apps["deployments/scale"] == {
        "name": "deployments/scale", "singularName": "", "namespaced": True,
        "group": "autoscaling", "version": "v1", "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    }
    assert apps["deployments/status"]["kind"] == "Deployment"


def test_unknown_group_version_is_not_served(registry: Registry) -> None:
    assert api_resource_list(registry, "apps", "v1beta1") is None
    assert api_resource_list(registry, "nope", "v1") is None


def test_storage_version_hash_follows_the_storage_location(registry: Registry) -> None:
    assert storage_version_hash("apps", "v1", "Deployment") == "8aSe+NMegvE="
    core = entries(api_resource_list(registry, "", "v1"))["events"]
    events = entries(api_resource_list(registry, "events.k8s.io", "v1"))["events"]
    assert core["storageVersionHash"] == events["storageVersionHash"]
    v1 = entries(api_resource_list(registry, "autoscaling", "v1"))["horizontalpodautoscalers"]
    v2 = entries(api_resource_list(registry, "autoscaling", "v2"))["horizontalpodautoscalers"]
    assert v1["storageVersionHash"] == v2["storageVersionHash"]
    assert v1["storageVersionHash"] == storage_version_hash(
        "autoscaling", "v2", "HorizontalPodAutoscaler")


# --- aggregated discovery ----------------------------------------------------------------------

def test_aggregated_legacy_document_holds_only_the_core_group(registry: Registry) -> None:
    doc = aggregated_discovery(registry, legacy=True)
    assert doc["kind"] == "APIGroupDiscoveryList"
    assert doc["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert doc["metadata"] == {}
    [core] = doc["items"]
    assert core["metadata"] == {}
    [v1] = core["versions"]
    assert v1["version"] == "v1" and v1["freshness"] == "Current"
    pods = next(r for r in v1["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "", "kind": "Pod"}
    assert pods["scope"] == "Namespaced" and pods["singularResource"] == "pod"
    subresources = {s["subresource"]: s for s in pods["subresources"]}
    assert subresources["eviction"]["responseKind"] == {
        "group": "policy", "version": "v1", "kind": "Eviction"}
    assert subresources["log"] == {"subresource": "log",
                                   "responseKind": {"group": "", "version": "", "kind": "Pod"},
                                   "verbs": ["get"]}


def test_aggregated_apis_document(registry: Registry) -> None:
    doc = aggregated_discovery(registry, legacy=False)
    groups = {item["metadata"]["name"]: item for item in doc["items"]}
    assert "" not in groups
    assert [v["version"] for v in groups["autoscaling"]["versions"]] == ["v2", "v1"]
    [apps_v1] = groups["apps"]["versions"]
    deployments = next(r for r in apps_v1["resources"] if r["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced"
    assert deployments["shortNames"] == ["deploy"]
    assert deployments["categories"] == ["all"]
    scale = next(s for s in deployments["subresources"] if s["subresource"] == "scale")
    assert scale == {"subresource": "scale",
                     "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                     "verbs": ["get", "patch", "update"]}
    cluster_roles = next(r for r in groups["rbac.authorization.k8s.io"]["versions"][0]
                         ["resources"] if r["resource"] == "clusterroles")
    assert cluster_roles["scope"] == "Cluster"


def _split_like_client_go(doc: dict) -> dict[str, list[dict]]:
    """client-go's SplitGroupsAndResources: aggregated → APIResourceList entries."""
    lists: dict[str, list[dict]] = {}
    for group in doc["items"]:
        name = group["metadata"].get("name", "")
        for version in group["versions"]:
            gv = f"{name}/{version['version']}" if name else version["version"]
            out = lists.setdefault(gv, [])
            for r in version["resources"]:
                parent = {"name": r["resource"], "namespaced": r["scope"] == "Namespaced",
                          "kind": r["responseKind"]["kind"], "verbs": r["verbs"]}
                out.append(parent)
                for s in r.get("subresources", ()):
                    out.append({"name": f"{r['resource']}/{s['subresource']}",
                                "namespaced": parent["namespaced"],
                                "kind": s["responseKind"]["kind"], "verbs": s["verbs"]})
    return lists


def test_aggregated_and_legacy_documents_agree(registry: Registry) -> None:
    registry.add(crontab())
    split = _split_like_client_go(aggregated_discovery(registry, legacy=False))
    split.update(_split_like_client_go(aggregated_discovery(registry, legacy=True)))
    for group, versions in registry.group_versions().items():
        for version in versions:
            gv = f"{group}/{version}" if group else version
            legacy = api_resource_list(registry, group, version)
            expected = [{k: e[k] for k in ("name", "namespaced", "kind", "verbs")}
                        for e in legacy["resources"]]
            assert split[gv] == expected, gv


def test_aggregated_encoding_and_etag(registry: Registry) -> None:
    encoded = encode_aggregated_discovery(registry, legacy=False, content_type=V2)
    assert orjson.loads(encoded.body) == aggregated_discovery(registry, legacy=False)
    assert encoded.hash == hashlib.sha512(encoded.body).hexdigest().upper()
    assert encoded.etag == f'"{encoded.hash}"'
    beta = encode_aggregated_discovery(registry, legacy=False, content_type=V2BETA1)
    assert orjson.loads(beta.body)["apiVersion"] == "apidiscovery.k8s.io/v2beta1"


# --- negotiation -------------------------------------------------------------------------------

@pytest.mark.parametrize("accept, expected", [
    (KUBECTL_ACCEPT, V2),
    (V2 + ";profile=nopeer," + KUBECTL_ACCEPT, V2),
    ("application/json, " + V2, V2),  # the more specific clause wins at equal quality
    (V2BETA1 + ",application/json", V2BETA1),
    (V2 + ";q=0.5,application/json", None),
    ("application/json", None),
    ("*/*", None),
    ("", None),
    ("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
     None),
    ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json",
     None),
    ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", None),
])
def test_negotiate_discovery(accept: str, expected: str | None) -> None:
    assert negotiate_discovery(accept) == expected


# --- custom resources and caching --------------------------------------------------------------

def test_custom_resource_appears_everywhere(registry: Registry) -> None:
    registry.add(crontab("v1"))
    registry.add(crontab("v1beta1"))
    group = api_group(registry, "stable.example.com")
    assert group["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert "stable.example.com" in {g["name"] for g in api_group_list(registry)["groups"]}
    crontabs = entries(api_resource_list(registry, "stable.example.com", "v1beta1"))
    assert crontabs["crontabs"] == {
        "name": "crontabs", "singularName": "crontab", "namespaced": True, "kind": "CronTab",
        "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update",
                  "watch"],
        "shortNames": ["ct"], "categories": ["all"],
        "storageVersionHash": storage_version_hash("stable.example.com", "v1", "CronTab"),
    }
    assert crontabs["crontabs/scale"]["kind"] == "Scale"
    aggregated = aggregated_discovery(registry, legacy=False)
    item = next(i for i in aggregated["items"] if i["metadata"]["name"] == "stable.example.com")
    resource = item["versions"][0]["resources"][0]
    assert resource["responseKind"] == {"group": "stable.example.com", "version": "v1",
                                        "kind": "CronTab"}
    status = next(s for s in resource["subresources"] if s["subresource"] == "status")
    assert status["responseKind"]["group"] == "stable.example.com"


def test_documents_are_cached_until_the_registry_changes(registry: Registry) -> None:
    first = aggregated_discovery(registry, legacy=False)
    assert aggregated_discovery(registry, legacy=False) is first
    assert api_resource_list(registry, "apps", "v1") is api_resource_list(registry, "apps", "v1")
    registry.add(crontab())
    second = aggregated_discovery(registry, legacy=False)
    assert second is not first
    assert "stable.example.com" in {i["metadata"]["name"] for i in second["items"]}
    registry.remove("stable.example.com", "v1", "crontabs")
    assert api_group(registry, "stable.example.com") is None


def test_unknown_subresources_default_to_read_write() -> None:
    assert discovery.subresource("status").verbs == ("get", "patch", "update")
    assert discovery.subresource("something-new").verbs == ("get", "patch", "update")
