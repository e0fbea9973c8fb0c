"""The HorizontalPodAutoscaler controller (``autoscaling/v2``), as upstream's
``pkg/controller/podautoscaler``.

Every ``sync_period`` each HPA reads its target's ``scale`` subresource. A replica count
outside ``[minReplicas, maxReplicas]`` is brought inside at once. Otherwise the desired count
comes from the metrics (the highest any metric asks for), computed as upstream's replica
calculator does (the 0.1 tolerance, unready and missing pods counted so as not to flap), then
stabilized and rate-limited by ``spec.behavior`` (or, without a behavior, the legacy 5-minute
downscale window and doubling limit), and written back to the scale subresource.

Metrics come from a ``MetricsClient``; the default one reads ``metrics.k8s.io``. Where that API
is not served, the HPA says so as upstream does: ``ScalingActive=False`` with reason
``FailedGetResourceMetric`` and Warning events.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sampan.api.selectors import LabelSelector, parse_label_selector
from sampan.api.validation import QuantityError, parse_quantity
from sampan.client.controller import Controller
from sampan.client.discovery import UnknownKindError
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import NAMESPACE_INDEX, InformerFactory, SharedInformer, split_key
from sampan.client.rest import Client
from sampan.controllers.util import meta, now_rfc3339, parse_time, pod_condition, pod_phase

log = logging.getLogger(__name__)

Object = dict[str, Any]

SYNC_PERIOD = 15.0
TOLERANCE = 0.1
DOWNSCALE_STABILIZATION_WINDOW = 300.0
CPU_INITIALIZATION_PERIOD = 300.0
DELAY_OF_INITIAL_READINESS_STATUS = 30.0
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
DEFAULT_CPU_UTILIZATION = 80

_KNOWN_TARGETS = {("apps/v1", "Deployment"): "deployments",
                  ("apps/v1", "ReplicaSet"): "replicasets",
                  ("apps/v1", "StatefulSet"): "statefulsets",
                  ("v1", "ReplicationController"): "replicationcontrollers"}

METRICS_API_MISSING = ("unable to fetch metrics from resource metrics API: the server could not "
                       "find the requested resource (get pods.metrics.k8s.io)")


class MetricsError(Exception):
    """A metric could not be read or used; the message is what the HPA reports."""


# -- metrics -----------------------------------------------------------------------------------


@dataclass
class PodMetric:
    """One pod's usage in milli-units (``PodMetric``), sampled at ``timestamp`` over ``window``."""

    value: int
    timestamp: float = 0.0
    window: float = 30.0


PodMetrics = dict[str, PodMetric]


class MetricsClient(Protocol):
    """Where the HPA reads usage. ``selector`` is a label selector string."""

    async def get_resource_metric(self, resource: str, namespace: str, selector: str,
                                  container: str | None) -> tuple[PodMetrics, float]:
        """Per-pod usage of ``resource`` (summed over containers, or ``container``'s)."""

    async def get_pods_metric(self, metric: str, namespace: str, selector: str,
                              metric_selector: Mapping[str, Any] | None) -> tuple[PodMetrics, float]:
        """Per-pod value of a custom metric."""


def milli_value(raw: Any) -> int:
    """``Quantity.MilliValue()``, rounding up as Go does."""
    value = parse_quantity(raw).value * 1000
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def milli_quantity(milli: int) -> str:
    """A milli-value as a DecimalSI quantity string (``NewMilliQuantity``)."""
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


class RestMetricsClient:
    """Reads ``metrics.k8s.io/v1beta1`` PodMetrics; custom metrics are not served yet."""

    def __init__(self, client: Client):
        self.client = client

    async def get_resource_metric(self, resource: str, namespace: str, selector: str,
                                  container: str | None) -> tuple[PodMetrics, float]:
        path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{urllib.parse.quote(namespace)}/pods"
        try:
            listed = await self.client.request("GET", path, params={"labelSelector": selector}
                                               if selector else None)
        except ApiError as e:
            if e.not_found:
                raise MetricsError(METRICS_API_MISSING) from None
            raise MetricsError(f"unable to fetch metrics from resource metrics API: {e.message}") from None
        items = listed.get("items") or []
        if not items:
            raise MetricsError("no metrics returned from resource metrics API")
        metrics: PodMetrics = {}
        for item in items:
            total, found = 0, False
            for c in item.get("containers") or ():
                if container and c.get("name") != container:
                    continue
                usage = (c.get("usage") or {}).get(resource)
                if usage is None:
                    continue
                total += milli_value(usage)
                found = True
            if not found:
                continue
            window = item.get("window") or "30s"
            metrics[meta(item)["name"]] = PodMetric(
                total, parse_time(item.get("timestamp")) or time.time(),
                _seconds(window))
        return metrics, time.time()

    async def get_pods_metric(self, metric: str, namespace: str, selector: str,
                              metric_selector: Mapping[str, Any] | None) -> tuple[PodMetrics, float]:
        raise MetricsError("unable to fetch metrics from custom metrics API: no custom metrics "
                           "API (custom.metrics.k8s.io) registered")


def _seconds(text: str) -> float:
    try:
        return float(text.rstrip("s"))
    except ValueError:
        return 30.0


# -- the replica calculator ---------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerances:
    scale_down: float = TOLERANCE
    scale_up: float = TOLERANCE

    def within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


@dataclass
class PodGroups:
    ready_count: int = 0
    unready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


def group_pods(pods: list[Object], metrics: PodMetrics, resource: str | None, now: float,
               cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
               delay_of_initial_readiness_status: float = DELAY_OF_INITIAL_READINESS_STATUS) -> PodGroups:
    """Sort pods into ready, unready (their CPU samples are not trusted), missing metrics and
    ignored (deleted or failed), as ``groupPods``."""
    groups = PodGroups()
    for pod in pods:
        name = meta(pod)["name"]
        if meta(pod).get("deletionTimestamp") or pod_phase(pod) == "Failed":
            groups.ignored.add(name)
            continue
        if pod_phase(pod) == "Pending":
            groups.unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            groups.missing.add(name)
            continue
        if resource == "cpu":
            condition = pod_condition(pod, "Ready")
            start = parse_time((pod.get("status") or {}).get("startTime"))
            if condition is None or start is None:
                unready = True
            else:
                transition = parse_time(condition.get("lastTransitionTime")) or 0.0
                if start + cpu_initialization_period > now:
                    unready = condition.get("status") == "False" or \
                        metric.timestamp < transition + metric.window
                else:
                    unready = condition.get("status") == "False" and \
                        start + delay_of_initial_readiness_status > transition
            if unready:
                groups.unready.add(name)
                continue
        groups.ready_count += 1
    return groups


def pod_requests(pods: list[Object], resource: str, container: str | None) -> dict[str, int]:
    """Each pod's request of ``resource`` in milli-units (``calculatePodRequests``); a container
    without one is an error (utilization needs it)."""
    requests: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or ())
        containers += [c for c in spec.get("initContainers") or ()
                       if c.get("restartPolicy") == "Always"]  # sidecars run alongside
        total = 0
        for c in containers:
            if container and c.get("name") != container:
                continue
            raw = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if raw is None:
                if container:
                    continue
                raise MetricsError(f"missing request for {resource} in container {c.get('name')} "
                                   f"of Pod {meta(pod)['name']}")
            try:
                total += milli_value(raw)
            except QuantityError:
                raise MetricsError(f"missing request for {resource} in container "
                                   f"{c.get('name')} of Pod {meta(pod)['name']}") from None
        if container and total == 0 and not any(c.get("name") == container for c in containers):
            raise MetricsError(f"container {container} not present in Pod {meta(pod)['name']}")
        requests[meta(pod)["name"]] = total
    return requests


def utilization_ratio(metrics: PodMetrics, requests: dict[str, int],
                      target_utilization: int) -> tuple[float, int, int]:
    """(usage ratio, utilization %, average raw value) — ``GetResourceUtilizationRatio``."""
    metrics_total = requests_total = entries = 0
    for name, metric in metrics.items():
        request = requests.get(name)
        if request is None:
            continue  # metrics of pods we do not know
        metrics_total += metric.value
        requests_total += request
        entries += 1
    if requests_total == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = (metrics_total * 100) // requests_total
    return utilization / target_utilization, utilization, metrics_total // entries


def usage_ratio(metrics: PodMetrics, target_usage: int) -> tuple[float, int]:
    """(usage ratio, average value) — ``GetMetricUsageRatio``."""
    average = sum(m.value for m in metrics.values()) // len(metrics)
    return average / target_usage, average


def _direction_flips(old: float, new: float) -> bool:
    return (old < 1.0 < new) or (old > 1.0 > new)


def resource_replicas(current_replicas: int, target_utilization: int, resource: str,
                      metrics: PodMetrics, pods: list[Object], container: str | None = None, *,
                      tolerances: Tolerances = Tolerances(), now: float | None = None,
                      cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
                      delay_of_initial_readiness_status: float = DELAY_OF_INITIAL_READINESS_STATUS,
                      ) -> tuple[int, int, int]:
    """(replicas, utilization %, average raw value) for a utilization target
    (``GetResourceReplicas``)."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    metrics = dict(metrics)
    groups = group_pods(pods, metrics, resource, time.time() if now is None else now,
                        cpu_initialization_period, delay_of_initial_readiness_status)
    for name in groups.ignored | groups.unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    requests = pod_requests(pods, resource, container)
    ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.within(ratio):
            return current_replicas, utilization, raw
        return math.ceil(ratio * groups.ready_count), utilization, raw
    if groups.missing:
        if ratio < 1.0:
            # Scaling down: a pod without metrics is assumed to use all it asked for (or the
            # target, when that is higher).
            fallback = max(100, target_utilization)
            for name in groups.missing:
                metrics[name] = PodMetric(requests.get(name, 0) * fallback // 100)
        elif ratio > 1.0:
            for name in groups.missing:
                metrics[name] = PodMetric(0)
    if scale_up_with_unready:
        for name in groups.unready:
            metrics[name] = PodMetric(0)
    new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
    if tolerances.within(new_ratio) or _direction_flips(ratio, new_ratio):
        return current_replicas, utilization, raw
    replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and replicas > current_replicas) or \
            (new_ratio > 1.0 and replicas < current_replicas):
        return current_replicas, utilization, raw
    return replicas, utilization, raw


def plain_metric_replicas(current_replicas: int, target_usage: int, metrics: PodMetrics,
                          pods: list[Object], resource: str | None = None, *,
                          tolerances: Tolerances = Tolerances(), now: float | None = None,
                          cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
                          delay_of_initial_readiness_status: float = DELAY_OF_INITIAL_READINESS_STATUS,
                          ) -> tuple[int, int]:
    """(replicas, average value) for an average-value target (``calcPlainMetricReplicas``)."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    metrics = dict(metrics)
    groups = group_pods(pods, metrics, resource, time.time() if now is None else now,
                        cpu_initialization_period, delay_of_initial_readiness_status)
    for name in groups.ignored | groups.unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = usage_ratio(metrics, target_usage)
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.within(ratio):
            return current_replicas, usage
        return math.ceil(ratio * groups.ready_count), usage
    if groups.missing:
        fill = target_usage if ratio < 1.0 else 0
        for name in groups.missing:
            metrics[name] = PodMetric(fill)
    if scale_up_with_unready:
        for name in groups.unready:
            metrics[name] = PodMetric(0)
    new_ratio, _ = usage_ratio(metrics, target_usage)
    if tolerances.within(new_ratio) or _direction_flips(ratio, new_ratio):
        return current_replicas, usage
    replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and replicas > current_replicas) or \
            (new_ratio > 1.0 and replicas < current_replicas):
        return current_replicas, usage
    return replicas, usage


# -- normalization: stabilization and rate limits ----------------------------------------------


@dataclass
class Recommendation:
    replicas: int
    at: float


@dataclass
class ScaleEvent:
    change: int
    at: float
    outdated: bool = False


def default_scale_up_rules() -> Object:
    return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                         {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_scale_down_rules() -> Object:
    return {"selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def behavior_with_defaults(behavior: Mapping[str, Any], downscale_window: float) -> Object:
    """``spec.behavior`` with upstream's defaults for whatever it leaves out."""
    up = {**default_scale_up_rules(), **{k: v for k, v in (behavior.get("scaleUp") or {}).items()
                                         if v is not None}}
    down = {**default_scale_down_rules(),
            **{k: v for k, v in (behavior.get("scaleDown") or {}).items() if v is not None}}
    down.setdefault("stabilizationWindowSeconds", int(downscale_window))
    return {"scaleUp": up, "scaleDown": down}


def replicas_change_in_period(period: float, events: list[ScaleEvent], now: float) -> int:
    cutoff = now - period
    return sum(e.change for e in events if e.at > cutoff)


def scale_up_limit(current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent],
                   rules: Mapping[str, Any], now: float) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or ():
        period = policy.get("periodSeconds") or 0
        start = current - replicas_change_in_period(period, up_events, now) + \
            replicas_change_in_period(period, down_events, now)
        if policy.get("type") == "Pods":
            proposals.append(start + policy.get("value", 0))
        elif policy.get("type") == "Percent":
            proposals.append(math.ceil(start * (1 + policy.get("value", 0) / 100)))
    if not proposals:
        return -(2 ** 31) if select != "Min" else 2 ** 31 - 1
    return min(proposals) if select == "Min" else max(proposals)


def scale_down_limit(current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent],
                     rules: Mapping[str, Any], now: float) -> int:
    """``calculateScaleDownLimitWithBehaviors``."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or ():
        period = policy.get("periodSeconds") or 0
        start = current - replicas_change_in_period(period, up_events, now) + \
            replicas_change_in_period(period, down_events, now)
        if policy.get("type") == "Pods":
            proposals.append(start - policy.get("value", 0))
        elif policy.get("type") == "Percent":
            proposals.append(int(start * (1 - policy.get("value", 0) / 100)))
    if not proposals:
        return 2 ** 31 - 1 if select != "Min" else -(2 ** 31)
    return max(proposals) if select == "Min" else min(proposals)


def convert_with_rules(current: int, desired: int, min_replicas: int,
                       max_replicas: int) -> tuple[int, str, str]:
    """Legacy limits without a behavior (``convertDesiredReplicasWithRules``)."""
    up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if max_replicas > up_limit:
        maximum, reason, message = up_limit, "ScaleUpLimit", \
            "the desired replica count is increasing faster than the maximum scale rate"
    else:
        maximum, reason, message = max_replicas, "TooManyReplicas", \
            "the desired replica count is more than the maximum replica count"
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas", \
            "the desired replica count is less than the minimum replica count"
    if desired > maximum:
        return maximum, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


@dataclass
class Normalizer:
    """The per-HPA memory of recommendations and scale events that stabilization and rate
    limits need (kept in the controller, as upstream keeps it in memory)."""

    downscale_window: float = DOWNSCALE_STABILIZATION_WINDOW
    clock: Callable[[], float] = time.time
    recommendations: dict[str, list[Recommendation]] = field(default_factory=dict)
    up_events: dict[str, list[ScaleEvent]] = field(default_factory=dict)
    down_events: dict[str, list[ScaleEvent]] = field(default_factory=dict)

    def forget(self, key: str) -> None:
        for store in (self.recommendations, self.up_events, self.down_events):
            store.pop(key, None)

    def _record(self, key: str, replicas: int, replace_index: int | None) -> None:
        entry = Recommendation(replicas, self.clock())
        if replace_index is not None:
            self.recommendations[key][replace_index] = entry
        else:
            self.recommendations.setdefault(key, []).append(entry)

    def stabilize(self, key: str, desired: int) -> int:
        """Legacy: the highest recommendation of the downscale window."""
        now = self.clock()
        cutoff = now - self.downscale_window
        highest, old = desired, None
        for i, rec in enumerate(self.recommendations.get(key, [])):
            if rec.at < cutoff:
                old = i
            elif rec.replicas > highest:
                highest = rec.replicas
        self._record(key, desired, old)
        return highest

    def stabilize_with_behavior(self, key: str, current: int, desired: int,
                                behavior: Mapping[str, Any]) -> tuple[int, str, str]:
        now = self.clock()
        up_cutoff = now - (behavior["scaleUp"].get("stabilizationWindowSeconds") or 0)
        down_cutoff = now - (behavior["scaleDown"].get("stabilizationWindowSeconds") or 0)
        up, down, old = desired, desired, None
        for i, rec in enumerate(self.recommendations.get(key, [])):
            if rec.at > up_cutoff:
                up = min(rec.replicas, up)
            if rec.at > down_cutoff:
                down = max(rec.replicas, down)
            if rec.at < up_cutoff and rec.at < down_cutoff:
                old = i
        recommendation = min(max(current, up), down)
        self._record(key, desired, old)
        if desired >= current:
            return recommendation, "ScaleUpStabilized", \
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
        return recommendation, "ScaleDownStabilized", \
            "recent recommendations were higher than current one, applying the highest recent recommendation"

    def convert_with_behavior(self, key: str, current: int, desired: int, min_replicas: int,
                              max_replicas: int, behavior: Mapping[str, Any]) -> tuple[int, str, str]:
        now = self.clock()
        up_events, down_events = self.up_events.get(key, []), self.down_events.get(key, [])
        if desired > current:
            limit = max(scale_up_limit(current, up_events, down_events, behavior["scaleUp"], now),
                        current)
            if max_replicas > limit:
                maximum, reason, message = limit, "ScaleUpLimit", \
                    "the desired replica count is increasing faster than the maximum scale rate"
            else:
                maximum, reason, message = max_replicas, "TooManyReplicas", \
                    "the desired replica count is more than the maximum replica count"
            if desired > maximum:
                return maximum, reason, message
        elif desired < current:
            limit = min(scale_down_limit(current, up_events, down_events, behavior["scaleDown"],
                                         now), current)
            if min_replicas < limit:
                minimum, reason, message = limit, "ScaleDownLimit", \
                    "the desired replica count is decreasing faster than the maximum scale rate"
            else:
                minimum, reason, message = min_replicas, "TooFewReplicas", \
                    "the desired replica count is less than the minimum replica count"
            if desired < minimum:
                return minimum, reason, message
        return desired, "DesiredWithinRange", "the desired count is within the acceptable range"

    def store_scale_event(self, key: str, behavior: Mapping[str, Any] | None, previous: int,
                          new: int) -> None:
        if behavior is None or new == previous:
            return
        now = self.clock()
        up = new > previous
        rules = behavior["scaleUp" if up else "scaleDown"]
        events = (self.up_events if up else self.down_events).setdefault(key, [])
        longest = max((p.get("periodSeconds") or 0 for p in rules.get("policies") or ()), default=0)
        for event in events:
            if event.at < now - longest:
                event.outdated = True
        change = abs(new - previous)
        for i, event in enumerate(events):
            if event.outdated:
                events[i] = ScaleEvent(change, now)
                break
        else:
            events.append(ScaleEvent(change, now))


# -- conditions --------------------------------------------------------------------------------


def set_condition(hpa: Object, type_: str, status: str, reason: str, message: str) -> None:
    conditions = hpa.setdefault("status", {}).setdefault("conditions", None) or []
    hpa["status"]["conditions"] = conditions
    now = now_rfc3339()
    for condition in conditions:
        if condition.get("type") == type_:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = now
            condition.update(status=status, reason=reason, message=message)
            return
    conditions.append({"type": type_, "status": status, "lastTransitionTime": now,
                       "reason": reason, "message": message})


def metric_reason(metric_type: str) -> str:
    return {"Resource": "FailedGetResourceMetric",
            "ContainerResource": "FailedGetContainerResourceMetric",
            "Pods": "FailedGetPodsMetric", "Object": "FailedGetObjectMetric",
            "External": "FailedGetExternalMetric"}.get(metric_type, "InvalidMetricSourceType")


# -- the controller ----------------------------------------------------------------------------


class HorizontalPodAutoscalerController(Controller):
    """Scales workloads after their metrics, within their HPA's bounds."""

    name = "horizontal-pod-autoscaler"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 5,
                 metrics_client: MetricsClient | None = None,
                 sync_period: float = SYNC_PERIOD, tolerance: float = TOLERANCE,
                 downscale_stabilization_window: float = DOWNSCALE_STABILIZATION_WINDOW,
                 cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD,
                 delay_of_initial_readiness_status: float = DELAY_OF_INITIAL_READINESS_STATUS,
                 clock: Callable[[], float] = time.time):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.metrics = metrics_client or RestMetricsClient(client)
        self.sync_period = sync_period
        self.tolerance = tolerance
        self.cpu_initialization_period = cpu_initialization_period
        self.delay_of_initial_readiness_status = delay_of_initial_readiness_status
        self.clock = clock
        self.normalizer = Normalizer(downscale_stabilization_window, clock)
        self.hpas = informers.informer("autoscaling/v2", "horizontalpodautoscalers")
        self.pods = informers.informer("v1", "pods")
        self.hpas.add_event_handler(on_add=self.enqueue,
                                    on_update=lambda old, new: self._updated(old, new),
                                    on_delete=self.enqueue)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.hpas, self.pods]

    def _updated(self, old: Object, new: Object) -> None:
        # Our own status writes do not need another pass before the next period.
        if old.get("spec") != new.get("spec") or meta(old).get("uid") != meta(new).get("uid"):
            self.enqueue(new)

    async def reconcile(self, key: str) -> None:
        hpa = self.hpas.indexer.get(key)
        if hpa is None:
            self.normalizer.forget(key)
            return
        try:
            await self.reconcile_autoscaler(copy.deepcopy(hpa), key)
        finally:
            if self.hpas.indexer.get(key) is not None:
                self.queue.add_after(key, self.sync_period)

    def _event(self, hpa: Object, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event({**hpa, "apiVersion": "autoscaling/v2",
                                 "kind": "HorizontalPodAutoscaler"}, type_, reason, message)

    async def _target_resource(self, ref: Mapping[str, Any]) -> tuple[str, str]:
        api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
        known = _KNOWN_TARGETS.get((api_version, kind))
        if known:
            return api_version, known
        resource = await self.client.discovery.resource_for(api_version, kind)
        return resource.api_version, resource.name

    async def reconcile_autoscaler(self, hpa: Object, key: str) -> None:
        namespace = meta(hpa)["namespace"]
        spec = hpa.get("spec") or {}
        original_status = copy.deepcopy(hpa.get("status") or {})
        ref = spec.get("scaleTargetRef") or {}
        reference = f"{ref.get('kind')}/{ref.get('name')}"
        try:
            api_version, resource = await self._target_resource(ref)
            scale = await self.client.get(api_version, resource, ref.get("name"),
                                          namespace=namespace, subresource="scale")
        except (ApiError, UnknownKindError, ValueError) as e:
            message = e.message if isinstance(e, ApiError) else str(e)
            set_condition(hpa, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {message}")
            self._event(hpa, WARNING, "FailedGetScale", message)
            self._set_status(hpa, (hpa.get("status") or {}).get("currentReplicas") or 0,
                             (hpa.get("status") or {}).get("desiredReplicas") or 0, None, False)
            await self._update_status_if_needed(original_status, hpa)
            raise RuntimeError(f"failed to query scale subresource for {reference}: {message}") from e
        set_condition(hpa, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale")
        current = (scale.get("spec") or {}).get("replicas") or 0
        min_replicas = spec.get("minReplicas")
        min_replicas = 1 if min_replicas is None else min_replicas
        max_replicas = spec.get("maxReplicas") or 0
        metric_statuses: list[Object] | None = None
        reason = ""
        if current == 0 and min_replicas != 0:
            desired = 0
            set_condition(hpa, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero")
        elif current > max_replicas:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", max_replicas
        elif current < min_replicas:
            reason, desired = "Current number of replicas below Spec.MinReplicas", min_replicas
        else:
            metric_desired, metric_name, metric_statuses, error = \
                await self.compute_replicas_for_metrics(hpa, scale, current)
            if error is not None and metric_desired == -1:
                self._set_status(hpa, current, (hpa.get("status") or {}).get("desiredReplicas") or 0,
                                 metric_statuses, False)
                await self._update_status_if_needed(original_status, hpa)
                self._event(hpa, WARNING, "FailedComputeMetricsReplicas", error)
                log.info("%s: %s: failed to compute desired number of replicas based on listed "
                         "metrics for %s: %s", self.name, key, reference, error)
                return
            desired = max(metric_desired, 0)
            if desired > current:
                reason = f"{metric_name} above target"
            elif desired < current:
                reason = "All metrics below target"
            behavior = spec.get("behavior")
            if behavior is None:
                desired = self.normalize(hpa, key, current, desired, min_replicas, max_replicas)
            else:
                desired = self.normalize_with_behavior(hpa, key, current, desired, min_replicas,
                                                       max_replicas, behavior)
        rescale = desired != current
        if rescale:
            try:
                scale = copy.deepcopy(scale)
                scale["spec"]["replicas"] = desired
                await self.client.update(api_version, resource, scale, namespace=namespace,
                                         subresource="scale")
            except ApiError as e:
                self._event(hpa, WARNING, "FailedRescale",
                            f"New size: {desired}; reason: {reason}; error: {e.message}")
                set_condition(hpa, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e.message}")
                self._set_status(hpa, current, (hpa.get("status") or {}).get("desiredReplicas") or 0,
                                 metric_statuses, False)
                await self._update_status_if_needed(original_status, hpa)
                raise
            set_condition(hpa, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}")
            self._event(hpa, NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            behavior = spec.get("behavior")
            self.normalizer.store_scale_event(
                key, None if behavior is None else
                behavior_with_defaults(behavior, self.normalizer.downscale_window), current, desired)
            log.info("%s: %s: scaled %s from %d to %d: %s", self.name, key, reference, current,
                     desired, reason)
        self._set_status(hpa, current, desired, metric_statuses, rescale)
        await self._update_status_if_needed(original_status, hpa)

    def normalize(self, hpa: Object, key: str, current: int, desired: int, min_replicas: int,
                  max_replicas: int) -> int:
        stabilized = self.normalizer.stabilize(key, desired)
        if stabilized != desired:
            set_condition(hpa, "AbleToScale", "True", "ScaleDownStabilized",
                          "recent recommendations were higher than current one, applying the "
                          "highest recent recommendation")
        else:
            set_condition(hpa, "AbleToScale", "True", "ReadyForNewScale",
                          "recommended size matches current size")
        result, reason, message = convert_with_rules(current, stabilized, min_replicas, max_replicas)
        set_condition(hpa, "ScalingLimited", "False" if result == stabilized else "True", reason,
                      message)
        return result

    def normalize_with_behavior(self, hpa: Object, key: str, current: int, desired: int,
                                min_replicas: int, max_replicas: int,
                                behavior: Mapping[str, Any]) -> int:
        rules = behavior_with_defaults(behavior, self.normalizer.downscale_window)
        stabilized, reason, message = self.normalizer.stabilize_with_behavior(key, current,
                                                                              desired, rules)
        if stabilized != desired:
            set_condition(hpa, "AbleToScale", "True", reason, message)
        else:
            set_condition(hpa, "AbleToScale", "True", "ReadyForNewScale",
                          "recommended size matches current size")
        result, reason, message = self.normalizer.convert_with_behavior(
            key, current, stabilized, min_replicas, max_replicas, rules)
        set_condition(hpa, "ScalingLimited", "False" if result == stabilized else "True", reason,
                      message)
        return result

    # -- metrics -------------------------------------------------------------------------------
    def _tolerances(self, hpa: Object) -> Tolerances:
        behavior = (hpa.get("spec") or {}).get("behavior") or {}

        def tolerance(rules: Mapping[str, Any] | None) -> float:
            raw = (rules or {}).get("tolerance")
            if raw is None:
                return self.tolerance
            try:
                return float(parse_quantity(raw).value)
            except QuantityError:
                return self.tolerance
        return Tolerances(tolerance(behavior.get("scaleDown")), tolerance(behavior.get("scaleUp")))

    async def compute_replicas_for_metrics(self, hpa: Object, scale: Object, current: int
                                           ) -> tuple[int, str, list[Object], str | None]:
        """(desired replicas or -1, metric name, metric statuses, first error)."""
        selector_text = (scale.get("status") or {}).get("selector")
        if not selector_text:
            message = "selector is required"
            self._event(hpa, WARNING, "SelectorRequired", message)
            set_condition(hpa, "ScalingActive", "False", "InvalidSelector",
                          "the HPA target's scale is missing a selector")
            return -1, "", [], message
        try:
            selector = parse_label_selector(selector_text)
        except Exception as e:
            message = f"couldn't convert selector into a corresponding internal selector object: {e}"
            self._event(hpa, WARNING, "InvalidSelector", message)
            set_condition(hpa, "ScalingActive", "False", "InvalidSelector", message)
            return -1, "", [], message
        metrics = (hpa.get("spec") or {}).get("metrics") or [
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]
        statuses: list[Object] = []
        desired, name, invalid, first_error, first_condition = -1, "", 0, None, None
        for spec in metrics:
            try:
                replicas, metric_name, status = await self.compute_replicas_for_metric(
                    hpa, spec, current, selector, selector_text)
            except MetricsError as e:
                reason = metric_reason(spec.get("type", ""))
                self._event(hpa, WARNING, reason, str(e))
                if invalid == 0:
                    first_error = str(e)
                    first_condition = (reason, f"the HPA was unable to compute the replica count: {e}")
                invalid += 1
                continue
            statuses.append(status)
            if desired == -1 or replicas > desired:
                desired, name = replicas, metric_name
        if invalid >= len(metrics) or invalid > 0 and desired < current:
            # Upstream will not scale down while some metric is unknown.
            set_condition(hpa, "ScalingActive", "False", *first_condition)  # type: ignore[misc]
            error = f"invalid metrics ({invalid} invalid out of {len(metrics)}), first error is: {first_error}"
            return -1, "", statuses, error
        set_condition(hpa, "ScalingActive", "True", "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from {name}")
        return desired, name, statuses, None

    def _pods(self, namespace: str, selector: LabelSelector) -> list[Object]:
        return [p for p in self.pods.indexer.by_index(NAMESPACE_INDEX, namespace)
                if selector.matches(meta(p).get("labels") or {})]

    async def compute_replicas_for_metric(self, hpa: Object, spec: Mapping[str, Any],
                                          current: int, selector: LabelSelector,
                                          selector_text: str) -> tuple[int, str, Object]:
        namespace = meta(hpa)["namespace"]
        kind = spec.get("type")
        tolerances = self._tolerances(hpa)
        common = dict(tolerances=tolerances, now=self.clock(),
                      cpu_initialization_period=self.cpu_initialization_period,
                      delay_of_initial_readiness_status=self.delay_of_initial_readiness_status)
        if kind in ("Resource", "ContainerResource"):
            source = spec.get("resource" if kind == "Resource" else "containerResource") or {}
            resource, container = source.get("name", ""), source.get("container")
            target = source.get("target") or {}
            label = f"{resource} resource" + (f" of container \"{container}\"" if container else "")
            what = "utilization" if target.get("averageUtilization") is not None else "usage"
            try:
                metrics, _ = await self.metrics.get_resource_metric(resource, namespace,
                                                                    selector_text, container)
            except MetricsError as e:
                raise MetricsError(f"failed to get {resource} {what}: unable to get metrics for "
                                   f"resource {resource}: {e}") from None
            pods = self._pods(namespace, selector)
            try:
                if target.get("averageUtilization") is not None:
                    replicas, utilization, raw = resource_replicas(
                        current, int(target["averageUtilization"]), resource, metrics, pods,
                        container, **common)
                    current_status = {"averageUtilization": utilization,
                                      "averageValue": milli_quantity(raw)}
                else:
                    if target.get("averageValue") is None:
                        raise MetricsError("invalid resource metric source: neither a "
                                           "utilization target nor a value target was set")
                    replicas, usage = plain_metric_replicas(
                        current, milli_value(target["averageValue"]), metrics, pods, resource,
                        **common)
                    current_status = {"averageValue": milli_quantity(usage)}
            except MetricsError as e:
                raise MetricsError(f"failed to get {resource} {what}: {e}") from None
            field_name = "resource" if kind == "Resource" else "containerResource"
            status_source: Object = {"name": resource, "current": current_status}
            if container:
                status_source["container"] = container
            return replicas, label, {"type": kind, field_name: status_source}
        if kind == "Pods":
            source = spec.get("pods") or {}
            metric = source.get("metric") or {}
            target = source.get("target") or {}
            try:
                metrics, _ = await self.metrics.get_pods_metric(
                    metric.get("name", ""), namespace, selector_text, metric.get("selector"))
                replicas, usage = plain_metric_replicas(
                    current, milli_value(target.get("averageValue") or 0), metrics,
                    self._pods(namespace, selector), None, **common)
            except MetricsError as e:
                raise MetricsError(f"failed to get pods metric value: unable to get metric "
                                   f"{metric.get('name')}: {e}") from None
            return replicas, f"pods metric {metric.get('name')}", {
                "type": "Pods", "pods": {"metric": metric,
                                         "current": {"averageValue": milli_quantity(usage)}}}
        if kind in ("Object", "External"):
            source = spec.get(kind.lower()) or {}
            metric_name = (source.get("metric") or {}).get("name")
            api = "custom.metrics.k8s.io" if kind == "Object" else "external.metrics.k8s.io"
            raise MetricsError(f"unable to get {kind.lower()} metric value: unable to get metric "
                               f"{metric_name}: no {api} API registered")
        raise MetricsError(f"unknown metric source type \"{kind}\"")

    # -- status --------------------------------------------------------------------------------
    def _set_status(self, hpa: Object, current: int, desired: int,
                    metric_statuses: list[Object] | None, rescale: bool) -> None:
        status = hpa.setdefault("status", {})
        status["currentReplicas"] = current
        status["desiredReplicas"] = desired
        status["currentMetrics"] = metric_statuses or None
        if rescale:
            status["lastScaleTime"] = now_rfc3339(self.clock())
        if meta(hpa).get("generation") is not None:
            status["observedGeneration"] = meta(hpa)["generation"]

    async def _update_status_if_needed(self, original: Object, hpa: Object) -> None:
        status = {k: v for k, v in (hpa.get("status") or {}).items() if v is not None}
        hpa["status"] = status
        if {k: v for k, v in original.items() if v is not None} == status:
            return
        namespace, name = split_key(f"{meta(hpa)['namespace']}/{meta(hpa)['name']}")
        try:
            await self.client.update("autoscaling/v2", "horizontalpodautoscalers", hpa,
                                     namespace=namespace, subresource="status")
        except ApiError as e:
            if e.not_found:
                return
            if e.conflict:
                log.debug("%s: status of %s/%s changed meanwhile; next pass", self.name,
                          namespace, name)
                return
            raise
