"""The TTL-after-finished controller: deletes a finished Job ``ttlSecondsAfterFinished`` after
it finished, as upstream's ``pkg/controller/ttlafterfinished``.

The finish time is the ``lastTransitionTime`` of the Job's Complete or Failed condition. A Job
whose TTL has not expired is looked at again exactly when it will; an expired one is read
afresh from the API server (the TTL may have changed) and deleted with foreground propagation,
so that its pods go first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sampan.client.controller import Controller
from sampan.client.errors import ApiError
from sampan.client.events import EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, split_key
from sampan.client.rest import Client, Preconditions
from sampan.controllers.util import Object, meta, parse_time

log = logging.getLogger(__name__)

API_VERSION = "batch/v1"


def needs_cleanup(job: Mapping[str, Any]) -> bool:
    """A finished Job with a TTL that is not already being deleted."""
    return ((job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None
            and not meta(job).get("deletionTimestamp") and finish_time(job) is not None)


def finish_time(job: Mapping[str, Any]) -> float | None:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def time_left(job: Mapping[str, Any], now: float) -> float | None:
    """Seconds until the Job's TTL expires (≤ 0 once it has), or None if it has none."""
    if not needs_cleanup(job):
        return None
    finished = finish_time(job)
    assert finished is not None
    if finished > now:
        log.warning("found Job %s/%s finished in the future. This is likely due to time skew in "
                    "the cluster. Job cleanup will be deferred.", meta(job).get("namespace"),
                    meta(job).get("name"))
    return finished + job["spec"]["ttlSecondsAfterFinished"] - now


class TTLAfterFinishedController(Controller):
    """Deletes finished Jobs whose ``ttlSecondsAfterFinished`` has passed."""

    name = "ttl-after-finished-controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 5,
                 recorder: EventRecorder | None = None, now: Callable[[], float] = time.time):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.now = now
        self.jobs: SharedInformer = informers.informer(API_VERSION, "jobs")
        self.jobs.add_event_handler(on_add=self._enqueue_if_needed,
                                    on_update=lambda _old, new: self._enqueue_if_needed(new))

    def watched_informers(self) -> list[SharedInformer]:
        return [self.jobs]

    def _enqueue_if_needed(self, job: Object) -> None:
        if needs_cleanup(job):
            self.enqueue(job)

    async def reconcile(self, key: str) -> None:
        job = self.jobs.indexer.get(key)
        if job is None or not self._expired(key, job):
            return
        # The cached TTL may be stale: decide again on a fresh read.
        namespace, name = split_key(key)
        try:
            fresh = await self.client.get(API_VERSION, "jobs", name, namespace=namespace)
        except ApiError as e:
            if e.not_found:
                return
            raise
        if not self._expired(key, fresh):
            return
        log.info("cleaning up Job %s", key)
        try:
            await self.client.delete(API_VERSION, "jobs", name, namespace=namespace,
                                     propagation_policy="Foreground",
                                     preconditions=Preconditions(uid=meta(fresh).get("uid")))
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

    def _expired(self, key: str, job: Object) -> bool:
        left = time_left(job, self.now())
        if left is None:
            return False
        if left > 0:
            self.queue.add_after(key, left)
            return False
        return True


__all__ = ["TTLAfterFinishedController", "finish_time", "needs_cleanup", "time_left"]
