"""The node agent end to end: real runc containers on a test host, driven by real kubectl."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
import urllib.request

import pytest

from tests.cluster import KUBECTL, free_port
from tests.e2e.nodecluster import BUSYBOX, NodeCluster, http_get, start_node_cluster, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> NodeCluster:
    c = start_node_cluster(tmp_path_factory.mktemp("nodes"))
    try:
        c.add_node("node-a")
        yield c
    finally:
        c.stop()


@pytest.fixture
def ns(cluster: NodeCluster) -> str:
    name = cluster.namespace()
    yield name
    cluster.kubectl_run("delete", "namespace", name, "--wait=false", check=False)


HTTPD = textwrap.dedent(f"""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: web}}
    spec:
      replicas: 2
      selector: {{matchLabels: {{app: web}}}}
      template:
        metadata: {{labels: {{app: web}}}}
        spec:
          containers:
          - name: httpd
            image: {BUSYBOX}
            command: [sh, -c, 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www']
            ports: [{{containerPort: 8080}}]
            readinessProbe:
              httpGet: {{path: /, port: 8080}}
              periodSeconds: 1
    """)


def test_deployment_of_busybox_httpd_reached_by_pod_ip(cluster: NodeCluster, ns: str) -> None:
    cluster.apply(HTTPD, ns)
    cluster.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s",
                    timeout=130)
    pods = cluster.json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    assert len(pods) == 2
    host = cluster.hosts["node-a"]
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert ip.startswith("10.42.")
        body = http_get(host, f"http://{ip}:8080/")
        assert body.strip() == f"hello from {pod['metadata']['name']}"
    table = cluster.kubectl("get", "pods", "-n", ns, "-l", "app=web", "--no-headers")
    for line in table.splitlines():
        name, ready, status, restarts = line.split()[:4]
        assert (ready, status, restarts) == ("1/1", "Running", "0"), table


def test_pod_runs_to_completion(cluster: NodeCluster, ns: str) -> None:
    cluster.kubectl("run", "once", "-n", ns, f"--image={BUSYBOX}", "--restart=Never",
                    "--", "sh", "-c", "echo done; exit 0")
    wait_for(lambda: cluster.pod_phase(ns, "once") == "Succeeded", 90, "pod Succeeded")
    line = cluster.kubectl("get", "pod", "once", "-n", ns, "--no-headers")
    assert line.split()[1:3] == ["0/1", "Completed"], line
    cluster.kubectl("run", "fails", "-n", ns, f"--image={BUSYBOX}", "--restart=Never",
                    "--", "sh", "-c", "exit 3")
    wait_for(lambda: cluster.pod_phase(ns, "fails") == "Failed", 90, "pod Failed")
    pod = cluster.json("get", "pod", "fails", "-n", ns)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")


def pod_manifest(name: str, command: str, *, spec: dict | None = None,
                 container: dict | None = None) -> str:
    """A one-container busybox pod as JSON (kubectl apply takes JSON as well as YAML)."""
    main = {"name": "main", "image": BUSYBOX, "command": ["sh", "-c", command],
            **(container or {})}
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [main], **(spec or {})}}
    return json.dumps(body)


def test_logs_exec_attach_cp_and_top(cluster: NodeCluster, ns: str, tmp_path) -> None:
    cluster.apply(pod_manifest(
        "talk", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done",
        container={"stdin": True, "resources": {"limits": {"memory": "64Mi"}}}), ns)
    cluster.wait_pod(ns, "talk")
    wait_for(lambda: "line 3" in cluster.kubectl("logs", "-n", ns, "talk"), 30, "log lines")
    tail = cluster.kubectl("logs", "-n", ns, "talk", "--tail=2", "--timestamps").splitlines()
    assert len(tail) == 2 and tail[0][:4].isdigit() and " line " in tail[0]
    # exec: output, exit code, stdin
    r = cluster.kubectl_run("exec", "-n", ns, "talk", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                            check=False)
    assert (r.returncode, r.stdout) == (3, "out\n"), r
    assert r.stderr.splitlines() == ["err", "command terminated with exit code 3"], r
    r = cluster.kubectl_run("exec", "-i", "-n", ns, "talk", "--", "sh", "-c", "wc -c",
                            input="x" * 100000)
    assert r.stdout.strip() == "100000"
    # the container's own view: hostname, resolv.conf, hosts, limits
    hostname = cluster.kubectl("exec", "-n", ns, "talk", "--", "hostname").strip()
    assert hostname == "talk"
    hosts = cluster.kubectl("exec", "-n", ns, "talk", "--", "cat", "/etc/hosts")
    assert "Kubernetes-managed hosts file" in hosts and "\ttalk" in hosts
    token = cluster.kubectl("exec", "-n", ns, "talk", "--", "cat",
                            "/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    assert token == ns
    # kubectl cp both ways
    src = tmp_path / "data.bin"
    src.write_bytes(bytes(range(256)) * 4096)
    cluster.kubectl("cp", str(src), f"{ns}/talk:/tmp/data.bin")
    back = tmp_path / "back.bin"
    cluster.kubectl("cp", f"{ns}/talk:/tmp/data.bin", str(back))
    assert back.read_bytes() == src.read_bytes()
    # attach: the container's stdout arrives
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", cluster.server.kubeconfig, "attach", "-n",
                             ns, "talk"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("line "), line
    finally:
        proc.kill()
        proc.wait(10)
    # kubectl top (metrics.k8s.io from the agents' /metrics/resource)
    def top() -> bool:
        r = cluster.kubectl_run("top", "pod", "-n", ns, "talk", "--no-headers", check=False)
        return r.returncode == 0 and r.stdout.split()[0] == "talk"
    wait_for(top, 60, "kubectl top pod")
    r = cluster.kubectl_run("top", "node", "--no-headers")
    assert "node-a" in r.stdout


def test_port_forward(cluster: NodeCluster, ns: str) -> None:
    cluster.apply(pod_manifest(
        "pf", "mkdir -p /w && echo forwarded > /w/index.html && exec httpd -f -p 127.0.0.1:9000 -h /w"),
        ns)
    cluster.wait_pod(ns, "pf")
    port = free_port()
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", cluster.server.kubeconfig, "port-forward",
                             "-n", ns, "pod/pf", f"{port}:9000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "Forwarding from" in proc.stdout.readline()
        for _ in range(3):  # several connections through one port-forward
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                assert r.read().decode().strip() == "forwarded"
    finally:
        proc.kill()
        proc.wait(10)


def test_probes_restart_and_readiness(cluster: NodeCluster, ns: str) -> None:
    # liveness (exec) fails after the file is removed → restarted, RESTARTS counts it
    cluster.apply(pod_manifest(
        "live", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600",
        container={"livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                     "periodSeconds": 1, "failureThreshold": 2},
                   "startupProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                    "periodSeconds": 1},
                   "readinessProbe": {"tcpSocket": {"port": 8081}, "periodSeconds": 1}}), ns)

    def restarted() -> bool:
        pod = cluster.json("get", "pod", "-n", ns, "live")
        statuses = pod["status"].get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) >= 1
    wait_for(restarted, 90, "liveness restart")
    pod = cluster.json("get", "pod", "-n", ns, "live")
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is False  # nothing listens on 8081
    assert status["lastState"]["terminated"]["exitCode"] == 137
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=live", "-o", "jsonpath={.items[*].message}")
    assert "Liveness probe failed" in events
    assert "failed liveness probe, will be restarted" in events


def test_oom_killed(cluster: NodeCluster, ns: str) -> None:
    cluster.apply(pod_manifest(
        "hog", "mkdir /m && mount -t tmpfs none /m 2>/dev/null; "
               "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64; sleep 5",
        spec={"restartPolicy": "Never"},
        container={"resources": {"limits": {"memory": "16Mi"}}}), ns)

    def oom() -> bool:
        pod = cluster.json("get", "pod", "-n", ns, "hog")
        term = (pod["status"].get("containerStatuses") or [{}])[0].get("state", {}).get(
            "terminated")
        return bool(term) and term["reason"] == "OOMKilled"
    wait_for(oom, 90, "OOMKilled")
    line = cluster.kubectl("get", "pod", "-n", ns, "hog", "--no-headers")
    assert "OOMKilled" in line


def test_crash_loop_and_bad_commands(cluster: NodeCluster, ns: str) -> None:
    cluster.apply(pod_manifest("crash", "echo bye; exit 1"), ns)
    cluster.kubectl("run", "nocmd", "-n", ns, f"--image={BUSYBOX}", "--command", "--",
                    "/no/such/binary")
    cluster.kubectl("run", "noimage", "-n", ns, "--image=127.0.0.1:1/nope:1")

    def status(name: str) -> str:
        r = cluster.kubectl_run("get", "pod", "-n", ns, name, "--no-headers", check=False)
        return r.stdout.split()[2] if r.stdout.split() else ""
    wait_for(lambda: status("crash") == "CrashLoopBackOff", 90, "CrashLoopBackOff")
    wait_for(lambda: status("nocmd") in ("RunContainerError", "CrashLoopBackOff"), 90,
             "RunContainerError")
    wait_for(lambda: status("noimage") in ("ErrImagePull", "ImagePullBackOff"), 90,
             "ErrImagePull")
    wait_for(lambda: status("noimage") == "ImagePullBackOff", 60, "ImagePullBackOff")
    assert cluster.kubectl("logs", "-n", ns, "crash", "--previous").strip() == "bye"


def test_graceful_termination(cluster: NodeCluster, ns: str, tmp_path) -> None:
    marker = tmp_path / "term"
    marker.mkdir()
    cluster.apply(pod_manifest(
        "polite", "trap 'echo got-term > /out/term; exit 0' TERM; while true; do sleep 0.1; done",
        spec={"volumes": [{"name": "out", "hostPath": {"path": str(marker), "type": "Directory"}}]},
        container={"volumeMounts": [{"name": "out", "mountPath": "/out"}],
                   "lifecycle": {"preStop": {"exec": {"command": [
                       "sh", "-c", "echo pre-stop > /out/pre"]}}}}), ns)
    cluster.apply(pod_manifest("stubborn", "trap '' TERM; while true; do sleep 0.1; done",
                               spec={"terminationGracePeriodSeconds": 2}), ns)
    cluster.wait_pod(ns, "polite")
    cluster.wait_pod(ns, "stubborn")
    cluster.kubectl("delete", "pod", "-n", ns, "polite", "stubborn", "--timeout=60s", timeout=70)
    assert (marker / "pre").read_text().strip() == "pre-stop"
    assert (marker / "term").read_text().strip() == "got-term"


def test_volumes(cluster: NodeCluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=greeting=hello")
    cluster.kubectl("create", "secret", "generic", "sec", "-n", ns, "--from-literal=password=s3cret")
    cluster.apply(textwrap.dedent(f"""\
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {{name: data}}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {{requests: {{storage: 10Mi}}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: vols, labels: {{tier: web}}}}
        spec:
          containers:
          - name: writer
            image: {BUSYBOX}
            command: [sh, -c, 'echo shared > /scratch/f; echo kept > /data/f; sleep 3600']
            env:
            - name: GREETING
              valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}
            - name: POD_IP
              valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
            - name: MEM_LIMIT
              valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
            envFrom: [{{secretRef: {{name: sec}}, prefix: SEC_}}]
            resources: {{limits: {{memory: 64Mi}}}}
            volumeMounts:
            - {{name: scratch, mountPath: /scratch}}
            - {{name: mem, mountPath: /mem}}
            - {{name: cfg, mountPath: /cfg}}
            - {{name: sec, mountPath: /sec}}
            - {{name: info, mountPath: /info}}
            - {{name: data, mountPath: /data}}
          - name: reader
            image: {BUSYBOX}
            command: [sh, -c, 'sleep 3600']
            volumeMounts: [{{name: scratch, mountPath: /scratch}}]
          volumes:
          - {{name: scratch, emptyDir: {{}}}}
          - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
          - {{name: cfg, configMap: {{name: cfg}}}}
          - {{name: sec, secret: {{secretName: sec}}}}
          - name: info
            downwardAPI:
              items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]
          - {{name: data, persistentVolumeClaim: {{claimName: data}}}}
        """), ns)
    cluster.wait_pod(ns, "vols", timeout=120)

    def sh(container: str, command: str) -> str:
        return cluster.kubectl("exec", "-n", ns, "vols", "-c", container, "--", "sh", "-c",
                               command)
    wait_for(lambda: sh("reader", "cat /scratch/f 2>/dev/null").strip() == "shared", 30,
             "emptyDir shared")
    env = sh("writer", "env")
    assert "GREETING=hello" in env and "SEC_password=s3cret" in env and "MEM_LIMIT=64" in env
    assert "POD_IP=10.42." in env
    assert sh("writer", "cat /cfg/greeting") == "hello"
    assert sh("writer", "cat /sec/password") == "s3cret"
    assert 'tier="web"' in sh("writer", "cat /info/labels")
    assert "tmpfs" in sh("writer", "grep ' /mem ' /proc/mounts")
    assert sh("writer", "cat /data/f").strip() == "kept"
    cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=greeting=updated",
                    "--dry-run=client", "-o", "yaml")
    cluster.kubectl("patch", "configmap", "cfg", "-n", ns, "-p", '{"data":{"greeting":"updated"}}')
    wait_for(lambda: sh("writer", "cat /cfg/greeting") == "updated", 120,
             "configMap update reaches the volume")


def _ids(cluster: NodeCluster, ns: str, name: str) -> tuple[str, str, int]:
    c = cluster.json("get", "pod", "-n", ns, name)["status"]["containerStatuses"][0]
    return c["containerID"], c["state"]["running"]["startedAt"], c["restartCount"]


def test_agent_restart_keeps_containers_and_reboot_recreates_them(cluster: NodeCluster,
                                                                   ns: str) -> None:
    host = cluster.hosts["node-a"]
    cluster.apply(pod_manifest("steady", "sleep 3600"), ns)
    cluster.wait_pod(ns, "steady")
    before = _ids(cluster, ns, "steady")
    host.restart()
    cluster.wait_node_ready("node-a")
    time.sleep(3)  # a few relists and resyncs of the restarted agent
    cluster.wait_pod(ns, "steady")
    assert _ids(cluster, ns, "steady") == before
    assert cluster.kubectl("exec", "-n", ns, "steady", "--", "echo", "alive").strip() == "alive"
    # A machine reboot: every container gone; the agent starts them again.
    host.simulate_reboot()
    host.start(*host.start_args)
    cluster.wait_node_ready("node-a")

    def recreated() -> bool:
        status = cluster.json("get", "pod", "-n", ns, "steady")["status"]
        c = (status.get("containerStatuses") or [{}])[0]
        return c.get("ready") is True and c.get("containerID") != before[0]
    wait_for(recreated, 90, "pod running again after the reboot", host.logs)
    assert _ids(cluster, ns, "steady")[2] >= 1  # restartCount carries on from the logs


def test_deleting_a_pod_leaves_nothing_behind(cluster: NodeCluster, ns: str) -> None:
    host = cluster.hosts["node-a"]
    cluster.kubectl("create", "configmap", "c", "-n", ns, "--from-literal=k=v")

    def snapshot() -> dict:
        return {"mounts": sorted(host.mounts()), "netns": host.pod_netns(),
                "veths": sorted(host.veths()), "pids": len(host.cgroup_pids()),
                "pod cgroups": sorted(str(p) for p in host.cgroups() if "/pod" in str(p))}
    wait_for(lambda: snapshot() == snapshot(), 30, "a quiet node")
    before = snapshot()
    cluster.apply(pod_manifest(
        "leaky", "sleep 3600",
        spec={"volumes": [{"name": "m", "emptyDir": {"medium": "Memory"}},
                          {"name": "c", "configMap": {"name": "c"}}]},
        container={"volumeMounts": [{"name": "m", "mountPath": "/m"},
                                    {"name": "c", "mountPath": "/c"}]}), ns)
    cluster.wait_pod(ns, "leaky")
    during = snapshot()
    assert len(during["mounts"]) > len(before["mounts"])
    assert len(during["netns"]) == len(before["netns"]) + 1
    assert len(during["veths"]) == len(before["veths"]) + 1
    assert during["pids"] > before["pids"]
    cluster.kubectl("delete", "pod", "-n", ns, "leaky", "--timeout=60s", timeout=70)

    def nothing_left() -> bool:
        # Other tests' pods may be going away meanwhile: nothing may be left that was not
        # there before.
        now = snapshot()
        return now["pids"] <= before["pids"] and all(
            set(now[k]) <= set(before[k]) for k in ("mounts", "netns", "veths", "pod cgroups"))
    wait_for(nothing_left, 30, "everything of the pod removed",
             lambda: f"before={before}\nnow={snapshot()}")


def test_init_containers_sidecar_and_host_port(cluster: NodeCluster, ns: str) -> None:
    host = cluster.hosts["node-a"]
    port = 30000 + int(ns[-4:], 16) % 2000
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "staged"},
            "spec": {"terminationGracePeriodSeconds": 2,
                     "volumes": [{"name": "w", "emptyDir": {}}],
                     "initContainers": [
                         {"name": "prepare", "image": BUSYBOX, "command": [
                             "sh", "-c", "echo prepared > /w/index.html"],
                          "volumeMounts": [{"name": "w", "mountPath": "/w"}]},
                         {"name": "sidecar", "image": BUSYBOX, "restartPolicy": "Always",
                          "command": ["sh", "-c", "echo sidecar > /w/side; sleep 3600"],
                          "volumeMounts": [{"name": "w", "mountPath": "/w"}]}],
                     "containers": [
                         {"name": "web", "image": BUSYBOX, "command": [
                             "httpd", "-f", "-p", "8080", "-h", "/w"],
                          "ports": [{"containerPort": 8080, "hostPort": port}],
                          "volumeMounts": [{"name": "w", "mountPath": "/w"}]}]}}
    cluster.apply(json.dumps(body), ns)
    pod = cluster.wait_pod(ns, "staged")
    init = {s["name"]: s for s in pod["status"]["initContainerStatuses"]}
    assert init["prepare"]["state"]["terminated"]["reason"] == "Completed"
    assert "running" in init["sidecar"]["state"]
    line = cluster.kubectl("get", "pod", "-n", ns, "staged", "--no-headers").split()
    assert line[1:3] == ["2/2", "Running"], line
    # hostPort: the node's address answers for the pod
    with urllib.request.urlopen(f"http://{host.ip}:{port}/index.html", timeout=10) as r:
        assert r.read().decode().strip() == "prepared"
    with urllib.request.urlopen(f"http://{host.ip}:{port}/side", timeout=10) as r:
        assert r.read().decode().strip() == "sidecar"


def test_bad_volumes_get_clear_events_and_disturb_nothing(cluster: NodeCluster, ns: str) -> None:
    cluster.apply(pod_manifest("etc", "sleep 3600", spec={"volumes": [
        {"name": "h", "hostPath": {"path": "/etc"}}]},
        container={"volumeMounts": [{"name": "h", "mountPath": "/h"}]}), ns)
    cluster.apply(pod_manifest("nocm", "sleep 3600", spec={"volumes": [
        {"name": "c", "configMap": {"name": "missing"}}]},
        container={"volumeMounts": [{"name": "c", "mountPath": "/c"}]}), ns)
    cluster.apply(pod_manifest("fine", "sleep 3600"), ns)
    cluster.wait_pod(ns, "fine")

    def event(name: str, text: str) -> bool:
        out = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                              f"involvedObject.name={name},reason=FailedMount", "-o",
                              "jsonpath={.items[*].message}")
        return text in out
    wait_for(lambda: event("etc", "/etc"), 60, "FailedMount for a hostPath outside the allowed")
    wait_for(lambda: event("nocm", 'configmap "missing" not found'), 60,
             "FailedMount for a missing configMap")
    for name in ("etc", "nocm"):
        line = cluster.kubectl("get", "pod", "-n", ns, name, "--no-headers").split()
        assert line[2] == "ContainerCreating", line
    cluster.kubectl("create", "configmap", "missing", "-n", ns, "--from-literal=k=v")
    cluster.wait_pod(ns, "nocm", timeout=60)  # the volume appears once its configMap does
