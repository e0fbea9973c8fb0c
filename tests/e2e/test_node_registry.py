"""Images from a registry: skopeo pushes to Sampan's registry (token auth), a node agent pulls
with an imagePullSecret and runs the image; without the secret the pull is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cluster import SAMPAN, free_port, stop_process
from tests.e2e.nodecluster import NodeCluster, start_node_cluster, wait_for


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("registry")
    cluster = start_node_cluster(work)
    port = free_port()
    address = f"{cluster.net.gateway}:{port}"
    log = open(work / "registry.log", "wb")
    registry = subprocess.Popen(
        [SAMPAN, "registry", "--data-dir", str(work / "registry-data"), "--listen", address,
         "--kubeconfig", cluster.server.kubeconfig], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
                break
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, asking for a token
                    break
            except OSError:
                pass
            time.sleep(0.2)
        cluster.add_node("node-a", "--insecure-registry", address)
        yield cluster, address, work
    finally:
        stop_process(registry, signal.SIGTERM, 10)
        cluster.stop()


def test_push_with_skopeo_then_pull_with_an_image_pull_secret(setup) -> None:
    cluster, address, work = setup
    from sampan.node.images.build import busybox_image, write_oci_layout

    layout = work / "oci"
    write_oci_layout(layout, busybox_image(), "1.35")
    token = cluster.server.token()
    image = f"{address}/team/busybox:1.35"
    push = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                           f"admin:{token}", f"oci:{layout}:1.35", f"docker://{image}"],
                          capture_output=True, text=True, timeout=120)
    assert push.returncode == 0, push.stderr
    ns = cluster.namespace()
    cluster.kubectl("create", "secret", "docker-registry", "regcred", "-n", ns,
                    f"--docker-server={address}", "--docker-username=admin",
                    f"--docker-password={token}")
    cluster.kubectl("run", "pulled", "-n", ns, f"--image={image}",
                    '--overrides={"spec": {"imagePullSecrets": [{"name": "regcred"}]}}',
                    "--", "sleep", "3600")
    # Always: with IfNotPresent the node's copy would be used without credentials (as upstream
    # does unless its alpha KubeletEnsureSecretPulledImages is on).
    cluster.kubectl("run", "refused", "-n", ns, f"--image={image}", "--image-pull-policy=Always",
                    "--", "sleep", "3600")
    cluster.wait_pod(ns, "pulled", timeout=90)
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=pulled", "-o", "jsonpath={.items[*].message}")
    assert f'Successfully pulled image "{image}"' in events

    def refused() -> bool:
        status = cluster.kubectl("get", "pod", "-n", ns, "refused", "--no-headers").split()
        return len(status) > 2 and status[2] in ("ErrImagePull", "ImagePullBackOff")
    wait_for(refused, 60, "the pull without credentials refused")
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=refused,reason=Failed", "-o",
                             "jsonpath={.items[*].message}")
    assert f'Failed to pull image "{image}"' in events, events
    assert "authoriz" in events or "denied" in events or "401" in events, events
