"""Tables as ``kubectl get`` receives them: upstream's columns, and cells as
pkg/printers/internalversion (with its printers_test.go cases), the CRD table convertor and the
default convertor print them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sampan.api.errors import StatusError
from sampan.api.registry import Registry, Resource
from sampan.apiserver.tables import compile_jsonpath, human_duration, table

REGISTRY = Registry()
NOW = 1_750_000_000.0


def ago(seconds: float) -> str:
    return datetime.fromtimestamp(NOW - seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource(group: str, version: str, plural: str) -> Resource:
    found = REGISTRY.get(group, version, plural)
    assert found is not None
    return found


def rows(group: str, version: str, plural: str, *objects: dict) -> list[list]:
    result = table(resource(group, version, plural), list(objects), now=NOW)
    return [row["cells"] for row in result["rows"]]


def row(group: str, version: str, plural: str, obj: dict) -> list:
    return rows(group, version, plural, obj)[0]


def columns(group: str, version: str, plural: str) -> list[tuple[str, int]]:
    result = table(resource(group, version, plural), [], now=NOW)
    return [(c["name"], c["priority"]) for c in result["columnDefinitions"]]


def meta(name: str = "x", age: float | None = None, **extra) -> dict:
    metadata = {"name": name, **extra}
    if age is not None:
        metadata["creationTimestamp"] = ago(age)
    return metadata


# --------------------------------------------------------------------------------------------
# Ages (duration.HumanDuration and its upstream boundary tests)
# --------------------------------------------------------------------------------------------

SECOND, MINUTE, HOUR, DAY, YEAR = 1, 60, 3600, 86400, 365 * 86400


@pytest.mark.parametrize("seconds, expected", [
    (SECOND, "1s"), (70 * SECOND, "70s"), (190 * SECOND, "3m10s"), (70 * MINUTE, "70m"),
    (47 * HOUR, "47h"), (49 * HOUR, "2d1h"), ((8 * 24 + 2) * HOUR, "8d"),
    (367 * DAY, "367d"), (2 * YEAR + 25 * HOUR, "2y1d"), (8 * YEAR + 2 * HOUR, "8y"),
    (-2, "<invalid>"), (-2 + 1e-9, "0s"), (0, "0s"), (1 - 0.001, "0s"),
    (2 * MINUTE - 0.001, "119s"), (2 * MINUTE, "2m"), (2 * MINUTE + 1, "2m1s"),
    (10 * MINUTE - 0.001, "9m59s"), (10 * MINUTE, "10m"), (10 * MINUTE + 1, "10m"),
    (3 * HOUR - 0.001, "179m"), (3 * HOUR, "3h"), (3 * HOUR + MINUTE, "3h1m"),
    (8 * HOUR - 0.001, "7h59m"), (8 * HOUR, "8h"), (8 * HOUR + 59 * MINUTE, "8h"),
    (2 * DAY - 0.001, "47h"), (2 * DAY, "2d"), (2 * DAY + HOUR, "2d1h"),
    (8 * DAY - 0.001, "7d23h"), (8 * DAY, "8d"), (8 * DAY + 23 * HOUR, "8d"),
    (2 * YEAR - 0.001, "729d"), (2 * YEAR, "2y"), (2 * YEAR + DAY, "2y1d"),
    (3 * YEAR + 45 * DAY, "3y45d"), (200 * DAY, "200d"), (3 * YEAR, "3y"),
])
def test_human_duration(seconds, expected):
    assert human_duration(seconds) == expected


def test_age_is_unknown_without_a_creation_timestamp():
    assert row("", "v1", "namespaces", {"metadata": meta("ns"), "status": {"phase": "Active"}}) \
        == ["ns", "Active", "<unknown>"]


# --------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------


def test_pod_columns():
    assert columns("", "v1", "pods") == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1),
        ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1)]


def containers(n: int) -> list[dict]:
    return [{"name": f"c{i}", "image": f"image{i}"} for i in range(n)]


RUNNING = {"running": {}}


def status(ready=False, restarts=0, state=None, finished=None, name=None, started=None) -> dict:
    result = {"ready": ready, "restartCount": restarts, "state": state or {}}
    if finished is not None:
        result["lastState"] = {"terminated": {"finishedAt": ago(finished)}}
    if name is not None:
        result["name"] = name
    if started is not None:
        result["started"] = started
    return result


def waiting(reason: str = "") -> dict:
    return {"waiting": {"reason": reason} if reason else {}}


def terminated(reason: str = "", exit_code: int = 0, signal: int = 0) -> dict:
    state = {"exitCode": exit_code}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"terminated": state}


def a_pod(n=2, phase="podPhase", statuses=(), init=0, init_statuses=(), conditions=(),
          reason="", spec_init=None, **metadata) -> dict:
    spec = {"containers": containers(n)}
    if init or spec_init:
        spec["initContainers"] = spec_init or containers(init)
    pod_status = {"phase": phase, "containerStatuses": list(statuses),
                  "conditions": list(conditions)}
    if init_statuses:
        pod_status["initContainerStatuses"] = list(init_statuses)
    if reason:
        pod_status["reason"] = reason
    return {"metadata": meta("p", **metadata), "spec": spec, "status": pod_status}


SIDECARS = [{"name": "restartable-init-1", "restartPolicy": "Always"},
            {"name": "restartable-init-2", "restartPolicy": "Always"}]
INITIALIZED = {"type": "Initialized", "status": "True"}
NOT_INITIALIZED = {"type": "Initialized", "status": "False"}
READY = {"type": "Ready", "status": "True"}


# Cases from upstream's TestPrintPod and TestPrintPodWithRestartableInitContainer, plus the
# statuses users meet every day.
@pytest.mark.parametrize("pod, expected", [
    (a_pod(statuses=[status(True, 3, RUNNING), status(restarts=3)]),
     ["1/2", "podPhase", "6"]),
    (a_pod(statuses=[status(True, 3, RUNNING),
                     status(restarts=3, state=waiting("ContainerWaitingReason"))]),
     ["1/2", "ContainerWaitingReason", "6"]),
    (a_pod(statuses=[status(restarts=3, state=waiting("ContainerWaitingReason")),
                     status(restarts=3, state=terminated("ContainerTerminatedReason"))]),
     ["0/2", "ContainerWaitingReason", "6"]),
    (a_pod(statuses=[status(True, 3, RUNNING), status(True, 3)]), ["1/2", "podPhase", "6"]),
    (a_pod(reason="podReason", statuses=[status(True, 3, RUNNING), status(True, 3)]),
     ["1/2", "podReason", "6"]),
    (a_pod(phase="Running", statuses=[status(True, 3, terminated("Completed")),
                                      status(True, 3, RUNNING)]),
     ["1/2", "NotReady", "6"]),
    (a_pod(phase="Running", conditions=[READY], statuses=[status(True, 3, terminated("Completed")),
                                                          status(True, 3, RUNNING)]),
     ["1/2", "Running", "6"]),
    (a_pod(n=1, init=1, init_statuses=[status(restarts=3, state=RUNNING, finished=10)],
           statuses=[status(state=waiting())]),
     ["0/1", "Init:0/1", "3 (10s ago)"]),
    (a_pod(n=1, init=2, init_statuses=[status(restarts=3, state=RUNNING, finished=10),
                                       status(state=waiting())],
           statuses=[status(state=waiting())]),
     ["0/1", "Init:0/2", "3 (10s ago)"]),
    (a_pod(n=1, init=2, init_statuses=[status(state=terminated()),
                                       status(restarts=3, state=RUNNING, finished=10)],
           statuses=[status(state=waiting())]),
     ["0/1", "Init:1/2", "3 (10s ago)"]),
    (a_pod(n=1, init=2, init_statuses=[status(restarts=2, state=terminated(), finished=120),
                                       status(restarts=3, state=RUNNING, finished=10)],
           statuses=[status(state=waiting())]),
     ["0/1", "Init:1/2", "5 (10s ago)"]),
    (a_pod(n=1, init=1, phase="Running",
           init_statuses=[status(restarts=2, state=terminated(), finished=120)],
           statuses=[status(restarts=4, state=RUNNING, finished=20)]),
     ["0/1", "Running", "4 (20s ago)"]),
    (a_pod(n=1, phase="Running", statuses=[status(True, 3, RUNNING, finished=5 * DAY)]),
     ["1/1", "Running", "3 (5d ago)"]),
    (a_pod(phase="Running", statuses=[status(True, 6, RUNNING, finished=5 * DAY),
                                      status(True, 3, RUNNING, finished=20 * DAY)]),
     ["2/2", "Running", "9 (5d ago)"]),
    (a_pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
     ["0/2", "SchedulingGated", "0"]),
    # Restartable init containers (sidecars).
    (a_pod(n=1, phase="Pending", spec_init=SIDECARS, conditions=[NOT_INITIALIZED],
           init_statuses=[status(restarts=3, state=RUNNING, finished=10, started=False,
                                 name="restartable-init-1"),
                          status(state=waiting(), started=False, name="restartable-init-2")],
           statuses=[status(state=waiting())]),
     ["0/3", "Init:0/2", "3 (10s ago)"]),
    (a_pod(n=1, phase="Pending", spec_init=SIDECARS, conditions=[NOT_INITIALIZED],
           init_statuses=[status(restarts=3, state=RUNNING, finished=10, started=True,
                                 name="restartable-init-1"),
                          status(state=RUNNING, started=False, name="restartable-init-2")],
           statuses=[status(state=waiting())]),
     ["0/3", "Init:1/2", "3 (10s ago)"]),
    (a_pod(n=1, phase="Running", spec_init=SIDECARS, conditions=[INITIALIZED],
           init_statuses=[status(restarts=3, state=RUNNING, finished=10, started=True,
                                 name="restartable-init-1"),
                          status(state=RUNNING, started=True, name="restartable-init-2")],
           statuses=[status(True, 4, RUNNING, finished=20)]),
     ["1/3", "Running", "7 (10s ago)"]),
    (a_pod(n=1, phase="Succeeded", spec_init=SIDECARS, conditions=[INITIALIZED],
           init_statuses=[status(restarts=3, state=terminated("Error", 137), finished=10,
                                 started=False, name="restartable-init-1"),
                          status(state=terminated("Error", 137), started=False,
                                 name="restartable-init-2")],
           statuses=[status(restarts=4, state=terminated("Completed"), finished=20)]),
     ["0/3", "Completed", "7 (10s ago)"]),
    (a_pod(n=1, phase="Running",
           spec_init=[{"name": "init1"}, {"name": "sidecar1", "restartPolicy": "Always"}],
           init_statuses=[{"name": "initinvalid"}, {"name": "init1"}, {"name": "sidecar1"}],
           statuses=[{"name": "containerinvalid"}, {"name": "container1"}]),
     ["0/2", "Init:0/2", "0"]),
    # Everyday statuses.
    (a_pod(n=1, phase="Running", statuses=[status(restarts=5, state=waiting("CrashLoopBackOff"),
                                                  finished=300)]),
     ["0/1", "CrashLoopBackOff", "5 (5m ago)"]),
    (a_pod(n=1, phase="Pending", init=2,
           init_statuses=[status(restarts=4, state=waiting("CrashLoopBackOff"), finished=40),
                          status(state=waiting("PodInitializing"))],
           statuses=[status(state=waiting("PodInitializing"))]),
     ["0/1", "Init:CrashLoopBackOff", "4 (40s ago)"]),
    (a_pod(n=1, phase="Pending", init=1, init_statuses=[status(state=terminated(exit_code=1))],
           statuses=[status(state=waiting("PodInitializing"))]),
     ["0/1", "Init:ExitCode:1", "0"]),
    (a_pod(n=1, phase="Pending", init=1,
           init_statuses=[status(state=terminated(exit_code=137, signal=9))],
           statuses=[status(state=waiting("PodInitializing"))]),
     ["0/1", "Init:Signal:9", "0"]),
    (a_pod(n=1, phase="Pending", init=1, init_statuses=[status(state=terminated("Error", 1))],
           statuses=[status(state=waiting("PodInitializing"))]),
     ["0/1", "Init:Error", "0"]),
    (a_pod(n=1, phase="Pending", statuses=[status(state=waiting("ImagePullBackOff"))]),
     ["0/1", "ImagePullBackOff", "0"]),
    (a_pod(n=1, phase="Succeeded", statuses=[status(state=terminated("Completed"))]),
     ["0/1", "Completed", "0"]),
    (a_pod(n=1, phase="Failed", statuses=[status(state=terminated("Error", 2))]),
     ["0/1", "Error", "0"]),
    (a_pod(n=1, phase="Failed", statuses=[status(state=terminated(exit_code=2))]),
     ["0/1", "ExitCode:2", "0"]),
    # The first container completed while the second failed: the failure is what shows.
    (a_pod(phase="Running", statuses=[status(state=terminated("Completed")),
                                      status(state=terminated("OOMKilled", 137))]),
     ["0/2", "OOMKilled", "0"]),
    (a_pod(phase="Failed", reason="Evicted", statuses=[status(state=terminated("Error", 137))]),
     ["0/2", "Error", "0"]),
    (a_pod(phase="Failed", reason="Evicted", statuses=[]), ["0/2", "Evicted", "0"]),
    (a_pod(n=1, phase="Running", statuses=[status(True, 0, RUNNING)],
           deletionTimestamp=ago(1)),
     ["1/1", "Terminating", "0"]),
    (a_pod(n=1, phase="Running", reason="NodeLost", statuses=[status(True, 0, RUNNING)],
           deletionTimestamp=ago(1)),
     ["1/1", "Unknown", "0"]),
    (a_pod(n=1, phase="Succeeded", statuses=[status(state=terminated("Completed"))],
           deletionTimestamp=ago(1)),
     ["0/1", "Completed", "0"]),
])
def test_pod_ready_status_and_restarts(pod, expected):
    assert row("", "v1", "pods", pod)[1:4] == expected


def test_pod_wide_cells():
    pod = a_pod(statuses=[status(True, 3, RUNNING), status(restarts=3)])
    pod["metadata"]["creationTimestamp"] = ago(3 * HOUR + 5 * MINUTE)
    pod["spec"].update(nodeName="test1", readinessGates=[
        {"conditionType": "condition1"}, {"conditionType": "condition2"},
        {"conditionType": "condition3"}])
    pod["status"].update(
        nominatedNodeName="node1", podIPs=[{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}],
        conditions=[{"type": "condition1", "status": "False"},
                    {"type": "condition2", "status": "True"}])
    assert row("", "v1", "pods", pod) == [
        "p", "1/2", "podPhase", "6", "3h5m", "1.1.1.1", "test1", "node1", "1/3"]
    bare = a_pod(statuses=[status(True, 3, RUNNING), status(restarts=3)])
    assert row("", "v1", "pods", bare)[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_finished_pods_are_marked_completed_rows():
    result = table(resource("", "v1", "pods"),
                   [a_pod(phase="Succeeded"), a_pod(phase="Failed"), a_pod(phase="Running")],
                   now=NOW)
    assert result["rows"][0]["conditions"] == [{
        "type": "Completed", "status": "True", "reason": "Succeeded",
        "message": "The pod has completed successfully."}]
    assert result["rows"][1]["conditions"][0]["reason"] == "Failed"
    assert "conditions" not in result["rows"][2]


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------

TEMPLATE = {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                    {"name": "log", "image": "fluentbit"}]}}


def test_deployment():
    deployment = {
        "metadata": meta("web", 600),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert columns("apps", "v1", "deployments") == [
        ("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0),
        ("Containers", 1), ("Images", 1), ("Selector", 1)]
    assert row("apps", "v1", "deployments", deployment) == [
        "web", "2/3", 3, 2, "10m", "web,log", "nginx:1.27,fluentbit", "app=web"]


def test_replica_set_daemon_set_and_stateful_set():
    replica_set = {"metadata": meta("web-abc", 30),
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                            "template": TEMPLATE},
                   "status": {"replicas": 2, "readyReplicas": 1}}
    assert row("apps", "v1", "replicasets", replica_set) == [
        "web-abc", 2, 2, 1, "30s", "web,log", "nginx:1.27,fluentbit", "app=web"]
    daemon_set = {"metadata": meta("agent", 90),
                  "spec": {"selector": {"matchLabels": {"app": "agent"}},
                           "template": {"spec": {"nodeSelector": {"os": "linux"},
                                                 "containers": [{"name": "a", "image": "i"}]}}},
                  "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                             "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}}
    assert row("apps", "v1", "daemonsets", daemon_set) == [
        "agent", 3, 3, 2, 3, 2, "os=linux", "90s", "a", "i", "app=agent"]
    stateful_set = {"metadata": meta("db", 60), "spec": {"replicas": 3, "template": TEMPLATE},
                    "status": {"readyReplicas": 1}}
    assert row("apps", "v1", "statefulsets", stateful_set) == [
        "db", "1/3", "60s", "web,log", "nginx:1.27,fluentbit"]


def test_replication_controller_and_controller_revision():
    controller = {"metadata": meta("rc", 10),
                  "spec": {"replicas": 2, "selector": {"b": "2", "a": "1"}, "template": TEMPLATE},
                  "status": {"replicas": 2, "readyReplicas": 2}}
    assert row("", "v1", "replicationcontrollers", controller) == [
        "rc", 2, 2, 2, "10s", "web,log", "nginx:1.27,fluentbit", "a=1,b=2"]
    revision = {"metadata": meta("web-7d9", 10, ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": True}]),
        "revision": 4}
    assert row("apps", "v1", "controllerrevisions", revision) == [
        "web-7d9", "daemonset.apps/agent", 4, "10s"]


def job(conditions=(), completions=1, parallelism=None, succeeded=0, start=None, end=None,
        **metadata) -> dict:
    spec = {"template": TEMPLATE, "selector": {"matchLabels": {"job-name": "j"}}}
    if completions is not None:
        spec["completions"] = completions
    if parallelism is not None:
        spec["parallelism"] = parallelism
    job_status = {"succeeded": succeeded,
                  "conditions": [{"type": c, "status": "True"} for c in conditions]}
    if start is not None:
        job_status["startTime"] = ago(start)
    if end is not None:
        job_status["completionTime"] = ago(end)
    return {"metadata": meta("j", 120, **metadata), "spec": spec, "status": job_status}


@pytest.mark.parametrize("obj, expected", [
    (job(["Complete"], succeeded=1, start=100, end=88), ["Complete", "1/1", "12s"]),
    (job(["Failed"], start=100, end=40), ["Failed", "0/1", "60s"]),
    (job(start=100), ["Running", "0/1", "100s"]),
    (job(), ["Running", "0/1", ""]),
    (job(["Suspended"]), ["Suspended", "0/1", ""]),
    (job(["FailureTarget"]), ["FailureTarget", "0/1", ""]),
    (job(["SuccessCriteriaMet"], succeeded=1), ["SuccessCriteriaMet", "1/1", ""]),
    (job(deletionTimestamp=ago(1)), ["Terminating", "0/1", ""]),
    (job(completions=None, parallelism=3, succeeded=1), ["Running", "1/1 of 3", ""]),
    (job(completions=None), ["Running", "0/1", ""]),
    (job(completions=5, succeeded=2), ["Running", "2/5", ""]),
])
def test_job_status_completions_and_duration(obj, expected):
    assert row("batch", "v1", "jobs", obj)[1:4] == expected


def test_job_columns_and_wide_cells():
    assert columns("batch", "v1", "jobs") == [
        ("Name", 0), ("Status", 0), ("Completions", 0), ("Duration", 0), ("Age", 0),
        ("Containers", 1), ("Images", 1), ("Selector", 1)]
    assert row("batch", "v1", "jobs", job())[4:] == [
        "2m", "web,log", "nginx:1.27,fluentbit", "job-name=j"]


def test_cron_job():
    assert columns("batch", "v1", "cronjobs") == [
        ("Name", 0), ("Schedule", 0), ("Timezone", 0), ("Suspend", 0), ("Active", 0),
        ("Last Schedule", 0), ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)]
    cron_job = {"metadata": meta("backup", 3 * DAY),
                "spec": {"schedule": "*/5 * * * *", "suspend": False,
                         "jobTemplate": {"spec": {"template": TEMPLATE}}},
                "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(65)}}
    assert row("batch", "v1", "cronjobs", cron_job) == [
        "backup", "*/5 * * * *", "<none>", "False", 1, "65s", "3d", "web,log",
        "nginx:1.27,fluentbit", "<none>"]
    cron_job["spec"].update(timeZone="Etc/UTC")
    del cron_job["spec"]["suspend"], cron_job["status"]["lastScheduleTime"]
    assert row("batch", "v1", "cronjobs", cron_job)[2:6] == ["Etc/UTC", "<unset>", 1, "<none>"]


def test_pod_disruption_budget_and_hpa():
    budget = {"metadata": meta("pdb", 5), "spec": {"minAvailable": "50%"},
              "status": {"disruptionsAllowed": 1}}
    assert row("policy", "v1", "poddisruptionbudgets", budget) == ["pdb", "50%", "N/A", 1, "5s"]
    hpa_v2 = {"metadata": meta("web", 5), "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1,
        "maxReplicas": 10, "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 80}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {
                "type": "AverageValue", "averageValue": "512Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
                "type": "AverageValue", "averageValue": "10"}}}]},
        "status": {"currentReplicas": 3, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": 45}}}]}}
    assert row("autoscaling", "v2", "horizontalpodautoscalers", hpa_v2) == [
        "web", "Deployment/web", "cpu: 45%/80%, memory: <unknown>/512Mi + 1 more...", "1", 10,
        3, "5s"]
    hpa_v1 = {"metadata": meta("web", 5), "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
        "targetCPUUtilizationPercentage": 50}, "status": {"currentReplicas": 2}}
    assert row("autoscaling", "v1", "horizontalpodautoscalers", hpa_v1) == [
        "web", "Deployment/web", "cpu: <unknown>/50%", "<unset>", 4, 2, "5s"]


# --------------------------------------------------------------------------------------------
# Services and networking
# --------------------------------------------------------------------------------------------


def service(kind="ClusterIP", ports=(), external=(), ingress=(), **spec) -> dict:
    return {"metadata": meta("svc", 40),
            "spec": {"type": kind, "clusterIPs": ["10.96.0.10"], "ports": list(ports),
                     "externalIPs": list(external), **spec},
            "status": {"loadBalancer": {"ingress": list(ingress)}}}


@pytest.mark.parametrize("obj, external_ip, ports", [
    (service(ports=[{"port": 80, "protocol": "TCP"}]), "<none>", "80/TCP"),
    (service("NodePort", ports=[{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                                {"port": 443, "protocol": "TCP"}]),
     "<none>", "80:30080/TCP,443/TCP"),
    (service("LoadBalancer", ports=[{"port": 80, "protocol": "TCP"}, {"port": 8090,
                                                                      "protocol": "UDP"}]),
     "<pending>", "80/TCP,8090/UDP"),
    (service("LoadBalancer", ingress=[{"ip": "3.4.5.6"}, {"ip": "2.3.4.5"},
                                      {"ip": "5.6.7.8", "hostname": "host5678"}]),
     "2.3.4.5,3.4.5.6,5.6.7.8", "<none>"),
    (service("LoadBalancer", ingress=[{"hostname": "lb.example.com"}], external=["1.2.3.4"]),
     "lb.example.com,1.2.3.4", "<none>"),
    (service(external=["1.2.3.4", "5.6.7.8"]), "1.2.3.4,5.6.7.8", "<none>"),
    (service("ExternalName", externalName="db.example.com"), "db.example.com", "<none>"),
])
def test_service_external_ip_and_ports(obj, external_ip, ports):
    assert row("", "v1", "services", obj)[3:5] == [external_ip, ports]


def test_service_row():
    obj = service(ports=[{"port": 53, "protocol": "UDP"}], selector={"k8s-app": "dns"})
    assert columns("", "v1", "services")[-1] == ("Selector", 1)
    assert row("", "v1", "services", obj) == [
        "svc", "ClusterIP", "10.96.0.10", "<none>", "53/UDP", "40s", "k8s-app=dns"]
    headless = service(clusterIPs=["None"])
    assert row("", "v1", "services", headless)[2] == "None"


def test_endpoints_and_endpoint_slices():
    endpoints = {"metadata": meta("web", 5), "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
         "ports": [{"port": 8080}, {"port": 9090}]}]}
    assert row("", "v1", "endpoints", endpoints) == [
        "web", "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 3 more...", "5s"]
    assert row("", "v1", "endpoints", {"metadata": meta("none", 5)}) == ["none", "<none>", "5s"]
    endpoint_slice = {"metadata": meta("web-x", 5), "addressType": "IPv4",
                      "ports": [{"port": 80}, {"name": "metrics"}],
                      "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    assert row("discovery.k8s.io", "v1", "endpointslices", endpoint_slice) == [
        "web-x", "IPv4", "80,metrics", "10.0.0.1,10.0.0.2", "5s"]
    empty = {"metadata": meta("empty", 5), "addressType": "IPv6"}
    assert row("discovery.k8s.io", "v1", "endpointslices", empty)[2:4] == ["<unset>", "<unset>"]


def test_ingress_ingress_class_and_network_policy():
    ingress = {"metadata": meta("web", 5), "spec": {
        "ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
        "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"},
                  {"host": "c.example.com"}, {"host": "d.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
    assert row("networking.k8s.io", "v1", "ingresses", ingress) == [
        "web", "nginx", "a.example.com,b.example.com,c.example.com + 2 more...", "192.0.2.1",
        "80, 443", "5s"]
    assert row("networking.k8s.io", "v1", "ingresses", {"metadata": meta("x", 5), "spec": {}}) \
        == ["x", "<none>", "*", "", "80", "5s"]
    ingress_class = {"metadata": meta("nginx", 5), "spec": {
        "controller": "k8s.io/ingress-nginx", "parameters": {
            "apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external"}}}
    assert row("networking.k8s.io", "v1", "ingressclasses", ingress_class) == [
        "nginx", "k8s.io/ingress-nginx", "IngressParameters.k8s.example.com/external", "5s"]
    policy = {"metadata": meta("deny", 5), "spec": {"podSelector": {}}}
    assert row("networking.k8s.io", "v1", "networkpolicies", policy) == ["deny", "<none>", "5s"]


# --------------------------------------------------------------------------------------------
# Nodes, events and the other core kinds
# --------------------------------------------------------------------------------------------


def test_node():
    node = {"metadata": meta("n1", 2 * DAY, labels={
        "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "",
        "kubernetes.io/role": "edge"}),
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                  {"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "Hostname", "address": "n1"},
                                 {"type": "InternalIP", "address": "192.168.1.10"}],
                   "nodeInfo": {"kubeletVersion": "v1.37.0", "osImage": "Debian GNU/Linux 13",
                                "kernelVersion": "6.12.0",
                                "containerRuntimeVersion": "runc://1.2"}}}
    assert columns("", "v1", "nodes") == [
        ("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0),
        ("Internal-IP", 1), ("External-IP", 1), ("OS-Image", 1), ("Kernel-Version", 1),
        ("Container-Runtime", 1)]
    assert row("", "v1", "nodes", node) == [
        "n1", "Ready,SchedulingDisabled", "control-plane,edge,worker", "2d", "v1.37.0",
        "192.168.1.10", "<none>", "Debian GNU/Linux 13", "6.12.0", "runc://1.2"]
    not_ready = {"metadata": meta("n2", 60), "status": {
        "conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert row("", "v1", "nodes", not_ready)[1:3] == ["NotReady", "<none>"]


def test_core_event_prints_as_kubectl_get_events():
    event = {"metadata": meta("web.17a", 400, namespace="default"), "type": "Warning",
             "reason": "BackOff", "message": "Back-off restarting failed container\n",
             "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
             "source": {"component": "kubelet", "host": "n1"},
             "firstTimestamp": ago(400), "lastTimestamp": ago(15), "count": 7}
    assert [name for name, priority in columns("", "v1", "events") if priority == 0] == [
        "Last Seen", "Type", "Reason", "Object", "Message"]
    assert row("", "v1", "events", event) == [
        "15s", "Warning", "BackOff", "pod/web", "spec.containers{c}", "kubelet, n1",
        "Back-off restarting failed container", "6m40s", 7, "web.17a"]


def test_events_k8s_io_event_and_series():
    event = {"metadata": meta("web.18b", 30), "type": "Normal", "reason": "Scheduled",
             "note": "Successfully assigned default/web to n1", "eventTime": ago(30),
             "regarding": {"kind": "Pod", "name": "web"}, "reportingController": "scheduler",
             "series": {"count": 4, "lastObservedTime": ago(3)}}
    assert row("events.k8s.io", "v1", "events", event) == [
        "3s", "Normal", "Scheduled", "pod/web", "", "scheduler",
        "Successfully assigned default/web to n1", "30s", 4, "web.18b"]
    singleton = {"metadata": meta("n.1", 30), "type": "Normal", "reason": "Started",
                 "eventTime": ago(30), "involvedObject": {"kind": "Node"}}
    assert row("", "v1", "events", singleton)[0:4] == ["30s", "Normal", "Started", "node"]
    assert row("", "v1", "events", singleton)[8] == 1


def test_secrets_config_maps_service_accounts_namespaces():
    assert row("", "v1", "secrets", {"metadata": meta("tls", 5), "type": "kubernetes.io/tls",
                                     "data": {"tls.crt": "", "tls.key": ""}}) == [
        "tls", "kubernetes.io/tls", 2, "5s"]
    assert row("", "v1", "configmaps", {"metadata": meta("cfg", 5), "data": {"a": "1"},
                                        "binaryData": {"b": ""}}) == ["cfg", 2, "5s"]
    assert columns("", "v1", "serviceaccounts") == [("Name", 0), ("Age", 0)]
    assert row("", "v1", "serviceaccounts", {"metadata": meta("default", 5)}) == ["default", "5s"]
    assert row("", "v1", "namespaces", {"metadata": meta("gone", 5, deletionTimestamp=ago(1)),
                                        "status": {"phase": "Terminating"}}) == [
        "gone", "Terminating", "5s"]


def test_persistent_volumes_and_claims():
    volume = {"metadata": meta("pv1", 5), "spec": {
        "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
        "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}}
    assert row("", "v1", "persistentvolumes", volume) == [
        "pv1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "local", "<unset>", "",
        "5s", "Filesystem"]
    claim = {"metadata": meta("data", 5, annotations={
        "volume.beta.kubernetes.io/storage-class": "old"}),
        "spec": {"volumeName": "pv1", "storageClassName": "local"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"},
                   "accessModes": ["ReadWriteOncePod"]}}
    assert row("", "v1", "persistentvolumeclaims", claim) == [
        "data", "Bound", "pv1", "10Gi", "RWOP", "old", "<unset>", "5s", "<unset>"]
    pending = {"metadata": meta("new", 5, deletionTimestamp=ago(1)),
               "spec": {"resources": {"requests": {"storage": "1Gi"}}},
               "status": {"phase": "Pending"}}
    assert row("", "v1", "persistentvolumeclaims", pending)[1:6] == [
        "Terminating", "", "", "", ""]


def test_resource_quota_splits_requests_and_limits():
    quota = {"metadata": meta("compute", 5), "status": {
        "hard": {"requests.cpu": "4", "limits.memory": "8Gi", "pods": "10", "limits.cpu": "8"},
        "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}}
    assert row("", "v1", "resourcequotas", quota) == [
        "compute", "pods: 3/10, requests.cpu: 500m/4", "limits.cpu: 1/8, limits.memory: 0/8Gi",
        "5s"]


# --------------------------------------------------------------------------------------------
# RBAC, coordination, storage, scheduling and the default convertor
# --------------------------------------------------------------------------------------------


def test_role_bindings():
    binding = {"metadata": meta("rb", 5), "roleRef": {"kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "dev"},
                            {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"},
                            {"kind": "User", "name": "bob"}]}
    expected = ["rb", "ClusterRole/view", "5s", "alice, bob", "dev", "ci/bot"]
    assert row("rbac.authorization.k8s.io", "v1", "rolebindings", binding) == expected
    assert row("rbac.authorization.k8s.io", "v1", "clusterrolebindings", binding) == expected


@pytest.mark.parametrize("plural", ["roles", "clusterroles"])
def test_roles_use_the_default_convertor(plural):
    result = table(resource("rbac.authorization.k8s.io", "v1", plural),
                   [{"metadata": {"name": "view", "creationTimestamp": "2024-05-01T10:00:00Z"}}],
                   now=NOW)
    assert [(c["name"], c["type"]) for c in result["columnDefinitions"]] == [
        ("Name", "string"), ("Created At", "date")]
    assert result["rows"][0]["cells"] == ["view", "2024-05-01T10:00:00Z"]
    assert rows("", "v1", "limitranges", {"metadata": meta("l")}) == [
        ["l", "0001-01-01T00:00:00Z"]]


def test_lease_storage_classes_and_priority_classes():
    assert row("coordination.k8s.io", "v1", "leases", {
        "metadata": meta("kube-scheduler", 5), "spec": {"holderIdentity": "n1_abc"}}) == [
        "kube-scheduler", "n1_abc", "5s"]
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    older = {"metadata": meta("standard", 3000, annotations=default),
             "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}
    newer = {"metadata": meta("fast", 30, annotations=default), "provisioner": "csi.example.com",
             "reclaimPolicy": "Retain", "allowVolumeExpansion": True}
    # Only the class the admission plugin would pick, the newest, is marked "(default)".
    assert rows("storage.k8s.io", "v1", "storageclasses", older, newer) == [
        ["standard", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False, "50m"],
        ["fast (default)", "csi.example.com", "Retain", "Immediate", True, "30s"]]
    assert row("storage.k8s.io", "v1", "storageclasses", older)[0] == "standard (default)"
    assert row("scheduling.k8s.io", "v1", "priorityclasses", {
        "metadata": meta("high", 5), "value": 1000, "preemptionPolicy": "Never"}) == [
        "high", 1000, False, "5s", "Never"]


def test_custom_resource_definitions():
    crd = {"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-05-01T10:00:00Z"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"kind": "Widget", "shortNames": ["wd", "wdg"]},
                    "versions": [{"name": "v1beta1", "served": True},
                                 {"name": "v1", "served": True, "storage": True},
                                 {"name": "v1alpha1", "served": False}]},
           "status": {"conditions": [{"type": "Established", "status": "True"}]}}
    assert row("apiextensions.k8s.io", "v1", "customresourcedefinitions", crd) == [
        "widgets.example.com", "Namespaced", "v1(storage),v1beta1", "2024-05-01T10:00:00Z",
        "example.com", "Widget", "wd,wdg", True]


def test_pod_templates():
    template = {"metadata": meta("tpl"), "template": {"metadata": {"labels": {"a": "1"}},
                                                       "spec": TEMPLATE["spec"]}}
    assert row("", "v1", "podtemplates", template) == [
        "tpl", "web,log", "nginx:1.27,fluentbit", "a=1"]


# --------------------------------------------------------------------------------------------
# Custom resources: additionalPrinterColumns
# --------------------------------------------------------------------------------------------


def widgets(columns_: list[dict] | None) -> Resource:
    version = {"name": "v1", "served": True, "storage": True}
    if columns_ is not None:
        version["additionalPrinterColumns"] = columns_
    crd = {"spec": {"group": "example.com", "versions": [version]}}
    return Resource("example.com", "v1", "widgets", "Widget", True, crd=crd)


WIDGET = {
    "metadata": meta("w1", 90, namespace="ns"),
    "spec": {"replicas": 3, "ratio": 1.5, "enabled": True, "labels": {"b": 2, "a": 1},
             "size": 1e6},
    "status": {"conditions": [{"type": "Synced", "status": "False"},
                              {"type": "Ready", "status": "True", "reason": "Up"}],
               "lastSync": ago(600), "broken": "yesterday"},
}


def test_printer_columns_are_evaluated_with_their_types():
    printer_columns = [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string",
         "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
        {"name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled", "priority": 1},
        {"name": "Synced", "type": "date", "jsonPath": ".status.lastSync"},
        {"name": "Broken", "type": "date", "jsonPath": ".status.broken"},
        {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        {"name": "Labels", "type": "string", "jsonPath": ".spec.labels"},
        {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    result = table(widgets(printer_columns), [WIDGET], now=NOW)
    assert [(c["name"], c["type"], c["priority"]) for c in result["columnDefinitions"]][:5] == [
        ("Name", "string", 0), ("Replicas", "integer", 0), ("Ready", "string", 0),
        ("Ratio", "number", 0), ("Enabled", "boolean", 1)]
    assert result["columnDefinitions"][1]["description"] == (
        "Custom resource definition column (in JSONPath format): .spec.replicas")
    assert result["rows"][0]["cells"] == [
        "w1", 3, "True", 1.5, True, "10m", "<invalid>", None, '{"a":1,"b":2}', "1e+06", "90s"]


def test_a_crd_without_printer_columns_shows_name_and_age():
    result = table(widgets(None), [WIDGET], now=NOW)
    assert [(c["name"], c["type"]) for c in result["columnDefinitions"]] == [
        ("Name", "string"), ("Age", "date")]
    assert result["columnDefinitions"][1]["description"].startswith("CreationTimestamp is")
    assert result["rows"][0]["cells"] == ["w1", "90s"]


@pytest.mark.parametrize("path, expected", [
    (".spec.replicas", [3]),
    ("{.spec.replicas}", [3]),
    (".status.conditions[0].type", ["Synced"]),
    (".status.conditions[-1].reason", ["Up"]),
    (".status.conditions[*].type", ["Synced", "Ready"]),
    (".status.conditions[?(@.status!='True')].type", ["Synced"]),
    (".status.conditions[?(@.reason)].type", ["Ready"]),
    (".spec['labels'].a", [1]),
    ("..reason", ["Up"]),
    (".spec.nothing.deeper", []),
    (".spec.replicas.deeper", []),
])
def test_jsonpath(path, expected):
    assert compile_jsonpath(path)(WIDGET) == expected


def test_jsonpath_escaped_dots_name_one_key():
    labelled = {"metadata": {"labels": {"app.kubernetes.io/name": "shop"}}}
    assert compile_jsonpath(r".metadata.labels.app\.kubernetes\.io/name")(labelled) == ["shop"]


# --------------------------------------------------------------------------------------------
# The Table envelope
# --------------------------------------------------------------------------------------------

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "namespace": "default", "resourceVersion": "42",
                    "creationTimestamp": ago(5)},
       "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}}


def test_rows_carry_partial_object_metadata_by_default():
    result = table(resource("", "v1", "pods"), [POD], now=NOW,
                   list_metadata={"resourceVersion": "99", "continue": "abc",
                                  "remainingItemCount": 0})
    assert result["kind"] == "Table" and result["apiVersion"] == "meta.k8s.io/v1"
    assert result["metadata"] == {"resourceVersion": "99", "continue": "abc",
                                  "remainingItemCount": 0}
    assert result["rows"][0]["object"] == {"kind": "PartialObjectMetadata",
                                           "apiVersion": "meta.k8s.io/v1",
                                           "metadata": POD["metadata"]}


def test_include_object_modes():
    pods = resource("", "v1", "pods")
    assert table(pods, [POD], include_object="Object", now=NOW)["rows"][0]["object"] is POD
    assert "object" not in table(pods, [POD], include_object="None", now=NOW)["rows"][0]
    assert table(pods, [POD], include_object="", now=NOW)["rows"][0]["object"]["kind"] == \
        "PartialObjectMetadata"
    with pytest.raises(StatusError) as caught:
        table(pods, [POD], include_object="Everything", now=NOW)
    assert caught.value.code == 400
    assert caught.value.message == 'unrecognized includeObject value: "Everything"'


def test_a_single_object_table_carries_its_resource_version():
    assert table(resource("", "v1", "pods"), [POD], now=NOW)["metadata"] == {
        "resourceVersion": "42"}
    assert table(resource("", "v1", "pods"), [], now=NOW)["rows"] == []


def test_watch_events_after_the_first_leave_out_the_headers():
    result = table(resource("", "v1", "pods"), [POD], now=NOW, no_headers=True)
    assert result["columnDefinitions"] is None
    assert result["rows"][0]["cells"][0] == "web"


def test_descriptions_come_from_the_api_documentation():
    definitions = table(resource("", "v1", "pods"), [], now=NOW)["columnDefinitions"]
    assert definitions[0]["description"].startswith("Name must be unique within a namespace.")
    assert definitions[5]["description"].startswith("podIP address allocated to the pod.")
    assert definitions[6]["description"].startswith("NodeName indicates in which node")
    assert all(set(d) == {"name", "type", "format", "description", "priority"}
               for d in definitions)
