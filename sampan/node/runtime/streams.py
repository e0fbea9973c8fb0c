"""cri.Stream implementations: ``runc exec`` (pipes or a pty) and conmon's attach socket.

With a tty, ``runc exec -t`` runs on the slave side of a pty we own: runc makes the container's
pty, copies between the two and, on SIGWINCH, copies our window size to the container's. Our
process stays runc's parent, so the exit code is runc's. conmon's attach socket is
SOCK_SEQPACKET: each message from conmon is one byte naming the stream (2 stdout, 3 stderr)
followed by data; what we send is the container's stdin. Resizes of an attached tty go to
conmon's control fifo as ``"1 <height> <width>\\n"``.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import signal
import socket
import struct
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path

from sampan.node.runtime.conmon import Runc

CHUNK = 32 * 1024
STDOUT, STDERR = 2, 3


def kill_pid_file(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def write_ctl(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


class _Fd:
    """Non-blocking reads/writes of one fd (a pty master) on the event loop."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        self.loop = asyncio.get_running_loop()

    async def read(self) -> bytes:
        while self.fd >= 0:
            try:
                return os.read(self.fd, CHUNK)
            except BlockingIOError:
                await self._ready(self.loop.add_reader, self.loop.remove_reader)
            except OSError as e:
                if e.errno == errno.EIO:        # the slave side is closed: end of output
                    return b""
                raise
        return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.fd >= 0:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await self._ready(self.loop.add_writer, self.loop.remove_writer)

    async def _ready(self, add: Callable, remove: Callable) -> None:
        fut = self.loop.create_future()
        add(self.fd, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            remove(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ExecStream:
    """A ``runc exec`` process."""

    def __init__(self, proc: asyncio.subprocess.Process, spec_path: Path, pid_file: Path,
                 pty: _Fd | None):
        self.proc = proc
        self.spec_path = spec_path
        self.pid_file = pid_file
        self.pty = pty

    async def write_stdin(self, data: bytes) -> None:
        if self.pty is not None:
            await self.pty.write(data)
        elif self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.pty is not None:
            await self.pty.write(b"\x04")
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    async def read_stdout(self) -> bytes:
        if self.pty is not None:
            return await self.pty.read()
        return await self.proc.stdout.read(CHUNK) if self.proc.stdout else b""

    async def read_stderr(self) -> bytes:
        if self.pty is not None or self.proc.stderr is None:
            return b""
        return await self.proc.stderr.read(CHUNK)

    async def resize(self, width: int, height: int) -> None:
        if self.pty is None or self.pty.fd < 0:
            return
        _set_winsize(self.pty.fd, width, height)
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGWINCH)

    async def wait(self) -> int:
        code = await self.proc.wait()
        self._cleanup()
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            kill_pid_file(self.pid_file)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.pty is not None:
            self.pty.close()
        self._cleanup()

    def _cleanup(self) -> None:
        for p in (self.spec_path, self.pid_file):
            p.unlink(missing_ok=True)


async def start_exec(runc: Runc, cid: str, spec_path: Path, *, tty: bool,
                     stdin: bool) -> ExecStream:
    pid_file = spec_path.with_suffix(".pid")
    argv = runc.argv("exec", "--process", str(spec_path), "--pid-file", str(pid_file),
                     *(["--tty"] if tty else []), cid)
    if not tty:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return ExecStream(proc, spec_path, pid_file, None)
    master, slave = os.openpty()
    try:
        _set_winsize(master, 80, 24)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return ExecStream(proc, spec_path, pid_file, _Fd(master))


class AttachStream:
    """A client of conmon's attach socket."""

    def __init__(self, sock: socket.socket, ctl: Path, stdin: bool, tty: bool,
                 exit_code: Callable[[], Awaitable[int]]):
        self.sock = sock
        self.ctl = ctl
        self.stdin = stdin
        self.tty = tty
        self._exit_code = exit_code
        self.loop = asyncio.get_running_loop()
        self.stdout: asyncio.Queue[bytes] = asyncio.Queue()
        self.stderr: asyncio.Queue[bytes] = asyncio.Queue()
        self.reader = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                msg = await self.loop.sock_recv(self.sock, CHUNK + 1)
                if not msg:
                    break
                if msg[0] == STDERR:
                    self.stderr.put_nowait(msg[1:])
                elif msg[0] == STDOUT:
                    self.stdout.put_nowait(msg[1:])
        except OSError:
            pass
        finally:
            self.stdout.put_nowait(b"")
            self.stderr.put_nowait(b"")

    async def write_stdin(self, data: bytes) -> None:
        if self.stdin and self.sock.fileno() >= 0:
            await self.loop.sock_sendall(self.sock, data)

    async def close_stdin(self) -> None:
        if self.sock.fileno() >= 0:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    async def read_stdout(self) -> bytes:
        return await self._next(self.stdout)

    async def read_stderr(self) -> bytes:
        return await self._next(self.stderr)

    @staticmethod
    async def _next(q: asyncio.Queue[bytes]) -> bytes:
        chunk = await q.get()
        if not chunk:
            q.put_nowait(b"")     # keep reporting the end
        return chunk

    async def resize(self, width: int, height: int) -> None:
        if self.tty:
            await asyncio.to_thread(write_ctl, self.ctl, f"1 {height} {width}\n")

    async def wait(self) -> int:
        await asyncio.shield(self.reader)
        return await self._exit_code()

    async def close(self) -> None:
        self.reader.cancel()
        self.sock.close()


async def attach(bundle: Path, *, stdin: bool, tty: bool,
                 exit_code: Callable[[], Awaitable[int]]) -> AttachStream:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    dir_fd = os.open(bundle, os.O_PATH | os.O_CLOEXEC)
    try:
        sock.setblocking(False)
        # the bundle path may exceed sun_path's 108 bytes: go through our fd of the directory
        await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dir_fd}/attach")
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
    return AttachStream(sock, bundle / "ctl", stdin, tty, exit_code)
