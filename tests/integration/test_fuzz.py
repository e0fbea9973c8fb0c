"""Property-based fuzzing of the API server against its own OpenAPI v3 documents.

Schemathesis reads ``/openapi/v3/<group-version>`` from the running server and sends generated
requests, both schema-conforming and schema-violating, to every operation. Whatever it sends,
the server must (DESIGN.md §3 rule 4):

- never answer 5xx, nor drop the connection, nor die;
- answer every error with a JSON ``metav1.Status`` whose ``code`` is the HTTP status;
- change nothing when it refuses a request, and nothing at all under ``dryRun=All``.

Namespaced operations are pinned to a namespace the test creates (and empties afterwards), and
cluster-scoped writes are sent with ``dryRun=All``, so the fuzzer's writes never reach other
tests. Half of the names the fuzzer uses are the name of a seed object of every namespaced
kind, so that reads, updates, patches, subresources and deletes reach an object that exists.
Streaming subresources that need a node agent and watches are left out.

It takes about two minutes and runs with the rest of the suite; alone:
``.venv/bin/pytest tests/integration/test_fuzz.py`` (``-m "not fuzz"`` leaves it out). The seed
is fixed: a run that fails fails again the same way.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from tests.cluster import Server

pytestmark = pytest.mark.fuzz

GROUP_VERSIONS = [
    "api/v1",
    "apis/apps/v1",
    "apis/batch/v1",
    "apis/networking.k8s.io/v1",
    "apis/rbac.authorization.k8s.io/v1",
    "apis/policy/v1",
    "apis/autoscaling/v2",
    "apis/coordination.k8s.io/v1",
    "apis/discovery.k8s.io/v1",
]
NAMESPACE = "fuzz"
SEED_NAME = "fuzz-a"
# A deeper or different search than CI's: SAMPAN_FUZZ_EXAMPLES=100 SAMPAN_FUZZ_SEED=7.
SEED = int(os.environ.get("SAMPAN_FUZZ_SEED", "20261124"))
# Examples per operation (positive and negative together). Writing a workload takes a body
# with a whole pod template, which is slow to generate: those get half, to fit the budget.
MAX_EXAMPLES = int(os.environ.get("SAMPAN_FUZZ_EXAMPLES", "20"))
MAX_WORKLOAD_EXAMPLES = max(1, MAX_EXAMPLES // 2)
WORKLOAD_WRITES = (r"/(pods|podtemplates|replicationcontrollers|deployments|replicasets"
                   r"|statefulsets|daemonsets|jobs|cronjobs)"
                   r"(/\{name\}(/status|/ephemeralcontainers|/resize)?)?$")

# Need a node agent on the other end, or never end.
EXCLUDED_PATHS = r"/(exec|attach|portforward|proxy|log)(/|$)|/watch/"
# A deletecollection of namespaces, nodes or cluster roles that ignored dryRun would take the
# shared server away from every later test.
CLUSTER_COLLECTIONS = r"^(/api/v1|/apis/[^/]+/[^/]+)/[^/{]+$"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
KUBERNETES_MEDIA_TYPES = {
    "application/json", "application/yaml", "application/json-patch+json",
    "application/merge-patch+json", "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
}

_POD_SPEC = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
_TEMPLATE = {"metadata": {"labels": {"app": "fuzz"}}, "spec": _POD_SPEC}
_SELECTOR = {"matchLabels": {"app": "fuzz"}}
_ALWAYS_TEMPLATE = {"metadata": {"labels": {"app": "fuzz"}},
                    "spec": {**_POD_SPEC, "restartPolicy": "Always"}}
# One valid object of every namespaced kind, by collection path under the namespace.
SEEDS: dict[str, dict[str, Any]] = {
    "/api/v1/configmaps": {"kind": "ConfigMap", "data": {"k": "v"}},
    "/api/v1/secrets": {"kind": "Secret", "stringData": {"k": "v"}},
    "/api/v1/serviceaccounts": {"kind": "ServiceAccount"},
    "/api/v1/services": {"kind": "Service", "spec": {"ports": [{"port": 80}]}},
    "/api/v1/endpoints": {"kind": "Endpoints", "subsets": [
        {"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]},
    "/api/v1/events": {"kind": "Event", "reason": "Fuzz", "message": "seed", "involvedObject": {
        "kind": "Pod", "name": SEED_NAME, "namespace": NAMESPACE}},
    "/api/v1/limitranges": {"kind": "LimitRange", "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "100m"}}]}},
    "/api/v1/persistentvolumeclaims": {"kind": "PersistentVolumeClaim", "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}},
    "/api/v1/pods": {"kind": "Pod", "spec": _POD_SPEC},
    "/api/v1/podtemplates": {"kind": "PodTemplate", "template": _TEMPLATE},
    "/api/v1/replicationcontrollers": {"kind": "ReplicationController", "spec": {
        "replicas": 0, "selector": {"app": "fuzz"}, "template": _ALWAYS_TEMPLATE}},
    "/api/v1/resourcequotas": {"kind": "ResourceQuota", "spec": {"hard": {"pods": "100"}}},
    "/apis/apps/v1/controllerrevisions": {"kind": "ControllerRevision", "revision": 1,
                                           "data": {"k": "v"}},
    "/apis/apps/v1/deployments": {"kind": "Deployment", "spec": {
        "replicas": 0, "selector": _SELECTOR, "template": _ALWAYS_TEMPLATE}},
    "/apis/apps/v1/replicasets": {"kind": "ReplicaSet", "spec": {
        "replicas": 0, "selector": _SELECTOR, "template": _ALWAYS_TEMPLATE}},
    "/apis/apps/v1/statefulsets": {"kind": "StatefulSet", "spec": {
        "replicas": 0, "serviceName": SEED_NAME, "selector": _SELECTOR,
        "template": _ALWAYS_TEMPLATE}},
    "/apis/apps/v1/daemonsets": {"kind": "DaemonSet", "spec": {
        "selector": _SELECTOR, "template": _ALWAYS_TEMPLATE}},
    "/apis/batch/v1/jobs": {"kind": "Job", "spec": {
        "suspend": True, "manualSelector": True, "selector": _SELECTOR, "template": _TEMPLATE}},
    "/apis/batch/v1/cronjobs": {"kind": "CronJob", "spec": {
        "schedule": "0 0 1 1 *", "suspend": True,
        "jobTemplate": {"spec": {"template": _TEMPLATE}}}},
    "/apis/networking.k8s.io/v1/ingresses": {"kind": "Ingress", "spec": {"defaultBackend": {
        "service": {"name": SEED_NAME, "port": {"number": 80}}}}},
    "/apis/networking.k8s.io/v1/networkpolicies": {"kind": "NetworkPolicy", "spec": {
        "podSelector": {}}},
    "/apis/rbac.authorization.k8s.io/v1/roles": {"kind": "Role", "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
    "/apis/rbac.authorization.k8s.io/v1/rolebindings": {"kind": "RoleBinding", "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SEED_NAME},
        "subjects": [{"kind": "ServiceAccount", "name": SEED_NAME, "namespace": NAMESPACE}]},
    "/apis/policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "spec": {
        "maxUnavailable": 1, "selector": _SELECTOR}},
    "/apis/autoscaling/v2/horizontalpodautoscalers": {"kind": "HorizontalPodAutoscaler", "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SEED_NAME},
        "minReplicas": 1, "maxReplicas": 2}},
    "/apis/coordination.k8s.io/v1/leases": {"kind": "Lease", "spec": {
        "holderIdentity": "fuzz", "leaseDurationSeconds": 15}},
    "/apis/discovery.k8s.io/v1/endpointslices": {"kind": "EndpointSlice", "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.1"]}], "ports": [{"port": 80}]},
}


def _config(server: Server) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "suppress-health-check": ["all"],
        "headers": {"Authorization": f"Bearer {server.token()}"},
        "tls-verify": _ca(server),
        # Nothing on loopback takes this long; a hung request fails instead of stalling the run.
        "request-timeout": 10,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "with-security-parameters": False,
        },
        "phases": {
            "examples": {"enabled": False},
            # The coverage phase enumerates every boundary of every body field: over 10,000
            # requests for one Deployment POST, far beyond the time budget.
            "coverage": {"enabled": False},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "operations": [{
            "include-path-regex": WORKLOAD_WRITES,
            "include-method-regex": "^(POST|PUT)$",
            "generation": {"max-examples": MAX_WORKLOAD_EXAMPLES},
        }],
        "dictionaries": {"names": {"values": [SEED_NAME, "fuzz-b"]}},
        "parameters": {
            "path.namespace": NAMESPACE,
            # A list with watch=true streams until its timeout.
            "query.watch": "false",
            "path.name": {"dictionary": "names", "probability": 0.5},
            "body.metadata.name": {"dictionary": "names", "probability": 0.5},
        },
    })


def _ca(server: Server) -> str:
    return str(server.data_dir / "pki" / "ca.crt")


@pytest.fixture(scope="module")
def http(server: Server) -> requests.Session:
    with requests.Session() as s:
        # REQUESTS_CA_BUNDLE and proxy variables in the environment would beat the session's.
        s.trust_env = False
        s.headers["Authorization"] = f"Bearer {server.token()}"
        s.verify = _ca(server)
        yield s


@pytest.fixture(scope="module")
def fuzz_namespace(server: Server, http: requests.Session):
    r = http.post(f"{server.url}/api/v1/namespaces",
                  json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    assert r.status_code in (201, 409), r.text
    for collection in SEEDS:
        r = _ensure_seed(http, server.url, collection)
        assert r is None or r.status_code == 201, f"seed {collection}: {r.status_code} {r.text}"
    yield NAMESPACE
    _remove_namespace(http, server.url)


@pytest.fixture(params=GROUP_VERSIONS)
def api_schema(request):
    server: Server = request.getfixturevalue("server")
    request.getfixturevalue("fuzz_namespace")
    # schemathesis 4.32 renames the running item through ``Node._nodeid``, which pytest 9.2
    # replaced with ``_id``; give it the attribute to read (and to write, harmlessly).
    request.node._nodeid = request.node.nodeid
    yield schemathesis.openapi.from_url(f"{server.url}/openapi/v3/{request.param}",
                                        config=_config(server))
    assert server.process.poll() is None, f"the API server died:\n{server.logs()[-4000:]}"


# Filters go on the lazy schema: it replaces the filters of the schema the fixture returns.
schema = (schemathesis.pytest.from_fixture("api_schema")
          .exclude(path_regex=EXCLUDED_PATHS)
          .exclude(method="DELETE", path_regex=CLUSTER_COLLECTIONS))


def error_is_a_status(ctx, response, case) -> None:
    """Every error is a metav1.Status whose code is the HTTP status."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error with Content-Type {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", f"not a Status: {body}"
    assert body.get("status") == "Failure", f"error Status without status Failure: {body}"
    assert body.get("code") == response.status_code, \
        f"Status code {body.get('code')} for HTTP {response.status_code}: {body}"
    assert isinstance(body.get("message"), str) and body["message"], \
        f"Status without message: {body}"


@schema.parametrize()
def test_the_api_survives_fuzzed_requests(case, http: requests.Session) -> None:
    method = case.method.upper()
    base = case.operation.schema.get_base_url()
    collection = _collection_path(case.operation.path)
    if case.media_type is not None and case.media_type not in KUBERNETES_MEDIA_TYPES:
        # The documents say "*/*" for request bodies (as upstream's do), and schemathesis then
        # rotates through every media type it can serialize; all but JSON and YAML stop at
        # 415 before the server looks at the body.
        case.media_type = "application/json"
    if method in WRITE_METHODS and "{namespace}" not in case.operation.path:
        # Cluster-scoped writes would reach other tests' objects (and the fuzz namespace).
        case.query = {**(case.query or {}), "dryRun": "All"}
    dry_run = (case.query or {}).get("dryRun") == "All"
    if (case.path_parameters or {}).get("name") == SEED_NAME and _seed_key(collection) in SEEDS:
        _ensure_seed(http, base, _seed_key(collection))

    before = _snapshot(http, base, collection) if method in WRITE_METHODS and collection else None
    response = case.call(session=http)
    case.validate_response(response, checks=[not_a_server_error, error_is_a_status])
    if before is not None and (response.status_code >= 400 or dry_run):
        after = _snapshot(http, base, collection)
        assert after == before, (
            f"{method} {response.request.url} answered {response.status_code}"
            f"{' in a dry run' if dry_run else ''} but changed {collection}:\n"
            f"  before: {before}\n  after:  {after}\n  response: {response.text[:2000]}")


_COLLECTION = re.compile(r"^(/api/v1|/apis/[^/]+/[^/]+)(/namespaces/\{namespace\})?/([^/{]+)")


def _collection_path(path: str) -> str | None:
    """The list URL of the resource an operation writes (for subresources: of their parent)."""
    m = _COLLECTION.match(path)
    if not m:
        return None
    prefix, namespaced, resource = m.groups()
    if namespaced:
        return f"{prefix}/namespaces/{NAMESPACE}/{resource}"
    return f"{prefix}/{resource}"


def _seed_key(collection: str | None) -> str:
    return (collection or "").replace(f"/namespaces/{NAMESPACE}/", "/")


def _namespaced(seed_key: str) -> str:
    prefix, resource = seed_key.rsplit("/", 1)
    return f"{prefix}/namespaces/{NAMESPACE}/{resource}"


def _snapshot(http: requests.Session, base: str, collection: str) -> dict[str, str] | None:
    r = http.get(f"{base}{collection}")
    if r.status_code != 200:
        return None
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"]
            for item in r.json()["items"]}


def _ensure_seed(http: requests.Session, base: str, seed_key: str) -> requests.Response | None:
    """Create the seed object of a kind (again, when the fuzzer has deleted it). Best effort:
    what the fuzzer did to the namespace's quota or limit ranges may now refuse it."""
    url = f"{base}{_namespaced(seed_key)}"
    if http.get(f"{url}/{SEED_NAME}").status_code != 404:
        return None
    obj = copy.deepcopy(SEEDS[seed_key])
    group_version = seed_key.rsplit("/", 1)[0].removeprefix("/api/").removeprefix("/apis/")
    obj.update(apiVersion=group_version, metadata={"name": SEED_NAME})
    return http.post(url, json=obj)


def _remove_namespace(http: requests.Session, base: str) -> None:
    """Delete the namespace and everything the fuzzer left in it, finalizers and all, without
    needing the namespace controller."""
    ns = f"{base}/api/v1/namespaces/{NAMESPACE}"
    http.delete(ns)
    for gv in GROUP_VERSIONS:
        discovery = http.get(f"{base}/{gv}").json()
        for resource in discovery["resources"]:
            if ("/" in resource["name"] or not resource["namespaced"]
                    or not {"list", "delete"} <= set(resource["verbs"])):
                continue
            collection = f"{base}/{gv}/namespaces/{NAMESPACE}/{resource['name']}"
            for item in http.get(collection).json().get("items", []):
                url = f"{collection}/{item['metadata']['name']}"
                if item["metadata"].get("finalizers"):
                    http.patch(url, json={"metadata": {"finalizers": None}},
                               headers={"Content-Type": "application/merge-patch+json"})
                http.delete(url, params={"gracePeriodSeconds": "0"})
    namespace = http.get(ns)
    if namespace.status_code == 200:
        body = namespace.json()
        body["spec"]["finalizers"] = []
        http.put(f"{ns}/finalize", json=body)
