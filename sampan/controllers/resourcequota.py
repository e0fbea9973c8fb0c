"""The resource quota controller: ``status.hard`` and ``status.used`` of every ResourceQuota, as
upstream's ``pkg/controller/resourcequota`` with the evaluators of ``pkg/quota/v1/evaluator/core``.

Usage is recomputed from informer caches: object counts (``pods``, ``services``, ``configmaps``,
``count/<resource>.<group>`` ...), compute resources of the pods that are not finished
(``requests.cpu``, ``limits.memory``, ``requests.nvidia.com/gpu`` ...), storage of claims, and
the service sub-counts (``services.nodeports``, ``services.loadbalancers``). Scopes and scope
selectors restrict a quota to the pods they match. A change to a tracked object recomputes the
quotas of its namespace; every quota is recomputed every five minutes as well.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from sampan.api.validation import QuantityError, canonical_quantity, parse_quantity
from sampan.client.controller import Controller, Requeue, wait_for_cache_sync
from sampan.client.errors import ApiError
from sampan.client.events import EventRecorder
from sampan.client.informer import NAMESPACE_INDEX, InformerFactory, SharedInformer, split_key
from sampan.client.rest import Client
from sampan.controllers.util import meta, parse_time, pod_phase

log = logging.getLogger(__name__)

Object = dict[str, Any]

RESYNC_PERIOD = 300.0
REQUESTS_PREFIX = "requests."
LIMITS_PREFIX = "limits."
COUNT_PREFIX = "count/"
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
_COMPUTE = ("cpu", "memory", "ephemeral-storage")
_QOS_RESOURCES = ("cpu", "memory")
_NATIVE_PREFIXES = ("kubernetes.io/", "requests.", "limits.")
_BEST_EFFORT_RESOURCES = frozenset({"pods", "count/pods"})

# The informer-backed object counts: quota name → (apiVersion, resource, metadata only).
_COUNTED = {
    "pods": ("v1", "pods", False),
    "services": ("v1", "services", False),
    "configmaps": ("v1", "configmaps", True),
    "secrets": ("v1", "secrets", True),
    "persistentvolumeclaims": ("v1", "persistentvolumeclaims", False),
    "replicationcontrollers": ("v1", "replicationcontrollers", True),
    "resourcequotas": ("v1", "resourcequotas", False),
}


# -- quantities ----------------------------------------------------------------------------------


class Usage:
    """A ResourceList being summed: Decimal values, each keeping the format of its first
    addend, as ``quota.Add`` keeps the receiver's."""

    def __init__(self) -> None:
        self.values: dict[str, Decimal] = {}
        self.formats: dict[str, str] = {}

    def add(self, name: str, value: Decimal, fmt: str = "DecimalSI") -> None:
        if name in self.values:
            self.values[name] += value
        else:
            self.values[name] = value
            self.formats[name] = fmt

    def add_quantity(self, name: str, raw: Any) -> None:
        try:
            q = parse_quantity(raw)
        except QuantityError:
            return
        self.add(name, q.value, q.format)

    def merge(self, other: Usage) -> None:
        for name, value in other.values.items():
            self.add(name, value, other.formats[name])

    def formatted(self, name: str) -> str:
        return canonical_quantity(self.values.get(name, Decimal(0)),
                                  self.formats.get(name, "DecimalSI"))


def _quantities(resources: Mapping[str, Any] | None) -> dict[str, tuple[Decimal, str]]:
    out = {}
    for name, raw in (resources or {}).items():
        try:
            q = parse_quantity(raw)
        except QuantityError:
            continue
        out[name] = (q.value, q.format)
    return out


ResourceList = dict[str, tuple[Decimal, str]]


def _add_lists(total: ResourceList, more: Mapping[str, tuple[Decimal, str]]) -> None:
    for name, (value, fmt) in more.items():
        if name in total:
            total[name] = (total[name][0] + value, total[name][1])
        else:
            total[name] = (value, fmt)


def _max_lists(total: ResourceList, other: Mapping[str, tuple[Decimal, str]]) -> None:
    for name, (value, fmt) in other.items():
        if name not in total or value > total[name][0]:
            total[name] = (value, fmt)


# -- pods ----------------------------------------------------------------------------------------


def pod_resources(pod: Mapping[str, Any], field: str) -> dict[str, tuple[Decimal, str]]:
    """A pod's effective requests or limits (``PodRequests`` / ``PodLimits``): the sum of its
    containers, at least what any init container needs alongside the sidecars started before it,
    plus overhead; pod-level resources win where set."""
    spec = pod.get("spec") or {}
    total: dict[str, tuple[Decimal, str]] = {}
    for container in spec.get("containers") or ():
        _add_lists(total, _quantities((container.get("resources") or {}).get(field)))
    sidecars: dict[str, tuple[Decimal, str]] = {}
    init_peak: dict[str, tuple[Decimal, str]] = {}
    for container in spec.get("initContainers") or ():
        own = _quantities((container.get("resources") or {}).get(field))
        if container.get("restartPolicy") == "Always":
            _add_lists(total, own)
            _add_lists(sidecars, own)
            _max_lists(init_peak, sidecars)
        else:
            needed = dict(own)
            _add_lists(needed, sidecars)
            _max_lists(init_peak, needed)
    _max_lists(total, init_peak)
    pod_level = _quantities((spec.get("resources") or {}).get(field))
    for name in _QOS_RESOURCES:
        if name in pod_level:
            total[name] = pod_level[name]
    overhead = _quantities(spec.get("overhead"))
    if field == "limits":  # overhead only raises limits that are set
        overhead = {name: q for name, q in overhead.items() if name in total}
    _add_lists(total, overhead)
    return total


def pod_counts_for_quota(pod: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether a pod uses compute quota (``QuotaV1Pod``): not finished, and not past the end of
    its deletion grace period."""
    if pod_phase(pod) in ("Succeeded", "Failed"):
        return False
    pod_meta = meta(pod)
    deleted_at = parse_time(pod_meta.get("deletionTimestamp"))
    grace = pod_meta.get("deletionGracePeriodSeconds")
    return deleted_at is None or grace is None or \
        (time.time() if now is None else now) <= deleted_at + grace


def is_extended_resource(name: str) -> bool:
    return "/" in name and not name.startswith(_NATIVE_PREFIXES)


def pod_usage(pod: Mapping[str, Any], now: float | None = None) -> Usage:
    """What one pod uses (``PodUsageFunc``)."""
    usage = Usage()
    usage.add("count/pods", Decimal(1))
    if not pod_counts_for_quota(pod, now):
        return usage
    requests = pod_resources(pod, "requests")
    limits = pod_resources(pod, "limits")
    usage.add("pods", Decimal(1))
    for name in _COMPUTE:
        if name in requests:
            usage.add(name, *requests[name])
            usage.add(REQUESTS_PREFIX + name, *requests[name])
        if name in limits:
            usage.add(LIMITS_PREFIX + name, *limits[name])
    for name, (value, fmt) in requests.items():
        if name.startswith("hugepages-"):
            usage.add(name, value, fmt)
            usage.add(REQUESTS_PREFIX + name, value, fmt)
        elif is_extended_resource(name):
            usage.add(REQUESTS_PREFIX + name, value, fmt)
    for name, (value, fmt) in limits.items():
        if name.startswith("hugepages-"):
            usage.add(LIMITS_PREFIX + name, value, fmt)
    return usage


def is_best_effort(pod: Mapping[str, Any]) -> bool:
    """QoS class BestEffort: no container sets a cpu or memory request or limit."""
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        resources = container.get("resources") or {}
        for field in ("requests", "limits"):
            if any(name in _QOS_RESOURCES for name in resources.get(field) or {}):
                return False
    pod_resources_ = spec.get("resources") or {}
    return not any(name in _QOS_RESOURCES for field in ("requests", "limits")
                   for name in pod_resources_.get(field) or {})


def is_terminating(pod: Mapping[str, Any]) -> bool:
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    return deadline is not None and deadline >= 0


def uses_cross_namespace_affinity(pod: Mapping[str, Any]) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = affinity.get(kind) or {}
        terms = list(rules.get("requiredDuringSchedulingIgnoredDuringExecution") or ())
        terms += [t.get("podAffinityTerm") or {}
                  for t in rules.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def _scope_matches(scope: str, operator: str, values: list[str], pod: Mapping[str, Any]) -> bool:
    if scope == "PriorityClass":
        name = (pod.get("spec") or {}).get("priorityClassName") or ""
        if operator == "Exists":
            return bool(name)
        if operator == "DoesNotExist":
            return not name
        if operator == "In":
            return name in values
        if operator == "NotIn":
            return name not in values
        return False
    matched = {
        "Terminating": is_terminating,
        "NotTerminating": lambda p: not is_terminating(p),
        "BestEffort": is_best_effort,
        "NotBestEffort": lambda p: not is_best_effort(p),
        "CrossNamespacePodAffinity": uses_cross_namespace_affinity,
    }.get(scope)
    if matched is None:
        return False
    result = matched(pod)
    return result if operator in ("Exists", "In", "") else not result


def quota_scopes(quota: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(scopeName, operator, values) of ``spec.scopes`` and ``spec.scopeSelector``."""
    spec = quota.get("spec") or {}
    scopes = [(s, "Exists", []) for s in spec.get("scopes") or ()]
    for expression in (spec.get("scopeSelector") or {}).get("matchExpressions") or ():
        scopes.append((expression.get("scopeName", ""), expression.get("operator", ""),
                       list(expression.get("values") or ())))
    return scopes


def pod_matches_scopes(pod: Mapping[str, Any],
                       scopes: Iterable[tuple[str, str, list[str]]]) -> bool:
    return all(_scope_matches(scope, op, values, pod) for scope, op, values in scopes)


# -- other objects -------------------------------------------------------------------------------


def service_usage(service: Mapping[str, Any]) -> Usage:
    usage = Usage()
    usage.add("count/services", Decimal(1))
    usage.add("services", Decimal(1))
    usage.add("services.loadbalancers", Decimal(0))
    usage.add("services.nodeports", Decimal(0))
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    if spec.get("type") == "NodePort":
        usage.add("services.nodeports", Decimal(len(ports)))
    elif spec.get("type") == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts", True) is False:
            node_ports = sum(1 for p in ports if p.get("nodePort"))
        else:
            node_ports = len(ports)
        usage.add("services.nodeports", Decimal(node_ports))
        usage.add("services.loadbalancers", Decimal(1))
    return usage


def claim_usage(claim: Mapping[str, Any]) -> Usage:
    usage = Usage()
    usage.add("count/persistentvolumeclaims", Decimal(1))
    usage.add("persistentvolumeclaims", Decimal(1))
    spec = claim.get("spec") or {}
    storage_class = spec.get("storageClassName") or (meta(claim).get("annotations") or {}).get(
        "volume.beta.kubernetes.io/storage-class") or ""
    if storage_class:
        usage.add(f"{storage_class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims", Decimal(1))
    requested = _quantities((spec.get("resources") or {}).get("requests")).get("storage")
    allocated = _quantities((claim.get("status") or {}).get("allocatedResources")).get("storage")
    if allocated is not None and (requested is None or allocated[0] > requested[0]):
        requested = allocated
    if requested is not None:
        usage.add("requests.storage", *requested)
        if storage_class:
            usage.add(f"{storage_class}{STORAGE_CLASS_SUFFIX}requests.storage", *requested)
    return usage


def count_usage(name: str) -> Callable[[Mapping[str, Any]], Usage]:
    def usage_of(_obj: Mapping[str, Any]) -> Usage:
        usage = Usage()
        usage.add(name, Decimal(1))
        usage.add(f"{COUNT_PREFIX}{name}", Decimal(1))
        return usage
    return usage_of


_USAGE_FUNCS: dict[str, Callable[[Mapping[str, Any]], Usage]] = {
    "services": service_usage,
    "persistentvolumeclaims": claim_usage,
    "configmaps": count_usage("configmaps"),
    "secrets": count_usage("secrets"),
    "replicationcontrollers": count_usage("replicationcontrollers"),
    "resourcequotas": count_usage("resourcequotas"),
}


def resource_kind_of(name: str) -> str | None:
    """Which tracked resource a quota resource name measures (``pods`` for ``limits.cpu``)."""
    if name.startswith(COUNT_PREFIX):
        target = name[len(COUNT_PREFIX):]
        return target if target in _COUNTED else None
    if name in _COUNTED:
        return name
    if name in ("services.nodeports", "services.loadbalancers"):
        return "services"
    if STORAGE_CLASS_SUFFIX in name or name == "requests.storage":
        return "persistentvolumeclaims"
    if name in _COMPUTE or name.startswith((REQUESTS_PREFIX, LIMITS_PREFIX, "hugepages-")):
        return "pods"
    return None


def compute_usage(quota: Mapping[str, Any], objects: Mapping[str, Iterable[Mapping[str, Any]]],
                  now: float | None = None) -> Usage:
    """The usage of ``quota``'s namespace from ``objects`` (tracked resource → its objects in the
    namespace), restricted to the quota's scopes. Only the resources the quota names matter."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    scopes = quota_scopes(quota)
    best_effort_only = any(s == "BestEffort" and op in ("Exists", "In") for s, op, _ in scopes)
    needed = {resource_kind_of(name) for name in hard}
    total = Usage()
    for kind in needed:
        if kind is None:
            continue
        if kind == "pods":
            for pod in objects.get("pods", ()):
                if scopes and not pod_matches_scopes(pod, scopes):
                    continue
                usage = pod_usage(pod, now)
                if best_effort_only:
                    usage.values = {k: v for k, v in usage.values.items()
                                    if k in _BEST_EFFORT_RESOURCES}
                total.merge(usage)
        elif not scopes:
            for obj in objects.get(kind, ()):
                total.merge(_USAGE_FUNCS[kind](obj))
    return total


def used_for(quota: Mapping[str, Any], usage: Usage) -> dict[str, str]:
    """``status.used``: every hard resource this controller can measure, zero when unused; the
    previous observation for those it cannot."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    previous = (quota.get("status") or {}).get("used") or {}
    scoped = bool(quota_scopes(quota))
    used = {}
    for name in hard:
        kind = resource_kind_of(name)
        if name in usage.values or (kind is not None and (kind == "pods" or not scoped)):
            used[name] = usage.formatted(name)
        elif name in previous:
            used[name] = previous[name]
    return used


# -- the controller ------------------------------------------------------------------------------


class ResourceQuotaController(Controller):
    """Keeps ``status`` of every ResourceQuota current."""

    name = "resourcequota-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 5,
                 recorder: EventRecorder | None = None, resync_period: float = RESYNC_PERIOD):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self._owns_recorder = recorder is None
        self.resync_period = resync_period
        self.quotas = informers.informer("v1", "resourcequotas")
        self.tracked: dict[str, SharedInformer] = {}
        for name, (api_version, resource, metadata_only) in _COUNTED.items():
            informer = self.quotas if name == "resourcequotas" else informers.informer(
                api_version, resource, metadata_only=metadata_only)
            self.tracked[name] = informer
            if name != "resourcequotas":
                informer.add_event_handler(on_add=self._object_changed,
                                           on_update=self._object_updated,
                                           on_delete=self._object_changed)
        self.quotas.add_event_handler(on_add=self._quota_changed, on_update=self._quota_updated,
                                      on_delete=self._object_changed)

    def watched_informers(self) -> list[SharedInformer]:
        return list(dict.fromkeys([self.quotas, *self.tracked.values()]))

    async def run(self) -> None:
        await wait_for_cache_sync(self.name, self.watched_informers())
        resync = asyncio.create_task(self._resync_forever(), name=f"{self.name} resync")
        try:
            await super().run()
        finally:
            resync.cancel()
            await asyncio.gather(resync, return_exceptions=True)
            if self._owns_recorder:
                await self.recorder.close()

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for quota in self.quotas.indexer.list():
                self.enqueue(quota)

    # -- handlers ----------------------------------------------------------------------------
    def _enqueue_namespace(self, namespace: str) -> None:
        for key in self.quotas.indexer.index_keys(NAMESPACE_INDEX, namespace):
            self.queue.add(key)

    def _object_changed(self, obj: Object) -> None:
        self._enqueue_namespace(meta(obj).get("namespace") or "")

    def _object_updated(self, old: Object, new: Object) -> None:
        if _usage_may_differ(old, new):
            self._enqueue_namespace(meta(new).get("namespace") or "")

    def _quota_changed(self, quota: Object) -> None:
        self.enqueue(quota)
        self._enqueue_namespace(meta(quota).get("namespace") or "")  # resourcequotas counts

    def _quota_updated(self, old: Object, new: Object) -> None:
        if old.get("spec") != new.get("spec") or not (new.get("status") or {}).get("hard"):
            self.enqueue(new)

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        quota = self.quotas.indexer.get(key)
        if quota is None:
            return
        namespace, _ = split_key(key)
        objects = {kind: informer.indexer.by_index(NAMESPACE_INDEX, namespace)
                   for kind, informer in self.tracked.items()}
        usage = compute_usage(quota, objects)
        await self._count_generic(quota, namespace, usage)
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        used = used_for(quota, usage)
        status = quota.get("status") or {}
        if status.get("hard") == hard and status.get("used") == used:
            return
        body = {**quota, "status": {**status, "hard": hard, "used": used}}
        try:
            await self.client.update("v1", "resourcequotas", body, namespace=namespace,
                                     subresource="status")
        except ApiError as e:
            if e.not_found:
                return
            if e.conflict:  # our cache trails our own last write: look again once it caught up
                raise Requeue(f"resource quota {key} changed: {e.message}") from e
            raise

    async def _count_generic(self, quota: Object, namespace: str, usage: Usage) -> None:
        """``count/<resource>.<group>`` of resources without an informer here: listed."""
        if quota_scopes(quota):
            return
        wanted = [name for name in (quota.get("spec") or {}).get("hard") or {}
                  if name.startswith(COUNT_PREFIX) and resource_kind_of(name) is None]
        if not wanted:
            return
        discovery = self.client.discovery
        await discovery.ensure_loaded()
        resources = {r.group_resource: r for r in discovery.preferred_resources() if r.namespaced}
        for name in wanted:
            resource = resources.get(name[len(COUNT_PREFIX):])
            if resource is None or not resource.supports("list"):
                continue
            try:
                listed = await self.client.list(resource.api_version, resource.name,
                                                namespace=namespace, metadata_only=True)
            except ApiError as e:
                log.info("cannot count %s in %s: %s", name, namespace, e.message)
                continue
            usage.add(name, Decimal(len(listed.get("items") or [])))


def _usage_may_differ(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
        return False
    if old.get("spec") != new.get("spec"):
        return True
    old_meta, new_meta = meta(old), meta(new)
    if (old_meta.get("deletionTimestamp") != new_meta.get("deletionTimestamp")
            or old_meta.get("annotations") != new_meta.get("annotations")):
        return True
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return (old_status.get("phase") != new_status.get("phase")
            or old_status.get("allocatedResources") != new_status.get("allocatedResources"))

