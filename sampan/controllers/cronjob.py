"""The CronJob controller: creates a Job for each scheduled time, as upstream's
``pkg/controller/cronjob`` (the v2 controller).

Each sync reconciles the CronJob with the Jobs it controls (``status.active``,
``lastSuccessfulTime``), deletes finished Jobs beyond the history limits, and, unless the
CronJob is suspended, starts the Job for the most recent unmet schedule time within
``startingDeadlineSeconds`` — subject to ``concurrencyPolicy`` — then asks to be woken exactly
at the next schedule time. A Job is named ``<cronjob>-<scheduled time in minutes since the
epoch>`` so that the same time never runs twice.

Schedules are the five-field cron syntax with descriptors (``@hourly``…), ``@every <duration>``
and ``spec.timeZone`` (zoneinfo), computed with ``croniter`` in the CronJob's time zone.
"""

from __future__ import annotations

import copy
import datetime
import logging
import re
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from sampan.client.controller import Controller, Requeue
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import (
    OWNER_UID_INDEX,
    InformerFactory,
    SharedInformer,
    index_by_owner_uid,
    object_key,
)
from sampan.client.rest import Client
from sampan.controllers.util import Object, controller_ref, meta, new_controller_ref, parse_time

log = logging.getLogger(__name__)

API_VERSION = "batch/v1"
KIND = "CronJob"
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# Wake a little after the scheduled time so that a clock a bit behind does not miss it.
NEXT_SCHEDULE_DELTA = 0.1
TOO_MANY_MISSED = 100
_UTC = datetime.timezone.utc


# -- schedules ---------------------------------------------------------------------------------


class ScheduleError(ValueError):
    """A schedule that cannot be parsed or never fires."""


_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def _go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``1h30m`` or ``90s``."""
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position or match.group(1) in ("", "."):
            raise ScheduleError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ScheduleError(f'time: invalid duration "{text}"')
    return total


@dataclass(frozen=True)
class Schedule:
    """When a cron schedule fires: ``next(t)`` is the first activation strictly after ``t``."""

    expression: str
    zone: datetime.tzinfo = _UTC
    every: float | None = None  # ``@every``: a constant delay

    def next(self, t: float) -> float | None:
        """The next activation after ``t`` (seconds since the epoch), or None if never."""
        if self.every is not None:
            # robfig/cron: whole seconds, at least one.
            return float(int(t) + max(1, int(self.every)))
        start = datetime.datetime.fromtimestamp(t, self.zone)
        try:
            return croniter(self.expression, start).get_next(datetime.datetime).timestamp()
        except (CroniterBadDateError, CroniterError):
            return None


# robfig/cron's descriptors.
_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}


def parse_schedule(schedule: str, time_zone: str | None = None) -> Schedule:
    """A ``Schedule`` for ``spec.schedule`` in ``spec.timeZone`` (UTC without one). A legacy
    ``TZ=`` / ``CRON_TZ=`` prefix names the zone too (validation rejects it in new objects)."""
    text = schedule.strip()
    zone_name = time_zone
    if text.startswith(("TZ=", "CRON_TZ=")):
        head, _, text = text.partition(" ")
        zone_name = head.split("=", 1)[1]
        text = text.strip()
    zone = load_zone(zone_name)
    if not text:
        raise ScheduleError("empty spec string")
    if text.startswith("@every "):
        delay = _go_duration(text[len("@every "):].strip())
        return Schedule(text, zone, every=delay)
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    elif len(text.split()) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(text.split())}: [{text}]")
    if not croniter.is_valid(text):
        raise ScheduleError(f"invalid cron expression: {text}")
    return Schedule(text, zone)


def load_zone(name: str | None) -> datetime.tzinfo:
    """A time zone by IANA name (Go's ``time.LoadLocation``: empty or "UTC" is UTC)."""
    if not name or name == "UTC":
        return _UTC
    if name == "Local":
        raise ScheduleError("unknown time zone Local")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name}") from None


@dataclass(frozen=True)
class MostRecent:
    """What ``most_recent_schedule_time`` found."""

    earliest: float
    time: float | None  # the most recent unmet schedule time, if any
    missed: str  # "none", "few" or "many" (more than 100)


def most_recent_schedule_time(cronjob: Mapping[str, Any], now: float, schedule: Schedule,
                              include_starting_deadline: bool) -> MostRecent:
    """The latest schedule time after the last one started (or the creation) up to ``now``
    (``mostRecentScheduleTime``). Raises ScheduleError for a schedule that never fires."""
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    earliest = parse_time(status.get("lastScheduleTime")) \
        or parse_time(meta(cronjob).get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if include_starting_deadline and deadline is not None:
        earliest = max(earliest, now - deadline)
    t1 = schedule.next(earliest)
    if t1 is None:
        raise ScheduleError("the schedule never fires")
    if now < t1:
        return MostRecent(earliest, None, "none")
    t2 = schedule.next(t1)
    if t2 is None or round(t2 - t1) < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    if now < t2:
        return MostRecent(earliest, t1, "none")
    interval = round(t2 - t1)
    missed = int(now - t1) // interval + 1
    # Jump close to now with the average interval, then step with the schedule itself, which
    # is exact for irregular schedules such as "30 6-16/4 * * 1-5".
    t: float | None = schedule.next(t1 + (missed - 2) * interval)
    most_recent = None
    while t is not None and t <= now:
        most_recent = t
        t = schedule.next(t)
    kind = "many" if missed > TOO_MANY_MISSED else "few"
    return MostRecent(earliest, most_recent, kind)


def next_schedule_delay(cronjob: Mapping[str, Any], now: float, schedule: Schedule) -> float:
    """Seconds until the sync after the next schedule time (``nextScheduleTimeDuration``)."""
    try:
        found = most_recent_schedule_time(cronjob, now, schedule, False)
        base = found.time if found.time is not None else (
            found.earliest if found.missed == "none" else now)
    except ScheduleError:
        base = now
    following = schedule.next(base)
    if following is None:
        following = now + 3600.0  # never fires: look again now and then
    return following + NEXT_SCHEDULE_DELTA - now


def job_name(cronjob: Mapping[str, Any], scheduled: float) -> str:
    return f"{meta(cronjob)['name']}-{int(scheduled) // 60}"


def job_from_template(cronjob: Mapping[str, Any], scheduled: float) -> Object:
    """The Job for ``scheduled`` (``getJobFromTemplate2``)."""
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    template_meta = template.get("metadata") or {}
    zone = load_zone((cronjob.get("spec") or {}).get("timeZone"))
    annotations = dict(template_meta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = _rfc3339(scheduled, zone)
    job_meta: Object = {"name": job_name(cronjob, scheduled),
                        "namespace": meta(cronjob).get("namespace"),
                        "annotations": annotations,
                        "ownerReferences": [new_controller_ref(cronjob, API_VERSION, KIND)]}
    if template_meta.get("labels"):
        job_meta["labels"] = dict(template_meta["labels"])
    return {"apiVersion": API_VERSION, "kind": "Job", "metadata": job_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


def _rfc3339(t: float, zone: datetime.tzinfo) -> str:
    """Go's ``time.RFC3339``: "Z" in UTC, the offset elsewhere."""
    moment = datetime.datetime.fromtimestamp(int(t), zone)
    if moment.utcoffset() == datetime.timedelta(0):
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat()


def _rfc1123z(t: float) -> str:
    return datetime.datetime.fromtimestamp(int(t), _UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(int(t), _UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_finished_type(job: Mapping[str, Any]) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"]
    return None


def _start_time_order(job: Mapping[str, Any]) -> tuple[bool, float, str]:
    """Oldest first; Jobs that never started last, ties by name (``byJobStartTime``)."""
    start = parse_time((job.get("status") or {}).get("startTime"))
    return (start is None, start or 0.0, meta(job).get("name", ""))


# -- the controller ----------------------------------------------------------------------------


class CronJobController(Controller):
    """Reconciles CronJobs with the Jobs they create."""

    name = "cronjob-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 5,
                 recorder: EventRecorder | None = None, now: Callable[[], float] = time.time):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.now = now
        self.cronjobs: SharedInformer = informers.informer(API_VERSION, "cronjobs")
        self.jobs: SharedInformer = informers.informer(
            API_VERSION, "jobs", indexers={OWNER_UID_INDEX: index_by_owner_uid})
        self.cronjobs.add_event_handler(on_add=self.enqueue, on_update=self._cronjob_updated,
                                        on_delete=self.enqueue)
        self.jobs.add_event_handler(on_add=self._job_changed,
                                    on_update=self._job_updated, on_delete=self._job_changed)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.cronjobs, self.jobs]

    # -- event handlers ------------------------------------------------------------------------
    def _resolve(self, namespace: str, ref: Mapping[str, Any]) -> Object | None:
        if ref.get("kind") != KIND:
            return None
        cronjob = self.cronjobs.indexer.get(f"{namespace}/{ref.get('name')}")
        if cronjob is None or meta(cronjob).get("uid") != ref.get("uid"):
            return None
        return cronjob

    def _job_changed(self, job: Object) -> None:
        ref = controller_ref(job)
        cronjob = None if ref is None else self._resolve(meta(job).get("namespace") or "", ref)
        if cronjob is not None:
            self.enqueue(cronjob)

    def _job_updated(self, old: Object, new: Object) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        if controller_ref(old) != controller_ref(new):
            self._job_changed(old)
        self._job_changed(new)

    def _cronjob_updated(self, old: Object, new: Object) -> None:
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if (old_spec.get("schedule"), old_spec.get("timeZone")) == \
                (new_spec.get("schedule"), new_spec.get("timeZone")):
            self.enqueue(new)
            return
        try:
            schedule = parse_schedule(new_spec.get("schedule") or "", new_spec.get("timeZone"))
        except ScheduleError:
            self._event(new, WARNING, "UnParseableCronJobSchedule",
                        f"unparseable schedule for cronjob: {new_spec.get('schedule')}")
            return
        self.queue.add_after(object_key(new), next_schedule_delay(new, self.now(), schedule))

    def _event(self, cronjob: Object, type_: str, reason: str, message: str) -> None:
        obj = {"apiVersion": API_VERSION, "kind": KIND, **cronjob}
        self.recorder.event(obj, type_, reason, message)

    # -- reconcile -----------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        cronjob = self.cronjobs.indexer.get(key)
        if cronjob is None:
            return
        cronjob = copy.deepcopy(cronjob)
        cronjob.setdefault("apiVersion", API_VERSION)
        cronjob.setdefault("kind", KIND)
        cronjob.setdefault("status", {})
        jobs = [j for j in self.jobs.indexer.by_index(OWNER_UID_INDEX, meta(cronjob)["uid"])
                if (controller_ref(j) or {}).get("uid") == meta(cronjob)["uid"]]
        changed = await self._cleanup_finished_jobs(cronjob, jobs)
        delay, synced_changes, error = await self._sync(cronjob, jobs)
        if changed or synced_changes:
            try:
                await self.client.update(API_VERSION, "cronjobs", cronjob, subresource="status")
            except ApiError as e:
                if e.conflict:
                    raise Requeue(f"cronjob {key} changed while syncing") from e
                raise
        if delay is not None:
            self.queue.add_after(key, delay)
        elif error is not None:
            raise error

    async def _sync(self, cronjob: Object,
                    jobs: list[Object]) -> tuple[float | None, bool, BaseException | None]:
        """``syncCronJob``: (requeue delay, whether the status changed, error)."""
        now = self.now()
        spec, status = cronjob.get("spec") or {}, cronjob["status"]
        changed = False
        children = set()
        for job in jobs:
            uid = meta(job).get("uid")
            children.add(uid)
            finished = job_finished_type(job)
            in_active = _in_active(cronjob, uid)
            if not in_active and finished is None:
                fresh = await self.client.get(API_VERSION, "cronjobs", meta(cronjob)["name"],
                                              namespace=meta(cronjob).get("namespace"))
                if _in_active(fresh, uid):
                    cronjob.clear()
                    cronjob.update(fresh)
                    cronjob.setdefault("apiVersion", API_VERSION)
                    cronjob.setdefault("kind", KIND)
                    status = cronjob.setdefault("status", {})
                    continue
                self._event(cronjob, WARNING, "UnexpectedJob",
                            f"Saw a job that the controller did not create or forgot: "
                            f"{meta(job)['name']}")
            elif in_active and finished is not None:
                _remove_active(cronjob, uid)
                self._event(cronjob, NORMAL, "SawCompletedJob",
                            f"Saw completed job: {meta(job)['name']}, status: {finished}")
                changed = True
            if finished == "Complete":
                completed = (job.get("status") or {}).get("completionTime")
                last = parse_time(status.get("lastSuccessfulTime"))
                at = parse_time(completed)
                if at is not None and (last is None or at > last):
                    status["lastSuccessfulTime"] = completed
                    changed = True

        for ref in list(status.get("active") or ()):
            if ref.get("uid") in children:
                continue
            try:
                await self.client.get(API_VERSION, "jobs", ref.get("name", ""),
                                      namespace=ref.get("namespace"))
            except ApiError as e:
                if not e.not_found:
                    return None, changed, e
                self._event(cronjob, NORMAL, "MissingJob",
                            f"Active job went missing: {ref.get('name')}")
                _remove_active(cronjob, ref.get("uid"))
                changed = True

        if meta(cronjob).get("deletionTimestamp"):
            return None, changed, None
        try:
            zone_name = spec.get("timeZone")
            if zone_name is not None:
                load_zone(zone_name)
        except ScheduleError as e:
            self._event(cronjob, WARNING, "UnknownTimeZone",
                        f'invalid timeZone: "{zone_name}": {e}')
            return None, changed, None
        if spec.get("suspend"):
            return None, changed, None
        text = spec.get("schedule") or ""
        if "TZ" in text:
            self._event(cronjob, WARNING, "UnsupportedSchedule",
                        f'CRON_TZ or TZ used in schedule "{text}" is not officially supported, '
                        "see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ "
                        "for more details")
        try:
            schedule = parse_schedule(text, None if "TZ" in text else spec.get("timeZone"))
        except ScheduleError as e:
            self._event(cronjob, WARNING, "UnparseableSchedule",
                        f'unparseable schedule: "{text}" : {e}')
            return None, changed, None
        try:
            found = most_recent_schedule_time(cronjob, now, schedule, True)
        except ScheduleError as e:
            self._event(cronjob, WARNING, "InvalidSchedule", f"invalid schedule: {text} : {e}")
            return None, changed, None
        scheduled = found.time
        if scheduled is None or scheduled > now:
            return next_schedule_delay(cronjob, now, schedule), changed, None
        if found.missed == "many":
            self._event(cronjob, WARNING, "TooManyMissedTimes",
                        "too many missed start times. Set or decrease "
                        ".spec.startingDeadlineSeconds or check clock skew")

        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + deadline < now:
            self._event(cronjob, WARNING, "MissSchedule",
                        f"Missed scheduled time to start a job: {_rfc1123z(scheduled)}")
            return next_schedule_delay(cronjob, now, schedule), changed, None
        name = job_name(cronjob, scheduled)
        if any(ref.get("name") == name for ref in status.get("active") or ()) \
                or parse_time(status.get("lastScheduleTime")) == int(scheduled):
            return next_schedule_delay(cronjob, now, schedule), changed, None
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            self._event(cronjob, NORMAL, "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency "
                        "policy is Forbid")
            return next_schedule_delay(cronjob, now, schedule), changed, None
        if policy == "Replace":
            for ref in list(status.get("active") or ()):
                try:
                    job = await self.client.get(API_VERSION, "jobs", ref.get("name", ""),
                                                namespace=ref.get("namespace"))
                except ApiError as e:
                    self._event(cronjob, WARNING, "FailedGet", f"Get job: {e.message}")
                    return None, changed, e
                if not await self._delete_job(cronjob, job):
                    return None, changed, RuntimeError(
                        f"could not replace job {ref.get('namespace')}/{ref.get('name')}")
                changed = True

        created, error = await self._create_job(cronjob, scheduled)
        if created is None:
            return None, changed, error
        status.setdefault("active", []).append(_object_reference(created))
        status["lastScheduleTime"] = _stamp(scheduled)
        return next_schedule_delay(cronjob, now, schedule), True, None

    async def _create_job(self, cronjob: Object,
                          scheduled: float) -> tuple[Object | None, BaseException | None]:
        """The Job for ``scheduled`` (created now or found already created by us), or None."""
        request = job_from_template(cronjob, scheduled)
        namespace = meta(cronjob).get("namespace")
        try:
            created = await self.client.create(API_VERSION, "jobs", request, namespace=namespace)
        except ApiError as e:
            if e.already_exists:
                existing = await self.client.get(API_VERSION, "jobs", request["metadata"]["name"],
                                                 namespace=namespace)
                ref = controller_ref(existing)
                if ref is None or ref.get("uid") != meta(cronjob)["uid"] \
                        or _in_active(cronjob, meta(existing).get("uid")):
                    return None, None
                log.info("job %s/%s already exists", namespace, request["metadata"]["name"])
                return existing, None
            if e.code == 403 and "being terminated" in e.message:
                return None, e
            self._event(cronjob, WARNING, "FailedCreate", f"Error creating job: {e.message}")
            return None, e
        self._event(cronjob, NORMAL, "SuccessfulCreate", f"Created job {meta(created)['name']}")
        return created, None

    async def _delete_job(self, cronjob: Object, job: Object) -> bool:
        try:
            await self.client.delete(API_VERSION, "jobs", meta(job)["name"],
                                     namespace=meta(job).get("namespace"),
                                     propagation_policy="Background")
        except ApiError as e:
            if not e.not_found:
                self._event(cronjob, WARNING, "FailedDelete", f"Deleted job: {e.message}")
                return False
        _remove_active(cronjob, meta(job).get("uid"))
        self._event(cronjob, NORMAL, "SuccessfulDelete", f"Deleted job {meta(job)['name']}")
        return True

    async def _cleanup_finished_jobs(self, cronjob: Object, jobs: list[Object]) -> bool:
        """Delete the oldest finished Jobs beyond the history limits."""
        spec = cronjob.get("spec") or {}
        changed = False
        for kind, limit_field in (("Complete", "successfulJobsHistoryLimit"),
                                  ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(limit_field)
            if limit is None:
                continue
            finished = sorted((j for j in jobs if job_finished_type(j) == kind
                               and not meta(j).get("deletionTimestamp")),
                              key=_start_time_order)
            for job in finished[:max(0, len(finished) - limit)]:
                changed |= await self._delete_job(cronjob, job)
        return changed


def _in_active(cronjob: Mapping[str, Any], uid: str | None) -> bool:
    return any(ref.get("uid") == uid for ref in (cronjob.get("status") or {}).get("active") or ())


def _remove_active(cronjob: Object, uid: str | None) -> None:
    status = cronjob.setdefault("status", {})
    status["active"] = [ref for ref in status.get("active") or () if ref.get("uid") != uid]
    if not status["active"]:
        status.pop("active")


def _object_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    job_meta = meta(job)
    return {"kind": "Job", "namespace": job_meta.get("namespace"), "name": job_meta.get("name"),
            "uid": job_meta.get("uid"), "apiVersion": API_VERSION,
            "resourceVersion": job_meta.get("resourceVersion")}


__all__ = ["CronJobController", "SCHEDULED_TIMESTAMP_ANNOTATION", "Schedule", "ScheduleError",
           "job_from_template", "job_name", "most_recent_schedule_time", "next_schedule_delay",
           "parse_schedule"]
