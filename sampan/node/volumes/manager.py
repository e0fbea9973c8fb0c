"""The node's volume manager: makes a pod's volumes exist on the host before its containers
start, keeps API-data volumes current, and removes everything when the pod is gone.

Layout (the kubelet's): ``<pods dir>/<pod uid>/volumes/<plugin>/<volume name>`` with plugin
directories ``kubernetes.io~empty-dir``, ``~configmap``, ``~secret``, ``~downward-api`` and
``~projected``; subPath bind mounts under ``<pod uid>/volume-subpaths``; termination-message
files under ``<pod uid>/containers/<container>``. hostPath volumes and persistent volumes
(hostPath and local PVs, as the local-path provisioner makes them) are used where they are and
never deleted.

Secret and projected volumes live on tmpfs (so secrets never reach a disk), as do emptyDirs with
``medium: Memory``; a tmpfs is sized like upstream's ``calculateEmptyDirMemorySize``: the
volume's sizeLimit, else the pod's memory limit, else node allocatable memory.

Everything blocking (files, mounts) runs in the default executor; API reads go through an
``ObjectLookup`` (a short-TTL cache by default) and tokens through the TokenManager.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sampan.api.validation import QuantityError, parse_quantity
from sampan.client import WARNING, ApiError, Client
from sampan.node.cri import Mount
from sampan.node.volumes import hostpath, mount, subpath
from sampan.node.volumes.atomic_writer import AtomicWriter, FileProjection, PayloadError
from sampan.node.volumes.expansion import expand
from sampan.node.volumes.lookup import ClientLookup, ObjectLookup
from sampan.node.volumes.sources import (
    DEFAULT_MODE,
    SourceError,
    aggregate,
    configmap_payload,
    downward_payload,
    secret_payload,
)
from sampan.node.volumes.tokens import TokenError, TokenManager

log = logging.getLogger(__name__)

Object = Mapping[str, Any]

PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
API_DATA_KINDS = ("configMap", "secret", "downwardAPI", "projected")
MEMORY_BACKED_KINDS = ("secret", "projected")
KNOWN_KINDS = (*PLUGIN_DIRS, "hostPath", "persistentVolumeClaim")
SUBPATHS_DIR = subpath.SUBPATHS_DIR
HOSTS_FILE = "etc-hosts"
EMPTY_DIR_MODE = 0o777
TERMINATION_MESSAGE_LIMIT = 4096
PROPAGATION = {None: "private", "None": "private", "HostToContainer": "rslave",
               "Bidirectional": "rshared"}


# Volumes of the local-path provisioner (sampan/controllers/localpath.py).
LOCAL_PATH_PROVISIONER = "rancher.io/local-path"
LOCAL_PATH_NODE = "local.path.provisioner/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
LOCAL_PATH_TYPE = hostpath.SHARED_DIRECTORY_OR_CREATE


def is_local_path_volume(pv: Object) -> bool:
    annotations = (pv.get("metadata") or {}).get("annotations") or {}
    return annotations.get(PROVISIONED_BY) == LOCAL_PATH_PROVISIONER and \
        bool((pv.get("spec") or {}).get("hostPath"))


class VolumeError(Exception):
    """A volume cannot be set up; ``reason`` is the event reason (``FailedMount``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class MountError(VolumeError):
    """A container's mounts cannot be made; the container waits in CreateContainerConfigError."""

    def __init__(self, message: str):
        super().__init__("CreateContainerConfigError", message)


def volume_kind(volume: Object) -> str:
    for key in volume:
        if key != "name":
            return key
    return ""


def _failed(name: str, message: str) -> VolumeError:
    return VolumeError("FailedMount", f'MountVolume.SetUp failed for volume "{name}" : {message}')


def _quantity(raw: Any) -> int:
    try:
        return int(parse_quantity(raw).value) if raw not in (None, "") else 0
    except (QuantityError, ValueError):
        return 0


def pod_memory_limit(pod: Object) -> int:
    """The pod cgroup's memory limit (0: none), as ``ResourceConfigForPod`` computes it: only
    when every container has one; init containers count with their largest."""
    spec = pod.get("spec") or {}
    total = 0
    for container in spec.get("containers") or []:
        limit = _quantity(((container.get("resources") or {}).get("limits") or {}).get("memory"))
        if limit <= 0:
            return 0
        total += limit
    for container in spec.get("initContainers") or []:
        limit = _quantity(((container.get("resources") or {}).get("limits") or {}).get("memory"))
        if limit <= 0:
            return 0
        total = max(total, limit)
    return total


def _fs_user(pod: Object) -> int | None:
    """``FsUserFrom``: the runAsUser every container shares, if they do."""
    spec = pod.get("spec") or {}
    pod_user = (spec.get("securityContext") or {}).get("runAsUser")
    found: int | None = None
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        user = (container.get("securityContext") or {}).get("runAsUser", pod_user)
        if user is None or (found is not None and found != user):
            return None
        found = user
    return found


def _digest(payload: Mapping[str, FileProjection]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(payload):
        projection = payload[path]
        h.update(f"{path}\0{projection.mode}\0{projection.uid}\0{len(projection.data)}\0".encode())
        h.update(projection.data)
    return h.digest()


def _total_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class VolumeManager:
    def __init__(self, client: Client, pods_dir: Path, node_name: str, *,
                 allowed_host_paths: Sequence[str] | None = None, recorder: Any = None,
                 lookup: ObjectLookup | None = None, allocatable: Mapping[str, Any] | None = None,
                 memory_limit: int | None = None, tokens: TokenManager | None = None):
        self.client = client
        self.pods_dir = Path(pods_dir)
        self.node_name = node_name
        self.allowed_host_paths = None if allowed_host_paths is None else list(allowed_host_paths)
        self.recorder = recorder
        self.lookup: ObjectLookup = lookup or ClientLookup(client)
        self.allocatable: dict[str, Any] = dict(allocatable or {})
        self.memory_limit = memory_limit
        self.tokens = tokens or TokenManager(client)
        self._written: dict[tuple[str, str], bytes] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- paths -------------------------------------------------------------------------------------
    def pod_dir(self, pod_uid: str) -> Path:
        return self.pods_dir / pod_uid

    def volume_dir(self, pod_uid: str, kind: str, name: str) -> Path:
        return self.pods_dir / pod_uid / "volumes" / PLUGIN_DIRS[kind] / name

    def hosts_file(self, pod_uid: str) -> Path:
        return self.pods_dir / pod_uid / HOSTS_FILE

    def _termination_log(self, pod_uid: str, container_name: str, attempt: int) -> Path:
        return self.pods_dir / pod_uid / "containers" / container_name / \
            f"termination-log-{attempt}"

    def termination_log_path(self, pod_uid: str, container_name: str, attempt: int) -> Path:
        """The host file behind a container's terminationMessagePath (created, mode 0666 so
        any user in the container may write it; an existing one is kept)."""
        path = self._termination_log(pod_uid, container_name, attempt)
        directory = path.parent
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
            os.chmod(path, 0o666)
        return path

    def termination_message(self, pod_uid: str, container_name: str, attempt: int,
                            limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """The last ``limit`` bytes the container wrote to its termination-message file."""
        path = self._termination_log(pod_uid, container_name, attempt)
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - limit))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def memory_size(self) -> int:
        if self.memory_limit:
            return self.memory_limit
        if self.allocatable.get("memory"):
            return _quantity(self.allocatable["memory"])
        return _total_memory()

    def tmpfs_size(self, pod: Object, size_limit: Any = None) -> int:
        """``calculateEmptyDirMemorySize``."""
        size = self.memory_size()
        pod_limit = pod_memory_limit(pod)
        if 0 < pod_limit and (size == 0 or pod_limit <= size):
            size = pod_limit
        volume_limit = _quantity(size_limit)
        if 0 < volume_limit and (size == 0 or volume_limit <= size):
            size = volume_limit
        return size

    def _lock(self, pod_uid: str) -> asyncio.Lock:
        lock = self._locks.get(pod_uid)
        if lock is None:
            lock = self._locks[pod_uid] = asyncio.Lock()
        return lock

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _event(self, pod: Object, error: VolumeError) -> None:
        if self.recorder is None:
            return
        ref = {"apiVersion": "v1", "kind": "Pod", "metadata": pod.get("metadata") or {}}
        try:
            self.recorder.event(ref, WARNING, error.reason, error.message)
        except Exception:  # events are best effort
            log.debug("could not record event", exc_info=True)

    # -- setup -------------------------------------------------------------------------------------
    async def setup(self, pod: Object) -> dict[str, str]:
        """Make every volume of the pod; volume name → host path. Idempotent."""
        uid = pod["metadata"]["uid"]
        volumes = (pod.get("spec") or {}).get("volumes") or []
        async with self._lock(uid):
            paths: dict[str, str] = {}
            for volume in volumes:
                try:
                    paths[volume["name"]] = await self._setup_volume(pod, volume)
                except VolumeError as e:
                    self._event(pod, e)
                    raise
            return paths

    async def _setup_volume(self, pod: Object, volume: Object) -> str:
        kind, name = volume_kind(volume), volume["name"]
        source = volume.get(kind) or {}
        if kind == "hostPath":
            return await self._setup_host_path(name, source)
        if kind == "persistentVolumeClaim":
            return await self._setup_claim(pod, name, source)
        if kind == "emptyDir":
            return await self._setup_empty_dir(pod, name, source)
        if kind in API_DATA_KINDS:
            await self._write_api_data(pod, volume, only_if_present=False)
            return str(self.volume_dir(pod["metadata"]["uid"], kind, name))
        raise _failed(name, f"volume type {kind or 'unknown'} is not supported by this node")

    async def _setup_host_path(self, name: str, source: Object) -> str:
        path = source.get("path") or ""
        if not hostpath.is_allowed(path, self.allowed_host_paths):
            raise _failed(name, f'hostPath "{path}" is not allowed on this node (allowed host '
                                f'paths: {", ".join(self.allowed_host_paths or []) or "none"})')
        try:
            await self._run(hostpath.check_type, path, source.get("type"))
        except (hostpath.HostPathError, OSError) as e:
            raise _failed(name, str(e)) from None
        return path

    async def _setup_empty_dir(self, pod: Object, name: str, source: Object) -> str:
        directory = self.volume_dir(pod["metadata"]["uid"], "emptyDir", name)
        medium = source.get("medium") or ""
        if medium not in ("", "Memory"):
            raise _failed(name, f"emptyDir medium {medium} is not supported by this node")
        size = self.tmpfs_size(pod, source.get("sizeLimit")) if medium == "Memory" else None
        gid = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        try:
            await self._run(self._make_empty_dir, directory, size, gid)
        except OSError as e:
            raise _failed(name, str(e)) from None
        return str(directory)

    @staticmethod
    def _make_empty_dir(directory: Path, tmpfs_size: int | None, gid: int | None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if tmpfs_size is not None and not mount.is_mount_point(directory):
            mount.mount_tmpfs(directory, tmpfs_size)
        mode = EMPTY_DIR_MODE
        if gid is not None:
            os.chown(directory, -1, gid)
            mode |= stat.S_ISGID
        if stat.S_IMODE(directory.stat().st_mode) != mode:
            os.chmod(directory, mode)

    # -- persistent volume claims ------------------------------------------------------------------
    async def _setup_claim(self, pod: Object, name: str, source: Object) -> str:
        namespace = pod["metadata"].get("namespace") or "default"
        claim_name = source.get("claimName") or ""

        def unprocessable(message: str) -> VolumeError:
            names = [v["name"] for v in (pod.get("spec") or {}).get("volumes") or []]
            return VolumeError("FailedMount", (
                f"Unable to attach or mount volumes: unmounted volumes=[{name}], unattached "
                f"volumes=[{' '.join(names)}]: error processing PVC {namespace}/{claim_name}: "
                f"{message}"))

        try:
            claim = await self.client.get("v1", "persistentvolumeclaims", claim_name,
                                          namespace=namespace)
        except ApiError as e:
            raise unprocessable(f"failed to fetch PVC from API server: {e.message}") from None
        if claim["metadata"].get("deletionTimestamp"):
            raise unprocessable(f"can't start pod because PVC {namespace}/{claim_name} is "
                                "being deleted")
        if (claim.get("status") or {}).get("phase") != "Bound" or \
                not (claim.get("spec") or {}).get("volumeName"):
            raise unprocessable("PVC is not bound")
        pv_name = claim["spec"]["volumeName"]
        try:
            pv = await self.client.get("v1", "persistentvolumes", pv_name)
        except ApiError as e:
            raise unprocessable(f"failed to fetch PV {pv_name} from API server: "
                                f"{e.message}") from None
        claim_ref = (pv.get("spec") or {}).get("claimRef") or {}
        if not claim_ref:
            raise unprocessable(f"found PV object {pv_name} but it has a nil ClaimRef")
        if claim_ref.get("uid") and claim_ref["uid"] != claim["metadata"].get("uid"):
            raise unprocessable(f"found PV object {pv_name} but its ClaimRef UID "
                                f"{claim_ref['uid']} does not point to claim "
                                f"{claim['metadata'].get('uid')}")
        spec = pv.get("spec") or {}
        if spec.get("hostPath"):
            path = spec["hostPath"].get("path") or ""
            path_type = spec["hostPath"].get("type")
            if is_local_path_volume(pv):
                path_type = LOCAL_PATH_TYPE  # anyone in the pod may write, as rancher's does
            try:
                await self._run(hostpath.check_type, path, path_type)
            except (hostpath.HostPathError, OSError) as e:
                raise _failed(pv_name, str(e)) from None
            return path
        if spec.get("local"):
            path = spec["local"].get("path") or ""
            if not await self._run(os.path.exists, path):
                raise VolumeError("FailedMount", f'MountVolume.NewMounter initialization failed '
                                                 f'for volume "{pv_name}" : path "{path}" does '
                                                 "not exist")
            return path
        raise _failed(pv_name, "volume type is not supported by this node (only hostPath and "
                               "local persistent volumes are)")

    # -- API data volumes --------------------------------------------------------------------------
    async def _write_api_data(self, pod: Object, volume: Object, *, only_if_present: bool) -> bool:
        uid = pod["metadata"]["uid"]
        kind, name = volume_kind(volume), volume["name"]
        directory = self.volume_dir(uid, kind, name)
        key = (uid, name)
        if only_if_present and key not in self._written and \
                not await self._run(os.path.isdir, directory):
            return False
        payload = await self._payload(pod, kind, name, volume.get(kind) or {})
        digest = _digest(payload)
        if self._written.get(key) == digest:
            return False
        size = self.tmpfs_size(pod) if kind in MEMORY_BACKED_KINDS else None
        gid = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        try:
            changed = await self._run(self._write_payload, directory, payload, size, gid)
        except PayloadError as e:
            raise _failed(name, str(e)) from None
        except OSError as e:
            raise _failed(name, f"{e.strerror or e}: {e.filename or directory}") from None
        self._written[key] = digest
        return changed

    @staticmethod
    def _write_payload(directory: Path, payload: Mapping[str, FileProjection],
                       tmpfs_size: int | None, gid: int | None) -> bool:
        directory.mkdir(parents=True, exist_ok=True)
        if tmpfs_size is not None and not mount.is_mount_point(directory):
            mount.mount_tmpfs(directory, tmpfs_size)
        if tmpfs_size is None and stat.S_IMODE(directory.stat().st_mode) != EMPTY_DIR_MODE:
            os.chmod(directory, EMPTY_DIR_MODE)
        return AtomicWriter(directory, fs_group=gid).write(payload)

    async def _payload(self, pod: Object, kind: str, name: str,
                       source: Object) -> dict[str, FileProjection]:
        namespace = pod["metadata"].get("namespace") or "default"
        default_mode = source.get("defaultMode")
        default_mode = DEFAULT_MODE if default_mode is None else int(default_mode)
        try:
            if kind == "configMap":
                return await self._configmap(namespace, source, default_mode)
            if kind == "secret":
                return await self._secret(namespace, source, default_mode, "secretName")
            if kind == "downwardAPI":
                return downward_payload(pod, source.get("items"), default_mode, self.allocatable)
            return await self._projected(pod, source, default_mode)
        except SourceError as e:
            raise _failed(name, str(e)) from None
        except ApiError as e:
            raise _failed(name, e.message) from None

    async def _configmap(self, namespace: str, source: Object,
                         default_mode: int) -> dict[str, FileProjection]:
        ref, optional = source.get("name") or "", bool(source.get("optional"))
        obj = await self.lookup.configmap(namespace, ref)
        if obj is None and not optional:
            raise SourceError(f'configmap "{ref}" not found')
        return configmap_payload(obj, source.get("items"), default_mode, optional)

    async def _secret(self, namespace: str, source: Object, default_mode: int,
                      name_field: str) -> dict[str, FileProjection]:
        ref, optional = source.get(name_field) or "", bool(source.get("optional"))
        obj = await self.lookup.secret(namespace, ref)
        if obj is None and not optional:
            raise SourceError(f'secret "{ref}" not found')
        return secret_payload(obj, source.get("items"), default_mode, optional)

    async def _projected(self, pod: Object, source: Object,
                         default_mode: int) -> dict[str, FileProjection]:
        namespace = pod["metadata"].get("namespace") or "default"
        payload: dict[str, FileProjection] = {}
        errors: list[str] = []
        for projection in source.get("sources") or []:
            try:
                if projection.get("configMap") is not None:
                    payload.update(await self._configmap(namespace, projection["configMap"],
                                                         default_mode))
                elif projection.get("secret") is not None:
                    payload.update(await self._secret(namespace, projection["secret"],
                                                      default_mode, "name"))
                elif projection.get("downwardAPI") is not None:
                    payload.update(downward_payload(pod, projection["downwardAPI"].get("items"),
                                                    default_mode, self.allocatable))
                elif projection.get("serviceAccountToken") is not None:
                    path, token = await self._token(pod, projection["serviceAccountToken"],
                                                    default_mode)
                    payload[path] = token
            except (SourceError, TokenError) as e:
                errors.append(str(e))
            except ApiError as e:
                errors.append(e.message)
        if errors:
            raise SourceError(aggregate(errors))
        return payload

    async def _token(self, pod: Object, source: Object,
                     default_mode: int) -> tuple[str, FileProjection]:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        fs_user = _fs_user(pod)
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        mode = 0o600 if fs_user is not None or fs_group is not None else default_mode
        audience = source.get("audience")
        token = await self.tokens.get(
            meta.get("namespace") or "default", spec.get("serviceAccountName") or "default",
            pod_name=meta["name"], pod_uid=meta["uid"], audiences=[audience] if audience else [],
            expiration_seconds=source.get("expirationSeconds"))
        return source.get("path") or "token", FileProjection(token.encode(), mode, fs_user)

    async def refresh(self, pod: Object) -> list[str]:
        """Bring configMap, secret, downwardAPI and projected volumes up to date (rotating
        service-account tokens); names of the volumes rewritten. Errors are reported as events
        and the old contents stay."""
        uid = pod["metadata"]["uid"]
        changed = []
        async with self._lock(uid):
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                if volume_kind(volume) not in API_DATA_KINDS:
                    continue
                try:
                    if await self._write_api_data(pod, volume, only_if_present=True):
                        changed.append(volume["name"])
                except VolumeError as e:
                    log.info("refreshing volume failed", extra={"pod_uid": uid, "error": e.message})
                    self._event(pod, e)
        return changed

    def invalidate(self, resource: str, namespace: str, name: str) -> None:
        """An object changed (a configmaps/secrets watch event): the next ``refresh`` must not
        answer from the lookup's cache."""
        invalidate = getattr(self.lookup, "invalidate", None)
        if invalidate is not None:
            invalidate(resource, namespace, name)

    # -- teardown ----------------------------------------------------------------------------------
    async def teardown(self, pod_uid: str) -> None:
        """Unmount and remove everything the pod had under the pods dir (never hostPath or
        persistent volume contents). Idempotent; works after a reboot."""
        async with self._lock(pod_uid):
            await self._run(self._remove_pod_dir, self.pod_dir(pod_uid))
            for key in [k for k in self._written if k[0] == pod_uid]:
                del self._written[key]
            self.tokens.forget_pod(pod_uid)
        self._locks.pop(pod_uid, None)

    @staticmethod
    def _remove_pod_dir(directory: Path) -> None:
        mount.unmount_all(directory)
        left = mount.mount_points(directory)
        if left:
            raise VolumeError("FailedUnmount", f"cannot remove {directory}: still mounted: "
                                               f"{', '.join(left)}")
        mount.remove_tree(directory)

    def pods_on_disk(self) -> list[str]:
        """Pod uids with a directory here (to tear down orphans after a restart)."""
        try:
            return sorted(entry.name for entry in os.scandir(self.pods_dir) if entry.is_dir())
        except FileNotFoundError:
            return []

    async def remove_local_path_volume(self, pv: Object) -> bool:
        """Delete the directory of a local-path volume made for this node once its
        PersistentVolume is gone (reclaim policy Delete); True when something was removed."""
        annotations = (pv.get("metadata") or {}).get("annotations") or {}
        path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path") or ""
        if not is_local_path_volume(pv) or annotations.get(LOCAL_PATH_NODE) != self.node_name \
                or not os.path.basename(path).startswith("pvc-"):
            return False
        if not await self._run(os.path.lexists, path):
            return False
        await self._run(mount.remove_tree, path)
        return True

    async def usage(self, pod_uid: str) -> dict[str, int]:
        """Bytes used by each emptyDir of the pod (for eviction against sizeLimit)."""
        root = self.pods_dir / pod_uid / "volumes" / PLUGIN_DIRS["emptyDir"]

        def measure() -> dict[str, int]:
            try:
                names = [entry.name for entry in os.scandir(root) if entry.is_dir()]
            except FileNotFoundError:
                return {}
            return {name: mount.directory_usage(root / name) for name in names}

        return await self._run(measure)

    # -- container mounts --------------------------------------------------------------------------
    def mounts_for(self, pod: Object, container: Object, volume_paths: Mapping[str, str], *,
                   env: Iterable[str] | None = None, attempt: int | None = None) -> list[Mount]:
        """The container's mounts: its volumeMounts (subPath bind-mounted safely, subPathExpr
        expanded from ``env``), the pod's /etc/hosts when the agent wrote one, and with
        ``attempt`` its termination-message file. Raises MountError."""
        uid = pod["metadata"]["uid"]
        container_name = container.get("name", "")
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        privileged = bool((container.get("securityContext") or {}).get("privileged"))
        env_map = dict(item.split("=", 1) for item in env or () if "=" in item)
        mounts: list[Mount] = []
        mount_hosts = True
        for index, volume_mount in enumerate(container.get("volumeMounts") or []):
            name, target = volume_mount.get("name", ""), volume_mount.get("mountPath", "")
            if target == "/etc/hosts":
                mount_hosts = False
            host_path = volume_paths.get(name)
            if host_path is None:
                raise MountError(f'cannot find volume "{name}" to mount into container '
                                 f'"{container_name}"')
            sub = self._subpath(volume_mount, env_map, container_name)
            if sub:
                host_path = self._prepare_subpath(pod, host_path, sub, name, container_name, index)
            propagation = volume_mount.get("mountPropagation")
            if propagation not in PROPAGATION:
                raise MountError(f'invalid MountPropagation mode: "{propagation}"')
            if propagation == "Bidirectional" and not privileged:
                raise MountError("Bidirectional mount propagation is available only to "
                                 "privileged containers")
            readonly = bool(volume_mount.get("readOnly")) or _read_only(volumes.get(name))
            mounts.append(Mount(host_path, target, readonly, PROPAGATION[propagation]))
        hosts = self.hosts_file(uid)
        if mount_hosts and hosts.exists():
            mounts.append(Mount(str(hosts), "/etc/hosts"))
        message_path = container.get("terminationMessagePath")
        if attempt is not None and message_path:
            mounts.append(Mount(str(self.termination_log_path(uid, container_name, attempt)),
                                message_path))
        return mounts

    @staticmethod
    def _subpath(volume_mount: Object, env: Mapping[str, str], container_name: str) -> str:
        expression = volume_mount.get("subPathExpr")
        if not expression:
            return volume_mount.get("subPath") or ""
        missing: set[str] = set()

        def lookup(key: str) -> str:
            value = env.get(key)
            if not value:
                missing.add(key)
            return value or ""

        expanded = expand(expression, lookup)
        if missing:
            raise MountError(f'missing value for {", ".join(sorted(missing))}')
        return expanded

    def _prepare_subpath(self, pod: Object, volume_path: str, sub: str, volume_name: str,
                         container_name: str, index: int) -> str:
        try:
            subpath.validate(sub)
        except subpath.SubPathError as e:
            raise MountError(str(e)) from None
        try:
            mode = stat.S_IMODE(os.stat(volume_path).st_mode)
            subpath.safe_make_dir(volume_path, sub, mode)
        except (subpath.SubPathError, OSError) as e:
            log.warning("creating subPath failed", extra={"path": volume_path, "error": str(e)})
            raise MountError(f'failed to create subPath directory for volumeMount "{volume_name}"'
                             f' of container "{container_name}"') from None
        try:
            return subpath.bind_subpath(volume_path, sub, self.pod_dir(pod["metadata"]["uid"]),
                                        volume_name, container_name, index)
        except (subpath.SubPathError, OSError) as e:
            # Like the kubelet, the user sees no host details.
            log.warning("preparing subPath failed", extra={"path": volume_path, "error": str(e)})
            raise MountError(f'failed to prepare subPath for volumeMount "{volume_name}" of '
                             f'container "{container_name}"') from None


def _read_only(volume: Object | None) -> bool:
    """Volumes every mount gets read-only: API data, and claims marked readOnly."""
    if volume is None:
        return False
    kind = volume_kind(volume)
    if kind in API_DATA_KINDS:
        return True
    if kind == "persistentVolumeClaim":
        return bool((volume.get(kind) or {}).get("readOnly"))
    return False
