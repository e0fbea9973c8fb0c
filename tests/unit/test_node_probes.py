"""The prober: real HTTP, TCP and gRPC servers on loopback, a fake runtime for exec."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web

from sampan.node import cri
from sampan.node.probes import (
    ProbeError,
    ProbeManager,
    Result,
    go_duration,
    http_headers,
    http_url,
    probe_exec,
    probe_grpc,
    probe_http,
    probe_tcp,
    resolve_port,
)

FAST = {"periodSeconds": 0.02, "timeoutSeconds": 2}


async def eventually(check, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeRuntime:
    """exec_sync answers from a table: command → (exit code, output) or an exception."""

    def __init__(self) -> None:
        self.answers: dict[str, object] = {}
        self.calls: list[tuple[str, list[str]]] = []

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float):
        self.calls.append((container_id, cmd))
        answer = self.answers.get(" ".join(cmd), (0, b""))
        if isinstance(answer, BaseException):
            raise answer
        return answer


class HTTPServer:
    """A loopback HTTP server whose status code the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[web.Request] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        if request.path == "/redirect-local":
            raise web.HTTPFound("/healthz")
        if request.path == "/redirect-away":
            raise web.HTTPFound(f"http://localhost:{self.port}/healthz")
        if request.path == "/loop":
            raise web.HTTPFound("/loop")
        if request.path == "/big":
            return web.Response(body=b"x" * 100_000)
        if request.path == "/slow":
            await asyncio.sleep(0.5)
        return web.Response(status=self.status, text="ok" if self.status < 400 else "bad")

    async def __aenter__(self) -> HTTPServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def pod(containers: list[dict], uid: str = "uid-1") -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "uid": uid},
            "spec": {"containers": containers}}


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []
        self.changes: list[str] = []

    def record(self, pod, event_type, reason, message) -> None:
        self.items.append((event_type, reason, message))

    def changed(self, uid) -> None:
        self.changes.append(uid)

    def messages(self) -> list[str]:
        return [m for _, _, m in self.items]


@pytest.fixture
async def manager():
    events = Events()
    runtime = FakeRuntime()
    m = ProbeManager(runtime, events.record, events.changed)
    m.events, m.fake = events, runtime
    yield m
    await m.close()


# -- probers -------------------------------------------------------------------------------------


async def test_http_probe_status_codes_and_headers():
    import aiohttp

    async with HTTPServer() as server, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}/healthz"
        headers = http_headers({"httpHeaders": [{"name": "X-Check", "value": "yes"}]})
        assert await probe_http(session, url, headers, 2) == (Result.SUCCESS, "ok")
        request = server.requests[-1]
        assert request.headers["User-Agent"] == "kube-probe/1.37"
        assert request.headers["X-Check"] == "yes"
        server.status = 500
        assert await probe_http(session, url, headers, 2) == (
            Result.FAILURE, "HTTP probe failed with statuscode: 500")
        server.status = 200
        base = f"http://127.0.0.1:{server.port}"
        assert (await probe_http(session, base + "/redirect-local", headers, 2))[0] == Result.SUCCESS
        assert server.requests[-1].path == "/healthz"
        result, message = await probe_http(session, base + "/redirect-away", headers, 2)
        assert result == Result.WARNING and message.startswith("Probe terminated redirects")
        result, message = await probe_http(session, base + "/loop", headers, 2)
        assert (result, message) == (Result.FAILURE, f'Get "{base}/loop": stopped after 10 redirects')
        result, body = await probe_http(session, base + "/big", headers, 2)
        assert result == Result.SUCCESS and len(body) == 10 * 1024
        result, message = await probe_http(session, base + "/slow", headers, 0.2)
        assert result == Result.FAILURE and "context deadline exceeded" in message


async def test_http_probe_connection_refused():
    import aiohttp

    port = free_port()
    async with aiohttp.ClientSession() as session:
        result, message = await probe_http(session, f"http://127.0.0.1:{port}/", [], 2)
    assert result == Result.FAILURE
    assert message == (f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: '
                       "connect: connection refused")


async def test_tcp_probe():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await probe_tcp("127.0.0.1", port, 2) == (Result.SUCCESS, "")
    finally:
        server.close()
        await server.wait_closed()
    assert await probe_tcp("127.0.0.1", port, 2) == (
        Result.FAILURE, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


async def test_exec_probe():
    runtime = FakeRuntime()
    runtime.answers["cat /tmp/healthy"] = (1, b"cat: can't open '/tmp/healthy': No such file\n")
    runtime.answers["sleep 10"] = TimeoutError()
    runtime.answers["boom"] = cri.CRIError("RunContainerError", "container not running")
    assert await probe_exec(runtime, "c1", ["true"], 1) == (Result.SUCCESS, "")
    assert await probe_exec(runtime, "c1", ["cat", "/tmp/healthy"], 1) == (
        Result.FAILURE, "cat: can't open '/tmp/healthy': No such file\n")
    assert await probe_exec(runtime, "c1", ["sleep", "10"], 1) == (
        Result.FAILURE, 'command "sleep 10" timed out')
    with pytest.raises(ProbeError, match="container not running"):
        await probe_exec(runtime, "c1", ["boom"], 1)


async def test_grpc_probe():
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await servicer.set("db", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await probe_grpc("127.0.0.1", port, "", 2) == (Result.SUCCESS, "service healthy")
        assert await probe_grpc("127.0.0.1", port, "db", 2) == (
            Result.FAILURE, 'service unhealthy (responded with "NOT_SERVING")')
        result, message = await probe_grpc("127.0.0.1", port, "unknown", 2)
        assert result == Result.FAILURE and "NotFound" in message
    finally:
        await server.stop(None)
    result, message = await probe_grpc("127.0.0.1", free_port(), "", 0.3)
    assert result == Result.FAILURE and message.startswith("timeout: failed to connect service")


def test_targets():
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(80, container) == 80
    assert resolve_port("8081", container) == 8081
    assert resolve_port("http", container) == 8080
    with pytest.raises(ProbeError, match='parsing "grpc": invalid syntax'):
        resolve_port("grpc", container)
    assert http_url({"port": "http", "path": "healthz"}, container, "10.42.0.5") == \
        "http://10.42.0.5:8080/healthz"
    assert http_url({"port": 443, "scheme": "HTTPS", "host": "example.test", "path": "/x"},
                    container, "10.42.0.5") == "https://example.test:443/x"
    assert go_duration(1) == "1s" and go_duration(1.5) == "1.5s" and go_duration(90) == "1m30s"


# -- the manager ---------------------------------------------------------------------------------


async def test_readiness_follows_http_probe(manager):
    async with HTTPServer() as server:
        container = {"name": "app", "ports": [{"name": "http", "containerPort": server.port}],
                     "readinessProbe": {"httpGet": {"port": "http", "path": "/healthz"},
                                        **FAST, "failureThreshold": 1}}
        p = pod([container])
        manager.add_pod(p)
        manager.container_started("uid-1", "app", "cid-1", time.time(), "127.0.0.1")
        assert manager.readiness("uid-1", "app") is False  # with a probe: not ready at first
        await eventually(lambda: manager.readiness("uid-1", "app"), what="ready")
        assert manager.events.changes
        server.status = 503
        await eventually(lambda: not manager.readiness("uid-1", "app"), what="unready")
        assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in \
            manager.events.messages()
        assert manager.events.items[0][:2] == ("Warning", "Unhealthy")
        assert manager.liveness_failed("uid-1", "app") is None  # readiness never kills


async def test_no_probe_means_ready_once_running(manager):
    manager.add_pod(pod([{"name": "app"}]))
    assert manager.readiness("uid-1", "app") is False
    manager.container_started("uid-1", "app", "cid-1", time.time(), "10.42.0.5")
    assert manager.readiness("uid-1", "app") is True
    assert manager.started("uid-1", "app") is True
    manager.container_stopped("uid-1", "app")
    assert manager.readiness("uid-1", "app") is False


async def test_success_threshold(manager):
    manager.add_pod(pod([{"name": "app", "readinessProbe": {
        "exec": {"command": ["check"]}, **FAST, "successThreshold": 3}}]))
    manager.container_started("uid-1", "app", "cid-1", time.time(), "10.42.0.5")
    await eventually(lambda: len(manager.fake.calls) >= 1)
    await eventually(lambda: manager.readiness("uid-1", "app"))
    assert len(manager.fake.calls) >= 3


async def test_liveness_failure_after_threshold_puts_container_on_hold(manager):
    manager.fake.answers["check"] = (1, b"not alive")
    changed = asyncio.Event()
    manager.on_change = lambda uid: changed.set()
    manager.add_pod(pod([{"name": "app", "livenessProbe": {
        "exec": {"command": ["check"]}, **FAST, "failureThreshold": 3,
        "terminationGracePeriodSeconds": 7}}]))
    manager.container_started("uid-1", "app", "cid-1", time.time(), "10.42.0.5")
    await asyncio.wait_for(changed.wait(), 10)
    assert manager.liveness_failed("uid-1", "app") == \
        "Container app failed liveness probe, will be restarted"
    assert manager.liveness_failed("uid-1", "app", restart=False) == \
        "Container app failed liveness probe"
    assert manager.kill_grace_period("uid-1", "app") == 7
    assert manager.events.messages().count("Liveness probe failed: not alive") == 3
    calls = len(manager.fake.calls)
    await asyncio.sleep(0.1)
    assert len(manager.fake.calls) == calls  # on hold: no more probes
    # The agent restarted it: a new container id starts over.
    manager.fake.answers["check"] = (0, b"")
    manager.container_started("uid-1", "app", "cid-2", time.time(), "10.42.0.5")
    assert manager.liveness_failed("uid-1", "app") is None
    await eventually(lambda: len(manager.fake.calls) > calls)
    assert all(cid == "cid-2" for cid, _ in manager.fake.calls[calls:])


async def test_startup_probe_gates_liveness_and_readiness(manager):
    manager.fake.answers["started"] = (1, b"not yet")
    manager.add_pod(pod([{"name": "app",
                          "startupProbe": {"exec": {"command": ["started"]}, **FAST,
                                           "failureThreshold": 1000},
                          "livenessProbe": {"exec": {"command": ["alive"]}, **FAST},
                          "readinessProbe": {"exec": {"command": ["ready"]}, **FAST}}]))
    manager.container_started("uid-1", "app", "cid-1", time.time(), "10.42.0.5")
    await eventually(lambda: len(manager.fake.calls) >= 5)
    assert {tuple(cmd) for _, cmd in manager.fake.calls} == {("started",)}
    assert not manager.started("uid-1", "app") and not manager.readiness("uid-1", "app")
    manager.fake.answers["started"] = (0, b"")
    await eventually(lambda: manager.readiness("uid-1", "app"), what="ready after startup")
    assert manager.started("uid-1", "app")
    await eventually(lambda: ("alive",) in {tuple(cmd) for _, cmd in manager.fake.calls})
    n = sum(1 for _, cmd in manager.fake.calls if cmd == ["started"])
    await asyncio.sleep(0.1)
    assert sum(1 for _, cmd in manager.fake.calls if cmd == ["started"]) == n  # done probing


async def test_startup_failure_kills(manager):
    manager.fake.answers["started"] = (1, b"no")
    manager.add_pod(pod([{"name": "app", "startupProbe": {
        "exec": {"command": ["started"]}, **FAST, "failureThreshold": 2}}]))
    manager.container_started("uid-1", "app", "cid-1", time.time(), "10.42.0.5")
    await eventually(lambda: manager.liveness_failed("uid-1", "app") is not None)
    assert manager.liveness_failed("uid-1", "app") == \
        "Container app failed startup probe, will be restarted"
    assert "Startup probe failed: no" in manager.events.messages()


async def test_initial_delay(manager):
    manager.add_pod(pod([{"name": "app", "readinessProbe": {
        "exec": {"command": ["ready"]}, **FAST, "initialDelaySeconds": 0.3}}]))
    manager.container_started("uid-1", "app", "cid-1", time.time(), "10.42.0.5")
    await asyncio.sleep(0.1)
    assert manager.fake.calls == []
    await eventually(lambda: manager.readiness("uid-1", "app"))


async def test_probe_error_event_and_tcp_refused(manager):
    port = free_port()
    manager.add_pod(pod([{"name": "app",
                          "readinessProbe": {"tcpSocket": {"port": port}, **FAST,
                                             "failureThreshold": 1},
                          "livenessProbe": {"httpGet": {"port": "nope"}, **FAST,
                                            "failureThreshold": 1}}]))
    manager.container_started("uid-1", "app", "cid-1", time.time(), "127.0.0.1")
    await eventually(lambda: manager.liveness_failed("uid-1", "app") is not None)
    await eventually(lambda: any(m.startswith("Readiness") for m in manager.events.messages()))
    messages = manager.events.messages()
    assert ('Liveness probe errored and resulted in unknown state: strconv.Atoi: parsing "nope": '
            "invalid syntax") in messages
    assert f"Readiness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused" in \
        messages


async def test_remove_pod_stops_workers(manager):
    manager.add_pod(pod([{"name": "app", "readinessProbe": {"exec": {"command": ["r"]}, **FAST}}]))
    manager.container_started("uid-1", "app", "cid-1", time.time(), "10.42.0.5")
    await eventually(lambda: len(manager.fake.calls) >= 2)
    manager.remove_pod("uid-1")
    await asyncio.sleep(0.05)
    calls = len(manager.fake.calls)
    await asyncio.sleep(0.1)
    assert len(manager.fake.calls) == calls
    assert manager.readiness("uid-1", "app") is False
