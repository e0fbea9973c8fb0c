"""The API server as a process: durable across kill -9, and several servers on one etcd."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
import uuid


from tests.cluster import Server, start_server
from tests.etcdutil import start_etcd_cluster


def call(server: Server, method: str, path: str, body: dict | None = None,
         token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token or server.token()}")
    try:
        with urllib.request.urlopen(request, context=server.ssl_context(), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"n": name}}


def test_acknowledged_writes_survive_kill_9(tmp_path):
    server = start_server(tmp_path / "data")
    created = []
    try:
        for i in range(40):
            code, obj = call(server, "POST", "/api/v1/namespaces/default/configmaps",
                             configmap(f"durable-{i}"))
            assert code == 201
            created.append(int(obj["metadata"]["resourceVersion"]))
    finally:
        server.stop(signal.SIGKILL)
    restarted = start_server(tmp_path / "data", port=server.port)
    try:
        code, listed = call(restarted, "GET", "/api/v1/namespaces/default/configmaps")
        assert code == 200
        names = {item["metadata"]["name"] for item in listed["items"]}
        assert {f"durable-{i}" for i in range(40)} <= names
        assert int(listed["metadata"]["resourceVersion"]) >= max(created)
        code, obj = call(restarted, "POST", "/api/v1/namespaces/default/configmaps",
                         configmap("after-restart"))
        assert code == 201 and int(obj["metadata"]["resourceVersion"]) > max(created)
        # The restarted server's watch cache starts at its load: older versions are gone (410),
        # told as upstream tells it, in an ERROR event.
        request = urllib.request.Request(
            restarted.url + "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2")
        request.add_header("Authorization", f"Bearer {restarted.token()}")
        with urllib.request.urlopen(request, context=restarted.ssl_context(), timeout=10) as r:
            event = json.loads(r.readline())
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        assert event["object"]["reason"] == "Expired"
    finally:
        restarted.stop()


def test_sigterm_stops_cleanly(tmp_path):
    server = start_server(tmp_path / "data")
    assert server.stop(signal.SIGTERM) == 0


def test_two_api_servers_share_one_etcd_cluster(tmp_path):
    etcd = start_etcd_cluster(3, tmp_path / "etcd")
    prefix = f"/ha-{uuid.uuid4().hex[:8]}"
    args = ["--store", "etcd", "--etcd-endpoints", ",".join(etcd.client_urls),
            "--etcd-prefix", prefix]
    first = start_server(tmp_path / "a", extra=args)
    second = None
    try:
        second = start_server(tmp_path / "b", extra=args)
        code, obj = call(first, "POST", "/api/v1/namespaces/default/configmaps", configmap("shared"))
        assert code == 201
        # A consistent read on the other server sees the write at once.
        code, seen = call(second, "GET", "/api/v1/namespaces/default/configmaps/shared",
                          token=second.token())
        assert code == 200 and seen["metadata"]["uid"] == obj["metadata"]["uid"]
        # Optimistic concurrency holds across servers.
        stale = dict(seen, data={"n": "from-b"})
        code, _ = call(second, "PUT", "/api/v1/namespaces/default/configmaps/shared", stale,
                       token=second.token())
        assert code == 200
        stale_again = dict(obj, data={"n": "from-a"})
        code, status = call(first, "PUT", "/api/v1/namespaces/default/configmaps/shared", stale_again)
        assert code == 409 and status["reason"] == "Conflict"
        # The cluster keeps serving when one etcd member dies. A write in flight during the
        # leader election gets 503 (outcome unknown) and the client retries, as clients do.
        etcd.kill(0)
        deadline = time.monotonic() + 30
        while True:
            code, _ = call(first, "POST", "/api/v1/namespaces/default/configmaps",
                           configmap("after-kill"))
            if code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert code in (201, 409)  # 409: an earlier attempt did land
        code, _ = call(second, "GET", "/api/v1/namespaces/default/configmaps/after-kill",
                       token=second.token())
        assert code == 200
    finally:
        first.stop()
        if second is not None:
            second.stop()
        etcd.stop()
