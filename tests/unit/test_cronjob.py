"""CronJob schedule arithmetic with an injected "now": parsing, time zones, the most recent
unmet schedule time, missed starts, the next wake-up, and the Jobs made from the template."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import pytest

from sampan.client.informer import InformerFactory
from sampan.controllers.cronjob import (
    SCHEDULED_TIMESTAMP_ANNOTATION,
    CronJobController,
    ScheduleError,
    job_from_template,
    job_name,
    most_recent_schedule_time,
    next_schedule_delay,
    parse_schedule,
)
from sampan.controllers.util import now_rfc3339

UTC = datetime.timezone.utc


def at(text: str) -> float:
    """Seconds since the epoch for "2024-03-01 10:00:00" (UTC)."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def cronjob(schedule: str = "*/5 * * * *", *, created: str = "2024-03-01 10:00:30",
            last: str | None = None, **spec: Any) -> dict[str, Any]:
    status = {"lastScheduleTime": now_rfc3339(at(last))} if last else {}
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "ns", "uid": "cj-uid",
                         "creationTimestamp": now_rfc3339(at(created))},
            "spec": {"schedule": schedule, "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}, **spec},
            "status": status}


@pytest.mark.parametrize("schedule,after,expected", [
    ("*/5 * * * *", "2024-03-01 10:00:00", "2024-03-01 10:05:00"),
    ("*/5 * * * *", "2024-03-01 10:04:59", "2024-03-01 10:05:00"),
    ("@hourly", "2024-03-01 10:00:00", "2024-03-01 11:00:00"),
    ("@daily", "2024-03-01 10:00:00", "2024-03-02 00:00:00"),
    ("@weekly", "2024-03-01 10:00:00", "2024-03-03 00:00:00"),
    ("@monthly", "2024-03-01 10:00:00", "2024-04-01 00:00:00"),
    ("@yearly", "2024-03-01 10:00:00", "2025-01-01 00:00:00"),
    ("30 9 * * mon-fri", "2024-03-01 10:00:00", "2024-03-04 09:30:00"),
    ("@every 90s", "2024-03-01 10:00:00", "2024-03-01 10:01:30"),
])
def test_next_activation(schedule: str, after: str, expected: str) -> None:
    assert parse_schedule(schedule).next(at(after)) == at(expected)


def test_time_zone() -> None:
    schedule = parse_schedule("0 9 * * *", "America/New_York")
    assert schedule.next(at("2024-03-01 10:00:00")) == at("2024-03-01 14:00:00")
    # after the DST change 9:00 in New York is 13:00 UTC
    assert schedule.next(at("2024-03-12 00:00:00")) == at("2024-03-12 13:00:00")
    legacy = parse_schedule("CRON_TZ=Asia/Tokyo 0 9 * * *")
    assert legacy.next(at("2024-03-01 10:00:00")) == at("2024-03-02 00:00:00")


@pytest.mark.parametrize("schedule,zone", [
    ("* * *", None), ("61 * * * *", None), ("@reboot", None), ("@every soon", None),
    ("* * * * *", "Mars/Olympus"), ("* * * * *", "Local"), ("", None),
])
def test_bad_schedules(schedule: str, zone: str | None) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(schedule, zone)


def test_impossible_schedule_never_fires() -> None:
    schedule = parse_schedule("0 0 31 2 *")
    assert schedule.next(at("2024-03-01 10:00:00")) is None
    with pytest.raises(ScheduleError):
        most_recent_schedule_time(cronjob("0 0 31 2 *"), at("2024-03-01 11:00:00"), schedule, True)


def test_nothing_due_before_the_first_time() -> None:
    cj = cronjob()
    found = most_recent_schedule_time(cj, at("2024-03-01 10:04:00"), parse_schedule("*/5 * * * *"),
                                      True)
    assert found.time is None and found.missed == "none"
    assert found.earliest == at("2024-03-01 10:00:30")


def test_one_due_time() -> None:
    found = most_recent_schedule_time(cronjob(), at("2024-03-01 10:07:00"),
                                      parse_schedule("*/5 * * * *"), True)
    assert found.time == at("2024-03-01 10:05:00") and found.missed == "none"


def test_a_few_missed_times_start_the_latest() -> None:
    found = most_recent_schedule_time(cronjob(last="2024-03-01 10:05:00"),
                                      at("2024-03-01 10:31:00"), parse_schedule("*/5 * * * *"),
                                      True)
    assert found.time == at("2024-03-01 10:30:00") and found.missed == "few"


def test_irregular_schedule_most_recent_time() -> None:
    schedule = parse_schedule("30 6-16/4 * * 1-5")
    found = most_recent_schedule_time(cronjob(schedule.expression, created="2024-02-26 00:00:00"),
                                      at("2024-03-01 15:00:00"), schedule, True)
    assert found.time == at("2024-03-01 14:30:00")


def test_too_many_missed_times() -> None:
    found = most_recent_schedule_time(cronjob("* * * * *"), at("2024-03-01 13:00:10"),
                                      parse_schedule("* * * * *"), True)
    assert found.missed == "many" and found.time == at("2024-03-01 13:00:00")


def test_starting_deadline_bounds_how_far_back_we_look() -> None:
    cj = cronjob("0 * * * *", created="2024-03-01 08:00:00", startingDeadlineSeconds=600)
    schedule = parse_schedule("0 * * * *")
    late = most_recent_schedule_time(cj, at("2024-03-01 10:15:00"), schedule, True)
    assert late.time is None  # 10:00 is more than 600 s ago
    in_time = most_recent_schedule_time(cj, at("2024-03-01 10:05:00"), schedule, True)
    assert in_time.time == at("2024-03-01 10:00:00")
    ignored = most_recent_schedule_time(cj, at("2024-03-01 10:15:00"), schedule, False)
    assert ignored.time == at("2024-03-01 10:00:00")


def test_next_schedule_delay() -> None:
    schedule = parse_schedule("*/5 * * * *")
    assert next_schedule_delay(cronjob(), at("2024-03-01 10:01:00"), schedule) == \
        pytest.approx(4 * 60 + 0.1)
    started = cronjob(last="2024-03-01 10:05:00")
    assert next_schedule_delay(started, at("2024-03-01 10:05:00.5"), schedule) == \
        pytest.approx(4 * 60 + 59.6)
    # missed times: aim at the slot after now
    stale = cronjob(last="2024-03-01 09:00:00")
    assert next_schedule_delay(stale, at("2024-03-01 10:07:00"), schedule) == \
        pytest.approx(3 * 60 + 0.1)


def test_job_from_template() -> None:
    scheduled = at("2024-03-01 10:05:00")
    job = job_from_template(cronjob(), scheduled)
    assert job["metadata"]["name"] == job_name(cronjob(), scheduled) == \
        f"nightly-{int(scheduled) // 60}"
    assert job["metadata"]["labels"] == {"team": "a"}
    assert job["metadata"]["annotations"] == {
        "note": "x", SCHEDULED_TIMESTAMP_ANNOTATION: "2024-03-01T10:05:00Z"}
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("CronJob", "cj-uid", True)
    assert job["spec"] == cronjob()["spec"]["jobTemplate"]["spec"]


def test_scheduled_timestamp_in_the_cronjob_time_zone() -> None:
    job = job_from_template(cronjob(timeZone="Europe/Berlin"), at("2024-03-01 10:05:00"))
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == \
        "2024-03-01T11:05:00+01:00"


# -- one sync against a fake API server ---------------------------------------------------------


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


class FakeClient:
    def __init__(self, jobs: dict[str, dict[str, Any]]) -> None:
        self.jobs = jobs
        self.created: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str | None]] = []
        self.statuses: list[dict[str, Any]] = []

    async def get(self, api_version: str, resource: str, name: str, **_: Any) -> dict[str, Any]:
        return self.jobs[name]

    async def create(self, api_version: str, resource: str, body: dict[str, Any],
                     **_: Any) -> dict[str, Any]:
        created = {**body, "metadata": {**body["metadata"], "uid": "new-uid",
                                        "resourceVersion": "7"}}
        self.created.append(created)
        return created

    async def delete(self, api_version: str, resource: str, name: str,
                     propagation_policy: str | None = None, **_: Any) -> dict[str, Any]:
        self.deleted.append((name, propagation_policy))
        return {}

    async def update(self, api_version: str, resource: str, body: dict[str, Any],
                     **_: Any) -> dict[str, Any]:
        self.statuses.append(body["status"])
        return body


def run_sync(cj: dict[str, Any], now: float, jobs: Sequence[dict[str, Any]] = ()
             ) -> tuple[CronJobController, FakeClient, FakeRecorder]:
    client, recorder = FakeClient({j["metadata"]["name"]: j for j in jobs}), FakeRecorder()
    controller = CronJobController(client, InformerFactory(client),  # type: ignore[arg-type]
                                   recorder=recorder, now=lambda: now)  # type: ignore[arg-type]
    controller.cronjobs.indexer.upsert(cj)
    for job in jobs:
        controller.jobs.indexer.upsert(job)
    return controller, client, recorder


def child(name: str, *, finished: str | None = None) -> dict[str, Any]:
    conditions = [{"type": finished, "status": "True"}] if finished else []
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "ownerReferences": [{"kind": "CronJob", "name": "nightly",
                                              "uid": "cj-uid", "controller": True}]},
            "status": {"conditions": conditions}}


async def test_creates_the_due_job_and_requeues_for_the_next() -> None:
    controller, client, recorder = run_sync(cronjob(), at("2024-03-01 10:05:02"))
    await controller.reconcile("ns/nightly")
    name = f"nightly-{int(at('2024-03-01 10:05:00')) // 60}"
    assert [j["metadata"]["name"] for j in client.created] == [name]
    status = client.statuses[-1]
    assert status["lastScheduleTime"] == "2024-03-01T10:05:00Z"
    assert status["active"] == [{"kind": "Job", "namespace": "ns", "name": name,
                                 "uid": "new-uid", "apiVersion": "batch/v1",
                                 "resourceVersion": "7"}]
    assert ("Normal", "SuccessfulCreate", f"Created job {name}") in recorder.events
    assert "ns/nightly" in controller.queue._waiting


async def test_a_time_past_the_starting_deadline_is_skipped() -> None:
    cj = cronjob("0 * * * *", created="2024-03-01 09:30:00", startingDeadlineSeconds=30)
    controller, client, _ = run_sync(cj, at("2024-03-01 10:00:45"))
    await controller.reconcile("ns/nightly")
    assert client.created == [] and client.statuses == []
    assert "ns/nightly" in controller.queue._waiting  # for 11:00


async def test_too_many_missed_start_times_warns_and_still_runs_the_latest() -> None:
    controller, client, recorder = run_sync(cronjob("* * * * *"), at("2024-03-01 13:00:10"))
    await controller.reconcile("ns/nightly")
    assert any(reason == "TooManyMissedTimes" for _, reason, _ in recorder.events)
    assert client.statuses[-1]["lastScheduleTime"] == "2024-03-01T13:00:00Z"


async def test_replace_deletes_the_running_job() -> None:
    running = child("nightly-1")
    cj = cronjob(concurrencyPolicy="Replace", last="2024-03-01 10:00:00")
    cj["status"]["active"] = [{"kind": "Job", "name": "nightly-1", "namespace": "ns",
                               "uid": "uid-nightly-1"}]
    controller, client, recorder = run_sync(cj, at("2024-03-01 10:05:01"), [running])
    await controller.reconcile("ns/nightly")
    assert client.deleted == [("nightly-1", "Background")]
    assert [a["uid"] for a in client.statuses[-1]["active"]] == ["new-uid"]
    assert ("Normal", "SuccessfulDelete", "Deleted job nightly-1") in recorder.events


async def test_history_limits_and_unexpected_jobs() -> None:
    done = [child(f"nightly-{i}", finished="Complete") for i in range(3)]
    for i, job in enumerate(done):
        job["status"]["startTime"] = now_rfc3339(at("2024-03-01 09:00:00") + i)
    failed = child("nightly-f", finished="Failed")
    stray = child("nightly-stray")
    cj = cronjob(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0, suspend=True)
    controller, client, recorder = run_sync(cj, at("2024-03-01 10:06:00"),
                                            done + [failed, stray])
    client.jobs["nightly"] = cj  # the fresh read of the CronJob
    await controller.reconcile("ns/nightly")
    assert sorted(name for name, _ in client.deleted) == ["nightly-0", "nightly-1", "nightly-f"]
    assert ("Warning", "UnexpectedJob",
            "Saw a job that the controller did not create or forgot: nightly-stray") \
        in recorder.events
    assert client.created == []  # suspended
