"""An acknowledged write survives kill -9 of the writer (and, for etcd, of the server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sampan.store import Store
from tests.etcdutil import etcd_cluster

from .conftest import BACKENDS, Backend, etcd_backend

ROOT = Path(__file__).resolve().parents[2]
ACKNOWLEDGED_BEFORE_KILL = 300


def write_until_killed(
    process_args: list[str], crash_server: Callable[[], None] = lambda: None
) -> list[str]:
    """Run the writer, crash the server (if any) and SIGKILL the writer mid-stream; return every
    key the writer printed as acknowledged."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.store.durability_writer", *process_args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stdout is not None and writer.stderr is not None
    keys: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(keys) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            keys.append(line.decode().strip())
    finally:
        crash_server()
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
    assert len(keys) == ACKNOWLEDGED_BEFORE_KILL, writer.stderr.read().decode()[-2000:]
    rest = writer.stdout.read().decode()
    keys.extend(rest[: rest.rfind("\n") + 1].split())  # a line cut by the kill was not printed
    writer.stdout.close()
    writer.stderr.close()
    return keys


async def assert_all_present(store: Store, keys: list[str]) -> None:
    await store.start()
    try:
        listed = {kv.key for kv in (await store.list("/durable/")).kvs}
        missing = [k for k in keys if k not in listed]
        assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {missing[:5]}"
    finally:
        await store.close()


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
async def test_acknowledged_writes_survive_kill_9_of_the_writer(backend: Backend) -> None:
    keys = write_until_killed(backend.process_args)
    await assert_all_present(backend.open(), keys)


@pytest.mark.etcd
async def test_acknowledged_writes_survive_kill_9_of_etcd(tmp_path: Path) -> None:
    with etcd_cluster(1, workdir=str(tmp_path)) as cluster:
        backend = etcd_backend(cluster.client_urls)
        keys = write_until_killed(backend.process_args, crash_server=lambda: cluster.kill(0))
        cluster.start(0)  # on the same data dir
        cluster.wait_ready()
        await assert_all_present(backend.open(), keys)
