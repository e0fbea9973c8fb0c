"""InterPodAffinity: required pod affinity / anti-affinity (the pod's own and existing pods'
anti-affinity towards it) filter; preferred terms and existing pods' terms score.

Existing pods are counted per topology domain from the cache's label-group counts, so a
term costs a few array sums, not a walk over every pod.
"""

from __future__ import annotations

import numpy as np

from sampan.scheduler.cache import Cache, PodInfo
from sampan.scheduler.framework import (MAX_NODE_SCORE, SKIP, SUCCESS, CycleState, FilterPlugin,
                                        FilterResult, PreFilterPlugin, PreScorePlugin,
                                        ScorePlugin, Status)
from sampan.scheduler.plugins.helpers import AffinityTerm, affinity_terms

ERR_REASON_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
DEFAULT_HARD_POD_AFFINITY_WEIGHT = 1
_STATE = "InterPodAffinity/prefilter"


def domain_totals(cache: Cache, key: str, per_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(domain id per slot, pods per domain) for topology key ``key``."""
    ids, values = cache.topology_domains(key)
    has = ids >= 0
    totals = np.bincount(ids[has], weights=per_slot[has], minlength=len(values))
    return ids, totals


def per_node(cache: Cache, key: str, per_slot: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """For each of ``slots``: the pods of ``per_slot`` in that node's domain (0 without key)."""
    ids, totals = domain_totals(cache, key, per_slot)
    node_ids = ids[slots]
    if len(totals) == 0:
        return np.zeros(len(slots))
    return np.where(node_ids >= 0, totals[np.maximum(node_ids, 0)], 0)


class InterPodAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "InterPodAffinity"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self.hard_weight = int(self.args.get("hardPodAffinityWeight",
                                             DEFAULT_HARD_POD_AFFINITY_WEIGHT))

    def namespace_labels(self, namespace: str) -> dict:
        return self.handle.namespace_labels(namespace)

    # -- filter ---------------------------------------------------------------------------
    def pre_filter(self, state: CycleState, pod: PodInfo, cache: Cache) -> Status:
        affinity, _ = affinity_terms(pod.affinity.get("podAffinity"), pod.namespace)
        anti, _ = affinity_terms(pod.affinity.get("podAntiAffinity"), pod.namespace)
        existing: dict[str, set[str]] = {}  # topology key → values the pod must avoid
        for other in cache.pods_with_required_anti_affinity.values():
            node = cache.nodes.get(cache.pod_nodes.get(other.key, ""))
            if node is None:
                continue
            terms, _ = affinity_terms(other.affinity.get("podAntiAffinity"), other.namespace)
            for term in terms:
                value = node.labels.get(term.topology_key)
                if value is not None and term.matches(pod.namespace, pod.labels,
                                                      self.namespace_labels):
                    existing.setdefault(term.topology_key, set()).add(value)
        if not affinity and not anti and not existing:
            return SKIP
        state[_STATE] = (affinity, anti, existing)
        return SUCCESS

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        affinity, anti, existing = state[_STATE]
        codes = np.zeros(len(slots), dtype=np.int32)
        if affinity:
            codes[~self._affinity_ok(pod, cache, slots, affinity)] = 1
        for term in anti:
            hit = per_node(cache, term.topology_key,
                           term.count(cache, self.namespace_labels), slots) > 0
            codes[(codes == 0) & hit] = 2
        for key, values in existing.items():
            ids, names = cache.topology_domains(key)
            bad = [i for i, name in enumerate(names) if name in values]
            hit = np.isin(ids[slots], bad)
            codes[(codes == 0) & hit] = 3
        return codes, [_AFFINITY, _ANTI, _EXISTING]

    def _affinity_ok(self, pod: PodInfo, cache: Cache, slots: np.ndarray,
                     terms: list[AffinityTerm]) -> np.ndarray:
        # Existing pods count only when they match every term (podMatchesAllAffinityTerms).
        group_sets = [set(map(id, cache.matching_groups(
            None if t.namespace_selector is not None else t.namespaces, t.selector)))
            for t in terms]
        common = set.intersection(*group_sets) if group_sets else set()
        groups = [g for g in cache.groups.values() if id(g) in common
                  and all(t.namespace_matches(g.namespace, self.namespace_labels)
                          for t in terms)]
        matching = np.zeros(cache.capacity, dtype=np.int64)
        for g in groups:
            matching += g.counts
        ok = np.ones(len(slots), dtype=bool)
        has_keys = np.ones(len(slots), dtype=bool)
        counted = 0  # matching pods on nodes that have the terms' topology keys
        for term in terms:
            ids, _ = cache.topology_domains(term.topology_key)
            has_keys &= ids[slots] >= 0
            counted += int(matching[ids >= 0].sum())
            ok &= per_node(cache, term.topology_key, matching, slots) > 0
        if not counted and all(t.matches(pod.namespace, pod.labels, self.namespace_labels)
                               for t in terms):
            # The first pod of a group that wants to be together may go anywhere with the keys.
            return has_keys
        return ok & has_keys

    # -- score ----------------------------------------------------------------------------
    def pre_score(self, state: CycleState, pod: PodInfo, cache: Cache,
                  slots: np.ndarray) -> Status:
        _, preferred = affinity_terms(pod.affinity.get("podAffinity"), pod.namespace)
        _, preferred_anti = affinity_terms(pod.affinity.get("podAntiAffinity"), pod.namespace)
        if not preferred and not preferred_anti and not cache.pods_with_affinity:
            return SKIP
        state["InterPodAffinity/prescore"] = (preferred, preferred_anti)
        return SUCCESS

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        preferred, preferred_anti = state["InterPodAffinity/prescore"]
        scores = np.zeros(len(slots), dtype=np.float64)
        for term, sign in [*((t, 1) for t in preferred), *((t, -1) for t in preferred_anti)]:
            if term.weight:
                counts = term.count(cache, self.namespace_labels)
                scores += sign * term.weight * per_node(cache, term.topology_key, counts, slots)
        by_key: dict[str, dict[str, int]] = {}
        for other in cache.pods_with_affinity.values():
            node = cache.nodes.get(cache.pod_nodes.get(other.key, ""))
            if node is None:
                continue
            for term, weight in self._existing_terms(other):
                value = node.labels.get(term.topology_key)
                if value is not None and term.matches(pod.namespace, pod.labels,
                                                      self.namespace_labels):
                    values = by_key.setdefault(term.topology_key, {})
                    values[value] = values.get(value, 0) + weight
        for key, values in by_key.items():
            ids, names = cache.topology_domains(key)
            weights = np.array([values.get(name, 0) for name in names] + [0], dtype=np.float64)
            scores += weights[ids[slots]]  # -1 (no label) reads the trailing 0
        return scores.astype(np.int64)

    def _existing_terms(self, other: PodInfo):
        required, preferred = affinity_terms(other.affinity.get("podAffinity"), other.namespace)
        _, preferred_anti = affinity_terms(other.affinity.get("podAntiAffinity"),
                                           other.namespace)
        if self.hard_weight > 0:
            yield from ((t, self.hard_weight) for t in required)
        yield from ((t, t.weight) for t in preferred)
        yield from ((t, -t.weight) for t in preferred_anti)

    def normalize(self, state: CycleState, pod: PodInfo, scores: np.ndarray) -> np.ndarray:
        if len(scores) == 0:
            return scores
        low, high = int(scores.min()), int(scores.max())
        if high - low <= 0:
            return np.zeros_like(scores)
        return (MAX_NODE_SCORE * ((scores - low) / (high - low))).astype(np.int64)

    def events_to_register(self):
        return ("Pod/*", "Node/Add", "Node/UpdateNodeLabel")


_AFFINITY = Status.unresolvable(ERR_REASON_AFFINITY)
_ANTI = Status.unschedulable(ERR_REASON_ANTI_AFFINITY)
_EXISTING = Status.unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY)
