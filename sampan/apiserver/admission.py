"""Admission: the checks and mutations every write passes after decoding and before storage.

Built in, in upstream's order: NamespaceLifecycle (nothing is created in a missing or
terminating namespace), ServiceAccount (pods run as a service account), and the cluster IP
allocator for Services.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from sampan.api import errors
from sampan.api.errors import StatusError
from sampan.api.registry import Resource
from sampan.apiserver.rest import Context

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

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
        if resource.kind == "Pod" and resource.group == "" and operation == "CREATE":
            self._service_account(obj)
        if resource.kind == "Service" and resource.group == "" and operation == "CREATE":
            self._allocate_cluster_ip(obj)

    async def validate(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None,
                       ctx: Context, operation: str) -> None:
        """Validating admission."""

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
        meta = entry.obj["metadata"]
        if meta.get("deletionTimestamp") or (entry.obj.get("status") or {}).get("phase") == "Terminating":
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

    def _allocate_cluster_ip(self, svc: dict[str, Any]) -> None:
        spec = svc.setdefault("spec", {})
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
