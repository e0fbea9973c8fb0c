"""Pod garbage collection, as upstream's ``pkg/controller/podgc``.

Every ``gc_check_period`` seconds: finished pods beyond ``terminated_pod_gc_threshold`` go
(oldest first); pods bound to a Node that no longer exists go once the Node has been missing
for a quarantine period and a fresh read confirms it; terminating pods that were never
scheduled, and terminating pods on a not-ready node tainted ``out-of-service``, are deleted
at once (no kubelet will ever finish them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sampan.client.controller import Controller
from sampan.client.errors import ApiError
from sampan.client.events import EventRecorder
from sampan.client.informer import InformerFactory, SharedInformer, object_key
from sampan.client.rest import Client, Preconditions
from sampan.controllers.nodelifecycle import (
    POD_NODE_NAME_INDEX,
    has_taint,
    index_pod_by_node_name,
    node_condition,
    wait_for_synced,
)
from sampan.controllers.util import meta, now_rfc3339, parse_time, pod_phase

log = logging.getLogger(__name__)

Object = dict[str, Any]

GC_CHECK_PERIOD = 20.0
QUARANTINE_TIME = 40.0
TERMINATED_POD_GC_THRESHOLD = 12500
DELETE_CONCURRENCY = 16
TAINT_OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def is_terminated(pod: Object) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def terminated_to_delete(pods: list[Object], threshold: int) -> list[Object]:
    """The oldest finished pods beyond ``threshold`` (none when the threshold is 0)."""
    if threshold <= 0:
        return []
    terminated = [p for p in pods if is_terminated(p)]
    excess = len(terminated) - threshold
    if excess <= 0:
        return []
    terminated.sort(key=lambda p: (parse_time(meta(p).get("creationTimestamp")) or 0.0,
                                   object_key(p)))
    return terminated[:excess]


class PodGCController(Controller):
    """Deletes pods nobody else will: excess finished ones, orphans of deleted nodes, and
    terminating ones no kubelet will finish. Queue keys: node names in quarantine."""

    name = "pod-garbage-collector"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = 1,
                 gc_check_period: float = GC_CHECK_PERIOD,
                 quarantine_time: float = QUARANTINE_TIME,
                 terminated_pod_gc_threshold: int = TERMINATED_POD_GC_THRESHOLD):
        super().__init__(client, informers, workers=workers,
                         recorder=recorder or EventRecorder(client, self.name))
        self.gc_check_period = gc_check_period
        self.quarantine_time = quarantine_time
        self.threshold = terminated_pod_gc_threshold
        self.pods = informers.informer("v1", "pods",
                                       indexers={POD_NODE_NAME_INDEX: index_pod_by_node_name})
        self.nodes = informers.informer("v1", "nodes")
        self._quarantined: set[str] = set()

    def watched_informers(self) -> list[SharedInformer]:
        return [self.pods, self.nodes]

    async def run(self) -> None:
        loop = asyncio.create_task(self._gc_forever(), name=f"{self.name} loop")
        try:
            await super().run()
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    async def _gc_forever(self) -> None:
        await wait_for_synced(self.watched_informers())
        while True:
            try:
                await self.gc()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: garbage collection pass failed", self.name)
            await asyncio.sleep(self.gc_check_period)

    async def gc(self) -> None:
        pods = self.pods.indexer.list()
        await self._delete_all(terminated_to_delete(pods, self.threshold))
        await self._delete_all(self._terminating_out_of_service(pods))
        self._quarantine_orphans(pods)
        await self._delete_all([p for p in pods if meta(p).get("deletionTimestamp")
                                and not (p.get("spec") or {}).get("nodeName")])

    def _terminating_out_of_service(self, pods: list[Object]) -> list[Object]:
        doomed = []
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not meta(pod).get("deletionTimestamp") or not node_name:
                continue
            node = self.nodes.indexer.get(node_name)
            if node is None or not has_taint((node.get("spec") or {}).get("taints") or (),
                                             TAINT_OUT_OF_SERVICE, "NoExecute"):
                continue
            ready = node_condition(node, "Ready")
            if ready is None or ready.get("status") != "True":
                doomed.append(pod)
        return doomed

    def _quarantine_orphans(self, pods: list[Object]) -> None:
        """Nodes that pods are bound to but that the cache does not hold are looked at again
        after the quarantine (the cache may just be behind)."""
        node_names = {(p.get("spec") or {}).get("nodeName") for p in pods}
        node_names.discard(None)
        for node_name in node_names:
            if node_name not in self.nodes.indexer and node_name not in self._quarantined:
                self._quarantined.add(node_name)
                self.queue.add_after(node_name, self.quarantine_time)

    async def reconcile(self, key: str) -> None:
        self._quarantined.discard(key)
        if key in self.nodes.indexer:
            return
        try:
            await self.client.get("v1", "nodes", key)
            return
        except ApiError as e:
            if not e.not_found:
                raise
        orphans = self.pods.indexer.by_index(POD_NODE_NAME_INDEX, key)
        await self._delete_all(orphans, reason=("DeletionByPodGC", "PodGC: node no longer exists"))

    async def _delete_all(self, pods: list[Object],
                          reason: tuple[str, str] | None = None) -> None:
        if not pods:
            return
        semaphore = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def one(pod: Object) -> None:
            async with semaphore:
                try:
                    await self.delete_pod(pod, reason)
                except ApiError as e:
                    log.warning("%s: deleting pod %s failed: %s", self.name, object_key(pod), e)
        await asyncio.gather(*(one(p) for p in pods))

    async def delete_pod(self, pod: Object, reason: tuple[str, str] | None = None) -> None:
        """Mark an unfinished pod Failed (with a DisruptionTarget condition when ``reason``
        is given), then delete it with no grace period."""
        namespace, name = meta(pod).get("namespace"), meta(pod)["name"]
        log.info("%s: deleting pod %s/%s", self.name, namespace, name)
        if not is_terminated(pod):
            await self._mark_failed(pod, reason)
        try:
            await self.client.delete("v1", "pods", name, namespace=namespace,
                                     grace_period_seconds=0,
                                     preconditions=Preconditions(uid=meta(pod).get("uid")))
        except ApiError as e:
            if not (e.not_found or e.code == 409):
                raise

    async def _mark_failed(self, pod: Object, reason: tuple[str, str] | None) -> None:
        status: Object = {"phase": "Failed"}
        if reason is not None:
            conditions = [c for c in (pod.get("status") or {}).get("conditions") or ()
                          if c.get("type") != "DisruptionTarget"]
            conditions.append({"type": "DisruptionTarget", "status": "True", "reason": reason[0],
                               "message": reason[1], "lastTransitionTime": now_rfc3339()})
            status["conditions"] = conditions
        try:
            await self.client.patch("v1", "pods", meta(pod)["name"], {"status": status},
                                    namespace=meta(pod).get("namespace"), subresource="status")
        except ApiError as e:
            if not (e.not_found or e.code in (409, 422)):
                raise
