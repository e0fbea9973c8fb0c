"""``meta.k8s.io/v1`` Table responses, the server side of ``kubectl get``.

kubectl asks for ``application/json;as=Table;g=meta.k8s.io;v=v1`` and prints what the server
sends, so the columns and cell text here are upstream's: the built-in printers of
``pkg/printers/internalversion/printers.go`` (always generated with ``Wide: true``, so a row
carries its priority-1 cells too and kubectl picks the columns it shows), the
additionalPrinterColumns of a CustomResourceDefinition version (apiextensions' table
convertor), and the default convertor (``Name``, ``Created At``) for everything else.

Objects are v1 JSON dicts. Where upstream prints the internal type, the defaults of the v1
conversion apply (a missing ``replicas`` reads as its default, 1).
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

import orjson

from sampan.api import schema
from sampan.api.errors import StatusError, bad_request
from sampan.api.registry import Resource
from sampan.api.selectors import crd_version, from_label_selector_object

Obj = dict[str, Any]
Cell = Any

# --------------------------------------------------------------------------------------------
# Time (k8s.io/apimachinery/pkg/util/duration)
# --------------------------------------------------------------------------------------------

_SECOND = 1_000_000_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration``: "5s", "3m20s", "10m", "5h30m", "2d3h", "200d", "3y45d"."""
    d = int(seconds * _SECOND)
    whole_seconds = int(d / _SECOND)  # Go truncates toward zero
    if whole_seconds < -1:
        return "<invalid>"
    if whole_seconds < 0:
        return "0s"
    if whole_seconds < 120:
        return f"{whole_seconds}s"
    minutes = d // _MINUTE
    if minutes < 10:
        s = d // _SECOND % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = d // _HOUR
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


@functools.lru_cache(maxsize=8192)
def parse_time(value: str | None) -> float | None:
    """An RFC 3339 timestamp as epoch seconds; None when missing or unparseable."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def translate_timestamp_since(value: str | None, now: float) -> str:
    """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` when unset."""
    at = parse_time(value)
    return "<unknown>" if at is None else human_duration(now - at)


def _rfc3339(value: str | None) -> str:
    # What Go prints for metav1.Time.UTC().Format(time.RFC3339); the zero time when unset.
    at = parse_time(value)
    if at is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(int(at), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------

_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@dataclass(frozen=True, slots=True)
class Column:
    """A column definition. ``doc`` names the API field whose description upstream uses
    (``("core.v1.PodStatus", "podIP")``); ``description`` is literal text otherwise."""

    name: str
    type: str = "string"
    format: str = ""
    priority: int = 0
    description: str = ""
    doc: tuple[str, str] | None = None

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self._description(), "priority": self.priority}

    def _description(self) -> str:
        if self.doc is None:
            return self.description
        definition, field = self.doc
        if not definition.startswith("io.k8s."):
            definition = "io.k8s.api." + definition
        node = schema.builtin().definitions.get(definition, {})
        return (node.get("properties", {}).get(field) or {}).get("description", "")


def _col(name: str, doc: tuple[str, str] | str = "", *, type: str = "string", format: str = "",
         wide: bool = False) -> Column:
    if isinstance(doc, tuple):
        return Column(name, type, format, 1 if wide else 0, doc=doc)
    return Column(name, type, format, 1 if wide else 0, description=doc)


NAME = _col("Name", (_META, "name"), format="name")
AGE = _col("Age", (_META, "creationTimestamp"))
CREATED_AT = _col("Created At", (_META, "creationTimestamp"), type="date")
_CONTAINERS = _col("Containers", "Names of each container in the template.", wide=True)
_IMAGES = _col("Images", "Images referenced by each container in the template.", wide=True)


# --------------------------------------------------------------------------------------------
# Small formatters shared by the printers
# --------------------------------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _age(obj: Obj, now: float) -> str:
    return translate_timestamp_since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def format_labels(labels: dict[str, str] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))


def format_label_selector(selector: dict[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` for an empty result, ``<error>`` if invalid."""
    try:
        text = str(from_label_selector_object(selector))
    except StatusError:
        return "<error>"
    return text or "<none>"


def _selector_string(selector: dict[str, Any] | None) -> str:
    # The deployment printer prints LabelSelectorAsSelector(...).String() as it is.
    try:
        return str(from_label_selector_object(selector))
    except StatusError:
        return "<invalid>"


def _containers(pod_spec: dict[str, Any] | None) -> tuple[str, str]:
    containers = (pod_spec or {}).get("containers") or ()
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _template_spec(obj: Obj) -> dict[str, Any] | None:
    return _get(obj, "spec", "template", "spec")


def _int_or_string(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _quantity(value: Any) -> str:
    # resource.Quantity.String(); nil pointers print "<nil>". Values are stored canonical.
    if value is None:
        return "<nil>"
    return value if isinstance(value, str) else str(value)


def _bool_ptr(value: bool | None) -> str:
    if value is None:
        return "<unset>"
    return "True" if value else "False"


def _list_with_more(items: list[str], count: int, limit: int = 3) -> str:
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _any_condition_true(conditions: Iterable[dict[str, Any]] | None, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions or ())


def _condition_true(conditions: Iterable[dict[str, Any]] | None, kind: str) -> bool:
    """The first condition of ``kind`` is True (``hasJobCondition``)."""
    for condition in conditions or ():
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def _load_balancer_ingress(status: dict[str, Any] | None) -> str:
    addresses = {i.get("ip") or i.get("hostname") for i in (status or {}).get("ingress") or ()}
    addresses.discard(None)
    addresses.discard("")
    return ",".join(sorted(addresses))


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: Iterable[str] | None) -> str:
    present = set(modes or ())
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


# --------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------

_POD_COMPLETED = {"Succeeded": [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                 "message": "The pod has completed successfully."}],
                  "Failed": [{"type": "Completed", "status": "True", "reason": "Failed",
                              "message": "The pod failed."}]}


def _restartable(container: dict[str, Any] | None) -> bool:
    return container is not None and container.get("restartPolicy") == "Always"


def _last_termination(status: dict[str, Any]) -> float | None:
    return parse_time(_get(status, "lastState", "terminated", "finishedAt"))


def _later(a: float | None, b: float | None) -> float | None:
    if b is None:
        return a
    return b if a is None or b > a else a


def _terminated_reason(terminated: dict[str, Any], prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + terminated["reason"]
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode') or 0}"


@dataclass(slots=True)
class _PodSummary:
    reason: str
    ready: int = 0
    restarts: int = 0
    last_restart: float | None = None


def _summarise_init_containers(pod: Obj, summary: _PodSummary) -> tuple[bool, int, float | None]:
    """Walk the init container statuses in order, as printPod does: the first one that has not
    finished sets the reason. Returns (initializing, sidecar restarts, last sidecar restart)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    init_specs = spec.get("initContainers") or ()
    by_name = {c.get("name"): c for c in init_specs}
    sidecar_restarts, last_sidecar_restart = 0, None
    for i, container in enumerate(status.get("initContainerStatuses") or ()):
        count = container.get("restartCount") or 0
        finished = _last_termination(container)
        summary.restarts += count
        summary.last_restart = _later(summary.last_restart, finished)
        restartable = _restartable(by_name.get(container.get("name")))
        if restartable:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and (terminated.get("exitCode") or 0) == 0:
            continue
        if restartable and container.get("started") is True:
            summary.ready += 1 if container.get("ready") else 0
            continue
        if terminated is not None:
            summary.reason = _terminated_reason(terminated, "Init:")
        elif (waiting or {}).get("reason") not in (None, "", "PodInitializing"):
            summary.reason = "Init:" + waiting["reason"]
        else:
            summary.reason = f"Init:{i}/{len(init_specs)}"
        return True, sidecar_restarts, last_sidecar_restart
    return False, sidecar_restarts, last_sidecar_restart


def _summarise_containers(pod: Obj, summary: _PodSummary) -> None:
    """The regular containers, last to first, so the first container's state wins."""
    status = pod.get("status") or {}
    has_running, error_reason = False, ""
    for container in reversed(status.get("containerStatuses") or ()):
        summary.restarts += container.get("restartCount") or 0
        summary.last_restart = _later(summary.last_restart, _last_termination(container))
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if waiting is not None and waiting.get("reason"):
            summary.reason = waiting["reason"]
        elif terminated is not None:
            summary.reason = _terminated_reason(terminated)
            if terminated.get("exitCode"):
                error_reason = summary.reason
        elif container.get("ready") and state.get("running") is not None:
            has_running = True
            summary.ready += 1
    # A pod whose first container completed is still running while another one runs.
    if summary.reason == "Completed":
        if has_running and _any_condition_true(status.get("conditions"), "Ready"):
            summary.reason = "Running"
        elif error_reason:
            summary.reason = error_reason
        elif has_running:
            summary.reason = "NotReady"


def _pod_status(pod: Obj) -> _PodSummary:
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    summary = _PodSummary(status.get("reason") or phase)
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            summary.reason = "SchedulingGated"
    initializing, sidecar_restarts, last_sidecar_restart = _summarise_init_containers(pod, summary)
    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        summary.restarts, summary.last_restart = sidecar_restarts, last_sidecar_restart
        _summarise_containers(pod, summary)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            summary.reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            summary.reason = "Terminating"
    return summary


def _primary_pod_ip(status: dict[str, Any]) -> str:
    # The internal PodIPs[0]: v1's podIP is authoritative when set.
    if status.get("podIP"):
        return status["podIP"]
    ips = status.get("podIPs") or ()
    return (ips[0].get("ip") or "") if ips else ""


def _readiness_gates(pod: Obj) -> str:
    gates = _get(pod, "spec", "readinessGates") or ()
    if not gates:
        return "<none>"
    conditions = _get(pod, "status", "conditions") or ()
    ready = 0
    for gate in gates:
        for condition in conditions:
            if condition.get("type") == gate.get("conditionType"):
                ready += condition.get("status") == "True"
                break
    return f"{ready}/{len(gates)}"


def _pod_row(pod: Obj, now: float) -> list[Cell]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    summary = _pod_status(pod)
    total = len(spec.get("containers") or ()) + sum(
        1 for c in spec.get("initContainers") or () if _restartable(c))
    restarts = str(summary.restarts)
    if summary.restarts and summary.last_restart is not None:
        restarts += f" ({human_duration(now - summary.last_restart)} ago)"
    return [_name(pod), f"{summary.ready}/{total}", summary.reason, restarts, _age(pod, now),
            _primary_pod_ip(status) or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", _readiness_gates(pod)]


def _pod_conditions(pod: Obj) -> list[dict[str, str]] | None:
    return _POD_COMPLETED.get(_get(pod, "status", "phase"))


_POD_COLUMNS = (
    NAME,
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col("Restarts", "The number of times the containers in this pod have been restarted and "
                     "when the last container in this pod has restarted."),
    AGE,
    _col("IP", ("core.v1.PodStatus", "podIP"), wide=True),
    _col("Node", ("core.v1.PodSpec", "nodeName"), wide=True),
    _col("Nominated Node", ("core.v1.PodStatus", "nominatedNodeName"), wide=True),
    _col("Readiness Gates", ("core.v1.PodSpec", "readinessGates"), wide=True),
)


def _pod_template_row(obj: Obj, now: float) -> list[Cell]:
    names, images = _containers(_get(obj, "template", "spec"))
    return [_name(obj), names, images, format_labels(_get(obj, "template", "metadata", "labels"))]


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


def _replicas(obj: Obj) -> int:
    replicas = _get(obj, "spec", "replicas")
    return 1 if replicas is None else replicas


def _status_int(obj: Obj, field: str) -> int:
    return _get(obj, "status", field) or 0


def _replication_controller_row(obj: Obj, now: float) -> list[Cell]:
    names, images = _containers(_template_spec(obj))
    return [_name(obj), _replicas(obj), _status_int(obj, "replicas"),
            _status_int(obj, "readyReplicas"), _age(obj, now), names, images,
            format_labels(_get(obj, "spec", "selector"))]


def _replica_set_row(obj: Obj, now: float) -> list[Cell]:
    names, images = _containers(_template_spec(obj))
    return [_name(obj), _replicas(obj), _status_int(obj, "replicas"),
            _status_int(obj, "readyReplicas"), _age(obj, now), names, images,
            format_label_selector(_get(obj, "spec", "selector"))]


def _deployment_row(obj: Obj, now: float) -> list[Cell]:
    names, images = _containers(_template_spec(obj))
    return [_name(obj), f"{_status_int(obj, 'readyReplicas')}/{_replicas(obj)}",
            _status_int(obj, "updatedReplicas"), _status_int(obj, "availableReplicas"),
            _age(obj, now), names, images, _selector_string(_get(obj, "spec", "selector"))]


def _stateful_set_row(obj: Obj, now: float) -> list[Cell]:
    names, images = _containers(_template_spec(obj))
    return [_name(obj), f"{_status_int(obj, 'readyReplicas')}/{_replicas(obj)}", _age(obj, now),
            names, images]


def _daemon_set_row(obj: Obj, now: float) -> list[Cell]:
    names, images = _containers(_template_spec(obj))
    return [_name(obj), _status_int(obj, "desiredNumberScheduled"),
            _status_int(obj, "currentNumberScheduled"), _status_int(obj, "numberReady"),
            _status_int(obj, "updatedNumberScheduled"), _status_int(obj, "numberAvailable"),
            format_labels(_get(_template_spec(obj), "nodeSelector")), _age(obj, now),
            names, images, format_label_selector(_get(obj, "spec", "selector"))]


def _job_completions(obj: Obj) -> str:
    succeeded = _status_int(obj, "succeeded")
    completions = _get(obj, "spec", "completions")
    if completions is not None:
        return f"{succeeded}/{completions}"
    parallelism = _get(obj, "spec", "parallelism") or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(obj: Obj, now: float) -> str:
    started = parse_time(_get(obj, "status", "startTime"))
    if started is None:
        return ""
    completed = parse_time(_get(obj, "status", "completionTime"))
    return human_duration((now if completed is None else completed) - started)


def _job_status(obj: Obj) -> str:
    conditions = _get(obj, "status", "conditions")
    if _condition_true(conditions, "Complete"):
        return "Complete"
    if _condition_true(conditions, "Failed"):
        return "Failed"
    if _get(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    for condition in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition_true(conditions, condition):
            return condition
    return "Running"


def _job_row(obj: Obj, now: float) -> list[Cell]:
    names, images = _containers(_template_spec(obj))
    return [_name(obj), _job_status(obj), _job_completions(obj), _job_duration(obj, now),
            _age(obj, now), names, images, format_label_selector(_get(obj, "spec", "selector"))]


def _cron_job_row(obj: Obj, now: float) -> list[Cell]:
    spec = obj.get("spec") or {}
    job_spec = _get(spec, "jobTemplate", "spec") or {}
    names, images = _containers(_get(job_spec, "template", "spec"))
    last = _get(obj, "status", "lastScheduleTime")
    return [_name(obj), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            _bool_ptr(spec.get("suspend")), len(_get(obj, "status", "active") or ()),
            "<none>" if last is None else translate_timestamp_since(last, now), _age(obj, now),
            names, images, format_label_selector(job_spec.get("selector"))]


def _controller_revision_row(obj: Obj, now: float) -> list[Cell]:
    owner = next((o for o in _get(obj, "metadata", "ownerReferences") or ()
                  if o.get("controller")), None)
    controller = "<none>"
    if owner is not None:
        group = owner.get("apiVersion", "").rpartition("/")[0]
        kind = owner.get("kind", "")
        qualified = f"{kind}.{group}" if group else kind
        controller = f"{qualified.lower()}/{owner.get('name', '')}" if qualified else owner.get(
            "name", "")
    return [_name(obj), controller, obj.get("revision", 0), _age(obj, now)]


def _pod_disruption_budget_row(obj: Obj, now: float) -> list[Cell]:
    spec = obj.get("spec") or {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [_name(obj), "N/A" if min_available is None else _int_or_string(min_available),
            "N/A" if max_unavailable is None else _int_or_string(max_unavailable),
            _status_int(obj, "disruptionsAllowed"), _age(obj, now)]


# --------------------------------------------------------------------------------------------
# HorizontalPodAutoscaler (v2 shape; v1 objects are read through the v1 → v2 mapping)
# --------------------------------------------------------------------------------------------


def _v1_cpu_metrics(obj: Obj) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    target = spec.get("targetCPUUtilizationPercentage")
    if target is None:
        return [], []
    metric = {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": target}}}
    current = status.get("currentCPUUtilizationPercentage")
    statuses = [] if current is None else [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": current}}}]
    return [metric], statuses


def _average_or_value(target: dict[str, Any], current: dict[str, Any] | None) -> str:
    if target.get("averageValue") is not None:
        now = "<unknown>" if current is None or current.get("averageValue") is None else _quantity(
            current["averageValue"])
        return f"{now}/{_quantity(target['averageValue'])} (avg)"
    now = "<unknown>" if current is None else _quantity(current.get("value"))
    return f"{now}/{_quantity(target.get('value'))}"


def _resource_metric(source: dict[str, Any], current: dict[str, Any] | None) -> str:
    target = source.get("target") or {}
    name = source.get("name", "")
    if target.get("averageValue") is not None:
        now = "<unknown>" if current is None else _quantity(
            _get(current, "current", "averageValue"))
        return f"{name}: {now}/{_quantity(target['averageValue'])}"
    utilization = _get(current, "current", "averageUtilization")
    now = "<unknown>" if utilization is None else f"{utilization}%"
    wanted = target.get("averageUtilization")
    return f"{name}: {now}/{'<auto>' if wanted is None else f'{wanted}%'}"


def _format_metric(spec: dict[str, Any], status: dict[str, Any] | None) -> str:
    kind = spec.get("type")
    if kind == "External":
        current = _get(status, "external", "current")
        return _average_or_value(_get(spec, "external", "target") or {},
                                 None if _get(status, "external") is None else current or {})
    if kind == "Pods":
        now = "<unknown>" if _get(status, "pods") is None else _quantity(
            _get(status, "pods", "current", "averageValue"))
        return f"{now}/{_quantity(_get(spec, 'pods', 'target', 'averageValue'))}"
    if kind == "Object":
        current = _get(status, "object", "current")
        return _average_or_value(_get(spec, "object", "target") or {},
                                 None if _get(status, "object") is None else current or {})
    if kind == "Resource":
        return _resource_metric(spec.get("resource") or {}, _get(status, "resource"))
    if kind == "ContainerResource":
        return _resource_metric(spec.get("containerResource") or {},
                                _get(status, "containerResource"))
    return "<unknown type>"


def _hpa_targets(obj: Obj) -> str:
    specs = _get(obj, "spec", "metrics")
    statuses = _get(obj, "status", "currentMetrics") or []
    if specs is None:
        specs, statuses = _v1_cpu_metrics(obj)
    if not specs:
        return "<none>"
    shown = [_format_metric(spec, statuses[i] if i < len(statuses) else None)
             for i, spec in enumerate(specs[:2])]
    text = ", ".join(shown)
    return f"{text} + {len(specs) - 2} more..." if len(specs) > 2 else text


def _hpa_row(obj: Obj, now: float) -> list[Cell]:
    spec = obj.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    minimum = spec.get("minReplicas")
    return [_name(obj), f"{target.get('kind', '')}/{target.get('name', '')}", _hpa_targets(obj),
            "<unset>" if minimum is None else str(minimum), spec.get("maxReplicas", 0),
            _status_int(obj, "currentReplicas"), _age(obj, now)]


# --------------------------------------------------------------------------------------------
# Services and networking
# --------------------------------------------------------------------------------------------


def _service_external_ip(spec: dict[str, Any], status: dict[str, Any]) -> str:
    kind = spec.get("type")
    external = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        balancer = _load_balancer_ingress(status.get("loadBalancer"))
        if external:
            return ",".join(([*balancer.split(",")] if balancer else []) + external)
        return balancer or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: Iterable[dict[str, Any]] | None) -> str:
    pieces = []
    for port in ports or ():
        protocol = port.get("protocol") or "TCP"
        if port.get("nodePort"):
            pieces.append(f"{port.get('port', 0)}:{port['nodePort']}/{protocol}")
        else:
            pieces.append(f"{port.get('port', 0)}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_row(obj: Obj, now: float) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_name(obj), spec.get("type", ""), cluster_ips[0] if cluster_ips else "<none>",
            _service_external_ip(spec, status), _service_ports(spec.get("ports")), _age(obj, now),
            format_labels(spec.get("selector"))]


def _endpoints_list(obj: Obj) -> str:
    subsets = obj.get("subsets") or ()
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for subset in subsets:
        addresses = [a.get("ip", "") for a in subset.get("addresses") or ()]
        ports = subset.get("ports") or ()
        if not ports:  # headless services may have no ports
            count += len(addresses)
            shown.extend(addresses[:max(3 - len(shown), 0)])
            continue
        for port in ports:
            count += len(addresses)
            shown.extend(_join_host_port(ip, port.get("port", 0))
                         for ip in addresses[:max(3 - len(shown), 0)])
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


def _endpoints_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), _endpoints_list(obj), _age(obj, now)]


def _endpoint_slice_row(obj: Obj, now: float) -> list[Cell]:
    ports = obj.get("ports") or []
    port_names = [str(p["port"]) if p.get("port") is not None else p.get("name") or "*"
                  for p in ports[:3]]
    addresses = [a for e in obj.get("endpoints") or () for a in e.get("addresses") or ()]
    return [_name(obj), obj.get("addressType", ""), _list_with_more(port_names, len(ports)),
            _list_with_more(addresses[:3], len(addresses)), _age(obj, now)]


def _ingress_hosts(rules: Sequence[dict[str, Any]]) -> str:
    # The first three non-empty hosts; "more" once any rule follows the third one.
    hosts: list[str] = []
    more = False
    for rule in rules:
        more = more or len(hosts) == 3
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 3} more..." if more else text


def _ingress_row(obj: Obj, now: float) -> list[Cell]:
    spec = obj.get("spec") or {}
    return [_name(obj), spec.get("ingressClassName") or "<none>",
            _ingress_hosts(spec.get("rules") or []),
            _load_balancer_ingress(_get(obj, "status", "loadBalancer")),
            "80, 443" if spec.get("tls") else "80", _age(obj, now)]


def _ingress_class_row(obj: Obj, now: float) -> list[Cell]:
    spec = obj.get("spec") or {}
    parameters = spec.get("parameters")
    text = "<none>"
    if parameters is not None:
        text = parameters.get("kind", "")
        if parameters.get("apiGroup") is not None:
            text += "." + parameters["apiGroup"]
        text += "/" + parameters.get("name", "")
    return [_name(obj), spec.get("controller", ""), text, _age(obj, now)]


def _network_policy_row(obj: Obj, now: float) -> list[Cell]:
    # spec.podSelector is a struct, never nil: a missing one formats as "select all".
    return [_name(obj), format_label_selector(_get(obj, "spec", "podSelector") or {}),
            _age(obj, now)]


# --------------------------------------------------------------------------------------------
# Nodes, namespaces, events and the remaining core kinds
# --------------------------------------------------------------------------------------------


def _node_status(obj: Obj) -> str:
    ready = None
    for condition in _get(obj, "status", "conditions") or ():
        if condition.get("type") == "Ready":
            ready = condition  # the last one wins, as in upstream's map
    status = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True"
              else "NotReady"]
    if _get(obj, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_roles(labels: dict[str, str] | None) -> str:
    roles = set()
    for key, value in (labels or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(obj: Obj, kind: str) -> str:
    for address in _get(obj, "status", "addresses") or ():
        if address.get("type") == kind:
            return address.get("address", "")
    return "<none>"


def _node_row(obj: Obj, now: float) -> list[Cell]:
    info = _get(obj, "status", "nodeInfo") or {}
    return [_name(obj), _node_status(obj), _node_roles(_get(obj, "metadata", "labels")),
            _age(obj, now), info.get("kubeletVersion", ""),
            _node_address(obj, "InternalIP"), _node_address(obj, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _namespace_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), _get(obj, "status", "phase") or "", _age(obj, now)]


@dataclass(frozen=True, slots=True)
class _EventView:
    """The fields printEvent reads, from core/v1 or events.k8s.io/v1 events (which upstream
    converts to the same internal type first)."""

    reference: dict[str, Any]
    message: str
    first: str | None
    last: str | None
    count: int
    source: dict[str, Any]

    @classmethod
    def of(cls, event: Obj) -> _EventView:
        if "involvedObject" in event or "regarding" not in event:
            return cls(event.get("involvedObject") or {}, event.get("message") or "",
                       event.get("firstTimestamp"), event.get("lastTimestamp"),
                       event.get("count") or 0, event.get("source") or {})
        return cls(event.get("regarding") or {}, event.get("note") or "",
                   event.get("deprecatedFirstTimestamp"), event.get("deprecatedLastTimestamp"),
                   event.get("deprecatedCount") or 0, event.get("deprecatedSource") or {})


def _event_source(event: Obj, source: dict[str, Any]) -> str:
    component = source.get("component") or event.get("reportingComponent") or event.get(
        "reportingController") or ""
    host = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def _event_row(event: Obj, now: float) -> list[Cell]:
    view = _EventView.of(event)
    if parse_time(view.first) is not None:
        first = translate_timestamp_since(view.first, now)
    else:
        first = translate_timestamp_since(event.get("eventTime"), now)
    last = translate_timestamp_since(view.last, now) if parse_time(view.last) else first
    count = view.count
    series = event.get("series")
    if series is not None:
        last = translate_timestamp_since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    kind = (view.reference.get("kind") or "").lower()
    target = f"{kind}/{view.reference['name']}" if view.reference.get("name") else kind
    return [last, event.get("type", ""), event.get("reason", ""), target,
            view.reference.get("fieldPath", ""), _event_source(event, view.source),
            view.message.strip(), first, count, _name(event)]


def _secret_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), obj.get("type", ""), len(obj.get("data") or ()), _age(obj, now)]


def _config_map_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), len(obj.get("data") or ()) + len(obj.get("binaryData") or ()),
            _age(obj, now)]


def _name_age_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), _age(obj, now)]


def _storage_class_of(obj: Obj, beta_annotation: str) -> str:
    annotations = _get(obj, "metadata", "annotations") or {}
    if beta_annotation in annotations:
        return annotations[beta_annotation]
    return _get(obj, "spec", "storageClassName") or ""


_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"


def _persistent_volume_row(obj: Obj, now: float) -> list[Cell]:
    spec = obj.get("spec") or {}
    claim = spec.get("claimRef")
    phase = "Terminating" if _get(obj, "metadata", "deletionTimestamp") else _get(
        obj, "status", "phase") or ""
    capacity = _get(spec, "capacity", "storage")
    return [_name(obj), "0" if capacity is None else _quantity(capacity),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""),
            phase, "" if claim is None else f"{claim.get('namespace', '')}/{claim.get('name', '')}",
            _storage_class_of(obj, _BETA_STORAGE_CLASS),
            spec.get("volumeAttributesClassName") or "<unset>", _get(obj, "status", "reason") or "",
            _age(obj, now), spec.get("volumeMode") or "<unset>"]


def _persistent_volume_claim_row(obj: Obj, now: float) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = "Terminating" if _get(obj, "metadata", "deletionTimestamp") else status.get("phase", "")
    capacity = access_modes = ""
    if spec.get("volumeName"):
        access_modes = _access_modes(status.get("accessModes"))
        storage = _get(status, "capacity", "storage")
        capacity = "0" if storage is None else _quantity(storage)
    return [_name(obj), phase, spec.get("volumeName", ""), capacity, access_modes,
            _storage_class_of(obj, _BETA_STORAGE_CLASS),
            spec.get("volumeAttributesClassName") or "<unset>", _age(obj, now),
            spec.get("volumeMode") or "<unset>"]


def _component_status_row(obj: Obj, now: float) -> list[Cell]:
    for condition in obj.get("conditions") or ():
        if condition.get("type") == "Healthy":
            healthy = "Healthy" if condition.get("status") == "True" else "Unhealthy"
            return [_name(obj), healthy, condition.get("message", ""), condition.get("error", "")]
    return [_name(obj), "Unknown", "", ""]


def _resource_quota_row(obj: Obj, now: float) -> list[Cell]:
    hard = _get(obj, "status", "hard") or {}
    used = _get(obj, "status", "used") or {}
    requests, limits = [], []
    for resource in sorted(hard):
        column = limits if resource.split(".")[0] == "limits" and "." in resource else requests
        used_quantity = "0" if used.get(resource) is None else _quantity(used[resource])
        column.append(f"{resource}: {used_quantity}/{_quantity(hard[resource])}")
    return [_name(obj), ", ".join(requests), ", ".join(limits), _age(obj, now)]


# --------------------------------------------------------------------------------------------
# RBAC, coordination, storage, scheduling, apiextensions
# --------------------------------------------------------------------------------------------


def _subjects(subjects: Iterable[dict[str, Any]] | None) -> tuple[str, str, str]:
    users, groups, service_accounts = [], [], []
    for subject in subjects or ():
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            service_accounts.append(f"{subject.get('namespace', '')}/{subject.get('name', '')}")
        elif kind == "User":
            users.append(subject.get("name", ""))
        elif kind == "Group":
            groups.append(subject.get("name", ""))
    return ", ".join(users), ", ".join(groups), ", ".join(service_accounts)


def _role_binding_row(obj: Obj, now: float) -> list[Cell]:
    role = obj.get("roleRef") or {}
    return [_name(obj), f"{role.get('kind', '')}/{role.get('name', '')}", _age(obj, now),
            *_subjects(obj.get("subjects"))]


def _lease_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), _get(obj, "spec", "holderIdentity") or "", _age(obj, now)]


_DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                              "storageclass.beta.kubernetes.io/is-default-class")


def _storage_class_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", bool(obj.get("allowVolumeExpansion")),
            _age(obj, now)]


def _mark_effective_default_class(objects: list[Obj], rows: list[list[Cell]]) -> None:
    """Only the class that admission would use is "(default)": of those annotated as default,
    the newest, then the first by name (the storage class TableConvertor of 1.36+)."""
    annotated = [(-(parse_time(_get(o, "metadata", "creationTimestamp")) or 0.0), _name(o), i)
                 for i, o in enumerate(objects)
                 if any((_get(o, "metadata", "annotations") or {}).get(a) == "true"
                        for a in _DEFAULT_CLASS_ANNOTATIONS)]
    if annotated:
        rows[min(annotated)[2]][0] += " (default)"


def _priority_class_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), obj.get("value", 0), bool(obj.get("globalDefault")), _age(obj, now),
            obj.get("preemptionPolicy") or ""]


def _crd_row(obj: Obj, now: float) -> list[Cell]:
    spec = obj.get("spec") or {}
    versions = sorted(v.get("name", "") + ("(storage)" if v.get("storage") else "")
                      for v in spec.get("versions") or () if v.get("served"))
    return [_name(obj), spec.get("scope", ""), ",".join(versions),
            _rfc3339(_get(obj, "metadata", "creationTimestamp")), spec.get("group", ""),
            _get(spec, "names", "kind") or "", ",".join(_get(spec, "names", "shortNames") or ()),
            _condition_true(_get(obj, "status", "conditions"), "Established")]


# --------------------------------------------------------------------------------------------
# The printers, by group and resource
# --------------------------------------------------------------------------------------------

RowFunction = Callable[[Obj, float], list[Cell]]


@dataclass(frozen=True)
class Printer:
    """What ``TableHandler`` registers upstream: the columns and the function for a row."""

    columns: tuple[Column, ...]
    row: RowFunction
    conditions: Callable[[Obj], list[dict[str, str]] | None] | None = None
    # Adjusts the cells once every row exists, for printing that depends on the whole list.
    finish: Callable[[list[Obj], list[list[Cell]]], None] | None = None

    @functools.cached_property
    def column_definitions(self) -> list[dict[str, Any]]:
        return [c.definition() for c in self.columns]


def _wide_selector(doc: tuple[str, str]) -> tuple[Column, ...]:
    return (_CONTAINERS, _IMAGES, _col("Selector", doc, wide=True))


_CORE = "core.v1."
_APPS = "apps.v1."

_REPLICA_SET_COLUMNS = (
    NAME,
    _col("Desired", (_APPS + "ReplicaSetSpec", "replicas"), type="integer"),
    _col("Current", (_APPS + "ReplicaSetStatus", "replicas"), type="integer"),
    _col("Ready", (_APPS + "ReplicaSetStatus", "readyReplicas"), type="integer"),
    AGE, *_wide_selector((_APPS + "ReplicaSetSpec", "selector")))

_ROLE_BINDING_COLUMNS = (
    NAME, _col("Role", ("rbac.v1.RoleBinding", "roleRef")), AGE,
    _col("Users", "Users in the roleBinding", wide=True),
    _col("Groups", "Groups in the roleBinding", wide=True),
    _col("ServiceAccounts", "ServiceAccounts in the roleBinding", wide=True))

_CLUSTER_ROLE_BINDING_COLUMNS = (
    NAME, _col("Role", ("rbac.v1.ClusterRoleBinding", "roleRef")), AGE,
    _col("Users", "Users in the clusterRoleBinding", wide=True),
    _col("Groups", "Groups in the clusterRoleBinding", wide=True),
    _col("ServiceAccounts", "ServiceAccounts in the clusterRoleBinding", wide=True))

_EVENT_PRINTER = Printer((
    _col("Last Seen", (_CORE + "Event", "lastTimestamp")),
    _col("Type", (_CORE + "Event", "type")),
    _col("Reason", (_CORE + "Event", "reason")),
    _col("Object", (_CORE + "Event", "involvedObject")),
    _col("Subobject", (_CORE + "ObjectReference", "fieldPath"), wide=True),
    _col("Source", (_CORE + "Event", "source"), wide=True),
    _col("Message", (_CORE + "Event", "message")),
    _col("First Seen", (_CORE + "Event", "firstTimestamp"), wide=True),
    _col("Count", (_CORE + "Event", "count"), wide=True),
    _col("Name", (_META, "name"), format="name", wide=True),
), _event_row)

_HPA_SPEC = "autoscaling.v2.HorizontalPodAutoscalerSpec"
_HPA_PRINTER = Printer((
    NAME,
    _col("Reference", (_HPA_SPEC, "scaleTargetRef")),
    _col("Targets", (_HPA_SPEC, "metrics")),
    _col("MinPods", (_HPA_SPEC, "minReplicas")),
    _col("MaxPods", (_HPA_SPEC, "maxReplicas")),
    _col("Replicas", ("autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas")),
    AGE,
), _hpa_row)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "pods"): Printer(_POD_COLUMNS, _pod_row, _pod_conditions),
    ("", "podtemplates"): Printer((
        NAME, _col("Containers", "Names of each container in the template."),
        _col("Images", "Images referenced by each container in the template."),
        _col("Pod Labels", "The labels for the pod template."),
    ), _pod_template_row),
    ("", "replicationcontrollers"): Printer((
        NAME,
        _col("Desired", (_CORE + "ReplicationControllerSpec", "replicas"), type="integer"),
        _col("Current", (_CORE + "ReplicationControllerStatus", "replicas"), type="integer"),
        _col("Ready", (_CORE + "ReplicationControllerStatus", "readyReplicas"), type="integer"),
        AGE, *_wide_selector((_CORE + "ReplicationControllerSpec", "selector")),
    ), _replication_controller_row),
    ("", "services"): Printer((
        NAME,
        _col("Type", (_CORE + "ServiceSpec", "type")),
        _col("Cluster-IP", (_CORE + "ServiceSpec", "clusterIP")),
        _col("External-IP", (_CORE + "ServiceSpec", "externalIPs")),
        _col("Port(s)", (_CORE + "ServiceSpec", "ports")),
        AGE,
        _col("Selector", (_CORE + "ServiceSpec", "selector"), wide=True),
    ), _service_row),
    ("", "endpoints"): Printer((
        NAME, _col("Endpoints", (_CORE + "Endpoints", "subsets")), AGE), _endpoints_row),
    ("", "nodes"): Printer((
        NAME,
        _col("Status", "The status of the node"),
        _col("Roles", "The roles of the node"),
        AGE,
        _col("Version", (_CORE + "NodeSystemInfo", "kubeletVersion")),
        _col("Internal-IP", (_CORE + "NodeStatus", "addresses"), wide=True),
        _col("External-IP", (_CORE + "NodeStatus", "addresses"), wide=True),
        _col("OS-Image", (_CORE + "NodeSystemInfo", "osImage"), wide=True),
        _col("Kernel-Version", (_CORE + "NodeSystemInfo", "kernelVersion"), wide=True),
        _col("Container-Runtime", (_CORE + "NodeSystemInfo", "containerRuntimeVersion"),
             wide=True),
    ), _node_row),
    ("", "events"): _EVENT_PRINTER,
    ("events.k8s.io", "events"): _EVENT_PRINTER,
    ("", "namespaces"): Printer((NAME, _col("Status", "The status of the namespace"), AGE),
                               _namespace_row),
    ("", "secrets"): Printer((
        NAME, _col("Type", (_CORE + "Secret", "type")), _col("Data", (_CORE + "Secret", "data")),
        AGE), _secret_row),
    ("", "serviceaccounts"): Printer((NAME, AGE), _name_age_row),
    ("", "persistentvolumes"): Printer((
        NAME,
        _col("Capacity", (_CORE + "PersistentVolumeSpec", "capacity")),
        _col("Access Modes", (_CORE + "PersistentVolumeSpec", "accessModes")),
        _col("Reclaim Policy", (_CORE + "PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
        _col("Status", (_CORE + "PersistentVolumeStatus", "phase")),
        _col("Claim", (_CORE + "PersistentVolumeSpec", "claimRef")),
        _col("StorageClass", "StorageClass of the pv"),
        _col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
        _col("Reason", (_CORE + "PersistentVolumeStatus", "reason")),
        AGE,
        _col("VolumeMode", (_CORE + "PersistentVolumeSpec", "volumeMode"), wide=True),
    ), _persistent_volume_row),
    ("", "persistentvolumeclaims"): Printer((
        NAME,
        _col("Status", (_CORE + "PersistentVolumeClaimStatus", "phase")),
        _col("Volume", (_CORE + "PersistentVolumeClaimSpec", "volumeName")),
        _col("Capacity", (_CORE + "PersistentVolumeClaimStatus", "capacity")),
        _col("Access Modes", (_CORE + "PersistentVolumeClaimStatus", "accessModes")),
        _col("StorageClass", "StorageClass of the pvc"),
        _col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
        AGE,
        _col("VolumeMode", (_CORE + "PersistentVolumeClaimSpec", "volumeMode"), wide=True),
    ), _persistent_volume_claim_row),
    ("", "componentstatuses"): Printer((
        NAME, _col("Status", "Status of the component conditions"),
        _col("Message", "Message of the component conditions"),
        _col("Error", "Error of the component conditions"),
    ), _component_status_row),
    ("", "configmaps"): Printer((NAME, _col("Data", (_CORE + "ConfigMap", "data")), AGE),
                               _config_map_row),
    ("", "resourcequotas"): Printer((
        NAME,
        _col("Request", "Request represents a minimum amount of cpu/memory that a container "
                        "may consume."),
        _col("Limit", "Limits control the maximum amount of cpu/memory that a container may use "
                      "independent of contention on the node."),
        AGE,
    ), _resource_quota_row),
    ("apps", "deployments"): Printer((
        NAME,
        _col("Ready", "Number of the pod with ready state"),
        _col("Up-to-date", (_APPS + "DeploymentStatus", "updatedReplicas")),
        _col("Available", (_APPS + "DeploymentStatus", "availableReplicas")),
        AGE, *_wide_selector((_APPS + "DeploymentSpec", "selector")),
    ), _deployment_row),
    ("apps", "replicasets"): Printer(_REPLICA_SET_COLUMNS, _replica_set_row),
    ("apps", "statefulsets"): Printer((
        NAME, _col("Ready", "Number of the pod with ready state"), AGE, _CONTAINERS, _IMAGES,
    ), _stateful_set_row),
    ("apps", "daemonsets"): Printer((
        NAME,
        _col("Desired", (_APPS + "DaemonSetStatus", "desiredNumberScheduled"), type="integer"),
        _col("Current", (_APPS + "DaemonSetStatus", "currentNumberScheduled"), type="integer"),
        _col("Ready", (_APPS + "DaemonSetStatus", "numberReady"), type="integer"),
        _col("Up-to-date", (_APPS + "DaemonSetStatus", "updatedNumberScheduled"), type="integer"),
        _col("Available", (_APPS + "DaemonSetStatus", "numberAvailable"), type="integer"),
        _col("Node Selector", (_CORE + "PodSpec", "nodeSelector")),
        AGE, *_wide_selector((_APPS + "DaemonSetSpec", "selector")),
    ), _daemon_set_row),
    ("apps", "controllerrevisions"): Printer((
        NAME, _col("Controller", "Controller of the object"),
        _col("Revision", (_APPS + "ControllerRevision", "revision")), AGE,
    ), _controller_revision_row),
    ("batch", "jobs"): Printer((
        NAME,
        _col("Status", "Status of the job."),
        _col("Completions", ("batch.v1.JobStatus", "succeeded")),
        _col("Duration", "Time required to complete the job."),
        AGE, *_wide_selector(("batch.v1.JobSpec", "selector")),
    ), _job_row),
    ("batch", "cronjobs"): Printer((
        NAME,
        _col("Schedule", ("batch.v1.CronJobSpec", "schedule")),
        _col("Timezone", ("batch.v1.CronJobSpec", "timeZone")),
        _col("Suspend", ("batch.v1.CronJobSpec", "suspend"), type="boolean"),
        _col("Active", ("batch.v1.CronJobStatus", "active"), type="integer"),
        _col("Last Schedule", ("batch.v1.CronJobStatus", "lastScheduleTime")),
        AGE, *_wide_selector(("batch.v1.JobSpec", "selector")),
    ), _cron_job_row),
    ("autoscaling", "horizontalpodautoscalers"): _HPA_PRINTER,
    ("networking.k8s.io", "ingresses"): Printer((
        NAME,
        _col("Class", "The name of the IngressClass resource that should be used for additional "
                      "configuration"),
        _col("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
        _col("Address", "Address is a list containing ingress points for the load-balancer"),
        _col("Ports", "Ports of TLS configurations that open"),
        AGE,
    ), _ingress_row),
    ("networking.k8s.io", "ingressclasses"): Printer((
        NAME, _col("Controller", "Controller that is responsible for handling this class"),
        _col("Parameters", "A reference to a resource with additional parameters"), AGE,
    ), _ingress_class_row),
    ("networking.k8s.io", "networkpolicies"): Printer((
        NAME, _col("Pod-Selector", ("networking.v1.NetworkPolicySpec", "podSelector")), AGE,
    ), _network_policy_row),
    ("discovery.k8s.io", "endpointslices"): Printer((
        NAME,
        _col("AddressType", ("discovery.v1.EndpointSlice", "addressType")),
        _col("Ports", ("discovery.v1.EndpointSlice", "ports")),
        _col("Endpoints", ("discovery.v1.EndpointSlice", "endpoints")),
        AGE,
    ), _endpoint_slice_row),
    ("coordination.k8s.io", "leases"): Printer((
        NAME, _col("Holder", ("coordination.v1.LeaseSpec", "holderIdentity")), AGE), _lease_row),
    ("rbac.authorization.k8s.io", "rolebindings"): Printer(_ROLE_BINDING_COLUMNS,
                                                           _role_binding_row),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): Printer(_CLUSTER_ROLE_BINDING_COLUMNS,
                                                                  _role_binding_row),
    ("policy", "poddisruptionbudgets"): Printer((
        NAME,
        _col("Min Available", "The minimum number of pods that must be available."),
        _col("Max Unavailable", "The maximum number of pods that may be unavailable."),
        _col("Allowed Disruptions", "Calculated number of pods that may be disrupted at this "
                                    "time.", type="integer"),
        AGE,
    ), _pod_disruption_budget_row),
    ("storage.k8s.io", "storageclasses"): Printer((
        NAME,
        _col("Provisioner", ("storage.v1.StorageClass", "provisioner")),
        _col("ReclaimPolicy", ("storage.v1.StorageClass", "reclaimPolicy")),
        _col("VolumeBindingMode", ("storage.v1.StorageClass", "volumeBindingMode")),
        _col("AllowVolumeExpansion", ("storage.v1.StorageClass", "allowVolumeExpansion")),
        AGE,
    ), _storage_class_row, finish=_mark_effective_default_class),
    ("scheduling.k8s.io", "priorityclasses"): Printer((
        NAME,
        _col("Value", ("scheduling.v1.PriorityClass", "value"), type="integer"),
        _col("Global-Default", ("scheduling.v1.PriorityClass", "globalDefault"), type="boolean"),
        AGE,
        # Upstream gives this column priority 0 but fills it only in wide output; the server
        # always prints wide, so it is an ordinary column.
        _col("PreemptionPolicy", ("scheduling.v1.PriorityClass", "preemptionPolicy")),
    ), _priority_class_row),
    ("apiextensions.k8s.io", "customresourcedefinitions"): Printer((
        NAME,
        _col("Scope", "Cluster/Namespaced"),
        _col("Versions", "Served versions"),
        CREATED_AT,
        _col("Group", "API group", wide=True),
        _col("Kind", "CustomResource kind", wide=True),
        _col("ShortNames", "Short names", wide=True),
        _col("Established", "Established status", type="boolean", wide=True),
    ), _crd_row),
}


def _created_at_row(obj: Obj, now: float) -> list[Cell]:
    return [_name(obj), _rfc3339(_get(obj, "metadata", "creationTimestamp"))]


# rest.NewDefaultTableConvertor: roles, clusterroles, limitranges and anything unprinted.
DEFAULT_PRINTER = Printer((NAME, CREATED_AT), _created_at_row)


# --------------------------------------------------------------------------------------------
# Custom resources: additionalPrinterColumns evaluated with JSONPath
# --------------------------------------------------------------------------------------------


class _JSONPathError(ValueError):
    pass


_Step = Callable[[list[Any]], list[Any]]
_FILTER = re.compile(r"\s*@((?:\.[^\s=!<>.]+)*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*")


def _field_step(name: str) -> _Step:
    def step(values: list[Any]) -> list[Any]:
        if name == "*":
            return [v for value in values if isinstance(value, dict) for v in value.values()]
        return [value[name] for value in values if isinstance(value, dict) and name in value]
    return step


def _descend(value: Any) -> Iterable[Any]:
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(
        value, list) else ()
    for child in children:
        yield from _descend(child)


def _recursive_step(name: str) -> _Step:
    field = _field_step(name)
    return lambda values: field([d for value in values for d in _descend(value)])


def _index_step(spec: str) -> _Step:
    if spec == "*":
        return lambda values: [v for value in values if isinstance(value, list) for v in value]
    if ":" in spec:
        parts = [int(p) if p.strip() else None for p in spec.split(":")]
        window = slice(*parts[:3])
        return lambda values: [v for value in values if isinstance(value, list)
                               for v in value[window]]
    index = int(spec)

    def step(values: list[Any]) -> list[Any]:
        return [value[index] for value in values
                if isinstance(value, list) and -len(value) <= index < len(value)]
    return step


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise _JSONPathError(f"unrecognized filter operand {text!r}") from None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return isinstance(a, numbers) and isinstance(b, numbers) or type(a) is type(b)


def _filter_step(expression: str) -> _Step:
    match = _FILTER.fullmatch(expression)
    if match is None:
        raise _JSONPathError(f"unrecognized filter {expression!r}")
    path, operator, operand = match.groups()
    fields = [f for f in path.split(".") if f]
    wanted = None if operator is None else _literal(operand)

    def keep(item: Any) -> bool:
        found = [item]
        for f in fields:
            found = _field_step(f)(found)
        if operator is None:
            return bool(found)
        return any(_comparable(v, wanted) and _COMPARE[operator](v, wanted) for v in found)

    return lambda values: [item for value in values if isinstance(value, list)
                           for item in value if keep(item)]


def _bracket_step(content: str) -> _Step:
    content = content.strip()
    if content.startswith("?(") and content.endswith(")"):
        return _filter_step(content[2:-1])
    if len(content) >= 2 and content[0] == content[-1] and content[0] in "'\"":
        return _field_step(content[1:-1])
    try:
        return _index_step(content)
    except ValueError:
        raise _JSONPathError(f"unrecognized array index {content!r}") from None


def _field_name(path: str, i: int) -> tuple[str, int]:
    """A field name from ``path[i]``; ``\\`` escapes the next character (``kubernetes\\.io``)."""
    name: list[str] = []
    while i < len(path) and path[i] not in ".[":
        if path[i] == "\\" and i + 1 < len(path):
            i += 1
        name.append(path[i])
        i += 1
    return "".join(name), i


@functools.lru_cache(maxsize=1024)
def compile_jsonpath(expression: str) -> Callable[[Any], list[Any]]:
    """A k8s.io/client-go/util/jsonpath template of the simple kind printer columns use
    (``.spec.replicas``, ``.status.conditions[?(@.type=="Ready")].status``, ``[0]``, ``[*]``,
    ``['key']``, ``..name``), with missing keys allowed. Raises ValueError when unsupported."""
    path = expression.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    path = path.removeprefix("$")
    steps: list[_Step] = []
    i = 0
    while i < len(path):
        if path.startswith("..", i):
            name, i = _field_name(path, i + 2)
            steps.append(_recursive_step(name))
        elif path[i] == ".":
            name, i = _field_name(path, i + 1)
            if name:
                steps.append(_field_step(name))
        elif path[i] == "[":
            end = _closing_bracket(path, i)
            steps.append(_bracket_step(path[i + 1:end]))
            i = end + 1
        else:
            raise _JSONPathError(f"unrecognized character at {i} in {expression!r}")

    def evaluate(obj: Any) -> list[Any]:
        values = [obj]
        for step in steps:
            values = step(values)
            if not values:
                break
        return values
    return evaluate


def _closing_bracket(path: str, start: int) -> int:
    depth, quote = 0, ""
    for i in range(start, len(path)):
        c = path[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    raise _JSONPathError(f"unterminated [ in {path!r}")


def _go_float(value: float) -> str:
    """``fmt.Sprint(float64)``: the shortest digits, in exponent form when the exponent is
    below -4 or at least 6 ("1e+06", "1.5e-05", "123456.5")."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if value < 0 or (value == 0 and str(value).startswith("-")) else ""
    if value == 0:
        return sign + "0"
    exact = Decimal(repr(abs(value))).normalize()
    digits = "".join(map(str, exact.as_tuple().digits))
    point = len(digits) + exact.as_tuple().exponent  # where the decimal point goes
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _jsonpath_text(value: Any) -> str:
    """How jsonpath's PrintResults renders one value: maps and lists as JSON, scalars as Go's
    fmt prints them, and JSON null as ``<no value>``."""
    if value is None:
        return "<no value>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (dict, list)):
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return str(value)


def _typed_cell(kind: str, value: Any, now: float) -> Cell:
    """``cellForJSONValue``: a value of the column's type, or None."""
    if value is None:
        return None
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date":
        if not isinstance(value, str):
            return None
        if value in ("", "null"):
            return "<unknown>"
        at = parse_time(value)
        return "<invalid>" if at is None else human_duration(now - at)
    return None


def _custom_column(spec: dict[str, Any]) -> Column:
    path = spec.get("jsonPath", "")
    description = spec.get("description") or (
        f"Custom resource definition column (in JSONPath format): {path}")
    return Column(spec.get("name", ""), spec.get("type", ""), spec.get("format", ""),
                  spec.get("priority", 0), description=description)


# What a CRD version without additionalPrinterColumns is served with.
_DEFAULT_CUSTOM_COLUMNS = ((Column("Age", "date", doc=(_META, "creationTimestamp")),
                            ".metadata.creationTimestamp"),)


def _custom_resource_printer(resource: Resource) -> Printer:
    """The CRD version's additionalPrinterColumns after Name; ``Age`` when it declares none.
    Like upstream, columns stop at the first JSONPath that does not parse."""
    declared = crd_version(resource).get("additionalPrinterColumns")
    specs = [(_custom_column(spec), spec.get("jsonPath", "")) for spec in declared or ()]
    columns, paths = [NAME], []
    for column, path in specs or _DEFAULT_CUSTOM_COLUMNS:
        try:
            paths.append(compile_jsonpath(path))
        except ValueError:
            break
        columns.append(column)
    kinds = [c.type for c in columns[1:]]

    def row(obj: Obj, now: float) -> list[Cell]:
        cells: list[Cell] = [_name(obj)]
        for kind, evaluate in zip(kinds, paths):
            found = evaluate(obj)
            if not found:
                cells.append(None)
            elif kind == "string":
                cells.append(_jsonpath_text(found[0]))
            else:
                cells.append(_typed_cell(kind, found[0], now))
        return cells

    return Printer(tuple(columns), row)


# --------------------------------------------------------------------------------------------
# The Table
# --------------------------------------------------------------------------------------------

INCLUDE_NONE = "None"
INCLUDE_METADATA = "Metadata"
INCLUDE_OBJECT = "Object"


def printer_for(resource: Resource) -> Printer:
    """The printer upstream registers for ``resource``: a built-in one, the CRD's columns, or
    the default ``Name``/``Created At`` convertor."""
    if resource.crd is not None:
        return _custom_resource_printer(resource)
    return PRINTERS.get((resource.group, resource.resource), DEFAULT_PRINTER)


def _row_object(obj: Obj, include_object: str) -> dict[str, Any] | None:
    if include_object == INCLUDE_OBJECT:
        return obj
    if include_object == INCLUDE_NONE:
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def _table_metadata(objects: list[Obj], list_metadata: dict | None) -> dict[str, Any]:
    if list_metadata is None:
        # A single object's table carries that object's resourceVersion.
        version = _get(objects[0], "metadata", "resourceVersion") if len(objects) == 1 else None
        return {"resourceVersion": version} if version else {}
    metadata: dict[str, Any] = {}
    for key in ("resourceVersion", "continue"):
        if list_metadata.get(key):
            metadata[key] = list_metadata[key]
    if list_metadata.get("remainingItemCount") is not None:
        metadata["remainingItemCount"] = list_metadata["remainingItemCount"]
    return metadata


def table(resource: Resource, objects: list[dict], *, include_object: str = INCLUDE_METADATA,
          list_metadata: dict | None = None, now: float | None = None,
          no_headers: bool = False) -> dict:
    """The ``meta.k8s.io/v1`` Table of ``objects`` (a list's items, or the one object of a get).

    ``include_object`` is the ``?includeObject=`` parameter (``""`` means Metadata); any other
    value raises StatusError 400. ``no_headers`` leaves out the column definitions, as upstream
    does for every watch event after the first. ``now`` (epoch seconds) fixes the clock."""
    include_object = include_object or INCLUDE_METADATA
    if include_object not in (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT):
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    clock = time.time() if now is None else now
    printer = printer_for(resource)
    cells = [printer.row(obj, clock) for obj in objects]
    if printer.finish is not None:
        printer.finish(objects, cells)
    rows = []
    for obj, row_cells in zip(objects, cells):
        row: dict[str, Any] = {"cells": row_cells}
        if printer.conditions is not None:
            conditions = printer.conditions(obj)
            if conditions:
                row["conditions"] = conditions
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": _table_metadata(objects, list_metadata),
        "columnDefinitions": None if no_headers else printer.column_definitions,
        "rows": rows,
    }


__all__ = [
    "Column", "DEFAULT_PRINTER", "PRINTERS", "Printer", "compile_jsonpath", "format_label_selector",
    "format_labels", "human_duration", "parse_time", "printer_for", "table",
    "translate_timestamp_since",
]
