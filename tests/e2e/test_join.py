"""Joining a node with nothing but the join token the server prints (``sampan agent --server
URL --token K10<sha256 of the CA>::node:<secret>``), as another machine would: the agent
fetches the CA from the public kube-public/cluster-info, pins it to the token's hash, and
registers with the secret. A wrong hash or a wrong secret is refused with a clear error."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from tests.e2e.nodecluster import BUSYBOX, NodeCluster, start_node_cluster, wait_for




@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> NodeCluster:
    c = start_node_cluster(tmp_path_factory.mktemp("join"))
    try:
        yield c
    finally:
        c.stop()


def run_agent_once(cluster: NodeCluster, name: str, token: str, *extra: str,
                   timeout: float = 60) -> subprocess.CompletedProcess:
    """Start ``sampan agent --server URL --token TOKEN`` on a fresh test host and wait for it
    to give up (it must: the tests give it a token that cannot work)."""
    host = cluster.net.add_host(name)
    data_dir = cluster.work / name
    command = host.agent_command(["--server", cluster.server.url, "--token", token], data_dir,
                                 *extra)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the agent did not give up on a bad join token:\n"
                             f"{e.stderr!r}") from e


def node_exists(cluster: NodeCluster, name: str) -> bool:
    return cluster.kubectl_run("get", "node", name, check=False).returncode == 0


def test_agent_joins_with_the_join_token_alone_and_runs_a_pod(cluster: NodeCluster) -> None:
    host = cluster.join_node("joined", cluster.join_token())
    # The CA it trusts is the one it discovered and checked against the token's hash.
    server_ca = (cluster.server.data_dir / "pki" / "ca.crt").read_bytes()
    assert host.data_dir is not None
    assert (host.data_dir / "pki" / "ca.crt").read_bytes() == server_ca

    ns = cluster.namespace()
    cluster.apply(json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
        "spec": {"nodeName": "joined", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": BUSYBOX,
                                 "command": ["sh", "-c", "echo joined-ok; sleep 3600"]}]}}), ns)
    cluster.wait_pod(ns, "hello")
    # The API server reaches the joined agent (logs, exec) with its kubelet-client
    # certificate, which the agent verifies against the discovered CA.
    wait_for(lambda: "joined-ok" in cluster.kubectl_run("logs", "-n", ns, "hello",
                                                        check=False).stdout,
             30, "the pod's log through the API server")
    r = cluster.exec(ns, "hello", "cat", "/etc/resolv.conf")
    assert r.returncode == 0 and "nameserver 10.43.0.10" in r.stdout, r
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_join_token_whose_hash_does_not_match_the_ca_is_refused(cluster: NodeCluster) -> None:
    good = cluster.join_token()
    secret = good.partition("::node:")[2]
    wrong_hash = f"K10{hashlib.sha256(b'some other CA').hexdigest()}::node:{secret}"
    r = run_agent_once(cluster, "wrong-ca", wrong_hash)
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "does not match the join token's hash" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert not node_exists(cluster, "wrong-ca")

    r = run_agent_once(cluster, "malformed", "K10abcdef::node:" + secret)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "malformed join token" in r.stderr, r.stderr
    assert not node_exists(cluster, "malformed")


def test_join_token_with_a_wrong_secret_fails_to_register_clearly(cluster: NodeCluster) -> None:
    """The CA is right (given as a file, so that this checks registration alone), the secret
    is not: the API server answers 401 and the agent must say so."""
    good = cluster.join_token()
    wrong_secret = good.partition("::node:")[0] + "::node:not-the-node-token"
    ca_file = str(cluster.server.data_dir / "pki" / "ca.crt")
    r = run_agent_once(cluster, "wrong-secret", wrong_secret, "--ca-file", ca_file)
    assert r.returncode != 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    # One line that says the server refused the token, not a traceback.
    assert "401" in r.stderr or "Unauthorized" in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.startswith("sampan agent: "), r.stderr[-3000:]
    assert not node_exists(cluster, "wrong-secret")
