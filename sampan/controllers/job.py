"""The Job controller: runs pods until a Job's completions succeed or it fails, as upstream's
``pkg/controller/job``.

A Job's pods carry the ``batch.kubernetes.io/job-tracking`` finalizer from creation on. When a
pod finishes, its uid is first written to ``status.uncountedTerminatedPods``, then its finalizer
is removed, then the uid moves into the ``succeeded`` / ``failed`` counters: a crash between
any two steps neither loses nor double-counts a pod. Failed pods are replaced after an
exponential back-off (10 s doubling to 10 min upstream), until ``backoffLimit`` (or
``backoffLimitPerIndex``, a ``podFailurePolicy`` rule or ``activeDeadlineSeconds``) fails the
Job. As in Kubernetes 1.37, a finishing Job first gets the interim ``FailureTarget`` /
``SuccessCriteriaMet`` condition and its remaining pods are deleted; ``Failed`` / ``Complete``
follow once no pod is terminating.

Indexed Jobs give each pod a completion index (annotation and label
``batch.kubernetes.io/job-completion-index``, ``JOB_COMPLETION_INDEX`` from the downward API,
hostname ``<job>-<index>``) and report ``completedIndexes`` / ``failedIndexes`` as compressed
ranges ("1,3-5").
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampan.client.controller import Controller, Requeue, run_workers, wait_for_cache_sync
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import (
    OWNER_UID_INDEX,
    InformerFactory,
    SharedInformer,
    NAMESPACE_INDEX,
    index_by_owner_uid,
    object_key,
)
from sampan.client.rest import STRATEGIC_MERGE_PATCH, Client
from sampan.client.workqueue import ItemExponentialFailureRateLimiter, RateLimitingQueue
from sampan.controllers.util import (
    Expectations,
    Object,
    PodControl,
    claim_objects,
    controller_ref,
    is_pod_active,
    is_pod_ready,
    meta,
    new_controller_ref,
    now_rfc3339,
    parse_time,
    pod_condition,
    pod_from_template,
    pod_phase,
    pods_to_delete_first,
    release,
    selector_of,
    slow_start_batch,
)

log = logging.getLogger(__name__)

API_VERSION = "batch/v1"
KIND = "Job"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_FAILURE_COUNT_ANNOTATION = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT_ANNOTATION = "batch.kubernetes.io/job-index-ignored-failure-count"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_CONTROLLER_MANAGER = "kubernetes.io/job-controller"

DEFAULT_POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 600.0
# Pod events are folded into one sync per Job per period.
SYNC_BATCH_PERIOD = 1.0
DEFAULT_API_BACKOFF = 1.0
MAX_API_BACKOFF = 60.0
# Keeps status.uncountedTerminatedPods roughly below 20 KB, and big Jobs from starving others.
MAX_UNCOUNTED_PODS = 500
MAX_POD_CREATE_DELETE_PER_SYNC = 500
MAX_GENERATED_NAME_LENGTH = 58
INT32_MAX = 2 ** 31 - 1

COMPLETE, FAILED, SUSPENDED = "Complete", "Failed", "Suspended"
FAILURE_TARGET, SUCCESS_CRITERIA_MET = "FailureTarget", "SuccessCriteriaMet"

_ORPHANS_BY_NAMESPACE = "job-orphans-by-namespace"


# -- completion indexes ------------------------------------------------------------------------

Interval = tuple[int, int]  # first, last (inclusive)


def parse_indexes(text: str | None, completions: int) -> list[Interval]:
    """"1,3-5" → [(1, 1), (3, 5)], ignoring corrupt parts and indexes ≥ ``completions``."""
    result: list[Interval] = []
    for part in (text or "").split(",") if text else ():
        limits = part.split("-")
        try:
            first = int(limits[0])
            last = int(limits[1]) if len(limits) > 1 else first
        except ValueError:
            log.info("corrupted indexes interval %r, ignoring", part)
            continue
        if first >= completions:
            break
        last = min(last, completions - 1)
        if result and result[-1][1] == first - 1:
            result[-1] = (result[-1][0], last)
        else:
            result.append((first, last))
    return result


def format_indexes(intervals: Iterable[Interval]) -> str:
    """[(1, 1), (3, 5), (7, 8)] → "1,3-5,7,8" (a pair is written as two numbers)."""
    parts = []
    for first, last in intervals:
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}")
    return ",".join(parts)


def merge_intervals(a: list[Interval], b: list[Interval]) -> list[Interval]:
    result: list[Interval] = []
    for first, last in sorted(a + b):
        if result and first <= result[-1][1] + 1:
            if last > result[-1][1]:
                result[-1] = (result[-1][0], last)
        else:
            result.append((first, last))
    return result


def with_indexes(intervals: list[Interval], indexes: Iterable[int]) -> list[Interval]:
    return merge_intervals(intervals, [(i, i) for i in sorted(set(indexes))])


def intervals_total(intervals: Iterable[Interval]) -> int:
    return sum(last - first + 1 for first, last in intervals)


def intervals_have(intervals: list[Interval] | None, index: int) -> bool:
    if not intervals:
        return False
    at = bisect.bisect_left(intervals, index, key=lambda iv: iv[1])
    return at < len(intervals) and intervals[at][0] <= index


def completion_index(pod: Mapping[str, Any]) -> int | None:
    value = (meta(pod).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    try:
        index = int(value) if value is not None else -1
    except ValueError:
        return None
    return index if index >= 0 else None


def _int_annotation(pod: Mapping[str, Any], key: str) -> int:
    try:
        value = int((meta(pod).get("annotations") or {}).get(key, 0))
    except (TypeError, ValueError):
        return 0
    return value if 0 <= value <= INT32_MAX else 0


def index_failure_count(pod: Mapping[str, Any]) -> int:
    return _int_annotation(pod, INDEX_FAILURE_COUNT_ANNOTATION)


def index_absolute_failure_count(pod: Mapping[str, Any]) -> int:
    return index_failure_count(pod) + _int_annotation(pod, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION)


def pod_generate_name_with_index(job_name: str, index: int) -> str:
    suffix = f"-{index}-"
    prefix = job_name + suffix
    if len(prefix) > MAX_GENERATED_NAME_LENGTH:
        prefix = prefix[:MAX_GENERATED_NAME_LENGTH - len(suffix)] + suffix
    return prefix


# -- pod failure policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyMatch:
    """What a failed pod means under a ``podFailurePolicy``."""

    fail_job_message: str | None = None
    count_failed: bool = True
    action: str | None = None


def match_pod_failure_policy(policy: Mapping[str, Any] | None,
                             pod: Mapping[str, Any]) -> PolicyMatch:
    """The first rule matching ``pod`` (a failed pod) decides (``matchPodFailurePolicy``)."""
    if policy is None:
        return PolicyMatch()
    status = pod.get("status") or {}
    pod_meta = meta(pod)
    for index, rule in enumerate(policy.get("rules") or ()):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            container = _match_exit_codes(status, rule["onExitCodes"])
            if container is None:
                continue
            if action == "FailJob":
                code = container["state"]["terminated"].get("exitCode")
                return PolicyMatch(
                    f"Container {container.get('name')} for pod {pod_meta.get('namespace')}/"
                    f"{pod_meta.get('name')} failed with exit code {code} matching FailJob rule "
                    f"at index {index}", True, action)
        elif rule.get("onPodConditions") is not None:
            condition = _match_pod_conditions(status, rule["onPodConditions"])
            if condition is None:
                continue
            if action == "FailJob":
                return PolicyMatch(
                    f"Pod {pod_meta.get('namespace')}/{pod_meta.get('name')} has condition "
                    f"{condition.get('type')} matching FailJob rule at index {index}", True, action)
        else:
            continue
        if action == "Ignore":
            return PolicyMatch(None, False, action)
        if action in ("Count", "FailIndex"):
            return PolicyMatch(None, True, action)
    return PolicyMatch()


def _match_exit_codes(status: Mapping[str, Any],
                      requirement: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in ("containerStatuses", "initContainerStatuses"):
        for container in status.get(key) or ():
            terminated = (container.get("state") or {}).get("terminated")
            if terminated is None:
                continue
            name = requirement.get("containerName")
            if name is not None and name != container.get("name"):
                continue
            code = terminated.get("exitCode") or 0
            if code == 0:
                continue
            values = requirement.get("values") or ()
            operator = requirement.get("operator")
            if (code in values) == (operator == "In") and operator in ("In", "NotIn"):
                return container
    return None


def _match_pod_conditions(status: Mapping[str, Any],
                          patterns: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    patterns = list(patterns)
    for condition in status.get("conditions") or ():
        for pattern in patterns:
            if (condition.get("type") == pattern.get("type")
                    and condition.get("status") == pattern.get("status", "True")):
                return condition
    return None


# -- success policy ----------------------------------------------------------------------------


def match_success_policy(policy: Mapping[str, Any] | None, completions: int,
                         succeeded: list[Interval]) -> str | None:
    """The message of the first rule the succeeded indexes satisfy, or None."""
    if policy is None or not succeeded:
        return None
    for index, rule in enumerate(policy.get("rules") or ()):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"], completions)
            if required and _succeeded_indexes_rule_met(required, succeeded, count):
                return f"Matched rules at index {index}"
        elif count is not None and intervals_total(succeeded) >= count:
            return f"Matched rules at index {index}"
    return None


def _succeeded_indexes_rule_met(required: list[Interval], succeeded: list[Interval],
                                count: int | None) -> bool:
    contained = 0
    for first, last in required:
        for s_first, s_last in succeeded:
            overlap = min(last, s_last) - max(first, s_first) + 1
            if overlap > 0:
                contained += overlap
    return contained == intervals_total(required) or (count is not None and contained >= count)


# -- pod back-off ------------------------------------------------------------------------------


@dataclass
class BackoffRecord:
    """Consecutive pod failures since the last success, for the pod re-creation back-off."""

    failures_after_last_success: int = 0
    last_failure_time: float | None = None


def pod_finished_time(pod: Mapping[str, Any]) -> float:
    """When the pod finished: its containers' last finishedAt, else when it stopped being
    Ready, else its deletion (less the grace period), else its creation."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    finished = [parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                for s in statuses]
    if finished and all(t is not None for t in finished):
        return max(finished)  # type: ignore[type-var]
    ready = pod_condition(pod, "Ready")
    if ready is not None and ready.get("status") == "False":
        since = parse_time(ready.get("lastTransitionTime"))
        if since is not None:
            return since
    deleted = parse_time(meta(pod).get("deletionTimestamp"))
    if deleted is not None:
        return deleted - (meta(pod).get("deletionGracePeriodSeconds") or 0)
    return parse_time(meta(pod).get("creationTimestamp")) or 0.0


def next_backoff_record(old: BackoffRecord | None, new_succeeded: list[Object],
                        new_failed: list[Object]) -> BackoffRecord:
    record = BackoffRecord(**vars(old)) if old is not None else BackoffRecord()
    failed_times = sorted(pod_finished_time(p) for p in new_failed)
    if not new_succeeded:
        if failed_times:
            record.failures_after_last_success += len(failed_times)
            record.last_failure_time = failed_times[-1]
        return record
    last_success = max(pod_finished_time(p) for p in new_succeeded)
    after = [t for t in failed_times if t > last_success]
    return BackoffRecord(len(after), after[-1] if after else None)


def remaining_backoff(now: float, base: float, maximum: float, failures: int,
                      last_failure_time: float | None) -> float:
    """Seconds until a pod may be re-created after ``failures`` consecutive failures."""
    if failures == 0 or last_failure_time is None:
        return 0.0
    delay = min(base * 2 ** min(failures - 1, 62), maximum)
    return max(0.0, delay - (now - last_failure_time))


# -- job predicates ----------------------------------------------------------------------------


def find_condition(job: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_:
            return condition
    return None


def _condition_true(job: Mapping[str, Any], type_: str) -> bool:
    condition = find_condition(job, type_)
    return condition is not None and condition.get("status") == "True"


def finished_type(job: Mapping[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` when the Job has finished."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in (COMPLETE, FAILED) and condition.get("status") == "True":
            return condition["type"]
    return None


def is_finished(job: Mapping[str, Any]) -> bool:
    return finished_type(job) is not None


def is_indexed(job: Mapping[str, Any]) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def is_suspended(job: Mapping[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def has_backoff_limit_per_index(job: Mapping[str, Any]) -> bool:
    return (job.get("spec") or {}).get("backoffLimitPerIndex") is not None


def managed_elsewhere(job: Mapping[str, Any]) -> bool:
    manager = (job.get("spec") or {}).get("managedBy")
    return manager is not None and manager != JOB_CONTROLLER_MANAGER


def only_replace_failed_pods(job: Mapping[str, Any]) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def has_tracking_finalizer(pod: Mapping[str, Any]) -> bool:
    return TRACKING_FINALIZER in (meta(pod).get("finalizers") or ())


def is_pod_failed(pod: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Failed, or (unless only failed pods are replaced) deleted before it succeeded."""
    phase = pod_phase(pod)
    if phase == "Failed":
        return True
    if only_replace_failed_pods(job):
        return False
    return bool(meta(pod).get("deletionTimestamp")) and phase != "Succeeded"


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool(meta(pod).get("deletionTimestamp")) \
        and pod_phase(pod) not in ("Succeeded", "Failed")


def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> dict[str, Any]:
    stamp = now_rfc3339(now)
    return {"type": type_, "status": status, "lastProbeTime": stamp,
            "lastTransitionTime": stamp, "reason": reason, "message": message}


def ensure_condition(conditions: list[dict[str, Any]], type_: str, status: str, reason: str,
                     message: str, now: float) -> bool:
    """Set the condition of ``type_``; a missing condition is only added when not False.
    Whether anything changed (``ensureJobConditionStatus``)."""
    for i, condition in enumerate(conditions):
        if condition.get("type") != type_:
            continue
        if (condition.get("status"), condition.get("reason", ""), condition.get("message", "")) \
                == (status, reason, message):
            return False
        conditions[i] = new_condition(type_, status, reason, message, now)
        return True
    if status == "False":
        return False
    conditions.append(new_condition(type_, status, reason, message, now))
    return True


def past_backoff_limit_on_failure(job: Mapping[str, Any], pods: Iterable[Object]) -> bool:
    """With ``restartPolicy: OnFailure`` container restarts count against the back-off limit."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for pod in pods:
        if pod_phase(pod) in ("Running", "Pending"):
            status = pod.get("status") or {}
            for key in ("initContainerStatuses", "containerStatuses"):
                restarts += sum(s.get("restartCount") or 0 for s in status.get(key) or ())
    limit = spec.get("backoffLimit", 6)
    return restarts > 0 if limit == 0 else restarts >= limit


def _uid(obj: Mapping[str, Any]) -> str:
    return meta(obj).get("uid", "")


def _index_order(pod: Mapping[str, Any]) -> int:
    index = completion_index(pod)
    return -1 if index is None else index


def _is_not_found(error: BaseException) -> bool:
    return isinstance(error, ApiError) and error.not_found


def _namespace_terminating(error: BaseException) -> bool:
    return isinstance(error, ApiError) and error.code == 403 and (
        "being terminated" in error.message
        or any(c.get("reason") == "NamespaceTerminating"
               for c in error.details.get("causes") or ()))


# -- one sync ----------------------------------------------------------------------------------


@dataclass
class _Sync:
    """What one sync of a Job has learnt so far (``syncJobCtx``)."""

    key: str
    job: Object
    pods: list[Object]
    active: list[Object]
    ready: int
    terminating: int
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    expected_removals: set[str]
    succeeded: int = 0
    failed: int = 0
    finished: dict[str, Any] | None = None
    prev_succeeded_indexes: list[Interval] = field(default_factory=list)
    succeeded_indexes: list[Interval] = field(default_factory=list)
    failed_indexes: list[Interval] | None = None
    backoff: BackoffRecord = field(default_factory=BackoffRecord)
    delayed_deletion: dict[int, Object] = field(default_factory=dict)

    @property
    def spec(self) -> dict[str, Any]:
        return self.job["spec"]

    @property
    def status(self) -> dict[str, Any]:
        return self.job["status"]

    @property
    def completions(self) -> int:
        return self.spec.get("completions") or 0

    def valid_index(self, pod: Mapping[str, Any]) -> int | None:
        index = completion_index(pod)
        return index if index is not None and index < self.completions else None

    def uncounted_pods(self, uncounted: set[str], keep: Callable[[Object], bool]) -> list[Object]:
        """Pods with a tracking finalizer not yet counted (``getValidPodsWithFilter``)."""
        result = []
        for pod in self.pods:
            uid = _uid(pod)
            if not has_tracking_finalizer(pod) or uid in uncounted or uid in self.expected_removals:
                continue
            if is_indexed(self.job) and self.valid_index(pod) is None:
                continue
            if keep(pod):
                result.append(pod)
        return result


# -- the controller ----------------------------------------------------------------------------


class JobController(Controller):
    """Reconciles Jobs with their pods."""

    name = "job-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 5,
                 recorder: EventRecorder | None = None,
                 pod_failure_backoff: float = DEFAULT_POD_FAILURE_BACKOFF,
                 max_pod_failure_backoff: float = MAX_POD_FAILURE_BACKOFF,
                 sync_batch_period: float = SYNC_BATCH_PERIOD,
                 api_backoff: float = DEFAULT_API_BACKOFF,
                 now: Callable[[], float] = time.time):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.queue = RateLimitingQueue(
            ItemExponentialFailureRateLimiter(api_backoff, MAX_API_BACKOFF), name="job")
        self.orphan_queue: RateLimitingQueue[str] = RateLimitingQueue(
            ItemExponentialFailureRateLimiter(api_backoff, MAX_API_BACKOFF), name="job_orphan_pod")
        self.pod_failure_backoff = pod_failure_backoff
        self.max_pod_failure_backoff = max_pod_failure_backoff
        self.sync_batch_period = sync_batch_period
        self.now = now
        self.pod_control = PodControl(client, self.recorder)
        self.expectations = Expectations()
        self.finalizer_expectations: dict[str, set[str]] = {}
        self.backoffs: dict[str, BackoffRecord] = {}

        self.jobs: SharedInformer = informers.informer(API_VERSION, "jobs")
        self.pods: SharedInformer = informers.informer(
            "v1", "pods", indexers={OWNER_UID_INDEX: index_by_owner_uid,
                                    _ORPHANS_BY_NAMESPACE: _orphan_namespace})
        self.jobs.add_event_handler(on_add=self._job_added, on_update=self._job_updated,
                                    on_delete=self._job_deleted)
        self.pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                    on_delete=lambda pod: self._pod_deleted(pod, final=True))

    def watched_informers(self) -> list[SharedInformer]:
        return [self.jobs, self.pods]

    async def run(self) -> None:
        await wait_for_cache_sync(self.name, self.watched_informers())
        log.info("%s: caches synced; starting %d workers", self.name, self.workers)
        await asyncio.gather(
            run_workers(self.name, self.queue, self.reconcile, self.workers),
            run_workers(f"{self.name} orphan pods", self.orphan_queue, self.sync_orphan_pod, 1))

    # -- event handlers (enqueue only) ---------------------------------------------------------
    def _enqueue_batched(self, key: str) -> None:
        self.queue.add_after(key, self.sync_batch_period)

    def _resolve(self, namespace: str, ref: Mapping[str, Any]) -> Object | None:
        if ref.get("kind") != KIND:
            return None
        job = self.jobs.indexer.get(f"{namespace}/{ref.get('name')}")
        return job if job is not None and _uid(job) == ref.get("uid") else None

    def _jobs_selecting(self, pod: Object) -> list[Object]:
        labels = meta(pod).get("labels") or {}
        matching = []
        for job in self.jobs.indexer.by_index(NAMESPACE_INDEX, meta(pod).get("namespace") or ""):
            try:
                if selector_of(job).matches(labels):
                    matching.append(job)
            except Exception:  # an unparseable selector selects nothing
                continue
        return matching

    def _job_added(self, job: Object) -> None:
        self.enqueue(job)

    def _job_updated(self, old: Object, new: Object) -> None:
        key = object_key(new)
        if meta(old).get("generation") == meta(new).get("generation"):
            self._enqueue_batched(key)
        else:
            self.queue.add(key)
        if is_finished(new):
            self._cleanup_pod_finalizers(new)
        start = parse_time((new.get("status") or {}).get("startTime"))
        deadline = (new.get("spec") or {}).get("activeDeadlineSeconds")
        if start is not None and deadline is not None \
                and (old.get("spec") or {}).get("activeDeadlineSeconds") != deadline:
            self.queue.add_after(key, deadline - (self.now() - start))

    def _job_deleted(self, job: Object) -> None:
        self.enqueue(job)
        self._cleanup_pod_finalizers(job)

    def _cleanup_pod_finalizers(self, job: Object) -> None:
        for pod in self.pods.indexer.by_index(OWNER_UID_INDEX, _uid(job)):
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") == _uid(job) and has_tracking_finalizer(pod):
                self.orphan_queue.add(object_key(pod))

    def _pod_added(self, pod: Object) -> None:
        if meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod, final=False)
            return
        ref = controller_ref(pod)
        if ref is not None:
            job = self._resolve(meta(pod).get("namespace") or "", ref)
            if job is not None:
                key = object_key(job)
                self.expectations.creation_observed(key)
                self._enqueue_batched(key)
            return
        if has_tracking_finalizer(pod):
            self.orphan_queue.add(object_key(pod))
        for job in self._jobs_selecting(pod):
            self._enqueue_batched(object_key(job))

    def _pod_updated(self, old: Object, new: Object) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        if meta(new).get("deletionTimestamp"):
            self._pod_deleted(new, final=False)
            return
        namespace = meta(new).get("namespace") or ""
        finalizer_removed = not has_tracking_finalizer(new)
        new_ref, old_ref = controller_ref(new), controller_ref(old)
        ref_changed = new_ref != old_ref
        for ref in ([old_ref] if ref_changed and old_ref is not None else []) + \
                   ([new_ref] if new_ref is not None else []):
            job = self._resolve(namespace, ref)
            if job is None:
                continue
            key = object_key(job)
            if finalizer_removed:
                self._finalizer_removal_observed(key, _uid(new))
            self._enqueue_batched(key)
        if new_ref is not None:
            return
        if has_tracking_finalizer(new):
            self.orphan_queue.add(object_key(new))
        if ref_changed or meta(old).get("labels") != meta(new).get("labels"):
            for job in self._jobs_selecting(new):
                self._enqueue_batched(object_key(job))

    def _pod_deleted(self, pod: Object, *, final: bool) -> None:
        ref = controller_ref(pod)
        has_finalizer = has_tracking_finalizer(pod)
        job = None if ref is None else self._resolve(meta(pod).get("namespace") or "", ref)
        if job is None or is_finished(job):
            if has_finalizer:
                self.orphan_queue.add(object_key(pod))
            return
        key = object_key(job)
        self.expectations.deletion_observed(key, object_key(pod))
        if final or not has_finalizer:
            self._finalizer_removal_observed(key, _uid(pod))
        self._enqueue_batched(key)

    def _finalizer_removal_observed(self, key: str, uid: str) -> None:
        expected = self.finalizer_expectations.get(key)
        if expected is not None:
            expected.discard(uid)

    # -- orphan pods -------------------------------------------------------------------------
    async def sync_orphan_pod(self, key: str) -> None:
        """Remove the tracking finalizer from a pod no unfinished Job of ours controls."""
        pod = self.pods.indexer.get(key)
        if pod is None or not has_tracking_finalizer(pod):
            return
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != KIND or ref.get("apiVersion") != API_VERSION:
                return
            job = self._resolve(meta(pod).get("namespace") or "", ref)
            if job is not None and (managed_elsewhere(job) or not is_finished(job)):
                return
        await self._remove_finalizer(pod)

    async def _remove_finalizer(self, pod: Object) -> None:
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}
        try:
            await self.client.patch("v1", "pods", meta(pod)["name"], patch,
                                    namespace=meta(pod).get("namespace"),
                                    patch_type=STRATEGIC_MERGE_PATCH)
        except ApiError as e:
            if not e.not_found:
                raise

    # -- reconcile ---------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        job = self.jobs.indexer.get(key)
        if job is None:
            self.expectations.forget(key)
            self.finalizer_expectations.pop(key, None)
            self.backoffs.pop(key, None)
            return
        if managed_elsewhere(job):
            return
        if is_finished(job):
            self.backoffs.pop(key, None)
            return
        job = copy.deepcopy(job)
        job.setdefault("apiVersion", API_VERSION)
        job.setdefault("kind", KIND)
        try:
            await self._sync(key, job)
        except ApiError as e:
            if e.conflict:
                raise Requeue(f"job {key} changed while syncing") from e
            raise

    async def _sync(self, key: str, job: Object) -> None:
        now = self.now()
        spec = job.setdefault("spec", {})
        status = job.setdefault("status", {})
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = uncounted
        # Read the expectations before the pods, so that a pod created meanwhile cannot slip in.
        satisfied = self.expectations.satisfied(key)
        pods = await self._pods_for_job(job)
        active = [p for p in pods if is_pod_active(p)]
        ctx = _Sync(key=key, job=job, pods=pods, active=active,
                    ready=sum(1 for p in active if is_pod_ready(p)),
                    terminating=sum(1 for p in pods if is_terminating(p)),
                    uncounted_succeeded=set(uncounted.get("succeeded") or ()),
                    uncounted_failed=set(uncounted.get("failed") or ()),
                    expected_removals=set(self.finalizer_expectations.get(key, ())))
        n_active = len(active)
        policy = spec.get("podFailurePolicy")
        new_succeeded = ctx.uncounted_pods(ctx.uncounted_succeeded,
                                           lambda p: pod_phase(p) == "Succeeded")
        new_failed = ctx.uncounted_pods(ctx.uncounted_failed, lambda p: is_pod_failed(p, job))
        counted_failed = [p for p in new_failed if match_pod_failure_policy(policy, p).count_failed]
        ctx.succeeded = (status.get("succeeded", 0) + len(new_succeeded)
                         + len(ctx.uncounted_succeeded))
        ctx.failed = status.get("failed", 0) + len(counted_failed) + len(ctx.uncounted_failed)
        start_changed = False
        if not status.get("startTime") and not is_suspended(job):
            status["startTime"] = now_rfc3339(now)
            start_changed = True
        ctx.backoff = next_backoff_record(self.backoffs.get(key), new_succeeded, new_failed)

        self._decide_finished(ctx, now)
        if is_indexed(job):
            self._track_indexes(ctx, now)

        manage_error: BaseException | None = None
        suspend_changed = False
        if ctx.finished is not None:
            deleted_ready, deleted, manage_error = await self._delete_active_pods(job, ctx.active)
            if deleted != n_active or not satisfied:
                ctx.finished = None  # pods or finalizers we have not seen yet may remain
            n_active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            managed = satisfied and not meta(job).get("deletionTimestamp")
            if managed:
                n_active, manage_error = await self._manage(ctx, now)
            completions = spec.get("completions")
            if completions is None:
                complete = ctx.succeeded > 0 and n_active == 0
            else:
                complete = ctx.succeeded >= completions and n_active == 0
            if complete:
                ctx.finished = new_condition(SUCCESS_CRITERIA_MET, "True", "CompletionsReached",
                                             "Reached expected number of succeeded pods", now)
            elif managed:
                suspend_changed = self._update_suspended(job, now)

        needs_update = (suspend_changed or start_changed or n_active != status.get("active", 0)
                        or ctx.ready != status.get("ready")
                        or ctx.terminating != status.get("terminating"))
        status["active"] = n_active
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self._track_status(ctx, needs_update, now)
        if manage_error is not None:
            raise manage_error

    def _decide_finished(self, ctx: _Sync, now: float) -> None:
        """The terminal (or interim) condition the Job has reached, if any."""
        job, spec, key = ctx.job, ctx.spec, ctx.key
        met = find_condition(job, SUCCESS_CRITERIA_MET)
        if met is not None and met.get("status") == "True":
            ctx.finished = met
            return
        target = find_condition(job, FAILURE_TARGET)
        if target is not None and target.get("status") == "True":
            ctx.finished = new_condition(FAILED, "True", target.get("reason", ""),
                                         target.get("message", ""), now)
            return
        message = self._fail_job_message(job, ctx.pods)
        if message is not None:
            ctx.finished = new_condition(FAILURE_TARGET, "True", "PodFailurePolicy", message, now)
            return
        if ctx.failed > spec.get("backoffLimit", 6) or past_backoff_limit_on_failure(job, ctx.pods):
            ctx.finished = new_condition(FAILURE_TARGET, "True", "BackoffLimitExceeded",
                                         "Job has reached the specified backoff limit", now)
            return
        deadline = spec.get("activeDeadlineSeconds")
        start = parse_time(ctx.status.get("startTime"))
        if deadline is None or start is None or is_suspended(job):
            return
        if now - start >= deadline:
            ctx.finished = new_condition(FAILURE_TARGET, "True", "DeadlineExceeded",
                                         "Job was active longer than specified deadline", now)
        else:
            self.queue.add_after(key, deadline - (now - start))

    @staticmethod
    def _fail_job_message(job: Object, pods: list[Object]) -> str | None:
        policy = (job.get("spec") or {}).get("podFailurePolicy")
        if policy is None:
            return None
        for pod in pods:
            if is_pod_failed(pod, job):
                message = match_pod_failure_policy(policy, pod).fail_job_message
                if message is not None:
                    return message
        return None

    def _track_indexes(self, ctx: _Sync, now: float) -> None:
        job, completions = ctx.job, ctx.completions
        ctx.prev_succeeded_indexes = parse_indexes(ctx.status.get("completedIndexes"), completions)
        ctx.succeeded_indexes = with_indexes(ctx.prev_succeeded_indexes, (
            ix for p in ctx.pods if pod_phase(p) == "Succeeded" and has_tracking_finalizer(p)
            and (ix := ctx.valid_index(p)) is not None))
        ctx.succeeded = intervals_total(ctx.succeeded_indexes)
        if has_backoff_limit_per_index(job):
            previous = ctx.status.get("failedIndexes")
            prev_failed = parse_indexes(previous, completions) if previous is not None else []
            ctx.failed_indexes = with_indexes(prev_failed, (
                ix for p in ctx.pods if has_tracking_finalizer(p)
                and (ix := ctx.valid_index(p)) is not None and self._index_failed(job, p)))
            failed_total = intervals_total(ctx.failed_indexes)
            if ctx.finished is None:
                max_failed = ctx.spec.get("maxFailedIndexes")
                if max_failed is not None and failed_total > max_failed:
                    ctx.finished = new_condition(
                        FAILURE_TARGET, "True", "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes", now)
                elif failed_total > 0 and failed_total + ctx.succeeded >= completions:
                    ctx.finished = new_condition(FAILURE_TARGET, "True", "FailedIndexes",
                                                 "Job has failed indexes", now)
            ctx.delayed_deletion = self._pods_with_delayed_deletion(ctx)
        if ctx.finished is None:
            message = match_success_policy(ctx.spec.get("successPolicy"), completions,
                                           ctx.succeeded_indexes)
            if message is not None:
                ctx.finished = new_condition(SUCCESS_CRITERIA_MET, "True", "SuccessPolicy",
                                             message, now)

    @staticmethod
    def _index_failed(job: Object, pod: Object) -> bool:
        if not is_pod_failed(pod, job):
            return False
        match = match_pod_failure_policy((job.get("spec") or {}).get("podFailurePolicy"), pod)
        if match.action == "FailIndex":
            return True
        return match.count_failed and \
            index_failure_count(pod) >= (job.get("spec") or {}).get("backoffLimitPerIndex", 0)

    @staticmethod
    def _pods_with_delayed_deletion(ctx: _Sync) -> dict[int, Object]:
        """Per index, the last failed pod, kept until its replacement carries its failure count."""
        active_indexes = {ix for p in ctx.active if (ix := completion_index(p)) is not None}
        delayed: dict[int, Object] = {}
        for pod in ctx.uncounted_pods(set(), lambda p: is_pod_failed(p, ctx.job)):
            ix = completion_index(pod)
            if ix is None or intervals_have(ctx.succeeded_indexes, ix) \
                    or intervals_have(ctx.failed_indexes, ix) or ix in active_indexes:
                continue
            last = delayed.get(ix)
            if last is None or (
                    index_absolute_failure_count(last) <= index_absolute_failure_count(pod)
                    and pod_finished_time(pod) >= pod_finished_time(last)):
                delayed[ix] = pod
        return delayed

    def _update_suspended(self, job: Object, now: float) -> bool:
        conditions = job["status"].setdefault("conditions", [])
        if is_suspended(job):
            changed = ensure_condition(conditions, SUSPENDED, "True", "JobSuspended",
                                       "Job suspended", now)
            if changed:
                self.recorder.event(job, NORMAL, "Suspended", "Job suspended")
            return changed
        changed = ensure_condition(conditions, SUSPENDED, "False", "JobResumed", "Job resumed", now)
        if changed:
            self.recorder.event(job, NORMAL, "Resumed", "Job resumed")
            # activeDeadlineSeconds counts the time a Job is continuously active.
            job["status"]["startTime"] = now_rfc3339(now)
        if not conditions:
            job["status"].pop("conditions", None)
        return changed

    # -- pods of a job -----------------------------------------------------------------------
    async def _pods_for_job(self, job: Object) -> list[Object]:
        """Pods the Job controls, after adopting matching orphans and releasing pods that no
        longer match (``getPodsForJob``). Adopted pods get the tracking finalizer too."""
        try:
            selector = selector_of(job)
        except Exception as e:
            raise ValueError(f"couldn't convert Job selector: {e}") from None
        namespace = meta(job).get("namespace") or ""
        candidates = self.pods.indexer.by_index(OWNER_UID_INDEX, _uid(job)) + \
            self.pods.indexer.by_index(_ORPHANS_BY_NAMESPACE, namespace)
        claim = claim_objects(job, selector, candidates)
        owned = list(claim.owned)
        if claim.adopt and await self._can_adopt(job):
            for pod in claim.adopt:
                adopted = await self._adopt(job, pod)
                if adopted is not None:
                    owned.append(adopted)
        for pod in claim.release:
            await release(self.client, "v1", "pods", pod, _uid(job))
        return owned

    async def _can_adopt(self, job: Object) -> bool:
        """Adopt only if a fresh read says the Job is the same and not being deleted."""
        try:
            fresh = await self.client.get(API_VERSION, "jobs", meta(job)["name"],
                                          namespace=meta(job).get("namespace"))
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return _uid(fresh) == _uid(job) and not meta(fresh).get("deletionTimestamp")

    async def _adopt(self, job: Object, pod: Object) -> Object | None:
        pod_meta = meta(pod)
        ref = new_controller_ref(job, API_VERSION, KIND)
        refs = [r for r in pod_meta.get("ownerReferences") or () if r.get("uid") != ref["uid"]]
        finalizers = list(pod_meta.get("finalizers") or ())
        if TRACKING_FINALIZER not in finalizers:
            finalizers.append(TRACKING_FINALIZER)
        patch = {"metadata": {"ownerReferences": refs + [ref], "finalizers": finalizers,
                              "uid": pod_meta["uid"],
                              "resourceVersion": pod_meta.get("resourceVersion")}}
        try:
            return await self.client.patch("v1", "pods", pod_meta["name"], patch,
                                           namespace=pod_meta.get("namespace"))
        except ApiError as e:
            if e.not_found or e.code in (409, 422):
                return None
            raise

    # -- manage pods -------------------------------------------------------------------------
    async def _manage(self, ctx: _Sync, now: float) -> tuple[int, BaseException | None]:
        """Create or delete pods towards the wanted number of active pods (``manageJob``);
        the number now active and the first error."""
        job, spec, key = ctx.job, ctx.spec, ctx.key
        active = len(ctx.active)
        if is_suspended(job):
            doomed = self._active_pods_for_removal(job, ctx.active, active)
            ready, removed, error = await self._delete_job_pods(key, job, doomed)
            ctx.terminating += removed
            ctx.ready -= ready
            return active - removed, error

        parallelism = spec.get("parallelism", 1)
        completions = spec.get("completions")
        if completions is None:
            wanted = active if ctx.succeeded > 0 else parallelism
        else:
            wanted = max(0, min(completions - ctx.succeeded, parallelism))

        doomed = self._active_pods_for_removal(job, ctx.active, max(0, active - wanted))
        doomed = doomed[:MAX_POD_CREATE_DELETE_PER_SYNC]
        if doomed:
            # Deleting takes precedence; creating waits for the next sync.
            ready, removed, error = await self._delete_job_pods(key, job, doomed)
            ctx.terminating += removed
            ctx.ready -= ready
            return active - removed, error

        terminating = ctx.terminating if only_replace_failed_pods(job) else 0
        diff = wanted - terminating - active
        if diff <= 0:
            return active, None
        if not has_backoff_limit_per_index(job):
            remaining = remaining_backoff(now, self.pod_failure_backoff,
                                          self.max_pod_failure_backoff,
                                          ctx.backoff.failures_after_last_success,
                                          ctx.backoff.last_failure_time)
            if remaining > 0:
                self.queue.add_after(key, max(remaining, self.sync_batch_period))
                return active, None
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int] = []
        if is_indexed(job):
            indexes = self._first_pending_indexes(ctx, diff)
            if has_backoff_limit_per_index(job):
                indexes, remaining = self._indexes_ready_to_create(ctx, indexes, now)
                if remaining > 0:
                    self.queue.add_after(key, max(remaining, self.sync_batch_period))
                    return active, None
            diff = len(indexes)
            if diff == 0:
                return active, None
        created, error = await self._create_pods(ctx, diff, indexes)
        return active + created, error

    def _first_pending_indexes(self, ctx: _Sync, count: int) -> list[int]:
        """The ``count`` lowest indexes neither succeeded, failed nor running."""
        busy = with_indexes(ctx.succeeded_indexes,
                            (ix for p in ctx.active if (ix := completion_index(p)) is not None))
        if only_replace_failed_pods(ctx.job):
            busy = with_indexes(busy, (ix for p in ctx.pods if is_terminating(p)
                                       and (ix := completion_index(p)) is not None))
        if ctx.failed_indexes:
            busy = merge_intervals(busy, ctx.failed_indexes)
        result: list[int] = []
        candidate = 0
        for first, last in busy + [(ctx.completions, ctx.completions)]:
            while candidate < min(first, ctx.completions) and len(result) < count:
                result.append(candidate)
                candidate += 1
            candidate = max(candidate, last + 1)
            if len(result) >= count or candidate >= ctx.completions:
                break
        return result

    def _indexes_ready_to_create(self, ctx: _Sync, indexes: list[int],
                                 now: float) -> tuple[list[int], float]:
        ready: list[int] = []
        soonest: float | None = None
        for ix in indexes:
            last_failed = ctx.delayed_deletion.get(ix)
            remaining = 0.0 if last_failed is None else remaining_backoff(
                now, self.pod_failure_backoff, self.max_pod_failure_backoff,
                index_absolute_failure_count(last_failed) + 1, pod_finished_time(last_failed))
            if remaining == 0:
                ready.append(ix)
            elif soonest is None or remaining < soonest:
                soonest = remaining
        return (ready, 0.0) if ready else ([], soonest or 0.0)

    @staticmethod
    def _active_pods_for_removal(job: Object, pods: list[Object], at_least: int) -> list[Object]:
        """Pods to delete: for Indexed Jobs, duplicates and pods without a valid index first;
        then the pods upstream ranks first for scale-down."""
        remove: list[Object] = []
        left: list[Object] = pods
        if is_indexed(job):
            completions = (job.get("spec") or {}).get("completions") or 0
            left = []
            by_index: dict[int, list[Object]] = {}
            for pod in pods:
                ix = completion_index(pod)
                if ix is None or ix >= completions:
                    remove.append(pod)
                else:
                    by_index.setdefault(ix, []).append(pod)
            for ix in sorted(by_index):
                group = pods_to_delete_first(by_index[ix])
                remove.extend(group[:-1])
                left.append(group[-1])
        if len(remove) < at_least:
            remove.extend(pods_to_delete_first(left)[:at_least - len(remove)])
        return remove

    async def _create_pods(self, ctx: _Sync, count: int,
                           indexes: list[int]) -> tuple[int, BaseException | None]:
        job, key = ctx.job, ctx.key
        template = copy.deepcopy(ctx.spec.get("template") or {})
        if is_indexed(job):
            _add_completion_index_env(template)
        template_meta = template.setdefault("metadata", {})
        finalizers = list(template_meta.get("finalizers") or ())
        if TRACKING_FINALIZER not in finalizers:
            finalizers.append(TRACKING_FINALIZER)
        template_meta["finalizers"] = finalizers
        ref = new_controller_ref(job, API_VERSION, KIND)
        pending = iter(indexes)

        def create_one():
            index = next(pending, None)
            return self._create_pod(ctx, template, ref, index)

        self.expectations.expect(key, adds=count)
        created, errors = await slow_start_batch(count, create_one)
        if created < count:
            self.expectations.creation_failed(key, count - created)
        errors = [e for e in errors if not _namespace_terminating(e)]
        return created, errors[0] if errors else None

    async def _create_pod(self, ctx: _Sync, template: Object, ref: Object,
                          index: int | None) -> None:
        job_name = meta(ctx.job)["name"]
        generate_name = None
        if index is not None:
            template = copy.deepcopy(template)
            template_meta = template.setdefault("metadata", {})
            template_meta.setdefault("annotations", {})[COMPLETION_INDEX_ANNOTATION] = str(index)
            template_meta.setdefault("labels", {})[COMPLETION_INDEX_ANNOTATION] = str(index)
            template.setdefault("spec", {})["hostname"] = f"{job_name}-{index}"
            generate_name = pod_generate_name_with_index(job_name, index)
            if has_backoff_limit_per_index(ctx.job):
                _add_index_failure_counts(template_meta, ctx.job, ctx.delayed_deletion.get(index))
        pod = pod_from_template(template, ctx.job, ref, generate_name=generate_name)
        await self.pod_control.create_pod(ctx.job, pod)

    async def _delete_job_pods(self, key: str, job: Object,
                               pods: list[Object]) -> tuple[int, int, BaseException | None]:
        """Delete pods the Job no longer wants, uncounted: their finalizer goes first
        (``deleteJobPods``). Returns (ready deleted, deleted, first error)."""
        if not pods:
            return 0, 0, None
        self.expectations.expect(key, deleting=[object_key(p) for p in pods])

        async def one(pod: Object) -> None:
            try:
                await self._remove_finalizer(pod)
                gone_already = not await self.pod_control.delete_pod(job, pod)
            except Exception:
                gone_already = True
                raise
            finally:
                if gone_already:  # the informer will not see this deletion
                    self.expectations.deletion_observed(key, object_key(pod))

        return await self._delete_each(pods, one)

    async def _delete_active_pods(self, job: Object,
                                  pods: list[Object]) -> tuple[int, int, BaseException | None]:
        """Delete the pods of a finishing Job, keeping their finalizers so they are counted."""
        return await self._delete_each(pods, lambda pod: self.pod_control.delete_pod(job, pod))

    @staticmethod
    async def _delete_each(pods: list[Object], delete) -> tuple[int, int, BaseException | None]:
        results = await asyncio.gather(*(delete(p) for p in pods), return_exceptions=True)
        deleted = ready = 0
        errors: list[BaseException] = []
        for pod, result in zip(pods, results):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException) and not _is_not_found(result):
                errors.append(result)
                continue
            deleted += 1
            ready += is_pod_ready(pod)
        return ready, deleted, errors[0] if errors else None

    # -- status tracking ---------------------------------------------------------------------
    async def _track_status(self, ctx: _Sync, needs_flush: bool, now: float) -> None:
        """Count finished pods through ``uncountedTerminatedPods``, remove their finalizers,
        and finish the Job when it can (``trackJobStatusAndRemoveFinalizers``)."""
        job = ctx.job
        indexed = is_indexed(job)
        pods = sorted(ctx.pods, key=_index_order) if indexed else ctx.pods
        with_finalizer = {_uid(p) for p in pods
                          if has_tracking_finalizer(p) and _uid(p) not in ctx.expected_removals}
        if _count_uncounted_without_finalizers(ctx.status, with_finalizer):
            needs_flush = True
        uncounted = ctx.status["uncountedTerminatedPods"]
        policy = ctx.spec.get("podFailurePolicy")
        to_remove: list[Object] = []
        new_succeeded_indexes: list[int] = []
        reached_max = False
        for pod in pods:
            uid = _uid(pod)
            if not has_tracking_finalizer(pod) or uid in ctx.expected_removals:
                continue  # counted in an earlier sync
            failed = is_pod_failed(pod, job)
            if not self._can_remove_finalizer(ctx, pod, failed):
                continue
            to_remove.append(pod)
            if pod_phase(pod) == "Succeeded" and uid not in ctx.uncounted_failed:
                if indexed:
                    ix = ctx.valid_index(pod)
                    if ix is not None and not intervals_have(ctx.prev_succeeded_indexes, ix):
                        new_succeeded_indexes.append(ix)
                        needs_flush = True
                elif uid not in ctx.uncounted_succeeded:
                    uncounted.setdefault("succeeded", []).append(uid)
                    needs_flush = True
            elif failed or (ctx.finished is not None
                            and ctx.finished["type"] != SUCCESS_CRITERIA_MET):
                # A finishing Job counts every pod that did not succeed as failed.
                countable = not indexed or ctx.valid_index(pod) is not None
                if uid not in ctx.uncounted_failed and countable:
                    if policy is None or match_pod_failure_policy(policy, pod).count_failed:
                        uncounted.setdefault("failed", []).append(uid)
                        needs_flush = True
            if len(new_succeeded_indexes) + len(uncounted.get("succeeded") or ()) \
                    + len(uncounted.get("failed") or ()) >= MAX_UNCOUNTED_PODS:
                reached_max = True
                break
        if indexed:
            needs_flush |= self._set_index_status(ctx, new_succeeded_indexes)
        if ctx.finished is not None and ctx.finished["type"] == FAILURE_TARGET:
            # Record why the Job fails before its pods' finalizers go.
            ctx.status.setdefault("conditions", []).append(ctx.finished)
            needs_flush = True
            ctx.finished = new_condition(FAILED, "True", ctx.finished["reason"],
                                         ctx.finished["message"], now)
        if ctx.finished is not None and ctx.finished["type"] == SUCCESS_CRITERIA_MET:
            if not _condition_true(ctx.job, SUCCESS_CRITERIA_MET):
                ctx.status.setdefault("conditions", []).append(ctx.finished)
                needs_flush = True
            ctx.finished = new_condition(COMPLETE, "True", ctx.finished.get("reason", ""),
                                         ctx.finished.get("message", ""), now)
        needs_flush = await self._flush_and_remove_finalizers(ctx, to_remove, with_finalizer,
                                                              needs_flush)
        finished = not reached_max and self._enact_finished(ctx, now)
        if needs_flush or finished:
            ctx.job = await self._update_status(ctx.job)
            if finished:
                self._record_finished(ctx.job, ctx.finished)

    @staticmethod
    def _can_remove_finalizer(ctx: _Sync, pod: Object, failed: bool) -> bool:
        if meta(ctx.job).get("deletionTimestamp") or ctx.finished is not None \
                or pod_phase(pod) == "Succeeded":
            return True
        if not failed:
            return False
        if has_backoff_limit_per_index(ctx.job):
            ix = completion_index(pod)
            delayed = ctx.delayed_deletion.get(ix) if ix is not None else None
            if delayed is not None and _uid(delayed) == _uid(pod):
                return False
        return True

    @staticmethod
    def _set_index_status(ctx: _Sync, new_succeeded: list[int]) -> bool:
        changed = False
        ctx.succeeded_indexes = with_indexes(ctx.succeeded_indexes, new_succeeded)
        text = format_indexes(ctx.succeeded_indexes)
        if text != ctx.status.get("completedIndexes", ""):
            changed = True
        ctx.status["succeeded"] = intervals_total(ctx.succeeded_indexes)
        ctx.status["completedIndexes"] = text
        failed = None if ctx.failed_indexes is None else format_indexes(ctx.failed_indexes)
        if failed != ctx.status.get("failedIndexes"):
            changed = True
            if failed is None:
                ctx.status.pop("failedIndexes", None)
            else:
                ctx.status["failedIndexes"] = failed
        return changed

    async def _flush_and_remove_finalizers(self, ctx: _Sync, pods: list[Object],
                                           with_finalizer: set[str], needs_flush: bool) -> bool:
        """Write the uncounted pods, remove their finalizers, count the ones removed.
        Whether status changes remain to be written."""
        if needs_flush:
            ctx.job = await self._update_status(ctx.job)
            self.backoffs[ctx.key] = ctx.backoff
            needs_flush = False
        error: BaseException | None = None
        if pods:
            removed, error = await self._remove_finalizers(ctx.key, pods)
            with_finalizer.difference_update(removed)
        if _count_uncounted_without_finalizers(ctx.status, with_finalizer):
            needs_flush = True
        if error is not None:
            if needs_flush:
                ctx.job = await self._update_status(ctx.job)
            raise error
        return needs_flush

    async def _remove_finalizers(self, key: str,
                                 pods: list[Object]) -> tuple[set[str], BaseException | None]:
        """The uids whose finalizer is gone (or whose pod is), and the first error."""
        uids = [_uid(p) for p in pods]
        self.finalizer_expectations.setdefault(key, set()).update(uids)
        results = await asyncio.gather(*(self._remove_finalizer(p) for p in pods),
                                       return_exceptions=True)
        removed: set[str] = set()
        first_error: BaseException | None = None
        for uid, result in zip(uids, results):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                self._finalizer_removal_observed(key, uid)
                first_error = first_error or result
            else:
                removed.add(uid)
        return removed, first_error

    def _enact_finished(self, ctx: _Sync, now: float) -> bool:
        """Add the Complete or Failed condition once every pod is counted and none is
        terminating."""
        if ctx.finished is None:
            return False
        uncounted = ctx.status.get("uncountedTerminatedPods") or {}
        if uncounted.get("succeeded") or uncounted.get("failed") or ctx.terminating > 0:
            return False
        condition = ctx.finished
        ensure_condition(ctx.status.setdefault("conditions", []), condition["type"], "True",
                         condition.get("reason", ""), condition.get("message", ""), now)
        if condition["type"] == COMPLETE:
            ctx.status["completionTime"] = condition["lastTransitionTime"]
        return True

    def _record_finished(self, job: Object, condition: dict[str, Any]) -> None:
        job.setdefault("apiVersion", API_VERSION)
        job.setdefault("kind", KIND)
        if condition["type"] == COMPLETE:
            completions = (job.get("spec") or {}).get("completions")
            succeeded = (job.get("status") or {}).get("succeeded", 0)
            if completions is not None and succeeded > completions:
                self.recorder.event(
                    job, WARNING, "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached")
            self.recorder.event(job, NORMAL, "Completed", "Job completed")
        else:
            self.recorder.event(job, WARNING, condition.get("reason", ""),
                                condition.get("message", ""))

    async def _update_status(self, job: Object) -> Object:
        updated = await self.client.update(API_VERSION, "jobs", job, subresource="status")
        updated.setdefault("apiVersion", API_VERSION)
        updated.setdefault("kind", KIND)
        status = updated.setdefault("status", {})
        status["uncountedTerminatedPods"] = status.get("uncountedTerminatedPods") or {}
        return updated


def _orphan_namespace(pod: Object) -> list[str]:
    return [] if controller_ref(pod) is not None else [meta(pod).get("namespace") or ""]


def _count_uncounted_without_finalizers(status: dict[str, Any], with_finalizer: set[str]) -> bool:
    """Move uncounted pods whose finalizer is gone into the counters; whether any moved."""
    uncounted = status.setdefault("uncountedTerminatedPods", {})
    changed = False
    for kind in ("succeeded", "failed"):
        listed = uncounted.get(kind) or []
        keep = [uid for uid in listed if uid in with_finalizer]
        if len(keep) != len(listed):
            status[kind] = status.get(kind, 0) + len(listed) - len(keep)
            changed = True
        if keep:
            uncounted[kind] = keep
        else:
            uncounted.pop(kind, None)
    return changed


def _add_completion_index_env(template: Object) -> None:
    """Every container learns its index from the pod's label through the downward API."""
    spec = template.setdefault("spec", {})
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or ():
            env = container.setdefault("env", [])
            if any(v.get("name") == COMPLETION_INDEX_ENV for v in env):
                continue
            env.append({"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
                "fieldPath": f"metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"}}})


def _add_index_failure_counts(template_meta: Object, job: Object,
                              replaced: Object | None) -> None:
    failures = ignored = 0
    if replaced is not None:
        failures = index_failure_count(replaced)
        ignored = _int_annotation(replaced, INDEX_IGNORED_FAILURE_COUNT_ANNOTATION)
        policy = (job.get("spec") or {}).get("podFailurePolicy")
        if match_pod_failure_policy(policy, replaced).count_failed:
            failures += 1
        else:
            ignored += 1
    annotations = template_meta.setdefault("annotations", {})
    annotations[INDEX_FAILURE_COUNT_ANNOTATION] = str(failures)
    if ignored > 0:
        annotations[INDEX_IGNORED_FAILURE_COUNT_ANNOTATION] = str(ignored)


__all__ = ["COMPLETION_INDEX_ANNOTATION", "JobController", "TRACKING_FINALIZER",
           "format_indexes", "match_pod_failure_policy", "parse_indexes"]
