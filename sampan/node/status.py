"""A pod's status as the kubelet reports it, from what the runtime shows of the pod.

This is upstream's ``generateAPIPodStatus`` / ``convertToAPIContainerStatuses`` / ``getPhase``
in one place, so that ``kubectl get pods`` reads the same READY / STATUS / RESTARTS on Sampan
as on a kubelet: container states (waiting with ContainerCreating, PodInitializing,
ErrImagePull, ImagePullBackOff, CrashLoopBackOff, CreateContainerConfigError ...; running;
terminated with Completed, Error, OOMKilled), lastState, restartCount, the phase, and the
conditions PodReadyToStartContainers, Initialized, ContainersReady and Ready.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.node.cri import ContainerStatus, Sandbox, State

Object = dict[str, Any]

CONTAINER_ID_PREFIX = "sampan://"
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def is_sidecar(container: Mapping[str, Any]) -> bool:
    """An init container with restartPolicy Always (a restartable init container)."""
    return container.get("restartPolicy") == "Always"


@dataclass
class Waiting:
    """Why a container is not running, as the pod worker last found it."""

    reason: str
    message: str = ""


@dataclass
class PodView:
    """What the agent knows of one pod's containers when it writes the pod's status."""

    sandbox: Sandbox | None = None
    # newest attempt first, per container name
    containers: dict[str, list[ContainerStatus]] = field(default_factory=dict)
    waiting: dict[str, Waiting] = field(default_factory=dict)
    ready: Callable[[str], bool] = lambda name: True
    started: Callable[[str], bool] = lambda name: True
    image_ids: dict[str, str] = field(default_factory=dict)  # container name → imageID
    termination_messages: dict[str, str] = field(default_factory=dict)  # container id → message
    initializing: bool = False       # init containers still to complete


def _terminated(c: ContainerStatus, message: str = "") -> Object:
    out: Object = {"exitCode": c.exit_code, "reason": c.reason or
                   ("Completed" if c.exit_code == 0 else "Error"),
                   "startedAt": rfc3339(c.started_at) if c.started_at else None,
                   "finishedAt": rfc3339(c.finished_at or c.started_at or c.created_at),
                   "containerID": CONTAINER_ID_PREFIX + c.id}
    msg = message or c.message
    if msg:
        out["message"] = msg
    return out


def container_status(spec: Mapping[str, Any], view: PodView, *, init: bool) -> Object:
    name = spec["name"]
    history = view.containers.get(name) or []
    latest = history[0] if history else None
    previous = history[1] if len(history) > 1 else None
    waiting = view.waiting.get(name)
    out: Object = {"name": name, "image": spec.get("image", ""),
                   "imageID": view.image_ids.get(name, ""),
                   "ready": False, "restartCount": latest.attempt if latest else 0,
                   "started": False, "state": {}, "lastState": {}}
    if latest is None:
        reason = waiting or Waiting("PodInitializing" if not init and view.initializing
                                    else "ContainerCreating")
        out["state"] = {"waiting": _waiting(reason)}
        return out
    out["containerID"] = CONTAINER_ID_PREFIX + latest.id
    if latest.image_id:
        out["imageID"] = latest.image_id
    if latest.state == State.RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at)}}
        out["started"] = view.started(name)
        out["ready"] = out["started"] and view.ready(name)
        if previous is not None and previous.state == State.EXITED:
            out["lastState"] = {"terminated": _terminated(
                previous, view.termination_messages.get(previous.id, ""))}
    elif latest.state == State.EXITED:
        terminated = _terminated(latest, view.termination_messages.get(latest.id, ""))
        if waiting is not None:
            # Waiting to be restarted (back-off, image pull ...): the exit is the last state.
            out["state"] = {"waiting": _waiting(waiting)}
            out["lastState"] = {"terminated": terminated}
        else:
            out["state"] = {"terminated": terminated}
            if previous is not None and previous.state == State.EXITED:
                out["lastState"] = {"terminated": _terminated(
                    previous, view.termination_messages.get(previous.id, ""))}
    else:  # created but not started, or unknown
        out["state"] = {"waiting": _waiting(waiting or Waiting("ContainerCreating"))}
        if previous is not None and previous.state == State.EXITED:
            out["lastState"] = {"terminated": _terminated(previous)}
    return out


def _waiting(w: Waiting) -> Object:
    out = {"reason": w.reason}
    if w.message:
        out["message"] = w.message
    return out


def get_phase(pod: Mapping[str, Any], init_statuses: list[Object],
              statuses: list[Object], terminal: bool = False) -> str:
    """Upstream's getPhase: the pod phase from its containers' states."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy", "Always")
    by_name = {s["name"]: s for s in init_statuses}
    pending_init = failed_init = pending_sidecars = 0
    unknown = running = waiting = stopped = succeeded = 0
    for c in spec.get("initContainers") or ():
        s = by_name.get(c["name"])
        state = (s or {}).get("state") or {}
        last = ((s or {}).get("lastState") or {}).get("terminated")
        if is_sidecar(c):
            if s is None:
                pending_sidecars += 1
                unknown += 1
            elif "running" in state:
                if not s.get("started"):
                    pending_sidecars += 1
                running += 1
            elif "waiting" in state and last is None:
                pending_sidecars += 1
                waiting += 1
            continue
        if s is None or "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        elif "waiting" in state:
            if last is not None:
                if last.get("exitCode", 0) != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    by_name = {s["name"]: s for s in statuses}
    for c in spec.get("containers") or ():
        s = by_name.get(c["name"])
        if s is None:
            unknown += 1
            continue
        state = s.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
        elif "waiting" in state:
            if (s.get("lastState") or {}).get("terminated") is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or pending_sidecars:
        # Init containers still to run (or restarting after a failure with OnFailure/Always).
        return "Pending"
    if waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"  # every container is being restarted
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: restarting the failed ones
    return "Pending"


def _condition(type_: str, ok: bool, reason: str | None = None,
               message: str | None = None) -> Object:
    out: Object = {"type": type_, "status": "True" if ok else "False", "lastProbeTime": None}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def pod_conditions(pod: Mapping[str, Any], phase: str, view: PodView,
                   init_statuses: list[Object], statuses: list[Object]) -> list[Object]:
    spec = pod.get("spec") or {}
    sandbox_ready = view.sandbox is not None and view.sandbox.state == State.RUNNING
    out = [_condition("PodReadyToStartContainers", sandbox_ready and phase not in
                      ("Succeeded", "Failed"))]
    # Initialized
    incomplete = []
    init_by_name = {s["name"]: s for s in init_statuses}
    for c in spec.get("initContainers") or ():
        s = init_by_name.get(c["name"]) or {}
        state = s.get("state") or {}
        if is_sidecar(c):
            if not s.get("started"):
                incomplete.append(c["name"])
        elif state.get("terminated", {}).get("exitCode", 1) != 0 or "terminated" not in state:
            incomplete.append(c["name"])
    if phase == "Succeeded":
        out.append(_condition("Initialized", True, "PodCompleted"))
    elif incomplete:
        out.append(_condition("Initialized", False, "ContainersNotInitialized",
                              f"containers with incomplete status: [{' '.join(incomplete)}]"))
    else:
        out.append(_condition("Initialized", True))
    # ContainersReady and Ready
    unready = [s["name"] for s in statuses if not s.get("ready")]
    unready += [c["name"] for c in spec.get("initContainers") or ()
                if is_sidecar(c) and not (init_by_name.get(c["name"]) or {}).get("ready")]
    if phase == "Succeeded":
        ready = _condition("Ready", False, "PodCompleted")
        containers_ready = _condition("ContainersReady", False, "PodCompleted")
    elif unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        ready = _condition("Ready", False, "ContainersNotReady", message)
        containers_ready = _condition("ContainersReady", False, "ContainersNotReady", message)
    else:
        containers_ready = _condition("ContainersReady", True)
        ready = _gated_ready(pod)
    out.append(ready)
    out.append(containers_ready)
    return out


def _gated_ready(pod: Mapping[str, Any]) -> Object:
    have = {c.get("type"): c.get("status")
            for c in (pod.get("status") or {}).get("conditions") or ()}
    missing, not_true = [], []
    for gate in (pod.get("spec") or {}).get("readinessGates") or ():
        kind = gate.get("conditionType")
        if kind not in have:
            missing.append(kind)
        elif have[kind] != "True":
            not_true.append(kind)
    if missing or not_true:
        parts = []
        if missing:
            parts.append("corresponding condition of pod readiness gate "
                         + ", ".join(f'"{k}"' for k in missing) + " does not exist.")
        if not_true:
            parts.append("the status of pod readiness gate "
                         + ", ".join(f'"{k}"' for k in not_true) + ' is not "True", but False')
        return _condition("Ready", False, "ReadinessGatesNotReady", " ".join(parts))
    return _condition("Ready", True)


def merge_conditions(new: list[Object], previous: list[Object], now: str) -> list[Object]:
    """Ours replace the kubelet's; a condition whose status did not change keeps its
    lastTransitionTime; conditions others own (PodScheduled, DisruptionTarget, readiness gates')
    stay as they are."""
    before = {c.get("type"): c for c in previous}
    out = []
    for c in new:
        old = before.get(c["type"])
        c["lastTransitionTime"] = (old.get("lastTransitionTime") if old and
                                   old.get("status") == c["status"] else None) or now
        out.append(c)
    ours = {c["type"] for c in new}
    out.extend(copy.deepcopy(c) for c in previous if c.get("type") not in ours)
    order = {t: i for i, t in enumerate(("PodReadyToStartContainers", "Initialized", "Ready",
                                          "ContainersReady", "PodScheduled"))}
    out.sort(key=lambda c: order.get(c.get("type"), len(order)))
    return out


def pod_status(pod: Mapping[str, Any], view: PodView, *, host_ip: str, now: str,
               terminal: bool = False, qos_class: str | None = None) -> Object:
    """The status the agent writes for ``pod`` (the API object as last seen)."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    init_statuses = [container_status(c, view, init=True) for c in spec.get("initContainers") or ()]
    statuses = [container_status(c, view, init=False) for c in spec.get("containers") or ()]
    phase = get_phase(pod, init_statuses, statuses, terminal)
    if old.get("phase") in ("Succeeded", "Failed"):
        phase = old["phase"]  # a terminal phase never changes back
    status: Object = {"phase": phase}
    status["conditions"] = merge_conditions(
        pod_conditions(pod, phase, view, init_statuses, statuses),
        list(old.get("conditions") or ()), now)
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    ips = list(view.sandbox.ips) if view.sandbox is not None and view.sandbox.ips else []
    if spec.get("hostNetwork"):
        ips = [host_ip]
    if not ips and old.get("podIP"):
        ips = [p["ip"] for p in old.get("podIPs") or [{"ip": old["podIP"]}]]
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    status["startTime"] = old.get("startTime") or now
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    status["qosClass"] = old.get("qosClass") or qos_class or qos(pod)
    for key in ("nominatedNodeName", "resize", "resourceClaimStatuses"):
        if old.get(key):
            status[key] = old[key]
    return status


def qos(pod: Mapping[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort (upstream's GetPodQOS, without pod-level resources)."""
    from sampan.api.validation import parse_quantity

    spec = pod.get("spec") or {}
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    for c in list(spec.get("initContainers") or ()) + list(spec.get("containers") or ()):
        res = c.get("resources") or {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        for k, v in req.items():
            if parse_quantity(str(v)).value != 0:
                requests[k] = True
        for k, v in lim.items():
            if parse_quantity(str(v)).value != 0:
                limits[k] = True
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
        for k, v in req.items():
            if k in lim and parse_quantity(str(v)).value != parse_quantity(str(lim[k])).value:
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and set(limits) == {"cpu", "memory"}:
        return "Guaranteed"
    return "Burstable"
