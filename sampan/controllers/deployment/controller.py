"""The Deployment controller (upstream's ``pkg/controller/deployment``): a Deployment owns
ReplicaSets named ``<deployment>-<pod-template-hash>``, one per pod template it has had, and
moves pods from the old ones to the new one by resizing them (the ReplicaSet controller makes
the pods). ``reconcile`` claims the ReplicaSets and picks what to do, as ``syncDeployment``:
only status for a Deployment being deleted, resize for a paused one or a scaling event, the
deprecated rollback, or a Recreate / RollingUpdate rollout (``rollout.py``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from sampan.api.errors import StatusError
from sampan.api.selectors import LabelSelector
from sampan.client.controller import Controller, Requeue
from sampan.client.errors import ApiError
from sampan.client.events import WARNING, EventRecorder
from sampan.client.informer import (
    NAMESPACE_INDEX,
    OWNER_UID_INDEX,
    InformerFactory,
    SharedInformer,
    index_by_owner_uid,
    object_key,
)
from sampan.client.rest import Client
from sampan.controllers.deployment import util as du
from sampan.controllers.deployment.rollout import (
    API_VERSION,
    DeploymentSync,
    pods_by_replica_set,
)
from sampan.controllers.util import (
    adopt,
    claim_objects,
    controller_ref,
    meta,
    new_controller_ref,
    release,
    selector_of,
)

log = logging.getLogger(__name__)

Object = dict[str, Any]

# Upstream's ConcurrentDeploymentSyncs.
DEFAULT_WORKERS = 5
# ReplicaSets without a controller, by namespace: the only ones a Deployment may adopt.
ORPHANS_BY_NAMESPACE_INDEX = "orphans-by-namespace"
# ``requeueStuckDeployment`` adds a second so the check lands after the deadline.
PROGRESS_CHECK_SLACK = 1.0


def index_orphans_by_namespace(obj: Object) -> list[str]:
    if controller_ref(obj) is not None:
        return []
    return [meta(obj).get("namespace") or ""]


def _typed(deployment: Mapping[str, Any]) -> Object:
    """A private copy of a cached Deployment with its apiVersion and kind (list items may
    come without them; Events and writes need them)."""
    return {**copy.deepcopy(dict(deployment)), "apiVersion": API_VERSION, "kind": "Deployment"}


class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, client: Client, informers: InformerFactory, *,
                 recorder: EventRecorder | None = None, workers: int = DEFAULT_WORKERS):
        self._owns_recorder = recorder is None
        recorder = recorder if recorder is not None else EventRecorder(client, self.name)
        super().__init__(client, informers, workers=workers, recorder=recorder)
        self.deployments: SharedInformer = informers.informer(API_VERSION, "deployments")
        self.deployments.add_event_handler(on_add=self.enqueue,
                                           on_update=lambda old, cur: self.enqueue(cur),
                                           on_delete=self.enqueue)
        self.replica_sets: SharedInformer = informers.informer(
            API_VERSION, "replicasets",
            indexers={OWNER_UID_INDEX: index_by_owner_uid,
                      ORPHANS_BY_NAMESPACE_INDEX: index_orphans_by_namespace})
        self.replica_sets.add_event_handler(on_add=self._rs_added, on_update=self._rs_updated,
                                            on_delete=self._rs_deleted)
        self.pods: SharedInformer = informers.informer(
            "v1", "pods", indexers={OWNER_UID_INDEX: index_by_owner_uid})
        self.pods.add_event_handler(on_delete=self._pod_deleted)

    def watched_informers(self) -> list[SharedInformer]:
        return [self.deployments, self.replica_sets, self.pods]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._owns_recorder and self.recorder is not None:
                await self.recorder.close()

    # -- lookups -------------------------------------------------------------------------------
    def cached_replica_set(self, namespace: str, name: str) -> Object | None:
        return self.replica_sets.indexer.get(f"{namespace}/{name}")

    def _resolve(self, namespace: str, ref: Mapping[str, Any] | None) -> Object | None:
        """The Deployment a controller reference names, if it is the one cached."""
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.deployments.indexer.get(f"{namespace}/{ref.get('name')}")
        if d is None or meta(d).get("uid") != ref.get("uid"):
            return None
        return d

    def _deployments_selecting(self, rs: Mapping[str, Any]) -> list[Object]:
        """Deployments in the ReplicaSet's namespace whose selector matches its labels
        (``getDeploymentsForReplicaSet``), for an orphan that may be adopted."""
        namespace = meta(rs).get("namespace") or ""
        labels = meta(rs).get("labels") or {}
        if not labels:
            return []
        found = []
        for d in self.deployments.indexer.by_index(NAMESPACE_INDEX, namespace):
            try:
                selector = selector_of(d)
            except StatusError:
                continue
            if not selector.empty and selector.matches(labels):
                found.append(d)
        return found

    # -- handlers (they only enqueue) ----------------------------------------------------------
    def _rs_added(self, rs: Object) -> None:
        if meta(rs).get("deletionTimestamp"):
            self._rs_deleted(rs)
            return
        ref = controller_ref(rs)
        if ref is not None:
            d = self._resolve(meta(rs).get("namespace") or "", ref)
            if d is not None:
                self.enqueue(d)
            return
        for d in self._deployments_selecting(rs):
            self.enqueue(d)

    def _rs_updated(self, old: Object, cur: Object) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        namespace = meta(cur).get("namespace") or ""
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        ref_changed = (old_ref or {}).get("uid") != (cur_ref or {}).get("uid")
        if ref_changed and old_ref is not None:
            d = self._resolve(namespace, old_ref)
            if d is not None:
                self.enqueue(d)
        if cur_ref is not None:
            d = self._resolve(namespace, cur_ref)
            if d is not None:
                self.enqueue(d)
            return
        if ref_changed or meta(old).get("labels") != meta(cur).get("labels"):
            for d in self._deployments_selecting(cur):
                self.enqueue(d)

    def _rs_deleted(self, rs: Object) -> None:
        d = self._resolve(meta(rs).get("namespace") or "", controller_ref(rs))
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: Object) -> None:
        """A Recreate rollout waits for the old pods to be gone."""
        namespace = meta(pod).get("namespace") or ""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.cached_replica_set(namespace, ref.get("name", ""))
        if rs is None or meta(rs).get("uid") != ref.get("uid"):
            return
        d = self._resolve(namespace, controller_ref(rs))
        if d is not None and du.strategy_type(d) == du.RECREATE:
            self.enqueue(d)

    def requeue_for_progress_check(self, d: Mapping[str, Any], after: float) -> None:
        """Look at ``d`` again when its progress deadline passes (``requeueStuckDeployment``)."""
        key = object_key(d)
        if after < PROGRESS_CHECK_SLACK:
            self.queue.add_after(key, max(after, 0.0) + 0.1)
        else:
            self.queue.add_after(key, after + PROGRESS_CHECK_SLACK)

    # -- reconcile -----------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        try:
            await self._sync(key)
        except ApiError as e:
            if e.conflict:  # our cache was behind; start again from a fresher one
                raise Requeue(str(e)) from e
            raise

    async def _sync(self, key: str) -> None:
        cached = self.deployments.indexer.get(key)
        if cached is None:
            return
        d = _typed(cached)
        raw_selector = du.spec(d).get("selector")
        if raw_selector is not None and not raw_selector.get("matchLabels") \
                and not raw_selector.get("matchExpressions"):
            await self._refuse_selecting_all(d)
            return
        try:
            selector = selector_of(d)
        except StatusError as e:
            log.warning("deployment %s has an invalid selector: %s", key, e)
            return
        replica_sets = await self._claim_replica_sets(d, selector)
        pods: dict[str, list[Object]] = {}
        if du.strategy_type(d) == du.RECREATE:  # only Recreate waits for pods to be gone
            pods = pods_by_replica_set(
                replica_sets, lambda rs_uid: [p for p in self.pods.indexer.by_index(
                    OWNER_UID_INDEX, rs_uid) if selector.matches(meta(p).get("labels") or {})])
        sync = DeploymentSync(self, d, replica_sets, pods)
        if meta(d).get("deletionTimestamp"):
            await sync.sync_status_only()
            return
        await sync.check_paused_conditions()
        if du.spec(d).get("paused"):
            await sync.sync()
        elif du.rollback_to(d) is not None:
            await sync.rollback()
        elif await sync.is_scaling_event():
            await sync.sync()
        elif du.strategy_type(d) == du.RECREATE:
            await sync.rollout_recreate()
        elif du.strategy_type(d) == du.ROLLING_UPDATE:
            await sync.rollout_rolling()
        else:
            raise ValueError(f"unexpected deployment strategy type: {du.strategy_type(d)}")

    async def _refuse_selecting_all(self, d: Object) -> None:
        if self.recorder is not None:
            self.recorder.event(d, WARNING, "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector "
                                "is required.")
        generation = int(meta(d).get("generation") or 0)
        if du.status_int(d, "observedGeneration") < generation:
            d.setdefault("status", {})["observedGeneration"] = generation
            await self.client.update(API_VERSION, "deployments", d,
                                     namespace=meta(d)["namespace"], subresource="status")

    async def _claim_replica_sets(self, d: Object, selector: LabelSelector) -> list[Object]:
        """The ReplicaSets ``d`` controls: its own that still match, and matching orphans it
        adopts; its own that no longer match are released (``ClaimReplicaSets``)."""
        namespace = meta(d)["namespace"]
        owned = self.replica_sets.indexer.by_index(OWNER_UID_INDEX, meta(d)["uid"])
        orphans = self.replica_sets.indexer.by_index(ORPHANS_BY_NAMESPACE_INDEX, namespace)
        claim = claim_objects(d, selector, [*owned, *orphans])
        result = [copy.deepcopy(rs) for rs in claim.owned]
        if claim.adopt:
            await self._check_can_adopt(d)
            ref = new_controller_ref(d, API_VERSION, "Deployment")
            for rs in claim.adopt:
                adopted = await adopt(self.client, API_VERSION, "replicasets", rs, ref)
                if adopted is not None:
                    result.append(adopted)
        for rs in claim.release:
            await release(self.client, API_VERSION, "replicasets", rs, meta(d)["uid"])
        return result

    async def _check_can_adopt(self, d: Mapping[str, Any]) -> None:
        """Read the Deployment uncached before adopting: a deleted one must not adopt."""
        fresh = await self.client.get(API_VERSION, "deployments", meta(d)["name"],
                                      namespace=meta(d)["namespace"])
        if meta(fresh).get("uid") != meta(d)["uid"]:
            raise RuntimeError(f"original Deployment {object_key(d)} is gone: got uid "
                               f"{meta(fresh).get('uid')}, wanted {meta(d)['uid']}")
        if meta(fresh).get("deletionTimestamp"):
            raise RuntimeError(f"Deployment {object_key(d)} has just been deleted at "
                               f"{meta(fresh)['deletionTimestamp']}")


__all__ = ["DeploymentController"]
