"""The pod status the agent writes: what kubectl's READY / STATUS / RESTARTS columns read."""

from __future__ import annotations

from sampan.node.cri import ContainerStatus, Sandbox, SandboxConfig, State
from sampan.node.podworkers import Backoff
from sampan.node.status import PodView, Waiting, get_phase, pod_status, qos

NOW = "2026-11-24T10:00:00Z"


def pod(policy="Always", containers=("app",), init=(), sidecars=(), **spec):
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "1"},
            "spec": {"restartPolicy": policy,
                     "containers": [{"name": n, "image": "busybox"} for n in containers],
                     "initContainers": [{"name": n, "image": "busybox"} for n in init] +
                     [{"name": n, "image": "busybox", "restartPolicy": "Always"}
                      for n in sidecars], **spec},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"}]}}


def ctr(name, state, attempt=0, code=0, reason="", cid=None):
    return ContainerStatus(id=cid or f"{name}-{attempt}", sandbox_id="s", name=name,
                           attempt=attempt, state=state, image_ref="busybox", image_id="sha256:x",
                           created_at=100.0 + attempt, started_at=101.0 + attempt,
                           finished_at=102.0 + attempt if state == State.EXITED else 0.0,
                           exit_code=code, reason=reason)


def sandbox():
    return Sandbox(id="s", config=SandboxConfig(uid="u1", name="p", namespace="ns"),
                   state=State.RUNNING, created_at=1.0, ips=["10.42.0.7"])


def status(p, containers, waiting=None, ready=lambda n: True, **kw):
    view = PodView(sandbox=sandbox(), containers=containers, waiting=waiting or {}, ready=ready,
                   **kw)
    return pod_status(p, view, host_ip="10.0.0.1", now=NOW)


def test_new_pod_is_pending_container_creating():
    s = status(pod(), {})
    assert s["phase"] == "Pending"
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert s["podIP"] == "10.42.0.7" and s["hostIP"] == "10.0.0.1"
    types = [c["type"] for c in s["conditions"]]
    assert types == ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                     "PodScheduled"]
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == "containers with unready status: [app]"
    assert next(c for c in s["conditions"] if c["type"] == "PodScheduled")["lastTransitionTime"] == "t0"


def test_running_and_ready():
    s = status(pod(), {"app": [ctr("app", State.RUNNING)]})
    assert s["phase"] == "Running"
    c = s["containerStatuses"][0]
    assert c["ready"] and c["started"] and "running" in c["state"]
    assert c["containerID"] == "sampan://app-0"
    assert all(x["status"] == "True" for x in s["conditions"])


def test_readiness_probe_failing_is_not_ready():
    s = status(pod(), {"app": [ctr("app", State.RUNNING)]}, ready=lambda n: False)
    assert s["phase"] == "Running"
    assert not s["containerStatuses"][0]["ready"]


def test_crash_loop_shows_waiting_and_last_state():
    history = [ctr("app", State.EXITED, attempt=2, code=1)]
    s = status(pod(), {"app": history},
               waiting={"app": Waiting("CrashLoopBackOff", "back-off 20s restarting failed")})
    c = s["containerStatuses"][0]
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["lastState"]["terminated"]["exitCode"] == 1
    assert c["lastState"]["terminated"]["reason"] == "Error"
    assert c["restartCount"] == 2
    assert s["phase"] == "Running"  # restartPolicy Always: restarting


def test_restarted_container_reports_previous_termination():
    history = [ctr("app", State.RUNNING, attempt=1),
               ctr("app", State.EXITED, attempt=0, code=137, reason="OOMKilled")]
    c = status(pod(), {"app": history})["containerStatuses"][0]
    assert c["restartCount"] == 1
    assert c["lastState"]["terminated"]["reason"] == "OOMKilled"


def test_phases_by_restart_policy():
    done = {"app": [ctr("app", State.EXITED, code=0)]}
    failed = {"app": [ctr("app", State.EXITED, code=3)]}
    assert status(pod("Never"), done)["phase"] == "Succeeded"
    assert status(pod("Never"), failed)["phase"] == "Failed"
    assert status(pod("OnFailure"), done)["phase"] == "Succeeded"
    assert status(pod("OnFailure"), failed)["phase"] == "Running"
    assert status(pod("Always"), done)["phase"] == "Running"
    succeeded = status(pod("Never"), done)
    ready = next(c for c in succeeded["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PodCompleted"


def test_terminal_phase_is_kept():
    p = pod("Never")
    p["status"]["phase"] = "Succeeded"
    assert status(p, {"app": [ctr("app", State.RUNNING)]})["phase"] == "Succeeded"


def test_init_containers():
    p = pod(init=("setup",))
    s = status(p, {"setup": [ctr("setup", State.RUNNING)]}, initializing=True)
    assert s["phase"] == "Pending"
    assert s["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    init = next(c for c in s["conditions"] if c["type"] == "Initialized")
    assert init["status"] == "False" and init["reason"] == "ContainersNotInitialized"
    assert init["message"] == "containers with incomplete status: [setup]"
    s = status(p, {"setup": [ctr("setup", State.EXITED)], "app": [ctr("app", State.RUNNING)]})
    assert s["phase"] == "Running"
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_failed_init_container_with_never_fails_the_pod():
    p = pod("Never", init=("setup",))
    s = status(p, {"setup": [ctr("setup", State.EXITED, code=1)]}, initializing=True)
    assert s["phase"] == "Failed"


def test_failed_init_container_with_always_stays_pending():
    p = pod("Always", init=("setup",))
    s = status(p, {"setup": [ctr("setup", State.EXITED, code=1)]},
               waiting={"setup": Waiting("CrashLoopBackOff", "back-off")}, initializing=True)
    assert s["phase"] == "Pending"


def test_sidecar_must_start_before_pending_ends():
    p = pod(sidecars=("proxy",))
    s = status(p, {"proxy": [ctr("proxy", State.RUNNING)]}, started=lambda n: False,
               initializing=True)
    assert s["phase"] == "Pending"
    s = status(p, {"proxy": [ctr("proxy", State.RUNNING)], "app": [ctr("app", State.RUNNING)]})
    assert s["phase"] == "Running"


def test_readiness_gates():
    p = pod(readinessGates=[{"conditionType": "example.com/lb"}])
    s = status(p, {"app": [ctr("app", State.RUNNING)]})
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
    p["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    s = status(p, {"app": [ctr("app", State.RUNNING)]})
    assert next(c for c in s["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert any(c["type"] == "example.com/lb" for c in s["conditions"])


def test_transition_time_kept_while_status_unchanged():
    p = pod()
    first = status(p, {"app": [ctr("app", State.RUNNING)]})
    p["status"] = first
    later = pod_status(p, PodView(sandbox=sandbox(), containers={"app": [ctr("app", State.RUNNING)]}),
                       host_ip="10.0.0.1", now="2026-11-24T11:00:00Z")
    assert [c["lastTransitionTime"] for c in later["conditions"]] == \
        [c["lastTransitionTime"] for c in first["conditions"]]


def test_get_phase_unknown_container_is_pending():
    assert get_phase(pod(), [], []) == "Pending"


def test_qos_classes():
    p = pod()
    assert qos(p) == "BestEffort"
    p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    assert qos(p) == "Burstable"
    p["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"},
                                               "requests": {"cpu": "1", "memory": "1Gi"}}
    assert qos(p) == "Guaranteed"


def test_backoff_doubles_to_the_cap_and_is_forgotten():
    b = Backoff(10, 300)
    assert b.in_backoff_since("k", 0, now=0) == 0
    b.next("k", now=0)
    assert b.delay("k") == 10
    assert b.in_backoff_since("k", 100, now=105) == 5
    for i in range(10):
        b.next("k", now=1 + i)
    assert b.delay("k") == 300
    assert b.in_backoff_since("k", 100, now=100 + 700) == 0  # 2×max without failure: reset
    b.next("k", now=900)
    assert b.delay("k") == 10
