"""Admission: the checks and mutations every write passes after decoding and before storage.

Built in, in upstream's order: NamespaceLifecycle (nothing is created in a missing or
terminating namespace), ServiceAccount (pods run as a service account), DefaultTolerationSeconds
(pods tolerate not-ready and unreachable nodes for 300 s before eviction), Priority (a pod's
priorityClassName becomes its integer priority), and the cluster IP allocator for Services.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from sampan.api import errors
from sampan.api.errors import StatusError
from sampan.api.registry import Resource
from sampan.apiserver import quota
from sampan.apiserver.rest import Context

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

DEFAULT_TOLERATION_SECONDS = 300
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
# Upstream's built-in PriorityClasses (pkg/apis/scheduling: SystemPriorityClasses).
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": 2000001000,
    "system-cluster-critical": 2000000000,
}

# Objects that are not namespaced but pass through namespace checks of their own.
_ACCESS_REVIEW_KINDS = ("LocalSubjectAccessReview",)


class Admission:
    def __init__(self, api: "APIServer", service_cidr: str = "10.43.0.0/16"):
        self.api = api
        self.service_net = ipaddress.ip_network(service_cidr)

    async def admit(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None,
                    ctx: Context, operation: str) -> None:
        """Mutating admission."""
        if operation == "CREATE" and resource.namespaced:
            await self._namespace_lifecycle(resource, obj["metadata"].get("namespace", ""))
        quota.admit(self.api, resource, obj, operation)
        if resource.kind == "Pod" and resource.group == "" and operation == "CREATE":
            self._service_account(obj)
            await self._mount_service_account_token(obj)
            self._default_toleration_seconds(obj)
            self._priority(obj)
        if resource.kind == "PersistentVolumeClaim" and resource.group == "" and \
                operation == "CREATE":
            await self._default_storage_class(obj)
        if resource.kind == "Service" and resource.group == "" and operation == "CREATE":
            self._allocate_cluster_ip(obj, None)
            self._allocate_node_ports(obj, None)

    def admit_update(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any]) -> None:
        """Mutating admission of an update (synchronous: it runs inside the CAS retry loop)."""
        quota.admit_update(self.api, resource, obj, old)
        if resource.kind == "Service" and resource.group == "":
            self._keep_allocations(obj, old)
            self._drop_type_dependent_fields(obj, old)
            self._allocate_cluster_ip(obj, old)
            self._allocate_node_ports(obj, old)

    async def validate(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None,
                       ctx: Context, operation: str) -> None:
        """Validating admission."""
        await quota.validate(self.api, resource, obj, old, ctx, operation)

    async def validate_delete(self, resource: Resource, obj: dict[str, Any], ctx: Context) -> None:
        pass

    async def _namespace_lifecycle(self, resource: Resource, namespace: str) -> None:
        ns_resource = self.api.registry.get("", "v1", "namespaces")
        assert ns_resource is not None
        key = ns_resource.key(None, namespace)
        entry = self.api.storage.cache(ns_resource).get(key)
        if entry is None:
            # The cache may trail a namespace created a moment ago: ask the store.
            entry = await self.api.storage.get_latest(ns_resource, "", namespace)
        if entry is None:
            raise errors.not_found_error("namespaces", namespace)
        ns = entry.obj
        if ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            raise StatusError(
                403, "Forbidden",
                f'{resource.resource} "{namespace}" is forbidden: unable to create new content in '
                f"namespace {namespace} because it is being terminated",
                details={"name": namespace, "kind": resource.resource, "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace"}]})

    @staticmethod
    def _service_account(pod: dict[str, Any]) -> None:
        spec = pod.setdefault("spec", {})
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = name
        spec["serviceAccount"] = name

    async def _default_storage_class(self, claim: dict[str, Any]) -> None:
        """A claim that names no class gets the default StorageClass (upstream's
        DefaultStorageClass plugin: the newest class annotated as the default)."""
        spec = claim.setdefault("spec", {})
        if spec.get("storageClassName") is not None:
            return
        resource = self.api.registry.get("storage.k8s.io", "v1", "storageclasses")
        if resource is None:
            return
        result = await self.api.storage.list(resource, "", accept=None)
        defaults = []
        for entry in result.entries:
            meta = entry.obj.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            if "true" in (annotations.get("storageclass.kubernetes.io/is-default-class"),
                          annotations.get("storageclass.beta.kubernetes.io/is-default-class")):
                defaults.append((meta.get("creationTimestamp", ""), meta.get("name", "")))
        if defaults:
            spec["storageClassName"] = max(defaults)[1]

    async def _mount_service_account_token(self, pod: dict[str, Any]) -> None:
        """The projected kube-api-access-* volume (token, CA, namespace) in every container,
        unless the pod or its service account opts out (upstream's ServiceAccount plugin).
        A service account that does not exist yet counts as one that automounts."""
        from sampan.apiserver.tokenvolume import mount_service_account_token

        resource = self.api.registry.get("", "v1", "serviceaccounts")
        account = None
        if resource is not None:
            try:
                entry = await self.api.storage.get(resource, pod["metadata"].get("namespace", ""),
                                                   pod["spec"]["serviceAccountName"])
                account = entry.obj
            except StatusError:
                account = None
        mount_service_account_token(pod, account)

    @staticmethod
    def _default_toleration_seconds(pod: dict[str, Any]) -> None:
        """Tolerate the NoExecute not-ready and unreachable taints for 300 s unless the pod
        already says how it tolerates them (upstream's DefaultTolerationSeconds plugin)."""
        spec = pod.setdefault("spec", {})
        tolerations = spec.get("tolerations") or []

        def tolerates(key: str) -> bool:
            for t in tolerations:
                if t.get("effect") not in (None, "", "NoExecute"):
                    continue
                if t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"):
                    return True
            return False

        added = [{"key": key, "operator": "Exists", "effect": "NoExecute",
                  "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}
                 for key in (NOT_READY_TAINT, UNREACHABLE_TAINT) if not tolerates(key)]
        if added:
            spec["tolerations"] = tolerations + added

    def _priority(self, pod: dict[str, Any]) -> None:
        """Resolve ``priorityClassName`` (or the global default class) into ``spec.priority``
        and ``spec.preemptionPolicy``, refusing a pod that sets a different priority itself."""
        spec = pod.setdefault("spec", {})
        name = spec.get("priorityClassName") or ""
        resource = self.api.registry.get("scheduling.k8s.io", "v1", "priorityclasses")
        assert resource is not None
        classes = self.api.storage.cache(resource)
        pc: dict[str, Any] | None = None
        if name:
            entry = classes.get(resource.key(None, name))
            if entry is None:
                raise errors.forbidden_error(
                    f'pods "{pod["metadata"].get("name", "")}" is forbidden: no PriorityClass '
                    f"with name {name} was found")
            pc = entry.obj
        else:
            defaults = [e.obj for e in classes.objects.values() if e.obj.get("globalDefault")]
            if defaults:  # several defaults: upstream takes the lowest value
                pc = min(defaults, key=lambda o: o.get("value", 0))
                spec["priorityClassName"] = pc["metadata"]["name"]
        value = int(pc.get("value", 0)) if pc is not None else 0
        given = spec.get("priority")
        if given is not None and given != value:
            raise errors.forbidden_error(
                f'pods "{pod["metadata"].get("name", "")}" is forbidden: the integer value of '
                f"priority ({given}) must not be provided in pod spec; priority admission "
                f"controller computed {value} from the given PriorityClass name")
        spec["priority"] = value
        policy = (pc or {}).get("preemptionPolicy") or "PreemptLowerPriority"
        given_policy = spec.get("preemptionPolicy")
        if given_policy and given_policy != policy:
            raise errors.forbidden_error(
                f'pods "{pod["metadata"].get("name", "")}" is forbidden: the string value of '
                f"PreemptionPolicy ({given_policy}) must not be provided in pod spec; priority "
                f"admission controller computed {policy} from the given PriorityClass name")
        spec["preemptionPolicy"] = policy

    @staticmethod
    def _keep_allocations(svc: dict[str, Any], old: dict[str, Any]) -> None:
        """An update that leaves out what the server allocated keeps it (upstream's
        patchAllocatedValues)."""
        spec, old_spec = svc.setdefault("spec", {}), old.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return
        for field in ("clusterIP", "clusterIPs"):
            if not spec.get(field) and old_spec.get(field):
                spec[field] = old_spec[field]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                         for p in old_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if not port.get("nodePort") and previous:
                    port["nodePort"] = previous
            if not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
                spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]

    @staticmethod
    def _drop_type_dependent_fields(svc: dict[str, Any], old: dict[str, Any]) -> None:
        """When a Service stops being externally reachable, the fields only such Services carry
        go too, unless the update itself set them (upstream's dropTypeDependentFields)."""
        spec, old_spec = svc.setdefault("spec", {}), old.get("spec") or {}
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            return
        for field in ("externalTrafficPolicy", "healthCheckNodePort"):
            if field in spec and spec.get(field) == old_spec.get(field):
                del spec[field]
        if spec.get("type") != "LoadBalancer":
            for field in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
                if field in spec and spec.get(field) == old_spec.get(field):
                    del spec[field]

    def _allocate_node_ports(self, svc: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = svc.setdefault("spec", {})
        kind = spec.get("type", "ClusterIP")
        if kind not in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
            return
        mine = self._own_node_ports(old)
        name = svc["metadata"].get("name", "")
        # A LoadBalancer may do without node ports (allocateLoadBalancerNodePorts: false): then
        # only the ones asked for are taken.
        allocate = kind == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True) is not False
        for i, port in enumerate(spec.get("ports") or []):
            if port.get("nodePort"):
                if port["nodePort"] not in mine:
                    self._claim_node_port(port["nodePort"], name, f"spec.ports[{i}].nodePort")
                continue
            if allocate:
                port["nodePort"] = self.api.node_ports.allocate()
        local = spec.get("externalTrafficPolicy") == "Local"
        if kind == "LoadBalancer" and local and not spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = self.api.node_ports.allocate()

    @staticmethod
    def _own_node_ports(old: dict[str, Any] | None) -> set[int]:
        if old is None:
            return set()
        spec = old.get("spec") or {}
        ports = {p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")}
        if spec.get("healthCheckNodePort"):
            ports.add(spec["healthCheckNodePort"])
        return ports

    def _claim_node_port(self, port: int, name: str, field: str) -> None:
        problem = self.api.node_ports.check(port)
        if problem:
            raise errors.invalid_error("Service", name, [errors.invalid(field, port, problem)])
        self.api.node_ports.reserve(port)

    def _allocate_cluster_ip(self, svc: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = svc.setdefault("spec", {})
        if old is not None and spec.get("clusterIP") and \
                spec.get("clusterIP") == (old.get("spec") or {}).get("clusterIP"):
            return  # already this Service's; validation rejects changing it
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            return
        if spec.get("clusterIP"):
            problem = self.api.allocator.check(spec["clusterIP"])
            if problem:
                raise errors.invalid_error("Service", svc["metadata"].get("name", ""), [
                    errors.invalid("spec.clusterIPs", [spec["clusterIP"]], problem)])
            self.api.allocator.reserve(spec["clusterIP"])
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            return
        ip = self.api.allocator.allocate()
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
