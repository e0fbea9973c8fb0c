"""CRI log format, the kubelet-like log reader (tail, since, timestamps, limits, rotated files,
follow across rotation) and the log rotator."""

from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path

import pytest

from sampan.node.cri import ContainerStatus, State
from sampan.node.logs import (
    LogLineError,
    LogOptions,
    LogRotator,
    encode_line,
    format_timestamp,
    log_files,
    parse_line,
    parse_timestamp,
    read_logs,
)

SECOND = 1_000_000_000
T0 = parse_timestamp(b"2024-05-01T10:00:00Z")


def line(n: int, content: str, stream: bytes = b"stdout", partial: bool = False) -> bytes:
    return encode_line(stream, content.encode(), partial=partial, nanos=T0 + n * SECOND)


async def collect(path: Path, opts: LogOptions, **kw) -> bytes:
    return b"".join([chunk async for chunk in read_logs(path, opts, **kw)])


def test_parse_line_and_timestamps():
    entry = parse_line(b"2016-10-06T00:17:09.669794202Z stdout F hello world\n")
    assert (entry.stream, entry.partial, entry.content) == (b"stdout", False, b"hello world")
    assert entry.nanos == parse_timestamp(b"2016-10-06T00:17:09Z") + 669794202
    assert parse_line(b"2016-10-06T00:17:09Z stderr P part").partial
    assert parse_line(b"2016-10-06T00:17:09Z stdout F").content == b""
    # conmon writes a numeric offset; +02:00 is two hours before UTC.
    assert parse_timestamp(b"2016-10-06T02:17:09.5+02:00") == parse_timestamp(b"2016-10-06T00:17:09.5Z")
    assert format_timestamp(parse_timestamp(b"2016-10-06T00:17:09.500000000Z")) == b"2016-10-06T00:17:09.5Z"
    assert format_timestamp(parse_timestamp(b"2016-10-06T00:17:09Z")) == b"2016-10-06T00:17:09Z"
    for bad in (b"garbage", b"2016-10-06T00:17:09Z bogus F x", b"notatime stdout F x"):
        with pytest.raises(LogLineError):
            parse_line(bad).nanos


def test_options_from_query():
    opts = LogOptions.from_query({"follow": "true", "tailLines": "3", "limitBytes": "10",
                                  "timestamps": "1", "sinceSeconds": "5"}, now_ns=T0)
    assert opts.follow and opts.timestamps and opts.tail_lines == 3 and opts.limit_bytes == 10
    assert opts.since_nanos == T0 - 5 * SECOND
    for bad in ({"tailLines": "-1"}, {"limitBytes": "0"}, {"sinceSeconds": "0"},
                {"sinceSeconds": "1", "sinceTime": "2024-05-01T10:00:00Z"}, {"follow": "maybe"}):
        with pytest.raises(ValueError):
            LogOptions.from_query(bad)


def write_rotated(tmp_path: Path) -> Path:
    """Lines 0..9 over three files: a gzipped rotated one, a plain rotated one, the current."""
    path = tmp_path / "0.log"
    with gzip.open(tmp_path / "0.log.20240501-100001.gz", "wb") as f:
        f.write(b"".join(line(i, f"line {i}") for i in range(0, 3)))
    (tmp_path / "0.log.20240501-100005").write_bytes(b"".join(line(i, f"line {i}") for i in range(3, 6)))
    (tmp_path / "0.log.20240501-100006.gz.tmp").write_bytes(b"half-written compression")
    path.write_bytes(b"".join(line(i, f"line {i}") for i in range(6, 10)))
    return path


async def test_reads_across_rotated_files(tmp_path):
    path = write_rotated(tmp_path)
    assert [p.name for p in log_files(path)] == ["0.log.20240501-100001.gz", "0.log.20240501-100005", "0.log"]
    assert await collect(path, LogOptions()) == b"".join(b"line %d\n" % i for i in range(10))


@pytest.mark.parametrize("tail", [0, 1, 4, 5, 9, 10, 50])
async def test_tail_across_files(tmp_path, tail):
    path = write_rotated(tmp_path)
    expected = b"".join(b"line %d\n" % i for i in range(max(0, 10 - tail), 10))
    assert await collect(path, LogOptions(tail_lines=tail)) == expected


async def test_tail_of_a_big_file_reads_from_the_end(tmp_path):
    path = tmp_path / "1.log"
    path.write_bytes(b"".join(line(i % 50, f"entry {i} " + "x" * 100) for i in range(5000)))
    out = await collect(path, LogOptions(tail_lines=3))
    assert out.splitlines() == [f"entry {i} ".encode() + b"x" * 100 for i in (4997, 4998, 4999)]


async def test_since_timestamps_limit_and_stream(tmp_path):
    path = write_rotated(tmp_path)
    out = await collect(path, LogOptions(since_nanos=T0 + 7 * SECOND, timestamps=True))
    assert out.splitlines() == [format_timestamp(T0 + i * SECOND) + b" line %d" % i for i in (7, 8, 9)]
    assert await collect(path, LogOptions(limit_bytes=10)) == b"line 0\nlin"
    mixed = tmp_path / "mixed.log"
    mixed.write_bytes(line(0, "out") + line(1, "err", b"stderr") + line(2, "out2"))
    assert await collect(mixed, LogOptions(stream="Stderr")) == b"err\n"
    assert await collect(mixed, LogOptions(stream="Stdout")) == b"out\nout2\n"


async def test_partial_lines_join_with_one_timestamp(tmp_path):
    path = tmp_path / "0.log"
    path.write_bytes(line(0, "hel", partial=True) + line(1, "lo") + b"bad line\n" + line(2, "next"))
    assert await collect(path, LogOptions()) == b"hello\nnext\n"
    out = await collect(path, LogOptions(timestamps=True))
    assert out == format_timestamp(T0) + b" hello\n" + format_timestamp(T0 + 2 * SECOND) + b" next\n"


async def test_follow_survives_rotation_and_ends_with_the_container(tmp_path):
    path = tmp_path / "0.log"
    path.write_bytes(line(0, "first"))
    running = True

    async def is_running() -> bool:
        return running

    async def writer():
        nonlocal running
        await asyncio.sleep(0.1)
        with open(path, "ab") as f:
            f.write(line(1, "second"))
            f.write(line(2, "half")[:20])  # a line still being written
            f.flush()
            await asyncio.sleep(0.1)
            f.write(line(2, "half")[20:])
            f.flush()
            # rotation: the file is renamed, then the runtime reopens the path
            os.rename(path, tmp_path / "0.log.20240501-100000")
            f.write(line(3, "late write to the old file"))
        await asyncio.sleep(0.1)
        with open(path, "ab") as f:
            f.write(line(4, "after rotation"))
        await asyncio.sleep(0.2)
        with open(path, "ab") as f:
            f.write(line(5, "last words"))
        running = False

    task = asyncio.create_task(writer())
    out = await asyncio.wait_for(collect(path, LogOptions(follow=True), is_running=is_running,
                                         poll_interval=0.02, running_interval=0.05), 10)
    await task
    assert out.splitlines() == [b"first", b"second", b"half", b"late write to the old file",
                                b"after rotation", b"last words"]


async def test_follow_with_tail_zero_starts_at_the_end(tmp_path):
    path = tmp_path / "0.log"
    path.write_bytes(line(0, "old"))
    running = True

    async def is_running() -> bool:
        return running

    async def writer():
        nonlocal running
        await asyncio.sleep(0.1)
        with open(path, "ab") as f:
            f.write(line(1, "new"))
        await asyncio.sleep(0.1)
        running = False

    task = asyncio.create_task(writer())
    out = await asyncio.wait_for(collect(path, LogOptions(follow=True, tail_lines=0), is_running=is_running,
                                         poll_interval=0.02, running_interval=0.05), 10)
    await task
    assert out == b"new\n"


class ReopeningRuntime:
    """Stands in for conmon: reopen_log makes the current path again."""

    def __init__(self, path: Path):
        self.path = path
        self.reopened = 0

    async def reopen_log(self, container_id: str) -> None:
        self.reopened += 1
        self.path.touch()


async def test_rotator_keeps_size_and_file_count(tmp_path):
    path = tmp_path / "0.log"
    path.touch()
    runtime = ReopeningRuntime(path)
    clock = iter(range(1_714_557_600, 1_714_557_600 + 100))
    rotator = LogRotator(runtime, max_size=1000, max_files=3, clock=lambda: next(clock))
    status = ContainerStatus(id="c1", sandbox_id="s", name="app", attempt=0, state=State.RUNNING,
                             image_ref="busybox", image_id="sha256:x", created_at=0, log_path=path)
    exited = ContainerStatus(id="c2", sandbox_id="s", name="done", attempt=0, state=State.EXITED,
                             image_ref="busybox", image_id="sha256:x", created_at=0, log_path=tmp_path / "x.log")
    written = []
    for round_ in range(5):
        with open(path, "ab") as f:
            for i in range(20):
                n = round_ * 20 + i
                written.append(n)
                f.write(line(n % 50, f"message {n} " + "x" * 20))
        await rotator.run_once([status, exited])
    assert runtime.reopened == 5
    files = log_files(path)
    assert len(files) == 3  # max_files, current included
    assert files[-1] == path and path.stat().st_size == 0
    assert files[0].name.endswith(".gz") and not files[1].name.endswith(".gz")
    # The newest rotated data is still readable, oldest first, across gzip and plain files.
    out = (await collect(path, LogOptions())).splitlines()
    assert out == [b"message %d " % n + b"x" * 20 for n in written[-40:]]
    # Below the limit nothing happens.
    await rotator.run_once([status])
    assert runtime.reopened == 5
