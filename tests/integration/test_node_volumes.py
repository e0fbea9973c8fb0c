"""The node's volume manager against a real API server, with real mounts: configMap, secret,
downwardAPI and projected volumes written and updated through the ``..data`` swap (a reader
never sees a mixture), service-account tokens from TokenRequest, hostPath types and the
allowed-prefix refusal, tmpfs emptyDirs, PVC resolution, safe subPath bind mounts, and teardown
that leaves no mount and no directory behind."""

from __future__ import annotations

import base64
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from sampan.client import Client, Config, EventRecorder
from sampan.node.envvars import ClientLookup, EnvError, make_environment, service_environment
from sampan.apiserver.tokenvolume import mount_service_account_token
from sampan.node.volumes import MountError, VolumeError, VolumeManager
from sampan.node.volumes.mount import mount_points
from tests.integration.helpers import eventually, new_namespace



@pytest.fixture
async def client(kubeconfig: str):
    async with Client.from_kubeconfig(kubeconfig) as c:
        yield c


@pytest.fixture
def pods_dir(tmp_path: Path):
    directory = tmp_path / "pods"
    directory.mkdir()
    yield directory
    # Whatever a failing test left mounted goes too (only below our own temp dir).
    from sampan.node.volumes.mount import unmount_all
    unmount_all(directory)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def create_pod(client: Client, namespace: str, spec: dict[str, Any],
                     labels: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{uuid.uuid4().hex[:6]}", "namespace": namespace,
                         "labels": labels or {}},
            # No controllers run here (no default service account, no kube-root-ca.crt): the
            # token volume admission would add is tested on its own below.
            "spec": {"automountServiceAccountToken": False, **spec}}
    return await client.create("v1", "pods", body, namespace=namespace)


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "c", "image": "busybox", **extra}


async def test_api_data_volumes_written_and_updated(client: Client, pods_dir: Path) -> None:
    ns = await new_namespace(client, "vol")
    await client.create("v1", "serviceaccounts", {"metadata": {"name": "default"}}, namespace=ns)
    await client.create("v1", "configmaps", {"metadata": {"name": "kube-root-ca.crt"},
                                             "data": {"ca.crt": "CA PEM"}}, namespace=ns)
    await client.create("v1", "configmaps", {"metadata": {"name": "app"},
                                             "data": {"a": "1", "b": "1"}}, namespace=ns)
    await client.create("v1", "secrets", {"metadata": {"name": "creds"},
                                          "data": {"user": b64("admin")}}, namespace=ns)
    spec = {"containers": [container()], "volumes": [
        {"name": "cfg", "configMap": {"name": "app"}},
        {"name": "one", "configMap": {"name": "app", "defaultMode": 0o600,
                                      "items": [{"key": "a", "path": "sub/a.txt", "mode": 0o400}]}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
    ]}
    assert mount_service_account_token({"spec": spec})
    pod = await create_pod(client, ns, spec, labels={"app": "web"})
    uid = pod["metadata"]["uid"]
    access = next(v["name"] for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
    manager = VolumeManager(client, pods_dir, "node-a", memory_limit=64 * 2**20)

    paths = await manager.setup(pod)
    base = pods_dir / uid / "volumes"
    assert paths["cfg"] == str(base / "kubernetes.io~configmap/cfg")
    assert paths["creds"] == str(base / "kubernetes.io~secret/creds")
    assert paths[access] == str(base / f"kubernetes.io~projected/{access}")
    cfg, one, creds, info, api = (Path(paths[n]) for n in ("cfg", "one", "creds", "info", access))
    assert (cfg / "a").read_text() == "1" and os.readlink(cfg / "a") == "..data/a"
    assert (one / "sub/a.txt").read_text() == "1" and not (one / "b").exists()
    assert oct(os.stat(one / "sub/a.txt").st_mode & 0o777) == oct(0o400)
    assert (creds / "user").read_text() == "admin"
    assert (info / "labels").read_text() == 'app="web"'
    assert (api / "namespace").read_text() == ns and (api / "ca.crt").read_text() == "CA PEM"
    # Secrets and projected volumes sit on tmpfs, the others on disk.
    mounted = set(mount_points(pods_dir / uid))
    assert mounted == {str(creds), str(api)}

    # The token is bound to this pod and the API server accepts it.
    token = (api / "token").read_text()
    claims = orjson.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["kubernetes.io"]["pod"]["uid"] == uid
    config = Config(server=client.config.server, ca_pem=client.config.ca_pem, token=token,
                    tls_server_name=client.config.tls_server_name)
    async with Client(config) as as_pod:
        review = await as_pod.create("authentication.k8s.io/v1", "selfsubjectreviews",
                                     {"apiVersion": "authentication.k8s.io/v1",
                                      "kind": "SelfSubjectReview"})
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:default"

    # Nothing changed: refresh rewrites nothing (and keeps the same token).
    data_link = os.readlink(cfg / "..data")
    assert await manager.refresh(pod) == []
    assert os.readlink(cfg / "..data") == data_link and (api / "token").read_text() == token

    # Updates reach the files through a swap of ..data while a reader keeps reading.
    stop = threading.Event()
    seen: list[tuple[str, str]] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                current = os.path.realpath(cfg / "..data")
                pair = (Path(current, "a").read_text(), Path(current, "b").read_text())
            except FileNotFoundError:
                continue          # that version was already replaced: read the next one
            if pair[0] != pair[1]:
                problems.append(f"mixed versions {pair}")
            seen.append(pair)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for version in range(2, 7):
            await client.patch("v1", "configmaps", "app", {"data": {"a": str(version),
                                                                    "b": str(version)}},
                               namespace=ns)
            manager.invalidate("configmaps", ns, "app")
            assert "cfg" in await manager.refresh(pod)
            assert (cfg / "a").read_text() == str(version)
    finally:
        stop.set()
        thread.join(10)
    assert not problems and seen
    assert (one / "sub/a.txt").read_text() == "6"
    assert sorted(os.listdir(cfg)) == sorted(["..data", os.readlink(cfg / "..data"), "a", "b"])

    # A key that goes away loses its link; secrets and labels follow too.
    await client.update("v1", "configmaps", {**(await client.get("v1", "configmaps", "app",
                                                                 namespace=ns)),
                                             "data": {"a": "7"}}, namespace=ns)
    await client.patch("v1", "secrets", "creds", {"data": {"user": b64("root")}}, namespace=ns)
    pod = await client.patch("v1", "pods", pod["metadata"]["name"],
                             {"metadata": {"labels": {"app": "web", "v": "2"}}}, namespace=ns)
    manager.invalidate("configmaps", ns, "app")
    manager.invalidate("secrets", ns, "creds")
    changed = await manager.refresh(pod)
    assert set(changed) == {"cfg", "one", "creds", "info"}
    assert not os.path.lexists(cfg / "b") and (cfg / "a").read_text() == "7"
    assert (creds / "user").read_text() == "root"
    assert (info / "labels").read_text() == 'app="web"\nv="2"'

    await manager.teardown(uid)
    assert mount_points(pods_dir / uid) == [] and not (pods_dir / uid).exists()
    await manager.teardown(uid)                 # idempotent


async def test_missing_configmap_fails_mount_with_event(client: Client, pods_dir: Path) -> None:
    ns = await new_namespace(client, "vol")
    pod = await create_pod(client, ns, {"containers": [container()], "volumes": [
        {"name": "opt", "configMap": {"name": "absent", "optional": True}},
        {"name": "cfg", "configMap": {"name": "absent"}}]})
    recorder = EventRecorder(client, "kubelet", host="node-a")
    manager = VolumeManager(client, pods_dir, "node-a", recorder=recorder)
    with pytest.raises(VolumeError) as caught:
        await manager.setup(pod)
    message = 'MountVolume.SetUp failed for volume "cfg" : configmap "absent" not found'
    assert caught.value.reason == "FailedMount" and caught.value.message == message
    uid = pod["metadata"]["uid"]
    optional = pods_dir / uid / "volumes/kubernetes.io~configmap/opt"
    assert sorted(os.listdir(optional)) == sorted(["..data", os.readlink(optional / "..data")])

    async def has_event() -> bool:
        events = await client.list("v1", "events", namespace=ns)
        return any(e["reason"] == "FailedMount" and e["message"] == message
                   and e["involvedObject"]["uid"] == uid for e in events["items"])
    await recorder.flush()
    await eventually(has_event, what="FailedMount event")
    await recorder.close()
    await manager.teardown(uid)
    assert not (pods_dir / uid).exists()


async def test_host_paths_types_and_allowed_prefixes(client: Client, pods_dir: Path,
                                                     tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "file").write_text("x")
    manager = VolumeManager(client, pods_dir, "node-a", allowed_host_paths=[str(allowed)])

    def pod_of(*volumes: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": "default", "uid": str(uuid.uuid4())},
                "spec": {"containers": [container()], "volumes": list(volumes)}}

    good = pod_of({"name": "made", "hostPath": {"path": str(allowed / "made/deep"),
                                                "type": "DirectoryOrCreate"}},
                  {"name": "f", "hostPath": {"path": str(allowed / "touched"), "type": "FileOrCreate"}},
                  {"name": "any", "hostPath": {"path": str(allowed / "file")}})
    paths = await manager.setup(good)
    assert paths == {"made": str(allowed / "made/deep"), "f": str(allowed / "touched"),
                     "any": str(allowed / "file")}
    assert (allowed / "made/deep").is_dir() and (allowed / "touched").is_file()

    with pytest.raises(VolumeError) as caught:
        await manager.setup(pod_of({"name": "etc", "hostPath": {"path": "/etc"}}))
    assert caught.value.reason == "FailedMount"
    assert caught.value.message.startswith('MountVolume.SetUp failed for volume "etc" : '
                                           'hostPath "/etc" is not allowed')
    with pytest.raises(VolumeError) as caught:
        await manager.setup(pod_of({"name": "d", "hostPath": {"path": str(allowed / "file"),
                                                              "type": "Directory"}}))
    assert caught.value.message == (f'MountVolume.SetUp failed for volume "d" : hostPath type '
                                    f'check failed: {allowed / "file"} is not a directory')
    await manager.teardown(good["metadata"]["uid"])
    assert (allowed / "made/deep").is_dir() and (allowed / "file").read_text() == "x"


async def test_memory_empty_dir_is_tmpfs_and_teardown_cleans(client: Client, pods_dir: Path) -> None:
    before = Path("/proc/self/mountinfo").read_text()
    manager = VolumeManager(client, pods_dir, "node-a", memory_limit=512 * 2**20)
    uid = str(uuid.uuid4())
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": uid},
           "spec": {"containers": [container(resources={"limits": {"memory": "256Mi"}})],
                    "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                                {"name": "mem", "emptyDir": {"medium": "Memory"}},
                                {"name": "disk", "emptyDir": {"sizeLimit": "1Gi"}}]}}
    paths = await manager.setup(pod)
    assert await manager.setup(pod) == paths          # idempotent: no second mount
    sizes = {os.path.basename(p): os.statvfs(p).f_blocks * os.statvfs(p).f_frsize
             for p in paths.values()}
    assert sizes["shm"] == 16 * 2**20 and sizes["mem"] == 256 * 2**20
    assert sorted(mount_points(pods_dir / uid)) == sorted([paths["shm"], paths["mem"]])
    assert oct(os.stat(paths["disk"]).st_mode & 0o7777) == oct(0o777)
    Path(paths["disk"], "blob").write_bytes(b"x" * 100_000)
    usage = await manager.usage(uid)
    assert usage["disk"] >= 100_000 and set(usage) == {"shm", "mem", "disk"}
    await manager.teardown(uid)
    assert not (pods_dir / uid).exists()
    assert Path("/proc/self/mountinfo").read_text() == before


async def test_persistent_volume_claims(client: Client, pods_dir: Path, tmp_path: Path) -> None:
    ns = await new_namespace(client, "vol")
    storage = tmp_path / "pv-data"
    pv_name = f"pv-{uuid.uuid4().hex[:8]}"
    claim = await client.create("v1", "persistentvolumeclaims", {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": ""}},
        namespace=ns)
    await client.create("v1", "persistentvolumes", {
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "",
                 "claimRef": {"namespace": ns, "name": "data", "uid": claim["metadata"]["uid"]},
                 "hostPath": {"path": str(storage), "type": "DirectoryOrCreate"}}})
    manager = VolumeManager(client, pods_dir, "node-a")

    def pod_of(claim_name: str, read_only: bool = False) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": ns, "uid": str(uuid.uuid4())},
                "spec": {"containers": [container(volumeMounts=[{"name": "d", "mountPath": "/d"}])],
                         "volumes": [{"name": "d", "persistentVolumeClaim": {
                             "claimName": claim_name, "readOnly": read_only}}]}}

    with pytest.raises(VolumeError) as caught:
        await manager.setup(pod_of("data"))
    assert caught.value.message.endswith(f"error processing PVC {ns}/data: PVC is not bound")
    with pytest.raises(VolumeError) as caught:
        await manager.setup(pod_of("nope"))
    assert caught.value.message.endswith(
        f'error processing PVC {ns}/nope: failed to fetch PVC from API server: '
        f'persistentvolumeclaims "nope" not found')

    claim = await client.get("v1", "persistentvolumeclaims", "data", namespace=ns)
    claim["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                       "capacity": {"storage": "1Gi"}}
    await client.update("v1", "persistentvolumeclaims", claim, namespace=ns, subresource="status")
    pod = pod_of("data", read_only=True)
    paths = await manager.setup(pod)
    assert paths == {"d": str(storage)} and storage.is_dir()
    (storage / "kept").write_text("precious")
    mounts = manager.mounts_for(pod, pod["spec"]["containers"][0], paths)
    assert [(m.host_path, m.readonly) for m in mounts] == [(str(storage), True)]
    await manager.teardown(pod["metadata"]["uid"])
    assert (storage / "kept").read_text() == "precious"
    await client.delete("v1", "persistentvolumes", pv_name)


async def bound_claim(client: Client, ns: str, name: str, pv_spec: dict[str, Any],
                      annotations: dict[str, str] | None = None) -> str:
    pv_name = f"pv-{uuid.uuid4().hex[:8]}"
    claim = await client.create("v1", "persistentvolumeclaims", {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv_name, "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}}, namespace=ns)
    await client.create("v1", "persistentvolumes", {
        "metadata": {"name": pv_name, "annotations": annotations or {}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", **pv_spec,
                 "claimRef": {"namespace": ns, "name": name, "uid": claim["metadata"]["uid"]}}})
    claim["status"] = {"phase": "Bound"}
    await client.update("v1", "persistentvolumeclaims", claim, namespace=ns, subresource="status")
    return pv_name


async def test_local_path_and_local_volumes(client: Client, pods_dir: Path, tmp_path: Path) -> None:
    ns = await new_namespace(client, "vol")
    provisioned = tmp_path / "storage" / f"pvc-{uuid.uuid4()}_{ns}_data"
    local_dir = tmp_path / "disk1"
    local_dir.mkdir()
    lp = await bound_claim(client, ns, "data", {"hostPath": {"path": str(provisioned),
                                                             "type": "DirectoryOrCreate"}},
                           {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path",
                            "local.path.provisioner/selected-node": "node-a"})
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}]}]}}
    local = await bound_claim(client, ns, "disk", {"local": {"path": str(local_dir)},
                                                   "nodeAffinity": affinity})
    missing = await bound_claim(client, ns, "gone", {"local": {"path": str(tmp_path / "nope")},
                                                     "nodeAffinity": affinity})
    manager = VolumeManager(client, pods_dir, "node-a")
    pod = {"metadata": {"name": "p", "namespace": ns, "uid": str(uuid.uuid4())},
           "spec": {"containers": [container()], "volumes": [
               {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
               {"name": "b", "persistentVolumeClaim": {"claimName": "disk"}}]}}
    assert await manager.setup(pod) == {"a": str(provisioned), "b": str(local_dir)}
    assert oct(provisioned.stat().st_mode & 0o777) == oct(0o777)
    pod["spec"]["volumes"].append({"name": "c", "persistentVolumeClaim": {"claimName": "gone"}})
    with pytest.raises(VolumeError, match=f'path "{tmp_path / "nope"}" does not exist'):
        await manager.setup(pod)
    await manager.teardown(pod["metadata"]["uid"])
    assert provisioned.is_dir() and local_dir.is_dir()
    pv = await client.get("v1", "persistentvolumes", lp)
    assert not await VolumeManager(client, pods_dir, "node-b").remove_local_path_volume(pv)
    assert await manager.remove_local_path_volume(pv) and not provisioned.exists()
    assert not await manager.remove_local_path_volume(
        await client.get("v1", "persistentvolumes", local))
    for name in (lp, local, missing):
        await client.delete("v1", "persistentvolumes", name)


async def test_sub_paths_are_bind_mounted_safely(client: Client, pods_dir: Path,
                                                 tmp_path: Path) -> None:
    ns = await new_namespace(client, "vol")
    await client.create("v1", "configmaps", {"metadata": {"name": "conf"},
                                             "data": {"nginx.conf": "events {}"}}, namespace=ns)
    secret_dir = tmp_path / "outside"
    secret_dir.mkdir()
    (secret_dir / "host-secret").write_text("do not leak")
    mounts_spec = [
        {"name": "work", "mountPath": "/logs", "subPathExpr": "logs/$(POD_NAME)"},
        {"name": "conf", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf"},
    ]
    c = container(volumeMounts=mounts_spec)
    pod = await create_pod(client, ns, {"containers": [c], "volumes": [
        {"name": "work", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "conf"}}]})
    uid = pod["metadata"]["uid"]
    manager = VolumeManager(client, pods_dir, "node-a")
    paths = await manager.setup(pod)
    mounts = manager.mounts_for(pod, c, paths, env=["POD_NAME=web-0"])
    logs = Path(paths["work"], "logs/web-0")
    assert logs.is_dir()
    assert mounts[0].host_path == str(pods_dir / uid / "volume-subpaths/work/c/0")
    assert mounts[1].host_path == str(pods_dir / uid / "volume-subpaths/conf/c/1")
    assert mounts[1].readonly and not mounts[0].readonly
    assert Path(mounts[1].host_path).read_text() == "events {}"
    Path(mounts[0].host_path, "x.log").write_text("hello")
    assert (logs / "x.log").read_text() == "hello"
    assert manager.mounts_for(pod, c, paths, env=["POD_NAME=web-0"]) == mounts   # reused

    # A symlink planted in the volume cannot lead a subPath out of it.
    Path(paths["work"], "escape").symlink_to(secret_dir)
    evil = container(name="evil", volumeMounts=[{"name": "work", "mountPath": "/x",
                                                 "subPath": "escape/host-secret"}])
    with pytest.raises(MountError, match='failed to prepare subPath for volumeMount "work" of '
                                         'container "evil"'):
        manager.mounts_for(pod, evil, paths)
    creating = container(name="evil2", volumeMounts=[{"name": "work", "mountPath": "/x",
                                                      "subPath": "escape/newdir"}])
    with pytest.raises(MountError, match="failed to create subPath directory"):
        manager.mounts_for(pod, creating, paths)
    assert not (secret_dir / "newdir").exists()

    await manager.teardown(uid)
    assert mount_points(pods_dir / uid) == [] and not (pods_dir / uid).exists()
    assert (secret_dir / "host-secret").read_text() == "do not leak"


async def test_teardown_after_reboot_and_orphans(client: Client, pods_dir: Path) -> None:
    manager = VolumeManager(client, pods_dir, "node-a")
    uid = str(uuid.uuid4())
    stale = pods_dir / uid / "volumes/kubernetes.io~secret/s"
    stale.mkdir(parents=True)                       # the tmpfs went away with the reboot
    (stale / "..data").symlink_to("..2020_01_01")
    assert manager.pods_on_disk() == [uid]
    await manager.teardown(uid)
    assert manager.pods_on_disk() == []


async def test_token_request_failure_is_reported(client: Client, pods_dir: Path) -> None:
    ns = await new_namespace(client, "vol")       # no service account "default" here
    spec = {"containers": [container()]}
    mount_service_account_token({"spec": spec})
    await client.create("v1", "configmaps", {"metadata": {"name": "kube-root-ca.crt"},
                                             "data": {"ca.crt": "CA"}}, namespace=ns)
    pod = await create_pod(client, ns, spec)
    manager = VolumeManager(client, pods_dir, "node-a")
    with pytest.raises(VolumeError) as caught:
        await manager.setup(pod)
    assert "failed to fetch token: " in caught.value.message
    assert 'serviceaccounts "default" not found' in caught.value.message
    await manager.teardown(pod["metadata"]["uid"])


async def test_environment_from_the_api_server(client: Client) -> None:
    ns = await new_namespace(client, "env")
    await client.create("v1", "configmaps", {"metadata": {"name": "cfg"},
                                             "data": {"MODE": "prod", "port": "8080"}}, namespace=ns)
    await client.create("v1", "secrets", {"metadata": {"name": "sec"},
                                          "data": {"password": b64("pw")}}, namespace=ns)
    await client.create("v1", "services", {"metadata": {"name": "backend"}, "spec": {
        "ports": [{"port": 80, "name": "http"}], "selector": {"app": "b"}}}, namespace=ns)
    c = container(envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                  env=[{"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                       {"name": "URL", "value": "http://$(BACKEND_SERVICE_HOST):$(CFG_port)"},
                       {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
    pod = await create_pod(client, ns, {"containers": [c]})
    services = (await client.list("v1", "services", namespace=ns))["items"]
    services += (await client.list("v1", "services", namespace="default"))["items"]
    service_env = service_environment(services, ns, enable_service_links=True)
    lookup = ClientLookup(client)
    env = await make_environment(pod, c, lookup=lookup, service_env=service_env)
    backend_ip = next(s for s in services if s["metadata"]["name"] == "backend")["spec"]["clusterIP"]
    assert env[:4] == ["CFG_MODE=prod", "CFG_port=8080", "PASS=pw", f"URL=http://{backend_ip}:8080"]
    assert f"ME={pod['metadata']['name']}" in env and f"BACKEND_SERVICE_HOST={backend_ip}" in env
    assert "BACKEND_PORT_80_TCP_ADDR=" + backend_ip in env
    missing = container(env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}])
    with pytest.raises(EnvError, match='configmap "gone" not found'):
        await make_environment(pod, missing, lookup=lookup, service_env={})
