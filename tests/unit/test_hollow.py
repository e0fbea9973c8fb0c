"""What hollow nodes write: Node, Lease and pod status objects, and pod IP allocation."""

from __future__ import annotations

import ipaddress

import pytest

from sampan.node.hollow import (
    EXIT_CODE_ANNOTATION,
    GROUP_LABEL,
    KUBELET_VERSION,
    RUN_SECONDS_ANNOTATION,
    NodeShape,
    PodIPs,
    conditions_differ,
    exit_code,
    fake_pod_cidr,
    finished_status,
    lease_object,
    node_conditions,
    node_internal_ip,
    node_object,
    run_seconds,
    running_status,
)

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T03:09:05Z"


def pod(**spec_extra) -> dict:
    annotations = spec_extra.pop("annotations", {})
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "annotations": annotations},
            "spec": {"nodeName": "n-0", "containers": [{"name": "app", "image": "nginx:1"},
                                                       {"name": "side", "image": "busybox"}],
                     **spec_extra},
            "status": {"phase": "Pending", "qosClass": "BestEffort",
                       "conditions": [{"type": "PodScheduled", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


def by_type(conditions: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conditions}


def test_node_object_looks_like_a_kubelets_registration():
    node = node_object("hollow-node-4", 4, NodeShape(), "hollow-node", NOW)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "hollow-node-4"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == "amd64"
    assert labels["node.kubernetes.io/instance-type"] == "hollow"
    assert labels["topology.kubernetes.io/zone"] == "hollow-zone-b"
    assert labels[GROUP_LABEL] == "hollow-node"
    status = node["status"]
    assert status["capacity"] == status["allocatable"]
    assert status["capacity"]["cpu"] == "4" and status["capacity"]["pods"] == "110"
    assert {"memory", "ephemeral-storage"} <= set(status["capacity"])
    ready = by_type(status["conditions"])["Ready"]
    assert ready == {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status", "lastHeartbeatTime": NOW,
                     "lastTransitionTime": NOW}
    assert [c["type"] for c in status["conditions"]] == [
        "NetworkUnavailable", "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert all(c["status"] == "False" for c in status["conditions"][:4])
    assert status["addresses"] == [{"type": "InternalIP", "address": node_internal_ip(4)},
                                   {"type": "Hostname", "address": "hollow-node-4"}]
    info = status["nodeInfo"]
    assert info["kubeletVersion"] == KUBELET_VERSION == "v1.37.0"
    assert info["containerRuntimeVersion"] == "hollow://1.0"
    assert info["operatingSystem"] == "linux" and info["architecture"] == "amd64"
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    # Registering again gives the same object: restarts do not re-register differently.
    assert node_object("hollow-node-4", 4, NodeShape(), "hollow-node", NOW) == node


def test_shape_is_configurable():
    node = node_object("n-1", 1, NodeShape(cpu="8", memory="32Gi", pods=50,
                                           architecture="arm64", zones=("z1",)), "g", NOW)
    assert node["status"]["allocatable"]["cpu"] == "8"
    assert node["status"]["allocatable"]["pods"] == "50"
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "z1"
    assert node["status"]["nodeInfo"]["architecture"] == "arm64"


def test_heartbeat_keeps_transition_times():
    first = node_conditions(NOW)
    again = node_conditions(LATER, first)
    assert all(c["lastHeartbeatTime"] == LATER for c in again[1:])
    assert all(c["lastTransitionTime"] == NOW for c in again)
    # After the node controller marked it Unknown, Ready transitions anew.
    unknown = [dict(c, status="Unknown") if c["type"] == "Ready" else c for c in first]
    ready = by_type(node_conditions(LATER, unknown))["Ready"]
    assert ready["lastTransitionTime"] == LATER


def test_conditions_differ():
    node = node_object("n-0", 0, NodeShape(), "g", NOW)
    assert not conditions_differ(node)
    by_type(node["status"]["conditions"])["Ready"]["status"] = "Unknown"
    assert conditions_differ(node)
    assert conditions_differ({"status": {}})
    network = dict(by_type(node["status"]["conditions"])["NetworkUnavailable"], status="True")
    node = node_object("n-0", 0, NodeShape(), "g", NOW)
    node["status"]["conditions"][0] = network
    assert not conditions_differ(node)  # the network plugin's, not the kubelet's


def test_network_condition_is_left_to_the_network_plugin():
    plugin = {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated",
              "lastHeartbeatTime": NOW, "lastTransitionTime": NOW}
    conditions = by_type(node_conditions(LATER, [plugin]))
    assert conditions["NetworkUnavailable"] == plugin
    assert conditions["Ready"]["lastHeartbeatTime"] == LATER


def test_internal_ips_are_unique_test_range_addresses():
    ips = [node_internal_ip(i) for i in range(5000)]
    assert len(set(ips)) == 5000
    net = ipaddress.ip_network("10.99.0.0/16")
    for ip in ips:
        address = ipaddress.ip_address(ip)
        assert address in net and str(address).split(".")[3] not in ("0", "255")


def test_fake_pod_cidrs_are_distinct_per_node():
    cidrs = {fake_pod_cidr(i) for i in range(3000)}
    assert len(cidrs) == 3000
    assert fake_pod_cidr(0) == "10.244.0.0/24"


def test_lease_object():
    node = {"metadata": {"name": "n-3", "uid": "node-uid"}}
    lease = lease_object(node, now=0.5)
    assert lease["metadata"] == {"name": "n-3", "namespace": "kube-node-lease",
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                                      "name": "n-3", "uid": "node-uid"}]}
    assert lease["spec"] == {"holderIdentity": "n-3", "leaseDurationSeconds": 40,
                             "renewTime": "1970-01-01T00:00:00.500000Z"}


def test_run_seconds_and_exit_code():
    assert run_seconds(pod()) is None  # restartPolicy Always runs until deleted
    assert run_seconds(pod(restartPolicy="Always"), complete_after=3) is None
    assert run_seconds(pod(restartPolicy="Never")) is None
    assert run_seconds(pod(restartPolicy="Never"), complete_after=3) == 3
    assert run_seconds(pod(restartPolicy="OnFailure",
                           annotations={RUN_SECONDS_ANNOTATION: "1.5"}), complete_after=9) == 1.5
    assert run_seconds(pod(restartPolicy="Never",
                           annotations={RUN_SECONDS_ANNOTATION: "soon"}), complete_after=2) == 2
    assert exit_code(pod()) == 0
    assert exit_code(pod(annotations={EXIT_CODE_ANNOTATION: "3"})) == 3


def test_running_status():
    status = running_status(pod(), host_ip="10.99.0.2", pod_ip="10.244.0.2", started=NOW,
                            now=NOW)
    assert status["phase"] == "Running"
    assert [c["type"] for c in status["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    assert all(c["status"] == "True" for c in status["conditions"])
    # PodScheduled is the scheduler's: kept as it was.
    assert by_type(status["conditions"])["PodScheduled"]["lastTransitionTime"] == \
        "2026-01-01T00:00:00Z"
    assert [s["name"] for s in status["containerStatuses"]] == ["app", "side"]
    app = status["containerStatuses"][0]
    assert app["ready"] and app["started"] and app["restartCount"] == 0
    assert app["state"] == {"running": {"startedAt": NOW}}
    assert app["containerID"].startswith("hollow://")
    assert app["imageID"].startswith("nginx:1@sha256:")
    assert status["hostIP"] == "10.99.0.2" and status["hostIPs"] == [{"ip": "10.99.0.2"}]
    assert status["podIP"] == "10.244.0.2" and status["podIPs"] == [{"ip": "10.244.0.2"}]
    assert status["startTime"] == NOW and status["qosClass"] == "BestEffort"
    assert "initContainerStatuses" not in status


def test_running_status_completes_init_containers_and_runs_sidecars():
    p = pod(initContainers=[{"name": "setup", "image": "busybox"},
                            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}])
    status = running_status(p, host_ip="h", pod_ip="i", started=NOW, now=NOW)
    setup, proxy = status["initContainerStatuses"]
    assert setup["state"]["terminated"]["exitCode"] == 0
    assert setup["state"]["terminated"]["reason"] == "Completed"
    assert proxy["state"] == {"running": {"startedAt": NOW}} and proxy["ready"]


def test_readiness_gates_hold_ready_back():
    p = pod(readinessGates=[{"conditionType": "example.com/lb"}])
    status = running_status(p, host_ip="h", pod_ip="i", started=NOW, now=NOW)
    ready = by_type(status["conditions"])["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
    assert 'readiness gate "example.com/lb" does not exist' in ready["message"]
    p["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    status = running_status(p, host_ip="h", pod_ip="i", started=NOW, now=NOW)
    assert by_type(status["conditions"])["Ready"]["status"] == "True"
    assert by_type(status["conditions"])["example.com/lb"]["status"] == "True"


def test_restart_reports_last_state():
    status = running_status(pod(), host_ip="h", pod_ip="i", started=LATER, now=LATER,
                            restarts=1, last_exit=(2, NOW, LATER))
    app = status["containerStatuses"][0]
    assert app["restartCount"] == 1
    assert app["lastState"]["terminated"]["exitCode"] == 2
    assert app["lastState"]["terminated"]["reason"] == "Error"


def test_running_status_keeps_transition_times():
    p = pod()
    p["status"] = running_status(p, host_ip="h", pod_ip="i", started=NOW, now=NOW)
    again = running_status(p, host_ip="h", pod_ip="i", started=NOW, now=LATER)
    assert all(c["lastTransitionTime"] != LATER for c in again["conditions"])


@pytest.mark.parametrize("code,phase,reason",
                         [(0, "Succeeded", "Completed"), (1, "Failed", "Error")])
def test_finished_status(code, phase, reason):
    p = pod(restartPolicy="Never")
    p["status"] = running_status(p, host_ip="h", pod_ip="i", started=NOW, now=NOW)
    status = finished_status(p, host_ip="h", pod_ip="i", started=NOW, now=LATER, code=code)
    assert status["phase"] == phase
    conditions = by_type(status["conditions"])
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["lastTransitionTime"] == LATER
    if code == 0:
        assert conditions["Ready"]["reason"] == "PodCompleted"
        assert conditions["ContainersReady"]["reason"] == "PodCompleted"
    else:
        assert conditions["Ready"]["reason"] == "ContainersNotReady"
        assert conditions["Ready"]["message"] == "containers with unready status: [app side]"
    assert conditions["PodReadyToStartContainers"]["status"] == "False"
    assert conditions["Initialized"]["status"] == "True"
    for s in status["containerStatuses"]:
        assert not s["ready"] and not s["started"]
        terminated = s["state"]["terminated"]
        assert terminated["exitCode"] == code and terminated["reason"] == reason
        assert terminated["startedAt"] == NOW and terminated["finishedAt"] == LATER


def test_pod_ips():
    ips = PodIPs()
    assert ips.allocate("n", "10.42.3.0/24", "a") == "10.42.3.2"
    assert ips.allocate("n", "10.42.3.0/24", "a") == "10.42.3.2"  # the same pod, the same IP
    assert ips.allocate("n", "10.42.3.0/24", "b") == "10.42.3.3"
    assert ips.allocate("m", "10.42.4.0/24", "c") == "10.42.4.2"
    ips.release("a")
    assert ips.get("a") is None
    assert ips.allocate("n", "10.42.3.0/24", "d") == "10.42.3.2"
    ips.mark("n", "10.42.3.0/24", "e", "10.42.3.4")  # learnt from a running pod
    assert ips.allocate("n", "10.42.3.0/24", "f") == "10.42.3.5"
    small = PodIPs()
    small.allocate("s", "10.0.0.0/30", "x")
    with pytest.raises(RuntimeError):
        small.allocate("s", "10.0.0.0/30", "y")


class FakeClient:
    """Records writes; answers a status patch with nothing in particular."""

    def __init__(self):
        self.calls: list[tuple] = []

    async def patch(self, api_version, resource, name, body, **kwargs):
        self.calls.append(("patch", resource, name, body, kwargs))
        return {}

    async def delete(self, api_version, resource, name, **kwargs):
        self.calls.append(("delete", resource, name, kwargs))
        return {}


def hollow_with(p: dict, **kwargs):
    from sampan.node.hollow import HollowNodes

    client = FakeClient()
    nodes = HollowNodes(client, count=1, prefix="n", **kwargs)
    nodes.nodes["n-0"].obj = {"metadata": {"name": "n-0", "uid": "node-uid"},
                              "spec": {"podCIDR": "10.42.7.0/24"}}
    nodes.pod_informer.indexer.upsert(p)
    return nodes, client


async def test_sync_marks_a_bound_pod_running_once():
    p = pod()
    nodes, client = hollow_with(p)
    await nodes._sync_pod("ns/p")
    [(verb, resource, name, body, kwargs)] = client.calls
    assert (verb, resource, name, kwargs["subresource"]) == ("patch", "pods", "p", "status")
    assert body["metadata"] == {"uid": "u-1"}  # the uid is a precondition
    assert body["status"]["phase"] == "Running"
    assert body["status"]["podIP"] == "10.42.7.2"  # from the node's podCIDR
    await nodes._sync_pod("ns/p")  # the cache has not caught up: no second write
    assert len(client.calls) == 1


async def test_sync_ignores_pods_of_other_nodes():
    p = pod()
    p["spec"]["nodeName"] = "elsewhere"
    nodes, client = hollow_with(p)
    await nodes._sync_pod("ns/p")
    assert client.calls == []


async def test_sync_finishes_a_deleted_pod_after_its_grace_or_a_second():
    import asyncio

    from sampan.client import Preconditions

    p = pod()
    p["metadata"].update(deletionTimestamp=NOW, deletionGracePeriodSeconds=30)
    nodes, client = hollow_with(p)
    await nodes._sync_pod("ns/p")
    assert client.calls == []  # not before min(grace, 1 s)
    loop = asyncio.get_running_loop()
    assert 0 < nodes._delete_at["u-1"] - loop.time() <= 1.0
    nodes._delete_at["u-1"] = loop.time()
    await nodes._sync_pod("ns/p")
    [(verb, resource, name, kwargs)] = client.calls
    assert (verb, resource, name) == ("delete", "pods", "p")
    assert kwargs["grace_period_seconds"] == 0
    assert kwargs["preconditions"] == Preconditions(uid="u-1")
    nodes.pod_queue.shut_down()


async def test_sync_completes_a_pod_whose_run_is_over():
    p = pod(restartPolicy="Never", annotations={RUN_SECONDS_ANNOTATION: "0",
                                                EXIT_CODE_ANNOTATION: "4"})
    nodes, client = hollow_with(p)
    await nodes._sync_pod("ns/p")
    phases = [call[3]["status"]["phase"] for call in client.calls]
    assert phases == ["Running", "Failed"]
    await nodes._sync_pod("ns/p")
    assert len(client.calls) == 2


async def test_sync_adopts_a_pod_running_from_an_earlier_life():
    p = pod()
    p["status"] = running_status(p, host_ip="h", pod_ip="10.42.7.9", started=NOW, now=NOW)
    nodes, client = hollow_with(p)
    nodes._on_pod(p)
    await nodes._sync_pod("ns/p")
    assert client.calls == []
    assert nodes.ips.get("u-1") == "10.42.7.9"
    nodes.pod_queue.shut_down()
