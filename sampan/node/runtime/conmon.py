"""Launching conmon the way CRI-O does, and talking to runc.

conmon double-forks (so containers outlive the agent), runs ``runc create`` with the
container's stdio wired to itself, writes the CRI log, and reports over the sync pipe
(``_OCI_SYNCPIPE``): ``{"pid": N}`` once the container is created, or ``{"pid": -1,
"message": "<runc's stderr>"}`` when it is not. When the container exits it writes the exit
status to ``--exit-dir/<id>`` and ``--persist-dir/exit`` (and ``oom`` there after an OOM kill).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import orjson

CREATE_TIMEOUT = 120.0
_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


class RuncError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def runc_message(stderr: str) -> str:
    """The error runc logged (``time=... level=error msg="..."`` or JSON), unescaped."""
    text = stderr.strip()
    messages: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if entry.get("level") in ("error", "fatal"):
                messages.append(str(entry.get("msg", "")))
            continue
        m = _MSG.search(line)
        if m and ("level=error" in line or "level=fatal" in line):
            messages.append(re.sub(r"\\(.)", r"\1", m.group(1)))
    return messages[-1] if messages else text


class Runc:
    """``runc --root ROOT ...`` as asyncio subprocesses."""

    def __init__(self, binary: str, root: Path):
        self.binary = binary
        self.root = root

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    async def run(self, *args: str, timeout: float = 60.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuncError(f"runc {args[0]} timed out after {timeout:g}s") from None
        if proc.returncode != 0:
            raise RuncError(runc_message(err.decode(errors="replace"))
                            or f"runc {args[0]} exited with {proc.returncode}")
        return out.decode(errors="replace")

    async def run_detached(self, cid: str, bundle: Path, *, timeout: float = 60.0) -> int:
        """``runc run --detach``: create and start in one runc process, with no monitor (the
        pod's pause container, whose only job is to hold namespaces). The container inherits
        /dev/null as stdio and its own session, so it outlives the agent; runc's errors go to
        a JSON log in the bundle. Returns the container's pid."""
        pid_file, log_file = bundle / "pidfile", bundle / "runc.log"
        proc = await asyncio.create_subprocess_exec(
            self.binary, "--root", str(self.root), "--log", str(log_file), "--log-format",
            "json", "run", "--detach", "--bundle", str(bundle), "--pid-file", str(pid_file),
            cid, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuncError(f"runc run timed out after {timeout:g}s") from None
        if code != 0:
            try:
                text = log_file.read_text(errors="replace")
            except OSError:
                text = ""
            raise RuncError(runc_message(text) or f"runc run exited with {code}")
        try:
            return int(pid_file.read_text())
        except (OSError, ValueError) as e:
            raise RuncError(f"runc run left no pid file: {e}") from e

    async def start(self, cid: str, pid: int | None, *, timeout: float = 60.0) -> None:
        """What ``runc start`` does, without a runc process: a created container's init waits
        in ``open(exec.fifo, O_WRONLY)``; opening the fifo for reading lets it write one byte
        and exec the entrypoint, and removing the fifo marks the container running (runc
        derives "created" from the fifo's existence). Falls back to ``runc start`` (and its
        error messages) when there is no fifo or the init died before it was opened."""
        fifo = self.root / cid / "exec.fifo"
        try:
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            await self.run("start", cid, timeout=timeout)
            return
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            deadline = loop.time() + timeout
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(readable), 0.1)
                    break
                except TimeoutError:
                    if loop.time() > deadline:
                        raise RuncError(f"runc start timed out after {timeout:g}s") from None
                    if pid is not None and not _process_exists(pid):
                        break
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                data = b""
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        if not data:       # the init never wrote: let runc tell what is wrong
            await self.run("start", cid, timeout=timeout)
            return
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass

    def state_exists(self, cid: str) -> bool:
        return (self.root / cid / "state.json").exists()


async def launch(conmon: str, runc: Runc, *, cid: str, name: str, bundle: Path,
                 exit_dir: Path, socket_dir: Path, log_path: Path | None,
                 stdin: bool = False, stdin_once: bool = False, tty: bool = False,
                 cgroup_procs: list[Path] = (), ready: asyncio.Future | None = None) -> int:
    """Start conmon for a ``runc create`` of ``bundle``; returns the container's pid.
    conmon waits on its start pipe until we moved it into ``cgroup_procs`` (out of the
    agent's cgroup, so that stopping the agent's service does not kill the monitors).
    Raises RuncError with runc's message when the container could not be created.
    ``ready`` (the bundle being written) is awaited after conmon started and before it is let
    go: conmon's start-up overlaps with the bundle's; if it fails, conmon is killed."""
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    start_r, start_w = os.pipe2(os.O_CLOEXEC)
    argv = [
        conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", name,
        "-r", runc.binary, "-b", str(bundle), "-p", str(bundle / "pidfile"),
        "-P", str(bundle / "conmon.pid"), "--persist-dir", str(bundle),
        "--exit-dir", str(exit_dir), "--socket-dir-path", str(socket_dir),
        "-l", f"k8s-file:{log_path}" if log_path else "none",
        "--runtime-arg", "--root", "--runtime-arg", str(runc.root),
        "--log-level", "error",
    ]
    if tty:
        argv.append("-t")
    if stdin:
        argv.append("-i")
        if not stdin_once:
            argv.append("--leave-stdin-open")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "_OCI_SYNCPIPE": str(sync_w), "_OCI_STARTPIPE": str(start_r)}
    errlog = bundle / "conmon.err"
    try:
        with open(errlog, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err,
                pass_fds=(sync_w, start_r), env=env, cwd=bundle)
        os.close(sync_w)
        sync_w = -1
        _join_cgroup(proc.pid, cgroup_procs)
        if ready is not None:
            try:
                await asyncio.shield(ready)   # the caller waits for it on cancellation
            except BaseException:
                proc.kill()          # still waiting on the start pipe: nothing ran yet
                await proc.wait()
                raise
        os.write(start_w, b"0")
        await proc.wait()
        line = await _read_line(sync_r, CREATE_TIMEOUT)
    finally:
        for fd in (sync_w, sync_r, start_r, start_w):
            if fd >= 0:
                os.close(fd)
    if not line:
        detail = errlog.read_text(errors="replace").strip() if errlog.exists() else ""
        raise RuncError(f"conmon failed: {detail or 'no status reported'}")
    report = orjson.loads(line)
    pid = int(report.get("data", report.get("pid", -1)))
    if pid <= 0:
        raise RuncError(runc_message(str(report.get("message", ""))) or "runc create failed")
    return pid


def _process_exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def _join_cgroup(pid: int, procs_files: list[Path]) -> None:
    for procs in procs_files:
        try:
            procs.write_text(str(pid))
        except OSError:
            pass      # best effort: the monitor still works from the agent's cgroup


async def _read_line(fd: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", 0))
    try:
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        transport.close()
