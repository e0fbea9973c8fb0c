"""The node agent's HTTPS server: the kubelet API the API server talks to.

Paths as the kubelet serves them: ``/healthz``, ``/pods``, ``/containerLogs/{ns}/{pod}/{c}``,
``/exec``, ``/attach`` and ``/run`` (``/{ns}/{pod}[/{uid}]/{c}``), ``/portForward/{ns}/{pod}``,
``/stats/summary``, ``/metrics/resource``, ``/metrics``. TLS with a self-signed serving
certificate; every client must present a certificate signed by the cluster CA, and only the
API server's kubelet-client identity (or ``system:masters``) is authorized.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sampan.node.cri import CRIError, Runtime, State
from sampan.node.logs import LogOptions, read_logs
from sampan.node.streaming import remotecommand

log = logging.getLogger(__name__)

AUTHORIZED_GROUPS = frozenset({"system:masters"})
AUTHORIZED_USERS = frozenset({"kube-apiserver-kubelet-client"})
RUN_TIMEOUT = 120.0
CERT_DAYS = 365


class PodResolver(Protocol):
    """What the server needs to know about the agent's pods."""

    def pods(self) -> list[dict[str, Any]]:
        """The pods bound to this node, as the agent knows them."""

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def container_id(self, pod_uid: str, container: str, previous: bool = False) -> str | None:
        """The runtime id of the container's current (or previous, terminated) instance."""

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path | None: ...

    def netns(self, pod_uid: str) -> Path | None: ...


class AgentServer:
    def __init__(self, runtime: Runtime, resolver: PodResolver, *, ca_file: str | Path,
                 cert_dir: str | Path, address: str, port: int = 10250, stats: Any = None,
                 node_name: str = ""):
        self.runtime = runtime
        self.resolver = resolver
        self.ca_file = Path(ca_file)
        self.cert_dir = Path(cert_dir)
        self.address = address
        self.port = port
        self.stats = stats
        self.node_name = node_name or socket.gethostname()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        cert, key = await asyncio.get_running_loop().run_in_executor(
            None, ensure_serving_cert, self.cert_dir, self.address, self.node_name)
        context = ssl_context(cert, key, self.ca_file)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, ssl_context=context,
                           reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server  # the bound port, when asked for any
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]
        log.info("node agent server listening on %s:%d", self.address, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_status_errors, _authorize])
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/pods", self.pods)
        r.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        for verb, handler in (("exec", self.exec), ("attach", self.attach)):
            for path in (f"/{verb}/{{ns}}/{{pod}}/{{container}}", f"/{verb}/{{ns}}/{{pod}}/{{uid}}/{{container}}"):
                r.add_route("GET", path, handler)
                r.add_route("POST", path, handler)
        r.add_post("/run/{ns}/{pod}/{container}", self.run)
        r.add_post("/run/{ns}/{pod}/{uid}/{container}", self.run)
        for path in ("/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"):
            r.add_route("GET", path, self.port_forward)
            r.add_route("POST", path, self.port_forward)
        r.add_get("/stats/summary", self.stats_summary)
        r.add_get("/metrics/resource", self.resource_metrics)
        r.add_get("/metrics", self.metrics)
        return app

    # -- simple endpoints ----------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.Response:
        return _json({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                      "items": list(self.resolver.pods())})

    async def metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stats_summary(self, request: web.Request) -> web.Response:
        return await self._stats(lambda: self.stats.summary(), "application/json")

    async def resource_metrics(self, request: web.Request) -> web.Response:
        return await self._stats(lambda: self.stats.resource_metrics(),
                                 "text/plain; version=0.0.4; charset=utf-8")

    async def _stats(self, produce, content_type: str) -> web.Response:
        if self.stats is None:
            raise _status(404, "NotFound", "the server could not find the requested resource")
        result = produce()
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, (dict, list)):
            return _json(result)
        body = result.encode() if isinstance(result, str) else bytes(result)
        return web.Response(body=body, headers={"Content-Type": content_type})

    # -- pods and containers -------------------------------------------------------------
    def _pod(self, request: web.Request) -> dict[str, Any]:
        ns, name = request.match_info["ns"], request.match_info["pod"]
        pod = self.resolver.pod(ns, name)
        uid = request.match_info.get("uid")
        if pod is None or (uid and pod["metadata"].get("uid") != uid):
            raise _status(404, "NotFound", f'pod "{name}" does not exist')
        return pod

    def _container_spec(self, pod: dict[str, Any], container: str) -> dict[str, Any]:
        spec = pod.get("spec") or {}
        for key in ("containers", "initContainers", "ephemeralContainers"):
            for c in spec.get(key) or ():
                if c.get("name") == container:
                    return c
        raise _status(404, "NotFound", f'container "{container}" not found in pod "{pod["metadata"]["name"]}"')

    async def _running_container(self, pod: dict[str, Any], container: str) -> str:
        cid = self.resolver.container_id(pod["metadata"]["uid"], container)
        if cid is None:
            raise _status(500, "InternalError", f'container not found ("{container}")')
        try:
            status = await self.runtime.container_status(cid)
        except CRIError:
            raise _status(500, "InternalError", f'container not found ("{container}")') from None
        if status.state != State.RUNNING:
            raise _status(500, "InternalError",
                          f'container "{container}" in pod "{pod["metadata"]["name"]}" is not running')
        return cid

    # -- logs ----------------------------------------------------------------------------
    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        self._container_spec(pod, container)
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        try:
            previous = remotecommand.parse_bool(request.query.get("previous"))
            opts = LogOptions.from_query(request.query)
        except ValueError as e:
            raise _status(400, "BadRequest", str(e)) from None
        path = self.resolver.log_path(uid, container, previous=previous)
        if path is None:
            if previous:
                raise _status(400, "BadRequest",
                              f'previous terminated container "{container}" in pod "{name}" not found')
            raise _status(400, "BadRequest", _not_available(pod, container))
        if previous:
            opts.follow = False
        cid = self.resolver.container_id(uid, container)

        async def is_running() -> bool:
            if cid is None:
                return False
            try:
                return (await self.runtime.container_status(cid)).state == State.RUNNING
            except CRIError:
                return False

        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)  # headers now: `kubectl logs -f` waits on them
        async with contextlib.aclosing(read_logs(path, opts, is_running=is_running)) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
        return response

    # -- exec, attach, run -----------------------------------------------------------------
    async def exec(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        command = request.query.getall("command", [])
        if not command:
            raise _status(400, "BadRequest", "you must specify at least 1 command")
        opts = self._stream_options(request)
        cid = await self._running_container(pod, container)
        return await remotecommand.serve(
            request, opts, lambda: self.runtime.exec(cid, command, tty=opts.tty, stdin=opts.stdin),
            exec_=True, describe="[" + " ".join(command) + "]")

    async def attach(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        opts = self._stream_options(request)
        cid = await self._running_container(pod, container)
        return await remotecommand.serve(
            request, opts, lambda: self.runtime.attach(cid, stdin=opts.stdin, tty=opts.tty), exec_=False)

    def _stream_options(self, request: web.Request) -> remotecommand.Options:
        try:
            opts = remotecommand.Options.from_query(request.query)
        except ValueError as e:
            raise _status(400, "BadRequest", str(e)) from None
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise _status(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
        if not remotecommand.is_websocket(request):
            raise _status(400, "BadRequest", "Upgrade request required: this server speaks the "
                                             "WebSocket channel protocols (v5.channel.k8s.io, v4.channel.k8s.io)")
        return opts

    async def run(self, request: web.Request) -> web.Response:
        pod = self._pod(request)
        container = request.match_info["container"]
        cmd = [c for c in request.query.get("cmd", "").split(" ") if c]
        if not cmd:
            raise _status(400, "BadRequest", "you must specify at least 1 command")
        cid = await self._running_container(pod, container)
        try:
            _, output = await self.runtime.exec_sync(cid, cmd, RUN_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise _status(500, "InternalError", f"command {cmd} timed out") from None
        except CRIError as e:
            raise _status(500, "InternalError", e.message) from None
        return web.Response(body=output, headers={"Content-Type": "text/plain"})

    # -- port forwarding ---------------------------------------------------------------------
    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        from sampan.node.streaming.portforward import handle_portforward

        return await handle_portforward(request, self.resolver.netns(pod["metadata"]["uid"]), pod)


def _not_available(pod: dict[str, Any], container: str) -> str:
    """Why a container has no log yet, in the kubelet's words."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for s in status.get(key) or ():
            if s.get("name") == container:
                waiting = (s.get("state") or {}).get("waiting")
                if waiting is not None:
                    return f'container "{container}" in pod "{name}" is waiting to start: ' \
                           f'{waiting.get("reason") or "ContainerCreating"}'
    return f'container "{container}" in pod "{name}" is not available'


# -- errors ------------------------------------------------------------------------------------
class AgentError(Exception):
    """An error answered as a metav1.Status, as the kubelet answers."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> web.Response:
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": self.message, "reason": self.reason, "code": self.code}, self.code)


def _status(code: int, reason: str, message: str) -> AgentError:
    return AgentError(code, reason, message)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


@web.middleware
async def _status_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AgentError as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(e.status, "BadRequest")
        message = e.text if e.text and e.status == 400 else (
            "the server could not find the requested resource" if e.status == 404 else e.reason)
        return AgentError(e.status, reason, message).response()
    except CRIError as e:
        return AgentError(500, "InternalError", e.message).response()


@web.middleware
async def _authorize(request: web.Request, handler) -> web.StreamResponse:
    subject = _peer_subject(request)
    if subject is None:
        raise _status(401, "Unauthorized", "Unauthorized")
    user, groups = subject
    if user not in AUTHORIZED_USERS and not (groups & AUTHORIZED_GROUPS):
        raise _status(403, "Forbidden", f'Forbidden (user={user}, verb={request.method.lower()}, '
                                        f'resource=nodes, subresource={request.path.split("/")[1]})')
    return await handler(request)


def _peer_subject(request: web.Request) -> tuple[str, frozenset[str]] | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    cn, orgs = "", set()
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.add(value)
    return cn, frozenset(orgs)


# -- TLS ---------------------------------------------------------------------------------------
def ssl_context(cert: Path, key: Path, ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def ensure_serving_cert(cert_dir: Path, address: str, node_name: str) -> tuple[Path, Path]:
    """A self-signed serving certificate (``kubelet.crt``/``kubelet.key``) as the kubelet makes
    when it is given none; remade when missing, expiring or not naming ``address``."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
    dns = sorted({node_name, socket.gethostname(), "localhost"})
    ips = {"127.0.0.1"}
    try:
        ipaddress.ip_address(address)
        if address not in ("0.0.0.0", "::"):
            ips.add(address)
    except ValueError:
        dns = sorted(set(dns) | {address})
    if cert_path.exists() and key_path.exists() and _cert_fits(cert_path, dns, ips):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@{int(now.timestamp())}")])
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    tmp = key_path.with_suffix(".key.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(tmp, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _cert_fits(cert_path: Path, dns: list[str], ips: set[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have_dns = set(sans.get_values_for_type(x509.DNSName))
    have_ips = {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
    remaining = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return set(dns) <= have_dns and ips <= have_ips and remaining > datetime.timedelta(days=30)
