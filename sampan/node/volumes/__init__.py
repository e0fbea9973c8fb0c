"""Pod volumes on a node: emptyDir, hostPath, configMap, secret, downwardAPI, projected
(service-account tokens included) and persistentVolumeClaim (hostPath and local volumes)."""

from sampan.node.volumes.atomic_writer import AtomicWriter, FileProjection, PayloadError
from sampan.node.volumes.lookup import ClientLookup, ObjectLookup
from sampan.node.volumes.manager import (
    PLUGIN_DIRS,
    MountError,
    VolumeError,
    VolumeManager,
    pod_memory_limit,
    volume_kind,
)
from sampan.node.volumes.tokens import TokenError, TokenManager

__all__ = [
    "PLUGIN_DIRS",
    "AtomicWriter",
    "ClientLookup",
    "FileProjection",
    "MountError",
    "ObjectLookup",
    "PayloadError",
    "TokenError",
    "TokenManager",
    "VolumeError",
    "VolumeManager",
    "pod_memory_limit",
    "volume_kind",
]
