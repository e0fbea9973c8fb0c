"""Liveness, readiness and startup probes, as the kubelet's prober runs them.

One asyncio task per (pod, container, probe kind) probes the running container every
``periodSeconds``. A result only counts once it has been seen ``successThreshold`` (success) or
``failureThreshold`` (failure) times in a row. Until the startup probe has succeeded the
liveness and readiness probes do not run; a liveness (or startup) failure puts the container
on hold — no more probing — until the agent has restarted it, and asks the agent to act through
``on_change``. Readiness starts false for a container with a readiness probe (true without one)
and starts over with every new container id.

Probers: ``exec`` (through the runtime), ``httpGet`` (HTTP or HTTPS without verification,
redirects followed only on the same host, ``User-Agent: kube-probe/1.37``), ``tcpSocket`` and
``grpc`` (``grpc.health.v1.Health/Check``). Failures are recorded as ``Unhealthy`` events in
the kubelet's words (``Liveness probe failed: HTTP probe failed with statuscode: 500``).

Upstream: pkg/kubelet/prober (prober_manager.go, worker.go, prober.go) and pkg/probe/*.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import shlex
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sampan.node import cri

log = logging.getLogger(__name__)

Object = dict[str, Any]
Recorder = Callable[[Object, str, str, str], Any]

USER_AGENT = "kube-probe/1.37"
MAX_BODY = 10 * 1024            # what an HTTP probe reads of the response body
MAX_REDIRECTS = 10
MAX_PROBE_RETRIES = 3           # a probe that errors (not fails) is retried at once
LIVENESS, READINESS, STARTUP = "Liveness", "Readiness", "Startup"
_SPEC_FIELD = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}


class Result(str, enum.Enum):
    SUCCESS = "success"
    WARNING = "warning"          # success, with something the user should know (a redirect)
    FAILURE = "failure"
    UNKNOWN = "unknown"


class ProbeError(Exception):
    """The probe could not be run at all (a named port that does not exist, a runtime error)."""


# -- probers -------------------------------------------------------------------------------------


async def probe_exec(runtime: cri.Runtime, container_id: str, command: list[str],
                     timeout: float) -> tuple[Result, str]:
    try:
        code, output = await runtime.exec_sync(container_id, command, timeout)
    except (TimeoutError, asyncio.TimeoutError):
        return Result.FAILURE, f'command "{shlex.join(command)}" timed out'
    except cri.CRIError as e:
        raise ProbeError(e.message) from None
    text = output.decode(errors="replace")
    return (Result.SUCCESS if code == 0 else Result.FAILURE), text


async def probe_tcp(host: str, port: int, timeout: float) -> tuple[Result, str]:
    target = _host_port(host, port)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, asyncio.TimeoutError):
        return Result.FAILURE, f"dial tcp {target}: i/o timeout"
    except OSError as e:
        return Result.FAILURE, f"dial tcp {target}: {_dial_error(e)}"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return Result.SUCCESS, ""


_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE


async def probe_http(session: aiohttp.ClientSession, url: str, headers: list[tuple[str, str]],
                     timeout: float) -> tuple[Result, str]:
    """GET ``url``; 2xx and 3xx succeed (a redirect to another host stops there with a
    warning), anything else fails with the status code."""
    first_host = urllib.parse.urlsplit(url).hostname
    target = url
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(target, headers=headers, allow_redirects=False,
                                       ssl=_INSECURE, timeout=client_timeout) as response:
                    body = await response.content.read(MAX_BODY)
                    status = response.status
                    location = response.headers.get("Location")
                if 300 <= status < 400 and location:
                    next_url = urllib.parse.urljoin(target, location)
                    if urllib.parse.urlsplit(next_url).hostname == first_host:
                        target = next_url
                        continue
                    return Result.WARNING, ("Probe terminated redirects, Response body: "
                                            + body.decode(errors="replace"))
                break
            else:
                return Result.FAILURE, f'Get "{target}": stopped after {MAX_REDIRECTS} redirects'
    except (TimeoutError, asyncio.TimeoutError):
        return Result.FAILURE, (f'Get "{target}": context deadline exceeded '
                                "(Client.Timeout exceeded while awaiting headers)")
    except aiohttp.ClientConnectorError as e:
        parts = urllib.parse.urlsplit(target)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return Result.FAILURE, (f'Get "{target}": dial tcp {_host_port(parts.hostname or "", port)}: '
                                f"{_dial_error(e.os_error)}")
    except aiohttp.ClientError as e:
        return Result.FAILURE, f'Get "{target}": {e}'
    if 200 <= status < 400:
        if status >= 300:
            return Result.WARNING, ("Probe terminated redirects, Response body: "
                                    + body.decode(errors="replace"))
        return Result.SUCCESS, body.decode(errors="replace")
    return Result.FAILURE, f"HTTP probe failed with statuscode: {status}"


async def probe_grpc(host: str, port: int, service: str, timeout: float) -> tuple[Result, str]:
    import grpc  # imported on first use: most nodes never run a gRPC probe
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = _host_port(host, port)
    limit = go_duration(timeout)
    async with grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            return Result.FAILURE, (f'timeout: failed to connect service "{address}" within '
                                    f"{limit}: context deadline exceeded")
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                        timeout=timeout)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return Result.FAILURE, ("error: this server does not implement the grpc health "
                                        f"protocol (grpc.health.v1.Health): {e.details()}")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Result.FAILURE, f"timeout: health rpc did not complete within {limit}"
            return Result.FAILURE, (f"error: health rpc probe failed: rpc error: code = "
                                    f"{_grpc_code_name(code)} desc = {e.details()}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return Result.FAILURE, f'service unhealthy (responded with "{status}")'
    return Result.SUCCESS, "service healthy"


def _grpc_code_name(code) -> str:
    return "".join(part.capitalize() for part in code.name.split("_"))


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial_error(e: BaseException | None) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, socket.gaierror):
        return f"lookup: {e.strerror}"
    if isinstance(e, OSError) and e.strerror:
        return f"connect: {e.strerror.lower()}"
    return str(e)


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (``1s``, ``1.5s``, ``2m0s``, ``500ms``)."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


# -- resolving a probe's target ------------------------------------------------------------------


def resolve_port(port: Any, container: Object) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or ():
        if p.get("name") == text:
            return int(p["containerPort"])
    raise ProbeError(f'strconv.Atoi: parsing "{text}": invalid syntax')


def http_url(action: Object, container: Object, pod_ip: str) -> str:
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), container)
    path = action.get("path") or ""
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{_host_port(host, port)}{path}"


def http_headers(action: Object) -> list[tuple[str, str]]:
    headers = [(h.get("name", ""), h.get("value", "")) for h in action.get("httpHeaders") or ()
               if h.get("name")]
    names = {name.lower() for name, _ in headers}
    if "user-agent" not in names:
        headers.append(("User-Agent", USER_AGENT))
    if "accept" not in names:
        headers.append(("Accept", "*/*"))
    return headers


# -- the manager ---------------------------------------------------------------------------------


@dataclass
class _ContainerState:
    """What the probes say about one container (of one container id)."""

    container_id: str = ""
    ready: bool = False
    started: bool = False
    failed: str | None = None           # LIVENESS or STARTUP once the container must be killed
    failed_grace: int | None = None     # the failed probe's terminationGracePeriodSeconds
    workers: list[asyncio.Task] = field(default_factory=list)


@dataclass
class _PodEntry:
    pod: Object
    containers: dict[str, _ContainerState] = field(default_factory=dict)


class ProbeManager:
    """Runs the probes of every pod on the node and keeps their results.

    ``recorder(pod, event_type, reason, message)`` records an event on the pod;
    ``on_change(pod_uid)`` tells the agent that a result it acts on moved (readiness, started,
    a liveness failure)."""

    def __init__(self, runtime: cri.Runtime, recorder: Recorder, on_change: Callable[[str], Any]):
        self.runtime = runtime
        self.recorder = recorder
        self.on_change = on_change
        self._pods: dict[str, _PodEntry] = {}
        self._session: aiohttp.ClientSession | None = None
        self._callbacks: set[asyncio.Future] = set()  # callbacks' coroutines still running

    # -- pods and containers ---------------------------------------------------------------------
    def add_pod(self, pod: Object) -> None:
        """Know (or update) a pod's spec; probing starts when a container starts."""
        uid = pod["metadata"]["uid"]
        entry = self._pods.get(uid)
        if entry is None:
            self._pods[uid] = _PodEntry(pod)
        else:
            entry.pod = pod

    def remove_pod(self, uid: str) -> None:
        entry = self._pods.pop(uid, None)
        if entry is not None:
            for state in entry.containers.values():
                _cancel(state)

    def container_started(self, pod_uid: str, name: str, container_id: str, started_at: float,
                          pod_ip: str, pod: Object | None = None) -> None:
        """A container is running: (re)start its probe workers, unless they already probe
        this very container. ``pod`` (optional) is ``add_pod`` in the same call."""
        if pod is not None:
            self.add_pod(pod)
        entry = self._pods.get(pod_uid)
        if entry is None:
            return
        state = entry.containers.get(name)
        if state is not None and state.container_id == container_id:
            return
        if state is not None:
            _cancel(state)
        container = _find_container(entry.pod, name)
        if container is None:
            return
        state = _ContainerState(container_id)
        state.ready = not container.get("readinessProbe")
        state.started = not container.get("startupProbe")
        entry.containers[name] = state
        for kind in (STARTUP, LIVENESS, READINESS):
            spec = container.get(_SPEC_FIELD[kind])
            if spec:
                task = asyncio.create_task(
                    self._worker(entry, container, state, kind, spec, started_at, pod_ip),
                    name=f"probe-{kind.lower()}-{pod_uid}-{name}")
                state.workers.append(task)

    def container_stopped(self, pod_uid: str, name: str) -> None:
        entry = self._pods.get(pod_uid)
        state = entry.containers.pop(name, None) if entry else None
        if state is not None:
            _cancel(state)

    # -- results -----------------------------------------------------------------------------
    def readiness(self, uid: str, name: str) -> bool:
        state = self._state(uid, name)
        return bool(state and state.ready and state.started and not state.failed)

    def started(self, uid: str, name: str) -> bool:
        state = self._state(uid, name)
        return bool(state and state.started)

    def liveness_failed(self, uid: str, name: str, restart: bool = True) -> str | None:
        """The message to kill the container with when a liveness or startup probe failed
        (``Container x failed liveness probe, will be restarted``), else None."""
        state = self._state(uid, name)
        if state is None or state.failed is None:
            return None
        message = f"Container {name} failed {state.failed.lower()} probe"
        return f"{message}, will be restarted" if restart else message

    def kill_grace_period(self, uid: str, name: str) -> int | None:
        """The failed probe's ``terminationGracePeriodSeconds`` (overrides the pod's)."""
        state = self._state(uid, name)
        return state.failed_grace if state is not None else None

    def _state(self, uid: str, name: str) -> _ContainerState | None:
        entry = self._pods.get(uid)
        return entry.containers.get(name) if entry else None

    async def close(self) -> None:
        for uid in list(self._pods):
            self.remove_pod(uid)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- workers -----------------------------------------------------------------------------
    async def _worker(self, entry: _PodEntry, container: Object, state: _ContainerState,
                      kind: str, spec: Object, started_at: float, pod_ip: str) -> None:
        period = float(spec.get("periodSeconds") or 10)
        delay = float(spec.get("initialDelaySeconds") or 0)
        success_threshold = int(spec.get("successThreshold") or 1)
        failure_threshold = int(spec.get("failureThreshold") or 3)
        wait = started_at + delay - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        last: Result | None = None
        run = 0
        try:
            while True:
                if kind != STARTUP and not state.started:
                    pass  # the startup probe gates the others
                elif kind == STARTUP and state.started:
                    return  # a startup probe is done once it succeeded
                else:
                    result = await self._probe(entry.pod, container, kind, spec, state, pod_ip)
                    run = run + 1 if result == last else 1
                    last = result
                    threshold = success_threshold if result == Result.SUCCESS else failure_threshold
                    if run >= threshold:
                        if self._set(entry, state, kind, result, spec):
                            self._notify(entry)
                        if result == Result.FAILURE and kind != READINESS:
                            return  # on hold until the container is restarted
                await asyncio.sleep(period)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe worker failed", extra={"pod": entry.pod["metadata"].get("name"),
                                                        "container": container.get("name")})

    def _set(self, entry: _PodEntry, state: _ContainerState, kind: str, result: Result,
             spec: Object) -> bool:
        """Apply a result that passed its threshold; True when something the agent reads moved."""
        ok = result == Result.SUCCESS
        if kind == READINESS:
            changed = state.ready != ok
            state.ready = ok
            return changed
        if kind == STARTUP and ok:
            changed = not state.started
            state.started = True
            return changed
        if not ok and state.failed is None:
            state.failed = kind
            grace = spec.get("terminationGracePeriodSeconds")
            state.failed_grace = int(grace) if grace is not None else None
            return True
        return False

    def _notify(self, entry: _PodEntry) -> None:
        try:
            self._keep(self.on_change(entry.pod["metadata"]["uid"]))
        except Exception:
            log.exception("probe change callback failed")

    async def _probe(self, pod: Object, container: Object, kind: str, spec: Object,
                     state: _ContainerState, pod_ip: str) -> Result:
        """Run one probe (retrying one that errors) and record what the user should see."""
        error: Exception | None = None
        for _ in range(MAX_PROBE_RETRIES):
            try:
                result, output = await self._run(container, spec, state.container_id, pod_ip)
                break
            except ProbeError as e:
                error = e
        else:
            self._record(pod, "Warning", "Unhealthy",
                         f"{kind} probe errored and resulted in unknown state: {error}")
            return Result.FAILURE
        if result == Result.FAILURE:
            self._record(pod, "Warning", "Unhealthy", f"{kind} probe failed: {output}")
            return Result.FAILURE
        if result == Result.WARNING:
            self._record(pod, "Warning", "ProbeWarning", f"{kind} probe warning: {output}")
        return Result.SUCCESS

    async def _run(self, container: Object, spec: Object, container_id: str,
                   pod_ip: str) -> tuple[Result, str]:
        timeout = float(spec.get("timeoutSeconds") or 1)
        if (action := spec.get("exec")) is not None:
            return await probe_exec(self.runtime, container_id, list(action.get("command") or ()),
                                    timeout)
        if (action := spec.get("httpGet")) is not None:
            return await probe_http(self._http(), http_url(action, container, pod_ip),
                                    http_headers(action), timeout)
        if (action := spec.get("tcpSocket")) is not None:
            return await probe_tcp(action.get("host") or pod_ip,
                                   resolve_port(action.get("port"), container), timeout)
        if (action := spec.get("grpc")) is not None:
            return await probe_grpc(pod_ip, int(action.get("port") or 0),
                                    action.get("service") or "", timeout)
        raise ProbeError("missing probe handler")

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Probes do not keep connections open (upstream disables keep-alive), and never
            # go through a proxy.
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    def _keep(self, result: Any) -> None:
        if asyncio.iscoroutine(result):
            future = asyncio.ensure_future(result)
            self._callbacks.add(future)
            future.add_done_callback(self._callbacks.discard)

    def _record(self, pod: Object, event_type: str, reason: str, message: str) -> None:
        try:
            self._keep(self.recorder(pod, event_type, reason, message))
        except Exception:
            log.exception("recording a probe event failed")


def _find_container(pod: Object, name: str) -> Object | None:
    spec = pod.get("spec") or {}
    for c in spec.get("containers") or ():
        if c.get("name") == name:
            return c
    for c in spec.get("initContainers") or ():  # sidecars (restartPolicy Always) are probed
        if c.get("name") == name:
            return c
    return None


def _cancel(state: _ContainerState) -> None:
    for task in state.workers:
        task.cancel()
    state.workers.clear()
