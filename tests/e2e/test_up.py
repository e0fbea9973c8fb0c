"""``sampan up`` as the whole single-node cluster: the machine itself is a Ready node that runs
real containers, and Ctrl-C leaves the machine as it found it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from tests.cluster import KUBECTL, SAMPAN, free_port, stop_process
from tests.e2e.nodecluster import BUSYBOX, wait_for


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> str:
    r = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                       text=True, timeout=90)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout


def leftovers(tag: str, data_dir: Path) -> dict:
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(data_dir) in line or tag in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "route", "show", "proto", "165"], capture_output=True,
                            text=True).stdout
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/sampan-{tag}")]
    return {"mounts": mounts, "bridge": f"spu{tag}" in links, "nft": tag in tables,
            "routes": routes.strip(), "cgroups": cgroups,
            "run dir": Path(f"/run/sampan/up-{tag}").exists()}


def http(url: str, host: str = "", data: bytes | None = None) -> tuple[int, str]:
    import ssl
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data, headers={"Host": host} if host else {})
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def test_up_runs_the_whole_cloud_and_stops_clean(tmp_path: Path) -> None:
    """`sampan up --sample-app`: the node runs pods with cluster DNS, the guestbook answers
    through the ingress by its domain (HTTP and HTTPS), an image pushed to the control plane's
    registry runs, and Ctrl-C leaves nothing behind."""
    tag = secrets.token_hex(3)
    data_dir = tmp_path / "cluster"
    node = f"up-{tag}"
    ports = {name: free_port() for name in ("api", "kubelet", "registry", "http", "https")}
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen(
        [SAMPAN, "up", "--data-dir", str(data_dir), "--port", str(ports["api"]),
         "--bind-address", "127.0.0.1", "--node-name", node, "--bridge", f"spu{tag}",
         "--cgroup-root", f"/sampan-{tag}/{node}", "--kubelet-port", str(ports["kubelet"]),
         "--registry-port", str(ports["registry"]), "--ingress-http-port", str(ports["http"]),
         "--ingress-https-port", str(ports["https"]), "--sample-app"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    kubeconfig = data_dir / "admin.kubeconfig"
    up_log = lambda: (tmp_path / "up.log").read_text(errors="replace")[-3000:]  # noqa: E731
    try:
        def node_ready() -> bool:
            if not kubeconfig.exists():
                return False
            out = kubectl(kubeconfig, "get", "node", node, "-o",
                          "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            return out.strip() == "True"
        wait_for(node_ready, 90, "the machine's node Ready", up_log)
        text = (tmp_path / "up.log").read_text(errors="replace")
        assert "join a node  sampan agent --server" in text and "--token K10" in text, text
        kubectl(kubeconfig, "run", "hello", f"--image={BUSYBOX}", "--", "sleep", "3600")
        kubectl(kubeconfig, "wait", "pod/hello", "--for=condition=Ready", "--timeout=60s")
        pod = json.loads(kubectl(kubeconfig, "get", "pod", "hello", "-o", "json"))
        assert pod["spec"]["nodeName"] == node
        assert pod["status"]["podIP"].startswith("10.42.")
        # cluster DNS through the kube-dns Service, served by the node
        out = kubectl(kubeconfig, "exec", "hello", "--", "nslookup",
                      "kubernetes.default.svc.cluster.local")
        assert "10.43.0.1" in out, out

        # the sample app, by its domain through the ingress
        base = f"http://127.0.0.1:{ports['http']}"
        wait_for(lambda: http(f"{base}/cgi-bin/entries", "guestbook.localhost")[0] == 200, 120,
                 "the guestbook through the ingress", up_log)
        status, body = http(f"{base}/", "guestbook.localhost")
        assert status == 200 and "Guestbook" in body
        status, body = http(f"{base}/cgi-bin/entries", "guestbook.localhost",
                            data=b"entry=signed+by+the+up+test")
        assert status == 201, body
        assert "signed by the up test" in http(f"{base}/cgi-bin/entries",
                                               "guestbook.localhost")[1]
        # the machine itself reaches a ClusterIP (the service range is routed to the bridge,
        # peer-route syncs leave that route alone)
        frontend_ip = kubectl(kubeconfig, "get", "service", "-n", "guestbook",
                              "guestbook-frontend", "-o", "jsonpath={.spec.clusterIP}").strip()
        assert http(f"http://{frontend_ip}/")[0] == 200
        status, _ = http(f"https://127.0.0.1:{ports['https']}/", "guestbook.localhost")
        assert status == 200
        assert http(f"{base}/", "nothing.localhost")[0] == 404
        ingress = json.loads(kubectl(kubeconfig, "get", "ingress", "-n", "guestbook",
                                     "guestbook", "-o", "json"))
        assert ingress["status"]["loadBalancer"]["ingress"] == [{"ip": "127.0.0.1"}]

        # an image pushed to the control plane's registry runs on the node
        registry = f"127.0.0.1:{ports['registry']}"
        token = (data_dir / "pki" / "admin.token").read_text().strip()
        push = subprocess.run(
            [SAMPAN, "image", "--data-dir", str(data_dir / "agent"), "push", BUSYBOX,
             f"{registry}/tools/busybox:pushed", "--creds", f"any:{token}",
             "--ca-file", str(data_dir / "pki" / "ca.crt")],
            capture_output=True, text=True, timeout=120)
        assert push.returncode == 0, push.stderr
        refused = subprocess.run(
            [SAMPAN, "image", "--data-dir", str(data_dir / "agent"), "push", BUSYBOX,
             f"{registry}/tools/busybox:nope", "--creds", "any:not-a-token",
             "--ca-file", str(data_dir / "pki" / "ca.crt")],
            capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr
        kubectl(kubeconfig, "run", "pushed", f"--image={registry}/tools/busybox:pushed",
                "--image-pull-policy=Always", "--", "sleep", "3600")
        kubectl(kubeconfig, "wait", "pod/pushed", "--for=condition=Ready", "--timeout=90s")
    finally:
        stop_process(proc, signal.SIGINT, 60)
        log.close()
    assert proc.returncode == 0, up_log()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(leftovers(tag, data_dir).values()):
        time.sleep(0.5)
    assert not any(leftovers(tag, data_dir).values()), leftovers(tag, data_dir)
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    for name, port in ports.items():
        assert f":{port} " not in listening, f"{name} port {port} still open"
