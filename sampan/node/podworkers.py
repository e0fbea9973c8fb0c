"""One worker per pod: make the runtime match the pod spec, like the kubelet's pod workers
and kuberuntime's ``SyncPod`` / ``computePodActions``.

A worker wakes when its pod changes, when the runtime shows one of its containers changed (the
agent's relist), when a probe result changes, when a back-off expires, and every resync
period. Each pass is level-triggered: it looks at what runs, decides, acts, and writes the
pod's status. Termination (the pod deleted, or finished) stops containers with their grace
period and preStop hooks, stops the sandbox, and finally removes the pod from the API server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sampan.client import ApiError, Preconditions
from sampan.node import containers as cfg
from sampan.node.cri import (
    ContainerConfig,
    ContainerStatus,
    CRIError,
    Image,
    ImageNotPresentError,
    Sandbox,
    State,
)
from sampan.node.metrics import POD_START_SLI, POD_WORKER_START, runtime_operation
from sampan.node.status import PodView, Waiting, is_sidecar

if TYPE_CHECKING:
    from sampan.node.agent import Agent

log = logging.getLogger(__name__)

Object = dict[str, Any]

RESYNC_SECONDS = 10.0
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


class Backoff:
    """Per-key exponential back-off (upstream's flowcontrol.Backoff as the kubelet uses it:
    10 s doubling to 5 min, forgotten after twice the maximum without a failure)."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX):
        self.initial, self.maximum = initial, maximum
        self._entries: dict[str, tuple[float, float]] = {}  # key → (delay, last update)

    def in_backoff_since(self, key: str, since: float, now: float | None = None) -> float:
        """Seconds left of the back-off that started at ``since`` (0 when none)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        delay, updated = entry
        now = time.time() if now is None else now
        if now - updated > 2 * self.maximum:
            del self._entries[key]
            return 0.0
        return max(0.0, since + delay - now)

    def next(self, key: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.maximum:
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.maximum), now)

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def pod_ref(pod: Mapping[str, Any]) -> Object:
    """What an Event's involvedObject needs (informer objects may lack kind)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod["metadata"]}


def pod_desc(pod: Mapping[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta.get('namespace', '')}({meta['uid']})"


@dataclass
class PodRuntime:
    """The runtime's view of one pod, from the agent's last relist."""

    sandboxes: list[Sandbox] = field(default_factory=list)           # newest first
    containers: dict[str, list[ContainerStatus]] = field(default_factory=dict)  # newest first

    def running_sandbox(self) -> Sandbox | None:
        for s in self.sandboxes:
            if s.state == State.RUNNING:
                return s
        return None

    def latest(self, name: str) -> ContainerStatus | None:
        history = self.containers.get(name)
        return history[0] if history else None

    def running(self) -> list[ContainerStatus]:
        return [c for history in self.containers.values() for c in history
                if c.state in (State.RUNNING, State.CREATED, State.UNKNOWN)]


class PodWorker:
    def __init__(self, agent: Agent, pod: Object):
        self.agent = agent
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.removed = False                 # gone from the API server
        self.waiting: dict[str, Waiting] = {}
        self.image_ids: dict[str, str] = {}
        self.termination_messages: dict[str, str] = {}
        self.volume_paths: dict[str, str] | None = None
        self.volumes_refreshed = 0.0
        self.terminated = False              # containers and sandbox stopped for good
        self.final_status_written = False
        self.wake_at: float | None = None
        self.seen_at = time.monotonic()
        self.pull_seconds = 0.0
        self.start_observed = False
        self._event = asyncio.Event()
        self._event.set()
        self._task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    # -- driving -------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"pod worker {self.pod['metadata'].get('namespace')}/"
                              f"{self.pod['metadata']['name']}")

    def update(self, pod: Object) -> None:
        self.pod = pod
        self.wake()

    def remove(self) -> None:
        self.removed = True
        self.wake()

    def wake(self) -> None:
        self._event.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def _wake_in(self, seconds: float) -> None:
        at = time.monotonic() + max(seconds, 0.05)
        if self.wake_at is None or at < self.wake_at:
            self.wake_at = at

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                timeout = RESYNC_SECONDS
                if self.wake_at is not None:
                    timeout = max(0.0, min(timeout, self.wake_at - time.monotonic()))
                try:
                    await asyncio.wait_for(self._event.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
                self._event.clear()
                self.wake_at = None
                try:
                    finished = await self.sync()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    log.exception("sync of pod %s failed", pod_desc(self.pod))
                    self._wake_in(min(0.5 * 2 ** failures, 30.0))
                    continue
                if finished:
                    return
        finally:
            self.done.set()

    # -- one pass ------------------------------------------------------------------------------
    async def sync(self) -> bool:
        """One pass; True once the pod is gone and everything of it is cleaned up."""
        pod = self.pod
        meta = pod["metadata"]
        if self.removed:
            await self.kill_pod(grace_override=None if self.running_anything() else 0)
            await self.cleanup()
            return True
        if meta.get("deletionTimestamp"):
            await self.kill_pod()
            await self.write_status(terminal=True)
            await self.cleanup()
            await self.delete_from_api()
            self.agent.finished(self.uid)
            return True
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            # A finished pod never runs again (also after an agent restart): only make sure
            # nothing of it still runs.
            if not self.terminated and self.running_anything():
                await self.kill_pod()
            self.terminated = True
            return False
        await self.sync_running()
        return False

    def running_anything(self) -> bool:
        return bool(self.agent.pod_runtime(self.uid).running()) or \
            self.agent.pod_runtime(self.uid).running_sandbox() is not None

    # -- the running pod -------------------------------------------------------------------------
    async def sync_running(self) -> None:
        pod = self.pod
        spec = pod.get("spec") or {}
        if not spec.get("hostNetwork") and not self.agent.network_ready():
            self.agent.recorder.event(pod_ref(pod), "Warning", "NetworkNotReady",
                                      "network is not ready: container runtime network not "
                                      "ready: NetworkReady=false reason:NetworkPluginNotReady "
                                      "message:the node has no podCIDR yet")
            self._wake_in(2.0)
            await self.write_status()
            return
        if not await self.ensure_volumes():
            await self.write_status()
            return
        state = self.agent.pod_runtime(self.uid)
        sandbox = state.running_sandbox()
        if sandbox is None:
            sandbox = await self.create_sandbox(state)
            if sandbox is None:
                await self.write_status()
                return
            state = self.agent.pod_runtime(self.uid)
        policy = spec.get("restartPolicy", "Always")
        if await self.sync_init_containers(sandbox, state, policy):
            await self.sync_app_containers(sandbox, self.agent.pod_runtime(self.uid), policy)
        status = await self.write_status()
        if not self.start_observed and status.get("containerStatuses") and all(
                "running" in (c.get("state") or {}) for c in status["containerStatuses"]):
            self.start_observed = True
            took = time.monotonic() - self.seen_at
            POD_WORKER_START.observe(took)
            POD_START_SLI.observe(max(0.0, took - self.pull_seconds))
        if status.get("phase") in ("Succeeded", "Failed"):
            # Nothing of a finished pod runs again: stop what remains and free its address.
            await self.kill_pod()
            await self.write_status(terminal=True)
            self.final_status_written = True

    async def ensure_volumes(self) -> bool:
        pod = self.pod
        now = time.monotonic()
        try:
            if self.volume_paths is None:
                self.volume_paths = await self.agent.volumes.setup(pod)
                self.volumes_refreshed = now
                self.waiting.pop("__volumes__", None)
            elif now - self.volumes_refreshed > self.agent.volume_refresh_seconds:
                self.volumes_refreshed = now
                await self.agent.volumes.refresh(pod)
        except Exception as e:  # VolumeError (already recorded as an event) and the like
            if not hasattr(e, "reason"):
                self.agent.recorder.event(pod_ref(pod), "Warning", "FailedMount", str(e))
            log.info("volumes of pod %s: %s", pod_desc(pod), e)
            self._wake_in(2.0 if self.volume_paths is None else RESYNC_SECONDS)
            return self.volume_paths is not None
        return True

    async def create_sandbox(self, state: PodRuntime) -> Sandbox | None:
        pod = self.pod
        attempt = 0
        if state.sandboxes:
            attempt = state.sandboxes[0].config.attempt + 1
            self.agent.recorder.event(pod_ref(pod), "Normal", "SandboxChanged",
                                      "Pod sandbox changed, it will be killed and re-created.")
            for c in state.running():
                await self.stop_container(c, 0, reason="SandboxChanged")
            await self.agent.remove_sandboxes(state.sandboxes)
        host_searches = self.agent.host_dns_searches()
        dns, warning = cfg.dns_config(pod, cluster_dns=self.agent.cluster_dns,
                                      cluster_domain=self.agent.cluster_domain,
                                      host_searches=host_searches)
        if warning:
            self.agent.recorder.event(pod_ref(pod), "Warning", "MissingClusterDNS", warning)
        hosts_path = self.agent.pod_dir(self.uid) / "etc-hosts"
        config = cfg.sandbox_config(pod, attempt=attempt, cgroup_root=self.agent.cgroup_root,
                                    dns=dns, hosts_path=None if (pod.get("spec") or {}).get(
                                        "hostNetwork") else hosts_path)
        try:
            with runtime_operation("run_podsandbox"):
                sandbox = await self.agent.runtime.run_sandbox(config)
        except Exception as e:
            message = getattr(e, "message", None) or str(e)
            self.agent.recorder.event(pod_ref(pod), "Warning", "FailedCreatePodSandBox",
                                      f"Failed to create pod sandbox: {message}")
            self._wake_in(self.agent.backoff.delay("sandbox/" + self.uid) or 2.0)
            self.agent.backoff.next("sandbox/" + self.uid)
            return None
        if config.hosts_file is not None:   # written while the runtime is relisted
            await asyncio.gather(
                asyncio.to_thread(_write_file, hosts_path, cfg.hosts_file(pod, sandbox.ips)),
                self.agent.refresh_pod(self.uid))
        else:
            await self.agent.refresh_pod(self.uid)
        return sandbox

    # -- init containers -----------------------------------------------------------------------
    async def sync_init_containers(self, sandbox: Sandbox, state: PodRuntime, policy: str) -> bool:
        """Run init containers in order; True when every one has completed (sidecars started)."""
        for spec in (self.pod.get("spec") or {}).get("initContainers") or ():
            latest = state.latest(spec["name"])
            if is_sidecar(spec):
                if latest is not None and latest.state == State.RUNNING:
                    self.track(spec, latest, sandbox)
                    if await self.check_liveness(spec, latest, "Always"):
                        return False
                    if not self.agent.probes.started(self.uid, spec["name"]):
                        return False
                    continue
                await self.start_or_backoff(sandbox, spec, latest, "Always", init=True)
                return False
            if latest is not None and latest.state == State.EXITED and latest.exit_code == 0:
                continue
            if latest is not None and latest.state in (State.RUNNING, State.CREATED):
                return False
            if latest is not None and latest.state == State.EXITED and policy == "Never":
                return False  # the pod has failed: getPhase says so
            await self.start_or_backoff(sandbox, spec, latest,
                                        "OnFailure" if policy != "Never" else "Never", init=True)
            return False
        return True

    # -- app containers ------------------------------------------------------------------------
    async def sync_app_containers(self, sandbox: Sandbox, state: PodRuntime, policy: str) -> None:
        starts = []
        for spec in (self.pod.get("spec") or {}).get("containers") or ():
            latest = state.latest(spec["name"])
            if latest is not None and latest.state == State.RUNNING:
                self.track(spec, latest, sandbox)
                await self.check_liveness(spec, latest, policy)
                self.waiting.pop(spec["name"], None)
                continue
            if latest is not None and latest.state == State.CREATED:
                continue
            starts.append(self.start_or_backoff(sandbox, spec, latest, policy, init=False))
        if starts:
            await asyncio.gather(*starts)

    def track(self, spec: Object, c: ContainerStatus, sandbox: Sandbox) -> None:
        """Probe a running container (again after an agent restart; idempotent)."""
        self.agent.probes.container_started(
            self.uid, spec["name"], c.id, c.started_at,
            sandbox.ips[0] if sandbox.ips else self.agent.node_ip, pod=self.pod)

    async def check_liveness(self, spec: Object, latest: ContainerStatus, policy: str) -> bool:
        """Kill a container whose liveness (or startup) probe failed; True if it was killed."""
        message = self.agent.probes.liveness_failed(self.uid, spec["name"],
                                                    restart=policy != "Never")
        if not message:
            return False
        self.agent.recorder.event(pod_ref(self.pod), "Normal", "Killing", message)
        await self.stop_container(latest, self.probe_grace(spec), reason="Unhealthy",
                                  run_pre_stop=True)
        await self.agent.refresh_pod(self.uid)
        self.wake()
        return True

    def probe_grace(self, spec: Object) -> int:
        grace = self.agent.probes.kill_grace_period(self.uid, spec["name"])
        if grace is not None:
            return int(grace)
        return cfg.grace_period(self.pod, (self.pod.get("spec") or {}).get(
            "terminationGracePeriodSeconds", cfg.DEFAULT_TERMINATION_GRACE))

    def should_restart(self, latest: ContainerStatus | None, policy: str) -> bool:
        if latest is None:
            return True
        if latest.state != State.EXITED:
            return False
        if policy == "Always":
            return True
        if policy == "OnFailure":
            return latest.exit_code != 0
        return False

    async def start_or_backoff(self, sandbox: Sandbox, spec: Object,
                               latest: ContainerStatus | None, policy: str, *, init: bool) -> None:
        name = spec["name"]
        if not self.should_restart(latest, policy):
            self.waiting.pop(name, None)
            return
        key = f"{self.uid}/{name}"
        if latest is not None:
            left = self.agent.backoff.in_backoff_since(key, latest.finished_at)
            if left > 0:
                delay = self.agent.backoff.delay(key)
                message = (f"back-off {_duration(delay)} restarting failed container={name} "
                           f"pod={pod_desc(self.pod)}")
                if self.waiting.get(name, Waiting("")).reason != "CrashLoopBackOff":
                    self.agent.recorder.event(pod_ref(self.pod), "Warning", "BackOff",
                                              f"Back-off restarting failed container {name} in "
                                              f"pod {pod_desc(self.pod)}")
                self.waiting[name] = Waiting("CrashLoopBackOff", message)
                self._wake_in(left)
                return
            self.agent.backoff.next(key)
        await self.start_container(sandbox, spec, latest)

    async def start_container(self, sandbox: Sandbox, spec: Object,
                              latest: ContainerStatus | None) -> None:
        """Pull, configure, create and start one container, then its postStart hook."""
        pod, name = self.pod, spec["name"]
        recorder = self.agent.recorder
        image = await self.ensure_image(spec)
        if image is None:
            return
        attempt = latest.attempt + 1 if latest is not None else self.agent.next_attempt(pod, name)
        try:
            config = await self.container_config(sandbox, spec, image, attempt)
        except CRIError as e:
            recorder.event(pod_ref(pod), "Warning", "Failed", f"Error: {e.message}")
            self.waiting[name] = Waiting(e.reason, e.message)
            self._wake_in(self.agent.backoff.delay(f"{self.uid}/{name}") or 2.0)
            return
        try:
            with runtime_operation("create_container"):
                cid = await self.agent.runtime.create_container(sandbox, config)
        except CRIError as e:
            recorder.event(pod_ref(pod), "Warning", "Failed", f"Error: {e.message}")
            self.waiting[name] = Waiting("CreateContainerError", e.message)
            self._wake_in(2.0)
            return
        recorder.event(pod_ref(pod), "Normal", "Created", f"Created container: {name}")
        try:
            with runtime_operation("start_container"):
                await self.agent.runtime.start_container(cid)
        except CRIError as e:
            recorder.event(pod_ref(pod), "Warning", "Failed", f"Error: {e.message}")
            self.waiting[name] = Waiting("RunContainerError", e.message)
            await self.agent.refresh_pod(self.uid)
            self._wake_in(1.0)
            return
        recorder.event(pod_ref(pod), "Normal", "Started", f"Started container {name}")
        self.waiting.pop(name, None)
        status = await self.agent.refresh_pod(self.uid, container_id=cid)
        started_at = status.started_at if status is not None else time.time()
        self.agent.probes.container_started(self.uid, name, cid, started_at,
                                            sandbox.ips[0] if sandbox.ips else self.agent.node_ip,
                                            pod=pod)
        hook = (spec.get("lifecycle") or {}).get("postStart")
        if hook:
            error = await self.agent.hooks.run(pod, spec, cid, hook, sandbox)
            if error is not None:
                recorder.event(pod_ref(pod), "Warning", "FailedPostStartHook",
                               "PostStartHook failed")
                await self.agent.runtime.stop_container(cid, cfg.grace_period(pod))
                await self.agent.refresh_pod(self.uid)

    async def ensure_image(self, spec: Object) -> Image | None:
        pod, name = self.pod, spec["name"]
        ref = spec.get("image", "")
        policy = spec.get("imagePullPolicy") or (
            "Always" if ref.endswith(":latest") or (":" not in ref.rsplit("/", 1)[-1]
                                                     and "@" not in ref) else "IfNotPresent")
        key = f"image/{self.uid}/{ref}"
        left = self.agent.backoff.in_backoff_since(key, self.agent.backoff_marks.get(key, 0.0))
        if left > 0 and self.waiting.get(name, Waiting("")).reason in ("ErrImagePull",
                                                                       "ImagePullBackOff"):
            message = f'Back-off pulling image "{ref}"'
            if self.waiting[name].reason != "ImagePullBackOff":
                self.agent.recorder.event(pod_ref(pod), "Normal", "BackOff", message)
            self.waiting[name] = Waiting("ImagePullBackOff", message)
            self._wake_in(left)
            return None
        present = self.agent.images.get(ref)
        if policy == "Never" or (policy == "IfNotPresent" and present is not None):
            if present is None:
                message = (f'Container image "{ref}" is not present with pull policy of Never')
                self.agent.recorder.event(pod_ref(pod), "Warning", "ErrImageNeverPull", message)
                self.waiting[name] = Waiting("ErrImageNeverPull", message)
                self._wake_in(RESYNC_SECONDS)
                return None
            self.agent.recorder.event(pod_ref(pod), "Normal", "Pulled",
                                      f'Container image "{ref}" already present on machine')
            self.image_ids[name] = _image_id(present)
            return present
        self.agent.recorder.event(pod_ref(pod), "Normal", "Pulling", f'Pulling image "{ref}"')
        started = time.monotonic()
        try:
            auths = await self.agent.pull_auths(pod, ref)
            pull_started = time.monotonic()
            with runtime_operation("pull_image"):
                image = await self.agent.images.ensure(ref, policy, auths)
            self.pull_seconds += time.monotonic() - pull_started
        except ImageNotPresentError as e:
            self.waiting[name] = Waiting("ErrImageNeverPull", e.message)
            return None
        except Exception as e:
            message = getattr(e, "message", None) or str(e)
            self.agent.recorder.event(pod_ref(pod), "Warning", "Failed",
                                      f'Failed to pull image "{ref}": {message}')
            self.agent.recorder.event(pod_ref(pod), "Warning", "Failed", "Error: ErrImagePull")
            self.waiting[name] = Waiting("ErrImagePull", message)
            self.agent.backoff.next(key)
            self.agent.backoff_marks[key] = time.time()
            self._wake_in(self.agent.backoff.delay(key))
            return None
        took = time.monotonic() - started
        self.agent.recorder.event(
            pod_ref(pod), "Normal", "Pulled",
            f'Successfully pulled image "{ref}" in {took:.3f}s ({took:.3f}s including waiting). '
            f"Image size: {image.size} bytes.")
        self.image_ids[name] = _image_id(image)
        return image

    async def container_config(self, sandbox: Sandbox, spec: Object, image: Image,
                               attempt: int) -> ContainerConfig:
        pod = self.pod
        agent = self.agent
        try:
            env_list = await agent.environment(pod, spec, sandbox)
        except CRIError:
            raise
        except Exception as e:
            raise cfg.ConfigError(getattr(e, "message", None) or str(e)) from e
        image_env = list(image.config.get("Env") or ())
        keys = {e.split("=", 1)[0] for e in env_list}
        env = [e for e in image_env if e.split("=", 1)[0] not in keys] + env_list
        env_map = dict(e.split("=", 1) for e in env if "=" in e)
        command = cfg.command_line(spec, image, env_map)
        security = cfg.security(pod, spec, image)
        try:
            mounts = await asyncio.to_thread(agent.volumes.mounts_for, pod, spec,
                                             self.volume_paths or {}, env=env, attempt=attempt)
        except CRIError:
            raise
        except Exception as e:
            raise cfg.ConfigError(getattr(e, "message", None) or str(e)) from e
        termination_path = spec.get("terminationMessagePath", "/dev/termination-log")
        meta = pod["metadata"]
        log_path = agent.log_path(pod, spec["name"], attempt)
        labels = dict(cfg.pod_labels(pod))
        labels[cfg.CONTAINER_NAME] = spec["name"]
        return ContainerConfig(
            name=spec["name"], attempt=attempt, image=image, image_ref=spec.get("image", ""),
            command=command, env=env, working_dir=spec.get("workingDir") or
            image.config.get("WorkingDir") or "", mounts=mounts,
            resources=cfg.resources(spec, pod), security=security, tty=bool(spec.get("tty")),
            stdin=bool(spec.get("stdin")), stdin_once=bool(spec.get("stdinOnce")),
            log_path=log_path, stop_signal=image.config.get("StopSignal") or "SIGTERM",
            labels=labels, annotations={"io.kubernetes.pod.terminationGracePeriod": str(
                (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)),
                "io.kubernetes.container.terminationMessagePath": termination_path or "",
                "io.kubernetes.pod.namespace": meta.get("namespace", "")})

    # -- stopping -----------------------------------------------------------------------------
    async def stop_container(self, c: ContainerStatus, grace: int, *, reason: str = "",
                             run_pre_stop: bool = False) -> None:
        pod = self.pod
        spec = _container_spec(pod, c.name)
        started = time.monotonic()
        if run_pre_stop and spec is not None and c.state == State.RUNNING:
            hook = (spec.get("lifecycle") or {}).get("preStop")
            if hook:
                try:
                    error = await asyncio.wait_for(
                        self.agent.hooks.run(pod, spec, c.id, hook, None), grace)
                except asyncio.TimeoutError:
                    error = f"PreStopHook exceeded the grace period of {grace} seconds"
                if error:
                    self.agent.recorder.event(pod_ref(pod), "Warning", "FailedPreStopHook",
                                              f"PreStopHook failed: {error}")
        left = max(grace - (time.monotonic() - started), cfg.MIN_GRACE if grace > 0 else 0)
        signal = "SIGTERM"
        try:
            await self.agent.runtime.stop_container(c.id, left, signal)
        except CRIError as e:
            log.warning("stopping container %s of %s: %s", c.name, pod_desc(pod), e)
        self.agent.probes.container_stopped(self.uid, c.name)

    async def kill_pod(self, grace_override: int | None = None) -> None:
        """Stop every container (preStop, SIGTERM, grace, SIGKILL) and the sandbox."""
        pod = self.pod
        state = self.agent.pod_runtime(self.uid)
        grace = cfg.grace_period(pod, grace_override)
        running = state.running()
        if running:
            for c in running:
                self.agent.recorder.event(pod_ref(pod), "Normal", "Killing",
                                          f"Stopping container {c.name}")
            app = [c for c in running if not _is_init(pod, c.name)]
            sidecars = [c for c in running if _is_init(pod, c.name)]
            await asyncio.gather(*(self.stop_container(c, grace, run_pre_stop=True)
                                   for c in app))
            if sidecars:  # sidecars stop after the main containers, in reverse order
                await asyncio.gather(*(self.stop_container(c, max(cfg.MIN_GRACE, grace // 2),
                                                           run_pre_stop=True)
                                       for c in sidecars))
        for sandbox in state.sandboxes:
            if sandbox.state == State.RUNNING:
                try:
                    await self.agent.runtime.stop_sandbox(sandbox.id)
                except CRIError as e:
                    log.warning("stopping sandbox of %s: %s", pod_desc(pod), e)
        self.terminated = True
        await self.agent.refresh_pod(self.uid)
        await self.collect_termination_messages()

    async def cleanup(self) -> None:
        """Remove containers, sandboxes and volumes of a pod that is finished with."""
        await self.agent.remove_pod_runtime(self.agent.pod_runtime(self.uid))
        self.agent.probes.remove_pod(self.uid)
        try:
            await self.agent.volumes.teardown(self.uid)
        except Exception:
            log.exception("tearing down the volumes of %s", pod_desc(self.pod))
        await self.agent.forget_pod(self.uid)

    async def delete_from_api(self) -> None:
        """The kubelet's last word on a pod: delete it with grace 0 once nothing runs."""
        meta = self.pod["metadata"]
        try:
            await self.agent.client.delete("v1", "pods", meta["name"],
                                           namespace=meta.get("namespace"),
                                           grace_period_seconds=0,
                                           preconditions=Preconditions(uid=self.uid))
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    # -- status -------------------------------------------------------------------------------
    async def collect_termination_messages(self) -> None:
        state = self.agent.pod_runtime(self.uid)
        for name, history in state.containers.items():
            for c in history[:2]:
                if c.state == State.EXITED and c.id not in self.termination_messages:
                    spec = _container_spec(self.pod, name)
                    message = await asyncio.to_thread(self.agent.read_termination_message,
                                                      self.pod, spec, c)
                    self.termination_messages[c.id] = message

    async def write_status(self, terminal: bool = False) -> Object:
        await self.collect_termination_messages()
        state = self.agent.pod_runtime(self.uid)
        spec = self.pod.get("spec") or {}
        init_done = all(
            (lambda c: c is not None and (c.state == State.EXITED and c.exit_code == 0
                                          if not is_sidecar(s) else c.state == State.RUNNING))(
                state.latest(s["name"]))
            for s in spec.get("initContainers") or ())
        sandbox = state.running_sandbox() or (state.sandboxes[0] if state.sandboxes else None)
        view = PodView(sandbox=sandbox, containers=state.containers, waiting=self.waiting,
                       ready=lambda n: self.agent.probes.readiness(self.uid, n),
                       started=lambda n: self.agent.probes.started(self.uid, n),
                       image_ids=self.image_ids, termination_messages=self.termination_messages,
                       initializing=not init_done)
        return await self.agent.status_manager.set_status(self.pod, view, terminal=terminal)


def _write_file(path, text: str) -> None:
    import os
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _container_spec(pod: Mapping[str, Any], name: str) -> Object | None:
    spec = pod.get("spec") or {}
    for c in list(spec.get("containers") or ()) + list(spec.get("initContainers") or ()):
        if c.get("name") == name:
            return c
    return None


def _is_init(pod: Mapping[str, Any], name: str) -> bool:
    return any(c.get("name") == name for c in (pod.get("spec") or {}).get("initContainers") or ())


def _image_id(image: Image) -> str:
    return image.repo_digests[0] if image.repo_digests else image.id


def _duration(seconds: float) -> str:
    """Go's time.Duration formatting for whole seconds: 10s, 1m20s, 5m0s."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60}s"
