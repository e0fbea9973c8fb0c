"""Unit tests of the runtime's pure logic: OCI spec building, users, capabilities, messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.node import cri
from sampan.node.runtime import spec
from sampan.node.runtime.conmon import runc_message


def test_capabilities_default_add_drop():
    caps = spec.capabilities([], [], False)
    assert "CAP_CHOWN" in caps and "CAP_NET_ADMIN" not in caps and len(caps) == 14
    caps = spec.capabilities(["NET_ADMIN"], ["NET_RAW", "CAP_CHOWN"], False)
    assert "CAP_NET_ADMIN" in caps and "CAP_NET_RAW" not in caps and "CAP_CHOWN" not in caps
    assert spec.capabilities(["NET_BIND_SERVICE"], ["ALL"], False) == ["CAP_NET_BIND_SERVICE"]
    everything = spec.capabilities(["ALL"], ["SYS_ADMIN"], False)
    assert "CAP_SYS_ADMIN" not in everything and "CAP_SYS_MODULE" in everything
    assert len(spec.capabilities([], ["ALL"], True)) == len(spec.ALL_CAPABILITIES)


def test_capabilities_limited_by_bounding_set():
    limits = spec.HostLimits(frozenset({"CHOWN", "KILL"}), 1024, 0)
    assert spec.capabilities([], [], True, limits) == ["CAP_CHOWN", "CAP_KILL"]
    assert limits.oom_score_adj(-997) == 0 and limits.oom_score_adj(1000) == 1000


def _rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nwww:x:33:\nextra:x:500:www,bob\n")
    return tmp_path


def test_resolve_user(tmp_path):
    root = _rootfs(tmp_path)
    assert spec.resolve_user("", root) == spec.User(0, 0, [])
    assert spec.resolve_user("www", root) == spec.User(33, 33, [500])
    assert spec.resolve_user("33", root) == spec.User(33, 33, [500])
    assert spec.resolve_user("1234", root) == spec.User(1234, 0, [])
    assert spec.resolve_user("www:root", root) == spec.User(33, 0, [500])
    assert spec.resolve_user("5:7", root) == spec.User(5, 7, [])
    with pytest.raises(ValueError, match="unable to find user nope"):
        spec.resolve_user("nope", root)


def test_merge_env_overrides_and_adds_hostname():
    env = spec.merge_env(["PATH=/bin", "A=1"], ["A=2", "B=3"], "web-0")
    assert env == ["PATH=/bin", "A=2", "HOSTNAME=web-0", "B=3"]
    assert spec.merge_env([], [], "h")[0].startswith("PATH=/usr/local/sbin")


def _image(tmp_path: Path, **config) -> cri.Image:
    return cri.Image(id="sha256:x", repo_tags=(), repo_digests=(), size=0,
                     config={"Cmd": ["sh"], "Env": ["PATH=/bin"], **config}, layers=(tmp_path,))


def test_container_spec(tmp_path):
    files = spec.PodFiles(tmp_path / "resolv.conf", tmp_path / "hostname", tmp_path / "hosts",
                          tmp_path / "shm")
    (tmp_path / "hostname").write_text("pod-a\n")
    config = cri.ContainerConfig(
        name="c", attempt=0, image=_image(tmp_path, WorkingDir="/srv"), image_ref="img",
        command=[], env=["X=1"],
        mounts=[cri.Mount("/data", "/data", readonly=True, propagation="rslave"),
                cri.Mount("/h", "/etc/hosts")],
        resources=cri.Resources(cpu_shares=512, cpu_quota=50_000, memory_limit=1 << 24,
                                pids_limit=100, oom_score_adj=-997),
        security=cri.SecurityConfig(readonly_rootfs=True, supplemental_groups=[44]))
    ns = spec.Namespaces(network="/run/netns/x", ipc="/proc/1/ns/ipc", uts="/proc/1/ns/uts",
                         pid=None)
    user = spec.User(1000, 1000, [7])
    oci = spec.container_spec(config, cri.SandboxConfig(uid="u", name="p", namespace="n"),
                              tmp_path / "rootfs", "/r/pod/c", ns, files, user)
    proc = oci["process"]
    assert proc["args"] == ["sh"] and proc["cwd"] == "/srv"
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [7, 44]}
    assert "HOSTNAME=pod-a" in proc["env"] and "X=1" in proc["env"]
    assert proc["oomScoreAdj"] == -997
    assert oci["root"]["readonly"] is True
    res = oci["linux"]["resources"]
    assert res["cpu"] == {"shares": 512, "quota": 50_000, "period": 100_000}
    assert res["memory"] == {"limit": 1 << 24, "swap": 1 << 24}
    assert res["pids"] == {"limit": 100}
    kinds = {n["type"]: n.get("path") for n in oci["linux"]["namespaces"]}
    assert kinds == {"mount": None, "network": "/run/netns/x", "ipc": "/proc/1/ns/ipc",
                     "uts": "/proc/1/ns/uts", "pid": None}
    by_dest = {m["destination"]: m for m in oci["mounts"]}
    assert by_dest["/data"]["options"] == ["rbind", "rslave", "ro"]
    assert by_dest["/etc/hosts"]["source"] == "/h"          # the pod's mount wins
    assert by_dest["/dev/shm"]["source"] == str(tmp_path / "shm")
    assert by_dest["/sys"]["type"] == "sysfs"
    assert "/proc/kcore" in oci["linux"]["maskedPaths"]
    assert oci["linux"]["rootfsPropagation"] == "rslave"


def test_host_network_binds_sys_and_privileged_unmasks(tmp_path):
    files = spec.PodFiles(tmp_path / "r", tmp_path / "h", tmp_path / "hosts", None)
    config = cri.ContainerConfig(name="c", attempt=0, image=_image(tmp_path), image_ref="i",
                                 command=["x"], env=[],
                                 security=cri.SecurityConfig(privileged=True))
    ns = spec.Namespaces(network=None, ipc=None, uts=None, pid=None, private_pid=False)
    oci = spec.container_spec(config, cri.SandboxConfig(uid="u", name="p", namespace="n"),
                              tmp_path, "/c", ns, files, spec.User(0, 0, []))
    by_dest = {m["destination"]: m for m in oci["mounts"]}
    assert by_dest["/sys"]["type"] == "bind" and "rw" in by_dest["/sys"]["options"]
    assert by_dest["/dev/shm"]["type"] == "tmpfs"
    assert "maskedPaths" not in oci["linux"]
    assert oci["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert [n["type"] for n in oci["linux"]["namespaces"]] == ["mount"]


def test_pause_spec_joins_the_pinned_namespaces(tmp_path):
    config = cri.SandboxConfig(uid="u", name="web", namespace="n", hostname="web-0",
                               share_process_namespace=True,
                               sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})
    ns = spec.Namespaces(network="/run/netns/sb", ipc="/run/sandboxes/sb/ipc",
                         uts="/run/sandboxes/sb/uts", pid=None)
    oci = spec.pause_spec(config, tmp_path, "/pod/sb", ns, ["/pause", "-P"])
    # hostname and sysctls belong to the pinned namespaces, set when they were made
    assert "hostname" not in oci and "sysctl" not in oci["linux"]
    assert oci["root"]["readonly"] is True
    kinds = {n["type"]: n.get("path") for n in oci["linux"]["namespaces"]}
    assert kinds == {"mount": None, "network": "/run/netns/sb", "ipc": "/run/sandboxes/sb/ipc",
                     "uts": "/run/sandboxes/sb/uts", "pid": None}
    own = spec.pause_spec(config, tmp_path, "/p", spec.Namespaces(
        network=None, ipc="", uts="", pid=None), ["/pause"])
    assert own["hostname"] == "web-0"
    assert [n["type"] for n in own["linux"]["namespaces"]] == ["mount", "ipc", "uts", "pid"]


def test_resolv_and_hosts_text():
    assert spec.resolv_conf_text(["10.43.0.10"], ["ns.svc.cluster.local", "cluster.local"],
                                 ["ndots:5"]) == (
        "search ns.svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n")
    assert "10.42.0.5\tweb-0" in spec.hosts_text("web-0", ["10.42.0.5"])


def test_runc_message():
    text = ('time="2024-01-01T00:00:00Z" level=warning msg="ignored"\n'
            'time="2024-01-01T00:00:00Z" level=error msg="runc create failed: unable to start '
            'container process: exec: \\"nope\\": executable file not found in $PATH"\n')
    assert runc_message(text) == ('runc create failed: unable to start container process: '
                                  'exec: "nope": executable file not found in $PATH')
    assert runc_message('{"level":"error","msg":"boom"}') == "boom"
    assert runc_message("plain failure") == "plain failure"
