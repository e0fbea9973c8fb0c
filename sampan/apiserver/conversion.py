"""Conversion between a served version and the version a resource is stored at.

Two built-in resources are served at a version other than their storage version:
``autoscaling/v1`` HorizontalPodAutoscalers (stored as ``autoscaling/v2``) and
``events.k8s.io/v1`` Events (stored as core ``v1`` Events), as upstream does.
"""

from __future__ import annotations

import copy
from typing import Any

from sampan.api.registry import Resource

Obj = dict[str, Any]


def needs_conversion(resource: Resource) -> bool:
    return bool(resource.storage_version) and (
        resource.storage_version != resource.version
        or (resource.storage_group is not None and resource.storage_group != resource.group))


def from_storage(resource: Resource, obj: Obj) -> Obj:
    if not needs_conversion(resource):
        return obj
    if resource.kind == "HorizontalPodAutoscaler":
        return _hpa_v2_to_v1(obj)
    if resource.group == "events.k8s.io":
        return _core_event_to_events_v1(obj)
    return obj


def to_storage(resource: Resource, obj: Obj) -> Obj:
    if not needs_conversion(resource):
        return obj
    if resource.kind == "HorizontalPodAutoscaler":
        return _hpa_v1_to_v2(obj)
    if resource.group == "events.k8s.io":
        return _events_v1_to_core_event(obj)
    return obj


# -- HorizontalPodAutoscaler -------------------------------------------------------------------
_CPU = "cpu"


def _hpa_v1_to_v2(obj: Obj) -> Obj:
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = "autoscaling/v2"
    spec = obj.get("spec") or {}
    new_spec: Obj = {k: copy.deepcopy(spec[k]) for k in ("scaleTargetRef", "minReplicas", "maxReplicas")
                     if k in spec}
    target = spec.get("targetCPUUtilizationPercentage")
    if target is not None:
        new_spec["metrics"] = [{"type": "Resource", "resource": {
            "name": _CPU, "target": {"type": "Utilization", "averageUtilization": target}}}]
    out["spec"] = new_spec
    if "status" in obj:
        status = obj["status"] or {}
        new_status: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime",
                                                    "currentReplicas", "desiredReplicas") if k in status}
        current = status.get("currentCPUUtilizationPercentage")
        if current is not None:
            new_status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": _CPU, "current": {"averageUtilization": current}}}]
        out["status"] = new_status
    return out


def _hpa_v2_to_v1(obj: Obj) -> Obj:
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = "autoscaling/v1"
    spec = obj.get("spec") or {}
    new_spec: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    for metric in spec.get("metrics") or []:
        res = metric.get("resource") or {}
        target = res.get("target") or {}
        if metric.get("type") == "Resource" and res.get("name") == _CPU and \
                target.get("type") == "Utilization":
            new_spec["targetCPUUtilizationPercentage"] = target.get("averageUtilization")
    out["spec"] = new_spec
    status = obj.get("status")
    if status is not None:
        new_status: Obj = {k: status[k] for k in ("observedGeneration", "lastScaleTime",
                                                    "currentReplicas", "desiredReplicas") if k in status}
        for metric in status.get("currentMetrics") or []:
            res = metric.get("resource") or {}
            if metric.get("type") == "Resource" and res.get("name") == _CPU:
                current = (res.get("current") or {}).get("averageUtilization")
                if current is not None:
                    new_status["currentCPUUtilizationPercentage"] = current
        out["status"] = new_status
    return out


# -- Event -------------------------------------------------------------------------------------
# (core/v1 field, events.k8s.io/v1 field)
_EVENT_FIELDS = (
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("source", "deprecatedSource"),
    ("reportingComponent", "reportingController"),
)
_EVENT_SAME = ("metadata", "reason", "type", "eventTime", "series", "action", "related",
               "reportingInstance")


def _core_event_to_events_v1(obj: Obj) -> Obj:
    out: Obj = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for f in _EVENT_SAME:
        if f in obj:
            out[f] = obj[f]
    for core, new in _EVENT_FIELDS:
        if obj.get(core) not in (None, "", 0, {}):
            out[new] = obj[core]
    return out


def _events_v1_to_core_event(obj: Obj) -> Obj:
    out: Obj = {"kind": "Event", "apiVersion": "v1"}
    for f in _EVENT_SAME:
        if f in obj:
            out[f] = copy.deepcopy(obj[f])
    for core, new in _EVENT_FIELDS:
        if new in obj:
            out[core] = copy.deepcopy(obj[new])
    out.setdefault("involvedObject", {})
    return out
