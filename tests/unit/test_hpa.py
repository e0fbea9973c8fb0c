"""The HPA's replica calculation and normalization (upstream's algorithm), and one full sync
with a fake metrics source and a fake client."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sampan.client.informer import InformerFactory
from sampan.controllers.hpa import (
    HorizontalPodAutoscalerController,
    MetricsError,
    Normalizer,
    PodMetric,
    ScaleEvent,
    behavior_with_defaults,
    convert_with_rules,
    plain_metric_replicas,
    resource_replicas,
    scale_down_limit,
    scale_up_limit,
)
from sampan.controllers.util import now_rfc3339

NOW = 1_700_000_000.0
LONG_AGO = now_rfc3339(NOW - 3600)


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pod(name: str, cpu_request: str = "100m", *, phase: str = "Running", ready: bool = True,
        started: str = LONG_AGO, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu_request}}}]},
            "status": {"phase": phase, "startTime": started,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": started}]}}


def usage(**values: int) -> dict[str, PodMetric]:
    return {name: PodMetric(v, NOW - 10, 30) for name, v in values.items()}


def test_within_tolerance_keeps_the_replica_count() -> None:
    pods = [pod("a"), pod("b")]
    replicas, utilization, raw = resource_replicas(2, 50, "cpu", usage(a=52, b=54), pods, now=NOW)
    assert (replicas, utilization, raw) == (2, 53, 53)


def test_scale_up_and_down_by_usage_ratio() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    assert resource_replicas(3, 50, "cpu", usage(a=100, b=100, c=100), pods, now=NOW)[0] == 6
    assert resource_replicas(3, 50, "cpu", usage(a=10, b=10, c=10), pods, now=NOW)[0] == 1


def test_missing_pods_count_as_full_on_scale_down_and_zero_on_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c"), pod("d")]
    # Scale down (ratio 0.2): c and d count as 100% of their requests, which makes the ratio
    # (10+10+100+100)/400/0.5 = 1.1: a change of direction, so the count stays.
    replicas, _, _ = resource_replicas(4, 50, "cpu", usage(a=10, b=10), pods, now=NOW)
    assert replicas == 4
    # Scale up: the missing pods count as 0.
    replicas, _, _ = resource_replicas(4, 50, "cpu", usage(a=200, b=200), pods, now=NOW)
    assert replicas == 8


def test_unready_pods_do_not_make_a_scale_up_bigger() -> None:
    fresh = now_rfc3339(NOW - 20)
    pods = [pod("a"), pod("b"), pod("c", ready=False, started=fresh)]
    replicas, _, _ = resource_replicas(3, 50, "cpu", usage(a=100, b=100, c=100), pods, now=NOW)
    assert replicas == 4  # (100+100+0)/300 / 0.5 = 1.33 → ceil(1.33 * 3)
    pending = [pod("a"), pod("b", phase="Pending")]
    assert resource_replicas(2, 50, "cpu", usage(a=100), pending, now=NOW)[0] == 2


def test_errors_of_the_calculator() -> None:
    with pytest.raises(MetricsError, match="no pods returned by selector"):
        resource_replicas(1, 50, "cpu", usage(a=1), [], now=NOW)
    with pytest.raises(MetricsError, match="missing request for cpu in container c of Pod a"):
        no_request = pod("a")
        no_request["spec"]["containers"][0]["resources"] = {}
        resource_replicas(1, 50, "cpu", usage(a=1), [no_request], now=NOW)
    with pytest.raises(MetricsError, match="did not receive metrics for targeted pods"):
        resource_replicas(1, 50, "cpu", usage(a=1), [pod("a", phase="Failed")], now=NOW)


def test_plain_average_value_target() -> None:
    pods = [pod("a"), pod("b")]
    assert plain_metric_replicas(2, 100, usage(a=300, b=300), pods, now=NOW) == (6, 300)
    assert plain_metric_replicas(2, 100, usage(a=105, b=100), pods, now=NOW) == (2, 102)


def test_legacy_limits() -> None:
    assert convert_with_rules(2, 20, 1, 10) == (
        4, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
    assert convert_with_rules(8, 20, 1, 10)[:2] == (10, "TooManyReplicas")
    assert convert_with_rules(3, 0, 2, 10)[:2] == (2, "TooFewReplicas")
    assert convert_with_rules(3, 5, 1, 10)[:2] == (5, "DesiredWithinRange")


def test_behavior_policies_limit_the_rate() -> None:
    rules = behavior_with_defaults({}, 300)
    assert rules["scaleDown"]["stabilizationWindowSeconds"] == 300
    # Defaults: +max(4 pods, 100%) per 15 s up, -100% per 15 s down.
    assert scale_up_limit(2, [], [], rules["scaleUp"], NOW) == 6
    assert scale_up_limit(10, [], [], rules["scaleUp"], NOW) == 20
    assert scale_down_limit(10, [], [], rules["scaleDown"], NOW) == 0
    one_pod_a_minute = {"selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
    recent = [ScaleEvent(1, NOW - 30)]
    assert scale_up_limit(5, recent, [], one_pod_a_minute, NOW) == 5  # used up this minute
    assert scale_up_limit(5, [ScaleEvent(1, NOW - 90)], [], one_pod_a_minute, NOW) == 6
    assert scale_down_limit(5, [], [], {"selectPolicy": "Disabled", "policies": []}, NOW) == 5


def test_stabilization_windows() -> None:
    clock = FakeClock()
    normalizer = Normalizer(300, clock)
    assert normalizer.stabilize("k", 5) == 5
    clock.now += 60
    assert normalizer.stabilize("k", 2) == 5  # highest of the last five minutes
    clock.now += 300
    assert normalizer.stabilize("k", 2) == 2

    behavior = behavior_with_defaults({"scaleUp": {"stabilizationWindowSeconds": 120}}, 300)
    normalizer = Normalizer(300, clock)
    assert normalizer.stabilize_with_behavior("b", 3, 6, behavior)[0] == 6
    clock.now += 30
    stabilized, reason, _ = normalizer.stabilize_with_behavior("b", 3, 10, behavior)
    assert (stabilized, reason) == (6, "ScaleUpStabilized")  # lowest of the up window


class FakeMetrics:
    def __init__(self, values: dict[str, int] | None) -> None:
        self.values = values

    async def get_resource_metric(self, resource: str, namespace: str, selector: str,
                                  container: str | None):
        if self.values is None:
            raise MetricsError("unable to fetch metrics from resource metrics API: the server "
                               "could not find the requested resource (get pods.metrics.k8s.io)")
        return usage(**self.values), NOW

    async def get_pods_metric(self, *args: Any):
        raise MetricsError("no custom metrics")


class FakeClient:
    def __init__(self, replicas: int) -> None:
        self.scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                      "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1"},
                      "spec": {"replicas": replicas},
                      "status": {"replicas": replicas, "selector": "app=web"}}
        self.status_writes: list[dict[str, Any]] = []

    async def get(self, api_version: str, resource: str, name: str, **_: Any) -> dict[str, Any]:
        return copy.deepcopy(self.scale)

    async def update(self, api_version: str, resource: str, body: dict[str, Any], *,
                     subresource: str | None = None, **_: Any) -> dict[str, Any]:
        if resource == "deployments":
            self.scale = copy.deepcopy(body)
        else:
            self.status_writes.append(copy.deepcopy(body["status"]))
        return body


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def _hpa(min_replicas: int = 1, max_replicas: int = 10) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "generation": 1},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "web"},
                     "minReplicas": min_replicas, "maxReplicas": max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 50}}}]}}


def _controller(replicas: int, metrics: dict[str, int] | None):
    client, recorder = FakeClient(replicas), FakeRecorder()
    controller = HorizontalPodAutoscalerController(
        client, InformerFactory(client), recorder=recorder, metrics_client=FakeMetrics(metrics),
        clock=FakeClock())
    for name in ("a", "b"):
        controller.pods.indexer.upsert(pod(name))
    return controller, client, recorder


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


async def test_sync_scales_up_from_metrics() -> None:
    controller, client, recorder = _controller(2, {"a": 100, "b": 100})
    await controller.reconcile_autoscaler(_hpa(), "ns/web")
    assert client.scale["spec"]["replicas"] == 4
    status = client.status_writes[-1]
    assert status["desiredReplicas"] == 4 and status["currentReplicas"] == 2
    assert status["currentMetrics"][0]["resource"]["current"] == {"averageUtilization": 100,
                                                                 "averageValue": "100m"}
    conditions = _conditions(status)
    assert conditions["AbleToScale"] == ("True", "SucceededRescale")
    assert conditions["ScalingActive"] == ("True", "ValidMetricFound")
    assert ("Normal", "SuccessfulRescale", "New size: 4; reason: cpu resource above target") \
        in recorder.events


async def test_sync_without_metrics_reports_and_does_not_scale() -> None:
    controller, client, recorder = _controller(2, None)
    await controller.reconcile_autoscaler(_hpa(), "ns/web")
    assert client.scale["spec"]["replicas"] == 2
    status = client.status_writes[-1]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["AbleToScale"]["reason"] == "SucceededGetScale"
    assert conditions["ScalingActive"]["status"] == "False"
    assert conditions["ScalingActive"]["reason"] == "FailedGetResourceMetric"
    assert conditions["ScalingActive"]["message"] == (
        "the HPA was unable to compute the replica count: failed to get cpu utilization: unable "
        "to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the "
        "server could not find the requested resource (get pods.metrics.k8s.io)")
    reasons = [e[1] for e in recorder.events]
    assert reasons == ["FailedGetResourceMetric", "FailedComputeMetricsReplicas"]
    assert recorder.events[1][2].startswith("invalid metrics (1 invalid out of 1), first error is: "
                                            "failed to get cpu utilization")


async def test_sync_clamps_to_min_and_max_without_metrics() -> None:
    controller, client, recorder = _controller(1, None)
    await controller.reconcile_autoscaler(_hpa(min_replicas=3), "ns/web")
    assert client.scale["spec"]["replicas"] == 3
    assert recorder.events == [("Normal", "SuccessfulRescale",
                                "New size: 3; reason: Current number of replicas below "
                                "Spec.MinReplicas")]
    controller, client, recorder = _controller(12, None)
    await controller.reconcile_autoscaler(_hpa(max_replicas=5), "ns/web")
    assert client.scale["spec"]["replicas"] == 5


async def test_scale_to_zero_disables_scaling() -> None:
    controller, client, _ = _controller(0, {"a": 100, "b": 100})
    await controller.reconcile_autoscaler(_hpa(), "ns/web")
    assert client.scale["spec"]["replicas"] == 0
    assert _conditions(client.status_writes[-1])["ScalingActive"] == ("False", "ScalingDisabled")
