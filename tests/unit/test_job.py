"""The Job controller's decisions (indexes, pod failure policy, success policy, back-off,
conditions, which pods to create and delete) and the TTL-after-finished arithmetic."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from sampan.client.informer import InformerFactory
from sampan.controllers import job as jobs
from sampan.controllers.job import (
    COMPLETION_INDEX_ANNOTATION,
    INDEX_FAILURE_COUNT_ANNOTATION,
    TRACKING_FINALIZER,
    BackoffRecord,
    JobController,
    _Sync,
    ensure_condition,
    format_indexes,
    intervals_have,
    match_pod_failure_policy,
    match_success_policy,
    merge_intervals,
    next_backoff_record,
    parse_indexes,
    past_backoff_limit_on_failure,
    pod_finished_time,
    pod_generate_name_with_index,
    remaining_backoff,
    with_indexes,
)
from sampan.controllers.ttlafterfinished import needs_cleanup, time_left
from sampan.controllers.util import now_rfc3339

T0 = 1_700_000_000.0


def pod(name: str, phase: str = "Running", *, index: int | None = None,
        exit_code: int | None = None,
        finished_at: float | None = None, conditions: list[dict[str, Any]] | None = None,
        finalizer: bool = True, ready: bool = False, **meta: Any) -> dict[str, Any]:
    annotations = {COMPLETION_INDEX_ANNOTATION: str(index)} if index is not None else {}
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None or finished_at is not None:
        state = {"terminated": {"exitCode": exit_code or 0,
                                "finishedAt": now_rfc3339(finished_at or T0)}}
    conds = list(conditions or [])
    if ready:
        conds.append({"type": "Ready", "status": "True"})
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "annotations": annotations, "creationTimestamp": now_rfc3339(T0 - 100),
                         "finalizers": [TRACKING_FINALIZER] if finalizer else [], **meta},
            "spec": {},
            "status": {"phase": phase, "conditions": conds,
                       "containerStatuses": [{"name": "main", "state": state}]}}


# -- indexes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,completions,intervals", [
    ("", 5, []),
    ("1", 5, [(1, 1)]),
    ("1,3-5,7", 10, [(1, 1), (3, 5), (7, 7)]),
    ("0,1,2", 5, [(0, 2)]),
    ("3-9", 5, [(3, 4)]),
    ("1,x,3", 5, [(1, 1), (3, 3)]),
    ("2,6", 5, [(2, 2)]),
])
def test_parse_indexes(text: str, completions: int, intervals: list[tuple[int, int]]) -> None:
    assert parse_indexes(text, completions) == intervals


def test_format_indexes_writes_pairs_as_two_numbers() -> None:
    assert format_indexes([(1, 1), (3, 5), (7, 8)]) == "1,3-5,7,8"
    assert format_indexes([]) == ""


def test_merge_and_membership() -> None:
    merged = merge_intervals([(0, 2), (8, 9)], [(3, 3), (5, 6)])
    assert merged == [(0, 3), (5, 6), (8, 9)]
    assert with_indexes([(0, 1)], [4, 2, 2]) == [(0, 2), (4, 4)]
    assert intervals_have(merged, 3) and intervals_have(merged, 9)
    assert not intervals_have(merged, 4) and not intervals_have(merged, 10)
    assert not intervals_have(None, 0)


def test_generate_name_keeps_the_index_when_trimmed() -> None:
    assert pod_generate_name_with_index("job", 3) == "job-3-"
    long = pod_generate_name_with_index("j" * 70, 12)
    assert len(long) == 58 and long.endswith("-12-")


# -- pod failure policy ------------------------------------------------------------------------

POLICY = {"rules": [
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                          "values": [42]}},
    {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [2]}},
]}


def test_fail_job_rule_message() -> None:
    match = match_pod_failure_policy(POLICY, pod("p", "Failed", exit_code=42))
    assert match.action == "FailJob" and match.count_failed
    assert match.fail_job_message == ("Container main for pod ns/p failed with exit code 42 "
                                      "matching FailJob rule at index 1")


def test_ignore_rule_on_pod_condition() -> None:
    disrupted = pod("p", "Failed", exit_code=137,
                    conditions=[{"type": "DisruptionTarget", "status": "True"}])
    match = match_pod_failure_policy(POLICY, disrupted)
    assert match.action == "Ignore" and not match.count_failed


def test_not_in_count_and_fail_index_and_fallthrough() -> None:
    assert match_pod_failure_policy(POLICY, pod("p", "Failed", exit_code=7)).action == "Count"
    assert match_pod_failure_policy(POLICY, pod("p", "Failed", exit_code=2)).action == "FailIndex"
    unmatched = match_pod_failure_policy(POLICY, pod("p", "Failed", exit_code=1))
    assert unmatched.action is None and unmatched.count_failed


def test_exit_code_zero_and_running_containers_never_match() -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}
    assert match_pod_failure_policy(policy, pod("p", "Failed", exit_code=0)).action is None
    assert match_pod_failure_policy(policy, pod("p", "Failed")).action is None
    assert match_pod_failure_policy(None, pod("p", "Failed", exit_code=3)).count_failed


def test_fail_job_on_pod_condition_message() -> None:
    policy = {"rules": [{"action": "FailJob",
                         "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]}]}
    failed = pod("p", "Failed", conditions=[{"type": "ConfigIssue", "status": "True"}])
    assert match_pod_failure_policy(policy, failed).fail_job_message == \
        "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0"


# -- success policy ----------------------------------------------------------------------------


def test_success_policy_rules() -> None:
    policy = {"rules": [{"succeededIndexes": "0,2-3"}, {"succeededCount": 3}]}
    assert match_success_policy(policy, 5, [(0, 0), (2, 3)]) == "Matched rules at index 0"
    assert match_success_policy(policy, 5, [(1, 3)]) == "Matched rules at index 1"
    assert match_success_policy(policy, 5, [(0, 1)]) is None
    with_count = {"rules": [{"succeededIndexes": "0-4", "succeededCount": 2}]}
    assert match_success_policy(with_count, 5, [(3, 4)]) == "Matched rules at index 0"
    assert match_success_policy(None, 5, [(0, 4)]) is None


# -- back-off ----------------------------------------------------------------------------------


def test_backoff_doubles_to_the_maximum() -> None:
    assert remaining_backoff(T0, 10, 600, 0, None) == 0
    assert remaining_backoff(T0 + 3, 10, 600, 1, T0) == 7
    assert remaining_backoff(T0 + 3, 10, 600, 3, T0) == 37
    assert remaining_backoff(T0, 10, 600, 30, T0) == 600
    assert remaining_backoff(T0 + 50, 10, 600, 2, T0) == 0


def test_backoff_record_counts_failures_since_the_last_success() -> None:
    failed = [pod("a", "Failed", finished_at=T0 + 1), pod("b", "Failed", finished_at=T0 + 5)]
    record = next_backoff_record(None, [], failed)
    assert record == BackoffRecord(2, T0 + 5)
    record = next_backoff_record(record, [], [pod("c", "Failed", finished_at=T0 + 9)])
    assert record == BackoffRecord(3, T0 + 9)
    succeeded = [pod("d", "Succeeded", finished_at=T0 + 3)]
    assert next_backoff_record(record, succeeded, failed) == BackoffRecord(1, T0 + 5)
    assert next_backoff_record(record, succeeded, []) == BackoffRecord(0, None)


def test_pod_finished_time_fallbacks() -> None:
    assert pod_finished_time(pod("a", "Failed", finished_at=T0)) == T0
    not_ready = pod("b", "Failed", conditions=[{"type": "Ready", "status": "False",
                                                "lastTransitionTime": now_rfc3339(T0 + 7)}])
    assert pod_finished_time(not_ready) == T0 + 7
    deleted = pod("c", deletionTimestamp=now_rfc3339(T0 + 30), deletionGracePeriodSeconds=30)
    assert pod_finished_time(deleted) == T0
    assert pod_finished_time(pod("d")) == T0 - 100


def test_restarts_count_against_the_limit_with_on_failure() -> None:
    job = {"spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}}
    restarting = pod("a")
    restarting["status"]["containerStatuses"][0]["restartCount"] = 2
    assert past_backoff_limit_on_failure(job, [restarting])
    restarting["status"]["containerStatuses"][0]["restartCount"] = 1
    assert not past_backoff_limit_on_failure(job, [restarting])
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    restarting["status"]["containerStatuses"][0]["restartCount"] = 9
    assert not past_backoff_limit_on_failure(job, [restarting])


# -- conditions and counters -------------------------------------------------------------------


def test_ensure_condition() -> None:
    conditions: list[dict[str, Any]] = []
    assert not ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", T0)
    assert conditions == []
    assert ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", T0)
    assert not ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended",
                                T0 + 5)
    assert ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", T0 + 9)
    assert conditions == [{"type": "Suspended", "status": "False", "reason": "JobResumed",
                           "message": "Job resumed", "lastProbeTime": now_rfc3339(T0 + 9),
                           "lastTransitionTime": now_rfc3339(T0 + 9)}]


def test_uncounted_pods_move_to_counters_once_their_finalizer_is_gone() -> None:
    status = {"succeeded": 1, "uncountedTerminatedPods": {"succeeded": ["a", "b"], "failed": ["c"]}}
    assert jobs._count_uncounted_without_finalizers(status, {"b"})
    assert status == {"succeeded": 2, "failed": 1, "uncountedTerminatedPods": {"succeeded": ["b"]}}
    assert not jobs._count_uncounted_without_finalizers(status, {"b"})


def test_is_pod_failed_honours_the_replacement_policy() -> None:
    deleting = pod("a", deletionTimestamp=now_rfc3339(T0))
    assert jobs.is_pod_failed(deleting, {"spec": {"podReplacementPolicy": "TerminatingOrFailed"}})
    assert not jobs.is_pod_failed(deleting, {"spec": {"podReplacementPolicy": "Failed"}})
    assert not jobs.is_pod_failed(deleting, {"spec": {"podFailurePolicy": {"rules": []}}})
    assert jobs.is_pod_failed(pod("b", "Failed"), {"spec": {"podReplacementPolicy": "Failed"}})


# -- which pods ---------------------------------------------------------------------------------


def sync_context(job: dict[str, Any], pods: list[dict[str, Any]]) -> _Sync:
    active = [p for p in pods if jobs.is_pod_active(p)]
    return _Sync(key="ns/j", job=job, pods=pods, active=active, ready=0, terminating=0,
                 uncounted_succeeded=set(), uncounted_failed=set(), expected_removals=set())


def indexed_job(completions: int, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j", "namespace": "ns", "uid": "job-uid"},
            "spec": {"completionMode": "Indexed", "completions": completions,
                     "parallelism": completions, **spec},
            "status": {}}


def test_first_pending_indexes_skip_succeeded_and_running() -> None:
    ctx = sync_context(indexed_job(6), [pod("a", index=1), pod("b", index=4)])
    ctx.succeeded_indexes = [(2, 2)]
    controller = JobController.__new__(JobController)
    assert controller._first_pending_indexes(ctx, 10) == [0, 3, 5]
    assert controller._first_pending_indexes(ctx, 2) == [0, 3]
    ctx.failed_indexes = [(0, 0)]
    assert controller._first_pending_indexes(ctx, 10) == [3, 5]


def test_removal_prefers_duplicate_and_invalid_indexes() -> None:
    job = indexed_job(3)
    dup_ready = pod("dup-ready", index=1, ready=True)
    dup_pending = pod("dup-pending", "Pending", index=1)
    stray = pod("stray", index=7)
    unindexed = pod("unindexed")
    keep = pod("keep", index=0)
    removed = JobController._active_pods_for_removal(
        job, [keep, dup_ready, dup_pending, stray, unindexed], 0)
    names = {p["metadata"]["name"] for p in removed}
    assert names == {"dup-pending", "stray", "unindexed"}


def test_removal_of_non_indexed_pods_takes_the_least_advanced_first() -> None:
    job = {"spec": {"completions": 3}}
    running_ready = pod("ready", ready=True)
    pending = pod("pending", "Pending")
    removed = JobController._active_pods_for_removal(job, [running_ready, pending], 1)
    assert [p["metadata"]["name"] for p in removed] == ["pending"]


def test_index_failure_count_annotations_carry_over() -> None:
    template_meta: dict[str, Any] = {}
    replaced = pod("old", "Failed", index=0, exit_code=1)
    replaced["metadata"]["annotations"][INDEX_FAILURE_COUNT_ANNOTATION] = "2"
    jobs._add_index_failure_counts(template_meta, indexed_job(1), replaced)
    assert template_meta["annotations"][INDEX_FAILURE_COUNT_ANNOTATION] == "3"
    fresh: dict[str, Any] = {}
    jobs._add_index_failure_counts(fresh, indexed_job(1), None)
    assert fresh["annotations"] == {INDEX_FAILURE_COUNT_ANNOTATION: "0"}


def test_completion_index_env_comes_from_the_label() -> None:
    template = {"spec": {"containers": [{"name": "a"}],
                         "initContainers": [{"name": "i", "env": [
                             {"name": "JOB_COMPLETION_INDEX", "value": "x"}]}]}}
    jobs._add_completion_index_env(template)
    assert template["spec"]["containers"][0]["env"] == [{
        "name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.labels['{COMPLETION_INDEX_ANNOTATION}']"}}}]
    assert len(template["spec"]["initContainers"][0]["env"]) == 1


# -- TTL after finished -------------------------------------------------------------------------


def finished_job(ttl: int | None, finished: float | None) -> dict[str, Any]:
    spec = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    conditions = [] if finished is None else [
        {"type": "Complete", "status": "True", "lastTransitionTime": now_rfc3339(finished)}]
    return {"metadata": {"name": "j", "namespace": "ns"}, "spec": spec,
            "status": {"conditions": conditions}}


def test_ttl_after_finished() -> None:
    assert time_left(finished_job(100, T0), T0 + 30) == 70
    assert time_left(finished_job(10, T0), T0 + 30) == -20
    assert time_left(finished_job(None, T0), T0) is None
    assert time_left(finished_job(10, None), T0) is None
    deleting = finished_job(10, T0)
    deleting["metadata"]["deletionTimestamp"] = now_rfc3339(T0)
    assert not needs_cleanup(deleting)


# -- one sync against a fake API server ---------------------------------------------------------


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


class FakeClient:
    """Records the writes a sync makes; every write succeeds."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.patched: list[tuple[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.discovery = None

    async def create(self, api_version: str, resource: str, body: dict[str, Any],
                     **_: Any) -> dict[str, Any]:
        created = {**body, "metadata": {**body["metadata"],
                                        "name": body["metadata"].get("generateName", "") + "x"}}
        self.created.append(created)
        return created

    async def update(self, api_version: str, resource: str, body: dict[str, Any],
                     **_: Any) -> dict[str, Any]:
        self.statuses.append(copy.deepcopy(body["status"]))
        return copy.deepcopy(body)

    async def patch(self, api_version: str, resource: str, name: str, patch: Any,
                    **_: Any) -> dict[str, Any]:
        self.patched.append((name, patch))
        return {}

    async def delete(self, api_version: str, resource: str, name: str, **_: Any) -> dict[str, Any]:
        self.deleted.append(name)
        return {}


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def controller_with(job: dict[str, Any], pods: list[dict[str, Any]],
                    clock: FakeClock) -> tuple[JobController, FakeClient, FakeRecorder]:
    client, recorder = FakeClient(), FakeRecorder()
    controller = JobController(client, InformerFactory(client),  # type: ignore[arg-type]
                               recorder=recorder, pod_failure_backoff=10.0,  # type: ignore[arg-type]
                               now=clock)
    controller.jobs.indexer.upsert(job)
    for p in pods:
        controller.pods.indexer.upsert(p)
    return controller, client, recorder


def plain_job(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid", "resourceVersion": "1",
                         "generation": 1},
            "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 6,
                     "selector": {"matchLabels": {"job": "j"}},
                     "template": {"metadata": {"labels": {"job": "j"}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "main"}]}}, **spec},
            "status": {"startTime": now_rfc3339(T0 - 60), "active": 1}}


def owned_pod(name: str, phase: str = "Running", **kwargs: Any) -> dict[str, Any]:
    p = pod(name, phase, **kwargs)
    p["metadata"]["labels"] = {"job": "j"}
    p["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                                         "uid": "job-uid", "controller": True}]
    return p


async def test_failed_pod_is_replaced_only_after_the_backoff() -> None:
    clock = FakeClock(T0 + 1)
    failed = owned_pod("a", "Failed", exit_code=1, finished_at=T0)
    controller, client, _ = controller_with(plain_job(), [failed], clock)
    await controller.reconcile("ns/j")
    assert client.created == []
    assert client.statuses[0]["uncountedTerminatedPods"] == {"failed": ["uid-a"]}
    assert client.statuses[-1]["failed"] == 1 and client.statuses[-1]["active"] == 0
    assert client.patched == [("a", {"metadata": {
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}})]
    ready_at, _handle = controller.queue._waiting["ns/j"]
    assert 8.5 < ready_at - asyncio.get_running_loop().time() <= 9.0

    # eleven seconds after the failure, with the failure counted, a new pod is made
    clock.now = T0 + 11
    counted = plain_job()
    counted["status"] = client.statuses[-1]
    counted_pod = owned_pod("a", "Failed", exit_code=1, finished_at=T0, finalizer=False)
    controller.jobs.indexer.upsert(counted)
    controller.pods.indexer.upsert(counted_pod)
    controller.finalizer_expectations.clear()
    await controller.reconcile("ns/j")
    assert len(client.created) == 1
    created = client.created[0]
    assert created["metadata"]["generateName"] == "j-"
    assert created["metadata"]["finalizers"] == [TRACKING_FINALIZER]
    assert created["metadata"]["ownerReferences"][0]["uid"] == "job-uid"


async def test_backoff_limit_fails_the_job_in_two_steps() -> None:
    clock = FakeClock(T0)
    job = plain_job(backoffLimit=0)
    controller, client, recorder = controller_with(job, [owned_pod("a", "Failed", exit_code=1)],
                                                   clock)
    await controller.reconcile("ns/j")
    final = client.statuses[-1]
    types = [(c["type"], c["reason"]) for c in final["conditions"]]
    assert types == [("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    assert final["failed"] == 1
    assert ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit") \
        in recorder.events


async def test_suspending_deletes_pods_and_sets_the_condition() -> None:
    clock = FakeClock(T0)
    job = plain_job(suspend=True, parallelism=2, completions=4)
    job["status"]["active"] = 2
    pods = [owned_pod("a"), owned_pod("b", ready=True)]
    controller, client, recorder = controller_with(job, pods, clock)
    await controller.reconcile("ns/j")
    assert sorted(client.deleted) == ["a", "b"]
    status = client.statuses[-1]
    assert status["active"] == 0 and status["ready"] == 0 and status["terminating"] == 2
    suspended = status["conditions"][0]
    assert (suspended["type"], suspended["status"], suspended["reason"]) == \
        ("Suspended", "True", "JobSuspended")
    assert ("Normal", "Suspended", "Job suspended") in recorder.events
    # the finalizers go first, so suspended pods are not counted as failures
    assert {name for name, _ in client.patched} == {"a", "b"}
