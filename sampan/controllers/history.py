"""ControllerRevision history shared by the StatefulSet and DaemonSet controllers, as upstream's
``pkg/controller/history`` (plus ``controller.ComputeHash``).

A revision is a snapshot of a workload's pod template stored in a ControllerRevision named
``<owner>-<hash>``. Revisions are claimed like pods (owned, or orphans matching the selector are
adopted), created with a collision count that changes the hash when another revision already
holds the name, renumbered when an old one becomes current again (a rollback), and truncated to
``revisionHistoryLimit`` oldest first.

Hashes are FNV over a canonical (sorted-key) JSON encoding: stable across processes and
restarts, though not byte-identical to upstream's Go encoding.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from sampan.api.selectors import LabelSelector
from sampan.client.errors import ApiError
from sampan.client.informer import OWNER_UID_INDEX, Indexer, index_by_owner_uid
from sampan.client.rest import Client, Preconditions
from sampan.controllers.util import (
    adopt,
    claim_objects,
    controller_ref,
    meta,
    new_controller_ref,
    parse_time,
    release,
)

log = logging.getLogger(__name__)

Object = dict[str, Any]

APPS = "apps/v1"
REVISIONS = "controllerrevisions"
# The label NewControllerRevision puts on every revision (history.ControllerRevisionHashLabel).
REVISION_HASH_LABEL = "controller.kubernetes.io/hash"
# Longest name prefix that leaves room for "-<hash>" within a 253-character name.
MAX_PREFIX_LENGTH = 223
ORPHANS_BY_NAMESPACE_INDEX = "orphans-by-namespace"

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK = 0xFFFFFFFF
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels: no words in generated names


# -- hashing and naming ------------------------------------------------------------------------


def fnv32(data: bytes) -> int:
    """FNV-1, 32 bits (Go's ``hash/fnv.New32``)."""
    h = _FNV_OFFSET
    for byte in data:
        h = (h * _FNV_PRIME) & _MASK
        h ^= byte
    return h


def fnv32a(data: bytes) -> int:
    """FNV-1a, 32 bits (Go's ``hash/fnv.New32a``)."""
    h = _FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & _MASK
    return h


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: each character mapped onto an alphabet without vowels."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def canonical_json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def hash_revision_data(data: Any, collision_count: int | None) -> str:
    """``HashControllerRevision``: the data, then the collision count as decimal text."""
    payload = canonical_json(data)
    if collision_count is not None:
        payload += str(collision_count).encode()
    return safe_encode(str(fnv32(payload)))


def compute_hash(template: Any, collision_count: int | None) -> str:
    """``controller.ComputeHash``: the pod template, then the collision count as 8 bytes
    little-endian (the label value of DaemonSet revisions and ``pod-template-hash``)."""
    payload = canonical_json(template)
    if collision_count is not None:
        payload += (collision_count & _MASK).to_bytes(8, "little")
    return safe_encode(str(fnv32a(payload)))


def revision_name(prefix: str, hash_: str) -> str:
    """``ControllerRevisionName``: ``<prefix>-<hash>``, the prefix cut so the name fits."""
    return f"{prefix[:MAX_PREFIX_LENGTH]}-{hash_}"


def template_patch(workload: Mapping[str, Any]) -> Object:
    """What StatefulSet and DaemonSet revisions store (their ``getPatch``): a strategic merge
    patch that replaces ``spec.template`` with the workload's current one."""
    template = copy.deepcopy((workload.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_from_revision(revision: Mapping[str, Any]) -> Object:
    """The pod template a revision stored (applying its patch to a workload)."""
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template")
                             or {})
    template.pop("$patch", None)
    return template


def new_revision(parent: Mapping[str, Any], api_version: str, kind: str,
                 template_labels: Mapping[str, str] | None, data: Object, number: int,
                 collision_count: int | None) -> Object:
    """``NewControllerRevision``: owned by ``parent``, labelled like its pods, named by hash."""
    hash_ = hash_revision_data(data, collision_count)
    labels = dict(template_labels or {})
    labels[REVISION_HASH_LABEL] = hash_
    return {
        "apiVersion": APPS, "kind": "ControllerRevision",
        "metadata": {"name": revision_name(meta(parent)["name"], hash_),
                     "namespace": meta(parent).get("namespace"), "labels": labels,
                     "ownerReferences": [new_controller_ref(parent, api_version, kind)]},
        "data": data, "revision": number,
    }


# -- ordering and equality ---------------------------------------------------------------------


def revision_number(revision: Mapping[str, Any]) -> int:
    return int(revision.get("revision") or 0)


def sort_revisions(revisions: Iterable[Object]) -> list[Object]:
    """Oldest first: by revision number, then creation time, then name."""
    return sorted(revisions, key=lambda r: (revision_number(r),
                                            parse_time(meta(r).get("creationTimestamp")) or 0.0,
                                            meta(r).get("name", "")))


def equal_revision(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Same stored data (``EqualRevision``; compared as JSON values, not bytes)."""
    if a is None or b is None:
        return a is b
    return a.get("data") == b.get("data")


def find_equal_revisions(revisions: Iterable[Object], needle: Mapping[str, Any]) -> list[Object]:
    return [r for r in revisions if equal_revision(r, needle)]


def next_revision_number(sorted_revisions: list[Object]) -> int:
    return revision_number(sorted_revisions[-1]) + 1 if sorted_revisions else 1


def max_revision_number(revisions: Iterable[Object]) -> int:
    return max((revision_number(r) for r in revisions), default=0)


# -- claiming ----------------------------------------------------------------------------------


def index_orphans_by_namespace(obj: Object) -> list[str]:
    """Objects without a controller, by namespace: what a controller may adopt."""
    if controller_ref(obj) is not None:
        return []
    return [meta(obj).get("namespace") or ""]


CLAIM_INDEXERS = {OWNER_UID_INDEX: index_by_owner_uid,
                  ORPHANS_BY_NAMESPACE_INDEX: index_orphans_by_namespace}


def claim_candidates(indexer: Indexer, owner: Mapping[str, Any]) -> list[Object]:
    """Objects that ``owner`` controls or could adopt, from an indexer with ``CLAIM_INDEXERS``
    (no scan of the namespace)."""
    owner_meta = meta(owner)
    namespace = owner_meta.get("namespace") or ""
    seen: dict[str, Object] = {}
    for obj in indexer.by_index(OWNER_UID_INDEX, owner_meta["uid"]):
        if (meta(obj).get("namespace") or "") == namespace:
            seen[meta(obj)["name"]] = obj
    for obj in indexer.by_index(ORPHANS_BY_NAMESPACE_INDEX, namespace):
        seen.setdefault(meta(obj)["name"], obj)
    return list(seen.values())


async def owner_can_adopt(client: Client, owner: Mapping[str, Any], api_version: str,
                          resource: str) -> bool:
    """``RecheckDeletionTimestamp``: adopt only for an owner that is still the same object and
    not being deleted, read fresh from the API server."""
    owner_meta = meta(owner)
    try:
        fresh = await client.get(api_version, resource, owner_meta["name"],
                                 namespace=owner_meta.get("namespace"))
    except ApiError as e:
        if e.not_found:
            return False
        raise
    return meta(fresh).get("uid") == owner_meta["uid"] and not meta(fresh).get("deletionTimestamp")


async def claim(client: Client, owner: Mapping[str, Any], owner_api_version: str,
                owner_kind: str, owner_resource: str, selector: LabelSelector,
                candidates: Iterable[Object], api_version: str, resource: str) -> list[Object]:
    """Claim ``candidates`` (pods or revisions) for ``owner``: release the ones that stopped
    matching, adopt matching orphans; the objects it now controls."""
    decision = claim_objects(owner, selector, candidates)
    owned = list(decision.owned)
    for obj in decision.release:
        await release(client, api_version, resource, obj, meta(owner)["uid"])
    if decision.adopt and await owner_can_adopt(client, owner, owner_api_version, owner_resource):
        ref = new_controller_ref(owner, owner_api_version, owner_kind)
        for obj in decision.adopt:
            adopted = await adopt(client, api_version, resource, obj, ref)
            if adopted is not None:
                owned.append(adopted)
    return owned


# -- writes ------------------------------------------------------------------------------------


async def create_revision(client: Client, parent: Mapping[str, Any], revision: Object,
                          collision_count: int) -> tuple[Object, int]:
    """``CreateControllerRevision``: create ``revision`` named ``<parent>-<hash>``; when the
    name is taken by different data, raise the collision count and try the next hash. Returns
    the revision (created, or an identical one that existed) and the collision count."""
    namespace = meta(parent).get("namespace")
    while True:
        body = copy.deepcopy(revision)
        body["metadata"]["name"] = revision_name(
            meta(parent)["name"], hash_revision_data(revision["data"], collision_count))
        try:
            return await client.create(APPS, REVISIONS, body, namespace=namespace), collision_count
        except ApiError as e:
            if not e.already_exists:
                raise
        existing = await client.get(APPS, REVISIONS, body["metadata"]["name"], namespace=namespace)
        if existing.get("data") == body["data"]:
            return existing, collision_count
        collision_count += 1


async def renumber_revision(client: Client, revision: Mapping[str, Any], number: int) -> Object:
    """``UpdateControllerRevision``: give an existing revision a new number (a rollback makes
    an old revision the newest)."""
    if revision_number(revision) == number:
        return dict(revision)
    body = copy.deepcopy(dict(revision))
    for _ in range(5):
        body["revision"] = number
        try:
            return await client.update(APPS, REVISIONS, body)
        except ApiError as e:
            if not e.conflict:
                raise
        body = await client.get(APPS, REVISIONS, meta(revision)["name"],
                                namespace=meta(revision).get("namespace"))
        if revision_number(body) == number:
            return body
    raise RuntimeError(f"revision {meta(revision)['name']}: too many conflicts renumbering")


async def delete_revision(client: Client, revision: Mapping[str, Any]) -> None:
    rmeta = meta(revision)
    try:
        await client.delete(APPS, REVISIONS, rmeta["name"], namespace=rmeta.get("namespace"),
                            preconditions=Preconditions(uid=rmeta.get("uid")))
    except ApiError as e:
        if not (e.not_found or e.conflict):
            raise


def excess_revisions(revisions: list[Object], limit: int,
                     is_live: Callable[[Object], bool]) -> list[Object]:
    """The non-live revisions to delete, oldest first, so that at most ``limit`` non-live ones
    remain (a negative limit keeps everything)."""
    history = [r for r in sort_revisions(revisions) if not is_live(r)]
    if limit < 0 or len(history) <= limit:
        return []
    return history[:len(history) - limit]


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    percent = int(text[:-1])
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)
