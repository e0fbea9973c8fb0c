"""The resource registry: which resources the API serves, and how each is named and scoped.

The schemas come from upstream (``sampan.api.schema``); what upstream keeps in Go code — the
plural resource name, scope, short names, categories and subresources of each kind — is this
table. CustomResourceDefinitions add entries at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    resource: str  # plural, lower case: "deployments"
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "log", ...
    verbs: tuple[str, ...] = ALL_VERBS
    # Resources served at several versions share one storage location (``storage``) and are
    # converted to and from ``storage_version``.
    storage_version: str = ""
    # Objects that are only ever computed, never stored (reviews): create returns them.
    virtual: bool = False
    # Where the objects live when another group owns them (events.k8s.io events are stored
    # as core events).
    storage_group: str | None = None
    # A CustomResourceDefinition's served version carries its schema and printer columns.
    crd: dict | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def group_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def storage_prefix(self) -> str:
        """Key prefix of this resource in the store: ``/registry/<group>/<resource>/``."""
        group = self.group if self.storage_group is None else self.storage_group
        return f"/registry/{group or 'core'}/{self.resource}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def prefix(self, namespace: str | None) -> str:
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix


def _r(group: str, version: str, resource: str, kind: str, namespaced: bool = True,
       short: tuple[str, ...] = (), cat: tuple[str, ...] = (), sub: tuple[str, ...] = (),
       **kw) -> Resource:
    return Resource(group, version, resource, kind, namespaced, short, cat, sub, **kw)


ALL = ("all",)
STATUS = ("status",)
SCALE = ("status", "scale")

BUILTIN: tuple[Resource, ...] = (
    # core/v1
    _r("", "v1", "namespaces", "Namespace", False, ("ns",), sub=("status", "finalize")),
    _r("", "v1", "pods", "Pod", True, ("po",), ALL,
       ("status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy",
        "ephemeralcontainers", "resize")),
    _r("", "v1", "services", "Service", True, ("svc",), ALL, ("status", "proxy")),
    _r("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    _r("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _r("", "v1", "secrets", "Secret", True),
    _r("", "v1", "nodes", "Node", False, ("no",), sub=("status", "proxy")),
    _r("", "v1", "events", "Event", True, ("ev",)),
    _r("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), sub=("token",)),
    _r("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), sub=STATUS),
    _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), sub=STATUS),
    _r("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), sub=STATUS),
    _r("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    _r("", "v1", "replicationcontrollers", "ReplicationController", True, ("rc",), ALL, SCALE),
    _r("", "v1", "podtemplates", "PodTemplate", True),
    _r("", "v1", "componentstatuses", "ComponentStatus", False, ("cs",),
       verbs=("get", "list")),
    _r("", "v1", "bindings", "Binding", True, verbs=CREATE_ONLY, virtual=True),
    # apps/v1
    _r("apps", "v1", "deployments", "Deployment", True, ("deploy",), ALL, SCALE),
    _r("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ALL, SCALE),
    _r("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ALL, SCALE),
    _r("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ALL, STATUS),
    _r("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    # batch/v1
    _r("batch", "v1", "jobs", "Job", True, (), ALL, STATUS),
    _r("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ALL, STATUS),
    # autoscaling: v2 is stored, v1 is converted
    _r("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
       ("hpa",), ALL, STATUS),
    _r("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
       ("hpa",), ALL, STATUS, storage_version="v2", storage_group="autoscaling"),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), sub=STATUS),
    _r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    # discovery.k8s.io/v1
    _r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    # coordination.k8s.io/v1
    _r("coordination.k8s.io", "v1", "leases", "Lease", True),
    # rbac.authorization.k8s.io/v1
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    # policy/v1
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",),
       sub=STATUS),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    # events.k8s.io/v1 shares storage with core/v1 events
    _r("events.k8s.io", "v1", "events", "Event", True, ("ev",), storage_group="",
       storage_version="v1"),
    # scheduling.k8s.io/v1
    _r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    # apiextensions.k8s.io/v1
    _r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
       False, ("crd", "crds"), ("api-extensions",), STATUS),
    # authentication / authorization: computed on request, never stored
    _r("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False,
       verbs=CREATE_ONLY, virtual=True),
    _r("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False,
       verbs=CREATE_ONLY, virtual=True),
    _r("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
       False, verbs=CREATE_ONLY, virtual=True),
    _r("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview",
       False, verbs=CREATE_ONLY, virtual=True),
    _r("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False,
       verbs=CREATE_ONLY, virtual=True),
    _r("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview",
       True, verbs=CREATE_ONLY, virtual=True),
)

# The group versions in the order discovery lists them (preferred version first per group).
GROUP_ORDER = (
    "", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling",
    "batch", "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io",
    "apiextensions.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
)
PREFERRED_VERSION = {"autoscaling": "v2"}


class Registry:
    """Lookup of served resources; CRDs add and remove entries while the server runs."""

    def __init__(self, resources: tuple[Resource, ...] = BUILTIN):
        self._by_path: dict[tuple[str, str, str], Resource] = {}
        self._by_kind: dict[tuple[str, str, str], Resource] = {}
        self.generation = 0  # bumped on every change, so discovery caches know to rebuild
        for r in resources:
            self.add(r)

    def add(self, r: Resource) -> None:
        self._by_path[(r.group, r.version, r.resource)] = r
        self._by_kind.setdefault((r.group, r.version, r.kind), r)
        self.generation += 1

    def remove(self, group: str, version: str, resource: str) -> None:
        r = self._by_path.pop((group, version, resource), None)
        if r is not None and self._by_kind.get((group, version, r.kind)) is r:
            del self._by_kind[(group, version, r.kind)]
        self.generation += 1

    def get(self, group: str, version: str, resource: str) -> Resource | None:
        return self._by_path.get((group, version, resource))

    def for_kind(self, group: str, version: str, kind: str) -> Resource | None:
        return self._by_kind.get((group, version, kind))

    def all(self) -> list[Resource]:
        return list(self._by_path.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group → served versions, preferred first."""
        out: dict[str, list[str]] = {}
        for r in self._by_path.values():
            versions = out.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        for group, versions in out.items():
            preferred = PREFERRED_VERSION.get(group)
            versions.sort(key=lambda v: (v != preferred, _version_priority(v)))
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor)


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version
