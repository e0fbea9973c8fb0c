"""The ingress controller against a real API server and real backends: Services without
selectors and hand-made EndpointSlices point at aiohttp servers on this machine; the controller
runs as ``sampan up`` runs it (``run_ingress``) on free loopback ports.

EndpointSlices may not name loopback addresses (upstream validation), so the backends listen on
a /32 of the test-host range (10.99.250-254.x) on a veth pair this module creates and removes
(the kernel has no dummy links here): a local address, so the traffic never leaves the
machine."""

from __future__ import annotations

import asyncio
import base64
import random
import socket
import subprocess
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.ingress.run import run_ingress
from sampan.ingress.tls import FAKE_CERT_CN, self_signed
from tests.integration.helpers import eventually, new_namespace

NAME = web.AppKey("name", str)
PUBLISH = "192.0.2.10"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def backend_ip() -> Iterator[str]:
    # CI is root and install.sh installs iproute2: a failure here is a failure, not a skip.
    tag = uuid.uuid4().hex[:6]
    link = f"sping{tag}"
    made = _ip("link", "add", link, "type", "veth", "peer", "name", f"spinp{tag}")
    assert made.returncode == 0, made.stderr
    try:
        for _ in range(20):
            ip = f"10.99.{random.randint(250, 254)}.{random.randint(2, 250)}"
            if _ip("addr", "add", f"{ip}/32", "dev", link).returncode == 0:
                break
        else:
            pytest.fail("no free address for the backends")
        assert _ip("link", "set", link, "up").returncode == 0
        yield ip
    finally:
        _ip("link", "del", link)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"{request.app[NAME]} {request.path} {request.headers['Host']}")


@dataclass
class Env:
    client: Client
    ns: str
    class_name: str
    http: int
    https: int
    backends: dict[str, int]
    backend_ip: str

    async def get(self, host: str, path: str = "/") -> tuple[int, str]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{self.http}{path}", headers={"Host": host},
                             allow_redirects=False) as r:
                return r.status, await r.text()

    async def answers(self, host: str, path: str, status: int, text: str = "") -> None:
        async def check() -> bool:
            got_status, body = await self.get(host, path)
            return got_status == status and body.startswith(text)
        await eventually(check, what=f"{host}{path} → {status} {text}")

    async def service(self, name: str, backend: str | None = None,
                      port_name: str = "http") -> None:
        await self.client.create("v1", "services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": port_name, "port": 80, "protocol": "TCP"}]}},
            namespace=self.ns)
        if backend is not None:
            await self.client.create("discovery.k8s.io/v1", "endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-1",
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": self.backends[backend],
                           "protocol": "TCP"}],
                "endpoints": [{"addresses": [self.backend_ip], "conditions": {"ready": True}}]},
                namespace=self.ns)

    async def ingress(self, name: str, rules: list[dict[str, Any]], **spec: Any) -> None:
        await self.client.create("networking.k8s.io/v1", "ingresses", {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"ingressClassName": self.class_name, "rules": rules, **spec}},
            namespace=self.ns)

    async def warnings(self, name: str) -> list[str]:
        events = await self.client.list("v1", "events", namespace=self.ns,
                                        field_selector=f"involvedObject.name={name}")
        return [e["message"] for e in events["items"]
                if e["type"] == "Warning" and e["reason"] == "Sync"]


def rule(host: str, *paths: tuple[str, str, str]) -> dict[str, Any]:
    return {"host": host, "http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
        for p, t, s in paths]}}


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@pytest.fixture
async def env(client: Client, backend_ip: str) -> AsyncIterator[Env]:
    ns = await new_namespace(client, "ingress")
    suffix = uuid.uuid4().hex[:8]
    runners, backends = [], {}
    for name in ("a", "b"):
        app = web.Application()
        app[NAME] = name
        app.router.add_get("/{tail:.*}", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port(backend_ip)
        await web.TCPSite(runner, backend_ip, port).start()
        runners.append(runner)
        backends[name] = port
    class_name = f"sampan-{suffix}"
    http, https = free_port(), free_port()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_ingress(
        client, stop, http_address=("127.0.0.1", http), https_address=("127.0.0.1", https),
        publish_address=PUBLISH, tcp_services=f"{ns}/tcp-services", class_name=class_name,
        controller_name=f"sampan.io/ingress-{suffix}", ready=ready))
    waiter = asyncio.get_running_loop().create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    assert ready.is_set(), task.exception() if task.done() else "ingress not ready in 60s"
    try:
        yield Env(client, ns, class_name, http, https, backends, backend_ip)
    finally:
        stop.set()
        await task
        try:
            await client.delete("networking.k8s.io/v1", "ingressclasses", class_name)
        except ApiError:
            pass
        await client.delete("v1", "namespaces", ns)
        for runner in runners:
            await runner.cleanup()


async def test_class_created_and_host_path_routing(env: Env):
    ingress_class = await env.client.get("networking.k8s.io/v1", "ingressclasses",
                                         env.class_name)
    assert ingress_class["metadata"]["annotations"][
        "ingressclass.kubernetes.io/is-default-class"] == "true"
    await env.service("svc-a", "a")
    await env.service("svc-b", "b")
    await env.ingress("web", [rule("app.test", ("/", "Prefix", "svc-a"),
                                   ("/api", "Prefix", "svc-b"), ("/exact", "Exact", "svc-b")),
                              rule("*.wild.test", ("/", "Prefix", "svc-b"))])
    await env.answers("app.test", "/", 200, "a / app.test")
    await env.answers("app.test", "/api/users", 200, "b /api/users")
    await env.answers("app.test", "/apix", 200, "a /apix")
    await env.answers("app.test", "/exact", 200, "b /exact")
    await env.answers("app.test", "/exact/more", 200, "a /exact/more")
    await env.answers("x.wild.test", "/", 200, "b / x.wild.test")
    await env.answers("y.x.wild.test", "/", 404, "default backend")
    await env.answers("other.test", "/", 404, "default backend")

    # Another class's Ingress is not ours; one without a class is (our class is default).
    await env.client.create("networking.k8s.io/v1", "ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "other"},
        "spec": {"ingressClassName": "not-ours", "rules": [rule("other.test",
                                                                ("/", "Prefix", "svc-a"))]}},
        namespace=env.ns)
    await env.client.create("networking.k8s.io/v1", "ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "noclass"},
        "spec": {"rules": [rule("noclass.test", ("/", "Prefix", "svc-b"))]}},
        namespace=env.ns)
    await env.answers("noclass.test", "/", 200, "b /")
    assert (await env.get("other.test"))[0] == 404

    async def published() -> bool:
        ing = await env.client.get("networking.k8s.io/v1", "ingresses", "web", namespace=env.ns)
        return ing.get("status", {}).get("loadBalancer", {}).get("ingress") == [{"ip": PUBLISH}]
    await eventually(published, what="status.loadBalancer.ingress")
    other = await env.client.get("networking.k8s.io/v1", "ingresses", "other", namespace=env.ns)
    assert not other.get("status", {}).get("loadBalancer", {}).get("ingress")


async def test_default_backend_and_missing_service(env: Env):
    await env.service("svc-a", "a")
    await env.ingress("dflt", [rule("d.test", ("/app", "Prefix", "svc-a"))],
                      defaultBackend={"service": {"name": "svc-a", "port": {"number": 80}}})
    await env.answers("d.test", "/elsewhere", 200, "a /elsewhere")
    await env.answers("unknown.test", "/x", 200, "a /x")

    await env.ingress("broken", [rule("broken.test", ("/", "Prefix", "missing"))])
    await env.answers("broken.test", "/", 503)

    async def warned() -> bool:
        return any('Error obtaining Service "' + env.ns + '/missing"' in m
                   for m in await env.warnings("broken"))
    await eventually(warned, what="Warning event for the missing service")
    await env.answers("d.test", "/app", 200, "a /app")  # the others keep working
    await env.service("missing", "b")
    await env.answers("broken.test", "/", 200, "b /")


def peer_common_name(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


async def https_get(env: Env, server_name: str, host: str | None = None) -> tuple[str, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", env.https, ssl=context,
                                                   server_hostname=server_name)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(f"GET /tls HTTP/1.1\r\nHost: {host or server_name}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        return peer_common_name(der), await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_tls_with_sni_and_missing_secret(env: Env):
    await env.service("svc-a", "a")
    cert, key = self_signed("secure.test", ("secure.test", "*.wild-tls.test"))
    await env.client.create("v1", "secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secure-cert"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(cert).decode(),
                 "tls.key": base64.b64encode(key).decode()}}, namespace=env.ns)
    await env.ingress("secure", [rule("secure.test", ("/", "Prefix", "svc-a")),
                                 rule("x.wild-tls.test", ("/", "Prefix", "svc-a"))],
                      tls=[{"hosts": ["secure.test", "*.wild-tls.test"],
                            "secretName": "secure-cert"}])

    async def served_by_secret() -> bool:
        name, response = await https_get(env, "secure.test")
        return name == "secure.test" and b"a /tls secure.test" in response
    await eventually(served_by_secret, what="the secret's certificate for secure.test")
    assert (await https_get(env, "x.wild-tls.test"))[0] == "secure.test"
    assert (await https_get(env, "unknown.test"))[0] == FAKE_CERT_CN
    status, _ = await env.get("secure.test", "/p?q=1")
    assert status == 308  # ssl-redirect for hosts with TLS
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{env.http}/p?q=1", headers={"Host": "secure.test"},
                         allow_redirects=False) as r:
            assert r.headers["Location"] == f"https://secure.test:{env.https}/p?q=1"

    await env.ingress("nosecret", [rule("nosecret.test", ("/", "Prefix", "svc-a"))],
                      tls=[{"hosts": ["nosecret.test"], "secretName": "absent"}])

    async def warned() -> bool:
        return any(f'Error getting SSL certificate "{env.ns}/absent"' in m
                   for m in await env.warnings("nosecret"))
    await eventually(warned, what="Warning event for the missing secret")
    name, response = await https_get(env, "nosecret.test")
    assert name == FAKE_CERT_CN and b"a /tls nosecret.test" in response


async def test_tcp_service_follows_the_configmap(env: Env):
    async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong:" + await reader.read(100))
        await writer.drain()
        writer.close()

    backend = await asyncio.start_server(pong, env.backend_ip, 0)
    env.backends["tcp"] = backend.sockets[0].getsockname()[1]
    try:
        await env.service("db", "tcp", port_name="pg")
        listen = free_port()
        await env.client.create("v1", "configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tcp-services"},
            "data": {str(listen): f"{env.ns}/db:80"}}, namespace=env.ns)

        async def answers() -> bool:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", listen)
            except OSError:
                return False
            writer.write(b"ping")
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data == b"pong:ping"
        await eventually(answers, what="the TCP service answers")

        await env.client.patch("v1", "configmaps", "tcp-services",
                               [{"op": "remove", "path": f"/data/{listen}"}],
                               namespace=env.ns, patch_type="json")

        async def closed() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", listen)
            except OSError:
                return True
            writer.close()
            return False
        await eventually(closed, what="the TCP-service port closes")
    finally:
        backend.close()
        await backend.wait_closed()


async def test_reload_keeps_open_keep_alive_connection(env: Env):
    await env.service("svc-a", "a")
    await env.service("svc-b", "b")
    await env.ingress("live", [rule("live.test", ("/", "Prefix", "svc-a"))])
    await env.answers("live.test", "/", 200, "a /")
    reader, writer = await asyncio.open_connection("127.0.0.1", env.http)

    async def request() -> bytes:
        writer.write(b"GET /k HTTP/1.1\r\nHost: live.test\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: keep-alive" in head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return await reader.readexactly(length)

    try:
        assert (await request()).startswith(b"a /k")
        ingress = await env.client.get("networking.k8s.io/v1", "ingresses", "live",
                                       namespace=env.ns)
        ingress["spec"]["rules"] = [rule("live.test", ("/", "Prefix", "svc-b"))]
        await env.client.update("networking.k8s.io/v1", "ingresses", ingress, namespace=env.ns)
        await env.answers("live.test", "/", 200, "b /")  # on new connections
        assert (await request()).startswith(b"b /k")  # and on the one open before
    finally:
        writer.close()


async def test_status_address_leaves_an_ingress_that_is_no_longer_ours(env: Env):
    await env.service("svc-a", "a")
    await env.ingress("moving", [rule("moving.test", ("/", "Prefix", "svc-a"))])

    async def address() -> list[Any]:
        ing = await env.client.get("networking.k8s.io/v1", "ingresses", "moving",
                                   namespace=env.ns)
        return ing.get("status", {}).get("loadBalancer", {}).get("ingress") or []

    async def published() -> bool:
        return await address() == [{"ip": PUBLISH}]
    await eventually(published, what="our address on the Ingress")
    await env.answers("moving.test", "/", 200, "a /")
    await env.client.patch("networking.k8s.io/v1", "ingresses", "moving",
                           {"spec": {"ingressClassName": "not-ours"}}, namespace=env.ns)

    async def cleared() -> bool:
        return await address() == []
    await eventually(cleared, what="our address off the Ingress of another class")
    await env.answers("moving.test", "/", 404, "default backend")


async def test_unloadable_certificate_is_one_warning_with_its_reason(env: Env):
    await env.service("svc-a", "a")
    await env.client.create("v1", "secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "garbled"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": base64.b64encode(b"not a certificate").decode(),
                 "tls.key": base64.b64encode(b"not a key").decode()}}, namespace=env.ns)
    await env.ingress("garbled", [rule("garbled.test", ("/", "Prefix", "svc-a"))],
                      tls=[{"hosts": ["garbled.test"], "secretName": "garbled"}])

    async def warned() -> bool:
        return any("invalid certificate or key" in m for m in await env.warnings("garbled"))
    await eventually(warned, what="Warning event for the unloadable certificate")
    messages = await env.warnings("garbled")  # not also "was not found"
    assert len(messages) == 1 and "invalid certificate or key" in messages[0], messages
    name, response = await https_get(env, "garbled.test")
    assert name == FAKE_CERT_CN and b"a /tls garbled.test" in response
