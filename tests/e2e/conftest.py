"""e2e fixtures: a real ``sampan server`` on each store, driven by real kubectl 1.37."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass

import pytest

from tests.cluster import KUBECTL, Server, start_server


@dataclass
class Kubectl:
    server: Server

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        cmd = [KUBECTL, "--kubeconfig", self.server.kubeconfig, *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def __call__(self, *args: str, **kw) -> str:
        return self.run(*args, **kw).stdout

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json"))

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([KUBECTL, "--kubeconfig", self.server.kubeconfig, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _etcd_server(tmp_path_factory) -> tuple[Server, object]:
    from tests.etcdutil import start_etcd_cluster

    etcd = start_etcd_cluster(1, tmp_path_factory.mktemp("etcd"))
    endpoints = ",".join(etcd.client_urls)
    srv = start_server(tmp_path_factory.mktemp("apiserver-etcd"),
                       extra=["--store", "etcd", "--etcd-endpoints", endpoints,
                              "--etcd-prefix", f"/e2e-{uuid.uuid4().hex[:8]}"], controllers=True)
    return srv, etcd


@pytest.fixture(scope="session", params=["sqlite", "etcd"])
def server(request, tmp_path_factory) -> Server:
    etcd = None
    if request.param == "sqlite":
        srv = start_server(tmp_path_factory.mktemp("apiserver-sqlite"), controllers=True)
    else:
        srv, etcd = _etcd_server(tmp_path_factory)
    yield srv
    srv.stop()
    if etcd is not None:
        etcd.stop()


@pytest.fixture(scope="session")
def kubectl(server: Server) -> Kubectl:
    return Kubectl(server)


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    """A fresh namespace per test."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)
