"""The LimitRanger and ResourceQuota admission plugins, as upstream's
``plugin/pkg/admission/limitranger`` and ``apiserver/pkg/admission/plugin/resourcequota``.

LimitRanger gives the containers of a new pod the defaults of the namespace's LimitRanges
(``default`` → limits, ``defaultRequest`` → requests) and refuses pods and claims outside their
``min`` / ``max`` / ``maxLimitRequestRatio``. ResourceQuota measures what a new object would
add to every quota of its namespace that covers it, refuses it when some ``status.used`` would
pass ``status.hard``, and otherwise charges the quotas (compare-and-swap on their status) before
the object is stored, so concurrent creates cannot overshoot; the quota controller later
recomputes the truth. Usage is measured with the quota controller's evaluators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from sampan.api.errors import StatusError
from sampan.api.registry import Resource
from sampan.api.validation import QuantityError, canonical_quantity, parse_quantity
from sampan.apiserver.rest import Context
from sampan.controllers.resourcequota import (
    COUNT_PREFIX,
    STORAGE_CLASS_SUFFIX,
    Usage,
    claim_usage,
    count_usage,
    pod_matches_scopes,
    pod_resources,
    pod_usage,
    quota_scopes,
    service_usage,
)

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

Object = dict[str, Any]
ResourceList = dict[str, tuple[Decimal, str]]

LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"


class Refused(Exception):
    """A request a plugin refuses; the message is the part after ``... is forbidden: ``."""


def forbidden(resource: Resource, name: str, message: str) -> StatusError:
    """``admission.NewForbidden``: 403 naming the object by its group-qualified resource."""
    qualified = f"{resource.resource}.{resource.group}" if resource.group else resource.resource
    details: dict[str, Any] = {"name": name, "kind": resource.resource}
    if resource.group:
        details["group"] = resource.group
    return StatusError(403, "Forbidden", f'{qualified} "{name}" is forbidden: {message}',
                       details=details)


def _object_name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return meta.get("name") or meta.get("generateName") or "Unknown"


def _is_core(resource: Resource, plural: str) -> bool:
    return resource.group == "" and resource.resource == plural


# -- quantities ----------------------------------------------------------------------------------


def _resource_list(raw: Mapping[str, Any] | None) -> ResourceList:
    out: ResourceList = {}
    for name, value in (raw or {}).items():
        try:
            q = parse_quantity(value)
        except QuantityError:
            continue
        out[name] = (q.value, q.format)
    return out


def _text(quantity: tuple[Decimal, str]) -> str:
    return canonical_quantity(*quantity)


def _ratio_text(limit: Decimal, request: Decimal) -> str:
    """The observed ratio with six decimals, as upstream prints it."""
    return str((abs(limit) / abs(request)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN))


# -- LimitRanger ---------------------------------------------------------------------------------


def container_defaults(limit_range: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(requests, limits) the Container items of ``limit_range`` give containers that lack
    them."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for item in (limit_range.get("spec") or {}).get("limits") or ():
        if item.get("type") == "Container":
            requests.update(item.get("defaultRequest") or {})
            limits.update(item.get("default") or {})
    return requests, limits


def _canonical(raw: Any) -> Any:
    try:
        return str(parse_quantity(raw))
    except QuantityError:
        return raw


def _default_container(container: Object, requests: Mapping[str, Any],
                       limits: Mapping[str, Any], kind: str) -> list[str]:
    resources = container.get("resources") or {}
    own_requests = dict(resources.get("requests") or {})
    own_limits = dict(resources.get("limits") or {})
    set_limits = sorted(name for name in limits if name not in own_limits)
    set_requests = sorted(name for name in requests if name not in own_requests)
    for name in set_limits:
        own_limits[name] = _canonical(limits[name])
    for name in set_requests:
        own_requests[name] = _canonical(requests[name])
    notes = []
    if set_requests:
        resources["requests"] = own_requests
        notes.append(f"{', '.join(set_requests)} request for {kind} {container.get('name', '')}")
    if set_limits:
        resources["limits"] = own_limits
        notes.append(f"{', '.join(set_limits)} limit for {kind} {container.get('name', '')}")
    if notes:
        container["resources"] = resources
    return notes


def apply_limit_defaults(pod: Object, limit_range: Mapping[str, Any]) -> None:
    """``PodMutateLimitFunc``: default every container's requests and limits from one
    LimitRange, and say so in the ``kubernetes.io/limit-ranger`` annotation."""
    requests, limits = container_defaults(limit_range)
    if not requests and not limits:
        return
    spec = pod.get("spec") or {}
    notes: list[str] = []
    for key, kind in (("containers", "container"), ("initContainers", "init container")):
        for container in spec.get(key) or ():
            notes += _default_container(container, requests, limits, kind)
    if notes:
        annotations = pod.setdefault("metadata", {}).get("annotations") or {}
        annotations[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
        pod["metadata"]["annotations"] = annotations


def _min_error(kind: str, name: str, enforced: tuple[Decimal, str], requests: ResourceList,
               limits: ResourceList) -> str | None:
    request, limit = requests.get(name), limits.get(name)
    head = f"minimum {name} usage per {kind} is {_text(enforced)}"
    if request is None:
        return f"{head}.  No request is specified"
    if enforced[0] > request[0]:
        return f"{head}, but request is {_text(request)}"
    if limit is not None and enforced[0] > limit[0]:
        return f"{head}, but limit is {_text(limit)}"
    return None


def _max_error(kind: str, name: str, enforced: tuple[Decimal, str], requests: ResourceList,
               limits: ResourceList) -> str | None:
    request, limit = requests.get(name), limits.get(name)
    head = f"maximum {name} usage per {kind} is {_text(enforced)}"
    if limit is None:
        return f"{head}.  No limit is specified"
    if limit[0] > enforced[0]:
        return f"{head}, but limit is {_text(limit)}"
    if request is not None and request[0] > enforced[0]:
        return f"{head}, but request is {_text(request)}"
    return None


def _max_request_error(kind: str, name: str, enforced: tuple[Decimal, str],
                       requests: ResourceList) -> str | None:
    request = requests.get(name)
    head = f"maximum {name} usage per {kind} is {_text(enforced)}"
    if request is None:
        return f"{head}.  No request is specified"
    if request[0] > enforced[0]:
        return f"{head}, but request is {_text(request)}"
    return None


def _ratio_error(kind: str, name: str, enforced: tuple[Decimal, str], requests: ResourceList,
                 limits: ResourceList) -> str | None:
    request, limit = requests.get(name), limits.get(name)
    prefix = f"{name} max limit to request ratio per {kind} is {_text(enforced)}"
    if request is None or request[0] == 0:
        return f"{prefix}, but no request is specified or request is 0"
    if limit is None or limit[0] == 0:
        return f"{prefix}, but no limit is specified or limit is 0"
    if abs(limit[0]) > abs(request[0]) * enforced[0]:
        return f"{prefix}, but provided ratio is {_ratio_text(limit[0], request[0])}"
    return None


def _item_errors(item: Mapping[str, Any], requests: ResourceList,
                 limits: ResourceList) -> list[str]:
    """Min, max and ratio of one LimitRange item against one set of requests and limits."""
    kind = item.get("type", "")
    errors = []
    checks: tuple[tuple[str, Callable[..., str | None]], ...] = (
        ("min", _min_error), ("max", _max_error), ("maxLimitRequestRatio", _ratio_error))
    for field, check in checks:
        for name, enforced in sorted(_resource_list(item.get(field)).items()):
            error = check(kind, name, enforced, requests, limits)
            if error:
                errors.append(error)
    return errors


def pod_limit_errors(limit_range: Mapping[str, Any], pod: Mapping[str, Any]) -> list[str]:
    """``PodValidateLimitFunc`` on create: Container items against each container and init
    container, Pod items against the pod's effective requests and limits."""
    spec = pod.get("spec") or {}
    errors: list[str] = []
    for item in (limit_range.get("spec") or {}).get("limits") or ():
        if item.get("type") == "Container":
            for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
                resources = container.get("resources") or {}
                errors += _item_errors(item, _resource_list(resources.get("requests")),
                                       _resource_list(resources.get("limits")))
        elif item.get("type") == "Pod":
            without_overhead = {**pod, "spec": {**spec, "overhead": None}}
            errors += _item_errors(item, pod_resources(without_overhead, "requests"),
                                   pod_resources(without_overhead, "limits"))
    return errors


def claim_limit_errors(limit_range: Mapping[str, Any], claim: Mapping[str, Any],
                       old: Mapping[str, Any] | None = None) -> list[str]:
    """``PersistentVolumeClaimValidateLimitFunc``: min and max of the requested storage; on
    update a request the stored claim already holds is not checked again."""
    requests = _resource_list(((claim.get("spec") or {}).get("resources") or {}).get("requests"))
    old_requests = _resource_list((((old or {}).get("spec") or {}).get("resources") or {})
                                  .get("requests"))
    errors = []
    for item in (limit_range.get("spec") or {}).get("limits") or ():
        if item.get("type") != "PersistentVolumeClaim":
            continue
        kind = item["type"]
        for field in ("min", "max"):
            for name, enforced in sorted(_resource_list(item.get(field)).items()):
                if name in requests and name in old_requests and \
                        requests[name][0] == old_requests[name][0]:
                    continue
                if field == "min":
                    error = _min_error(kind, name, enforced, requests, {})
                else:
                    error = _max_request_error(kind, name, enforced, requests)
                if error:
                    errors.append(error)
    return errors


def aggregate(messages: Iterable[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()``: one message as is, several deduplicated in
    brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _limit_ranges(api: APIServer, namespace: str) -> list[Object]:
    resource = api.registry.get("", "v1", "limitranges")
    assert resource is not None
    return [entry.obj for entry in api.storage.cache(resource).list(resource.prefix(namespace))]


def admit_limit_ranges(api: APIServer, resource: Resource, obj: Object) -> None:
    """Mutating LimitRanger: defaults for the containers of a new pod."""
    if not _is_core(resource, "pods"):
        return
    for limit_range in _limit_ranges(api, (obj.get("metadata") or {}).get("namespace") or ""):
        apply_limit_defaults(obj, limit_range)


def validate_limit_ranges(api: APIServer, resource: Resource, obj: Object,
                          old: Object | None) -> None:
    """Validating LimitRanger: pods on create, claims on create and update."""
    if _is_core(resource, "pods") and old is None:
        def check(lr: Object) -> list[str]:
            return pod_limit_errors(lr, obj)
    elif _is_core(resource, "persistentvolumeclaims"):
        def check(lr: Object) -> list[str]:
            return claim_limit_errors(lr, obj, old)
    else:
        return
    if old is not None and (old.get("metadata") or {}).get("deletionTimestamp"):
        return
    for limit_range in _limit_ranges(api, (obj.get("metadata") or {}).get("namespace") or ""):
        errors = check(limit_range)
        if errors:
            raise forbidden(resource, _object_name(obj), aggregate(errors))


# -- ResourceQuota: evaluators -------------------------------------------------------------------

# Upstream's podResources: the quota names a pod is measured in, besides the prefixed ones.
_POD_RESOURCES = frozenset({
    "count/pods", "pods", "cpu", "memory", "ephemeral-storage", "requests.cpu",
    "requests.memory", "requests.ephemeral-storage", "limits.cpu", "limits.memory",
    "limits.ephemeral-storage"})
_POD_RESOURCE_PREFIXES = ("hugepages-", "requests.hugepages-")
# A quota on one of these makes every container state it (a historical upstream rule).
_REQUIRED_PER_CONTAINER = frozenset({
    "cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})
_SERVICE_RESOURCES = frozenset({
    "count/services", "services", "services.loadbalancers", "services.nodeports"})
_CLAIM_RESOURCES = ("persistentvolumeclaims", "requests.storage")
_LEGACY_COUNTED = frozenset({"configmaps", "secrets", "replicationcontrollers", "resourcequotas"})
# Upstream quota admission ignores these resources.
_IGNORED = frozenset({("", "events")})


@dataclass(frozen=True)
class Evaluator:
    """What quota admission knows about one resource (upstream's ``quota.Evaluator``)."""

    matching: Callable[[Iterable[str]], list[str]]
    usage: Callable[[Mapping[str, Any]], Usage]
    scoped: bool = False  # only pods match quotas with scopes
    constraints: Callable[[list[str], Mapping[str, Any]], str | None] | None = None


def _is_extended_quota_name(name: str) -> bool:
    native = "/" not in name or "kubernetes.io/" in name
    return not native and name.startswith("requests.")


def _pod_matching(names: Iterable[str]) -> list[str]:
    return [n for n in names if n in _POD_RESOURCES or n.startswith(_POD_RESOURCE_PREFIXES)
            or _is_extended_quota_name(n)]


def _container_quota_names(container: Mapping[str, Any]) -> set[str]:
    resources = container.get("resources") or {}
    names = set()
    for name in ("cpu", "memory"):
        if name in (resources.get("requests") or {}):
            names |= {name, f"requests.{name}"}
        if name in (resources.get("limits") or {}):
            names.add(f"limits.{name}")
    return names


def pod_constraints(restricted: list[str], pod: Mapping[str, Any]) -> str | None:
    """Every container must request (or limit) the cpu and memory a quota restricts."""
    required = _REQUIRED_PER_CONTAINER.intersection(restricted)
    if not required:
        return None
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        for name in required - _container_quota_names(container):
            missing.setdefault(name, set()).add(container.get("name", ""))
    if not missing:
        return None
    return "must specify " + "; ".join(
        f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing))


def _service_matching(names: Iterable[str]) -> list[str]:
    return [n for n in names if n in _SERVICE_RESOURCES]


def _claim_matching(names: Iterable[str]) -> list[str]:
    return [n for n in names
            if n in _CLAIM_RESOURCES or n == "count/persistentvolumeclaims"
            or any(n.endswith(STORAGE_CLASS_SUFFIX + r) for r in _CLAIM_RESOURCES)]


def _object_count(count_name: str, legacy: str | None) -> Evaluator:
    names = {count_name} if legacy is None else {count_name, legacy}

    def usage(_obj: Mapping[str, Any]) -> Usage:
        if legacy is not None:
            return count_usage(legacy)(_obj)
        counted = Usage()
        counted.add(count_name, Decimal(1))
        return counted

    return Evaluator(matching=lambda hard: [n for n in hard if n in names], usage=usage)


_EVALUATORS: dict[tuple[str, str], Evaluator] = {
    ("", "pods"): Evaluator(_pod_matching, pod_usage, scoped=True, constraints=pod_constraints),
    ("", "services"): Evaluator(_service_matching, service_usage),
    ("", "persistentvolumeclaims"): Evaluator(_claim_matching, claim_usage),
    **{("", name): _object_count(f"{COUNT_PREFIX}{name}", name) for name in _LEGACY_COUNTED},
}


def evaluator_for(group: str, resource: str) -> Evaluator | None:
    """The evaluator of a resource: a registered one, else a ``count/<resource>.<group>``
    object count (None for ignored resources)."""
    key = (group, resource)
    if key in _IGNORED:
        return None
    evaluator = _EVALUATORS.get(key)
    if evaluator is None:
        count_name = f"{COUNT_PREFIX}{resource}.{group}" if group else f"{COUNT_PREFIX}{resource}"
        evaluator = _EVALUATORS[key] = _object_count(count_name, None)
    return evaluator


# -- ResourceQuota: the check --------------------------------------------------------------------


def _status(quota: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    status = quota.get("status") or {}
    return dict(status.get("hard") or {}), dict(status.get("used") or {})


def covering_quotas(quotas: Iterable[Mapping[str, Any]], obj: Mapping[str, Any],
                    evaluator: Evaluator) -> list[Mapping[str, Any]]:
    """The quotas that restrict ``obj`` (through ``status.hard`` and scopes), after checking
    the evaluator's constraints and that each has usage for what it restricts."""
    covering = []
    for quota in quotas:
        hard, used = _status(quota)
        restricted = evaluator.matching(hard)
        if not restricted:
            continue
        scopes = quota_scopes(quota)
        if scopes and not (evaluator.scoped and pod_matches_scopes(obj, scopes)):
            continue
        name = (quota.get("metadata") or {}).get("name", "")
        if evaluator.constraints is not None:
            problem = evaluator.constraints(restricted, obj)
            if problem:
                raise Refused(f"failed quota: {name}: {problem}")
        if any(r in hard and r not in used for r in restricted):
            raise Refused(f"status unknown for quota: {name}, resources: "
                          f"{','.join(sorted(restricted))}")
        covering.append(quota)
    return covering


def usage_delta(obj: Mapping[str, Any], evaluator: Evaluator) -> Usage:
    """What ``obj`` adds to a quota, without zeros; refused when negative."""
    usage = evaluator.usage(obj)
    negative = sorted(name for name, value in usage.values.items() if value < 0)
    if negative:
        raise Refused(f"quota usage is negative for resource(s): {','.join(negative)}")
    delta = Usage()
    for name, value in usage.values.items():
        if value != 0:
            delta.add(name, value, usage.formats[name])
    return delta


def _pretty(values: Mapping[str, tuple[Decimal, str]], names: Iterable[str]) -> str:
    return ",".join(f"{name}={_text(values[name])}" for name in sorted(names) if name in values)


def charge(quota: Mapping[str, Any], delta: Usage) -> dict[str, str] | None:
    """``status.used`` of ``quota`` with ``delta`` added, None when ``delta`` touches nothing
    the quota limits; refused when some resource would pass its hard limit."""
    hard_raw, used_raw = _status(quota)
    requested = {name: (value, delta.formats[name]) for name, value in delta.values.items()
                 if name in hard_raw}
    if not requested:
        return None
    hard = _resource_list(hard_raw)
    used = _resource_list(used_raw)
    exceeded = [name for name, (value, _) in requested.items()
                if name in hard and used.get(name, (Decimal(0), ""))[0] + value > hard[name][0]]
    if exceeded:
        name = (quota.get("metadata") or {}).get("name", "")
        raise Refused(f"exceeded quota: {name}, requested: {_pretty(requested, exceeded)}, "
                      f"used: {_pretty(used, exceeded)}, limited: {_pretty(hard, exceeded)}")
    total = Usage()
    for name, (value, fmt) in used.items():
        total.add(name, value, fmt)
    for name, (value, fmt) in requested.items():
        total.add(name, value, fmt)
    return {name: total.formatted(name) for name in total.values}


def check_request(quotas: Iterable[Mapping[str, Any]], obj: Mapping[str, Any],
                  evaluator: Evaluator) -> tuple[list[Mapping[str, Any]], Usage]:
    """The quotas ``obj`` would be charged to and what it adds; Refused when it does not fit."""
    covering = covering_quotas(quotas, obj, evaluator)
    if not covering:
        return [], Usage()
    delta = usage_delta(obj, evaluator)
    if not delta.values:
        return [], delta
    charged = [quota for quota in covering if charge(quota, delta) is not None]
    return charged, delta


async def validate_quota(api: APIServer, resource: Resource, obj: Object, ctx: Context) -> None:
    """ResourceQuota admission of a create: check, then charge every covering quota."""
    if not resource.namespaced:
        return
    evaluator = evaluator_for(resource.group, resource.resource)
    if evaluator is None:
        return
    quota_resource = api.registry.get("", "v1", "resourcequotas")
    assert quota_resource is not None
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    entries = api.storage.cache(quota_resource).list(quota_resource.prefix(namespace))
    if not entries:
        return
    name = _object_name(obj)
    try:
        charged, delta = check_request([entry.obj for entry in entries], obj, evaluator)
    except Refused as e:
        raise forbidden(resource, name, str(e)) from None
    if ctx.dry_run:
        return
    for quota in charged:
        await _charge_stored(api, quota_resource, quota["metadata"]["name"], namespace, obj,
                             evaluator, delta, resource, name)


async def _charge_stored(api: APIServer, quota_resource: Resource, quota_name: str,
                         namespace: str, obj: Object, evaluator: Evaluator, delta: Usage,
                         resource: Resource, name: str) -> None:
    """Charge one quota with compare-and-swap, checking again against what is stored."""
    def mutate(current: Any) -> Object | None:
        if current is None:
            return None  # deleted meanwhile: nothing to charge
        quota = current.obj
        try:
            if not covering_quotas([quota], obj, evaluator):
                return None
            used = charge(quota, delta)
        except Refused as e:
            raise forbidden(resource, name, str(e)) from None
        if used is None:
            return None
        quota.setdefault("status", {})["used"] = used
        return quota

    await api.storage.guaranteed_update(quota_resource, namespace, quota_name,
                                        Context(user=api.system_user), mutate)


# -- entry points for Admission ------------------------------------------------------------------


def admit(api: APIServer, resource: Resource, obj: Object, operation: str) -> None:
    """Mutating admission of a create."""
    if operation == "CREATE":
        admit_limit_ranges(api, resource, obj)


def admit_update(api: APIServer, resource: Resource, obj: Object, old: Object) -> None:
    """Admission of an update (synchronous, inside the update's compare-and-swap loop)."""
    validate_limit_ranges(api, resource, obj, old)


async def validate(api: APIServer, resource: Resource, obj: Object, old: Object | None,
                   ctx: Context, operation: str) -> None:
    """Validating admission of a create: LimitRanger, then ResourceQuota last."""
    if operation != "CREATE":
        return
    validate_limit_ranges(api, resource, obj, None)
    await validate_quota(api, resource, obj, ctx)
