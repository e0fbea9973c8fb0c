"""The CronJob controller against a real API server, with an injected clock: the test moves
time forward a minute at a time instead of waiting for the schedule."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import Client, InformerFactory, load_kubeconfig
from sampan.controllers.cronjob import SCHEDULED_TIMESTAMP_ANNOTATION, CronJobController
from sampan.controllers.util import now_rfc3339, parse_time
from tests.integration.helpers import eventually, new_namespace

TIMEOUT = 40.0


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@contextlib.asynccontextmanager
async def running(client: Client, clock: Clock) -> AsyncIterator[CronJobController]:
    informers = InformerFactory(client)
    controller = CronJobController(client, informers, now=clock)
    informers.start()
    task = asyncio.create_task(controller.run())
    try:
        yield controller
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await informers.stop()
        await controller.recorder.close()


def cronjob_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "tick", "image": "busybox"}]}}}}, **spec}}


async def owned_jobs(client: Client, ns: str) -> list[dict[str, Any]]:
    items = (await client.list("batch/v1", "jobs", namespace=ns))["items"]
    return sorted(items, key=lambda j: j["metadata"]["name"])


async def reasons(client: Client, ns: str) -> list[tuple[str, str]]:
    items = (await client.list("v1", "events", namespace=ns))["items"]
    return [(e["reason"], e["message"]) for e in items]


async def complete(client: Client, ns: str, name: str) -> None:
    job = await client.get("batch/v1", "jobs", name, namespace=ns)
    now = now_rfc3339()
    job["status"] = {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
        {"type": "Complete", "status": "True", "lastTransitionTime": now}]}
    await client.update("batch/v1", "jobs", job, namespace=ns, subresource="status")


async def advance(controller: CronJobController, clock: Clock, ns: str, name: str) -> None:
    """A minute passes; the controller looks at the CronJob again."""
    clock.offset += 60
    controller.queue.add(f"{ns}/{name}")


async def test_creates_jobs_on_schedule_with_forbid_and_history_limit(client: Client) -> None:
    ns = await new_namespace(client, "cron")
    clock = Clock()
    async with running(client, clock) as controller:
        created = await client.create(
            "batch/v1", "cronjobs",
            cronjob_manifest("tick", concurrencyPolicy="Forbid", successfulJobsHistoryLimit=1),
            namespace=ns)
        # nothing is due before the next minute starts
        await asyncio.sleep(0.3)
        assert await owned_jobs(client, ns) == []

        await advance(controller, clock, ns, "tick")

        async def jobs_count(n: int) -> bool:
            return len(await owned_jobs(client, ns)) == n

        async def one_job() -> bool:
            return await jobs_count(1)
        await eventually(one_job, TIMEOUT, "the first scheduled job")
        first = (await owned_jobs(client, ns))[0]
        creation = parse_time(created["metadata"]["creationTimestamp"])
        scheduled = (int(creation) // 60 + 1) * 60
        assert first["metadata"]["name"] == f"tick-{scheduled // 60}"
        assert first["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == \
            now_rfc3339(scheduled)
        assert first["metadata"]["labels"]["app"] == "tick"
        ref = first["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "CronJob" and ref["uid"] == created["metadata"]["uid"]

        async def active_recorded() -> bool:
            status = (await client.get("batch/v1", "cronjobs", "tick", namespace=ns)).get(
                "status") or {}
            return [a["name"] for a in status.get("active") or []] == [first["metadata"]["name"]]
        await eventually(active_recorded, TIMEOUT, "status.active")
        cronjob = await client.get("batch/v1", "cronjobs", "tick", namespace=ns)
        assert parse_time(cronjob["status"]["lastScheduleTime"]) == scheduled
        assert ("SuccessfulCreate", f"Created job {first['metadata']['name']}") \
            in await reasons(client, ns)

        # Forbid: the next minute passes while the first job still runs
        await advance(controller, clock, ns, "tick")

        async def refused() -> bool:
            return any(r == "JobAlreadyActive" for r, _ in await reasons(client, ns))
        await eventually(refused, TIMEOUT, "JobAlreadyActive")
        assert await jobs_count(1)

        # Once it completes, the schedule time it held back runs at once.
        await complete(client, ns, first["metadata"]["name"])

        async def two_jobs() -> bool:
            return await jobs_count(2)
        await eventually(two_jobs, TIMEOUT, "the held-back job")

        async def saw_completed() -> bool:
            status = (await client.get("batch/v1", "cronjobs", "tick", namespace=ns)).get(
                "status") or {}
            return bool(status.get("lastSuccessfulTime")) and len(status.get("active") or []) == 1
        await eventually(saw_completed, TIMEOUT, "the completed job noticed")
        second = next(j for j in await owned_jobs(client, ns)
                      if j["metadata"]["name"] != first["metadata"]["name"])
        await complete(client, ns, second["metadata"]["name"])

        # successfulJobsHistoryLimit=1: the older completed job goes
        async def older_deleted() -> bool:
            names = [j["metadata"]["name"] for j in await owned_jobs(client, ns)]
            return names == [second["metadata"]["name"]]
        await eventually(older_deleted, TIMEOUT, "the oldest completed job deleted")
        messages = await reasons(client, ns)
        assert ("SuccessfulDelete", f"Deleted job {first['metadata']['name']}") in messages
        assert any(r == "SawCompletedJob" and m.endswith("status: Complete") for r, m in messages)


async def test_suspended_cronjob_creates_nothing(client: Client) -> None:
    ns = await new_namespace(client, "cron")
    clock = Clock()
    async with running(client, clock) as controller:
        await client.create("batch/v1", "cronjobs", cronjob_manifest("paused", suspend=True),
                            namespace=ns)
        await advance(controller, clock, ns, "paused")
        await advance(controller, clock, ns, "paused")
        await asyncio.sleep(0.5)
        assert await owned_jobs(client, ns) == []
