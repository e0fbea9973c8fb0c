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


def test_up_runs_pods_on_the_machine_and_stops_clean(tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    data_dir = tmp_path / "cluster"
    node = f"up-{tag}"
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen(
        [SAMPAN, "up", "--data-dir", str(data_dir), "--port", str(free_port()),
         "--bind-address", "127.0.0.1", "--node-name", node, "--bridge", f"spu{tag}",
         "--cgroup-root", f"/sampan-{tag}/{node}", "--kubelet-port", str(free_port())],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    kubeconfig = data_dir / "admin.kubeconfig"
    try:
        def node_ready() -> bool:
            if not kubeconfig.exists():
                return False
            out = kubectl(kubeconfig, "get", "node", node, "-o",
                          "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            return out.strip() == "True"
        wait_for(node_ready, 90, "the machine's node Ready",
                 lambda: (tmp_path / "up.log").read_text(errors="replace")[-3000:])
        kubectl(kubeconfig, "run", "hello", f"--image={BUSYBOX}", "--", "sleep", "3600")
        kubectl(kubeconfig, "wait", "pod/hello", "--for=condition=Ready", "--timeout=60s")
        pod = json.loads(kubectl(kubeconfig, "get", "pod", "hello", "-o", "json"))
        assert pod["spec"]["nodeName"] == node
        assert pod["status"]["podIP"].startswith("10.42.")
    finally:
        stop_process(proc, signal.SIGINT, 60)
        log.close()
    assert proc.returncode == 0, (tmp_path / "up.log").read_text(errors="replace")[-3000:]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(leftovers(tag, data_dir).values()):
        time.sleep(0.5)
    assert not any(leftovers(tag, data_dir).values()), leftovers(tag, data_dir)
