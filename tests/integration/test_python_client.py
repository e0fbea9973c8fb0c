"""The official ``kubernetes`` Python client against a real Sampan API server."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


@pytest.fixture
def core(api_client) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def ns(core) -> str:
    name = f"it-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name


def cm(name: str, labels: dict | None = None, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


def deployment(name: str, replicas: int = 2) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="busybox")]))))


def raw(server, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json", token: str | None = None):
    request = urllib.request.Request(server.url + path, data=body, method=method)
    request.add_header("Content-Type", content_type)
    if token != "":
        request.add_header("Authorization", f"Bearer {token or server.token()}")
    try:
        with urllib.request.urlopen(request, context=server.ssl_context(), timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_version_and_health_need_no_credentials(server):
    code, body = raw(server, "GET", "/version", token="")
    assert code == 200 and body["major"] == "1" and body["minor"] == "37"
    with urllib.request.urlopen(server.url + "/readyz", context=server.ssl_context()) as r:
        assert r.read() == b"ok"


def test_anonymous_requests_are_left_to_rbac_and_bad_tokens_get_401(server):
    code, body = raw(server, "GET", "/api/v1/namespaces", token="")
    assert code == 403 and body["reason"] == "Forbidden"
    assert 'User "system:anonymous" cannot list resource "namespaces"' in body["message"]
    code, body = raw(server, "GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                     token="")
    assert code == 200 and "certificate-authority-data" in body["data"]["kubeconfig"]
    code, body = raw(server, "GET", "/api/v1/namespaces", token="not-a-token")
    assert code == 401 and body["reason"] == "Unauthorized"


def test_crud(core, ns):
    created = core.create_namespaced_config_map(ns, cm("one", k="v"))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    got = core.read_namespaced_config_map("one", ns)
    assert got.data == {"k": "v"}
    got.data["k"] = "w"
    updated = core.replace_namespaced_config_map("one", ns, got)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    core.delete_namespaced_config_map("one", ns)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("one", ns)
    assert e.value.status == 404
    assert json.loads(e.value.body)["reason"] == "NotFound"


def test_stale_update_conflicts(core, ns):
    first = core.create_namespaced_config_map(ns, cm("race", k="1"))
    core.patch_namespaced_config_map("race", ns, {"data": {"k": "2"}})
    first.data["k"] = "3"
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("race", ns, first)
    assert e.value.status == 409
    assert json.loads(e.value.body)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("race", ns).data["k"] == "2"


def test_already_exists_and_generate_name(core, ns):
    core.create_namespaced_config_map(ns, cm("dup"))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, cm("dup"))
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    generated = core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(generate_name="gen-")))
    assert generated.metadata.name.startswith("gen-") and len(generated.metadata.name) == 9


def test_missing_namespace_is_404(core):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("no-such-ns", cm("x"))
    assert e.value.status == 404
    assert 'namespaces "no-such-ns" not found' in json.loads(e.value.body)["message"]


def test_invalid_name_is_422_with_causes(core, ns):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, cm("Not_Valid"))
    assert e.value.status == 422
    status = json.loads(e.value.body)
    assert status["reason"] == "Invalid"
    assert any(c["field"] == "metadata.name" for c in status["details"]["causes"])
    assert core.list_namespaced_config_map(ns, field_selector="metadata.name=Not_Valid").items == []


def test_dry_run_changes_nothing(core, ns):
    out = core.create_namespaced_config_map(ns, cm("dry"), dry_run="All")
    assert out.metadata.name == "dry"
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", ns)


def test_label_and_field_selectors(core, ns):
    for i in range(6):
        core.create_namespaced_config_map(ns, cm(f"sel-{i}", {"parity": "even" if i % 2 == 0 else "odd", "i": str(i)}))
    even = core.list_namespaced_config_map(ns, label_selector="parity=even")
    assert sorted(c.metadata.name for c in even.items) == ["sel-0", "sel-2", "sel-4"]
    some = core.list_namespaced_config_map(ns, label_selector="i in (1,2),parity!=odd")
    assert [c.metadata.name for c in some.items] == ["sel-2"]
    named = core.list_namespaced_config_map(ns, field_selector="metadata.name=sel-5")
    assert [c.metadata.name for c in named.items] == ["sel-5"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, field_selector="data.foo=bar")
    assert e.value.status == 400
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, label_selector="a in (b")
    assert e.value.status == 400


def test_pagination(core, ns):
    for i in range(25):
        core.create_namespaced_config_map(ns, cm(f"page-{i:02d}"))
    names, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(ns, limit=10, _continue=token)
        pages += 1
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 25 - len(names)
    assert pages == 3 and names == sorted(names) and len(names) == 25


def test_watch_from_resource_version(core, ns):
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("w", k="1"))
    core.patch_namespaced_config_map("w", ns, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("w", ns)
    events = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns,
                                      resource_version=start, timeout_seconds=5):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 3:
            break
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_delivers_live_events(core, ns):
    seen: list[str] = []
    rv = core.list_namespaced_config_map(ns).metadata.resource_version

    def run():
        for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv,
                                          timeout_seconds=10):
            seen.append(event["type"])
            if len(seen) == 2:
                return

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    core.create_namespaced_config_map(ns, cm("live"))
    core.delete_namespaced_config_map("live", ns)
    t.join(15)
    assert seen == ["ADDED", "DELETED"]


def test_status_subresource(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("st"))
    apps.patch_namespaced_deployment_status("st", ns, {"status": {"replicas": 2, "readyReplicas": 1}})
    d = apps.read_namespaced_deployment("st", ns)
    assert d.status.ready_replicas == 1
    # the main resource cannot change status
    apps.patch_namespaced_deployment("st", ns, {"status": {"readyReplicas": 7}})
    assert apps.read_namespaced_deployment("st", ns).status.ready_replicas == 1
    # and the status subresource cannot change spec
    apps.patch_namespaced_deployment_status("st", ns, {"spec": {"replicas": 9}})
    assert apps.read_namespaced_deployment("st", ns).spec.replicas == 2


def test_generation_moves_with_spec(apps, ns):
    d = apps.create_namespaced_deployment(ns, deployment("gen"))
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"a": "b"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 3}})
    assert d.metadata.generation == 2


def test_scale_subresource(apps, ns):
    apps.create_namespaced_deployment(ns, deployment("sc"))
    scale = apps.read_namespaced_deployment_scale("sc", ns)
    assert scale.spec.replicas == 2 and scale.status.selector == "app=sc"
    apps.patch_namespaced_deployment_scale("sc", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("sc", ns).spec.replicas == 4


def test_delete_collection(core, ns):
    for i in range(4):
        core.create_namespaced_config_map(ns, cm(f"dc-{i}", {"group": "a" if i < 3 else "b"}))
    core.delete_collection_namespaced_config_map(ns, label_selector="group=a")
    left = [c.metadata.name for c in core.list_namespaced_config_map(ns).items
            if c.metadata.name.startswith("dc-")]
    assert left == ["dc-3"]


def test_finalizers_hold_deletion(core, ns):
    obj = cm("fin")
    obj.metadata.finalizers = ["example.com/hold"]
    core.create_namespaced_config_map(ns, obj)
    core.delete_namespaced_config_map("fin", ns)
    held = core.read_namespaced_config_map("fin", ns)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("fin", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("fin", ns)
    assert e.value.status == 404


def test_delete_preconditions(core, ns):
    core.create_namespaced_config_map(ns, cm("pre"))
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("pre", ns, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000")))
    assert e.value.status == 409
    assert core.read_namespaced_config_map("pre", ns)


def test_system_namespaces_cannot_be_deleted(core):
    with pytest.raises(ApiException) as e:
        core.delete_namespace("default")
    assert e.value.status == 403


def test_body_too_large_is_413(server, ns):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                       "data": {"x": "a" * (3 * 1024 * 1024 + 10)}}).encode()
    code, status = raw(server, "POST", f"/api/v1/namespaces/{ns}/configmaps", body)
    assert code == 413 and status["reason"] == "RequestEntityTooLarge"


def test_malformed_json_is_400(server, ns):
    code, status = raw(server, "POST", f"/api/v1/namespaces/{ns}/configmaps", b'{"kind": ')
    assert code == 400 and status["kind"] == "Status"


def test_unknown_resource_is_404(server):
    code, _ = raw(server, "GET", "/apis/example.com/v1/widgets")
    assert code == 404
    code, _ = raw(server, "GET", "/api/v1/namespaces/default/widgets")
    assert code == 404


def test_strict_field_validation(server, ns):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict"},
                       "bogus": 1}).encode()
    code, status = raw(server, "POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Strict", body)
    assert code == 400 and 'unknown field "bogus"' in status["message"]
    code, _ = raw(server, "POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Ignore", body)
    assert code == 201


def service(name: str, kind: str = "ClusterIP", node_port: int | None = None) -> client.V1Service:
    port = client.V1ServicePort(port=80, target_port=8080, node_port=node_port)
    return client.V1Service(metadata=client.V1ObjectMeta(name=name),
                            spec=client.V1ServiceSpec(type=kind, selector={"app": name}, ports=[port]))


def test_service_allocations(core, ns):
    svc = core.create_namespaced_service(ns, service("alloc", "NodePort"))
    assert svc.spec.cluster_ip.startswith("10.43.") and svc.spec.cluster_ips == [svc.spec.cluster_ip]
    node_port = svc.spec.ports[0].node_port
    assert 30000 <= node_port <= 32767
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(ns, service("clash", "NodePort", node_port))
    assert e.value.status == 422 and "already allocated" in e.value.body
    # an update that leaves the allocations out keeps them
    replaced = core.replace_namespaced_service("alloc", ns, client.V1Service(
        metadata=client.V1ObjectMeta(name="alloc", resource_version=svc.metadata.resource_version),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "other"},
                                  ports=[client.V1ServicePort(port=80, target_port=8080)])))
    assert replaced.spec.cluster_ip == svc.spec.cluster_ip
    assert replaced.spec.ports[0].node_port == node_port
    headless = core.create_namespaced_service(ns, client.V1Service(
        metadata=client.V1ObjectMeta(name="headless"),
        spec=client.V1ServiceSpec(cluster_ip="None", selector={"app": "x"},
                                  ports=[client.V1ServicePort(port=80)])))
    assert headless.spec.cluster_ip == "None"


def test_job_gets_a_generated_selector(api_client, ns):
    batch = client.BatchV1Api(api_client)
    job = batch.create_namespaced_job(ns, client.V1Job(
        metadata=client.V1ObjectMeta(name="once"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="busybox")])))))
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "once"
    assert job.spec.backoff_limit == 6 and job.spec.completions == 1


def test_kubernetes_service_leads_to_the_api_server(core, server):
    svc = core.read_namespaced_service("kubernetes", "default")
    assert svc.spec.cluster_ip == "10.43.0.1" and svc.spec.ports[0].port == 443
    endpoints = core.read_namespaced_endpoints("kubernetes", "default")
    assert endpoints.subsets[0].ports[0].port == server.port
    assert endpoints.subsets[0].addresses[0].ip == "127.0.0.1"
