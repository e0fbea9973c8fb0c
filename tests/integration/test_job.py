"""The Job and TTL-after-finished controllers against a real API server. There are no kubelets:
the tests move pods through their phases with ``set_pod_status``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sampan.client import Client, InformerFactory, load_kubeconfig
from sampan.controllers.garbagecollector import GarbageCollector
from sampan.controllers.job import COMPLETION_INDEX_ANNOTATION, TRACKING_FINALIZER, JobController
from sampan.controllers.ttlafterfinished import TTLAfterFinishedController
from tests.integration.helpers import eventually, exists, new_namespace, set_pod_status

TIMEOUT = 40.0


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


@contextlib.asynccontextmanager
async def running(client: Client, *, ttl: bool = False) -> AsyncIterator[JobController]:
    informers = InformerFactory(client)
    jobs = JobController(client, informers, pod_failure_backoff=0.2, sync_batch_period=0.05,
                         api_backoff=0.05)
    controllers: list[Any] = [jobs]
    if ttl:
        controllers += [TTLAfterFinishedController(client, informers),
                        GarbageCollector(client, informers)]
    informers.start()
    tasks = [asyncio.create_task(c.run()) for c in controllers]
    try:
        yield jobs
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()
        await jobs.recorder.close()


def job_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": "busybox"}]}}, **spec}}


async def get_job(client: Client, ns: str, name: str) -> dict[str, Any]:
    return await client.get("batch/v1", "jobs", name, namespace=ns)


async def job_pods(client: Client, ns: str, name: str, *,
                   live: bool = True) -> list[dict[str, Any]]:
    pods = (await client.list("v1", "pods", namespace=ns,
                              label_selector=f"batch.kubernetes.io/job-name={name}"))["items"]
    if live:
        pods = [p for p in pods
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                and not p["metadata"].get("deletionTimestamp")]
    return pods


def condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c["type"] == type_ and c["status"] == "True":
            return c
    return None


async def wait_condition(client: Client, ns: str, name: str, type_: str) -> dict[str, Any]:
    async def check() -> bool:
        return condition(await get_job(client, ns, name), type_) is not None
    await eventually(check, TIMEOUT, f"job {name} {type_}")
    return await get_job(client, ns, name)


async def events(client: Client, ns: str, name: str) -> list[tuple[str, str]]:
    items = (await client.list("v1", "events", namespace=ns))["items"]
    return [(e["reason"], e["message"]) for e in items if e["involvedObject"]["name"] == name]


async def finish_pods(client: Client, ns: str, pods: list[dict[str, Any]], phase: str,
                      exit_code: int | None = None) -> None:
    for pod in pods:
        await set_pod_status(client, ns, pod["metadata"]["name"], phase=phase, exit_code=exit_code)


async def test_completions_with_parallelism(client: Client) -> None:
    ns = await new_namespace(client, "job")
    async with running(client):
        await client.create("batch/v1", "jobs", job_manifest("work", completions=3, parallelism=2),
                            namespace=ns)

        async def two_running() -> bool:
            return len(await job_pods(client, ns, "work")) == 2
        await eventually(two_running, TIMEOUT, "two pods")
        pods = await job_pods(client, ns, "work")
        assert all(TRACKING_FINALIZER in p["metadata"]["finalizers"] for p in pods)
        labels = pods[0]["metadata"]["labels"]
        assert labels["batch.kubernetes.io/job-name"] == "work" and labels["job-name"] == "work"
        assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "Job"

        await set_pod_status(client, ns, pods[0]["metadata"]["name"], phase="Running")

        async def ready_counted() -> bool:
            status = (await get_job(client, ns, "work")).get("status") or {}
            return status.get("ready") == 1 and status.get("active") == 2
        await eventually(ready_counted, TIMEOUT, "ready pod counted")

        succeeded: set[str] = set()
        while len(succeeded) < 3:
            async def new_pod() -> bool:
                return any(p["metadata"]["name"] not in succeeded
                           for p in await job_pods(client, ns, "work"))
            await eventually(new_pod, TIMEOUT, "a pod to finish")
            pod = next(p for p in await job_pods(client, ns, "work")
                       if p["metadata"]["name"] not in succeeded)
            await set_pod_status(client, ns, pod["metadata"]["name"], phase="Succeeded")
            succeeded.add(pod["metadata"]["name"])

        job = await wait_condition(client, ns, "work", "Complete")
        status = job["status"]
        assert status["succeeded"] == 3
        assert status.get("active", 0) == 0 and status.get("failed", 0) == 0
        assert status["completionTime"] and status["startTime"]
        assert condition(job, "SuccessCriteriaMet")["reason"] == "CompletionsReached"
        assert status["uncountedTerminatedPods"] == {}
        # every pod's tracking finalizer is gone once counted
        for pod in await job_pods(client, ns, "work", live=False):
            assert TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or [])

        async def completed_event() -> bool:
            return ("Completed", "Job completed") in await events(client, ns, "work")
        await eventually(completed_event, TIMEOUT, "Completed event")
        assert any(r == "SuccessfulCreate" and m.startswith("Created pod: work-")
                   for r, m in await events(client, ns, "work"))


async def test_backoff_limit_exceeded(client: Client) -> None:
    ns = await new_namespace(client, "job")
    async with running(client):
        await client.create("batch/v1", "jobs", job_manifest("flaky", backoffLimit=1), namespace=ns)
        failed: set[str] = set()
        for _ in range(2):
            async def fresh_pod() -> bool:
                return any(p["metadata"]["name"] not in failed
                           for p in await job_pods(client, ns, "flaky"))
            await eventually(fresh_pod, TIMEOUT, "a pod to fail")
            pod = next(p for p in await job_pods(client, ns, "flaky")
                       if p["metadata"]["name"] not in failed)
            await set_pod_status(client, ns, pod["metadata"]["name"], phase="Failed")
            failed.add(pod["metadata"]["name"])
        job = await wait_condition(client, ns, "flaky", "Failed")
        assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
        assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"
        assert job["status"]["failed"] == 2 and job["status"]["active"] == 0

        async def warned() -> bool:
            return ("BackoffLimitExceeded", "Job has reached the specified backoff limit") \
                in await events(client, ns, "flaky")
        await eventually(warned, TIMEOUT, "BackoffLimitExceeded event")


async def test_active_deadline(client: Client) -> None:
    ns = await new_namespace(client, "job")
    async with running(client):
        await client.create("batch/v1", "jobs",
                            job_manifest("slow", parallelism=2, completions=4,
                                         activeDeadlineSeconds=2), namespace=ns)
        job = await wait_condition(client, ns, "slow", "Failed")
        assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
        assert job["status"]["active"] == 0 and job["status"]["failed"] == 2

        async def pods_gone() -> bool:
            return not await job_pods(client, ns, "slow", live=False)
        await eventually(pods_gone, TIMEOUT, "the deadline's pods deleted")
        assert ("DeadlineExceeded", "Job was active longer than specified deadline") \
            in await events(client, ns, "slow")


async def test_indexed_job(client: Client) -> None:
    ns = await new_namespace(client, "job")
    async with running(client):
        await client.create("batch/v1", "jobs",
                            job_manifest("idx", completions=3, parallelism=3,
                                         completionMode="Indexed"), namespace=ns)

        async def three() -> bool:
            return len(await job_pods(client, ns, "idx")) == 3
        await eventually(three, TIMEOUT, "three indexed pods")
        pods = {int(p["metadata"]["annotations"][COMPLETION_INDEX_ANNOTATION]): p
                for p in await job_pods(client, ns, "idx")}
        assert sorted(pods) == [0, 1, 2]
        for index, pod in pods.items():
            assert pod["metadata"]["labels"][COMPLETION_INDEX_ANNOTATION] == str(index)
            assert pod["metadata"]["name"].startswith(f"idx-{index}-")
            assert pod["spec"]["hostname"] == f"idx-{index}"
            env = pod["spec"]["containers"][0]["env"]
            assert env[0]["name"] == "JOB_COMPLETION_INDEX"

        await set_pod_status(client, ns, pods[0]["metadata"]["name"], phase="Succeeded")
        await set_pod_status(client, ns, pods[2]["metadata"]["name"], phase="Succeeded")

        async def two_done() -> bool:
            return ((await get_job(client, ns, "idx")).get("status") or {}).get(
                "completedIndexes") == "0,2"
        await eventually(two_done, TIMEOUT, "completedIndexes 0,2")
        await set_pod_status(client, ns, pods[1]["metadata"]["name"], phase="Succeeded")
        job = await wait_condition(client, ns, "idx", "Complete")
        assert job["status"]["completedIndexes"] == "0-2" and job["status"]["succeeded"] == 3


async def test_pod_failure_policy_fail_job(client: Client) -> None:
    ns = await new_namespace(client, "job")
    policy = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [2]}},
                        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    async with running(client):
        await client.create("batch/v1", "jobs",
                            job_manifest("pfp", backoffLimit=6, podFailurePolicy=policy),
                            namespace=ns)

        async def one_pod() -> bool:
            return len(await job_pods(client, ns, "pfp")) == 1
        await eventually(one_pod, TIMEOUT, "a pod")
        first = (await job_pods(client, ns, "pfp"))[0]["metadata"]["name"]
        await set_pod_status(client, ns, first, phase="Failed", exit_code=2)  # ignored

        async def replaced() -> bool:
            return any(p["metadata"]["name"] != first for p in await job_pods(client, ns, "pfp"))
        await eventually(replaced, TIMEOUT, "the ignored failure replaced")
        job = await get_job(client, ns, "pfp")
        assert job["status"].get("failed", 0) == 0
        second = next(p for p in await job_pods(client, ns, "pfp")
                      if p["metadata"]["name"] != first)["metadata"]["name"]
        await set_pod_status(client, ns, second, phase="Failed", exit_code=42)
        job = await wait_condition(client, ns, "pfp", "Failed")
        failed = condition(job, "Failed")
        assert failed["reason"] == "PodFailurePolicy"
        assert failed["message"] == (f"Container work for pod {ns}/{second} failed with exit code "
                                     "42 matching FailJob rule at index 1")
        assert job["status"]["failed"] == 1


async def test_ttl_after_finished_deletes_job(client: Client) -> None:
    ns = await new_namespace(client, "job")
    async with running(client, ttl=True):
        # The TTL is set only once the job is Complete: with it set from the start the job could be
        # gone before the test reads the condition. Setting it on a finished job is also how
        # upstream's controller is exercised by `kubectl patch`.
        await client.create("batch/v1", "jobs", job_manifest("brief"), namespace=ns)

        async def one_pod() -> bool:
            return len(await job_pods(client, ns, "brief")) == 1
        await eventually(one_pod, TIMEOUT, "a pod")
        pod = (await job_pods(client, ns, "brief"))[0]["metadata"]["name"]
        await set_pod_status(client, ns, pod, phase="Succeeded")
        await wait_condition(client, ns, "brief", "Complete")
        await client.patch("batch/v1", "jobs", "brief", {"spec": {"ttlSecondsAfterFinished": 1}},
                           namespace=ns)

        async def deleted() -> bool:
            return not await exists(client, "batch/v1", "jobs", "brief", ns)
        await eventually(deleted, TIMEOUT, "job deleted after its TTL")

        async def pod_deleted() -> bool:
            return not await exists(client, "v1", "pods", pod, ns)
        await eventually(pod_deleted, TIMEOUT, "its pod deleted")
