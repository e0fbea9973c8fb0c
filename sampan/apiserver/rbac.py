"""RBAC: the authorizer upstream's ``rbac.authorization.k8s.io`` objects describe, and the
default roles and bindings every cluster starts with.

Rules are read from the watch cache, so a new RoleBinding takes effect as soon as the API server
has seen it. ``system:masters`` is decided before RBAC (as upstream hard-wires it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from sampan.apiserver.auth import ALLOW, NO_OPINION, Attributes, UserInfo

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer

GROUP = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def _matches_subject(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"
    return False


def _has(values: list[str] | None, value: str) -> bool:
    return bool(values) and ("*" in values or value in values)


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    """Whether one PolicyRule covers the request (upstream's RuleAllows)."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    if not _has(rule.get("apiGroups"), attrs.group):
        return False
    resources = rule.get("resources") or []
    if attrs.subresource:
        combined = f"{attrs.resource}/{attrs.subresource}"
        if not ("*" in resources or combined in resources or f"*/{attrs.subresource}" in resources):
            return False
    elif not _has(resources, attrs.resource):
        return False
    names = rule.get("resourceNames")
    return not names or attrs.name in names


class RBACAuthorizer:
    def __init__(self, api: "APIServer"):
        self.api = api

    def _objects(self, resource: str, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        r = self.api.registry.get(GROUP, "v1", resource)
        if r is None:
            return
        cache = self.api.storage.cache(r)
        for entry in cache.list(r.prefix(namespace)):
            yield entry.obj

    def _role_rules(self, role_ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        kind, name = role_ref.get("kind"), role_ref.get("name", "")
        if kind == "ClusterRole":
            r = self.api.registry.get(GROUP, "v1", "clusterroles")
            key = r.key(None, name) if r else ""
        elif kind == "Role":
            r = self.api.registry.get(GROUP, "v1", "roles")
            key = r.key(namespace, name) if r else ""
        else:
            return []
        entry = self.api.storage.cache(r).get(key) if r else None
        return (entry.obj.get("rules") or []) if entry else []

    def _bindings(self, attrs: Attributes) -> Iterator[tuple[dict[str, Any], str]]:
        for binding in self._objects("clusterrolebindings"):
            yield binding, ""
        if attrs.namespace:
            for binding in self._objects("rolebindings", attrs.namespace):
                yield binding, attrs.namespace

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        for binding, namespace in self._bindings(attrs):
            if not any(_matches_subject(s, attrs.user, namespace)
                       for s in binding.get("subjects") or []):
                continue
            role_ref = binding.get("roleRef") or {}
            for rule in self._role_rules(role_ref, namespace):
                if rule_allows(rule, attrs):
                    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
                    where = f"/{namespace}" if namespace else ""
                    return ALLOW, (f'RBAC: allowed by {kind} "{binding["metadata"]["name"]}{where}"'
                                   f' of {role_ref.get("kind")} "{role_ref.get("name")}" to '
                                   f'{_subject_text(attrs.user)}')
        return NO_OPINION, ""

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[dict], list[dict]]:
        """(resource rules, non-resource rules) that apply to ``user`` in ``namespace``."""
        attrs = Attributes(user, "", True, namespace=namespace)
        resource_rules, non_resource_rules = [], []
        for binding, ns in self._bindings(attrs):
            if not any(_matches_subject(s, user, ns) for s in binding.get("subjects") or []):
                continue
            for rule in self._role_rules(binding.get("roleRef") or {}, ns):
                if rule.get("nonResourceURLs"):
                    non_resource_rules.append({"verbs": rule.get("verbs", []),
                                               "nonResourceURLs": rule["nonResourceURLs"]})
                else:
                    entry = {k: rule[k] for k in ("verbs", "apiGroups", "resources", "resourceNames")
                             if rule.get(k) is not None}
                    resource_rules.append(entry)
        return resource_rules, non_resource_rules


def _subject_text(user: UserInfo) -> str:
    return f'User "{user.name}"'


# -- the defaults every cluster starts with (upstream's bootstrap policy, abridged) ------------
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_VIEWABLE = {
    "": ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
         "pods", "pods/log", "pods/status", "replicationcontrollers", "replicationcontrollers/scale",
         "replicationcontrollers/status", "serviceaccounts", "services", "services/status",
         "bindings", "events", "limitranges", "namespaces", "namespaces/status", "resourcequotas",
         "resourcequotas/status"],
    "apps": ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
             "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
             "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"],
    "autoscaling": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
    "batch": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
    "policy": ["poddisruptionbudgets", "poddisruptionbudgets/status"],
    "networking.k8s.io": ["ingresses", "ingresses/status", "networkpolicies"],
    "discovery.k8s.io": ["endpointslices"],
    "events.k8s.io": ["events"],
    "metrics.k8s.io": ["pods", "nodes"],
}
_EDITABLE = {
    "": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "pods/eviction",
         "configmaps", "endpoints", "persistentvolumeclaims", "replicationcontrollers",
         "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
         "services/proxy"],
    "apps": ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
             "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"],
    "autoscaling": ["horizontalpodautoscalers"],
    "batch": ["cronjobs", "jobs"],
    "policy": ["poddisruptionbudgets"],
    "networking.k8s.io": ["ingresses", "networkpolicies"],
    "discovery.k8s.io": ["endpointslices"],
}


def _rules(table: dict[str, list[str]], verbs: list[str]) -> list[dict[str, Any]]:
    return [{"apiGroups": [group], "resources": resources, "verbs": verbs}
            for group, resources in table.items()]


_VIEW = _rules(_VIEWABLE, READ)
_EDIT = _VIEW + _rules(_EDITABLE, WRITE) + [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": READ}]
_ADMIN = _EDIT + [
    {"apiGroups": [GROUP], "resources": ["roles", "rolebindings"], "verbs": READ + WRITE},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"],
     "verbs": ["create"]}]

DEFAULT_CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                      {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    "admin": _ADMIN,
    "edit": _EDIT,
    "view": _VIEW,
    "system:discovery": [{"nonResourceURLs": [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
        "/readyz", "/version", "/version/"], "verbs": ["get"]}],
    "system:basic-user": [{"apiGroups": ["authorization.k8s.io"], "verbs": ["create"],
                           "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
                          {"apiGroups": ["authentication.k8s.io"], "verbs": ["create"],
                           "resources": ["selfsubjectreviews"]}],
    "system:public-info-viewer": [{"nonResourceURLs": [
        "/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}],
    # What a node agent does (upstream's system:node role; there the Node authorizer narrows
    # it to the node's own objects, here it is bound to the group of node agents).
    "system:node": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": READ + ["create", "patch", "update"]},
        {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": READ + ["create", "delete"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["configmaps", "secrets", "services", "endpoints",
                                          "persistentvolumeclaims", "persistentvolumes",
                                          "namespaces"],
         "verbs": READ},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
         "verbs": ["create", "patch", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": READ + ["create", "update", "patch", "delete"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["csidrivers", "storageclasses",
                                                        "volumeattachments"], "verbs": READ},
        {"apiGroups": ["node.k8s.io"], "resources": ["runtimeclasses"], "verbs": READ},
        # The node's cluster DNS publishes its own EndpointSlice of kube-system/kube-dns.
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": READ + ["create", "update", "patch", "delete"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]},
    ],
}

DEFAULT_CLUSTER_ROLE_BINDINGS: dict[str, list[str]] = {  # role (and binding) name → groups
    "cluster-admin": ["system:masters"],
    "system:discovery": ["system:authenticated"],
    "system:basic-user": ["system:authenticated"],
    "system:public-info-viewer": ["system:authenticated", "system:unauthenticated"],
    "system:node": ["system:nodes"],
}

_BOOTSTRAP_META = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                   "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def default_objects() -> list[tuple[str, dict[str, Any]]]:
    """(resource, object) for every default ClusterRole and ClusterRoleBinding."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name, rules in DEFAULT_CLUSTER_ROLES.items():
        out.append(("clusterroles", {
            "apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, **_copy_meta()}, "rules": rules}))
    for name, groups in DEFAULT_CLUSTER_ROLE_BINDINGS.items():
        out.append(("clusterrolebindings", {
            "apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, **_copy_meta()},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups]}))
    return out


def _copy_meta() -> dict[str, Any]:
    return {k: dict(v) for k, v in _BOOTSTRAP_META.items()}
