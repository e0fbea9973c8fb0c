"""RuncRuntime against the real runc, conmon, overlayfs, cgroups and network namespaces.

Every test run uses its own data dir, run dir and cgroup root; the module fixture checks at the
end that nothing is left behind (mounts, processes, cgroups, netns pins).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sampan.node import cri
from sampan.node.runtime import RuncRuntime, cgroups

REPO = Path(__file__).resolve().parents[2]


class NetnsOnly:
    """A PodNetwork with just a loopback: a pinned namespace per sandbox."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "netns"

    async def create_netns(self, sandbox_id: str) -> Path:
        path = self.dir / sandbox_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        for argv in (["unshare", f"--net={path}", "true"],
                     ["nsenter", f"--net={path}", "ip", "link", "set", "lo", "up"]):
            proc = await asyncio.create_subprocess_exec(*argv)
            assert await proc.wait() == 0
        return path

    async def setup_pod(self, sandbox_id, netns, namespace, name, port_mappings):
        return cri.PodNetworkStatus(ips=["10.99.77.2"])

    async def teardown_pod(self, sandbox_id, netns):
        path = self.dir / sandbox_id
        if path.exists():
            subprocess.run(["umount", str(path)], capture_output=True)
            path.unlink()


def make_image(root: Path) -> cri.Image:
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    shutil.copy("/bin/busybox", bindir / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", bindir / applet)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "tmp").mkdir(mode=0o1777)
    return cri.Image(id="sha256:" + "ab" * 32, repo_tags=("test/busybox:1",), repo_digests=(),
                     size=0, config={"Cmd": ["sh"], "Env": ["PATH=/bin"]}, layers=(root,))


class Env:
    def __init__(self, base: Path, run: Path, cgroup_root: str, image: cri.Image):
        self.base, self.run, self.cgroup_root, self.image = base, run, cgroup_root, image

    def runtime(self) -> RuncRuntime:
        return RuncRuntime(self.base, self.run, self.cgroup_root, NetnsOnly(self.run))

    def container(self, name: str, command: list[str], **kw) -> cri.ContainerConfig:
        kw.setdefault("log_path", self.base / "logs" / name / "0.log")
        return cri.ContainerConfig(name=name, attempt=0, image=self.image,
                                   image_ref="test/busybox:1", command=command, env=["A=b"],
                                   **kw)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def _processes_mentioning(token: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    token = "sampan-rt-" + secrets.token_hex(4)
    base = tmp_path_factory.mktemp(token)
    run = Path("/run") / token
    image = make_image(base / "image")
    yield Env(base / "data", run, f"/{token}", image)
    # nothing may leak: every test removes what it made
    assert _mounts_under(base) == []
    assert _processes_mentioning(token) == []
    leftover = [str(p) for root in cgroups.hierarchies() for p in (root / token).rglob("pod*")]
    assert leftover == []
    assert list((run / "netns").glob("*")) == [] if (run / "netns").exists() else True
    cgroups.remove(f"/{token}")
    assert not cgroups.exists(f"/{token}")
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
async def rt(env):
    runtime = env.runtime()
    await runtime.start()
    yield runtime
    for sb in await runtime.list_sandboxes():
        await runtime.remove_sandbox(sb.id)
    await runtime.close()


async def _pod(rt: RuncRuntime, name: str = "pod", **kw) -> cri.Sandbox:
    config = cri.SandboxConfig(uid=secrets.token_hex(8), name=name, namespace="default",
                               hostname=name, **kw)
    return await rt.run_sandbox(config)


async def _run(rt, sb, config) -> str:
    cid = await rt.create_container(sb, config)
    assert (await rt.container_status(cid)).state is cri.State.CREATED
    await rt.start_container(cid)
    return cid


async def _wait_exited(rt, cid, timeout=20.0) -> cri.ContainerStatus:
    for _ in range(int(timeout / 0.05)):
        status = await rt.container_status(cid)
        if status.state is cri.State.EXITED:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{cid} did not exit")


async def test_pod_containers_share_network_and_log(rt, env):
    sb = await _pod(rt, "web", dns=cri.DNSConfig(servers=["10.43.0.10"],
                                                  searches=["default.svc.cluster.local"],
                                                  options=["ndots:5"]))
    # no pause process: the containers join the pod's pinned IPC and UTS namespaces
    assert sb.state is cri.State.RUNNING and sb.ips == ["10.99.77.2"] and sb.pid is None
    server = await _run(rt, sb, env.container(
        "server", ["sh", "-c", "echo started; echo oops >&2; httpd -f -p 8080 -h /etc"]))
    client = await _run(rt, sb, env.container("client", ["sleep", "1000"]))
    code = out = None
    for _ in range(100):
        code, out = await rt.exec_sync(client, ["wget", "-q", "-O-",
                                                "http://127.0.0.1:8080/hostname"], 10)
        if code == 0:
            break
        await asyncio.sleep(0.05)
    assert (code, out) == (0, b"web\n")
    code, out = await rt.exec_sync(client, ["sh", "-c", "cat /etc/resolv.conf; hostname; "
                                            "echo $HOSTNAME $A; df /dev/shm | tail -1"], 10)
    text = out.decode()
    assert "nameserver 10.43.0.10" in text and "search default.svc.cluster.local" in text
    assert "\nweb\nweb b\n" in text and "shm" in text
    ipc = [(await rt.exec_sync(c, ["readlink", "/proc/self/ns/ipc"], 10))[1]
           for c in (server, client)]
    assert ipc[0] == ipc[1] and ipc[0] != os.readlink("/proc/self/ns/ipc").encode() + b"\n"
    # both containers see each other's POSIX shared memory (the pod's /dev/shm)
    await rt.exec_sync(server, ["sh", "-c", "echo x > /dev/shm/mark"], 10)
    assert (await rt.exec_sync(client, ["cat", "/dev/shm/mark"], 10)) == (0, b"x\n")
    status = await rt.container_status(server)
    assert status.state is cri.State.RUNNING and status.pid and status.started_at
    assert rt.cgroup_path(server).endswith(f"/pod{sb.config.uid}/{server}")
    log = (env.base / "logs/server/0.log").read_text().splitlines()
    assert any(line.endswith(" stdout F started") for line in log)
    assert any(line.endswith(" stderr F oops") for line in log)
    await rt.stop_sandbox(sb.id)
    assert (await rt.container_status(server)).state is cri.State.EXITED
    assert [s.state for s in await rt.list_sandboxes()] == [cri.State.EXITED]
    assert _mounts_under(env.run / "sandboxes") == []
    await rt.stop_sandbox(sb.id)          # idempotent
    await rt.remove_sandbox(sb.id)
    assert await rt.list_containers() == [] and await rt.list_sandboxes() == []


async def test_exit_codes_and_missing_executable(rt, env):
    sb = await _pod(rt)
    ok = await _run(rt, sb, env.container("ok", ["true"]))
    bad = await _run(rt, sb, env.container("bad", ["sh", "-c", "exit 3"]))
    s_ok, s_bad = await _wait_exited(rt, ok), await _wait_exited(rt, bad)
    assert (s_ok.exit_code, s_ok.reason) == (0, "Completed")
    assert (s_bad.exit_code, s_bad.reason) == (3, "Error")
    assert s_bad.finished_at >= s_bad.started_at > 0
    missing = await rt.create_container(sb, env.container("missing", ["nope"]))
    with pytest.raises(cri.CRIError) as err:
        await rt.start_container(missing)
    assert err.value.reason == "RunContainerError"
    assert 'exec: "nope": executable file not found in $PATH' in err.value.message
    status = await rt.container_status(missing)
    assert status.state is cri.State.EXITED and status.reason == "ContainerCannotRun"
    await rt.remove_container(ok)
    assert ok not in {c.id for c in await rt.list_containers()}
    assert (env.base / "logs/ok/0.log").exists()          # logs stay


async def test_oom_killed(rt, env):
    sb = await _pod(rt)
    cid = await _run(rt, sb, env.container(
        "hog", ["sh", "-c", 'x=$(head -c 256m /dev/zero | tr "\\0" a); echo survived'],
        resources=cri.Resources(memory_limit=16 * 1024 * 1024)))
    status = await _wait_exited(rt, cid, 60)
    assert (status.reason, status.exit_code) == ("OOMKilled", 137)


async def test_stop_kills_after_timeout(rt, env):
    sb = await _pod(rt)
    cid = await _run(rt, sb, env.container(
        "stubborn", ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"]))
    polite = await _run(rt, sb, env.container("polite", ["sh", "-c",
                                                         "trap 'exit 0' TERM; sleep 1000 & wait"]))
    await asyncio.sleep(0.3)
    await rt.stop_container(polite, 10)
    assert (await rt.container_status(polite)).exit_code == 0
    await rt.stop_container(cid, 0.5)
    status = await rt.container_status(cid)
    assert (status.state, status.exit_code) == (cri.State.EXITED, 137)


async def test_security_settings(rt, env):
    sb = await _pod(rt)
    ro = await _run(rt, sb, env.container(
        "ro", ["sleep", "1000"], security=cri.SecurityConfig(
            readonly_rootfs=True, run_as_user=65534, supplemental_groups=[1234],
            capabilities_drop=["ALL"], capabilities_add=["NET_BIND_SERVICE"])))
    code, out = await rt.exec_sync(ro, ["touch", "/x"], 10)
    assert code != 0 and b"Read-only file system" in out
    assert (await rt.exec_sync(ro, ["touch", "/dev/shm/y"], 10))[0] == 0
    code, out = await rt.exec_sync(ro, ["id"], 10)
    assert b"uid=65534(nobody) gid=65534(nogroup)" in out and b"1234" in out
    code, out = await rt.exec_sync(ro, ["grep", "CapBnd", "/proc/self/status"], 10)
    assert out.split()[1] == f"{1 << 10:016x}".encode()        # only CAP_NET_BIND_SERVICE
    image_user = cri.Image(**{**env.image.__dict__,
                              "config": {**env.image.config, "User": "nobody"}})
    cfg = env.container("imguser", ["sleep", "1000"])
    cfg.image = image_user
    cid = await _run(rt, sb, cfg)
    assert (await rt.exec_sync(cid, ["id", "-u"], 10)) == (0, b"65534\n")
    with pytest.raises(TimeoutError):
        await rt.exec_sync(cid, ["sleep", "30"], 0.3)
    code, out = await rt.exec_sync(cid, ["nope"], 10)
    assert code == 127 and b'exec: "nope": executable file not found in $PATH' in out


async def _read_until(read, needle: bytes, timeout=10.0) -> bytes:
    buf = b""

    async def loop():
        nonlocal buf
        while needle not in buf:
            chunk = await read()
            if not chunk:
                break
            buf += chunk
    await asyncio.wait_for(loop(), timeout)
    return buf


async def test_exec_streams_and_attach(rt, env):
    sb = await _pod(rt)
    cid = await _run(rt, sb, env.container("cat", ["cat"], stdin=True, stdin_once=True))
    shell = await _run(rt, sb, env.container("sh", ["sleep", "1000"]))

    tty = await rt.exec(shell, ["sh"], tty=True, stdin=True)
    await tty.resize(100, 40)
    await tty.write_stdin(b"stty size; exit 3\n")
    assert b"40 100" in await _read_until(tty.read_stdout, b"40 100")
    assert await asyncio.wait_for(tty.wait(), 10) == 3
    await tty.close()

    plain = await rt.exec(shell, ["sh", "-c", "cat; echo err >&2; exit 5"], tty=False,
                          stdin=True)
    await plain.write_stdin(b"piped\n")
    await plain.close_stdin()
    assert await _read_until(plain.read_stdout, b"piped\n") == b"piped\n"
    assert await _read_until(plain.read_stderr, b"err\n") == b"err\n"
    assert await asyncio.wait_for(plain.wait(), 10) == 5
    await plain.close()

    att = await rt.attach(cid, stdin=True, tty=False)
    await att.write_stdin(b"hello attach\n")
    assert b"hello attach" in await _read_until(att.read_stdout, b"hello attach")
    await att.close_stdin()
    assert await asyncio.wait_for(att.wait(), 10) == 0
    await att.close()
    log = (env.base / "logs/cat/0.log").read_text()
    assert "stdout F hello attach" in log
    await rt.reopen_log(shell)


async def test_tty_container_attach_resize(rt, env):
    sb = await _pod(rt)
    cid = await _run(rt, sb, env.container("term", ["sh"], tty=True, stdin=True))
    att = await rt.attach(cid, stdin=True, tty=True)
    await att.resize(120, 50)
    await asyncio.sleep(0.2)
    await att.write_stdin(b"stty size\n")
    assert b"50 120" in await _read_until(att.read_stdout, b"50 120")
    await att.write_stdin(b"exit 7\n")
    assert await asyncio.wait_for(att.wait(), 10) == 7
    await att.close()


FIRST_HALF = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from sampan.node import cri
    from tests.integration.test_node_runtime import Env, make_image  # noqa
    from tests.integration.test_node_runtime import NetnsOnly
    from sampan.node.runtime import RuncRuntime

    async def main():
        image = cri.Image(id="sha256:x", repo_tags=(), repo_digests=(), size=0,
                          config={{"Env": ["PATH=/bin"]}}, layers=(Path({layer!r}),))
        rt = RuncRuntime(Path({base!r}), Path({run!r}), {cg!r}, NetnsOnly(Path({run!r})))
        await rt.start()
        sb = await rt.run_sandbox(cri.SandboxConfig(uid="survivor", name="survivor",
                                                    namespace="default"))
        cid = await rt.create_container(sb, cri.ContainerConfig(
            name="c", attempt=0, image=image, image_ref="x", command=["sleep", "1000"],
            env=[]))
        await rt.start_container(cid)
        done = await rt.create_container(sb, cri.ContainerConfig(
            name="d", attempt=0, image=image, image_ref="x", command=["sh", "-c", "exit 4"],
            env=[]))
        await rt.start_container(done)
        print(sb.id, cid, done)

    asyncio.run(main())
""")


async def test_state_survives_the_agent(env):
    script = FIRST_HALF.format(repo=str(REPO), layer=str(env.image.layers[0]),
                               base=str(env.base), run=str(env.run), cg=env.cgroup_root)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=REPO,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    sid, cid, done = out.decode().split()
    rt = env.runtime()
    await rt.start()
    try:
        sandboxes = {s.id: s for s in await rt.list_sandboxes()}
        assert sandboxes[sid].state is cri.State.RUNNING
        assert (await rt.container_status(cid)).state is cri.State.RUNNING
        assert (await rt.exec_sync(cid, ["echo", "hi"], 10)) == (0, b"hi\n")
        status = await _wait_exited(rt, done)
        assert (status.exit_code, status.reason) == (4, "Error")
    finally:
        await rt.remove_sandbox(sid)


async def test_start_discards_half_made_state(env):
    rt = env.runtime()
    await rt.start()
    half = env.base / "containers" / ("f" * 64)
    (half / "rootfs").mkdir(parents=True)
    (half / "meta.json").write_text('{"complete": false}')
    half_sb = env.base / "sandboxes" / ("e" * 64)
    half_sb.mkdir()
    again = env.runtime()
    await again.start()
    assert not half.exists() and not half_sb.exists()
    assert await again.list_containers() == []


async def test_reboot_reports_exited_and_cleans_up(env, tmp_path):
    """After a reboot RUN is empty, processes and mounts (the namespace pins) are gone."""
    rt = env.runtime()
    await rt.start()
    sb = await _pod(rt, "rebooted")
    cid = await _run(rt, sb, env.container("c", ["sleep", "1000"]))
    # simulate the reboot: kill everything, unmount, empty RUN's runc state
    status = await rt.container_status(cid)
    subprocess.run([rt.runc.binary, "--root", str(rt.runc.root), "kill", cid, "KILL"])
    await _wait_exited(rt, cid)
    subprocess.run([rt.runc.binary, "--root", str(rt.runc.root), "delete", "-f", cid])
    pins = env.run / "sandboxes" / sb.id
    for pin in pins.iterdir():
        subprocess.run(["umount", str(pin)], check=True)
    shutil.rmtree(pins)
    assert status.pid
    after = env.runtime()
    await after.start()
    status = await after.container_status(cid)
    assert status.state is cri.State.EXITED
    assert [s.state for s in await after.list_sandboxes() if s.id == sb.id] == [cri.State.EXITED]
    await after.remove_sandbox(sb.id)
    assert cid not in {c.id for c in await after.list_containers()}


async def test_host_network_and_shared_pid_namespace(rt, env):
    host = await _pod(rt, "hostnet", host_network=True)
    assert host.netns is None and host.state is cri.State.RUNNING
    cid = await _run(rt, host, env.container("h", ["sleep", "1000"]))
    code, out = await rt.exec_sync(cid, ["hostname"], 10)
    assert (code, out.decode().strip()) == (0, os.uname().nodename)
    shared = await _pod(rt, "shared", share_process_namespace=True)
    a = await _run(rt, shared, env.container("a", ["sleep", "1000"]))
    b = await _run(rt, shared, env.container("b", ["sleep", "1001"]))
    code, out = await rt.exec_sync(b, ["ps", "-o", "args"], 10)
    assert b"/pause -P" in out and b"sleep 1000" in out and b"sleep 1001" in out
    assert [s.pid for s in await rt.list_sandboxes() if s.id == shared.id][0]
    assert (await rt.exec_sync(b, ["hostname"], 10)) == (0, b"shared\n")
    await rt.stop_container(a, 5)
    assert (await rt.container_status(a)).exit_code == 143
    # conmon runs in the runtime's own cgroup, not in the caller's
    conmon_pid = int((env.base / "containers" / b / "conmon.pid").read_text())
    assert f"{env.cgroup_root}/conmon" in Path(f"/proc/{conmon_pid}/cgroup").read_text()


async def test_pod_sysctls_apply_to_its_namespaces(rt, env):
    host = [Path(p).read_text() for p in ("/proc/sys/kernel/shm_rmid_forced",
                                          "/proc/sys/net/ipv4/ip_unprivileged_port_start")]
    sb = await _pod(rt, "tuned", sysctls={"net.ipv4.ip_unprivileged_port_start": "80",
                                          "kernel.shm_rmid_forced": "1"})
    cid = await _run(rt, sb, env.container("c", ["sleep", "1000"]))
    code, out = await rt.exec_sync(cid, ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start",
                                         "/proc/sys/kernel/shm_rmid_forced"], 10)
    assert (code, out) == (0, b"80\n1\n")
    # the host's own values are untouched
    assert [Path(p).read_text() for p in ("/proc/sys/kernel/shm_rmid_forced",
                                          "/proc/sys/net/ipv4/ip_unprivileged_port_start")] == host
    await rt.remove_sandbox(sb.id)
    for bad in ({"net.ipv4.ip_unprivileged_port_start": "80"}, {"vm.swappiness": "1"}):
        with pytest.raises(cri.CRIError) as err:
            await _pod(rt, "hostnet", host_network=True, sysctls=bad)
        assert err.value.reason == "CreatePodSandboxError"
    assert host[1] == Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()
    assert await rt.list_sandboxes() == []


async def test_reopen_log_after_rotation(rt, env):
    sb = await _pod(rt)
    cid = await _run(rt, sb, env.container(
        "ticker", ["sh", "-c", "while true; do echo tick; sleep 0.05; done"]))
    log = env.base / "logs/ticker/0.log"
    await _eventually(lambda: log.exists() and "tick" in log.read_text())
    os.rename(log, log.with_suffix(".log.1"))
    await rt.reopen_log(cid)
    await _eventually(lambda: log.exists() and "stdout F tick" in log.read_text())


async def _eventually(check, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


def test_overlay_with_more_layers_than_fit_in_a_page(tmp_path):
    from sampan.node.runtime import overlay

    layers = []
    for i in range(120):
        layer = tmp_path / f"layer-{i:03d}-{'x' * 40}"
        layer.mkdir()
        (layer / f"f{i}").write_text(str(i))
        (layer / "top").write_text(str(i))
        layers.append(layer)
    upper, work, target = tmp_path / "upper", tmp_path / "work", tmp_path / "rootfs"
    for d in (upper, work, target):
        d.mkdir()
    overlay.mount_overlay(layers, upper, work, target)
    try:
        assert (target / "f0").read_text() == "0" and (target / "top").read_text() == "119"
        (target / "new").write_text("w")
        assert (upper / "new").exists()
    finally:
        assert overlay.umount(target)
    assert not overlay.is_mountpoint(target)
