"""Matching rules several plugins share: tolerations, node selector terms, pod affinity
terms; and a cache of per-node masks keyed by the part of a pod spec they depend on."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from sampan.api.selectors import LabelSelector, from_label_selector_object

if TYPE_CHECKING:
    from sampan.scheduler.cache import Cache, NodeInfo
    from sampan.scheduler.framework import Status

Object = dict[str, Any]


def freeze(value: Any) -> bytes:
    """A hashable key for a piece of a pod spec."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


FILTER_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``Toleration.ToleratesTaint``."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def first_untolerated(taints: Iterable[Mapping[str, Any]],
                      tolerations: list[Mapping[str, Any]],
                      effects: frozenset[str]) -> Mapping[str, Any] | None:
    for taint in taints:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def requirement_matches(req: Mapping[str, Any], value: str | None) -> bool:
    operator, values = req.get("operator"), req.get("values") or []
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        have, want = _int(value), _int(values[0])
        if have is None or want is None:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all expressions and fields hold; an empty term matches nothing."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    for req in expressions:
        if not requirement_matches(req, node.labels.get(req.get("key", ""))):
            return False
    for req in fields:
        if req.get("key") != "metadata.name" or not requirement_matches(req, node.name):
            return False
    return True


def node_selector_matches(selector: Mapping[str, Any] | None, node: NodeInfo) -> bool:
    """A NodeSelector: any of its terms."""
    if selector is None:
        return True
    return any(term_matches(t, node) for t in selector.get("nodeSelectorTerms") or [])


def required_node_affinity_matches(spec: Mapping[str, Any], node: NodeInfo) -> bool:
    """``nodeSelector`` and required node affinity (``GetRequiredNodeAffinity(pod).Match``)."""
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node.labels.get(key) != value:
            return False
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
    return node_selector_matches(
        affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), node)


class MaskCache:
    """Per-slot filter codes (or scores) for a pod *shape*, rebuilt when the nodes change."""

    def __init__(self, limit: int = 1024):
        self.limit = limit
        self._entries: dict[Hashable, tuple[int, Any]] = {}

    def get(self, key: Hashable, generation: int, build: Callable[[], Any]) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == generation:
            return entry[1]
        value = build()
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (generation, value)
        return value


def codes_per_slot(cache: Cache, check: Callable[[NodeInfo], Status | None]
                   ) -> tuple[np.ndarray, list[Status]]:
    """Run ``check`` on every node once: codes per slot (0 passes) and the status table."""
    codes = np.zeros(cache.capacity, dtype=np.int32)
    table: list[Status] = []
    seen: dict[Status, int] = {}
    for info in cache.nodes.values():
        status = check(info)
        if status is None or status.success:
            continue
        code = seen.get(status)
        if code is None:
            table.append(status)
            code = seen[status] = len(table)
        codes[info.slot] = code
    return codes, table


# -- pod affinity terms -----------------------------------------------------------------------

class AffinityTerm:
    """A PodAffinityTerm with its selector parsed and its namespaces resolved."""

    __slots__ = ("selector", "namespaces", "namespace_selector", "topology_key", "weight")

    def __init__(self, term: Mapping[str, Any], pod_namespace: str, weight: int = 0):
        self.selector = _selector(term.get("labelSelector"))
        names = frozenset(term.get("namespaces") or ())
        ns_selector = term.get("namespaceSelector")
        self.namespace_selector: LabelSelector | None = None
        if ns_selector is not None:
            self.namespace_selector = _selector(ns_selector)
            self.namespaces = names
        else:
            self.namespaces = names or frozenset((pod_namespace,))
        self.topology_key = term.get("topologyKey") or ""
        self.weight = weight

    def namespace_matches(self, namespace: str, namespace_labels: Callable[[str], dict]) -> bool:
        if namespace in self.namespaces:
            return True
        return (self.namespace_selector is not None and not self.namespace_selector.selects_nothing
                and self.namespace_selector.matches(namespace_labels(namespace)))

    def matches(self, namespace: str, labels: Mapping[str, str],
                namespace_labels: Callable[[str], dict]) -> bool:
        return (self.namespace_matches(namespace, namespace_labels)
                and self.selector.matches(labels))

    def count(self, cache: Cache, namespace_labels: Callable[[str], dict]) -> np.ndarray:
        """Per slot: existing pods this term selects."""
        if self.namespace_selector is None:
            return cache.count_matching(self.namespaces, self.selector)
        return cache.count_matching(
            None, self.selector, _NamespaceFilter(self, namespace_labels))


class _NamespaceFilter:
    """A hashable namespace predicate for the cache's selector memo."""

    __slots__ = ("term", "labels")

    def __init__(self, term: AffinityTerm, labels: Callable[[str], dict]):
        self.term, self.labels = term, labels

    def __call__(self, namespace: str) -> bool:
        return self.term.namespace_matches(namespace, self.labels)

    def __hash__(self) -> int:
        return hash((self.term.namespaces, self.term.namespace_selector))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _NamespaceFilter)
                and self.term.namespaces == other.term.namespaces
                and self.term.namespace_selector == other.term.namespace_selector)


def _selector(raw: Mapping[str, Any] | None) -> LabelSelector:
    try:
        return from_label_selector_object(raw)
    except Exception:  # an invalid selector selects nothing, as upstream's parse error does
        return LabelSelector.nothing()


def affinity_terms(pod_affinity: Mapping[str, Any] | None, namespace: str,
                   ) -> tuple[list[AffinityTerm], list[AffinityTerm]]:
    """(required terms, weighted preferred terms) of a podAffinity / podAntiAffinity."""
    pod_affinity = pod_affinity or {}
    required = [AffinityTerm(t, namespace) for t in
                pod_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []]
    preferred = [AffinityTerm(w.get("podAffinityTerm") or {}, namespace, int(w.get("weight") or 0))
                 for w in pod_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    return required, preferred
