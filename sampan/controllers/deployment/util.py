"""What the Deployment controller decides, without I/O: upstream's
``pkg/controller/deployment/util`` (annotations, revisions, fenceposts, proportions,
conditions) and the pod-template hash of ``controller.ComputeHash``.

Deployments and ReplicaSets are plain dicts; functions that change one say so and change only
the object they are given (callers pass copies of cached objects).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sampan.controllers.util import POD_TEMPLATE_HASH_LABEL, now_rfc3339, parse_time

Object = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
DEPRECATED_ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Annotations a Deployment does not hand down to its ReplicaSets (``annotationsToSkip``).
ANNOTATIONS_TO_SKIP = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                                 MAX_REPLICAS, DEPRECATED_ROLLBACK_TO})
# Upstream bounds the revision-history annotation (``maxRevHistoryLengthInChars``).
MAX_REVISION_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1

ROLLING_UPDATE = "RollingUpdate"
RECREATE = "Recreate"

PROGRESSING = "Progressing"
AVAILABLE = "Available"
REPLICA_FAILURE = "ReplicaFailure"

# Condition reasons.
REPLICA_SET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_REPLICA_SET = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"

# Event reasons of the deprecated rollback.
ROLLBACK_REVISION_NOT_FOUND = "DeploymentRollbackRevisionNotFound"
ROLLBACK_TEMPLATE_UNCHANGED = "DeploymentRollbackTemplateUnchanged"
ROLLBACK_DONE = "DeploymentRollback"


# -- accessors ---------------------------------------------------------------------------------


def spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def replicas(obj: Mapping[str, Any]) -> int:
    """``*spec.replicas`` (the API server defaults it to 1)."""
    value = spec(obj).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: Mapping[str, Any] | None, field: str) -> int:
    if obj is None:
        return 0
    return int(status(obj).get(field) or 0)


def uid(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("uid", "")


def name(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def strategy_type(d: Mapping[str, Any]) -> str:
    return (spec(d).get("strategy") or {}).get("type") or ROLLING_UPDATE


def is_rolling_update(d: Mapping[str, Any]) -> bool:
    return strategy_type(d) == ROLLING_UPDATE


def min_ready_seconds(obj: Mapping[str, Any]) -> int:
    return int(spec(obj).get("minReadySeconds") or 0)


def progress_deadline(d: Mapping[str, Any]) -> int | None:
    """``spec.progressDeadlineSeconds``, or None when there is none (unset or MaxInt32)."""
    value = spec(d).get("progressDeadlineSeconds")
    if value is None or int(value) == MAX_INT32:
        return None
    return int(value)


def revision_history_limit(d: Mapping[str, Any]) -> int | None:
    value = spec(d).get("revisionHistoryLimit")
    if value is None or int(value) == MAX_INT32:
        return None
    return int(value)


# -- the pod-template hash ---------------------------------------------------------------------

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32a(data: bytes, h: int = _FNV32_OFFSET) -> int:
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode_string(text: str) -> str:
    """``rand.SafeEncodeString``: every byte mapped onto letters and digits that cannot spell
    words (no vowels, no 0/1/3)."""
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in text.encode())


def compute_hash(template: Mapping[str, Any], collision_count: int | None) -> str:
    """The ``pod-template-hash`` of a template: FNV-32a of its canonical JSON, then the
    collision count as eight little-endian bytes when there is one, in decimal, safe-encoded."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = fnv32a(canonical.encode())
    if collision_count is not None:
        h = fnv32a((int(collision_count) & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return safe_encode_string(str(h))


def _semantic(value: Any) -> Any:
    """Drop what Go's semantic equality cannot tell from absent: None, empty maps and lists."""
    if isinstance(value, Mapping):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _without_hash(template: Mapping[str, Any] | None) -> Any:
    template = copy.deepcopy(dict(template or {}))
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return _semantic(template)


def equal_ignore_hash(t1: Mapping[str, Any] | None, t2: Mapping[str, Any] | None) -> bool:
    """``EqualIgnoreHash``: two pod templates are the same apart from the hash label."""
    return _without_hash(t1) == _without_hash(t2)


def template_from_replica_set(rs: Mapping[str, Any]) -> Object:
    """A ReplicaSet's template without its hash label, for a Deployment to go back to."""
    template = copy.deepcopy(spec(rs).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return template


# -- ReplicaSet lists --------------------------------------------------------------------------


def _created(rs: Mapping[str, Any]) -> float:
    return parse_time((rs.get("metadata") or {}).get("creationTimestamp")) or 0.0


def by_creation(rs: Mapping[str, Any]) -> tuple[float, str]:
    """``ReplicaSetsByCreationTimestamp``: older first, then by name."""
    return (_created(rs), name(rs))


def revision(obj: Mapping[str, Any]) -> int:
    """The revision annotation as a number (0 when absent); ValueError when it is not one."""
    value = annotations(obj).get(REVISION)
    if value is None:
        return 0
    return int(value)


def _revision_or_zero(obj: Mapping[str, Any]) -> int:
    try:
        return revision(obj)
    except ValueError:
        return 0


def by_revision(rs: Mapping[str, Any]) -> tuple[int, float, str]:
    return (_revision_or_zero(rs), *by_creation(rs))


def by_size_older(rs: Mapping[str, Any]) -> tuple[int, float, str]:
    """Larger first; among equals, older first (``ReplicaSetsBySizeOlder``)."""
    return (-replicas(rs), *by_creation(rs))


def by_size_newer(rs: Mapping[str, Any]) -> tuple[int, float, str]:
    """Larger first; among equals, newer first (``ReplicaSetsBySizeNewer``)."""
    return (-replicas(rs), -_created(rs), name(rs))


def active(replica_sets: Iterable[Object | None]) -> list[Object]:
    """``FilterActiveReplicaSets``: the ones that want pods."""
    return [rs for rs in replica_sets if rs is not None and replicas(rs) > 0]


def max_revision(replica_sets: Iterable[Object]) -> int:
    return max((_revision_or_zero(rs) for rs in replica_sets), default=0)


def last_revision(replica_sets: Iterable[Object | None]) -> int:
    """The second highest revision (the one before the current)."""
    revisions = sorted((_revision_or_zero(rs) for rs in replica_sets if rs is not None),
                       reverse=True)
    return revisions[1] if len(revisions) > 1 else 0


def find_new_replica_set(d: Mapping[str, Any], rs_list: Iterable[Object]) -> Object | None:
    """The oldest ReplicaSet whose template is the Deployment's."""
    template = spec(d).get("template")
    for rs in sorted(rs_list, key=by_creation):
        if equal_ignore_hash(spec(rs).get("template"), template):
            return rs
    return None


def find_old_replica_sets(d: Mapping[str, Any], rs_list: Sequence[Object]) -> list[Object]:
    new = find_new_replica_set(d, rs_list)
    return [rs for rs in rs_list if new is None or uid(rs) != uid(new)]


def find_active_or_latest(new_rs: Object | None, old_rss: Sequence[Object]) -> Object | None:
    """The only active ReplicaSet, or the latest when none is active; None when several are
    active (they are then scaled proportionally)."""
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=by_creation, reverse=True)
    all_active = active([*newest_first, new_rs])
    if not all_active:
        return new_rs if new_rs is not None else newest_first[0]
    if len(all_active) == 1:
        return all_active[0]
    return None


def total_replicas(replica_sets: Iterable[Object | None]) -> int:
    return sum(replicas(rs) for rs in replica_sets if rs is not None)


def total_status(replica_sets: Iterable[Object | None], field: str) -> int:
    return sum(status_int(rs, field) for rs in replica_sets if rs is not None)


# -- fenceposts --------------------------------------------------------------------------------


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an int as it is, ``"N%"`` of ``total``."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a "
                         f"percentage")
    try:
        percent = int(text[:-1])
    except ValueError:
        raise ValueError(f"invalid value, percentage must be an integer: {text!r}") from None
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    """``ResolveFenceposts``: surge rounds up, unavailability down; both zero means one may be
    unavailable (surge may be blocked by quota)."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return (spec(d).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Mapping[str, Any]) -> int:
    if not is_rolling_update(d):
        return 0
    rolling = _rolling(d)
    return resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"),
                              replicas(d))[0]


def max_unavailable(d: Mapping[str, Any]) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    rolling = _rolling(d)
    unavailable = resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"),
                                     replicas(d))[1]
    return min(unavailable, replicas(d))


def new_rs_new_replicas(d: Mapping[str, Any], all_rss: Iterable[Object | None],
                        new_rs: Mapping[str, Any]) -> int:
    """How big the new ReplicaSet may be now (``NewRSNewReplicas``)."""
    if strategy_type(d) == RECREATE:
        return replicas(d)
    if strategy_type(d) != ROLLING_UPDATE:
        raise ValueError(f"deployment type {strategy_type(d)} isn't supported")
    surge = scaled_value(_rolling(d).get("maxSurge"), replicas(d), True)
    current = total_replicas(all_rss)
    max_total = replicas(d) + surge
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def is_saturated(d: Mapping[str, Any], rs: Mapping[str, Any] | None) -> bool:
    """The new ReplicaSet owns every desired replica and all of them are available."""
    if rs is None:
        return False
    try:
        desired = int(annotations(rs).get(DESIRED_REPLICAS, ""))
    except ValueError:
        return False
    return (replicas(rs) == replicas(d) and desired == replicas(d)
            and status_int(rs, "availableReplicas") == replicas(d))


# -- replica annotations and proportions -------------------------------------------------------


def _set_annotation(obj: Object, key: str, value: str) -> bool:
    meta = obj.setdefault("metadata", {})
    current = meta.get("annotations")
    if current is None:
        current = meta["annotations"] = {}
    if current.get(key) == value:
        return False
    current[key] = value
    return True


def replicas_annotations_need_update(rs: Mapping[str, Any], desired: int, maximum: int) -> bool:
    current = annotations(rs)
    return current.get(DESIRED_REPLICAS) != str(desired) or \
        current.get(MAX_REPLICAS) != str(maximum)


def set_replicas_annotations(rs: Object, desired: int, maximum: int) -> bool:
    changed = _set_annotation(rs, DESIRED_REPLICAS, str(desired))
    return _set_annotation(rs, MAX_REPLICAS, str(maximum)) or changed


def _int_annotation(rs: Mapping[str, Any], key: str) -> int | None:
    try:
        return int(annotations(rs)[key])
    except (KeyError, ValueError):
        return None


def desired_replicas_annotation(rs: Mapping[str, Any]) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS)


def _round_half_away(value: float) -> int:
    """``math.Round`` (Go rounds halves away from zero; Python's ``round`` to even)."""
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def replica_set_fraction(rs: Mapping[str, Any], d: Mapping[str, Any]) -> int:
    """How many replicas ``rs`` should gain (or lose) when the Deployment is resized
    mid-rollout, from the size it had when the Deployment had max-replicas pods."""
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = _int_annotation(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_int(d, "replicas")
    if not annotated:
        return 0
    return _round_half_away(replicas(rs) * deployment_replicas / annotated) - replicas(rs)


def proportion(rs: Mapping[str, Any] | None, d: Mapping[str, Any], to_add: int,
               added: int) -> int:
    """``GetProportion``: this ReplicaSet's share of ``to_add``, never more than is left."""
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Mapping[str, Any], active_rss: Sequence[Object]
                       ) -> tuple[list[tuple[Object, int]], str]:
    """The sizes the active ReplicaSets of a rolling Deployment get when the Deployment is
    resized mid-rollout (the proportional part of ``scale``), largest first, and whether that
    scales them "up" or "down"."""
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - total_replicas(active_rss)
    operation = ""
    ordered = list(active_rss)
    if to_add > 0:
        ordered.sort(key=by_size_newer)
        operation = "up"
    elif to_add < 0:
        ordered.sort(key=by_size_older)
        operation = "down"
    sizes: list[int] = []
    added = 0
    for rs in ordered:
        if to_add != 0:
            share = proportion(rs, d, to_add, added)
            sizes.append(replicas(rs) + share)
            added += share
        else:
            sizes.append(replicas(rs))
    if ordered and to_add != 0:
        sizes[0] = max(sizes[0] + to_add - added, 0)
    return list(zip(ordered, sizes)), operation


# -- revisions and copied annotations ----------------------------------------------------------


def copy_annotations_to_replica_set(d: Mapping[str, Any], rs: Object) -> bool:
    changed = False
    for key, value in annotations(d).items():
        if key in ANNOTATIONS_TO_SKIP or annotations(rs).get(key) == value:
            continue
        changed |= _set_annotation(rs, key, value)
    return changed


def set_new_replica_set_annotations(d: Mapping[str, Any], rs: Object, new_revision: int,
                                    exists: bool,
                                    history_limit: int = MAX_REVISION_HISTORY_CHARS) -> bool:
    """Copy the Deployment's annotations to its new ReplicaSet and raise the ReplicaSet's
    revision to ``new_revision``, remembering the revisions it had (a rollback reuses a
    ReplicaSet); a ReplicaSet about to be created also gets the replicas annotations."""
    changed = copy_annotations_to_replica_set(d, rs)
    old_text = annotations(rs).get(REVISION)
    try:
        old_revision = int(old_text) if old_text else 0
    except ValueError:
        return False
    if old_revision < new_revision:
        _set_annotation(rs, REVISION, str(new_revision))
        changed = True
        if old_text is not None:
            _append_revision_history(rs, old_text, history_limit)
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def _append_revision_history(rs: Object, old_revision: str, limit: int) -> None:
    history = annotations(rs).get(REVISION_HISTORY, "")
    if not history:
        _set_annotation(rs, REVISION_HISTORY, old_revision)
        return
    revisions = history.split(",")
    total = len(history) + len(old_revision) + 1
    start = 0
    while total > limit and start < len(revisions):
        total -= len(revisions[start]) + 1
        start += 1
    if total <= limit:
        _set_annotation(rs, REVISION_HISTORY, ",".join([*revisions[start:], old_revision]))


def set_deployment_revision(d: Object, value: str) -> bool:
    return _set_annotation(d, REVISION, value)


def set_deployment_annotations_to(d: Object, rs: Mapping[str, Any]) -> None:
    """On rollback the Deployment takes the ReplicaSet's annotations (keeping its own skipped
    ones), so that the change cause follows the template."""
    kept = {k: v for k, v in annotations(d).items() if k in ANNOTATIONS_TO_SKIP}
    kept.update({k: v for k, v in annotations(rs).items() if k not in ANNOTATIONS_TO_SKIP})
    d.setdefault("metadata", {})["annotations"] = kept


def rollback_to(d: Mapping[str, Any]) -> int | None:
    """The revision of the deprecated ``rollbackTo`` (kept as an annotation in apps/v1)."""
    value = annotations(d).get(DEPRECATED_ROLLBACK_TO)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


# -- conditions --------------------------------------------------------------------------------


def new_condition(type_: str, status_: str, reason: str, message: str,
                  now: float | None = None) -> Object:
    stamp = now_rfc3339(now)
    return {"type": type_, "status": status_, "lastUpdateTime": stamp,
            "lastTransitionTime": stamp, "reason": reason, "message": message}


def get_condition(st: Mapping[str, Any], type_: str) -> Object | None:
    for condition in st.get("conditions") or ():
        if condition.get("type") == type_:
            return condition
    return None


def set_condition(st: Object, condition: Object) -> None:
    """``SetDeploymentCondition``: nothing changes when status and reason are the same; the
    transition time stays when only the reason changes."""
    current = get_condition(st, condition["type"])
    if current is not None and current.get("status") == condition["status"] \
            and current.get("reason") == condition["reason"]:
        return
    if current is not None and current.get("status") == condition["status"]:
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(st, condition["type"])
    st.setdefault("conditions", []).append(condition)


def remove_condition(st: Object, type_: str) -> None:
    conditions = [c for c in st.get("conditions") or () if c.get("type") != type_]
    if conditions:
        st["conditions"] = conditions
    else:
        st.pop("conditions", None)


# -- status ------------------------------------------------------------------------------------


def calculate_status(all_rss: Sequence[Object | None], new_rs: Object | None,
                     d: Mapping[str, Any], now: float | None = None) -> Object:
    """The Deployment's status from its ReplicaSets (``calculateStatus``); zero counts are
    left out as upstream's ``omitempty`` does."""
    available = total_status(all_rss, "availableReplicas")
    unavailable = max(total_replicas(all_rss) - available, 0)
    counts = {
        "observedGeneration": int((d.get("metadata") or {}).get("generation") or 0),
        "replicas": total_status(all_rss, "replicas"),
        "updatedReplicas": status_int(new_rs, "replicas"),
        "readyReplicas": total_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
    }
    new_status: Object = {k: v for k, v in counts.items() if v}
    collision_count = status(d).get("collisionCount")
    if collision_count is not None:
        new_status["collisionCount"] = collision_count
    conditions = status(d).get("conditions")
    if conditions:
        new_status["conditions"] = [dict(c) for c in conditions]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(new_status, new_condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE,
                                                "Deployment has minimum availability.", now))
    else:
        set_condition(new_status, new_condition(
            AVAILABLE, "False", MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.", now))
    return new_status


def deployment_complete(d: Mapping[str, Any], st: Mapping[str, Any]) -> bool:
    """Every desired replica is updated and available, and no old pod is left."""
    want = replicas(d)
    return (int(st.get("updatedReplicas") or 0) == want and int(st.get("replicas") or 0) == want
            and int(st.get("availableReplicas") or 0) == want
            and int(st.get("observedGeneration") or 0)
            >= int((d.get("metadata") or {}).get("generation") or 0))


def deployment_progressing(d: Mapping[str, Any], st: Mapping[str, Any]) -> bool:
    """New pods came up or became ready or available, or old pods went away."""
    old = status(d)

    def n(s: Mapping[str, Any], field: str) -> int:
        return int(s.get(field) or 0)

    old_old = n(old, "replicas") - n(old, "updatedReplicas")
    new_old = n(st, "replicas") - n(st, "updatedReplicas")
    return (n(st, "updatedReplicas") > n(old, "updatedReplicas") or new_old < old_old
            or n(st, "readyReplicas") > n(old, "readyReplicas")
            or n(st, "availableReplicas") > n(old, "availableReplicas"))


def deployment_timed_out(d: Mapping[str, Any], st: Mapping[str, Any],
                         now: float | None = None) -> bool:
    """No progress for longer than ``progressDeadlineSeconds`` since the Progressing
    condition was last updated."""
    deadline = progress_deadline(d)
    if deadline is None:
        return False
    condition = get_condition(st, PROGRESSING)
    if condition is None:
        return False
    if condition.get("reason") == NEW_RS_AVAILABLE:
        return False
    if condition.get("reason") == TIMED_OUT:
        return True
    since = parse_time(condition.get("lastUpdateTime"))
    if since is None:
        return False
    return since + deadline < (time.time() if now is None else now)


def rollout_status(all_rss: Sequence[Object | None], new_rs: Object | None,
                   d: Mapping[str, Any], now: float | None = None) -> Object:
    """``syncRolloutStatus`` without the write: the status with the Progressing condition
    (complete, progressing or timed out) and replica failures carried over."""
    new_status = calculate_status(all_rss, new_rs, d, now)
    deadline = progress_deadline(d)
    if deadline is None:
        remove_condition(new_status, PROGRESSING)
    current = get_condition(status(d), PROGRESSING)
    complete = (int(new_status.get("replicas") or 0) == int(new_status.get("updatedReplicas") or 0)
                and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
    if deadline is not None and not complete:
        subject = (f'ReplicaSet "{name(new_rs)}"' if new_rs is not None
                   else f'Deployment "{name(d)}"')
        if deployment_complete(d, new_status):
            set_condition(new_status, new_condition(
                PROGRESSING, "True", NEW_RS_AVAILABLE, f"{subject} has successfully progressed.",
                now))
        elif deployment_progressing(d, new_status):
            condition = new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED,
                                      f"{subject} is progressing.", now)
            if current is not None:
                if current.get("status") == "True":
                    condition["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(new_status, PROGRESSING)
            set_condition(new_status, condition)
        elif deployment_timed_out(d, new_status, now):
            set_condition(new_status, new_condition(
                PROGRESSING, "False", TIMED_OUT, f"{subject} has timed out progressing.", now))
    failures = replica_failures(all_rss, new_rs)
    if failures:
        set_condition(new_status, failures[0])
    else:
        remove_condition(new_status, REPLICA_FAILURE)
    return new_status


def replica_failures(all_rss: Sequence[Object | None], new_rs: Object | None) -> list[Object]:
    """ReplicaFailure conditions of the ReplicaSets (the new one's first) as Deployment
    conditions."""
    def failures(rs: Mapping[str, Any]) -> list[Object]:
        return [{"type": c.get("type"), "status": c.get("status"),
                 "lastUpdateTime": c.get("lastTransitionTime"),
                 "lastTransitionTime": c.get("lastTransitionTime"),
                 "reason": c.get("reason"), "message": c.get("message")}
                for c in status(rs).get("conditions") or () if c.get("type") == REPLICA_FAILURE]
    if new_rs is not None:
        found = failures(new_rs)
        if found:
            return found
    return [c for rs in all_rss if rs is not None for c in failures(rs)]


def progress_recheck_after(d: Mapping[str, Any], new_status: Mapping[str, Any],
                           now: float | None = None) -> float | None:
    """Seconds until a Deployment that made no progress should be checked for its deadline
    (``requeueStuckDeployment``), or None when there is nothing to wait for."""
    deadline = progress_deadline(d)
    current = get_condition(status(d), PROGRESSING)
    if deadline is None or current is None:
        return None
    if deployment_complete(d, new_status) or current.get("reason") == TIMED_OUT:
        return None
    since = parse_time(current.get("lastUpdateTime"))
    if since is None:
        return None
    return since + deadline - (time.time() if now is None else now)


def same_status(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return _semantic(dict(a or {})) == _semantic(dict(b or {}))
