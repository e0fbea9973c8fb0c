"""Volume logic without mounts or an API server: the atomic writer's layout and updates, payloads
of configMap/secret/downwardAPI sources, hostPath type checks and allowed prefixes, the
service-account volume injection, token refresh timing, tmpfs sizing and container mounts."""

from __future__ import annotations

import base64
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from sampan.node.cri import Mount
from sampan.node.volumes import (
    AtomicWriter,
    FileProjection,
    MountError,
    PayloadError,
    TokenManager,
    VolumeManager,
    hostpath,
    pod_memory_limit,
)
from sampan.node.volumes.mount import directory_usage, remove_tree
from sampan.apiserver.tokenvolume import (
    MOUNT_PATH,
    mount_service_account_token,
    token_volume_source,
)
from sampan.node.volumes.sources import (
    SourceError,
    configmap_payload,
    downward_payload,
    secret_payload,
)
from sampan.node.volumes.tokens import _Token


# -- atomic writer ---------------------------------------------------------------------------------
def test_atomic_writer_layout_and_update(tmp_path: Path) -> None:
    writer = AtomicWriter(tmp_path)
    assert writer.write({"a": FileProjection(b"1"), "dir/b": FileProjection(b"2", 0o600)})
    data = os.readlink(tmp_path / "..data")
    assert data.startswith("..") and (tmp_path / data).is_dir()
    assert os.readlink(tmp_path / "a") == "..data/a"
    assert os.readlink(tmp_path / "dir") == "..data/dir"
    assert (tmp_path / "a").read_text() == "1" and (tmp_path / "dir/b").read_text() == "2"
    assert stat.S_IMODE(os.stat(tmp_path / "dir/b").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o644

    assert not writer.write({"a": FileProjection(b"1"), "dir/b": FileProjection(b"2", 0o600)})
    assert os.readlink(tmp_path / "..data") == data

    assert writer.write({"a": FileProjection(b"one"), "c": FileProjection(b"3")})
    new = os.readlink(tmp_path / "..data")
    assert new != data and not (tmp_path / data).exists()
    assert sorted(os.listdir(tmp_path)) == sorted(["..data", new, "a", "c"])
    assert (tmp_path / "a").read_text() == "one" and (tmp_path / "c").read_text() == "3"


def test_atomic_writer_mode_change_rewrites(tmp_path: Path) -> None:
    writer = AtomicWriter(tmp_path)
    writer.write({"a": FileProjection(b"x", 0o644)})
    assert writer.write({"a": FileProjection(b"x", 0o400)})
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o400


def test_atomic_writer_fs_group(tmp_path: Path) -> None:
    AtomicWriter(tmp_path, fs_group=4321).write({"k": FileProjection(b"v", 0o600)})
    info = os.stat(tmp_path / "k")
    assert info.st_gid == 4321 and stat.S_IMODE(info.st_mode) == 0o640


def test_atomic_writer_empty_payload_and_strays(tmp_path: Path) -> None:
    (tmp_path / "..2020_01_01_00_00_00.1").mkdir()   # left by an interrupted write
    writer = AtomicWriter(tmp_path)
    assert writer.write({})
    assert sorted(os.listdir(tmp_path)) == sorted(["..data", os.readlink(tmp_path / "..data")])


@pytest.mark.parametrize("path,message", [
    ("/abs", "must be relative path"),
    ("a/../b", "must not contain '..'"),
    ("..secret", "must not start with '..'"),
    ("", "must not be empty"),
    ("x" * 256, "filenames must be less than or equal to 255"),
])
def test_atomic_writer_rejects_bad_paths(tmp_path: Path, path: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        AtomicWriter(tmp_path).write({path: FileProjection(b"")})
    assert os.listdir(tmp_path) == []


# -- payloads --------------------------------------------------------------------------------------
def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_configmap_payload() -> None:
    cm = {"data": {"a": "1", "b": "2"}, "binaryData": {"bin": b64("\x00\x01")}}
    payload = configmap_payload(cm, None, 0o644, False)
    assert {k: v.data for k, v in payload.items()} == {"a": b"1", "b": b"2", "bin": b"\x00\x01"}
    items = [{"key": "a", "path": "x/a.txt", "mode": 0o400}, {"key": "bin", "path": "bin"}]
    payload = configmap_payload(cm, items, 0o640, False)
    assert payload == {"x/a.txt": FileProjection(b"1", 0o400),
                       "bin": FileProjection(b"\x00\x01", 0o640)}
    with pytest.raises(SourceError, match="configmap references non-existent config key: zz"):
        configmap_payload(cm, [{"key": "zz", "path": "zz"}], 0o644, False)
    assert configmap_payload(cm, [{"key": "zz", "path": "zz"}], 0o644, True) == {}
    assert configmap_payload(None, None, 0o644, True) == {}


def test_secret_payload() -> None:
    secret = {"data": {"user": b64("admin"), "pass": b64("s3cret")}}
    assert secret_payload(secret, None, 0o400, False)["pass"] == FileProjection(b"s3cret", 0o400)
    with pytest.raises(SourceError, match="references non-existent secret key: nope"):
        secret_payload(secret, [{"key": "nope", "path": "n"}], 0o644, False)


def test_downward_payload() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "32Mi"}}}]}}
    items = [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
             {"path": "./name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
             {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                  "divisor": "1Mi"}},
             {"path": "req", "resourceFieldRef": {"containerName": "c",
                                                  "resource": "requests.memory"}}]
    payload = downward_payload(pod, items, 0o644, {"memory": "2Gi"})
    assert payload == {"labels": FileProjection(b'a="b"', 0o644),
                       "name": FileProjection(b"p", 0o600),
                       "mem": FileProjection(b"2048", 0o644),
                       "req": FileProjection(str(32 * 1024 * 1024).encode(), 0o644)}
    with pytest.raises(SourceError, match=r"^\[unsupported fieldPath: spec.x, container z not found\]$"):
        downward_payload(pod, [{"path": "a", "fieldRef": {"fieldPath": "spec.x"}},
                               {"path": "b", "resourceFieldRef": {"containerName": "z",
                                                                  "resource": "limits.cpu"}}],
                         0o644, {})


# -- hostPath --------------------------------------------------------------------------------------
def test_host_path_types(tmp_path: Path) -> None:
    hostpath.check_type(str(tmp_path / "new/dir"), "DirectoryOrCreate")
    assert stat.S_IMODE(os.stat(tmp_path / "new/dir").st_mode) == 0o755
    hostpath.check_type(str(tmp_path / "f"), "FileOrCreate")
    assert (tmp_path / "f").is_file() and stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o644
    hostpath.check_type(str(tmp_path / "f"), "File")
    hostpath.check_type(str(tmp_path / "new"), "Directory")
    hostpath.check_type(str(tmp_path / "whatever"), None)
    hostpath.check_type(str(tmp_path / "whatever"), "")
    hostpath.check_type("/dev/null", "CharDevice")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        hostpath.check_type(str(sock_path), "Socket")
    for path, kind, what in [
        (tmp_path / "f", "Directory", "a directory"),
        (tmp_path / "f", "DirectoryOrCreate", "a directory"),
        (tmp_path / "new", "File", "a file"),
        (tmp_path / "missing", "File", "a file"),
        (tmp_path / "f", "Socket", "a socket file"),
        (tmp_path / "f", "CharDevice", "a character device"),
        (Path("/dev/null"), "BlockDevice", "a block device"),
    ]:
        with pytest.raises(hostpath.HostPathError) as caught:
            hostpath.check_type(str(path), kind)
        assert str(caught.value) == f"hostPath type check failed: {path} is not {what}"
    with pytest.raises(hostpath.HostPathError, match="Weird is an invalid volume type"):
        hostpath.check_type(str(tmp_path), "Weird")
    with pytest.raises(hostpath.HostPathError, match=r"invalid HostPath `/a/\.\./b`: must not contain '\.\.'"):
        hostpath.check_type("/a/../b", "")


def test_allowed_host_paths(tmp_path: Path) -> None:
    allowed = [str(tmp_path / "data"), "/var/log/"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "escape").symlink_to("/etc")
    assert hostpath.is_allowed(str(tmp_path / "data"), allowed)
    assert hostpath.is_allowed(str(tmp_path / "data/x/y"), allowed)
    assert hostpath.is_allowed("/var/log/pods", allowed)
    assert not hostpath.is_allowed(str(tmp_path / "database"), allowed)
    assert not hostpath.is_allowed("/etc", allowed)
    assert not hostpath.is_allowed(str(tmp_path / "data/escape"), allowed)
    assert hostpath.is_allowed("/anything", None)
    assert not hostpath.is_allowed("/anything", [])


# -- service account volume ------------------------------------------------------------------------
def test_service_account_volume_injection() -> None:
    pod = {"spec": {"initContainers": [{"name": "init"}],
                    "containers": [{"name": "a"},
                                   {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}],
                    "volumes": [{"name": "own", "emptyDir": {}}]}}
    assert mount_service_account_token(pod, {"metadata": {"name": "default"}}, suffix=lambda: "x7b2q")
    volume = pod["spec"]["volumes"][-1]
    assert volume == {"name": "kube-api-access-x7b2q", "projected": token_volume_source()}
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["expirationSeconds"] == 3607
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    mount = {"name": "kube-api-access-x7b2q", "readOnly": True, "mountPath": MOUNT_PATH}
    assert pod["spec"]["initContainers"][0]["volumeMounts"] == [mount]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [mount]
    assert len(pod["spec"]["containers"][1]["volumeMounts"]) == 1
    # Idempotent: a second pass changes nothing.
    assert not mount_service_account_token(pod, None)
    assert len(pod["spec"]["volumes"]) == 2


def test_service_account_automount_opt_out() -> None:
    pod = {"spec": {"containers": [{"name": "a"}]}}
    assert not mount_service_account_token(pod, {"automountServiceAccountToken": False})
    pod["spec"]["automountServiceAccountToken"] = True
    assert mount_service_account_token(pod, {"automountServiceAccountToken": False})
    pod2 = {"spec": {"automountServiceAccountToken": False, "containers": [{"name": "a"}]}}
    assert not mount_service_account_token(pod2, None)
    assert "volumes" not in pod2["spec"]


# -- tokens -----------------------------------------------------------------------------------------
class FakeTokenClient:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.now = 1_000_000.0

    async def create(self, api_version: str, resource: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.requests.append({"body": body, **kw})
        seconds = body["spec"].get("expirationSeconds", 3600)
        import time
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now + seconds))
        return {"spec": {**body["spec"], "expirationSeconds": seconds},
                "status": {"token": f"tok-{len(self.requests)}", "expirationTimestamp": expiry}}


async def test_token_manager_caches_and_rotates() -> None:
    client = FakeTokenClient()
    manager = TokenManager(client, clock=lambda: client.now)  # type: ignore[arg-type]
    kwargs = {"pod_name": "p", "pod_uid": "u1", "audiences": ["api"], "expiration_seconds": 3600}
    assert await manager.get("ns", "default", **kwargs) == "tok-1"
    request = client.requests[0]
    assert request["name"] == "default" and request["subresource"] == "token"
    assert request["body"]["spec"] == {"audiences": ["api"], "expirationSeconds": 3600,
                                       "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                          "name": "p", "uid": "u1"}}
    client.now += 0.5 * 3600
    assert await manager.get("ns", "default", **kwargs) == "tok-1"
    client.now += 0.31 * 3600         # past 80% of the lifetime (and any jitter)
    assert await manager.get("ns", "default", **kwargs) == "tok-2"
    manager.forget_pod("u1")
    assert await manager.get("ns", "default", **kwargs) == "tok-3"


def test_token_refresh_after_a_day() -> None:
    manager = TokenManager(None, clock=lambda: 2_000_000.0)  # type: ignore[arg-type]
    long_lived = _Token("t", expires_at=2_000_000.0 + 300 * 86400, lifetime=365 * 86400.0)
    assert manager.requires_refresh(long_lived)     # issued 65 days ago
    fresh = _Token("t", expires_at=2_000_000.0 + 3000, lifetime=3600.0)
    assert not manager.requires_refresh(fresh)


# -- manager pieces without mounts -------------------------------------------------------------------
def test_pod_memory_limit_and_tmpfs_size(tmp_path: Path) -> None:
    pod = {"spec": {"containers": [{"resources": {"limits": {"memory": "100Mi"}}},
                                   {"resources": {"limits": {"memory": "28Mi"}}}],
                    "initContainers": [{"resources": {"limits": {"memory": "200Mi"}}}]}}
    assert pod_memory_limit(pod) == 200 * 2**20
    manager = VolumeManager(None, tmp_path, "n", memory_limit=2**30)  # type: ignore[arg-type]
    assert manager.tmpfs_size(pod) == 200 * 2**20
    assert manager.tmpfs_size(pod, "64Mi") == 64 * 2**20
    assert manager.tmpfs_size(pod, "4Gi") == 200 * 2**20
    unlimited = {"spec": {"containers": [{"resources": {}}]}}
    assert pod_memory_limit(unlimited) == 0
    assert manager.tmpfs_size(unlimited) == 2**30


def pod_with(container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
            "spec": {"containers": [container], "volumes": volumes}}


def test_mounts_for_plain_mounts(tmp_path: Path) -> None:
    manager = VolumeManager(None, tmp_path, "n")  # type: ignore[arg-type]
    container = {"name": "c", "terminationMessagePath": "/dev/termination-log", "volumeMounts": [
        {"name": "cache", "mountPath": "/cache"},
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "data", "mountPath": "/data", "readOnly": True, "mountPropagation": "HostToContainer"},
        {"name": "claim", "mountPath": "/claim"}]}
    pod = pod_with(container, [{"name": "cache", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}},
                               {"name": "data", "hostPath": {"path": "/srv"}},
                               {"name": "claim", "persistentVolumeClaim": {"claimName": "c", "readOnly": True}}])
    paths = {"cache": "/p/cache", "cfg": "/p/cfg", "data": "/srv", "claim": "/pv"}
    (tmp_path / "uid-1").mkdir()
    (tmp_path / "uid-1" / "etc-hosts").write_text("127.0.0.1 localhost\n")
    mounts = manager.mounts_for(pod, container, paths, attempt=2)
    log_path = tmp_path / "uid-1/containers/c/termination-log-2"
    assert mounts == [Mount("/p/cache", "/cache"), Mount("/p/cfg", "/etc/cfg", True),
                      Mount("/srv", "/data", True, "rslave"), Mount("/pv", "/claim", True),
                      Mount(str(tmp_path / "uid-1/etc-hosts"), "/etc/hosts"),
                      Mount(str(log_path), "/dev/termination-log")]
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o666
    log_path.write_text("x" * 5000 + "the end")
    assert manager.termination_message("uid-1", "c", 2).endswith("the end")
    assert len(manager.termination_message("uid-1", "c", 2)) == 4096


def test_mounts_for_errors(tmp_path: Path) -> None:
    manager = VolumeManager(None, tmp_path, "n")  # type: ignore[arg-type]
    pod = pod_with({"name": "c"}, [{"name": "v", "emptyDir": {}}])
    with pytest.raises(MountError, match='cannot find volume "gone" to mount into container "c"'):
        manager.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "gone", "mountPath": "/x"}]}, {})
    bidirectional = {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/x",
                                                    "mountPropagation": "Bidirectional"}]}
    with pytest.raises(MountError, match="only to privileged containers"):
        manager.mounts_for(pod, bidirectional, {"v": "/v"})
    privileged = {**bidirectional, "securityContext": {"privileged": True}}
    assert manager.mounts_for(pod, privileged, {"v": "/v"})[0].propagation == "rshared"
    for sub, message in [("/abs", "must not be an absolute path"), ("a/../..", "must not contain '..'")]:
        with pytest.raises(MountError, match=message):
            manager.mounts_for(pod, {"name": "c", "volumeMounts": [
                {"name": "v", "mountPath": "/x", "subPath": sub}]}, {"v": str(tmp_path)})
    with pytest.raises(MountError, match="missing value for POD_NAME"):
        manager.mounts_for(pod, {"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/x", "subPathExpr": "$(POD_NAME)"}]}, {"v": str(tmp_path)},
            env=["OTHER=1"])


def test_remove_tree_and_usage(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/b/f").write_bytes(b"x" * 10000)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    (tmp_path / "a/link").symlink_to(outside)
    assert directory_usage(tmp_path / "a") >= 10000
    remove_tree(tmp_path / "a")
    assert not (tmp_path / "a").exists() and (outside / "keep").exists()
    remove_tree(tmp_path / "a")   # idempotent
