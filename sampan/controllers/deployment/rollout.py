"""One sync of one Deployment: upstream's ``sync.go``, ``rolling.go``, ``recreate.go``,
``rollback.go`` and ``progress.go`` as methods of an object that holds the Deployment (a
private copy) and the ReplicaSets it controls for the length of the sync.

Every write goes to the API server; what a write returns replaces the stale copy, so one sync
never conflicts with itself. A write that conflicts with someone else raises, and the
controller requeues the Deployment to start again from the informer caches.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sampan.client.controller import Requeue
from sampan.client.errors import ApiError
from sampan.client.events import NORMAL, WARNING
from sampan.controllers.deployment import util as du
from sampan.controllers.util import (
    POD_TEMPLATE_HASH_LABEL,
    controller_ref,
    new_controller_ref,
    pod_phase,
)

if TYPE_CHECKING:
    from sampan.controllers.deployment.controller import DeploymentController

log = logging.getLogger(__name__)

Object = dict[str, Any]
API_VERSION = "apps/v1"


class DeploymentSync:
    """The state of one reconcile of ``deployment`` and the steps upstream takes with it."""

    def __init__(self, controller: DeploymentController, deployment: Object,
                 replica_sets: Sequence[Object], pods_by_rs: Mapping[str, list[Object]]):
        self.controller = controller
        self.client = controller.client
        self.d = deployment
        self.rs_list: list[Object] = list(replica_sets)
        self.pods_by_rs = pods_by_rs

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self.d["metadata"]["namespace"]

    def _event(self, type_: str, reason: str, message: str) -> None:
        if self.controller.recorder is not None:
            self.controller.recorder.event(self.d, type_, reason, message)

    def _remember(self, rs: Object) -> Object:
        """Replace the stale copy of ``rs`` in this sync's list (or add it)."""
        rs = {**rs, "apiVersion": API_VERSION, "kind": "ReplicaSet"}
        for i, current in enumerate(self.rs_list):
            if du.uid(current) == du.uid(rs):
                self.rs_list[i] = rs
                return rs
        self.rs_list.append(rs)
        return rs

    async def _update_status(self) -> None:
        updated = await self.client.update(API_VERSION, "deployments", self.d,
                                           namespace=self.namespace, subresource="status")
        self.d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]

    # -- sync.go -------------------------------------------------------------------------------
    async def sync_status_only(self) -> None:
        new_rs, old_rss = await self.all_replica_sets_and_sync_revision(create=False)
        await self.sync_deployment_status([*old_rss, new_rs], new_rs)

    async def sync(self) -> None:
        """A scaling event or a paused Deployment: resize, never roll out."""
        new_rs, old_rss = await self.all_replica_sets_and_sync_revision(create=False)
        await self.scale(new_rs, old_rss)
        if du.spec(self.d).get("paused") and du.rollback_to(self.d) is None:
            await self.cleanup(old_rss)
        new_rs, old_rss = self._current(new_rs, old_rss)
        await self.sync_deployment_status([*old_rss, new_rs], new_rs)

    def _current(self, new_rs: Object | None, old_rss: Sequence[Object]
                 ) -> tuple[Object | None, list[Object]]:
        """The latest copies of ``new_rs`` and ``old_rss`` after this sync's writes."""
        by_uid = {du.uid(rs): rs for rs in self.rs_list}
        new_rs = by_uid.get(du.uid(new_rs), new_rs) if new_rs is not None else None
        return new_rs, [by_uid.get(du.uid(rs), rs) for rs in old_rss]

    async def check_paused_conditions(self) -> None:
        """Record pausing and resuming in the Progressing condition, so that time spent paused
        does not count against the progress deadline."""
        if du.progress_deadline(self.d) is None:
            return
        st = self.d.setdefault("status", {})
        condition = du.get_condition(st, du.PROGRESSING)
        if condition is not None and condition.get("reason") == du.TIMED_OUT:
            return
        paused_recorded = condition is not None and condition.get("reason") == du.PAUSED
        paused = bool(du.spec(self.d).get("paused"))
        if paused and not paused_recorded:
            du.set_condition(st, du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED,
                                                  "Deployment is paused"))
        elif not paused and paused_recorded:
            du.set_condition(st, du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED,
                                                  "Deployment is resumed"))
        else:
            return
        await self._update_status()

    async def all_replica_sets_and_sync_revision(self, create: bool
                                                 ) -> tuple[Object | None, list[Object]]:
        old_rss = du.find_old_replica_sets(self.d, self.rs_list)
        new_rs = await self.new_replica_set(old_rss, create)
        return new_rs, old_rss

    async def new_replica_set(self, old_rss: Sequence[Object], create: bool) -> Object | None:
        """The ReplicaSet of the current template, its annotations and revision brought up to
        date (a rollback raises an old one's revision), or created when ``create``."""
        existing = du.find_new_replica_set(self.d, self.rs_list)
        new_revision = du.max_revision(old_rss) + 1
        if existing is not None:
            return await self._sync_existing_new_rs(existing, new_revision)
        if not create:
            return None
        return await self._create_new_rs(old_rss, new_revision)

    async def _sync_existing_new_rs(self, existing: Object, new_revision: int) -> Object:
        rs = {**copy.deepcopy(existing), "apiVersion": API_VERSION, "kind": "ReplicaSet"}
        annotations_changed = du.set_new_replica_set_annotations(self.d, rs, new_revision, True)
        min_ready = du.min_ready_seconds(self.d)
        if annotations_changed or du.min_ready_seconds(rs) != min_ready:
            rs["spec"]["minReadySeconds"] = min_ready
            updated = await self.client.update(API_VERSION, "replicasets", rs,
                                               namespace=self.namespace)
            return self._remember(updated)
        needs_update = du.set_deployment_revision(self.d, du.annotations(rs).get(du.REVISION, ""))
        st = self.d.setdefault("status", {})
        if du.progress_deadline(self.d) is not None and \
                du.get_condition(st, du.PROGRESSING) is None:
            du.set_condition(st, du.new_condition(du.PROGRESSING, "True", du.FOUND_NEW_RS,
                                                  f'Found new replica set "{du.name(rs)}"'))
            needs_update = True
        if needs_update:
            await self._update_status()
        return rs

    def _new_rs_object(self, old_rss: Sequence[Object], new_revision: int) -> Object:
        d = self.d
        template = copy.deepcopy(du.spec(d).get("template") or {})
        pod_hash = du.compute_hash(template, du.status(d).get("collisionCount"))
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}),
                                   POD_TEMPLATE_HASH_LABEL: pod_hash}
        selector = copy.deepcopy(du.spec(d).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}),
                                   POD_TEMPLATE_HASH_LABEL: pod_hash}
        rs: Object = {
            "apiVersion": API_VERSION, "kind": "ReplicaSet",
            "metadata": {"name": f"{du.name(d)}-{pod_hash}", "namespace": self.namespace,
                         "labels": dict(template_meta["labels"]),
                         "ownerReferences": [new_controller_ref(d, API_VERSION, "Deployment")]},
            "spec": {"replicas": 0, "minReadySeconds": du.min_ready_seconds(d),
                     "selector": selector, "template": template},
        }
        rs["spec"]["replicas"] = du.new_rs_new_replicas(d, [*old_rss, rs], rs)
        du.set_new_replica_set_annotations(d, rs, new_revision, False)
        return rs

    async def _create_new_rs(self, old_rss: Sequence[Object], new_revision: int) -> Object:
        d = self.d
        rs = self._new_rs_object(old_rss, new_revision)
        count = rs["spec"]["replicas"]
        already_exists = False
        try:
            created = await self.client.create(API_VERSION, "replicasets", rs,
                                               namespace=self.namespace)
        except ApiError as e:
            if e.already_exists:
                created = await self._adopt_existing_namesake(rs)
                already_exists = True
            elif _namespace_terminating(e):
                raise
            else:
                message = f'Failed to create new replica set "{du.name(rs)}": {e.message}'
                if du.progress_deadline(d) is not None:
                    du.set_condition(d.setdefault("status", {}), du.new_condition(
                        du.PROGRESSING, "False", du.FAILED_RS_CREATE, message))
                    try:
                        await self._update_status()
                    except ApiError:
                        pass
                self._event(WARNING, du.FAILED_RS_CREATE, message)
                raise
        created = self._remember(created)
        if not already_exists and count > 0:
            self._event(NORMAL, "ScalingReplicaSet",
                        f"Scaled up replica set {du.name(created)} from 0 to {count}")
        needs_update = du.set_deployment_revision(d, str(new_revision))
        if not already_exists and du.progress_deadline(d) is not None:
            du.set_condition(d.setdefault("status", {}), du.new_condition(
                du.PROGRESSING, "True", du.NEW_REPLICA_SET,
                f'Created new replica set "{du.name(created)}"'))
            needs_update = True
        if needs_update:
            await self._update_status()
        return created

    async def _adopt_existing_namesake(self, rs: Object) -> Object:
        """A ReplicaSet of that name exists: ours with our template (a stale cache) is the new
        one; anything else is a hash collision, resolved by raising ``collisionCount`` so that
        the next sync hashes to another name."""
        existing = self.controller.cached_replica_set(self.namespace, du.name(rs))
        if existing is None:
            existing = await self.client.get(API_VERSION, "replicasets", du.name(rs),
                                             namespace=self.namespace)
        ref = controller_ref(existing)
        if ref is not None and ref.get("uid") == du.uid(self.d) and \
                du.equal_ignore_hash(du.spec(self.d).get("template"),
                                     du.spec(existing).get("template")):
            return existing
        st = self.d.setdefault("status", {})
        st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
        try:
            await self._update_status()
            log.info("hash collision for deployment %s/%s: collisionCount is now %d",
                     self.namespace, du.name(self.d), st["collisionCount"])
        except ApiError:
            pass
        raise HashCollision(f"replica set {du.name(rs)} already exists and is not the "
                            f"deployment's new replica set")

    async def scale(self, new_rs: Object | None, old_rss: Sequence[Object]) -> None:
        """Resize the ReplicaSets to a changed ``spec.replicas``: the only active one (or the
        latest) takes all; a saturated new one leaves nothing to the old; otherwise a rolling
        Deployment resizes all active ones in proportion."""
        d = self.d
        target = du.find_active_or_latest(new_rs, old_rss)
        if target is not None:
            if du.replicas(target) != du.replicas(d):
                await self.scale_and_record(target, du.replicas(d))
            return
        if du.is_saturated(d, new_rs):
            for old in du.active(old_rss):
                await self.scale_and_record(old, 0)
            return
        if du.is_rolling_update(d):
            sizes, operation = du.proportional_sizes(d, du.active([*old_rss, new_rs]))
            for rs, size in sizes:
                await self.scale_replica_set(rs, size, operation)

    async def scale_and_record(self, rs: Object, new_scale: int) -> tuple[bool, Object]:
        if du.replicas(rs) == new_scale:
            return False, rs
        operation = "up" if du.replicas(rs) < new_scale else "down"
        return await self.scale_replica_set(rs, new_scale, operation)

    async def scale_replica_set(self, rs: Object, new_scale: int, operation: str
                                ) -> tuple[bool, Object]:
        """Set ``rs``'s size and replica annotations; an Event when the size changed."""
        d = self.d
        desired, maximum = du.replicas(d), du.replicas(d) + du.max_surge(d)
        resize = du.replicas(rs) != new_scale
        if not resize and not du.replicas_annotations_need_update(rs, desired, maximum):
            return False, rs
        old_scale = du.replicas(rs)
        rs_copy = {**copy.deepcopy(rs), "apiVersion": API_VERSION, "kind": "ReplicaSet"}
        rs_copy["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(rs_copy, desired, maximum)
        updated = self._remember(await self.client.update(API_VERSION, "replicasets", rs_copy,
                                                          namespace=self.namespace))
        if resize:
            self._event(NORMAL, "ScalingReplicaSet",
                        f"Scaled {operation} replica set {du.name(rs)} from {old_scale} to "
                        f"{new_scale}")
        return resize, updated

    async def cleanup(self, old_rss: Sequence[Object]) -> None:
        """Delete the oldest ReplicaSets beyond ``revisionHistoryLimit`` that are empty and
        settled."""
        limit = du.revision_history_limit(self.d)
        if limit is None:
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        excess = len(alive) - limit
        if excess <= 0:
            return
        for rs in sorted(alive, key=du.by_revision)[:excess]:
            meta = rs["metadata"]
            if du.status_int(rs, "replicas") != 0 or du.replicas(rs) != 0 or \
                    int(meta.get("generation") or 0) > du.status_int(rs, "observedGeneration"):
                continue
            try:
                await self.client.delete(API_VERSION, "replicasets", meta["name"],
                                         namespace=self.namespace)
            except ApiError as e:
                if not e.not_found:
                    raise

    async def sync_deployment_status(self, all_rss: Sequence[Object | None],
                                     new_rs: Object | None) -> None:
        new_status = du.calculate_status(all_rss, new_rs, self.d)
        if du.same_status(du.status(self.d), new_status):
            return
        self.d["status"] = new_status
        await self._update_status()

    async def is_scaling_event(self) -> bool:
        """Some active ReplicaSet was sized for another ``spec.replicas``."""
        new_rs, old_rss = await self.all_replica_sets_and_sync_revision(create=False)
        for rs in du.active([*old_rss, new_rs]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.replicas(self.d):
                return True
        return False

    # -- rolling.go ----------------------------------------------------------------------------
    async def rollout_rolling(self) -> None:
        new_rs, old_rss = await self.all_replica_sets_and_sync_revision(create=True)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        if await self.reconcile_new_replica_set(all_rss, new_rs):
            return await self.sync_rollout_status(*self._current(new_rs, old_rss))
        if await self.reconcile_old_replica_sets(all_rss, du.active(old_rss), new_rs):
            return await self.sync_rollout_status(*self._current(new_rs, old_rss))
        if du.deployment_complete(self.d, du.status(self.d)):
            await self.cleanup(old_rss)
        await self.sync_rollout_status(new_rs, old_rss)

    async def reconcile_new_replica_set(self, all_rss: Sequence[Object],
                                        new_rs: Object) -> bool:
        want = du.replicas(self.d)
        if du.replicas(new_rs) == want:
            return False
        if du.replicas(new_rs) > want:
            return (await self.scale_and_record(new_rs, want))[0]
        count = du.new_rs_new_replicas(self.d, all_rss, new_rs)
        return (await self.scale_and_record(new_rs, count))[0]

    async def reconcile_old_replica_sets(self, all_rss: Sequence[Object],
                                         old_rss: list[Object], new_rs: Object) -> bool:
        """Scale old ReplicaSets down as far as availability allows: unhealthy replicas first,
        then the oldest ReplicaSets."""
        if du.total_replicas(old_rss) == 0:
            return False
        min_available = du.replicas(self.d) - du.max_unavailable(self.d)
        new_unavailable = du.replicas(new_rs) - du.status_int(new_rs, "availableReplicas")
        max_scaled_down = du.total_replicas(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        old_rss, cleaned = await self.cleanup_unhealthy_replicas(old_rss, max_scaled_down)
        scaled = await self.scale_down_old_for_rolling_update([*old_rss, new_rs], old_rss)
        return cleaned + scaled > 0

    async def cleanup_unhealthy_replicas(self, old_rss: list[Object], max_cleanup: int
                                         ) -> tuple[list[Object], int]:
        old_rss = sorted(old_rss, key=du.by_creation)
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            want, available = du.replicas(rs), du.status_int(rs, "availableReplicas")
            if want == 0 or want == available:
                continue
            count = min(max_cleanup - total, want - available)
            if count <= 0:
                continue
            _, old_rss[i] = await self.scale_and_record(rs, want - count)
            total += count
        return old_rss, total

    async def scale_down_old_for_rolling_update(self, all_rss: Sequence[Object],
                                                old_rss: Sequence[Object]) -> int:
        min_available = du.replicas(self.d) - du.max_unavailable(self.d)
        available = du.total_status(all_rss, "availableReplicas")
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in sorted(old_rss, key=du.by_creation):
            if total >= to_scale_down:
                break
            if du.replicas(rs) == 0:
                continue
            count = min(du.replicas(rs), to_scale_down - total)
            await self.scale_and_record(rs, du.replicas(rs) - count)
            total += count
        return total

    # -- recreate.go ---------------------------------------------------------------------------
    async def rollout_recreate(self) -> None:
        """Scale every old ReplicaSet to zero, wait until their pods are gone, then bring the
        new ReplicaSet up to full size."""
        new_rs, old_rss = await self.all_replica_sets_and_sync_revision(create=False)
        scaled_down = False
        for rs in du.active(old_rss):
            scaled_down |= (await self.scale_and_record(rs, 0))[0]
        if scaled_down:
            return await self.sync_rollout_status(*self._current(new_rs, old_rss))
        if self._old_pods_running(new_rs, old_rss):
            return await self.sync_rollout_status(new_rs, old_rss)
        if new_rs is None:
            new_rs, old_rss = await self.all_replica_sets_and_sync_revision(create=True)
            assert new_rs is not None
        await self.scale_and_record(new_rs, du.replicas(self.d))
        if du.deployment_complete(self.d, du.status(self.d)):
            await self.cleanup(old_rss)
        await self.sync_rollout_status(*self._current(new_rs, old_rss))

    def _old_pods_running(self, new_rs: Object | None, old_rss: Sequence[Object]) -> bool:
        if du.total_status(old_rss, "replicas") > 0:
            return True
        new_uid = du.uid(new_rs) if new_rs is not None else None
        for rs_uid, pods in self.pods_by_rs.items():
            if rs_uid == new_uid:
                continue
            if any(pod_phase(p) not in ("Succeeded", "Failed") for p in pods):
                return True
        return False

    # -- rollback.go ---------------------------------------------------------------------------
    async def rollback(self) -> None:
        """The deprecated ``rollbackTo`` (an annotation in apps/v1): copy the template of the
        wanted revision into the Deployment. ``kubectl rollout undo`` patches the template
        itself and never comes here."""
        new_rs, old_rss = await self.all_replica_sets_and_sync_revision(create=True)
        all_rss = [rs for rs in (*old_rss, new_rs) if rs is not None]
        wanted = du.rollback_to(self.d) or 0
        if wanted == 0:
            wanted = du.last_revision(all_rss)
            if wanted == 0:
                self._event(WARNING, du.ROLLBACK_REVISION_NOT_FOUND,
                            "Unable to find last revision.")
                return await self._update_and_clear_rollback_to()
        for rs in all_rss:
            try:
                if du.revision(rs) != wanted:
                    continue
            except ValueError:
                continue
            if await self._rollback_to_template(rs):
                self._event(NORMAL, du.ROLLBACK_DONE,
                            f'Rolled back deployment "{du.name(self.d)}" to revision {wanted}')
            return
        self._event(WARNING, du.ROLLBACK_REVISION_NOT_FOUND,
                    "Unable to find the revision to rollback to.")
        await self._update_and_clear_rollback_to()

    async def _rollback_to_template(self, rs: Object) -> bool:
        performed = False
        if not du.equal_ignore_hash(du.spec(self.d).get("template"), du.spec(rs).get("template")):
            self.d["spec"]["template"] = du.template_from_replica_set(rs)
            du.set_deployment_annotations_to(self.d, rs)
            performed = True
        else:
            self._event(WARNING, du.ROLLBACK_TEMPLATE_UNCHANGED,
                        f"The rollback revision contains the same template as current "
                        f'deployment "{du.name(self.d)}"')
        await self._update_and_clear_rollback_to()
        return performed

    async def _update_and_clear_rollback_to(self) -> None:
        meta = self.d["metadata"]
        (meta.get("annotations") or {}).pop(du.DEPRECATED_ROLLBACK_TO, None)
        await self.client.update(API_VERSION, "deployments", self.d, namespace=self.namespace)

    # -- progress.go ---------------------------------------------------------------------------
    async def sync_rollout_status(self, new_rs: Object | None,
                                  old_rss: Sequence[Object]) -> None:
        """Write the status with the Progressing condition; when nothing changed, look again
        when the progress deadline would pass."""
        now = time.time()
        new_status = du.rollout_status([*old_rss, new_rs], new_rs, self.d, now)
        if du.same_status(du.status(self.d), new_status):
            after = du.progress_recheck_after(self.d, new_status, now)
            if after is not None:
                self.controller.requeue_for_progress_check(self.d, after)
            return
        self.d["status"] = new_status
        await self._update_status()


class HashCollision(Requeue):
    """The new ReplicaSet's name is taken; ``collisionCount`` was raised to pick another."""


def _namespace_terminating(error: ApiError) -> bool:
    causes = error.details.get("causes") or ()
    return any(c.get("reason") == "NamespaceTerminating" for c in causes) or \
        "because it is being terminated" in error.message


def pods_by_replica_set(replica_sets: Iterable[Object],
                        pods_of: Callable[[str], list[Object]]) -> dict[str, list[Object]]:
    """Pods each ReplicaSet controls (``getPodMapForDeployment``), by ReplicaSet uid."""
    result: dict[str, list[Object]] = {}
    for rs in replica_sets:
        rs_uid = du.uid(rs)
        result[rs_uid] = [p for p in pods_of(rs_uid)
                          if (controller_ref(p) or {}).get("uid") == rs_uid]
    return result
