"""Container logs in the CRI format: reading them like the kubelet serves ``/containerLogs``
and rotating them like its container log manager.

A CRI log line is ``<RFC3339Nano timestamp> <stdout|stderr> <tags> <content>\\n``; tag ``P``
marks a partial line (the content continues in the next entry), ``F`` a full one. The current
file is ``<attempt>.log``; rotation renames it to ``<attempt>.log.<YYYYmmdd-HHMMSS>``
(older ones gzipped to ``….gz``) and asks the runtime to reopen the original path.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

STDOUT, STDERR = b"stdout", b"stderr"
ROTATED_TIME_FORMAT = "%Y%m%d-%H%M%S"
COMPRESSED_SUFFIX = ".gz"
TMP_SUFFIX = ".tmp"
CHUNK = 64 * 1024


class LogLineError(ValueError):
    pass


# -- format ------------------------------------------------------------------------------------
def parse_timestamp(raw: bytes) -> int:
    """RFC 3339 with up to nanoseconds (``Z`` or ``±hh:mm``) → nanoseconds since the epoch."""
    text = raw.decode("ascii")
    if len(text) < 20 or text[10] not in "Tt":
        raise LogLineError(f"invalid timestamp {text!r}")
    date, rest = text[:19], text[19:]
    nanos = 0
    if rest.startswith("."):
        end = 1
        while end < len(rest) and rest[end].isdigit():
            end += 1
        digits = rest[1:end]
        if not digits or len(digits) > 9:
            raise LogLineError(f"invalid timestamp {text!r}")
        nanos = int(digits.ljust(9, "0"))
        rest = rest[end:]
    if rest in ("Z", "z"):
        offset = 0
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
    else:
        raise LogLineError(f"invalid timestamp {text!r}")
    try:
        seconds = _epoch_seconds(date)
    except ValueError as e:
        raise LogLineError(f"invalid timestamp {text!r}") from e
    return (seconds - offset) * 1_000_000_000 + nanos


_EPOCH_CACHE: dict[str, int] = {}


def _epoch_seconds(date: str) -> int:
    """Seconds of a ``YYYY-MM-DDTHH:MM:SS`` UTC time; one cache entry per minute seen."""
    minute = date[:16]
    base = _EPOCH_CACHE.get(minute)
    if base is None:
        moment = datetime.datetime.strptime(minute, "%Y-%m-%dT%H:%M").replace(tzinfo=datetime.timezone.utc)
        base = int(moment.timestamp())
        if len(_EPOCH_CACHE) > 1024:
            _EPOCH_CACHE.clear()
        _EPOCH_CACHE[minute] = base
    second = int(date[17:19])
    if date[16] != ":" or not 0 <= second <= 60:
        raise ValueError(date)
    return base + second


def format_timestamp(nanos: int) -> bytes:
    """Nanoseconds → Go's ``time.RFC3339Nano`` in UTC (trailing zeros of the fraction trimmed)."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        return f"{head}.{fraction:09d}".rstrip("0").encode() + b"Z"
    return head.encode() + b"Z"


def now_timestamp() -> bytes:
    return format_timestamp(time.time_ns())


def encode_line(stream: bytes, content: bytes, *, partial: bool = False, nanos: int | None = None) -> bytes:
    """One CRI log entry (what conmon writes); ``content`` without its newline."""
    ts = format_timestamp(time.time_ns() if nanos is None else nanos)
    return b"%s %s %s %s\n" % (ts, stream, b"P" if partial else b"F", content)


@dataclass(slots=True)
class LogEntry:
    timestamp: bytes      # as written in the file
    stream: bytes         # stdout | stderr
    partial: bool
    content: bytes        # without the newline

    @property
    def nanos(self) -> int:
        return parse_timestamp(self.timestamp)


def parse_line(line: bytes) -> LogEntry:
    """One CRI log line (with or without its trailing newline)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    first = line.find(b" ")
    second = line.find(b" ", first + 1) if first > 0 else -1
    if second < 0:
        raise LogLineError(f"invalid CRI log line {line[:80]!r}")
    stream = line[first + 1:second]
    if stream not in (STDOUT, STDERR):
        raise LogLineError(f"unexpected stream type {stream!r}")
    third = line.find(b" ", second + 1)
    if third < 0:  # "<ts> stdout F" with empty content and no separator
        tags, content = line[second + 1:], b""
    else:
        tags, content = line[second + 1:third], line[third + 1:]
    partial = b"P" in tags.split(b":")
    return LogEntry(line[:first], stream, partial, content)


# -- options -----------------------------------------------------------------------------------
@dataclass
class LogOptions:
    """What ``/containerLogs`` accepts (``previous`` picks the file and is the caller's)."""

    follow: bool = False
    since_nanos: int | None = None        # from sinceSeconds or sinceTime
    tail_lines: int | None = None         # None: all; 0: none
    timestamps: bool = False
    limit_bytes: int | None = None
    stream: str = "All"                   # All | Stdout | Stderr

    @classmethod
    def from_query(cls, query, now_ns: int | None = None) -> "LogOptions":
        """Parse kubelet query parameters; raises ValueError with a message for bad values."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        opts = cls(follow=parse_bool(query.get("follow")), timestamps=parse_bool(query.get("timestamps")))
        since_seconds, since_time = query.get("sinceSeconds"), query.get("sinceTime")
        if since_seconds and since_time:
            raise ValueError("at most one of `sinceTime` or `sinceSeconds` may be specified")
        if since_seconds:
            seconds = _int(since_seconds, "sinceSeconds")
            if seconds < 1:
                raise ValueError("sinceSeconds: Invalid value: must be greater than 0")
            opts.since_nanos = now_ns - seconds * 1_000_000_000
        elif since_time:
            try:
                opts.since_nanos = parse_timestamp(since_time.encode())
            except (LogLineError, UnicodeEncodeError) as e:
                raise ValueError(f"sinceTime: Invalid value: {since_time!r}") from e
        if query.get("tailLines") not in (None, ""):
            opts.tail_lines = _int(query["tailLines"], "tailLines")
            if opts.tail_lines < 0:
                raise ValueError("tailLines: Invalid value: must be greater than or equal to 0")
        if query.get("limitBytes") not in (None, ""):
            opts.limit_bytes = _int(query["limitBytes"], "limitBytes")
            if opts.limit_bytes < 1:
                raise ValueError("limitBytes: Invalid value: must be greater than 0")
        stream = query.get("stream") or "All"
        if stream not in ("All", "Stdout", "Stderr"):
            raise ValueError(f'stream: Unsupported value: "{stream}"')
        opts.stream = stream
        return opts


def parse_bool(value: str | None) -> bool:
    """Go's strconv.ParseBool, with absent meaning false."""
    if value is None or value == "":
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f"invalid boolean value {value!r}")


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: Invalid value: {value!r}: must be an integer") from None


# -- files -------------------------------------------------------------------------------------
def log_files(path: Path) -> list[Path]:
    """The rotated files of ``path`` (oldest first) followed by ``path`` itself if present."""
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    prefix = path.name + "."
    rotated = sorted(n for n in names if n.startswith(prefix) and not n.endswith(TMP_SUFFIX))
    files = [path.parent / n for n in rotated]
    if path.name in names:
        files.append(path)
    return files


def _read_whole(path: Path) -> bytes:
    if path.name.endswith(COMPRESSED_SUFFIX):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _tail_offset(f: BinaryIO, size: int, lines: int) -> tuple[int, int]:
    """(offset where the last ``lines`` lines of an open file start, lines found), reading
    backwards in blocks. A final line without a newline counts as a line."""
    if lines <= 0 or size == 0:
        return size, 0
    found = 0
    f.seek(size - 1)
    # The file's final newline ends the last line; it does not start another.
    skip_last = f.read(1) == b"\n"
    end = size - 1 if skip_last else size
    pos = end
    while pos > 0:
        start = max(0, pos - CHUNK)
        f.seek(start)
        block = f.read(pos - start)
        idx = len(block)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            found += 1
            if found == lines:
                return start + idx + 1, found
        pos = start
    return 0, found + 1 if end > 0 else found


def _tail_start(files: list[Path], lines: int) -> tuple[int, int]:
    """(index of the first file to read, offset in it) for the last ``lines`` lines."""
    needed = lines
    for i in range(len(files) - 1, -1, -1):
        path = files[i]
        try:
            if path.name.endswith(COMPRESSED_SUFFIX):
                data = _read_whole(path)
                count = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
                if count >= needed:
                    return i, _nth_line_from_end(data, needed)
                needed -= count
                continue
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                offset, found = _tail_offset(f, size, needed)
        except FileNotFoundError:
            continue
        if found >= needed:
            return i, offset
        needed -= found
    return 0, 0


def _nth_line_from_end(data: bytes, lines: int) -> int:
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


# -- reading -----------------------------------------------------------------------------------
class _Writer:
    """Turns entries into output the way the kubelet's log writer does: timestamps once per
    logical line, the stream filter, and the byte limit."""

    def __init__(self, opts: LogOptions):
        self.opts = opts
        self.remaining = opts.limit_bytes
        self.new_line = True
        self.since_passed = opts.since_nanos is None
        self.streams = {"All": (STDOUT, STDERR), "Stdout": (STDOUT,), "Stderr": (STDERR,)}[opts.stream]

    @property
    def full(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def render(self, lines: Iterable[bytes], out: list[bytes]) -> None:
        opts = self.opts
        for line in lines:
            if self.full:
                return
            try:
                entry = parse_line(line)
                if not self.since_passed:
                    if entry.nanos < opts.since_nanos:
                        continue
                    self.since_passed = True
            except LogLineError as e:
                log.debug("skipping a log line: %s", e)
                continue
            if entry.stream not in self.streams:
                continue
            piece = entry.content if entry.partial else entry.content + b"\n"
            if opts.timestamps and self.new_line:
                piece = format_timestamp(entry.nanos) + b" " + piece
            self.new_line = not entry.partial
            if self.remaining is not None:
                piece = piece[:self.remaining]
                self.remaining -= len(piece)
            out.append(piece)


async def read_logs(path: Path, opts: LogOptions, *,
                    is_running: Callable[[], Awaitable[bool]] | None = None,
                    poll_interval: float = 0.1, running_interval: float = 1.0) -> AsyncIterator[bytes]:
    """Yield the output for a container's log ``path`` (and its rotated files).

    With ``opts.follow`` it keeps reading as the file grows, switches to the new file when the
    log is rotated, and ends once ``is_running()`` says the container is gone (after a last
    read)."""
    writer = _Writer(opts)
    loop = asyncio.get_running_loop()
    files = await loop.run_in_executor(None, log_files, path)
    start_index, start_offset = 0, 0
    if opts.tail_lines is not None:
        if opts.tail_lines == 0:
            start_index, start_offset = len(files), 0
        else:
            start_index, start_offset = await loop.run_in_executor(None, _tail_start, files, opts.tail_lines)
    current: BinaryIO | None = None
    for i in range(start_index, len(files)):
        offset = start_offset if i == start_index else 0
        if files[i] == path and opts.follow:
            current = await loop.run_in_executor(None, _open_at, path, offset)
            break
        try:
            data = await loop.run_in_executor(None, _read_from, files[i], offset)
        except FileNotFoundError:  # rotated away or removed while we read
            continue
        out: list[bytes] = []
        writer.render(data.splitlines(keepends=True), out)
        if out:
            yield b"".join(out)
        if writer.full:
            return
    if not opts.follow or writer.full:
        return
    if current is None and start_index >= len(files) and files and files[-1] == path:
        # tailLines=0 while following: start at the end of the current file.
        current = await loop.run_in_executor(None, _open_at, path, -1)
    async with contextlib.aclosing(_follow(path, current, writer, is_running, poll_interval,
                                           running_interval)) as chunks:
        async for chunk in chunks:
            yield chunk


def _read_from(path: Path, offset: int) -> bytes:
    if path.name.endswith(COMPRESSED_SUFFIX):
        return _read_whole(path)[offset:]
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def _open_at(path: Path, offset: int) -> BinaryIO | None:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    if offset < 0:
        f.seek(0, os.SEEK_END)
    else:
        f.seek(offset)
    return f


def _rotated(path: Path, f: BinaryIO | None) -> bool:
    """Whether ``path`` now names another file than the one open as ``f``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if f is None:
        return True
    mine = os.fstat(f.fileno())
    return (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev)


async def _follow(path: Path, f: BinaryIO | None, writer: _Writer,
                  is_running: Callable[[], Awaitable[bool]] | None,
                  poll_interval: float, running_interval: float) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    pending = b""          # an incomplete last line, completed by a later read
    last_check = loop.time()
    finishing = False
    try:
        while True:
            data = await loop.run_in_executor(None, f.read, CHUNK) if f is not None else b""
            if data:
                pending += data
                cut = pending.rfind(b"\n") + 1
                if cut:
                    out: list[bytes] = []
                    writer.render(pending[:cut].splitlines(keepends=True), out)
                    pending = pending[cut:]
                    if out:
                        yield b"".join(out)
                    if writer.full:
                        return
                continue
            if await loop.run_in_executor(None, _rotated, path, f):
                # Drain what the runtime wrote to the old file before it reopened, then move on.
                if f is not None:
                    rest = await loop.run_in_executor(None, f.read)
                    f.close()
                    out = []
                    writer.render((pending + rest).splitlines(keepends=True), out)
                    pending = b""
                    if out:
                        yield b"".join(out)
                    if writer.full:
                        return
                f = await loop.run_in_executor(None, _open_at, path, 0)
                continue
            if finishing:
                if pending:
                    out = []
                    writer.render([pending], out)
                    if out:
                        yield b"".join(out)
                return
            now = loop.time()
            if is_running is not None and now - last_check >= running_interval:
                last_check = now
                if not await is_running():
                    finishing = True  # one more read for what was written just before the end
                    continue
            await asyncio.sleep(poll_interval)
    finally:
        if f is not None:
            f.close()


# -- rotation ----------------------------------------------------------------------------------
class LogRotator:
    """Keeps each running container's log under ``max_size`` bytes and at most ``max_files``
    files (current included), like the kubelet's container log manager
    (containerLogMaxSize 10Mi, containerLogMaxFiles 5)."""

    def __init__(self, runtime, *, max_size: int = 10 * 1024 * 1024, max_files: int = 5,
                 compress: bool = True, clock: Callable[[], float] = time.time):
        if max_files < 2:
            raise ValueError("max_files must be at least 2")
        self.runtime = runtime
        self.max_size = max_size
        self.max_files = max_files
        self.compress = compress
        self.clock = clock

    async def run_once(self, containers) -> None:
        """Rotate the logs of ``containers`` (cri.ContainerStatus) that need it."""
        from sampan.node.cri import State

        for status in containers:
            if status.state != State.RUNNING or status.log_path is None:
                continue
            try:
                await self.rotate_if_needed(status.id, Path(status.log_path))
            except Exception:  # one container's trouble must not stop the others
                log.exception("failed to rotate the log of container %s", status.id)

    async def rotate_if_needed(self, container_id: str, path: Path) -> bool:
        loop = asyncio.get_running_loop()
        try:
            size = (await loop.run_in_executor(None, os.stat, path)).st_size
        except FileNotFoundError:
            # Deleted from under the runtime: have it make a new file.
            await self.runtime.reopen_log(container_id)
            return False
        if size < self.max_size:
            return False
        await loop.run_in_executor(None, self._prepare, path)
        rotated = path.with_name(f"{path.name}.{time.strftime(ROTATED_TIME_FORMAT, time.gmtime(self.clock()))}")
        await loop.run_in_executor(None, os.rename, path, rotated)
        try:
            await self.runtime.reopen_log(container_id)
        except Exception:
            # The runtime still writes to the renamed file: give it its name back.
            await loop.run_in_executor(None, os.rename, rotated, path)
            raise
        return True

    def _prepare(self, path: Path) -> None:
        """Before renaming: drop leftovers, keep max_files-2 rotated files, compress them."""
        rotated = [f for f in log_files(path) if f != path]
        names = {f.name for f in rotated}
        for f in list(rotated):
            if f.name.endswith(TMP_SUFFIX) or (
                    not f.name.endswith(COMPRESSED_SUFFIX) and f.name + COMPRESSED_SUFFIX in names):
                _unlink(f)
                rotated.remove(f)
        for tmp in path.parent.glob(path.name + ".*" + TMP_SUFFIX):
            _unlink(tmp)
        keep = self.max_files - 2
        excess = rotated[:max(0, len(rotated) - keep)]
        for f in excess:
            _unlink(f)
        if self.compress:
            for f in rotated[len(excess):]:
                if not f.name.endswith(COMPRESSED_SUFFIX):
                    _compress(f)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _compress(path: Path) -> None:
    target = path.with_name(path.name + COMPRESSED_SUFFIX)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    with open(path, "rb") as src, gzip.open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    os.replace(tmp, target)
    path.unlink()
